//! Arbitrary input sequences through a whole Call: no panic, poll_output always reaches a
//! timeout, and the call always ends with exactly one MessageRecorded. Codec changes (any
//! codec, payload type and telephone-event type) come at any moment; a valid one is never an
//! error, an invalid one (a payload type above 127, telephone-event on the audio type) always is
//! and changes nothing.
#![no_main]

use std::io::Cursor;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use voicemail_core::{
    Call, CallConfig, CallState, CodecChange, CodecKind, DtmfDigit, Event, Input, Output, Prompt, Recording,
};

fn greeting() -> Prompt {
    static G: std::sync::OnceLock<Prompt> = std::sync::OnceLock::new();
    G.get_or_init(|| Prompt::from_pcm("fuzz", vec![1000; 800]).expect("non-empty")).clone()
}

fn drain(call: &mut Call, messages: &mut u32) {
    for _ in 0..100_000 {
        match call.poll_output() {
            Output::Timeout(_) => return,
            Output::Event(Event::MessageRecorded(_)) => *messages += 1,
            Output::Event(_) | Output::SendRtp(_) => {}
        }
    }
    panic!("poll_output never reached a timeout");
}

fuzz_target!(|data: &[u8]| {
    let base = Instant::now();
    let Ok(id) = voicemail_core::MessageId::parse("fuzz") else { return };
    let mut cfg = CallConfig::new(id, "1", jiff::Timestamp::UNIX_EPOCH);
    cfg.max_length = Duration::from_secs(10);
    cfg.media_timeout = Duration::from_secs(5);
    let Ok(rec) = Recording::new(Cursor::new(Vec::new())) else { return };
    let Ok(mut call) = Call::new(cfg, greeting(), rec, base) else { return };
    let mut messages = 0;
    let mut now = base;
    // Records: [op: u8][arg: u8][payload for RTP: arg bytes]
    let mut rest = data;
    while rest.len() >= 2 && call.state() != CallState::Ended {
        let (op, arg) = (rest[0], rest[1]);
        rest = &rest[2..];
        let r = match op % 8 {
            0 => call.handle_input(Input::Answered(now)),
            1 | 2 => {
                let n = usize::from(arg).min(rest.len());
                let (d, tail) = rest.split_at(n);
                rest = tail;
                call.handle_input(Input::Rtp(now, d))
            }
            3 => match DtmfDigit::from_event(arg % 16) {
                Some(d) => call.handle_input(Input::Dtmf(now, d)),
                None => Ok(()),
            },
            4 => {
                now += Duration::from_millis(u64::from(arg) * 20);
                call.handle_input(Input::Tick(now))
            }
            5 => call.handle_input(Input::Hold(now, arg % 2 == 1)),
            6 => {
                // [op][codec][payload type][telephone-event type, 255: none]
                let (Some(&pt), Some(&dtmf)) = (rest.first(), rest.get(1)) else { break };
                rest = &rest[2..];
                let codec = CodecKind::ALL[usize::from(arg) % CodecKind::ALL.len()];
                let change = CodecChange { codec, payload_type: pt, dtmf_payload_type: (dtmf != 255).then_some(dtmf) };
                let valid = pt <= 127 && change.dtmf_payload_type.is_none_or(|d| d <= 127 && d != pt);
                let before = call.codec();
                let r = call.handle_input(Input::Codec(now, change));
                assert_eq!(r.is_ok(), valid, "{change:?}: {r:?}");
                if !valid {
                    assert_eq!(call.codec(), before, "a refused change changes nothing");
                }
                Ok(())
            }
            _ => call.handle_input(Input::Hangup(now)),
        };
        assert!(r.is_ok(), "valid inputs in order are never an error: {r:?}");
        drain(&mut call, &mut messages);
    }
    if call.state() != CallState::Ended {
        call.handle_input(Input::Hangup(now)).expect("hang-up before the end");
        drain(&mut call, &mut messages);
    }
    assert_eq!(messages, 1);
});
