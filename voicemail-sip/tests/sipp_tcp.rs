//! The same call as `sipp_stream`, over TCP (`sipp -t t1`): INVITE, 200, ACK and BYE travel on
//! one TCP connection, the Contact says `transport=tcp`, and the delivered message has the
//! streamed audio (every packet of 3 s of A-law at 1 kHz) and the caller's number.

#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod common;

use std::time::Duration;

use common::{TestEndpoint, greeting_and_beep, run_sipp, scenario, write_g711_wav};
use voicemail_core::{CodecKind, EndReason};

#[test]
fn a_call_over_tcp_is_recorded() {
    let Some(sipp) = common::tool("sipp", "sip-tester") else { return };
    let mut ep = TestEndpoint::start("tcp", "", "");
    let dir = ep.dir.path().join("sipp");
    std::fs::create_dir_all(&dir).unwrap();
    write_g711_wav(&dir.join("tone.wav"), CodecKind::Pcma, 3.0, 1000.0);
    let xml = scenario(
        &dir,
        "uac_stream",
        &[
            ("CALLER", "84951234567".into()),
            ("PT", "8".into()),
            ("CODEC", "PCMA".into()),
            ("GREETING_MS", (greeting_and_beep().as_millis() + 250).to_string()),
            ("FILE", "tone.wav".into()),
            ("STREAM_MS", "3000".into()),
        ],
    );
    let run = run_sipp(
        &sipp,
        &dir,
        &ep.target(),
        &["-sf", xml.to_str().unwrap(), "-s", "vm", "-m", "1", "-t", "t1", "-trace_msg"],
        Duration::from_secs(60),
    );
    assert!(run.success(), "{}", run.describe());
    let log = run.logs("_messages.log");
    assert!(log.contains("TCP message received"), "SIPp did not use TCP:\n{log}");
    assert!(log.to_ascii_lowercase().contains("transport=tcp"), "our Contact should name TCP:\n{log}");

    let meta = ep.next_message(Duration::from_secs(10)).expect("a message for the call");
    assert_eq!(meta.caller, "84951234567");
    assert_eq!(meta.end_reason, EndReason::HangUp);
    assert_eq!(meta.codec, CodecKind::Pcma);
    ep.assert_stored(&meta);
    let samples = common::read_recording(&meta);
    let (lead, tone, tail) = common::check_message_tone(&meta, 2900..=3100).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("recorded {lead} ms of silence, {tone} ms of tone, {tail} ms of silence");
    let f = common::dominant_frequency(&samples[4000..20000]);
    assert!((990.0..=1010.0).contains(&f), "dominant frequency {f} Hz, expected 1000");
    ep.stop();
}
