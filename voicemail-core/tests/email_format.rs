//! The e-mail built for a message, read back with a real parser (mail-parser): the WAV
//! attachment's bytes equal the recording and it is named after the E.164 number and the local
//! time, the Subject, `X-Voicemail-*`, `Message-ID` and `Date` headers are present and right,
//! the body lines name the number (E.164 and national), name, local time in the mailbox zone,
//! duration, how the call ended in words, the greeting's label, client and manager, and the
//! message's page; `language = "ru"` gives a Russian subject and body; a configured template
//! changes the subject; caller-controlled CR/LF (in the display name, the caller number and
//! the called number) never adds a header or a body line, whatever the template; a
//! zero-length message is built like any other; reminders have their own Message-ID per step,
//! refer to the message's e-mail and go to their recipients only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use mail_parser::{MessageParser, MimeHeaders};
use voicemail_core::config::Config;
use voicemail_core::deliver::{EmailContext, Manager, Reminder, build_email, build_reminder, empty_wav};
use voicemail_core::followup::{FollowUp, ReminderStep};
use voicemail_core::route;
use voicemail_core::template::{Language, TemplateOverrides, Templates};

fn ctx() -> EmailContext {
    let mut ctx = EmailContext::new(support::moscow(), "voicemail@example.org");
    ctx.to = vec!["shared@example.org".to_owned()];
    ctx.phone_region = Some("RU".to_owned());
    ctx
}

fn matched_ctx() -> EmailContext {
    let mut ctx = ctx();
    ctx.client = Some("Acme LLC".to_owned());
    ctx.manager = Some(Manager { name: "Olga Smirnova".to_owned(), email: "olga@example.org".to_owned() });
    ctx
}

/// Header names at the top level of the message, in order (lowercased).
fn header_names(bytes: &[u8]) -> Vec<String> {
    let msg = MessageParser::default().parse(bytes).unwrap();
    msg.headers().iter().map(|h| h.name().to_ascii_lowercase()).collect()
}

#[test]
fn attachment_bytes_and_headers() {
    let wav = support::sample_wav(8000, 1);
    let meta = support::sample_meta("msg-1", "+74951234567", Some("Ivan Petrov"));
    let email = build_email(&meta, &wav, &matched_ctx()).unwrap();
    let msg = MessageParser::default().parse(&email.bytes).unwrap();

    assert_eq!(msg.subject(), Some("Voicemail from +74951234567 (Ivan Petrov), 0:42 [Acme LLC]"));
    assert_eq!(msg.header_raw("X-Voicemail-Id").map(str::trim), Some("msg-1"));
    assert_eq!(msg.header_raw("X-Voicemail-Caller").map(str::trim), Some("+74951234567"));
    assert_eq!(msg.header_raw("X-Voicemail-Duration-Ms").map(str::trim), Some("42400"));
    assert_eq!(msg.header_raw("X-Voicemail-Client").map(str::trim), Some("Acme LLC"));
    assert_eq!(msg.message_id(), Some(email.message_id.as_str()));
    assert!(email.message_id.ends_with("@example.org"), "{}", email.message_id);
    // Date in the mailbox's zone: 11:32:05Z is 14:32:05 +0300.
    assert_eq!(msg.header_raw("Date").map(str::trim), Some("Fri, 27 Nov 2026 14:32:05 +0300"));
    assert_eq!(msg.date().map(|d| d.to_timestamp()), Some(1_795_779_125));
    let to: Vec<_> = msg.to().unwrap().iter().filter_map(|a| a.address()).collect();
    assert_eq!(to, ["shared@example.org", "olga@example.org"]);
    assert_eq!(email.extra_recipients, ["olga@example.org"]);

    assert_eq!(msg.attachment_count(), 1);
    let att = msg.attachment(0).unwrap();
    assert_eq!(att.contents(), wav.as_slice());
    let ct = att.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("audio", Some("wav")));
    assert_eq!(att.attachment_name(), Some("+74951234567_2026-11-27_14-32.wav"));
    // A national number signalled without the country code is named in E.164 too.
    let meta = support::sample_meta("msg-1b", "8 (495) 123-45-67", None);
    let email = build_email(&meta, &wav, &matched_ctx()).unwrap();
    let msg = MessageParser::default().parse(&email.bytes).unwrap();
    assert_eq!(msg.attachment(0).unwrap().attachment_name(), Some("+74951234567_2026-11-27_14-32.wav"));
    assert_eq!(msg.header_raw("X-Voicemail-Caller").map(str::trim), Some("+74951234567"));
}

#[test]
fn body_lines() {
    let meta = support::sample_meta("msg-2", "+74951234567", Some("Ivan Petrov"));
    let email = build_email(&meta, &support::sample_wav(10, 2), &matched_ctx()).unwrap();
    let msg = MessageParser::default().parse(&email.bytes).unwrap();
    let body = msg.body_text(0).unwrap();
    let lines: Vec<&str> = body.lines().collect();
    for expected in [
        "New voicemail message for voicemail from client Acme LLC.",
        "Caller:        +74951234567 (8 (495) 123-45-67)",
        "Name:          Ivan Petrov",
        "Dialled:       +74950000000",
        "Time:          2026-11-27 14:32 (Europe/Moscow)",
        "Duration:      0:42",
        "How it ended:  the caller hung up",
        "Greeting:      Business hours",
        "Client:        Acme LLC",
        "Manager:       Olga Smirnova <olga@example.org>",
        "The recording is attached. Message msg-2.",
    ] {
        assert!(lines.contains(&expected), "missing {expected:?} in {lines:#?}");
    }
    // No internal words, no link without a public URL.
    assert!(!body.contains("hang-up") && !body.contains("business-hours") && !body.contains("http"), "{body}");

    // The configured label of the greeting, the link to the message's page, the assignee.
    let mut c = matched_ctx();
    c.greeting_label = Some("Office hours".to_owned());
    c.message_url = Some("https://vm.example.org/messages/msg-2".to_owned());
    c.assigned_to = Some("Boris".to_owned());
    let email = build_email(&meta, &[], &c).unwrap();
    let body = MessageParser::default().parse(&email.bytes).unwrap().body_text(0).unwrap().into_owned();
    for expected in [
        "Greeting:      Office hours",
        "Assigned to:   Boris",
        "Listen and mark it called back: https://vm.example.org/messages/msg-2",
    ] {
        assert!(body.lines().any(|l| l == expected), "missing {expected:?} in {body}");
    }

    // Unknown caller: no client, no manager, no X-Voicemail-Client, no extra recipient.
    let email = build_email(&meta, &[], &ctx()).unwrap();
    let msg = MessageParser::default().parse(&email.bytes).unwrap();
    let body = msg.body_text(0).unwrap();
    assert!(!body.contains("Client:") && !body.contains("Manager:"), "{body}");
    assert!(msg.header_raw("X-Voicemail-Client").is_none());
    assert_eq!(msg.subject(), Some("Voicemail from +74951234567 (Ivan Petrov), 0:42"));
    assert!(email.extra_recipients.is_empty());
}

#[test]
fn crlf_injection_adds_no_header_or_line() {
    let evil_name = "Ivan\r\nBcc: victim@example.com\r\nX-Injected: 1\0";
    let evil_number = "+7495\r\nX-Injected: 2\r\n\r\n../../etc/passwd";
    let mut meta = support::sample_meta("msg-3", evil_number, Some(evil_name));
    meta.called = "100\nX-Injected: 3".to_owned();
    let wav = support::sample_wav(100, 3);
    let email = build_email(&meta, &wav, &matched_ctx()).unwrap();

    let reference =
        build_email(&support::sample_meta("msg-3", "+74951234567", Some("Ivan")), &wav, &matched_ctx()).unwrap();
    assert_eq!(header_names(&email.bytes), header_names(&reference.bytes));
    let names = header_names(&email.bytes);
    assert!(!names.iter().any(|n| n == "bcc" || n == "x-injected"), "{names:?}");

    // No raw CR or LF inside any header line: every header section line is a header or a
    // folded continuation, and none starts with an injected name.
    let text = String::from_utf8_lossy(&email.bytes);
    let head = text.split("\r\n\r\n").next().unwrap();
    for line in head.split("\r\n") {
        assert!(!line.starts_with("Bcc:") && !line.starts_with("X-Injected:"), "{line:?}");
        assert!(!line.contains('\n') && !line.contains('\r') && !line.contains('\0'), "{line:?}");
    }

    let msg = MessageParser::default().parse(&email.bytes).unwrap();
    // The parsed values carry the text with the controls turned into spaces.
    let subject = msg.subject().unwrap();
    assert!(subject.contains("Ivan Bcc: victim@example.com X-Injected: 1"), "{subject:?}");
    assert!(!subject.contains(['\r', '\n', '\0']));
    let caller = msg.header("X-Voicemail-Caller").and_then(|v| v.as_text()).unwrap();
    assert_eq!(caller, "+7495  X-Injected: 2    ../../etc/passwd");

    // Body: exactly the lines of the reference layout, none starting with the injection.
    let body = msg.body_text(0).unwrap();
    let ref_msg = MessageParser::default().parse(&reference.bytes).unwrap();
    assert_eq!(body.lines().count(), ref_msg.body_text(0).unwrap().lines().count());
    assert!(!body.lines().any(|l| l.starts_with("X-Injected") || l.starts_with("Bcc")), "{body}");

    // The attachment file name holds only [A-Za-z0-9+_.-]: no path separators.
    let name = msg.attachment(0).unwrap().attachment_name().unwrap();
    assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || "+_.-".contains(c)), "unsafe attachment name {name:?}");
    assert!(!name.contains('/'));
    assert_eq!(msg.attachment(0).unwrap().contents(), wav.as_slice());
}

#[test]
fn zero_length_message_is_built_like_any_other() {
    let mut meta = support::sample_meta("msg-4", "+74951234567", None);
    meta.duration_ms = 0;
    let wav = empty_wav();
    let email = build_email(&meta, &wav, &ctx()).unwrap();
    let msg = MessageParser::default().parse(&email.bytes).unwrap();
    assert_eq!(msg.subject(), Some("Voicemail from +74951234567, 0:00"));
    assert_eq!(msg.header_raw("X-Voicemail-Duration-Ms").map(str::trim), Some("0"));
    assert_eq!(msg.attachment(0).unwrap().contents(), wav.as_slice());
    assert_eq!(wav.len(), 44);
}

#[test]
fn identity_is_stable_across_builds() {
    let meta = support::sample_meta("msg-5", "+74951234567", Some("Ivan Petrov"));
    let wav = support::sample_wav(50, 5);
    let a = build_email(&meta, &wav, &ctx()).unwrap();
    let b = build_email(&meta, &wav, &ctx()).unwrap();
    assert_eq!(a.message_id, b.message_id);
    let other = build_email(&support::sample_meta("msg-6", "+7", None), &wav, &ctx()).unwrap();
    assert_ne!(a.message_id, other.message_id);
}

#[test]
fn bad_addresses_are_refused() {
    let meta = support::sample_meta("msg-7", "+74951234567", None);
    let mut c = ctx();
    c.manager = Some(Manager { name: "M".to_owned(), email: "olga@example.org>\r\nBcc: x@y".to_owned() });
    assert!(build_email(&meta, &[], &c).is_err());
    let mut c = ctx();
    c.from = "not an address".to_owned();
    assert!(build_email(&meta, &[], &c).is_err());
}

#[test]
fn russian_subject_and_body() {
    let mut c = matched_ctx();
    c.templates = Templates::builtin(Language::Ru);
    c.mailbox = "Продажи".to_owned();
    let meta = support::sample_meta("msg-ru", "84951234567", Some("Иван Петров"));
    let email = build_email(&meta, &support::sample_wav(10, 9), &c).unwrap();
    let msg = MessageParser::default().parse(&email.bytes).unwrap();
    assert_eq!(msg.subject(), Some("Голосовое сообщение от +74951234567 (Иван Петров), 0:42 [Acme LLC]"));
    let body = msg.body_text(0).unwrap();
    for expected in [
        "Новое голосовое сообщение в ящике «Продажи» от клиента Acme LLC.",
        "Звонил:        +74951234567 (8 (495) 123-45-67)",
        "Имя:           Иван Петров",
        "Когда:         27.11.2026 14:32 (Europe/Moscow)",
        "Как закончился звонок: абонент положил трубку",
        "Менеджер:      Olga Smirnova <olga@example.org>",
    ] {
        assert!(body.lines().any(|l| l == expected), "missing {expected:?} in {body}");
    }
    assert_eq!(msg.attachment(0).unwrap().attachment_name(), Some("+74951234567_2026-11-27_14-32.wav"));
}

#[test]
fn configured_templates_from_the_configuration() {
    // Through the configuration, as the mailbox builds it.
    let toml = r#"
mailbox = "Sales"
timezone = "Europe/Moscow"
spool = "spool"
[greetings]
business-hours = { file = "builtin:default", label = "Office hours" }
[email]
language = "ru"
subject = "VM {{ number }} / {{ caller_national }} / {{ greeting }} / {{ ended }}"
[web]
public_url = "https://vm.example.org/"
[delivery.smtp]
host = "127.0.0.1"
port = 2525
from = "vm@example.org"
"#;
    let cfg = Config::from_toml_str(toml).unwrap();
    assert_eq!(cfg.public_url.as_deref(), Some("https://vm.example.org"));
    let meta = support::sample_meta("msg-8", "+74951234567", None);
    let ctx = route::email_context(&cfg, &meta, &FollowUp::New);
    let email = build_email(&meta, &[], &ctx).unwrap();
    let msg = MessageParser::default().parse(&email.bytes).unwrap();
    // The mailbox's own number has no region without a directory: the caller's own country's.
    assert_eq!(msg.subject(), Some("VM +74951234567 / 8 (495) 123-45-67 / Office hours / абонент положил трубку"));
    let body = msg.body_text(0).unwrap();
    assert!(body.contains("Прослушать и отметить, что перезвонили: https://vm.example.org/messages/msg-8"), "{body}");
    // The built-in body stays Russian.
    assert!(body.starts_with("Новое голосовое сообщение в ящике «Sales»."), "{body}");

    // A template cannot add a header, whatever the caller sends.
    let o = TemplateOverrides { subject: Some("{{ caller_name }}\nBcc: {{ caller }}".into()), ..Default::default() };
    let mut c = ctx.clone();
    c.templates = Templates::new(Language::En, &o).unwrap();
    let evil = support::sample_meta("msg-9", "+7495\r\nX-Injected: 1", Some("Eve\r\nX-Injected: 2"));
    let email = build_email(&evil, &[], &c).unwrap();
    let names = header_names(&email.bytes);
    assert!(!names.iter().any(|n| n == "bcc" || n == "x-injected"), "{names:?}");
}

#[test]
fn reminders() {
    let meta = support::sample_meta("msg-10", "+74951234567", Some("Ivan Petrov"));
    let wav = support::sample_wav(10, 10);
    let c = matched_ctx();
    let reminder = |step, escalated| Reminder {
        step,
        to: vec!["olga@example.org".to_owned(), "boss@example.org".to_owned()],
        waited: std::time::Duration::from_secs(5 * 3600 + 600),
        business_hours: true,
        escalated,
        date: "2026-11-27T17:00:00Z".parse().unwrap(),
    };
    let original = build_email(&meta, &wav, &c).unwrap();
    let first = build_reminder(&meta, &wav, &c, &reminder(ReminderStep::Remind(1), false)).unwrap();
    let again = build_reminder(&meta, &wav, &c, &reminder(ReminderStep::Remind(1), false)).unwrap();
    let escalation = build_reminder(&meta, &wav, &c, &reminder(ReminderStep::Escalate, true)).unwrap();
    assert_eq!(first.message_id, again.message_id, "deterministic per step");
    assert_ne!(first.message_id, original.message_id);
    assert_ne!(first.message_id, escalation.message_id);
    assert_eq!(first.extra_recipients, ["olga@example.org", "boss@example.org"]);

    let msg = MessageParser::default().parse(&first.bytes).unwrap();
    assert_eq!(msg.subject(), Some("Reminder: call back +74951234567 (Ivan Petrov) [Acme LLC], waiting 5 h 10 min"));
    assert_eq!(msg.in_reply_to().as_text(), Some(original.message_id.as_str()));
    assert_eq!(msg.header_raw("X-Voicemail-Reminder").map(str::trim), Some("remind-1"));
    let to: Vec<_> = msg.to().unwrap().iter().filter_map(|a| a.address()).collect();
    assert_eq!(to, ["olga@example.org", "boss@example.org"], "the reminder's recipients, not the shared folder");
    assert_eq!(msg.header_raw("Date").map(str::trim), Some("Fri, 27 Nov 2026 20:00:00 +0300"));
    assert_eq!(msg.attachment(0).unwrap().contents(), wav.as_slice());
    let body = msg.body_text(0).unwrap();
    assert!(body.contains("has waited 5 h 10 min of business hours"), "{body}");

    let msg = MessageParser::default().parse(&escalation.bytes).unwrap();
    assert!(msg.subject().unwrap().starts_with("Escalation: call back +74951234567"), "{:?}", msg.subject());

    let mut ru = c.clone();
    ru.templates = Templates::builtin(Language::Ru);
    let email = build_reminder(&meta, &wav, &ru, &reminder(ReminderStep::Escalate, true)).unwrap();
    let msg = MessageParser::default().parse(&email.bytes).unwrap();
    assert_eq!(msg.subject(), Some("Эскалация: перезвоните +74951234567 (Ivan Petrov) [Acme LLC], ждёт 5 ч 10 мин"));

    let mut bad = reminder(ReminderStep::Remind(2), false);
    bad.to = vec!["olga@example.org>\r\nBcc: x@y".to_owned()];
    assert!(build_reminder(&meta, &wav, &c, &bad).is_err());
}
