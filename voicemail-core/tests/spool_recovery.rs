//! A crash mid-call loses neither the audio nor who called: the provisional metadata written
//! at the start and the WAV (valid up to its last header refresh) are turned into a complete
//! message by `Spool::recover`, with end reason `interrupted`.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use voicemail_core::spool::Spool;
use voicemail_core::{Call, CallConfig, CallState, Codec, CodecKind, EndReason, Input, Output, Prompt, Recording};

fn drain(call: &mut Call) -> Instant {
    loop {
        if let Output::Timeout(t) = call.poll_output() {
            return t;
        }
    }
}

#[test]
fn interrupted_call_is_recovered_with_its_caller_and_audio() {
    let dir = std::env::temp_dir().join(format!("vm-spool-recovery-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let spool = Spool::open(&dir).unwrap();
    let id = "20270101T000000Z-00000001";
    let mut cfg = CallConfig::new(id, "+74951234567", jiff::Timestamp::UNIX_EPOCH);
    cfg.caller_name = Some("Ivan".into());
    cfg.beep = None;
    let greeting = Prompt::from_pcm("g", vec![100; 160]).unwrap();
    let base = Instant::now();
    let mut call = Call::new(cfg, greeting, Recording::create(&spool.wav_path(id)).unwrap(), base).unwrap();
    spool.begin(&call.provisional_meta()).unwrap();
    call.handle_input(Input::Answered(base)).unwrap();
    let mut now = base;
    while call.state() != CallState::Recording {
        now = drain(&mut call);
        call.handle_input(Input::Tick(now)).unwrap();
    }
    let _ = drain(&mut call);
    // 3.5 s of audio, then the process dies (no finalize, buffers lost).
    for (i, seq) in (0..175u32).zip(0u16..) {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&(i * 160).to_be_bytes());
        CodecKind::Pcmu.encode(&[3000; 160], &mut p);
        now += Duration::from_millis(20);
        call.handle_input(Input::Rtp(now, &p)).unwrap();
        let _ = drain(&mut call);
    }
    std::mem::forget(call);

    let recovered = spool.recover().unwrap();
    assert_eq!(recovered.len(), 1);
    let m = &recovered[0];
    assert_eq!(m.id, id);
    assert_eq!(m.caller, "+74951234567");
    assert_eq!(m.caller_name.as_deref(), Some("Ivan"));
    assert_eq!(m.end_reason, EndReason::Interrupted);
    assert!(m.duration_ms >= 2500 && m.duration_ms <= 3500, "at most the last second is lost: {} ms", m.duration_ms);
    let r = hound::WavReader::open(spool.wav_path(id)).unwrap();
    assert_eq!(u64::from(r.duration()) * 1000 / 8000, m.duration_ms);
    // The final metadata is in place and the provisional file is gone; recovering again is a no-op.
    assert!(spool.meta_path(id).exists());
    assert!(spool.recover().unwrap().is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}
