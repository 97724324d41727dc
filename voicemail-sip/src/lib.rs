//! # voicemail-sip
//!
//! The SIP adapter of the voicemail answering machine: a SIP user agent server that answers
//! every call and drives it through the [`Mailbox`](voicemail_core::Mailbox): the mailbox
//! makes each dialog's [`voicemail_core::Call`] (message id, greeting of the moment, recording
//! in the spool), this crate feeds it media and time, and the mailbox stores the finished
//! message, which then reaches the application's stream ([`Endpoint::messages`]).
//!
//! - [`Endpoint`]: UDP, TCP and TLS transports, transactions and dialogs (rsipstack, kept behind
//!   this crate's API, patched to answer what does not parse: `patches/rsipstack/PATCH.md` in
//!   the repository, published as `voicemail-rsipstack`), INVITE/ACK/BYE/CANCEL/OPTIONS/INFO
//!   and re-INVITE/UPDATE handling, RFC 3264 offer/answer (G.711, G.722, Opus, L16 and
//!   telephone-event; late offers), the choice among the
//!   [`Mailboxes`](voicemail_core::Mailboxes) an endpoint serves by the diverting number
//!   (History-Info, Diversion) or the Request-URI, a source allow-list, a call limit, a
//!   per-source INVITE rate limit and `503` with `Retry-After` while the spool is full, caps
//!   on TCP connections with an idle timeout, rate-limited warnings, and graceful shutdown.
//!   [`Endpoint::run`] also runs the mailbox's background work (deliveries and
//!   recovery, [`voicemail_core::runner::Runner`]) unless
//!   [`Endpoint::without_background_work`] says the embedder runs it elsewhere.
//! - [`EndpointHandle`]: shuts the endpoint down (also on Ctrl-C and SIGTERM) and reads its
//!   counters and the state of its registrations ([`AccountStatus`]).
//! - [`SipConfig`] ([`config`]): the `[sip]` table of the mailbox's TOML file: listen address,
//!   RTP ports, limits, REGISTER accounts ([`config::Account`]: digest authentication,
//!   refresh) and message-waiting indication ([`config::MwiConfig`]: the lamp on a
//!   manager's phone, RFC 3842 over RFC 6665), SIP over TLS (`tls_listen`, certificates,
//!   trusted CAs) and SRTP with SDES keys (RFC 4568, [`config::SrtpMode`]:
//!   `srtp = "off" | "optional" | "required"`).
//! - [`hooks`]: the application's per-call decision (answer, reject with a status, another
//!   mailbox or greeting) and notices of each call's state changes and DTMF keys.
//! - [`telemetry`]: operational metrics (calls, rejections, responses, RTP) through the
//!   `metrics` facade, a no-op until the application installs a recorder.
//! - [`Error`]: why the endpoint could not start or run; problems of single calls are answered
//!   on the wire and logged, never errors of the endpoint.
//!
//! ## Run loop
//!
//! Bind an endpoint to a mailbox, take its message stream, and run it until
//! [`EndpointHandle::shutdown`] (or a signal, [`EndpointHandle::shutdown_on_signals`]): calls
//! in progress are then hung up with BYE and their messages stored before
//! [`Endpoint::run`] returns. This one listens on a free UDP port of the loopback interface,
//! answers an OPTIONS request and shuts down:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use voicemail_core::Mailbox;
//! use voicemail_core::config::Config;
//! use voicemail_sip::{Endpoint, SipConfig};
//!
//! let dir = tempfile::tempdir()?;
//! let mut config = Config::from_toml_str_in(
//!     "mailbox = \"Sales\"\ntimezone = \"UTC\"\nspool = \"spool\"\n\
//!      [sip]\nlisten = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n",
//!     dir.path(),
//! )?;
//! config.load_prompts()?; // the greetings, decoded once
//! let sip = SipConfig::from_table(config.sip.as_ref())?;
//! let mailbox = Mailbox::open(config)?;
//!
//! tokio::runtime::Runtime::new()?.block_on(async {
//!     let mut endpoint = Endpoint::bind(sip, mailbox).await?;
//!     let addr = endpoint.local_addr();
//!     // Each message as soon as it is stored, before any delivery.
//!     let mut messages = endpoint.messages().ok_or("the stream was taken")?;
//!     tokio::spawn(async move {
//!         while let Some(meta) = messages.recv().await {
//!             println!("{}", meta.to_json_line());
//!         }
//!     });
//!     let handle = endpoint.handle(); // or handle.shutdown_on_signals()?: Ctrl-C, SIGTERM
//!     let running = tokio::spawn(endpoint.run());
//!
//!     // A peer asks what the endpoint can do.
//!     let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
//!     let me = peer.local_addr()?;
//!     let options = format!(
//!         "OPTIONS sip:voicemail@{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-doc1\r\n\
//!          Max-Forwards: 70\r\nFrom: <sip:peer@{me}>;tag=doc\r\nTo: <sip:voicemail@{addr}>\r\n\
//!          Call-ID: doc-options@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
//!     );
//!     peer.send_to(options.as_bytes(), addr).await?;
//!     let mut buf = vec![0; 4096];
//!     let n = tokio::time::timeout(Duration::from_secs(10), peer.recv(&mut buf)).await??;
//!     assert!(buf[..n].starts_with(b"SIP/2.0 200"), "{}", String::from_utf8_lossy(&buf[..n]));
//!
//!     handle.shutdown();
//!     running.await??;
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! # Ok(()) }
//! ```
//!
//! ## Features
//!
//! `_internals` is not an API: it makes the internal modules (request classification, SDP
//! offer/answer, media, registration, MWI, the diverting number) public, hidden from the
//! docs, for this project's fuzz targets and tests; no semver promise.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
mod endpoint;
pub mod error;
pub mod hooks;
mod limit;
pub mod telemetry;

// Internals: public only under `_internals` (hidden, for fuzz targets and tests).
macro_rules! internal_modules {
    ($($name:ident),*) => {$(
        #[cfg(feature = "_internals")]
        #[doc(hidden)]
        pub mod $name;
        #[cfg(not(feature = "_internals"))]
        #[allow(unreachable_pub, dead_code)]
        mod $name;
    )*};
}
internal_modules!(classify, divert, media, mwi, register, sdp, srtp, tls);

pub use config::{AddrRule, SipConfig, SipConfigError};
pub use endpoint::{Endpoint, EndpointHandle};
pub use error::{Error, Result};
pub use register::{AccountStatus, RegisterError, RegistrationState};
