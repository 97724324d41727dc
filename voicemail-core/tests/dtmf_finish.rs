//! DTMF: RFC 4733 events and SIP INFO digits are reported once per key press; the finish key
//! ends the recording (keeping what was said) and skips the rest of the greeting.

#![allow(clippy::unwrap_used)]

mod harness;

use std::time::Duration;

use harness::*;
use voicemail_core::{CallState, CodecKind, DtmfDigit, EndReason, Event, Input};

#[test]
fn pound_via_rfc4733_finishes_the_recording() {
    let mut t = TestCall::new(TestCall::config());
    t.answer();
    t.run_until_state(CallState::Recording, Duration::from_secs(5));
    let s = t.entered(CallState::Recording).unwrap();
    let mut talker = Talker::new(CodecKind::Pcmu, 9, 100, 5000);
    for i in 0..50u32 {
        let p = talker.packet(&tone(160));
        t.rtp(s + FRAME * i, &p);
    }
    // '#' (event 11): start, two updates, three end packets, all with one timestamp.
    let at = s + FRAME * 50;
    for (k, (end, dur)) in
        [(false, 160), (false, 320), (false, 480), (true, 640), (true, 640), (true, 640)].into_iter().enumerate()
    {
        let p = talker.dtmf(11, end, dur);
        t.rtp(at + Duration::from_millis(10 * k as u64), &p);
    }
    let m = t.message();
    assert_eq!(m.end_reason, EndReason::FinishKey);
    assert_eq!(m.dtmf, "#");
    assert_eq!(m.duration_ms, 1000);
    let digits = t.events.iter().filter(|(_, e)| matches!(e, Event::DtmfReceived(_))).count();
    assert_eq!(digits, 1, "one digit per key press");
}

#[test]
fn other_digits_are_recorded_not_finishing() {
    let mut t = TestCall::new(TestCall::config());
    t.answer();
    t.run_until_state(CallState::Recording, Duration::from_secs(5));
    let s = t.entered(CallState::Recording).unwrap();
    let mut talker = Talker::new(CodecKind::Pcmu, 9, 100, 5000);
    for (i, ev) in [1u8, 2, 3].into_iter().enumerate() {
        let at = s + Duration::from_millis(300 * i as u64);
        let p = talker.dtmf(ev, false, 160);
        t.rtp(at, &p);
        let p = talker.dtmf(ev, true, 800);
        t.rtp(at + FRAME, &p);
        talker.ts = talker.ts.wrapping_add(800);
    }
    t.input(Input::Dtmf(t.now, DtmfDigit::from_char('4').unwrap()));
    assert_eq!(t.call.state(), CallState::Recording);
    t.hangup(t.now + FRAME);
    assert_eq!(t.message().dtmf, "1234");
}

#[test]
fn finish_key_during_greeting_skips_to_the_beep() {
    let mut t = TestCall::new(TestCall::config());
    t.answer();
    t.advance_to(t.base + Duration::from_millis(100));
    assert_eq!(t.call.state(), CallState::Greeting);
    t.input(Input::Dtmf(t.now, DtmfDigit::from_char('#').unwrap()));
    assert_eq!(t.call.state(), CallState::Beep);
    t.run_until_state(CallState::Recording, Duration::from_secs(1));
}

#[test]
fn sip_info_pound_finishes() {
    let mut t = TestCall::new(TestCall::config());
    t.answer();
    t.run_until_state(CallState::Recording, Duration::from_secs(5));
    t.input(Input::Dtmf(t.now, DtmfDigit::from_char('#').unwrap()));
    assert_eq!(t.message().end_reason, EndReason::FinishKey);
}
