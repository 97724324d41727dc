//! The endpoint's answers to single requests, sent by hand over UDP: OPTIONS gets 200 with
//! `Allow` and `Accept` (SUBSCRIBE and `Allow-Events: message-summary` only with `[sip.mwi]`);
//! REGISTER and, without `[sip.mwi]`, SUBSCRIBE get 405 with `Allow`; an unknown method 501 with `Allow`;
//! BYE and INFO outside a dialog get 481; an INVITE without a common codec gets 488, one with
//! a non-SDP body 415, one requiring an extension 420; an INVITE from outside
//! `sip.allow_from` gets 403; beyond `sip.max_calls` 503 with `Retry-After: 5`; after a shutdown request 503 (and
//! the ringing call is ended with 480 and still becomes a message). A truncated request gets 400; garbage gets no answer; neither changes anything:
//! the endpoint keeps answering.

#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::TestEndpoint;

const SDP_PCMU: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 45000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
const SDP_G729: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 45000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";

struct Peer {
    socket: UdpSocket,
    target: SocketAddr,
    n: u32,
}

impl Peer {
    fn new(target: SocketAddr) -> Peer {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        Peer { socket, target, n: 0 }
    }

    /// Sends a request and returns every response until a final one (or 3 s pass).
    fn request(&mut self, method: &str, call_id: &str, extra: &str, body: &str) -> Vec<String> {
        self.n += 1;
        let local = self.socket.local_addr().unwrap();
        let msg = format!(
            "{method} sip:vm@{t} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id}-{n}\r\n\
             From: <sip:+74951234567@127.0.0.1>;tag=from-{call_id}\r\nTo: <sip:vm@{t}>\r\nCall-ID: {call_id}\r\n\
             CSeq: {n} {method}\r\nContact: <sip:caller@{local}>\r\nMax-Forwards: 70\r\n{extra}Content-Length: {len}\r\n\r\n{body}",
            t = self.target,
            n = self.n,
            len = body.len(),
        );
        self.send_raw(msg.as_bytes());
        self.responses()
    }

    /// ACKs the 200 OK `ok` to the INVITE of `call_id` (the last request sent).
    fn ack(&self, call_id: &str, ok: &str) {
        let local = self.socket.local_addr().unwrap();
        let contact = header(ok, "Contact").expect("Contact in the 200 OK");
        let uri = contact.trim_start_matches('<').split('>').next().unwrap();
        let msg = format!(
            "ACK {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id}-ack\r\n\
             From: <sip:+74951234567@127.0.0.1>;tag=from-{call_id}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
             CSeq: {n} ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            to = header(ok, "To").unwrap(),
            n = self.n,
        );
        self.send_raw(msg.as_bytes());
    }

    fn send_raw(&self, bytes: &[u8]) {
        self.socket.send_to(bytes, self.target).unwrap();
    }

    fn responses(&self) -> Vec<String> {
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut buf = [0u8; 65536];
        while Instant::now() < deadline {
            if let Ok((n, _)) = self.socket.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let status = status(&text);
                out.push(text);
                if status >= 200 {
                    break;
                }
            }
        }
        out
    }
}

fn status(response: &str) -> u16 {
    response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    response.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn final_status(responses: &[String]) -> u16 {
    responses.last().map_or(0, |r| status(r))
}

#[test]
fn out_of_dialog_requests() {
    let ep = TestEndpoint::start("requests", "", "");
    let mut peer = Peer::new(ep.addr);

    let r = peer.request("OPTIONS", "opt-1", "Accept: application/sdp\r\n", "");
    assert_eq!(final_status(&r), 200, "{r:?}");
    let ok = r.last().unwrap();
    let allow = header(ok, "Allow").expect("Allow in the 200 to OPTIONS");
    for m in ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO"] {
        assert!(allow.contains(m), "Allow: {allow}");
    }
    // Without `[sip.mwi]` the endpoint takes no subscriptions, and says so.
    assert!(!allow.contains("SUBSCRIBE"), "Allow: {allow}");
    assert_eq!(header(ok, "Allow-Events"), None, "{ok}");
    assert!(header(ok, "Accept").is_some_and(|a| a.contains("application/sdp")), "{ok}");

    let r = peer.request("REGISTER", "reg-1", "Expires: 60\r\n", "");
    assert_eq!(final_status(&r), 405, "{r:?}");
    assert!(header(r.last().unwrap(), "Allow").is_some());
    let r = peer.request("SUBSCRIBE", "sub-1", "Event: message-summary\r\nExpires: 60\r\n", "");
    assert_eq!(final_status(&r), 405, "{r:?}");
    assert!(header(r.last().unwrap(), "Allow").is_some_and(|a| !a.contains("SUBSCRIBE")), "{r:?}");

    // An unknown method does not parse: the stack answers 501 with what the endpoint allows.
    let r = peer.request("FOO", "foo-1", "", "");
    assert_eq!(final_status(&r), 501, "{r:?}");
    assert!(header(r.last().unwrap(), "Allow").is_some_and(|a| a.contains("INVITE") && a.contains("BYE")), "{r:?}");

    assert_eq!(final_status(&peer.request("BYE", "bye-1", "", "")), 481);
    assert_eq!(final_status(&peer.request("INFO", "info-1", "Content-Type: application/dtmf\r\n", "5")), 481);

    let sdp = "Content-Type: application/sdp\r\n";
    let r = peer.request("INVITE", "inv-g729", sdp, SDP_G729);
    assert_eq!(final_status(&r), 488, "{r:?}");
    let r = peer.request("INVITE", "inv-text", "Content-Type: text/plain\r\n", "hello");
    assert_eq!(final_status(&r), 415, "{r:?}");
    assert!(header(r.last().unwrap(), "Accept").is_some_and(|a| a.contains("application/sdp")));
    let r = peer.request("INVITE", "inv-100rel", &format!("{sdp}Require: 100rel\r\n"), SDP_PCMU);
    assert_eq!(final_status(&r), 420, "{r:?}");
    assert_eq!(header(r.last().unwrap(), "Unsupported"), Some("100rel"));

    // Malformed input is never fatal. A truncated request that names its Via gets 400 (the
    // stack answers what starts like a request, RFC 3261 §21.4.1); what has no Via, responses
    // and garbage get no answer (a bare CRLFCRLF is a keep-alive ping, RFC 5626 §3.5.1, and
    // gets its CRLF pong: not junk).
    let junk = Peer::new(ep.addr);
    junk.send_raw(b"INVITE sip:vm@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bK-x\r\n");
    assert_eq!(final_status(&junk.responses()), 400);
    for bytes in [
        &b"\x00\x01\x02\xff garbage"[..],
        b"INVITE sip:vm@127.0.0.1 SIP/2.0\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"SIP/2.0 200 OK\r\n\r\n",
        b"FOO bar baz\r\n\r\n",
    ] {
        junk.send_raw(bytes);
    }
    assert_eq!(final_status(&peer.request("OPTIONS", "opt-2", "", "")), 200, "the endpoint still answers");
    assert!(junk.responses().is_empty(), "no answer to the rest of the junk");
    assert_eq!(ep.handle.active_calls(), 0);
}

#[test]
fn options_with_mwi_lists_subscribe() {
    // With `[sip.mwi]` the endpoint takes SUBSCRIBEs for message-summary: a phone that asks
    // OPTIONS before subscribing (RFC 3261 §11) must find SUBSCRIBE in `Allow` and the event
    // package in `Allow-Events` (RFC 6665 §8.2.2).
    let sip = "[sip.mwi]\n[[sip.mwi.managers]]\nemail = \"anna@example.com\"\nusers = [\"201\"]\n";
    let ep = TestEndpoint::start("options-mwi", sip, "");
    let mut peer = Peer::new(ep.addr);

    let r = peer.request("OPTIONS", "opt-mwi", "Accept: application/sdp\r\n", "");
    assert_eq!(final_status(&r), 200, "{r:?}");
    let ok = r.last().unwrap();
    let allow = header(ok, "Allow").expect("Allow in the 200 to OPTIONS");
    for m in ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "SUBSCRIBE"] {
        assert!(allow.contains(m), "Allow: {allow}");
    }
    assert_eq!(header(ok, "Allow-Events"), Some("message-summary"), "{ok}");

    // Every answer that lists the methods lists the same ones: a 405 and the stack's 501.
    let r = peer.request("REGISTER", "reg-mwi", "Expires: 60\r\n", "");
    assert_eq!(final_status(&r), 405, "{r:?}");
    assert!(header(r.last().unwrap(), "Allow").is_some_and(|a| a.contains("SUBSCRIBE")), "{r:?}");
    let r = peer.request("FOO", "foo-mwi", "", "");
    assert_eq!(final_status(&r), 501, "{r:?}");
    assert!(header(r.last().unwrap(), "Allow").is_some_and(|a| a.contains("SUBSCRIBE")), "{r:?}");
}

#[test]
fn allow_list_rejects_other_sources() {
    let ep = TestEndpoint::start("allow", "allow_from = [\"192.0.2.0/24\"]", "");
    let mut peer = Peer::new(ep.addr);
    let r = peer.request("INVITE", "inv-denied", "Content-Type: application/sdp\r\n", SDP_PCMU);
    assert_eq!(final_status(&r), 403, "{r:?}");
    // Only INVITEs are filtered.
    assert_eq!(final_status(&peer.request("OPTIONS", "opt-allowed", "", "")), 200);
}

#[test]
fn call_limit_and_shutdown() {
    let mut ep = TestEndpoint::start("limit", "max_calls = 1\nring_delay = \"10s\"", "");
    let mut first = Peer::new(ep.addr);
    // The first call rings for 10 s: 100, 180, no final answer yet.
    first.request("INVITE", "call-1", "Content-Type: application/sdp\r\n", SDP_PCMU);
    assert_eq!(ep.handle.active_calls(), 1);
    let mut second = Peer::new(ep.addr);
    let r = second.request("INVITE", "call-2", "Content-Type: application/sdp\r\n", SDP_PCMU);
    assert_eq!(final_status(&r), 503, "{r:?}");
    assert_eq!(header(r.last().unwrap(), "Retry-After"), Some("5"));

    ep.handle.shutdown();
    // The ringing call is ended (480) and still leaves a message.
    let r = first.responses();
    assert_eq!(final_status(&r), 480, "{r:?}");
    let meta = ep.next_message(Duration::from_secs(10)).expect("the interrupted call's message");
    assert_eq!(meta.caller, "+74951234567");
    assert_eq!(meta.duration_ms, 0);
    ep.assert_stored(&meta);
    ep.stop();
}

#[test]
fn shutdown_refuses_new_calls_while_calls_finish() {
    let ep = TestEndpoint::start("closing", "", "");
    // A call that is answered and never hung up by the caller keeps the endpoint in its
    // shutdown grace period long enough to see the 503.
    let mut caller = Peer::new(ep.addr);
    let r = caller.request("INVITE", "call-a", "Content-Type: application/sdp\r\n", SDP_PCMU);
    assert_eq!(final_status(&r), 200, "{r:?}");
    ep.handle.shutdown();
    std::thread::sleep(Duration::from_millis(100));
    // The endpoint waits for our answer to its BYE (we give none), so it is still there.
    let mut late = Peer::new(ep.addr);
    let r = late.request("INVITE", "call-b", "Content-Type: application/sdp\r\n", SDP_PCMU);
    assert_eq!(final_status(&r), 503, "{r:?}");
    assert_eq!(header(r.last().unwrap(), "Retry-After"), Some("30"));
    // The answered call gets our BYE.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 65536];
    let mut bye = None;
    while Instant::now() < deadline && bye.is_none() {
        if let Ok((n, _)) = caller.socket.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.starts_with("BYE ") {
                bye = Some(text);
            }
        }
    }
    assert!(bye.is_some(), "no BYE for the call in progress at shutdown");
}

#[test]
fn media_timeout_ends_the_call_with_our_bye() {
    // A caller that ACKs, then answers nothing and sends no RTP: after `media_timeout` the
    // call ends on our side, the endpoint sends BYE, and the message says why. (Without the
    // ACK there would be no greeting, no media timeout and no message: see unacked_invite.rs.)
    let mut ep = TestEndpoint::start("mediatimeout", "", "[recording]\nmedia_timeout = \"1s\"");
    let mut caller = Peer::new(ep.addr);
    let r = caller.request("INVITE", "call-mt", "Content-Type: application/sdp\r\n", SDP_PCMU);
    assert_eq!(final_status(&r), 200, "{r:?}");
    // One 100 Trying per INVITE, however the endpoint and its SIP stack share the answering.
    let mut trying = r.iter().filter(|t| status(t) == 100).count();
    caller.ack("call-mt", r.last().unwrap());
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 65536];
    let mut bye = None;
    while Instant::now() < deadline && bye.is_none() {
        if let Ok((n, from)) = caller.socket.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.starts_with("SIP/2.0 100 ") {
                trying += 1;
            }
            if text.starts_with("BYE ") {
                // Answer it like a phone would.
                let mut ok = String::from("SIP/2.0 200 OK\r\n");
                for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
                    for line in
                        text.lines().filter(|l| l.split(':').next().is_some_and(|n| n.eq_ignore_ascii_case(name)))
                    {
                        ok.push_str(line);
                        ok.push_str("\r\n");
                    }
                }
                ok.push_str("Content-Length: 0\r\n\r\n");
                caller.socket.send_to(ok.as_bytes(), from).unwrap();
                bye = Some(text);
            }
        }
    }
    assert!(bye.is_some(), "no BYE after the media timeout");
    assert_eq!(trying, 1, "100 Trying answers to the one INVITE");
    let meta = ep.next_message(Duration::from_secs(5)).expect("the call's message");
    assert_eq!(meta.end_reason, voicemail_core::EndReason::MediaTimeout);
    assert_eq!(meta.duration_ms, 0);
    ep.assert_stored(&meta);
    ep.stop();
}
