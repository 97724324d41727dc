//! # voicemail-testkit
//!
//! What the voicemail crates' integration tests share. Tests talk to real peers (SIPp,
//! aiosmtpd, Dovecot, ...) on 127.0.0.1; these helpers start them, find free ports, bound
//! every wait, and stop every child process by its PID even when a test panics.
//!
//! - Directories: [`temp_dir`] (a [`TempDir`], removed on drop unless `VOICEMAIL_KEEP_TEMP`
//!   is set).
//! - Ports and waits: [`free_port`], [`wait_for_port`], [`wait_until`].
//! - Processes: [`ChildGuard`] (killed by PID on drop), [`tool`] (a missing tool skips the
//!   test, or fails it when `VOICEMAIL_REQUIRE_INTEROP` is set, see [`interop_required`]).
//! - Mail: [`SmtpServer`] (Debian's `python3 -m aiosmtpd`, messages written to a Maildir),
//!   [`maildir_messages`]; [`Dovecot`] (an IMAP server of its own in a directory) and
//!   [`ImapClient`] (a test-side IMAP session).
//! - SIP: [`Kamailio`] (a registrar or proxy of its own, configured by the test's file and
//!   [`KamailioOptions`], queried with `kamcmd`).
//! - Databases: [`Postgres`] (a throwaway PostgreSQL cluster on 127.0.0.1, for the shared
//!   store).
//! - Audio: [`write_wav`], [`read_wav`], [`wav_duration_ms`].
//! - TLS: [`TestCa`], a CA made at test time, and the server certificates it issues.
//!
//! Every helper panics with a clear message when something it needs fails: it is for tests.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::panic)] // test support: failing loudly is the point

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use tempfile::TempDir;

mod dovecot;
pub use dovecot::{DOVECOT_PASSWORD, DOVECOT_USER, Dovecot, ImapClient};
mod kamailio;
pub use kamailio::{Kamailio, KamailioOptions};
mod postgres;
pub use postgres::Postgres;

/// A new directory `<tmp>/voicemail-<tag>-XXXXXX`, removed when the [`TempDir`] is dropped
/// (kept, and its path printed, when `VOICEMAIL_KEEP_TEMP` is set).
pub fn temp_dir(tag: &str) -> TempDir {
    let prefix = format!("voicemail-{tag}-");
    let mut dir = tempfile::Builder::new().prefix(&prefix).tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    if std::env::var_os("VOICEMAIL_KEEP_TEMP").is_some() {
        dir.disable_cleanup(true);
        eprintln!("keeping {}", dir.path().display());
    }
    dir
}

/// A port of 127.0.0.1 that was free for both TCP and UDP a moment ago.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap_or_else(|e| panic!("bind 127.0.0.1:0: {e}"));
        let port = tcp.local_addr().map(|a| a.port()).unwrap_or(0);
        if port != 0 && UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no port of 127.0.0.1 is free for both TCP and UDP");
}

/// Waits, at most `timeout`, until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    // A connection to itself does not count: with nothing listening yet, the kernel can pick
    // `port` itself as the probe's source port (TCP simultaneous open) and connect.
    wait_until(timeout, || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200))
            .is_ok_and(|s| s.local_addr().ok() != s.peer_addr().ok())
    })
}

/// Polls `ready` every 20 ms until it returns true (then true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a missing peer fails the test: `VOICEMAIL_REQUIRE_INTEROP` is set (to anything
/// but `0` or nothing), as CI does.
pub fn interop_required() -> bool {
    std::env::var_os("VOICEMAIL_REQUIRE_INTEROP").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Reports a missing peer: panics with `what` when [`interop_required`], else prints
/// `SKIPPED: what` (the caller then returns early and the test passes).
pub fn missing(what: &str) {
    if interop_required() {
        panic!("{what}, and VOICEMAIL_REQUIRE_INTEROP is set");
    }
    eprintln!("SKIPPED: {what}");
}

/// The path of the program `name` (in `/usr/bin`, `/usr/sbin` or on `PATH`), or `None` after
/// [`missing`] said why (`package` is the Debian package that has it).
pub fn tool(name: &str, package: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    let found = [PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")]
        .into_iter()
        .chain(on_path)
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        missing(&format!("{name} not found (Debian package {package})"));
    }
    found
}

/// A child process that is killed (SIGKILL, by its PID) and reaped when dropped, unless it
/// already exited.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    name: String,
}

impl ChildGuard {
    /// Spawns `command`; panics (naming `name`) when it cannot start.
    pub fn spawn(name: &str, command: &mut Command) -> ChildGuard {
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        ChildGuard { child, name: name.to_owned() }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child, to take its pipes.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Sends `signal` (`"TERM"`, `"INT"`, `"KILL"`, ...) to the process with `kill(1)`.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} {} ({}) failed", self.pid(), self.name);
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits at most `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(timeout, || {
            status = self.exited();
            status.is_some()
        });
        status
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Debian's Python, which has `python3-aiosmtpd` (another `python3` on `PATH` may not).
pub const PYTHON: &str = "/usr/bin/python3";

/// A real SMTP server, `python3 -m aiosmtpd -n -l 127.0.0.1:PORT`, whose handler writes every
/// message it accepts into a Maildir (with `X-MailFrom` and `X-RcptTo` headers). Stopped on
/// drop.
#[derive(Debug)]
pub struct SmtpServer {
    port: u16,
    maildir: PathBuf,
    _process: ChildGuard,
}

impl SmtpServer {
    /// Starts the server on a free port, storing messages in the Maildir `maildir` (created if
    /// needed). `None` after [`missing`] when aiosmtpd is not installed.
    pub fn start(maildir: &Path) -> Option<SmtpServer> {
        Self::start_on(maildir, free_port())
    }

    /// Like [`SmtpServer::start`], on `port` (to bring a server back where it was).
    pub fn start_on(maildir: &Path, port: u16) -> Option<SmtpServer> {
        let installed = Command::new(PYTHON)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            missing(&format!("{PYTHON} has no aiosmtpd (Debian package python3-aiosmtpd)"));
            return None;
        }
        let process = ChildGuard::spawn(
            "aiosmtpd",
            Command::new(PYTHON)
                .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
                .arg(maildir)
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
        );
        assert!(wait_for_port(port, Duration::from_secs(20)), "aiosmtpd did not listen on 127.0.0.1:{port}");
        Some(SmtpServer { port, maildir: maildir.to_path_buf(), _process: process })
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The messages it accepted so far (files of its Maildir).
    pub fn messages(&self) -> Vec<PathBuf> {
        maildir_messages(&self.maildir)
    }
}

/// The files in a Maildir folder's `new/` and `cur/`, sorted (empty when it does not exist).
pub fn maildir_messages(folder: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(entries) = std::fs::read_dir(folder.join(sub)) {
            files.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
        }
    }
    files.sort();
    files
}

/// Writes a 16-bit mono PCM WAV.
pub fn write_wav(path: &Path, sample_rate: u32, pcm: &[i16]) {
    let spec =
        hound::WavSpec { channels: 1, sample_rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(path, spec).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for &s in pcm {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Reads a 16-bit mono PCM WAV: its sample rate and samples.
pub fn read_wav(path: &Path) -> (u32, Vec<i16>) {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = r.spec();
    assert_eq!((spec.channels, spec.bits_per_sample), (1, 16), "{} is not 16-bit mono", path.display());
    let samples =
        r.samples::<i16>().collect::<Result<Vec<_>, _>>().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (spec.sample_rate, samples)
}

/// The length of a WAV file's audio in milliseconds.
pub fn wav_duration_ms(path: &Path) -> u64 {
    let r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    u64::from(r.duration()) * 1000 / u64::from(r.spec().sample_rate)
}

/// Where a tone lies in a recording: the samples of silence before it, of the tone itself
/// (first to last sample louder than `threshold`) and of silence after it.
pub fn tone_span(samples: &[i16], threshold: i16) -> (usize, usize, usize) {
    let loud = |s: &i16| s.unsigned_abs() > threshold.unsigned_abs();
    match (samples.iter().position(loud), samples.iter().rposition(loud)) {
        (Some(first), Some(last)) => (first, last + 1 - first, samples.len() - 1 - last),
        _ => (samples.len(), 0, 0),
    }
}

/// Checks that a recording at `rate` Hz of a call that streamed a steady tone (louder than
/// 1000) in packets of `packet_ms` holds every one of the `packets` received after the beep,
/// one after the other: the tone lasts exactly their length (half a packet allowed at its
/// ragged ends), and that length is within `expected_ms` (the sender may send a packet more
/// or less than its file holds). The silence around the tone (from the beep to the first
/// packet, and from the last packet to the hang-up) follows the sender's pauses and the
/// machine's load: it is only bounded, at 2 s. Returns the silence before, the tone and the
/// silence after, in milliseconds, or what is wrong.
pub fn check_tone_recording(
    samples: &[i16],
    rate: u32,
    packets: u64,
    packet_ms: u64,
    expected_ms: std::ops::RangeInclusive<u64>,
) -> Result<(u64, u64, u64), String> {
    let (lead, span, tail) = tone_span(samples, 1000);
    let ms = |n: usize| n as u64 * 1000 / u64::from(rate);
    let per_packet = (packet_ms * u64::from(rate) / 1000) as usize;
    let sent = packets as usize * per_packet;
    let found = (ms(lead), ms(span), ms(tail));
    if span.abs_diff(sent) > per_packet / 2 || !expected_ms.contains(&ms(sent)) || ms(lead + tail) > 2000 {
        return Err(format!(
            "the WAV's {} ms are {} ms of silence, {} ms of tone and {} ms of silence, for {packets} packets              received ({} ms; expected {expected_ms:?})",
            ms(samples.len()),
            found.0,
            found.1,
            found.2,
            ms(sent)
        ));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_round_trip_and_duration() {
        let dir = temp_dir("testkit");
        let path = dir.path().join("a.wav");
        let pcm: Vec<i16> = (0..8000).map(|i| (i % 100) as i16).collect();
        write_wav(&path, 8000, &pcm);
        assert_eq!(read_wav(&path), (8000, pcm));
        assert_eq!(wav_duration_ms(&path), 1000);
        assert!(maildir_messages(dir.path()).is_empty());
    }

    #[test]
    fn a_guarded_child_is_killed_on_drop() {
        let mut guard = ChildGuard::spawn("sleep", Command::new("sleep").arg("60"));
        let pid = guard.pid();
        assert!(guard.exited().is_none());
        drop(guard);
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists() || {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                !stat.contains("(sleep)")
            }
        );
        let port = free_port();
        assert!(!wait_for_port(port, Duration::from_millis(50)));
    }
}

/// A certificate authority made at test time (rcgen, ECDSA P-256), whose certificates servers
/// under test present and clients trust through [`TestCa::ca_file`]. Everything is written as
/// PEM into a directory of the caller's.
pub struct TestCa {
    dir: PathBuf,
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").field("dir", &self.dir).finish()
    }
}

/// A certificate issued by a [`TestCa`]: the PEM files of the certificate and its key.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// The certificate (PEM), leaf only.
    pub cert: PathBuf,
    /// The certificate followed by the CA's (PEM), for servers that want the chain.
    pub chain: PathBuf,
    /// The private key (PEM, PKCS#8).
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA; its certificate is written to `dir/ca.pem`.
    pub fn new(dir: &Path) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "voicemail test CA");
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let key = rcgen::KeyPair::generate().expect("CA key");
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        std::fs::create_dir_all(dir).expect("CA directory");
        std::fs::write(dir.join("ca.pem"), issuer.pem()).expect("ca.pem");
        TestCa { dir: dir.to_path_buf(), issuer }
    }

    /// The CA certificate (PEM): what clients trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A server certificate for `names` (IP addresses become IP SANs, the rest DNS names),
    /// written to `dir/<file>.crt`, `dir/<file>-chain.crt` and `dir/<file>.key`.
    pub fn issue(&self, file: &str, names: &[&str]) -> IssuedCert {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names.clone()).expect("certificate parameters");
        params.distinguished_name.push(rcgen::DnType::CommonName, names.first().cloned().unwrap_or_default());
        params.extended_key_usages =
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        let issued = IssuedCert {
            cert: self.dir.join(format!("{file}.crt")),
            chain: self.dir.join(format!("{file}-chain.crt")),
            key: self.dir.join(format!("{file}.key")),
        };
        std::fs::write(&issued.cert, cert.pem()).expect("certificate file");
        std::fs::write(&issued.chain, format!("{}{}", cert.pem(), self.issuer.pem())).expect("chain file");
        std::fs::write(&issued.key, key.serialize_pem()).expect("key file");
        issued
    }
}
