//! What an SMTP server refuses is reported in its own words and told apart. Against aiosmtpd
//! (Debian's python3-aiosmtpd) scripted by tests/support/smtp_refusing_server.py on
//! 127.0.0.1: a 554 to the end of DATA, a 550 to one `RCPT TO` and a 553 to `MAIL FROM` are
//! permanent errors carrying code and text (`smtp 127.0.0.1:PORT: end of DATA: 554 5.7.1
//! Message rejected`); 451 replies to `RCPT TO` or to the end of DATA are transient. Nothing is
//! stored in any of these cases, and the same server stores a message it does not refuse.
//! Without aiosmtpd the tests print "SKIPPED" and pass, or fail when
//! `VOICEMAIL_REQUIRE_INTEROP` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use voicemail_core::deliver::{DeliveryError, OutgoingEmail, SmtpTarget, Target};

/// The refusing server, its Maildir of accepted messages and the temp dir holding it.
struct Refusing {
    _server: support::ServerGuard,
    port: u16,
    received: PathBuf,
    _tmp: support::TempDir,
}

fn start(python: &Path, rules: &[&str]) -> Refusing {
    let tmp = support::TempDir::new("smtp-refusals");
    let received = tmp.path().join("received");
    let port = support::free_port();
    let mut server = support::ServerGuard::spawn(
        "aiosmtpd (refusing)",
        Command::new(python)
            .arg(support::script("smtp_refusing_server.py"))
            .arg(port.to_string())
            .arg(&received)
            .args(rules)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    );
    let up = support::wait_for_port(port, Duration::from_secs(20));
    server.assert_running("while starting");
    assert!(up, "refusing server did not listen on 127.0.0.1:{port} within 20 s");
    Refusing { _server: server, port, received, _tmp: tmp }
}

fn target(port: u16, to: &[&str]) -> SmtpTarget {
    let mut target = SmtpTarget::new("127.0.0.1", port, "voicemail@example.org");
    target.to = to.iter().map(|s| (*s).to_owned()).collect();
    target.connect_timeout = Duration::from_secs(10);
    target.timeout = Duration::from_secs(10);
    target
}

fn email() -> OutgoingEmail {
    OutgoingEmail {
        voicemail_id: "refused-1".to_owned(),
        message_id: "refused-1@example.org".to_owned(),
        bytes: b"From: voicemail@example.org\r\nSubject: refused\r\n\r\nbody\r\n".to_vec(),
        extra_recipients: Vec::new(),
        keywords: Vec::new(),
        may_be_stored: true,
    }
}

/// Delivers to `server` (recipients `to`) and returns the error's fields after checking that
/// the display shows them and that nothing was stored.
fn refused(server: &Refusing, to: &[&str]) -> (String, Option<u16>, String, bool, DeliveryError) {
    let err = target(server.port, to).deliver(&email()).unwrap_err();
    eprintln!("{err}");
    assert!(support::maildir_files(&server.received).is_empty(), "a refused message was stored");
    match &err {
        DeliveryError::Smtp { host, port, step, code, message, permanent } => {
            assert_eq!((host.as_str(), *port), ("127.0.0.1", server.port));
            assert_eq!(err.to_string(), format!("smtp 127.0.0.1:{}: {step}: {message}", server.port));
            assert_eq!(err.is_permanent(), *permanent);
            (step.clone(), *code, message.clone(), *permanent, err)
        }
        other => panic!("expected an smtp error, got {other:?}"),
    }
}

#[test]
fn reply_554_to_the_message_is_permanent_with_the_servers_words() {
    let Some(python) = support::python_with_aiosmtpd() else { return };
    let server = start(&python, &["data=554 5.7.1 Message rejected"]);
    let (step, code, message, permanent, err) = refused(&server, &["shared@example.org"]);
    assert_eq!(
        (step.as_str(), code, message.as_str(), permanent),
        ("end of DATA", Some(554), "554 5.7.1 Message rejected", true)
    );
    assert!(err.to_string().ends_with(": 554 5.7.1 Message rejected"), "{err}");
}

#[test]
fn reply_550_to_one_recipient_is_permanent_and_names_it() {
    let Some(python) = support::python_with_aiosmtpd() else { return };
    let server = start(&python, &["rcpt:nobody@example.org=550 5.1.1 No such user here"]);
    let (step, code, message, permanent, _) = refused(&server, &["shared@example.org", "nobody@example.org"]);
    assert_eq!(step, "RCPT TO:<nobody@example.org>");
    assert_eq!((code, message.as_str(), permanent), (Some(550), "550 5.1.1 No such user here", true));
}

#[test]
fn reply_553_to_mail_from_is_permanent() {
    let Some(python) = support::python_with_aiosmtpd() else { return };
    let server = start(&python, &["mail=553 5.7.1 Sender address rejected"]);
    let (step, code, message, permanent, _) = refused(&server, &["shared@example.org"]);
    assert_eq!(
        (step.as_str(), code, message.as_str(), permanent),
        ("MAIL FROM", Some(553), "553 5.7.1 Sender address rejected", true)
    );
}

#[test]
fn replies_451_are_transient() {
    let Some(python) = support::python_with_aiosmtpd() else { return };
    let server = start(&python, &["data=451 4.3.0 Try again later"]);
    let (step, code, message, permanent, _) = refused(&server, &["shared@example.org"]);
    assert_eq!(
        (step.as_str(), code, message.as_str(), permanent),
        ("end of DATA", Some(451), "451 4.3.0 Try again later", false)
    );

    let server = start(&python, &["rcpt:busy@example.org=451 4.7.1 Greylisted, try again"]);
    let (step, code, _, permanent, _) = refused(&server, &["busy@example.org"]);
    assert_eq!((step.as_str(), code, permanent), ("RCPT TO:<busy@example.org>", Some(451), false));
}

#[test]
fn a_message_the_server_does_not_refuse_is_stored() {
    let Some(python) = support::python_with_aiosmtpd() else { return };
    let server = start(&python, &["rcpt:nobody@example.org=550 5.1.1 No such user here"]);
    let ack = target(server.port, &["shared@example.org"]).deliver(&email()).unwrap();
    assert!(ack.detail.starts_with("250 to shared@example.org"), "{ack:?}");
    assert_eq!(support::maildir_files(&server.received).len(), 1);
}
