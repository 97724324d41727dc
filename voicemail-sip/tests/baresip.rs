//! A real softphone: baresip (Debian `baresip-core`) dials the endpoint on 127.0.0.1 and sends
//! a known 20 s frequency sweep from a WAV file (its `aufile` audio source) until it hangs up
//! after 12 s. The delivered message must hold what baresip sent after the beep: the recording
//! is aligned with the source by cross-correlation, and the difference is only G.711
//! quantisation noise (SNR above 20 dB); the caller's number is baresip's user name.

#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Proc, TestEndpoint, free_udp_port, greeting_and_beep, media_port_block};
use voicemail_core::{Codec, CodecKind, EndReason};

const RATE: f64 = 8000.0;
const SWEEP_S: f64 = 20.0;

/// A linear sweep from 300 Hz to 3000 Hz: never periodic, so alignment is unambiguous.
fn sweep() -> Vec<i16> {
    let (f0, f1) = (300.0, 3000.0);
    (0..(SWEEP_S * RATE) as usize)
        .map(|i| {
            let t = i as f64 / RATE;
            let phase = 2.0 * std::f64::consts::PI * (f0 * t + (f1 - f0) * t * t / (2.0 * SWEEP_S));
            (phase.sin() * 10000.0) as i16
        })
        .collect()
}

fn correlation(a: &[i16], b: &[i16]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa * bb).sqrt().max(1.0)
}

#[test]
fn baresip_call_is_recorded_as_sent() {
    let Some(baresip) = common::tool("baresip", "baresip-core") else { return };
    let modules = std::path::Path::new("/usr/lib/baresip/modules");
    for m in ["g711.so", "aufile.so", "account.so", "menu.so"] {
        if !modules.join(m).is_file() {
            common::tool(&format!("baresip module {m}"), "baresip-core");
            return;
        }
    }
    let mut ep = TestEndpoint::start("baresip", "", "");
    let conf = common::temp_dir("baresip-conf");
    let source = sweep();
    let source_wav = conf.path().join("sweep.wav");
    {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&source_wav, spec).unwrap();
        source.iter().for_each(|s| w.write_sample(*s).unwrap());
        w.finalize().unwrap();
    }
    let sip_port = free_udp_port();
    let rtp = media_port_block(64);
    std::fs::write(
        conf.path().join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{sip_port}\nmodule_path {}\nmodule g711.so\nmodule aufile.so\n\
             module_app account.so\nmodule_app menu.so\naudio_source aufile,{}\naudio_alert aufile,/dev/null\n\
             audio_player aufile,/dev/null\nrtp_ports {rtp}-{}\n",
            modules.display(),
            source_wav.display(),
            rtp + 63
        ),
    )
    .unwrap();
    std::fs::write(conf.path().join("accounts"), "<sip:alice@127.0.0.1>;regint=0\n").unwrap();
    std::fs::write(conf.path().join("contacts"), "").unwrap();
    let log = conf.path().join("baresip.log");
    let mut proc = Proc::spawn(
        "baresip",
        Command::new(baresip)
            .arg("-f")
            .arg(conf.path())
            .args(["-n", "127.0.0.1", "-t", "12", "-e"])
            .arg(format!("/dial sip:4951234500@{}", ep.addr))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null()),
    );
    let status = proc.wait(Duration::from_secs(40));
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.is_some(), "baresip did not exit:\n{out}");
    assert!(out.contains("Call established"), "baresip's call was not established:\n{out}");

    let meta = ep.next_message(Duration::from_secs(10)).expect("a message for the call");
    assert_eq!(meta.caller, "alice");
    assert_eq!(meta.called, "4951234500");
    assert_eq!(meta.end_reason, EndReason::HangUp);
    ep.assert_stored(&meta);
    let rec = common::read_recording(&meta);
    let rec_s = rec.len() as f64 / RATE;
    eprintln!("recorded {rec_s:.3} s, {:?}", meta.media);
    assert!((5.0..=8.5).contains(&rec_s), "recording is {rec_s:.3} s; baresip talked 12 s minus the greeting");

    // What the caller sent, through the same G.711 codec.
    let mut encoded = Vec::new();
    meta.codec.encode(&source, &mut encoded);
    let mut reference = Vec::new();
    meta.codec.decode(&encoded, &mut reference);
    assert!(matches!(meta.codec, CodecKind::Pcmu | CodecKind::Pcma));

    // Align a 0.25 s window from 1 s into the recording with the source.
    let win = &rec[8000..10000];
    let expected = (greeting_and_beep().as_secs_f64() * RATE) as usize + 8000;
    let (lo, hi) = (expected.saturating_sub(12000), (expected + 12000).min(reference.len() - win.len()));
    let (best, corr) = (lo..hi)
        .map(|at| (at, correlation(win, &reference[at..at + win.len()])))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    let offset = best as i64 - 8000;
    eprintln!(
        "recording starts at source offset {:.3} s (greeting+beep {:.3} s), correlation {corr:.4}",
        offset as f64 / RATE,
        greeting_and_beep().as_secs_f64()
    );
    assert!(corr > 0.95, "the recording does not match the sweep baresip sent (correlation {corr:.3})");

    // SNR over the whole recording (edges trimmed).
    let (mut signal, mut noise) = (0.0f64, 0.0f64);
    for (i, &r) in rec.iter().enumerate().skip(1600).take(rec.len().saturating_sub(3200)) {
        let Some(&s) = usize::try_from(offset + i as i64).ok().and_then(|j| reference.get(j)) else { continue };
        signal += (s as f64).powi(2);
        noise += (r as f64 - s as f64).powi(2);
    }
    let snr = 10.0 * (signal / noise.max(1.0)).log10();
    eprintln!("SNR {snr:.1} dB");
    assert!(snr > 20.0, "recording differs from what baresip sent: SNR {snr:.1} dB");
    ep.stop();
}
