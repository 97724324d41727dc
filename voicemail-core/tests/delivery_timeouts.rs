//! No server can stall a delivery. Against servers on 127.0.0.1 that accept the TCP connection
//! and then stop answering (tests/support/misbehaving_server.py: silent from the start, silent
//! after the SMTP greeting or `EHLO`, silent after the IMAP greeting), `deliver` returns a transient error
//! naming the step that waited and the timeout that expired: `connect_timeout` for the
//! greeting, `timeout` for every later reply. It returns while the server is still running
//! (the client gave up, the server did not hang up) and well before the 60 s per reply the
//! targets used to wait (the targets here use 1-2 s; the asserted bound is a generous 30 s, and
//! a hung `deliver` fails the test after 120 s instead of hanging it). Also: the two timeouts
//! are read from the configuration, and a bad value is an error naming its key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use voicemail_core::config::Config;
use voicemail_core::deliver::{DeliveryError, ImapTarget, OutgoingEmail, SmtpTarget, Target};

/// Far below the 60 s per reply the targets used to wait, far above the 1-2 s configured here.
const BOUND: Duration = Duration::from_secs(30);

fn email() -> OutgoingEmail {
    OutgoingEmail {
        voicemail_id: "stall-1".to_owned(),
        message_id: "stall-1@example.org".to_owned(),
        bytes: b"Subject: stall\r\n\r\nbody\r\n".to_vec(),
        extra_recipients: Vec::new(),
        keywords: Vec::new(),
        may_be_stored: true,
    }
}

fn smtp_target(port: u16, connect_timeout: Duration, timeout: Duration) -> SmtpTarget {
    let mut target = SmtpTarget::new("127.0.0.1", port, "voicemail@example.org");
    target.to = vec!["shared@example.org".to_owned()];
    target.connect_timeout = connect_timeout;
    target.timeout = timeout;
    target
}

fn imap_target(port: u16, connect_timeout: Duration, timeout: Duration) -> ImapTarget {
    let mut target = ImapTarget::new("127.0.0.1", port, "vm", "secret", "Voicemail");
    target.connect_timeout = connect_timeout;
    target.timeout = timeout;
    target
}

/// Runs `deliver` on another thread and returns its error and how long it took; panics if it
/// succeeds or has not returned after 120 s.
fn deliver_err<T: Target + Send + 'static>(target: T) -> (DeliveryError, Duration) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let start = Instant::now();
        let result = target.deliver(&email());
        let _ = tx.send((result, start.elapsed()));
    });
    let (result, took) = rx.recv_timeout(Duration::from_secs(120)).expect("deliver did not return within 120 s");
    match result {
        Ok(ack) => panic!("a server that never answers acknowledged: {ack:?}"),
        Err(e) => {
            eprintln!("deliver returned after {took:?}: {e}");
            (e, took)
        }
    }
}

#[test]
fn silent_smtp_server_times_out_at_the_greeting() {
    let Some(python) = support::python() else { return };
    let (mut server, port) = support::start_misbehaving_server(&python, "silent", &[]);
    // connect_timeout (1 s) bounds the greeting; the longer `timeout` is not what expires.
    let (err, took) = deliver_err(smtp_target(port, Duration::from_secs(1), Duration::from_secs(3)));
    server.assert_running("before the client gave up");
    let shown = err.to_string();
    assert!(shown.starts_with(&format!("smtp 127.0.0.1:{port}: connect: no reply within 1s")), "{shown}");
    assert!(matches!(err, DeliveryError::Smtp { code: None, permanent: false, .. }), "{err:?}");
    assert!(!err.is_permanent());
    assert!(took < BOUND, "took {took:?}");
}

#[test]
fn smtp_server_silent_after_its_greeting_times_out_at_ehlo() {
    let Some(python) = support::python() else { return };
    let (mut server, port) = support::start_misbehaving_server(&python, "smtp-greet", &[]);
    // EHLO is part of connecting (lettre reads it inside its connect): connect_timeout (1 s).
    let (err, took) = deliver_err(smtp_target(port, Duration::from_secs(1), Duration::from_secs(3)));
    server.assert_running("before the client gave up");
    let shown = err.to_string();
    assert!(shown.starts_with(&format!("smtp 127.0.0.1:{port}: connect: no reply within 1s")), "{shown}");
    assert!(!err.is_permanent(), "{err:?}");
    assert!(took < BOUND, "took {took:?}");
}

#[test]
fn smtp_server_silent_after_ehlo_times_out_at_mail_from() {
    let Some(python) = support::python() else { return };
    let (mut server, port) = support::start_misbehaving_server(&python, "smtp-ehlo", &[]);
    // The greeting and EHLO are answered; `timeout` (1 s) bounds MAIL FROM.
    let (err, took) = deliver_err(smtp_target(port, Duration::from_secs(2), Duration::from_secs(1)));
    server.assert_running("before the client gave up");
    let shown = err.to_string();
    assert!(shown.starts_with(&format!("smtp 127.0.0.1:{port}: MAIL FROM: no reply within 1s")), "{shown}");
    assert!(!err.is_permanent(), "{err:?}");
    assert!(took < BOUND, "took {took:?}");
}

#[test]
fn silent_imap_server_times_out_at_the_greeting() {
    let Some(python) = support::python() else { return };
    let (mut server, port) = support::start_misbehaving_server(&python, "silent", &[]);
    let (err, took) = deliver_err(imap_target(port, Duration::from_secs(1), Duration::from_secs(3)));
    server.assert_running("before the client gave up");
    let shown = err.to_string();
    assert!(shown.starts_with(&format!("imap 127.0.0.1:{port}: connect: no reply within 1s")), "{shown}");
    assert!(matches!(err, DeliveryError::Imap { permanent: false, .. }), "{err:?}");
    assert!(took < BOUND, "took {took:?}");
}

#[test]
fn imap_server_that_never_answers_login_times_out() {
    let Some(python) = support::python() else { return };
    let (mut server, port) = support::start_misbehaving_server(&python, "imap-greet", &[]);
    let (err, took) = deliver_err(imap_target(port, Duration::from_secs(2), Duration::from_secs(1)));
    server.assert_running("before the client gave up");
    let shown = err.to_string();
    assert!(shown.starts_with(&format!("imap 127.0.0.1:{port}: LOGIN: no reply within 1s")), "{shown}");
    assert!(!err.is_permanent(), "{err:?}");
    assert!(took < BOUND, "took {took:?}");
}

const MINIMAL: &str = "mailbox = \"Sales\"\ntimezone = \"Europe/Moscow\"\nspool = \"spool\"\n";

#[test]
fn timeouts_are_configured_with_defaults_and_bounds() {
    let config = Config::from_toml_str(&format!(
        "{MINIMAL}[delivery.smtp]\nhost = \"mx\"\nport = 587\nfrom = \"vm@example.org\"\n\
         connect_timeout = \"2s\"\ntimeout = \"1500ms\"\n\
         [delivery.imap]\nhost = \"mx\"\nport = 143\nusername = \"u\"\npassword = \"p\"\nfolder = \"V\"\n"
    ))
    .unwrap();
    let smtp = config.delivery.smtp.unwrap();
    assert_eq!((smtp.connect_timeout, smtp.timeout), (Duration::from_secs(2), Duration::from_millis(1500)));
    let imap = config.delivery.imap.unwrap();
    assert_eq!((imap.connect_timeout, imap.timeout), (Duration::from_secs(5), Duration::from_secs(20)));

    for (key, value) in [("timeout", "\"50ms\""), ("connect_timeout", "\"11m\""), ("timeout", "\"soon\"")] {
        let text = format!("{MINIMAL}[delivery.smtp]\nhost = \"mx\"\nport = 25\nfrom = \"a@b.c\"\n{key} = {value}\n");
        let err = Config::from_toml_str(&text).map(|_| ()).unwrap_err();
        let shown = err.to_string();
        assert_eq!(err.key(), Some(format!("delivery.smtp.{key}").as_str()), "{shown}");
        assert!(shown.contains("between 100ms and 10m") || shown.contains("expected a duration"), "{shown}");
    }
}
