//! The 200 OK is retransmitted until the ACK arrives (RFC 3261 §13.3.1.4): SIPp holds its ACK
//! back for 2.2 s, and its message trace must show at least two 200 OKs for the INVITE; after
//! the ACK the call proceeds normally and its message is delivered.

#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod common;

use std::time::Duration;

use common::{TestEndpoint, run_sipp, scenario};

#[test]
fn ok_is_retransmitted_until_ack() {
    let Some(sipp) = common::tool("sipp", "sip-tester") else { return };
    let mut ep = TestEndpoint::start("retrans", "", "");
    let dir = ep.dir.path().join("sipp");
    std::fs::create_dir_all(&dir).unwrap();
    let xml = scenario(&dir, "uac_ack_delay", &[("CALLER", "+74950000002".into()), ("ACK_DELAY_MS", "2200".into())]);
    let run = run_sipp(
        &sipp,
        &dir,
        &ep.target(),
        &["-sf", xml.to_str().unwrap(), "-s", "vm", "-m", "1", "-trace_msg"],
        Duration::from_secs(30),
    );
    assert!(run.success(), "{}", run.describe());
    let received = run.received();
    let statuses: Vec<&str> = received.iter().filter_map(|m| m.lines().next()).collect();
    let oks = received.iter().filter(|m| m.starts_with("SIP/2.0 200") && m.contains("CSeq: 1 INVITE")).count();
    eprintln!("received {statuses:?}; 200 OKs for the INVITE: {oks}");
    assert_eq!(statuses.first().copied(), Some("SIP/2.0 100 Trying"), "{statuses:?}");
    assert!(oks >= 2, "expected the 200 OK at least twice before the ACK, got {oks}: {statuses:?}");
    assert!(oks <= 5, "the 200 OK should stop after the ACK (T1 doubling gives 3 in 2.2 s), got {oks}");

    let meta = ep.next_message(Duration::from_secs(10)).expect("a message for the call");
    assert_eq!(meta.caller, "+74950000002");
    ep.assert_stored(&meta);
    ep.stop();
}
