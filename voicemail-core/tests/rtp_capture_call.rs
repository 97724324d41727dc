//! Real RTP captures from other implementations (../shared/corpus/rtp), replayed with their
//! own timing through a whole Call: the recording's length follows the captured stream's
//! timestamps, 40 ms A-law packets and an SSRC change included, and DTMF in a real call is
//! reported digit by digit.
#![allow(clippy::unwrap_used)]

mod common;
mod harness;

use std::time::Duration;

use harness::*;
use voicemail_core::rtp::RtpPacket;
use voicemail_core::{CallState, Codec, CodecKind};

/// Replays the RTP packets of a capture (from the first packet's SSRC's point of view) into a
/// recording call; returns (recording samples, captured timestamp span in samples, message).
fn replay(name: &str, codec: CodecKind) -> Option<(usize, u64, voicemail_core::MessageMeta)> {
    let path = common::corpus_or_skip(name)?.join("rtp").join(name);
    let datagrams = common::pcap::udp_payloads(&path).unwrap();
    let mut cfg = TestCall::config().with_codec(codec);
    cfg.silence_timeout = None;
    let mut t = TestCall::new(cfg);
    t.answer();
    t.run_until_state(CallState::Recording, Duration::from_secs(5));
    let s = t.entered(CallState::Recording).unwrap();
    let t0 = datagrams[0].time_us;
    let (mut first_ts, mut last_end) = (None::<u32>, 0u64);
    for d in &datagrams {
        let at = s + Duration::from_micros(d.time_us - t0);
        if let Ok(p) = RtpPacket::parse(&d.payload)
            && p.payload_type == codec.static_payload_type().unwrap()
        {
            let f = *first_ts.get_or_insert(p.timestamp);
            last_end = last_end.max(u64::from(p.timestamp.wrapping_sub(f)) + p.payload.len() as u64);
        }
        t.rtp(at, &d.payload);
    }
    let end = t.now + Duration::from_millis(20);
    t.hangup(end);
    Some((t.wav.samples().len(), last_end, t.message()))
}

#[test]
fn sipp_g711a_capture_records_its_length() {
    let Some((samples, span, m)) = replay("sipp/g711a.pcap", CodecKind::Pcma) else { return };
    assert_eq!(m.media.malformed, 0);
    // At most 60 ms of trailing silence (the hang-up 20 ms after the last packet) beyond the span.
    assert!(samples as u64 >= span && samples as u64 <= span + 480, "{samples} samples for a {span}-sample stream");
}

#[test]
fn asterisk_40ms_alaw_capture_records_its_length() {
    let Some((samples, span, m)) = replay("asterisk-testsuite/40msalaw.pcap", CodecKind::Pcma) else { return };
    assert!(
        samples as u64 >= span && samples as u64 <= span + 480,
        "{samples} samples for a {span}-sample stream; {:?}",
        m.media
    );
}

#[test]
fn ulaw_call_with_dtmf_reports_the_digits() {
    let Some((_, _, m)) = replay("asterisk-testsuite/ulaw-2013785496.pcap", CodecKind::Pcmu) else { return };
    assert_eq!(m.dtmf, "2013785496");
}
