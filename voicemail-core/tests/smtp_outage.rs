//! SMTP delivery through the mailbox against real servers (`python3 -m aiosmtpd`, Debian's
//! `/usr/bin/python3` with python3-aiosmtpd, on 127.0.0.1): five messages recorded while the
//! server is down fail with connection refused and wait with back-off (visible in the
//! deliveries); after the server starts and the mailbox is reopened, one run delivers every
//! message exactly once, with the spooled WAV attached, and the matched client's manager among
//! the envelope recipients. A server that answers 554 leaves the delivery `rejected` with its
//! words, retried only on request. A server that accepts and never answers delays only SMTP:
//! the Maildir copies of five calls arrive while the first SMTP attempt still waits. Also AUTH,
//! and `starttls = true` never falling back to plaintext. Without aiosmtpd the tests print
//! "SKIPPED" and pass, or fail when `VOICEMAIL_REQUIRE_INTEROP` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use voicemail_core::config::{Config, DirectoryConfig};
use voicemail_core::deliver::{MaildirTarget, SmtpTarget};
use voicemail_core::runner::Runner;
use voicemail_core::store::DeliveryState;
use voicemail_core::{CallSetup, Mailbox};
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

fn t0() -> Timestamp {
    "2026-11-27T11:33:00Z".parse().unwrap()
}

fn secs(t: Timestamp, s: i64) -> Timestamp {
    t.checked_add(SignedDuration::from_secs(s)).unwrap()
}

fn config_with(dir: &Path, smtp: SmtpTarget) -> Config {
    let mut c = support::mailbox_config(dir);
    c.delivery.smtp = Some(smtp);
    c
}

#[test]
fn messages_recorded_while_server_is_down_all_arrive_once() {
    let Some(python) = support::python_with_aiosmtpd() else { return };
    let tmp = support::TempDir::new("smtp-outage");
    let received = tmp.path().join("received");
    let port = support::free_port();
    let clients = tmp.path().join("clients.csv");
    std::fs::write(&clients, "number,client,manager_name,manager_email\n+74951234562,Acme LLC,Olga,olga@example.org\n")
        .unwrap();
    let mut cfg = config_with(tmp.path(), target_for(port));
    cfg.directory = Some(DirectoryConfig { path: clients, default_region: "RU".to_owned() });
    cfg.load_directory().unwrap();
    let t0 = t0();

    // Record five messages while nothing listens on the port.
    let mut wavs = BTreeMap::new();
    {
        let mailbox = Mailbox::open(cfg.clone()).unwrap();
        for i in 0..5u32 {
            let meta =
                support::record(&mailbox, CallSetup::new(format!("+7495123456{i}"), t0), 0.4 + f64::from(i) * 0.1, t0);
            wavs.insert(meta.id.to_string(), (i, std::fs::read(meta.wav_path.as_ref().unwrap()).unwrap()));
        }
        let report = mailbox.deliver_all_due(t0).unwrap();
        assert_eq!(report.attempted, 5);
        assert!(report.delivered.is_empty());
        assert_eq!(report.failed.len(), 5, "{report:?}");
        assert_eq!(mailbox.next_due("smtp").unwrap(), Some(secs(t0, 5)));
        let deliveries = mailbox.deliveries().unwrap();
        assert_eq!(deliveries.len(), 5);
        for d in &deliveries {
            assert_eq!(d.state, DeliveryState::Failing, "{d:?}");
            assert_eq!(d.attempts, 1);
            let err = d.last_error.as_deref().unwrap();
            assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
        }
        // Back-off: one second later nothing is due; the second failure doubles the delay.
        assert_eq!(mailbox.deliver_all_due(secs(t0, 1)).unwrap().attempted, 0);
        assert_eq!(mailbox.deliver_all_due(secs(t0, 5)).unwrap().failed.len(), 5);
        assert_eq!(mailbox.next_due("smtp").unwrap(), Some(secs(t0, 15)));
    }

    // The server comes up; the process restarts (the mailbox is reopened from disk).
    let mut server = start_aiosmtpd(&python, port, &received);
    let mailbox = Mailbox::open(cfg).unwrap();
    let report = mailbox.deliver_all_due(secs(t0, 15)).unwrap();
    assert_eq!(report.delivered.len(), 5, "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    assert!(mailbox.deliveries().unwrap().iter().all(|d| d.state == DeliveryState::Delivered && d.attempts == 2));
    assert_eq!(mailbox.next_due("smtp").unwrap(), None);
    assert_eq!(mailbox.deliver_all_due(secs(t0, 15)).unwrap().attempted, 0, "nothing sent twice");
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
        let (i, wav) = wavs.get(&id).unwrap();
        assert_eq!(&attachment, wav, "attachment of {id}");
        assert!(seen.insert(*i, rcpt).is_none(), "{id} arrived twice");
    }
    assert_eq!(seen.len(), 5);
    assert!(seen[&2].contains("olga@example.org") && seen[&2].contains("shared@example.org"), "{seen:?}");
    assert!(!seen[&1].contains("olga@example.org"));
}

fn target_for(port: u16) -> SmtpTarget {
    let mut t = SmtpTarget::new("127.0.0.1", port, "voicemail@example.org");
    t.to = vec!["shared@example.org".to_owned()];
    t
}

#[test]
fn auth_is_used_when_configured() {
    let Some(python) = support::python_with_aiosmtpd() else { return };
    let tmp = support::TempDir::new("smtp-auth");
    let received = tmp.path().join("received");
    let port = support::free_port();
    let script = support::script("smtp_auth_server.py");
    let mut server = support::ServerGuard::spawn(
        "aiosmtpd (auth)",
        Command::new(&python).arg(&script).arg(port.to_string()).arg(&received).stdout(Stdio::null()),
    );
    let up = support::wait_for_port(port, Duration::from_secs(20));
    server.assert_running("while starting");
    assert!(up, "auth server did not listen on 127.0.0.1:{port}");

    let t0 = t0();
    let anonymous = Mailbox::open(config_with(tmp.path(), target_for(port))).unwrap();
    let meta = support::record(&anonymous, CallSetup::new("+74951234567", t0), 0.3, t0);
    let report = anonymous.deliver_all_due(t0).unwrap();
    // 530 to MAIL FROM: refused until the configuration changes.
    assert_eq!(report.rejected.len(), 1, "unauthenticated submission must be refused: {report:?}");
    assert!(report.rejected[0].2.contains("530"), "{report:?}");
    drop(anonymous);

    let mut wrong = target_for(port);
    wrong.username = Some("vm".to_owned());
    wrong.password = Some("wrong".to_owned());
    let mailbox = Mailbox::open(config_with(tmp.path(), wrong)).unwrap();
    assert_eq!(mailbox.retry(&meta.id, None, "operator", secs(t0, 5)).unwrap(), 1);
    let report = mailbox.deliver_all_due(secs(t0, 5)).unwrap();
    assert_eq!(report.failed.len(), 1, "wrong password must fail: {report:?}");
    assert!(report.failed[0].2.contains("535"), "{report:?}");
    drop(mailbox);

    let mut good = target_for(port);
    good.username = Some("vm".to_owned());
    good.password = Some("secret".to_owned());
    let mailbox = Mailbox::open(config_with(tmp.path(), good)).unwrap();
    let report = mailbox.deliver_all_due(secs(t0, 15)).unwrap();
    assert_eq!(report.delivered.len(), 1, "{report:?}");
    server.stop();

    let files = support::maildir_files(&received);
    assert_eq!(files.len(), 1);
    let (_, attachment) = support::message_id_and_attachment(&std::fs::read(&files[0]).unwrap());
    assert_eq!(attachment, std::fs::read(meta.wav_path.unwrap()).unwrap());
}

#[test]
fn a_permanent_refusal_is_rejected_with_the_servers_words_and_retried_on_request() {
    let Some(python) = support::python_with_aiosmtpd() else { return };
    let tmp = support::TempDir::new("smtp-554");
    let received = tmp.path().join("received");
    let port = support::free_port();
    let mut server = support::ServerGuard::spawn(
        "aiosmtpd (refusing)",
        Command::new(&python)
            .arg(support::script("smtp_refusing_server.py"))
            .arg(port.to_string())
            .arg(&received)
            .arg("data=554 5.7.1 Message rejected as spam")
            .stdout(Stdio::null()),
    );
    assert!(support::wait_for_port(port, Duration::from_secs(20)), "refusing server did not start");
    let t0 = t0();
    let mailbox = Mailbox::open(config_with(tmp.path(), target_for(port))).unwrap();
    let meta = support::record(&mailbox, CallSetup::new("+74951234567", t0), 0.3, t0);
    let report = mailbox.deliver_all_due(t0).unwrap();
    assert_eq!(report.rejected.len(), 1, "{report:?}");
    assert!(report.failed.is_empty());
    let d = &mailbox.show(&meta.id).unwrap().deliveries[0];
    assert_eq!(d.state, DeliveryState::Rejected);
    let words = d.last_error.as_deref().unwrap();
    assert!(words.contains("554 5.7.1 Message rejected as spam"), "{words}");
    assert_eq!(d.next_attempt, None, "a rejected delivery is not scheduled");
    // Never retried by itself, however late.
    assert_eq!(mailbox.deliver_all_due(secs(t0, 86_400)).unwrap().attempted, 0);
    assert_eq!(mailbox.next_due("smtp").unwrap(), None);
    let history = mailbox.show(&meta.id).unwrap().history;
    assert!(history.iter().any(|h| h.event.describe().contains("rejected by smtp")), "{history:?}");

    // The operator fixes the cause (here: a server that accepts) and asks for a retry.
    server.stop();
    let _accepting = start_aiosmtpd(&python, port, &received);
    assert_eq!(mailbox.retry(&meta.id, None, "operator", secs(t0, 100)).unwrap(), 1);
    let report = mailbox.deliver_all_due(secs(t0, 100)).unwrap();
    assert_eq!(report.delivered.len(), 1, "{report:?}");
    assert_eq!(support::maildir_files(&received).len(), 1);
}

#[test]
fn a_silent_smtp_server_delays_no_other_target() {
    let Some(python) = support::python() else { return };
    let tmp = support::TempDir::new("smtp-silent");
    let (_silent, port) = support::start_misbehaving_server(&python, "silent", &[]);
    let mut smtp = target_for(port);
    // Long enough that every Maildir copy below must arrive while the first SMTP attempt waits
    // (they arrive within milliseconds), short enough not to hold the test up.
    smtp.connect_timeout = Duration::from_secs(15);
    let mut cfg = config_with(tmp.path(), smtp);
    cfg.delivery.maildir = Some(MaildirTarget { root: tmp.path().join("Maildir"), folder: "Voicemail".to_owned() });
    let folder = tmp.path().join("Maildir/.Voicemail");
    let mailbox = Mailbox::open(cfg).unwrap();
    let runner = Runner::start(&mailbox).unwrap();
    let mut latencies = Vec::new();
    for i in 0..5 {
        let meta = support::record(
            &mailbox,
            CallSetup::new(format!("+7495000000{i}"), Timestamp::now()),
            0.3,
            Timestamp::now(),
        );
        let stored = Instant::now();
        let watchdog = stored + Duration::from_secs(14);
        while support::maildir_files(&folder).len() < i + 1 {
            assert!(Instant::now() < watchdog, "the Maildir copy of {} never arrived", meta.id);
            std::thread::sleep(Duration::from_millis(5));
        }
        latencies.push(stored.elapsed());
    }
    // Every Maildir copy is there while the first SMTP attempt is still waiting for the
    // server's greeting: nothing was recorded for SMTP yet.
    let smtp: Vec<_> = mailbox.deliveries().unwrap().into_iter().filter(|d| d.target == "smtp").collect();
    assert_eq!(smtp.len(), 5);
    assert!(smtp.iter().all(|d| d.attempts == 0 && d.state == DeliveryState::Pending), "{smtp:?}");
    eprintln!("maildir copy after storing: {latencies:?}");
    drop(runner); // waits for the SMTP attempt in progress to time out
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
        keywords: Vec::new(),
        may_be_stored: true,
    };
    use voicemail_core::deliver::Target;
    let err = target.deliver(&email).unwrap_err();
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}: STARTTLS: ")), "{err}");
    assert!(!err.is_permanent(), "{err}");
    assert!(support::maildir_files(&received).is_empty(), "sent without TLS");
}
