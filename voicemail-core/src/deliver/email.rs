//! Building the RFC 5322 e-mail that carries one voicemail message (mail-builder).
//!
//! Caller-controlled strings (display name, caller number, called number) pass through
//! [`sanitize_line`] before they reach any header or body line: every control character
//! (CR, LF, NUL, TAB, DEL, C1, Unicode line/paragraph separators) becomes a space. On top of
//! that mail-builder RFC 2047-encodes any header text that is not plain printable ASCII. So no
//! caller string can end a header, start a new one, or add a line to the body. The attachment
//! file name is reduced to `[A-Za-z0-9+_.-]`.

use jiff::tz::TimeZone;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;

use super::{DeliveryError, OutgoingEmail, fnv1a64, is_safe_name_char, validate_address};
use crate::message::MessageMeta;

/// A client's manager, who also receives the client's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manager {
    /// The manager's name (shown in the body and the `To:` header).
    pub name: String,
    /// The manager's e-mail address.
    pub email: String,
}

/// Everything besides the message itself that the e-mail names.
#[derive(Debug, Clone, PartialEq)]
pub struct EmailContext {
    /// The mailbox's time zone: the body's local time and the `Date:` header use it.
    pub time_zone: TimeZone,
    /// The `From:` address (also the domain of the generated `Message-ID`).
    pub from: String,
    /// The `From:` display name, for example `Voicemail`.
    pub from_name: Option<String>,
    /// `To:` header addresses (the shared folder's address, if it has one). The manager's
    /// address is added when [`EmailContext::manager`] is set. May be empty: no `To:` header.
    pub to: Vec<String>,
    /// The matched client's name, if the caller is a known client.
    pub client: Option<String>,
    /// The matched client's manager.
    pub manager: Option<Manager>,
}

impl EmailContext {
    /// A context with the given zone and sender, no recipients and no client match.
    pub fn new(time_zone: TimeZone, from: impl Into<String>) -> Self {
        Self {
            time_zone,
            from: from.into(),
            from_name: Some("Voicemail".to_owned()),
            to: Vec::new(),
            client: None,
            manager: None,
        }
    }
}

/// Why an e-mail could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmailError {
    /// The sender, a recipient or the manager's address is not a plain address.
    #[error(transparent)]
    Address(#[from] DeliveryError),
    /// The message id is empty.
    #[error("message id is empty")]
    EmptyId,
    /// The local time could not be formatted.
    #[error("formatting the message time: {0}")]
    Time(#[from] jiff::Error),
    /// mail-builder failed to serialise the message.
    #[error("serialising the e-mail: {0}")]
    Build(#[from] std::io::Error),
}

/// Builds the e-mail for `meta` with its recording attached: `audio/wav` named `….wav` for a
/// WAV (16-bit PCM or G.711), `audio/ogg; codecs=opus` named `….opus` for Ogg/Opus (RFC 7845
/// §9), told apart by the file's first bytes.
///
/// The result's `Message-ID` depends only on the message id and the sender's domain, and the
/// `Date:` only on `meta.started_at`, so building again yields the same identity. A zero-length
/// recording (a caller who hung up during the greeting) is attached like any other.
/// [`OutgoingEmail::extra_recipients`] holds the manager's address when one is set.
pub fn build_email(meta: &MessageMeta, wav: &[u8], ctx: &EmailContext) -> Result<OutgoingEmail, EmailError> {
    if meta.id.as_str().is_empty() {
        return Err(EmailError::EmptyId);
    }
    validate_address(&ctx.from)?;
    for addr in &ctx.to {
        validate_address(addr)?;
    }
    if let Some(m) = &ctx.manager {
        validate_address(&m.email)?;
    }

    let local = meta.started_at.to_zoned_datetime(ctx.time_zone.clone());
    let date_header = jiff::fmt::rfc2822::to_string(&local)?;
    let message_id = message_id_for(meta.id.as_str(), &ctx.from);

    let caller = sanitize_line(&meta.caller);
    let caller = if caller.trim().is_empty() { "unknown".to_owned() } else { caller };
    let caller_name =
        meta.caller_name.as_deref().map(sanitize_line).map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let called = sanitize_line(&meta.called);
    let client = ctx.client.as_deref().map(sanitize_line);
    let duration = format_duration(meta.duration_ms);

    let mut subject = match &caller_name {
        Some(name) => format!("Voicemail from {name} <{caller}> ({duration})"),
        None => format!("Voicemail from {caller} ({duration})"),
    };
    if let Some(client) = &client {
        subject.push_str(&format!(" [{client}]"));
    }

    let body = body_text(meta, ctx, &local, &caller, caller_name.as_deref(), &called, &duration);
    let ogg = wav.starts_with(b"OggS");
    let filename = attachment_filename(&local, &meta.caller, if ogg { "opus" } else { "wav" });
    let content_type = if ogg {
        ContentType::new("audio/ogg").attribute("codecs", "opus").attribute("name", filename.clone())
    } else {
        ContentType::new("audio/wav").attribute("name", filename.clone())
    };

    let from_name = ctx.from_name.as_deref().map(sanitize_line);
    let mut to: Vec<Address<'_>> = ctx.to.iter().map(|a| Address::from(a.as_str())).collect();
    if let Some(m) = &ctx.manager {
        to.push(Address::new_address(Some(sanitize_line(&m.name)), m.email.as_str()));
    }

    let mut builder = MessageBuilder::new()
        .message_id(MessageId::new(message_id.clone()))
        .header("Date", Raw::new(date_header))
        .from(Address::new_address(from_name, ctx.from.as_str()))
        .subject(Text::new(subject))
        .header("X-Voicemail-Id", Text::new(sanitize_line(meta.id.as_str())))
        .header("X-Voicemail-Caller", Text::new(caller.clone()))
        .header("X-Voicemail-Duration-Ms", Raw::new(meta.duration_ms.to_string()));
    if !to.is_empty() {
        builder = builder.to(Address::new_list(to));
    }
    if let Some(client) = &client {
        builder = builder.header("X-Voicemail-Client", Text::new(client.clone()));
    }
    let bytes = builder.text_body(body).attachment(content_type, filename, wav.to_vec()).write_to_vec()?;

    Ok(OutgoingEmail {
        voicemail_id: meta.id.to_string(),
        message_id,
        bytes,
        extra_recipients: ctx.manager.iter().map(|m| m.email.clone()).collect(),
    })
}

fn body_text(
    meta: &MessageMeta,
    ctx: &EmailContext,
    local: &jiff::ZonedDateTime,
    caller: &str,
    caller_name: Option<&str>,
    called: &str,
    duration: &str,
) -> String {
    let zone = ctx.time_zone.iana_name().unwrap_or("local");
    let mut lines = vec![
        "New voicemail message".to_owned(),
        String::new(),
        format!("Number:    {caller}"),
        format!("Name:      {}", caller_name.unwrap_or("(none)")),
        format!("Called:    {called}"),
        format!("Time:      {} ({zone})", local.strftime("%Y-%m-%d %H:%M:%S %Z")),
        format!("Duration:  {duration}"),
        format!("Ended by:  {}", meta.end_reason),
        format!("Greeting:  {}", sanitize_line(&meta.greeting)),
    ];
    if let Some(client) = &ctx.client {
        lines.push(format!("Client:    {}", sanitize_line(client)));
    }
    if let Some(m) = &ctx.manager {
        lines.push(format!("Manager:   {} <{}>", sanitize_line(&m.name), m.email));
    }
    lines.push(format!("Message:   {}", sanitize_line(meta.id.as_str())));
    let mut text = lines.join("\r\n");
    text.push_str("\r\n");
    text
}

/// `m:ss`, or `h:mm:ss` from one hour on; rounded to the nearest second.
fn format_duration(ms: u64) -> String {
    let secs = ms.saturating_add(500) / 1000;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    if h > 0 { format!("{h}:{m:02}:{s:02}") } else { format!("{m}:{s:02}") }
}

/// Replaces every control character (and Unicode line/paragraph separators) with a space.
pub(crate) fn sanitize_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') { ' ' } else { c }).collect()
}

/// `voicemail-2026-11-27_143205-+74951234567.wav` (or `.opus`): local time and caller number,
/// reduced to `[A-Za-z0-9+_.-]` (other characters become `_`, leading dots are dropped).
fn attachment_filename(local: &jiff::ZonedDateTime, caller: &str, extension: &str) -> String {
    let number: String = caller.chars().map(|c| if is_safe_name_char(c) { c } else { '_' }).take(40).collect();
    let number = number.trim_start_matches('.');
    let number = if number.is_empty() { "unknown" } else { number };
    format!("voicemail-{}-{number}.{extension}", local.strftime("%Y-%m-%d_%H%M%S"))
}

/// `voicemail.<safe id>.<hash>@<sender domain>`; the hash keeps ids that differ only in
/// characters the sanitising replaced apart.
fn message_id_for(id: &str, from: &str) -> String {
    let safe: String =
        id.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).take(64).collect();
    let safe = safe.trim_matches('.');
    let domain = from
        .rsplit_once('@')
        .map(|(_, d)| d)
        .filter(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.')))
        .unwrap_or("voicemail.invalid");
    let safe = if safe.is_empty() { "message" } else { safe };
    format!("voicemail.{safe}.{:016x}@{domain}", fnv1a64(id.as_bytes()))
}

/// A valid WAV of zero length (8 kHz, 16-bit, mono): the attachment for a message whose
/// recording was never written to a file.
pub fn empty_wav() -> Vec<u8> {
    let mut w = Vec::with_capacity(44);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&36u32.to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&16000u32.to_le_bytes()); // byte rate
    w.extend_from_slice(&2u16.to_le_bytes()); // block align
    w.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    w.extend_from_slice(b"data");
    w.extend_from_slice(&0u32.to_le_bytes());
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(format_duration(0), "0:00");
        assert_eq!(format_duration(42_400), "0:42");
        assert_eq!(format_duration(61_500), "1:02");
        assert_eq!(format_duration(3_725_000), "1:02:05");
    }

    #[test]
    fn message_id_is_stable_and_safe() {
        let a = message_id_for("2026-11-27T14:32:05Z-1", "vm@example.org");
        assert_eq!(a, message_id_for("2026-11-27T14:32:05Z-1", "vm@example.org"));
        assert!(a.ends_with("@example.org"));
        let b = message_id_for("a>\r\nBcc: x@y", "vm@example.org");
        assert!(!b.contains(['>', '\r', '\n', ' ', ':']));
    }

    #[test]
    fn empty_wav_is_44_bytes() {
        assert_eq!(empty_wav().len(), 44);
    }
}
