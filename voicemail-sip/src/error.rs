//! Errors of the SIP endpoint.

use std::net::SocketAddr;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the endpoint could not start or run. Problems of single calls are never errors of the
/// endpoint: they are answered on the wire (4xx/5xx) and logged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The `[sip]` configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::SipConfigError),
    /// A listening socket could not be bound.
    #[error("cannot listen on {transport} {addr}: {source}")]
    Bind {
        /// `"udp"` or `"tcp"`.
        transport: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A TLS file of `[sip]` (certificate, private key, CA file) cannot be used.
    #[error("{key} {}: {message}", path.display())]
    Tls {
        /// The configuration key (`sip.tls_certificate`, ...).
        key: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The mailbox's background work (delivery and recovery threads) could not be started.
    #[error("cannot start the mailbox's background work: {0}")]
    Background(#[source] std::io::Error),
    /// The media threads could not be started.
    #[error("cannot start the media threads: {0}")]
    Media(#[source] std::io::Error),
    /// An account of `[[sip.accounts]]` cannot be registered.
    #[error(transparent)]
    Register(#[from] crate::register::RegisterError),
    /// The SIP stack failed.
    #[error("sip stack: {0}")]
    Stack(#[from] rsipstack::Error),
}
