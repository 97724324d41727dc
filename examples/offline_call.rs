//! An offline call: no network, no SIP — the whole voicemail pipeline driven by a simulated
//! caller and a simulated clock.
//!
//! The caller waits for the beep, then sends FILE (any format the greeting decoder reads) as
//! RTP through the core, with seeded loss, reordering and duplication, and hangs up at the end
//! of the file or at `--hangup-at` seconds after the answer. The message's WAV and JSON
//! metadata land in the spool directory; the metadata is printed as one JSON line.
//!
//! ```text
//! cargo run --release --example offline_call -- --input FILE --caller NUMBER [--name "Display Name"]
//!     [--codec pcmu|pcma] [--hangup-at SECONDS] [--loss P] [--reorder P] [--duplicate P]
//!     [--seed N] [--out DIR]
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use voicemail_core::{
    Call, CallConfig, CallState, Codec, CodecKind, Event, Input, MessageMeta, Output, Prompt, Recording,
};

const USAGE: &str = "usage: offline_call --input FILE --caller NUMBER [--name NAME] [--codec pcmu|pcma] \
[--hangup-at SECONDS] [--loss P] [--reorder P] [--duplicate P] [--seed N] [--out DIR]";

#[derive(Debug)]
struct Args {
    input: PathBuf,
    caller: String,
    name: Option<String>,
    codec: CodecKind,
    hangup_at: Option<f64>,
    loss: f64,
    reorder: f64,
    duplicate: f64,
    seed: u64,
    out: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut input = None;
    let mut caller = None;
    let mut a = Args {
        input: PathBuf::new(),
        caller: String::new(),
        name: None,
        codec: CodecKind::Pcmu,
        hangup_at: None,
        loss: 0.0,
        reorder: 0.0,
        duplicate: 0.0,
        seed: 1,
        out: PathBuf::from("voicemail-data/spool"),
    };
    fn prob(flag: &str, v: String) -> Result<f64, String> {
        match v.parse::<f64>() {
            Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
            _ => Err(format!("{flag} takes a probability between 0 and 1, not {v:?}")),
        }
    }
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.to_owned());
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--input" => input = Some(PathBuf::from(value)),
            "--caller" => caller = Some(value),
            "--name" => a.name = Some(value),
            "--codec" => match value.parse::<CodecKind>() {
                Ok(c @ (CodecKind::Pcmu | CodecKind::Pcma)) => a.codec = c,
                _ => return Err(format!("--codec takes pcmu or pcma, not {value:?}")),
            },
            "--hangup-at" => match value.parse::<f64>() {
                Ok(s) if s.is_finite() && s >= 0.0 => a.hangup_at = Some(s),
                _ => return Err(format!("--hangup-at takes seconds, not {value:?}")),
            },
            "--loss" => a.loss = prob(&flag, value)?,
            "--reorder" => a.reorder = prob(&flag, value)?,
            "--duplicate" => a.duplicate = prob(&flag, value)?,
            "--seed" => a.seed = value.parse().map_err(|_| format!("--seed takes an integer, not {value:?}"))?,
            "--out" => a.out = PathBuf::from(value),
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    a.input = input.ok_or_else(|| format!("--input is required\n{USAGE}"))?;
    a.caller = caller.ok_or_else(|| format!("--caller is required\n{USAGE}"))?;
    Ok(a)
}

/// A message id that sorts by time and does not collide within one spool: the time, then
/// bits from the process's random hasher keys (independent of `--seed`, which only shapes the
/// simulated network).
fn new_id(now: jiff::Timestamp) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i128(now.as_nanosecond());
    h.write_u32(std::process::id());
    format!("{}-{:08x}", now.strftime("%Y%m%dT%H%M%SZ"), h.finish() as u32)
}

/// The simulated caller: RTP packets of the input file, 20 ms each, sent after the beep.
struct Caller {
    packets: Vec<Vec<u8>>,
    /// Send offsets from the start of recording, after impairments, sorted by time.
    schedule: Vec<(Duration, usize)>,
    next: usize,
}

impl Caller {
    fn new(pcm: &[i16], codec: CodecKind, a: &Args, rng: &mut SmallRng) -> Self {
        let pt = codec.static_payload_type().unwrap_or(96);
        let ssrc: u32 = rng.random();
        let mut seq: u16 = rng.random();
        let mut ts: u32 = rng.random();
        let mut packets = Vec::new();
        for (i, chunk) in pcm.chunks(160).enumerate() {
            let mut p = Vec::with_capacity(12 + chunk.len());
            p.push(0x80);
            p.push(pt | if i == 0 { 0x80 } else { 0 });
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&ts.to_be_bytes());
            p.extend_from_slice(&ssrc.to_be_bytes());
            codec.encode(chunk, &mut p);
            packets.push(p);
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(chunk.len() as u32);
        }
        let frame = Duration::from_millis(20);
        let mut schedule = Vec::with_capacity(packets.len());
        for i in 0..packets.len() {
            if rng.random_bool(a.loss) {
                continue;
            }
            let mut at = frame * i as u32;
            if rng.random_bool(a.reorder) {
                at += frame + Duration::from_millis(5); // arrives after its successor
            }
            schedule.push((at, i));
            if rng.random_bool(a.duplicate) {
                schedule.push((at + Duration::from_millis(3), i));
            }
        }
        schedule.sort();
        Self { packets, schedule, next: 0 }
    }
}

fn run(a: &Args) -> Result<MessageMeta, String> {
    let input = Prompt::load(&a.input).map_err(|e| e.to_string())?;
    let mut rng = SmallRng::seed_from_u64(a.seed);
    std::fs::create_dir_all(&a.out).map_err(|e| format!("cannot create {}: {e}", a.out.display()))?;
    let started_at = jiff::Timestamp::now();
    let id = new_id(started_at);
    let wav = a.out.join(format!("{id}.wav"));
    let recording = Recording::create(&wav).map_err(|e| e.to_string())?;

    let mut cfg = CallConfig::new(id.clone(), a.caller.clone(), started_at).with_codec(a.codec);
    cfg.caller_name = a.name.clone();
    cfg.rtp_seed = rng.random();
    // A scripted caller talks as long as its file; silence must not cut it short.
    cfg.silence_timeout = None;
    let base = Instant::now();
    let mut call = Call::new(cfg, Prompt::default_greeting(), recording, base).map_err(|e| e.to_string())?;
    let caller = Caller::new(input.pcm(), a.codec, a, &mut rng);
    let mut caller = Some(caller);
    let file_len = Duration::from_nanos(input.samples() as u64 * 125_000);
    let mut hangup = a.hangup_at.map(|s| base + Duration::from_secs_f64(s));
    let mut recording_from: Option<Instant> = None;
    let mut now = base;
    call.handle_input(Input::Answered(now)).map_err(|e| e.to_string())?;
    loop {
        let deadline = loop {
            match call.poll_output() {
                Output::SendRtp(_) => {} // the caller hears the greeting and the beep
                Output::Event(Event::StateChanged(CallState::Recording)) => {
                    recording_from = Some(now);
                    if a.hangup_at.is_none() {
                        hangup = Some(now + file_len);
                    }
                }
                Output::Event(Event::MessageRecorded(meta)) => return Ok(*meta),
                Output::Event(_) => {}
                Output::Timeout(at) => break at,
            }
        };
        // The next thing to happen: the call's deadline, the caller's next packet, or hang-up.
        let next_packet = match (&caller, recording_from) {
            (Some(c), Some(from)) => c.schedule.get(c.next).map(|&(off, i)| (from + off, i)),
            _ => None,
        };
        let mut at = deadline;
        if let Some((t, _)) = next_packet {
            at = at.min(t);
        }
        if let Some(h) = hangup {
            at = at.min(h);
        }
        now = at.max(now);
        let input_result = if hangup.is_some_and(|h| h <= now) {
            hangup = None;
            call.handle_input(Input::Hangup(now))
        } else if let Some((t, i)) = next_packet.filter(|&(t, _)| t <= now) {
            let c = caller.as_mut().ok_or("caller vanished")?;
            c.next += 1;
            let _ = t;
            let r = call.handle_input(Input::Rtp(now, &c.packets[i]));
            if c.next >= c.schedule.len() {
                caller = None;
            }
            r
        } else {
            call.handle_input(Input::Tick(now))
        };
        input_result.map_err(|e| e.to_string())?;
    }
}

fn write_meta(meta: &MessageMeta, dir: &Path) -> Result<(), String> {
    let path = dir.join(format!("{}.json", meta.id));
    let json = serde_json::to_vec_pretty(meta).map_err(|e| e.to_string())?;
    std::fs::write(&path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("offline_call: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args).and_then(|meta| write_meta(&meta, &args.out).map(|()| meta)) {
        Ok(meta) => {
            println!("{}", meta.to_json_line());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("offline_call: {}", e.lines().next().unwrap_or("error"));
            ExitCode::from(2)
        }
    }
}
