//! Building the RFC 5322 e-mails of a voicemail message (mail-builder): the message's own
//! e-mail ([`build_email`]) and its reminders ([`build_reminder`]).
//!
//! Subject and body come from the mailbox's templates ([`crate::template`]: Russian or
//! English built in, overridable in `[email]`); the values they see are plain words (the
//! caller's number in E.164 and national format, how the call ended, the greeting's label).
//!
//! Caller-controlled strings (display name, caller number, called number) pass through
//! [`sanitize_line`] before they reach any header, template value or body line: every control
//! character (CR, LF, NUL, TAB, DEL, C1, Unicode line/paragraph separators) becomes a space.
//! The rendered subject is one line whatever the template says, and mail-builder RFC
//! 2047-encodes any header text that is not plain printable ASCII. So no caller string can end
//! a header, start a new one, or add a line to the body. The attachment file name is reduced
//! to `[A-Za-z0-9+_.-]`.
//!
//! Identity: a message's `Message-ID` depends only on its id and the sender's domain, so every
//! build of it (a retry, another target) is the same e-mail; each reminder has its own,
//! derived from the message's and the reminder step, and refers to the message's e-mail
//! (`In-Reply-To`, `References`), so mail clients thread them.

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;

use super::{DeliveryError, OutgoingEmail, fnv1a64, is_safe_name_char, validate_address};
use crate::followup::ReminderStep;
use crate::message::MessageMeta;
use crate::template::{
    Language, ReminderVariables, TemplateKind, Templates, Variables, Words, ended_words, format_waited, phone_forms,
};

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
    /// The subject and body templates, and their language (default: English, built in).
    pub templates: Templates,
    /// The mailbox's name (`mailbox` of the configuration; the templates' `mailbox`).
    pub mailbox: String,
    /// The ISO 3166 region (`"RU"`) national numbers are read in, and whose numbers are shown
    /// in national format (the directory's `default_region`). `None`: only numbers written
    /// with `+` are recognised.
    pub phone_region: Option<String>,
    /// The greeting's human label; `None` makes one of the greeting's name (`new_year` →
    /// `New year`).
    pub greeting_label: Option<String>,
    /// Who the message is assigned to, if anyone.
    pub assigned_to: Option<String>,
    /// The message's page (`[web] public_url`), if there is one.
    pub message_url: Option<String>,
    /// The key that ends a recording (`[recording] finish_key`), for "pressed # to finish".
    pub finish_key: Option<char>,
}

impl EmailContext {
    /// A context with the given zone and sender, no recipients and no client match, English
    /// built-in templates.
    pub fn new(time_zone: TimeZone, from: impl Into<String>) -> Self {
        Self {
            time_zone,
            from: from.into(),
            from_name: Some("Voicemail".to_owned()),
            to: Vec::new(),
            client: None,
            manager: None,
            templates: Templates::default(),
            mailbox: "voicemail".to_owned(),
            phone_region: None,
            greeting_label: None,
            assigned_to: None,
            message_url: None,
            finish_key: Some('#'),
        }
    }

    /// The language of the e-mails.
    pub fn language(&self) -> Language {
        self.templates.language()
    }
}

/// A reminder of a message not called back (`[followup]`), for [`build_reminder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reminder {
    /// Which reminder.
    pub step: ReminderStep,
    /// Its recipients (`To:` and the envelope).
    pub to: Vec<String>,
    /// How long the message has waited for its callback.
    pub waited: Duration,
    /// Whether `waited` counts business hours only.
    pub business_hours: bool,
    /// Whether it is (or comes after) the escalation.
    pub escalated: bool,
    /// When it is sent (its `Date:`).
    pub date: Timestamp,
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

/// Builds the e-mail for `meta` with its recording attached (`audio/wav` named `….wav` for a
/// WAV, 16-bit PCM or G.711; `audio/ogg; codecs=opus` named `….opus` for Ogg/Opus, RFC 7845
/// §9; told apart by the file's first bytes): subject and body from the context's templates,
/// `X-Voicemail-*` headers (id, caller, duration, client, the client's manager as
/// `X-Voicemail-Manager: "Name" <address>`).
///
/// The result's `Message-ID` depends only on the message id and the sender's domain, and the
/// `Date:` only on `meta.started_at`, so building again yields the same identity. A zero-length
/// recording (a caller who hung up during the greeting) is attached like any other.
/// [`OutgoingEmail::extra_recipients`] holds the manager's address when one is set.
pub fn build_email(meta: &MessageMeta, wav: &[u8], ctx: &EmailContext) -> Result<OutgoingEmail, EmailError> {
    check(meta, ctx)?;
    if let Some(m) = &ctx.manager {
        validate_address(&m.email)?;
    }
    let local = meta.started_at.to_zoned_datetime(ctx.time_zone.clone());
    let message_id = message_id_for(meta.id.as_str(), &ctx.from);
    let vars = variables(meta, ctx, &local);
    let subject = ctx.templates.render(TemplateKind::Subject, &vars);
    let body = ctx.templates.render(TemplateKind::Body, &vars);

    let mut to: Vec<Address<'_>> = ctx.to.iter().map(|a| Address::from(a.as_str())).collect();
    if let Some(m) = &ctx.manager {
        to.push(Address::new_address(Some(sanitize_line(&m.name)), m.email.as_str()));
    }
    let builder = headers(meta, ctx, &local, &message_id, &subject, to, &vars)?;
    let bytes = with_recording(builder.text_body(body), &local, wav, &vars).write_to_vec()?;
    Ok(OutgoingEmail {
        voicemail_id: meta.id.to_string(),
        message_id,
        bytes,
        extra_recipients: ctx.manager.iter().map(|m| m.email.clone()).collect(),
        keywords: Vec::new(),
        may_be_stored: true,
    })
}

/// Builds a reminder of `meta` (`[followup]`): the reminder templates, `To:` the reminder's
/// recipients (also its [`OutgoingEmail::extra_recipients`]), the recording attached, an
/// `X-Voicemail-Reminder` header with the step. Its `Message-ID` is distinct for each step of
/// each message, and it refers to the message's own e-mail (`In-Reply-To`, `References`).
pub fn build_reminder(
    meta: &MessageMeta,
    wav: &[u8],
    ctx: &EmailContext,
    reminder: &Reminder,
) -> Result<OutgoingEmail, EmailError> {
    check(meta, ctx)?;
    for addr in &reminder.to {
        validate_address(addr)?;
    }
    let local = meta.started_at.to_zoned_datetime(ctx.time_zone.clone());
    let original = message_id_for(meta.id.as_str(), &ctx.from);
    let message_id = reminder_message_id(meta.id.as_str(), reminder.step, &ctx.from);
    let mut vars = variables(meta, ctx, &local);
    vars.reminder = Some(ReminderVariables {
        step: reminder.step.key(),
        reminder_number: match reminder.step {
            ReminderStep::Remind(n) => n,
            ReminderStep::Escalate => 0,
        },
        escalated: reminder.escalated,
        waited: format_waited(ctx.language(), reminder.waited),
        waited_minutes: reminder.waited.as_secs() / 60,
        business_hours: reminder.business_hours,
    });
    let subject = ctx.templates.render(TemplateKind::ReminderSubject, &vars);
    let body = ctx.templates.render(TemplateKind::ReminderBody, &vars);
    let to: Vec<Address<'_>> = reminder.to.iter().map(|a| Address::from(a.as_str())).collect();
    let sent = reminder.date.to_zoned_datetime(ctx.time_zone.clone());
    let builder = headers(meta, ctx, &sent, &message_id, &subject, to, &vars)?
        .in_reply_to(MessageId::new(original.clone()))
        .references(MessageId::new(original))
        .header("X-Voicemail-Reminder", Raw::new(reminder.step.key()));
    let bytes = with_recording(builder.text_body(body), &local, wav, &vars).write_to_vec()?;
    Ok(OutgoingEmail {
        voicemail_id: meta.id.to_string(),
        message_id,
        bytes,
        extra_recipients: reminder.to.clone(),
        keywords: Vec::new(),
        may_be_stored: true,
    })
}

fn check(meta: &MessageMeta, ctx: &EmailContext) -> Result<(), EmailError> {
    if meta.id.as_str().is_empty() {
        return Err(EmailError::EmptyId);
    }
    validate_address(&ctx.from)?;
    for addr in &ctx.to {
        validate_address(addr)?;
    }
    Ok(())
}

/// The headers every e-mail of a message has; `date` is its `Date:`.
fn headers<'x>(
    meta: &MessageMeta,
    ctx: &EmailContext,
    date: &jiff::ZonedDateTime,
    message_id: &str,
    subject: &str,
    to: Vec<Address<'x>>,
    vars: &Variables,
) -> Result<MessageBuilder<'x>, EmailError> {
    let date_header = jiff::fmt::rfc2822::to_string(date)?;
    let from_name = ctx.from_name.as_deref().map(sanitize_line);
    let mut builder = MessageBuilder::new()
        .message_id(MessageId::new(message_id.to_owned()))
        .header("Date", Raw::new(date_header))
        .from(Address::new_address(from_name, ctx.from.clone()))
        .subject(Text::new(subject.to_owned()))
        .header("X-Voicemail-Id", Text::new(sanitize_line(meta.id.as_str())))
        .header(
            "X-Voicemail-Caller",
            Text::new(if vars.caller_e164.is_empty() { vars.number.clone() } else { vars.caller_e164.clone() }),
        )
        .header("X-Voicemail-Duration-Ms", Raw::new(meta.duration_ms.to_string()));
    if !to.is_empty() {
        builder = builder.to(Address::new_list(to));
    }
    if !vars.client.is_empty() {
        builder = builder.header("X-Voicemail-Client", Text::new(vars.client.clone()));
    }
    if !vars.mailbox.is_empty() {
        builder = builder.header("X-Voicemail-Mailbox", Text::new(vars.mailbox.clone()));
    }
    if !vars.diverted_from.is_empty() {
        builder = builder.header("X-Voicemail-Diverted-From", Text::new(vars.diverted_from.clone()));
    }
    // The client's manager (`"Anna Petrova" <anna@example.com>`), so a shared folder can be
    // sorted or filtered by manager: only a plain address, the name sanitised and encoded
    // like any header text.
    if let Some(m) = ctx.manager.as_ref().filter(|m| validate_address(&m.email).is_ok()) {
        let name = Some(sanitize_line(&m.name).trim().to_owned()).filter(|n| !n.is_empty());
        builder = builder.header("X-Voicemail-Manager", Address::new_address(name, m.email.clone()));
    }
    Ok(builder)
}

/// Attaches the recording.
fn with_recording<'x>(
    builder: MessageBuilder<'x>,
    local: &jiff::ZonedDateTime,
    wav: &'x [u8],
    vars: &Variables,
) -> MessageBuilder<'x> {
    let ogg = wav.starts_with(b"OggS");
    let filename = attachment_filename(local, &vars.number, if ogg { "opus" } else { "wav" });
    let content_type = if ogg {
        ContentType::new("audio/ogg").attribute("codecs", "opus").attribute("name", filename.clone())
    } else {
        ContentType::new("audio/wav").attribute("name", filename.clone())
    };
    // Borrowed: the recording (about 160 kB for 10 s) is encoded straight from the caller's
    // buffer, not copied first.
    builder.attachment(content_type, filename, wav)
}

/// The template values of `meta` in `ctx`, every caller string sanitised.
fn variables(meta: &MessageMeta, ctx: &EmailContext, local: &jiff::ZonedDateTime) -> Variables {
    let language = ctx.language();
    let words = Words::of(language);
    let region = ctx.phone_region.as_deref().and_then(|r| rlibphonenumber::Region::from_code(r).ok());
    let caller = sanitize_line(&meta.caller).trim().to_owned();
    let (e164, national) = phone_forms(&caller, region).unwrap_or_default();
    let number = if !e164.is_empty() {
        e164.clone()
    } else if !caller.is_empty() {
        caller.clone()
    } else {
        words.unknown_number.to_owned()
    };
    let clean = |s: &str| sanitize_line(s).trim().to_owned();
    let date = match language {
        Language::En => local.strftime("%Y-%m-%d").to_string(),
        Language::Ru => local.strftime("%d.%m.%Y").to_string(),
    };
    Variables {
        id: clean(meta.id.as_str()),
        mailbox: clean(&ctx.mailbox),
        number,
        caller,
        caller_e164: e164,
        caller_national: national,
        caller_name: meta.caller_name.as_deref().map(clean).unwrap_or_default(),
        called: clean(&meta.called),
        date,
        time: local.strftime("%H:%M").to_string(),
        timezone: ctx.time_zone.iana_name().unwrap_or("UTC").to_owned(),
        duration: format_duration(meta.duration_ms),
        duration_seconds: meta.duration_ms.saturating_add(500) / 1000,
        ended: ended_words(language, meta.end_reason, ctx.finish_key),
        end_reason: meta.end_reason.as_str().to_owned(),
        greeting: ctx
            .greeting_label
            .as_deref()
            .map(clean)
            .unwrap_or_else(|| crate::template::humanize(&clean(&meta.greeting))),
        greeting_name: clean(&meta.greeting),
        client: ctx.client.as_deref().map(clean).unwrap_or_default(),
        manager_name: ctx.manager.as_ref().map(|m| clean(&m.name)).unwrap_or_default(),
        manager_email: ctx.manager.as_ref().map(|m| clean(&m.email)).unwrap_or_default(),
        assigned_to: ctx.assigned_to.as_deref().map(clean).unwrap_or_default(),
        url: ctx.message_url.as_deref().map(clean).unwrap_or_default(),
        diverted_from: meta
            .diverted_from
            .as_deref()
            .map(|d| {
                let d = clean(d);
                phone_forms(&d, region).map_or(d, |(e164, _)| e164)
            })
            .unwrap_or_default(),
        transcript: meta.transcript.as_deref().map(sanitize_text).unwrap_or_default(),
        reminder: None,
    }
}

/// `m:ss`, or `h:mm:ss` from one hour on; rounded to the nearest second.
fn format_duration(ms: u64) -> String {
    let secs = ms.saturating_add(500) / 1000;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    if h > 0 { format!("{h}:{m:02}:{s:02}") } else { format!("{m}:{s:02}") }
}

/// Text of several lines for the body: line ends become `\n`, other control characters (and
/// Unicode line/paragraph separators) spaces.
fn sanitize_text(s: &str) -> String {
    s.replace("\r\n", "\n")
        .chars()
        .map(|c| {
            if c == '\n' {
                c
            } else if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
                ' '
            } else {
                c
            }
        })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Replaces every control character (and Unicode line/paragraph separators) with a space.
pub(crate) fn sanitize_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') { ' ' } else { c }).collect()
}

/// `+74951234567_2026-11-27_14-32.wav` (or `.opus`): the caller's number (E.164 when it is a
/// phone number) and the call's local time, reduced to `[A-Za-z0-9+_.-]` (other characters
/// become `_`, leading dots are dropped).
fn attachment_filename(local: &jiff::ZonedDateTime, number: &str, extension: &str) -> String {
    let number: String = number.chars().map(|c| if is_safe_name_char(c) { c } else { '_' }).take(40).collect();
    let number = number.trim_start_matches('.');
    let number = if number.is_empty() { "unknown" } else { number };
    format!("{number}_{}.{extension}", local.strftime("%Y-%m-%d_%H-%M"))
}

/// `voicemail.<safe id>.<hash>@<sender domain>`; the hash keeps ids that differ only in
/// characters the sanitising replaced apart.
pub(crate) fn message_id_for(id: &str, from: &str) -> String {
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

/// The `Message-ID` of a reminder: the message's, with the step before the hash, and a hash
/// over both (`voicemail.<safe id>.remind-1.<hash>@<domain>`).
fn reminder_message_id(id: &str, step: ReminderStep, from: &str) -> String {
    let base = message_id_for(id, from);
    let (local, domain) = base.rsplit_once('@').unwrap_or((base.as_str(), "voicemail.invalid"));
    let stem = local.rsplit_once('.').map_or(local, |(stem, _)| stem);
    let key = format!("{id}\n{}", step.key());
    format!("{stem}.{}.{:016x}@{domain}", step.key(), fnv1a64(key.as_bytes()))
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
    fn reminder_message_ids_differ_per_step() {
        let m = message_id_for("msg-1", "vm@example.org");
        let r1 = reminder_message_id("msg-1", ReminderStep::Remind(1), "vm@example.org");
        let r2 = reminder_message_id("msg-1", ReminderStep::Remind(2), "vm@example.org");
        let e = reminder_message_id("msg-1", ReminderStep::Escalate, "vm@example.org");
        assert_eq!(r1, reminder_message_id("msg-1", ReminderStep::Remind(1), "vm@example.org"));
        assert!(r1.starts_with("voicemail.msg-1.remind-1.") && r1.ends_with("@example.org"), "{r1}");
        let all = [&m, &r1, &r2, &e];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn attachment_names() {
        let local = jiff::Timestamp::from_second(1_795_779_125)
            .unwrap()
            .to_zoned_datetime(jiff::tz::TimeZone::get("Europe/Moscow").unwrap());
        assert_eq!(attachment_filename(&local, "+74951234567", "wav"), "+74951234567_2026-11-27_14-32.wav");
        assert_eq!(attachment_filename(&local, "../x y", "wav"), "_x_y_2026-11-27_14-32.wav");
        assert_eq!(attachment_filename(&local, "", "opus"), "unknown_2026-11-27_14-32.opus");
    }

    #[test]
    fn empty_wav_is_44_bytes() {
        assert_eq!(empty_wav().len(), 44);
    }
}
