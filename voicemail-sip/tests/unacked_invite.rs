//! INVITEs whose 200 OK is never ACKed (RFC 3261 §13.3.1.4), the reflection and junk-message
//! abuse of issue 10:
//! - an INVITE whose SDP names a third address (a socket on 127.0.0.3) and that is never ACKed
//!   makes the endpoint send no RTP there, neither while it retransmits the 200 OK nor after it
//!   gave up (`sip.ack_timeout`, shortened here) and sent its BYE; the call leaves no message,
//!   no file, and frees its slot. The same INVITE ACKed (the control) does get RTP there and
//!   becomes a message;
//! - 100 concurrent SIPp INVITEs that never ACK leave no message and no file in the spool once
//!   their slots are free, and `active_calls()` returns to 0.

#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{TestEndpoint, run_sipp_calls, scenario};
use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::sip::{Request, SipMessage};

/// Counts the datagrams arriving on a socket until stopped.
struct Counter {
    addr: SocketAddr,
    count: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Counter {
    fn bind(ip: &str) -> Counter {
        let socket = UdpSocket::bind((ip, 0)).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let addr = socket.local_addr().unwrap();
        let (count, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let thread = {
            let (count, stop) = (count.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::SeqCst) {
                    if socket.recv_from(&mut buf).is_ok() {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        };
        Counter { addr, count, stop, thread: Some(thread) }
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A SIP user agent on a UDP socket of 127.0.0.1 that sends an INVITE pointing its media at
/// `media` and records what comes back.
struct Uac {
    socket: UdpSocket,
    target: SocketAddr,
    call_id: String,
}

impl Uac {
    fn new(target: SocketAddr, call_id: &str) -> Uac {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        Uac { socket, target, call_id: call_id.to_owned() }
    }

    fn local(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    fn invite(&self, media: SocketAddr) {
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n\
             a=rtpmap:0 PCMU/8000\r\n",
            ip = media.ip(),
            port = media.port()
        );
        let msg = format!(
            "INVITE sip:vm@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{id}-1\r\n\
             From: <sip:+74950001111@{local}>;tag=f-{id}\r\nTo: <sip:vm@{target}>\r\nCall-ID: {id}\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:uac@{local}>\r\nMax-Forwards: 70\r\n\
             Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
            target = self.target,
            local = self.local(),
            id = self.call_id,
            len = sdp.len(),
        );
        self.socket.send_to(msg.as_bytes(), self.target).unwrap();
    }

    /// The SIP messages that arrive within one read timeout.
    fn receive(&self) -> Vec<SipMessage> {
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok((n, _)) = self.socket.recv_from(&mut buf) {
            out.push(SipMessage::try_from(&buf[..n]).unwrap());
        }
        out
    }

    /// Answers an in-dialog request (our BYE) with 200.
    fn ok(&self, req: &Request) {
        let via = req.via_header().unwrap().value().to_owned();
        let msg = format!(
            "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
            req.from_header().unwrap().value(),
            req.to_header().unwrap().value(),
            req.call_id_header().unwrap().value(),
            req.cseq_header().unwrap().value(),
        );
        self.socket.send_to(msg.as_bytes(), self.target).unwrap();
    }

    /// ACKs a 200 OK to the INVITE.
    fn ack(&self, ok: &rsipstack::sip::Response) {
        let contact = ok.contact_header().unwrap().typed().unwrap().uri.to_string();
        let msg = format!(
            "ACK {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{id}-ack\r\n\
             From: <sip:+74950001111@{local}>;tag=f-{id}\r\nTo: {to}\r\nCall-ID: {id}\r\nCSeq: 1 ACK\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            local = self.local(),
            id = self.call_id,
            to = ok.to_header().unwrap().value(),
        );
        self.socket.send_to(msg.as_bytes(), self.target).unwrap();
    }

    /// A BYE for the call `ok` answered.
    fn bye(&self, ok: &rsipstack::sip::Response) {
        let contact = ok.contact_header().unwrap().typed().unwrap().uri.to_string();
        let msg = format!(
            "BYE {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{id}-bye\r\n\
             From: <sip:+74950001111@{local}>;tag=f-{id}\r\nTo: {to}\r\nCall-ID: {id}\r\nCSeq: 2 BYE\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            local = self.local(),
            id = self.call_id,
            to = ok.to_header().unwrap().value(),
        );
        self.socket.send_to(msg.as_bytes(), self.target).unwrap();
    }
}

fn is_invite_ok(m: &SipMessage) -> Option<&rsipstack::sip::Response> {
    match m {
        SipMessage::Response(r)
            if r.status_code.code() == 200 && r.cseq_header().is_ok_and(|c| c.value().ends_with("INVITE")) =>
        {
            Some(r)
        }
        _ => None,
    }
}

#[test]
fn an_unacked_invite_sends_no_rtp_to_the_address_its_sdp_names() {
    let mut ep = TestEndpoint::start("no-ack-rtp", "ack_timeout = \"2s\"", "");
    let third = Counter::bind("127.0.0.3");
    let uac = Uac::new(ep.addr, "no-ack-1");
    uac.invite(third.addr);

    // The 200 OK comes and is retransmitted; after ack_timeout a BYE. Keep listening until the
    // retransmissions stop (the stack retransmits for 64·T1 = 32 s at most) and then a while.
    let start = Instant::now();
    let (mut oks, mut byes) = (0, 0);
    let mut last_ok = Instant::now();
    while start.elapsed() < Duration::from_secs(45) {
        for m in uac.receive() {
            if is_invite_ok(&m).is_some() {
                oks += 1;
                last_ok = Instant::now();
            }
            if let SipMessage::Request(req) = &m
                && req.method == rsipstack::sip::Method::Bye
            {
                byes += 1;
                uac.ok(req);
            }
        }
        // Retransmissions at most 4 s apart (T2); none for 6 s means they are over.
        if oks > 0 && byes > 0 && last_ok.elapsed() > Duration::from_secs(6) {
            break;
        }
    }
    eprintln!("200 OKs {oks}, BYEs {byes}, RTP at the third address {}", third.count());
    assert!(oks >= 2, "the 200 OK is retransmitted while no ACK comes ({oks})");
    assert!(byes >= 1, "the endpoint hangs an unACKed call up with BYE");
    assert_eq!(third.count(), 0, "RTP went to the address of an INVITE that was never ACKed");
    assert_eq!(ep.handle.active_calls(), 0);
    assert!(ep.wav_files().is_empty(), "{:?}", ep.wav_files());
    assert!(ep.mailbox.list(false).unwrap().is_empty());
    assert!(ep.next_message(Duration::from_millis(200)).is_none());

    // The control: the same INVITE, ACKed, does send the greeting there, and is a message.
    let uac = Uac::new(ep.addr, "acked-1");
    uac.invite(third.addr);
    let deadline = Instant::now() + Duration::from_secs(10);
    let ok = loop {
        assert!(Instant::now() < deadline, "no 200 OK for the control call");
        if let Some(ok) = uac.receive().iter().find_map(is_invite_ok) {
            break ok.clone();
        }
    };
    uac.ack(&ok);
    let deadline = Instant::now() + Duration::from_secs(10);
    while third.count() < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(third.count() >= 5, "an ACKed call sends its greeting to the SDP's address ({})", third.count());
    uac.bye(&ok);
    let meta = ep.next_message(Duration::from_secs(10)).expect("the ACKed call is a message");
    assert_eq!(meta.caller, "+74950001111");
    ep.stop();
}

#[test]
fn a_hundred_unacked_invites_leave_no_message() {
    let Some(sipp) = common::tool("sipp", "sip-tester") else { return };
    // No INVITE rate limit: the 100 INVITEs come from one address at once.
    let mut ep = TestEndpoint::start("no-ack-100", "ack_timeout = \"3s\"\ninvite_rate = 0", "");
    let dir = ep.dir.path().join("sipp");
    std::fs::create_dir_all(&dir).unwrap();
    let xml = scenario(&dir, "uac_no_ack", &[("CALLER", "+74950002222".into())]);
    let run = run_sipp_calls(
        &sipp,
        &dir,
        &ep.target(),
        &["-sf", xml.to_str().unwrap(), "-s", "vm", "-m", "100", "-l", "100", "-r", "100"],
        Duration::from_secs(60),
        100,
    );
    assert!(run.success(), "{}", run.describe());
    // Every call holds its slot until its ack_timeout; then the slots are freed.
    let busy = ep.handle.active_calls();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ep.handle.active_calls() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("calls in progress when SIPp was done: {busy}; now {}", ep.handle.active_calls());
    assert_eq!(ep.handle.active_calls(), 0, "the slots of unACKed calls are freed");
    assert!(ep.wav_files().is_empty(), "{} recordings left in the spool", ep.wav_files().len());
    assert!(ep.mailbox.list(false).unwrap().is_empty(), "no message for a call that was never ACKed");
    assert!(ep.next_message(Duration::from_millis(500)).is_none());
    ep.stop();
}
