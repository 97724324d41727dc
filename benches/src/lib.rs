//! Criterion benchmarks for voicemail (see `benches/`), and the simulated call they share.

use std::io::{Cursor, Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use voicemail_core::{
    Call, CallConfig, CallState, Codec, CodecKind, Event, Input, MessageMeta, Output, Prompt, Recording,
};

/// RTP packets of `seconds` of a caller's audio (PCMU, 20 ms), built once.
pub fn caller_packets(seconds: u32) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for i in 0..seconds * 50 {
        let pcm: Vec<i16> = (0..160).map(|k| (((i * 160 + k) as f32 * 0.07).sin() * 6000.0) as i16).collect();
        let mut p = vec![0x80, 0];
        p.extend_from_slice(&(i as u16).to_be_bytes());
        p.extend_from_slice(&(i * 160).to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        CodecKind::Pcmu.encode(&pcm, &mut p);
        out.push(p);
    }
    out
}

/// One whole call through the core with a simulated clock: answer, the greeting and beep sent
/// as RTP, the caller's packets recorded into an in-memory WAV, hang-up. Returns the message
/// and the call's length in simulated time.
pub fn offline_call(greeting: &Prompt, packets: &[Vec<u8>]) -> (MessageMeta, Duration) {
    let base = Instant::now();
    let rec = Recording::new(Cursor::new(Vec::with_capacity(44 + packets.len() * 320))).expect("in-memory WAV");
    let mut cfg = CallConfig::new(
        voicemail_core::MessageId::parse("bench").expect("an id"),
        "+74951234567",
        jiff::Timestamp::UNIX_EPOCH,
    );
    cfg.silence_timeout = None;
    let mut call = Call::new(cfg, greeting.clone(), rec, base).expect("valid config");
    drive(&mut call, packets, base)
}

/// Drives a new call with a simulated clock from `base`: answer, the greeting and beep sent
/// as RTP, `packets` from the caller once it records, hang-up. Returns the message and the
/// call's length in simulated time.
pub fn drive(call: &mut Call, packets: &[Vec<u8>], base: Instant) -> (MessageMeta, Duration) {
    let mut now = base;
    call.handle_input(Input::Answered(now)).expect("answer");
    let mut recording_at = None;
    let mut next = 0;
    loop {
        let deadline = loop {
            match call.poll_output() {
                Output::SendRtp(p) => {
                    std::hint::black_box(&p);
                }
                Output::Event(Event::StateChanged(CallState::Recording)) => recording_at = Some(now),
                Output::Event(Event::MessageRecorded(m)) => return (*m, now - base),
                Output::Event(_) => {}
                Output::Timeout(t) => break t,
            }
        };
        match recording_at {
            Some(start) if next < packets.len() => {
                now = start + Duration::from_millis(20 * next as u64);
                call.handle_input(Input::Rtp(now, &packets[next])).expect("rtp");
                next += 1;
            }
            Some(_) => {
                now += Duration::from_millis(20);
                call.handle_input(Input::Hangup(now)).expect("hangup");
            }
            None => {
                now = deadline;
                call.handle_input(Input::Tick(now)).expect("tick");
            }
        }
    }
}

/// The value of environment variable `name` as a number, or `default`.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The CPU seconds (user + system) of a `/proc/.../stat` line, given the part after the
/// process name's closing parenthesis.
pub fn stat_cpu_seconds(after_name: &str) -> f64 {
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state is field 0, utime 11, stime 12 (clock ticks, 100 Hz).
    let ticks: u64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<u64>().ok()).sum();
    ticks as f64 / 100.0
}

/// A recording sink that accepts writes without keeping them (a stand-in for a file
/// descriptor), for benches that hold many calls at once.
pub struct Discard(pub u64);

impl Write for Discard {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Seek for Discard {
    fn seek(&mut self, _: SeekFrom) -> std::io::Result<u64> {
        Ok(self.0)
    }
}
