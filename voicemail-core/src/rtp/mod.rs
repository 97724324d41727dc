//! RTP (RFC 3550): parsing incoming packets (with rtp-rs), the outgoing packetizer for the
//! greeting and beep, and RFC 4733 telephone events in [`dtmf`].
//!
//! STUB: the API below is fixed; a helper fills in the bodies and tests.

pub mod dtmf;

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
    pub fn parse(_datagram: &'a [u8]) -> Result<Self, RtpError> {
        unimplemented!()
    }
}

/// Builds outgoing RTP headers for one stream: SSRC, sequence and timestamp start values are
/// derived from a caller-provided seed (the core has no randomness of its own); the marker bit
/// is set on the first packet (and after [`Packetizer::mark_talkspurt`]).
#[derive(Debug, Clone)]
pub struct Packetizer {
    _private: (),
}

impl Packetizer {
    /// A packetizer for `payload_type` whose SSRC/sequence/timestamp start from `seed`.
    pub fn new(_payload_type: u8, _seed: u64) -> Self {
        unimplemented!()
    }

    /// The header of the next packet carrying `samples` samples; advances sequence and timestamp.
    pub fn next_header(&mut self, _samples: u32) -> [u8; 12] {
        unimplemented!()
    }

    /// Sets the marker bit on the next packet (start of a talkspurt).
    pub fn mark_talkspurt(&mut self) {
        unimplemented!()
    }

    /// Advances the timestamp by `samples` without sending (a pause in the outgoing stream).
    pub fn skip(&mut self, _samples: u32) {
        unimplemented!()
    }

    /// The stream's SSRC.
    pub fn ssrc(&self) -> u32 {
        unimplemented!()
    }
}
