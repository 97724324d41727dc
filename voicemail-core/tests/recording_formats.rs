//! `[recording] format` through the Mailbox: the same 5 s call recorded as `wav`, `wav-g711`
//! and `opus`. The G.711 WAV is half the size of the 16-bit one and holds exactly the caller's
//! μ-law bytes; the Ogg/Opus file is at most 15 % of the WAV, a standard decoder (`opusdec`,
//! Debian opus-tools) plays it for the call's length, and its e-mail attachment is
//! `audio/ogg` named `.opus`. A recorder killed with SIGKILL mid-call leaves an Ogg/Opus file that
//! recovery repairs: stored once as `interrupted`, with all but the last second, and playable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use jiff::Timestamp;
use voicemail_core::config::Config;
use voicemail_core::recording::RecordingFormat;
use voicemail_core::{CallSetup, EndReason, Mailbox, MessageMeta, StartedCall};

const CHILD: &str = "VOICEMAIL_OPUS_CRASH_CHILD_SPOOL";

fn config(dir: &Path, format: RecordingFormat) -> Config {
    let mut c = support::mailbox_config(dir);
    c.recording.format = format;
    c
}

/// A 5 s call recorded in `format`; returns the stored message.
fn record(dir: &Path, format: RecordingFormat) -> (Mailbox, MessageMeta) {
    let mailbox = Mailbox::open(config(dir, format)).unwrap();
    let StartedCall { mut call, lease } =
        mailbox.start_call(CallSetup::new("+74951112233", Timestamp::now()), std::time::Instant::now()).unwrap();
    let mut caller = support::Caller::new();
    caller.answer(&mut call);
    caller.talk(&mut call, 250);
    let meta = caller.hang_up(&mut call);
    let meta = mailbox.finish_call(lease, meta, Timestamp::now()).unwrap();
    (mailbox, meta)
}

/// `opusdec` decodes `file` to a WAV (at the rate the file names as its input rate); returns
/// its length in ms, or `None` when opusdec is missing (and that is allowed).
fn opusdec(file: &Path, out_dir: &Path) -> Option<u64> {
    let tool = Path::new("/usr/bin/opusdec");
    if !tool.is_file() {
        if std::env::var_os("VOICEMAIL_REQUIRE_INTEROP").is_some_and(|v| !v.is_empty() && v != "0") {
            panic!("opusdec not found (Debian package opus-tools), and VOICEMAIL_REQUIRE_INTEROP is set");
        }
        eprintln!("SKIPPED: opusdec not found (Debian package opus-tools)");
        return None;
    }
    let out = out_dir.join("decoded.wav");
    let status = Command::new(tool).arg("--quiet").arg(file).arg(&out).stdin(Stdio::null()).status().unwrap();
    assert!(status.success(), "opusdec failed on {}", file.display());
    let r = hound::WavReader::open(&out).unwrap();
    Some(u64::from(r.duration()) * 1000 / u64::from(r.spec().sample_rate))
}

#[test]
fn formats_sizes_and_standard_decoding() {
    let tmp = support::TempDir::new("formats");
    let (_, wav) = record(&tmp.path().join("wav"), RecordingFormat::Wav);
    let (_, g711) = record(&tmp.path().join("g711"), RecordingFormat::WavG711);
    let (mailbox, opus) = record(&tmp.path().join("opus"), RecordingFormat::Opus);
    let size = |m: &MessageMeta| std::fs::metadata(m.wav_path.as_ref().unwrap()).unwrap().len();
    let (wav_size, g711_size, opus_size) = (size(&wav), size(&g711), size(&opus));
    eprintln!("5 s at 8 kHz: wav {wav_size} B, wav-g711 {g711_size} B, opus {opus_size} B");
    for m in [&wav, &g711, &opus] {
        assert_eq!(m.end_reason, EndReason::HangUp);
        assert!((4_900..=5_100).contains(&m.duration_ms), "{} ms", m.duration_ms);
    }
    assert!(opus.wav_path.as_ref().unwrap().extension().is_some_and(|e| e == "opus"));
    assert_eq!(g711_size - 58, (wav_size - 44) / 2, "one byte per sample");
    assert!(opus_size * 100 <= wav_size * 15, "opus is {opus_size} B, wav {wav_size} B");

    // The μ-law WAV holds the caller's bytes exactly (PCMU in, μ-law out).
    let bytes = std::fs::read(g711.wav_path.as_ref().unwrap()).unwrap();
    assert_eq!(u16::from_le_bytes([bytes[20], bytes[21]]), 7, "WAVE_FORMAT_MULAW");
    let pcm: Vec<i16> =
        hound::WavReader::open(wav.wav_path.as_ref().unwrap()).unwrap().samples().map(Result::unwrap).collect();
    let mut ulaw = vec![0u8; pcm.len()];
    voicemail_core::codec::g711::encode_ulaw(&pcm, &mut ulaw);
    assert_eq!(&bytes[58..], &ulaw[..]);

    // A standard decoder plays the Ogg/Opus file for the message's length.
    if let Some(ms) = opusdec(opus.wav_path.as_ref().unwrap(), tmp.path()) {
        assert!(ms.abs_diff(opus.duration_ms) <= 20, "opusdec: {ms} ms, message: {} ms", opus.duration_ms);
    }

    // The e-mail attachment follows the format.
    let ctx = voicemail_core::deliver::EmailContext::new(jiff::tz::TimeZone::UTC, "vm@example.org");
    let recording = std::fs::read(opus.wav_path.as_ref().unwrap()).unwrap();
    let email = voicemail_core::deliver::build_email(&opus, &recording, &ctx).unwrap();
    assert_attachment(&String::from_utf8_lossy(&email.bytes));
    drop(mailbox);
}

fn assert_attachment(text: &str) {
    assert!(text.contains("Content-Type: audio/ogg"), "{}", &text[..text.len().min(2000)]);
    assert!(text.contains("codecs=\"opus\"") || text.contains("codecs=opus"));
    assert!(text.contains(".opus"), "the attachment is named .opus");
    assert!(!text.contains("audio/wav"));
}

/// Run only as the child of the test below.
#[test]
fn child_records_opus_until_killed() {
    let Some(dir) = std::env::var_os(CHILD) else { return };
    let mailbox = Mailbox::open(config(Path::new(&dir), RecordingFormat::Opus)).unwrap();
    let StartedCall { mut call, lease } =
        mailbox.start_call(CallSetup::new("+74957654321", Timestamp::now()), std::time::Instant::now()).unwrap();
    let mut caller = support::Caller::new();
    caller.answer(&mut call);
    caller.talk(&mut call, 175); // 3.5 s
    println!("ready {}", lease.id());
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(120));
    drop((call, lease));
}

#[test]
fn a_killed_opus_recorder_is_recovered() {
    let tmp = support::TempDir::new("opus-crash");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_records_opus_until_killed", "--nocapture", "--test-threads=1"])
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
        let line = line.unwrap();
        if let Some(rest) = line.split("ready ").nth(1) {
            id = Some(rest.trim().to_owned());
            break;
        }
    }
    let id = id.expect("the child started a call");
    let mailbox = Mailbox::open(config(tmp.path(), RecordingFormat::Opus)).unwrap();
    assert!(mailbox.recover(Timestamp::now()).unwrap().is_empty(), "a live call is never recovered");
    child.0.kill().unwrap(); // SIGKILL: no destructor, no flush
    child.0.wait().unwrap();
    let recovered = mailbox.recover(Timestamp::now()).unwrap();
    assert_eq!(recovered.len(), 1);
    let m = &recovered[0];
    assert_eq!((m.id.as_str(), m.end_reason), (id.as_str(), EndReason::Interrupted));
    assert!((2_500..=3_500).contains(&m.duration_ms), "at most the last second is lost: {} ms", m.duration_ms);
    let path = m.wav_path.as_ref().unwrap();
    assert!(path.extension().is_some_and(|e| e == "opus"));
    if let Some(ms) = opusdec(path, tmp.path()) {
        assert!(ms.abs_diff(m.duration_ms) <= 20, "opusdec: {ms} ms, message: {} ms", m.duration_ms);
    }
    assert!(mailbox.recover(Timestamp::now()).unwrap().is_empty(), "recovered once");
}
