//! A full spool refuses calls without leaving files: with `[store] min_free` larger than the
//! free space of the spool's file system, SIPp's INVITEs get `503 Service Unavailable` with a
//! `Retry-After` header, no message reaches the application or the store, and the spool holds
//! no `.wav` file afterwards; the endpoint keeps running and shuts down cleanly.

#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod common;

use std::time::Duration;

use common::{TestEndpoint, run_sipp, scenario};

#[test]
fn full_spool_answers_503_with_retry_after_and_leaves_no_file() {
    let Some(sipp) = common::tool("sipp", "sip-tester") else { return };
    let mut ep = TestEndpoint::start_with("full", "", "", |config| config.store.min_free_bytes = u64::MAX);
    let dir = ep.dir.path().join("sipp");
    std::fs::create_dir_all(&dir).unwrap();
    let xml = scenario(&dir, "uac_refused", &[("CALLER", "+74951112233".into()), ("STATUS", "503".into())]);
    let run = run_sipp(
        &sipp,
        &dir,
        &ep.target(),
        &["-sf", xml.to_str().unwrap(), "-s", "vm", "-m", "3", "-l", "3", "-trace_msg"],
        Duration::from_secs(30),
    );
    assert!(run.success(), "{}", run.describe());
    let answers: Vec<String> =
        run.received().into_iter().filter(|m| m.contains("CSeq: 1 INVITE") && !m.starts_with("SIP/2.0 100")).collect();
    assert_eq!(answers.len(), 3, "one final answer per INVITE: {answers:?}");
    for answer in &answers {
        assert!(answer.starts_with("SIP/2.0 503"), "{answer}");
        let retry_after = answer
            .lines()
            .find_map(|l| l.split_once(':').filter(|(name, _)| name.trim().eq_ignore_ascii_case("Retry-After")))
            .map(|(_, value)| value.trim().to_owned());
        assert_eq!(retry_after.as_deref(), Some("60"), "{answer}");
    }

    assert!(ep.next_message(Duration::from_millis(500)).is_none(), "a refused call is no message");
    assert!(ep.wav_files().is_empty(), "files left in the spool: {:?}", ep.wav_files());
    assert!(ep.mailbox.list(false).unwrap().is_empty(), "a refused call leaves no record");
    assert_eq!(ep.handle.active_calls(), 0);
    ep.stop();
    assert!(ep.wav_files().is_empty(), "files left in the spool after shutdown: {:?}", ep.wav_files());
}
