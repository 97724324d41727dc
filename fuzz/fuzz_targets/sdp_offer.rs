//! Arbitrary bytes as an SDP offer through `voicemail_sip::sdp::negotiate`. Nothing may panic;
//! an accepted offer must give an answer with one m-line per offered m-line, exactly one of them
//! accepted, and a ptime of 10..=120 ms in steps of 10 ms.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use voicemail_sip::sdp::{LocalMedia, negotiate};

const LOCAL: LocalMedia = LocalMedia { ip: IpAddr::V4(Ipv4Addr::LOCALHOST), port: 30000, session_id: 1, version: 1 };

fuzz_target!(|data: &[u8]| {
    if let Ok(n) = negotiate(data, &LOCAL) {
        let offered = String::from_utf8_lossy(data).split(['\r', '\n']).filter(|l| l.starts_with("m=")).count();
        let mlines: Vec<&str> = n.answer.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(mlines.len(), offered);
        assert_eq!(mlines.iter().filter(|l| l.split(' ').nth(1) != Some("0")).count(), 1);
        let ms = n.ptime.as_millis();
        assert!((10..=120).contains(&ms) && ms.is_multiple_of(10));
    }
});
