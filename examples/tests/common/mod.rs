//! What the examples' tests share beyond `voicemail-testkit`: the built example binaries,
//! the answering machine as a child process, `inbox` runs, SIPp runs, generated audio.
//!
//! Every child process is a [`ChildGuard`] (killed by PID on drop); every wait is bounded.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // shared by the tests; tests may unwrap

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use voicemail_core::{Codec, CodecKind, MessageMeta, Prompt};
pub use voicemail_testkit::*;

/// The examples' directory (`examples/`).
pub fn examples_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The built example `name`, in `<target>/<profile>/examples/`. `cargo test` builds the
/// examples with the tests; `cargo test --test X` does not, so when a binary is missing or
/// older than the sources it is built first (once per test binary).
pub fn example(name: &str) -> PathBuf {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let exe = std::env::current_exe().unwrap();
    // <target>/<profile>/deps/<test binary>
    let dir = exe.parent().and_then(Path::parent).unwrap().join("examples");
    BUILT.get_or_init(|| {
        let built = ["answering_machine", "inbox", "offline_call"].map(|n| modified(&dir.join(n)));
        let sources = ["", "src", "../voicemail-core/src", "../voicemail-sip/src", "../voicemail-web"]
            .iter()
            .flat_map(|d| rust_files(&examples_dir().join(d)))
            .map(|f| modified(&f));
        let oldest = built.into_iter().min().flatten();
        if oldest.is_some_and(|built| sources.into_iter().all(|s| s <= Some(built))) {
            return;
        }
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-q", "-p", "voicemail-examples", "--examples"]);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        // The variables cargo sets for this test would look like changed build-script inputs
        // to the inner cargo, which would then rebuild dependencies (ring, sqlite, ...).
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            let ours = [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
                "CARGO_PRIMARY_",
                "CARGO_TARGET_TMPDIR",
            ];
            if ours.iter().any(|p| key.starts_with(p)) {
                cmd.env_remove(key.as_ref());
            }
        }
        assert!(cmd.status().unwrap().success(), "building the examples failed");
    });
    let bin = dir.join(name);
    assert!(bin.is_file(), "{} not found", bin.display());
    bin
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The `.rs` files in `dir` and below (and the web queue's templates, script and styles,
/// which are compiled in).
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for p in std::fs::read_dir(&d).into_iter().flatten().flatten().map(|e| e.path()) {
            if p.is_dir() && d != examples_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| ["rs", "html", "js", "css"].iter().any(|e| x == *e)) {
                out.push(p);
            }
        }
    }
    out
}

/// How a bounded run of a command ended.
#[derive(Debug)]
pub struct Finished {
    /// The exit status.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Finished {
    /// The exit code (`None` when killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Runs `cmd` to its end, at most `timeout` (a panic after, the process killed by its guard).
pub fn run_bounded(name: &str, cmd: &mut Command, timeout: Duration) -> Finished {
    let mut guard = ChildGuard::spawn(name, cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()));
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        })
    };
    let out = read(Box::new(guard.child().stdout.take().unwrap()));
    let err = read(Box::new(guard.child().stderr.take().unwrap()));
    let status = guard.wait_timeout(timeout).unwrap_or_else(|| panic!("{name} did not finish within {timeout:?}"));
    Finished { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

/// Runs `inbox --config CONFIG ARGS...` (bounded to 60 s).
pub fn inbox(config: &Path, args: &[&str]) -> Finished {
    let mut cmd = Command::new(example("inbox"));
    cmd.arg("--config").arg(config).args(args).env("USER", "tester");
    run_bounded("inbox", &mut cmd, Duration::from_secs(60))
}

/// `inbox show ID --json`, parsed; panics unless it succeeds.
pub fn show(config: &Path, id: &str) -> serde_json::Value {
    let out = inbox(config, &["show", id, "--json"]);
    assert_eq!(out.code(), Some(0), "inbox show {id}: {}", out.stderr);
    serde_json::from_str(out.stdout.trim()).unwrap()
}

/// A mailbox configuration in `dir/vm.toml`: spool `dir/spool`, SIP on a free port of
/// 127.0.0.1 with RTP ports `rtp`, and `extra` appended (delivery targets, ...).
pub fn write_config(dir: &Path, rtp: &str, extra: &str) -> PathBuf {
    let path = dir.join("vm.toml");
    std::fs::write(
        &path,
        format!(
            "mailbox = \"Test\"\ntimezone = \"UTC\"\nspool = \"spool\"\n\n[sip]\nlisten = \"127.0.0.1:0\"\nrtp_ports = \"{rtp}\"\n\n{extra}\n"
        ),
    )
    .unwrap();
    path
}

/// The `[delivery.maildir]` table for a Maildir under the config's directory.
pub const MAILDIR: &str = "[delivery.maildir]\nroot = \"Maildir\"\nfolder = \"Voicemail\"\n";

/// The answering machine example as a child process, with its stdout (JSON lines) and
/// stderr (log) read by threads. Killed by PID when dropped.
pub struct AnsweringMachine {
    /// The process.
    pub process: ChildGuard,
    /// Where SIP listens: `127.0.0.1:PORT`.
    pub addr: String,
    /// Where the web queue listens (`127.0.0.1:PORT`), when the config has `[web]`.
    pub web: Option<String>,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl AnsweringMachine {
    /// Starts it with `--config config` and waits (at most 60 s) until it is ready.
    pub fn start(config: &Path) -> AnsweringMachine {
        let mut process = ChildGuard::spawn(
            "answering_machine",
            Command::new(example("answering_machine"))
                .arg("--config")
                .arg(config)
                .env("RUST_LOG", "info,rsipstack=warn")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let (err_tx, stderr) = mpsc::channel();
        let pipe = process.child().stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("[answering_machine] {line}");
                let _ = err_tx.send(line);
            }
        });
        let (out_tx, stdout) = mpsc::channel();
        let pipe = process.child().stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("[answering_machine stdout] {line}");
                let _ = out_tx.send(line);
            }
        });
        let mut am = AnsweringMachine { process, addr: String::new(), web: None, stdout, stderr };
        let ready = am.wait_log("answering machine ready", Duration::from_secs(60)).expect("the example did not start");
        let at = ready.split("listen=").nth(1).expect("listen= in the ready line");
        am.addr = at.split_whitespace().next().unwrap().to_owned();
        am.web = ready
            .split("web=")
            .nth(1)
            .and_then(|w| w.split_whitespace().next())
            .filter(|w| *w != "off")
            .map(str::to_owned);
        am
    }

    /// The next log line containing `pattern`, waiting at most `timeout`.
    pub fn wait_log(&mut self, pattern: &str, timeout: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(pattern) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// The next message printed on stdout, waiting at most `timeout`.
    pub fn next_message(&mut self, timeout: Duration) -> Option<MessageMeta> {
        let line = self.stdout.recv_timeout(timeout).ok()?;
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a message line: {line:?}: {e}")))
    }

    /// Every message printed until stdout closes (the process ended), waiting at most `timeout`.
    pub fn remaining_messages(&mut self, timeout: Duration) -> Vec<MessageMeta> {
        let deadline = std::time::Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => out.push(serde_json::from_str(&line).unwrap()),
                Err(mpsc::RecvTimeoutError::Disconnected) => return out,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("stdout did not close within {timeout:?}"),
            }
        }
    }

    /// Sends `signal` and waits (at most 60 s) for the exit status.
    pub fn stop(&mut self, signal: &str) -> ExitStatus {
        self.process.signal(signal);
        self.process.wait_timeout(Duration::from_secs(60)).expect("the answering machine did not exit")
    }
}

/// The SIPp binary, or `None` (the test is skipped, or fails under `VOICEMAIL_REQUIRE_INTEROP`).
pub fn sipp() -> Option<PathBuf> {
    tool("sipp", "sip-tester")
}

/// The voicemail-sip test scenario `name` with its `{{VARS}}` filled in, written into `dir`.
pub fn scenario(dir: &Path, name: &str, vars: &[(&str, String)]) -> PathBuf {
    let src = examples_dir().join("../voicemail-sip/tests/sipp").join(format!("{name}.xml"));
    let mut text = std::fs::read_to_string(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    for (k, v) in vars {
        text = text.replace(&format!("{{{{{k}}}}}"), v);
    }
    let out = dir.join(format!("{name}.xml"));
    std::fs::write(&out, text).unwrap();
    out
}

/// Starts one SIPp call of scenario `xml` to `target` from `dir` (its working directory).
pub fn sipp_call(sipp: &Path, dir: &Path, target: &str, xml: &Path, service: &str) -> ChildGuard {
    let media = free_port();
    ChildGuard::spawn(
        "sipp",
        Command::new(sipp)
            .current_dir(dir)
            .arg(target)
            .args(["-sf", xml.to_str().unwrap(), "-s", service, "-m", "1", "-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args(["-p", &free_port().to_string(), "-mp", &media.to_string()])
            .args(["-nostdin", "-timeout", "90s", "-timeout_error", "-trace_err"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

/// The pause a SIPp caller waits after the ACK so that its audio starts after the beep.
pub fn greeting_ms() -> u128 {
    (Prompt::default_greeting().duration() + Duration::from_millis(250)).as_millis() + 20
}

/// A μ-law WAV of a tone, for SIPp's `rtp_stream`.
pub fn ulaw_tone(path: &Path, seconds: f64, freq: f64) {
    let n = (seconds * 8000.0) as usize;
    let pcm: Vec<i16> =
        (0..n).map(|i| ((i as f64 * freq * std::f64::consts::TAU / 8000.0).sin() * 12000.0) as i16).collect();
    let mut data = Vec::new();
    CodecKind::Pcmu.encode(&pcm, &mut data);
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(50 + data.len() as u32).to_le_bytes());
    w.extend_from_slice(
        b"WAVEfmt \x12\x00\x00\x00\x07\x00\x01\x00\x40\x1f\x00\x00\x40\x1f\x00\x00\x01\x00\x08\x00\x00\x00",
    );
    w.extend_from_slice(b"fact\x04\x00\x00\x00");
    w.extend_from_slice(&(n as u32).to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(data.len() as u32).to_le_bytes());
    w.extend_from_slice(&data);
    std::fs::write(path, w).unwrap();
}

/// Speech-like test audio: a voiced signal (harmonics of a gliding pitch, syllable-rate
/// envelope) with no long pauses, 8 kHz.
pub fn speechlike(samples: usize) -> Vec<i16> {
    (0..samples)
        .map(|i| {
            let t = i as f32 / 8000.0;
            let f0 = 120.0 + 30.0 * (t * 0.7).sin();
            let env = 0.55 + 0.45 * (t * 2.0 * std::f32::consts::PI * 4.0).sin();
            let mut v = 0.0;
            for h in 1..6 {
                v += (t * 2.0 * std::f32::consts::PI * f0 * h as f32).sin() / h as f32;
            }
            (v * env * 6000.0) as i16
        })
        .collect()
}

/// Writes 8 kHz 16-bit mono audio.
pub fn write_wav8k(path: &Path, pcm: &[i16]) {
    write_wav(path, 8000, pcm);
}

/// Reads an 8 kHz 16-bit mono WAV (asserting the rate).
pub fn read_wav8k(path: &Path) -> Vec<i16> {
    let (rate, samples) = read_wav(path);
    assert_eq!(rate, 8000, "{}", path.display());
    samples
}

/// Every file below `dir`, recursively.
pub fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out
}

/// The value of header `name` in a raw e-mail (unfolded, trimmed).
pub fn mail_header(raw: &[u8], name: &str) -> Option<String> {
    use mail_parser::MessageParser;
    let m = MessageParser::default().parse(raw)?;
    m.header_raw(name).map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The text body of a raw e-mail.
pub fn mail_text(raw: &[u8]) -> String {
    use mail_parser::MessageParser;
    let m = MessageParser::default().parse(raw).unwrap();
    m.body_text(0).map(|t| t.into_owned()).unwrap_or_default()
}
