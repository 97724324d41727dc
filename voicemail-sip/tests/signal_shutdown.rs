//! `EndpointHandle::shutdown_on_signals`: SIGTERM stops the endpoint as gracefully as
//! `shutdown()`. A SIPp call streams audio after the beep; the test process sends itself
//! SIGTERM two seconds into the recording; the endpoint hangs the call up with BYE, the call's
//! message is stored and handed to the application (about 2 s of audio), `run` returns and
//! the message stream ends.
//!
//! Alone in its test binary: the signal handlers it installs are process-wide.

#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{TestEndpoint, greeting_and_beep, run_sipp, scenario, write_g711_wav};
use voicemail_core::CodecKind;

#[test]
fn sigterm_hangs_up_calls_and_stores_their_messages() {
    let Some(sipp) = common::tool("sipp", "sip-tester") else { return };
    let Some(kill) = common::tool("kill", "procps") else { return };
    let mut ep = TestEndpoint::start("sigterm", "", "");
    {
        let _rt = ep.rt.enter();
        ep.handle.shutdown_on_signals().unwrap();
    }
    let dir = ep.dir.path().join("sipp");
    std::fs::create_dir_all(&dir).unwrap();
    write_g711_wav(&dir.join("tone.wav"), CodecKind::Pcmu, 1.0, 440.0);
    let xml = scenario(
        &dir,
        "uac_until_bye",
        &[
            ("CALLER", "+74959990000".into()),
            ("PT", "0".into()),
            ("CODEC", "PCMU".into()),
            ("GREETING_MS", (greeting_and_beep().as_millis() + 20).to_string()),
            ("FILE", "tone.wav".into()),
            ("BYE_TIMEOUT_MS", "20000".into()),
        ],
    );
    let target = ep.target();
    let sipp_run = std::thread::spawn(move || {
        run_sipp(&sipp, &dir, &target, &["-sf", xml.to_str().unwrap(), "-s", "vm", "-m", "1"], Duration::from_secs(40))
    });
    // Wait for the call, then two seconds into the recording.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ep.handle.active_calls() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(ep.handle.active_calls(), 1, "the call did not start");
    std::thread::sleep(greeting_and_beep() + Duration::from_secs(2));
    let status = Command::new(kill).args(["-TERM", &std::process::id().to_string()]).status().unwrap();
    assert!(status.success());

    let run = sipp_run.join().unwrap();
    assert!(run.success(), "SIPp did not get the endpoint's BYE: {}", run.describe());
    let meta = ep.next_message(Duration::from_secs(10)).expect("the message of the call hung up at shutdown");
    assert_eq!(meta.caller, "+74959990000");
    ep.assert_stored(&meta);
    let ms = common::wav_ms(&meta);
    assert!((1000..=4000).contains(&ms), "WAV is {ms} ms, expected about 2000");
    // `run` returns by itself (the signal shut it down) and the stream ends.
    ep.wait_stopped();
}
