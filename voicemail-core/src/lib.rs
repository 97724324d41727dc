//! # voicemail-core
//!
//! The voicemail answering machine's engine and mailbox.
//!
//! **The engine** (always built) is sans-IO: the call state machine ([`Call`]), the codecs
//! (G.711, L16, G.722, Opus; [`codec`]), RTP and RFC 4733 DTMF, a jitter buffer, greetings
//! ([`Prompt`]) and recording into a sink it is given ([`Recording`]), and the message
//! metadata ([`MessageMeta`]). It owns no file, socket, clock or thread: time enters only
//! through inputs, and everything it wants done is pulled with [`Call::poll_output`].
//! `default-features = false` builds the engine alone.
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
//!
//! ## Run loop
//!
//! An adapter (a SIP stack, a test, your own code) drives each call the same way: feed an
//! [`Input`] with the time it happened, then drain [`Call::poll_output`] until it returns
//! [`Output::Timeout`], which is the deadline by which the call wants to hear from you again.
//! Then wait until that deadline or a datagram, whichever comes first, and feed it:
//!
//! - [`Output::SendRtp`]: send the packet to the caller (the greeting and the beep, paced by
//!   the timeouts);
//! - [`Output::Event`]: state changes, DTMF digits, and once per call, however it ends,
//!   [`Event::MessageRecorded`] with the message's metadata;
//! - [`Output::Timeout`]: drained; feed [`Input::Rtp`] for a datagram, [`Input::Tick`] at the
//!   deadline, [`Input::Hangup`] when the caller hangs up ([`Input::Dtmf`], [`Input::Hold`]
//!   and [`Input::Codec`] as the signalling says).
//!
//! The engine never reads a clock: each input carries its `Instant`, so a test or a
//! simulation may run a call much faster than real time, as this example does. The caller
//! speaks for two seconds after the beep and hangs up; the mailbox (in a temporary directory)
//! picks the greeting, records into its spool and stores the message:
//!
//! ```
//! # #[cfg(feature = "mailbox")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::{Duration, Instant};
//! use voicemail_core::config::Config;
//! use voicemail_core::{CallSetup, CallState, CodecKind, EndReason, Event, Input, Mailbox, Output, StartedCall};
//!
//! let dir = tempfile::tempdir()?;
//! let mut config = Config::default_embedded(); // the bundled greeting, no delivery target
//! config.spool = dir.path().join("spool");
//! config.delivery.maildir = None;
//! config.load_prompts()?;
//! let mailbox = Mailbox::open(config)?;
//!
//! let mut now = Instant::now(); // the adapter's clock: here a simulated one
//! let setup = CallSetup::new("+74951234567", jiff::Timestamp::now()).with_codec(CodecKind::Pcmu);
//! let StartedCall { mut call, lease } = mailbox.start_call(setup, now)?;
//! call.handle_input(Input::Answered(now))?;
//!
//! let (mut sent, mut seq, mut recording_since) = (0, 0u16, None);
//! let meta = loop {
//!     match call.poll_output() {
//!         Output::SendRtp(packet) => sent += packet.len(), // socket.send_to(&packet.to_vec(), caller)
//!         Output::Event(Event::StateChanged(CallState::Recording)) => recording_since = Some(now),
//!         Output::Event(Event::MessageRecorded(meta)) => break *meta,
//!         Output::Event(_) => {} // other state changes, DTMF digits
//!         Output::Timeout(at) => {
//!             // Drained. A real adapter waits here for `at` or a datagram; the simulated
//!             // caller sends a 20 ms packet every 20 ms once the beep has played, 100 in all.
//!             let next_packet = recording_since.map(|t| t + Duration::from_millis(20) * u32::from(seq));
//!             match next_packet {
//!                 Some(_) if seq == 100 => call.handle_input(Input::Hangup(now))?,
//!                 Some(t) if t < at => {
//!                     now = t;
//!                     call.handle_input(Input::Rtp(now, &caller_packet(seq)))?;
//!                     seq += 1;
//!                 }
//!                 _ => {
//!                     now = at;
//!                     call.handle_input(Input::Tick(now))?;
//!                 }
//!             }
//!         }
//!     }
//! };
//! // Stores the message (and would queue its deliveries): from here on it survives a crash.
//! let stored = mailbox.finish_call(lease, meta, jiff::Timestamp::now())?;
//! assert_eq!(stored.end_reason, EndReason::HangUp);
//! assert!(stored.duration_ms >= 1_900, "{} ms recorded", stored.duration_ms);
//! assert!(sent > 0 && stored.wav_path.is_some_and(|path| path.is_file()));
//!
//! /// An RTP packet of the caller: PCMU (payload type 0), 20 ms of a square wave.
//! fn caller_packet(seq: u16) -> Vec<u8> {
//!     let mut packet = vec![0x80, 0];
//!     packet.extend_from_slice(&seq.to_be_bytes());
//!     packet.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes()); // timestamp, 8 kHz
//!     packet.extend_from_slice(&0x5eed_cafe_u32.to_be_bytes()); // SSRC
//!     packet.extend((0..160).map(|i| if i % 16 < 8 { 0x20 } else { 0xa0 }));
//!     packet
//! }
//! # Ok(()) }
//! # #[cfg(not(feature = "mailbox"))]
//! # fn main() {}
//! ```
//!
//! Without the mailbox, build the call yourself with [`Call::new`] from a [`CallConfig`], a
//! [`Prompt`] and a [`Recording`] into any `Write + Seek` sink; the loop is the same.
//!
//! ## Features
//!
//! - `mailbox` (default): the mailbox layer and its dependencies (SQLite, e-mail, TOML, ...).
//! - `_internals`: not an API. Makes the internal modules (jitter buffer, RTP parser and
//!   packetizer, DTMF detector, IMAP watcher) public, hidden from the docs, for this
//!   project's fuzz targets, benches and tests; no semver promise.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod call;
pub mod codec;
pub mod error;
pub mod greeting;
pub mod io;
pub mod message;
pub mod recording;

// Internals: public only under `_internals` (hidden, for fuzz targets, benches and tests).
#[cfg(feature = "_internals")]
#[doc(hidden)]
pub mod jitter;
#[cfg(not(feature = "_internals"))]
#[allow(unreachable_pub, dead_code)]
mod jitter;
#[cfg(feature = "_internals")]
#[doc(hidden)]
pub mod rtp;
#[cfg(not(feature = "_internals"))]
#[allow(unreachable_pub, dead_code)]
mod rtp;

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
#[cfg(all(feature = "mailbox", feature = "_internals"))]
#[doc(hidden)]
pub mod imapsync;
#[cfg(all(feature = "mailbox", not(feature = "_internals")))]
#[allow(unreachable_pub, dead_code)]
mod imapsync;
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
pub use jitter::JitterConfig;
pub use message::{EndReason, MediaStats, MessageId, MessageMeta};
pub use recording::Recording;
pub use rtp::dtmf::DtmfDigit;

#[cfg(feature = "mailbox")]
pub use mailbox::{CallLease, CallSetup, Mailbox, MailboxError, StartedCall};
#[cfg(feature = "mailbox")]
pub use mailboxes::{Dialled, Mailboxes};
