//! # voicemail-sip
//!
//! The SIP adapter of the voicemail answering machine: a SIP user agent server that answers
//! every call and drives it through the [`Mailbox`](voicemail_core::Mailbox): the mailbox
//! makes each dialog's [`voicemail_core::Call`] (message id, greeting of the moment, recording
//! in the spool), this crate feeds it media and time, and the mailbox stores the finished
//! message, which then reaches the application's stream ([`Endpoint::messages`]).
//!
//! - [`Endpoint`]: UDP, TCP and TLS transports, transactions and dialogs (rsipstack, kept behind
//!   this crate's API, patched to answer what does not parse: `patches/rsipstack/PATCH.md`),
//!   INVITE/ACK/BYE/CANCEL/OPTIONS/INFO/re-INVITE handling, a source allow-list, a call limit,
//!   a per-source INVITE rate limit and `503` with `Retry-After` while the spool is full, caps
//!   on TCP connections with an idle timeout, rate-limited warnings, and graceful shutdown.
//!   [`Endpoint::run`] also runs the mailbox's background work (deliveries and
//!   recovery, [`voicemail_core::runner::Runner`]) unless
//!   [`Endpoint::without_background_work`] says the embedder runs it elsewhere.
//! - [`classify`]: the pure decision for each incoming request (fuzzed and corpus-tested).
//! - [`divert`]: which number an INVITE is for (History-Info, Diversion, Request-URI, To),
//!   to choose among the [`Mailboxes`](voicemail_core::Mailboxes) the endpoint serves.
//! - [`sdp`]: RFC 3264 offer/answer for PCMU/PCMA and telephone-event.
//! - [`srtp`]: SRTP with SDES keys (RFC 4568): `[sip] srtp = "off" | "optional" | "required"`.
//! - [`tls`]: SIP over TLS (`[sip] tls_listen`, certificates, trusted CAs).
//! - [`media`]: the RTP port pool and the per-call task that drives the core call.
//! - [`config`]: the `[sip]` table of the mailbox's TOML file.
//! - [`telemetry`]: operational metrics (calls, rejections, responses, RTP) through the
//!   `metrics` facade, a no-op until the application installs a recorder.
//! - [`hooks`]: the application's per-call decision (answer, reject with a status, another
//!   mailbox or greeting) and notices of each call's state changes and DTMF keys.
//! - [`mwi`]: message-waiting indication (the lamp on a manager's phone): SUBSCRIBE to
//!   `message-summary` (RFC 3842, RFC 6665) and unsolicited NOTIFY, when `[sip.mwi]` is set.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use voicemail_core::Mailbox;
//! use voicemail_core::config::Config;
//! use voicemail_sip::{Endpoint, SipConfig};
//!
//! let mut config = Config::default_embedded();
//! config.load_prompts()?;
//! let sip = SipConfig::from_table(config.sip.as_ref())?;
//! let mailbox = Mailbox::open(config)?;
//! let mut endpoint = Endpoint::bind(sip, mailbox).await?;
//! // Each message as soon as it is stored, before any delivery.
//! let mut messages = endpoint.messages().ok_or("taken")?;
//! tokio::spawn(async move {
//!     while let Some(meta) = messages.recv().await {
//!         println!("{}", meta.to_json_line());
//!     }
//! });
//! // Ctrl-C or SIGTERM: calls in progress are hung up and their messages stored.
//! endpoint.handle().shutdown_on_signals()?;
//! endpoint.run().await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod classify;
pub mod config;
pub mod divert;
mod endpoint;
pub mod error;
pub mod hooks;
mod limit;
pub mod media;
pub mod mwi;
pub mod register;
pub mod sdp;
pub mod srtp;
pub mod telemetry;
pub mod tls;

pub use config::{AddrRule, SipConfig, SipConfigError};
pub use endpoint::{Endpoint, EndpointHandle};
pub use error::{Error, Result};
