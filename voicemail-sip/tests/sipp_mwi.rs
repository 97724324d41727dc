//! The phone's message lamp (issue 9, item 6): a SIPp subscriber SUBSCRIBEs to
//! `message-summary` for the manager's SIP user and checks every NOTIFY body in its scenario
//! (`tests/sipp/uac_subscribe_mwi.xml`): `Messages-Waiting: no` at first, `yes` after a
//! client's SIPp call (the caller is in the directory, so the message is assigned to the
//! manager), `no` after the test marks it called back, a NOTIFY after a refresh in the dialog,
//! and a final `terminated` NOTIFY after `Expires: 0`. An unsolicited NOTIFY goes to the
//! phone listed in `notify` (a UDP socket here) on each change. Other requests get 489 (another
//! event package), 404 (an unknown user) and 423 (too brief). A re-SUBSCRIBE whose CSeq is
//! not above the dialog's last one gets 500 and changes nothing (RFC 3261 §12.2.2).

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
            answer_notify(&socket, from, &text);
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
        answer_notify(socket, from, &text);
        return text;
    }
    panic!("no NOTIFY");
}

/// The fields of a SUBSCRIBE the tests vary: `call` names the dialog (`Call-ID`, `From` tag),
/// `to_tag` puts it in the dialog, `branch` makes a new transaction.
struct Subscribe<'a> {
    user: &'a str,
    event: &'a str,
    call: u32,
    to_tag: Option<&'a str>,
    cseq: u32,
    branch: &'a str,
    expires: u32,
}

impl Subscribe<'_> {
    fn send(&self, socket: &UdpSocket, ep: &TestEndpoint) {
        let local = socket.local_addr().unwrap();
        let Subscribe { user, event, call, to_tag, cseq, branch, expires } = self;
        let to_tag = to_tag.map_or(String::new(), |t| format!(";tag={t}"));
        let req = format!(
            "SUBSCRIBE sip:{user}@{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{branch}\r\nFrom: <sip:{user}@{local}>;tag=t{call}\r\nTo: <sip:{user}@{addr}>{to_tag}\r\nCall-ID: mwi-{call}@test\r\nCSeq: {cseq} SUBSCRIBE\r\nContact: <sip:{user}@{local}>\r\nMax-Forwards: 70\r\nEvent: {event}\r\nExpires: {expires}\r\nContent-Length: 0\r\n\r\n",
            addr = ep.addr
        );
        socket.send_to(req.as_bytes(), ep.addr).unwrap();
    }
}

fn send_subscribe(socket: &UdpSocket, ep: &TestEndpoint, user: &str, event: &str, expires: u32, n: u32) {
    let branch = format!("mwi-{n}");
    Subscribe { user, event, call: n, to_tag: None, cseq: 1, branch: &branch, expires }.send(socket, ep);
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

/// A SUBSCRIBE for user 201 in dialog `call` (`to_tag`: in the dialog), `CSeq: cseq`, on a
/// new transaction (`branch`); the final answer, each NOTIFY meanwhile answered 200 OK and
/// kept in `notifies`.
fn subscribe_in(
    socket: &UdpSocket,
    ep: &TestEndpoint,
    (call, to_tag): (u32, Option<&str>),
    cseq: u32,
    branch: &str,
    expires: u32,
    notifies: &mut Vec<String>,
) -> String {
    let event = "message-summary";
    Subscribe { user: "201", event, call, to_tag, cseq, branch, expires }.send(socket, ep);
    let mut buf = vec![0u8; 65536];
    // Bounded: at most 20 datagrams.
    for _ in 0..20 {
        let (len, from) = socket.recv_from(&mut buf).expect("an answer");
        let text = String::from_utf8_lossy(&buf[..len]).to_string();
        if text.starts_with("NOTIFY ") {
            answer_notify(socket, from, &text);
            notifies.push(text);
            continue;
        }
        let ours = text.lines().any(|l| l.eq_ignore_ascii_case(&format!("CSeq: {cseq} SUBSCRIBE")));
        if text.starts_with("SIP/2.0 ") && !text.starts_with("SIP/2.0 1") && ours {
            return text;
        }
    }
    panic!("no final answer");
}

/// Answers a NOTIFY with 200 OK.
fn answer_notify(socket: &UdpSocket, to: std::net::SocketAddr, notify: &str) {
    let headers: Vec<&str> = notify
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            ["via:", "from:", "to:", "call-id:", "cseq:"].iter().any(|h| l.starts_with(h))
        })
        .collect();
    let ok = format!("SIP/2.0 200 OK\r\n{}\r\nContent-Length: 0\r\n\r\n", headers.join("\r\n"));
    socket.send_to(ok.as_bytes(), to).unwrap();
}

/// The NOTIFYs that arrive within `wait` (each answered 200 OK).
fn notifies_within(socket: &UdpSocket, wait: Duration) -> Vec<String> {
    let mut buf = vec![0u8; 65536];
    let mut out = Vec::new();
    let deadline = Instant::now() + wait;
    while let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
        socket.set_read_timeout(Some(left)).unwrap();
        let Ok((len, from)) = socket.recv_from(&mut buf) else { break };
        let text = String::from_utf8_lossy(&buf[..len]).to_string();
        if text.starts_with("NOTIFY ") {
            answer_notify(socket, from, &text);
            out.push(text);
        }
    }
    socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    out
}

/// RFC 3261 §12.2.2: a re-SUBSCRIBE whose CSeq is not above the dialog's remote sequence
/// number (a delayed refresh, an unsubscribe reordered behind a refresh) gets 500 and changes
/// nothing: no NOTIFY follows, the subscription stays; in-order ones still refresh and end it.
#[test]
fn an_out_of_order_resubscribe_gets_500_and_changes_nothing() {
    let phone_port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut ep = start("mwi-cseq", phone_port);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut notifies = Vec::new();
    let ok = subscribe_in(&socket, &ep, (1, None), 5, "c5", 600, &mut notifies);
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    let to = ok.lines().find(|l| l.to_ascii_lowercase().starts_with("to:")).unwrap();
    let tag = to.split(";tag=").nth(1).unwrap().split(';').next().unwrap().trim().to_owned();
    let dialog = (1, Some(tag.as_str()));
    notifies.extend(notifies_within(&socket, Duration::from_millis(500)));
    assert_eq!(notifies.len(), 1, "the first NOTIFY: {notifies:#?}");
    wait_until("the subscription", Duration::from_secs(30), || ep.handle.mwi_subscriptions() == 1);

    // A refresh above the initial CSeq (not by one): 200 and a NOTIFY.
    notifies.clear();
    let ok = subscribe_in(&socket, &ep, dialog, 7, "c7", 600, &mut notifies);
    assert!(ok.starts_with("SIP/2.0 200 ") && ok.contains("Expires: 600"), "{ok}");
    notifies.extend(notifies_within(&socket, Duration::from_millis(500)));
    assert_eq!(notifies.len(), 1, "the refresh's NOTIFY: {notifies:#?}");
    assert!(notifies[0].contains("Subscription-State: active;expires="), "{}", notifies[0]);

    // Out of order: a lower CSeq (a refresh, an unsubscribe), and the same CSeq on a new
    // transaction. Each gets 500; none ends or refreshes the subscription.
    notifies.clear();
    for (cseq, branch, expires) in [(6, "c6", 30), (6, "c6-0", 0), (7, "c7-0", 0), (1, "c1-0", 0)] {
        let r = subscribe_in(&socket, &ep, dialog, cseq, branch, expires, &mut notifies);
        assert!(r.starts_with("SIP/2.0 500 "), "CSeq {cseq}, Expires {expires}: {r}");
    }
    notifies.extend(notifies_within(&socket, Duration::from_secs(1)));
    assert!(notifies.is_empty(), "no NOTIFY after an out-of-order re-SUBSCRIBE: {notifies:#?}");
    assert_eq!(ep.handle.mwi_subscriptions(), 1, "the subscription is still there");

    // In order again: a refresh, then the end with its final NOTIFY.
    let ok = subscribe_in(&socket, &ep, dialog, 8, "c8", 600, &mut notifies);
    assert!(ok.starts_with("SIP/2.0 200 ") && ok.contains("Expires: 600"), "{ok}");
    let ok = subscribe_in(&socket, &ep, dialog, 9, "c9", 0, &mut notifies);
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    notifies.extend(notifies_within(&socket, Duration::from_millis(500)));
    let states: Vec<&str> =
        notifies.iter().filter_map(|n| n.lines().find(|l| l.starts_with("Subscription-State:"))).collect();
    assert_eq!(states.len(), 2, "{notifies:#?}");
    assert!(states[0].contains("active;expires="), "{states:?}");
    assert!(states[1].contains("terminated"), "{states:?}");
    wait_until("the subscription's end", Duration::from_secs(30), || ep.handle.mwi_subscriptions() == 0);
    ep.stop();
}
