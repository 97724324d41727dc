//! Audio codecs: G.711 μ-law (PCMU) and A-law (PCMA), L16, G.722 and Opus.
//!
//! [`Codec`] is the one seam between the engine and a codec. It describes the codec (SDP name,
//! RTP clock rate, audio rate, static payload type), encodes or decodes a buffer at once from a
//! fresh state, and makes the per-stream state of a call: an [`Encoder`] for the greeting and
//! beep, a [`Decoder`] for what the caller sends (with loss concealment and, for Opus, in-band
//! FEC). [`CodecKind`] names the codecs and implements [`Codec`] for each of them.
//!
//! | codec | RTP clock | audio | payload |
//! |-------|-----------|-------|---------|
//! | PCMU, PCMA | 8000 | 8 kHz | 1 byte per sample |
//! | L16 | 8000 | 8 kHz | 2 bytes per sample, big-endian |
//! | G.722 | 8000 (RFC 3551's historical value) | 16 kHz | 1 byte per 2 samples (64 kbit/s) |
//! | Opus | 48000 | 8, 16 or 48 kHz as asked ([`Codec::decoder`]) | one Opus packet of 2.5 to 120 ms |
//!
//! G.711 is our own table-driven code ([`g711`]); G.722 is the `ezk-g722` port of libg722
//! (64 kbit/s, unpacked); Opus is libopus through the `opus` crate (mono decoding: a stereo
//! packet is mixed down by libopus).

pub mod g711;
mod g722;
mod opus_codec;

use std::fmt;

/// Why a codec's stream state could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The codec does not work at this audio rate.
    #[error("{codec} does not support an audio rate of {rate} Hz")]
    UnsupportedRate {
        /// The codec.
        codec: CodecKind,
        /// The rate asked for.
        rate: u32,
    },
    /// The codec library refused (out of memory, ...).
    #[error("{codec}: {reason}")]
    Library {
        /// The codec.
        codec: CodecKind,
        /// What the library said.
        reason: String,
    },
}

/// An audio codec: describes itself for SDP and RTP, and turns 16-bit linear PCM into RTP
/// payloads and back.
///
/// [`Codec::encode`] and [`Codec::decode`] work on one buffer from a fresh codec state
/// (exactly right for G.711 and L16, which have no state; for G.722 the whole buffer is one
/// stream; for Opus the buffer is one packet). A call uses the stateful [`Encoder`] and
/// [`Decoder`] made by [`Codec::encoder`] and [`Codec::decoder`]. Implementations append to
/// the output vectors so callers can reuse buffers.
pub trait Codec: Send + Sync {
    /// The encoding name as it appears in SDP `a=rtpmap` (e.g. `PCMU`, `G722`, `opus`).
    fn name(&self) -> &'static str;
    /// The RTP clock rate in Hz (8000, or 48000 for Opus).
    fn clock_rate_hz(&self) -> u32;
    /// The codec's natural audio rate in Hz: what [`Codec::encode`] takes and
    /// [`Codec::decode`] yields (8000, 16000 for G.722, 48000 for Opus).
    fn sample_rate_hz(&self) -> u32;
    /// The static RTP payload type, if RFC 3551 assigns one.
    fn static_payload_type(&self) -> Option<u8>;
    /// How many samples (at [`Codec::sample_rate_hz`]) a payload carries; 0 when it is not a
    /// valid payload.
    fn samples_in(&self, payload: &[u8]) -> usize;
    /// Appends the encoding of `pcm` (at [`Codec::sample_rate_hz`]) to `out`, from a fresh
    /// state. Opus encodes one packet, and only when `pcm` is 2.5, 5, 10, 20, 40 or 60 ms long;
    /// otherwise nothing is appended.
    fn encode(&self, pcm: &[i16], out: &mut Vec<u8>);
    /// Appends the decoding of `payload` to `out`, from a fresh state. Never fails: every byte
    /// string is valid input (an odd trailing byte of L16 is ignored; an Opus packet that does
    /// not decode yields nothing).
    fn decode(&self, payload: &[u8], out: &mut Vec<i16>);
    /// A stateful encoder taking audio at `sample_rate_hz` (the codec's rate for the
    /// fixed-rate codecs; Opus takes 8, 12, 16, 24 or 48 kHz).
    fn encoder(&self, sample_rate_hz: u32) -> Result<Box<dyn Encoder>, CodecError>;
    /// A stateful decoder yielding audio at `sample_rate_hz` (the codec's rate for the
    /// fixed-rate codecs; Opus yields 8, 12, 16, 24 or 48 kHz).
    fn decoder(&self, sample_rate_hz: u32) -> Result<Box<dyn Decoder>, CodecError>;
}

/// The encoding side of one stream.
pub trait Encoder: Send + fmt::Debug {
    /// The audio rate it takes, in Hz.
    fn sample_rate_hz(&self) -> u32;
    /// Appends the payload of `pcm` to `out`. For Opus, `pcm` is one frame (2.5 to 60 ms);
    /// other lengths append nothing.
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>);
}

/// The decoding side of one stream.
pub trait Decoder: Send + fmt::Debug {
    /// The audio rate it yields, in Hz.
    fn sample_rate_hz(&self) -> u32;
    /// Appends the audio of one payload to `out`. Never fails and never panics, whatever the
    /// bytes: what does not decode is concealed or dropped.
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>);
    /// Appends `samples` samples standing in for lost packets (packet loss concealment;
    /// silence for codecs without it).
    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        out.resize(out.len() + samples, 0);
    }
    /// Recovers the `samples` samples just before `next` from the redundancy `next` carries
    /// (Opus in-band FEC) and appends them; false (and nothing appended) when it carries none.
    fn recover(&mut self, next: &[u8], samples: usize, out: &mut Vec<i16>) -> bool {
        let _ = (next, samples, out);
        false
    }
}

/// The codecs the engine supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodecKind {
    /// G.711 μ-law, RTP payload type 0.
    Pcmu,
    /// G.711 A-law, RTP payload type 8.
    Pcma,
    /// 16-bit big-endian linear PCM at 8 kHz (dynamic payload type).
    L16,
    /// G.722 at 64 kbit/s: 16 kHz audio, RTP clock 8000, payload type 9.
    G722,
    /// Opus (RFC 7587): RTP clock 48000, dynamic payload type.
    Opus,
}

impl CodecKind {
    /// All supported codecs.
    pub const ALL: [CodecKind; 5] =
        [CodecKind::Pcmu, CodecKind::Pcma, CodecKind::L16, CodecKind::G722, CodecKind::Opus];

    /// The lowercase name used in metadata, configuration and on command lines (`pcmu`,
    /// `pcma`, `l16`, `g722`, `opus`).
    pub fn as_str(self) -> &'static str {
        match self {
            CodecKind::Pcmu => "pcmu",
            CodecKind::Pcma => "pcma",
            CodecKind::L16 => "l16",
            CodecKind::G722 => "g722",
            CodecKind::Opus => "opus",
        }
    }

    /// The payload byte that encodes digital silence (used to pad frames); 0 for codecs
    /// without one.
    pub fn silence_byte(self) -> u8 {
        match self {
            CodecKind::Pcmu => g711::ULAW_SILENCE,
            CodecKind::Pcma => g711::ALAW_SILENCE,
            CodecKind::L16 | CodecKind::G722 | CodecKind::Opus => 0,
        }
    }

    /// Payload bytes per RTP clock tick of the fixed-rate codecs (1 for G.711 and G.722, 2 for
    /// L16); 0 for Opus, whose packets vary in size.
    pub fn bytes_per_sample(self) -> usize {
        match self {
            CodecKind::Pcmu | CodecKind::Pcma | CodecKind::G722 => 1,
            CodecKind::L16 => 2,
            CodecKind::Opus => 0,
        }
    }

    /// Whether payloads are a fixed number of bytes per clock tick (everything but Opus), so
    /// a prompt's encoding can be sliced into packets of any length.
    pub fn is_fixed_rate(self) -> bool {
        self != CodecKind::Opus
    }

    /// The audio rates a call may use with this codec: the fixed rate, or for Opus 8, 16 and
    /// 48 kHz.
    pub fn supports_sample_rate(self, rate: u32) -> bool {
        match self {
            CodecKind::Opus => matches!(rate, 8000 | 16_000 | 48_000),
            other => rate == other.sample_rate_hz(),
        }
    }
}

impl fmt::Display for CodecKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CodecKind {
    type Err = UnknownCodec;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "pcmu" | "ulaw" | "g711u" => Ok(CodecKind::Pcmu),
            "pcma" | "alaw" | "g711a" => Ok(CodecKind::Pcma),
            "l16" => Ok(CodecKind::L16),
            "g722" | "g.722" => Ok(CodecKind::G722),
            "opus" => Ok(CodecKind::Opus),
            _ => Err(UnknownCodec(s.chars().take(64).collect())),
        }
    }
}

/// A codec name that is not supported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown codec {0:?} (expected pcmu, pcma, l16, g722 or opus)")]
pub struct UnknownCodec(pub String);

/// G.711 and L16 have no state: one value serves as encoder and decoder.
#[derive(Debug, Clone, Copy)]
struct Stateless(CodecKind);

impl Encoder for Stateless {
    fn sample_rate_hz(&self) -> u32 {
        8000
    }
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) {
        self.0.encode(pcm, out);
    }
}

impl Decoder for Stateless {
    fn sample_rate_hz(&self) -> u32 {
        8000
    }
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) {
        self.0.decode(payload, out);
    }
}

impl Codec for CodecKind {
    fn name(&self) -> &'static str {
        match self {
            CodecKind::Pcmu => "PCMU",
            CodecKind::Pcma => "PCMA",
            CodecKind::L16 => "L16",
            CodecKind::G722 => "G722",
            CodecKind::Opus => "opus",
        }
    }

    fn clock_rate_hz(&self) -> u32 {
        match self {
            CodecKind::Opus => 48_000,
            _ => 8000,
        }
    }

    fn sample_rate_hz(&self) -> u32 {
        match self {
            CodecKind::Pcmu | CodecKind::Pcma | CodecKind::L16 => 8000,
            CodecKind::G722 => 16_000,
            CodecKind::Opus => 48_000,
        }
    }

    fn static_payload_type(&self) -> Option<u8> {
        match self {
            CodecKind::Pcmu => Some(0),
            CodecKind::Pcma => Some(8),
            CodecKind::G722 => Some(9),
            CodecKind::L16 | CodecKind::Opus => None,
        }
    }

    fn samples_in(&self, payload: &[u8]) -> usize {
        match self {
            CodecKind::Pcmu | CodecKind::Pcma => payload.len(),
            CodecKind::L16 => payload.len() / 2,
            CodecKind::G722 => payload.len() * 2,
            CodecKind::Opus => opus_codec::samples_in(payload, 48_000),
        }
    }

    fn encode(&self, pcm: &[i16], out: &mut Vec<u8>) {
        let start = out.len();
        match self {
            CodecKind::Pcmu => {
                out.resize(start + pcm.len(), 0);
                g711::encode_ulaw(pcm, &mut out[start..]);
            }
            CodecKind::Pcma => {
                out.resize(start + pcm.len(), 0);
                g711::encode_alaw(pcm, &mut out[start..]);
            }
            CodecKind::L16 => {
                out.reserve(pcm.len() * 2);
                for s in pcm {
                    out.extend_from_slice(&s.to_be_bytes());
                }
            }
            CodecKind::G722 => g722::G722Encoder::new().encode(pcm, out),
            CodecKind::Opus => {
                if let Ok(mut e) = opus_codec::OpusEncoder::new(48_000, opus_codec::VOICE_BITRATE) {
                    e.encode(pcm, out);
                }
            }
        }
    }

    fn decode(&self, payload: &[u8], out: &mut Vec<i16>) {
        let start = out.len();
        match self {
            CodecKind::Pcmu => {
                out.resize(start + payload.len(), 0);
                g711::decode_ulaw(payload, &mut out[start..]);
            }
            CodecKind::Pcma => {
                out.resize(start + payload.len(), 0);
                g711::decode_alaw(payload, &mut out[start..]);
            }
            CodecKind::L16 => {
                out.extend(payload.chunks_exact(2).map(|c| i16::from_be_bytes([c[0], c[1]])));
            }
            CodecKind::G722 => g722::G722Decoder::new().decode(payload, out),
            CodecKind::Opus => {
                if let Ok(mut d) = opus_codec::OpusDecoder::new(48_000) {
                    d.decode_only(payload, out);
                }
            }
        }
    }

    fn encoder(&self, sample_rate_hz: u32) -> Result<Box<dyn Encoder>, CodecError> {
        let unsupported = CodecError::UnsupportedRate { codec: *self, rate: sample_rate_hz };
        match self {
            CodecKind::Opus => {
                let mut e =
                    opus_codec::OpusEncoder::new(sample_rate_hz, opus_codec::VOICE_BITRATE).map_err(|_| unsupported)?;
                // What we send carries in-band FEC, for receivers that lose a packet.
                e.set_fec(5);
                Ok(Box::new(e))
            }
            _ if sample_rate_hz != self.sample_rate_hz() => Err(unsupported),
            CodecKind::G722 => Ok(Box::new(g722::G722Encoder::new())),
            other => Ok(Box::new(Stateless(*other))),
        }
    }

    fn decoder(&self, sample_rate_hz: u32) -> Result<Box<dyn Decoder>, CodecError> {
        let unsupported = CodecError::UnsupportedRate { codec: *self, rate: sample_rate_hz };
        match self {
            CodecKind::Opus => Ok(Box::new(opus_codec::OpusDecoder::new(sample_rate_hz).map_err(|_| unsupported)?)),
            _ if sample_rate_hz != self.sample_rate_hz() => Err(unsupported),
            CodecKind::G722 => Ok(Box::new(g722::G722Decoder::new())),
            other => Ok(Box::new(Stateless(*other))),
        }
    }
}

pub(crate) use self::opus_codec::OpusEncoder;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).
mod tests {
    use super::*;

    #[test]
    fn l16_round_trip() {
        let pcm = [0i16, 1, -1, i16::MAX, i16::MIN, 1234];
        let mut enc = Vec::new();
        CodecKind::L16.encode(&pcm, &mut enc);
        assert_eq!(enc.len(), 12);
        let mut dec = Vec::new();
        CodecKind::L16.decode(&enc, &mut dec);
        assert_eq!(dec, pcm);
    }

    #[test]
    fn l16_odd_byte_is_ignored() {
        let mut dec = Vec::new();
        CodecKind::L16.decode(&[0, 1, 2], &mut dec);
        assert_eq!(dec, [1]);
    }

    #[test]
    fn parse_names() {
        assert_eq!("PCMU".parse::<CodecKind>(), Ok(CodecKind::Pcmu));
        assert_eq!("pcma".parse::<CodecKind>(), Ok(CodecKind::Pcma));
        assert_eq!("G722".parse::<CodecKind>(), Ok(CodecKind::G722));
        assert_eq!("opus".parse::<CodecKind>(), Ok(CodecKind::Opus));
        assert!("g729".parse::<CodecKind>().is_err());
        for c in CodecKind::ALL {
            assert_eq!(c.as_str().parse::<CodecKind>(), Ok(c));
        }
    }

    #[test]
    fn rates_and_factories() {
        for c in CodecKind::ALL {
            assert!(c.supports_sample_rate(c.sample_rate_hz()) || c == CodecKind::Opus);
            let rate = if c == CodecKind::Opus { 16_000 } else { c.sample_rate_hz() };
            assert_eq!(c.decoder(rate).unwrap().sample_rate_hz(), rate, "{c}");
            assert_eq!(c.encoder(rate).unwrap().sample_rate_hz(), rate, "{c}");
        }
        assert!(CodecKind::G722.decoder(8000).is_err());
        assert!(CodecKind::Opus.decoder(44_100).is_err());
    }

    /// A sine at `freq` Hz, `n` samples at `rate`.
    fn sine(freq: f64, rate: u32, n: usize) -> Vec<i16> {
        (0..n).map(|i| ((i as f64 * freq * std::f64::consts::TAU / f64::from(rate)).sin() * 8000.0) as i16).collect()
    }

    /// Best normalised correlation of `b` against `a` over small lags (codec delay).
    fn best_correlation(a: &[i16], b: &[i16], max_lag: usize) -> f64 {
        (0..max_lag)
            .map(|lag| {
                let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
                for (x, y) in a.iter().zip(&b[lag..]) {
                    let (x, y) = (f64::from(*x), f64::from(*y));
                    ab += x * y;
                    aa += x * x;
                    bb += y * y;
                }
                ab / (aa * bb).sqrt().max(1.0)
            })
            .fold(f64::MIN, f64::max)
    }

    #[test]
    fn g722_round_trip_keeps_wideband_audio() {
        // 5 kHz is above what 8 kHz audio can carry.
        let pcm = sine(5000.0, 16_000, 3200);
        let mut enc = Vec::new();
        let mut e = CodecKind::G722.encoder(16_000).unwrap();
        for frame in pcm.chunks(320) {
            e.encode(frame, &mut enc);
        }
        assert_eq!(enc.len(), 1600, "64 kbit/s: one byte per two samples");
        let mut d = CodecKind::G722.decoder(16_000).unwrap();
        let mut dec = Vec::new();
        for p in enc.chunks(160) {
            d.decode(p, &mut dec);
        }
        assert_eq!(dec.len(), 3200);
        assert!(best_correlation(&pcm[..2400], &dec, 64) > 0.9);
        assert_eq!(CodecKind::G722.samples_in(&enc[..160]), 320);
    }

    #[test]
    fn opus_round_trip_and_loss() {
        let pcm = sine(440.0, 16_000, 16_000);
        let mut e = CodecKind::Opus.encoder(16_000).unwrap();
        let mut packets = Vec::new();
        for frame in pcm.chunks(320) {
            let mut p = Vec::new();
            e.encode(frame, &mut p);
            assert!(!p.is_empty() && p.len() < 200);
            packets.push(p);
        }
        assert_eq!(CodecKind::Opus.samples_in(&packets[0]), 960, "20 ms at the 48 kHz clock");
        let mut d = CodecKind::Opus.decoder(16_000).unwrap();
        let mut dec = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            if i == 20 {
                // A lost packet: FEC from the next one, or concealment.
                if !d.recover(&packets[21], 320, &mut dec) {
                    d.conceal(320, &mut dec);
                }
                continue;
            }
            d.decode(p, &mut dec);
        }
        assert_eq!(dec.len(), 16_000);
        assert!(best_correlation(&pcm[..12_000], &dec, 200) > 0.9);
        // Garbage never panics and yields whole frames or nothing.
        let mut out = Vec::new();
        d.decode(&[0xff; 7], &mut out);
        d.decode(&[], &mut out);
        d.conceal(123, &mut out);
        assert!(out.len() >= 123);
    }
}
