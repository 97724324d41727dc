//! RFC 4733 telephone events (DTMF), and the digit type shared with SIP INFO.
//!
//! A sender reports one key press as a run of packets sharing one RTP timestamp (the start
//! of the event): a first packet, updates with a growing duration, and (usually) three
//! retransmitted end packets with the E bit. [`DtmfDetector`] turns such runs into exactly one
//! digit per key press, tolerating loss, reordering, missing end packets and long events
//! split into segments (RFC 4733 §2.5.1.3).

/// A DTMF key: `0`-`9`, `*`, `#`, `A`-`D`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DtmfDigit(char);

/// The keys for RFC 4733 event codes 0-15 (§3.2, table 1).
const EVENT_KEYS: [char; 16] = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D'];

impl DtmfDigit {
    /// The digit for a key character (case-insensitive for A-D); `None` for anything else.
    pub fn from_char(c: char) -> Option<Self> {
        match c {
            '0'..='9' | '*' | '#' | 'A'..='D' => Some(Self(c)),
            'a'..='d' => Some(Self(c.to_ascii_uppercase())),
            _ => None,
        }
    }

    /// The digit for an RFC 4733 event code 0-15; `None` for other events.
    pub fn from_event(code: u8) -> Option<Self> {
        EVENT_KEYS.get(usize::from(code)).copied().map(Self)
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
    ///
    /// Bytes after the first four (further events in one packet, RFC 4733 §2.5.1.5) are
    /// ignored; the reserved R bit is ignored as the RFC asks of receivers.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        match payload {
            [event, flags, d0, d1, ..] => Some(Self {
                event: *event,
                end: flags & 0x80 != 0,
                volume: flags & 0x3f,
                duration: u16::from_be_bytes([*d0, *d1]),
            }),
            _ => None,
        }
    }
}

/// How many recent events the detector remembers, to recognise late, repeated or reordered
/// packets of events other than the latest one.
const HISTORY: usize = 8;

/// What the detector remembers of one event (or one segment of a long event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    ssrc: u32,
    timestamp: u32,
    event: u8,
    /// The longest duration reported for this event so far.
    duration: u16,
    /// An end packet was seen.
    ended: bool,
}

/// Turns a stream of telephone-event packets into one digit per key press, despite repeated
/// packets, the triple end packets, lost start packets and long-event segments.
///
/// An event is identified by its (SSRC, RTP timestamp): the first packet seen of a new one
/// reports the digit (so a press whose start packet was lost still reports on its updates or
/// end packets), every later packet of it is ignored. A packet that continues a long event
/// (same event code, timestamp = previous timestamp + previous duration, previous not ended)
/// is the same key press. The last few events are remembered in a fixed-size ring, so the
/// detector never allocates.
#[derive(Debug, Clone, Default)]
pub struct DtmfDetector {
    /// Recent events, newest at `recent[(next + HISTORY - 1) % HISTORY]`.
    recent: [Option<Seen>; HISTORY],
    /// Where the next event is stored.
    next: usize,
}

impl DtmfDetector {
    /// A detector with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one telephone-event packet (its RTP SSRC, timestamp and payload); returns the
    /// digit when this packet is the first seen of a new key press.
    ///
    /// Malformed payloads (shorter than 4 bytes) and non-DTMF events (codes above 15) give
    /// `None` and leave the detector unchanged.
    pub fn on_packet(&mut self, ssrc: u32, timestamp: u32, payload: &[u8]) -> Option<DtmfDigit> {
        let ev = TelephoneEvent::parse(payload)?;
        let digit = DtmfDigit::from_event(ev.event)?;

        // A packet of an event we have already seen: a repeat, an update, an end packet or a
        // late, reordered one.
        if let Some(seen) = self.recent.iter_mut().flatten().find(|s| s.ssrc == ssrc && s.timestamp == timestamp) {
            seen.duration = seen.duration.max(ev.duration);
            seen.ended |= ev.end;
            return None;
        }

        // The next segment of a long event continues the same key press.
        let continues = self.newest_first().any(|s| {
            s.ssrc == ssrc
                && s.event == ev.event
                && !s.ended
                && s.timestamp.wrapping_add(u32::from(s.duration)) == timestamp
        });

        self.remember(Seen { ssrc, timestamp, event: ev.event, duration: ev.duration, ended: ev.end });
        if continues { None } else { Some(digit) }
    }

    /// The remembered events, newest first.
    fn newest_first(&self) -> impl Iterator<Item = Seen> + '_ {
        (1..=HISTORY).filter_map(move |back| self.recent[(self.next + HISTORY - back) % HISTORY])
    }

    fn remember(&mut self, seen: Seen) {
        if let Some(slot) = self.recent.get_mut(self.next) {
            *slot = Some(seen);
        }
        self.next = (self.next + 1) % HISTORY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(event: u8, end: bool, duration: u16) -> [u8; 4] {
        let d = duration.to_be_bytes();
        [event, if end { 0x80 | 10 } else { 10 }, d[0], d[1]]
    }

    /// Feeds `(timestamp, event, end, duration)` packets on one SSRC; returns the digits.
    fn feed(det: &mut DtmfDetector, packets: &[(u32, u8, bool, u16)]) -> String {
        packets
            .iter()
            .filter_map(|&(ts, ev, end, dur)| det.on_packet(1, ts, &payload(ev, end, dur)))
            .map(DtmfDigit::as_char)
            .collect()
    }

    /// A textbook key press: start, updates, three end packets.
    fn press(ts: u32, ev: u8) -> Vec<(u32, u8, bool, u16)> {
        vec![
            (ts, ev, false, 0),
            (ts, ev, false, 160),
            (ts, ev, false, 320),
            (ts, ev, true, 480),
            (ts, ev, true, 480),
            (ts, ev, true, 480),
        ]
    }

    #[test]
    fn digit_from_char() {
        for c in "0123456789*#ABCD".chars() {
            assert_eq!(DtmfDigit::from_char(c).map(DtmfDigit::as_char), Some(c));
        }
        for (l, u) in [('a', 'A'), ('b', 'B'), ('c', 'C'), ('d', 'D')] {
            assert_eq!(DtmfDigit::from_char(l).map(DtmfDigit::as_char), Some(u));
        }
        for c in ['e', 'E', ' ', '+', 'x', '\u{0660}', '\0'] {
            assert_eq!(DtmfDigit::from_char(c), None, "{c:?}");
        }
    }

    #[test]
    fn digit_from_event() {
        let all: String = (0..16).filter_map(DtmfDigit::from_event).map(|d| d.to_string()).collect();
        assert_eq!(all, "0123456789*#ABCD");
        assert_eq!(DtmfDigit::from_event(10).map(DtmfDigit::as_char), Some('*'));
        assert_eq!(DtmfDigit::from_event(11).map(DtmfDigit::as_char), Some('#'));
        for code in [16u8, 32, 64, 255] {
            assert_eq!(DtmfDigit::from_event(code), None);
        }
    }

    #[test]
    fn parses_telephone_event() {
        let ev = TelephoneEvent::parse(&[11, 0x80 | 0x40 | 10, 0x08, 0xc0]).expect("4 bytes");
        assert_eq!(ev, TelephoneEvent { event: 11, end: true, volume: 10, duration: 2240 });
        let ev = TelephoneEvent::parse(&[5, 63, 0xff, 0xff, 1, 2, 3, 4]).expect("8 bytes");
        assert_eq!((ev.event, ev.end, ev.volume, ev.duration), (5, false, 63, 0xffff));
        for len in 0..4 {
            assert_eq!(TelephoneEvent::parse(&[1, 2, 3, 4][..len]), None);
        }
    }

    #[test]
    fn one_digit_per_press() {
        let mut det = DtmfDetector::new();
        assert_eq!(feed(&mut det, &press(1000, 5)), "5");
    }

    #[test]
    fn consecutive_presses_of_same_key() {
        let mut det = DtmfDetector::new();
        let mut packets = press(1000, 0);
        packets.extend(press(3000, 0));
        packets.extend(press(5000, 11));
        assert_eq!(feed(&mut det, &packets), "00#");
    }

    #[test]
    fn lost_start_packet_still_reports() {
        let mut det = DtmfDetector::new();
        let packets = &press(1000, 7)[2..];
        assert_eq!(feed(&mut det, packets), "7");
        // Only the end packets arrived.
        let mut det = DtmfDetector::new();
        assert_eq!(feed(&mut det, &press(2000, 8)[3..]), "8");
    }

    #[test]
    fn missing_end_packets_do_not_block_the_next_press() {
        let mut det = DtmfDetector::new();
        let mut packets = press(1000, 1)[..3].to_vec();
        packets.extend(press(2000, 1)[..3].iter());
        assert_eq!(feed(&mut det, &packets), "11");
    }

    #[test]
    fn reordered_and_late_packets_are_ignored() {
        let mut det = DtmfDetector::new();
        let mut packets = press(1000, 1);
        packets.swap(2, 3); // end before the last update
        packets.extend(press(2000, 2));
        packets.push((1000, 1, true, 480)); // a late end packet of the first press
        assert_eq!(feed(&mut det, &packets), "12");
    }

    #[test]
    fn long_event_segments_are_one_press() {
        let mut det = DtmfDetector::new();
        let packets = [
            (1000, 9, false, 0),
            (1000, 9, false, 30000),
            (1000, 9, false, 0xffff),
            // RFC 4733 §2.5.1.3: the next segment starts where the previous one ended.
            (1000 + 0xffff, 9, false, 160),
            (1000 + 0xffff, 9, false, 0xffff),
            (1000 + 2 * 0xffff, 9, false, 320),
            (1000 + 2 * 0xffff, 9, true, 480),
            (1000 + 2 * 0xffff, 9, true, 480),
            (1000 + 2 * 0xffff, 9, true, 480),
        ];
        assert_eq!(feed(&mut det, &packets), "9");
    }

    #[test]
    fn long_event_segments_wrap_the_timestamp() {
        let mut det = DtmfDetector::new();
        let start = u32::MAX - 100;
        let next = start.wrapping_add(0xffff);
        let packets = [(start, 3, false, 0xffff), (next, 3, false, 160), (next, 3, true, 320)];
        assert_eq!(feed(&mut det, &packets), "3");
    }

    #[test]
    fn a_new_event_after_an_ended_one_is_a_new_press() {
        // Same code, timestamp equal to previous + duration, but the previous one ended:
        // a second press (a sender with no pause between presses).
        let mut det = DtmfDetector::new();
        let packets = [(1000, 4, true, 800), (1800, 4, false, 160)];
        assert_eq!(feed(&mut det, &packets), "44");
        // A different code at the continuation timestamp is a new press too.
        let mut det = DtmfDetector::new();
        let packets = [(1000, 4, false, 800), (1800, 5, false, 160)];
        assert_eq!(feed(&mut det, &packets), "45");
    }

    #[test]
    fn ssrc_is_part_of_the_identity() {
        let mut det = DtmfDetector::new();
        let p = payload(6, false, 160);
        assert_eq!(det.on_packet(1, 1000, &p).map(DtmfDigit::as_char), Some('6'));
        assert_eq!(det.on_packet(2, 1000, &p).map(DtmfDigit::as_char), Some('6'));
        assert_eq!(det.on_packet(1, 1000, &p), None);
    }

    #[test]
    fn non_dtmf_and_malformed_are_ignored() {
        let mut det = DtmfDetector::new();
        // Event 16 (flash) and others are not DTMF.
        assert_eq!(det.on_packet(1, 1000, &payload(16, false, 160)), None);
        assert_eq!(det.on_packet(1, 1000, &payload(255, true, 160)), None);
        // Short payloads.
        assert_eq!(det.on_packet(1, 2000, &[]), None);
        assert_eq!(det.on_packet(1, 2000, &[1, 0, 0]), None);
        // Neither poisoned the history: a real digit at those timestamps still reports.
        assert_eq!(det.on_packet(1, 1000, &payload(1, false, 160)).map(DtmfDigit::as_char), Some('1'));
        assert_eq!(det.on_packet(1, 2000, &payload(2, false, 160)).map(DtmfDigit::as_char), Some('2'));
    }

    #[test]
    fn history_is_bounded_and_recent_events_are_remembered() {
        let mut det = DtmfDetector::new();
        let mut digits = String::new();
        for i in 0..100u32 {
            for (ts, ev, end, dur) in press(i * 1000, u8::try_from(i % 10).unwrap_or(0)) {
                if let Some(d) = det.on_packet(1, ts, &payload(ev, end, dur)) {
                    digits.push(d.as_char());
                }
            }
            // A late duplicate of the event before the previous one.
            if i >= 2 {
                assert_eq!(det.on_packet(1, (i - 2) * 1000, &payload(0, true, 480)), None);
            }
        }
        assert_eq!(digits.len(), 100);
        assert!(digits.starts_with("0123456789"));
    }
}
