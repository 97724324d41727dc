//! # voicemail-core
//!
//! The sans-IO engine of the voicemail answering machine: the call state machine, G.711 and
//! L16 codecs, RTP parsing and packetizing, RFC 4733 DTMF, the jitter buffer, greetings and
//! crash-safe WAV recording.
//!
//! The [`Call`] owns no socket, no thread and no clock: time enters only through inputs, and
//! everything it wants done is pulled with [`Call::poll_output`]. Tests drive it with a
//! simulated clock; the SIP adapter drives it from one task per call.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod call;
pub mod codec;
pub mod config;
pub mod deliver;
pub mod directory;
mod durable;
pub mod error;
pub mod greeting;
pub mod io;
pub mod jitter;
pub mod mailbox;
pub mod message;
pub mod outbox;
pub mod recording;
pub mod route;
pub mod rtp;
pub mod schedule;
pub mod spool;

pub use call::{Call, CallConfig, CallState};
pub use codec::{Codec, CodecKind};
pub use error::{Error, Result};
pub use greeting::Prompt;
pub use io::{Event, Input, Output, RtpOut};
pub use message::{EndReason, MediaStats, MessageMeta};
pub use recording::Recording;
pub use rtp::dtmf::DtmfDigit;
