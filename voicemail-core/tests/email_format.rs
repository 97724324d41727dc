//! The e-mail built for a message, read back with a real parser (mail-parser): the WAV
//! attachment's bytes equal the recording, the Subject, `X-Voicemail-*`, `Message-ID` and
//! `Date` headers are present and right, the body lines name number, name, local time in the
//! mailbox zone, duration, end reason, client and manager; caller-controlled CR/LF (in the
//! display name, the caller number and the called number) never adds a header or a body
//! line; a zero-length message is built like any other.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use mail_parser::{MessageParser, MimeHeaders};
use voicemail_core::deliver::{EmailContext, Manager, build_email, empty_wav};

fn ctx() -> EmailContext {
    let mut ctx = EmailContext::new(support::moscow(), "voicemail@example.org");
    ctx.to = vec!["shared@example.org".to_owned()];
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

    assert_eq!(msg.subject(), Some("Voicemail from Ivan Petrov <+74951234567> (0:42) [Acme LLC]"));
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
    assert_eq!(att.attachment_name(), Some("voicemail-2026-11-27_143205-+74951234567.wav"));
}

#[test]
fn body_lines() {
    let meta = support::sample_meta("msg-2", "+74951234567", Some("Ivan Petrov"));
    let email = build_email(&meta, &support::sample_wav(10, 2), &matched_ctx()).unwrap();
    let msg = MessageParser::default().parse(&email.bytes).unwrap();
    let body = msg.body_text(0).unwrap();
    let lines: Vec<&str> = body.lines().collect();
    for expected in [
        "Number:    +74951234567",
        "Name:      Ivan Petrov",
        "Called:    +74950000000",
        "Time:      2026-11-27 14:32:05 MSK (Europe/Moscow)",
        "Duration:  0:42",
        "Ended by:  hang-up",
        "Greeting:  business-hours",
        "Client:    Acme LLC",
        "Manager:   Olga Smirnova <olga@example.org>",
        "Message:   msg-2",
    ] {
        assert!(lines.contains(&expected), "missing {expected:?} in {lines:#?}");
    }

    // Unknown caller: no client, no manager, no X-Voicemail-Client, no extra recipient.
    let email = build_email(&meta, &[], &ctx()).unwrap();
    let msg = MessageParser::default().parse(&email.bytes).unwrap();
    let body = msg.body_text(0).unwrap();
    assert!(!body.contains("Client:") && !body.contains("Manager:"), "{body}");
    assert!(msg.header_raw("X-Voicemail-Client").is_none());
    assert_eq!(msg.subject(), Some("Voicemail from Ivan Petrov <+74951234567> (0:42)"));
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
    assert!(subject.contains("Ivan  Bcc: victim@example.com  X-Injected: 1 "), "{subject:?}");
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
    assert_eq!(msg.subject(), Some("Voicemail from +74951234567 (0:00)"));
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
