//! Wideband calls through the sans-IO engine: a G.722 call and an Opus call are recorded at
//! 16 kHz (Opus also at 48 kHz) and hold what the caller sent (correlation with the source over
//! 0.9, above what 8 kHz audio could carry); the greeting goes out in the call's codec with the
//! right RTP clock (160 ticks per 20 ms for G.722, 960 for Opus); Opus packets of 10, 20 and
//! 60 ms mixed in one stream are recorded at the right length; a lost Opus packet is concealed or
//! recovered from FEC instead of leaving a hole; telephone-event at 48 kHz ends an Opus call.
#![allow(clippy::unwrap_used)]

use std::io::{Cursor, Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use voicemail_core::recording::{RecordingFormat, RecordingSpec};
use voicemail_core::{
    Call, CallConfig, CallState, Codec, CodecKind, EndReason, Event, Input, MessageId, MessageMeta, Output, Prompt,
    Recording,
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

/// A chirp from 300 Hz to 6 kHz at `rate`: wideband, never periodic.
fn chirp(rate: u32, n: usize) -> Vec<i16> {
    let secs = n as f64 / f64::from(rate);
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let phase = std::f64::consts::TAU * (300.0 * t + (6000.0 - 300.0) * t * t / (2.0 * secs));
            (phase.sin() * 8000.0) as i16
        })
        .collect()
}

fn correlation(a: &[i16], b: &[i16]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa * bb).sqrt().max(1.0)
}

/// The best correlation of `window` (from the recording) against `source` at any offset.
fn best_match(window: &[i16], source: &[i16]) -> (usize, f64) {
    (0..source.len().saturating_sub(window.len()))
        .map(|at| (at, correlation(window, &source[at..at + window.len()])))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap()
}

struct Driver {
    call: Call,
    now: Instant,
    sent: Vec<Vec<u8>>,
    events: Vec<Event>,
    meta: Option<MessageMeta>,
}

impl Driver {
    fn new(cfg: CallConfig, rec: Recording) -> Self {
        let now = Instant::now();
        let greeting = Prompt::from_pcm("g", chirp(8000, 4000)).unwrap();
        let call = Call::new(cfg, greeting, rec, now).unwrap();
        Self { call, now, sent: Vec::new(), events: Vec::new(), meta: None }
    }

    fn drain(&mut self) -> Instant {
        loop {
            match self.call.poll_output() {
                Output::SendRtp(p) => self.sent.push(p.to_vec()),
                Output::Event(Event::MessageRecorded(m)) => self.meta = Some(*m),
                Output::Event(e) => self.events.push(e),
                Output::Timeout(t) => return t,
            }
        }
    }

    /// Answers and runs the clock until recording starts.
    fn answer(&mut self) {
        self.call.handle_input(Input::Answered(self.now)).unwrap();
        let mut deadline = self.drain();
        while self.call.state() != CallState::Recording {
            self.now = deadline.max(self.now);
            self.call.handle_input(Input::Tick(self.now)).unwrap();
            deadline = self.drain();
        }
    }

    fn rtp(&mut self, at: Instant, packet: &[u8]) {
        self.now = at.max(self.now);
        self.call.handle_input(Input::Rtp(self.now, packet)).unwrap();
        self.drain();
    }

    fn hangup(&mut self, after: Duration) -> MessageMeta {
        self.now += after;
        self.call.handle_input(Input::Hangup(self.now)).unwrap();
        self.drain();
        self.meta.take().unwrap()
    }
}

fn rtp(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn header_ts(p: &[u8]) -> u32 {
    u32::from_be_bytes([p[4], p[5], p[6], p[7]])
}

#[test]
fn g722_call_is_recorded_at_16_khz() {
    let id = MessageId::parse("g722").unwrap();
    let cfg = CallConfig::new(id, "+1", jiff::Timestamp::UNIX_EPOCH).with_codec(CodecKind::G722);
    assert_eq!((cfg.payload_type, cfg.sample_rate_hz()), (9, 16_000));
    let buf = SharedBuf::default();
    let spec = RecordingSpec::for_call(RecordingFormat::Wav, CodecKind::G722, 16_000);
    let mut d = Driver::new(cfg, Recording::with_spec(buf.clone(), spec).unwrap());
    d.answer();
    // The greeting and beep went out as G.722: 160 bytes and 160 clock ticks per 20 ms.
    assert!(d.sent.len() > 20);
    for w in d.sent.windows(2) {
        assert_eq!(w[0][1] & 0x7f, 9);
        if w[1].len() == 12 + 160 {
            assert_eq!(header_ts(&w[1]).wrapping_sub(header_ts(&w[0])), 160);
        }
    }
    // The caller sends 3 s of a wideband chirp.
    let source = chirp(16_000, 48_000);
    let mut enc = CodecKind::G722.encoder(16_000).unwrap();
    let start = d.now;
    for (i, frame) in source.chunks(320).enumerate() {
        let mut payload = Vec::new();
        enc.encode(frame, &mut payload);
        let at = start + Duration::from_millis(20 * i as u64);
        d.rtp(at, &rtp(9, 100 + i as u16, 5000 + 160 * i as u32, &payload));
    }
    let meta = d.hangup(Duration::from_millis(20));
    assert_eq!((meta.codec, meta.end_reason), (CodecKind::G722, EndReason::HangUp));
    let (rate, rec) = buf.wav();
    assert_eq!(rate, 16_000);
    assert!((47_000..=49_500).contains(&rec.len()), "{} samples", rec.len());
    assert_eq!(meta.duration_ms, rec.len() as u64 * 1000 / 16_000);
    let (_, corr) = best_match(&rec[16_000..20_000], &source);
    assert!(corr > 0.9, "correlation {corr}");
}

/// Encodes `source` (at 16 kHz) as Opus packets of the given frame lengths in turn.
fn opus_packets(source: &[i16], frames_ms: &[usize]) -> Vec<(u32, Vec<u8>)> {
    let mut enc = CodecKind::Opus.encoder(16_000).unwrap();
    let mut out = Vec::new();
    let (mut at, mut ts, mut k) = (0usize, 0u32, 0usize);
    while at < source.len() {
        let ms = frames_ms[k % frames_ms.len()];
        let n = 16 * ms;
        if at + n > source.len() {
            break;
        }
        let mut p = Vec::new();
        enc.encode(&source[at..at + n], &mut p);
        assert!(!p.is_empty());
        out.push((ts, p));
        ts += 48 * ms as u32;
        at += n;
        k += 1;
    }
    out
}

fn opus_call(rate: u32, frames_ms: &[usize], lose: Option<usize>) -> (MessageMeta, u32, Vec<i16>, Vec<i16>, Driver) {
    let id = MessageId::parse("opus").unwrap();
    let mut cfg = CallConfig::new(id, "+1", jiff::Timestamp::UNIX_EPOCH).with_codec(CodecKind::Opus);
    cfg.payload_type = 111;
    cfg.dtmf_payload_type = Some(110);
    cfg.opus_sample_rate_hz = rate;
    let buf = SharedBuf::default();
    let spec = RecordingSpec::for_call(RecordingFormat::Wav, CodecKind::Opus, rate);
    let mut d = Driver::new(cfg, Recording::with_spec(buf.clone(), spec).unwrap());
    d.answer();
    let source = chirp(16_000, 48_000);
    let start = d.now;
    let packets = opus_packets(&source, frames_ms);
    for (i, (ts, p)) in packets.iter().enumerate() {
        if Some(i) == lose {
            continue;
        }
        let at = start + Duration::from_micros(u64::from(*ts) * 1000 / 48);
        d.rtp(at, &rtp(111, 7 + i as u16, 90_000 + ts, p));
    }
    let meta = d.hangup(Duration::from_millis(60));
    let (wav_rate, rec) = buf.wav();
    (meta, wav_rate, rec, source, d)
}

#[test]
fn opus_call_with_mixed_frame_sizes_is_recorded_at_16_khz() {
    let (meta, rate, rec, source, d) = opus_call(16_000, &[20, 10, 60, 20, 40], None);
    assert_eq!(rate, 16_000);
    assert_eq!(meta.codec, CodecKind::Opus);
    // The greeting went out as Opus: 960 ticks per 20 ms packet.
    let opus: Vec<&Vec<u8>> = d.sent.iter().filter(|p| p[1] & 0x7f == 111).collect();
    assert!(opus.len() > 20);
    for w in opus.windows(2) {
        assert_eq!(header_ts(w[1]).wrapping_sub(header_ts(w[0])), 960);
        assert_eq!(CodecKind::Opus.samples_in(&w[0][12..]), 960);
    }
    assert_eq!(meta.media.lost, 0);
    assert!((47_000..=49_500).contains(&rec.len()), "{} samples", rec.len());
    let (_, corr) = best_match(&rec[16_000..20_000], &source);
    assert!(corr > 0.9, "correlation {corr}");
}

#[test]
fn opus_call_at_48_khz() {
    let (meta, rate, rec, _, _) = opus_call(48_000, &[20], None);
    assert_eq!(rate, 48_000);
    assert!((141_000..=148_500).contains(&rec.len()), "{} samples", rec.len());
    assert_eq!(meta.duration_ms, rec.len() as u64 / 48);
}

#[test]
fn a_lost_opus_packet_is_concealed_not_a_hole() {
    let (meta, _, rec, source, _) = opus_call(16_000, &[20], Some(60));
    assert_eq!(meta.media.lost, 1);
    assert!((47_000..=49_500).contains(&rec.len()), "{} samples", rec.len());
    // Around the lost packet (1.2 s into the source) the recording still follows the source.
    let (at, _) = best_match(&rec[16_000..17_600], &source);
    let offset = at as i64 - 16_000;
    let lost_at = (19_200 - offset) as usize;
    let around = &rec[lost_at - 160..lost_at + 480];
    let peak = around.iter().map(|s| s.unsigned_abs()).max().unwrap();
    assert!(peak > 1000, "the lost 20 ms are not silence (peak {peak})");
}

#[test]
fn opus_telephone_event_at_48_khz_finishes_the_recording() {
    let id = MessageId::parse("dtmf").unwrap();
    let mut cfg = CallConfig::new(id, "+1", jiff::Timestamp::UNIX_EPOCH).with_codec(CodecKind::Opus);
    cfg.dtmf_payload_type = Some(110);
    let buf = SharedBuf::default();
    let spec = RecordingSpec::for_call(RecordingFormat::Wav, CodecKind::Opus, 16_000);
    let mut d = Driver::new(cfg, Recording::with_spec(buf, spec).unwrap());
    d.answer();
    let t = d.now + Duration::from_millis(20);
    d.rtp(t, &rtp(110, 1, 4800, &[11, 0x80 | 10, 0x0f, 0x00]));
    let meta = d.meta.take().expect("the finish key ends the call");
    assert_eq!((meta.end_reason, meta.dtmf.as_str()), (EndReason::FinishKey, "#"));
}

#[test]
fn the_recording_must_be_at_the_call_rate() {
    let id = MessageId::parse("rate").unwrap();
    let cfg = CallConfig::new(id, "+1", jiff::Timestamp::UNIX_EPOCH).with_codec(CodecKind::G722);
    let rec = Recording::new(SharedBuf::default()).unwrap(); // 8 kHz
    assert!(Call::new(cfg, Prompt::default_greeting(), rec, Instant::now()).is_err());
    let id = MessageId::parse("rate2").unwrap();
    let mut cfg = CallConfig::new(id, "+1", jiff::Timestamp::UNIX_EPOCH).with_codec(CodecKind::Opus);
    cfg.opus_sample_rate_hz = 44_100;
    let spec = RecordingSpec { sample_rate_hz: 44_100, ..RecordingSpec::default() };
    let rec = Recording::with_spec(SharedBuf::default(), spec).unwrap();
    assert!(Call::new(cfg, Prompt::default_greeting(), rec, Instant::now()).is_err());
}
