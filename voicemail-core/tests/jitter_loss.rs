//! Through loss, reordering, duplication, sequence/timestamp wrap-around and an SSRC change,
//! the recording's length follows the sender's timestamps and every received frame lands in
//! its place.

#![allow(clippy::unwrap_used)]

mod harness;

use std::time::Duration;

use harness::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use voicemail_core::{CallState, CodecKind};

/// Sends `n` 20 ms frames numbered into their samples, with impairments; returns the recording.
fn impaired(n: usize, loss: f64, reorder: f64, dup: f64, seed: u64) -> (Vec<i16>, voicemail_core::MessageMeta) {
    let mut cfg = TestCall::config().with_codec(CodecKind::L16);
    cfg.silence_timeout = None;
    let mut t = TestCall::new(cfg);
    t.answer();
    t.run_until_state(CallState::Recording, Duration::from_secs(5));
    let s = t.entered(CallState::Recording).unwrap();
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut talker = Talker::new(CodecKind::L16, 77, 65_000, u32::MAX - 5_000);
    let mut sched = Vec::new();
    for i in 0..n {
        let frame = vec![(i as i16) + 1; 160]; // frame i holds the value i+1
        let p = talker.packet(&frame);
        if i > 0 && i + 1 < n && rng.random_bool(loss) {
            continue;
        }
        let mut at = FRAME * i as u32;
        if i > 0 && i + 1 < n && rng.random_bool(reorder) {
            at += FRAME * 2 + Duration::from_millis(1);
        }
        sched.push((at, p.clone()));
        if rng.random_bool(dup) {
            sched.push((at + Duration::from_millis(2), p));
        }
    }
    sched.sort_by_key(|(at, _)| *at);
    for (at, p) in &sched {
        t.rtp(s + *at, p);
    }
    t.hangup(s + FRAME * n as u32);
    (t.wav.samples(), t.message())
}

#[test]
fn clean_stream_with_wrap_around() {
    let (rec, m) = impaired(1000, 0.0, 0.0, 0.0, 1);
    assert_eq!(rec.len(), 160_000);
    assert_eq!(m.media.lost, 0);
    for (i, f) in rec.chunks(160).enumerate() {
        assert!(f.iter().all(|&s| s == i as i16 + 1), "frame {i} in place");
    }
}

#[test]
fn loss_reorder_duplicates_keep_length_and_order() {
    let (rec, m) = impaired(500, 0.05, 0.1, 0.05, 7);
    assert_eq!(rec.len(), 80_000, "length follows the sender's timestamps");
    assert!(m.media.lost > 0 && m.media.duplicates > 0);
    let mut present = 0;
    for (i, f) in rec.chunks(160).enumerate() {
        let v = f[0];
        assert!(f.iter().all(|&s| s == v));
        assert!(v == 0 || v == i as i16 + 1, "frame {i} holds {v}: out of place");
        present += usize::from(v != 0);
    }
    assert_eq!(present as u64, 500 - m.media.lost, "every frame not lost was recorded");
}

#[test]
fn ssrc_change_continues_the_recording() {
    let mut cfg = TestCall::config();
    cfg.silence_timeout = None;
    let mut t = TestCall::new(cfg);
    t.answer();
    t.run_until_state(CallState::Recording, Duration::from_secs(5));
    let s = t.entered(CallState::Recording).unwrap();
    let mut a = Talker::new(CodecKind::Pcmu, 1, 10, 1000);
    let mut b = Talker::new(CodecKind::Pcmu, 2, 40_000, 3_000_000_000);
    for i in 0..50u32 {
        let p = a.packet(&tone(160));
        t.rtp(s + FRAME * i, &p);
    }
    for i in 50..100u32 {
        let p = b.packet(&tone(160));
        t.rtp(s + FRAME * i, &p);
    }
    t.hangup(s + FRAME * 100);
    let m = t.message();
    assert_eq!(m.media.ssrc_changes, 1);
    assert_eq!(m.duration_ms, 2000);
}

#[test]
fn timestamp_jump_without_elapsed_time_is_not_filled() {
    let mut t = TestCall::new(TestCall::config());
    t.answer();
    t.run_until_state(CallState::Recording, Duration::from_secs(5));
    let s = t.entered(CallState::Recording).unwrap();
    let mut a = Talker::new(CodecKind::Pcmu, 1, 10, 1000);
    for i in 0..100u32 {
        if i == 50 {
            a.ts = a.ts.wrapping_add(80_000_000); // a broken sender's timestamp leap
        }
        let p = a.packet(&tone(160));
        t.rtp(s + FRAME * i, &p);
    }
    t.hangup(s + FRAME * 100);
    assert_eq!(t.message().duration_ms, 2000);
}
