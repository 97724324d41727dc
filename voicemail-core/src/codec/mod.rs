//! Audio codecs: G.711 μ-law (PCMU) and A-law (PCMA), and L16.
//!
//! [`Codec`] is the extension point for codecs added later (G.722, Opus); the call engine
//! dispatches on [`CodecKind`] so the per-packet path has no virtual call.

pub mod g711;

use std::fmt;

/// An audio codec that turns 16-bit linear PCM into an RTP payload and back.
///
/// Implementations append to the output vectors so callers can reuse buffers and never
/// allocate per packet once the buffers have grown.
pub trait Codec: Send + Sync {
    /// The encoding name as it appears in SDP `a=rtpmap` (e.g. `PCMU`).
    fn name(&self) -> &'static str;
    /// The RTP clock rate in Hz.
    fn clock_rate_hz(&self) -> u32;
    /// The static RTP payload type, if RFC 3551 assigns one.
    fn static_payload_type(&self) -> Option<u8>;
    /// How many samples a payload of `len` bytes carries.
    fn samples_in(&self, len: usize) -> usize;
    /// Appends the encoding of `pcm` to `out`.
    fn encode(&self, pcm: &[i16], out: &mut Vec<u8>);
    /// Appends the decoding of `payload` to `out`. Never fails: every byte string is valid
    /// input (an odd trailing byte of L16 is ignored).
    fn decode(&self, payload: &[u8], out: &mut Vec<i16>);
}

/// The codecs the engine supports today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodecKind {
    /// G.711 μ-law, RTP payload type 0.
    Pcmu,
    /// G.711 A-law, RTP payload type 8.
    Pcma,
    /// 16-bit big-endian linear PCM at 8 kHz (dynamic payload type).
    L16,
}

impl CodecKind {
    /// All supported codecs.
    pub const ALL: [CodecKind; 3] = [CodecKind::Pcmu, CodecKind::Pcma, CodecKind::L16];

    /// The lowercase name used in metadata and on command lines (`pcmu`, `pcma`, `l16`).
    pub fn as_str(self) -> &'static str {
        match self {
            CodecKind::Pcmu => "pcmu",
            CodecKind::Pcma => "pcma",
            CodecKind::L16 => "l16",
        }
    }

    /// The payload byte that encodes digital silence (used to pad frames).
    pub fn silence_byte(self) -> u8 {
        match self {
            CodecKind::Pcmu => g711::ULAW_SILENCE,
            CodecKind::Pcma => g711::ALAW_SILENCE,
            CodecKind::L16 => 0,
        }
    }

    /// Bytes per sample in the payload.
    pub fn bytes_per_sample(self) -> usize {
        match self {
            CodecKind::Pcmu | CodecKind::Pcma => 1,
            CodecKind::L16 => 2,
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
            _ => Err(UnknownCodec(s.to_owned())),
        }
    }
}

/// A codec name that is not supported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown codec {0:?} (expected pcmu, pcma or l16)")]
pub struct UnknownCodec(pub String);

impl Codec for CodecKind {
    fn name(&self) -> &'static str {
        match self {
            CodecKind::Pcmu => "PCMU",
            CodecKind::Pcma => "PCMA",
            CodecKind::L16 => "L16",
        }
    }

    fn clock_rate_hz(&self) -> u32 {
        8000
    }

    fn static_payload_type(&self) -> Option<u8> {
        match self {
            CodecKind::Pcmu => Some(0),
            CodecKind::Pcma => Some(8),
            CodecKind::L16 => None,
        }
    }

    fn samples_in(&self, len: usize) -> usize {
        len / self.bytes_per_sample()
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
        }
    }
}

#[cfg(test)]
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
        assert!("opus".parse::<CodecKind>().is_err());
    }
}
