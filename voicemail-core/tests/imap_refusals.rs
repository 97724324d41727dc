//! What an IMAP server refuses at APPEND is told apart, and reported with its reply. Against a
//! scripted IMAP server on 127.0.0.1 (tests/support/misbehaving_server.py `imap-append`, which
//! accepts LOGIN, CREATE, EXAMINE and SEARCH and answers APPEND as told): a plain `NO` is a
//! permanent error (`imap 127.0.0.1:PORT: APPEND: NO Message rejected by policy`), while `NO`
//! with a temporary response code (RFC 5530 `[OVERQUOTA]`, `[INUSE]`, `[UNAVAILABLE]`,
//! `[LIMIT]`) is transient; `OK` acknowledges.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use voicemail_core::deliver::{DeliveryError, ImapTarget, OutgoingEmail, Target};

fn email() -> OutgoingEmail {
    OutgoingEmail {
        voicemail_id: "append-1".to_owned(),
        message_id: "append-1@example.org".to_owned(),
        bytes: b"Subject: append\r\nMessage-ID: <append-1@example.org>\r\n\r\nbody\r\n".to_vec(),
        extra_recipients: Vec::new(),
        keywords: Vec::new(),
        may_be_stored: true,
    }
}

fn deliver_to(python: &std::path::Path, reply: &str) -> Result<voicemail_core::deliver::Ack, DeliveryError> {
    let (_server, port) = support::start_misbehaving_server(python, "imap-append", &[reply]);
    let mut target = ImapTarget::new("127.0.0.1", port, "vm", "secret", "Voicemail");
    target.connect_timeout = Duration::from_secs(10);
    target.timeout = Duration::from_secs(10);
    let result = target.deliver(&email());
    if let Err(e) = &result {
        eprintln!("{e}");
        assert!(e.to_string().starts_with(&format!("imap 127.0.0.1:{port}: APPEND: ")), "{e}");
    }
    result
}

#[test]
fn plain_no_to_append_is_permanent() {
    let Some(python) = support::python() else { return };
    let err = deliver_to(&python, "NO Message rejected by policy").unwrap_err();
    assert!(err.is_permanent(), "{err:?}");
    assert!(
        matches!(&err, DeliveryError::Imap { step: "APPEND", message, permanent: true, .. }
        if message == "NO Message rejected by policy"),
        "{err:?}"
    );
}

#[test]
fn temporary_response_codes_are_transient() {
    let Some(python) = support::python() else { return };
    for reply in [
        "NO [OVERQUOTA] Quota exceeded (mailbox for user is full)",
        "NO [INUSE] Mailbox is locked by another process",
        "NO [UNAVAILABLE] Storage backend is down",
        "NO [LIMIT] Too many messages in the folder",
    ] {
        let err = deliver_to(&python, reply).unwrap_err();
        assert!(!err.is_permanent(), "{err:?}");
        assert!(err.to_string().ends_with(reply), "{err}");
    }
}

#[test]
fn ok_to_append_acknowledges() {
    let Some(python) = support::python() else { return };
    let ack = deliver_to(&python, "OK [APPENDUID 1 1] APPEND completed").unwrap();
    assert!(!ack.already_present && ack.detail.contains("APPENDUID"), "{ack:?}");
}
