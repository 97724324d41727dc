//! Helpers shared by the interop tests: an in-process endpoint on free ports with a temporary
//! spool, SIPp runs with a kill-on-drop guard and a time bound, scenario templates, test audio
//! and WAV analysis.
//!
//! Tools that are missing make a test print `SKIPPED` and pass, unless
//! `VOICEMAIL_REQUIRE_INTEROP=1` is set (as `.ci/run` does): then a missing tool fails the test.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // shared by the tests; tests may unwrap

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use voicemail_core::config::Config;
use voicemail_core::store::Lifecycle;
use voicemail_core::{Codec, CodecKind, Mailbox, MessageMeta, Prompt};
use voicemail_sip::{Endpoint, EndpointHandle, SipConfig};

pub mod netns;

pub use voicemail_testkit::check_tone_recording;

/// A fresh directory under the system temp dir, removed on drop (kept with
/// `VOICEMAIL_KEEP_TEMP=1`).
pub fn temp_dir(tag: &str) -> tempfile::TempDir {
    let keep = std::env::var_os("VOICEMAIL_KEEP_TEMP").is_some();
    tempfile::Builder::new().prefix(&format!("voicemail-sip-{tag}-")).disable_cleanup(keep).tempdir().unwrap()
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect::<Vec<_>>())
        .unwrap_or_default();
    [PathBuf::from("/usr/bin").join(name)].into_iter().chain(from_path).find(|p| p.is_file())
}

/// The path of a tool, or `None` after printing why the test is skipped (a panic when
/// `VOICEMAIL_REQUIRE_INTEROP` is set).
pub fn tool(name: &str, package: &str) -> Option<PathBuf> {
    let found = find_tool(name);
    if found.is_none() {
        let msg = format!("{name} not found (Debian package {package})");
        if std::env::var_os("VOICEMAIL_REQUIRE_INTEROP").is_some_and(|v| v == "1") {
            panic!("{msg}, and VOICEMAIL_REQUIRE_INTEROP=1");
        }
        eprintln!("SKIPPED: {msg}");
    }
    found
}

/// How long the default greeting and the beep play: recording starts this long after the 200 OK.
pub fn greeting_and_beep() -> Duration {
    Prompt::default_greeting().duration() + Duration::from_millis(250)
}

/// An endpoint running in its own runtime on 127.0.0.1 with a free port, on a mailbox whose
/// spool is a temporary directory. Messages come from [`Endpoint::messages`].
pub struct TestEndpoint {
    pub rt: tokio::runtime::Runtime,
    pub handle: EndpointHandle,
    pub addr: SocketAddr,
    pub spool: PathBuf,
    /// The endpoint's mailbox (a clone: the same store).
    pub mailbox: Mailbox,
    messages: tokio::sync::mpsc::UnboundedReceiver<MessageMeta>,
    run: Option<tokio::task::JoinHandle<voicemail_sip::Result<()>>>,
    pub dir: tempfile::TempDir,
}

impl TestEndpoint {
    /// Starts an endpoint; `sip` holds extra `[sip]` lines, `mailbox` extra top-level lines
    /// (before any table) of the mailbox configuration.
    pub fn start(tag: &str, sip: &str, mailbox: &str) -> TestEndpoint {
        log_to_stderr();
        Self::start_with(tag, sip, mailbox, |_| {})
    }

    /// [`TestEndpoint::start`], with `edit` applied to the parsed configuration before the
    /// mailbox is opened.
    pub fn start_with(tag: &str, sip: &str, mailbox: &str, edit: impl FnOnce(&mut Config)) -> TestEndpoint {
        Self::start_opts(tag, sip, mailbox, edit, true)
    }

    /// [`TestEndpoint::start_with`]; `background: false` runs the endpoint
    /// [`without_background_work`](Endpoint::without_background_work).
    pub fn start_opts(
        tag: &str,
        sip: &str,
        mailbox: &str,
        edit: impl FnOnce(&mut Config),
        background: bool,
    ) -> TestEndpoint {
        let dir = temp_dir(tag);
        let text = format!(
            "mailbox = \"Test\"\ntimezone = \"UTC\"\nspool = \"spool\"\n{mailbox}\n[sip]\nlisten = \"127.0.0.1:0\"\nrtp_ports = \"20000-29999\"\n{sip}\n"
        );
        let mut config = Config::from_toml_str_in(&text, dir.path()).unwrap();
        config.load_prompts().unwrap();
        edit(&mut config);
        let sip_config = SipConfig::from_table(config.sip.as_ref()).unwrap();
        let tcp = sip_config.tcp;
        let spool = config.spool.clone();
        let mailbox = Mailbox::open(config).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let mut endpoint = rt.block_on(Endpoint::bind(sip_config, mailbox.clone())).unwrap();
        if !background {
            endpoint = endpoint.without_background_work();
        }
        let messages = endpoint.messages().unwrap();
        let handle = endpoint.handle();
        let addr = endpoint.local_addr();
        let run = rt.spawn(endpoint.run());
        if tcp {
            // rsipstack starts listening on TCP once `run` serves: wait for it.
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(addr).is_err() {
                assert!(Instant::now() < deadline, "the endpoint does not listen on TCP {addr}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        TestEndpoint { rt, handle, addr, spool, mailbox, messages, run: Some(run), dir }
    }

    /// The next recorded message, waiting at most `timeout`.
    pub fn next_message(&mut self, timeout: Duration) -> Option<MessageMeta> {
        let messages = &mut self.messages;
        self.rt.block_on(async { tokio::time::timeout(timeout, messages.recv()).await.ok().flatten() })
    }

    /// `n` messages, waiting at most `timeout` in all.
    pub fn messages(&mut self, n: usize, timeout: Duration) -> Vec<MessageMeta> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_message(left) {
                Some(m) => out.push(m),
                None => break,
            }
        }
        out
    }

    /// Shuts the endpoint down, waits (bounded) for `run` to return, checks that the message
    /// stream ended and that every WAV in the spool belongs to a stored message.
    pub fn stop(&mut self) {
        self.handle.shutdown();
        self.wait_stopped();
    }

    /// Waits (bounded) for `run` to return without asking for a shutdown, then checks what
    /// [`TestEndpoint::stop`] checks.
    pub fn wait_stopped(&mut self) {
        if let Some(run) = self.run.take() {
            let r = self.rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), run).await });
            assert!(matches!(r, Ok(Ok(Ok(())))), "endpoint run: {r:?}");
            let rest = self.messages(usize::MAX, Duration::from_secs(5));
            assert!(self.messages.is_closed(), "the message stream must end when run returns (left: {rest:?})");
        }
        self.assert_no_orphan_wav();
    }

    /// Checks that the mailbox stored `meta` as delivered to the application, and that its
    /// WAV is in the spool.
    pub fn assert_stored(&self, meta: &MessageMeta) {
        let stored = self.mailbox.show(&meta.id).unwrap_or_else(|e| panic!("message {}: {e}", meta.id));
        assert_eq!(stored.lifecycle, Lifecycle::Stored, "{}", meta.id);
        assert_eq!(&stored.meta, meta, "the stored message differs from the one handed to the application");
        assert!(
            meta.wav_path.as_ref().is_some_and(|p| p.starts_with(&self.spool) && p.is_file()),
            "{:?}",
            meta.wav_path
        );
    }

    /// The `.wav` files in the spool.
    pub fn wav_files(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(&self.spool)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "wav"))
            .collect();
        out.sort();
        out
    }

    /// Every WAV in the spool is the recording of a stored message (no orphan, no 0-byte file).
    pub fn assert_no_orphan_wav(&self) {
        for wav in self.wav_files() {
            let id = voicemail_core::MessageId::parse(wav.file_stem().unwrap().to_str().unwrap()).unwrap();
            let stored = self.mailbox.show(&id).unwrap_or_else(|e| panic!("{} has no message: {e}", wav.display()));
            assert_eq!(stored.lifecycle, Lifecycle::Stored, "{}", wav.display());
            assert!(std::fs::metadata(&wav).unwrap().len() >= 44, "{} is shorter than a WAV header", wav.display());
        }
    }

    /// The SIP URI of the endpoint for SIPp: `127.0.0.1:PORT`.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for TestEndpoint {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

/// A child process killed (by its PID) when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let child = cmd.spawn().unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc { child, name: name.to_owned() }
    }

    /// Waits for the process to exit, at most `timeout`; kills it on timeout.
    pub fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return None;
                }
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a SIPp run produced.
pub struct SippRun {
    pub status: Option<std::process::ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub dir: PathBuf,
}

impl SippRun {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// The content of every `*_messages.log` (with `-trace_msg`) and `*_errors.log`.
    pub fn logs(&self, suffix: &str) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().ends_with(suffix) {
                    out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        out
    }

    /// The SIP messages SIPp received (with `-trace_msg`), in order.
    pub fn received(&self) -> Vec<String> {
        self.logs("_messages.log")
            .split("-----------------------------------------------")
            .filter(|m| m.contains("message received"))
            .map(|m| m.split_once(" :").map_or(m, |(_, msg)| msg).trim().to_owned())
            .collect()
    }

    /// The SIP messages SIPp sent (with `-trace_msg`), in order.
    pub fn sent(&self) -> Vec<String> {
        self.logs("_messages.log")
            .split("-----------------------------------------------")
            .filter(|m| m.contains("message sent"))
            .map(|m| m.split_once("):").map_or(m, |(_, msg)| msg).trim().to_owned())
            .collect()
    }

    pub fn describe(&self) -> String {
        format!(
            "sipp status {:?}\n--- stdout (tail)\n{}\n--- stderr\n{}\n--- errors.log\n{}",
            self.status,
            tail(&self.stdout, 30),
            self.stderr,
            tail(&self.logs("_errors.log"), 60)
        )
    }
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Writes `tests/sipp/<name>.xml` into `dir` with every `{{KEY}}` replaced.
pub fn scenario(dir: &Path, name: &str, vars: &[(&str, String)]) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp").join(format!("{name}.xml"));
    let mut text = std::fs::read_to_string(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    for (k, v) in vars {
        text = text.replace(&format!("{{{{{k}}}}}"), v);
    }
    assert!(!text.contains("{{"), "unreplaced placeholder in {name}: {text}");
    let out = dir.join(format!("{name}.xml"));
    std::fs::write(&out, text).unwrap();
    out
}

/// Runs SIPp in `dir` (where its logs land) against `target`, bounded by `timeout`.
/// `-i 127.0.0.1 -nostdin -timeout_error` and free SIP/media ports are always added.
pub fn run_sipp(sipp: &Path, dir: &Path, target: &str, args: &[&str], timeout: Duration) -> SippRun {
    run_sipp_calls(sipp, dir, target, args, timeout, 50)
}

/// [`run_sipp`] for up to `calls` simultaneous calls (each takes 4 media ports).
pub fn run_sipp_calls(sipp: &Path, dir: &Path, target: &str, args: &[&str], timeout: Duration, calls: u16) -> SippRun {
    let sip_port = free_udp_port().to_string();
    let media_port = media_port_block(calls.saturating_mul(4).max(8)).to_string();
    let mut cmd = Command::new(sipp);
    cmd.current_dir(dir)
        .arg(target)
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", &sip_port, "-mp", &media_port, "-nostdin"])
        .args(["-timeout", &format!("{}s", timeout.as_secs().max(1)), "-timeout_error", "-trace_err"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut proc = Proc::spawn("sipp", &mut cmd);
    let mut stdout = proc.child.stdout.take().unwrap();
    let mut stderr = proc.child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let status = proc.wait(timeout + Duration::from_secs(15));
    SippRun {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
        dir: dir.to_path_buf(),
    }
}

/// A UDP port that is free right now.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An even base port such that `base..base+span` are all free right now (for SIPp's
/// `-mp` and `[auto_media_port]`, which spreads calls over 4 ports each), outside the
/// endpoint's RTP range.
pub fn media_port_block(span: u16) -> u16 {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut x = seed | 1;
    for _ in 0..200 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let base = 40000 + (x % 20000) as u16 / 2 * 2;
        let held: Vec<_> = (0..span).map(|i| UdpSocket::bind(("127.0.0.1", base + i))).collect();
        if held.iter().all(Result::is_ok) {
            return base;
        }
    }
    panic!("no free port block of {span}");
}

/// Writes an 8 kHz mono G.711 WAV (format 7 μ-law or 6 A-law, like sox writes it) of a sine
/// tone, for SIPp's `rtp_stream`.
pub fn write_g711_wav(path: &Path, codec: CodecKind, seconds: f64, freq: f64) {
    let n = (seconds * 8000.0).round() as usize;
    let pcm: Vec<i16> =
        (0..n).map(|i| ((i as f64 * freq * 2.0 * std::f64::consts::PI / 8000.0).sin() * 12000.0) as i16).collect();
    let mut data = Vec::new();
    codec.encode(&pcm, &mut data);
    let format: u16 = if codec == CodecKind::Pcma { 6 } else { 7 };
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(4 + 26 + 12 + 8 + data.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&18u32.to_le_bytes());
    w.extend_from_slice(&format.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&8u16.to_le_bytes());
    w.extend_from_slice(&0u16.to_le_bytes());
    w.extend_from_slice(b"fact");
    w.extend_from_slice(&4u32.to_le_bytes());
    w.extend_from_slice(&(n as u32).to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(data.len() as u32).to_le_bytes());
    w.extend_from_slice(&data);
    std::fs::write(path, w).unwrap();
}

/// Writes RTP packets (20 ms apart) into a pcap file SIPp's `play_pcap_audio` can replay:
/// Ethernet, IPv4 and UDP around each packet.
pub fn write_pcap(path: &Path, packets: &[Vec<u8>]) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // Ethernet
    for (i, rtp) in packets.iter().enumerate() {
        let usec = i as u64 * 20_000;
        let udp_len = 8 + rtp.len();
        let ip_len = 20 + udp_len;
        let mut frame = Vec::with_capacity(14 + ip_len);
        frame.extend_from_slice(&[0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 6, 0x08, 0x00]);
        let mut ip =
            vec![0x45, 0, (ip_len >> 8) as u8, ip_len as u8, 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1];
        let sum = ip.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum::<u32>();
        let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&6000u16.to_be_bytes());
        frame.extend_from_slice(&6002u16.to_be_bytes());
        frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
        frame.extend_from_slice(&0u16.to_be_bytes());
        frame.extend_from_slice(rtp);
        out.extend_from_slice(&((usec / 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((usec % 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    std::fs::write(path, out).unwrap();
}

/// Writes a 16-bit PCM WAV of a sine tone (for baresip's aufile source).
pub fn write_pcm_wav(path: &Path, rate: u32, seconds: f64, freq: f64) {
    let spec =
        hound::WavSpec { channels: 1, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let n = (seconds * rate as f64).round() as usize;
    for i in 0..n {
        let s = (i as f64 * freq * 2.0 * std::f64::consts::PI / rate as f64).sin() * 12000.0;
        w.write_sample(s as i16).unwrap();
    }
    w.finalize().unwrap();
}

/// The samples of a recorded message's WAV (8 kHz, 16-bit mono), checking its format.
pub fn read_recording(meta: &MessageMeta) -> Vec<i16> {
    let path = meta.wav_path.as_ref().expect("the message has a WAV path");
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = r.spec();
    assert_eq!((spec.channels, spec.sample_rate, spec.bits_per_sample), (1, 8000, 16), "{}", path.display());
    r.samples::<i16>().map(Result::unwrap).collect()
}

/// A recorded message's WAV (16-bit mono at any rate): its rate and samples.
pub fn read_wav(meta: &MessageMeta) -> (u32, Vec<i16>) {
    let path = meta.wav_path.as_ref().expect("the message has a WAV path");
    let r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = r.spec();
    assert_eq!((spec.channels, spec.bits_per_sample), (1, 16), "{}", path.display());
    (spec.sample_rate, r.into_samples::<i16>().map(Result::unwrap).collect())
}

/// Power of `freq` in `samples` (Goertzel) at 8 kHz, normalised by the length.
pub fn tone_power(samples: &[i16], freq: f64) -> f64 {
    tone_power_at(samples, freq, 8000)
}

/// Power of `freq` in `samples` at `rate` (Goertzel), normalised by the length.
pub fn tone_power_at(samples: &[i16], freq: f64, rate: u32) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s = x as f64 + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (samples.len().max(1) as f64).powi(2)
}

/// The frequency (10 Hz steps from 100 to 3800 Hz) with the most power, at 8 kHz.
pub fn dominant_frequency(samples: &[i16]) -> f64 {
    dominant_frequency_at(samples, 8000)
}

/// The frequency (10 Hz steps from 100 to 3800 Hz) with the most power, at `rate`.
pub fn dominant_frequency_at(samples: &[i16], rate: u32) -> f64 {
    (10..=380)
        .map(|f| f as f64 * 10.0)
        .max_by(|a, b| tone_power_at(samples, *a, rate).total_cmp(&tone_power_at(samples, *b, rate)))
        .unwrap()
}

/// RMS of the samples.
pub fn rms(samples: &[i16]) -> f64 {
    (samples.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / samples.len().max(1) as f64).sqrt()
}

/// Duration in ms of a message's WAV, from its sample count.
pub fn wav_ms(meta: &MessageMeta) -> u64 {
    read_recording(meta).len() as u64 / 8
}

/// [`check_tone_recording`] for a message whose caller streamed a tone in packets of 20 ms:
/// every packet it received after the beep is in its WAV. Returns the silence before the tone,
/// the tone and the silence after it, in milliseconds.
pub fn check_message_tone(
    meta: &MessageMeta,
    expected_ms: std::ops::RangeInclusive<u64>,
) -> Result<(u64, u64, u64), String> {
    let (rate, samples) = read_wav(meta);
    check_tone_recording(&samples, rate, meta.media.packets_received, 20, expected_ms)
        .map_err(|e| format!("{}: {e} ({:?})", meta.id, meta.media))
}

/// Logs the endpoint's tracing output to stderr when `VOICEMAIL_TEST_LOG` holds a filter
/// (like `debug` or `info,rsipstack=debug`); for debugging a test.
pub fn log_to_stderr() {
    if let Ok(filter) = std::env::var("VOICEMAIL_TEST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    }
}
