//! Shared helpers for the examples' tests: temporary directories, generated audio.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "vm-ex-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
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

/// Writes an 8 kHz 16-bit mono WAV.
pub fn write_wav(path: &Path, pcm: &[i16]) {
    let spec =
        hound::WavSpec { channels: 1, sample_rate: 8000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in pcm {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

/// Reads an 8 kHz 16-bit mono WAV (asserting the format).
pub fn read_wav(path: &Path) -> Vec<i16> {
    let mut r = hound::WavReader::open(path).unwrap();
    let s = r.spec();
    assert_eq!((s.channels, s.sample_rate, s.bits_per_sample), (1, 8000, 16));
    r.samples::<i16>().map(|x| x.unwrap()).collect()
}

/// A child process killed (by PID) and reaped on drop.
pub struct Server(pub std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Debian's Python, which has python3-aiosmtpd (the pyenv python on PATH may not).
pub const PYTHON: &str = "/usr/bin/python3";

/// Starts `python3 -m aiosmtpd` storing every message, with X-RcptTo/X-MailFrom headers, into
/// the Maildir `dir`. Returns `None` (after saying why) when aiosmtpd is not installed and
/// we are not in CI; in CI (CI=true) its absence is a failure.
pub fn start_smtp(dir: &Path) -> Option<(Server, u16)> {
    use std::process::{Command, Stdio};
    let ok =
        Command::new(PYTHON).args(["-c", "import aiosmtpd"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "aiosmtpd is missing in CI: .ci/run must install python3-aiosmtpd");
        eprintln!("skipped: /usr/bin/python3 has no aiosmtpd (apt-get install python3-aiosmtpd)");
        return None;
    }
    let port = free_port();
    let child = Command::new(PYTHON)
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "aiosmtpd did not start on port {port}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Some((server, port))
}

/// The files in a Maildir folder's new/ and cur/.
pub fn maildir_messages(folder: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(rd) = std::fs::read_dir(folder.join(sub)) {
            v.extend(rd.map(|e| e.unwrap().path()));
        }
    }
    v.sort();
    v
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
