//! Real RTP captures through `RtpPacket::parse` and `DtmfDetector`: every SIPp and Asterisk
//! RFC 2833/4733 capture yields exactly the digits a person pressed (one per key press,
//! despite repeated, reordered and missing end packets), and every packet of every capture in
//! the corpus, and every truncation of it, parses or is rejected without a panic.
//!
//! Also checks the test pcap reader on synthetic captures in the formats the corpus lacks.
//! When the corpus is absent the corpus tests print "skipped: corpus not found at ..." and pass.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::pcap::{self, UdpDatagram};
use voicemail_core::rtp::dtmf::DtmfDetector;
use voicemail_core::rtp::{RtpError, RtpPacket};

/// The telephone-event payload type in every DTMF capture of the corpus: each one's SDP maps
/// `a=rtpmap:101 telephone-event/8000`, and all their packets are PT 101 with 4-byte payloads
/// (checked by `dtmf_captures_carry_only_telephone_events`).
const TELEPHONE_EVENT_PT: u8 = 101;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The digits a detector reports for the telephone-event packets of a capture.
fn digits(path: &Path) -> Result<String, Box<dyn std::error::Error>> {
    let mut detector = DtmfDetector::new();
    let mut out = String::new();
    for datagram in pcap::udp_payloads(path)? {
        let Ok(packet) = RtpPacket::parse(&datagram.payload) else {
            continue;
        };
        if packet.payload_type != TELEPHONE_EVENT_PT {
            continue;
        }
        if let Some(digit) = detector.on_packet(packet.ssrc, packet.timestamp, packet.payload) {
            out.push(digit.as_char());
        }
    }
    Ok(out)
}

#[test]
fn sipp_captures_give_one_digit_each() -> TestResult {
    let Some(corpus) = common::corpus_or_skip("sipp_captures_give_one_digit_each") else {
        return Ok(());
    };
    let dir = corpus.join("rtp/sipp");
    let mut cases: Vec<(String, String)> = (0..=9).map(|d| (format!("dtmf_2833_{d}.pcap"), d.to_string())).collect();
    cases.push(("dtmf_2833_star.pcap".into(), "*".into()));
    cases.push(("dtmf_2833_pound.pcap".into(), "#".into()));
    for (file, expected) in cases {
        // Each: a start packet, 6 updates, and the end packet sent three times.
        let got = digits(&dir.join(&file))?;
        eprintln!("{file}: {got:?}");
        assert_eq!(got, expected, "{file}");
    }
    Ok(())
}

#[test]
fn asterisk_broken_dtmf_gives_1000() -> TestResult {
    let Some(corpus) = common::corpus_or_skip("asterisk_broken_dtmf_gives_1000") else {
        return Ok(());
    };
    // Four key presses (timestamps 3659342064, ...346624, ...349264, ...351584): 1, 0, 0, 0.
    // The capture is "broken" on purpose: in the first three presses the first end packet
    // overtakes the last update (sequence 8318 arrives before 8317), the start packets carry
    // a duration of 320 instead of 0 and there is no pause marker between the three zeros.
    // A correct detector reports each press once, so the repeated zero is three digits and
    // the late update after an end packet reports nothing.
    let got = digits(&corpus.join("rtp/asterisk-testsuite/broken_dtmf.pcap"))?;
    eprintln!("broken_dtmf.pcap: {got:?}");
    assert_eq!(got, "1000");
    Ok(())
}

#[test]
fn asterisk_presses_without_end_packets_still_report() -> TestResult {
    let Some(corpus) = common::corpus_or_skip("asterisk_presses_without_end_packets_still_report") else {
        return Ok(());
    };
    // Start and update packets only, the end packets are missing. The digit is known from
    // the first packet; a detector that waited for the E bit would report nothing.
    for (file, expected) in [("dtmf_2833_1_noend.pcap", "1"), ("dtmf_2833_3_noend.pcap", "3")] {
        let got = digits(&corpus.join("rtp/asterisk-testsuite").join(file))?;
        eprintln!("{file}: {got:?}");
        assert_eq!(got, expected, "{file}");
    }
    Ok(())
}

#[test]
fn asterisk_ulaw_call_with_ten_digits() -> TestResult {
    let Some(corpus) = common::corpus_or_skip("asterisk_ulaw_call_with_ten_digits") else {
        return Ok(());
    };
    // PCMU audio interleaved with ten RFC 4733 presses; the file is named after the number.
    let got = digits(&corpus.join("rtp/asterisk-testsuite/ulaw-2013785496.pcap"))?;
    eprintln!("ulaw-2013785496.pcap: {got:?}");
    assert_eq!(got, "2013785496");
    Ok(())
}

#[test]
fn dtmf_captures_carry_only_telephone_events() -> TestResult {
    let Some(corpus) = common::corpus_or_skip("dtmf_captures_carry_only_telephone_events") else {
        return Ok(());
    };
    let mut files: Vec<PathBuf> =
        pcaps(&corpus.join("rtp/sipp"))?.into_iter().filter(|p| p.to_string_lossy().contains("dtmf_2833")).collect();
    for name in ["broken_dtmf", "dtmf_2833_1_noend", "dtmf_2833_3_noend"] {
        files.push(corpus.join(format!("rtp/asterisk-testsuite/{name}.pcap")));
    }
    assert_eq!(files.len(), 15);
    for file in files {
        let datagrams = pcap::udp_payloads(&file)?;
        assert!(!datagrams.is_empty(), "{}", file.display());
        for d in datagrams {
            let p = RtpPacket::parse(&d.payload)?;
            assert_eq!(p.payload_type, TELEPHONE_EVENT_PT, "{}", file.display());
            assert_eq!(p.payload.len(), 4, "{}", file.display());
        }
    }
    Ok(())
}

/// Every `*.pcap` under `dir`, recursively, sorted.
fn pcaps(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "pcap") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    parsed: usize,
    rtcp: usize,
    malformed: usize,
}

fn classify(datagrams: &[UdpDatagram]) -> Counts {
    let mut c = Counts::default();
    for d in datagrams {
        match RtpPacket::parse(&d.payload) {
            Ok(_) => c.parsed += 1,
            Err(RtpError::Rtcp) => c.rtcp += 1,
            Err(_) => c.malformed += 1,
        }
    }
    c
}

#[test]
fn every_packet_of_every_capture_parses_without_panic() -> TestResult {
    let Some(corpus) = common::corpus_or_skip("every_packet_of_every_capture_parses_without_panic") else {
        return Ok(());
    };
    let rtp_dir = corpus.join("rtp");
    let mut table = BTreeMap::new();
    for file in pcaps(&rtp_dir)? {
        let datagrams = pcap::udp_payloads(&file)?;
        let counts = classify(&datagrams);
        // Every prefix of every datagram too (a capture cut short, a truncated send), and the
        // detector over every payload whatever its payload type: none of it may panic.
        let mut detector = DtmfDetector::new();
        for d in &datagrams {
            for len in 0..=d.payload.len() {
                if let Ok(p) = RtpPacket::parse(&d.payload[..len]) {
                    assert!(p.payload.len() <= len);
                    let _ = detector.on_packet(p.ssrc, p.timestamp, p.payload);
                }
            }
        }
        let name = file.strip_prefix(&rtp_dir)?.to_string_lossy().into_owned();
        eprintln!(
            "{name}: {} datagrams, {} parsed, {} rejected ({} RTCP, {} malformed)",
            datagrams.len(),
            counts.parsed,
            counts.rtcp + counts.malformed,
            counts.rtcp,
            counts.malformed
        );
        table.insert(name, (datagrams.len(), counts));
    }
    assert_eq!(table.len(), 21, "the corpus has 21 RTP captures");

    let expect = |name: &str, total: usize, parsed: usize, rtcp: usize| {
        let counts = Counts { parsed, rtcp, malformed: 0 };
        assert_eq!(table.get(name), Some(&(total, counts)), "{name}");
    };
    for f in ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "star", "pound"] {
        expect(&format!("sipp/dtmf_2833_{f}.pcap"), 10, 10, 0);
    }
    expect("sipp/g711a.pcap", 236, 236, 0);
    expect("asterisk-testsuite/broken_dtmf.pcap", 28, 28, 0);
    expect("asterisk-testsuite/dtmf_2833_1_noend.pcap", 7, 7, 0);
    expect("asterisk-testsuite/dtmf_2833_3_noend.pcap", 7, 7, 0);
    expect("asterisk-testsuite/ssrc1.pcap", 1, 1, 0);
    expect("asterisk-testsuite/ssrc2.pcap", 2, 2, 0);
    expect("asterisk-testsuite/40msalaw.pcap", 826, 826, 0);
    expect("asterisk-testsuite/ulaw-2013785496.pcap", 974, 974, 0);
    // AST-2017-012: 274 PCMU packets plus two RTCP sender reports (second byte 200, RFC
    // 5761 range) sent to the RTCP port; parse recognises them as RTCP.
    expect("asterisk-testsuite/crash-27382.pcap", 276, 274, 2);
    Ok(())
}

#[test]
fn rtcp_in_crash_capture_is_recognised() -> TestResult {
    let Some(corpus) = common::corpus_or_skip("rtcp_in_crash_capture_is_recognised") else {
        return Ok(());
    };
    let datagrams = pcap::udp_payloads(&corpus.join("rtp/asterisk-testsuite/crash-27382.pcap"))?;
    let rtcp: Vec<&UdpDatagram> =
        datagrams.iter().filter(|d| RtpPacket::parse(&d.payload) == Err(RtpError::Rtcp)).collect();
    assert_eq!(rtcp.len(), 2);
    for d in rtcp {
        assert_eq!(d.payload.get(1), Some(&200), "sender report");
        assert_eq!(d.src_port % 2, 1, "sent from an RTCP port");
    }
    Ok(())
}

// ---- The pcap reader itself, on synthetic captures ----

/// A UDP/IPv4 packet (20-byte header plus `options`) from port 5004 to 6000.
fn ipv4_udp(payload: &[u8], options: &[u8]) -> Vec<u8> {
    let ihl = 20 + options.len();
    let total = ihl + 8 + payload.len();
    let mut p = vec![0x40 | u8::try_from(ihl / 4).unwrap_or(5), 0];
    p.extend_from_slice(&u16::try_from(total).unwrap_or(0).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    p.extend_from_slice(options);
    p.extend_from_slice(&udp(payload));
    p
}

fn ipv6_udp(payload: &[u8]) -> Vec<u8> {
    let u = udp(payload);
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&u16::try_from(u.len()).unwrap_or(0).to_be_bytes());
    p.extend_from_slice(&[17, 64]);
    p.extend_from_slice(&[0; 32]);
    p.extend_from_slice(&u);
    p
}

fn udp(payload: &[u8]) -> Vec<u8> {
    let mut u = vec![0x13, 0x8c, 0x17, 0x70];
    u.extend_from_slice(&u16::try_from(8 + payload.len()).unwrap_or(0).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

fn ethernet(ethertype: u16, vlan: bool, packet: &[u8]) -> Vec<u8> {
    let mut f = vec![0; 12];
    if vlan {
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x2a]);
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(packet);
    // Ethernet pads short frames to 60 bytes; the reader must not return the padding.
    if f.len() < 60 {
        f.resize(60, 0xee);
    }
    f
}

/// A classic pcap file; `big_endian`/`nanos` choose the magic.
fn capture(big_endian: bool, nanos: bool, link_type: u32, frames: &[Vec<u8>]) -> Vec<u8> {
    let w32 = |v: u32| {
        if big_endian { v.to_be_bytes() } else { v.to_le_bytes() }
    };
    let w16 = |v: u16| {
        if big_endian { v.to_be_bytes() } else { v.to_le_bytes() }
    };
    let mut f = Vec::new();
    f.extend_from_slice(&w32(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
    f.extend_from_slice(&w16(2));
    f.extend_from_slice(&w16(4));
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&w32(65535));
    f.extend_from_slice(&w32(link_type));
    for (i, frame) in frames.iter().enumerate() {
        let frac = if nanos { 250_000_000 } else { 250_000 };
        f.extend_from_slice(&w32(1000 + u32::try_from(i).unwrap_or(0)));
        f.extend_from_slice(&w32(frac));
        let len = u32::try_from(frame.len()).unwrap_or(0);
        f.extend_from_slice(&w32(len));
        f.extend_from_slice(&w32(len));
        f.extend_from_slice(frame);
    }
    f
}

#[test]
fn pcap_reader_handles_link_types_and_byte_orders() -> TestResult {
    let payload = [0x80, 0x00, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0xaa];
    let arp = ethernet(0x0806, false, &[0; 28]);
    let tcp = {
        let mut p = ipv4_udp(&payload, &[]);
        p[9] = 6;
        ethernet(0x0800, false, &p)
    };
    let later_fragment = {
        let mut p = ipv4_udp(&payload, &[]);
        p[6] = 0x00;
        p[7] = 0x10;
        ethernet(0x0800, false, &p)
    };
    let eth_frames = vec![
        ethernet(0x0800, false, &ipv4_udp(&payload, &[])),
        arp,
        ethernet(0x0800, true, &ipv4_udp(&payload, &[1, 1, 1, 0])),
        tcp,
        later_fragment,
        ethernet(0x86dd, false, &ipv6_udp(&payload)),
    ];
    let mut sll = vec![0; 14];
    sll.extend_from_slice(&0x0800u16.to_be_bytes());
    sll.extend_from_slice(&ipv4_udp(&payload, &[]));

    let cases = [
        (false, false, 1, eth_frames.clone(), 3),
        (true, false, 1, eth_frames.clone(), 3),
        (false, true, 1, eth_frames, 3),
        (true, true, 113, vec![sll], 1),
        (false, false, 101, vec![ipv4_udp(&payload, &[]), ipv6_udp(&payload), vec![0x50; 30]], 2),
        (false, false, 228, vec![ipv4_udp(&payload, &[])], 1),
        (false, false, 229, vec![ipv6_udp(&payload)], 1),
    ];
    for (big, nanos, link, frames, expected) in cases {
        let got = pcap::parse(&capture(big, nanos, link, &frames))?;
        assert_eq!(got.len(), expected, "link {link} big {big} nanos {nanos}");
        for d in &got {
            assert_eq!(d.payload, payload);
            assert_eq!((d.src_port, d.dst_port), (5004, 6000));
            assert_eq!(d.time_us % 1_000_000, 250_000);
        }
        assert_eq!(got.first().map(|d| d.time_us), Some(1_000_250_000));
    }
    Ok(())
}

#[test]
fn pcap_reader_rejects_garbage_and_stops_at_truncation() -> TestResult {
    assert!(pcap::parse(b"").is_err());
    assert!(pcap::parse(b"not a pcap file at all, really").is_err());
    let frame = ethernet(0x0800, false, &ipv4_udp(&[1, 2, 3], &[]));
    let full = capture(false, false, 1, &[frame.clone(), frame]);
    // A record cut anywhere yields the whole records before it, never a panic.
    for len in 24..full.len() {
        let got = pcap::parse(&full[..len])?;
        assert!(got.len() <= 1, "{len}");
    }
    assert_eq!(pcap::parse(&full)?.len(), 2);
    // Garbage frames are skipped without panicking.
    let junk: Vec<Vec<u8>> = (0u8..64).map(|n| vec![n; usize::from(n)]).collect();
    for link in [1, 101, 113, 228, 229, 0, 147] {
        let _ = pcap::parse(&capture(false, false, link, &junk))?;
    }
    Ok(())
}
