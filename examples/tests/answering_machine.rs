//! The README's run command end to end: the `answering_machine` example binary with a
//! configuration file (SIP on a free port of 127.0.0.1, spool and Maildir in a temporary
//! directory). A SIPp call streams 10 s of audio after the greeting and the beep and hangs up:
//! the example prints the message's metadata as one JSON line on stdout, the WAV
//! (`<spool>/<id>.wav`) holds every packet of the 10 s streamed, the store records the message before its delivery,
//! and the e-mail with the caller's number is in the Maildir folder `.Voicemail`. Then a second
//! call is in progress when the process gets SIGINT (Ctrl-C): the endpoint hangs up with BYE
//! (SIPp waits for it), the message is finished, printed and delivered, and the process exits
//! with status 0.
//!
//! Needs SIPp (Debian `sip-tester`); without it the test prints `SKIPPED` and passes, unless
//! `VOICEMAIL_REQUIRE_INTEROP` is set.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use voicemail_core::EndReason;

#[test]
fn a_sipp_call_is_delivered_and_ctrl_c_finishes_the_call_in_progress() {
    let Some(sipp_bin) = sipp() else { return };
    let dir = temp_dir("am");
    let config = write_config(dir.path(), "30000-30999", MAILDIR);
    let folder = dir.path().join("Maildir/.Voicemail");
    let mut am = AnsweringMachine::start(&config);
    ulaw_tone(&dir.path().join("tone.wav"), 10.0, 440.0);

    // 1. A 10 s message.
    let xml = scenario(
        dir.path(),
        "uac_stream",
        &[
            ("CALLER", "+74951234567".into()),
            ("PT", "0".into()),
            ("CODEC", "PCMU".into()),
            // A quarter second after the beep: what a late greeting would cut off is not the point.
            ("GREETING_MS", (greeting_ms() + 230).to_string()),
            ("FILE", "tone.wav".into()),
            ("STREAM_MS", "10000".into()),
        ],
    );
    let mut call = sipp_call(&sipp_bin, dir.path(), &am.addr, &xml, "voicemail");
    let status = call.wait_timeout(Duration::from_secs(90)).expect("sipp did not finish");
    assert!(status.success(), "sipp failed: {status:?} (see {}/*_errors.log)", dir.path().display());
    let meta = am.next_message(Duration::from_secs(30)).expect("a JSON line on stdout");
    assert_eq!(meta.caller, "+74951234567");
    assert_eq!(meta.end_reason, EndReason::HangUp);
    let wav = meta.wav_path.clone().unwrap();
    assert_eq!(wav, dir.path().join("spool").join(format!("{}.wav", meta.id)));
    // Every packet received after the beep is in it, whatever the silence around them.
    let found = check_tone_recording(&read_wav8k(&wav), 8000, meta.media.packets_received, 20, 9900..=10100);
    let (lead, tone, tail) = found.unwrap_or_else(|e| panic!("{e} ({:?})", meta.media));
    eprintln!("recorded {lead} ms of silence, {tone} ms of tone, {tail} ms of silence");
    assert!(
        wait_until(Duration::from_secs(30), || maildir_messages(&folder).len() == 1),
        "one e-mail in .Voicemail/new"
    );
    let mail = std::fs::read(&maildir_messages(&folder)[0]).unwrap();
    assert!(String::from_utf8_lossy(&mail).contains("+74951234567"), "the e-mail names the caller");
    assert_eq!(mail_header(&mail, "X-Voicemail-Id").as_deref(), Some(meta.id.as_str()));
    // The store: the message as printed, recorded before it was delivered.
    let shown = show(&config, meta.id.as_str());
    assert_eq!(serde_json::from_value::<voicemail_core::MessageMeta>(shown["meta"].clone()).unwrap(), meta);
    let events: Vec<&str> =
        shown["history"].as_array().unwrap().iter().map(|h| h["event"]["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["recorded", "delivered"]);
    assert_eq!(shown["deliveries"][0]["state"], "delivered");

    // 2. Ctrl-C during a call: BYE from the endpoint, the message finished and delivered.
    let xml = scenario(
        dir.path(),
        "uac_until_bye",
        &[
            ("CALLER", "+74957777777".into()),
            ("PT", "0".into()),
            ("CODEC", "PCMU".into()),
            ("GREETING_MS", greeting_ms().to_string()),
            ("FILE", "tone.wav".into()),
            ("BYE_TIMEOUT_MS", "60000".into()),
        ],
    );
    let mut call = sipp_call(&sipp_bin, dir.path(), &am.addr, &xml, "voicemail");
    // Wait until the caller is being recorded (a second of audio in a new WAV), not a fixed time.
    let spool = dir.path().join("spool");
    let recording = wait_until(Duration::from_secs(60), || {
        std::fs::read_dir(&spool).unwrap().flatten().any(|e| {
            let p = e.path();
            p.extension().is_some_and(|x| x == "wav") && p != wav && e.metadata().is_ok_and(|m| m.len() > 44 + 16_000)
        })
    });
    assert!(recording, "the second call was not recorded");
    am.process.signal("INT");
    let status = call.wait_timeout(Duration::from_secs(60)).expect("sipp did not get the BYE");
    assert!(status.success(), "sipp failed: {status:?}: the endpoint should hang up with BYE");
    let meta = am.next_message(Duration::from_secs(30)).expect("the interrupted call's JSON line");
    assert_eq!(meta.caller, "+74957777777");
    assert_ne!(meta.end_reason, EndReason::Interrupted);
    let ms = wav_duration_ms(meta.wav_path.as_ref().unwrap());
    assert!(ms >= 1000 && ms == meta.duration_ms, "the call recorded {ms} ms, its metadata says {}", meta.duration_ms);
    let exit = am.process.wait_timeout(Duration::from_secs(60)).expect("the example did not exit after Ctrl-C");
    assert!(exit.success(), "exit status {exit:?}");
    assert_eq!(maildir_messages(&folder).len(), 2, "both messages delivered");
}
