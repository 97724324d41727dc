//! The transcription hook (`[transcription]`), with fake speech-to-text programs (shell
//! scripts): what the program prints reaches the e-mail and the stored metadata, sanitised and
//! bounded; it runs once per message however many targets deliver it (Maildir and SMTP to
//! `python3 -m aiosmtpd`); a program that hangs is killed at its timeout, with the process it
//! started, and the message goes out without a transcript; one that fails or prints nothing
//! leaves no transcript either. No timing is asserted beyond generous bounds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use voicemail_core::config::Config;
use voicemail_core::deliver::{MaildirTarget, SmtpTarget};
use voicemail_core::runner::Runner;
use voicemail_core::transcribe::{TranscriptionConfig, TranscriptionError, transcribe};
use voicemail_core::{CallSetup, Mailbox, MessageMeta};

/// A shell script in `dir` (run with `sh`, so it needs no execute bit).
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

fn hook(command: &[&str], timeout: Duration) -> TranscriptionConfig {
    TranscriptionConfig {
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        timeout,
        max_bytes: voicemail_core::transcribe::DEFAULT_MAX_BYTES,
    }
}

fn config(dir: &Path, transcription: TranscriptionConfig) -> Config {
    let mut c = support::mailbox_config(dir);
    c.delivery.maildir = Some(MaildirTarget { root: dir.join("Maildir"), folder: "Voicemail".to_owned() });
    c.transcription = Some(transcription);
    c
}

fn record(mailbox: &Mailbox) -> MessageMeta {
    support::record(mailbox, CallSetup::new("+74951234567", Timestamp::now()), 1.0, Timestamp::now())
}

/// The e-mails in the mailbox's Maildir folder.
fn mails(dir: &Path) -> Vec<PathBuf> {
    support::maildir_files(&dir.join("Maildir/.Voicemail"))
}

fn body(path: &Path) -> String {
    let raw = std::fs::read(path).unwrap();
    let mail = mail_parser::MessageParser::default().parse(&raw).unwrap();
    mail.body_text(0).unwrap().replace("\r\n", "\n")
}

/// Whether process `pid` is gone (or a zombie nobody has reaped yet).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// The pid a script wrote to `path`, if it got that far.
fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn support_wait(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ready()
}

#[test]
fn the_transcript_reaches_the_email_and_the_metadata() {
    let dir = support::TempDir::new("transcript");
    // Prints two lines (CRLF), an ANSI escape and a BEL, invalid UTF-8, and the file it got.
    let stt = script(
        dir.path(),
        "stt.sh",
        "printf 'Hello, this is Ivan.\\r\\nPlease call me back \\033[1mtoday\\007.\\n'\n\
         printf 'bad \\377 byte; file %s\\n' \"$(basename \"$2\")\"\n",
    );
    let stt = stt.to_str().unwrap();
    let mailbox =
        Mailbox::open(config(dir.path(), hook(&["sh", stt, "--file", "{audio}"], Duration::from_secs(30)))).unwrap();
    let meta = record(&mailbox);
    assert_eq!(meta.transcript, None, "stored first, transcribed before the delivery");
    let report = mailbox.deliver_all_due(Timestamp::now()).unwrap();
    assert_eq!(report.delivered.len(), 1, "{report:?}");
    let wav = meta.wav_path.as_ref().unwrap().file_name().unwrap().to_string_lossy().into_owned();
    let want = format!("Hello, this is Ivan.\nPlease call me back [1mtoday.\nbad \u{fffd} byte; file {wav}");
    assert_eq!(mailbox.show(&meta.id).unwrap().meta.transcript.as_deref(), Some(want.as_str()));
    let mails = mails(dir.path());
    assert_eq!(mails.len(), 1);
    let text = body(&mails[0]);
    assert!(text.contains(&format!("Transcript (automatic):\n{want}")), "{text}");
}

#[test]
fn one_run_per_message_for_every_target() {
    let Some(python) = support::python_with_aiosmtpd() else { return };
    let dir = support::TempDir::new("transcript-targets");
    let received = dir.path().join("received");
    let port = support::free_port();
    let _server = start_aiosmtpd(&python, port, &received);
    let runs = dir.path().join("runs");
    let stt = script(
        dir.path(),
        "stt.sh",
        &format!("echo run >> '{}'\nsleep 1\necho 'Hello from the hook'\n", runs.display()),
    );
    let mut c = config(dir.path(), hook(&["sh", stt.to_str().unwrap()], Duration::from_secs(60)));
    let mut smtp = SmtpTarget::new("127.0.0.1", port, "voicemail@example.org");
    smtp.to = vec!["office@example.org".to_owned()];
    c.delivery.smtp = Some(smtp);
    let mailbox = Mailbox::open(c).unwrap();
    let runner = Runner::start(&mailbox).unwrap();
    let meta = record(&mailbox);
    let smtp_mails = || support::maildir_files(&received);
    let delivered = support_wait(Duration::from_secs(90), || mails(dir.path()).len() == 1 && smtp_mails().len() == 1);
    runner.stop();
    assert!(delivered, "both targets got the e-mail");
    for mail in mails(dir.path()).iter().chain(&smtp_mails()) {
        assert!(body(mail).contains("Hello from the hook"), "{}", body(mail));
    }
    assert_eq!(std::fs::read_to_string(&runs).unwrap(), "run\n", "the program ran once");
    assert_eq!(mailbox.show(&meta.id).unwrap().meta.transcript.as_deref(), Some("Hello from the hook"));
}

#[test]
fn a_program_that_hangs_is_killed_and_the_message_goes_without() {
    let dir = support::TempDir::new("transcript-hang");
    let pid = dir.path().join("pid");
    let child = dir.path().join("child");
    // The shell starts a sleeper in the background and waits for it: both must die.
    let stt = script(
        dir.path(),
        "hang.sh",
        &format!(
            "echo $$ > '{pid}.tmp' && mv '{pid}.tmp' '{pid}'\nsleep 600 &\necho $! > '{child}.tmp' && mv '{child}.tmp' '{child}'\necho partial\nwait\n",
            child = child.display(),
            pid = pid.display()
        ),
    );
    let mailbox =
        Mailbox::open(config(dir.path(), hook(&["sh", stt.to_str().unwrap()], Duration::from_secs(5)))).unwrap();
    let runner = Runner::start(&mailbox).unwrap();
    let meta = record(&mailbox);
    let delivered = support_wait(Duration::from_secs(60), || mails(dir.path()).len() == 1);
    runner.stop();
    assert!(delivered, "the message went out although the transcription hung");
    let text = body(&mails(dir.path())[0]);
    assert!(!text.contains("Transcript") && !text.contains("partial"), "{text}");
    assert_eq!(mailbox.show(&meta.id).unwrap().meta.transcript, None);
    // The transcription is over (the message went out): whatever the script started is
    // killed. On a machine so loaded that the script did not even run its first lines within
    // the timeout, there is nothing to look for.
    let started: Vec<u32> = [read_pid(&pid), read_pid(&child)].into_iter().flatten().collect();
    if started.is_empty() {
        eprintln!("the script was killed before it wrote its pid");
    }
    assert!(
        support_wait(Duration::from_secs(10), || started.iter().all(|&p| gone(p))),
        "the program and its child were killed: {started:?}"
    );
}

#[test]
fn failures_and_silence_give_no_transcript() {
    let dir = support::TempDir::new("transcript-fail");
    let audio = dir.path().join("a.wav");
    std::fs::write(&audio, b"RIFF").unwrap();
    let go = || true;
    // A failing program: its standard error is in the error.
    let e = transcribe(&hook(&["sh", "-c", "echo oops >&2; echo text; exit 3"], Duration::from_secs(30)), &audio, &go)
        .unwrap_err();
    assert!(matches!(&e, TranscriptionError::Failed { stderr, .. } if stderr == "oops"), "{e}");
    // A program that does not exist.
    let e = transcribe(&hook(&["/nonexistent/stt"], Duration::from_secs(30)), &audio, &go).unwrap_err();
    assert!(matches!(e, TranscriptionError::Spawn { .. }), "{e}");
    // Nothing printed (blank lines only).
    assert_eq!(
        transcribe(&hook(&["sh", "-c", "printf '\\n \\n'"], Duration::from_secs(30)), &audio, &go).unwrap(),
        None
    );
    // The path is the last argument without a placeholder.
    let out = transcribe(&hook(&["sh", "-c", "echo \"$0\""], Duration::from_secs(30)), &audio, &go).unwrap();
    assert_eq!(out.as_deref(), Some(audio.to_str().unwrap()));
    // Output beyond max_size is dropped (the program is not blocked by a full pipe).
    let mut big = hook(&["sh", "-c", "yes 'a long line of words' | head -c 1000000"], Duration::from_secs(30));
    big.max_bytes = 2000;
    let out = transcribe(&big, &audio, &go).unwrap().unwrap();
    assert!(out.len() <= 2000 + '…'.len_utf8() && out.ends_with('…'), "{} bytes", out.len());
    // A stop request kills it.
    let stop = || false;
    let e = transcribe(&hook(&["sh", "-c", "sleep 600"], Duration::from_secs(600)), &audio, &stop).unwrap_err();
    assert!(matches!(e, TranscriptionError::Aborted), "{e}");
}

fn start_aiosmtpd(python: &Path, port: u16, maildir: &Path) -> support::ServerGuard {
    let mut guard = support::ServerGuard::spawn(
        "aiosmtpd",
        Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    );
    let up = support::wait_for_port(port, Duration::from_secs(20));
    guard.assert_running("while starting");
    assert!(up, "aiosmtpd did not listen on 127.0.0.1:{port} within 20 s");
    guard
}
