//! Delivery of recorded messages: the e-mail that carries a message, and the targets it is
//! delivered to.
//!
//! - [`build_email`] turns a [`MessageMeta`](crate::message::MessageMeta) and its WAV into an
//!   RFC 5322 message ([`OutgoingEmail`]) with the recording attached.
//! - A [`Target`] takes an [`OutgoingEmail`] and acknowledges it: [`MaildirTarget`] (a
//!   Maildir++ folder on disk), [`SmtpTarget`] (submission to an SMTP server, lettre) and
//!   [`ImapTarget`] (IMAP APPEND into a server folder).
//! - The [durable outbox](crate::outbox) drives the targets: it retries every (message,
//!   target) pair with backoff until the target acknowledged it.
//!
//! Every target is safe to call again for a message it already has: the Maildir and IMAP
//! targets look for the message first and acknowledge without storing a second copy; SMTP
//! cannot look, so a crash between the server's `250` and the outbox recording it sends the
//! message at most once more.

mod email;
mod imap;
mod maildir;
mod smtp;

use std::path::PathBuf;

use serde::Deserialize;

pub use email::{EmailContext, EmailError, Manager, build_email, empty_wav};

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

/// An SMTP submission server and the recipients every message goes to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpTarget {
    /// Server host name or address.
    pub host: String,
    /// Server port (25, 587, ...).
    pub port: u16,
    /// Require STARTTLS before AUTH and MAIL FROM.
    #[serde(default)]
    pub starttls: bool,
    /// AUTH user name; AUTH is used only when both user name and password are set.
    pub username: Option<String>,
    /// AUTH password.
    pub password: Option<String>,
    /// The envelope sender (`MAIL FROM`).
    pub from: String,
    /// Recipients of every message (a matched client's manager is added per message).
    #[serde(default)]
    pub to: Vec<String>,
}

/// An IMAP server folder that messages are APPENDed into.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapTarget {
    /// Server host name or address.
    pub host: String,
    /// Server port (143 for plain/STARTTLS).
    pub port: u16,
    /// Require STARTTLS before LOGIN.
    #[serde(default)]
    pub starttls: bool,
    /// LOGIN user name.
    pub username: String,
    /// LOGIN password.
    pub password: String,
    /// The folder (mailbox) name, for example `Voicemail`; created if missing.
    pub folder: String,
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
}

/// A target's acknowledgement of a delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// What the target said or did (file name, server reply), for logs and status.
    pub detail: String,
    /// The target already had the message (a retry after a crash); nothing was stored again.
    pub already_present: bool,
}

/// Why a delivery attempt failed. Every failure is retried by the outbox; none drops a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// A file-system operation on a Maildir failed.
    #[error("maildir {path}: {source}")]
    Maildir {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An address (sender or recipient) is not a plain `local@domain` address.
    #[error("invalid e-mail address {0:?}")]
    InvalidAddress(String),
    /// SMTP delivery has no recipient at all.
    #[error("no smtp recipients configured for this message")]
    NoRecipients,
    /// The SMTP transaction failed (connection, TLS, AUTH or a rejected command).
    #[error("smtp {host}:{port}: {message}")]
    Smtp {
        /// Server host.
        host: String,
        /// Server port.
        port: u16,
        /// lettre's description of the failure.
        message: String,
        /// The server refused for good (5xx); still retried, but unlikely to succeed.
        permanent: bool,
    },
    /// The IMAP session failed (connection, TLS, LOGIN, a `NO`/`BAD` reply).
    #[error("imap {host}:{port}: {message}")]
    Imap {
        /// Server host.
        host: String,
        /// Server port.
        port: u16,
        /// What went wrong.
        message: String,
    },
    /// A configuration value cannot be used (for example a folder name with a `/`).
    #[error("invalid target configuration: {0}")]
    Config(String),
}

impl DeliveryError {
    /// True when retrying is unlikely to help without a change (a 5xx reply, a bad address,
    /// bad configuration). The outbox retries anyway; this is for status displays.
    pub fn is_permanent(&self) -> bool {
        match self {
            DeliveryError::Smtp { permanent, .. } => *permanent,
            DeliveryError::InvalidAddress(_) | DeliveryError::NoRecipients | DeliveryError::Config(_) => true,
            DeliveryError::Maildir { .. } | DeliveryError::Imap { .. } => false,
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
