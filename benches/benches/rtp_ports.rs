//! The media threads' CPU per received RTP packet, with an RTP port per call and with shared
//! RTP ports (`[sip] shared_rtp_ports`), measured side by side in one run.
//!
//! `CALLS` callers (default 1,000), each a UDP socket of its own on 127.0.0.1 as a phone's
//! would be, send a 20 ms μ-law packet every 20 ms for `SECONDS` (default 8) to their calls on a
//! `MediaEngine` with two threads; each call answers with a 1 s greeting (sent back to its
//! caller), then records into a sink that keeps nothing. The media threads' CPU time (user +
//! system, from /proc/self/task) is divided by the packets the calls received. The sender is
//! one thread of this process and not counted. Linux only.
//!
//!     cargo bench -p voicemail-benches --bench rtp_ports
//!     CALLS=3000 SECONDS=8 cargo bench -p voicemail-benches --bench rtp_ports
//!
//! Run on an otherwise idle machine; compare the two rows of one run.
use std::net::{IpAddr, UdpSocket};
use std::time::{Duration, Instant};

use voicemail_benches::{Discard, env_number, stat_cpu_seconds};
use voicemail_core::{Call, CallConfig, MessageId, Prompt, Recording};
use voicemail_sip::media::{MediaCommand, MediaEngine, MediaStart, PortPool};

/// CPU seconds (user + system) of this process's threads whose name starts with `prefix`.
fn thread_cpu(prefix: &str) -> f64 {
    let mut seconds = 0.0;
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        if head.split_once('(').is_some_and(|(_, name)| name.starts_with(prefix)) {
            seconds += stat_cpu_seconds(rest);
        }
    }
    seconds
}

/// One run: `calls` callers against an engine with `shared` ports per thread (0: a port each).
fn run(calls: usize, seconds: u64, shared: usize, greeting: &Prompt, payload: &[u8]) -> (f64, u64, u64) {
    let pool = PortPool::new(IpAddr::from([127, 0, 0, 1]), 0, 0);
    let engine = MediaEngine::with_shared_ports(2, shared, &pool).expect("media engine");
    let base = Instant::now();
    let mut callers = Vec::with_capacity(calls);
    let mut handles = Vec::with_capacity(calls);
    for i in 0..calls {
        let caller = UdpSocket::bind("127.0.0.1:0").expect("caller socket");
        let port = engine.rtp_port(&pool).expect("rtp port");
        let ours = port.local_addr().expect("address");
        let mut config = CallConfig::new(
            MessageId::parse(&format!("bench-{i}")).expect("id"),
            "+74951234567",
            jiff::Timestamp::UNIX_EPOCH,
        );
        config.beep = None;
        config.silence_timeout = None;
        let recording = Recording::new(Discard(0)).expect("sink");
        let call = Call::new(config, greeting.clone(), recording, base).expect("call");
        let (commands, outcome) = engine.start(MediaStart {
            call,
            port,
            signal_ip: Some(IpAddr::from([127, 0, 0, 1])),
            remote: Some(caller.local_addr().expect("address")),
            send: true,
            notifier: None,
            srtp: None,
        });
        commands.send(MediaCommand::Answered);
        callers.push((caller, ours));
        handles.push((commands, outcome));
    }
    let cpu0 = thread_cpu("voicemail-media");
    let start = Instant::now();
    let mut packet = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    packet.extend_from_slice(payload);
    let mut sent = 0u64;
    for tick in 0..seconds * 50 {
        let seq = tick as u16;
        packet[2..4].copy_from_slice(&seq.to_be_bytes());
        packet[4..8].copy_from_slice(&(tick as u32 * 160).to_be_bytes());
        for (n, (caller, ours)) in callers.iter().enumerate() {
            packet[8..12].copy_from_slice(&(0x1000_0000 + n as u32).to_be_bytes());
            if caller.send_to(&packet, *ours).is_ok() {
                sent += 1;
            }
        }
        let next = start + Duration::from_millis(20 * (tick + 1));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    // Let the threads read what is still queued, then take their CPU before the hang-ups.
    std::thread::sleep(Duration::from_millis(200));
    let cpu = thread_cpu("voicemail-media") - cpu0;
    let mut received = 0;
    for (commands, outcome) in handles {
        commands.send(MediaCommand::Hangup);
        if let Ok(Some(meta)) = outcome.blocking_recv().map(|o| o.meta) {
            received += meta.media.packets_received;
        }
    }
    drop(engine);
    (cpu, sent, received)
}

fn main() {
    let calls = env_number("CALLS", 1000) as usize;
    let seconds = env_number("SECONDS", 8);
    let greeting = Prompt::from_pcm("greeting", vec![800; 8000]).expect("greeting");
    let payload = [0x55u8; 160];
    println!("rtp_ports: {calls} callers, each a socket of its own, {seconds} s of 20 ms packets; 2 media threads");
    for (label, shared) in [("a port per call", 0), ("2 shared ports per thread", 2)] {
        let (cpu, sent, received) = run(calls, seconds, shared, &greeting, &payload);
        let per_packet = if received > 0 { cpu / received as f64 * 1e6 } else { f64::NAN };
        println!(
            "  {label:>26}: media threads {cpu:.2} CPU-s for {received} of {sent} packets received = {per_packet:.2} µs per packet"
        );
    }
}
