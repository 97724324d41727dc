//! The call engine stays sans-IO and deterministic: the modules a `Call` runs on never read a
//! clock, sleep, spawn a thread or open a socket (their `#[cfg(test)]` parts may).
//! Delivery modules (`deliver`, `outbox`, `route`) do I/O by design and are not checked.

const SANS_IO: &[&str] = &[
    "call/mod.rs",
    "codec/mod.rs",
    "codec/g711.rs",
    "io.rs",
    "jitter.rs",
    "rtp/mod.rs",
    "rtp/dtmf.rs",
    "greeting.rs",
    "recording.rs",
    "message.rs",
];

const FORBIDDEN: &[&str] = &[
    "Instant::now",
    "SystemTime::now",
    "Timestamp::now",
    "thread::sleep",
    "thread::spawn",
    "UdpSocket",
    "TcpStream",
    "TcpListener",
    "tokio",
];

#[test]
fn call_engine_has_no_clock_sleep_thread_or_socket() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for file in SANS_IO {
        let text = std::fs::read_to_string(src.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in code.lines().enumerate() {
            let l = line.trim_start();
            if l.starts_with("//") {
                continue; // documentation may show an adapter's loop
            }
            for f in FORBIDDEN {
                assert!(!l.contains(f), "{file}:{}: `{f}` in the sans-IO engine: {line}", n + 1);
            }
        }
    }
}
