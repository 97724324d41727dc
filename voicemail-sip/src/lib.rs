//! # voicemail-sip
//!
//! The SIP adapter of the voicemail answering machine: a SIP user agent server that answers
//! every call, plays the mailbox's greeting and a beep, records the caller into the spool
//! with one [`voicemail_core::Call`] per dialog, and hands each finished message to the
//! application.
//!
//! - [`Endpoint`]: UDP and TCP transports, transactions and dialogs (rsipstack, kept behind
//!   this crate's API), INVITE/ACK/BYE/CANCEL/OPTIONS/INFO/re-INVITE handling, a source
//!   allow-list, a call limit and graceful shutdown.
//! - [`classify`]: the pure decision for each incoming request (fuzzed and corpus-tested).
//! - [`sdp`]: RFC 3264 offer/answer for PCMU/PCMA and telephone-event.
//! - [`media`]: the RTP port pool and the per-call task that drives the core call.
//! - [`config`]: the `[sip]` table of the mailbox's TOML file.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use voicemail_core::config::Config;
//! use voicemail_sip::{Endpoint, SipConfig};
//!
//! let mut mailbox = Config::default_embedded();
//! mailbox.load_prompts()?;
//! let sip = SipConfig::from_table(mailbox.sip.as_ref())?;
//! let mut endpoint = Endpoint::bind(sip, Arc::new(mailbox)).await?;
//! let mut messages = endpoint.messages().ok_or("taken")?;
//! let handle = endpoint.handle();
//! tokio::spawn(async move {
//!     while let Some(meta) = messages.recv().await {
//!         println!("{}", meta.to_json_line());
//!     }
//! });
//! tokio::spawn(async move {
//!     let _ = tokio::signal::ctrl_c().await;
//!     handle.shutdown();
//! });
//! endpoint.run().await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod classify;
pub mod config;
mod endpoint;
pub mod error;
pub mod media;
pub mod register;
pub mod sdp;

pub use config::{AddrRule, SipConfig, SipConfigError};
pub use endpoint::{Endpoint, EndpointHandle};
pub use error::{Error, Result};
