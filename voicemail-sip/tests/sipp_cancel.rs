//! CANCEL before the answer: with a 3 s ring delay the endpoint sends 100 and 180 and waits;
//! SIPp cancels, gets 200 for the CANCEL and 487 for the INVITE (and ACKs it), and the call
//! still becomes a message: zero-length WAV, end reason `hang-up`, the caller's number.

#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod common;

use std::time::{Duration, Instant};

use common::{TestEndpoint, run_sipp, scenario};
use voicemail_core::EndReason;

#[test]
fn cancel_while_ringing_gets_487_and_leaves_an_empty_message() {
    let Some(sipp) = common::tool("sipp", "sip-tester") else { return };
    let mut ep = TestEndpoint::start("cancel", "ring_delay = \"3s\"", "");
    let dir = ep.dir.path().join("sipp");
    std::fs::create_dir_all(&dir).unwrap();
    let xml = scenario(&dir, "uac_cancel", &[("CALLER", "+74950000001".into())]);
    let started = Instant::now();
    let run = run_sipp(
        &sipp,
        &dir,
        &ep.target(),
        &["-sf", xml.to_str().unwrap(), "-s", "vm", "-m", "1", "-trace_msg"],
        Duration::from_secs(30),
    );
    assert!(run.success(), "{}", run.describe());
    assert!(started.elapsed() < Duration::from_secs(3), "the CANCEL should end the call before the ring delay");
    let received = run.received();
    let statuses: Vec<&str> = received.iter().filter_map(|m| m.lines().next()).collect();
    eprintln!("received {statuses:?}");
    let invite_answers: Vec<&str> =
        received.iter().filter(|m| m.contains("CSeq: 1 INVITE")).filter_map(|m| m.split_whitespace().nth(1)).collect();
    assert_eq!(invite_answers, ["100", "180", "487"], "responses to the INVITE");
    assert!(
        received.iter().any(|m| m.starts_with("SIP/2.0 200") && m.contains("CSeq: 1 CANCEL")),
        "no 200 for the CANCEL: {statuses:?}"
    );

    let meta = ep.next_message(Duration::from_secs(10)).expect("a message for the call");
    assert_eq!(meta.caller, "+74950000001");
    assert_eq!(meta.end_reason, EndReason::HangUp);
    assert_eq!(meta.duration_ms, 0);
    ep.assert_stored(&meta);
    assert!(common::read_recording(&meta).is_empty());
    ep.stop();
}
