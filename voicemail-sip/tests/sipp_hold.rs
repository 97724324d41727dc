//! Hold and unhold keep the recording going: after the beep SIPp streams 1.5 s of audio, puts
//! the call on hold with a re-INVITE (`a=sendonly`, answered `a=recvonly`), is silent for 3 s,
//! takes it off hold (`a=sendrecv`), streams 1.5 s more and hangs up. The message is one
//! recording of the whole time (tone, 3 s of silence, tone), ended by the hang-up, not by
//! the media timeout.
//!
//! The same with re-INVITEs without an offer (RFC 3261 §14.2, as a B2BUA or a third-party
//! call controller sends them): our 200 OK must carry an offer (the call's codec first,
//! `a=sendrecv`), and the caller's answer in the ACK puts the call on hold (`a=inactive`) and
//! back (`a=sendrecv`). The hold lasts longer than the media timeout (5 s here): the call
//! must still end with the hang-up, the silence recorded in between. An UPDATE without an
//! offer then gets a 200 OK without SDP (RFC 3311 §5.2).

#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod common;

use std::time::Duration;

use common::{TestEndpoint, greeting_and_beep, run_sipp, scenario, write_g711_wav};
use voicemail_core::{CodecKind, EndReason};

#[test]
fn hold_and_unhold_keep_recording() {
    hold_and_unhold("uac_hold", "", 3000);
}

#[test]
fn hold_and_unhold_by_reinvites_without_an_offer_keep_recording() {
    hold_and_unhold("uac_hold_offerless", "[recording]\nmedia_timeout = \"5s\"", 7000);
}

/// SIPp's `scenario` (hold for `hold_ms`) to an endpoint with `mailbox` settings.
fn hold_and_unhold(scenario_name: &str, mailbox: &str, hold_ms: u64) {
    let Some(sipp) = common::tool("sipp", "sip-tester") else { return };
    let mut ep = TestEndpoint::start("hold", "", mailbox);
    let dir = ep.dir.path().join("sipp");
    std::fs::create_dir_all(&dir).unwrap();
    write_g711_wav(&dir.join("tone.wav"), CodecKind::Pcmu, 1.5, 800.0);
    let xml = scenario(
        &dir,
        scenario_name,
        &[
            ("CALLER", "+74957654321".into()),
            ("PT", "0".into()),
            ("CODEC", "PCMU".into()),
            ("GREETING_MS", (greeting_and_beep().as_millis() + 20).to_string()),
            ("FILE", "tone.wav".into()),
            ("STREAM_MS", "1500".into()),
            ("HOLD_MS", hold_ms.to_string()),
        ],
    );
    let run = run_sipp(
        &sipp,
        &dir,
        &ep.target(),
        &["-sf", xml.to_str().unwrap(), "-s", "vm", "-m", "1", "-trace_msg"],
        Duration::from_secs(60),
    );
    assert!(run.success(), "{}", run.describe());

    let meta = ep.next_message(Duration::from_secs(10)).expect("a message for the call");
    assert_eq!(meta.end_reason, EndReason::HangUp);
    assert_eq!(meta.caller, "+74957654321");
    ep.assert_stored(&meta);
    let samples = common::read_recording(&meta);
    let ms = samples.len() as u64 / 8;
    eprintln!("recorded {ms} ms");
    // 1.5 s + the hold + two re-INVITE round trips + 1.5 s.
    let expected = 3000 + hold_ms;
    assert!((expected - 100..=expected + 600).contains(&ms), "WAV is {ms} ms, expected about {expected} ms");
    let first = &samples[800..8000];
    let hold = &samples[16000..16000 + hold_ms as usize * 8 - 4000];
    let last = &samples[samples.len() - 10000..samples.len() - 2000];
    for (name, part) in [("before the hold", first), ("after the hold", last)] {
        let f = common::dominant_frequency(part);
        assert!((790.0..=810.0).contains(&f), "{name}: dominant frequency {f}");
    }
    assert!(common::rms(hold) < 50.0, "the hold should be silence, rms {}", common::rms(hold));
    ep.stop();
}
