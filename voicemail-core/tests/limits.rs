//! The call ends by itself at the maximum length, after the silence timeout, and when no RTP
//! arrives for the media timeout — each with the right end reason and a complete WAV.

#![allow(clippy::unwrap_used)]

mod harness;

use std::time::Duration;

use harness::*;
use voicemail_core::{CallState, CodecKind, EndReason};

fn talk(t: &mut TestCall, pcm: impl Fn(usize) -> Vec<i16>, packets: usize) {
    let s = t.entered(CallState::Recording).unwrap();
    let mut talker = Talker::new(CodecKind::Pcmu, 3, 0, 0);
    for i in 0..packets {
        if t.call.state() == CallState::Ended {
            break;
        }
        let p = talker.packet(&pcm(i));
        t.rtp(s + FRAME * i as u32, &p);
    }
}

#[test]
fn max_length_cuts_exactly() {
    let mut cfg = TestCall::config();
    cfg.max_length = Duration::from_secs(2);
    let mut t = TestCall::new(cfg);
    t.answer();
    t.run_until_state(CallState::Recording, Duration::from_secs(5));
    talk(&mut t, |_| tone(160), 200);
    let m = t.message();
    assert_eq!(m.end_reason, EndReason::MaxLength);
    assert_eq!(m.duration_ms, 2000);
    assert_eq!(t.wav.samples().len(), 16_000);
}

#[test]
fn silence_timeout_ends_the_call() {
    let mut cfg = TestCall::config();
    cfg.silence_timeout = Some(Duration::from_secs(3));
    let mut t = TestCall::new(cfg);
    t.answer();
    t.run_until_state(CallState::Recording, Duration::from_secs(5));
    // One second of speech, then silence.
    talk(&mut t, |i| if i < 50 { tone(160) } else { vec![0; 160] }, 1000);
    let m = t.message();
    assert_eq!(m.end_reason, EndReason::SilenceTimeout);
    assert_eq!(m.duration_ms, 4000);
}

#[test]
fn media_timeout_ends_a_silent_line() {
    let mut cfg = TestCall::config();
    cfg.media_timeout = Duration::from_secs(5);
    let mut t = TestCall::new(cfg);
    t.answer();
    t.run_until_state(CallState::Recording, Duration::from_secs(5));
    talk(&mut t, |_| tone(160), 50);
    let last = t.now;
    t.advance_to(last + Duration::from_secs(6));
    let m = t.message();
    assert_eq!(m.end_reason, EndReason::MediaTimeout);
    assert_eq!(m.duration_ms, 1000);
}

#[test]
fn media_timeout_during_greeting_still_yields_a_message() {
    let mut cfg = TestCall::config();
    cfg.media_timeout = Duration::from_millis(300);
    let mut t = TestCall::new(cfg);
    t.answer();
    t.advance_to(t.base + Duration::from_secs(1));
    let m = t.message();
    assert_eq!(m.end_reason, EndReason::MediaTimeout);
    assert_eq!(m.duration_ms, 0);
}

#[test]
fn hold_suspends_the_media_timeout_and_the_recording_goes_on() {
    let mut cfg = TestCall::config();
    cfg.media_timeout = Duration::from_secs(5);
    cfg.silence_timeout = None;
    let mut t = TestCall::new(cfg);
    t.answer();
    t.run_until_state(CallState::Recording, Duration::from_secs(5));
    let s = t.entered(CallState::Recording).unwrap();
    let mut talker = Talker::new(CodecKind::Pcmu, 3, 0, 0);
    for i in 0..50u32 {
        let p = talker.packet(&tone(160));
        t.rtp(s + FRAME * i, &p);
    }
    // On hold for a minute: no RTP, yet the call goes on.
    let held = s + FRAME * 50;
    t.advance_to(held);
    t.input(voicemail_core::Input::Hold(held, true));
    t.advance_to(held + Duration::from_secs(60));
    assert_eq!(t.call.state(), CallState::Recording);
    let back = held + Duration::from_secs(60);
    t.input(voicemail_core::Input::Hold(back, false));
    talker.ts = talker.ts.wrapping_add(60 * 8000); // the sender's clock ran on during the hold
    for i in 0..50u32 {
        let p = talker.packet(&tone(160));
        t.rtp(back + FRAME * i, &p);
    }
    // Off hold, silence ends the call after the media timeout again.
    t.advance_to(back + FRAME * 50 + Duration::from_secs(6));
    let m = t.message();
    assert_eq!(m.end_reason, EndReason::MediaTimeout);
    assert_eq!(m.duration_ms, 62_000, "1 s, a minute of hold as silence, 1 s");
}
