//! SMTP over TLS against a real aiosmtpd (Debian `python3-aiosmtpd`) whose certificate comes
//! from a CA made at test time (`voicemail_testkit::TestCa`, the way a company server with its
//! own CA or a self-signed certificate looks):
//!
//! - STARTTLS (`tls = "starttls"`, aiosmtpd `--tlscert`, which refuses `MAIL` before
//!   STARTTLS) with `ca_file` = the test CA: the message is delivered (a file in aiosmtpd's
//!   Maildir with our `Message-ID`);
//! - implicit TLS (`tls = "implicit"`, port 465 style, aiosmtpd `--smtpscert`): delivered;
//! - the same servers without `ca_file` (the public roots do not know the test CA): a
//!   transient error that names the TLS step and the certificate, and nothing is sent in
//!   plain text.
//!
//! Without Debian's python3 with aiosmtpd the test prints `SKIPPED` and passes, unless
//! `VOICEMAIL_REQUIRE_INTEROP` is set.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use jiff::Timestamp;
use voicemail_core::deliver::{SmtpTarget, TlsMode};
use voicemail_core::{CallSetup, Mailbox};
use voicemail_testkit::TestCa;

/// aiosmtpd with TLS on a free port, writing what it accepts into `maildir`.
fn start_server(python: &Path, maildir: &Path, tls_args: &[&str]) -> (support::ServerGuard, u16) {
    let port = support::free_port();
    let mut server = support::ServerGuard::spawn(
        "aiosmtpd (tls)",
        Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(tls_args)
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir)
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
    );
    let up = support::wait_for_port(port, Duration::from_secs(20));
    server.assert_running("while starting");
    assert!(up, "aiosmtpd did not listen on 127.0.0.1:{port}");
    (server, port)
}

fn target(port: u16, tls: TlsMode, ca_file: Option<&Path>) -> SmtpTarget {
    let mut t = SmtpTarget::new("127.0.0.1", port, "voicemail@example.org");
    t.to = vec!["shared@example.org".to_owned()];
    t.tls = tls;
    t.ca_file = ca_file.map(Path::to_path_buf);
    t.connect_timeout = Duration::from_secs(10);
    t.timeout = Duration::from_secs(10);
    t
}

/// Records one message into a fresh mailbox delivering to `target`, delivers it once, and
/// returns the report's failures (empty when it was delivered).
fn deliver_once(dir: &Path, target: SmtpTarget) -> (Vec<String>, String) {
    let t0: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
    let mut config = support::mailbox_config(dir);
    config.delivery.smtp = Some(target);
    let mailbox = Mailbox::open(config).unwrap();
    let meta = support::record(&mailbox, CallSetup::new("+74951234567", t0), 0.3, t0);
    let report = mailbox.deliver_all_due(t0).unwrap();
    let failures = report.failed.iter().chain(&report.rejected).map(|f| f.2.clone()).collect();
    (failures, meta.id.as_str().to_owned())
}

#[test]
fn starttls_and_implicit_tls_with_a_company_ca() {
    let Some(python) = support::python_with_aiosmtpd() else { return };
    let tmp = support::TempDir::new("smtp-tls");
    let ca = TestCa::new(&tmp.path().join("ca"));
    let server_cert = ca.issue("smtp", &["127.0.0.1", "localhost"]);
    let (cert, key) = (server_cert.cert.display().to_string(), server_cert.key.display().to_string());

    // STARTTLS.
    let received = tmp.path().join("received-starttls");
    let (mut server, port) = start_server(&python, &received, &["--tlscert", &cert, "--tlskey", &key]);
    // Without the CA: the certificate is not trusted; nothing reaches the server.
    let (failures, _) = deliver_once(&tmp.path().join("untrusted"), target(port, TlsMode::StartTls, None));
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains("STARTTLS") && failures[0].contains("certificate"), "{failures:?}");
    assert!(support::maildir_files(&received).is_empty());
    // With it: delivered over TLS.
    let (failures, id) =
        deliver_once(&tmp.path().join("starttls"), target(port, TlsMode::StartTls, Some(&ca.ca_file())));
    assert!(failures.is_empty(), "{failures:?}");
    server.stop();
    let files = support::maildir_files(&received);
    assert_eq!(files.len(), 1, "{files:?}");
    let text = String::from_utf8_lossy(&std::fs::read(&files[0]).unwrap()).into_owned();
    assert!(text.contains(&id), "the delivered message is ours");

    // Implicit TLS (SMTPS).
    let received = tmp.path().join("received-smtps");
    let (mut server, port) = start_server(&python, &received, &["--smtpscert", &cert, "--smtpskey", &key]);
    let (failures, _) = deliver_once(&tmp.path().join("untrusted-smtps"), target(port, TlsMode::Implicit, None));
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains("connect") && failures[0].contains("certificate"), "{failures:?}");
    let (failures, id) = deliver_once(&tmp.path().join("smtps"), target(port, TlsMode::Implicit, Some(&ca.ca_file())));
    assert!(failures.is_empty(), "{failures:?}");
    server.stop();
    let files = support::maildir_files(&received);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(String::from_utf8_lossy(&std::fs::read(&files[0]).unwrap()).contains(&id));
}

#[test]
fn a_bad_ca_file_is_a_configuration_error() {
    let tmp = support::TempDir::new("smtp-bad-ca");
    let not_pem = tmp.path().join("ca.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let port = support::free_port();
    // Nobody listens: the CA file is checked before connecting.
    let t = target(port, TlsMode::StartTls, Some(&not_pem));
    let (failures, _) = deliver_once(tmp.path(), t);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains("ca_file"), "{failures:?}");
}
