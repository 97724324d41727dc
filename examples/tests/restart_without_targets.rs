//! The answering machine restarts on a spool that holds messages when no delivery target is
//! configured (it once refused: "message … has no destination"). Run 1 records a call and stops
//! on SIGTERM (exit 0). Run 2 starts on that spool, records a second call (so SIP works), and
//! is killed (SIGKILL) while a third call is being recorded. Run 3 starts, recovers the third
//! call as `interrupted` and prints it, and exits 0 on SIGTERM. No run prints a message twice;
//! the store holds the three messages, none with a delivery.
//!
//! Needs SIPp (Debian `sip-tester`); without it the test prints `SKIPPED` and passes, unless
//! `VOICEMAIL_REQUIRE_INTEROP` is set.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use voicemail_core::EndReason;

fn stream(dir: &Path, caller: &str) -> std::path::PathBuf {
    scenario(
        dir,
        "uac_stream",
        &[
            ("CALLER", caller.into()),
            ("PT", "0".into()),
            ("CODEC", "PCMU".into()),
            ("GREETING_MS", greeting_ms().to_string()),
            ("FILE", "tone.wav".into()),
            ("STREAM_MS", "2000".into()),
        ],
    )
}

#[test]
fn restarts_on_a_spool_with_messages_and_no_delivery_target() {
    let Some(sipp_bin) = sipp() else { return };
    let dir = temp_dir("restart");
    let config = write_config(dir.path(), "32000-32999", "");
    let spool = dir.path().join("spool");
    ulaw_tone(&dir.path().join("tone.wav"), 5.0, 440.0);

    // Run 1: one call, then SIGTERM.
    let mut am = AnsweringMachine::start(&config);
    let xml = stream(dir.path(), "+74951111111");
    let mut call = sipp_call(&sipp_bin, dir.path(), &am.addr, &xml, "voicemail");
    assert!(call.wait_timeout(Duration::from_secs(90)).expect("sipp did not finish").success(), "call 1 failed");
    let first = am.next_message(Duration::from_secs(30)).expect("call 1 printed");
    assert_eq!((first.caller.as_str(), first.end_reason), ("+74951111111", EndReason::HangUp));
    assert!(am.stop("TERM").success(), "run 1 exits 0 on SIGTERM");
    assert!(am.remaining_messages(Duration::from_secs(10)).is_empty());

    // Run 2: starts on the spool with a message and no target; records a call; then a crash
    // in the middle of the next call.
    let mut am = AnsweringMachine::start(&config);
    let xml = stream(dir.path(), "+74952222222");
    let mut call = sipp_call(&sipp_bin, dir.path(), &am.addr, &xml, "voicemail");
    assert!(call.wait_timeout(Duration::from_secs(90)).expect("sipp did not finish").success(), "call 2 failed");
    let second = am.next_message(Duration::from_secs(30)).expect("call 2 printed");
    assert_eq!((second.caller.as_str(), second.end_reason), ("+74952222222", EndReason::HangUp));
    let xml = scenario(
        dir.path(),
        "uac_until_bye",
        &[
            ("CALLER", "+74953333333".into()),
            ("PT", "0".into()),
            ("CODEC", "PCMU".into()),
            ("GREETING_MS", greeting_ms().to_string()),
            ("FILE", "tone.wav".into()),
            ("BYE_TIMEOUT_MS", "60000".into()),
        ],
    );
    let _call3 = sipp_call(&sipp_bin, dir.path(), &am.addr, &xml, "voicemail");
    let known = [first.id.to_string(), second.id.to_string()];
    let recording = wait_until(Duration::from_secs(60), || {
        std::fs::read_dir(&spool).unwrap().flatten().any(|e| {
            let p = e.path();
            let stem = p.file_stem().unwrap_or_default().to_string_lossy().to_string();
            p.extension().is_some_and(|x| x == "wav")
                && !known.contains(&stem)
                && e.metadata().is_ok_and(|m| m.len() > 44 + 16_000)
        })
    });
    assert!(recording, "call 3 was not recorded");
    let killed = am.stop("KILL");
    assert!(!killed.success());
    let printed = am.remaining_messages(Duration::from_secs(10));
    assert!(printed.is_empty(), "run 2 printed only call 2: {printed:?}");

    // Run 3: recovers call 3, then stops cleanly.
    let mut am = AnsweringMachine::start(&config);
    let third = am.next_message(Duration::from_secs(30)).expect("the interrupted call is recovered and printed");
    assert_eq!((third.caller.as_str(), third.end_reason), ("+74953333333", EndReason::Interrupted));
    assert!(third.duration_ms >= 1000, "the recovered message keeps its audio: {} ms", third.duration_ms);
    assert!(am.stop("TERM").success(), "run 3 exits 0 on SIGTERM");
    assert!(am.remaining_messages(Duration::from_secs(10)).is_empty(), "nothing printed twice");

    let list = inbox(&config, &["list", "--json"]);
    assert_eq!(list.code(), Some(0), "{}", list.stderr);
    let messages: Vec<serde_json::Value> = list.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut ids: Vec<&str> = messages.iter().map(|m| m["meta"]["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    let mut want = [first.id.as_str(), second.id.as_str(), third.id.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);
    assert!(messages.iter().all(|m| m["deliveries"].as_array().unwrap().is_empty()), "no target, no delivery");
    let status = inbox(&config, &["status"]);
    assert_eq!((status.code(), status.stdout.as_str()), (Some(0), ""), "{}", status.stderr);
}
