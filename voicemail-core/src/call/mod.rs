//! The call state machine: Ringing → Answered → Greeting → Beep → Recording → Ended.
//!
//! A [`Call`] is driven with [`Call::handle_input`] and drained with [`Call::poll_output`]
//! (the str0m/quinn-proto pattern). It owns no socket, no thread and no clock: every input
//! carries its `Instant`, and the call only ever compares instants it was given.
//!
//! ```no_run
//! # use std::time::Instant;
//! # use voicemail_core::{Call, CallConfig, Input, MessageId, Output, Prompt, Recording};
//! # fn main() -> voicemail_core::Result<()> {
//! let now = Instant::now(); // the adapter's clock, never the core's
//! let id = MessageId::parse("msg-1")?;
//! let cfg = CallConfig::new(id, "+74951234567", jiff::Timestamp::UNIX_EPOCH);
//! let recording = Recording::new(std::io::Cursor::new(Vec::new()))?;
//! let mut call = Call::new(cfg, Prompt::default_greeting(), recording, now)?;
//! call.handle_input(Input::Answered(now))?;
//! loop {
//!     match call.poll_output() {
//!         Output::SendRtp(packet) => { /* socket.send(&packet.to_vec()) */ }
//!         Output::Event(event) => { /* log, persist MessageRecorded */ }
//!         Output::Timeout(at) => { /* wait for `at` or a datagram, then handle_input */ break; }
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Every call yields exactly one [`Event::MessageRecorded`], however it ends: a hang-up during
//! the greeting, or even before the answer, still produces a message with a valid zero-length
//! WAV.
//!
//! The codec may change during the call ([`Input::Codec`]: a re-INVITE, or the answer of a
//! late offer): the recording keeps its rate, and the audio of a codec at another rate is
//! resampled to it by a small deterministic polyphase resampler (Opus decodes at the
//! recording's rate directly). Audio that still arrives in the previous codec is decoded
//! with it; at the switch, the recording follows the wall clock rather than the RTP
//! timestamps, which a sender may restart.

pub mod resample;

use std::collections::VecDeque;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::codec::{Codec, CodecKind, Decoder};
use crate::error::{Error, Result};
use crate::greeting::{Prompt, PromptMedia};
pub use crate::io::CallState;
use crate::io::{CodecChange, Event, Input, Output, RtpOut};
use crate::jitter::{Frame, JitterBuffer, JitterConfig};
use crate::message::{EndReason, MediaStats, MessageId, MessageMeta};
use crate::recording::{Recording, RecordingError};
use crate::rtp::dtmf::{DtmfDetector, DtmfDigit};
use crate::rtp::{Packetizer, RtpPacket};

/// The comfort-noise payload type (RFC 3389); carries no audio worth recording.
const PT_CN: u8 = 13;
/// The most silence added after the last frame at a hang-up (covers lost final packets).
const TAIL_CAP: Duration = Duration::from_millis(60);
/// The most audio concealed by the codec for lost packets; a longer gap is silence after it.
const CONCEAL_CAP: Duration = Duration::from_millis(120);
/// How long after the last expected deadline an ended call's timeout lies.
const IDLE: Duration = Duration::from_secs(24 * 3600);

/// Everything a call needs to know. Build with [`CallConfig::new`] and adjust the fields.
#[derive(Debug, Clone)]
pub struct CallConfig {
    /// The message id.
    pub id: MessageId,
    /// The caller's number.
    pub caller: String,
    /// The caller's display name.
    pub caller_name: Option<String>,
    /// The called number (mailbox).
    pub called: String,
    /// Wall-clock time of the call (UTC), recorded in the metadata.
    pub started_at: jiff::Timestamp,
    /// The negotiated audio codec.
    pub codec: CodecKind,
    /// The payload type of the audio codec (its static type by default; L16 and Opus need one).
    pub payload_type: u8,
    /// The audio rate of an Opus call in Hz: 8000, 16000 (the default) or 48000. The
    /// recording is made at this rate; other codecs have a fixed rate (see
    /// [`CallConfig::sample_rate_hz`]).
    pub opus_sample_rate_hz: u32,
    /// The negotiated telephone-event payload type (RFC 4733), if any.
    pub dtmf_payload_type: Option<u8>,
    /// Packetization time of the greeting and beep (10 to 120 ms).
    pub ptime: Duration,
    /// The key that ends the recording (and skips the greeting); `None` disables it.
    pub finish_key: Option<DtmfDigit>,
    /// The longest recording.
    pub max_length: Duration,
    /// End the recording after this much continuous silence; `None` disables it.
    pub silence_timeout: Option<Duration>,
    /// Peak amplitude below which a frame counts as silence.
    pub silence_threshold: i16,
    /// End the call when no RTP arrives for this long after the answer.
    pub media_timeout: Duration,
    /// The beep played after the greeting; `None` plays none.
    pub beep: Option<Prompt>,
    /// Seed for the outgoing stream's SSRC, sequence and timestamp start values.
    pub rtp_seed: u64,
    /// Jitter buffer settings.
    pub jitter: JitterConfig,
}

impl CallConfig {
    /// A configuration with the defaults: PCMU, telephone-event 101, 20 ms, `#` finishes,
    /// 5 minutes maximum, 10 s silence timeout, 30 s media timeout, 1 kHz 250 ms beep.
    pub fn new(id: MessageId, caller: impl Into<String>, started_at: jiff::Timestamp) -> Self {
        Self {
            id,
            caller: caller.into(),
            caller_name: None,
            called: String::new(),
            started_at,
            codec: CodecKind::Pcmu,
            payload_type: 0,
            opus_sample_rate_hz: 16_000,
            dtmf_payload_type: Some(101),
            ptime: Duration::from_millis(20),
            finish_key: DtmfDigit::from_char('#'),
            max_length: Duration::from_secs(300),
            silence_timeout: Some(Duration::from_secs(10)),
            silence_threshold: 256,
            media_timeout: Duration::from_secs(30),
            beep: default_beep(),
            rtp_seed: 0,
            jitter: JitterConfig::default(),
        }
    }

    /// Sets the codec and its static payload type (96 for L16 and Opus).
    pub fn with_codec(mut self, codec: CodecKind) -> Self {
        self.codec = codec;
        self.payload_type = codec.static_payload_type().unwrap_or(96);
        self
    }

    /// The audio rate of the call and its recording: 8 kHz for G.711 and L16, 16 kHz for
    /// G.722, [`CallConfig::opus_sample_rate_hz`] for Opus.
    pub fn sample_rate_hz(&self) -> u32 {
        match self.codec {
            CodecKind::Opus => self.opus_sample_rate_hz,
            other => other.sample_rate_hz(),
        }
    }

    fn validate(&self) -> Result<()> {
        let ms = self.ptime.as_millis();
        if !(10..=120).contains(&ms) || !ms.is_multiple_of(10) {
            return Err(Error::InvalidConfig("ptime must be a multiple of 10 ms between 10 and 120 ms"));
        }
        if self.payload_type > 127 || self.dtmf_payload_type.is_some_and(|pt| pt > 127) {
            return Err(Error::InvalidConfig("payload types must be 0..=127"));
        }
        if self.dtmf_payload_type == Some(self.payload_type) {
            return Err(Error::InvalidConfig("telephone-event and audio payload types must differ"));
        }
        if self.max_length.is_zero() || self.media_timeout.is_zero() {
            return Err(Error::InvalidConfig("max_length and media_timeout must be positive"));
        }
        if !CodecKind::Opus.supports_sample_rate(self.opus_sample_rate_hz) {
            return Err(Error::InvalidConfig("opus_sample_rate_hz must be 8000, 16000 or 48000"));
        }
        Ok(())
    }
}

/// The default beep, generated once and shared by every call.
fn default_beep() -> Option<Prompt> {
    static BEEP: OnceLock<Option<Prompt>> = OnceLock::new();
    BEEP.get_or_init(|| Prompt::beep(1000.0, Duration::from_millis(250)).ok()).clone()
}

/// A prompt being played: its encoding and the position in clock ticks (fixed-rate codecs)
/// or packets (Opus).
#[derive(Debug)]
struct Playback {
    media: PromptMedia,
    total: usize,
    pos: usize,
    next_send: Instant,
}

/// The decoding of one audio payload type: the call's codec, or the one it had before a
/// change (for packets still on their way).
#[derive(Debug)]
struct Track {
    payload_type: u8,
    /// The RTP clock rate, in Hz.
    clock: u64,
    /// Decodes at the recording's rate.
    decoder: Box<dyn Decoder>,
}

/// A decoder of `codec` yielding audio at `rate`: the codec's own when it can (Opus at any
/// rate, G.711 and L16 at 8 kHz, G.722 at 16 kHz), else resampled.
fn decoder_at(codec: CodecKind, rate: u32) -> Result<Box<dyn Decoder>> {
    let unsupported = |_| Error::InvalidConfig("unsupported codec rate");
    if codec.supports_sample_rate(rate) {
        return codec.decoder(rate).map_err(unsupported);
    }
    let own = codec.decoder(codec.sample_rate_hz()).map_err(unsupported)?;
    Ok(Box::new(resample::Resampled::new(own, rate)))
}

/// Writes released frames to the recording: decodes, fills gaps with silence, enforces the
/// length limit and detects silence.
#[derive(Debug)]
struct Recorder {
    recording: Option<Recording>,
    /// The audio payload types: the current codec first, then the previous one (if any).
    tracks: Vec<Track>,
    /// The payload type of the last frame written: a frame of another one follows a codec
    /// change, and its timestamps start afresh.
    last_payload_type: Option<u8>,
    /// The audio rate of the recording, in Hz.
    rate: u64,
    pcm: Vec<i16>,
    /// When recording began (wall time anchor for the first frame and the tail).
    started: Option<Instant>,
    /// The RTP timestamp the next audio frame should carry.
    expected_ts: Option<u32>,
    /// Arrival and length of the last audio frame written.
    last_arrival: Option<Instant>,
    last_samples: u64,
    pending_new_stream: bool,
    written: u64,
    max_samples: u64,
    silent_run: u64,
    silence_samples: Option<u64>,
    threshold: i16,
    concealed: u64,
    stop: Option<EndReason>,
    error: Option<RecordingError>,
}

impl Recorder {
    fn wall_samples(&self, from: Instant, to: Instant) -> u64 {
        let d = to.saturating_duration_since(from);
        (d.as_nanos() * u128::from(self.rate) / 1_000_000_000) as u64
    }

    /// Audio samples in `ticks` of an RTP clock of `clock` Hz.
    fn ticks_to_samples(&self, ticks: u64, clock: u64) -> u64 {
        ticks * self.rate / clock
    }

    /// Whether `payload_type` is audio of the current or the previous codec.
    fn is_audio(&self, payload_type: u8) -> bool {
        self.tracks.iter().any(|t| t.payload_type == payload_type)
    }

    /// Makes `track` the current codec; the current one stays as the previous one (unless it
    /// has the same payload type), an older one is dropped.
    fn switch_to(&mut self, track: Track) {
        self.tracks.retain(|t| t.payload_type != track.payload_type);
        self.tracks.insert(0, track);
        self.tracks.truncate(2);
    }

    /// Audio samples in `d`.
    fn samples_in(&self, d: Duration) -> u64 {
        (d.as_millis() as u64) * self.rate / 1000
    }

    fn on_frame(&mut self, f: Frame<'_>) {
        if self.stop.is_some() {
            return;
        }
        if f.new_stream {
            self.pending_new_stream = true;
        }
        if !f.audio {
            return;
        }
        // A payload type dropped by a later codec change since the packet arrived: no audio.
        let Some(track) = self.tracks.iter().position(|t| t.payload_type == f.payload_type) else { return };
        if self.last_payload_type.is_some_and(|pt| pt != f.payload_type) {
            // The codec changed: its timestamps (maybe at another clock rate) start afresh.
            self.pending_new_stream = true;
        }
        let clock = self.tracks[track].clock;
        // Audio missing before this frame (a pause, DTX or lost packets).
        let gap = match (self.last_arrival, self.expected_ts) {
            (None, _) => self.started.map_or(0, |s| self.wall_samples(s, f.arrival)),
            (Some(last), expected) => {
                let wall = self.wall_samples(last, f.arrival).saturating_sub(self.last_samples);
                match expected {
                    Some(e) if !self.pending_new_stream => {
                        let ticks = i64::from(f.timestamp.wrapping_sub(e) as i32).max(0) as u64;
                        let ts_gap = self.ticks_to_samples(ticks, clock);
                        // A timestamp jump far beyond the time that really passed is a sender
                        // discontinuity, not a pause: follow the wall clock instead.
                        if ts_gap > wall + self.rate { wall } else { ts_gap }
                    }
                    _ => wall,
                }
            }
        };
        self.pending_new_stream = false;
        if gap > 0 {
            self.concealed += gap;
            if f.lost_before > 0 && self.last_arrival.is_some() {
                self.fill_loss(track, gap, f.payload);
            } else {
                self.write_silence(gap);
            }
        }
        self.pcm.clear();
        self.tracks[track].decoder.decode(f.payload, &mut self.pcm);
        let n = self.pcm.len() as u64;
        let take = n.min(self.max_samples - self.written) as usize;
        if take > 0 {
            if let Some(rec) = self.recording.as_mut()
                && let Err(e) = rec.write(&self.pcm[..take])
            {
                self.fail(e);
                return;
            }
            self.written += take as u64;
        }
        let peak = self.pcm.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        if peak < self.threshold.unsigned_abs() {
            self.silent_run += n;
        } else {
            self.silent_run = 0;
        }
        let ticks = n * clock / self.rate;
        self.expected_ts = Some(f.timestamp.wrapping_add(ticks as u32));
        self.last_payload_type = Some(f.payload_type);
        self.last_arrival = Some(f.arrival);
        self.last_samples = n;
        self.check_limits();
    }

    /// Fills `gap` samples lost just before a frame whose payload is `next`: the codec's
    /// concealment right after the last frame (at most [`CONCEAL_CAP`]), silence, then what
    /// `next`'s redundancy recovers of the last lost packet (Opus FEC). G.711 and L16 conceal
    /// with silence, so their recordings are unchanged by this.
    fn fill_loss(&mut self, track: usize, gap: u64, next: &[u8]) {
        let mut recovered = Vec::new();
        let fec = self.last_samples.min(gap);
        if fec > 0 && !self.tracks[track].decoder.recover(next, fec as usize, &mut recovered) {
            recovered.clear();
        }
        recovered.truncate(gap as usize);
        let rest = gap - recovered.len() as u64;
        let conceal = rest.min(self.samples_in(CONCEAL_CAP));
        if conceal > 0 {
            self.pcm.clear();
            self.tracks[track].decoder.conceal(conceal as usize, &mut self.pcm);
            let pcm = std::mem::take(&mut self.pcm);
            self.write_pcm(&pcm[..(conceal as usize).min(pcm.len())]);
            self.pcm = pcm;
        }
        self.write_silence(rest - conceal);
        self.write_pcm(&recovered);
    }

    /// Writes decoded or concealed samples (not counted as caller audio for silence detection).
    fn write_pcm(&mut self, pcm: &[i16]) {
        if self.stop.is_some() {
            return;
        }
        let take = (pcm.len() as u64).min(self.max_samples - self.written) as usize;
        if take == 0 {
            return;
        }
        if let Some(rec) = self.recording.as_mut()
            && let Err(e) = rec.write(&pcm[..take])
        {
            self.fail(e);
            return;
        }
        self.written += take as u64;
        self.silent_run += take as u64;
        self.check_limits();
    }

    fn write_silence(&mut self, n: u64) {
        let n = n.min(self.max_samples - self.written);
        if n == 0 {
            return;
        }
        if let Some(rec) = self.recording.as_mut()
            && let Err(e) = rec.write_silence(n)
        {
            self.fail(e);
            return;
        }
        self.written += n;
        self.silent_run += n;
        self.check_limits();
    }

    /// Silence from the end of the last frame to `end` (a hang-up), at most `cap`, so a lost
    /// final packet does not shorten the message.
    fn write_tail(&mut self, end: Instant, cap: Duration) {
        if self.stop.is_some() {
            return;
        }
        if let Some(last) = self.last_arrival {
            let tail = self.wall_samples(last, end).saturating_sub(self.last_samples);
            self.write_silence(tail.min(self.samples_in(cap)));
        }
    }

    fn check_limits(&mut self) {
        if self.stop.is_some() {
            return;
        }
        if self.written >= self.max_samples {
            self.stop = Some(EndReason::MaxLength);
        } else if self.silence_samples.is_some_and(|s| self.silent_run >= s) {
            self.stop = Some(EndReason::SilenceTimeout);
        }
    }

    fn fail(&mut self, e: RecordingError) {
        tracing::warn!(error = %e, "recording failed; keeping what was written");
        self.error = Some(e);
        self.stop = Some(EndReason::RecordingFailed);
    }
}

/// One call. See the [module docs](self).
#[derive(Debug)]
pub struct Call {
    config: CallConfig,
    greeting: Prompt,
    state: CallState,
    now: Instant,
    events: VecDeque<Event>,
    packetizer: Packetizer,
    samples_per_packet: usize,
    playback: Option<Playback>,
    /// When the beep's last packet has played out and recording begins.
    recording_at: Option<Instant>,
    last_rtp: Instant,
    /// On hold: the media timeout is suspended.
    on_hold: bool,
    jitter: JitterBuffer,
    dtmf: DtmfDetector,
    digits: String,
    recorder: Recorder,
    stats: MediaStats,
    /// The prompts ready to send in the call's codec: greeting, beep.
    greeting_media: PromptMedia,
    beep_media: Option<PromptMedia>,
    /// The codec in use: the configuration's until an [`Input::Codec`].
    current: CodecChange,
    /// Codec changes to another RTP clock rate so far (each starts a new outgoing stream).
    new_streams: u64,
}

impl Call {
    /// A new call at `now`, not yet answered. The recording (usually made by the mailbox in
    /// its spool; its header is valid from the start) must be at the call's audio rate,
    /// [`CallConfig::sample_rate_hz`]: 8 kHz for G.711 and L16, 16 kHz for G.722, the
    /// configured rate for Opus.
    pub fn new(config: CallConfig, greeting: Prompt, recording: Recording, now: Instant) -> Result<Self> {
        config.validate()?;
        let rate = config.sample_rate_hz();
        if recording.sample_rate_hz() != rate {
            return Err(Error::InvalidConfig("the recording's sample rate must be the call's audio rate"));
        }
        let decoder = config.codec.decoder(rate).map_err(|_| Error::InvalidConfig("unsupported codec rate"))?;
        let clock = u64::from(config.codec.clock_rate_hz());
        let samples_per_packet = (config.ptime.as_millis() as u64 * clock / 1000) as usize;
        let rate = u64::from(rate);
        let greeting_media = greeting.media(config.codec, config.ptime);
        let beep_media = config.beep.as_ref().map(|b| b.media(config.codec, config.ptime));
        let current = CodecChange {
            codec: config.codec,
            payload_type: config.payload_type,
            dtmf_payload_type: config.dtmf_payload_type,
        };
        let recorder = Recorder {
            recording: Some(recording),
            tracks: vec![Track { payload_type: config.payload_type, clock, decoder }],
            last_payload_type: None,
            rate,
            pcm: Vec::with_capacity(samples_per_packet * 4),
            started: None,
            expected_ts: None,
            last_arrival: None,
            last_samples: 0,
            pending_new_stream: false,
            written: 0,
            max_samples: (config.max_length.as_millis() as u64 * rate / 1000).max(1),
            silent_run: 0,
            silence_samples: config.silence_timeout.map(|d| d.as_millis() as u64 * rate / 1000),
            threshold: config.silence_threshold,
            concealed: 0,
            stop: None,
            error: None,
        };
        Ok(Self {
            packetizer: Packetizer::new(config.payload_type, config.rtp_seed),
            jitter: JitterBuffer::new(config.jitter, now),
            samples_per_packet,
            greeting,
            state: CallState::Ringing,
            now,
            events: VecDeque::with_capacity(8),
            playback: None,
            recording_at: None,
            last_rtp: now,
            on_hold: false,
            dtmf: DtmfDetector::new(),
            digits: String::new(),
            recorder,
            stats: MediaStats::default(),
            greeting_media,
            beep_media,
            current,
            new_streams: 0,
            config,
        })
    }

    /// The current state.
    pub fn state(&self) -> CallState {
        self.state
    }

    /// The call's configuration, as the call was made (its codec is the first one; see
    /// [`Call::codec`]).
    pub fn config(&self) -> &CallConfig {
        &self.config
    }

    /// The codec in use: the configuration's, or the last [`Input::Codec`]'s.
    pub fn codec(&self) -> CodecChange {
        self.current
    }

    /// Media counters so far.
    pub fn stats(&self) -> MediaStats {
        let j = self.jitter.stats();
        MediaStats {
            duplicates: j.duplicates,
            late: j.late,
            lost: j.lost,
            ssrc_changes: j.ssrc_changes + j.restarts,
            concealed_samples: self.recorder.concealed,
            ..self.stats
        }
    }

    /// The message's metadata as known now, which the mailbox stores when the call starts:
    /// what a crash recovery completes. Its end reason is [`EndReason::Interrupted`] until
    /// the call really ends, and it names no WAV file (the sink's owner knows it).
    pub fn provisional_meta(&self) -> MessageMeta {
        let c = &self.config;
        MessageMeta {
            id: c.id.clone(),
            caller: c.caller.clone(),
            caller_name: c.caller_name.clone(),
            called: c.called.clone(),
            started_at: c.started_at,
            duration_ms: self.recorder.written * 1000 / self.recorder.rate,
            end_reason: EndReason::Interrupted,
            codec: self.current.codec,
            greeting: self.greeting.name().to_owned(),
            dtmf: self.digits.clone(),
            wav_path: None,
            media: self.stats(),
            mailbox: None,
            diverted_from: None,
            transcript: None,
        }
    }

    /// Samples recorded so far (at [`CallConfig::sample_rate_hz`]).
    pub fn recorded_samples(&self) -> u64 {
        self.recorder.written
    }

    /// Feeds one input. Errors only on caller misuse: an input after the call ended, or time
    /// going backwards. Malformed RTP is dropped and counted in [`Call::stats`].
    pub fn handle_input(&mut self, input: Input<'_>) -> Result<()> {
        if self.state == CallState::Ended {
            return Err(Error::CallEnded);
        }
        let now = input.time();
        if now < self.now {
            return Err(Error::TimeWentBackwards);
        }
        self.now = now;
        match input {
            Input::Answered(_) => self.on_answered(now),
            Input::Rtp(_, datagram) => self.on_rtp(now, datagram),
            Input::Dtmf(_, digit) => self.on_digit(now, digit),
            Input::Hangup(_) => self.end(EndReason::HangUp, now),
            Input::Hold(_, on_hold) => {
                self.on_hold = on_hold;
                self.last_rtp = now;
            }
            Input::Codec(_, change) => {
                let changed = self.on_codec(change);
                self.on_time(now);
                return changed;
            }
            Input::Tick(_) => {}
        }
        self.on_time(now);
        Ok(())
    }

    /// Switches the call to `change` (see [`Input::Codec`]).
    fn on_codec(&mut self, change: CodecChange) -> Result<()> {
        let dtmf = change.dtmf_payload_type;
        if change.payload_type > 127 || dtmf.is_some_and(|pt| pt > 127) || dtmf == Some(change.payload_type) {
            return Err(Error::InvalidConfig(
                "a codec change needs payload types 0..=127, telephone-event apart from audio",
            ));
        }
        if change == self.current {
            return Ok(());
        }
        let old = self.current;
        if (change.codec, change.payload_type) != (old.codec, old.payload_type) {
            let decoder = decoder_at(change.codec, self.recorder.rate as u32)?;
            let clock = change.codec.clock_rate_hz();
            self.recorder.switch_to(Track { payload_type: change.payload_type, clock: u64::from(clock), decoder });
            self.switch_outgoing(old.codec, change);
        }
        // A telephone-event payload type is never audio.
        if let Some(pt) = dtmf {
            self.recorder.tracks.retain(|t| t.payload_type != pt);
        }
        self.current = change;
        Ok(())
    }

    /// The greeting and beep go on in the new codec, from where they were.
    fn switch_outgoing(&mut self, old: CodecKind, change: CodecChange) {
        let (old_clock, clock) = (old.clock_rate_hz(), change.codec.clock_rate_hz());
        if clock == old_clock {
            self.packetizer.set_payload_type(change.payload_type);
        } else {
            // Another RTP clock: a new stream (SSRC, sequence, timestamp) rather than a
            // timestamp that changes its pace.
            self.new_streams += 1;
            let seed = self.config.rtp_seed ^ self.new_streams.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            self.packetizer = Packetizer::new(change.payload_type, seed);
        }
        self.packetizer.mark_talkspurt();
        let ptime = self.config.ptime;
        self.samples_per_packet = (ptime.as_millis() as u64 * u64::from(clock) / 1000) as usize;
        self.greeting_media = self.greeting.media(change.codec, ptime);
        self.beep_media = self.config.beep.as_ref().map(|b| b.media(change.codec, ptime));
        let Some(playing) = self.playback.take() else { return };
        let media = match self.state {
            CallState::Greeting => self.greeting_media.clone(),
            CallState::Beep => match &self.beep_media {
                Some(beep) => beep.clone(),
                None => return,
            },
            _ => return,
        };
        let played = played_for(&playing, old_clock);
        let total = prompt_len(&media);
        let pos = match &media {
            PromptMedia::Contiguous { .. } => (played.as_nanos() * u128::from(clock) / 1_000_000_000) as usize,
            PromptMedia::Packets { frame, .. } => played.as_nanos().div_ceil(frame.as_nanos().max(1)) as usize,
        };
        let next_send = playing.next_send;
        if pos >= total {
            self.playback = Some(Playback { media, total, pos: total, next_send });
            self.prompt_done(next_send);
        } else {
            self.playback = Some(Playback { media, total, pos, next_send });
        }
    }

    /// The next thing to do: an event, a packet to send now, or the time to call back.
    /// Drain it until it returns [`Output::Timeout`] after every input.
    pub fn poll_output(&mut self) -> Output {
        if let Some(ev) = self.events.pop_front() {
            return Output::Event(ev);
        }
        if let Some(pkt) = self.next_packet() {
            return Output::SendRtp(pkt);
        }
        if let Some(ev) = self.events.pop_front() {
            return Output::Event(ev);
        }
        Output::Timeout(self.deadline())
    }

    fn deadline(&self) -> Instant {
        let idle = self.now.checked_add(IDLE).unwrap_or(self.now);
        if self.state == CallState::Ended || self.state == CallState::Ringing {
            return idle;
        }
        let mut at =
            if self.on_hold { idle } else { self.last_rtp.checked_add(self.config.media_timeout).unwrap_or(idle) };
        if let Some(p) = &self.playback {
            at = at.min(p.next_send);
        }
        if let Some(t) = self.recording_at {
            at = at.min(t);
        }
        if let Some(t) = self.jitter.deadline() {
            at = at.min(t);
        }
        if let Some(limit) = self.wall_limit() {
            at = at.min(limit);
        }
        at
    }

    /// Wall-clock backstop for the maximum length, for senders whose clock runs slow: the
    /// recording's start plus the maximum length and two seconds of slack.
    fn wall_limit(&self) -> Option<Instant> {
        self.recorder.started?.checked_add(self.config.max_length.saturating_add(Duration::from_secs(2)))
    }

    fn set_state(&mut self, state: CallState) {
        self.state = state;
        self.events.push_back(Event::StateChanged(state));
    }

    fn play(&mut self, media: PromptMedia, at: Instant) {
        let total = prompt_len(&media);
        if total == 0 {
            // Nothing to send (cannot happen with a valid prompt): move on at once.
            self.playback = Some(Playback { media, total: 0, pos: 0, next_send: at });
            self.prompt_done(at);
            return;
        }
        self.playback = Some(Playback { media, total, pos: 0, next_send: at });
    }

    fn on_answered(&mut self, now: Instant) {
        if self.state != CallState::Ringing {
            return; // a repeated answer (e.g. a retransmitted ACK) changes nothing
        }
        self.set_state(CallState::Answered);
        self.last_rtp = now;
        self.set_state(CallState::Greeting);
        self.play(self.greeting_media.clone(), now);
        self.packetizer.mark_talkspurt();
    }

    /// Moves on when a prompt has been sent completely: greeting → beep → recording.
    fn prompt_done(&mut self, ends_at: Instant) {
        self.playback = None;
        match self.state {
            CallState::Greeting => {
                self.set_state(CallState::Beep);
                match self.beep_media.clone() {
                    Some(beep) => self.play(beep, ends_at),
                    None => self.recording_at = Some(ends_at),
                }
            }
            CallState::Beep => self.recording_at = Some(ends_at),
            _ => {}
        }
    }

    fn next_packet(&mut self) -> Option<RtpOut> {
        let p = self.playback.as_mut()?;
        if p.next_send > self.now {
            return None;
        }
        let clock = u64::from(self.current.codec.clock_rate_hz());
        let sent_at = p.next_send;
        let (payload, ticks, plays) = match &p.media {
            PromptMedia::Contiguous { bytes, bytes_per_tick } => {
                let n = self.samples_per_packet.min(p.total - p.pos);
                let payload = bytes.slice(p.pos * bytes_per_tick..(p.pos + n) * bytes_per_tick);
                p.pos += n;
                p.next_send += self.config.ptime;
                (payload, n as u32, Duration::from_nanos(n as u64 * 1_000_000_000 / clock))
            }
            PromptMedia::Packets { packets, ticks, frame } => {
                let payload = packets[p.pos].clone();
                p.pos += 1;
                p.next_send += *frame;
                (payload, *ticks, *frame)
            }
        };
        let done = p.pos >= p.total;
        let header = self.packetizer.next_header(ticks);
        if done {
            self.prompt_done(sent_at + plays);
        }
        Some(RtpOut { header, payload })
    }

    fn on_time(&mut self, now: Instant) {
        if self.state == CallState::Ended {
            return;
        }
        if self.recording_at.is_some_and(|t| t <= now) {
            self.recording_at = None;
            self.start_recording(now);
        }
        if self.state == CallState::Recording {
            let Self { jitter, recorder, .. } = self;
            jitter.poll(now, &mut |f| recorder.on_frame(f));
            if let Some(reason) = self.recorder.stop {
                self.end(reason, now);
                return;
            }
            if self.wall_limit().is_some_and(|limit| now >= limit) {
                self.end(EndReason::MaxLength, now);
                return;
            }
        }
        if matches!(self.state, CallState::Greeting | CallState::Beep | CallState::Recording)
            && !self.on_hold
            && now.saturating_duration_since(self.last_rtp) >= self.config.media_timeout
        {
            self.end(EndReason::MediaTimeout, now);
        }
    }

    fn start_recording(&mut self, now: Instant) {
        self.set_state(CallState::Recording);
        self.recorder.started = Some(now);
        self.jitter = JitterBuffer::new(self.config.jitter, now);
    }

    fn on_rtp(&mut self, now: Instant, datagram: &[u8]) {
        self.stats.packets_received += 1;
        let pkt = match RtpPacket::parse(datagram) {
            Ok(p) => p,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        if self.state == CallState::Ringing {
            return; // early media from the caller is not expected; ignore it
        }
        self.last_rtp = now;
        let is_dtmf = Some(pkt.payload_type) == self.current.dtmf_payload_type;
        let audio = !is_dtmf && self.recorder.is_audio(pkt.payload_type);
        if is_dtmf {
            if let Some(digit) = self.dtmf.on_packet(pkt.ssrc, pkt.timestamp, pkt.payload) {
                self.on_digit(now, digit);
                if self.state == CallState::Ended {
                    return;
                }
            }
        } else if !audio && pkt.payload_type != PT_CN {
            self.stats.unknown_payload_type += 1;
        }
        if self.state != CallState::Recording {
            return; // the caller's audio before the beep is not part of the message
        }
        let Self { jitter, recorder, .. } = self;
        let payload = if audio { pkt.payload } else { &[] };
        jitter.push(now, pkt.ssrc, pkt.sequence, pkt.timestamp, pkt.payload_type, payload, audio, &mut |f| {
            recorder.on_frame(f)
        });
        if let Some(reason) = self.recorder.stop {
            self.end(reason, now);
        }
    }

    fn on_digit(&mut self, now: Instant, digit: DtmfDigit) {
        self.digits.push(digit.as_char());
        self.events.push_back(Event::DtmfReceived(digit));
        if Some(digit) != self.config.finish_key {
            return;
        }
        match self.state {
            CallState::Greeting => {
                // The finish key skips the rest of the greeting.
                let at = self.playback.as_ref().map_or(now, |p| p.next_send.min(now));
                self.prompt_done(at);
            }
            CallState::Recording => self.end(EndReason::FinishKey, now),
            _ => {}
        }
    }

    fn end(&mut self, reason: EndReason, now: Instant) {
        if self.state == CallState::Ended {
            return;
        }
        let mut reason = reason;
        if self.state == CallState::Recording {
            let Self { jitter, recorder, .. } = self;
            jitter.drain(&mut |f| recorder.on_frame(f));
            if reason == EndReason::HangUp {
                self.recorder.write_tail(now, TAIL_CAP);
            }
            if let Some(r) = self.recorder.stop {
                // A limit reached while draining wins over the hang-up that triggered it.
                if r == EndReason::RecordingFailed || reason == EndReason::HangUp {
                    reason = r;
                }
            }
        }
        self.playback = None;
        self.recording_at = None;
        if let Some(rec) = self.recorder.recording.take()
            && let Err(e) = rec.finalize()
        {
            tracing::warn!(error = %e, id = %self.config.id, "finalizing the recording failed");
            reason = EndReason::RecordingFailed;
        }
        if self.recorder.error.is_some() {
            reason = EndReason::RecordingFailed;
        }
        self.set_state(CallState::Ended);
        let meta = MessageMeta { end_reason: reason, ..self.provisional_meta() };
        self.events.push_back(Event::MessageRecorded(Box::new(meta)));
    }
}

/// A prompt's length: clock ticks (fixed-rate codecs) or packets (Opus).
fn prompt_len(media: &PromptMedia) -> usize {
    match media {
        PromptMedia::Contiguous { bytes, bytes_per_tick } => bytes.len() / (*bytes_per_tick).max(1),
        PromptMedia::Packets { packets, .. } => packets.len(),
    }
}

/// How much of a prompt has been sent, in time.
fn played_for(p: &Playback, clock: u32) -> Duration {
    match &p.media {
        PromptMedia::Contiguous { .. } => {
            Duration::from_nanos((p.pos as u64).saturating_mul(1_000_000_000) / u64::from(clock.max(1)))
        }
        PromptMedia::Packets { frame, .. } => frame.saturating_mul(p.pos as u32),
    }
}
