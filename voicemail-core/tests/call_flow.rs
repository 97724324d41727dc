//! A complete call: greeting and beep go out as well-formed, paced RTP; the caller's audio is
//! recorded sample for sample (through G.711) after the beep; exactly one message results.

#![allow(clippy::unwrap_used)]

mod harness;

use std::time::Duration;

use harness::*;
use voicemail_core::rtp::RtpPacket;
use voicemail_core::{CallState, CodecKind, EndReason, Input};

fn full_call(codec: CodecKind) {
    let cfg = TestCall::config().with_codec(codec);
    let mut t = TestCall::new(cfg);
    assert_eq!(t.call.state(), CallState::Ringing);
    t.answer();
    t.run_until_state(CallState::Recording, Duration::from_secs(5));
    let rec_start = t.entered(CallState::Recording).unwrap();

    let speech = tone(16_000 + 80); // 2.01 s: the last packet is a partial one
    let mut talker = Talker::new(codec, 0x1234_5678, 65_500, u32::MAX - 1000); // both wrap mid-call
    for (i, chunk) in speech.chunks(160).enumerate() {
        let p = talker.packet(chunk);
        t.rtp(rec_start + FRAME * i as u32, &p);
    }
    let end = rec_start + Duration::from_nanos(speech.len() as u64 * 125_000);
    t.hangup(end);

    assert_eq!(
        t.states(),
        [CallState::Answered, CallState::Greeting, CallState::Beep, CallState::Recording, CallState::Ended]
    );
    let m = t.message();
    assert_eq!(m.end_reason, EndReason::HangUp);
    assert_eq!(m.codec, codec);
    assert_eq!(m.greeting, "test-greeting");
    assert_eq!(m.caller, "+74951234567");
    let rec = t.wav.samples();
    assert_eq!(rec, through_codec(codec, &speech), "recording is the input through {codec}");
    assert_eq!(m.duration_ms, (speech.len() as u64) / 8);
    assert_eq!(m.media.lost, 0);
}

#[test]
fn pcmu_call_records_input_exactly() {
    full_call(CodecKind::Pcmu);
}

#[test]
fn pcma_call_records_input_exactly() {
    full_call(CodecKind::Pcma);
}

#[test]
fn l16_call_records_input_exactly() {
    full_call(CodecKind::L16);
}

#[test]
fn greeting_and_beep_are_paced_well_formed_rtp() {
    let mut t = TestCall::new(TestCall::config());
    t.answer();
    t.run_until_state(CallState::Recording, Duration::from_secs(5));
    let greeting_pkts = 4000usize.div_ceil(160);
    let beep_pkts = 2000usize.div_ceil(160); // 250 ms beep
    assert_eq!(t.sent.len(), greeting_pkts + beep_pkts);
    let first_bytes = t.sent[0].1.to_vec();
    let first = RtpPacket::parse(&first_bytes).unwrap();
    assert!(first.marker, "marker bit on the first packet");
    assert_eq!(first.payload_type, 0);
    for (k, (at, p)) in t.sent.iter().enumerate() {
        let bytes = p.to_vec();
        let pkt = RtpPacket::parse(&bytes).unwrap();
        assert_eq!(pkt.sequence, first.sequence.wrapping_add(k as u16));
        assert_eq!(pkt.ssrc, first.ssrc);
        assert_eq!(*at, t.base + FRAME * k as u32, "packet {k} sent on its 20 ms slot");
        if k > 0 {
            assert!(!pkt.marker);
            let prev_bytes = t.sent[k - 1].1.to_vec();
            let prev = RtpPacket::parse(&prev_bytes).unwrap();
            assert_eq!(pkt.timestamp.wrapping_sub(prev.timestamp), prev.payload.len() as u32);
        }
    }
    // The greeting's bytes are the prompt's encoding, in order.
    let sent: Vec<u8> = t.sent[..greeting_pkts].iter().flat_map(|(_, p)| p.payload.to_vec()).collect();
    assert_eq!(&sent[..], &short_greeting().encoded(CodecKind::Pcmu)[..]);
}

#[test]
fn ptime_30_is_honoured() {
    let mut cfg = TestCall::config();
    cfg.ptime = Duration::from_millis(30);
    let mut t = TestCall::new(cfg);
    t.answer();
    t.advance_to(t.base + Duration::from_millis(100));
    assert_eq!(t.sent.len(), 4); // 0, 30, 60, 90 ms
    assert_eq!(t.sent[0].1.payload.len(), 240);
}

#[test]
fn same_seed_same_stream() {
    let run = || {
        let mut t = TestCall::new(TestCall::config());
        t.answer();
        t.sent.iter().map(|(_, p)| p.to_vec()).collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn audio_before_the_beep_is_not_recorded() {
    let mut t = TestCall::new(TestCall::config());
    t.answer();
    let mut talker = Talker::new(CodecKind::Pcmu, 7, 1, 1);
    // Talk over the greeting.
    for i in 0..20u32 {
        let p = talker.packet(&tone(160));
        t.rtp(t.base + FRAME * i, &p);
    }
    t.run_until_state(CallState::Recording, Duration::from_secs(5));
    let s = t.entered(CallState::Recording).unwrap();
    t.hangup(s + Duration::from_millis(1));
    assert_eq!(t.message().duration_ms, 0);
    assert!(t.wav.samples().is_empty());
}

#[test]
fn finished_call_rejects_input() {
    let mut t = TestCall::new(TestCall::config());
    t.answer();
    t.hangup(t.now);
    let now = t.now;
    assert!(matches!(t.call.handle_input(Input::Tick(now)), Err(voicemail_core::Error::CallEnded)));
}

#[test]
fn time_going_backwards_is_an_error() {
    let mut t = TestCall::new(TestCall::config());
    t.answer();
    t.advance_to(t.base + Duration::from_secs(1));
    let r = t.call.handle_input(Input::Tick(t.base));
    assert!(matches!(r, Err(voicemail_core::Error::TimeWentBackwards)));
}
