//! Every SIP message of the shared corpus (RFC 4475 torture tests, RFC 5118 IPv6 torture
//! tests, real INVITEs) is sent to a running endpoint over UDP (one datagram from its own
//! socket) and over TCP (one connection each), byte for byte, and gets the answer RFC 3261,
//! 4475 and 5118 give it (the table in [`expectations`]): the final status of each request it
//! holds, or no answer at all for responses and for what is not a SIP request. An INVITE that
//! is answered 200 is ACKed, and after the replay every such call has become a stored message.
//!
//! The corpus names outside addresses (Via, Contact, SDP), so the endpoint and the sender run
//! in a child process inside a private network namespace with only loopback (`unshare -n`,
//! tests/common/netns.rs); the inner test refuses to send anything when another interface
//! exists. Without `unshare` (not root) the test prints `SKIPPED`, and fails when
//! `VOICEMAIL_REQUIRE_INTEROP=1`. Without the corpus it prints `SKIPPED` (`VOICEMAIL_CORPUS`
//! overrides its path).
//!
//! Messages treated liberally on purpose, and why:
//! - `rfc4475/trws.sip` (whitespace after the SIP-Version): accepted, as RFC 4475 §3.1.2.10
//!   suggests (nothing is ambiguous about it).
//! - `rfc4475/escruri.sip` (headers in the Request-URI) and `rfc4475/baddate.sip` (a
//!   non-GMT Date): accepted as calls; a UAS ignores both (RFC 4475 §3.1.2.11, §3.1.2.12).
//! - `rfc4475/inv2543.sip` (an RFC 2543 INVITE: no From tag, no branch, no Content-Length):
//!   a call over UDP, its body being the rest of the datagram (RFC 4475 §3.4). Over TCP a
//!   message without Content-Length has no body (RFC 3261 §18.3 requires the header there),
//!   so it is an INVITE without an offer: a late offer, answered with our offer in the 200; the
//!   test's ACK carries no answer, so the endpoint hangs up with BYE, and the ACKed call is a
//!   message like any other. The SDP bytes after it are not a request and get no answer.
//! - `rfc4475/mismatch02.sip` (unknown method, CSeq naming another one): 501, which RFC 4475
//!   §3.1.2.18 prefers to the also acceptable 400.
//! - Over TCP, `rfc4475/clerr.sip`, `rfc4475/baddn.sip` and
//!   `invites/codenomicon-10052-overlong-host.sip` are incomplete (a Content-Length beyond the
//!   bytes sent, no end of the header section): a stream receiver waits for the rest and
//!   answers nothing (RFC 4475 §3.1.2.2). Over UDP the datagram is all there is: 400.
//!
//! A second, in-process test damages every corpus message a few hundred ways and checks that
//! the classification the endpoint uses never panics.

#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::TestEndpoint;
use common::netns::{self, Isolation};
use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::sip::{Request, Response, SipMessage};
use voicemail_sip::classify::{Decision, Policy, classify_bytes};

/// The answer a request of a corpus file gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// An INVITE that starts a call: 200, then (after our ACK) a stored message.
    Call,
    /// A final response with this status.
    S(u16),
}

use Want::{Call, S};

/// For each corpus file: the final answers over UDP, then over TCP, in order (empty: none).
fn expectations() -> Vec<(&'static str, &'static [Want], &'static [Want])> {
    vec![
        // RFC 4475 §3.1.1: valid messages.
        // Valid, but its To tag names a dialog this endpoint does not have (RFC 3261 §12.2.2).
        ("rfc4475/wsinv.sip", &[S(481)], &[S(481)]),
        ("rfc4475/intmeth.sip", &[S(501)], &[S(501)]),
        ("rfc4475/esc01.sip", &[Call], &[Call]),
        ("rfc4475/escnull.sip", &[S(405)], &[S(405)]),
        ("rfc4475/esc02.sip", &[S(501)], &[S(501)]),
        ("rfc4475/lwsdisp.sip", &[S(200)], &[S(200)]),
        ("rfc4475/longreq.sip", &[Call], &[Call]),
        // Two requests in one datagram: the bytes after the first one's Content-Length are
        // ignored over UDP; over TCP the second is a request too: an RFC 3261 INVITE without
        // Contact (§8.1.1.8).
        ("rfc4475/dblreq.sip", &[S(405)], &[S(405), S(400)]),
        ("rfc4475/semiuri.sip", &[S(200)], &[S(200)]),
        ("rfc4475/transports.sip", &[S(200)], &[S(200)]),
        ("rfc4475/mpart01.sip", &[S(405)], &[S(405)]),
        ("rfc4475/unreason.sip", &[], &[]),
        ("rfc4475/noreason.sip", &[], &[]),
        // §3.1.2: invalid messages.
        ("rfc4475/badinv01.sip", &[S(400)], &[S(400)]),
        ("rfc4475/clerr.sip", &[S(400)], &[]),
        ("rfc4475/ncl.sip", &[S(400)], &[S(400)]),
        ("rfc4475/scalar02.sip", &[S(400)], &[S(400)]),
        ("rfc4475/scalarlg.sip", &[], &[]),
        ("rfc4475/quotbal.sip", &[S(400)], &[S(400)]),
        ("rfc4475/ltgtruri.sip", &[S(400)], &[S(400)]),
        ("rfc4475/lwsruri.sip", &[S(400)], &[S(400)]),
        ("rfc4475/lwsstart.sip", &[S(400)], &[S(400)]),
        ("rfc4475/trws.sip", &[S(200)], &[S(200)]),
        ("rfc4475/escruri.sip", &[Call], &[Call]),
        ("rfc4475/baddate.sip", &[Call], &[Call]),
        ("rfc4475/regbadct.sip", &[S(405)], &[S(405)]),
        ("rfc4475/badaspec.sip", &[S(400)], &[S(400)]),
        ("rfc4475/baddn.sip", &[S(400)], &[]),
        ("rfc4475/badvers.sip", &[S(505)], &[S(505)]),
        ("rfc4475/mismatch01.sip", &[S(400)], &[S(400)]),
        ("rfc4475/mismatch02.sip", &[S(501)], &[S(501)]),
        ("rfc4475/bigcode.sip", &[], &[]),
        // §3.2: transaction layer.
        ("rfc4475/badbranch.sip", &[S(200)], &[S(200)]),
        // §3.3: application layer.
        ("rfc4475/insuf.sip", &[S(400)], &[S(400)]),
        ("rfc4475/unkscm.sip", &[S(416)], &[S(416)]),
        ("rfc4475/novelsc.sip", &[S(416)], &[S(416)]),
        ("rfc4475/unksm2.sip", &[S(405)], &[S(405)]),
        ("rfc4475/bext01.sip", &[S(420)], &[S(420)]),
        ("rfc4475/invut.sip", &[S(415)], &[S(415)]),
        ("rfc4475/regaut01.sip", &[S(405)], &[S(405)]),
        ("rfc4475/multi01.sip", &[S(400)], &[S(400)]),
        ("rfc4475/mcl01.sip", &[S(400)], &[S(400)]),
        ("rfc4475/bcast.sip", &[], &[]),
        ("rfc4475/zeromf.sip", &[S(200)], &[S(200)]),
        ("rfc4475/cparam01.sip", &[S(405)], &[S(405)]),
        ("rfc4475/cparam02.sip", &[S(405)], &[S(405)]),
        ("rfc4475/regescrt.sip", &[S(405)], &[S(405)]),
        ("rfc4475/sdp01.sip", &[S(406)], &[S(406)]),
        // §3.4: RFC 2543 compatibility.
        ("rfc4475/inv2543.sip", &[Call], &[Call]),
        // RFC 5118 (IPv6): RTP is IPv4 here, so IPv6-only offers are not acceptable (488).
        ("rfc5118/ipv6-good.sip", &[S(405)], &[S(405)]),
        ("rfc5118/ipv6-bad.sip", &[S(405)], &[S(405)]),
        ("rfc5118/port-ambiguous.sip", &[S(405)], &[S(405)]),
        ("rfc5118/port-unambiguous.sip", &[S(405)], &[S(405)]),
        ("rfc5118/via-received-param-with-delim.sip", &[S(481)], &[S(481)]),
        ("rfc5118/via-received-param-no-delim.sip", &[S(200)], &[S(200)]),
        ("rfc5118/ipv6-in-sdp.sip", &[S(488)], &[S(488)]),
        ("rfc5118/mult-ip-in-header.sip", &[S(481)], &[S(481)]),
        ("rfc5118/mult-ip-in-sdp.sip", &[Call], &[Call]),
        ("rfc5118/ipv4-mapped-ipv6.sip", &[S(488)], &[S(488)]),
        ("rfc5118/ipv6-bug-abnf-3-colons.sip", &[S(400)], &[S(400)]),
        ("rfc5118/ipv6-correct-abnf-2-colons.sip", &[S(200)], &[S(200)]),
        // Real INVITEs.
        ("invites/asterisk-chan_sip-2008-pjsip-ml.sip", &[Call], &[Call]),
        ("invites/cisco-ios-gw-tel-uri.sip", &[Call], &[Call]),
        ("invites/codenomicon-10052-overlong-host.sip", &[S(400)], &[]),
        ("invites/microsip-3.19.8-tls-sdes-srtp.sip", &[Call], &[Call]),
        ("invites/netgear-ta612v-duplicate-pt101.sip", &[Call], &[Call]),
        ("invites/polycom-spip601-replaces-ruri-headers.sip", &[S(481)], &[S(481)]),
        ("invites/sofia-own5-ipv6-amr-only.sip", &[S(488)], &[S(488)]),
        // An 8-bit display name that is not UTF-8 (RFC 3261 §25.1: TEXT-UTF8).
        ("invites/vericall-edge-unquoted-8bit-display-name.sip", &[S(400)], &[S(400)]),
    ]
}

/// The corpus files, sorted, by their path under the corpus directory.
fn files(corpus: &Path) -> Vec<(String, PathBuf)> {
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
        out.extend(v.into_iter().map(|p| (p.strip_prefix(corpus).unwrap().to_string_lossy().into_owned(), p)));
    }
    out
}

#[test]
fn every_corpus_message_gets_the_rfc_answer_over_udp_and_tcp() {
    if netns::corpus_dir().is_none() {
        return;
    }
    let how = Isolation { netns: true, ..Isolation::default() };
    netns::run_isolated("replay_in_a_private_network_namespace", how, Duration::from_secs(600));
}

/// One way a corpus message travels: its own UDP socket or TCP connection.
enum Link {
    Udp(UdpSocket, SocketAddr),
    Tcp(TcpStream, Vec<u8>),
}

impl Link {
    fn open(tcp: bool, target: SocketAddr) -> Link {
        if tcp {
            let s = TcpStream::connect(target).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
            Link::Tcp(s, Vec::new())
        } else {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
            Link::Udp(s, target)
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        match self {
            Link::Udp(s, to) => {
                s.send_to(bytes, *to).unwrap();
            }
            Link::Tcp(s, _) => s.write_all(bytes).unwrap(),
        }
    }

    fn transport(&self) -> &'static str {
        if matches!(self, Link::Tcp(..)) { "TCP" } else { "UDP" }
    }

    fn local(&self) -> SocketAddr {
        match self {
            Link::Udp(s, _) => s.local_addr().unwrap(),
            Link::Tcp(s, _) => s.local_addr().unwrap(),
        }
    }

    /// The responses that arrive within one read timeout (none when nothing is there).
    fn receive(&mut self) -> Vec<Response> {
        let mut out = Vec::new();
        match self {
            Link::Udp(s, _) => {
                let mut buf = [0u8; 65536];
                while let Ok((n, _)) = s.recv_from(&mut buf) {
                    out.extend(response(&buf[..n]));
                }
            }
            Link::Tcp(s, pending) => {
                let mut buf = [0u8; 65536];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    pending.extend_from_slice(&buf[..n]);
                }
                while let Some(len) = framed_len(pending) {
                    let frame: Vec<u8> = pending.drain(..len).collect();
                    out.extend(response(&frame));
                }
            }
        }
        out
    }
}

/// A response from the endpoint; `None` for a request (the BYE of a call that ended on its
/// side, sent back along the flow the INVITE came on), which the test leaves unanswered.
fn response(bytes: &[u8]) -> Option<Response> {
    match SipMessage::try_from(bytes) {
        Ok(SipMessage::Response(r)) => Some(r),
        Ok(SipMessage::Request(_)) => None,
        Err(e) => panic!("the endpoint sent something unparsable ({e}): {:?}", String::from_utf8_lossy(bytes)),
    }
}

/// The length of the first complete message in a byte stream, framed by its Content-Length
/// (our responses always carry one).
fn framed_len(buf: &[u8]) -> Option<usize> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]);
    let body: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            let name = name.trim();
            (name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l"))
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    (buf.len() >= end + body).then_some(end + body)
}

/// A corpus message on its way: what was sent, on which link, and the final answers so far
/// (distinct by Call-ID, CSeq and status: UDP retransmits a 200 until the ACK arrives).
struct Replay {
    name: String,
    link: Link,
    bytes: Vec<u8>,
    want: &'static [Want],
    finals: Vec<(String, u16)>,
    acks: u32,
}

impl Replay {
    fn take(&mut self, responses: Vec<Response>) {
        for r in responses {
            let status = r.status_code.code();
            if status < 200 {
                continue;
            }
            let key = format!(
                "{} {} {}",
                r.call_id_header().map(|h| h.value().to_owned()).unwrap_or_default(),
                r.cseq_header().map(|h| h.value().to_owned()).unwrap_or_default(),
                status
            );
            if self.finals.iter().any(|(k, _)| *k == key) {
                continue;
            }
            let is_invite = r.cseq_header().is_ok_and(|c| c.value().to_ascii_uppercase().ends_with("INVITE"));
            if is_invite && (200..300).contains(&status) {
                self.ack(&r);
            }
            self.finals.push((key, status));
        }
    }

    /// ACKs a 2xx to the INVITE we sent (RFC 3261 §13.2.2.4): to its Contact, with its To.
    fn ack(&mut self, ok: &Response) {
        let invite = self.invite_answered_by(ok);
        let contact = ok
            .contact_header()
            .ok()
            .and_then(|c| c.typed().ok())
            .map(|c| c.uri.to_string())
            .unwrap_or_else(|| invite.uri.to_string());
        self.acks += 1;
        let ack = format!(
            "ACK {contact} SIP/2.0\r\nVia: SIP/2.0/{t} {local};branch=z9hG4bK-corpus-ack-{n}\r\n\
             From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {seq} ACK\r\nMax-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n",
            t = self.link.transport(),
            local = self.link.local(),
            n = self.acks,
            from = invite.from_header().unwrap().value(),
            to = ok.to_header().unwrap().value(),
            call_id = invite.call_id_header().unwrap().value(),
            seq = invite.cseq_header().unwrap().seq().unwrap(),
        );
        self.link.send(ack.as_bytes());
    }

    /// The request of the sent bytes that `ok` answers (a file may hold two requests).
    fn invite_answered_by(&self, ok: &Response) -> Request {
        let call_id = ok.call_id_header().unwrap().value().to_owned();
        let mut rest: &[u8] = &self.bytes;
        while !rest.is_empty() {
            let start = rest.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(rest.len());
            rest = &rest[start..];
            let len = framed_len(rest).unwrap_or(rest.len());
            if let Ok(SipMessage::Request(r)) = SipMessage::try_from(&rest[..len])
                && r.call_id_header().is_ok_and(|c| c.value() == call_id)
            {
                return r;
            }
            if len == 0 {
                break;
            }
            rest = &rest[len..];
        }
        panic!("{}: a 200 for a Call-ID we did not send: {ok}", self.name);
    }

    /// Whether every expected final answer is there.
    fn complete(&self) -> bool {
        self.finals.len() >= self.want.len()
    }

    fn got(&self) -> Vec<u16> {
        self.finals.iter().map(|(_, s)| *s).collect()
    }

    fn wanted(&self) -> Vec<u16> {
        self.want.iter().map(|w| if let S(s) = w { *s } else { 200 }).collect()
    }
}

#[test]
#[ignore = "run by every_corpus_message_gets_the_rfc_answer_over_udp_and_tcp inside `unshare -n`"]
fn replay_in_a_private_network_namespace() {
    netns::assert_private_netns();
    common::log_to_stderr();
    let corpus = netns::corpus_dir().expect("the corpus");
    let expected = expectations();
    let files = files(&corpus);
    let unlisted: Vec<&String> =
        files.iter().map(|(n, _)| n).filter(|n| !expected.iter().any(|(e, ..)| e == *n)).collect();
    assert!(unlisted.is_empty(), "corpus files without an expectation: {unlisted:?}");
    let missing: Vec<&str> = expected.iter().map(|(n, ..)| *n).filter(|n| !files.iter().any(|(f, _)| f == n)).collect();
    assert!(missing.is_empty(), "expected corpus files that are missing: {missing:?}");

    let mut failures = Vec::new();
    for tcp in [false, true] {
        failures.extend(replay_over(tcp, &files, &expected));
    }
    assert!(failures.is_empty(), "{} answers differ:\n{}", failures.len(), failures.join("\n"));
}

/// Replays every file over UDP or TCP to an endpoint of its own (a file sent twice to one
/// endpoint within 32 s would be a retransmission of the same transaction), checks the
/// answers and that every accepted call became a message; returns what differs.
fn replay_over(
    tcp: bool,
    files: &[(String, PathBuf)],
    expected: &[(&str, &'static [Want], &'static [Want])],
) -> Vec<String> {
    // No INVITE rate limit and room for a TCP connection per message: the replay sends a few
    // dozen INVITEs at once and keeps every connection open until the end.
    let mut ep = TestEndpoint::start("corpus", "invite_rate = 0\nmax_connections_per_source = 256", "");
    let mut replays = Vec::new();
    for (name, path) in files {
        let (_, udp_want, tcp_want) = expected.iter().find(|(n, ..)| n == name).unwrap();
        let bytes = std::fs::read(path).unwrap();
        let mut replay = Replay {
            name: name.clone(),
            link: Link::open(tcp, ep.addr),
            bytes,
            want: if tcp { tcp_want } else { udp_want },
            finals: Vec::new(),
            acks: 0,
        };
        replay.link.send(&replay.bytes.clone());
        // Wait (bounded) for the expected answers; the rest is checked after the replay.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !replay.complete() && Instant::now() < deadline {
            let responses = replay.link.receive();
            replay.take(responses);
        }
        replays.push(replay);
    }

    // Everything sent has been handled once a request sent after it is answered; then any
    // late or unexpected answer is waiting on its link.
    let mut probe = Link::open(false, ep.addr);
    let options = format!(
        "OPTIONS sip:vm@{t} SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bK-corpus-probe\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\n\
         To: <sip:vm@{t}>\r\nCall-ID: corpus-probe\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        t = ep.addr,
        l = probe.local()
    );
    probe.send(options.as_bytes());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut answered = false;
    while !answered && Instant::now() < deadline {
        answered = probe.receive().iter().any(|r| r.status_code.code() == 200);
    }
    assert!(answered, "the endpoint stopped answering");
    for replay in &mut replays {
        let responses = replay.link.receive();
        replay.take(responses);
    }

    let transport = if tcp { "TCP" } else { "UDP" };
    let mut failures = Vec::new();
    let mut answers = BTreeMap::new();
    for r in &replays {
        *answers.entry(format!("{:?}", r.got())).or_insert(0u32) += 1;
        // Two requests in one file (dblreq over TCP) are two transactions: RFC 3261 orders
        // the answers within a transaction, not across them, so compare them as a set.
        let sorted = |mut v: Vec<u16>| {
            v.sort_unstable();
            v
        };
        if sorted(r.got()) != sorted(r.wanted()) {
            failures.push(format!("{} over {transport}: want {:?}, got {:?}", r.name, r.wanted(), r.got()));
        }
    }

    // Every accepted call becomes a message once the endpoint hangs it up.
    let calls = replays.iter().flat_map(|r| r.want).filter(|w| **w == Call).count();
    ep.handle.shutdown();
    let messages = ep.messages(calls, Duration::from_secs(60));
    if messages.len() != calls {
        failures.push(format!("over {transport}: {calls} calls accepted, {} messages: {messages:?}", messages.len()));
    }
    for meta in &messages {
        ep.assert_stored(meta);
        for s in [Some(&meta.caller), meta.caller_name.as_ref(), Some(&meta.called)].into_iter().flatten() {
            assert!(s.chars().count() <= 64 && !s.chars().any(char::is_control), "{s:?}");
        }
    }
    ep.wait_stopped();
    println!("REPORT corpus over {transport}: {} messages, {calls} calls recorded, answers {answers:?}", replays.len());
    failures
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

/// In process, no sockets: damaged corpus messages go through rsipstack's parser and the
/// endpoint's classification (what the wire does with them) without a panic, and reach
/// several kinds of answers.
#[test]
fn damaged_corpus_messages_never_panic() {
    let Some(corpus) = netns::corpus_dir() else { return };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut outcomes = BTreeMap::new();
    for (_, path) in files(&corpus) {
        let original = std::fs::read(&path).unwrap();
        for _ in 0..300 {
            let input = mutate(&mut rng, &original);
            let d = classify_bytes(&input, IpAddr::V4(Ipv4Addr::LOCALHOST), &Policy::permissive());
            let kind = match d {
                Decision::NewCall(_) => "call".to_owned(),
                Decision::Reply(r) => r.status.to_string(),
                Decision::InDialog | Decision::Ignore => "ignored".to_owned(),
                Decision::Drop => "dropped".to_owned(),
            };
            *outcomes.entry(kind).or_insert(0u32) += 1;
        }
    }
    eprintln!("outcomes of damaged messages: {outcomes:?}");
    assert!(outcomes.len() > 5, "the mutations should reach several kinds of answers: {outcomes:?}");
}
