//! A deterministic harness for driving a [`Call`]: a simulated clock, a simulated caller that
//! sends RTP, and an in-memory recording read back with hound. No sockets, no sleeps.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::io::{Cursor, Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use voicemail_core::{
    Call, CallConfig, CallState, Codec, CodecKind, Event, Input, MessageMeta, Output, Prompt, Recording, RtpOut,
};

/// A `Write + Seek` buffer the test can read after the call consumed the recording.
#[derive(Clone, Default)]
pub struct SharedBuf(pub Arc<Mutex<Cursor<Vec<u8>>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Seek for SharedBuf {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.0.lock().unwrap().seek(pos)
    }
}

impl SharedBuf {
    /// The WAV's samples, read with hound (so the file must be valid).
    pub fn samples(&self) -> Vec<i16> {
        let bytes = self.0.lock().unwrap().get_ref().clone();
        let mut r = hound::WavReader::new(Cursor::new(bytes)).expect("recording is a valid WAV");
        let spec = r.spec();
        assert_eq!((spec.channels, spec.sample_rate, spec.bits_per_sample), (1, 8000, 16));
        r.samples::<i16>().map(|s| s.unwrap()).collect()
    }
}

/// A short synthetic greeting (0.5 s) so tests run fast.
pub fn short_greeting() -> Prompt {
    let pcm: Vec<i16> = (0..4000).map(|i| ((i as f32 * 0.3).sin() * 8000.0) as i16).collect();
    Prompt::from_pcm("test-greeting", pcm).unwrap()
}

/// A test tone: `samples` samples of a 440 Hz sine at -12 dBFS.
pub fn tone(samples: usize) -> Vec<i16> {
    (0..samples).map(|i| ((i as f32 * 2.0 * std::f32::consts::PI * 440.0 / 8000.0).sin() * 8000.0) as i16).collect()
}

/// The caller's RTP stream.
pub struct Talker {
    pub codec: CodecKind,
    pub pt: u8,
    pub ssrc: u32,
    pub seq: u16,
    pub ts: u32,
    first: bool,
}

impl Talker {
    pub fn new(codec: CodecKind, ssrc: u32, seq: u16, ts: u32) -> Self {
        Self { codec, pt: codec.static_payload_type().unwrap_or(96), ssrc, seq, ts, first: true }
    }

    /// The next packet carrying `pcm` (advances sequence and timestamp).
    pub fn packet(&mut self, pcm: &[i16]) -> Vec<u8> {
        let mut payload = Vec::new();
        self.codec.encode(pcm, &mut payload);
        let p = self.raw(self.pt, &payload);
        self.ts = self.ts.wrapping_add(pcm.len() as u32);
        p
    }

    /// A packet with this payload type and payload at the current sequence/timestamp
    /// (advances the sequence only).
    pub fn raw(&mut self, pt: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, pt | if self.first { 0x80 } else { 0 }];
        self.first = false;
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&self.ts.to_be_bytes());
        p.extend_from_slice(&self.ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        p
    }

    /// An RFC 4733 event packet (PT 101) at the current timestamp.
    pub fn dtmf(&mut self, event: u8, end: bool, duration: u16) -> Vec<u8> {
        let d = duration.to_be_bytes();
        self.raw(101, &[event, if end { 0x80 } else { 0 } | 10, d[0], d[1]])
    }
}

/// A call under test, with its clock.
pub struct TestCall {
    pub call: Call,
    pub base: Instant,
    pub now: Instant,
    pub sent: Vec<(Instant, RtpOut)>,
    pub events: Vec<(Instant, Event)>,
    pub wav: SharedBuf,
    pub deadline: Instant,
}

impl TestCall {
    pub fn new(cfg: CallConfig) -> Self {
        Self::with_greeting(cfg, short_greeting())
    }

    pub fn with_greeting(cfg: CallConfig, greeting: Prompt) -> Self {
        let base = Instant::now();
        let wav = SharedBuf::default();
        let rec = Recording::new(wav.clone()).unwrap();
        let call = Call::new(cfg, greeting, rec, base).unwrap();
        let mut t = Self { call, base, now: base, sent: Vec::new(), events: Vec::new(), wav, deadline: base };
        t.drain();
        t
    }

    pub fn config() -> CallConfig {
        let mut c = CallConfig::new(
            voicemail_core::MessageId::parse("test-1").unwrap(),
            "+74951234567",
            jiff::Timestamp::UNIX_EPOCH,
        );
        c.rtp_seed = 42;
        c
    }

    /// Drains outputs, recording packets and events, until a timeout.
    pub fn drain(&mut self) {
        loop {
            match self.call.poll_output() {
                Output::SendRtp(p) => self.sent.push((self.now, p)),
                Output::Event(e) => self.events.push((self.now, e)),
                Output::Timeout(at) => {
                    self.deadline = at;
                    return;
                }
            }
        }
    }

    pub fn input(&mut self, input: Input<'_>) {
        self.now = input.time();
        self.call.handle_input(input).unwrap();
        self.drain();
    }

    pub fn answer(&mut self) {
        self.input(Input::Answered(self.now));
    }

    /// Advances the clock to `t`, ticking at every deadline on the way.
    pub fn advance_to(&mut self, t: Instant) {
        while self.deadline <= t && self.call.state() != CallState::Ended {
            let d = self.deadline.max(self.now);
            self.input(Input::Tick(d));
        }
        if self.call.state() != CallState::Ended && t > self.now {
            self.input(Input::Tick(t));
        }
    }

    /// Runs until the call enters `state` (ticking through deadlines); panics after `limit`.
    pub fn run_until_state(&mut self, state: CallState, limit: Duration) {
        let end = self.now + limit;
        while self.call.state() != state {
            assert!(self.deadline <= end, "state {state:?} not reached within {limit:?}; now {:?}", self.call.state());
            let d = self.deadline.max(self.now);
            self.input(Input::Tick(d));
        }
    }

    pub fn rtp(&mut self, at: Instant, packet: &[u8]) {
        self.advance_to(at);
        if self.call.state() != CallState::Ended {
            self.input(Input::Rtp(at.max(self.now), packet));
        }
    }

    pub fn hangup(&mut self, at: Instant) {
        self.advance_to(at);
        if self.call.state() != CallState::Ended {
            self.input(Input::Hangup(at.max(self.now)));
        }
    }

    /// The one MessageRecorded event (asserts there is exactly one).
    pub fn message(&self) -> MessageMeta {
        let msgs: Vec<_> = self
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::MessageRecorded(m) => Some((**m).clone()),
                _ => None,
            })
            .collect();
        assert_eq!(msgs.len(), 1, "exactly one MessageRecorded per call");
        msgs.into_iter().next().unwrap()
    }

    pub fn states(&self) -> Vec<CallState> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::StateChanged(s) => Some(*s),
                _ => None,
            })
            .collect()
    }

    /// When the call entered `state`.
    pub fn entered(&self, state: CallState) -> Option<Instant> {
        self.events.iter().find(|(_, e)| *e == Event::StateChanged(state)).map(|(t, _)| *t)
    }
}

/// G.711 encode then decode, as the far end's audio will come out of the recording.
pub fn through_codec(codec: CodecKind, pcm: &[i16]) -> Vec<i16> {
    let mut enc = Vec::new();
    codec.encode(pcm, &mut enc);
    let mut dec = Vec::new();
    codec.decode(&enc, &mut dec);
    dec
}

pub const FRAME: Duration = Duration::from_millis(20);
