//! A process killed with SIGKILL in the middle of a call loses at most its last second: a
//! child process (this test binary, re-run as `child_records_until_killed`) records a call
//! through a `Mailbox`; while it lives, recovery from this process leaves the call alone; once
//! it is killed, recovery stores the message with its caller, end reason `interrupted` and a
//! valid WAV holding all but the last second of what was recorded, exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use jiff::Timestamp;
use voicemail_core::{CallSetup, EndReason, Mailbox, StartedCall};

const CHILD: &str = "VOICEMAIL_CRASH_CHILD_SPOOL";

/// Run only as the child of the test below.
#[test]
fn child_records_until_killed() {
    let Some(dir) = std::env::var_os(CHILD) else { return };
    let mailbox = Mailbox::open(support::mailbox_config(std::path::Path::new(&dir))).unwrap();
    let mut setup = CallSetup::new("+74957654321", Timestamp::now());
    setup.caller_name = Some("Killed Caller".to_owned());
    let StartedCall { mut call, lease } = mailbox.start_call(setup, std::time::Instant::now()).unwrap();
    let mut caller = support::Caller::new();
    caller.answer(&mut call);
    caller.talk(&mut call, 175); // 3.5 s
    println!("ready {}", lease.id());
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(120));
    drop((call, lease));
}

#[test]
fn a_killed_recorder_is_recovered_with_its_audio_and_caller() {
    let tmp = support::TempDir::new("crash");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_records_until_killed", "--nocapture", "--test-threads=1"])
        .env(CHILD, tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let mut child = Kill(child);
    let mut id = None;
    for line in BufReader::new(stdout).lines() {
        // libtest may print "test ... " before the child's own line.
        let line = line.unwrap();
        if let Some(rest) = line.split("ready ").nth(1) {
            id = Some(rest.trim().to_owned());
            break;
        }
    }
    let id = id.expect("the child started a call");

    let mailbox = Mailbox::open(support::mailbox_config(tmp.path())).unwrap();
    assert!(mailbox.recover(Timestamp::now()).unwrap().is_empty(), "a live call is never recovered");

    child.0.kill().unwrap(); // SIGKILL: no destructor, no flush
    child.0.wait().unwrap();
    let recovered = mailbox.recover(Timestamp::now()).unwrap();
    assert_eq!(recovered.len(), 1);
    let m = &recovered[0];
    assert_eq!(m.id.as_str(), id);
    assert_eq!((m.caller.as_str(), m.caller_name.as_deref()), ("+74957654321", Some("Killed Caller")));
    assert_eq!(m.end_reason, EndReason::Interrupted);
    assert!((2_500..=3_500).contains(&m.duration_ms), "at most the last second is lost: {} ms", m.duration_ms);
    let wav = hound::WavReader::open(m.wav_path.as_ref().unwrap()).unwrap();
    assert_eq!(u64::from(wav.duration()), m.duration_ms * 8);
    assert!(mailbox.recover(Timestamp::now()).unwrap().is_empty(), "recovered once");
}
