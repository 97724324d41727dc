//! Interop with a real Kamailio registrar/proxy (`examples/kamailio/kamailio.cfg`).
//!
//! - The registrar challenges REGISTER with `401` Digest `qop="auth"` (MD5).
//! - `voicemail_sip::register` registers through a real rsipstack endpoint with digest auth,
//!   Kamailio holds the binding (`kamcmd ul.dump`), the binding is refreshed before it
//!   expires, and shutdown removes it (`Expires: 0`).
//! - A wrong password is reported as a failing registration, not as registered.
//! - The full path, over UDP, TCP and TLS: the voicemail [`Endpoint`] REGISTERs with Kamailio
//!   (`[[sip.accounts]]`, registrar `sip:…`, `sip:…;transport=tcp`, `sips:…` with the
//!   endpoint trusting the test CA that issued Kamailio's certificate), the binding Kamailio
//!   keeps names the endpoint's *listening* address and transport (not the ephemeral port of
//!   the REGISTER's connection), SIPp calls `sip:voicemail@<kamailio>`, Kamailio routes the
//!   INVITE to the registered contact over that transport (`lookup("location")` +
//!   `t_relay()`, record-routed), audio flows, the caller hangs up, and the message the
//!   mailbox stored (record + WAV in the spool) carries the caller's number and the expected
//!   length. Also over each transport through an outbound proxy (the registrar URI names a
//!   host only Kamailio answers for), with a digest user other than the AOR user and `realm`.
//! - Credentials for another realm are not offered; a TLS registrar whose certificate comes
//!   from a CA the endpoint does not trust is refused with an error naming the certificate.
//!
//! Needs the Debian packages `kamailio`, `kamailio-tls-modules` and `sip-tester` (SIPp). Without them the tests print
//! `SKIPPED` and pass, unless `VOICEMAIL_REQUIRE_INTEROP=1` is set (meant for CI), which
//! turns a missing tool into a failure. Everything runs on 127.0.0.1 with free ports; every
//! Kamailio (`voicemail_testkit::Kamailio`) is started in its own process group and stopped by
//! that id.
#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rsipstack::EndpointBuilder;
use rsipstack::transport::TransportLayer;
use rsipstack::transport::udp::UdpConnection;
use tokio_util::sync::CancellationToken;
use voicemail_sip::register::{Account, RegistrationState, spawn_registrations};
use voicemail_testkit::{IssuedCert, Kamailio, KamailioOptions, TestCa, free_port, temp_dir, tool};

const KAMAILIO_CFG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/kamailio/kamailio.cfg");
const USER: &str = "voicemail";

/// The options of `examples/kamailio/kamailio.cfg` as the registrar of [`USER`] with
/// `password` (and the digest user `auth_user` when given).
fn registrar_options(password: &str, auth_user: Option<&str>) -> KamailioOptions {
    let options = KamailioOptions::new().define_str("VM_USER", USER).define_str("VM_PASSWORD", password);
    match auth_user {
        Some(auth_user) => options.define_str("AUTH_USER", auth_user),
        None => options,
    }
}

/// Kamailio, the registrar of [`USER`] with `password`, its files in `dir`; `None` after
/// `SKIPPED` when it is not installed.
fn registrar(dir: &Path, password: &str) -> Option<Kamailio> {
    Kamailio::start(Path::new(KAMAILIO_CFG), dir, registrar_options(password, None))
}

/// [`registrar`], with a TLS listener presenting `cert` (its port second) and the digest user
/// `auth_user` when given.
fn tls_registrar(dir: &Path, password: &str, cert: &IssuedCert, auth_user: Option<&str>) -> Option<(Kamailio, u16)> {
    let tls_port = free_port();
    let options = registrar_options(password, auth_user)
        .define("TLS_PORT", tls_port)
        .define_str("TLS_CERT", cert.chain.display())
        .define_str("TLS_KEY", cert.key.display())
        .module("tls.so", "kamailio-tls-modules");
    Some((Kamailio::start(Path::new(KAMAILIO_CFG), dir, options)?, tls_port))
}

/// The location table (`ul.dump`).
fn locations(kam: &Kamailio) -> String {
    kam.rpc(&["ul.dump"]).unwrap_or_default()
}

/// Waits until `ul.dump` satisfies `check`.
async fn wait_locations(kam: &Kamailio, timeout: Duration, check: impl Fn(&str) -> bool) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let dump = locations(kam);
        if check(&dump) {
            return Some(dump);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The `CSeq` number of the first contact in an `ul.dump`.
fn cseq_of(dump: &str) -> Option<u32> {
    dump.lines().find_map(|l| l.trim().strip_prefix("CSeq:")).and_then(|v| v.trim().parse().ok())
}

/// A real rsipstack endpoint on UDP 127.0.0.1 (free port), served in the background.
async fn sip_endpoint(token: &CancellationToken) -> (rsipstack::transaction::endpoint::Endpoint, SocketAddr) {
    let transport_layer = TransportLayer::new(token.child_token());
    let udp = UdpConnection::create_connection("127.0.0.1:0".parse().unwrap(), None, Some(token.child_token()))
        .await
        .unwrap();
    transport_layer.add_transport(udp.into());
    let endpoint =
        EndpointBuilder::new().with_cancel_token(token.child_token()).with_transport_layer(transport_layer).build();
    let addr = endpoint.get_addrs().first().unwrap().addr.to_string().parse().unwrap();
    let inner = endpoint.inner.clone();
    tokio::spawn(async move {
        let _ = inner.serve().await;
    });
    (endpoint, addr)
}

fn password() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("pw-{nanos:x}")
}

#[test]
fn registrar_challenges_with_digest_md5_qop_auth() {
    let dir = temp_dir("kam-challenge");
    let Some(kam) = registrar(dir.path(), &password()) else { return };
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let local = socket.local_addr().unwrap();
    let register = format!(
        "REGISTER sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-challenge-1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{USER}@127.0.0.1:{port}>;tag=1\r\nTo: <sip:{USER}@127.0.0.1:{port}>\r\n\
         Call-ID: challenge-{}@127.0.0.1\r\nCSeq: 1 REGISTER\r\nContact: <sip:{USER}@{local}>\r\nExpires: 60\r\n\
         Content-Length: 0\r\n\r\n",
        std::process::id(),
        port = kam.port()
    );
    socket.send_to(register.as_bytes(), ("127.0.0.1", kam.port())).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = socket.recv_from(&mut buf).unwrap();
    let response = String::from_utf8_lossy(&buf[..n]);
    assert!(response.starts_with("SIP/2.0 401 "), "{response}");
    let challenge = response
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("www-authenticate:"))
        .unwrap_or_else(|| panic!("no WWW-Authenticate in {response}"));
    assert!(challenge.contains("Digest"), "{challenge}");
    assert!(challenge.contains("qop=\"auth\""), "{challenge}");
    // RFC 2617: no algorithm parameter means MD5.
    assert!(!challenge.contains("algorithm=") || challenge.contains("algorithm=MD5"), "{challenge}");
    assert!(!locations(&kam).contains(&format!("AoR: {USER}")), "an unauthenticated REGISTER was saved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_refreshes_and_unregisters_with_digest_auth() {
    let dir = temp_dir("kam-register");
    let password = password();
    let Some(kam) = registrar(dir.path(), &password) else { return };
    let token = CancellationToken::new();
    let (endpoint, local) = sip_endpoint(&token).await;

    let account = Account {
        registrar: format!("sip:127.0.0.1:{}", kam.port()),
        username: USER.into(),
        password,
        expires: 4,
        contact_user: Some("vm".into()),
        auth_username: None,
        realm: None,
        outbound_proxy: None,
    };
    let handle = spawn_registrations(endpoint.inner.clone(), vec![account], &token).unwrap();
    assert!(handle.wait_registered(Duration::from_secs(10)).await, "not registered: {:?}", handle.status());
    assert_eq!(handle.status()[0].state, RegistrationState::Registered { expires: 4 });

    let contact = format!("sip:vm@{local}");
    let dump =
        wait_locations(&kam, Duration::from_secs(5), |d| d.contains(&format!("AoR: {USER}")) && d.contains(&contact))
            .await
            .unwrap_or_else(|| panic!("binding {contact} not in ul.dump:\n{}", locations(&kam)));
    eprintln!("ul.dump after registration:\n{dump}");
    let first_cseq = cseq_of(&dump).unwrap();

    // Granted 4 s: rsipstack refreshes at 75 % (3 s), each refresh being challenged again
    // (REGISTER + authenticated REGISTER, CSeq + 2); two refreshes within 8 s.
    wait_locations(&kam, Duration::from_secs(8), |d| {
        d.contains(&contact) && cseq_of(d).is_some_and(|c| c >= first_cseq + 4)
    })
    .await
    .unwrap_or_else(|| panic!("binding was not refreshed twice within 8 s:\n{}", locations(&kam)));
    assert!(handle.all_registered(), "{:?}", handle.status());

    // Shutdown sends Expires: 0; the binding goes away at once, not when it expires.
    let status = handle.watch();
    let started = Instant::now();
    handle.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(6));
    assert_eq!(status.borrow()[0].state, RegistrationState::Unregistered);
    let dump = locations(&kam);
    assert!(!dump.contains(&contact), "binding still present after unregistration:\n{dump}");
    token.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_reported_as_failing() {
    let dir = temp_dir("kam-badpw");
    let Some(kam) = registrar(dir.path(), &password()) else { return };
    let token = CancellationToken::new();
    let (endpoint, _) = sip_endpoint(&token).await;
    let account = Account {
        registrar: format!("sip:127.0.0.1:{}", kam.port()),
        username: USER.into(),
        password: "not-the-password".into(),
        expires: 60,
        contact_user: None,
        auth_username: None,
        realm: None,
        outbound_proxy: None,
    };
    let handle = spawn_registrations(endpoint.inner.clone(), vec![account], &token).unwrap();
    let mut status = handle.watch();
    // (`wait_for` returns a read guard: drop it at once, or the registration task blocks.)
    let failing = tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| matches!(s[0].state, RegistrationState::Failing { .. })),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    assert!(failing, "{:?}", handle.status());
    match &handle.status()[0].state {
        RegistrationState::Failing { last_error, failures } => {
            assert!(last_error.contains("401"), "{last_error}");
            assert!(*failures >= 1);
            assert!(!last_error.contains("not-the-password"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!handle.all_registered());
    assert!(!locations(&kam).contains(&format!("AoR: {USER}")));
    handle.shutdown().await;
    token.cancel();
}

const CALLER: &str = "+4930123456";

/// SIPp UAC: INVITE to `[service]` via the proxy, record-routed ACK and BYE, `AUDIO` streamed
/// as PCMU with `rtp_stream` for `PAUSE_MS` before hanging up.
const SIPP_CALL: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="call through kamailio">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Kamailio Test" <sip:CALLER@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:CALLER@[local_ip]:[local_port]>
      Max-Forwards: 70
      Subject: voicemail via kamailio
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=ptime:20
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true" rrs="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: "Kamailio Test" <sip:CALLER@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:CALLER@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <nop>
    <action>
      <exec rtp_stream="AUDIO,1,0"/>
    </action>
  </nop>
  <pause milliseconds="PAUSE_MS"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: "Kamailio Test" <sip:CALLER@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: <sip:CALLER@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
"#;

/// `seconds` of a 440 Hz tone as raw PCMU (what SIPp's `rtp_stream` plays).
fn tone_ulaw(seconds: f64) -> Vec<u8> {
    let samples = (seconds * 8000.0) as usize;
    (0..samples)
        .map(|i| {
            let t = i as f64 / 8000.0;
            voicemail_core::codec::g711::linear_to_ulaw(
                (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16,
            )
        })
        .collect()
}

/// A short greeting: `seconds` of a quiet 600 Hz tone, 8 kHz mono WAV.
fn write_greeting(path: &Path, seconds: f64) {
    let spec =
        hound::WavSpec { channels: 1, sample_rate: 8000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..(seconds * 8000.0) as usize {
        let t = i as f64 / 8000.0;
        writer.write_sample((2000.0 * (2.0 * std::f64::consts::PI * 600.0 * t).sin()) as i16).unwrap();
    }
    writer.finalize().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_through_kamailio_reaches_the_registered_endpoint() {
    call_through_kamailio(Transport::Udp, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_and_call_over_tcp() {
    call_through_kamailio(Transport::Tcp, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_and_call_over_tls() {
    call_through_kamailio(Transport::Tls, false).await;
}

/// The registrar named by a host name only Kamailio answers for (`voicemail.test`, never
/// resolved), reached through `outbound_proxy`; a digest user (`vm-auth`) other than the AOR
/// user; `realm` set to the registrar's realm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_through_an_outbound_proxy_with_an_auth_user_and_realm_then_a_call() {
    call_through_kamailio(Transport::Udp, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_over_tcp_through_an_outbound_proxy_then_a_call() {
    call_through_kamailio(Transport::Tcp, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_over_tls_through_an_outbound_proxy_then_a_call() {
    call_through_kamailio(Transport::Tls, true).await;
}

/// A TLS registrar whose certificate comes from a CA we do not trust (`tls_ca_file` names
/// another one) is refused: the registration fails with an error about the certificate, and
/// Kamailio never sees a REGISTER.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_registrar_with_an_unknown_ca_is_refused() {
    use voicemail_sip::{Endpoint, SipConfig};

    if let Ok(filter) = std::env::var("VOICEMAIL_TEST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    }
    let dir = temp_dir("kam-unknown-ca");
    let password = password();
    let ca = TestCa::new(&dir.path().join("ca"));
    let other_ca = TestCa::new(&dir.path().join("other-ca"));
    let kamailio_cert = ca.issue("kamailio", &["127.0.0.1"]);
    let Some((kam, tls_port)) = tls_registrar(dir.path(), &password, &kamailio_cert, None) else { return };
    let config = format!(
        r#"
mailbox = "unknown CA"
timezone = "UTC"
spool = "{spool}"

[sip]
listen = "127.0.0.1:0"
tls_ca_file = "{other}"

[[sip.accounts]]
registrar = "sips:127.0.0.1:{tls_port}"
username = "{USER}"
password = "{password}"
expires = 60
"#,
        spool = dir.path().join("spool").display(),
        other = other_ca.ca_file().display(),
    );
    let mut mailbox = voicemail_core::config::Config::from_toml_str_in(&config, dir.path()).unwrap();
    mailbox.load_prompts().unwrap();
    let sip = SipConfig::from_table(mailbox.sip.as_ref()).unwrap();
    let mailbox = voicemail_core::Mailbox::open(mailbox).unwrap();
    let endpoint = Endpoint::bind(sip, mailbox).await.unwrap();
    let handle = endpoint.handle();
    let running = tokio::spawn(endpoint.run());
    let deadline = Instant::now() + Duration::from_secs(20);
    let last_error = loop {
        // (Empty until `run` has started the registrations.)
        if let Some(RegistrationState::Failing { last_error, .. }) = handle.registrations().first().map(|r| &r.state) {
            break last_error.clone();
        }
        assert!(Instant::now() < deadline, "{:?}", handle.registrations());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("registration over TLS to a server of an unknown CA: {last_error}");
    assert!(last_error.to_ascii_lowercase().contains("certificate"), "{last_error}");
    assert!(!kam.log().contains("REGISTER"), "{}", kam.log());
    assert!(!locations(&kam).contains(&format!("AoR: {USER}")));
    handle.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(15), running).await;
}

/// Credentials for another realm are not offered to this registrar: the registration fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_for_another_realm_are_not_answered() {
    let dir = temp_dir("kam-realm");
    let password = password();
    let Some(kam) = registrar(dir.path(), &password) else { return };
    let token = CancellationToken::new();
    let (endpoint, _) = sip_endpoint(&token).await;
    let account = Account {
        registrar: format!("sip:127.0.0.1:{}", kam.port()),
        username: USER.into(),
        password,
        expires: 60,
        contact_user: None,
        auth_username: None,
        realm: Some("elsewhere.example".into()),
        outbound_proxy: None,
    };
    let handle = spawn_registrations(endpoint.inner.clone(), vec![account], &token).unwrap();
    let mut status = handle.watch();
    let failing = tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| matches!(s[0].state, RegistrationState::Failing { .. })),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    assert!(failing, "{:?}", handle.status());
    match &handle.status()[0].state {
        RegistrationState::Failing { last_error, .. } => assert!(last_error.contains("realm"), "{last_error}"),
        other => panic!("{other:?}"),
    }
    assert!(!locations(&kam).contains(&format!("AoR: {USER}")));
    handle.shutdown().await;
    token.cancel();
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
    Tls,
}

/// The endpoint registers with Kamailio over `transport` (the registrar URI says which), SIPp
/// calls its AoR through Kamailio (over UDP), Kamailio relays the call to the registered
/// Contact over `transport`, and the message is recorded.
async fn call_through_kamailio(transport: Transport, proxied: bool) {
    use voicemail_sip::{Endpoint, SipConfig};

    let Some(sipp) = tool("sipp", "sip-tester") else { return };
    let dir = temp_dir(&format!("kam-call-{transport:?}").to_lowercase());
    let password = password();
    let ca = TestCa::new(&dir.path().join("ca"));
    let kamailio_cert = ca.issue("kamailio", &["127.0.0.1"]);
    let endpoint_cert = ca.issue("endpoint", &["127.0.0.1"]);
    const AUTH_USER: &str = "vm-auth";
    let auth_user = proxied.then_some(AUTH_USER);
    let Some((kam, kam_tls_port)) = tls_registrar(dir.path(), &password, &kamailio_cert, auth_user) else { return };
    let host = if proxied { "voicemail.test".to_owned() } else { "127.0.0.1".to_owned() };
    let (port, tls_port) =
        if proxied { (String::new(), String::new()) } else { (format!(":{}", kam.port()), format!(":{kam_tls_port}")) };
    let registrar = match transport {
        Transport::Udp => format!("sip:{host}{port}"),
        Transport::Tcp => format!("sip:{host}{port};transport=tcp"),
        Transport::Tls => format!("sips:{host}{tls_port}"),
    };
    let proxy_lines = if proxied {
        let proxy_port = if transport == Transport::Tls { kam_tls_port } else { kam.port() };
        format!(
            "outbound_proxy = \"sip:127.0.0.1:{proxy_port}\"\nauth_username = \"{AUTH_USER}\"\nrealm = \"{host}\"\n"
        )
    } else {
        String::new()
    };

    // The voicemail endpoint, registering with Kamailio as `voicemail`.
    const GREETING_S: f64 = 1.0;
    const BEEP_S: f64 = 0.25;
    let greeting = dir.path().join("greeting.wav");
    write_greeting(&greeting, GREETING_S);
    let spool = dir.path().join("spool");
    let rtp_base = 40000 + (std::process::id() % 500) as u16 * 40;
    let config = format!(
        r#"
mailbox = "Kamailio interop"
timezone = "UTC"
spool = "{spool}"

[recording]
silence_timeout = "off"

[greetings]
default = "{greeting}"

[sip]
listen = "127.0.0.1:0"
rtp_ports = "{rtp_low}-{rtp_high}"
tls_listen = "127.0.0.1:0"
tls_certificate = "{cert}"
tls_private_key = "{key}"
tls_ca_file = "{ca}"

[[sip.accounts]]
registrar = "{registrar}"
username = "{USER}"
password = "{password}"
expires = 60
{proxy_lines}"#,
        spool = spool.display(),
        greeting = greeting.display(),
        rtp_low = rtp_base,
        rtp_high = rtp_base + 39,
        cert = endpoint_cert.chain.display(),
        key = endpoint_cert.key.display(),
        ca = ca.ca_file().display(),
    );
    let mut mailbox = voicemail_core::config::Config::from_toml_str_in(&config, dir.path()).unwrap();
    mailbox.load_prompts().unwrap();
    let sip = SipConfig::from_table(mailbox.sip.as_ref()).unwrap();
    let mailbox = voicemail_core::Mailbox::open(mailbox).unwrap();
    let mut endpoint = Endpoint::bind(sip, mailbox.clone()).await.unwrap();
    let endpoint_addr = endpoint.local_addr();
    let tls_addr = endpoint.tls_addr().unwrap();
    let mut messages = endpoint.messages().unwrap();
    let handle = endpoint.handle();
    let running = tokio::spawn(endpoint.run());

    // Kamailio holds the endpoint's binding: its listening address and transport.
    let contact = match transport {
        Transport::Udp => format!("sip:{USER}@{endpoint_addr}"),
        Transport::Tcp => format!("sip:{USER}@{endpoint_addr};transport=tcp"),
        Transport::Tls => format!("sips:{USER}@{tls_addr}"),
    };
    // (rsipstack writes `transport=TCP`; transport values compare case-insensitively, RFC 3261 §19.1.4.)
    let has_contact = |d: &str| d.to_ascii_lowercase().contains(&contact.to_ascii_lowercase());
    wait_locations(&kam, Duration::from_secs(15), |d| d.contains(&format!("AoR: {USER}")) && has_contact(d))
        .await
        .unwrap_or_else(|| {
            panic!("endpoint not registered: {:?}\nul.dump:\n{}", handle.registrations(), locations(&kam))
        });
    // Kamailio stores the binding before its 200 OK reaches the endpoint: wait for that too.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !matches!(handle.registrations()[0].state, RegistrationState::Registered { .. }) {
        assert!(Instant::now() < deadline, "not registered: {:?}\n{}", handle.registrations(), kam.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // SIPp calls the AoR through Kamailio and streams 5 s of audio, hanging up after 5.5 s.
    const AUDIO_S: f64 = 5.0;
    const CALL_MS: u64 = 5500;
    let audio = dir.path().join("caller.ulaw");
    std::fs::write(&audio, tone_ulaw(AUDIO_S)).unwrap();
    let scenario = dir.path().join("call.xml");
    let xml = SIPP_CALL
        .replace("CALLER", CALLER)
        .replace("AUDIO", &audio.display().to_string())
        .replace("PAUSE_MS", &CALL_MS.to_string());
    std::fs::write(&scenario, xml).unwrap();
    let sipp_port = free_port();
    let media_port = free_port();
    let mut command = Command::new(&sipp);
    command
        .arg(format!("127.0.0.1:{}", kam.port()))
        .args(["-sf", &scenario.display().to_string()])
        .args(["-s", USER, "-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .args(["-p", &sipp_port.to_string(), "-mp", &media_port.to_string()])
        .args(["-m", "1", "-l", "1", "-timeout", "40s", "-timeout_error", "-nostdin"])
        .args([
            "-trace_err",
            "-trace_msg",
            "-message_file",
            &dir.path().join("sipp-messages.log").display().to_string(),
        ])
        .args(["-error_file", &dir.path().join("sipp-errors.log").display().to_string()])
        .current_dir(dir.path());
    let output = tokio::task::spawn_blocking(move || command.output()).await.unwrap().unwrap();
    let sipp_log = std::fs::read_to_string(dir.path().join("sipp-messages.log")).unwrap_or_default();
    assert!(
        output.status.success(),
        "sipp failed ({}):\n{}\n{}\nerrors:\n{}\nkamailio:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        sipp_log,
        std::fs::read_to_string(dir.path().join("sipp-errors.log")).unwrap_or_default(),
        kam.log()
    );
    // The INVITE really went through the proxy: the endpoint's answer is record-routed by it.
    assert!(sipp_log.contains(&format!("Record-Route: <sip:127.0.0.1:{}", kam.port())), "{sipp_log}");

    // The delivered message.
    let meta = tokio::time::timeout(Duration::from_secs(20), messages.recv())
        .await
        .expect("no message within 20 s of the hang-up")
        .expect("message channel closed");
    assert_eq!(meta.caller, CALLER);
    let stored = mailbox.show(&meta.id).unwrap();
    assert_eq!(stored.meta, meta, "the stored message differs from the one handed to the application");
    assert_eq!(stored.meta.caller, CALLER);
    let wav_path = meta.wav_path.clone().expect("no wav path");
    assert!(wav_path.starts_with(&spool), "{}", wav_path.display());
    let reader = hound::WavReader::open(&wav_path).unwrap();
    assert_eq!(reader.spec().sample_rate, 8000);
    let samples: Vec<i16> = reader.into_samples::<i16>().map(Result::unwrap).collect();
    let wav_s = samples.len() as f64 / 8000.0;
    // Recording starts after the greeting and the beep and holds the caller's audio up to the
    // BYE (the stream ends 0.5 s before it).
    let expected_s = AUDIO_S.min(CALL_MS as f64 / 1000.0) - GREETING_S - BEEP_S;
    assert!((wav_s - expected_s).abs() <= 0.6, "wav {wav_s:.2} s, expected about {expected_s:.2} s: {meta:?}");
    assert!((meta.duration_ms as f64 / 1000.0 - wav_s).abs() < 0.05, "{meta:?}");
    // It is the caller's tone, not silence.
    let loud = samples.iter().filter(|s| s.unsigned_abs() > 2000).count();
    assert!(loud as f64 > samples.len() as f64 * 0.3, "recording is mostly silent: {loud}/{}", samples.len());
    eprintln!("message {} from {}: {wav_s:.2} s ({:?})", meta.id, meta.caller, meta.end_reason);

    handle.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(15), running).await;
    // Shutdown unregistered the endpoint.
    let dump = locations(&kam);
    assert!(!has_contact(&dump), "binding left after shutdown:\n{dump}");
}
