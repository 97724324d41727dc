//! A SIPp call over UDP that waits for the greeting and the beep, streams 10 s of μ-law audio
//! (a 440 Hz tone, SIPp `rtp_stream`) and hangs up yields a message: the mailbox stored it as
//! it was handed to the application, the caller's number and display name come from From, and
//! the WAV holds every packet received (10 s of the tone, a packet more or less; SIPp starts a
//! quarter second after the beep it expects, and the silence around the tone is not checked). The endpoint's background work then
//! delivers it into the configured Maildir folder.

#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod common;

use std::time::Duration;

use common::{TestEndpoint, greeting_and_beep, run_sipp, scenario, write_g711_wav};
use voicemail_core::store::DeliveryState;
use voicemail_core::{CodecKind, EndReason};

#[test]
fn ten_seconds_of_audio_become_a_ten_second_message() {
    let Some(sipp) = common::tool("sipp", "sip-tester") else { return };
    let mut ep = TestEndpoint::start("stream", "", "[delivery.maildir]\nroot = \"Maildir\"\nfolder = \"Voicemail\"");
    let dir = ep.dir.path().join("sipp");
    std::fs::create_dir_all(&dir).unwrap();
    write_g711_wav(&dir.join("tone.wav"), CodecKind::Pcmu, 10.0, 440.0);
    let xml = scenario(
        &dir,
        "uac_stream",
        &[
            ("CALLER", "+74951234567".into()),
            ("PT", "0".into()),
            ("CODEC", "PCMU".into()),
            ("GREETING_MS", (greeting_and_beep().as_millis() + 250).to_string()),
            ("FILE", "tone.wav".into()),
            ("STREAM_MS", "10000".into()),
        ],
    );
    let run = run_sipp(
        &sipp,
        &dir,
        &ep.target(),
        &["-sf", xml.to_str().unwrap(), "-s", "4951234500", "-m", "1"],
        Duration::from_secs(60),
    );
    assert!(run.success(), "{}", run.describe());

    let meta = ep.next_message(Duration::from_secs(10)).expect("a message for the call");
    assert_eq!(meta.caller, "+74951234567");
    assert_eq!(meta.caller_name.as_deref(), Some("Test Caller"));
    assert_eq!(meta.called, "4951234500");
    assert_eq!(meta.end_reason, EndReason::HangUp);
    assert_eq!(meta.codec, CodecKind::Pcmu);
    ep.assert_stored(&meta);

    let samples = common::read_recording(&meta);
    let ms = samples.len() as u64 / 8;
    let (lead, tone, tail) = common::check_message_tone(&meta, 9900..=10100).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("recorded {ms} ms: {lead} ms of silence, {tone} ms of tone, {tail} ms of silence");
    assert_eq!(meta.duration_ms, ms);
    let middle = &samples[8000..8000 * 9];
    let f = common::dominant_frequency(middle);
    assert!((430.0..=450.0).contains(&f), "dominant frequency {f} Hz, expected 440");
    assert!(common::rms(middle) > 3000.0, "the recording is too quiet: rms {}", common::rms(middle));

    // Delivered by the runner `Endpoint::run` started: one e-mail in the folder's `new/`.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let delivered = loop {
        let deliveries = ep.mailbox.deliveries().unwrap();
        if deliveries.iter().any(|d| d.id == meta.id && d.state == DeliveryState::Delivered) {
            break true;
        }
        if std::time::Instant::now() > deadline {
            eprintln!("deliveries: {deliveries:?}");
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(delivered, "the message was not delivered to the Maildir");
    let new = ep.dir.path().join("Maildir/.Voicemail/new");
    let mails = std::fs::read_dir(&new).map(|d| d.count()).unwrap_or(0);
    assert_eq!(mails, 1, "{}", new.display());
    ep.stop();
}
