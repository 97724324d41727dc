//! No sequence of inputs panics a Call: arbitrary datagrams, digits, ticks, holds, codec
//! changes (to any codec, payload type and telephone-event type, at any moment) and hang-ups in
//! any order. Misuse is an error, malformed media is counted, and the call still ends with
//! exactly one message whose length is the 8 kHz recording's.

#![allow(clippy::unwrap_used)]

mod harness;

use std::time::Duration;

use harness::*;
use proptest::prelude::*;
use voicemail_core::{CallState, CodecChange, CodecKind, DtmfDigit, Event, Input, Output};

#[derive(Debug, Clone)]
enum Step {
    Answer,
    Rtp(Vec<u8>),
    RtpLike { pt: u8, seq: u16, ts: u32, ssrc: u32, payload: Vec<u8> },
    Dtmf(char),
    Tick,
    Hangup,
    Hold(bool),
    Codec(CodecChange),
    Wait(u16),
}

fn codec_change() -> impl Strategy<Value = CodecChange> {
    let pt = prop_oneof![Just(0u8), Just(8), Just(9), Just(96), Just(111), 0u8..128];
    let dtmf = proptest::option::of(prop_oneof![Just(101u8), 0u8..128]);
    (proptest::sample::select(CodecKind::ALL.to_vec()), pt, dtmf).prop_map(|(codec, payload_type, dtmf)| CodecChange {
        codec,
        payload_type,
        dtmf_payload_type: dtmf.filter(|d| *d != payload_type),
    })
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => Just(Step::Answer),
        2 => proptest::collection::vec(any::<u8>(), 0..200).prop_map(Step::Rtp),
        6 => (prop_oneof![Just(0u8), Just(8), Just(101), Just(13), any::<u8>()], any::<u16>(), any::<u32>(), 0u32..3, proptest::collection::vec(any::<u8>(), 0..400))
            .prop_map(|(pt, seq, ts, ssrc, payload)| Step::RtpLike { pt, seq, ts, ssrc, payload }),
        1 => prop_oneof![Just('#'), Just('1'), Just('*')].prop_map(Step::Dtmf),
        2 => Just(Step::Tick),
        1 => Just(Step::Hangup),
        1 => any::<bool>().prop_map(Step::Hold),
        1 => codec_change().prop_map(Step::Codec),
        3 => any::<u16>().prop_map(Step::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn no_input_sequence_panics(steps in proptest::collection::vec(step(), 0..300)) {
        let mut cfg = TestCall::config();
        cfg.max_length = Duration::from_secs(20);
        let mut t = TestCall::new(cfg);
        let mut now = t.now;
        for s in steps {
            let r = match &s {
                Step::Answer => t.call.handle_input(Input::Answered(now)),
                Step::Rtp(b) => t.call.handle_input(Input::Rtp(now, b)),
                Step::RtpLike { pt, seq, ts, ssrc, payload } => {
                    let mut p = vec![0x80, pt & 0x7f];
                    p.extend_from_slice(&seq.to_be_bytes());
                    p.extend_from_slice(&ts.to_be_bytes());
                    p.extend_from_slice(&ssrc.to_be_bytes());
                    p.extend_from_slice(payload);
                    t.call.handle_input(Input::Rtp(now, &p))
                }
                Step::Dtmf(c) => t.call.handle_input(Input::Dtmf(now, DtmfDigit::from_char(*c).unwrap())),
                Step::Tick => t.call.handle_input(Input::Tick(now)),
                Step::Hangup => t.call.handle_input(Input::Hangup(now)),
                Step::Hold(h) => t.call.handle_input(Input::Hold(now, *h)),
                Step::Codec(c) => t.call.handle_input(Input::Codec(now, *c)),
                Step::Wait(ms) => { now += Duration::from_millis(u64::from(*ms) % 5000); Ok(()) }
            };
            if t.call.state() == CallState::Ended {
                prop_assert!(r.is_ok() || matches!(r, Err(voicemail_core::Error::CallEnded)));
            } else {
                prop_assert!(r.is_ok(), "{s:?} -> {r:?}");
            }
            let mut guard = 0;
            loop {
                guard += 1;
                prop_assert!(guard < 100_000, "poll_output never reached a timeout");
                match t.call.poll_output() {
                    Output::Timeout(_) => break,
                    Output::Event(e) => t.events.push((now, e)),
                    Output::SendRtp(_) => {}
                }
            }
        }
        if t.call.state() != CallState::Ended {
            t.call.handle_input(Input::Hangup(now)).unwrap();
            loop {
                match t.call.poll_output() {
                    Output::Timeout(_) => break,
                    Output::Event(e) => t.events.push((now, e)),
                    Output::SendRtp(_) => {}
                }
            }
        }
        let n = t.events.iter().filter(|(_, e)| matches!(e, Event::MessageRecorded(_))).count();
        prop_assert_eq!(n, 1);
        let m = t.message();
        prop_assert_eq!(t.wav.samples().len() as u64 * 1000 / 8000, m.duration_ms);
    }
}
