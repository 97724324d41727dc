//! Many calls at once: SIPp places 50 calls (25 per second, all 50 up together), each waits
//! for the greeting and the beep, streams 3 s of μ-law audio and hangs up. Every call must be
//! recorded completely: 50 delivered messages with distinct ids, each WAV holding every packet
//! received (3 s of tone, one packet more or less), nothing lost or inserted between them, and
//! each stored by the mailbox as it was handed to the application.
//!
//! The same again with the calls sharing one RTP port per media thread (`shared_rtp_ports`):
//! every call's packets must reach its own recording. SIPp's `rtp_stream` sends every call's
//! RTP from one port, whatever the SDP says (so on a shared port only SSRCs would tell the
//! calls apart, and nothing says which SSRC is whose); these calls play a pcap file instead,
//! which SIPp sends from each call's own SDP port.
//!
//! The calls must really overlap: the peak of calls in progress (sampled every 20 ms) must
//! reach the number of calls.
//!
//! For measurements `VOICEMAIL_LOAD_CALLS=N` changes the number of calls and
//! `VOICEMAIL_LOAD_RATE=R` the call rate (calls per second; it must be at least N / 8 for all
//! N calls to overlap); the endpoint's CPU time per call-minute is printed.

#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{TestEndpoint, greeting_and_beep, run_sipp_calls, scenario, write_g711_wav, write_pcap};
use voicemail_core::{Codec, CodecKind, EndReason};

/// CPU seconds (user + system) this process has used.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After the command name: state is field 0, utime 11, stime 12 (clock ticks, 100 Hz).
    (ticks(11) + ticks(12)) / 100.0
}

/// The kernel's count of UDP datagrams dropped for a full receive buffer (all sockets).
fn udp_rcvbuf_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else { return 0 };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// `seconds` of a μ-law tone at `freq` Hz as RTP packets of 20 ms.
fn tone_packets(seconds: f64, freq: f64) -> Vec<Vec<u8>> {
    let mut enc = CodecKind::Pcmu.encoder(8000).unwrap();
    let pcm: Vec<i16> = (0..(seconds * 8000.0) as usize)
        .map(|i| ((std::f64::consts::TAU * freq * i as f64 / 8000.0).sin() * 9000.0) as i16)
        .collect();
    pcm.chunks_exact(160)
        .enumerate()
        .map(|(i, frame)| {
            let mut p = vec![0x80, 0];
            p.extend_from_slice(&(i as u16).to_be_bytes());
            p.extend_from_slice(&(160 * i as u32).to_be_bytes());
            p.extend_from_slice(&0x5eed_0001u32.to_be_bytes());
            enc.encode(frame, &mut p);
            p
        })
        .collect()
}

#[test]
fn fifty_concurrent_calls_are_all_recorded() {
    load("load", 0);
}

#[test]
fn fifty_concurrent_calls_on_shared_rtp_ports_are_all_recorded() {
    load("load-shared", 1);
}

/// SIPp's calls to an endpoint with `shared` RTP ports per media thread (0: a port per call).
fn load(tag: &str, shared: usize) {
    let Some(sipp) = common::tool("sipp", "sip-tester") else { return };
    let calls: u16 = std::env::var("VOICEMAIL_LOAD_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let stream_s = 3.0;
    // No per-source INVITE rate limit: every call comes from SIPp's one address.
    let sip = format!("max_calls = {}\ninvite_rate = 0\nshared_rtp_ports = {shared}", calls as usize + 10);
    let mut ep = TestEndpoint::start(tag, &sip, "");
    let dir = ep.dir.path().join("sipp");
    std::fs::create_dir_all(&dir).unwrap();
    let mut vars = vec![
        ("CALLER", "+7495000[call_number]".to_owned()),
        ("PT", "0".into()),
        // A quarter second after the beep: a call set up under load starts its greeting late,
        // and what the caller sends before the beep is not recorded (but counted as received).
        ("GREETING_MS", (greeting_and_beep().as_millis() + 250).to_string()),
        ("STREAM_MS", "3000".into()),
    ];
    let xml = if shared == 0 {
        write_g711_wav(&dir.join("tone.wav"), CodecKind::Pcmu, stream_s, 440.0);
        vars.extend([("CODEC", "PCMU".into()), ("FILE", "tone.wav".into())]);
        scenario(&dir, "uac_stream", &vars)
    } else {
        write_pcap(&dir.join("tone.pcap"), &tone_packets(stream_s, 440.0));
        vars.extend([("RTPMAP", "PCMU/8000".into()), ("FILE", "tone.pcap".into())]);
        scenario(&dir, "uac_pcap", &vars)
    };
    let n = calls.to_string();
    let rate: u16 = std::env::var("VOICEMAIL_LOAD_RATE").ok().and_then(|v| v.parse().ok()).unwrap_or(25);
    let rate = rate.to_string();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let handle = ep.handle.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(handle.active_calls());
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    let cpu_before = cpu_seconds();
    let drops_before = udp_rcvbuf_errors();
    let run = run_sipp_calls(
        &sipp,
        &dir,
        &ep.target(),
        &["-sf", xml.to_str().unwrap(), "-s", "vm", "-m", &n, "-l", &n, "-r", &rate],
        Duration::from_secs(120 + u64::from(calls) / 5),
        calls,
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    assert!(run.success(), "{}", run.describe());
    let metas = ep.messages(calls as usize, Duration::from_secs(30));
    let cpu = cpu_seconds() - cpu_before;
    // The measurement first, so that a run that fails its checks still reports it.
    let call_minutes = (greeting_and_beep().as_secs_f64() + stream_s) * f64::from(calls) / 60.0;
    eprintln!(
        "{calls} calls (peak {peak} at once): endpoint+test CPU {cpu:.2} s = {:.3} CPU s per call-minute",
        cpu / call_minutes
    );
    assert_eq!(peak, usize::from(calls), "the calls did not all overlap (peak {peak} in progress)");
    assert_eq!(metas.len(), calls as usize, "messages delivered");
    let ids: BTreeSet<&str> = metas.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids.len(), metas.len(), "message ids must be unique");
    let callers: BTreeSet<&str> = metas.iter().map(|m| m.caller.as_str()).collect();
    assert_eq!(callers.len(), metas.len(), "every call's caller number is its own");
    let mut lengths = Vec::new();
    let mut leads = Vec::new();
    let mut failures = Vec::new();
    for meta in &metas {
        assert_eq!(meta.end_reason, EndReason::HangUp, "{}", meta.id);
        ep.assert_stored(meta);
        let samples = common::read_recording(meta);
        let ms = samples.len() as u64 / 8;
        lengths.push(ms);
        if meta.media.lost > 0 {
            failures.push(format!("{}: {} packets lost ({:?})", meta.id, meta.media.lost, meta.media));
            continue;
        }
        // Complete: every packet received is in the WAV, one after the other (the 3 s SIPp
        // streams, a packet more or less), whatever the silence around them.
        let (lead, span, _) =
            match common::check_tone_recording(&samples, 8000, meta.media.packets_received, 20, 2900..=3100) {
                Ok(found) => found,
                Err(e) => {
                    failures.push(format!("{}: {e} ({:?})", meta.id, meta.media));
                    continue;
                }
            };
        leads.push(lead);
        let (lead, span) = (lead as usize * 8, span as usize * 8);
        let f = common::dominant_frequency(&samples[lead + 800..lead + span - 800]);
        if !(430.0..=450.0).contains(&f) {
            failures.push(format!("{}: dominant frequency {f} Hz", meta.id));
        }
    }
    lengths.sort_unstable();
    leads.sort_unstable();
    let packets: u64 = metas.iter().map(|m| m.media.packets_received).sum();
    let lost: u64 = metas.iter().map(|m| m.media.lost).sum();
    let kernel_drops = udp_rcvbuf_errors() - drops_before;
    eprintln!(
        "{calls} calls: {} of them recorded completely; {packets} RTP packets received in all, {lost} lost \
         (the kernel dropped {kernel_drops} UDP datagrams for full receive buffers)",
        metas.len() - failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} incomplete recordings, e.g.:\n{}",
        failures.len(),
        failures[..failures.len().min(5)].join("\n")
    );
    eprintln!("WAV ms min {} median {} max {}", lengths[0], lengths[lengths.len() / 2], lengths[lengths.len() - 1]);
    eprintln!(
        "silence before the tone, ms: min {} median {} max {}",
        leads[0],
        leads[leads.len() / 2],
        leads[leads.len() - 1]
    );
    ep.stop();
}
