//! A late offer (RFC 3261 §13.2.1): SIPp sends an INVITE without SDP, finds our offer in the
//! 200 OK (it lists PCMU among our codecs), answers PCMU in the ACK, waits for the greeting
//! and the beep, streams 5 s of a 440 Hz μ-law tone and hangs up. The call is recorded like
//! any other: a message from the caller, in PCMU, whose WAV holds every packet of the tone.
//! The recording is at the rate of our first codec (the codec is not known before the ACK):
//! 16 kHz with the default `[media] codecs`.

#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod common;

use std::time::Duration;

use common::{TestEndpoint, greeting_and_beep, run_sipp, scenario, write_g711_wav};
use voicemail_core::{CodecKind, EndReason};

#[test]
fn a_late_offer_call_is_recorded_like_any_other() {
    let Some(sipp) = common::tool("sipp", "sip-tester") else { return };
    let mut ep = TestEndpoint::start("late-offer", "", "");
    let dir = ep.dir.path().join("sipp");
    std::fs::create_dir_all(&dir).unwrap();
    write_g711_wav(&dir.join("tone.wav"), CodecKind::Pcmu, 5.0, 440.0);
    let xml = scenario(
        &dir,
        "uac_late_offer",
        &[
            ("CALLER", "+74951230000".into()),
            ("GREETING_MS", (greeting_and_beep().as_millis() + 250).to_string()),
            ("FILE", "tone.wav".into()),
            ("STREAM_MS", "5000".into()),
        ],
    );
    let run = run_sipp(
        &sipp,
        &dir,
        &ep.target(),
        &["-sf", xml.to_str().unwrap(), "-s", "4951234500", "-m", "1", "-trace_msg"],
        Duration::from_secs(60),
    );
    assert!(run.success(), "{}", run.describe());
    let ok = run.received().into_iter().find(|m| m.starts_with("SIP/2.0 200") && m.contains("INVITE")).unwrap();
    assert!(ok.contains("m=audio ") && ok.contains("a=sendrecv"), "the 200 OK carries our offer:\n{ok}");

    let meta = ep.next_message(Duration::from_secs(10)).expect("a message for the late-offer call");
    assert_eq!(meta.caller, "+74951230000");
    assert_eq!(meta.caller_name.as_deref(), Some("Late Offer"));
    assert_eq!((meta.codec, meta.end_reason), (CodecKind::Pcmu, EndReason::HangUp));
    ep.assert_stored(&meta);
    let (rate, samples) = common::read_wav(&meta);
    assert_eq!(rate, 16_000, "the rate of our first codec (opus at 16 kHz)");
    let ms = samples.len() as u64 * 1000 / u64::from(rate);
    let (lead, tone, tail) = common::check_message_tone(&meta, 4900..=5100).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("recorded {ms} ms at {rate} Hz: {lead} ms of silence, {tone} ms of tone, {tail} ms of silence");
    assert_eq!(meta.duration_ms, ms);
    let r = rate as usize;
    let middle = &samples[r..4 * r];
    let f = common::dominant_frequency_at(middle, rate);
    assert!((430.0..=450.0).contains(&f), "dominant frequency {f} Hz, expected 440");
    assert!(common::rms(middle) > 3000.0, "the recording is too quiet: rms {}", common::rms(middle));
    ep.stop();
}
