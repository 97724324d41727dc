//! SIPp offers of a single codec, G.722 only, Opus only and L16 only, are answered with that
//! codec (not 488) and recorded: SIPp plays 4 s of a chirp as RTP from a pcap file this test
//! writes (G.722 at 64 kbit/s, Opus in 20 ms packets, L16 big-endian), and the message is a WAV at
//! the codec's audio rate (16 kHz for G.722 and Opus, 8 kHz for L16) of about 4 s whose audio
//! follows the chirp (correlation over 0.9).

#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod common;

use std::time::Duration;

use common::{TestEndpoint, greeting_and_beep, run_sipp, scenario, write_pcap};
use voicemail_core::{Codec, CodecKind, EndReason};

const SECONDS: f64 = 4.0;

/// A chirp from 200 Hz to `top` Hz at `rate`.
fn chirp(rate: u32, top: f64) -> Vec<i16> {
    let n = (SECONDS * f64::from(rate)) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let phase = std::f64::consts::TAU * (200.0 * t + (top - 200.0) * t * t / (2.0 * SECONDS));
            (phase.sin() * 9000.0) as i16
        })
        .collect()
}

/// The RTP packets of `source` (at the codec's input rate) in 20 ms frames.
fn rtp_packets(codec: CodecKind, pt: u8, rate: u32, source: &[i16]) -> Vec<Vec<u8>> {
    let mut enc = codec.encoder(rate).unwrap();
    let frame = rate as usize / 50;
    let ticks = codec.clock_rate_hz() / 50;
    source
        .chunks_exact(frame)
        .enumerate()
        .map(|(i, pcm)| {
            let mut p = vec![0x80, pt | if i == 0 { 0x80 } else { 0 }];
            p.extend_from_slice(&(1000 + i as u16).to_be_bytes());
            p.extend_from_slice(&(7777 + ticks * i as u32).to_be_bytes());
            p.extend_from_slice(&0x0bad_cafeu32.to_be_bytes());
            enc.encode(pcm, &mut p);
            p
        })
        .collect()
}

fn correlation(a: &[i16], b: &[i16]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa * bb).sqrt().max(1.0)
}

fn offer_one_codec(codec: CodecKind, pt: u8, rtpmap: &str, rate: u32) {
    let Some(sipp) = common::tool("sipp", "sip-tester") else { return };
    let mut ep = TestEndpoint::start(&format!("only-{codec}"), "", "");
    let dir = ep.dir.path().join("sipp");
    std::fs::create_dir_all(&dir).unwrap();
    let source = chirp(rate, if rate == 16_000 { 6000.0 } else { 3000.0 });
    write_pcap(&dir.join("audio.pcap"), &rtp_packets(codec, pt, rate, &source));
    let xml = scenario(
        &dir,
        "uac_pcap",
        &[
            ("CALLER", "+74951234567".into()),
            ("PT", pt.to_string()),
            ("RTPMAP", rtpmap.into()),
            ("GREETING_MS", (greeting_and_beep().as_millis() + 20).to_string()),
            ("FILE", "audio.pcap".into()),
            ("STREAM_MS", ((SECONDS * 1000.0) as u64 + 200).to_string()),
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
    let ok = run.received().into_iter().find(|m| m.starts_with("SIP/2.0 200")).expect("a 200 OK");
    let line = format!("a=rtpmap:{pt} {}/{}", codec.name(), codec.clock_rate_hz());
    assert!(ok.contains(&format!("RTP/AVP {pt}")) && ok.contains(&line), "the answer is not {codec}:\n{ok}");

    let meta = ep.next_message(Duration::from_secs(10)).expect("a message for the call");
    assert_eq!((meta.codec, meta.end_reason), (codec, EndReason::HangUp));
    ep.assert_stored(&meta);
    let r = hound::WavReader::open(meta.wav_path.as_ref().unwrap()).unwrap();
    assert_eq!(r.spec().sample_rate, rate);
    let rec: Vec<i16> = r.into_samples::<i16>().map(Result::unwrap).collect();
    let secs = rec.len() as f64 / f64::from(rate);
    eprintln!("{codec}: recorded {secs:.3} s at {rate} Hz, {:?}", meta.media);
    assert!((3.8..=4.5).contains(&secs), "recording is {secs:.3} s");
    let r = rate as usize;
    let window = &rec[r..r + r / 4];
    let best = (0..source.len() - window.len())
        .map(|at| correlation(window, &source[at..at + window.len()]))
        .fold(f64::MIN, f64::max);
    assert!(best > 0.9, "{codec}: the recording does not follow the chirp (correlation {best:.3})");
    ep.stop();
}

#[test]
fn g722_only_offer_is_answered_with_g722() {
    offer_one_codec(CodecKind::G722, 9, "G722/8000", 16_000);
}

#[test]
fn opus_only_offer_is_answered_with_opus() {
    offer_one_codec(CodecKind::Opus, 111, "opus/48000/2", 16_000);
}

#[test]
fn l16_only_offer_is_answered_with_l16() {
    offer_one_codec(CodecKind::L16, 97, "L16/8000", 8000);
}
