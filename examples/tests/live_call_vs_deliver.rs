//! `inbox deliver` run in a loop against the spool of a running answering machine never
//! touches the call being recorded: the README's SIPp call (examples/sipp/call.xml, 10 s of
//! examples/samples/caller.flac made μ-law with sox) is recorded while `inbox deliver` runs over
//! and over (recovering and delivering in another process), and afterwards the Maildir holds
//! exactly one e-mail for the call, saying it lasted about 10 s (±0.5 s) and ended by hang-up
//! (not `interrupted`). Every `inbox deliver` exits 0 and recovers nothing.
//!
//! Needs SIPp (`sip-tester`) and sox; without them the test prints `SKIPPED` and passes,
//! unless `VOICEMAIL_REQUIRE_INTEROP` is set.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use voicemail_core::EndReason;

#[test]
fn a_live_call_is_left_alone_by_inbox_deliver() {
    let Some(sipp_bin) = sipp() else { return };
    let Some(sox) = tool("sox", "sox") else { return };
    let dir = temp_dir("live");
    std::fs::create_dir_all(dir.path().join("voicemail-data")).unwrap();
    let made = Command::new(sox)
        .arg(examples_dir().join("samples/caller.flac"))
        .args(["-e", "mu-law"])
        .arg(dir.path().join("voicemail-data/caller-ulaw.wav"))
        .args(["trim", "0", "10"])
        .status()
        .unwrap();
    assert!(made.success(), "sox failed");
    let config = write_config(dir.path(), "33000-33999", MAILDIR);
    let folder = dir.path().join("Maildir/.Voicemail");
    let mut am = AnsweringMachine::start(&config);

    // `inbox deliver`, over and over, from before the call until after its delivery.
    let stop = Arc::new(AtomicBool::new(false));
    let call_phase = Arc::new(AtomicUsize::new(0)); // 0 before the call, 1 during, 2 after
    let done = Arc::new(AtomicUsize::new(0));
    let runs = {
        let (stop, phase, done, config) = (stop.clone(), call_phase.clone(), done.clone(), config.clone());
        std::thread::spawn(move || {
            let mut runs = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let before = phase.load(Ordering::SeqCst);
                let out = inbox(&config, &["deliver"]);
                let after = phase.load(Ordering::SeqCst);
                runs.push((before, after, out));
                done.fetch_add(1, Ordering::SeqCst);
            }
            runs
        })
    };
    assert!(wait_until(Duration::from_secs(60), || done.load(Ordering::SeqCst) >= 1), "inbox deliver is slow");

    let mut call = sipp_call(&sipp_bin, dir.path(), &am.addr, &examples_dir().join("sipp/call.xml"), "voicemail");
    call_phase.store(1, Ordering::SeqCst);
    let status = call.wait_timeout(Duration::from_secs(90)).expect("sipp did not finish");
    assert!(status.success(), "sipp failed: {status:?} (see {}/*_errors.log)", dir.path().display());
    let meta = am.next_message(Duration::from_secs(30)).expect("the message is printed");
    call_phase.store(2, Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(60), || !maildir_messages(&folder).is_empty()), "the e-mail arrives");
    // A few more passes after the delivery: none may deliver it again.
    let passes = done.load(Ordering::SeqCst) + 3;
    assert!(wait_until(Duration::from_secs(60), || done.load(Ordering::SeqCst) >= passes));
    stop.store(true, Ordering::SeqCst);
    let runs = runs.join().unwrap();
    assert!(am.stop("TERM").success());

    let during = runs.iter().filter(|(before, after, _)| *before == 1 && *after == 1).count();
    eprintln!("inbox deliver ran {} times, {during} of them entirely during the call", runs.len());
    assert!(during > 0, "no `inbox deliver` ran during the call");
    for (_, _, out) in &runs {
        assert_eq!(out.code(), Some(0), "inbox deliver failed: {}", out.stderr);
        assert!(out.stdout.starts_with("recovered 0,"), "inbox deliver recovered a live call: {}", out.stdout);
    }

    assert_eq!(meta.end_reason, EndReason::HangUp);
    assert!((9500..=10500).contains(&meta.duration_ms), "the message lasts {} ms", meta.duration_ms);
    let mails = maildir_messages(&folder);
    assert_eq!(mails.len(), 1, "exactly one e-mail: {mails:?}");
    let mail = std::fs::read(&mails[0]).unwrap();
    assert_eq!(mail_header(&mail, "X-Voicemail-Id").as_deref(), Some(meta.id.as_str()));
    let ms: u64 = mail_header(&mail, "X-Voicemail-Duration-Ms").unwrap().parse().unwrap();
    assert!((9500..=10500).contains(&ms), "the e-mail says {ms} ms");
    let body = mail_text(&mail);
    assert!(body.contains("How it ended:  the caller hung up") && !body.contains("restarted"), "{body}");

    let shown = show(&config, meta.id.as_str());
    assert_eq!(shown["meta"]["end_reason"], "hang-up");
    let events: Vec<&str> =
        shown["history"].as_array().unwrap().iter().map(|h| h["event"]["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["recorded", "delivered"], "stored once, delivered once");
}
