//! Arbitrary datagrams through the RTP parser, the telephone-event detector and the jitter
//! buffer. Nothing may panic, and the buffer must stay within its bounds.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use voicemail_core::jitter::{CAPACITY, JitterBuffer, JitterConfig};
use voicemail_core::rtp::RtpPacket;
use voicemail_core::rtp::dtmf::DtmfDetector;

fuzz_target!(|data: &[u8]| {
    let base = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::default(), base);
    let mut dtmf = DtmfDetector::new();
    let mut released = 0u64;
    let mut now = base;
    // Records: [len: u8][advance ms: u8][datagram bytes ...]
    let mut rest = data;
    while rest.len() >= 2 {
        let len = usize::from(rest[0]).min(rest.len() - 2);
        now += Duration::from_millis(u64::from(rest[1]));
        let datagram = &rest[2..2 + len];
        rest = &rest[2 + len..];
        if let Ok(p) = RtpPacket::parse(datagram) {
            let _ = dtmf.on_packet(p.ssrc, p.timestamp, p.payload);
            jb.push(now, p.ssrc, p.sequence, p.timestamp, p.payload_type, p.payload, p.payload_type < 96, &mut |_| released += 1);
            assert!(jb.held() <= CAPACITY);
        }
        jb.poll(now, &mut |_| released += 1);
    }
    jb.drain(&mut |_| released += 1);
    assert_eq!(jb.held(), 0);
    assert_eq!(jb.stats().released, released);
});
