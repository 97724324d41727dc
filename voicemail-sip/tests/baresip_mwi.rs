//! The phone's message lamp with a real softphone: baresip (Debian `baresip-core`) with its
//! `mwi` module registers (through a minimal registrar and proxy in this test, on 127.0.0.1)
//! and SUBSCRIBEs to `message-summary` for the manager's user; the endpoint's NOTIFYs reach it
//! directly, and baresip prints each summary: `Messages-Waiting: no`, then `yes` after a
//! client's SIPp call (assigned to the manager by the directory), then `no` again after the
//! test marks the message called back.

#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Proc, TestEndpoint, free_udp_port, run_sipp, scenario};

/// A port baresip can listen on: free for UDP and TCP, and the next one free for TCP (its TLS
/// listener takes `port + 1`). Bounded: 50 candidates.
fn baresip_port() -> u16 {
    for _ in 0..50 {
        let port = free_udp_port();
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if port < u16::MAX && free(port) && free(port + 1) {
            return port;
        }
    }
    panic!("no port free for baresip's UDP, TCP and TLS listeners");
}

const CALLER: &str = "+74951234567";
const MANAGER: &str = "anna@example.com";

/// A registrar that accepts every REGISTER (answered after a second), and a proxy that passes every other request from
/// the phone to the endpoint (its own Via on top) and the endpoint's responses back. Runs
/// until `stop` (bounded by 10 minutes).
fn registrar_proxy(socket: UdpSocket, endpoint: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let me = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let mut phone: Option<SocketAddr> = None;
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut n = 0u32;
        let mut held: Vec<(Instant, String, SocketAddr)> = Vec::new();
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            while held.first().is_some_and(|(at, _, _)| *at <= Instant::now()) {
                let (_, answer, to) = held.remove(0);
                let _ = socket.send_to(answer.as_bytes(), to);
            }
            let Ok((len, from)) = socket.recv_from(&mut buf) else { continue };
            let text = String::from_utf8_lossy(&buf[..len]).to_string();
            let Some((head, body)) = text.split_once("\r\n\r\n") else { continue };
            let mut lines: Vec<&str> = head.split("\r\n").collect();
            if text.starts_with("REGISTER ") {
                let keep = ["via:", "from:", "call-id:", "cseq:", "contact:"];
                let mut out = vec!["SIP/2.0 200 OK".to_owned()];
                for l in &lines[1..] {
                    let lower = l.to_ascii_lowercase();
                    if lower.starts_with("to:") {
                        out.push(format!("{l};tag=registrar"));
                    } else if lower.starts_with("contact:") {
                        out.push(format!("{l};expires=60"));
                    } else if keep.iter().any(|k| lower.starts_with(k)) {
                        out.push((*l).to_owned());
                    }
                }
                out.push("Content-Length: 0\r\n\r\n".to_owned());
                // Held back a second: baresip 1.0's mwi module subscribes in a loop that never
                // ends when the registration succeeds before its start-up timer (1 ms) fired.
                held.push((Instant::now() + Duration::from_secs(1), out.join("\r\n"), from));
            } else if text.starts_with("SIP/2.0 ") {
                // A response from the endpoint: drop our Via, back to the phone.
                if let Some(i) = lines.iter().position(|l| l.to_ascii_lowercase().starts_with("via:")) {
                    lines.remove(i);
                }
                if let Some(phone) = phone {
                    let _ = socket.send_to(format!("{}\r\n\r\n{body}", lines.join("\r\n")).as_bytes(), phone);
                }
            } else {
                phone = Some(from);
                n += 1;
                lines.retain(|l| !l.to_ascii_lowercase().starts_with("route:"));
                let via = format!("Via: SIP/2.0/UDP {me};branch=z9hG4bK-proxy-{n}");
                lines.insert(1, &via);
                let _ = socket.send_to(format!("{}\r\n\r\n{body}", lines.join("\r\n")).as_bytes(), endpoint);
            }
        }
    })
}

/// Waits (bounded) until baresip's output has `count` summaries with `Messages-Waiting: <waiting>`.
fn wait_summaries(log: &std::path::Path, waiting: &str, count: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = std::fs::read_to_string(log).unwrap_or_default();
        if out.matches(&format!("Messages-Waiting: {waiting}")).count() >= count {
            return out;
        }
        assert!(Instant::now() < deadline, "baresip did not print {count} `Messages-Waiting: {waiting}`:\n{out}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn baresips_lamp_follows_the_managers_messages() {
    common::log_to_stderr();
    let Some(baresip) = common::tool("baresip", "baresip-core") else { return };
    let Some(sipp) = common::tool("sipp", "sip-tester") else { return };
    let modules = std::path::Path::new("/usr/lib/baresip/modules");
    for m in ["account.so", "menu.so", "mwi.so"] {
        if !modules.join(m).is_file() {
            common::tool(&format!("baresip module {m}"), "baresip-core");
            return;
        }
    }
    let data = common::temp_dir("baresip-mwi-dir");
    let csv = data.path().join("clients.csv");
    std::fs::write(&csv, format!("number,client,manager_name,manager_email\n{CALLER},Acme,Anna Petrova,{MANAGER}\n"))
        .unwrap();
    let mailbox = format!("[directory]\npath = \"{}\"\ndefault_region = \"RU\"\n", csv.display());
    let sip = format!(
        "[sip.mwi]\npoll_interval = \"200ms\"\n[[sip.mwi.managers]]\nemail = \"{MANAGER}\"\nusers = [\"201\"]\n"
    );
    let mut ep = TestEndpoint::start_with("baresip-mwi", &sip, &mailbox, |c| {
        c.load_directory().unwrap();
    });

    let proxy_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let proxy = proxy_socket.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let proxy_thread = registrar_proxy(proxy_socket, ep.addr, stop.clone());

    let conf = common::temp_dir("baresip-mwi-conf");
    let sip_port = baresip_port();
    std::fs::write(
        conf.path().join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{sip_port}\nmodule_path {}\nmodule_app account.so\n\
             module_app menu.so\nmodule_app mwi.so\n",
            modules.display()
        ),
    )
    .unwrap();
    std::fs::write(
        conf.path().join("accounts"),
        format!("<sip:201@{}>;regint=60;mwi=yes;outbound=\"sip:{proxy}\"\n", ep.addr),
    )
    .unwrap();
    std::fs::write(conf.path().join("contacts"), "").unwrap();
    let log = conf.path().join("baresip.log");
    let _baresip = Proc::spawn(
        "baresip",
        Command::new(baresip)
            .arg("-f")
            .arg(conf.path())
            .args(["-n", "127.0.0.1", "-t", "120"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null()),
    );
    let out = wait_summaries(&log, "no", 1);
    assert!(out.contains("----- MWI for sip:201@"), "{out}");

    let dir = ep.dir.path().join("sipp-call");
    std::fs::create_dir_all(&dir).unwrap();
    let call = scenario(&dir, "uac_hangup_greeting", &[("CALLER", CALLER.into()), ("HANGUP_MS", "500".into())]);
    let run = run_sipp(
        &sipp,
        &dir,
        &ep.target(),
        &["-sf", call.to_str().unwrap(), "-s", "1000", "-m", "1"],
        Duration::from_secs(30),
    );
    assert!(run.success(), "{}", run.describe());
    let meta = ep.next_message(Duration::from_secs(30)).expect("the call's message");
    let out = wait_summaries(&log, "yes", 1);
    assert!(out.contains("Voice-Message: 1/0 (0/0)"), "{out}");

    ep.mailbox.called_back(&meta.id, MANAGER, None, jiff::Timestamp::now()).unwrap();
    let out = wait_summaries(&log, "no", 2);
    let after_yes = &out[out.find("Messages-Waiting: yes").unwrap()..];
    assert!(after_yes.contains("Messages-Waiting: no") && after_yes.contains("Voice-Message: 0/1 (0/0)"), "{out}");

    stop.store(true, Ordering::SeqCst);
    proxy_thread.join().unwrap();
    ep.stop();
}
