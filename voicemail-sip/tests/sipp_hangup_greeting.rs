//! A caller who hangs up during the greeting still leaves a message: SIPp sends BYE 1.5 s after
//! the ACK, the endpoint answers 200, and the delivered message has a valid zero-length WAV,
//! end reason `hang-up` and the caller's number. PCMA is chosen because the offer lists it first.

#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod common;

use std::time::Duration;

use common::{TestEndpoint, run_sipp, scenario};
use voicemail_core::{CodecKind, EndReason};

#[test]
fn hang_up_during_the_greeting_leaves_an_empty_message() {
    let Some(sipp) = common::tool("sipp", "sip-tester") else { return };
    let mut ep = TestEndpoint::start("hangup", "", "");
    let dir = ep.dir.path().join("sipp");
    std::fs::create_dir_all(&dir).unwrap();
    let xml = scenario(&dir, "uac_hangup_greeting", &[("CALLER", "+15551230000".into()), ("HANGUP_MS", "1500".into())]);
    let run = run_sipp(
        &sipp,
        &dir,
        &ep.target(),
        &["-sf", xml.to_str().unwrap(), "-s", "1000", "-m", "1"],
        Duration::from_secs(30),
    );
    assert!(run.success(), "{}", run.describe());

    let meta = ep.next_message(Duration::from_secs(10)).expect("a message for the call");
    assert_eq!(meta.caller, "+15551230000");
    assert_eq!(meta.called, "1000");
    assert_eq!(meta.end_reason, EndReason::HangUp);
    assert_eq!(meta.codec, CodecKind::Pcma);
    assert_eq!(meta.duration_ms, 0);
    ep.assert_stored(&meta);
    assert!(common::read_recording(&meta).is_empty());
    assert_eq!(std::fs::metadata(meta.wav_path.as_ref().unwrap()).unwrap().len(), 44, "a bare WAV header");
    ep.stop();
}
