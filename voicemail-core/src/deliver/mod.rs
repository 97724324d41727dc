//! Delivery of recorded messages: the e-mail that carries a message, and the targets it is
//! delivered to.
//!
//! - [`build_email`] turns a [`MessageMeta`](crate::message::MessageMeta) and its WAV into an
//!   RFC 5322 message ([`OutgoingEmail`]) with the recording attached; [`build_reminder`]
//!   builds a reminder of it (`[followup]`).
//! - A [`Target`] takes an [`OutgoingEmail`] and acknowledges it: [`MaildirTarget`] (a
//!   Maildir++ folder on disk), [`SmtpTarget`] (submission to an SMTP server, lettre) and
//!   [`ImapTarget`] (IMAP APPEND into a server folder).
//! - The [durable outbox](crate::store) drives the targets: it retries every (message,
//!   target) pair with backoff until the target acknowledged it.
//!
//! No server can stall a delivery: the SMTP and IMAP targets bound connecting (TCP connect
//! and the server's greeting) by their `connect_timeout` and every later read or write by their
//! `timeout` (defaults [`DEFAULT_CONNECT_TIMEOUT`] and [`DEFAULT_TIMEOUT`]). A failure says
//! whether it is [permanent](DeliveryError::is_permanent) (the server refused this message for
//! good) or transient (worth retrying), and carries the server's own words.
//!
//! Every target is safe to call again for a message it already has: the Maildir and IMAP
//! targets look for the message first and acknowledge without storing a second copy; SMTP
//! cannot look, so a crash between the server's `250` and the outbox recording it sends the
//! message at most once more.
//!
//! A message APPENDed by IMAP carries its follow-up state as IMAP keywords
//! ([`KEYWORD_ASSIGNED`], [`KEYWORD_CALLED_BACK`], see [`imap_keywords`]); the IMAP watcher
//! (a thread of [`crate::runner::Runner`]) keeps them in step with the store, both ways.

mod email;
pub(crate) mod imap;
mod maildir;
mod smtp;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub(crate) use email::message_id_for;
pub use email::{EmailContext, EmailError, Manager, Reminder, build_email, build_reminder, empty_wav};

use crate::followup::FollowUp;

/// The IMAP keyword of a message assigned to someone: set at APPEND when the message is
/// assigned (a client's message is, to the client's manager), and by the IMAP watcher when
/// it is assigned later. It stays when the message is called back.
pub const KEYWORD_ASSIGNED: &str = "VM-Assigned";

/// The IMAP keyword of a message whose call was returned. Set by the IMAP watcher when the
/// message is marked called back anywhere (inbox, web, Python); a manager who sets it in a
/// mail client (a Thunderbird tag named `VM-CalledBack`) marks the message called back.
/// Keywords are compared without regard to case (Thunderbird stores `vm-calledback`).
pub const KEYWORD_CALLED_BACK: &str = "VM-CalledBack";

/// The IMAP keywords that show follow-up state `followup`: none for a new message,
/// [`KEYWORD_ASSIGNED`] for an assigned one, [`KEYWORD_CALLED_BACK`] for one called back.
/// Keywords are only ever added to a copy, so a message assigned and then called back
/// carries both.
pub fn imap_keywords(followup: &FollowUp) -> &'static [&'static str] {
    match followup {
        FollowUp::New => &[],
        FollowUp::Assigned { .. } => &[KEYWORD_ASSIGNED],
        FollowUp::CalledBack { .. } => &[KEYWORD_CALLED_BACK],
    }
}

/// A Maildir++ folder on the local file system.
///
/// Folder `"Voicemail"` under root `/var/mail/shared` stores into
/// `/var/mail/shared/.Voicemail/{tmp,new,cur}`; the directories are created if missing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaildirTarget {
    /// The Maildir root (the directory holding `cur/`, `new/`, `tmp/` of the INBOX).
    pub root: PathBuf,
    /// The Maildir++ sub-folder name without the leading dot (for example `Voicemail`).
    pub folder: String,
}

/// The default `connect_timeout` of [`SmtpTarget`] and [`ImapTarget`]: 5 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The default `timeout` (each read and write) of [`SmtpTarget`] and [`ImapTarget`]: 20 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// The shortest `connect_timeout` or `timeout` a configuration may set: 100 ms.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(100);

/// The longest `connect_timeout` or `timeout` a configuration may set: 10 min.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// The default `poll_interval` of [`ImapTarget`]: 30 s.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(30);

/// The shortest `poll_interval` a configuration may set: 1 s.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The longest `poll_interval` a configuration may set: 29 min (RFC 2177 asks a client to
/// renew IDLE at least that often).
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(29 * 60);

fn default_poll_interval() -> Duration {
    DEFAULT_POLL_INTERVAL
}

fn default_true() -> bool {
    true
}

/// Reads `poll_interval` (a duration string) and checks it lies in
/// [`MIN_POLL_INTERVAL`]`..=`[`MAX_POLL_INTERVAL`].
fn deserialize_poll_interval<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_poll_interval(&text).map_err(serde::de::Error::custom)
}

fn parse_poll_interval(text: &str) -> Result<Duration, String> {
    parse_duration_within(text, MIN_POLL_INTERVAL..=MAX_POLL_INTERVAL, "an interval between 1s and 29m")
}

/// A duration string whose value lies in `range`; the error says it `expected` that.
fn parse_duration_within(
    text: &str,
    range: std::ops::RangeInclusive<Duration>,
    expected: &str,
) -> Result<Duration, String> {
    let value = crate::config::parse_duration(text)?;
    if range.contains(&value) { Ok(value) } else { Err(format!("expected {expected}, found {text:?}")) }
}

fn default_connect_timeout() -> Duration {
    DEFAULT_CONNECT_TIMEOUT
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

/// Reads a timeout written as a duration string (`"5s"`, `"1m30s"`, `"500ms"`, see
/// [`parse_duration`](crate::config::parse_duration)) and checks it lies in
/// [`MIN_TIMEOUT`]`..=`[`MAX_TIMEOUT`].
fn deserialize_timeout<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_timeout(&text).map_err(serde::de::Error::custom)
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    parse_duration_within(text, MIN_TIMEOUT..=MAX_TIMEOUT, "a timeout between 100ms and 10m")
}

/// How a target's connection is secured (`tls = "none" | "starttls" | "implicit"`).
///
/// `starttls = true`, the older key, means [`TlsMode::StartTls`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain text (the default, unless `starttls = true`).
    #[default]
    None,
    /// Plain text first, then `STARTTLS` (required: a server that does not offer it is an
    /// error, never a plaintext fallback). Ports 587 (SMTP submission) and 143 (IMAP).
    #[serde(rename = "starttls")]
    StartTls,
    /// TLS from the first byte: ports 465 (SMTPS, RFC 8314) and 993 (IMAPS).
    Implicit,
}

/// Reads the CA certificates (PEM) of a target's `ca_file`, checking that there is at least
/// one. The server's certificate must chain to one of them (they replace the public roots).
pub(crate) fn read_ca_file(path: &std::path::Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("ca_file {}: no CERTIFICATE in the file", path.display()));
    }
    Ok(certs)
}

/// An SMTP submission server and the recipients every message goes to.
///
/// Built in code, [`SmtpTarget::new`] fills in the defaults; in a configuration file only
/// `host`, `port` and `from` are required.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpTarget {
    /// Server host name or address.
    pub host: String,
    /// Server port (25, 587, 465, ...).
    pub port: u16,
    /// Require STARTTLS before AUTH and MAIL FROM (the same as `tls = "starttls"`).
    #[serde(default)]
    pub starttls: bool,
    /// How the connection is secured (`tls`, default `"none"`; see [`SmtpTarget::tls_mode`]).
    #[serde(default)]
    pub tls: TlsMode,
    /// CA certificates (PEM) the server's certificate must chain to, instead of the public
    /// roots (`ca_file`): for a company server with its own CA or a self-signed certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// AUTH user name; AUTH is used only when both user name and password are set.
    pub username: Option<String>,
    /// AUTH password.
    pub password: Option<String>,
    /// The envelope sender (`MAIL FROM`).
    pub from: String,
    /// Recipients of every message (a matched client's manager is added per message).
    #[serde(default)]
    pub to: Vec<String>,
    /// Bounds connecting: the TCP connect, the server's greeting and the `EHLO` reply
    /// (`connect_timeout = "5s"`, default [`DEFAULT_CONNECT_TIMEOUT`]; 100ms..=10m).
    #[serde(default = "default_connect_timeout", deserialize_with = "deserialize_timeout")]
    pub connect_timeout: Duration,
    /// Bounds each later read and write (`STARTTLS`, `AUTH`, `MAIL FROM`, `RCPT TO`, `DATA`,
    /// the message) (`timeout = "20s"`, default [`DEFAULT_TIMEOUT`]; 100ms..=10m).
    #[serde(default = "default_timeout", deserialize_with = "deserialize_timeout")]
    pub timeout: Duration,
}

impl SmtpTarget {
    /// A target for `host`:`port` with envelope sender `from`: no recipients yet, no
    /// STARTTLS, no AUTH, the default timeouts.
    pub fn new(host: impl Into<String>, port: u16, from: impl Into<String>) -> Self {
        SmtpTarget {
            host: host.into(),
            port,
            starttls: false,
            tls: TlsMode::None,
            ca_file: None,
            username: None,
            password: None,
            from: from.into(),
            to: Vec::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// An IMAP server folder that messages are APPENDed into.
///
/// Built in code, [`ImapTarget::new`] fills in the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapTarget {
    /// Server host name or address.
    pub host: String,
    /// Server port (143 for plain/STARTTLS, 993 for implicit TLS).
    pub port: u16,
    /// Require STARTTLS before LOGIN (the same as `tls = "starttls"`).
    #[serde(default)]
    pub starttls: bool,
    /// How the connection is secured (`tls`, default `"none"`; see [`ImapTarget::tls_mode`]).
    #[serde(default)]
    pub tls: TlsMode,
    /// CA certificates (PEM) the server's certificate must chain to, instead of the public
    /// roots (`ca_file`): for a company server with its own CA or a self-signed certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// LOGIN user name.
    pub username: String,
    /// LOGIN password.
    pub password: String,
    /// The folder (mailbox) name, for example `Voicemail`; created if missing.
    pub folder: String,
    /// Bounds connecting: the TCP connect and the server's greeting (`connect_timeout = "5s"`,
    /// default [`DEFAULT_CONNECT_TIMEOUT`]; 100ms..=10m).
    #[serde(default = "default_connect_timeout", deserialize_with = "deserialize_timeout")]
    pub connect_timeout: Duration,
    /// Bounds each later read and write (`timeout = "20s"`, default [`DEFAULT_TIMEOUT`];
    /// 100ms..=10m).
    #[serde(default = "default_timeout", deserialize_with = "deserialize_timeout")]
    pub timeout: Duration,
    /// Watch the folder while the answering machine runs (`watch = true`, the default): the
    /// follow-up state goes both ways between the store and the copies' IMAP keywords, and a
    /// copy expunged before its call was returned is put back (the IMAP watcher, a thread of
    /// [`crate::runner::Runner`]).
    #[serde(default = "default_true")]
    pub watch: bool,
    /// How often the watcher looks at the whole folder (`poll_interval = "30s"`, default
    /// [`DEFAULT_POLL_INTERVAL`]; 1s..=29m): it polls this often when the server has no IDLE,
    /// and renews IDLE and checks every copy this often when it has. Changes in the store are
    /// noticed within about a second either way.
    #[serde(default = "default_poll_interval", deserialize_with = "deserialize_poll_interval")]
    pub poll_interval: Duration,
}

impl ImapTarget {
    /// A target for folder `folder` on `host`:`port`, logging in as `username`: no STARTTLS,
    /// the default timeouts, watched (every [`DEFAULT_POLL_INTERVAL`] without IDLE).
    pub fn new(
        host: impl Into<String>,
        port: u16,
        username: impl Into<String>,
        password: impl Into<String>,
        folder: impl Into<String>,
    ) -> Self {
        ImapTarget {
            host: host.into(),
            port,
            starttls: false,
            tls: TlsMode::None,
            ca_file: None,
            username: username.into(),
            password: password.into(),
            folder: folder.into(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            watch: true,
            poll_interval: DEFAULT_POLL_INTERVAL,
        }
    }
}

/// `tls`, with `starttls = true` meaning [`TlsMode::StartTls`]; both set differently is an error.
fn effective_tls(starttls: bool, tls: TlsMode) -> Result<TlsMode, DeliveryError> {
    match (starttls, tls) {
        (false, mode) | (true, mode @ TlsMode::StartTls) => Ok(mode),
        (true, TlsMode::None) => Ok(TlsMode::StartTls),
        (true, TlsMode::Implicit) => {
            Err(DeliveryError::Config("starttls = true contradicts tls = \"implicit\"".to_owned()))
        }
    }
}

impl SmtpTarget {
    /// The TLS mode in force: `tls`, or STARTTLS when `starttls = true`.
    ///
    /// # Errors
    /// `starttls = true` with `tls = "implicit"` (permanent: a configuration error).
    pub fn tls_mode(&self) -> Result<TlsMode, DeliveryError> {
        effective_tls(self.starttls, self.tls)
    }
}

impl ImapTarget {
    /// The TLS mode in force: `tls`, or STARTTLS when `starttls = true`.
    ///
    /// # Errors
    /// `starttls = true` with `tls = "implicit"` (permanent: a configuration error).
    pub fn tls_mode(&self) -> Result<TlsMode, DeliveryError> {
        effective_tls(self.starttls, self.tls)
    }
}

/// One e-mail ready for delivery: the RFC 5322 bytes plus what targets need to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEmail {
    /// The voicemail message id ([`MessageMeta::id`](crate::message::MessageMeta::id)).
    pub voicemail_id: String,
    /// The `Message-ID` header value without angle brackets; stable for a voicemail id, so a
    /// target can recognise a message it already has.
    pub message_id: String,
    /// The complete message (headers and body, CRLF line endings).
    pub bytes: Vec<u8>,
    /// Recipients besides the target's own (a matched client's manager); used by SMTP only.
    pub extra_recipients: Vec<String>,
    /// IMAP keywords set on the copy at APPEND (its follow-up state, [`imap_keywords`]); used
    /// by IMAP only. Each must be an IMAP atom (no spaces, parentheses, quotes, `\`, `%`,
    /// `*`, `]` or `{`), else the delivery fails as a configuration error.
    pub keywords: Vec<String>,
    /// An earlier attempt may have stored this message at the target
    /// ([`Claim::resumed`](crate::store::Claim::resumed)): a target that can find its earlier
    /// copy looks for it first. `true` unless the caller knows better (a Maildir folder's
    /// lookup reads the whole folder).
    pub may_be_stored: bool,
}

/// A target's acknowledgement of a delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// What the target said or did (file name, server reply), for logs and status.
    pub detail: String,
    /// The target already had the message (a retry after a crash); nothing was stored again.
    pub already_present: bool,
}

/// Why a delivery attempt failed.
///
/// Each failure is either *permanent* (the server refused this message, or the configuration
/// cannot work: retrying without a change is pointless) or *transient* (worth retrying with
/// backoff); see [`DeliveryError::is_permanent`]. Nothing here drops a message: what to do with
/// a permanent failure is the outbox's decision.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// A file-system operation on a Maildir failed (transient).
    #[error("maildir {path}: {source}")]
    Maildir {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An address (sender or recipient) is not a plain `local@domain` address (permanent).
    #[error("invalid e-mail address {0:?}")]
    InvalidAddress(String),
    /// SMTP delivery has no recipient at all (permanent).
    #[error("no smtp recipients configured for this message")]
    NoRecipients,
    /// The SMTP session failed: no connection, a timeout, TLS, or a negative reply.
    ///
    /// Shown as `smtp 127.0.0.1:2525: end of DATA: 554 5.7.1 Message rejected`.
    #[error("smtp {host}:{port}: {step}: {message}")]
    Smtp {
        /// Server host.
        host: String,
        /// Server port.
        port: u16,
        /// The step that failed: `connect` (TCP connect, greeting, `EHLO`), `STARTTLS`, `AUTH`,
        /// `MAIL FROM`, `RCPT TO:<address>`, `DATA` or `end of DATA` (the reply to the final
        /// dot).
        step: String,
        /// The reply code when the server answered negatively (`451`, `554`); `None` when no
        /// usable reply came (connection refused, timeout, TLS failure, malformed reply).
        code: Option<u16>,
        /// The server's reply, code and text (`554 5.7.1 Message rejected`), or what went wrong
        /// on our side (`no reply within 20s`).
        message: String,
        /// The server refused this message for good: a 5xx reply to `MAIL FROM`, `RCPT TO`,
        /// `DATA` or the message, or a message the server cannot take (non-ASCII without
        /// `8BITMIME`/`SMTPUTF8`).
        permanent: bool,
    },
    /// The IMAP session failed: no connection, a timeout, TLS, or a `NO`/`BAD` reply.
    ///
    /// Shown as `imap 127.0.0.1:1143: APPEND: NO [OVERQUOTA] Quota exceeded`.
    #[error("imap {host}:{port}: {step}: {message}")]
    Imap {
        /// Server host.
        host: String,
        /// Server port.
        port: u16,
        /// The step that failed: `connect` (TCP connect, greeting), `STARTTLS`, `LOGIN`,
        /// `EXAMINE`, `SEARCH`, `APPEND`, ...
        step: &'static str,
        /// The server's reply without its tag (`NO [OVERQUOTA] Quota exceeded`), or what went
        /// wrong on our side (`no reply within 20s`).
        message: String,
        /// The server refused this message for good: `NO` or `BAD` to `APPEND`, except with a
        /// temporary response code (RFC 5530 `UNAVAILABLE`, `INUSE`, `LIMIT`, `OVERQUOTA`,
        /// `SERVERBUG`, `EXPUNGEISSUED`; RFC 3501 `TRYCREATE`) or a text mentioning a quota.
        permanent: bool,
    },
    /// A configuration value cannot be used, for example a folder name with a `/` or a user
    /// name without its password (permanent).
    #[error("invalid target configuration: {0}")]
    Config(String),
}

impl DeliveryError {
    /// True when retrying without a change is pointless:
    ///
    /// - SMTP: a 5xx reply to `MAIL FROM`, `RCPT TO`, `DATA` or the end of the message, or a
    ///   message the server cannot take at all;
    /// - IMAP: `NO`/`BAD` to `APPEND`, unless a temporary response code (`[OVERQUOTA]`,
    ///   `[INUSE]`, `[UNAVAILABLE]`, `[LIMIT]`, ...) or a quota text says it may pass later;
    /// - an invalid address, no recipients, bad configuration.
    ///
    /// Everything else is transient: connection failures, timeouts, TLS handshake failures,
    /// 4xx replies, replies to the greeting, `EHLO`, `STARTTLS`, `AUTH`/`LOGIN` (credentials
    /// and server set-up may be fixed on the server's side), and Maildir I/O errors.
    pub fn is_permanent(&self) -> bool {
        match self {
            DeliveryError::Smtp { permanent, .. } | DeliveryError::Imap { permanent, .. } => *permanent,
            DeliveryError::InvalidAddress(_) | DeliveryError::NoRecipients | DeliveryError::Config(_) => true,
            DeliveryError::Maildir { .. } => false,
        }
    }
}

/// Something that accepts an e-mail and acknowledges it.
///
/// `deliver` returns `Ok` only once the message is durable at the target (Maildir rename and
/// directory fsync done, SMTP `250`, IMAP `OK` to APPEND). It must be safe to call again for a
/// message the target may already have (see the module docs).
pub trait Target {
    /// The key the outbox records deliveries under (`"maildir"`, `"smtp"`, `"imap"`).
    fn key(&self) -> String;
    /// Deliver one message.
    fn deliver(&self, email: &OutgoingEmail) -> Result<Ack, DeliveryError>;

    /// Deliver one message, possibly leaving the last step that makes it survive a power loss
    /// (one that several messages can share, like a directory `fsync`) to [`Target::sync`].
    /// The mailbox delivers a batch this way and calls `sync` before it records any of the
    /// batch as delivered. The default is [`Target::deliver`].
    fn deliver_unsynced(&self, email: &OutgoingEmail) -> Result<Ack, DeliveryError> {
        self.deliver(email)
    }

    /// Makes durable what [`Target::deliver_unsynced`] stored before. The default has nothing
    /// to do.
    fn sync(&self) -> Result<(), DeliveryError> {
        Ok(())
    }

    /// How many deliveries the mailbox may attempt at once, each on a thread of its own (then
    /// [`Target::deliver_unsynced`] is called from several threads at a time). The default is
    /// one at a time: a server is not sent several connections at once.
    fn concurrency(&self) -> usize {
        1
    }

    /// Whether an attempt that may follow an earlier one ([`OutgoingEmail::may_be_stored`])
    /// finds the copy that one stored instead of storing a second. The mailbox then records
    /// the target's outcomes without syncing their commit
    /// ([`Store::attempted_all_unsynced`](crate::store::Store::attempted_all_unsynced)). The
    /// default is `false`: an SMTP server cannot be asked.
    fn finds_earlier_copies(&self) -> bool {
        false
    }
}

/// Whether an I/O error is a socket timeout (`SO_RCVTIMEO`/`SO_SNDTIMEO` expired, which Linux
/// reports as `WouldBlock`, or a connect timeout).
pub(crate) fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
}

/// Characters allowed in names derived from identifiers (file names, Message-ID local part).
pub(crate) fn is_safe_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '_' | '-' | '.')
}

/// FNV-1a 64-bit: a stable (across Rust versions) hash for deriving names from ids.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Checks that `addr` is a plain `local@domain` address with nothing that could break a
/// header or an SMTP command (no whitespace, controls, angle brackets, commas or quotes).
pub(crate) fn validate_address(addr: &str) -> Result<(), DeliveryError> {
    let bad = addr.is_empty()
        || addr.len() > 254
        || addr.chars().any(|c| c.is_control() || c.is_whitespace() || matches!(c, '<' | '>' | ',' | '"' | ';' | '\\'))
        || match addr.split_once('@') {
            Some((local, domain)) => local.is_empty() || domain.is_empty() || domain.contains('@'),
            None => true,
        };
    if bad { Err(DeliveryError::InvalidAddress(addr.to_owned())) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_default_and_parse() {
        let smtp: SmtpTarget = toml::from_str("host = \"mx\"\nport = 25\nfrom = \"vm@example.org\"\n").unwrap();
        assert_eq!(smtp, SmtpTarget::new("mx", 25, "vm@example.org"));
        assert_eq!((smtp.connect_timeout, smtp.timeout), (DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT));
        let imap: ImapTarget = toml::from_str(
            "host = \"mx\"\nport = 143\nusername = \"u\"\npassword = \"p\"\nfolder = \"V\"\n\
             connect_timeout = \"1500ms\"\ntimeout = \"1m30s\"\n",
        )
        .unwrap();
        assert_eq!(imap.connect_timeout, Duration::from_millis(1500));
        assert_eq!(imap.timeout, Duration::from_secs(90));
    }

    #[test]
    fn timeouts_out_of_bounds_or_malformed_are_errors() {
        assert_eq!(parse_timeout("100ms"), Ok(MIN_TIMEOUT));
        assert_eq!(parse_timeout("10m"), Ok(MAX_TIMEOUT));
        for bad in ["99ms", "0s", "10m1s", "1h"] {
            let err = parse_timeout(bad).unwrap_err();
            assert!(err.contains("between 100ms and 10m") && err.contains(bad), "{err}");
        }
        assert!(parse_timeout("5 seconds").unwrap_err().contains("expected a duration"));
        let err =
            toml::from_str::<SmtpTarget>("host = \"mx\"\nport = 25\nfrom = \"a@b\"\ntimeout = \"50ms\"\n").unwrap_err();
        assert!(err.to_string().contains("between 100ms and 10m"), "{err}");
        let err = toml::from_str::<SmtpTarget>("host = \"mx\"\nport = 25\nfrom = \"a@b\"\ntimeout = 20\n").unwrap_err();
        assert!(err.to_string().contains("string"), "{err}");
    }

    #[test]
    fn tls_modes() {
        let smtp: SmtpTarget =
            toml::from_str("host = \"mx\"\nport = 465\nfrom = \"a@b\"\ntls = \"implicit\"\nca_file = \"ca.pem\"\n")
                .unwrap();
        assert_eq!(smtp.tls_mode().unwrap(), TlsMode::Implicit);
        assert_eq!(smtp.ca_file.as_deref(), Some(std::path::Path::new("ca.pem")));
        let legacy: SmtpTarget =
            toml::from_str("host = \"mx\"\nport = 587\nfrom = \"a@b\"\nstarttls = true\n").unwrap();
        assert_eq!(legacy.tls_mode().unwrap(), TlsMode::StartTls);
        let both = SmtpTarget { starttls: true, tls: TlsMode::Implicit, ..legacy };
        assert!(both.tls_mode().unwrap_err().is_permanent());
        assert!(toml::from_str::<SmtpTarget>("host = \"mx\"\nport = 1\nfrom = \"a@b\"\ntls = \"ssl\"\n").is_err());
        let imap = ImapTarget::new("mx", 993, "u", "p", "V");
        assert_eq!(imap.tls_mode().unwrap(), TlsMode::None);
    }

    #[test]
    fn permanence() {
        let smtp = |code, permanent| DeliveryError::Smtp {
            host: "h".to_owned(),
            port: 25,
            step: "DATA".to_owned(),
            code,
            message: "x".to_owned(),
            permanent,
        };
        assert!(smtp(Some(554), true).is_permanent());
        assert!(!smtp(Some(451), false).is_permanent());
        assert!(DeliveryError::InvalidAddress("x".to_owned()).is_permanent());
        assert!(DeliveryError::Config("x".to_owned()).is_permanent());
        assert!(DeliveryError::NoRecipients.is_permanent());
        let maildir = DeliveryError::Maildir { path: PathBuf::from("/x"), source: std::io::Error::other("x") };
        assert!(!maildir.is_permanent());
    }
}
