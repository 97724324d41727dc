//! SMTP delivery through the durable outbox against a real server (`python3 -m aiosmtpd`,
//! Debian's `/usr/bin/python3` with python3-aiosmtpd, on 127.0.0.1): five messages recorded
//! while the server is down fail with connection refused and wait with backoff (visible in
//! `status()`); after the server starts and the outbox is reopened from disk, one run delivers
//! every message exactly once, with the right attachment, and the matched client's manager is
//! among the envelope recipients. Also: AUTH against a server that requires it (wrong
//! password fails and is retried, right password delivers), and `starttls = true` against a
//! server without STARTTLS fails (transiently) instead of falling back to plaintext. Without
//! aiosmtpd the tests print "SKIPPED" and pass, or fail when `VOICEMAIL_REQUIRE_INTEROP` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use voicemail_core::deliver::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, EmailContext, Manager, SmtpTarget};
use voicemail_core::outbox::{DeliveryState, Destination, Outbox};

fn start_aiosmtpd(python: &Path, port: u16, maildir: &Path) -> support::ServerGuard {
    let mut guard = support::ServerGuard::spawn(
        "aiosmtpd",
        Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    );
    let up = support::wait_for_port(port, Duration::from_secs(20));
    guard.assert_running("while starting");
    assert!(up, "aiosmtpd did not listen on 127.0.0.1:{port} within 20 s");
    guard
}

#[test]
fn messages_recorded_while_server_is_down_all_arrive_once() {
    let Some(python) = support::python_with_aiosmtpd() else { return };
    let tmp = support::TempDir::new("smtp-outage");
    let spool = tmp.path().join("spool");
    let received = tmp.path().join("received");
    std::fs::create_dir(&spool).unwrap();
    let port = support::free_port();
    let target = SmtpTarget {
        host: "127.0.0.1".to_owned(),
        port,
        starttls: false,
        username: None,
        password: None,
        from: "voicemail@example.org".to_owned(),
        to: vec!["shared@example.org".to_owned()],
        connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        timeout: DEFAULT_TIMEOUT,
    };
    let t0: Timestamp = "2026-11-27T11:33:00Z".parse().unwrap();

    // Record and enqueue five messages while nothing listens on the port.
    let mut wavs = BTreeMap::new();
    {
        let outbox = Outbox::open(&spool).unwrap();
        for i in 0..5u32 {
            let id = format!("msg-{i}");
            let wav = support::sample_wav(2000 + i * 100, i);
            let meta = support::spool_message(&spool, &id, &format!("+7495123456{i}"), &wav);
            let mut ctx = EmailContext::new(support::moscow(), "voicemail@example.org");
            let mut extra = Vec::new();
            if i == 2 {
                ctx.client = Some("Acme LLC".to_owned());
                ctx.manager = Some(Manager { name: "Olga".to_owned(), email: "olga@example.org".to_owned() });
                extra.push("olga@example.org".to_owned());
            }
            outbox.enqueue(&meta, &ctx, &[Destination::smtp(extra)], t0).unwrap();
            wavs.insert(id, wav);
        }
        let report = outbox.run_due(t0, &[&target]);
        assert_eq!(report.attempted, 5);
        assert!(report.delivered.is_empty());
        assert_eq!(report.failed.len(), 5, "{report:?}");
        assert_eq!(report.next_due, Some(t0.checked_add(SignedDuration::from_secs(5)).unwrap()));
        let status = outbox.status().unwrap();
        assert_eq!(status.len(), 5);
        for s in &status {
            assert_eq!(s.state, DeliveryState::Failing, "{s:?}");
            assert_eq!(s.attempts, 1);
            let err = s.last_error.as_deref().unwrap();
            assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
        }
        // Backoff: one second later nothing is due.
        assert_eq!(outbox.run_due(t0.checked_add(SignedDuration::from_secs(1)).unwrap(), &[&target]).attempted, 0);
        // Second failure doubles the delay.
        let t1 = t0.checked_add(SignedDuration::from_secs(5)).unwrap();
        let report = outbox.run_due(t1, &[&target]);
        assert_eq!(report.failed.len(), 5);
        assert_eq!(report.next_due, Some(t1.checked_add(SignedDuration::from_secs(10)).unwrap()));
    }

    // The server comes up; the process restarts (the outbox is reopened from disk).
    let mut server = start_aiosmtpd(&python, port, &received);
    let outbox = Outbox::open(&spool).unwrap();
    let t2 = t0.checked_add(SignedDuration::from_secs(15)).unwrap();
    let report = outbox.run_due(t2, &[&target]);
    assert_eq!(report.delivered.len(), 5, "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(report.next_due, None);
    assert!(outbox.status().unwrap().iter().all(|s| s.state == DeliveryState::Delivered && s.attempts == 2));
    assert_eq!(outbox.next_due().unwrap(), None);
    // Nothing more to do; running again sends nothing.
    assert_eq!(outbox.run_due(t2, &[&target]).attempted, 0);
    server.assert_running("after delivery");
    server.stop();

    // Exactly one copy of each message, attachment equal to its spooled WAV.
    let mut seen = BTreeMap::new();
    for f in support::maildir_files(&received) {
        let bytes = std::fs::read(&f).unwrap();
        let msg = mail_parser::MessageParser::default().parse(&bytes).unwrap();
        let id = msg.header("X-Voicemail-Id").and_then(|v| v.as_text()).unwrap().trim().to_owned();
        let rcpt = msg.header_raw("X-RcptTo").unwrap_or_default().to_owned();
        let attachment = msg.attachment(0).unwrap().contents().to_vec();
        assert_eq!(&attachment, wavs.get(&id).unwrap(), "attachment of {id}");
        assert!(seen.insert(id.clone(), rcpt).is_none(), "{id} arrived twice");
    }
    assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), wavs.keys().cloned().collect::<Vec<_>>());
    assert!(seen["msg-2"].contains("olga@example.org") && seen["msg-2"].contains("shared@example.org"));
    assert!(!seen["msg-1"].contains("olga@example.org"));
}

fn target_for(port: u16) -> SmtpTarget {
    SmtpTarget {
        host: "127.0.0.1".to_owned(),
        port,
        starttls: false,
        username: None,
        password: None,
        from: "voicemail@example.org".to_owned(),
        to: vec!["shared@example.org".to_owned()],
        connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        timeout: DEFAULT_TIMEOUT,
    }
}

#[test]
fn auth_is_used_when_configured() {
    let Some(python) = support::python_with_aiosmtpd() else { return };
    let tmp = support::TempDir::new("smtp-auth");
    let spool = tmp.path().join("spool");
    let received = tmp.path().join("received");
    std::fs::create_dir(&spool).unwrap();
    let port = support::free_port();
    let script = support::script("smtp_auth_server.py");
    let mut server = support::ServerGuard::spawn(
        "aiosmtpd (auth)",
        Command::new(&python).arg(&script).arg(port.to_string()).arg(&received).stdout(Stdio::null()),
    );
    let up = support::wait_for_port(port, Duration::from_secs(20));
    server.assert_running("while starting");
    assert!(up, "auth server did not listen on 127.0.0.1:{port}");

    let t0: Timestamp = "2026-11-27T11:33:00Z".parse().unwrap();
    let wav = support::sample_wav(300, 11);
    let meta = support::spool_message(&spool, "auth-1", "+74951234567", &wav);
    let outbox = Outbox::open(&spool).unwrap();
    let ctx = EmailContext::new(support::moscow(), "voicemail@example.org");
    outbox.enqueue(&meta, &ctx, &[Destination::smtp(Vec::new())], t0).unwrap();

    let mut anonymous = target_for(port);
    let report = outbox.run_due(t0, &[&anonymous]);
    assert_eq!(report.failed.len(), 1, "unauthenticated submission must be refused: {report:?}");
    anonymous.username = Some("vm".to_owned());
    anonymous.password = Some("wrong".to_owned());
    let t1 = t0.checked_add(SignedDuration::from_secs(5)).unwrap();
    let report = outbox.run_due(t1, &[&anonymous]);
    assert_eq!(report.failed.len(), 1, "wrong password must fail: {report:?}");
    assert!(report.failed[0].error.contains("535"), "{report:?}");

    let mut good = target_for(port);
    good.username = Some("vm".to_owned());
    good.password = Some("secret".to_owned());
    let t2 = t1.checked_add(SignedDuration::from_secs(10)).unwrap();
    let report = outbox.run_due(t2, &[&good]);
    assert_eq!(report.delivered.len(), 1, "{report:?}");
    server.stop();

    let files = support::maildir_files(&received);
    assert_eq!(files.len(), 1);
    let (_, attachment) = support::message_id_and_attachment(&std::fs::read(&files[0]).unwrap());
    assert_eq!(attachment, wav);
}

#[test]
fn required_starttls_never_falls_back_to_plaintext() {
    let Some(python) = support::python_with_aiosmtpd() else { return };
    let tmp = support::TempDir::new("smtp-starttls");
    let received = tmp.path().join("received");
    let port = support::free_port();
    let _server = start_aiosmtpd(&python, port, &received);
    let mut target = target_for(port);
    target.starttls = true;
    let email = voicemail_core::deliver::OutgoingEmail {
        voicemail_id: "tls-1".to_owned(),
        message_id: "tls-1@example.org".to_owned(),
        bytes: b"Subject: x\r\n\r\nx\r\n".to_vec(),
        extra_recipients: Vec::new(),
    };
    use voicemail_core::deliver::Target;
    let err = target.deliver(&email).unwrap_err();
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}: STARTTLS: ")), "{err}");
    assert!(!err.is_permanent(), "{err}");
    assert!(support::maildir_files(&received).is_empty(), "sent without TLS");
}
