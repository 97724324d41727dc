//! IMAP APPEND against a real Dovecot (Debian `dovecot-imapd`) started by the test on
//! 127.0.0.1 with its own configuration in a temporary directory (plaintext LOGIN, a
//! passwd-file user, Maildir storage in the temp dir), stopped by PID at the end. Through the
//! mailbox, the message lands in folder `Voicemail` (checked on disk: exactly one file with the
//! right `Message-ID` and an attachment equal to the spooled WAV); delivering it again (a
//! retry after a crash) finds it by `Message-ID` and does not append a second copy; a wrong
//! password, a required STARTTLS the server does not offer (no plaintext LOGIN follows) and a
//! stopped server are delivery errors, not panics, and all of them transient.
//!
//! With TLS (`ssl = required`, a certificate from a CA made at test time, the way a company
//! server looks): STARTTLS on the IMAP port and implicit TLS on the IMAPS port each deliver a
//! message when `ca_file` names that CA; without it the certificate is refused with an error
//! that says so, before any LOGIN. Without a
//! dovecot binary the test prints "SKIPPED: dovecot not found ..." and passes, or fails when
//! `VOICEMAIL_REQUIRE_INTEROP` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use jiff::Timestamp;
use voicemail_core::deliver::{Target, TlsMode, build_email};
use voicemail_core::followup::FollowUp;
use voicemail_core::store::DeliveryState;
use voicemail_core::{CallSetup, Mailbox, route};

#[test]
fn append_into_dovecot_folder_once() {
    let tmp = support::TempDir::new("imap");
    let Some(mut dovecot) = support::dovecot(&tmp.path().join("dovecot"), "") else { return };
    let target = support::imap_target(&dovecot, "secret");

    let t0: Timestamp = "2026-11-27T11:33:00Z".parse().unwrap();
    let mut cfg = support::mailbox_config(tmp.path());
    cfg.delivery.imap = Some(target.clone());
    let mailbox = Mailbox::open(cfg.clone()).unwrap();
    let meta = support::record(&mailbox, CallSetup::new("+74951234567", t0), 0.5, t0);
    let wav = std::fs::read(meta.wav_path.as_ref().unwrap()).unwrap();
    let report = mailbox.deliver_all_due(t0).unwrap();
    if !report.failed.is_empty() {
        eprintln!("dovecot log:\n{}", dovecot.log());
    }
    assert_eq!(report.delivered, [(meta.id.clone(), "imap".to_owned())], "{report:?}");
    let delivery = mailbox.show(&meta.id).unwrap().deliveries.remove(0);
    assert!(delivery.ack.as_deref().unwrap().contains("APPENDUID"), "{delivery:?}");
    assert_eq!(delivery.state, DeliveryState::Delivered);

    let folder = dovecot.maildir().join(".Voicemail");
    let files = support::maildir_files(&folder);
    assert_eq!(files.len(), 1, "{files:?}");
    let (message_id, attachment) = support::message_id_and_attachment(&std::fs::read(&files[0]).unwrap());
    assert_eq!(attachment, wav);

    // A retry after a crash (the store never recorded the OK): found by Message-ID.
    let again = build_email(&meta, &wav, &route::email_context(&cfg, &meta, &FollowUp::New)).unwrap();
    assert_eq!(again.message_id, message_id);
    let ack = target.deliver(&again).unwrap();
    assert!(ack.already_present, "{ack:?}");
    assert_eq!(support::maildir_files(&folder).len(), 1);

    // Wrong password: an error naming the server, nothing stored.
    let err = support::imap_target(&dovecot, "wrong").deliver(&again).unwrap_err();
    assert!(err.to_string().contains("LOGIN"), "{err}");
    assert!(!err.is_permanent(), "{err}");

    // STARTTLS required but the server offers none (ssl = no): refused, never a plaintext LOGIN.
    let mut tls = support::imap_target(&dovecot, "secret");
    tls.starttls = true;
    let err = tls.deliver(&again).unwrap_err();
    assert!(err.to_string().contains("STARTTLS"), "{err}");
    assert!(!err.is_permanent(), "{err}");
    let log = dovecot.log();
    // Two logins so far (delivery and retry); the STARTTLS attempt added none.
    assert!(log.matches("Login: user=<vm>").count() <= 2, "{log}");

    // Server gone: connection refused is an error too.
    dovecot.stop();
    let err = target.deliver(&again).unwrap_err();
    assert!(err.to_string().contains(&format!("127.0.0.1:{}", dovecot.port())), "{err}");
    assert!(!err.is_permanent(), "{err}");
}

#[test]
fn starttls_and_implicit_tls_with_a_company_ca() {
    let tmp = support::TempDir::new("imap-tls");
    let ca = voicemail_testkit::TestCa::new(&tmp.path().join("ca"));
    let cert = ca.issue("dovecot", &["127.0.0.1", "localhost"]);
    let Some(dovecot) = support::Dovecot::start_with_tls(&tmp.path().join("dovecot"), "", Some(&cert)) else {
        return;
    };
    let t0: Timestamp = "2026-12-01T11:00:00Z".parse().unwrap();
    let folder = dovecot.maildir().join(".Voicemail");

    // The certificate is not trusted without the CA: refused before LOGIN, with a clear error.
    let mut untrusted = support::imap_target(&dovecot, "secret");
    untrusted.tls = TlsMode::StartTls;
    let mut cfg = support::mailbox_config(&tmp.path().join("untrusted"));
    cfg.delivery.imap = Some(untrusted);
    let mailbox = Mailbox::open(cfg).unwrap();
    support::record(&mailbox, CallSetup::new("+74951234567", t0), 0.3, t0);
    let report = mailbox.deliver_all_due(t0).unwrap();
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let error = &report.failed[0].2;
    assert!(error.contains("STARTTLS") && error.contains("certificate"), "{report:?}");
    assert!(!dovecot.log().contains("Login: user=<vm>"), "{}", dovecot.log());

    // STARTTLS, then implicit TLS, with `ca_file`: one message each.
    let ports = [(TlsMode::StartTls, dovecot.port()), (TlsMode::Implicit, dovecot.imaps_port().unwrap())];
    for (n, (mode, port)) in ports.into_iter().enumerate() {
        let mut target = support::imap_target(&dovecot, "secret");
        target.port = port;
        target.tls = mode;
        target.ca_file = Some(ca.ca_file());
        let mut cfg = support::mailbox_config(&tmp.path().join(format!("trusted-{n}")));
        cfg.delivery.imap = Some(target);
        let mailbox = Mailbox::open(cfg).unwrap();
        let meta = support::record(&mailbox, CallSetup::new("+74951234567", t0), 0.3, t0);
        let report = mailbox.deliver_all_due(t0).unwrap();
        assert_eq!(report.delivered, [(meta.id.clone(), "imap".to_owned())], "{mode:?}: {report:?}\n{}", dovecot.log());
        assert_eq!(support::maildir_files(&folder).len(), n + 1, "{mode:?}");
    }
    let log = dovecot.log();
    assert_eq!(log.matches("Login: user=<vm>").count(), 2, "{log}");
    assert!(log.lines().filter(|l| l.contains("Login: user=<vm>")).all(|l| l.contains("TLS")), "{log}");
}
