//! Delivery as configured by examples/voicemail.toml (issue "Delivery and follow-up", Done
//! when): an offline call from a client's number at a holiday time lands as an e-mail in the
//! Maildir folder and, over SMTP (a real `python3 -m aiosmtpd`), at the shared address and
//! the client's manager; its metadata names the holiday greeting and its attachment equals the
//! spooled WAV byte for byte. A hostile display name (CR/LF) and caller number (`../`) create
//! no header and no file outside the spool. An unknown caller reaches the shared folder only.
//! The store records each delivery as acknowledged, with its history entry.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use mail_parser::{MessageParser, MimeHeaders};
use voicemail_core::store::DeliveryState;
use voicemail_examples::offline::{Args, run};

/// examples/voicemail.toml with the spool, Maildir and SMTP port moved into `dir`.
fn patched_config(dir: &Path, smtp_port: u16) -> PathBuf {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(examples.join("voicemail.toml")).unwrap();
    let mut t: toml::Table = text.parse().unwrap();
    t["spool"] = toml::Value::String(dir.join("spool").display().to_string());
    let d = t["delivery"].as_table_mut().unwrap();
    d["maildir"]["root"] = toml::Value::String(dir.join("Maildir").display().to_string());
    d["smtp"]["port"] = toml::Value::Integer(i64::from(smtp_port));
    t["directory"]["path"] = toml::Value::String(examples.join("clients.csv").display().to_string());
    let path = dir.join("voicemail.toml");
    std::fs::write(&path, toml::to_string(&t).unwrap()).unwrap();
    path
}

fn call(config: &Path, input: &Path, caller: &str, name: &str, at: &str) -> voicemail_examples::offline::Outcome {
    let mut a = Args::new(input, caller);
    a.name = Some(name.to_owned());
    a.config = Some(config.to_path_buf());
    a.at = Some(at.parse().unwrap());
    run(&a).unwrap()
}

struct Mail {
    raw: Vec<u8>,
}

impl Mail {
    fn read(path: &Path) -> Self {
        Self { raw: std::fs::read(path).unwrap() }
    }
    fn header(&self, name: &str) -> Option<String> {
        let m = MessageParser::default().parse(&self.raw).unwrap();
        m.header_raw(name).map(|v| v.trim().to_owned())
    }
    fn header_names(&self) -> Vec<String> {
        let m = MessageParser::default().parse(&self.raw).unwrap();
        m.headers().iter().map(|h| h.name().to_ascii_lowercase()).collect()
    }
    fn attachment(&self) -> Vec<u8> {
        let m = MessageParser::default().parse(&self.raw).unwrap();
        let a = m.attachment(0).expect("one attachment");
        assert_eq!(a.content_type().map(|c| (c.ctype(), c.subtype())), Some(("audio", Some("wav"))));
        a.contents().to_vec()
    }
}

#[test]
fn client_call_on_a_holiday_reaches_folder_and_manager() {
    let dir = temp_dir("deliver");
    let Some(smtp) = SmtpServer::start(&dir.path().join("smtp")) else { return };
    let config = patched_config(dir.path(), smtp.port());
    let input = dir.path().join("speech.wav");
    write_wav8k(&input, &speechlike(8000 * 4));

    // 8 (495) 123-45-67 is ООО «Ромашка» in examples/clients.csv, written another way here.
    let out = call(&config, &input, "+7 495 123 45 67", "Ivan Petrov", "2027-01-03T12:00:00+03:00");
    let m = &out.meta;
    assert_eq!(m.greeting, "new_year", "the holiday greeting is named in the metadata");
    assert!(out.pending().is_empty(), "delivered on the first attempt: {:?}", out.pending());
    let states: Vec<_> = out.stored.deliveries.iter().map(|d| (d.target.as_str(), d.state)).collect();
    assert_eq!(states, [("maildir", DeliveryState::Delivered), ("smtp", DeliveryState::Delivered)]);
    let report = out.delivery.as_ref().unwrap();
    assert_eq!((report.attempted, report.delivered.len()), (2, 2));
    let history: Vec<String> = out.stored.history.iter().map(|h| h.event.describe()).collect();
    assert!(history[0].starts_with("recorded"), "{history:?}");
    assert!(history.iter().any(|h| h.starts_with("delivered to maildir")), "{history:?}");
    assert!(history.iter().any(|h| h.starts_with("delivered to smtp")), "{history:?}");
    let wav = std::fs::read(m.wav_path.as_ref().unwrap()).unwrap();
    assert_eq!(wav.len(), 44 + 8000 * 4 * 2);

    let folder = maildir_messages(&dir.path().join("Maildir/.Voicemail"));
    assert_eq!(folder.len(), 1, "one e-mail in the shared Maildir folder");
    let mail = Mail::read(&folder[0]);
    assert_eq!(mail.attachment(), wav, "attachment bytes equal the spooled WAV");
    assert_eq!(mail.header("X-Voicemail-Id").as_deref(), Some(m.id.as_str()));
    let parser = MessageParser::default().header_text(mail_parser::HeaderName::Other("X-Voicemail-Client".into()));
    let client =
        parser.parse(&mail.raw).unwrap().header("X-Voicemail-Client").and_then(|h| h.as_text()).map(str::to_owned);
    assert_eq!(client.as_deref(), Some("ООО «Ромашка»"));

    let sent = smtp.messages();
    assert_eq!(sent.len(), 1, "one SMTP transaction");
    let mail = Mail::read(&sent[0]);
    let rcpt = mail.header("X-RcptTo").unwrap();
    assert!(rcpt.contains("anna.petrova@example.com"), "the manager received it: {rcpt}");
    assert!(rcpt.contains("sales@example.com"), "the shared address received it: {rcpt}");
    assert_eq!(mail.attachment(), wav);
    // The caller in E.164, however the network wrote it.
    assert_eq!(mail.header("X-Voicemail-Caller").as_deref(), Some("+74951234567"));
}

#[test]
fn unknown_caller_goes_to_the_shared_folder_only() {
    let dir = temp_dir("unknown");
    let Some(smtp) = SmtpServer::start(&dir.path().join("smtp")) else { return };
    let config = patched_config(dir.path(), smtp.port());
    let input = dir.path().join("speech.wav");
    write_wav8k(&input, &speechlike(8000));
    let out = call(&config, &input, "+7 999 000 00 00", "Stranger", "2027-03-03T11:00:00+03:00");
    assert_eq!(out.meta.greeting, "default", "business hours on a Wednesday: the default greeting");
    assert!(out.pending().is_empty(), "{:?}", out.pending());
    let sent = smtp.messages();
    assert_eq!(sent.len(), 1);
    let rcpt = Mail::read(&sent[0]).header("X-RcptTo").unwrap();
    assert!(!rcpt.contains("anna.petrova") && !rcpt.contains("boris") && !rcpt.contains("carol"), "{rcpt}");
    assert!(Mail::read(&sent[0]).header("X-Voicemail-Client").is_none());
}

#[test]
fn hostile_caller_strings_add_no_header_and_no_file() {
    let dir = temp_dir("hostile");
    let Some(smtp) = SmtpServer::start(&dir.path().join("smtp")) else { return };
    let config = patched_config(dir.path(), smtp.port());
    let input = dir.path().join("speech.wav");
    write_wav8k(&input, &speechlike(800));
    let name = "Eve\r\nBcc: victim@example.com\r\nX-Injected: 1";
    let number = "../../../etc/passwd\r\nX-Evil: 1";
    let out = call(&config, &input, number, name, "2027-03-06T23:00:00+03:00");
    assert_eq!(out.meta.greeting, "after_hours");

    for path in maildir_messages(&dir.path().join("Maildir/.Voicemail")).iter().chain(&smtp.messages()) {
        let mail = Mail::read(path);
        let names = mail.header_names();
        for bad in ["bcc", "x-injected", "x-evil"] {
            assert!(!names.contains(&bad.to_owned()), "{bad} header injected into {}", path.display());
        }
        let text = String::from_utf8_lossy(&mail.raw);
        assert!(!text.lines().any(|l| l.starts_with("Bcc:") || l.starts_with("X-Injected") || l.starts_with("X-Evil")));
    }
    // Every file the call wrote is inside the test directory's spool, Maildir or SMTP store.
    for f in all_files(dir.path()) {
        let rel = f.strip_prefix(dir.path()).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_string_lossy().to_string();
        assert!(
            ["spool", "Maildir", "smtp", "voicemail.toml", "speech.wav"].contains(&top.as_str()),
            "{}",
            f.display()
        );
    }
    assert!(!Path::new("/etc/passwd.wav").exists());
}
