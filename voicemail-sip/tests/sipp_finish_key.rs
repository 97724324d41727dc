//! The finish key ends the recording and the endpoint hangs up: after the beep SIPp streams
//! 2 s of audio and presses `#`, (1) as RFC 4733 telephone-events (the SIPp capture
//! `dtmf_2833_pound.pcap` from the shared corpus) and (2) as SIP INFO
//! (`application/dtmf-relay`, `Signal=#`). Either way the endpoint sends BYE (SIPp waits for
//! it and answers 200), and the message has end reason `finish-key`, the digit `#`, and about
//! 2 s of audio.

#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod common;

use std::time::Duration;

use common::{TestEndpoint, greeting_and_beep, run_sipp, scenario, write_g711_wav};
use voicemail_core::{CodecKind, EndReason};

fn finish_with(name: &str, tag: &str, pcap: Option<String>) {
    let Some(sipp) = common::tool("sipp", "sip-tester") else { return };
    let mut ep = TestEndpoint::start(tag, "", "");
    let dir = ep.dir.path().join("sipp");
    std::fs::create_dir_all(&dir).unwrap();
    write_g711_wav(&dir.join("tone.wav"), CodecKind::Pcmu, 2.0, 600.0);
    let mut vars = vec![
        ("CALLER", "+74951112233".to_owned()),
        ("PT", "0".to_owned()),
        ("CODEC", "PCMU".to_owned()),
        ("GREETING_MS", (greeting_and_beep().as_millis() + 20).to_string()),
        ("FILE", "tone.wav".to_owned()),
        ("STREAM_MS", "2100".to_owned()),
    ];
    if let Some(p) = pcap {
        vars.push(("DTMF_PCAP", p));
    }
    let xml = scenario(&dir, name, &vars);
    let run = run_sipp(
        &sipp,
        &dir,
        &ep.target(),
        &["-sf", xml.to_str().unwrap(), "-s", "vm", "-m", "1"],
        Duration::from_secs(40),
    );
    assert!(run.success(), "{}", run.describe());

    let meta = ep.next_message(Duration::from_secs(10)).expect("a message for the call");
    assert_eq!(meta.end_reason, EndReason::FinishKey);
    assert_eq!(meta.dtmf, "#");
    assert_eq!(meta.caller, "+74951112233");
    ep.assert_stored(&meta);
    let ms = common::wav_ms(&meta);
    eprintln!("recorded {ms} ms");
    assert!((1900..=2400).contains(&ms), "WAV is {ms} ms, expected about 2 s");
    ep.stop();
}

#[test]
fn pound_as_rfc4733_events_ends_the_call() {
    let Some(corpus) = common::netns::corpus_dir() else { return };
    let pcap = corpus.join("rtp/sipp/dtmf_2833_pound.pcap");
    finish_with("uac_finish_key_rfc4733", "dtmf4733", Some(pcap.to_string_lossy().into_owned()));
}

#[test]
fn pound_by_sip_info_ends_the_call() {
    finish_with("uac_finish_key_info", "dtmfinfo", None);
}
