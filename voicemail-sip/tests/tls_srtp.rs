//! SIP over TLS with SRTP required, against a real softphone: baresip (Debian `baresip-core`,
//! its `srtp` module and TLS transport) calls the endpoint's TLS listener (a certificate from a
//! CA made at test time, which baresip trusts) with `mediaenc=srtp-mand` (an RTP/SAVP offer with
//! `a=crypto` keys) and sends an 800 Hz tone for 10 s. With `[sip] srtp = "required"` the call
//! can only be set up with SRTP, so the recorded tone proves that both directions of SRTP work
//! (the endpoint unprotects what it records). A plain RTP/AVP offer (SIPp) to the same
//! endpoint is refused with 488 Not Acceptable Here and leaves no message.
//!
//! Without baresip (or its `srtp.so`) or SIPp the tests print `SKIPPED` and pass, unless
//! `VOICEMAIL_REQUIRE_INTEROP=1`.

#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Proc, TestEndpoint, free_udp_port, media_port_block, run_sipp, scenario};
use voicemail_testkit::TestCa;

const TONE_HZ: f64 = 800.0;

/// `[sip]` lines for a TLS listener with `cert`, trusting `ca`, SRTP required.
fn tls_sip_config(ca: &TestCa, cert: &voicemail_testkit::IssuedCert) -> String {
    format!(
        "tls_listen = \"127.0.0.1:0\"\ntls_certificate = \"{}\"\ntls_private_key = \"{}\"\ntls_ca_file = \"{}\"\nsrtp = \"required\"\n",
        cert.chain.display(),
        cert.key.display(),
        ca.ca_file().display()
    )
}

fn wait_for_tls(ep: &TestEndpoint) -> std::net::SocketAddr {
    let addr = ep.handle.tls_addr().expect("a TLS listener");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "the endpoint does not listen on TLS {addr}");
        std::thread::sleep(Duration::from_millis(10));
    }
    addr
}

#[test]
fn baresip_calls_over_tls_with_srtp_required_and_its_tone_is_recorded() {
    let Some(baresip) = common::tool("baresip", "baresip-core") else { return };
    let modules = std::path::Path::new("/usr/lib/baresip/modules");
    for m in ["g711.so", "aufile.so", "account.so", "menu.so", "srtp.so"] {
        if !modules.join(m).is_file() {
            common::tool(&format!("baresip module {m}"), "baresip-core");
            return;
        }
    }
    let dir = common::temp_dir("tls-srtp");
    let ca = TestCa::new(&dir.path().join("ca"));
    let endpoint_cert = ca.issue("endpoint", &["127.0.0.1", "localhost"]);
    let mut ep = TestEndpoint::start("tls-srtp", &tls_sip_config(&ca, &endpoint_cert), "");
    let tls = wait_for_tls(&ep);

    // baresip's own TLS identity (certificate and key in one PEM file), from the same CA.
    let phone = ca.issue("baresip", &["127.0.0.1"]);
    let phone_pem = dir.path().join("baresip.pem");
    std::fs::write(
        &phone_pem,
        format!("{}{}", std::fs::read_to_string(&phone.cert).unwrap(), std::fs::read_to_string(&phone.key).unwrap()),
    )
    .unwrap();
    let source = dir.path().join("tone.wav");
    common::write_pcm_wav(&source, 8000, 14.0, TONE_HZ);
    let conf = dir.path().join("baresip");
    std::fs::create_dir_all(&conf).unwrap();
    let sip_port = free_udp_port();
    let rtp = media_port_block(64);
    std::fs::write(
        conf.join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{sip_port}\nsip_certificate {}\nsip_cafile {}\n\
             module_path {}\nmodule g711.so\nmodule aufile.so\nmodule srtp.so\n\
             module_app account.so\nmodule_app menu.so\naudio_source aufile,{}\naudio_alert aufile,/dev/null\n\
             audio_player aufile,/dev/null\nrtp_ports {rtp}-{}\n",
            phone_pem.display(),
            ca.ca_file().display(),
            modules.display(),
            source.display(),
            rtp + 63
        ),
    )
    .unwrap();
    std::fs::write(conf.join("accounts"), "<sip:alice@127.0.0.1;transport=tls>;regint=0;mediaenc=srtp-mand\n").unwrap();
    std::fs::write(conf.join("contacts"), "").unwrap();
    let log = dir.path().join("baresip.log");
    let mut proc = Proc::spawn(
        "baresip",
        Command::new(baresip)
            .arg("-f")
            .arg(&conf)
            .args(["-n", "127.0.0.1", "-t", "12", "-e"])
            .arg(format!("/dial sip:4951234500@127.0.0.1:{};transport=tls", tls.port()))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null()),
    );
    let status = proc.wait(Duration::from_secs(40));
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.is_some(), "baresip did not exit:\n{out}");
    assert!(out.contains("Call established"), "baresip's call over TLS with SRTP was not established:\n{out}");

    let meta = ep.next_message(Duration::from_secs(10)).expect("a message for the call");
    assert_eq!(meta.caller, "alice");
    ep.assert_stored(&meta);
    let rec = common::read_recording(&meta);
    let seconds = rec.len() as f64 / 8000.0;
    eprintln!("recorded {seconds:.2} s over TLS + SRTP, {:?}", meta.media);
    assert!(seconds > 4.0, "recording is {seconds:.2} s; baresip talked 12 s minus the greeting");
    // The caller's tone, decrypted: the dominant frequency of the middle of the recording.
    let middle = &rec[rec.len() / 4..rec.len() * 3 / 4];
    let dominant = common::dominant_frequency(middle);
    assert!((dominant - TONE_HZ).abs() <= 20.0, "dominant frequency {dominant} Hz, expected {TONE_HZ} Hz");
    assert!(common::rms(middle) > 1000.0, "the recording is (nearly) silent: rms {}", common::rms(middle));
    ep.stop();
}

#[test]
fn a_plain_rtp_offer_is_refused_with_488_when_srtp_is_required() {
    let Some(sipp) = common::tool("sipp", "sip-tester") else { return };
    let dir = common::temp_dir("srtp-488");
    let ca = TestCa::new(&dir.path().join("ca"));
    let cert = ca.issue("endpoint", &["127.0.0.1"]);
    let mut ep = TestEndpoint::start("srtp-488", &tls_sip_config(&ca, &cert), "");
    let sipp_dir = ep.dir.path().join("sipp");
    std::fs::create_dir_all(&sipp_dir).unwrap();
    let xml = scenario(&sipp_dir, "uac_refused", &[("CALLER", "+74950000488".into()), ("STATUS", "488".into())]);
    let run = run_sipp(
        &sipp,
        &sipp_dir,
        &ep.target(),
        &["-sf", xml.to_str().unwrap(), "-s", "vm", "-m", "1", "-l", "1", "-trace_msg"],
        Duration::from_secs(30),
    );
    assert!(run.success(), "{}", run.describe());
    let answers: Vec<String> =
        run.received().into_iter().filter(|m| m.contains("CSeq: 1 INVITE") && !m.starts_with("SIP/2.0 100")).collect();
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert!(answers[0].starts_with("SIP/2.0 488"), "{}", answers[0]);
    assert!(ep.next_message(Duration::from_millis(500)).is_none(), "a refused call is no message");
    assert!(ep.wav_files().is_empty());
    ep.stop();
}

/// Whether the endpoint closed `stream`: end of stream or a reset, waiting up to 30 s.
fn closed_by_peer(stream: &mut std::net::TcpStream) -> bool {
    use std::io::Read;
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

/// Whether `stream` is still open with nothing to read (a non-blocking peek would block).
fn still_open(stream: &std::net::TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1];
    let open = matches!(stream.peek(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    stream.set_nonblocking(false).unwrap();
    open
}

#[test]
fn tls_handshakes_in_progress_count_against_the_limits_and_end_with_the_idle_timeout() {
    let dir = common::temp_dir("tls-limits");
    let ca = TestCa::new(&dir.path().join("ca"));
    let cert = ca.issue("endpoint", &["127.0.0.1"]);
    let sip = format!(
        "{}max_connections = 2\nmax_connections_per_source = 2\nidle_timeout = \"8s\"\n",
        tls_sip_config(&ca, &cert)
    );
    let ep = TestEndpoint::start("tls-limits", &sip, "");
    let tls = wait_for_tls(&ep);
    // (wait_for_tls's probe connection is closed by now or soon; let it go first.)
    std::thread::sleep(Duration::from_millis(200));
    // Two connections that never start a handshake: both held (in their handshake).
    let first = std::net::TcpStream::connect(tls).unwrap();
    let second = std::net::TcpStream::connect(tls).unwrap();
    // A third is over the limit: closed at once, while the other two are still open.
    let mut third = std::net::TcpStream::connect(tls).unwrap();
    assert!(closed_by_peer(&mut third), "a connection over the limit must be closed");
    assert!(still_open(&first) && still_open(&second), "the handshakes in progress are held until the timeout");
    // The idle timeout ends the handshakes that never came.
    let (mut first, mut second) = (first, second);
    assert!(closed_by_peer(&mut first) && closed_by_peer(&mut second), "handshakes must end with the idle timeout");
    // Their slots are free again.
    let fresh = std::net::TcpStream::connect(tls).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(still_open(&fresh), "a new connection is accepted once the others are gone");
}
