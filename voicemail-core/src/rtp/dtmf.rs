//! RFC 4733 telephone events (DTMF), and the digit type shared with SIP INFO.
//!
//! STUB: the API below is fixed; a helper fills in the bodies and tests.

/// A DTMF key: `0`-`9`, `*`, `#`, `A`-`D`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DtmfDigit(char);

impl DtmfDigit {
    /// The digit for a key character (case-insensitive for A-D); `None` for anything else.
    pub fn from_char(_c: char) -> Option<Self> {
        unimplemented!()
    }

    /// The digit for an RFC 4733 event code 0-15; `None` for other events.
    pub fn from_event(_code: u8) -> Option<Self> {
        unimplemented!()
    }

    /// The key character.
    pub fn as_char(self) -> char {
        self.0
    }
}

impl std::fmt::Display for DtmfDigit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One RFC 4733 telephone-event payload (4 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code (0-15 are DTMF).
    pub event: u8,
    /// The E bit: this packet ends the event.
    pub end: bool,
    /// Volume in -dBm0 (0-63).
    pub volume: u8,
    /// Duration so far, in timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parses a payload; `None` when shorter than 4 bytes.
    pub fn parse(_payload: &[u8]) -> Option<Self> {
        unimplemented!()
    }
}

/// Turns a stream of telephone-event packets into one digit per key press, despite repeated
/// packets, the triple end packets, lost start packets and long-event segments.
#[derive(Debug, Clone, Default)]
pub struct DtmfDetector {
    _private: (),
}

impl DtmfDetector {
    /// A detector with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one telephone-event packet (its RTP SSRC, timestamp and payload); returns the
    /// digit when this packet is the first seen of a new key press.
    pub fn on_packet(&mut self, _ssrc: u32, _timestamp: u32, _payload: &[u8]) -> Option<DtmfDigit> {
        unimplemented!()
    }
}
