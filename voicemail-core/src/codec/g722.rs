//! G.722 at 64 kbit/s (ITU-T G.722 mode 1), through the `ezk-g722` port of libg722.
//!
//! 16 kHz audio, one payload byte per two samples; the RTP clock runs at 8000 Hz (RFC 3551
//! §4.5.2 keeps the historical value), so one byte is one clock tick. The encoder carries an odd
//! trailing sample over to the next call, so any frame length works.

use std::fmt;

use ezk_g722::libg722::{Bitrate, decoder, encoder};

/// A G.722 encoder (16 kHz in, 64 kbit/s out).
pub(super) struct G722Encoder {
    inner: encoder::Encoder,
    carry: Option<i16>,
    scratch: Vec<i16>,
}

impl G722Encoder {
    pub(super) fn new() -> Self {
        Self { inner: encoder::Encoder::new(Bitrate::Mode1_64000, false, false), carry: None, scratch: Vec::new() }
    }
}

impl fmt::Debug for G722Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("G722Encoder").finish_non_exhaustive()
    }
}

impl super::Encoder for G722Encoder {
    fn sample_rate_hz(&self) -> u32 {
        16_000
    }

    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) {
        self.scratch.clear();
        self.scratch.extend(self.carry.take());
        self.scratch.extend_from_slice(pcm);
        if self.scratch.len() % 2 == 1 {
            self.carry = self.scratch.pop();
        }
        if !self.scratch.is_empty() {
            out.extend_from_slice(&self.inner.encode(&self.scratch));
        }
    }
}

/// A G.722 decoder (64 kbit/s in, 16 kHz out).
pub(super) struct G722Decoder {
    inner: decoder::Decoder,
}

impl G722Decoder {
    pub(super) fn new() -> Self {
        Self { inner: decoder::Decoder::new(Bitrate::Mode1_64000, false, false) }
    }
}

impl fmt::Debug for G722Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("G722Decoder").finish_non_exhaustive()
    }
}

impl super::Decoder for G722Decoder {
    fn sample_rate_hz(&self) -> u32 {
        16_000
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) {
        if !payload.is_empty() {
            out.extend_from_slice(&self.inner.decode(payload));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Decoder, Encoder};
    use proptest::prelude::*;

    proptest! {
        /// Any bytes decode to two samples per byte without panicking.
        #[test]
        fn any_payload_decodes(payload in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut d = G722Decoder::new();
            let mut out = Vec::new();
            d.decode(&payload, &mut out);
            prop_assert_eq!(out.len(), payload.len() * 2);
        }

        /// Any samples encode without panicking, one byte per two samples overall.
        #[test]
        fn any_pcm_encodes(chunks in proptest::collection::vec(proptest::collection::vec(any::<i16>(), 0..50), 0..10)) {
            let mut e = G722Encoder::new();
            let mut out = Vec::new();
            let total: usize = chunks.iter().map(Vec::len).sum();
            for c in &chunks {
                e.encode(c, &mut out);
            }
            prop_assert_eq!(out.len(), total / 2);
        }
    }
}
