//! The offline call behind `examples/offline_call.rs`: a simulated caller and clock drive the
//! whole pipeline (greeting, beep, RTP through the core with seeded impairments, recording,
//! spool, and — with a configuration — routing and delivery). Tests call [`run`] directly.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use voicemail_core::config::Config;
use voicemail_core::route::{Router, Routing};
use voicemail_core::spool::Spool;
use voicemail_core::{
    Call, CallConfig, CallState, Codec, CodecKind, Event, Input, MessageMeta, Output, Prompt, Recording,
};

/// Usage text.
pub const USAGE: &str = "usage: offline_call --input FILE --caller NUMBER [--name NAME] [--codec pcmu|pcma] \
[--hangup-at SECONDS] [--loss P] [--reorder P] [--duplicate P] [--seed N] [--out DIR] [--config FILE] [--at RFC3339]";

/// The command line of `offline_call`.
#[derive(Debug, Clone)]
pub struct Args {
    /// The caller's audio (any format the greeting decoder reads).
    pub input: PathBuf,
    /// The caller's number.
    pub caller: String,
    /// The caller's display name.
    pub name: Option<String>,
    /// The codec on the wire.
    pub codec: CodecKind,
    /// Hang up this many seconds after the answer (else at the end of the file).
    pub hangup_at: Option<f64>,
    /// Packet loss probability.
    pub loss: f64,
    /// Reordering probability.
    pub reorder: f64,
    /// Duplication probability.
    pub duplicate: f64,
    /// Seed of the simulated network.
    pub seed: u64,
    /// The spool directory (default: the config's spool, else `voicemail-data/spool`).
    pub out: Option<PathBuf>,
    /// A configuration file: greetings, calendar, limits and delivery.
    pub config: Option<PathBuf>,
    /// The simulated call's time (default: now).
    pub at: Option<jiff::Timestamp>,
}

impl Args {
    /// Arguments with defaults for `input` and `caller`.
    pub fn new(input: impl Into<PathBuf>, caller: impl Into<String>) -> Self {
        Self {
            input: input.into(),
            caller: caller.into(),
            name: None,
            codec: CodecKind::Pcmu,
            hangup_at: None,
            loss: 0.0,
            reorder: 0.0,
            duplicate: 0.0,
            seed: 1,
            out: None,
            config: None,
            at: None,
        }
    }

    /// Parses a command line (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut it = args.into_iter();
        let mut input = None;
        let mut caller = None;
        let mut a = Args::new("", "");
        fn prob(flag: &str, v: &str) -> Result<f64, String> {
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
                    Ok(s) if s.is_finite() && (0.0..=86_400.0).contains(&s) => a.hangup_at = Some(s),
                    _ => return Err(format!("--hangup-at takes seconds, not {value:?}")),
                },
                "--loss" => a.loss = prob(&flag, &value)?,
                "--reorder" => a.reorder = prob(&flag, &value)?,
                "--duplicate" => a.duplicate = prob(&flag, &value)?,
                "--seed" => a.seed = value.parse().map_err(|_| format!("--seed takes an integer, not {value:?}"))?,
                "--out" => a.out = Some(PathBuf::from(value)),
                "--config" => a.config = Some(PathBuf::from(value)),
                "--at" => {
                    a.at = Some(value.parse().map_err(|e| format!("--at takes an RFC 3339 time, not {value:?}: {e}"))?)
                }
                _ => return Err(format!("unknown option {flag}\n{USAGE}")),
            }
        }
        a.input = input.ok_or_else(|| format!("--input is required\n{USAGE}"))?;
        a.caller = caller.ok_or_else(|| format!("--caller is required\n{USAGE}"))?;
        Ok(a)
    }
}

/// What an offline call produced.
#[derive(Debug)]
pub struct Outcome {
    /// The message's metadata (also written to `<spool>/<id>.json`).
    pub meta: MessageMeta,
    /// Where it was queued, when a configuration was given.
    pub routing: Option<Routing>,
    /// Deliveries that failed on the first attempt (they stay queued and are retried).
    pub pending: Vec<String>,
}

/// A message id that sorts by time and does not collide within one spool: the time, then
/// bits from the process's random hasher keys (independent of `--seed`, which only shapes the
/// simulated network).
pub fn new_id(now: jiff::Timestamp) -> String {
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

/// Runs one offline call; errors are one-line messages.
pub fn run(a: &Args) -> Result<Outcome, String> {
    let input = Prompt::load(&a.input).map_err(|e| e.to_string())?;
    let config = match &a.config {
        Some(path) => Some(Config::load(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let started_at = a.at.unwrap_or_else(jiff::Timestamp::now);
    let spool_dir = match (&a.out, &config) {
        (Some(out), _) => out.clone(),
        (None, Some(c)) => c.spool.clone(),
        (None, None) => PathBuf::from("voicemail-data/spool"),
    };
    let spool = Spool::open(&spool_dir).map_err(|e| format!("cannot create {}: {e}", spool_dir.display()))?;
    let mut rng = SmallRng::seed_from_u64(a.seed);
    let id = new_id(started_at);
    let recording = Recording::create(&spool.wav_path(&id)).map_err(|e| e.to_string())?;

    let mut cfg = CallConfig::new(id.clone(), a.caller.clone(), started_at).with_codec(a.codec);
    cfg.caller_name = a.name.clone();
    cfg.rtp_seed = rng.random();
    let greeting = match &config {
        Some(c) => {
            c.recording.apply_to(&mut cfg).map_err(|e| e.to_string())?;
            cfg.called = c.number.clone().unwrap_or_default();
            let choice = c.greeting_at(started_at);
            c.prompt(&choice.name).cloned().ok_or_else(|| format!("greeting {:?} is not loaded", choice.name))?
        }
        None => {
            // A scripted caller talks as long as its file; silence must not cut it short.
            cfg.silence_timeout = None;
            Prompt::default_greeting()
        }
    };
    let base = Instant::now();
    let mut call = Call::new(cfg, greeting, recording, base).map_err(|e| e.to_string())?;
    spool.begin(&call.provisional_meta()).map_err(|e| format!("spool: {e}"))?;
    let meta = simulate(&mut call, &input, a, &mut rng, base)?;
    spool.finish(&meta).map_err(|e| format!("spool: {e}"))?;

    let (routing, pending) = match config {
        Some(c) => {
            let router = Router::from_config(c).map_err(|e| e.to_string())?;
            let routing = router.submit(&meta, jiff::Timestamp::now()).map_err(|e| e.to_string())?;
            let report = router.run_due(jiff::Timestamp::now());
            let pending = report.failed.iter().map(|f| format!("{f:?}")).collect();
            (Some(routing), pending)
        }
        None => (None, Vec::new()),
    };
    Ok(Outcome { meta, routing, pending })
}

/// Drives the call with the simulated caller until its message is recorded.
fn simulate(
    call: &mut Call,
    input: &Prompt,
    a: &Args,
    rng: &mut SmallRng,
    base: Instant,
) -> Result<MessageMeta, String> {
    let mut caller = Some(Caller::new(input.pcm(), a.codec, a, rng));
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
        let result = if hangup.is_some_and(|h| h <= now) {
            hangup = None;
            call.handle_input(Input::Hangup(now))
        } else if let Some((_, i)) = next_packet.filter(|&(t, _)| t <= now) {
            let c = caller.as_mut().ok_or("caller vanished")?;
            c.next += 1;
            let r = call.handle_input(Input::Rtp(now, &c.packets[i]));
            if c.next >= c.schedule.len() {
                caller = None;
            }
            r
        } else {
            call.handle_input(Input::Tick(now))
        };
        result.map_err(|e| e.to_string())?;
    }
}
