//! A real wideband softphone: baresip (Debian `baresip-core`, its `g722` and then its `opus`
//! module and no other codec) dials the endpoint and sends a 16 kHz (G.722) or 48 kHz (Opus)
//! WAV with a speech-like envelope (its `aufile` source) until it hangs up after 12 s. The answer
//! picks that codec; the message is a 16 kHz WAV whose envelope follows what baresip sent
//! (correlation of 20 ms RMS envelopes at least 0.9); and baresip's own recording of the call
//! (its `sndfile` module's dump of what it decoded) holds the greeting: it is not silent.

#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Proc, TestEndpoint, free_udp_port, media_port_block};
use voicemail_core::{CodecKind, EndReason};

const SOURCE_S: f64 = 20.0;

/// A sweep from 300 Hz to 6 kHz whose amplitude rises and falls like syllables (2.3 Hz and
/// 0.7 Hz), so its envelope is distinctive at every offset.
fn source(rate: u32) -> Vec<i16> {
    let n = (SOURCE_S * f64::from(rate)) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let phase = std::f64::consts::TAU * (300.0 * t + (6000.0 - 300.0) * t * t / (2.0 * SOURCE_S));
            let env = 0.15
                + 0.85
                    * (0.5 + 0.5 * (std::f64::consts::TAU * 2.3 * t).sin())
                    * (0.6 + 0.4 * (std::f64::consts::TAU * 0.7 * t).sin());
            (phase.sin() * env * 12_000.0) as i16
        })
        .collect()
}

/// RMS of consecutive 20 ms windows.
fn envelope(samples: &[i16], rate: u32) -> Vec<f64> {
    samples
        .chunks_exact(rate as usize / 50)
        .map(|w| (w.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / w.len() as f64).sqrt())
        .collect()
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        ab += (x - ma) * (y - mb);
        aa += (x - ma).powi(2);
        bb += (y - mb).powi(2);
    }
    ab / (aa * bb).sqrt().max(1e-9)
}

/// Writes `samples` to every one of `channels` channels.
fn write_wav(path: &Path, rate: u32, channels: u16, samples: &[i16]) {
    let spec =
        hound::WavSpec { channels, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for s in samples {
        (0..channels).for_each(|_| w.write_sample(*s).unwrap());
    }
    w.finalize().unwrap();
}

fn baresip_calls_with(module: &str, codec: CodecKind, source_rate: u32) {
    let Some(baresip) = common::tool("baresip", "baresip-core") else { return };
    let modules = Path::new("/usr/lib/baresip/modules");
    for m in [module, "aufile.so", "sndfile.so", "account.so", "menu.so"] {
        if !modules.join(m).is_file() {
            common::tool(&format!("baresip module {m}"), "baresip-core");
            return;
        }
    }
    let mut ep = TestEndpoint::start(&format!("baresip-{codec}"), "", "");
    let conf = common::temp_dir("baresip-wide-conf");
    let sent = source(source_rate);
    let source_wav = conf.path().join("source.wav");
    // baresip's Opus codec is opus/48000/2, and its `aufile` source plays only a file with the
    // codec's channel count.
    let channels = if codec == CodecKind::Opus { 2 } else { 1 };
    write_wav(&source_wav, source_rate, channels, &sent);
    let dumps = conf.path().join("dumps");
    std::fs::create_dir_all(&dumps).unwrap();
    let sip_port = free_udp_port();
    let rtp = media_port_block(64);
    std::fs::write(
        conf.path().join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{sip_port}\nmodule_path {}\nmodule {module}\nmodule aufile.so\n\
             module sndfile.so\nsnd_path {}\nmodule_app account.so\nmodule_app menu.so\n\
             audio_source aufile,{}\naudio_alert aufile,/dev/null\naudio_player aufile,/dev/null\n\
             rtp_ports {rtp}-{}\n",
            modules.display(),
            dumps.display(),
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
    assert_eq!((meta.codec, meta.end_reason), (codec, EndReason::HangUp), "the answer picks {codec}");
    assert_eq!(meta.caller, "alice");
    ep.assert_stored(&meta);
    let r = hound::WavReader::open(meta.wav_path.as_ref().unwrap()).unwrap();
    assert_eq!(r.spec().sample_rate, 16_000, "a 16 kHz recording");
    let rec: Vec<i16> = r.into_samples::<i16>().map(Result::unwrap).collect();
    let rec_s = rec.len() as f64 / 16_000.0;
    eprintln!("{codec}: recorded {rec_s:.3} s, {:?}", meta.media);
    assert!((4.0..=9.0).contains(&rec_s), "recording is {rec_s:.3} s");

    // The recording's envelope against the source's, at the best offset.
    let rec_env = envelope(&rec[3200..rec.len() - 3200], 16_000);
    let src_env = envelope(&sent, source_rate);
    let (best, corr) = (0..src_env.len().saturating_sub(rec_env.len()))
        .map(|lag| (lag, pearson(&rec_env, &src_env[lag..lag + rec_env.len()])))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    eprintln!("{codec}: envelope correlation {corr:.3} at {:.2} s into the source", best as f64 / 50.0);
    assert!(corr >= 0.9, "the recording does not follow what baresip sent (envelope correlation {corr:.3})");

    // baresip heard the greeting: its sndfile module dumps what it decoded to `dump-*-dec.wav`.
    let heard = std::fs::read_dir(&dumps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .unwrap_or_else(|| panic!("baresip dumped no received audio in {}", dumps.display()));
    let heard = hound::WavReader::open(&heard).unwrap_or_else(|e| panic!("{}: {e}", heard.display()));
    let heard_rate = heard.spec().sample_rate * u32::from(heard.spec().channels);
    let heard: Vec<i16> = heard.into_samples::<i16>().map(Result::unwrap).collect();
    let first_4s = &heard[..heard.len().min(4 * heard_rate as usize)]; // samples of all channels
    let rms = (first_4s.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / first_4s.len().max(1) as f64).sqrt();
    eprintln!("{codec}: baresip heard {} samples ({heard_rate} a second), rms {rms:.0} in the first 4 s", heard.len());
    assert!(rms > 300.0, "baresip's recording of the call is silent (rms {rms:.0})");
    ep.stop();
}

#[test]
fn baresip_g722_call_is_wideband() {
    baresip_calls_with("g722.so", CodecKind::G722, 16_000);
}

#[test]
fn baresip_opus_call_is_wideband() {
    baresip_calls_with("opus.so", CodecKind::Opus, 48_000);
}
