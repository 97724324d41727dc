//! Jitter buffer: puts one RTP stream back in order for recording.
//!
//! A voicemail recorder needs no low-latency playout, only the right audio in the right order,
//! so the buffer holds a few packets to let late ones slot in, then releases frames in sequence
//! order through a callback. It
//! - reorders within [`JitterConfig::depth`] packets or [`JitterConfig::max_delay`] of waiting;
//! - drops duplicates and packets that arrive after their slot was released, and counts them;
//! - extends 16-bit sequence numbers, so wrap-around is seamless (timestamps are handed on
//!   as-is: the reader computes gaps with wrapping arithmetic);
//! - treats an SSRC change or a sequence jump beyond RFC 3550's `MAX_DROPOUT`/`MAX_MISORDER` as
//!   a new stream: what was held is released first, then the new stream starts;
//! - starts a stream at the first packet that arrives: an earlier packet overtaken by it is
//!   dropped as late (20 ms at the very start of a stream);
//! - bounds its memory: [`CAPACITY`] slots, and only as many payload buffers as packets were
//!   ever held at once (a buffer goes back to a spare list when its frame is released), so a
//!   steady stream allocates nothing after the first few packets and holds two or three.
//!
//! Gaps are not filled here: every released [`Frame`] carries its RTP timestamp and how many
//! packets were lost just before it, and the reader fills the difference (silence, or the
//! codec's concealment and FEC) so a recording's length follows the sender's clock. Nothing here
//! depends on the frame length: packets of 10 to 120 ms, and a mix of them (Opus changes its
//! frame size at will), are ordered by sequence number alone.

use std::time::{Duration, Instant};

/// Number of packet slots: the most packets held at once, and the widest reordering span.
pub const CAPACITY: usize = 32;
/// RFC 3550 A.1: a forward sequence jump larger than this starts a new stream.
const MAX_DROPOUT: i64 = 3000;
/// RFC 3550 A.1: a packet this far behind the highest seen starts a new stream.
const MAX_MISORDER: i64 = 100;
/// Payloads larger than this are not stored (no RTP payload over UDP gets near it).
const MAX_PAYLOAD: usize = 1500;

/// How long the buffer waits for a missing packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// Packets held before a missing one is given up (at least 1, at most 32, the buffer's
    /// slots).
    pub depth: usize,
    /// How long a held packet waits for a missing predecessor before it is given up.
    pub max_delay: Duration,
}

impl Default for JitterConfig {
    fn default() -> Self {
        Self { depth: 6, max_delay: Duration::from_millis(200) }
    }
}

/// A frame released in order.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// The packet's RTP timestamp.
    pub timestamp: u32,
    /// The packet's RTP payload type (a call whose codec changed decodes each frame with the
    /// codec of its payload type).
    pub payload_type: u8,
    /// The packet's payload (empty for non-audio placeholders).
    pub payload: &'a [u8],
    /// False for packets that only hold a place in the sequence (telephone events, comfort
    /// noise, unknown payload types): they carry no audio to record.
    pub audio: bool,
    /// The first frame of a stream (the first ever, or after an SSRC change or restart).
    pub new_stream: bool,
    /// Sequence numbers given up as lost just before this frame (0 when it follows its
    /// predecessor): the reader may conceal them, or recover the last one from this frame's
    /// redundancy (Opus FEC).
    pub lost_before: u64,
    /// When the packet arrived.
    pub arrival: Instant,
}

/// What happened to a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Stored (and possibly already released).
    Accepted,
    /// The same sequence number was already received: dropped.
    Duplicate,
    /// Its slot had already been released: dropped.
    Late,
    /// The payload was implausibly large: dropped.
    Oversized,
}

/// Counters kept by the buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Late packets dropped.
    pub late: u64,
    /// Sequence numbers given up as lost.
    pub lost: u64,
    /// SSRC changes.
    pub ssrc_changes: u64,
    /// Sequence discontinuities treated as a new stream.
    pub restarts: u64,
    /// Frames released.
    pub released: u64,
}

#[derive(Debug, Clone)]
struct Slot {
    /// Extended sequence number last stored here (also remembered after release, to tell a
    /// duplicate from a late packet).
    ext: u64,
    full: bool,
    audio: bool,
    timestamp: u32,
    payload_type: u8,
    arrival: Instant,
    /// The held packet's payload; empty (no buffer) while the slot is free.
    payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Stream {
    ssrc: u32,
    /// Extended sequence number released next.
    next: u64,
    /// Highest extended sequence number seen.
    highest: u64,
    /// No frame of this stream has been released yet.
    fresh: bool,
}

/// The jitter buffer for one incoming stream. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct JitterBuffer {
    config: JitterConfig,
    slots: Vec<Slot>,
    /// Payload buffers of released frames, for the next packets.
    spare: Vec<Vec<u8>>,
    stream: Option<Stream>,
    held: usize,
    stats: JitterStats,
}

impl JitterBuffer {
    /// An empty buffer created at `now`. `config.depth` is clamped to `1..=CAPACITY`.
    pub fn new(config: JitterConfig, now: Instant) -> Self {
        let config = JitterConfig { depth: config.depth.clamp(1, CAPACITY), ..config };
        let slot = Slot {
            ext: u64::MAX,
            full: false,
            audio: false,
            timestamp: 0,
            payload_type: 0,
            arrival: now,
            payload: Vec::new(),
        };
        Self {
            config,
            slots: vec![slot; CAPACITY],
            spare: Vec::new(),
            stream: None,
            held: 0,
            stats: JitterStats::default(),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// The SSRC of the current stream.
    pub fn ssrc(&self) -> Option<u32> {
        self.stream.map(|s| s.ssrc)
    }

    /// Packets held, waiting for release.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Adds a packet, then releases every frame that became ready through `emit`.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        now: Instant,
        ssrc: u32,
        sequence: u16,
        timestamp: u32,
        payload_type: u8,
        payload: &[u8],
        audio: bool,
        emit: &mut impl FnMut(Frame<'_>),
    ) -> Push {
        if payload.len() > MAX_PAYLOAD {
            return Push::Oversized;
        }
        let ext = match self.stream {
            None => self.start(ssrc, sequence),
            Some(s) if s.ssrc != ssrc => {
                self.drain(emit);
                self.stats.ssrc_changes += 1;
                self.start(ssrc, sequence)
            }
            Some(s) => {
                let delta = i64::from(sequence.wrapping_sub(s.highest as u16) as i16);
                if !(-MAX_MISORDER..=MAX_DROPOUT).contains(&delta) {
                    self.drain(emit);
                    self.stats.restarts += 1;
                    self.start(ssrc, sequence)
                } else {
                    s.highest.saturating_add_signed(delta)
                }
            }
        };
        let Some(mut stream) = self.stream else { return Push::Late };
        let idx = (ext % CAPACITY as u64) as usize;
        if ext < stream.next {
            return if self.slots[idx].ext == ext {
                self.stats.duplicates += 1;
                Push::Duplicate
            } else {
                self.stats.late += 1;
                Push::Late
            };
        }
        if self.slots[idx].full && self.slots[idx].ext == ext {
            self.stats.duplicates += 1;
            return Push::Duplicate;
        }
        // Make room: a packet further ahead than the buffer spans pushes the oldest out.
        while ext >= stream.next + CAPACITY as u64 {
            self.release_one(&mut stream, emit);
        }
        let slot = &mut self.slots[idx];
        slot.ext = ext;
        slot.full = true;
        slot.audio = audio;
        slot.timestamp = timestamp;
        slot.payload_type = payload_type;
        slot.arrival = now;
        if slot.payload.capacity() == 0 {
            slot.payload = self.spare.pop().unwrap_or_default();
        }
        slot.payload.clear();
        slot.payload.extend_from_slice(payload);
        self.held += 1;
        stream.highest = stream.highest.max(ext);
        self.stream = Some(stream);
        self.poll(now, emit);
        Push::Accepted
    }

    /// Releases the frames that are ready at `now` (in order, or after giving up on a gap).
    pub fn poll(&mut self, now: Instant, emit: &mut impl FnMut(Frame<'_>)) {
        let Some(mut stream) = self.stream else { return };
        while self.held > 0 {
            let idx = (stream.next % CAPACITY as u64) as usize;
            let ready = self.slots[idx].full && self.slots[idx].ext == stream.next;
            let give_up = !ready
                && (self.held >= self.config.depth
                    || self
                        .oldest_arrival()
                        .is_some_and(|t| now.saturating_duration_since(t) >= self.config.max_delay));
            if !ready && !give_up {
                break;
            }
            self.release_one(&mut stream, emit);
        }
        self.stream = Some(stream);
    }

    /// Releases everything held, in order (end of call, or before a new stream).
    pub fn drain(&mut self, emit: &mut impl FnMut(Frame<'_>)) {
        let Some(mut stream) = self.stream else { return };
        while self.held > 0 {
            self.release_one(&mut stream, emit);
        }
        self.stream = Some(stream);
    }

    /// When [`poll`](Self::poll) should next be called to give up on a gap, if anything waits.
    pub fn deadline(&self) -> Option<Instant> {
        if self.held == 0 {
            return None;
        }
        self.oldest_arrival().map(|t| t + self.config.max_delay)
    }

    fn start(&mut self, ssrc: u32, sequence: u16) -> u64 {
        // Offset so that extended numbers never go below zero when packets arrive out of order.
        let ext = (1u64 << 32) + u64::from(sequence);
        self.stream = Some(Stream { ssrc, next: ext, highest: ext, fresh: true });
        for slot in &mut self.slots {
            slot.ext = u64::MAX;
            slot.full = false;
            if slot.payload.capacity() > 0 {
                self.spare.push(std::mem::take(&mut slot.payload));
            }
        }
        self.held = 0;
        ext
    }

    fn oldest_arrival(&self) -> Option<Instant> {
        self.slots.iter().filter(|s| s.full).map(|s| s.arrival).min()
    }

    /// Releases the frame at `stream.next`, or skips to the next held one, counting the loss.
    fn release_one(&mut self, stream: &mut Stream, emit: &mut impl FnMut(Frame<'_>)) {
        let idx = (stream.next % CAPACITY as u64) as usize;
        let mut lost_before = 0;
        if !(self.slots[idx].full && self.slots[idx].ext == stream.next) {
            // Skip the gap up to the lowest held packet.
            let lowest = self.slots.iter().filter(|s| s.full).map(|s| s.ext).min();
            match lowest {
                Some(l) if l > stream.next => {
                    lost_before = l - stream.next;
                    self.stats.lost += lost_before;
                    stream.next = l;
                }
                _ => {
                    stream.next += 1;
                    return;
                }
            }
        }
        let idx = (stream.next % CAPACITY as u64) as usize;
        let slot = &mut self.slots[idx];
        slot.full = false;
        self.held -= 1;
        self.stats.released += 1;
        let new_stream = std::mem::replace(&mut stream.fresh, false);
        emit(Frame {
            timestamp: slot.timestamp,
            payload_type: slot.payload_type,
            payload: &slot.payload,
            audio: slot.audio,
            new_stream,
            lost_before: if new_stream { 0 } else { lost_before },
            arrival: slot.arrival,
        });
        self.spare.push(std::mem::take(&mut slot.payload));
        stream.next += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn collect(jb: &mut JitterBuffer, now: Instant, seq: u16, ts: u32, out: &mut Vec<(u32, bool)>) -> Push {
        jb.push(now, 1, seq, ts, 0, &[seq as u8], true, &mut |f| out.push((f.timestamp, f.new_stream)))
    }

    #[test]
    fn in_order_is_released_at_once() {
        let t = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default(), t);
        let mut out = Vec::new();
        for i in 0..5u16 {
            collect(&mut jb, t, i, u32::from(i) * 160, &mut out);
        }
        assert_eq!(out.len(), 5);
        assert!(out[0].1 && !out[1].1, "only the first frame starts a stream");
        assert_eq!(jb.held(), 0);
    }

    /// Payload buffers allocated: in slots and on the spare list.
    fn buffers(jb: &JitterBuffer) -> usize {
        jb.slots.iter().filter(|s| s.payload.capacity() > 0).count() + jb.spare.len()
    }

    #[test]
    fn payload_buffers_are_only_as_many_as_packets_held_at_once() {
        let t = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default(), t);
        let mut payloads = Vec::new();
        let mut push = |jb: &mut JitterBuffer, seq: u16| {
            let payload = [seq as u8; 160];
            jb.push(t, 1, seq, u32::from(seq) * 160, 0, &payload, true, &mut |f| payloads.push(f.payload.to_vec()))
        };
        // A steady stream, well past the slots' wrap-around: one buffer, reused.
        for seq in 0..200u16 {
            push(&mut jb, seq);
        }
        assert_eq!(buffers(&jb), 1);
        // Three packets held behind a gap, then the gap filled: four buffers from then on.
        for seq in [201u16, 202, 203, 200, 204] {
            push(&mut jb, seq);
        }
        assert_eq!(jb.held(), 0);
        assert_eq!(buffers(&jb), 4);
        assert_eq!(payloads.len(), 205);
        for (seq, p) in payloads.iter().enumerate() {
            assert_eq!(p, &vec![seq as u8; 160], "frame {seq} carries its own payload");
        }
    }

    #[test]
    fn reordered_packet_slots_in() {
        let t = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default(), t);
        let mut out = Vec::new();
        for seq in [0u16, 2, 3, 1, 4] {
            collect(&mut jb, t, seq, u32::from(seq) * 160, &mut out);
        }
        let ts: Vec<u32> = out.iter().map(|o| o.0).collect();
        assert_eq!(ts, [0, 160, 320, 480, 640]);
        assert_eq!(jb.stats().lost, 0);
    }

    #[test]
    fn gap_is_given_up_after_depth_or_delay() {
        let t = Instant::now();
        let cfg = JitterConfig { depth: 3, max_delay: Duration::from_millis(100) };
        let mut jb = JitterBuffer::new(cfg, t);
        let mut out = Vec::new();
        collect(&mut jb, t, 0, 0, &mut out);
        collect(&mut jb, t, 2, 320, &mut out);
        assert_eq!(out.len(), 1, "waits for 1");
        assert_eq!(jb.deadline(), Some(t + Duration::from_millis(100)));
        jb.poll(t + Duration::from_millis(100), &mut |f| out.push((f.timestamp, f.new_stream)));
        assert_eq!(out.len(), 2);
        assert_eq!(jb.stats().lost, 1);
        // Late arrival of 1 is dropped and counted.
        assert_eq!(collect(&mut jb, t, 1, 160, &mut out), Push::Late);
        // Depth: three held packets with a gap in front give up at once.
        collect(&mut jb, t, 4, 640, &mut out);
        collect(&mut jb, t, 5, 800, &mut out);
        assert_eq!(out.len(), 2);
        collect(&mut jb, t, 6, 960, &mut out);
        assert_eq!(out.len(), 5);
    }

    #[test]
    fn duplicates_are_dropped() {
        let t = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default(), t);
        let mut out = Vec::new();
        collect(&mut jb, t, 10, 0, &mut out);
        assert_eq!(collect(&mut jb, t, 10, 0, &mut out), Push::Duplicate);
        collect(&mut jb, t, 12, 320, &mut out);
        assert_eq!(collect(&mut jb, t, 12, 320, &mut out), Push::Duplicate);
        assert_eq!(jb.stats().duplicates, 2);
    }

    #[test]
    fn ssrc_change_drains_and_restarts() {
        let t = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default(), t);
        let mut out = Vec::new();
        collect(&mut jb, t, 0, 0, &mut out);
        collect(&mut jb, t, 2, 320, &mut out); // held, waiting for 1
        jb.push(t, 2, 5000, 9999, 0, &[1], true, &mut |f| out.push((f.timestamp, f.new_stream)));
        assert_eq!(out, [(0, true), (320, false), (9999, true)]);
        assert_eq!(jb.stats().ssrc_changes, 1);
    }

    #[test]
    fn far_jump_is_a_new_stream() {
        let t = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default(), t);
        let mut out = Vec::new();
        collect(&mut jb, t, 0, 0, &mut out);
        collect(&mut jb, t, 30_000, 5, &mut out);
        assert_eq!(jb.stats().restarts, 1);
        assert_eq!(out.last(), Some(&(5, true)));
    }

    proptest! {
        /// Whatever arrives: memory stays bounded, released frames come out in increasing
        /// extended sequence order, and everything held is released by drain.
        #[test]
        fn invariants(pkts in proptest::collection::vec((0u16..80, 0u64..50), 0..400)) {
            let t0 = Instant::now();
            let mut jb = JitterBuffer::new(JitterConfig::default(), t0);
            let mut now = t0;
            let mut released = Vec::new();
            for (seq, dt) in pkts {
                now += Duration::from_millis(dt);
                let r = jb.push(now, 7, seq, u32::from(seq) * 160, 0, &[0; 160], true, &mut |f| released.push(f.timestamp / 160));
                prop_assert!(jb.held() <= CAPACITY);
                prop_assert!(r != Push::Oversized);
                jb.poll(now, &mut |f| released.push(f.timestamp / 160));
            }
            jb.drain(&mut |f| released.push(f.timestamp / 160));
            prop_assert_eq!(jb.held(), 0);
            prop_assert!(released.windows(2).all(|w| w[0] < w[1]), "in order: {:?}", released);
            prop_assert_eq!(jb.stats().released, released.len() as u64);
        }
    }
}
