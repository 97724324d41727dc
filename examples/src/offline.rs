//! The offline call behind `examples/offline_call.rs`: a simulated caller and clock drive the
//! whole pipeline through the [`Mailbox`]: the mailbox starts the call (id, greeting from the
//! calendar, recording in the spool), the caller's RTP goes through the core with seeded
//! impairments, the mailbox stores the message and, when the configuration has delivery
//! targets, delivers it. Tests call [`run`] directly.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use voicemail_core::config::DeliveryConfig;
use voicemail_core::mailbox::RunReport;
use voicemail_core::store::StoredMessage;
use voicemail_core::{
    Call, CallSetup, CallState, Codec, CodecKind, Event, Input, Mailbox, MessageMeta, Output, Prompt, StartedCall,
};

use crate::config::{Load, load};

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
    /// The spool directory (default: the config's spool, else `./voicemail-data/spool`).
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
    /// The stored message's metadata (its WAV is `wav_path`, in the spool).
    pub meta: MessageMeta,
    /// The message as the mailbox holds it after the delivery attempt: follow-up state,
    /// history and one entry per delivery target.
    pub stored: StoredMessage,
    /// What the delivery attempt did; `None` without delivery targets.
    pub delivery: Option<RunReport>,
}

impl Outcome {
    /// Deliveries of this message that are not acknowledged yet (`target: state, last error`):
    /// they stay queued in the spool (see `inbox status` and `inbox deliver`).
    pub fn pending(&self) -> Vec<String> {
        self.stored
            .deliveries
            .iter()
            .filter(|d| d.state != voicemail_core::store::DeliveryState::Delivered)
            .map(|d| format!("{}: {} ({})", d.target, d.state.as_str(), d.last_error.as_deref().unwrap_or("not tried")))
            .collect()
    }
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
///
/// The mailbox is `--config`'s (its spool replaced by `--out` when given), else the embedded
/// defaults (spool `./voicemail-data/spool`, or `--out`) with no silence timeout (a scripted
/// caller must not be cut short by its own pauses) and no delivery target.
pub fn run(a: &Args) -> Result<Outcome, String> {
    let input = Prompt::load(&a.input).map_err(|e| e.to_string())?;
    let mut config = load(a.config.as_deref(), Load::Everything)?;
    if a.config.is_none() {
        config.recording.silence_timeout = None;
        config.delivery = DeliveryConfig::default();
    }
    if let Some(out) = &a.out {
        config.spool = out.clone();
    }
    let mailbox = Mailbox::open(config).map_err(|e| e.to_string())?;
    let started_at = a.at.unwrap_or_else(jiff::Timestamp::now);
    let mut rng = SmallRng::seed_from_u64(a.seed);
    let mut setup = CallSetup::new(a.caller.clone(), started_at).with_codec(a.codec);
    setup.recorded_by = "offline_call".to_owned();
    setup.caller_name = a.name.clone();
    setup.rtp_seed = Some(rng.random());
    let base = Instant::now();
    let StartedCall { mut call, lease } = mailbox.start_call(setup, base).map_err(|e| e.to_string())?;
    let meta = simulate(&mut call, &input, a, &mut rng, base)?;
    drop(call);
    let meta = mailbox.finish_call(lease, meta, jiff::Timestamp::now()).map_err(|e| e.to_string())?;
    let delivery = if mailbox.targets().is_empty() {
        None
    } else {
        Some(mailbox.deliver_all_due(jiff::Timestamp::now()).map_err(|e| e.to_string())?)
    };
    let stored = mailbox.show(&meta.id).map_err(|e| e.to_string())?;
    Ok(Outcome { meta, stored, delivery })
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
