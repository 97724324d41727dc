//! The configuration of one mailbox, read from a TOML file.
//!
//! `examples/voicemail.toml` in the repository documents every key. In short:
//!
//! ```toml
//! mailbox = "Sales"
//! number = "+74951234567"
//! timezone = "Europe/Moscow"
//! spool = "voicemail-data/spool"
//!
//! [store]
//! min_free = "10MB"        # refuse new calls when less is free on the spool's file system
//! # url = "postgres://voicemail@db.example.com:5432/voicemail"   # a store shared by nodes
//! # node = "vm1"           # this node's name in a shared store (default: the host name)
//! # ca_file = "db-ca.pem"  # the CA of the database's TLS certificate (default: public CAs)
//!
//! [recording]
//! max_length = "3m"
//! silence_timeout = "10s"
//! format = "opus"          # "wav" (default), "wav-g711" or "opus"
//!
//! [media]
//! codecs = ["opus", "g722", "pcma", "pcmu", "l16"]   # preference order (this is the default)
//! opus_sample_rate_hz = 16000                          # or 48000
//!
//! [greetings]
//! default = "builtin:default"
//! after_hours = "greetings/after-hours.wav"
//!
//! [schedule]
//! after_hours_greeting = "after_hours"
//! [schedule.business_hours]
//! monday = "09:00-13:00, 14:00-18:00"
//! # ... every weekday, "closed" for closed days
//!
//! [[schedule.holidays]]
//! name = "New Year"
//! dates = "12-31..01-08"
//! greeting = "default"
//!
//! [delivery.maildir]
//! root = "voicemail-data/Maildir"
//! folder = "Voicemail"
//!
//! [email]
//! language = "ru"          # the built-in Russian e-mails; subject/body templates may replace them
//!
//! [followup]
//! remind_after = "4h"      # business hours without a callback before the first reminder
//! remind_every = "4h"
//! escalate_after = "8h"
//! escalate_to = ["head-of-sales@example.com"]
//! ```
//!
//! Sizes (`[store] min_free`) are a number of bytes or digits with a unit: `"10MB"`, `"512kB"`,
//! `"1GB"` (powers of 1000) or `"64KiB"`, `"1MiB"`, `"1GiB"` (powers of 1024); see
//! [`parse_size`]. Durations are like `"90s"` or `"1m30s"`; see [`parse_duration`].
//!
//! Reading is strict: an unknown key, a value of the wrong type, a malformed duration, size,
//! time range or date, an unknown time zone or region, a greeting name the schedule uses but
//! `[greetings]` does not define, and a greeting file that is missing or does not decode are
//! all errors ([`ConfigError`]) that name the key path and say what was expected. Nothing
//! falls back silently; keys that may be omitted say so, with their default, in the example.
//! The file is deserialised with serde into private `Raw…` structs (`deny_unknown_fields`),
//! and `serde_path_to_error` reports the key path of a serde error
//! (`schedule.holidays[0].dates`); toml gives its line and column.
//!
//! Reading happens in two steps. [`Config::from_toml_str`] parses and validates the text
//! without touching the file system; [`Config::load_prompts`] and [`Config::load_directory`]
//! then load the greeting files and the client directory. [`Config::load`] does all of it for
//! a file, resolving relative paths against the file's directory.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use serde::Deserialize;

use crate::call::CallConfig;
use crate::codec::CodecKind;
use crate::deliver::{ImapTarget, MaildirTarget, SmtpTarget};
use crate::directory::{self, Directory, DirectoryError};
use crate::greeting::{GreetingError, Prompt};
use crate::recording::RecordingFormat;
use crate::remind::FollowupConfig;
use crate::rtp::dtmf::DtmfDigit;
use crate::schedule::{
    DateRange, DayHours, GreetingChoice, Holiday, Schedule, TemporaryGreeting, WeekHours, parse_instant,
};
use crate::template::{Language, TemplateOverrides, Templates};
use crate::transcribe::{self, TranscriptionConfig};

/// The greeting file value that selects the greeting bundled with the crate.
pub const BUILTIN_DEFAULT_GREETING: &str = "builtin:default";

/// The name of the default greeting in `[greetings]`.
pub const DEFAULT_GREETING_NAME: &str = "default";

/// Why a configuration could not be read. Every variant names the key path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed, a key is unknown or missing, or a value has the wrong type.
    #[error("{}", display_parse(.key.as_deref(), .message, .line))]
    Parse {
        /// The key path (`schedule.business_hours.monday`), when it could be located.
        key: Option<String>,
        /// What went wrong and what was expected.
        message: String,
        /// The 1-based line and column, when known.
        line: Option<(usize, usize)>,
        /// TOML's full report, with the offending line and a caret under the span.
        detail: String,
    },
    /// A value is well-typed but not valid.
    #[error("{key}: {message}")]
    Invalid {
        /// The key path.
        key: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A greeting file exists but could not be decoded.
    #[error("{key}: {source}")]
    Greeting {
        /// The key path (`greetings.after_hours`).
        key: String,
        /// Why the greeting could not be loaded.
        #[source]
        source: GreetingError,
    },
    /// The client directory could not be loaded.
    #[error("{key}: {source}")]
    Directory {
        /// The key path (`directory.path`).
        key: String,
        /// Why the directory could not be loaded.
        #[source]
        source: DirectoryError,
    },
}

fn display_parse(key: Option<&str>, message: &str, line: &Option<(usize, usize)>) -> String {
    let mut out = String::new();
    if let Some(key) = key {
        out.push_str(key);
        out.push_str(": ");
    }
    out.push_str(message.trim_end());
    if let Some((l, c)) = line {
        out.push_str(&format!(" (line {l}, column {c})"));
    }
    out
}

impl ConfigError {
    /// The key path the error is about, if known.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Parse { key, .. } => key.as_deref(),
            ConfigError::Invalid { key, .. }
            | ConfigError::Greeting { key, .. }
            | ConfigError::Directory { key, .. } => Some(key),
        }
    }

    fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid { key: key.into(), message: message.into() }
    }

    /// The same error about the mailbox table `prefix` (`mailboxes[1]`): its key path gets
    /// the prefix.
    fn within(self, prefix: &str) -> Self {
        let join = |key: String| format!("{prefix}.{key}");
        match self {
            ConfigError::Parse { key, message, line, detail } => {
                ConfigError::Parse { key: Some(key.map_or_else(|| prefix.to_owned(), join)), message, line, detail }
            }
            ConfigError::Invalid { key, message } => ConfigError::Invalid { key: join(key), message },
            ConfigError::Greeting { key, source } => ConfigError::Greeting { key: join(key), source },
            ConfigError::Directory { key, source } => ConfigError::Directory { key: join(key), source },
            read @ ConfigError::Read { .. } => read,
        }
    }
}

/// Where a greeting's audio comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GreetingSource {
    /// The greeting bundled with the crate ([`Prompt::default_greeting`]), written
    /// `"builtin:default"`.
    BuiltinDefault,
    /// An audio file (WAV, MP3, FLAC, Ogg/Vorbis).
    File(PathBuf),
}

/// Recording limits and the beep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecordingConfig {
    /// The longest message (`max_length`, default 5 minutes).
    pub max_length: Duration,
    /// Silence that ends the recording (`silence_timeout`, default 10 s; `None` when `"off"`).
    pub silence_timeout: Option<Duration>,
    /// No RTP for this long ends the call (`media_timeout`, default 30 s).
    pub media_timeout: Duration,
    /// The DTMF key that ends the recording (`finish_key`, default `#`; `None` when `"none"`).
    pub finish_key: Option<char>,
    /// The beep's frequency in Hz (`beep_frequency_hz`, default 1000).
    pub beep_frequency_hz: u32,
    /// The beep's length (`beep_length`, default 250 ms).
    pub beep_length: Duration,
    /// The file format of recordings (`format`: `"wav"`, the default, `"wav-g711"` or
    /// `"opus"`).
    pub format: RecordingFormat,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            max_length: Duration::from_secs(300),
            silence_timeout: Some(Duration::from_secs(10)),
            media_timeout: Duration::from_secs(30),
            finish_key: Some('#'),
            beep_frequency_hz: 1000,
            beep_length: Duration::from_millis(250),
            format: RecordingFormat::Wav,
        }
    }
}

/// The codecs offered to callers (`[media]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// The codecs we accept, most preferred first (`codecs`, default `["opus", "g722",
    /// "pcma", "pcmu", "l16"]`): an offer is answered with the first of these that it has.
    pub codecs: Vec<CodecKind>,
    /// The audio rate of Opus calls and their recordings (`opus_sample_rate_hz`: 16000, the
    /// default, or 48000; 8000 is accepted too).
    pub opus_sample_rate_hz: u32,
}

/// The default codec preference: wideband first.
pub const DEFAULT_CODECS: [CodecKind; 5] =
    [CodecKind::Opus, CodecKind::G722, CodecKind::Pcma, CodecKind::Pcmu, CodecKind::L16];

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig { codecs: DEFAULT_CODECS.to_vec(), opus_sample_rate_hz: 16_000 }
    }
}

impl RecordingConfig {
    /// Copies the limits, the finish key and the beep into a call's configuration.
    pub fn apply_to(&self, call: &mut CallConfig) -> Result<(), GreetingError> {
        call.max_length = self.max_length;
        call.silence_timeout = self.silence_timeout;
        call.media_timeout = self.media_timeout;
        call.finish_key = self.finish_key.and_then(DtmfDigit::from_char);
        // Frequencies are validated to 100..=3800 Hz, exactly representable as f32.
        #[allow(clippy::cast_precision_loss)]
        let frequency = self.beep_frequency_hz as f32;
        call.beep = Some(Prompt::beep(frequency, self.beep_length)?);
        Ok(())
    }
}

/// The delivery targets; each one that is set receives every message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// A local Maildir++ folder (`[delivery.maildir]`).
    pub maildir: Option<MaildirTarget>,
    /// An SMTP server (`[delivery.smtp]`).
    pub smtp: Option<SmtpTarget>,
    /// An IMAP folder (`[delivery.imap]`).
    pub imap: Option<ImapTarget>,
}

impl DeliveryConfig {
    /// Whether no target is configured (messages then stay in the spool only).
    pub fn is_empty(&self) -> bool {
        self.maildir.is_none() && self.smtp.is_none() && self.imap.is_none()
    }
}

/// Where the client directory is (`[directory]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryConfig {
    /// The CSV file (`path`).
    pub path: PathBuf,
    /// The ISO 3166 region national numbers are read in (`default_region`, like `"RU"`).
    pub default_region: String,
}

/// Where messages are kept and the spool's storage limits (`[store]`).
#[derive(Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The free space the spool's file system must keep, in bytes (`min_free`, default
    /// `"10MB"`, that is 10 000 000 bytes). When less is free, new calls are refused (the SIP
    /// endpoint answers 503 Service Unavailable). 0 (`"0"`) disables the check.
    pub min_free_bytes: u64,
    /// A PostgreSQL database shared by several nodes (`url`, like
    /// `"postgres://voicemail@db.example.com:5432/voicemail"`; cargo feature `postgres`):
    /// messages, follow-up, history, the outbox and the recordings of stored messages live
    /// there (`store::PostgresStore`, feature `postgres`). `None` (the default): the embedded SQLite
    /// store in the spool, no server needed.
    pub url: Option<String>,
    /// This node's name in a shared store (`node`, default: the host name): the calls it
    /// records in progress are its own, recovered by it when it restarts (or by an operator,
    /// [`crate::Mailbox::recover_spool`]). Every node of one database needs its own name.
    pub node: String,
    /// The CA certificates (PEM) the database server's TLS certificate must chain to
    /// (`ca_file`, only with `url`; relative to the configuration file): for a database with a
    /// company CA or a self-signed certificate. `None` (the default): the public web roots.
    /// TLS itself is the URL's `sslmode`: `require` always, `prefer` (the default) when the
    /// server offers it, `disable` never; the certificate is always verified.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("min_free_bytes", &self.min_free_bytes)
            .field("url", &self.url.as_deref().map(crate::store::redact_url))
            .field("node", &self.node)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// The default of `[store] min_free`: 10 MB.
const DEFAULT_MIN_FREE_BYTES: u64 = 10_000_000;

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { min_free_bytes: DEFAULT_MIN_FREE_BYTES, url: None, node: default_node(), ca_file: None }
    }
}

/// The default `[store] node`: the host name (`localhost` when it has none).
fn default_node() -> String {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy().trim().to_owned();
    if name.is_empty() || name == "(none)" { "localhost".to_owned() } else { name }
}

/// The configuration of one mailbox. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Config {
    /// The mailbox's name (`mailbox`), shown in e-mails.
    pub mailbox: String,
    /// The mailbox's own number (`number`), if given.
    pub number: Option<String>,
    /// Other numbers and SIP user names that select this mailbox (`numbers`): with `number`,
    /// what a call's diverting number, Request-URI user and To user are matched against when
    /// one file defines several mailboxes ([`MailboxesConfig`], [`crate::mailboxes`]).
    pub numbers: Vec<String>,
    /// The IANA time zone the calendar and e-mails use (`timezone`).
    pub timezone: TimeZone,
    /// The spool directory (`spool`), where recordings and metadata are written first.
    pub spool: PathBuf,
    /// The spool's storage limits (`[store]`).
    pub store: StoreConfig,
    /// Recording limits and format (`[recording]`).
    pub recording: RecordingConfig,
    /// Codec preference (`[media]`).
    pub media: MediaConfig,
    /// The greetings by name (`[greetings]`); always has `"default"`.
    pub greetings: BTreeMap<String, GreetingSource>,
    /// The greeting calendar (`[schedule]`).
    pub schedule: Schedule,
    /// Delivery targets (`[delivery]`).
    pub delivery: DeliveryConfig,
    /// The client directory (`[directory]`), if any.
    pub directory: Option<DirectoryConfig>,
    /// SIP endpoint settings (`[sip]`), kept as a raw table: validated by voicemail-sip.
    pub sip: Option<toml::Table>,
    /// Human labels of greetings, by name (`label` of a greeting table in `[greetings]`); a
    /// greeting without one is labelled by [`Config::greeting_label`].
    pub greeting_labels: BTreeMap<String, String>,
    /// The e-mails' language and templates (`[email]`).
    pub email: EmailConfig,
    /// Reminders of calls not returned (`[followup]`), if configured.
    pub followup: Option<FollowupConfig>,
    /// The web front-end's settings (`[web]`), kept as a raw table: validated by the web
    /// front-end. The mailbox reads only `public_url` ([`Config::public_url`]).
    pub web: Option<toml::Table>,
    /// `[web] public_url`, checked, without a trailing `/`: e-mails link each message's page,
    /// `<public_url>/messages/<id>`. With several mailboxes, only the one the web queue
    /// serves has it.
    pub public_url: Option<String>,
    /// The speech-to-text hook (`[transcription]`), if configured.
    pub transcription: Option<TranscriptionConfig>,
    /// The answering machine's operations settings, kept as raw tables and validated by it:
    /// `[metrics]` (the Prometheus endpoint) and `[log]` (the log format), shared by every
    /// mailbox of a file.
    pub ops: OpsTables,
    prompts: BTreeMap<String, Prompt>,
    client_directory: Option<Directory>,
}

/// The front-end's operations tables, raw: `[metrics]` and `[log]`. The mailbox reads
/// neither; the answering machine validates them (its `ops` module).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OpsTables {
    /// `[metrics]`: where the Prometheus endpoint listens.
    pub metrics: Option<toml::Table>,
    /// `[log]`: the log format.
    pub log: Option<toml::Table>,
}

impl OpsTables {
    /// Whether neither table is there.
    fn is_empty(&self) -> bool {
        self.metrics.is_none() && self.log.is_none()
    }
}

/// The e-mails' language and templates (`[email]`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EmailConfig {
    /// `language`: `"en"` (the default) or `"ru"`.
    pub language: Language,
    /// The compiled templates: the language's built-in ones, with the configured
    /// `subject`, `body`, `reminder_subject` and `reminder_body` in their place.
    pub templates: Templates,
}

impl Config {
    /// The configuration the answering machine runs on without a file: the bundled default
    /// greeting, spool `./voicemail-data/spool`, delivery into the Maildir folder `Voicemail`
    /// under `./voicemail-data/Maildir`, time zone UTC, no SMTP or IMAP, no client directory.
    /// Call [`Config::load_prompts`] before using [`Config::prompt`].
    pub fn default_embedded() -> Self {
        let mut greetings = BTreeMap::new();
        greetings.insert(DEFAULT_GREETING_NAME.to_owned(), GreetingSource::BuiltinDefault);
        Config {
            mailbox: "voicemail".to_owned(),
            number: None,
            numbers: Vec::new(),
            timezone: TimeZone::UTC,
            spool: PathBuf::from("./voicemail-data/spool"),
            store: StoreConfig::default(),
            recording: RecordingConfig::default(),
            media: MediaConfig::default(),
            greetings,
            schedule: Schedule::new(TimeZone::UTC, DEFAULT_GREETING_NAME),
            delivery: DeliveryConfig {
                maildir: Some(MaildirTarget {
                    root: PathBuf::from("./voicemail-data/Maildir"),
                    folder: "Voicemail".to_owned(),
                }),
                smtp: None,
                imap: None,
            },
            directory: None,
            sip: None,
            greeting_labels: BTreeMap::new(),
            email: EmailConfig::default(),
            followup: None,
            web: None,
            public_url: None,
            transcription: None,
            ops: OpsTables::default(),
            prompts: BTreeMap::new(),
            client_directory: None,
        }
    }

    /// Parses and validates a configuration. Relative paths stay relative (to the current
    /// directory). Touches no file: greeting files and the directory are loaded by
    /// [`Config::load_prompts`] and [`Config::load_directory`].
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::parse(text, None)
    }

    /// Like [`Config::from_toml_str`], resolving relative paths against `base_dir`.
    pub fn from_toml_str_in(text: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        Self::parse(text, Some(base_dir))
    }

    /// Reads a configuration file, resolves relative paths against its directory, and loads
    /// (and so validates) every greeting file and the client directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (text, base) = read_file(path)?;
        let mut config = Self::parse(&text, Some(&base))?;
        config.load_prompts()?;
        config.load_directory()?;
        Ok(config)
    }

    /// Loads every greeting (idempotent). A missing file is `greetings.NAME: file not found`.
    pub fn load_prompts(&mut self) -> Result<(), ConfigError> {
        let mut prompts = BTreeMap::new();
        let mut builtin: Option<Prompt> = None;
        for (name, source) in &self.greetings {
            let key = format!("greetings.{name}");
            let prompt = match source {
                GreetingSource::BuiltinDefault => builtin.get_or_insert_with(Prompt::default_greeting).clone(),
                GreetingSource::File(path) => {
                    if !path.is_file() {
                        return Err(ConfigError::invalid(key, format!("file not found: {}", path.display())));
                    }
                    Prompt::load(path).map_err(|source| ConfigError::Greeting { key, source })?
                }
            };
            prompts.insert(name.clone(), prompt.renamed(name));
        }
        self.prompts = prompts;
        Ok(())
    }

    /// Loads the client directory, if one is configured (idempotent).
    pub fn load_directory(&mut self) -> Result<Option<&Directory>, ConfigError> {
        self.client_directory = match &self.directory {
            None => None,
            Some(d) => Some(
                Directory::load(&d.path, &d.default_region)
                    .map_err(|source| ConfigError::Directory { key: "directory.path".to_owned(), source })?,
            ),
        };
        Ok(self.client_directory.as_ref())
    }

    /// The loaded prompt of a greeting name (after [`Config::load_prompts`]).
    pub fn prompt(&self, name: &str) -> Option<&Prompt> {
        self.prompts.get(name)
    }

    /// The loaded client directory (after [`Config::load_directory`]), if one is configured.
    pub fn client_directory(&self) -> Option<&Directory> {
        self.client_directory.as_ref()
    }

    /// The greeting that plays at `at` (see [`Schedule::greeting_at`]).
    pub fn greeting_at(&self, at: Timestamp) -> GreetingChoice {
        self.schedule.greeting_at(at)
    }

    /// The IANA name of the time zone (`"Europe/Moscow"`, `"UTC"`).
    pub fn timezone_name(&self) -> &str {
        self.timezone.iana_name().unwrap_or("UTC")
    }

    /// A greeting's human label: its configured `label`, else its name made readable
    /// (`new_year` → `New year`).
    pub fn greeting_label(&self, name: &str) -> String {
        match self.greeting_labels.get(name) {
            Some(label) => label.clone(),
            None => crate::template::humanize(name),
        }
    }

    /// The page of message `id` in the web front-end (`<public_url>/messages/<id>`), when
    /// `[web] public_url` is set.
    pub fn message_url(&self, id: &crate::MessageId) -> Option<String> {
        self.public_url.as_ref().map(|base| format!("{base}/messages/{id}"))
    }

    fn parse(text: &str, base: Option<&Path>) -> Result<Self, ConfigError> {
        if top_level_keys(text)?.iter().any(|k| k == "mailboxes") {
            return Err(ConfigError::invalid(
                "mailboxes",
                "this file defines several mailboxes ([[mailboxes]]): read it with MailboxesConfig \
                 (the answering machine, `inbox --mailbox NAME` and Python's Config.load do)",
            ));
        }
        let document = toml::Deserializer::parse(text).map_err(|e| parse_error(text, None, &e))?;
        let raw: RawConfig =
            serde_path_to_error::deserialize(document).map_err(|e| parse_error(text, key_path(e.path()), e.inner()))?;
        raw.validate(base)
    }
}

/// The keys a file with several mailboxes has at its top level.
const SHARED_KEYS: [&str; 6] = ["mailboxes", "default_mailbox", "sip", "web", "metrics", "log"];

/// A configuration file: one mailbox (the shape [`Config`] reads) or several, each a
/// `[[mailboxes]]` table holding what a one-mailbox file holds, with `[sip]`, `[web]`,
/// `[metrics]` and `[log]` shared at the top level. One answering machine serves them all
/// with one SIP listener.
///
/// ```toml
/// default_mailbox = "Sales"          # optional: calls for an unknown number go here (else 404)
///
/// [sip]
/// listen = "0.0.0.0:5060"
///
/// [[mailboxes]]
/// mailbox = "Sales"
/// number = "+74951234500"
/// numbers = ["sales", "100"]         # more numbers or SIP users that select it
/// timezone = "Europe/Moscow"
/// spool = "data/sales/spool"         # a spool per mailbox
/// [mailboxes.greetings]
/// default = "greetings/sales.wav"
/// [mailboxes.delivery.maildir]
/// root = "data/Maildir"
/// folder = "Sales"
///
/// [[mailboxes]]
/// mailbox = "Support"
/// number = "+74951234600"
/// # ...
/// ```
///
/// A one-mailbox file reads as a set of one, and that mailbox is the default (it takes every
/// call, as before). In a file with `[[mailboxes]]`, every other top-level key is an error (a
/// mailbox's settings go in its table), as is a `[sip]`, `[web]`, `[metrics]` or `[log]`
/// inside a mailbox. Errors name the key path with the mailbox's index:
/// `mailboxes[1].delivery.smtp.to[0]`. The
/// mailboxes' names must differ, and so must their spools (each keeps its own store and
/// recordings) and the numbers that select them (compared as [`crate::mailboxes`] compares
/// them: E.164 in each mailbox's region, and SIP users ignoring case). A mailbox that no
/// number selects must be the default. `[web] mailbox` names the mailbox the web queue
/// serves (default: the default mailbox, else the first); only that mailbox's e-mails link
/// to its pages (`[web] public_url`).
#[derive(Debug, Clone)]
pub struct MailboxesConfig {
    /// The mailboxes, in file order; never empty.
    pub mailboxes: Vec<Config>,
    /// The mailbox calls for an unknown number go to (`default_mailbox`); in a one-mailbox
    /// file, that mailbox.
    pub default_mailbox: Option<String>,
    /// The shared `[sip]` table (each mailbox's [`Config::sip`] has it too).
    pub sip: Option<toml::Table>,
    /// The shared `[web]` table (each mailbox's [`Config::web`] has it too).
    pub web: Option<toml::Table>,
    /// The shared `[metrics]` and `[log]` tables (each mailbox's [`Config::ops`] has them too).
    pub ops: OpsTables,
    multi: bool,
}

impl From<Config> for MailboxesConfig {
    /// One mailbox, which is the default.
    fn from(config: Config) -> Self {
        MailboxesConfig {
            default_mailbox: Some(config.mailbox.clone()),
            sip: config.sip.clone(),
            web: config.web.clone(),
            ops: config.ops.clone(),
            mailboxes: vec![config],
            multi: false,
        }
    }
}

/// A configuration file's text and the directory its relative paths are resolved against.
fn read_file(path: &Path) -> Result<(String, PathBuf), ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((text, base))
}

impl MailboxesConfig {
    /// Parses and validates a file of either shape without touching the file system
    /// (relative paths stay relative); see [`Config::from_toml_str`].
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::parse(text, None)
    }

    /// Like [`MailboxesConfig::from_toml_str`], resolving relative paths against `base_dir`.
    pub fn from_toml_str_in(text: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        Self::parse(text, Some(base_dir))
    }

    /// Reads a file of either shape, resolves relative paths against its directory, and loads
    /// every mailbox's greetings and client directory (see [`Config::load`]).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (text, base) = read_file(path)?;
        let mut config = Self::parse(&text, Some(&base))?;
        config.load_prompts()?;
        config.load_directories()?;
        Ok(config)
    }

    /// Loads every mailbox's greetings ([`Config::load_prompts`]); errors name the mailbox.
    pub fn load_prompts(&mut self) -> Result<(), ConfigError> {
        let multi = self.multi;
        for (i, c) in self.mailboxes.iter_mut().enumerate() {
            c.load_prompts().map_err(|e| if multi { e.within(&format!("mailboxes[{i}]")) } else { e })?;
        }
        Ok(())
    }

    /// Loads every mailbox's client directory ([`Config::load_directory`]).
    pub fn load_directories(&mut self) -> Result<(), ConfigError> {
        let multi = self.multi;
        for (i, c) in self.mailboxes.iter_mut().enumerate() {
            c.load_directory().map_err(|e| if multi { e.within(&format!("mailboxes[{i}]")) } else { e })?;
        }
        Ok(())
    }

    /// Whether the file has the `[[mailboxes]]` shape.
    pub fn is_multi(&self) -> bool {
        self.multi
    }

    /// The names of the mailboxes, in file order.
    pub fn names(&self) -> Vec<&str> {
        self.mailboxes.iter().map(|c| c.mailbox.as_str()).collect()
    }

    /// The mailbox named `name` (exactly, else ignoring case).
    pub fn get(&self, name: &str) -> Option<&Config> {
        self.index_of(name).and_then(|i| self.mailboxes.get(i))
    }

    /// The position of the mailbox named `name` (exactly, else ignoring case).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.mailboxes
            .iter()
            .position(|c| c.mailbox == name)
            .or_else(|| self.mailboxes.iter().position(|c| c.mailbox.to_lowercase() == name.to_lowercase()))
    }

    /// The default mailbox ([`MailboxesConfig::default_mailbox`]), if there is one.
    pub fn default_config(&self) -> Option<&Config> {
        self.default_mailbox.as_deref().and_then(|n| self.get(n))
    }

    /// The mailbox a front-end that serves one uses when none is named: the default, else
    /// the first.
    pub fn primary(&self) -> &Config {
        match self.default_config() {
            Some(c) => c,
            None => &self.mailboxes[0],
        }
    }

    /// The mailbox the web queue serves: `[web] mailbox`, else [`MailboxesConfig::primary`].
    pub fn web_mailbox(&self) -> &Config {
        match web_mailbox_name(self.web.as_ref()).and_then(|n| self.get(n)) {
            Some(c) => c,
            None => self.primary(),
        }
    }

    /// The mailbox named `name`, or the primary one without a name; the error says which
    /// names there are.
    pub fn choose(&self, name: Option<&str>) -> Result<&Config, ConfigError> {
        match name {
            None => Ok(self.primary()),
            Some(n) => self.get(n).ok_or_else(|| {
                ConfigError::invalid(
                    "mailbox",
                    format!("no mailbox is named {n:?}: the mailboxes are {}", self.quoted_names()),
                )
            }),
        }
    }

    fn quoted_names(&self) -> String {
        self.mailboxes.iter().map(|c| format!("{:?}", c.mailbox)).collect::<Vec<_>>().join(", ")
    }

    fn parse(text: &str, base: Option<&Path>) -> Result<Self, ConfigError> {
        let keys = top_level_keys(text)?;
        if !keys.iter().any(|k| k == "mailboxes") {
            return Config::parse(text, base).map(MailboxesConfig::from);
        }
        if let Some(k) = keys.iter().find(|k| !SHARED_KEYS.contains(&k.as_str())) {
            return Err(ConfigError::invalid(
                k.as_str(),
                "a file with [[mailboxes]] keeps every mailbox's settings in its [[mailboxes]] table; \
                 only default_mailbox, [sip], [web], [metrics] and [log] are shared at the top level",
            ));
        }
        let document = toml::Deserializer::parse(text).map_err(|e| parse_error(text, None, &e))?;
        let raw: RawFile =
            serde_path_to_error::deserialize(document).map_err(|e| parse_error(text, key_path(e.path()), e.inner()))?;
        raw.validate(base)
    }
}

/// `[web] mailbox`, when it is a string.
fn web_mailbox_name(web: Option<&toml::Table>) -> Option<&str> {
    web.and_then(|w| w.get("mailbox")).and_then(toml::Value::as_str)
}

/// The top-level keys of a TOML document (a syntax error is reported with its line).
fn top_level_keys(text: &str) -> Result<Vec<String>, ConfigError> {
    let document = toml::Deserializer::parse(text).map_err(|e| parse_error(text, None, &e))?;
    let table = toml::Table::deserialize(document).map_err(|e| parse_error(text, None, &e))?;
    Ok(table.keys().cloned().collect())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    mailboxes: Vec<RawConfig>,
    default_mailbox: Option<String>,
    #[serde(default)]
    sip: Option<toml::Table>,
    #[serde(default)]
    web: Option<toml::Table>,
    #[serde(default)]
    metrics: Option<toml::Table>,
    #[serde(default)]
    log: Option<toml::Table>,
}

impl RawFile {
    fn validate(self, base: Option<&Path>) -> Result<MailboxesConfig, ConfigError> {
        if self.mailboxes.is_empty() {
            return Err(ConfigError::invalid("mailboxes", "expected at least one [[mailboxes]] table"));
        }
        let public_url = match self.web.as_ref().and_then(|w| w.get("public_url")) {
            None => None,
            Some(toml::Value::String(url)) => Some(check_public_url(url)?),
            Some(other) => {
                return Err(ConfigError::invalid(
                    "web.public_url",
                    format!("expected a string like \"https://voicemail.example.com\", found {}", other.type_str()),
                ));
            }
        };
        let mut mailboxes: Vec<Config> = Vec::with_capacity(self.mailboxes.len());
        for (i, mut raw) in self.mailboxes.into_iter().enumerate() {
            let prefix = format!("mailboxes[{i}]");
            for (key, present) in [("sip", raw.sip.is_some()), ("web", raw.web.is_some())] {
                if present {
                    return Err(ConfigError::invalid(
                        format!("{prefix}.{key}"),
                        format!("[{key}] is shared by every mailbox: put it at the top level of the file"),
                    ));
                }
            }
            if !raw.ops().is_empty() {
                let key = if raw.metrics.is_some() { "metrics" } else { "log" };
                return Err(ConfigError::invalid(
                    format!("{prefix}.{key}"),
                    format!("[{key}] is shared by every mailbox: put it at the top level of the file"),
                ));
            }
            raw.sip = None;
            raw.web = None;
            let mut config = raw.validate(base).map_err(|e| e.within(&prefix))?;
            if let Some(j) = mailboxes.iter().position(|c| c.mailbox.to_lowercase() == config.mailbox.to_lowercase()) {
                return Err(ConfigError::invalid(
                    format!("{prefix}.mailbox"),
                    format!(
                        "mailboxes[{j}] has this name already ({:?}): every mailbox needs a name of its own",
                        config.mailbox
                    ),
                ));
            }
            if let Some(j) = mailboxes.iter().position(|c| same_path(&c.spool, &config.spool)) {
                return Err(ConfigError::invalid(
                    format!("{prefix}.spool"),
                    format!(
                        "mailboxes[{j}] uses this spool already ({}): every mailbox keeps its store and recordings in a spool of its own",
                        config.spool.display()
                    ),
                ));
            }
            if let Some(url) = &config.store.url
                && let Some(j) = mailboxes.iter().position(|c| c.store.url.as_ref() == Some(url))
            {
                return Err(ConfigError::invalid(
                    format!("{prefix}.store.url"),
                    format!(
                        "mailboxes[{j}] uses this database already ({}): every mailbox keeps its messages in a database of its own",
                        crate::store::redact_url(url)
                    ),
                ));
            }
            config.sip = self.sip.clone();
            config.web = self.web.clone();
            config.ops = OpsTables { metrics: self.metrics.clone(), log: self.log.clone() };
            mailboxes.push(config);
        }
        let find = |key: &str, name: &str| -> Result<usize, ConfigError> {
            mailboxes.iter().position(|c| c.mailbox == name).ok_or_else(|| {
                let names: Vec<String> = mailboxes.iter().map(|c| format!("{:?}", c.mailbox)).collect();
                ConfigError::invalid(key, format!("no mailbox is named {name:?}: expected one of {}", names.join(", ")))
            })
        };
        let default = self.default_mailbox.as_deref().map(|n| find("default_mailbox", n)).transpose()?;
        let served = match self.web.as_ref().and_then(|w| w.get("mailbox")) {
            None => default.unwrap_or(0),
            Some(toml::Value::String(name)) => find("web.mailbox", name)?,
            Some(other) => {
                return Err(ConfigError::invalid(
                    "web.mailbox",
                    format!("expected the name of a mailbox, found {}", other.type_str()),
                ));
            }
        };
        if let Some(c) = mailboxes.get_mut(served) {
            c.public_url = public_url;
        }
        for (i, c) in mailboxes.iter().enumerate() {
            if Some(i) != default && c.number.is_none() && c.numbers.is_empty() {
                return Err(ConfigError::invalid(
                    format!("mailboxes[{i}]"),
                    "no number selects this mailbox: set number or numbers (or name it in default_mailbox)",
                ));
            }
        }
        crate::mailboxes::Index::build(&mailboxes).map_err(|c| {
            ConfigError::invalid(
                format!("mailboxes[{}].{}", c.mailbox, c.key),
                format!(
                    "{:?} selects mailboxes[{}] ({:?}) already: a number or user selects one mailbox",
                    c.value, c.other, mailboxes[c.other].mailbox
                ),
            )
        })?;
        Ok(MailboxesConfig {
            mailboxes,
            default_mailbox: self.default_mailbox,
            sip: self.sip,
            web: self.web,
            ops: OpsTables { metrics: self.metrics, log: self.log },
            multi: true,
        })
    }
}

/// Whether two paths name the same directory, written alike (`a/./b` and `a/b/`).
fn same_path(a: &Path, b: &Path) -> bool {
    fn parts(p: &Path) -> impl Iterator<Item = std::path::Component<'_>> {
        p.components().filter(|c| !matches!(c, std::path::Component::CurDir))
    }
    parts(a).eq(parts(b))
}

/// Converts a toml error: the key path comes from serde (`None` for a syntax error or an error
/// about the whole document), the line and column from toml's span.
fn parse_error(text: &str, key: Option<String>, e: &toml::de::Error) -> ConfigError {
    let line = e.span().map(|s| line_column(text, s.start));
    ConfigError::Parse { key, message: e.message().trim_end().to_owned(), line, detail: e.to_string() }
}

/// The key path serde reports (`schedule.holidays[0].dates`), or `None` at the root.
fn key_path(path: &serde_path_to_error::Path) -> Option<String> {
    path.iter().next().is_some().then(|| path.to_string())
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

// ---------------------------------------------------------------------------------------------
// The raw, serde-facing shape of the file. Strings are validated afterwards, with key paths.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    mailbox: String,
    number: Option<String>,
    #[serde(default)]
    numbers: Vec<String>,
    timezone: String,
    spool: PathBuf,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    recording: RawRecording,
    #[serde(default)]
    media: RawMedia,
    #[serde(default)]
    greetings: BTreeMap<String, RawGreeting>,
    #[serde(default)]
    schedule: RawSchedule,
    #[serde(default)]
    delivery: DeliveryConfig,
    directory: Option<RawDirectory>,
    #[serde(default)]
    sip: Option<toml::Table>,
    #[serde(default)]
    email: RawEmail,
    followup: Option<RawFollowup>,
    #[serde(default)]
    web: Option<toml::Table>,
    transcription: Option<RawTranscription>,
    #[serde(default)]
    metrics: Option<toml::Table>,
    #[serde(default)]
    log: Option<toml::Table>,
}

impl RawConfig {
    fn ops(&self) -> OpsTables {
        OpsTables { metrics: self.metrics.clone(), log: self.log.clone() }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTranscription {
    command: Vec<String>,
    timeout: Option<String>,
    max_size: Option<RawSize>,
}

impl RawTranscription {
    fn validate(&self, base: Option<&Path>) -> Result<TranscriptionConfig, ConfigError> {
        let Some(program) = self.command.first() else {
            return Err(ConfigError::invalid(
                "transcription.command",
                "expected the program and its arguments, like [\"whisper-cli\", \"-f\", \"{audio}\"]",
            ));
        };
        if program.trim().is_empty() {
            return Err(ConfigError::invalid("transcription.command[0]", "expected a program name or path"));
        }
        for (i, arg) in self.command.iter().enumerate() {
            if arg.chars().any(|c| c.is_control() || c == '\0') {
                return Err(ConfigError::invalid(
                    format!("transcription.command[{i}]"),
                    format!("control characters are not allowed, found {arg:?}"),
                ));
            }
        }
        let mut command = self.command.clone();
        command[0] = transcribe::resolve_program(program, base);
        let timeout = match &self.timeout {
            None => transcribe::DEFAULT_TIMEOUT,
            Some(text) => {
                let t = parse_duration(text).map_err(|m| ConfigError::invalid("transcription.timeout", m))?;
                if t < Duration::from_secs(1) || t > transcribe::MAX_TIMEOUT {
                    return Err(ConfigError::invalid(
                        "transcription.timeout",
                        format!("expected between 1s and {}, found {text:?}", fmt_duration(transcribe::MAX_TIMEOUT)),
                    ));
                }
                t
            }
        };
        let max_bytes = match &self.max_size {
            None => transcribe::DEFAULT_MAX_BYTES,
            Some(size) => {
                let n = match size {
                    RawSize::Text(text) => {
                        parse_size(text).map_err(|m| ConfigError::invalid("transcription.max_size", m))?
                    }
                    RawSize::Bytes(n) => u64::try_from(*n).unwrap_or(0),
                };
                match usize::try_from(n) {
                    Ok(n) if (1000..=transcribe::MAX_MAX_BYTES).contains(&n) => n,
                    _ => {
                        return Err(ConfigError::invalid(
                            "transcription.max_size",
                            "expected a size between \"1kB\" and \"1MB\"",
                        ));
                    }
                }
            }
        };
        Ok(TranscriptionConfig { command, timeout, max_bytes })
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEmail {
    language: Option<String>,
    subject: Option<String>,
    body: Option<String>,
    reminder_subject: Option<String>,
    reminder_body: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFollowup {
    remind_after: String,
    remind_every: Option<String>,
    escalate_after: Option<String>,
    #[serde(default)]
    escalate_to: Vec<String>,
}

/// A greeting: a file path (or `"builtin:default"`), or a table with `file` and `label`.
enum RawGreeting {
    Path(String),
    Table { file: String, label: Option<String> },
}

impl<'de> Deserialize<'de> for RawGreeting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            file: String,
            label: Option<String>,
        }
        struct GreetingVisitor;
        impl<'de> serde::de::Visitor<'de> for GreetingVisitor {
            type Value = RawGreeting;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a file path, \"builtin:default\", or a table { file = \"...\", label = \"...\" }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawGreeting, E> {
                Ok(RawGreeting::Path(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawGreeting, A::Error> {
                let t = Table::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(RawGreeting::Table { file: t.file, label: t.label })
            }
        }
        deserializer.deserialize_any(GreetingVisitor)
    }
}

impl RawGreeting {
    fn file(&self) -> &str {
        match self {
            RawGreeting::Path(p) | RawGreeting::Table { file: p, .. } => p,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    min_free: Option<RawSize>,
    url: Option<String>,
    node: Option<String>,
    ca_file: Option<PathBuf>,
}

/// A size written as a string with a unit (`"10MB"`) or as a TOML integer of bytes.
enum RawSize {
    Bytes(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl serde::de::Visitor<'_> for SizeVisitor {
            type Value = RawSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size like \"10MB\", \"512kB\", \"1GiB\" or a number of bytes")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawSize, E> {
                i64::try_from(v)
                    .map(RawSize::Bytes)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawSize, E> {
                Ok(RawSize::Text(v.to_owned()))
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRecording {
    max_length: Option<String>,
    silence_timeout: Option<String>,
    media_timeout: Option<String>,
    finish_key: Option<String>,
    beep_frequency_hz: Option<u32>,
    beep_length: Option<String>,
    format: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMedia {
    codecs: Option<Vec<String>>,
    opus_sample_rate_hz: Option<u32>,
}

impl RawMedia {
    fn validate(&self) -> Result<MediaConfig, ConfigError> {
        let d = MediaConfig::default();
        let codecs = match &self.codecs {
            None => d.codecs,
            Some(names) => {
                let mut codecs = Vec::new();
                for (i, name) in names.iter().enumerate() {
                    let codec: CodecKind = name.parse().map_err(|e: crate::codec::UnknownCodec| {
                        ConfigError::invalid(format!("media.codecs[{i}]"), e.to_string())
                    })?;
                    if codecs.contains(&codec) {
                        return Err(ConfigError::invalid(
                            format!("media.codecs[{i}]"),
                            format!("{codec} is listed twice"),
                        ));
                    }
                    codecs.push(codec);
                }
                if codecs.is_empty() {
                    return Err(ConfigError::invalid("media.codecs", "expected at least one codec"));
                }
                codecs
            }
        };
        let opus_sample_rate_hz = match self.opus_sample_rate_hz {
            None => d.opus_sample_rate_hz,
            Some(r) if CodecKind::Opus.supports_sample_rate(r) => r,
            Some(r) => {
                return Err(ConfigError::invalid(
                    "media.opus_sample_rate_hz",
                    format!("expected 16000 or 48000 (or 8000), found {r}"),
                ));
            }
        };
        Ok(MediaConfig { codecs, opus_sample_rate_hz })
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    default_greeting: Option<String>,
    business_hours_greeting: Option<String>,
    after_hours_greeting: Option<String>,
    business_hours: Option<RawWeek>,
    #[serde(default)]
    holidays: Vec<RawHoliday>,
    temporary: Option<RawTemporary>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeek {
    monday: String,
    tuesday: String,
    wednesday: String,
    thursday: String,
    friday: String,
    saturday: String,
    sunday: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHoliday {
    name: String,
    dates: String,
    greeting: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemporary {
    greeting: String,
    from: Option<DateTimeValue>,
    until: DateTimeValue,
}

/// A date-time written as a string or as a bare TOML date-time.
#[derive(Deserialize)]
#[serde(untagged, expecting = "expected a date-time like \"2026-12-01T18:00\" or 2026-12-01T18:00:00+03:00")]
enum DateTimeValue {
    Text(String),
    Toml(toml::value::Datetime),
}

impl DateTimeValue {
    fn as_text(&self) -> String {
        match self {
            DateTimeValue::Text(s) => s.clone(),
            DateTimeValue::Toml(d) => d.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirectory {
    path: PathBuf,
    default_region: String,
}

impl RawConfig {
    fn validate(self, base: Option<&Path>) -> Result<Config, ConfigError> {
        let resolve = |p: &Path| match base {
            Some(base) if p.is_relative() => base.join(p),
            _ => p.to_path_buf(),
        };

        check_text("mailbox", &self.mailbox)?;
        if let Some(number) = &self.number {
            check_selector("number", number)?;
        }
        for (i, n) in self.numbers.iter().enumerate() {
            check_selector(&format!("numbers[{i}]"), n)?;
        }

        let timezone = parse_timezone(&self.timezone)?;

        if self.spool.as_os_str().is_empty() {
            return Err(ConfigError::invalid("spool", "expected a directory path, found an empty string"));
        }
        let spool = resolve(&self.spool);
        let mut store = self.store.validate()?;
        store.ca_file = store.ca_file.as_deref().map(resolve);

        let recording = self.recording.validate()?;
        let media = self.media.validate()?;

        let mut greetings = BTreeMap::new();
        let mut greeting_labels = BTreeMap::new();
        for (name, raw) in &self.greetings {
            let key = format!("greetings.{name}");
            check_greeting_name(&key, name)?;
            if let RawGreeting::Table { label: Some(label), .. } = raw {
                check_text(&format!("{key}.label"), label)?;
                greeting_labels.insert(name.clone(), label.clone());
            }
            let key = if matches!(raw, RawGreeting::Table { .. }) { format!("{key}.file") } else { key };
            let value = raw.file();
            let source = if let Some(builtin) = value.strip_prefix("builtin:") {
                if value != BUILTIN_DEFAULT_GREETING {
                    return Err(ConfigError::invalid(
                        key,
                        format!(
                            "unknown built-in greeting {builtin:?}: expected \"{BUILTIN_DEFAULT_GREETING}\" or a file path"
                        ),
                    ));
                }
                GreetingSource::BuiltinDefault
            } else if value.is_empty() {
                return Err(ConfigError::invalid(
                    key,
                    format!("expected a file path or \"{BUILTIN_DEFAULT_GREETING}\", found an empty string"),
                ));
            } else {
                GreetingSource::File(resolve(Path::new(value)))
            };
            greetings.insert(name.clone(), source);
        }
        greetings.entry(DEFAULT_GREETING_NAME.to_owned()).or_insert(GreetingSource::BuiltinDefault);

        let schedule = self.schedule.validate(&timezone, &greetings)?;

        let mut delivery = self.delivery;
        if let Some(m) = &mut delivery.maildir {
            if m.root.as_os_str().is_empty() {
                return Err(ConfigError::invalid(
                    "delivery.maildir.root",
                    "expected a directory path, found an empty string",
                ));
            }
            if m.folder.is_empty()
                || m.folder.starts_with('.')
                || m.folder.contains(['/', '\\', '\0'])
                || m.folder.chars().any(char::is_control)
            {
                return Err(ConfigError::invalid(
                    "delivery.maildir.folder",
                    format!(
                        "expected a folder name without '/', a leading '.' or control characters (like \"Voicemail\"), found {:?}",
                        m.folder
                    ),
                ));
            }
            m.root = resolve(&m.root);
        }
        if let Some(s) = &mut delivery.smtp {
            s.ca_file = s.ca_file.as_deref().map(resolve);
            s.tls_mode().map_err(|e| ConfigError::invalid("delivery.smtp.tls", e.to_string()))?;
        }
        if let Some(i) = &mut delivery.imap {
            i.ca_file = i.ca_file.as_deref().map(resolve);
            i.tls_mode().map_err(|e| ConfigError::invalid("delivery.imap.tls", e.to_string()))?;
        }
        if let Some(s) = &delivery.smtp {
            check_host("delivery.smtp.host", &s.host)?;
            check_port("delivery.smtp.port", s.port)?;
            check_address("delivery.smtp.from", &s.from)?;
            for (i, to) in s.to.iter().enumerate() {
                check_address(&format!("delivery.smtp.to[{i}]"), to)?;
            }
            if s.username.is_some() != s.password.is_some() {
                return Err(ConfigError::invalid(
                    "delivery.smtp",
                    "username and password must be given together (or neither, for no AUTH)",
                ));
            }
        }
        if let Some(i) = &delivery.imap {
            check_host("delivery.imap.host", &i.host)?;
            check_port("delivery.imap.port", i.port)?;
            check_text("delivery.imap.username", &i.username)?;
            check_text("delivery.imap.folder", &i.folder)?;
        }

        let directory = match self.directory {
            None => None,
            Some(d) => {
                if d.path.as_os_str().is_empty() {
                    return Err(ConfigError::invalid(
                        "directory.path",
                        "expected a CSV file path, found an empty string",
                    ));
                }
                directory::parse_region(&d.default_region)
                    .map_err(|e| ConfigError::invalid("directory.default_region", e.to_string()))?;
                Some(DirectoryConfig { path: resolve(&d.path), default_region: d.default_region })
            }
        };

        let email = self.email.validate()?;
        let transcription = self.transcription.as_ref().map(|t| t.validate(base)).transpose()?;
        let followup = match &self.followup {
            None => None,
            Some(f) => {
                if delivery.smtp.is_none() {
                    return Err(ConfigError::invalid(
                        "followup",
                        "reminders go by e-mail: [followup] needs [delivery.smtp] (its server and sender)",
                    ));
                }
                Some(f.validate()?)
            }
        };
        let public_url = match self.web.as_ref().and_then(|w| w.get("public_url")) {
            None => None,
            Some(toml::Value::String(url)) => Some(check_public_url(url)?),
            Some(other) => {
                return Err(ConfigError::invalid(
                    "web.public_url",
                    format!("expected a string like \"https://voicemail.example.com\", found {}", other.type_str()),
                ));
            }
        };

        Ok(Config {
            mailbox: self.mailbox,
            number: self.number,
            numbers: self.numbers,
            timezone,
            spool,
            store,
            recording,
            media,
            greetings,
            schedule,
            delivery,
            directory,
            sip: self.sip,
            greeting_labels,
            email,
            followup,
            ops: OpsTables { metrics: self.metrics, log: self.log },
            web: self.web,
            public_url,
            transcription,
            prompts: BTreeMap::new(),
            client_directory: None,
        })
    }
}

impl RawEmail {
    fn validate(&self) -> Result<EmailConfig, ConfigError> {
        let language = match self.language.as_deref() {
            None => Language::default(),
            Some(code) => Language::parse(code).ok_or_else(|| {
                ConfigError::invalid("email.language", format!("expected \"en\" or \"ru\", found {code:?}"))
            })?,
        };
        let overrides = TemplateOverrides {
            subject: self.subject.clone(),
            body: self.body.clone(),
            reminder_subject: self.reminder_subject.clone(),
            reminder_body: self.reminder_body.clone(),
        };
        let templates = Templates::new(language, &overrides)
            .map_err(|e| ConfigError::invalid(format!("email.{}", e.kind.key()), e.message))?;
        Ok(EmailConfig { language, templates })
    }
}

/// The longest `[followup]` duration: 1000 hours.
const MAX_FOLLOWUP: Duration = Duration::from_secs(1000 * 3600);

impl RawFollowup {
    fn validate(&self) -> Result<FollowupConfig, ConfigError> {
        let dur = |key: &str, text: &str| {
            let full = format!("followup.{key}");
            let v = parse_duration(text).map_err(|m| ConfigError::invalid(&full, m))?;
            if v < Duration::from_secs(60) || v > MAX_FOLLOWUP {
                return Err(ConfigError::invalid(full, format!("expected between 1m and 1000h, found {text:?}")));
            }
            Ok(v)
        };
        let remind_after = dur("remind_after", &self.remind_after)?;
        let remind_every = self.remind_every.as_deref().map(|t| dur("remind_every", t)).transpose()?;
        let escalate_after = self.escalate_after.as_deref().map(|t| dur("escalate_after", t)).transpose()?;
        for (i, to) in self.escalate_to.iter().enumerate() {
            check_address(&format!("followup.escalate_to[{i}]"), to)?;
        }
        match (escalate_after.is_some(), self.escalate_to.is_empty()) {
            (true, true) => {
                return Err(ConfigError::invalid(
                    "followup.escalate_to",
                    "escalate_after needs escalate_to: the addresses the escalation goes to",
                ));
            }
            (false, false) => {
                return Err(ConfigError::invalid(
                    "followup.escalate_after",
                    "escalate_to needs escalate_after: when to escalate",
                ));
            }
            _ => {}
        }
        Ok(FollowupConfig { remind_after, remind_every, escalate_after, escalate_to: self.escalate_to.clone() })
    }
}

/// Checks `[web] public_url`: `http://` or `https://`, then a host; printable ASCII without
/// spaces, quotes or angle brackets; at most 1000 characters. Returns it without a trailing `/`.
fn check_public_url(url: &str) -> Result<String, ConfigError> {
    let trimmed = url.trim_end_matches('/');
    let rest = trimmed.strip_prefix("https://").or_else(|| trimmed.strip_prefix("http://"));
    let ok = rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
        && trimmed.len() <= 1000
        && trimmed.chars().all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '<' | '>' | '\\' | '`' | '{' | '}'))
        && !trimmed.contains(['?', '#']);
    if !ok {
        return Err(ConfigError::invalid(
            "web.public_url",
            format!(
                "expected an http:// or https:// URL without a query, like \"https://voicemail.example.com\", found {url:?}"
            ),
        ));
    }
    Ok(trimmed.to_owned())
}

impl RawStore {
    fn validate(&self) -> Result<StoreConfig, ConfigError> {
        let min_free_bytes = match &self.min_free {
            None => DEFAULT_MIN_FREE_BYTES,
            Some(RawSize::Text(text)) => parse_size(text).map_err(|m| ConfigError::invalid("store.min_free", m))?,
            Some(RawSize::Bytes(n)) => {
                u64::try_from(*n).map_err(|_| ConfigError::invalid("store.min_free", size_expected(&n.to_string())))?
            }
        };
        let url = match &self.url {
            None => None,
            Some(url) => Some(check_store_url(url, self.ca_file.is_some())?),
        };
        if let Some(ca_file) = &self.ca_file {
            if url.is_none() {
                return Err(ConfigError::invalid(
                    "store.ca_file",
                    "a CA file is for the TLS of a PostgreSQL store: set store.url too, or remove the key",
                ));
            }
            if ca_file.as_os_str().is_empty() {
                return Err(ConfigError::invalid("store.ca_file", "expected a file path, found an empty string"));
            }
        }
        let node = match &self.node {
            None => default_node(),
            Some(node) => {
                let node = node.trim();
                if node.is_empty() || node.len() > 64 || node.chars().any(|c| c.is_control() || c.is_whitespace()) {
                    return Err(ConfigError::invalid(
                        "store.node",
                        format!("expected a node name of 1 to 64 characters without spaces, found {node:?}"),
                    ));
                }
                node.to_owned()
            }
        };
        Ok(StoreConfig { min_free_bytes, url, node, ca_file: self.ca_file.clone() })
    }
}

/// Checks `[store] url`: a PostgreSQL URL, and a program built to use one; with a CA file
/// (`has_ca_file`), one that may use TLS.
fn check_store_url(url: &str, has_ca_file: bool) -> Result<String, ConfigError> {
    #[cfg(feature = "postgres")]
    {
        let config = crate::store::postgres::parse_url(url).map_err(|m| ConfigError::invalid("store.url", m))?;
        if has_ca_file && config.get_ssl_mode() == postgres::config::SslMode::Disable {
            return Err(ConfigError::invalid(
                "store.ca_file",
                "store.url says sslmode=disable (no TLS), so no CA file is used: remove one of them",
            ));
        }
        Ok(url.to_owned())
    }
    #[cfg(not(feature = "postgres"))]
    {
        let _ = (url, has_ca_file);
        Err(ConfigError::invalid(
            "store.url",
            "this program was built without PostgreSQL support (cargo feature `postgres` of voicemail-core): \
             rebuild it with the feature, or remove the key to use the embedded SQLite store",
        ))
    }
}

impl RawRecording {
    fn validate(&self) -> Result<RecordingConfig, ConfigError> {
        let d = RecordingConfig::default();
        let dur = |key: &str, value: &Option<String>, default: Duration, min: Duration, max: Duration| {
            let Some(text) = value else { return Ok(default) };
            let full = format!("recording.{key}");
            let v = parse_duration(text).map_err(|m| ConfigError::invalid(&full, m))?;
            if v < min || v > max {
                return Err(ConfigError::invalid(
                    full,
                    format!("expected between {} and {}, found {text:?}", fmt_duration(min), fmt_duration(max)),
                ));
            }
            Ok(v)
        };
        let max_length =
            dur("max_length", &self.max_length, d.max_length, Duration::from_secs(1), Duration::from_secs(3600))?;
        let silence_timeout = match self.silence_timeout.as_deref() {
            Some("off") => None,
            _ => Some(dur(
                "silence_timeout",
                &self.silence_timeout,
                d.silence_timeout.unwrap_or(Duration::from_secs(10)),
                Duration::from_secs(1),
                Duration::from_secs(600),
            )?),
        };
        let media_timeout = dur(
            "media_timeout",
            &self.media_timeout,
            d.media_timeout,
            Duration::from_secs(1),
            Duration::from_secs(600),
        )?;
        let beep_length =
            dur("beep_length", &self.beep_length, d.beep_length, Duration::from_millis(50), Duration::from_secs(5))?;
        let finish_key = match self.finish_key.as_deref() {
            None => d.finish_key,
            Some("none") => None,
            Some(k) => {
                let mut chars = k.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if matches!(c, '0'..='9' | '*' | '#' | 'A'..='D') => Some(c),
                    _ => {
                        return Err(ConfigError::invalid(
                            "recording.finish_key",
                            format!("expected one DTMF key (0-9, *, #, A-D) or \"none\", found {k:?}"),
                        ));
                    }
                }
            }
        };
        let beep_frequency_hz = match self.beep_frequency_hz {
            None => d.beep_frequency_hz,
            Some(f) if (100..=3800).contains(&f) => f,
            Some(f) => {
                return Err(ConfigError::invalid(
                    "recording.beep_frequency_hz",
                    format!("expected a frequency between 100 and 3800 Hz (the line is 8 kHz), found {f}"),
                ));
            }
        };
        let format = match self.format.as_deref() {
            None => d.format,
            Some(f) => f.parse().map_err(|m: String| ConfigError::invalid("recording.format", m))?,
        };
        Ok(RecordingConfig {
            max_length,
            silence_timeout,
            media_timeout,
            finish_key,
            beep_frequency_hz,
            beep_length,
            format,
        })
    }
}

impl RawSchedule {
    fn validate(&self, tz: &TimeZone, greetings: &BTreeMap<String, GreetingSource>) -> Result<Schedule, ConfigError> {
        let known = |key: &str, name: &str| -> Result<String, ConfigError> {
            if greetings.contains_key(name) {
                Ok(name.to_owned())
            } else {
                let defined: Vec<&str> = greetings.keys().map(String::as_str).collect();
                Err(ConfigError::invalid(
                    key,
                    format!(
                        "unknown greeting {name:?}: expected a name defined in [greetings] ({})",
                        defined.join(", ")
                    ),
                ))
            }
        };
        let default = match &self.default_greeting {
            Some(name) => known("schedule.default_greeting", name)?,
            None => DEFAULT_GREETING_NAME.to_owned(),
        };
        let mut schedule = Schedule::new(tz.clone(), default);

        if let Some(week) = &self.business_hours {
            let mut hours = WeekHours::closed();
            for (day, name, text) in [
                (Weekday::Monday, "monday", &week.monday),
                (Weekday::Tuesday, "tuesday", &week.tuesday),
                (Weekday::Wednesday, "wednesday", &week.wednesday),
                (Weekday::Thursday, "thursday", &week.thursday),
                (Weekday::Friday, "friday", &week.friday),
                (Weekday::Saturday, "saturday", &week.saturday),
                (Weekday::Sunday, "sunday", &week.sunday),
            ] {
                let parsed = DayHours::parse(text)
                    .map_err(|e| ConfigError::invalid(format!("schedule.business_hours.{name}"), e.message()))?;
                hours.set(day, parsed);
            }
            schedule = schedule.with_business_hours(hours);
        }
        if let Some(name) = &self.business_hours_greeting {
            if self.business_hours.is_none() {
                return Err(ConfigError::invalid(
                    "schedule.business_hours_greeting",
                    "needs [schedule.business_hours] to know when business hours are",
                ));
            }
            schedule = schedule.with_business_hours_greeting(known("schedule.business_hours_greeting", name)?);
        }
        if let Some(name) = &self.after_hours_greeting {
            if self.business_hours.is_none() {
                return Err(ConfigError::invalid(
                    "schedule.after_hours_greeting",
                    "needs [schedule.business_hours] to know when business hours are",
                ));
            }
            schedule = schedule.with_after_hours_greeting(known("schedule.after_hours_greeting", name)?);
        }
        for (i, h) in self.holidays.iter().enumerate() {
            let key = format!("schedule.holidays[{i}]");
            check_text(&format!("{key}.name"), &h.name)?;
            let dates =
                DateRange::parse(&h.dates).map_err(|e| ConfigError::invalid(format!("{key}.dates"), e.message()))?;
            let greeting = known(&format!("{key}.greeting"), &h.greeting)?;
            schedule = schedule.with_holiday(Holiday { name: h.name.clone(), dates, greeting });
        }
        if let Some(t) = &self.temporary {
            let greeting = known("schedule.temporary.greeting", &t.greeting)?;
            let until = parse_instant(&t.until.as_text(), tz)
                .map_err(|e| ConfigError::invalid("schedule.temporary.until", e.message()))?;
            let from = match &t.from {
                None => None,
                Some(f) => Some(
                    parse_instant(&f.as_text(), tz)
                        .map_err(|e| ConfigError::invalid("schedule.temporary.from", e.message()))?,
                ),
            };
            if from.is_some_and(|f| f >= until) {
                return Err(ConfigError::invalid("schedule.temporary", "from must be before until"));
            }
            schedule = schedule.with_temporary(Some(TemporaryGreeting { greeting, from, until }));
        }
        Ok(schedule)
    }
}

fn parse_timezone(name: &str) -> Result<TimeZone, ConfigError> {
    let unknown = || {
        ConfigError::invalid(
            "timezone",
            format!("unknown time zone {name:?}: expected an IANA name like \"Europe/Moscow\" or \"UTC\""),
        )
    };
    // Names only: no paths, no POSIX TZ strings.
    if name.is_empty()
        || name.len() > 64
        || name.starts_with('/')
        || name.contains("..")
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'))
    {
        return Err(unknown());
    }
    let tz = TimeZone::get(name).map_err(|_| unknown())?;
    if tz.is_unknown() {
        return Err(unknown());
    }
    Ok(tz)
}

/// Parses a strict duration: one or more `<digits><unit>` groups with units `h`, `m`, `s`,
/// `ms`, each at most once and in that order, without spaces (`"90s"`, `"2m"`, `"1m30s"`,
/// `"500ms"`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let expected = || {
        format!("expected a duration like \"90s\", \"2m\", \"1m30s\" or \"500ms\" (units h, m, s, ms), found {text:?}")
    };
    if text.is_empty() {
        return Err(expected());
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut total_ms: u64 = 0;
    let mut last_rank = 0u8; // 1 = h, 2 = m, 3 = s, 4 = ms
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i - start > 9 {
            return Err(expected());
        }
        let value: u64 = text.get(start..i).and_then(|s| s.parse().ok()).ok_or_else(expected)?;
        let rest = text.get(i..).unwrap_or("");
        let (rank, unit_ms, len) = if rest.starts_with("ms") {
            (4, 1, 2)
        } else if rest.starts_with('h') {
            (1, 3_600_000, 1)
        } else if rest.starts_with('m') {
            (2, 60_000, 1)
        } else if rest.starts_with('s') {
            (3, 1000, 1)
        } else {
            return Err(expected());
        };
        if rank <= last_rank {
            return Err(expected());
        }
        last_rank = rank;
        i += len;
        total_ms = value.checked_mul(unit_ms).and_then(|v| total_ms.checked_add(v)).ok_or_else(expected)?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Parses a strict size: a number of bytes (`"2097152"`) or digits directly followed by one
/// unit, decimal `B`, `kB`, `MB`, `GB` (powers of 1000) or binary `KiB`, `MiB`, `GiB` (powers
/// of 1024), without spaces or fractions (`"10MB"`, `"512kB"`, `"1GiB"`). `"0"` is zero.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let multiplier: u64 = match unit {
        "" | "B" => 1,
        "kB" => 1000,
        "MB" => 1000 * 1000,
        "GB" => 1000 * 1000 * 1000,
        "KiB" => 1024,
        "MiB" => 1024 * 1024,
        "GiB" => 1024 * 1024 * 1024,
        _ => return Err(size_expected(&format!("{text:?}"))),
    };
    if number.is_empty() {
        return Err(size_expected(&format!("{text:?}")));
    }
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("size too large: {text:?} does not fit in 64 bits of bytes"))
}

fn size_expected(found: &str) -> String {
    format!(
        "expected a size like \"10MB\", \"512kB\", \"1GiB\" or \"2097152\" (bytes; units B, kB, MB, GB, KiB, MiB, GiB; \"0\" disables), found {found}"
    )
}

fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn check_text(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::invalid(key, "expected a non-empty string"));
    }
    if value.chars().any(char::is_control) {
        return Err(ConfigError::invalid(key, format!("control characters are not allowed, found {value:?}")));
    }
    Ok(())
}

/// A number or SIP user that selects a mailbox: printable, at most 64 characters (what is
/// kept of a SIP user part).
fn check_selector(key: &str, value: &str) -> Result<(), ConfigError> {
    check_text(key, value)?;
    if value.trim().chars().count() > 64 {
        return Err(ConfigError::invalid(
            key,
            format!("expected a number or SIP user of at most 64 characters, found {value:?}"),
        ));
    }
    Ok(())
}

fn check_greeting_name(key: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(ConfigError::invalid(key, "greeting names are 1 to 64 ASCII letters, digits, '_' or '-'"));
    }
    Ok(())
}

fn check_host(key: &str, host: &str) -> Result<(), ConfigError> {
    if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')) {
        return Err(ConfigError::invalid(key, format!("expected a host name or IP address, found {host:?}")));
    }
    Ok(())
}

fn check_port(key: &str, port: u16) -> Result<(), ConfigError> {
    if port == 0 {
        return Err(ConfigError::invalid(key, "expected a port between 1 and 65535, found 0"));
    }
    Ok(())
}

fn check_address(key: &str, addr: &str) -> Result<(), ConfigError> {
    let ok = addr.split_once('@').is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
        && addr.chars().all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | ',' | ';' | '"' | '\\'));
    if !ok {
        return Err(ConfigError::invalid(
            key,
            format!("expected an e-mail address like \"voicemail@example.com\", found {addr:?}"),
        ));
    }
    Ok(())
}

impl fmt::Display for GreetingSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GreetingSource::BuiltinDefault => f.write_str(BUILTIN_DEFAULT_GREETING),
            GreetingSource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_strict() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        for bad in
            ["", "90", "2 m", " 2m", "2m ", "-1s", "1.5s", "2min", "30s1m", "1s1s", "s", "1x", "9999999999s", "1m 30s"]
        {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn sizes_are_strict() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("2097152"), Ok(2_097_152));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("512kB"), Ok(512_000));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("3MiB"), Ok(3 * 1024 * 1024));
        assert_eq!(parse_size("2GiB"), Ok(2 * 1024 * 1024 * 1024));
        for bad in
            ["", "MB", "10 MB", " 10MB", "10MB ", "-1MB", "1.5GB", "10mb", "10KB", "10kb", "10M", "10TB", "1e6", "+5"]
        {
            let e = parse_size(bad).expect_err(bad);
            assert!(e.starts_with("expected a size like"), "{bad:?}: {e}");
        }
        assert!(parse_size("99999999999GB").is_err_and(|e| e.contains("too large")));
        assert!(parse_size("99999999999999999999999").is_err());
    }
}
