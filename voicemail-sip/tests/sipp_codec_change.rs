//! A re-INVITE that changes the codec mid-stream is followed: SIPp calls in PCMU, and after the
//! greeting plays a pcap whose RTP stream (one SSRC, one sequence) is 3 s of a 440 Hz tone in
//! PCMU, then 3 s of a 1 kHz tone in the new codec; 1 s into it (before the switch in the file)
//! it re-INVITEs offering only the new codec, and the answer names it (no 488 any more). The
//! message, recorded at the call's first rate (8 kHz), is whole: 6 s long, the 440 Hz tone in
//! its first half (PCMU packets still arriving after the change are decoded as PCMU), the 1 kHz
//! tone in its second (PCMA; G.722 decimated to 8 kHz), and its codec is the new one.

#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod common;

use std::time::Duration;

use common::{TestEndpoint, greeting_and_beep, run_sipp, scenario, write_pcap};
use voicemail_core::{Codec, CodecKind, EndReason};

const SECONDS: usize = 3;

fn sine(freq: f64, rate: u32, n: usize) -> Vec<i16> {
    (0..n).map(|i| ((i as f64 * freq * std::f64::consts::TAU / f64::from(rate)).sin() * 9000.0) as i16).collect()
}

/// 20 ms RTP packets: `SECONDS` of 440 Hz in PCMU, then `SECONDS` of 1 kHz in `codec`.
fn stream(codec: CodecKind, pt: u8) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    let (mut seq, mut ts) = (4000u16, 160_000u32);
    for (codec, pt, freq) in [(CodecKind::Pcmu, 0u8, 440.0), (codec, pt, 1000.0)] {
        let rate = codec.sample_rate_hz();
        let mut enc = codec.encoder(rate).unwrap();
        for (i, frame) in sine(freq, rate, rate as usize * SECONDS).chunks_exact(rate as usize / 50).enumerate() {
            let mut p = vec![0x80, pt | if i == 0 { 0x80 } else { 0 }];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&ts.to_be_bytes());
            p.extend_from_slice(&0x5eed_cafeu32.to_be_bytes());
            enc.encode(frame, &mut p);
            packets.push(p);
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(160);
        }
    }
    packets
}

fn change_codec(codec: CodecKind, pt: u8, rtpmap: &str) {
    let Some(sipp) = common::tool("sipp", "sip-tester") else { return };
    let mut ep = TestEndpoint::start(&format!("reinvite-{codec}"), "", "");
    let dir = ep.dir.path().join("sipp");
    std::fs::create_dir_all(&dir).unwrap();
    write_pcap(&dir.join("audio.pcap"), &stream(codec, pt));
    let xml = scenario(
        &dir,
        "uac_codec_change",
        &[
            ("CALLER", "+74951239999".into()),
            ("GREETING_MS", (greeting_and_beep().as_millis() + 20).to_string()),
            ("FILE", "audio.pcap".into()),
            ("REINVITE_MS", "1000".into()),
            ("PT", pt.to_string()),
            ("RTPMAP", rtpmap.into()),
            ("REST_MS", ((2 * SECONDS as u64 - 1) * 1000 + 200).to_string()),
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
    let answer = run.received().into_iter().find(|m| m.starts_with("SIP/2.0 200") && m.contains("2 INVITE")).unwrap();
    assert!(answer.contains("m=audio ") && answer.contains(&format!("RTP/AVP {pt}")), "{answer}");

    let meta = ep.next_message(Duration::from_secs(10)).expect("a message for the call");
    assert_eq!((meta.codec, meta.end_reason), (codec, EndReason::HangUp));
    ep.assert_stored(&meta);
    let (rate, rec) = common::read_wav(&meta);
    assert_eq!(rate, 8000, "the recording keeps the rate the call started with");
    let secs = rec.len() as f64 / 8000.0;
    eprintln!("{codec}: recorded {secs:.3} s, {:?}", meta.media);
    assert!((5.8..=6.3).contains(&secs), "the recording is {secs:.3} s, expected 6");
    let before = &rec[4000..20_000];
    let after = &rec[28_000..44_000];
    let f = common::dominant_frequency_at(before, 8000);
    assert!((430.0..=450.0).contains(&f), "before the change: {f} Hz");
    let f = common::dominant_frequency_at(after, 8000);
    assert!((990.0..=1010.0).contains(&f), "after the change: {f} Hz");
    assert!(common::rms(before) > 3000.0 && common::rms(after) > 3000.0);
    assert_eq!(meta.media.unknown_payload_type, 0, "every packet was decoded with its codec");
    ep.stop();
}

#[test]
fn a_reinvite_from_pcmu_to_pcma_is_followed() {
    change_codec(CodecKind::Pcma, 8, "PCMA/8000");
}

#[test]
fn a_reinvite_from_pcmu_to_g722_is_followed() {
    change_codec(CodecKind::G722, 9, "G722/8000");
}
