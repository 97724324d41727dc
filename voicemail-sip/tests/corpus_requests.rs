//! Every SIP message of the shared corpus (RFC 4475 torture tests, RFC 5118 IPv6 torture
//! tests, real INVITEs) goes through rsipstack's parser and the endpoint's request
//! classification (`voicemail_sip::classify::classify_bytes`, the decision the live endpoint
//! makes for each request): no panic, and the answer written down here for each file. Each
//! message is then damaged a few hundred ways (truncated, bytes flipped, lines dropped or
//! repeated; deterministic) and must still be classified without a panic.
//!
//! The corpus lives outside the repository (`VOICEMAIL_CORPUS` overrides its path); without it
//! the tests print `SKIPPED` and pass.

#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use voicemail_sip::classify::{Decision, Policy, classify_bytes};

/// What the endpoint should do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Start a call (the INVITE is acceptable and its SDP negotiable).
    Call,
    /// Answer with this status.
    Status(u16),
    /// Absorb it (a response, or an ACK).
    Ignore,
    /// Not SIP enough to answer.
    Drop,
}

use Want::{Call, Drop, Ignore, Status};

fn expectations() -> Vec<(&'static str, Want)> {
    vec![
        // RFC 4475 §3.1.1: valid messages.
        ("rfc4475/wsinv.sip", Call),
        ("rfc4475/intmeth.sip", Status(501)),
        ("rfc4475/esc01.sip", Call),
        ("rfc4475/escnull.sip", Status(405)),
        ("rfc4475/esc02.sip", Status(501)),
        ("rfc4475/lwsdisp.sip", Status(200)),
        ("rfc4475/longreq.sip", Call),
        ("rfc4475/dblreq.sip", Status(405)),
        ("rfc4475/semiuri.sip", Status(200)),
        ("rfc4475/transports.sip", Status(200)),
        ("rfc4475/mpart01.sip", Status(405)),
        ("rfc4475/unreason.sip", Ignore),
        ("rfc4475/noreason.sip", Ignore),
        // §3.1.2: invalid messages.
        ("rfc4475/badinv01.sip", Status(400)),
        ("rfc4475/clerr.sip", Status(400)),
        ("rfc4475/ncl.sip", Status(400)),
        ("rfc4475/scalar02.sip", Status(400)),
        ("rfc4475/scalarlg.sip", Ignore),
        ("rfc4475/quotbal.sip", Status(400)),
        ("rfc4475/ltgtruri.sip", Status(400)),
        ("rfc4475/lwsruri.sip", Status(400)),
        ("rfc4475/lwsstart.sip", Status(400)),
        ("rfc4475/trws.sip", Status(200)), // trailing whitespace after the version is tolerated
        ("rfc4475/escruri.sip", Call),     // headers in the Request-URI are ignored
        ("rfc4475/baddate.sip", Call),     // Date is not used
        ("rfc4475/regbadct.sip", Status(405)),
        ("rfc4475/badaspec.sip", Status(400)),
        ("rfc4475/baddn.sip", Status(400)),
        ("rfc4475/badvers.sip", Status(505)),
        ("rfc4475/mismatch01.sip", Status(400)),
        ("rfc4475/mismatch02.sip", Status(400)),
        ("rfc4475/bigcode.sip", Drop),
        // §3.2 transaction layer.
        ("rfc4475/badbranch.sip", Status(200)),
        // §3.3 application layer.
        ("rfc4475/insuf.sip", Status(400)),
        ("rfc4475/unkscm.sip", Status(416)),
        ("rfc4475/novelsc.sip", Status(416)),
        ("rfc4475/unksm2.sip", Status(405)),
        ("rfc4475/bext01.sip", Status(420)),
        ("rfc4475/invut.sip", Status(415)),
        ("rfc4475/regaut01.sip", Status(405)),
        ("rfc4475/multi01.sip", Status(400)),
        ("rfc4475/mcl01.sip", Status(400)),
        ("rfc4475/bcast.sip", Ignore),
        ("rfc4475/zeromf.sip", Status(200)),
        ("rfc4475/cparam01.sip", Status(405)),
        ("rfc4475/cparam02.sip", Status(405)),
        ("rfc4475/regescrt.sip", Status(405)),
        ("rfc4475/sdp01.sip", Status(406)),
        // §3.4: an RFC 2543 INVITE without Content-Length. rsipstack reads no body then, even
        // over UDP, so there is no offer to answer.
        ("rfc4475/inv2543.sip", Status(488)),
        // RFC 5118 (IPv6): RTP is IPv4 here, so IPv6-only offers are not acceptable.
        ("rfc5118/ipv6-good.sip", Status(405)),
        ("rfc5118/ipv6-bad.sip", Status(405)),
        ("rfc5118/port-ambiguous.sip", Status(405)),
        ("rfc5118/port-unambiguous.sip", Status(405)),
        ("rfc5118/via-received-param-with-delim.sip", Status(481)),
        ("rfc5118/via-received-param-no-delim.sip", Status(200)),
        ("rfc5118/ipv6-in-sdp.sip", Status(488)),
        ("rfc5118/mult-ip-in-header.sip", Status(481)),
        ("rfc5118/mult-ip-in-sdp.sip", Call),
        ("rfc5118/ipv4-mapped-ipv6.sip", Status(488)),
        ("rfc5118/ipv6-bug-abnf-3-colons.sip", Status(400)),
        ("rfc5118/ipv6-correct-abnf-2-colons.sip", Status(200)),
        // Real INVITEs.
        ("invites/asterisk-chan_sip-2008-pjsip-ml.sip", Call),
        ("invites/cisco-ios-gw-tel-uri.sip", Call),
        ("invites/codenomicon-10052-overlong-host.sip", Status(400)),
        ("invites/microsip-3.19.8-tls-sdes-srtp.sip", Call),
        ("invites/netgear-ta612v-duplicate-pt101.sip", Call),
        ("invites/polycom-spip601-replaces-ruri-headers.sip", Status(481)),
        ("invites/sofia-own5-ipv6-amr-only.sip", Status(488)),
        ("invites/vericall-edge-unquoted-8bit-display-name.sip", Status(400)),
    ]
}

fn decide(bytes: &[u8]) -> Decision {
    classify_bytes(bytes, IpAddr::V4(Ipv4Addr::LOCALHOST), &Policy::permissive())
}

fn got(d: &Decision) -> Want {
    match d {
        Decision::NewCall(_) => Call,
        Decision::Reply(r) => Status(r.status),
        Decision::Ignore | Decision::InDialog => Ignore,
        Decision::Drop => Drop,
    }
}

fn files(corpus: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in ["rfc4475", "rfc5118", "invites"] {
        let dir = corpus.join(sub);
        let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        v.sort();
        out.extend(v);
    }
    out
}

#[test]
fn every_corpus_message_gets_the_expected_answer() {
    let Some(corpus) = common::corpus_dir() else { return };
    let expected = expectations();
    let mut failures = Vec::new();
    let mut seen = 0;
    for path in files(&corpus) {
        let name = path.strip_prefix(&corpus).unwrap().to_string_lossy().into_owned();
        let decision = decide(&std::fs::read(&path).unwrap());
        let Some((_, want)) = expected.iter().find(|(n, _)| *n == name) else {
            failures.push(format!("{name}: no expectation written down (got {decision:?})"));
            continue;
        };
        seen += 1;
        if got(&decision) != *want {
            failures.push(format!("{name}: want {want:?}, got {decision:?}"));
        }
        if let Decision::NewCall(call) = &decision {
            // Caller strings are cleaned: printable, bounded.
            let p = &call.parties;
            for s in [Some(&p.caller), p.caller_name.as_ref(), Some(&p.called)].into_iter().flatten() {
                assert!(s.chars().count() <= 64 && !s.chars().any(char::is_control), "{name}: {s:?}");
            }
        }
    }
    assert_eq!(seen, expected.len(), "corpus files missing: {failures:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    match rng.below(6) {
        0 => v.truncate(rng.below(v.len() + 1)),
        1 => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(v.len());
                if let Some(b) = v.get_mut(i) {
                    *b = rng.next() as u8;
                }
            }
        }
        2 => {
            let special =
                [b"\r\n".as_slice(), b":", b";", b",", b"<", b">", b"\"", b"%", b"\0", b" ", b"SIP/2.0", b"9999999999"];
            let i = rng.below(v.len() + 1);
            let s = special[rng.below(special.len())];
            v.splice(i..i, s.iter().copied());
        }
        3 => {
            let lines: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
            let drop = rng.below(lines.len());
            v = lines
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != drop)
                .flat_map(|(_, l)| l.iter().copied().chain([b'\n']))
                .collect();
        }
        4 => {
            let lines: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
            let dup = rng.below(lines.len());
            v = lines
                .iter()
                .enumerate()
                .flat_map(|(i, l)| {
                    let times = if i == dup { 2 } else { 1 };
                    std::iter::repeat_n(l.iter().copied().chain([b'\n']).collect::<Vec<u8>>(), times).flatten()
                })
                .collect();
        }
        _ => {
            let a = rng.below(v.len());
            let b = rng.below(v.len());
            if a < b {
                v.drain(a..b);
            }
        }
    }
    v
}

#[test]
fn damaged_corpus_messages_never_panic() {
    let Some(corpus) = common::corpus_dir() else { return };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut outcomes = std::collections::BTreeMap::new();
    for path in files(&corpus) {
        let original = std::fs::read(&path).unwrap();
        for _ in 0..300 {
            let input = mutate(&mut rng, &original);
            let d = decide(&input);
            *outcomes.entry(format!("{:?}", got(&d))).or_insert(0u32) += 1;
        }
    }
    eprintln!("outcomes of damaged messages: {outcomes:?}");
    assert!(outcomes.len() > 3, "the mutations should reach several kinds of answers");
}
