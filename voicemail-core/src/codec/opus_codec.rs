//! Opus (RFC 6716, RFC 7587) through libopus (the `opus` crate, a bundled libopus 1.6).
//!
//! Mono in both directions: a stereo packet from the caller is mixed down by libopus. The
//! decoder conceals lost packets (libopus PLC) and recovers the packet just before a gap from
//! the in-band FEC the next packet carries; DTX pauses (no packets, the timestamp jumps) are
//! silence, filled by the reader of the timestamps. Nothing here panics on any payload.

use std::fmt;

use opus::{Application, Bitrate, Channels};

/// Bitrate of what we send (greeting, beep) and record: wideband speech.
pub(super) const VOICE_BITRATE: i32 = 24_000;

/// The longest Opus packet, 120 ms, in samples at 48 kHz.
const MAX_PACKET_SAMPLES_48K: usize = 5760;

/// The largest encoded frame (RFC 6716 §3.2.1: 1275 bytes per frame).
const MAX_FRAME_BYTES: usize = 1275;

/// Samples (at `rate`) that a packet carries, 0 when it is not a valid packet.
pub(crate) fn samples_in(payload: &[u8], rate: u32) -> usize {
    if payload.is_empty() {
        return 0;
    }
    match opus::packet::get_nb_samples(payload, rate) {
        Ok(n) if n <= MAX_PACKET_SAMPLES_48K => n,
        _ => 0,
    }
}

/// An Opus encoder for mono voice.
pub(crate) struct OpusEncoder {
    inner: opus::Encoder,
    rate: u32,
    buf: Vec<u8>,
}

impl OpusEncoder {
    /// An encoder taking `rate` Hz audio (8, 12, 16, 24 or 48 kHz) at `bitrate` bit/s.
    pub(crate) fn new(rate: u32, bitrate: i32) -> Result<Self, String> {
        let mut inner = opus::Encoder::new(rate, Channels::Mono, Application::Voip).map_err(|e| e.to_string())?;
        inner.set_bitrate(Bitrate::Bits(bitrate)).map_err(|e| e.to_string())?;
        Ok(Self { inner, rate, buf: vec![0; MAX_FRAME_BYTES * 3] })
    }

    /// The encoder's look-ahead in samples at 48 kHz (the Ogg Opus pre-skip).
    pub(crate) fn lookahead_48k(&mut self) -> u32 {
        let la = self.inner.get_lookahead().unwrap_or(0).max(0) as u32;
        la * (48_000 / self.rate)
    }

    /// Enables in-band FEC and tells the encoder how much loss to expect.
    pub(crate) fn set_fec(&mut self, loss_percent: i32) {
        let _ = self.inner.set_inband_fec(true);
        let _ = self.inner.set_packet_loss_perc(loss_percent);
    }
}

impl fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpusEncoder").field("rate", &self.rate).finish_non_exhaustive()
    }
}

impl super::Encoder for OpusEncoder {
    fn sample_rate_hz(&self) -> u32 {
        self.rate
    }

    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) {
        // Legal frame lengths: 2.5, 5, 10, 20, 40 or 60 ms.
        let per_2_5ms = self.rate as usize / 400;
        if pcm.is_empty()
            || !pcm.len().is_multiple_of(per_2_5ms)
            || ![1, 2, 4, 8, 16, 24].contains(&(pcm.len() / per_2_5ms))
        {
            return;
        }
        if let Ok(n) = self.inner.encode(pcm, &mut self.buf) {
            out.extend_from_slice(&self.buf[..n]);
        }
    }
}

/// An Opus decoder yielding mono audio.
pub(super) struct OpusDecoder {
    inner: opus::Decoder,
    rate: u32,
    pcm: Vec<i16>,
    /// Samples of the last decoded frame: the length of a concealed one.
    last_frame: usize,
}

impl OpusDecoder {
    pub(super) fn new(rate: u32) -> Result<Self, String> {
        if !matches!(rate, 8000 | 12_000 | 16_000 | 24_000 | 48_000) {
            return Err(format!("unsupported rate {rate} Hz"));
        }
        let inner = opus::Decoder::new(rate, Channels::Mono).map_err(|e| e.to_string())?;
        let max = MAX_PACKET_SAMPLES_48K * rate as usize / 48_000;
        Ok(Self { inner, rate, pcm: vec![0; max], last_frame: rate as usize / 50 })
    }

    /// Decodes `payload`; on a bad packet appends nothing.
    pub(super) fn decode_only(&mut self, payload: &[u8], out: &mut Vec<i16>) -> bool {
        if samples_in(payload, self.rate) == 0 {
            return false;
        }
        match self.inner.decode(payload, &mut self.pcm, false) {
            Ok(n) if n > 0 => {
                let n = n.min(self.pcm.len());
                out.extend_from_slice(&self.pcm[..n]);
                self.last_frame = n;
                true
            }
            _ => false,
        }
    }

    /// The longest concealment libopus does in one call, a multiple of 2.5 ms.
    fn conceal_step(&self, left: usize) -> usize {
        let q = self.rate as usize / 400;
        let step = self.last_frame.min(self.rate as usize / 50).max(q);
        let step = left.min(step);
        step - step % q
    }
}

impl fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpusDecoder").field("rate", &self.rate).finish_non_exhaustive()
    }
}

impl super::Decoder for OpusDecoder {
    fn sample_rate_hz(&self) -> u32 {
        self.rate
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) {
        if !self.decode_only(payload, out) && !payload.is_empty() {
            // A corrupt packet: conceal one frame in its place.
            let n = self.last_frame;
            self.conceal(n, out);
        }
    }

    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        let mut left = samples;
        while left > 0 {
            let step = self.conceal_step(left);
            if step == 0 {
                break;
            }
            match self.inner.decode(&[], &mut self.pcm[..step], false) {
                Ok(n) if n > 0 => {
                    let n = n.min(step);
                    out.extend_from_slice(&self.pcm[..n]);
                    left -= n;
                }
                _ => break,
            }
        }
        // What libopus cannot conceal (less than 2.5 ms, or a failure) is silence.
        out.resize(out.len() + left, 0);
    }

    fn recover(&mut self, next: &[u8], samples: usize, out: &mut Vec<i16>) -> bool {
        let q = self.rate as usize / 400;
        if samples == 0 || !samples.is_multiple_of(q) || samples > self.pcm.len() || samples_in(next, self.rate) == 0 {
            return false;
        }
        // FEC data exists only in SILK or hybrid packets (TOC configurations 0..=15).
        if next[0] >> 3 > 15 {
            return false;
        }
        match self.inner.decode(next, &mut self.pcm[..samples], true) {
            Ok(n) if n == samples => {
                out.extend_from_slice(&self.pcm[..n]);
                true
            }
            _ => false,
        }
    }
}
