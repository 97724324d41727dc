//! RTP (RFC 3550): parsing incoming packets (with rtp-rs), the outgoing packetizer for the
//! greeting and beep, and RFC 4733 telephone events in [`dtmf`].
//!
//! Parsing borrows the datagram and never allocates or panics, whatever the bytes; the
//! packetizer writes fixed 12-byte headers into an array. Neither has a clock or a random
//! number generator: the packetizer's SSRC and start values come from a caller-provided seed.

pub mod dtmf;

use rtp_rs::RtpReader;

/// Why a datagram is not an RTP packet we can use. Never surfaced to the call's user: the
/// call drops and counts such datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtpError {
    /// Shorter than a header, wrong version, bad padding, CSRC or extension lengths.
    #[error("malformed RTP packet")]
    Malformed,
    /// An RTCP packet (payload type 64..=95 in the second byte, RFC 5761) on the RTP port.
    #[error("RTCP packet on the RTP port")]
    Rtcp,
}

/// The RTP version this crate speaks (RFC 3550 §5.1).
const RTP_VERSION: u8 = 2;

/// Length of the fixed RTP header, without CSRCs or extension.
const FIXED_HEADER_LEN: usize = 12;

/// Length of the RTCP common header (RFC 3550 §6.4.1): the least an RTCP packet can be.
const RTCP_HEADER_LEN: usize = 4;

/// A parsed incoming RTP packet borrowing the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// Payload type (7 bits).
    pub payload_type: u8,
    /// The marker bit.
    pub marker: bool,
    /// Sequence number.
    pub sequence: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// The payload, with padding, CSRCs and header extension removed.
    pub payload: &'a [u8],
}

impl<'a> RtpPacket<'a> {
    /// Parses a datagram. Never panics, whatever the bytes.
    ///
    /// RTCP multiplexed on the RTP port (RFC 5761 §4: a version-2 packet whose second byte
    /// is 192..=223, i.e. RTCP packet types SR, RR, SDES, BYE, APP, ...) is reported as
    /// [`RtpError::Rtcp`]; everything else that is not a well-formed version-2 RTP packet
    /// (too short, other version, CSRC list or header extension past the end, padding count
    /// of zero or larger than what follows the headers) is [`RtpError::Malformed`].
    pub fn parse(datagram: &'a [u8]) -> Result<Self, RtpError> {
        let (first, second) = match datagram {
            [first, second, ..] => (*first, *second),
            _ => return Err(RtpError::Malformed),
        };
        if first >> 6 != RTP_VERSION {
            return Err(RtpError::Malformed);
        }
        if (192..=223).contains(&second) {
            return if datagram.len() >= RTCP_HEADER_LEN { Err(RtpError::Rtcp) } else { Err(RtpError::Malformed) };
        }
        if datagram.len() < FIXED_HEADER_LEN {
            return Err(RtpError::Malformed);
        }
        // rtp-rs validates the CSRC count, the extension length and the padding count
        // against the buffer length up front, so the accessors below cannot go out of bounds.
        let reader = RtpReader::new(datagram).map_err(|_| RtpError::Malformed)?;
        Ok(Self {
            payload_type: reader.payload_type(),
            marker: reader.mark(),
            sequence: u16::from(reader.sequence_number()),
            timestamp: reader.timestamp(),
            ssrc: reader.ssrc(),
            payload: reader.payload(),
        })
    }
}

/// One step of splitmix64 (Steele, Lea, Flood 2014): a small, well-mixed, deterministic
/// generator, used only to spread the caller's seed over SSRC, sequence and timestamp.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The high 32 bits of a 64-bit value.
fn high_u32(x: u64) -> u32 {
    // Lossless: after the shift the value fits in 32 bits.
    (x >> 32) as u32
}

/// Builds outgoing RTP headers for one stream: SSRC, sequence and timestamp start values are
/// derived from a caller-provided seed (the core has no randomness of its own); the marker bit
/// is set on the first packet (and after [`Packetizer::mark_talkspurt`]).
#[derive(Debug, Clone)]
pub struct Packetizer {
    payload_type: u8,
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    marker_pending: bool,
}

impl Packetizer {
    /// A packetizer for `payload_type` whose SSRC/sequence/timestamp start from `seed`.
    ///
    /// Only the low 7 bits of `payload_type` are used. The same seed always gives the same
    /// SSRC, initial sequence number and initial timestamp (RFC 3550 asks for random start
    /// values; the caller supplies the entropy through the seed).
    pub fn new(payload_type: u8, seed: u64) -> Self {
        let mut state = seed;
        let ssrc = high_u32(splitmix64(&mut state));
        let sequence = high_u32(splitmix64(&mut state)).to_be_bytes();
        let timestamp = high_u32(splitmix64(&mut state));
        Self {
            payload_type: payload_type & 0x7f,
            ssrc,
            sequence: u16::from_be_bytes([sequence[0], sequence[1]]),
            timestamp,
            marker_pending: true,
        }
    }

    /// The header of the next packet carrying `samples` samples; advances sequence and timestamp.
    ///
    /// Version 2, no padding, no extension, no CSRCs; the marker bit is set on the first
    /// packet and on the first one after [`Packetizer::mark_talkspurt`]. The sequence number
    /// then advances by one and the timestamp by `samples`, both wrapping.
    pub fn next_header(&mut self, samples: u32) -> [u8; 12] {
        let marker = if self.marker_pending { 0x80 } else { 0 };
        self.marker_pending = false;
        let seq = self.sequence.to_be_bytes();
        let ts = self.timestamp.to_be_bytes();
        let ssrc = self.ssrc.to_be_bytes();
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(samples);
        [
            RTP_VERSION << 6,
            marker | self.payload_type,
            seq[0],
            seq[1],
            ts[0],
            ts[1],
            ts[2],
            ts[3],
            ssrc[0],
            ssrc[1],
            ssrc[2],
            ssrc[3],
        ]
    }

    /// Changes the payload type of the next packets (a codec change at the same clock rate:
    /// the stream goes on with its SSRC, sequence and timestamp). Only the low 7 bits are used.
    pub fn set_payload_type(&mut self, payload_type: u8) {
        self.payload_type = payload_type & 0x7f;
    }

    /// Sets the marker bit on the next packet (start of a talkspurt).
    pub fn mark_talkspurt(&mut self) {
        self.marker_pending = true;
    }

    /// Advances the timestamp by `samples` without sending (a pause in the outgoing stream).
    ///
    /// The sequence number is unchanged: no packet was sent, so none is missing.
    pub fn skip(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
    }

    /// The stream's SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A valid version-2 header: PT 0, seq 0x1234, ts 0x01020304, SSRC 0xdeadbeef.
    fn header(first: u8, second: u8) -> Vec<u8> {
        vec![first, second, 0x12, 0x34, 0x01, 0x02, 0x03, 0x04, 0xde, 0xad, 0xbe, 0xef]
    }

    #[test]
    fn parses_plain_packet() {
        let mut d = header(0x80, 0x80 | 8);
        d.extend_from_slice(&[1, 2, 3]);
        let p = RtpPacket::parse(&d).expect("valid packet");
        assert_eq!(
            p,
            RtpPacket {
                payload_type: 8,
                marker: true,
                sequence: 0x1234,
                timestamp: 0x0102_0304,
                ssrc: 0xdead_beef,
                payload: &[1, 2, 3],
            }
        );
    }

    #[test]
    fn empty_payload_is_fine() {
        let d = header(0x80, 0);
        let p = RtpPacket::parse(&d).expect("header only");
        assert!(p.payload.is_empty());
    }

    #[test]
    fn rejects_short_datagrams() {
        let d = header(0x80, 0);
        for len in 0..FIXED_HEADER_LEN {
            assert_eq!(RtpPacket::parse(&d[..len]), Err(RtpError::Malformed), "{len}");
        }
    }

    #[test]
    fn rejects_other_versions() {
        for v in [0u8, 1, 3] {
            let d = header(v << 6, 0);
            assert_eq!(RtpPacket::parse(&d), Err(RtpError::Malformed), "v{v}");
        }
    }

    #[test]
    fn recognises_rtcp() {
        // An empty receiver report (PT 201) and a sender report (PT 200) head.
        for pt in [192u8, 200, 201, 202, 203, 204, 223] {
            let d = [0x80, pt, 0x00, 0x01, 0, 0, 0, 1];
            assert_eq!(RtpPacket::parse(&d), Err(RtpError::Rtcp), "pt {pt}");
        }
        // Just outside the range: RTP payload types 63/96 with the marker bit.
        for second in [191u8, 224] {
            let d = header(0x80, second);
            assert!(RtpPacket::parse(&d).is_ok(), "{second}");
        }
        // Too short even for an RTCP header.
        assert_eq!(RtpPacket::parse(&[0x80, 200]), Err(RtpError::Malformed));
        // Version 1 "RTCP" is just garbage.
        assert_eq!(RtpPacket::parse(&[0x40, 200, 0, 1, 0, 0, 0, 0]), Err(RtpError::Malformed));
    }

    #[test]
    fn strips_csrcs() {
        let mut d = header(0x82, 0);
        d.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]);
        d.extend_from_slice(&[9, 9]);
        let p = RtpPacket::parse(&d).expect("two CSRCs");
        assert_eq!(p.payload, &[9, 9]);
    }

    #[test]
    fn rejects_truncated_csrc_list() {
        let mut d = header(0x8f, 0); // 15 CSRCs announced
        d.extend_from_slice(&[0; 56]); // 14 present
        assert_eq!(RtpPacket::parse(&d), Err(RtpError::Malformed));
        d.extend_from_slice(&[0; 4]);
        assert_eq!(RtpPacket::parse(&d).map(|p| p.payload.len()), Ok(0));
    }

    #[test]
    fn strips_header_extension() {
        let mut d = header(0x90, 0);
        d.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01, 1, 2, 3, 4]);
        d.extend_from_slice(&[7, 7, 7]);
        let p = RtpPacket::parse(&d).expect("one-word extension");
        assert_eq!(p.payload, &[7, 7, 7]);
    }

    #[test]
    fn strips_csrc_and_extension_together() {
        let mut d = header(0x91, 0);
        d.extend_from_slice(&[0, 0, 0, 1]);
        d.extend_from_slice(&[0x10, 0x00, 0x00, 0x00]); // zero-length extension
        d.push(5);
        let p = RtpPacket::parse(&d).expect("CSRC + empty extension");
        assert_eq!(p.payload, &[5]);
    }

    #[test]
    fn rejects_bad_extension_lengths() {
        // Extension header itself missing.
        let mut d = header(0x90, 0);
        d.extend_from_slice(&[0xbe, 0xde]);
        assert_eq!(RtpPacket::parse(&d), Err(RtpError::Malformed));
        // Extension announces 2 words, 1 present.
        let mut d = header(0x90, 0);
        d.extend_from_slice(&[0xbe, 0xde, 0x00, 0x02, 1, 2, 3, 4]);
        assert_eq!(RtpPacket::parse(&d), Err(RtpError::Malformed));
        // Maximal length announced on a short packet.
        let mut d = header(0x90, 0);
        d.extend_from_slice(&[0xbe, 0xde, 0xff, 0xff]);
        assert_eq!(RtpPacket::parse(&d), Err(RtpError::Malformed));
    }

    #[test]
    fn strips_padding() {
        let mut d = header(0xa0, 0);
        d.extend_from_slice(&[1, 2, 3, 0, 0, 3]);
        let p = RtpPacket::parse(&d).expect("3 bytes of padding");
        assert_eq!(p.payload, &[1, 2, 3]);
        // Padding may take everything after the header.
        let mut d = header(0xa0, 0);
        d.extend_from_slice(&[0, 0, 0, 4]);
        assert_eq!(RtpPacket::parse(&d).map(|p| p.payload.len()), Ok(0));
    }

    #[test]
    fn rejects_bad_padding() {
        // Padding count of zero.
        let mut d = header(0xa0, 0);
        d.extend_from_slice(&[1, 2, 0]);
        assert_eq!(RtpPacket::parse(&d), Err(RtpError::Malformed));
        // Larger than what follows the header.
        let mut d = header(0xa0, 0);
        d.extend_from_slice(&[1, 2, 4]);
        assert_eq!(RtpPacket::parse(&d), Err(RtpError::Malformed));
        // Padding flag but nothing after the header for the count.
        let d = header(0xa0, 0);
        assert_eq!(RtpPacket::parse(&d), Err(RtpError::Malformed));
        // Padding may not eat into the CSRC list.
        let mut d = header(0xa1, 0);
        d.extend_from_slice(&[0, 0, 0, 5]);
        assert_eq!(RtpPacket::parse(&d), Err(RtpError::Malformed));
    }

    #[test]
    fn packetizer_header_parses_back() {
        let mut p = Packetizer::new(0, 42);
        let h1 = p.next_header(160);
        let h2 = p.next_header(160);
        let a = RtpPacket::parse(&h1).expect("first header");
        let b = RtpPacket::parse(&h2).expect("second header");
        assert_eq!(a.payload_type, 0);
        assert!(a.marker, "marker on the first packet");
        assert!(!b.marker);
        assert_eq!(a.ssrc, p.ssrc());
        assert_eq!(b.ssrc, p.ssrc());
        assert_eq!(b.sequence, a.sequence.wrapping_add(1));
        assert_eq!(b.timestamp, a.timestamp.wrapping_add(160));
        assert!(a.payload.is_empty());
        assert_eq!(h1[0], 0x80, "V=2, no padding, extension or CSRC");
    }

    #[test]
    fn packetizer_masks_payload_type() {
        let mut p = Packetizer::new(0x80 | 8, 1);
        let h = p.next_header(160);
        let a = RtpPacket::parse(&h).expect("header");
        assert_eq!(a.payload_type, 8);
    }

    /// The packetizer's next header, parsed back: (marker, sequence, timestamp, SSRC).
    fn next(p: &mut Packetizer, samples: u32) -> (bool, u16, u32, u32) {
        let h = p.next_header(samples);
        let a = RtpPacket::parse(&h).expect("own header parses");
        (a.marker, a.sequence, a.timestamp, a.ssrc)
    }

    #[test]
    fn packetizer_talkspurt_and_skip() {
        let mut p = Packetizer::new(8, 7);
        let (_, seq0, ts0, _) = next(&mut p, 160);
        p.skip(800);
        p.mark_talkspurt();
        let (marker, seq1, ts1, _) = next(&mut p, 160);
        assert!(marker);
        assert_eq!(ts1, ts0.wrapping_add(960));
        assert_eq!(seq1, seq0.wrapping_add(1), "skip sends nothing");
        let (marker, seq2, ts2, _) = next(&mut p, 160);
        assert!(!marker);
        assert_eq!(seq2, seq1.wrapping_add(1));
        assert_eq!(ts2, ts1.wrapping_add(160));
    }

    #[test]
    fn packetizer_wraps() {
        let mut p = Packetizer::new(0, 3);
        p.sequence = u16::MAX;
        p.timestamp = u32::MAX - 100;
        let ssrc = p.ssrc();
        assert_eq!(next(&mut p, 160), (true, u16::MAX, u32::MAX - 100, ssrc));
        assert_eq!(next(&mut p, 160), (false, 0, 59, ssrc));
        p.skip(u32::MAX);
        assert_eq!(next(&mut p, 160), (false, 1, 218, ssrc));
    }

    #[test]
    fn packetizer_is_deterministic() {
        let mut a = Packetizer::new(0, 0xfeed);
        let mut b = Packetizer::new(0, 0xfeed);
        assert_eq!(a.ssrc(), b.ssrc());
        for _ in 0..3 {
            assert_eq!(a.next_header(160), b.next_header(160));
        }
        let mut ssrcs: Vec<u32> = (0..1000u64).map(|s| Packetizer::new(0, s).ssrc()).collect();
        ssrcs.sort_unstable();
        ssrcs.dedup();
        assert_eq!(ssrcs.len(), 1000, "different seeds give different SSRCs");
        // Start values are spread, not all zero for seed 0.
        let (_, seq, ts, ssrc) = next(&mut Packetizer::new(0, 0), 0);
        assert!(seq != 0 && ts != 0 && ssrc != 0);
        // Neighbouring seeds give unrelated start values.
        let (_, seq1, ts1, _) = next(&mut Packetizer::new(0, 1), 0);
        assert!(seq != seq1 && ts != ts1);
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = RtpPacket::parse(&bytes);
        }

        #[test]
        fn parse_never_panics_on_v2(
            first in 0x80u8..=0xbf,
            second in any::<u8>(),
            rest in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            let mut d = vec![first, second];
            d.extend_from_slice(&rest);
            if let Ok(p) = RtpPacket::parse(&d) {
                prop_assert!(p.payload.len() + FIXED_HEADER_LEN <= d.len());
            }
        }

        #[test]
        fn packetizer_roundtrip(pt in 0u8..128, seed in any::<u64>(), samples in any::<u32>()) {
            let mut p = Packetizer::new(pt, seed);
            let h = p.next_header(samples);
            let parsed = RtpPacket::parse(&h);
            // PT 64..=95 with the marker is indistinguishable from RTCP (RFC 5761 §4),
            // which is why such payload types must not be used for RTP.
            if (64..=95).contains(&pt) {
                prop_assert_eq!(parsed, Err(RtpError::Rtcp));
            } else {
                let a = parsed.map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(a.payload_type, pt);
                prop_assert_eq!(a.ssrc, p.ssrc());
            }
        }
    }
}
