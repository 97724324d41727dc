//! # voicemail-core
//!
//! The voicemail answering machine's engine and mailbox.
//!
//! **The engine** (always built) is sans-IO: the call state machine ([`Call`]), G.711 and L16
//! codecs, RTP parsing and packetizing, RFC 4733 DTMF, the jitter buffer, greetings and WAV
//! recording into a sink it is given, and the message metadata. It owns no file, socket,
//! clock or thread: time enters only through inputs, and everything it wants done is pulled
//! with [`Call::poll_output`]. `default-features = false` builds the engine alone.
//!
//! **The mailbox** (feature `mailbox`, on by default) owns the life of every message:
//! [`Mailbox`] starts calls (id, greeting from the calendar, recording in the
//! spool), stores finished messages in an embedded SQLite store, recovers calls whose process
//! died, delivers by e-mail (Maildir, SMTP, IMAP) with retries, and tracks the follow-up
//! (New → Assigned → CalledBack) with its history: a known client's message is assigned to
//! the client's manager, and calls not returned in time are reminded of and escalated by
//! e-mail. Modules: [`config`], [`schedule`], [`directory`], [`store`], [`deliver`],
//! [`template`], [`route`], [`followup`], [`remind`], [`mailbox`], [`runner`],
//! [`transcribe`] (the speech-to-text hook), [`telemetry`] (operational metrics, a no-op
//! until the application installs a recorder). One configuration file may define several
//! mailboxes; [`Mailboxes`] opens them all and picks the one a call is for ([`mailboxes`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod call;
pub mod codec;
pub mod error;
pub mod greeting;
pub mod io;
pub mod jitter;
pub mod message;
pub mod recording;
pub mod rtp;

#[cfg(feature = "mailbox")]
pub mod config;
#[cfg(feature = "mailbox")]
pub mod deliver;
#[cfg(feature = "mailbox")]
pub mod directory;
#[cfg(feature = "mailbox")]
pub mod followup;
#[cfg(feature = "mailbox")]
mod greeting_file;
#[cfg(feature = "mailbox")]
pub mod imapsync;
#[cfg(feature = "mailbox")]
pub mod mailbox;
#[cfg(feature = "mailbox")]
pub mod mailboxes;
#[cfg(feature = "mailbox")]
pub mod remind;
#[cfg(feature = "mailbox")]
pub mod route;
#[cfg(feature = "mailbox")]
pub mod runner;
#[cfg(feature = "mailbox")]
pub mod schedule;
#[cfg(feature = "mailbox")]
pub mod store;
#[cfg(feature = "mailbox")]
pub mod telemetry;
#[cfg(feature = "mailbox")]
pub mod template;
#[cfg(feature = "mailbox")]
pub mod transcribe;

pub use call::{Call, CallConfig, CallState};
pub use codec::{Codec, CodecKind};
pub use error::{Error, Result};
pub use greeting::Prompt;
pub use io::{CodecChange, Event, Input, Output, RtpOut};
pub use message::{EndReason, MediaStats, MessageId, MessageMeta};
pub use recording::Recording;
pub use rtp::dtmf::DtmfDigit;

#[cfg(feature = "mailbox")]
pub use mailbox::{CallLease, CallSetup, Mailbox, MailboxError, StartedCall};
#[cfg(feature = "mailbox")]
pub use mailboxes::{Dialled, Mailboxes};
