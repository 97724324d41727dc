//! SDP offer/answer against real offers: every file of `../shared/corpus/sdp/` and the body of
//! every INVITE in `../shared/corpus/invites/` is negotiated, must not panic, and must give the
//! outcome written down for it here (488 for offers without one of our codecs over RTP/AVP;
//! otherwise the codec, the first of our default preference Opus, G.722, PCMA, PCMU, L16 that
//! the offer has, payload types, ptime, remote address and direction). Accepted answers must re-parse with
//! ezk-sdp-types and keep the offer's m-line count. Each offer is also mutated a few hundred times
//! (deterministically) to show that damaged real offers never panic.
//!
//! The corpus lives outside the repository (`VOICEMAIL_CORPUS` overrides its path); when it is
//! absent the tests print why and pass without checking anything.
#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ezk_sdp_types::SessionDescription;
use voicemail_core::CodecKind;
use voicemail_sip::sdp::{Direction, LocalMedia, SdpError, negotiate};

const LOCAL: LocalMedia = LocalMedia { ip: IpAddr::V4(Ipv4Addr::LOCALHOST), port: 30000, session_id: 7, version: 1 };

#[derive(Debug)]
enum Expect {
    /// 488 Not Acceptable Here.
    NotAcceptable,
    /// 200 OK with this negotiation.
    Accept {
        codec: CodecKind,
        payload_type: u8,
        dtmf: Option<u8>,
        ptime_ms: u64,
        remote: Option<&'static str>,
        direction: Direction,
        mlines: usize,
    },
}

const fn accept(
    codec: CodecKind,
    payload_type: u8,
    dtmf: Option<u8>,
    ptime_ms: u64,
    remote: Option<&'static str>,
    mlines: usize,
) -> Expect {
    Expect::Accept { codec, payload_type, dtmf, ptime_ms, remote, direction: Direction::SendRecv, mlines }
}

use CodecKind::{G722, Pcma, Pcmu};

/// The expected outcome of each corpus file (see ../shared/corpus/README.md for what each one is).
fn expectations() -> Vec<(&'static str, Expect)> {
    vec![
        // sdp/
        ("sdp/chrome-webrtc-offer.sdp", Expect::NotAcceptable), // UDP/TLS/RTP/SAVPF only
        ("sdp/cisco-ios-gw-g729-only.sdp", Expect::NotAcceptable),
        ("sdp/cisco-ios-gw-pcmu-cn.sdp", accept(Pcmu, 0, None, 20, Some("64.124.66.33:12004"), 1)),
        ("sdp/cisco-ios-gw-video-mline-without-formats.sdp", accept(Pcmu, 0, None, 20, Some("65.39.205.114:36928"), 2)),
        ("sdp/counterpath-eyebeam-1.5.sdp", accept(Pcma, 8, Some(101), 20, Some("84.209.220.122:24484"), 2)),
        ("sdp/dialogic-empty-fmtp-bad-clock.sdp", accept(Pcmu, 0, Some(101), 20, Some("58.185.204.251:49172"), 2)),
        // te 98 in audio although video also uses 98; no c= line anywhere.
        ("sdp/econf-4.0-te98-pt98-reused-in-video.sdp", accept(G722, 9, Some(98), 20, None, 2)),
        ("sdp/ekiga-3.0-opal.sdp", accept(G722, 9, Some(101), 20, Some("192.168.1.55:5062"), 1)),
        ("sdp/evil-g729-only-multicast-2e9-addresses.sdp", Expect::NotAcceptable),
        ("sdp/firefox-84-video-only-offer.sdp", Expect::NotAcceptable),
        ("sdp/freeswitch-1.0rc1.sdp", accept(Pcma, 8, Some(99), 20, Some("1.2.3.4:16610"), 1)),
        // PT 101 is G.726-16 here; two a=ptime lines, the first (20) counts.
        ("sdp/gateway-g729-first-pt101-is-g726-dup-ptime.sdp", accept(Pcma, 8, None, 20, Some("77.75.1.10:54424"), 1)),
        ("sdp/lg-ip-phone-audio-video.sdp", accept(G722, 9, Some(101), 20, Some("85.112.135.82:17412"), 2)),
        (
            "sdp/linphone-talk-speex-static-pts-no-rtpmap.sdp",
            accept(Pcma, 8, Some(101), 20, Some("192.168.0.18:7078"), 2),
        ),
        (
            "sdp/pjsip-session-inactive-media-sendonly.sdp",
            Expect::Accept {
                codec: Pcmu,
                payload_type: 0,
                dtmf: None,
                ptime_ms: 20,
                remote: Some("127.0.0.1:5000"),
                direction: Direction::SendOnly,
                mlines: 1,
            },
        ),
        ("sdp/pjsip-sipp-rfc2543-hold-c0000-savp.sdp", Expect::NotAcceptable), // RTP/SAVP
        ("sdp/polycom-soundpoint-sdes-te96.sdp", accept(G722, 9, Some(96), 20, Some("192.168.9.74:49200"), 1)),
        ("sdp/ray-zibman-malformed-bandwidth.sdp", accept(Pcmu, 0, Some(101), 20, Some("66.152.249.120:12002"), 1)),
        ("sdp/sofia-own5-ipv6-amr-only.sdp", Expect::NotAcceptable),
        ("sdp/vgw-isac-only-trailing-space-mline.sdp", Expect::NotAcceptable),
        ("sdp/x-lite-ilbc-only-te101.sdp", Expect::NotAcceptable),
        (
            "sdp/x-lite-lowercase-codec-rtpmap-without-clock.sdp",
            accept(Pcma, 8, Some(101), 20, Some("192.168.2.15:8000"), 1),
        ),
        // invites/ (the body after the first blank line)
        ("invites/asterisk-chan_sip-2008-pjsip-ml.sip", accept(Pcma, 8, Some(101), 20, Some("192.168.1.11:14390"), 1)),
        ("invites/cisco-ios-gw-tel-uri.sip", accept(Pcmu, 0, Some(101), 20, Some("192.0.2.10:18676"), 1)),
        ("invites/codenomicon-10052-overlong-host.sip", accept(Pcmu, 0, None, 20, Some("10.50.71.29:49152"), 1)),
        // Plain RTP/AVP with a=crypto lines: best-effort SRTP, answered as plain RTP.
        ("invites/microsip-3.19.8-tls-sdes-srtp.sip", accept(Pcma, 8, Some(101), 20, Some("10.2.19.102:4000"), 1)),
        // PT 101 is listed twice and mapped to both telephone-event and G726-24: not used.
        ("invites/netgear-ta612v-duplicate-pt101.sip", accept(Pcma, 8, None, 20, Some("88.8.88.88:10000"), 1)),
        (
            "invites/polycom-spip601-replaces-ruri-headers.sip",
            accept(Pcma, 8, Some(101), 20, Some("192.122.24.109:2224"), 1),
        ),
        ("invites/sofia-own5-ipv6-amr-only.sip", Expect::NotAcceptable),
        (
            "invites/vericall-edge-unquoted-8bit-display-name.sip",
            accept(Pcma, 8, Some(101), 20, Some("172.16.42.1:20506"), 2),
        ),
    ]
}

fn corpus_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("VOICEMAIL_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"));
    if dir.join("sdp").is_dir() && dir.join("invites").is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: SDP corpus not found at {} (set VOICEMAIL_CORPUS to its path)", dir.display());
        None
    }
}

/// The SDP of a corpus file: the whole `.sdp` file, or the body of a `.sip` message.
fn offer_of(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    if path.extension().is_some_and(|e| e == "sip") {
        for separator in [&b"\r\n\r\n"[..], b"\n\n"] {
            if let Some(at) = bytes.windows(separator.len()).position(|w| w == separator) {
                return bytes[at + separator.len()..].to_vec();
            }
        }
        panic!("{}: no blank line", path.display());
    }
    bytes
}

fn corpus_files(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for sub in ["sdp", "invites"] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".sdp") || name.ends_with(".sip") {
                files.push(format!("{sub}/{name}"));
            }
        }
    }
    files.sort();
    files
}

fn mline_count(offer: &[u8]) -> usize {
    String::from_utf8_lossy(offer).split(['\r', '\n']).filter(|line| line.starts_with("m=")).count()
}

#[test]
fn every_corpus_file_has_an_expectation() {
    let Some(dir) = corpus_dir() else { return };
    let expected: Vec<&str> = expectations().iter().map(|(name, _)| *name).collect();
    for file in corpus_files(&dir) {
        assert!(expected.contains(&file.as_str()), "{file} has no expected outcome in this test");
    }
}

#[test]
fn corpus_offers_get_the_expected_answer() {
    let Some(dir) = corpus_dir() else { return };
    let mut checked = 0;
    for (name, expect) in expectations() {
        let path = dir.join(name);
        if !path.exists() {
            eprintln!("SKIPPED: {name} not in the corpus");
            continue;
        }
        let offer = offer_of(&path);
        let result = negotiate(&offer, &LOCAL);
        match (&expect, result) {
            (Expect::NotAcceptable, Err(SdpError::NotAcceptable(reason))) => {
                eprintln!("{name}: 488 ({reason})");
            }
            (Expect::Accept { codec, payload_type, dtmf, ptime_ms, remote, direction, mlines }, Ok(n)) => {
                assert_eq!(n.codec, *codec, "{name}");
                assert_eq!(n.payload_type, *payload_type, "{name}");
                assert_eq!(n.dtmf_payload_type, *dtmf, "{name}");
                assert_eq!(n.ptime, Duration::from_millis(*ptime_ms), "{name}");
                assert_eq!(n.remote_rtp, remote.map(|r| r.parse::<SocketAddr>().unwrap()), "{name}");
                assert_eq!(n.direction, *direction, "{name}");
                let answer = SessionDescription::parse(&n.answer.clone().into())
                    .unwrap_or_else(|e| panic!("{name}: answer does not re-parse: {e}\n{}", n.answer));
                assert_eq!(answer.media_descriptions.len(), *mlines, "{name}");
                assert_eq!(mline_count(&offer), *mlines, "{name}");
                let accepted: Vec<_> = answer.media_descriptions.iter().filter(|m| m.media.port != 0).collect();
                assert_eq!(accepted.len(), 1, "{name}: exactly one accepted stream\n{}", n.answer);
                let mut fmts = vec![*payload_type];
                fmts.extend(*dtmf);
                assert_eq!(accepted[0].media.fmts, fmts, "{name}");
                assert_eq!(accepted[0].media.port, LOCAL.port, "{name}");
                eprintln!(
                    "{name}: 200 {:?}/{} te={:?} ptime={:?} remote={:?}",
                    n.codec, n.payload_type, n.dtmf_payload_type, n.ptime, n.remote_rtp
                );
            }
            (expect, got) => panic!("{name}: expected {expect:?}, got {got:?}"),
        }
        checked += 1;
    }
    assert!(checked > 0);
}

/// Small deterministic generator (xorshift64*), so failures reproduce without a seed file.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn mutated_corpus_offers_never_panic() {
    let Some(dir) = corpus_dir() else { return };
    let interesting: &[&[u8]] = &[b"\r\n", b"\n", b" ", b":", b"/", b"=", b"0", b"m=", b"a=", b"c=IN IP4 ", b"\xff"];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for name in corpus_files(&dir) {
        let offer = offer_of(&dir.join(&name));
        for _ in 0..300 {
            let mut bytes = offer.clone();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(bytes.len() + 1);
                match rng.below(4) {
                    0 if at < bytes.len() => bytes[at] = rng.next() as u8,
                    1 if at < bytes.len() => {
                        let end = (at + 1 + rng.below(16)).min(bytes.len());
                        bytes.drain(at..end);
                    }
                    2 => {
                        let piece = interesting[rng.below(interesting.len())];
                        bytes.splice(at..at, piece.iter().copied());
                    }
                    _ => {
                        // Duplicate a slice of the offer elsewhere (repeated lines, m-lines, ...).
                        let from = rng.below(offer.len());
                        let to = (from + rng.below(64)).min(offer.len());
                        bytes.splice(at.min(bytes.len())..at.min(bytes.len()), offer[from..to].iter().copied());
                    }
                }
            }
            if let Ok(n) = negotiate(&bytes, &LOCAL) {
                let mlines: Vec<&str> = n.answer.lines().filter(|l| l.starts_with("m=")).collect();
                assert_eq!(mlines.len(), mline_count(&bytes), "{name} mutated:\n{}", n.answer);
                // ezk-sdp-types only knows these media types; a mutated offer may carry others
                // (`m=audpp ...`), which the answer echoes in its rejected m-line.
                let known = ["m=audio ", "m=video ", "m=text ", "m=application "];
                if mlines.iter().all(|l| known.iter().any(|k| l.starts_with(k))) {
                    let answer = SessionDescription::parse(&n.answer.clone().into())
                        .unwrap_or_else(|e| panic!("{name} mutated: answer does not re-parse: {e}\n{}", n.answer));
                    assert_eq!(answer.media_descriptions.len(), mlines.len(), "{name} mutated");
                }
            }
        }
    }
}
