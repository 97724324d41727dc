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
//! message when `ca_file` names that CA; without it the certificate is refused, before any
//! LOGIN. Without a
//! dovecot binary the test prints "SKIPPED: dovecot not installed" and passes, or fails when
//! `VOICEMAIL_REQUIRE_INTEROP` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use jiff::Timestamp;
use voicemail_core::deliver::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, ImapTarget, Target, TlsMode, build_email};
use voicemail_core::followup::FollowUp;
use voicemail_core::store::DeliveryState;
use voicemail_core::{CallSetup, Mailbox, route};

fn command_output(cmd: &str, arg: &str) -> String {
    let out = Command::new(cmd).arg(arg).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A Dovecot instance in `dir`, listening on 127.0.0.1:`port`, user `vm` / `secret`.
struct Dovecot {
    server: support::ServerGuard,
    port: u16,
    /// The IMAPS (implicit TLS) port, when started with a certificate.
    imaps_port: Option<u16>,
    maildir: PathBuf,
    log: PathBuf,
}

impl Dovecot {
    fn start(binary: &Path, dir: &Path) -> Dovecot {
        Self::start_tls(binary, dir, None)
    }

    /// [`Dovecot::start`]; with `tls`, `ssl = required` with that certificate and an IMAPS
    /// listener too.
    fn start_tls(binary: &Path, dir: &Path, tls: Option<&voicemail_testkit::IssuedCert>) -> Dovecot {
        let port = support::free_port();
        let imaps_port = tls.map(|_| support::free_port());
        let ssl = match tls {
            None => "ssl = no\n".to_owned(),
            Some(cert) => format!("ssl = required\nssl_cert = <{}\nssl_key = <{}\n", cert.chain.display(), cert.key.display()),
        };
        let home = dir.join("home").join("vm");
        std::fs::create_dir_all(&home).unwrap();
        // Dovecot refuses mail access as root: as root the mail user is nobody/nogroup and owns
        // its home; otherwise everything runs as the current user.
        let uid: u32 = command_output("id", "-u").parse().unwrap();
        let (mail_uid, mail_gid, extra) = if uid == 0 {
            std::os::unix::fs::chown(dir.join("home"), Some(65534), Some(65534)).unwrap();
            std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
            (65534, 65534, String::new())
        } else {
            let gid: u32 = command_output("id", "-g").parse().unwrap();
            let user = command_output("id", "-un");
            let group = command_output("id", "-gn");
            (
                uid,
                gid,
                format!(
                    "default_login_user = {user}\ndefault_internal_user = {user}\ndefault_internal_group = {group}\n"
                ),
            )
        };
        let passwd = dir.join("passwd");
        std::fs::write(&passwd, format!("vm:{{PLAIN}}secret:{mail_uid}:{mail_gid}::{}::\n", home.display())).unwrap();
        let log = dir.join("dovecot.log");
        let d = dir.display();
        let conf = format!(
            "protocols = imap
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
instance_name = voicemail-test-{port}
log_path = {log}
{ssl}disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
{extra}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {passwd}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
    ssl = {imaps_ssl}
  }}
}}
",
            log = log.display(),
            passwd = passwd.display(),
            imaps = imaps_port.unwrap_or(0),
            imaps_ssl = if tls.is_some() { "yes" } else { "no" },
        );
        let conf_path = dir.join("dovecot.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut server = support::ServerGuard::spawn(
            "dovecot",
            Command::new(binary).arg("-F").arg("-c").arg(&conf_path).stdout(Stdio::null()).stderr(Stdio::inherit()),
        );
        let up = support::wait_for_port(port, Duration::from_secs(20));
        if !up {
            eprintln!("dovecot log:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        server.assert_running("while starting");
        assert!(up, "dovecot did not listen on 127.0.0.1:{port} within 20 s");
        if let Some(imaps) = imaps_port {
            assert!(support::wait_for_port(imaps, Duration::from_secs(20)), "no IMAPS listener on {imaps}");
        }
        Dovecot { server, port, imaps_port, maildir: home.join("Maildir"), log }
    }

    fn target(&self, password: &str) -> ImapTarget {
        ImapTarget {
            host: "127.0.0.1".to_owned(),
            port: self.port,
            starttls: false,
            tls: TlsMode::None,
            ca_file: None,
            username: "vm".to_owned(),
            password: password.to_owned(),
            folder: "Voicemail".to_owned(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

#[test]
fn append_into_dovecot_folder_once() {
    let Some(dovecot) = support::dovecot() else { return };
    let tmp = support::TempDir::new("imap");
    let mut dovecot = Dovecot::start(&dovecot, &tmp.path().join("dovecot"));
    let target = dovecot.target("secret");

    let t0: Timestamp = "2026-11-27T11:33:00Z".parse().unwrap();
    let mut cfg = support::mailbox_config(tmp.path());
    cfg.delivery.imap = Some(target.clone());
    let mailbox = Mailbox::open(cfg.clone()).unwrap();
    let meta = support::record(&mailbox, CallSetup::new("+74951234567", t0), 0.5, t0);
    let wav = std::fs::read(meta.wav_path.as_ref().unwrap()).unwrap();
    let report = mailbox.deliver_all_due(t0).unwrap();
    if !report.failed.is_empty() {
        eprintln!("dovecot log:\n{}", std::fs::read_to_string(&dovecot.log).unwrap_or_default());
    }
    assert_eq!(report.delivered, [(meta.id.clone(), "imap".to_owned())], "{report:?}");
    let delivery = mailbox.show(&meta.id).unwrap().deliveries.remove(0);
    assert!(delivery.ack.as_deref().unwrap().contains("APPENDUID"), "{delivery:?}");
    assert_eq!(delivery.state, DeliveryState::Delivered);

    let folder = dovecot.maildir.join(".Voicemail");
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
    let err = dovecot.target("wrong").deliver(&again).unwrap_err();
    assert!(err.to_string().contains("LOGIN"), "{err}");
    assert!(!err.is_permanent(), "{err}");

    // STARTTLS required but the server offers none (ssl = no): refused, never a plaintext LOGIN.
    let mut tls = dovecot.target("secret");
    tls.starttls = true;
    let err = tls.deliver(&again).unwrap_err();
    assert!(err.to_string().contains("STARTTLS"), "{err}");
    assert!(!err.is_permanent(), "{err}");
    let log = std::fs::read_to_string(&dovecot.log).unwrap_or_default();
    // Two logins so far (delivery and retry); the STARTTLS attempt added none.
    assert!(log.matches("Login: user=<vm>").count() <= 2, "{log}");

    // Server gone: connection refused is an error too.
    dovecot.server.stop();
    let err = target.deliver(&again).unwrap_err();
    assert!(err.to_string().contains(&format!("127.0.0.1:{}", dovecot.port)), "{err}");
    assert!(!err.is_permanent(), "{err}");
}

#[test]
fn starttls_and_implicit_tls_with_a_company_ca() {
    let Some(dovecot) = support::dovecot() else { return };
    let tmp = support::TempDir::new("imap-tls");
    let ca = voicemail_testkit::TestCa::new(&tmp.path().join("ca"));
    let cert = ca.issue("dovecot", &["127.0.0.1", "localhost"]);
    let dovecot = Dovecot::start_tls(&dovecot, &tmp.path().join("dovecot"), Some(&cert));
    let t0: Timestamp = "2026-12-01T11:00:00Z".parse().unwrap();
    let folder = dovecot.maildir.join(".Voicemail");
    let log = || std::fs::read_to_string(&dovecot.log).unwrap_or_default();

    // The certificate is not trusted without the CA: refused before LOGIN.
    let mut untrusted = dovecot.target("secret");
    untrusted.tls = TlsMode::StartTls;
    let mut cfg = support::mailbox_config(&tmp.path().join("untrusted"));
    cfg.delivery.imap = Some(untrusted);
    let mailbox = Mailbox::open(cfg).unwrap();
    support::record(&mailbox, CallSetup::new("+74951234567", t0), 0.3, t0);
    let report = mailbox.deliver_all_due(t0).unwrap();
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(report.failed[0].2.contains("STARTTLS"), "{report:?}");
    assert!(!log().contains("Login: user=<vm>"), "{}", log());

    // STARTTLS, then implicit TLS, with `ca_file`: one message each.
    for (n, (mode, port)) in [(TlsMode::StartTls, dovecot.port), (TlsMode::Implicit, dovecot.imaps_port.unwrap())].into_iter().enumerate() {
        let mut target = dovecot.target("secret");
        target.port = port;
        target.tls = mode;
        target.ca_file = Some(ca.ca_file());
        let mut cfg = support::mailbox_config(&tmp.path().join(format!("trusted-{n}")));
        cfg.delivery.imap = Some(target);
        let mailbox = Mailbox::open(cfg).unwrap();
        let meta = support::record(&mailbox, CallSetup::new("+74951234567", t0), 0.3, t0);
        let report = mailbox.deliver_all_due(t0).unwrap();
        assert_eq!(report.delivered, [(meta.id.clone(), "imap".to_owned())], "{mode:?}: {report:?}\n{}", log());
        assert_eq!(support::maildir_files(&folder).len(), n + 1, "{mode:?}");
    }
    assert!(log().contains("TLS"), "the logins were over TLS: {}", log());
}
