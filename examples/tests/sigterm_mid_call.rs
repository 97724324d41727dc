//! SIGTERM stops the answering machine as gracefully as Ctrl-C: a call that is being recorded
//! when the signal arrives is hung up with BYE, its message is complete (ended by the hang-up,
//! not `interrupted`; the WAV holds what the metadata says), stored, printed, and delivered to
//! the Maildir before the process exits with status 0.
//!
//! Needs SIPp (Debian `sip-tester`); without it the test prints `SKIPPED` and passes, unless
//! `VOICEMAIL_REQUIRE_INTEROP` is set.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use voicemail_core::EndReason;

#[test]
fn sigterm_mid_call_stores_and_delivers_the_complete_message() {
    let Some(sipp_bin) = sipp() else { return };
    let dir = temp_dir("sigterm");
    let config = write_config(dir.path(), "31000-31999", MAILDIR);
    let folder = dir.path().join("Maildir/.Voicemail");
    let spool = dir.path().join("spool");
    let mut am = AnsweringMachine::start(&config);
    ulaw_tone(&dir.path().join("tone.wav"), 10.0, 440.0);
    let xml = scenario(
        dir.path(),
        "uac_until_bye",
        &[
            ("CALLER", "+74958888888".into()),
            ("PT", "0".into()),
            ("CODEC", "PCMU".into()),
            ("GREETING_MS", greeting_ms().to_string()),
            ("FILE", "tone.wav".into()),
            ("BYE_TIMEOUT_MS", "60000".into()),
        ],
    );
    let mut call = sipp_call(&sipp_bin, dir.path(), &am.addr, &xml, "voicemail");
    // The signal comes once the caller is being recorded (a second of audio in the WAV).
    let recording = wait_until(Duration::from_secs(60), || {
        std::fs::read_dir(&spool).is_ok_and(|mut d| {
            d.any(|e| {
                e.is_ok_and(|e| {
                    e.path().extension().is_some_and(|x| x == "wav")
                        && e.metadata().is_ok_and(|m| m.len() > 44 + 16_000)
                })
            })
        })
    });
    assert!(recording, "the call was not recorded");
    assert!(maildir_messages(&folder).is_empty(), "nothing delivered before the call ends");
    am.process.signal("TERM");

    let status = call.wait_timeout(Duration::from_secs(60)).expect("sipp did not get the BYE");
    assert!(status.success(), "sipp failed: {status:?}: the endpoint should hang up with BYE");
    let exit = am.process.wait_timeout(Duration::from_secs(60)).expect("the example did not exit after SIGTERM");
    assert!(exit.success(), "exit status {exit:?}");
    // Everything below happened before the exit: the process printed it, the spool holds it.
    let printed = am.remaining_messages(Duration::from_secs(10));
    assert_eq!(printed.len(), 1, "one message printed: {printed:?}");
    let meta = &printed[0];
    assert_eq!(meta.caller, "+74958888888");
    assert_eq!(meta.end_reason, EndReason::HangUp, "complete, not interrupted");
    let wav = meta.wav_path.clone().unwrap();
    assert_eq!(wav, spool.join(format!("{}.wav", meta.id)));
    let ms = wav_duration_ms(&wav);
    assert!(ms >= 1000 && ms == meta.duration_ms, "the WAV holds {ms} ms, the metadata says {}", meta.duration_ms);

    let shown = show(&config, meta.id.as_str());
    assert_eq!(shown["lifecycle"], "stored");
    assert_eq!(shown["meta"]["end_reason"], "hang-up");
    assert_eq!(shown["deliveries"][0]["target"], "maildir");
    assert_eq!(shown["deliveries"][0]["state"], "delivered", "delivered before the exit: {shown}");
    let mails = maildir_messages(&folder);
    assert_eq!(mails.len(), 1, "one e-mail in the Maildir");
    let mail = std::fs::read(&mails[0]).unwrap();
    assert_eq!(mail_header(&mail, "X-Voicemail-Id").as_deref(), Some(meta.id.as_str()));
    assert_eq!(mail_header(&mail, "X-Voicemail-Duration-Ms"), Some(meta.duration_ms.to_string()));
    assert!(mail_text(&mail).contains("How it ended:  the caller hung up"), "the e-mail says how the call ended");
}
