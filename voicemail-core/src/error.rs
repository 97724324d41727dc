//! Errors of the voicemail engine.
//!
//! Each module has a narrow error type for the failures its callers branch on; [`Error`] wraps
//! them all. Malformed media from the network is never an error: it is dropped and counted.

use std::io;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Any error of the voicemail engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An input arrived after the call had ended (caller misuse).
    #[error("the call has already ended")]
    CallEnded,
    /// An input carried an `Instant` earlier than one already seen (caller misuse).
    #[error("time went backwards: an input is older than the previous one")]
    TimeWentBackwards,
    /// The call configuration is invalid.
    #[error("invalid call configuration: {0}")]
    InvalidConfig(&'static str),
    /// A greeting or prompt could not be loaded.
    #[error(transparent)]
    Greeting(#[from] crate::greeting::GreetingError),
    /// Writing or repairing a recording failed.
    #[error(transparent)]
    Recording(#[from] crate::recording::RecordingError),
    /// A string that is not a message id.
    #[error(transparent)]
    InvalidId(#[from] crate::message::InvalidMessageId),
    /// Any other I/O failure.
    #[error(transparent)]
    Io(#[from] io::Error),
}
