//! The phone's message lamp (issue 9, item 6): a SIPp subscriber SUBSCRIBEs to
//! `message-summary` for the manager's SIP user and checks every NOTIFY body in its scenario
//! (`tests/sipp/uac_subscribe_mwi.xml`): `Messages-Waiting: no` at first, `yes` after a
//! client's SIPp call (the caller is in the directory, so the message is assigned to the
//! manager), `no` after the test marks it called back, a NOTIFY after a refresh in the dialog,
//! and a final `terminated` NOTIFY after `Expires: 0`. An unsolicited NOTIFY goes to the
//! phone listed in `notify` (a UDP socket here) on each change. Other requests get 489 (another
//! event package), 404 (an unknown user) and 423 (too brief).

#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{TestEndpoint, run_sipp, scenario};
use voicemail_core::followup::FollowUp;

const CALLER: &str = "+74951234567";
const MANAGER: &str = "anna@example.com";

fn start(tag: &str, phone_port: u16) -> TestEndpoint {
    start_opts(tag, phone_port, "min_expires = 30")
}

/// [`start`] with extra `[sip.mwi]` lines.
fn start_opts(tag: &str, phone_port: u16, mwi: &str) -> TestEndpoint {
    let data = common::temp_dir(&format!("{tag}-dir"));
    let csv = data.path().join("clients.csv");
    std::fs::write(&csv, format!("number,client,manager_name,manager_email\n{CALLER},Acme,Anna Petrova,{MANAGER}\n"))
        .unwrap();
    let mailbox = format!("[directory]\npath = \"{}\"\ndefault_region = \"RU\"\n", csv.display());
    let sip = format!(
        "[sip.mwi]\n{mwi}\npoll_interval = \"200ms\"\n[[sip.mwi.managers]]\nemail = \"{MANAGER}\"\nusers = [\"201\"]\nnotify = [\"sip:201@127.0.0.1:{phone_port}\"]\n"
    );
    let ep = TestEndpoint::start_with(tag, &sip, &mailbox, |c| {
        c.load_directory().unwrap();
    });
    // The CSV is loaded; its directory may go.
    drop(data);
    ep
}

/// Waits (bounded) until `f` holds.
fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The unsolicited NOTIFYs a "phone" socket receives, each answered 200 OK; their bodies.
fn phone(socket: UdpSocket) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        // Bounded: the thread ends when the test drops the receiver (or after 10 minutes).
        let deadline = Instant::now() + Duration::from_secs(600);
        while Instant::now() < deadline {
            let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            if !text.starts_with("NOTIFY ") {
                continue;
            }
            let headers: Vec<&str> = text
                .lines()
                .filter(|l| {
                    let l = l.to_ascii_lowercase();
                    ["via:", "from:", "to:", "call-id:", "cseq:"].iter().any(|h| l.starts_with(h))
                })
                .collect();
            let ok = format!("SIP/2.0 200 OK\r\n{}\r\nContent-Length: 0\r\n\r\n", headers.join("\r\n"));
            let _ = socket.send_to(ok.as_bytes(), from);
            let body = text.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_owned());
            if tx.send(body).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
fn a_subscriber_sees_the_lamp_follow_the_managers_messages() {
    let Some(sipp) = common::tool("sipp", "sip-tester") else { return };
    let phone_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let phone_port = phone_socket.local_addr().unwrap().port();
    let phone = phone(phone_socket);
    let mut ep = start("mwi", phone_port);
    // At start the phone learns the state: nothing waiting.
    let first = phone.recv_timeout(Duration::from_secs(30)).expect("the unsolicited NOTIFY at start");
    assert!(first.contains("Messages-Waiting: no"), "{first}");

    // The subscriber runs on its own thread for the whole test.
    let dir = ep.dir.path().join("sipp-sub");
    std::fs::create_dir_all(&dir).unwrap();
    let xml = scenario(&dir, "uac_subscribe_mwi", &[("USER", "201".into())]);
    let (sipp_sub, target) = (sipp.clone(), ep.target());
    let subscriber = std::thread::spawn(move || {
        run_sipp(
            &sipp_sub,
            &dir,
            &target,
            &["-sf", xml.to_str().unwrap(), "-m", "1", "-trace_msg"],
            Duration::from_secs(120),
        )
    });
    // Its first NOTIFY (no messages) was answered before the call is made.
    wait_until("the subscription's first NOTIFY", Duration::from_secs(60), || ep.handle.mwi_subscriptions() == 1);

    // A client's call: stored and assigned to the manager.
    let dir = ep.dir.path().join("sipp-call");
    std::fs::create_dir_all(&dir).unwrap();
    let call = scenario(&dir, "uac_hangup_greeting", &[("CALLER", CALLER.into()), ("HANGUP_MS", "500".into())]);
    let run = run_sipp(
        &sipp,
        &dir,
        &ep.target(),
        &["-sf", call.to_str().unwrap(), "-s", "1000", "-m", "1"],
        Duration::from_secs(30),
    );
    assert!(run.success(), "{}", run.describe());
    let meta = ep.next_message(Duration::from_secs(30)).expect("the call's message");
    let stored = ep.mailbox.show(&meta.id).unwrap();
    assert!(matches!(&stored.followup, FollowUp::Assigned { to, .. } if to == MANAGER), "{:?}", stored.followup);
    let lit = phone.recv_timeout(Duration::from_secs(30)).expect("an unsolicited NOTIFY after the call");
    assert!(lit.contains("Messages-Waiting: yes") && lit.contains("Voice-Message: 1/0 (0/0)"), "{lit}");
    // The subscriber got its `yes` NOTIFY (initial + unsolicited at start and now + this one).
    wait_until("the subscriber's second NOTIFY", Duration::from_secs(60), || ep.handle.mwi_notifies() >= 4);

    // Called back: the lamp goes off.
    ep.mailbox.called_back(&meta.id, MANAGER, Some("done"), jiff::Timestamp::now()).unwrap();
    let off = phone.recv_timeout(Duration::from_secs(30)).expect("an unsolicited NOTIFY after the callback");
    assert!(off.contains("Messages-Waiting: no") && off.contains("Voice-Message: 0/1 (0/0)"), "{off}");

    let sub = subscriber.join().unwrap();
    assert!(sub.success(), "{}", sub.describe());
    let notifies: Vec<String> = sub.received().into_iter().filter(|m| m.starts_with("NOTIFY ")).collect();
    assert_eq!(notifies.len(), 5, "{notifies:#?}");
    assert!(notifies[1].contains("Messages-Waiting: yes"), "{}", notifies[1]);
    assert!(notifies[2].contains("Messages-Waiting: no"), "{}", notifies[2]);
    assert!(notifies[4].contains("Subscription-State: terminated"), "{}", notifies[4]);
    wait_until("the subscription's end", Duration::from_secs(30), || ep.handle.mwi_subscriptions() == 0);
    ep.stop();
}

/// Sends a SUBSCRIBE from `socket` and returns the final response.
fn ask(socket: &UdpSocket, ep: &TestEndpoint, user: &str, event: &str, expires: u32, n: u32) -> String {
    send_subscribe(socket, ep, user, event, expires, n);
    let mut buf = vec![0u8; 65536];
    // Bounded: at most 20 datagrams (provisional answers and NOTIFYs are skipped).
    for _ in 0..20 {
        let (len, _) = socket.recv_from(&mut buf).expect("an answer");
        let text = String::from_utf8_lossy(&buf[..len]).to_string();
        if text.starts_with("SIP/2.0 1") || !text.starts_with("SIP/2.0 ") {
            continue;
        }
        return text;
    }
    panic!("no final answer");
}

/// The next NOTIFY `socket` receives (answered 200 OK), skipping anything else.
fn next_notify(socket: &UdpSocket) -> String {
    let mut buf = vec![0u8; 65536];
    for _ in 0..20 {
        let (len, from) = socket.recv_from(&mut buf).expect("a NOTIFY");
        let text = String::from_utf8_lossy(&buf[..len]).to_string();
        if !text.starts_with("NOTIFY ") {
            continue;
        }
        let headers: Vec<&str> = text
            .lines()
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                ["via:", "from:", "to:", "call-id:", "cseq:"].iter().any(|h| l.starts_with(h))
            })
            .collect();
        let ok = format!("SIP/2.0 200 OK\r\n{}\r\nContent-Length: 0\r\n\r\n", headers.join("\r\n"));
        socket.send_to(ok.as_bytes(), from).unwrap();
        return text;
    }
    panic!("no NOTIFY");
}

fn send_subscribe(socket: &UdpSocket, ep: &TestEndpoint, user: &str, event: &str, expires: u32, n: u32) {
    let local = socket.local_addr().unwrap();
    let req = format!(
        "SUBSCRIBE sip:{user}@{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-mwi-{n}\r\nFrom: <sip:{user}@{local}>;tag=t{n}\r\nTo: <sip:{user}@{addr}>\r\nCall-ID: mwi-{n}@test\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:{user}@{local}>\r\nMax-Forwards: 70\r\nEvent: {event}\r\nExpires: {expires}\r\nContent-Length: 0\r\n\r\n",
        addr = ep.addr
    );
    socket.send_to(req.as_bytes(), ep.addr).unwrap();
}

#[test]
fn bad_subscriptions_are_refused() {
    let phone_port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut ep = start("mwi-refused", phone_port);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let r = ask(&socket, &ep, "201", "presence", 600, 1);
    assert!(r.starts_with("SIP/2.0 489 "), "{r}");
    assert!(r.to_ascii_lowercase().contains("allow-events: message-summary"), "{r}");
    let r = ask(&socket, &ep, "999", "message-summary", 600, 2);
    assert!(r.starts_with("SIP/2.0 404 "), "{r}");
    let r = ask(&socket, &ep, "201", "message-summary", 5, 3);
    assert!(r.starts_with("SIP/2.0 423 "), "{r}");
    assert!(r.to_ascii_lowercase().contains("min-expires: 30"), "{r}");
    let r = ask(&socket, &ep, "201", "message-summary", 100_000, 4);
    assert!(r.starts_with("SIP/2.0 200 "), "{r}");
    assert!(r.contains("Expires: 3600"), "the longest subscription granted: {r}");
    ep.stop();
}

/// A subscription not refreshed ends with a final NOTIFY `terminated;reason=timeout`; the
/// subscriptions of one source are capped (503 beyond).
#[test]
fn an_unrefreshed_subscription_expires_and_sources_are_capped() {
    let phone_port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut ep = start_opts("mwi-expiry", phone_port, "min_expires = 1\nmax_subscriptions_per_source = 1");
    let bind = |ip: &str| {
        let s = UdpSocket::bind((ip, 0)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    };
    // One long subscription from 127.0.0.1 fills that source's quota.
    let (first, second) = (bind("127.0.0.1"), bind("127.0.0.1"));
    let r = ask(&first, &ep, "201", "message-summary", 600, 1);
    assert!(r.starts_with("SIP/2.0 200 ") && r.contains("Expires: 600"), "{r}");
    let r = ask(&second, &ep, "201", "message-summary", 600, 2);
    assert!(r.starts_with("SIP/2.0 503 ") && r.contains("Retry-After"), "{r}");
    // Another source (127.0.0.2) subscribes for 1 s and does not refresh.
    let other = bind("127.0.0.2");
    let r = ask(&other, &ep, "201", "message-summary", 1, 3);
    assert!(r.starts_with("SIP/2.0 200 ") && r.contains("Expires: 1"), "{r}");
    let active = next_notify(&other);
    assert!(active.contains("Subscription-State: active;expires="), "{active}");
    assert!(active.contains("Messages-Waiting: no"), "{active}");
    let last = next_notify(&other);
    assert!(last.contains("Subscription-State: terminated;reason=timeout"), "{last}");
    ep.stop();
}
