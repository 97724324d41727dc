//! # voicemail-py
//!
//! Python bindings of the voicemail answering machine, built with PyO3 and maturin as the
//! private extension module `voicemail._voicemail` (re-exported by the `voicemail` package):
//!
//! - [`mailbox`]: `Mailbox`, the one owner of a message's life (voicemail-core's `Mailbox`):
//!   it starts calls, stores and recovers messages, delivers them (Maildir/SMTP/IMAP with
//!   retries) and tracks the follow-up with its history;
//! - [`call`]: `Call`, the sans-IO engine for integrators who bring their own SIP/RTP stack
//!   (made by `Mailbox.start_call`; `now` is `time.monotonic()` seconds), its output
//!   classes, `Prompt` and the codecs;
//! - [`config`]: `Config` (TOML), the greeting calendar and the client directory;
//! - [`endpoint`]: `SipEndpoint`, the SIP answering machine (voicemail-sip) on a mailbox;
//! - [`errors`]: the `VoicemailError` hierarchy; I/O failures are builtin `OSError`s;
//! - `logging` (private): Rust's `tracing`/`log` events forwarded to Python's `logging`
//!   under the `voicemail` logger, and `flush_logs()`.
//!
//! The GIL is released whenever Rust does real work (audio, files, network).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod call;
pub mod config;
pub mod endpoint;
pub mod errors;
mod hooks;
mod logging;
pub mod mailbox;
pub mod message;
mod time;

/// Native core of the ``voicemail`` package (import ``voicemail`` instead).
#[pyo3::pymodule]
mod _voicemail {
    use pyo3::prelude::*;

    #[pymodule_export]
    use crate::call::{
        PyCall, PyDtmfReceived, PyMessageRecorded, PyPrompt, PySendPcm, PySendRtp, PyStateChanged, PyTimeout,
        decode_audio, encode_audio,
    };
    #[pymodule_export]
    use crate::config::{PyClient, PyConfig, PyGreetingChoice};
    #[pymodule_export]
    use crate::endpoint::PySipEndpoint;
    #[pymodule_export]
    use crate::errors::{
        CallError, ConfigError, DeliveryError, GreetingError, InvalidTransitionError, MailboxError,
        MessageNotFoundError, NotCalledBackError, RecordingError, SipError, SpoolFullError, VoicemailError,
    };
    #[pymodule_export]
    use crate::hooks::{PyAccept, PyIncomingCall, PyReject};
    #[pymodule_export]
    use crate::logging::flush_logs;
    #[pymodule_export]
    use crate::mailbox::{
        PyDeliveryReport, PyDeliveryStatus, PyHistoryEntry, PyMailbox, PyMessageStatus, PyWorkflowState,
    };
    #[pymodule_export]
    use crate::message::{PyMediaStats, PyMessage};

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        // `key` is set on each raised ConfigError; the class attribute is its default.
        m.getattr("ConfigError")?.setattr("key", m.py().None())?;
        crate::logging::install(m.py())?;
        Ok(())
    }
}
