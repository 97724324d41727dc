//! A codec change mid-call (`Input::Codec`, a re-INVITE that picked another codec) through the
//! sans-IO engine: the recording keeps its rate and is whole (its length follows the wall
//! clock across the switch, whatever the new stream's timestamps), the caller's audio is there
//! before and after (PCMU → PCMA at 8 kHz; PCMU → G.722 decimated into an 8 kHz recording;
//! G.722 → PCMU interpolated into a 16 kHz one; PCMU → Opus decoded at 8 kHz), packets of the
//! previous codec still in flight after the change are decoded with it, the greeting goes on in
//! the new codec from where it was (a new SSRC when the RTP clock changes), and an invalid
//! change is refused without harm.
#![allow(clippy::unwrap_used)]

use std::io::{Cursor, Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use voicemail_core::recording::{RecordingFormat, RecordingSpec};
use voicemail_core::{
    Call, CallConfig, CallState, Codec, CodecChange, CodecKind, EndReason, Event, Input, MessageId, MessageMeta,
    Output, Prompt, Recording,
};

#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Cursor<Vec<u8>>>>);

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
    fn wav(&self) -> (u32, Vec<i16>) {
        let bytes = self.0.lock().unwrap().get_ref().clone();
        let r = hound::WavReader::new(Cursor::new(bytes)).unwrap();
        let rate = r.spec().sample_rate;
        (rate, r.into_samples::<i16>().map(Result::unwrap).collect())
    }
}

fn sine(freq: f64, rate: u32, n: usize) -> Vec<i16> {
    (0..n).map(|i| ((i as f64 * freq * std::f64::consts::TAU / f64::from(rate)).sin() * 9000.0) as i16).collect()
}

/// Power of `freq` in `samples` at `rate` (Goertzel), normalised by the length.
fn power(samples: &[i16], freq: f64, rate: u32) -> f64 {
    let w = std::f64::consts::TAU * freq / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (samples.len().max(1) as f64).powi(2)
}

/// Whether `freq` dominates `samples` (against a few other tones) and is loud.
fn has_tone(samples: &[i16], freq: f64, rate: u32) -> bool {
    let p = power(samples, freq, rate);
    let rms = (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt();
    rms > 3000.0 && [300.0, 700.0, 1500.0, 2500.0].iter().all(|&other| p > 50.0 * power(samples, other, rate))
}

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

struct Driver {
    call: Call,
    now: Instant,
    deadline: Instant,
    sent: Vec<(Instant, Vec<u8>)>,
    meta: Option<MessageMeta>,
}

impl Driver {
    fn new(codec: CodecKind) -> (Self, SharedBuf) {
        let id = MessageId::parse("codec-change").unwrap();
        let cfg = CallConfig::new(id, "+74951234567", jiff::Timestamp::UNIX_EPOCH).with_codec(codec);
        let buf = SharedBuf::default();
        let spec = RecordingSpec::for_call(RecordingFormat::Wav, codec, cfg.sample_rate_hz());
        let now = Instant::now();
        let greeting = Prompt::from_pcm("g", sine(500.0, 8000, 8000)).unwrap();
        let call = Call::new(cfg, greeting, Recording::with_spec(buf.clone(), spec).unwrap(), now).unwrap();
        let mut d = Self { call, now, deadline: now, sent: Vec::new(), meta: None };
        d.drain();
        (d, buf)
    }

    fn drain(&mut self) {
        loop {
            match self.call.poll_output() {
                Output::SendRtp(p) => self.sent.push((self.now, p.to_vec())),
                Output::Event(Event::MessageRecorded(m)) => self.meta = Some(*m),
                Output::Event(_) => {}
                Output::Timeout(t) => {
                    self.deadline = t;
                    return;
                }
            }
        }
    }

    fn input(&mut self, input: Input<'_>) {
        self.now = input.time();
        self.call.handle_input(input).unwrap();
        self.drain();
    }

    /// Ticks through every deadline up to `t`.
    fn advance_to(&mut self, t: Instant) {
        while self.deadline <= t && self.call.state() != CallState::Ended {
            self.input(Input::Tick(self.deadline.max(self.now)));
        }
        if t > self.now {
            self.input(Input::Tick(t));
        }
    }

    fn answer_until_recording(&mut self) {
        self.input(Input::Answered(self.now));
        while self.call.state() != CallState::Recording {
            self.input(Input::Tick(self.deadline.max(self.now)));
        }
    }

    fn rtp(&mut self, at: Instant, packet: &[u8]) {
        self.advance_to(at);
        self.input(Input::Rtp(at.max(self.now), packet));
    }

    fn change(&mut self, codec: CodecKind, payload_type: u8) {
        self.input(Input::Codec(self.now, CodecChange { codec, payload_type, dtmf_payload_type: Some(101) }));
    }

    fn hangup(&mut self, at: Instant) -> MessageMeta {
        self.advance_to(at);
        self.input(Input::Hangup(self.now));
        self.meta.take().unwrap()
    }
}

/// The caller's stream: 20 ms packets of `pcm` (at the codec's audio rate) in `codec`, from
/// `start`, one sequence numbering across codecs as a phone keeps it.
struct Caller {
    seq: u16,
    ts: u32,
    ssrc: u32,
}

impl Caller {
    fn send(&mut self, d: &mut Driver, start: Instant, codec: CodecKind, pt: u8, pcm: &[i16]) -> Instant {
        let rate = codec.sample_rate_hz() as usize;
        let rate = if codec == CodecKind::Opus { 16_000 } else { rate };
        let mut enc = codec.encoder(rate as u32).unwrap();
        let ticks = codec.clock_rate_hz() / 50;
        let mut at = start;
        for frame in pcm.chunks_exact(rate / 50) {
            let mut payload = Vec::new();
            enc.encode(frame, &mut payload);
            d.rtp(at, &rtp(pt, self.seq, self.ts, self.ssrc, &payload));
            self.seq = self.seq.wrapping_add(1);
            self.ts = self.ts.wrapping_add(ticks);
            at += Duration::from_millis(20);
        }
        at
    }
}

/// Two seconds of 440 Hz in `first`, a change, two seconds of 1 kHz in `second` (its
/// timestamps restarting elsewhere, as after a new negotiation); the recording at `rate`.
fn switch(first: (CodecKind, u8), second: (CodecKind, u8), rate: u32) -> (MessageMeta, Vec<i16>) {
    let (mut d, buf) = Driver::new(first.0);
    d.answer_until_recording();
    let start = d.now;
    let mut caller = Caller { seq: 100, ts: 4000, ssrc: 0xabcd };
    let audio_rate = |c: CodecKind| if c == CodecKind::Opus { 16_000 } else { c.sample_rate_hz() };
    let at = caller.send(
        &mut d,
        start,
        first.0,
        first.1,
        &sine(440.0, audio_rate(first.0), audio_rate(first.0) as usize * 2),
    );
    d.advance_to(at);
    d.change(second.0, second.1);
    caller.ts = 900_000;
    let at = caller.send(
        &mut d,
        at,
        second.0,
        second.1,
        &sine(1000.0, audio_rate(second.0), audio_rate(second.0) as usize * 2),
    );
    let meta = d.hangup(at);
    let (wav_rate, rec) = buf.wav();
    assert_eq!(wav_rate, rate, "the recording keeps its rate");
    assert_eq!((meta.end_reason, meta.codec), (EndReason::HangUp, second.0));
    assert_eq!(meta.duration_ms, rec.len() as u64 * 1000 / u64::from(rate));
    let r = rate as usize;
    // Whole: four seconds (one frame of slack at each end).
    assert!((4 * r - r / 50..=4 * r + r / 25).contains(&rec.len()), "{} samples at {rate} Hz", rec.len());
    assert!(has_tone(&rec[r / 2..3 * r / 2], 440.0, rate), "{first:?}: the tone before the change");
    assert!(has_tone(&rec[5 * r / 2..7 * r / 2], 1000.0, rate), "{second:?}: the tone after the change");
    (meta, rec)
}

#[test]
fn pcmu_to_pcma_keeps_the_whole_recording() {
    switch((CodecKind::Pcmu, 0), (CodecKind::Pcma, 8), 8000);
}

#[test]
fn pcmu_to_g722_is_decimated_into_the_8_khz_recording() {
    switch((CodecKind::Pcmu, 0), (CodecKind::G722, 9), 8000);
}

#[test]
fn g722_to_pcmu_is_interpolated_into_the_16_khz_recording() {
    switch((CodecKind::G722, 9), (CodecKind::Pcmu, 0), 16_000);
}

#[test]
fn pcmu_to_opus_is_decoded_at_8_khz() {
    switch((CodecKind::Pcmu, 0), (CodecKind::Opus, 111), 8000);
}

#[test]
fn packets_of_the_previous_codec_in_flight_are_still_decoded() {
    let (mut d, buf) = Driver::new(CodecKind::Pcmu);
    d.answer_until_recording();
    let start = d.now;
    let mut caller = Caller { seq: 1, ts: 0, ssrc: 7 };
    // The change comes first, half-way through the PCMU stream (the caller switches only
    // when our 200 OK reaches it).
    let tone = sine(440.0, 8000, 16_000);
    d.advance_to(start);
    d.change(CodecKind::Pcma, 8);
    let at = caller.send(&mut d, start, CodecKind::Pcmu, 0, &tone);
    let at = caller.send(&mut d, at, CodecKind::Pcma, 8, &tone);
    let meta = d.hangup(at);
    let (_, rec) = buf.wav();
    assert!((31_800..=32_400).contains(&rec.len()), "{} samples", rec.len());
    for second in 0..4 {
        let window = &rec[second * 8000 + 1000..second * 8000 + 7000];
        assert!(has_tone(window, 440.0, 8000), "second {second} is not the caller's tone");
    }
    assert_eq!(meta.media.unknown_payload_type, 0);
}

#[test]
fn the_greeting_goes_on_in_the_new_codec() {
    let (mut d, _) = Driver::new(CodecKind::Pcmu);
    d.input(Input::Answered(d.now));
    let t0 = d.now;
    d.advance_to(t0 + Duration::from_millis(300));
    let before = d.sent.len();
    d.change(CodecKind::Pcma, 8);
    d.advance_to(t0 + Duration::from_millis(600));
    d.change(CodecKind::Opus, 111);
    while d.call.state() == CallState::Greeting {
        let at = d.deadline;
        d.advance_to(at);
    }
    let pt = |p: &Vec<u8>| p[1] & 0x7f;
    let ssrc = |p: &Vec<u8>| u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
    let seq = |p: &Vec<u8>| u16::from_be_bytes([p[2], p[3]]);
    let greeting: Vec<&(Instant, Vec<u8>)> = d.sent.iter().collect();
    assert!(greeting[..before].iter().all(|(_, p)| pt(p) == 0));
    let pcma: Vec<_> = greeting.iter().filter(|(_, p)| pt(p) == 8).collect();
    let opus: Vec<_> = greeting.iter().filter(|(_, p)| pt(p) == 111).collect();
    assert_eq!(pcma.len(), 15, "300 ms of PCMA");
    // Same clock: the stream goes on (SSRC, sequence), the marker bit flags the change.
    assert_eq!(ssrc(&pcma[0].1), ssrc(&greeting[0].1));
    assert_eq!(seq(&pcma[0].1), seq(&greeting[before - 1].1).wrapping_add(1));
    assert_eq!(pcma[0].1[1] & 0x80, 0x80);
    // Another clock (48 kHz): a new stream.
    assert_ne!(ssrc(&opus[0].1), ssrc(&greeting[0].1));
    // The 1 s greeting (50 packets of 20 ms) is not restarted: the rest goes out in Opus.
    assert_eq!(before + pcma.len() + opus.len(), 50, "{before} PCMU, {} PCMA, {} Opus", pcma.len(), opus.len());
    assert_eq!(d.call.codec(), CodecChange { codec: CodecKind::Opus, payload_type: 111, dtmf_payload_type: Some(101) });
    assert_eq!(d.call.config().codec, CodecKind::Pcmu, "the configuration is the call's first codec");
}

#[test]
fn an_invalid_change_is_refused_and_the_call_goes_on() {
    let (mut d, _) = Driver::new(CodecKind::Pcmu);
    for bad in [
        CodecChange { codec: CodecKind::Pcma, payload_type: 128, dtmf_payload_type: None },
        CodecChange { codec: CodecKind::Pcma, payload_type: 8, dtmf_payload_type: Some(8) },
        CodecChange { codec: CodecKind::Pcma, payload_type: 8, dtmf_payload_type: Some(200) },
    ] {
        let now = d.now;
        assert!(d.call.handle_input(Input::Codec(now, bad)).is_err(), "{bad:?}");
        assert_eq!(d.call.codec().codec, CodecKind::Pcmu);
    }
    d.answer_until_recording();
    // The same codec again changes nothing.
    let now = d.now;
    d.call.handle_input(Input::Codec(now, CodecChange::new(CodecKind::Pcmu))).unwrap();
    let meta = d.hangup(now + Duration::from_millis(100));
    assert_eq!(meta.codec, CodecKind::Pcmu);
}
