//! The offline call's promises (issue "voicemail-core", Done when): a 10 s message through 5 %
//! loss and 10 % reordering records 10 s ± 40 ms; a hang-up during the greeting yields a valid
//! zero-length WAV with end reason hang-up; without impairments the recording holds the input
//! through G.711 sample for sample (μ-law and A-law), with at most silence around it; a bad
//! input file is an error. The mailbox stores each message: its WAV is `<spool>/<id>.wav` and
//! its record (the same metadata, follow-up `new`, one `recorded` history entry) is in the store.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use voicemail_core::followup::{Event, FollowUp};
use voicemail_core::store::Lifecycle;
use voicemail_core::{Codec, CodecKind, EndReason};
use voicemail_examples::offline::{Args, run};

fn args(input: &std::path::Path, out: &std::path::Path) -> Args {
    let mut a = Args::new(input, "+74951234567");
    a.out = Some(out.to_path_buf());
    a
}

#[test]
fn ten_seconds_through_loss_and_reordering() {
    let dir = temp_dir("loss");
    let input = dir.path().join("speech.wav");
    write_wav8k(&input, &speechlike(80_000));
    for seed in [1, 2, 3, 4, 5] {
        let mut a = args(&input, &dir.path().join("spool"));
        a.loss = 0.05;
        a.reorder = 0.1;
        a.seed = seed;
        let m = run(&a).unwrap().meta;
        assert_eq!(m.end_reason, EndReason::HangUp);
        assert!(m.media.lost > 0, "seed {seed}: the network lost packets");
        let wav = read_wav8k(m.wav_path.as_ref().unwrap());
        let ms = wav.len() as i64 / 8;
        assert!((ms - 10_000).abs() <= 40, "seed {seed}: recording is {ms} ms");
        assert_eq!(m.duration_ms as i64, ms);
    }
}

#[test]
fn hang_up_during_greeting_gives_empty_wav() {
    let dir = temp_dir("hangup");
    let input = dir.path().join("speech.wav");
    write_wav8k(&input, &speechlike(80_000));
    let mut a = args(&input, &dir.path().join("spool"));
    a.hangup_at = Some(1.0);
    let out = run(&a).unwrap();
    let m = out.meta;
    assert_eq!(m.end_reason, EndReason::HangUp);
    assert_eq!(m.duration_ms, 0);
    assert_eq!(m.greeting, "default");
    let path = m.wav_path.clone().unwrap();
    assert_eq!(path, dir.path().join("spool").join(format!("{}.wav", m.id)));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 44);
    assert!(read_wav8k(&path).is_empty());
    // The store has the message as it was recorded.
    assert_eq!(out.stored.meta, m);
    assert_eq!(out.stored.lifecycle, Lifecycle::Stored);
    assert_eq!(out.stored.followup, FollowUp::New);
    assert_eq!(out.stored.history.len(), 1);
    assert_eq!(out.stored.history[0].event, Event::Recorded { end_reason: "hang-up".into() });
    assert!(out.stored.deliveries.is_empty() && out.delivery.is_none(), "no delivery without a configuration");
}

fn bit_exact(codec: CodecKind) {
    let dir = temp_dir("exact");
    let input = dir.path().join("in.wav");
    let pcm = speechlike(8000 * 3 + 37);
    write_wav8k(&input, &pcm);
    let mut a = args(&input, &dir.path().join("spool"));
    a.codec = codec;
    let m = run(&a).unwrap().meta;
    assert_eq!(m.codec, codec);
    let rec = read_wav8k(m.wav_path.as_ref().unwrap());
    let mut enc = Vec::new();
    codec.encode(&pcm, &mut enc);
    let mut want = Vec::new();
    codec.decode(&enc, &mut want);
    assert!(rec.len() >= want.len(), "recording too short");
    let start = (0..=rec.len() - want.len())
        .find(|&o| rec[o..o + want.len()] == want[..])
        .unwrap_or_else(|| panic!("the input through {codec} is not in the recording sample for sample"));
    assert!(rec[..start].iter().all(|&s| s == 0), "only silence before it");
    assert!(rec[start + want.len()..].iter().all(|&s| s == 0), "only silence after it");
    assert!(rec.len() - want.len() <= 160, "at most a frame of silence around it");
}

#[test]
fn pcmu_records_the_input_exactly() {
    bit_exact(CodecKind::Pcmu);
}

#[test]
fn pcma_records_the_input_exactly() {
    bit_exact(CodecKind::Pcma);
}

#[test]
fn missing_or_garbage_input_is_a_one_line_error() {
    let dir = temp_dir("bad");
    let e = run(&args(&dir.path().join("nope.wav"), dir.path())).unwrap_err();
    assert!(e.contains("nope.wav"), "{e}");
    let garbage = dir.path().join("garbage.wav");
    std::fs::write(&garbage, b"this is not audio").unwrap();
    let e = run(&args(&garbage, dir.path())).unwrap_err();
    assert!(!e.contains('\n') && e.contains("decode"), "{e}");
    assert!(Args::parse(["--input".into(), "x".into()]).is_err(), "--caller is required");
    assert!(
        Args::parse(["--input".into(), "x".into(), "--caller".into(), "1".into(), "--loss".into(), "2".into()])
            .is_err()
    );
}
