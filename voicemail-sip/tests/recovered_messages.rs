//! Messages recovered from calls a dead process left reach the application's stream.
//!
//! A call is started on the spool's mailbox and abandoned without being finished, the way a
//! process that died mid-call leaves it: its WAV unlocked and its record still "recording".
//! An endpoint on that spool runs the mailbox's background work, whose recovery stores the
//! call as `interrupted`, and [`Endpoint::messages`] yields it. Without the background work
//! nothing recovers it until the embedder runs [`Mailbox::recover`] itself; the message then
//! reaches the stream just the same.

#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod common;

use std::time::{Duration, Instant};

use common::TestEndpoint;
use voicemail_core::config::Config;
use voicemail_core::{CallSetup, EndReason, Mailbox, MessageId};

/// Starts a call on the mailbox of `config` and abandons it; returns its id.
fn abandon_a_call(config: &Config, caller: &str) -> MessageId {
    let mailbox = Mailbox::open(config.clone()).unwrap();
    let started = mailbox.start_call(CallSetup::new(caller, jiff::Timestamp::now()), Instant::now()).unwrap();
    let id = started.lease.id().clone();
    drop(started); // like a process that died: the lock on the WAV is gone, no message stored
    id
}

#[test]
fn a_call_left_by_a_dead_process_reaches_the_stream() {
    let mut left = None;
    let mut ep = TestEndpoint::start_with("recovered", "", "", |config| {
        left = Some(abandon_a_call(config, "+74957654321"));
    });
    let left = left.unwrap();
    let meta = ep.next_message(Duration::from_secs(10)).expect("the recovered message");
    assert_eq!(meta.id, left);
    assert_eq!(meta.caller, "+74957654321");
    assert_eq!(meta.end_reason, EndReason::Interrupted);
    assert_eq!(meta.duration_ms, 0);
    ep.assert_stored(&meta);
    ep.stop();
}

#[test]
fn without_background_work_the_embedder_recovers() {
    let mut left = None;
    let mut ep = TestEndpoint::start_opts(
        "no-background",
        "",
        "",
        |config| {
            left = Some(abandon_a_call(config, "+74950001122"));
        },
        false,
    );
    let left = left.unwrap();
    assert!(ep.next_message(Duration::from_secs(1)).is_none(), "no recovery runs without the background work");
    let recovered = ep.mailbox.recover(jiff::Timestamp::now()).unwrap();
    assert_eq!(recovered.len(), 1);
    let meta = ep.next_message(Duration::from_secs(5)).expect("the message the embedder recovered");
    assert_eq!(meta.id, left);
    assert_eq!(meta.end_reason, EndReason::Interrupted);
    ep.assert_stored(&meta);
    ep.stop();
}
