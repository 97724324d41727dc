//! The exception hierarchy and the mapping of every Rust error onto it.
//!
//! ```text
//! Exception
//! └── VoicemailError
//!     ├── ConfigError             invalid configuration (TOML, [sip], Call arguments)
//!     ├── GreetingError           a greeting that does not decode, an invalid tone
//!     ├── RecordingError          the WAV writer failed, a file is not repairable
//!     ├── CallError               misuse of a Call: input after the end, time going backwards
//!     ├── MailboxError            the mailbox refused or its store failed
//!     │   ├── MessageNotFoundError    no such message, or it was deleted
//!     │   ├── InvalidTransitionError  the follow-up change makes no sense in this state
//!     │   ├── NotCalledBackError      deleting before a callback without force_reason
//!     │   └── SpoolFullError          the spool's disk is (nearly) full: new calls refused
//!     ├── DeliveryError           a delivery request names no configured target
//!     └── SipError                the SIP stack failed
//! ```
//!
//! Malformed arguments are builtin `ValueError`s: a string that is not a message id, an empty
//! or over-long name, note or reason (checked before anything is changed). I/O failures are
//! never wrapped: they become the matching builtin `OSError` subclass (`FileNotFoundError`,
//! `PermissionError`, `FileExistsError`, ...) with `errno`, `strerror` and `filename` set
//! (polars' `PyPolarsErr` pattern: one `From<BindingError> for PyErr`).

use std::io;
use std::path::Path;

use pyo3::exceptions::{
    PyBlockingIOError, PyBrokenPipeError, PyConnectionAbortedError, PyConnectionRefusedError, PyConnectionResetError,
    PyException, PyFileExistsError, PyFileNotFoundError, PyInterruptedError, PyIsADirectoryError, PyNotADirectoryError,
    PyOSError, PyPermissionError, PyTimeoutError, PyValueError,
};
use pyo3::prelude::*;
use voicemail_core::config::ConfigError as CoreConfigError;
use voicemail_core::directory::DirectoryError as CoreDirectoryError;
use voicemail_core::followup::FollowUpError;
use voicemail_core::greeting::GreetingError as CoreGreetingError;
use voicemail_core::mailbox::MailboxError as CoreMailboxError;
use voicemail_core::recording::RecordingError as CoreRecordingError;
use voicemail_core::store::StoreError;

pyo3::create_exception!(
    voicemail,
    VoicemailError,
    PyException,
    "Base class of every error raised by voicemail (I/O failures are builtin OSError subclasses)."
);
pyo3::create_exception!(
    voicemail,
    ConfigError,
    VoicemailError,
    "An invalid configuration: the TOML file, its [sip] table, or Call arguments. `key` names the key path when known."
);
pyo3::create_exception!(
    voicemail,
    GreetingError,
    VoicemailError,
    "A greeting could not be decoded, or a tone is invalid."
);
pyo3::create_exception!(voicemail, RecordingError, VoicemailError, "Writing or repairing a recording failed.");
pyo3::create_exception!(
    voicemail,
    CallError,
    VoicemailError,
    "Misuse of a Call: an input after the call ended, or time going backwards."
);
pyo3::create_exception!(
    voicemail,
    MailboxError,
    VoicemailError,
    "The mailbox refused an operation, or its store failed."
);
pyo3::create_exception!(
    voicemail,
    MessageNotFoundError,
    MailboxError,
    "No such message in the mailbox (or it was deleted)."
);
pyo3::create_exception!(
    voicemail,
    InvalidTransitionError,
    MailboxError,
    "The transition makes no sense in the message's state (e.g. assigning a called-back message)."
);
pyo3::create_exception!(
    voicemail,
    NotCalledBackError,
    MailboxError,
    "Deleting a message that was not called back needs force_reason."
);
pyo3::create_exception!(
    voicemail,
    SpoolFullError,
    MailboxError,
    "The spool's file system is (nearly) full ([store] min_free): new calls are refused until space is freed."
);
pyo3::create_exception!(
    voicemail,
    DeliveryError,
    VoicemailError,
    "A delivery request names a target the mailbox does not have (see Mailbox.targets)."
);
pyo3::create_exception!(voicemail, SipError, VoicemailError, "The SIP endpoint could not start or its stack failed.");

/// Every Rust error the bindings can meet; converted to a Python exception in one place.
#[derive(Debug)]
pub(crate) enum BindingError {
    /// The engine (Call misuse, invalid call configuration, ...).
    Core(voicemail_core::Error),
    /// The configuration file.
    Config(Box<CoreConfigError>),
    /// A greeting.
    Greeting(CoreGreetingError),
    /// A recording.
    Recording(CoreRecordingError),
    /// The mailbox.
    Mailbox(CoreMailboxError),
    /// The SIP endpoint.
    Sip(Box<voicemail_sip::Error>),
    /// An I/O error with the file it concerns.
    Io { source: io::Error, path: Option<std::path::PathBuf>, context: String },
}

impl From<voicemail_core::Error> for BindingError {
    fn from(e: voicemail_core::Error) -> Self {
        BindingError::Core(e)
    }
}

impl From<CoreConfigError> for BindingError {
    fn from(e: CoreConfigError) -> Self {
        BindingError::Config(Box::new(e))
    }
}

impl From<CoreGreetingError> for BindingError {
    fn from(e: CoreGreetingError) -> Self {
        BindingError::Greeting(e)
    }
}

impl From<CoreRecordingError> for BindingError {
    fn from(e: CoreRecordingError) -> Self {
        BindingError::Recording(e)
    }
}

impl From<CoreMailboxError> for BindingError {
    fn from(e: CoreMailboxError) -> Self {
        BindingError::Mailbox(e)
    }
}

impl From<voicemail_sip::Error> for BindingError {
    fn from(e: voicemail_sip::Error) -> Self {
        BindingError::Sip(Box::new(e))
    }
}

impl BindingError {
    /// An I/O error about `path`, described by `context` (`"cannot open spool"`).
    pub(crate) fn io(source: io::Error, path: Option<&Path>, context: impl Into<String>) -> Self {
        BindingError::Io { source, path: path.map(Path::to_path_buf), context: context.into() }
    }
}

/// The errno an `io::ErrorKind` stands for when the error carries none (Linux numbering, the
/// same as Python's `errno` module on Linux).
fn default_errno(kind: io::ErrorKind) -> i32 {
    match kind {
        io::ErrorKind::NotFound => 2,
        io::ErrorKind::PermissionDenied => 13,
        io::ErrorKind::AlreadyExists => 17,
        io::ErrorKind::NotADirectory => 20,
        io::ErrorKind::IsADirectory => 21,
        io::ErrorKind::Interrupted => 4,
        io::ErrorKind::WouldBlock => 11,
        io::ErrorKind::BrokenPipe => 32,
        io::ErrorKind::AddrInUse => 98,
        io::ErrorKind::AddrNotAvailable => 99,
        io::ErrorKind::ConnectionAborted => 103,
        io::ErrorKind::ConnectionReset => 104,
        io::ErrorKind::TimedOut => 110,
        io::ErrorKind::ConnectionRefused => 111,
        _ => 5, // EIO
    }
}

/// The errno of an OS error that reached us as text: std writes it as `... (os error N)`, and
/// a layer that kept only the text (rsipstack's socket errors, as voicemail-sip passes them
/// on) still carries it there.
fn errno_in_text(text: &str) -> Option<i32> {
    let (_, after) = text.rsplit_once("(os error ")?;
    let (digits, _) = after.split_once(')')?;
    digits.parse().ok().filter(|n| *n > 0)
}

/// The errno of an I/O error: its own, the one its text names, or the one its kind stands for.
fn errno_of(source: &io::Error) -> i32 {
    source.raw_os_error().or_else(|| errno_in_text(&source.to_string())).unwrap_or_else(|| default_errno(source.kind()))
}

/// The builtin `OSError` subclass for an I/O error, with `(errno, strerror, filename)` set.
/// For an error of no specific kind, Python's `OSError` picks the subclass of its errno
/// (`ECONNREFUSED` → `ConnectionRefusedError`); `EADDRINUSE` stays a plain `OSError`.
pub(crate) fn os_error(source: &io::Error, path: Option<&Path>, context: &str) -> PyErr {
    let errno = errno_of(source);
    let mut strerror = if context.is_empty() { String::new() } else { format!("{context}: ") };
    strerror.push_str(&source.to_string());
    macro_rules! raise {
        ($ty:ty) => {
            match path {
                Some(p) => <$ty>::new_err((errno, strerror, p.display().to_string())),
                None => <$ty>::new_err((errno, strerror)),
            }
        };
    }
    match source.kind() {
        io::ErrorKind::NotFound => raise!(PyFileNotFoundError),
        io::ErrorKind::PermissionDenied => raise!(PyPermissionError),
        io::ErrorKind::AlreadyExists => raise!(PyFileExistsError),
        io::ErrorKind::IsADirectory => raise!(PyIsADirectoryError),
        io::ErrorKind::NotADirectory => raise!(PyNotADirectoryError),
        io::ErrorKind::Interrupted => raise!(PyInterruptedError),
        io::ErrorKind::WouldBlock => raise!(PyBlockingIOError),
        io::ErrorKind::BrokenPipe => raise!(PyBrokenPipeError),
        io::ErrorKind::ConnectionRefused => raise!(PyConnectionRefusedError),
        io::ErrorKind::ConnectionReset => raise!(PyConnectionResetError),
        io::ErrorKind::ConnectionAborted => raise!(PyConnectionAbortedError),
        io::ErrorKind::TimedOut => raise!(PyTimeoutError),
        _ => raise!(PyOSError),
    }
}

/// A `ConfigError` with its `key` attribute (the key path, or `None`).
fn config_error(message: String, key: Option<&str>) -> PyErr {
    let err = ConfigError::new_err(message);
    Python::attach(|py| {
        // Setting an attribute on a fresh exception instance cannot fail in practice; if it
        // did, the exception is still raised, only without `key`.
        let _ = err.value(py).setattr("key", key);
    });
    err
}

fn greeting_error(e: CoreGreetingError) -> PyErr {
    match e {
        CoreGreetingError::Io { path, source } => os_error(&source, Some(&path), "cannot read greeting"),
        other => GreetingError::new_err(other.to_string()),
    }
}

fn recording_error(e: CoreRecordingError) -> PyErr {
    match e {
        CoreRecordingError::Io(source) => os_error(&source, None, "recording"),
        other => RecordingError::new_err(other.to_string()),
    }
}

fn config_error_from(e: CoreConfigError) -> PyErr {
    let key = e.key().map(str::to_owned);
    let message = e.to_string();
    match e {
        CoreConfigError::Read { path, source } => os_error(&source, Some(&path), "cannot read config file"),
        CoreConfigError::Greeting { source: CoreGreetingError::Io { path, source }, key } => {
            os_error(&source, Some(&path), &key)
        }
        CoreConfigError::Directory { source: CoreDirectoryError::Io { path, source }, key } => {
            os_error(&source, Some(&path), &key)
        }
        _ => config_error(message, key.as_deref()),
    }
}

fn mailbox_error(e: CoreMailboxError) -> PyErr {
    let message = e.to_string();
    if e.is_full() {
        return SpoolFullError::new_err(message);
    }
    match e {
        CoreMailboxError::Spool { path, source } => os_error(&source, Some(&path), "spool"),
        CoreMailboxError::InvalidId(_) => PyValueError::new_err(message),
        CoreMailboxError::Call(e) => core_error(e),
        CoreMailboxError::Store(e) => match e {
            StoreError::NotFound(_) | StoreError::Deleted { .. } => MessageNotFoundError::new_err(message),
            StoreError::FollowUp { source, .. } => match source {
                FollowUpError::InvalidTransition { .. } => InvalidTransitionError::new_err(message),
                FollowUpError::NotCalledBack { .. } => NotCalledBackError::new_err(message),
                FollowUpError::InvalidText { .. } => PyValueError::new_err(message),
                _ => MailboxError::new_err(message),
            },
            _ => MailboxError::new_err(message),
        },
        _ => MailboxError::new_err(message),
    }
}

fn core_error(e: voicemail_core::Error) -> PyErr {
    use voicemail_core::Error as E;
    match e {
        E::CallEnded | E::TimeWentBackwards => CallError::new_err(e.to_string()),
        E::InvalidConfig(_) => config_error(e.to_string(), None),
        E::Greeting(g) => greeting_error(g),
        E::Recording(r) => recording_error(r),
        E::InvalidId(_) => PyValueError::new_err(e.to_string()),
        E::Io(io) => os_error(&io, None, ""),
        other => VoicemailError::new_err(other.to_string()),
    }
}

fn sip_error(e: voicemail_sip::Error) -> PyErr {
    use voicemail_sip::Error as E;
    match e {
        E::Config(c) => config_error(c.to_string(), Some(&c.key)),
        E::Bind { transport, addr, source } => os_error(&source, None, &format!("cannot listen on {transport} {addr}")),
        E::Background(source) => os_error(&source, None, "cannot start the mailbox's background work"),
        other => SipError::new_err(other.to_string()),
    }
}

impl From<BindingError> for PyErr {
    fn from(e: BindingError) -> PyErr {
        match e {
            BindingError::Core(e) => core_error(e),
            BindingError::Config(e) => config_error_from(*e),
            BindingError::Greeting(e) => greeting_error(e),
            BindingError::Recording(e) => recording_error(e),
            BindingError::Mailbox(e) => mailbox_error(e),
            BindingError::Sip(e) => sip_error(*e),
            BindingError::Io { source, path, context } => os_error(&source, path.as_deref(), &context),
        }
    }
}
