//! A minimal classic-pcap reader for replaying captured RTP in tests (no crate needed).
//!
//! Supports the classic format only (not pcapng): either byte order, microsecond and
//! nanosecond timestamps; link types Ethernet (1, with 802.1Q/802.1ad VLAN tags), Linux
//! cooked capture SLL (113), raw IP (101) and raw IPv4/IPv6 (228/229); IPv4 (with header
//! options, unfragmented or first fragment only) and IPv6 (fixed header, UDP as the next
//! header); then UDP. Frames that are not UDP are skipped. Never panics on malformed input:
//! bad global headers are an error, a truncated trailing record ends the capture, malformed
//! frames are skipped.

use std::io;
use std::path::Path;

/// One captured UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpDatagram {
    /// Capture time, in microseconds since the Unix epoch.
    pub time_us: u64,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// The UDP payload (bounded by the UDP length field, so link-layer padding is dropped).
    pub payload: Vec<u8>,
}

const LINKTYPE_ETHERNET: u32 = 1;
const LINKTYPE_RAW: u32 = 101;
const LINKTYPE_LINUX_SLL: u32 = 113;
const LINKTYPE_IPV4: u32 = 228;
const LINKTYPE_IPV6: u32 = 229;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;

const IPPROTO_UDP: u8 = 17;

/// Reads every UDP datagram of a classic pcap file, in capture order.
pub fn udp_payloads(path: &Path) -> io::Result<Vec<UdpDatagram>> {
    let data = std::fs::read(path)?;
    parse(&data).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Parses a whole classic pcap file held in memory.
pub fn parse(data: &[u8]) -> io::Result<Vec<UdpDatagram>> {
    let invalid = |msg: &str| io::Error::new(io::ErrorKind::InvalidData, msg.to_string());
    let magic = data.get(..4).ok_or_else(|| invalid("shorter than a pcap magic"))?;
    let (big_endian, nanos) = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] => (false, false),
        [0x4d, 0x3c, 0xb2, 0xa1] => (false, true),
        [0xa1, 0xb2, 0xc3, 0xd4] => (true, false),
        [0xa1, 0xb2, 0x3c, 0x4d] => (true, true),
        _ => return Err(invalid("not a classic pcap file (bad magic)")),
    };
    let u32_at = |off: usize| -> Option<u32> {
        let b: [u8; 4] = data.get(off..off + 4)?.try_into().ok()?;
        Some(if big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    };
    // The upper bits of the link-type field may carry FCS information.
    let link_type = u32_at(20).ok_or_else(|| invalid("truncated pcap global header"))? & 0x0fff_ffff;

    let mut out = Vec::new();
    let mut off = 24usize;
    while let (Some(sec), Some(frac), Some(incl)) = (u32_at(off), u32_at(off + 4), u32_at(off + 8)) {
        let start = off + 16;
        let Some(frame) = usize::try_from(incl).ok().and_then(|len| data.get(start..start.checked_add(len)?)) else {
            break; // truncated trailing record
        };
        off = start + frame.len();
        let frac_us = if nanos { u64::from(frac) / 1000 } else { u64::from(frac) };
        let time_us = u64::from(sec) * 1_000_000 + frac_us;
        if let Some((src_port, dst_port, payload)) = udp_of_frame(link_type, frame) {
            out.push(UdpDatagram { time_us, src_port, dst_port, payload: payload.to_vec() });
        }
    }
    Ok(out)
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

/// The UDP ports and payload of one link-layer frame, if it carries UDP.
fn udp_of_frame(link_type: u32, frame: &[u8]) -> Option<(u16, u16, &[u8])> {
    match link_type {
        LINKTYPE_ETHERNET => {
            let mut ethertype = be16(frame, 12)?;
            let mut off = 14;
            while ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
                ethertype = be16(frame, off + 2)?;
                off += 4;
            }
            ip_by_ethertype(ethertype, frame.get(off..)?)
        }
        LINKTYPE_LINUX_SLL => ip_by_ethertype(be16(frame, 14)?, frame.get(16..)?),
        LINKTYPE_RAW => match frame.first()? >> 4 {
            4 => udp_of_ipv4(frame),
            6 => udp_of_ipv6(frame),
            _ => None,
        },
        LINKTYPE_IPV4 => udp_of_ipv4(frame),
        LINKTYPE_IPV6 => udp_of_ipv6(frame),
        _ => None,
    }
}

fn ip_by_ethertype(ethertype: u16, packet: &[u8]) -> Option<(u16, u16, &[u8])> {
    match ethertype {
        ETHERTYPE_IPV4 => udp_of_ipv4(packet),
        ETHERTYPE_IPV6 => udp_of_ipv6(packet),
        _ => None,
    }
}

fn udp_of_ipv4(packet: &[u8]) -> Option<(u16, u16, &[u8])> {
    let first = *packet.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(first & 0x0f) * 4;
    if ihl < 20 || *packet.get(9)? != IPPROTO_UDP {
        return None;
    }
    // Later fragments carry no UDP header.
    if be16(packet, 6)? & 0x1fff != 0 {
        return None;
    }
    // The total length bounds the packet (Ethernet pads short frames).
    let total = usize::from(be16(packet, 2)?).min(packet.len());
    udp(packet.get(ihl..total)?)
}

fn udp_of_ipv6(packet: &[u8]) -> Option<(u16, u16, &[u8])> {
    if packet.first()? >> 4 != 6 || *packet.get(6)? != IPPROTO_UDP {
        return None;
    }
    let end = (40 + usize::from(be16(packet, 4)?)).min(packet.len());
    udp(packet.get(40..end)?)
}

fn udp(segment: &[u8]) -> Option<(u16, u16, &[u8])> {
    let src = be16(segment, 0)?;
    let dst = be16(segment, 2)?;
    let len = usize::from(be16(segment, 4)?);
    if len < 8 {
        return None;
    }
    // A capture may be cut short of the UDP length (snaplen): keep what is there.
    let end = len.min(segment.len());
    Some((src, dst, segment.get(8..end)?))
}
