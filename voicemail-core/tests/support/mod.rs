//! Helpers for the delivery tests: unique temporary directories, free ports on 127.0.0.1,
//! real servers started as child processes and stopped by PID (even when a test fails), and
//! sample messages.
//!
//! A missing tool (Debian's python3 with aiosmtpd, dovecot) makes a test print `SKIPPED` and
//! pass, unless `VOICEMAIL_REQUIRE_INTEROP` is set (to anything but `0`; `scripts/test` sets
//! it to `1` in CI and as root): then the test fails ([`require`]).
//!
//! Each test binary uses a subset, hence `dead_code` (and `unused_imports`, for re-exports) is
//! allowed; the items are `pub` for the test files that include this module, hence
//! `unreachable_pub` is allowed too.
#![allow(dead_code, unused_imports, unreachable_pub, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use voicemail_core::CodecKind;
use voicemail_core::message::{EndReason, MediaStats, MessageMeta};

/// A temporary directory (the tempfile crate), removed on drop.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    /// Creates `<tmp>/voicemail-<prefix>-XXXXXX`.
    pub fn new(prefix: &str) -> TempDir {
        TempDir(tempfile::Builder::new().prefix(&format!("voicemail-{prefix}-")).tempdir().unwrap())
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// Debian's python, which has python3-aiosmtpd (the pyenv `python3` on PATH has not).
pub const DEBIAN_PYTHON: &str = "/usr/bin/python3";

/// Whether a missing interop tool must fail the test: `VOICEMAIL_REQUIRE_INTEROP` is set and
/// neither empty nor `0`.
pub fn interop_required() -> bool {
    std::env::var_os("VOICEMAIL_REQUIRE_INTEROP").is_some_and(|v| !v.is_empty() && v != "0")
}

/// `Some(found)` when the tool is there; otherwise prints `SKIPPED: {missing}` and returns
/// `None` (the test returns early and passes), or panics when [`interop_required`].
pub fn require<T>(found: Option<T>, missing: &str) -> Option<T> {
    if found.is_none() {
        if interop_required() {
            panic!("{missing}, and VOICEMAIL_REQUIRE_INTEROP is set");
        }
        eprintln!("SKIPPED: {missing}");
    }
    found
}

/// [`DEBIAN_PYTHON`] if it can import aiosmtpd (see [`require`]).
pub fn python_with_aiosmtpd() -> Option<PathBuf> {
    let ok = Command::new(DEBIAN_PYTHON)
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    require(
        ok.then(|| PathBuf::from(DEBIAN_PYTHON)),
        &format!("{DEBIAN_PYTHON} has no aiosmtpd (Debian package python3-aiosmtpd)"),
    )
}

/// A python 3 for the standard-library-only scripts in tests/support: Debian's, else the
/// first `python3` on PATH (see [`require`]).
pub fn python() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("python3")).collect::<Vec<_>>())
        .unwrap_or_default();
    let found = std::iter::once(PathBuf::from(DEBIAN_PYTHON)).chain(from_path).find(|p| p.is_file());
    require(found, "python3 not found (Debian package python3)")
}

pub use voicemail_testkit::{Dovecot, ImapClient};

/// Dovecot (testkit's) in `dir`, with `settings` added to its configuration; `None` when it is
/// not installed (the test prints SKIPPED, or fails under `VOICEMAIL_REQUIRE_INTEROP`).
pub fn dovecot(dir: &Path, settings: &str) -> Option<Dovecot> {
    Dovecot::start(dir, settings)
}

/// A target for folder `Voicemail` of `dovecot`'s user, logging in with `password`.
pub fn imap_target(dovecot: &Dovecot, password: &str) -> voicemail_core::deliver::ImapTarget {
    voicemail_core::deliver::ImapTarget::new(
        "127.0.0.1",
        dovecot.port(),
        voicemail_testkit::DOVECOT_USER,
        password,
        "Voicemail",
    )
}

/// A script in tests/support.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support").join(name)
}

/// Starts `tests/support/misbehaving_server.py PORT MODE ARGS...` with `python` and waits
/// (at most 20 s) until it accepts connections (the probe connection is closed at once, which
/// every mode tolerates).
pub fn start_misbehaving_server(python: &Path, mode: &str, args: &[&str]) -> (ServerGuard, u16) {
    let port = free_port();
    let mut server = ServerGuard::spawn(
        "misbehaving_server.py",
        Command::new(python)
            .arg(script("misbehaving_server.py"))
            .arg(port.to_string())
            .arg(mode)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    );
    let up = wait_for_port(port, Duration::from_secs(20));
    server.assert_running("while starting");
    assert!(up, "misbehaving_server.py {mode} did not listen on 127.0.0.1:{port} within 20 s");
    (server, port)
}

/// Free ports and waiting for a server to listen: the workspace's test kit.
pub use voicemail_testkit::{free_port, wait_for_port};

/// A server child process, stopped by PID when dropped: SIGTERM, up to 5 s to exit, then
/// SIGKILL.
pub struct ServerGuard {
    child: Child,
    name: &'static str,
}

impl ServerGuard {
    /// Spawns `command` and owns the process from now on.
    pub fn spawn(name: &'static str, command: &mut Command) -> ServerGuard {
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        ServerGuard { child, name }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Panics with `why` if the process already exited.
    pub fn assert_running(&mut self, why: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status}) {why}", self.name);
        }
    }

    /// Stops the process now (also done on drop).
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A PCM WAV (8 kHz, 16-bit, mono) of `samples` samples whose content depends on `seed`.
pub fn sample_wav(samples: u32, seed: u32) -> Vec<u8> {
    let data_len = samples * 2;
    let mut w = Vec::with_capacity(44 + data_len as usize);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data_len).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&16000u32.to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_len.to_le_bytes());
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    for _ in 0..samples {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        w.extend_from_slice(&((x >> 16) as i16).to_le_bytes());
    }
    w
}

/// Metadata of a message started at 2026-11-27T11:32:05Z (14:32:05 in Moscow), 42.4 s long.
pub fn sample_meta(id: &str, caller: &str, caller_name: Option<&str>) -> MessageMeta {
    MessageMeta {
        id: voicemail_core::MessageId::parse(id).unwrap(),
        caller: caller.to_owned(),
        caller_name: caller_name.map(str::to_owned),
        called: "+74950000000".to_owned(),
        started_at: "2026-11-27T11:32:05Z".parse().unwrap(),
        duration_ms: 42_400,
        end_reason: EndReason::HangUp,
        codec: CodecKind::Pcmu,
        greeting: "business-hours".to_owned(),
        dtmf: String::new(),
        wav_path: None,
        media: MediaStats::default(),
        mailbox: None,
        diverted_from: None,
        transcript: None,
    }
}

/// The Moscow time zone (from the system zoneinfo, like the product).
pub fn moscow() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get("Europe/Moscow").unwrap()
}

/// Every file in `<maildir>/new` and `<maildir>/cur`.
pub fn maildir_files(folder: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(entries) = std::fs::read_dir(folder.join(sub)) {
            for e in entries {
                out.push(e.unwrap().path());
            }
        }
    }
    out.sort();
    out
}

/// Parses `bytes` with mail-parser and returns (Message-ID, first attachment's bytes).
pub fn message_id_and_attachment(bytes: &[u8]) -> (String, Vec<u8>) {
    let msg = mail_parser::MessageParser::default().parse(bytes).expect("parsable e-mail");
    let id = msg.message_id().expect("Message-ID").to_owned();
    let att = msg.attachment(0).expect("an attachment").contents().to_vec();
    (id, att)
}

/// A mailbox configuration on `<dir>/spool` with no delivery target, no free-space floor
/// and the Moscow time zone.
pub fn mailbox_config(dir: &Path) -> voicemail_core::config::Config {
    let mut c = voicemail_core::config::Config::default_embedded();
    c.spool = dir.join("spool");
    c.delivery.maildir = None;
    c.store.min_free_bytes = 0;
    c.timezone = moscow();
    c
}

/// A simulated caller for a call started by a [`Mailbox`](voicemail_core::Mailbox): answers,
/// lets the greeting and beep play, then sends 20 ms μ-law frames of a loud, varying signal.
pub struct Caller {
    pub now: Instant,
    seq: u16,
    ts: u32,
}

impl Caller {
    pub fn new() -> Self {
        Self { now: Instant::now(), seq: 100, ts: 1000 }
    }

    /// Drains the call's outputs; returns its deadline and the message if it was recorded.
    pub fn drain(&self, call: &mut voicemail_core::Call) -> (Instant, Option<MessageMeta>) {
        use voicemail_core::{Event, Output};
        let mut meta = None;
        loop {
            match call.poll_output() {
                Output::Event(Event::MessageRecorded(m)) => meta = Some(*m),
                Output::Event(_) | Output::SendRtp(_) => {}
                Output::Timeout(t) => return (t, meta),
            }
        }
    }

    /// Answers and plays the greeting and beep through (the call then records).
    pub fn answer(&mut self, call: &mut voicemail_core::Call) {
        use voicemail_core::{CallState, Input};
        call.handle_input(Input::Answered(self.now)).unwrap();
        let (mut deadline, _) = self.drain(call);
        while call.state() != CallState::Recording {
            self.now = deadline.max(self.now);
            call.handle_input(Input::Tick(self.now)).unwrap();
            deadline = self.drain(call).0;
        }
    }

    /// Sends `frames` frames of 20 ms.
    pub fn talk(&mut self, call: &mut voicemail_core::Call, frames: u32) {
        for _ in 0..frames {
            self.now += Duration::from_millis(20);
            let mut p = vec![0x80, 0];
            p.extend_from_slice(&self.seq.to_be_bytes());
            p.extend_from_slice(&self.ts.to_be_bytes());
            p.extend_from_slice(&7u32.to_be_bytes());
            p.extend((0..160u32).map(|i| (((self.ts.wrapping_add(i)) / 8) % 64) as u8 | 0x10));
            self.seq = self.seq.wrapping_add(1);
            self.ts = self.ts.wrapping_add(160);
            call.handle_input(voicemail_core::Input::Rtp(self.now, &p)).unwrap();
            let _ = self.drain(call);
        }
    }

    /// Hangs up; returns the recorded message.
    pub fn hang_up(&mut self, call: &mut voicemail_core::Call) -> MessageMeta {
        self.now += Duration::from_millis(20);
        call.handle_input(voicemail_core::Input::Hangup(self.now)).unwrap();
        self.drain(call).1.expect("a message")
    }
}

/// Records a call of `seconds` of caller audio through `mailbox` and stores it (at `now`).
pub fn record(
    mailbox: &voicemail_core::Mailbox,
    setup: voicemail_core::CallSetup,
    seconds: f64,
    now: jiff::Timestamp,
) -> MessageMeta {
    let voicemail_core::StartedCall { mut call, lease } = mailbox.start_call(setup, Instant::now()).unwrap();
    let mut caller = Caller::new();
    caller.answer(&mut call);
    caller.talk(&mut call, (seconds * 50.0).round() as u32);
    let meta = caller.hang_up(&mut call);
    mailbox.finish_call(lease, meta, now).unwrap()
}

/// Records a call that hangs up during the greeting: a zero-length message.
pub fn record_empty(
    mailbox: &voicemail_core::Mailbox,
    setup: voicemail_core::CallSetup,
    now: jiff::Timestamp,
) -> MessageMeta {
    let voicemail_core::StartedCall { mut call, lease } = mailbox.start_call(setup, Instant::now()).unwrap();
    let caller = Caller::new();
    call.handle_input(voicemail_core::Input::Answered(caller.now)).unwrap();
    let _ = caller.drain(&mut call);
    call.handle_input(voicemail_core::Input::Hangup(caller.now + Duration::from_millis(500))).unwrap();
    let meta = caller.drain(&mut call).1.expect("a message");
    mailbox.finish_call(lease, meta, now).unwrap()
}
