//! The words of the e-mails: what the office reads.
//!
//! Every e-mail's subject and body come from a [minijinja](https://docs.rs/minijinja) template
//! (Jinja syntax: `{{ number }}`, `{% if client %}...{% endif %}`, filters like `upper`).
//! Russian and English templates are built in ([`Language`]); `[email]` in the configuration
//! picks the language and may replace any of the four templates: `subject` and `body` of the
//! message's e-mail, `reminder_subject` and `reminder_body` of reminders (`[followup]`).
//! Every template sees the same [`Variables`] (reminders add a few); each one is listed, with
//! an example, in `examples/voicemail.toml` and the README.
//!
//! The values are plain words for people: the caller's number in E.164 (`+74951234567`) and in
//! national format (`8 (495) 123-45-67`), the client and manager, how the call ended ("the
//! caller hung up", not `hang-up`), the greeting's human label, the local date and time. Every
//! caller-supplied string is sanitised before it becomes a value (control characters become
//! spaces), and the subject is one line whatever the template says, so no template or caller
//! can add a header. Templates are checked when the configuration is read: a syntax error or
//! an unknown variable is an error naming the key (`email.subject`). A template that fails
//! when an e-mail is built (it runs out of its execution budget, say) is logged and the
//! built-in one is used: the message still goes out.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use minijinja::{Environment, UndefinedBehavior, Value};
use rlibphonenumber::{PHONE_NUMBER_UTIL, PhoneNumberFormat, Region};

use crate::message::EndReason;

/// The execution budget of one template rendering (minijinja fuel): plenty for any e-mail,
/// and a bound for a template that loops too long.
const FUEL: u64 = 50_000;

/// The longest subject: longer rendered subjects are cut (with `…`).
const MAX_SUBJECT_CHARS: usize = 250;

/// The language of the built-in templates and of the words the values are written in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Language {
    /// English (`"en"`, the default).
    #[default]
    En,
    /// Russian (`"ru"`).
    Ru,
}

impl Language {
    /// Parses `"en"` or `"ru"`.
    pub fn parse(code: &str) -> Option<Self> {
        match code {
            "en" => Some(Language::En),
            "ru" => Some(Language::Ru),
            _ => None,
        }
    }

    /// `"en"` or `"ru"`.
    pub fn code(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Ru => "ru",
        }
    }
}

/// Which template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TemplateKind {
    /// The subject of a message's e-mail (`[email] subject`).
    Subject,
    /// The body of a message's e-mail (`[email] body`).
    Body,
    /// The subject of a reminder (`[email] reminder_subject`).
    ReminderSubject,
    /// The body of a reminder (`[email] reminder_body`).
    ReminderBody,
}

impl TemplateKind {
    /// All four, in configuration order.
    pub const ALL: [TemplateKind; 4] =
        [TemplateKind::Subject, TemplateKind::Body, TemplateKind::ReminderSubject, TemplateKind::ReminderBody];

    /// The configuration key under `[email]`: `subject`, `body`, `reminder_subject`,
    /// `reminder_body`.
    pub fn key(self) -> &'static str {
        match self {
            TemplateKind::Subject => "subject",
            TemplateKind::Body => "body",
            TemplateKind::ReminderSubject => "reminder_subject",
            TemplateKind::ReminderBody => "reminder_body",
        }
    }

    fn index(self) -> usize {
        match self {
            TemplateKind::Subject => 0,
            TemplateKind::Body => 1,
            TemplateKind::ReminderSubject => 2,
            TemplateKind::ReminderBody => 3,
        }
    }

    fn is_reminder(self) -> bool {
        matches!(self, TemplateKind::ReminderSubject | TemplateKind::ReminderBody)
    }
}

/// Templates that replace built-in ones (`[email]`); `None` keeps the built-in one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateOverrides {
    /// `subject`.
    pub subject: Option<String>,
    /// `body`.
    pub body: Option<String>,
    /// `reminder_subject`.
    pub reminder_subject: Option<String>,
    /// `reminder_body`.
    pub reminder_body: Option<String>,
}

impl TemplateOverrides {
    fn get(&self, kind: TemplateKind) -> Option<&str> {
        match kind {
            TemplateKind::Subject => self.subject.as_deref(),
            TemplateKind::Body => self.body.as_deref(),
            TemplateKind::ReminderSubject => self.reminder_subject.as_deref(),
            TemplateKind::ReminderBody => self.reminder_body.as_deref(),
        }
    }
}

/// A template that does not compile, or fails on the sample values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    /// Which template.
    pub kind: TemplateKind,
    /// What is wrong (minijinja's words, with the line).
    pub message: String,
}

/// The four compiled templates of a mailbox and their language. Cheap to clone.
#[derive(Clone)]
pub struct Templates {
    inner: Arc<Compiled>,
}

struct Compiled {
    language: Language,
    /// The sources, by [`TemplateKind::index`].
    sources: [String; 4],
    /// Which sources are the built-in ones.
    builtin: [bool; 4],
    env: Environment<'static>,
}

impl fmt::Debug for Templates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Templates")
            .field("language", &self.inner.language)
            .field("overridden", &self.inner.builtin.map(|b| !b))
            .finish_non_exhaustive()
    }
}

impl PartialEq for Templates {
    fn eq(&self, other: &Self) -> bool {
        self.inner.language == other.inner.language && self.inner.sources == other.inner.sources
    }
}

impl Default for Templates {
    fn default() -> Self {
        Templates::builtin(Language::En)
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    // Plain text: `{% if %}` lines leave no blank line behind; no HTML escaping (the names
    // carry no extension that would turn it on).
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env
}

impl Templates {
    /// The built-in templates of `language`: compiled once per process and shared (every
    /// e-mail context starts from them, so they must not be compiled per message).
    pub fn builtin(language: Language) -> Self {
        static EN: OnceLock<Templates> = OnceLock::new();
        static RU: OnceLock<Templates> = OnceLock::new();
        let cell = match language {
            Language::En => &EN,
            Language::Ru => &RU,
        };
        cell.get_or_init(|| match Templates::compile(language, &TemplateOverrides::default()) {
            Ok(t) => t,
            // The built-in templates compile (unit-tested); never taken.
            Err(e) => unreachable!("built-in template {}: {e}", e.kind.key()),
        })
        .clone()
    }

    /// The templates of `language`, with `overrides` in place of the built-in ones. Each
    /// override is compiled and rendered once with sample values (strictly: an unknown
    /// variable is an error), so mistakes show when the configuration is read.
    pub fn new(language: Language, overrides: &TemplateOverrides) -> Result<Self, TemplateError> {
        if TemplateKind::ALL.iter().all(|&kind| overrides.get(kind).is_none()) {
            return Ok(Templates::builtin(language));
        }
        Templates::compile(language, overrides)
    }

    fn compile(language: Language, overrides: &TemplateOverrides) -> Result<Self, TemplateError> {
        let mut env = environment();
        let mut sources: [String; 4] = Default::default();
        let mut builtin = [true; 4];
        for kind in TemplateKind::ALL {
            let source = match overrides.get(kind) {
                Some(s) => {
                    builtin[kind.index()] = false;
                    s.to_owned()
                }
                None => builtin_source(language, kind).to_owned(),
            };
            env.add_template_owned(kind.key(), source.clone())
                .map_err(|e| TemplateError { kind, message: describe(&e) })?;
            sources[kind.index()] = source;
        }
        let templates = Templates { inner: Arc::new(Compiled { language, sources, builtin, env }) };
        for kind in TemplateKind::ALL {
            for sample in [Variables::sample(language, kind.is_reminder()), Variables::sparse(kind.is_reminder())] {
                templates.render_strict(kind, &sample).map_err(|message| TemplateError { kind, message })?;
            }
        }
        Ok(templates)
    }

    /// The language.
    pub fn language(&self) -> Language {
        self.inner.language
    }

    /// The source of one template.
    pub fn source(&self, kind: TemplateKind) -> &str {
        &self.inner.sources[kind.index()]
    }

    /// Renders a template. A subject comes out as one trimmed line (controls and line breaks
    /// become spaces, at most 250 characters); a body with CRLF line ends. A configured
    /// template that fails is logged and the built-in one of the language is used instead.
    pub fn render(&self, kind: TemplateKind, vars: &Variables) -> String {
        let text = match self.render_strict(kind, vars) {
            Ok(text) => text,
            Err(e) if !self.inner.builtin[kind.index()] => {
                tracing::warn!(template = kind.key(), id = %vars.id, error = %e, "the configured e-mail template failed; using the built-in one");
                Templates::builtin(self.inner.language)
                    .render_strict(kind, vars)
                    .unwrap_or_else(|e| format!("(template error: {e})"))
            }
            Err(e) => format!("(template error: {e})"),
        };
        match kind {
            TemplateKind::Subject | TemplateKind::ReminderSubject => subject_line(&text),
            TemplateKind::Body | TemplateKind::ReminderBody => crlf(&text),
        }
    }

    fn render_strict(&self, kind: TemplateKind, vars: &Variables) -> Result<String, String> {
        let template = self.inner.env.get_template(kind.key()).map_err(|e| describe(&e))?;
        template.render(vars.to_value(kind.is_reminder())).map_err(|e| describe(&e))
    }
}

/// minijinja's error with its detail and line.
fn describe(e: &minijinja::Error) -> String {
    let mut text = e.kind().to_string();
    if let Some(detail) = e.detail() {
        text.push_str(": ");
        text.push_str(detail);
    }
    if let Some(line) = e.line() {
        text.push_str(&format!(" (line {line})"));
    }
    text
}

/// One line: controls become spaces, runs of spaces one space, trimmed, at most
/// [`MAX_SUBJECT_CHARS`].
fn subject_line(text: &str) -> String {
    let line = text
        .chars()
        .map(|c| if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') { ' ' } else { c })
        .collect::<String>();
    let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > MAX_SUBJECT_CHARS {
        let mut cut: String = line.chars().take(MAX_SUBJECT_CHARS - 1).collect();
        cut.push('…');
        cut
    } else {
        line
    }
}

/// CRLF line ends, one final line end.
fn crlf(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.trim_end_matches(['\r', '\n']).split('\n') {
        out.push_str(line.trim_end_matches('\r'));
        out.push_str("\r\n");
    }
    out
}

/// What every template sees. Strings are never absent: what is unknown is `""` (so
/// `{% if client %}` tests for it). See `examples/voicemail.toml` for each variable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Variables {
    /// The message id.
    pub id: String,
    /// The mailbox's name (`mailbox`).
    pub mailbox: String,
    /// The caller's number for people: E.164 when it is a phone number, else the caller as
    /// signalled, else "unknown" in the language.
    pub number: String,
    /// The caller as signalled (sanitised).
    pub caller: String,
    /// The caller's number in E.164, or `""`.
    pub caller_e164: String,
    /// The caller's number in national format (international for a number of another
    /// country than the mailbox's region), or `""`.
    pub caller_national: String,
    /// The caller's display name, or `""`.
    pub caller_name: String,
    /// The number the caller dialled.
    pub called: String,
    /// The local date of the call (`2026-11-27`; Russian `27.11.2026`).
    pub date: String,
    /// The local time of the call (`14:32`).
    pub time: String,
    /// The mailbox's time zone (`Europe/Moscow`).
    pub timezone: String,
    /// The recorded length, `m:ss` or `h:mm:ss`.
    pub duration: String,
    /// The recorded length in whole seconds.
    pub duration_seconds: u64,
    /// How the call ended, in words ("the caller hung up").
    pub ended: String,
    /// How the call ended, as the metadata says (`hang-up`, ...).
    pub end_reason: String,
    /// The greeting's human label ("New Year").
    pub greeting: String,
    /// The greeting's name in the configuration (`new_year`).
    pub greeting_name: String,
    /// The matched client, or `""`.
    pub client: String,
    /// The matched client's manager's name, or `""`.
    pub manager_name: String,
    /// The matched client's manager's e-mail address, or `""`.
    pub manager_email: String,
    /// Who the message is assigned to, or `""`.
    pub assigned_to: String,
    /// The message's page (`[web] public_url` + `/messages/<id>`), or `""`.
    pub url: String,
    /// The number that forwarded the call to the mailbox (E.164 when it is a phone number),
    /// or `""` when the call was not diverted.
    pub diverted_from: String,
    /// The recording's transcript (`[transcription]`; several lines), or `""`.
    pub transcript: String,
    /// Reminders only.
    pub reminder: Option<ReminderVariables>,
}

/// What reminder templates see besides [`Variables`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReminderVariables {
    /// The reminder's key: `remind-1`, `remind-2`, ..., `escalate`.
    pub step: String,
    /// Which reminder this is (1, 2, ...); 0 for the escalation.
    pub reminder_number: u32,
    /// Whether this is (or comes after) the escalation: `escalate_to` receives it too.
    pub escalated: bool,
    /// How long the call has waited for its callback, in words ("5 h 10 min").
    pub waited: String,
    /// The same in whole minutes.
    pub waited_minutes: u64,
    /// Whether `waited` counts business hours only (else wall-clock time).
    pub business_hours: bool,
}

impl Variables {
    fn to_value(&self, reminder: bool) -> Value {
        let mut m: BTreeMap<String, Value> = BTreeMap::new();
        for (k, v) in [
            ("id", &self.id),
            ("mailbox", &self.mailbox),
            ("number", &self.number),
            ("caller", &self.caller),
            ("caller_e164", &self.caller_e164),
            ("caller_national", &self.caller_national),
            ("caller_name", &self.caller_name),
            ("called", &self.called),
            ("date", &self.date),
            ("time", &self.time),
            ("timezone", &self.timezone),
            ("duration", &self.duration),
            ("ended", &self.ended),
            ("end_reason", &self.end_reason),
            ("greeting", &self.greeting),
            ("greeting_name", &self.greeting_name),
            ("client", &self.client),
            ("manager_name", &self.manager_name),
            ("manager_email", &self.manager_email),
            ("assigned_to", &self.assigned_to),
            ("url", &self.url),
            ("diverted_from", &self.diverted_from),
            ("transcript", &self.transcript),
        ] {
            m.insert(k.to_owned(), Value::from(v.as_str()));
        }
        m.insert("duration_seconds".to_owned(), Value::from(self.duration_seconds));
        m.insert("kind".to_owned(), Value::from(if reminder { "reminder" } else { "message" }));
        if reminder {
            let r = self.reminder.clone().unwrap_or_default();
            m.insert("step".to_owned(), Value::from(r.step));
            m.insert("reminder_number".to_owned(), Value::from(r.reminder_number));
            m.insert("escalated".to_owned(), Value::from(r.escalated));
            m.insert("waited".to_owned(), Value::from(r.waited));
            m.insert("waited_minutes".to_owned(), Value::from(r.waited_minutes));
            m.insert("business_hours".to_owned(), Value::from(r.business_hours));
        }
        Value::from(m)
    }

    /// Every value set, for checking templates.
    fn sample(language: Language, reminder: bool) -> Self {
        let words = Words::of(language);
        Variables {
            id: "20261127T113205Z-0123456789abcdef".into(),
            mailbox: "Sales".into(),
            number: "+74951234567".into(),
            caller: "+74951234567".into(),
            caller_e164: "+74951234567".into(),
            caller_national: "8 (495) 123-45-67".into(),
            caller_name: "Ivan Petrov".into(),
            called: "+74951234500".into(),
            date: "2026-11-27".into(),
            time: "14:32".into(),
            timezone: "Europe/Moscow".into(),
            duration: "0:42".into(),
            duration_seconds: 42,
            ended: words.hung_up.into(),
            end_reason: "hang-up".into(),
            greeting: "New Year".into(),
            greeting_name: "new_year".into(),
            client: "Acme LLC".into(),
            manager_name: "Olga Smirnova".into(),
            manager_email: "olga@example.com".into(),
            assigned_to: "olga@example.com".into(),
            url: "https://voicemail.example.com/messages/20261127T113205Z-0123456789abcdef".into(),
            diverted_from: "+74951234500".into(),
            transcript: "Hello, this is Ivan.\nPlease call me back.".into(),
            reminder: reminder.then(|| ReminderVariables {
                step: "escalate".into(),
                reminder_number: 0,
                escalated: true,
                waited: format_waited(language, Duration::from_secs(5 * 3600 + 600)),
                waited_minutes: 310,
                business_hours: true,
            }),
        }
    }

    /// Only what is always known, for checking templates.
    fn sparse(reminder: bool) -> Self {
        Variables {
            id: "x".into(),
            mailbox: "x".into(),
            number: "unknown".into(),
            date: "2026-11-27".into(),
            time: "14:32".into(),
            timezone: "UTC".into(),
            duration: "0:00".into(),
            ended: "x".into(),
            end_reason: "hang-up".into(),
            greeting: "Default".into(),
            greeting_name: "default".into(),
            reminder: reminder.then(|| ReminderVariables {
                step: "remind-1".into(),
                reminder_number: 1,
                waited: "1 h".into(),
                waited_minutes: 60,
                ..ReminderVariables::default()
            }),
            ..Variables::default()
        }
    }
}

/// The words of one language that the values use.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Words {
    pub(crate) unknown_number: &'static str,
    pub(crate) from_name: &'static str,
    hung_up: &'static str,
    finish_key: &'static str,
    max_length: &'static str,
    silence: &'static str,
    media_timeout: &'static str,
    recording_failed: &'static str,
    interrupted: &'static str,
    hours: &'static str,
    minutes: &'static str,
}

impl Words {
    pub(crate) fn of(language: Language) -> Self {
        match language {
            Language::En => Words {
                unknown_number: "unknown number",
                from_name: "Voicemail",
                hung_up: "the caller hung up",
                finish_key: "the caller pressed {key} to finish",
                max_length: "the message reached the maximum length",
                silence: "the caller stopped speaking",
                media_timeout: "the connection was lost",
                recording_failed: "recording failed on the server; what was recorded is attached",
                interrupted: "the answering machine restarted during the call; what was recorded is attached",
                hours: "h",
                minutes: "min",
            },
            Language::Ru => Words {
                unknown_number: "номер неизвестен",
                from_name: "Автоответчик",
                hung_up: "абонент положил трубку",
                finish_key: "абонент нажал {key}, чтобы закончить",
                max_length: "сообщение достигло предельной длины",
                silence: "абонент замолчал",
                media_timeout: "связь прервалась",
                recording_failed: "запись прервалась из-за ошибки на сервере; записанное приложено",
                interrupted: "автоответчик перезапустился во время звонка; записанное приложено",
                hours: "ч",
                minutes: "мин",
            },
        }
    }
}

/// How a call ended, in plain words of `language`; `finish_key` is the configured key.
pub fn ended_words(language: Language, reason: EndReason, finish_key: Option<char>) -> String {
    let w = Words::of(language);
    match reason {
        EndReason::HangUp => w.hung_up.to_owned(),
        EndReason::FinishKey => w.finish_key.replace("{key}", &finish_key.unwrap_or('#').to_string()),
        EndReason::MaxLength => w.max_length.to_owned(),
        EndReason::SilenceTimeout => w.silence.to_owned(),
        EndReason::MediaTimeout => w.media_timeout.to_owned(),
        EndReason::RecordingFailed => w.recording_failed.to_owned(),
        EndReason::Interrupted => w.interrupted.to_owned(),
    }
}

/// A span of waiting in words: `45 min`, `5 h`, `5 h 10 min` (`5 ч 10 мин`); whole minutes,
/// rounded down.
pub fn format_waited(language: Language, waited: Duration) -> String {
    let w = Words::of(language);
    let minutes = waited.as_secs() / 60;
    let (h, m) = (minutes / 60, minutes % 60);
    match (h, m) {
        (0, m) => format!("{m} {}", w.minutes),
        (h, 0) => format!("{h} {}", w.hours),
        (h, m) => format!("{h} {} {m} {}", w.hours, w.minutes),
    }
}

/// A greeting name as a label: `new_year` → `New year`, `after-hours` → `After hours`.
pub fn humanize(name: &str) -> String {
    let spaced = name.replace(['_', '-'], " ");
    let spaced = spaced.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => name.to_owned(),
    }
}

/// The caller's number in E.164 and in national format, read with `region` (the directory's
/// default region): `("+74951234567", "8 (495) 123-45-67")`. A number of another country is
/// given in international format instead (`+1 201-555-0123`); without a region only numbers
/// written with `+` are read. `None` when the caller is not a plausible phone number (only
/// digits, `+`, spaces, `()-.`, at most 64 characters, are even looked at).
pub fn phone_forms(caller: &str, region: Option<Region>) -> Option<(String, String)> {
    if caller.is_empty() || caller.len() > 64 {
        return None;
    }
    if !caller.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'+' | b' ' | b'(' | b')' | b'-' | b'.')) {
        return None;
    }
    if !caller.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    let parsed = PHONE_NUMBER_UTIL.parse(caller, region).ok()?;
    if !PHONE_NUMBER_UTIL.is_possible_number(&parsed) {
        return None;
    }
    let e164 = parsed.format_as(PhoneNumberFormat::E164).into_owned();
    let home = region.is_none() || parsed.get_region_code() == region;
    let national = parsed
        .format_as(if home { PhoneNumberFormat::National } else { PhoneNumberFormat::International })
        .into_owned();
    Some((e164, national))
}

/// The built-in source of a template.
pub fn builtin_source(language: Language, kind: TemplateKind) -> &'static str {
    match (language, kind) {
        (Language::En, TemplateKind::Subject) => EN_SUBJECT,
        (Language::En, TemplateKind::Body) => EN_BODY,
        (Language::En, TemplateKind::ReminderSubject) => EN_REMINDER_SUBJECT,
        (Language::En, TemplateKind::ReminderBody) => EN_REMINDER_BODY,
        (Language::Ru, TemplateKind::Subject) => RU_SUBJECT,
        (Language::Ru, TemplateKind::Body) => RU_BODY,
        (Language::Ru, TemplateKind::ReminderSubject) => RU_REMINDER_SUBJECT,
        (Language::Ru, TemplateKind::ReminderBody) => RU_REMINDER_BODY,
    }
}

const EN_SUBJECT: &str = "Voicemail from {{ number }}{% if caller_name %} ({{ caller_name }}){% endif %}, \
{{ duration }}{% if client %} [{{ client }}]{% endif %}";

const EN_BODY: &str = "\
New voicemail message for {{ mailbox }}{% if client %} from client {{ client }}{% endif %}.

Caller:        {{ number }}{% if caller_national %} ({{ caller_national }}){% endif +%}
{% if caller_name %}
Name:          {{ caller_name }}
{% endif %}
{% if called %}
Dialled:       {{ called }}
{% endif %}
{% if diverted_from %}
Forwarded from: {{ diverted_from }}
{% endif %}
Time:          {{ date }} {{ time }} ({{ timezone }})
Duration:      {{ duration }}
How it ended:  {{ ended }}
Greeting:      {{ greeting }}
{% if client %}
Client:        {{ client }}
{% endif %}
{% if manager_name %}
Manager:       {{ manager_name }} <{{ manager_email }}>
{% endif %}
{% if assigned_to and assigned_to != manager_email %}
Assigned to:   {{ assigned_to }}
{% endif %}
{% if transcript %}

Transcript (automatic):
{{ transcript }}
{% endif %}
{% if url %}

Listen and mark it called back: {{ url }}
{% endif %}

The recording is attached. Message {{ id }}.
";

const EN_REMINDER_SUBJECT: &str = "{% if escalated %}Escalation{% else %}Reminder{% endif %}: \
call back {{ number }}{% if caller_name %} ({{ caller_name }}){% endif %}{% if client %} [{{ client }}]{% endif %}, \
waiting {{ waited }}";

const EN_REMINDER_BODY: &str = "\
{% if escalated %}Escalation. {% endif %}A call to {{ mailbox }} has waited {{ waited }}\
{% if business_hours %} of business hours{% endif %} and nobody has called back yet.

Please call back {{ number }}{% if caller_national %} ({{ caller_national }}){% endif %}\
{% if caller_name %}, {{ caller_name }}{% endif %}{% if client %}, client {{ client }}{% endif %}.

Called:        {{ date }} {{ time }} ({{ timezone }})
Duration:      {{ duration }}
How it ended:  {{ ended }}
Assigned to:   {% if assigned_to %}{{ assigned_to }}{% else %}nobody yet{% endif +%}
{% if manager_name %}
Manager:       {{ manager_name }} <{{ manager_email }}>
{% endif %}
{% if url %}

Listen and mark it called back: {{ url }}
{% endif %}

The recording is attached. Message {{ id }}.
";

const RU_SUBJECT: &str = "Голосовое сообщение от {{ number }}{% if caller_name %} ({{ caller_name }}){% endif %}, \
{{ duration }}{% if client %} [{{ client }}]{% endif %}";

const RU_BODY: &str = "\
Новое голосовое сообщение в ящике «{{ mailbox }}»{% if client %} от клиента {{ client }}{% endif %}.

Звонил:        {{ number }}{% if caller_national %} ({{ caller_national }}){% endif +%}
{% if caller_name %}
Имя:           {{ caller_name }}
{% endif %}
{% if called %}
Куда звонил:   {{ called }}
{% endif %}
{% if diverted_from %}
Переадресовал: {{ diverted_from }}
{% endif %}
Когда:         {{ date }} {{ time }} ({{ timezone }})
Длительность:  {{ duration }}
Как закончился звонок: {{ ended }}
Приветствие:   {{ greeting }}
{% if client %}
Клиент:        {{ client }}
{% endif %}
{% if manager_name %}
Менеджер:      {{ manager_name }} <{{ manager_email }}>
{% endif %}
{% if assigned_to and assigned_to != manager_email %}
Назначено:     {{ assigned_to }}
{% endif %}
{% if transcript %}

Расшифровка (автоматическая):
{{ transcript }}
{% endif %}
{% if url %}

Прослушать и отметить, что перезвонили: {{ url }}
{% endif %}

Запись во вложении. Сообщение {{ id }}.
";

const RU_REMINDER_SUBJECT: &str = "{% if escalated %}Эскалация{% else %}Напоминание{% endif %}: \
перезвоните {{ number }}{% if caller_name %} ({{ caller_name }}){% endif %}{% if client %} [{{ client }}]{% endif %}, \
ждёт {{ waited }}";

const RU_REMINDER_BODY: &str = "\
{% if escalated %}Эскалация. {% endif %}Звонок в ящик «{{ mailbox }}» ждёт ответа уже {{ waited }}\
{% if business_hours %} рабочего времени{% endif %}, и никто ещё не перезвонил.

Пожалуйста, перезвоните: {{ number }}{% if caller_national %} ({{ caller_national }}){% endif %}\
{% if caller_name %}, {{ caller_name }}{% endif %}{% if client %}, клиент {{ client }}{% endif %}.

Когда звонил:  {{ date }} {{ time }} ({{ timezone }})
Длительность:  {{ duration }}
Как закончился звонок: {{ ended }}
Назначено:     {% if assigned_to %}{{ assigned_to }}{% else %}пока никому{% endif +%}
{% if manager_name %}
Менеджер:      {{ manager_name }} <{{ manager_email }}>
{% endif %}
{% if url %}

Прослушать и отметить, что перезвонили: {{ url }}
{% endif %}

Запись во вложении. Сообщение {{ id }}.
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_templates_render_in_both_languages() {
        for language in [Language::En, Language::Ru] {
            let t = Templates::builtin(language);
            for reminder in [false, true] {
                for vars in [Variables::sample(language, reminder), Variables::sparse(reminder)] {
                    let (subject, body) = if reminder {
                        (TemplateKind::ReminderSubject, TemplateKind::ReminderBody)
                    } else {
                        (TemplateKind::Subject, TemplateKind::Body)
                    };
                    let subject = t.render(subject, &vars);
                    let body = t.render(body, &vars);
                    assert!(!subject.is_empty() && !subject.contains(['\r', '\n']), "{subject:?}");
                    assert!(!body.contains("template error"), "{body}");
                    assert!(body.ends_with("\r\n") && !body.contains("\r\n\r\n\r\n"), "{body:?}");
                    assert!(!body.replace("\r\n", "").contains(['\r', '\n']), "{body:?}");
                }
            }
        }
        let ru =
            Templates::builtin(Language::Ru).render(TemplateKind::Subject, &Variables::sample(Language::Ru, false));
        assert_eq!(ru, "Голосовое сообщение от +74951234567 (Ivan Petrov), 0:42 [Acme LLC]");
        let en = Templates::builtin(Language::En).render(TemplateKind::Body, &Variables::sparse(false));
        assert!(!en.contains("Name:") && !en.contains("Client:") && !en.contains("Listen"), "{en}");
    }

    #[test]
    fn overrides_are_checked_and_used() {
        let o = TemplateOverrides { subject: Some("VM {{ number }} {{ client|upper }}".into()), ..Default::default() };
        let t = Templates::new(Language::En, &o).unwrap();
        assert_eq!(
            t.render(TemplateKind::Subject, &Variables::sample(Language::En, false)),
            "VM +74951234567 ACME LLC"
        );
        assert_eq!(t.source(TemplateKind::Body), EN_BODY);

        let bad = |o: TemplateOverrides| Templates::new(Language::En, &o).unwrap_err();
        let e = bad(TemplateOverrides { subject: Some("{{ numbr }}".into()), ..Default::default() });
        assert_eq!(e.kind, TemplateKind::Subject);
        assert!(e.message.contains("undefined"), "{e}");
        let e = bad(TemplateOverrides { body: Some("{% if x %}".into()), ..Default::default() });
        assert!(e.message.contains("syntax error"), "{e}");
        // Reminder variables exist only in reminder templates.
        let e = bad(TemplateOverrides { body: Some("{{ waited }}".into()), ..Default::default() });
        assert_eq!(e.kind, TemplateKind::Body);
        assert!(
            Templates::new(
                Language::En,
                &TemplateOverrides { reminder_body: Some("{{ waited }} {{ step }}".into()), ..Default::default() }
            )
            .is_ok()
        );
        // A template that loops too long runs out of fuel: at load time an error.
        let e = bad(TemplateOverrides {
            body: Some("{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}".into()),
            ..Default::default()
        });
        assert!(e.message.contains("fuel"), "{e}");
    }

    #[test]
    fn subjects_are_one_line() {
        let o = TemplateOverrides { subject: Some("a\n{{ caller_name }}\r\nBcc: x@y".into()), ..Default::default() };
        let t = Templates::new(Language::En, &o).unwrap();
        let mut v = Variables::sample(Language::En, false);
        v.caller_name = "Eve\r\nX-Injected: 1".into();
        assert_eq!(t.render(TemplateKind::Subject, &v), "a Eve X-Injected: 1 Bcc: x@y");
        v.caller_name = "x".repeat(400);
        assert_eq!(t.render(TemplateKind::Subject, &v).chars().count(), MAX_SUBJECT_CHARS);
    }

    #[test]
    fn words() {
        assert_eq!(ended_words(Language::En, EndReason::HangUp, None), "the caller hung up");
        assert_eq!(ended_words(Language::Ru, EndReason::FinishKey, Some('*')), "абонент нажал *, чтобы закончить");
        assert_eq!(format_waited(Language::En, Duration::from_secs(45 * 60 + 59)), "45 min");
        assert_eq!(format_waited(Language::En, Duration::from_secs(5 * 3600)), "5 h");
        assert_eq!(format_waited(Language::Ru, Duration::from_secs(5 * 3600 + 600)), "5 ч 10 мин");
        assert_eq!(humanize("new_year"), "New year");
        assert_eq!(humanize("after-hours"), "After hours");
        assert_eq!(humanize("default"), "Default");
    }

    #[test]
    fn phone_numbers_in_both_forms() {
        let ru = Region::from_code("RU").ok();
        assert_eq!(phone_forms("+74951234567", ru), Some(("+74951234567".to_owned(), "8 (495) 123-45-67".to_owned())));
        assert_eq!(phone_forms("84951234567", ru).map(|f| f.0), Some("+74951234567".to_owned()));
        assert_eq!(phone_forms("+78005553535", ru).map(|f| f.1), Some("8 (800) 555-35-35".to_owned()));
        // Another country: international format.
        assert_eq!(phone_forms("+12015550123", ru).map(|f| f.1), Some("+1 201-555-0123".to_owned()));
        // No region: only numbers with a country code; their own national format.
        assert_eq!(phone_forms("+74951234567", None).map(|f| f.1), Some("8 (495) 123-45-67".to_owned()));
        assert_eq!(phone_forms("4951234567", None), None);
        for bad in ["", "anonymous", "+7495\r\n", "sip:x@y", "12", &"1".repeat(70)] {
            assert_eq!(phone_forms(bad, ru), None, "{bad:?}");
        }
    }
}
