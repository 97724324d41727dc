//! Memory per call: resident memory growth while 2,000 calls are in the middle of recording
//! at once (each with its jitter buffer, decode buffer and WAV writer into a file-like sink),
//! beyond the shared greeting cache. Linux only (reads /proc/self/statm).
use std::time::{Duration, Instant};

use voicemail_benches::Discard;
use voicemail_core::{Call, CallConfig, CallState, Input, Output, Prompt, Recording};

fn rss_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    pages * 4
}

fn main() {
    let n = 2000;
    let greeting = Prompt::default_greeting();
    let packets = voicemail_benches::caller_packets(1);
    let before = rss_kb();
    let base = Instant::now();
    let mut calls = Vec::with_capacity(n);
    for i in 0..n {
        let cfg = CallConfig::new(
            voicemail_core::MessageId::parse(&format!("m{i}")).expect("an id"),
            "+74951234567",
            jiff::Timestamp::UNIX_EPOCH,
        );
        let rec = Recording::new(Discard(0)).expect("sink");
        let mut call = Call::new(cfg, greeting.clone(), rec, base).expect("config");
        call.handle_input(Input::Answered(base)).expect("answer");
        // Skip ahead to the recording and feed a second of audio.
        let mut now = base;
        while call.state() != CallState::Recording {
            let t = loop {
                if let Output::Timeout(t) = call.poll_output() {
                    break t;
                }
            };
            now = t;
            call.handle_input(Input::Tick(now)).expect("tick");
        }
        for (k, p) in packets.iter().enumerate() {
            call.handle_input(Input::Rtp(now + Duration::from_millis(20 * k as u64), p)).expect("rtp");
            while !matches!(call.poll_output(), Output::Timeout(_)) {}
        }
        calls.push(call);
    }
    let after = rss_kb();
    let per_call = (after.saturating_sub(before)) as f64 / n as f64;
    println!("memory: {n} calls recording at once: {per_call:.1} kB resident per call (target <= 64 kB)");
    drop(calls);
}
