//! Many calls at once: SIPp places 50 calls (25 per second, all 50 up together), each waits
//! for the greeting and the beep, streams 3 s of μ-law audio and hangs up. Every call must be
//! recorded completely: 50 delivered messages with distinct ids, each WAV 3 s long (±100 ms)
//! and holding the tone, each `<id>.json` in the spool.
//!
//! `VOICEMAIL_LOAD_CALLS=N` changes the number of calls (for measurements; see the report in
//! the issue). The endpoint's CPU time per call-minute is printed.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{TestEndpoint, greeting_and_beep, run_sipp_calls, scenario, write_g711_wav};
use voicemail_core::{CodecKind, EndReason};

/// CPU seconds (user + system) this process has used.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After the command name: state is field 0, utime 11, stime 12 (clock ticks, 100 Hz).
    (ticks(11) + ticks(12)) / 100.0
}

#[test]
fn fifty_concurrent_calls_are_all_recorded() {
    let Some(sipp) = common::tool("sipp", "sip-tester") else { return };
    let calls: u16 = std::env::var("VOICEMAIL_LOAD_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let stream_s = 3.0;
    let mut ep = TestEndpoint::start("load", &format!("max_calls = {}", calls as usize + 10), "");
    let dir = ep.dir.path().join("sipp");
    std::fs::create_dir_all(&dir).unwrap();
    write_g711_wav(&dir.join("tone.wav"), CodecKind::Pcmu, stream_s, 440.0);
    let xml = scenario(
        &dir,
        "uac_stream",
        &[
            ("CALLER", "+7495000[call_number]".into()),
            ("PT", "0".into()),
            ("CODEC", "PCMU".into()),
            ("GREETING_MS", (greeting_and_beep().as_millis() + 20).to_string()),
            ("FILE", "tone.wav".into()),
            ("STREAM_MS", "3000".into()),
        ],
    );
    let n = calls.to_string();
    let rate = (calls / 2).clamp(1, 25).to_string();
    let cpu_before = cpu_seconds();
    let run = run_sipp_calls(
        &sipp,
        &dir,
        &ep.target(),
        &["-sf", xml.to_str().unwrap(), "-s", "vm", "-m", &n, "-l", &n, "-r", &rate],
        Duration::from_secs(120),
        calls,
    );
    assert!(run.success(), "{}", run.describe());
    let metas = ep.messages(calls as usize, Duration::from_secs(30));
    let cpu = cpu_seconds() - cpu_before;
    assert_eq!(metas.len(), calls as usize, "messages delivered");
    let ids: BTreeSet<&str> = metas.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids.len(), metas.len(), "message ids must be unique");
    let callers: BTreeSet<&str> = metas.iter().map(|m| m.caller.as_str()).collect();
    assert_eq!(callers.len(), metas.len(), "every call's caller number is its own");
    let mut lengths = Vec::new();
    for meta in &metas {
        assert_eq!(meta.end_reason, EndReason::HangUp, "{}", meta.id);
        common::assert_spool_json(&ep.spool, meta);
        let samples = common::read_recording(meta);
        let ms = samples.len() as u64 / 8;
        lengths.push(ms);
        assert!((2900..=3100).contains(&ms), "{}: WAV is {ms} ms, expected 3000 ± 100 ({:?})", meta.id, meta.media);
        let f = common::dominant_frequency(&samples[2000..samples.len() - 2000]);
        assert!((430.0..=450.0).contains(&f), "{}: dominant frequency {f} Hz", meta.id);
    }
    let call_minutes = (greeting_and_beep().as_secs_f64() + stream_s) * f64::from(calls) / 60.0;
    lengths.sort_unstable();
    eprintln!(
        "{calls} calls: WAV ms min {} median {} max {}; endpoint+test CPU {cpu:.2} s = {:.3} CPU s per call-minute",
        lengths[0],
        lengths[lengths.len() / 2],
        lengths[lengths.len() - 1],
        cpu / call_minutes
    );
    ep.stop();
}
