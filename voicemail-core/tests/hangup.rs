//! Every call attempt becomes a message: a hang-up before the answer, during the greeting or
//! during the beep still yields exactly one message with a valid zero-length WAV.

#![allow(clippy::unwrap_used)]

mod harness;

use std::time::Duration;

use harness::*;
use voicemail_core::{CallState, EndReason};

fn hang_up_in(state: CallState) {
    let mut t = TestCall::new(TestCall::config());
    if state != CallState::Ringing {
        t.answer();
        t.run_until_state(state, Duration::from_secs(5));
        t.advance_to(t.now + Duration::from_millis(30));
        assert_eq!(t.call.state(), state);
    }
    t.hangup(t.now);
    assert_eq!(t.call.state(), CallState::Ended);
    let m = t.message();
    assert_eq!(m.end_reason, EndReason::HangUp);
    assert_eq!(m.duration_ms, 0);
    assert!(t.wav.samples().is_empty(), "a valid, empty WAV");
}

#[test]
fn hang_up_before_answer() {
    hang_up_in(CallState::Ringing);
}

#[test]
fn hang_up_during_greeting() {
    hang_up_in(CallState::Greeting);
}

#[test]
fn hang_up_during_beep() {
    hang_up_in(CallState::Beep);
}

#[test]
fn no_packets_after_hang_up() {
    let mut t = TestCall::new(TestCall::config());
    t.answer();
    t.advance_to(t.base + Duration::from_millis(100));
    let before = t.sent.len();
    t.hangup(t.now);
    t.drain();
    assert_eq!(t.sent.len(), before);
}
