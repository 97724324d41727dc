//! The engine stays sans-IO and deterministic: its modules never read a clock, sleep, spawn a
//! thread, open a socket or a file, or sync anything to disk (their `#[cfg(test)]` parts may);
//! audio goes only to the sink the engine is given. And the engine never reaches into the
//! mailbox layer (config, store, delivery, ...), which does I/O by design and is not checked.

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
    "error.rs",
    "lib.rs",
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
    "std::fs",
    "File",
    "sync_all",
    "sync_data",
    "OpenOptions",
];

/// Mailbox-layer modules the engine must not use.
const MAILBOX: &[&str] = &[
    "crate::config",
    "crate::deliver",
    "crate::directory",
    "crate::followup",
    "crate::mailbox",
    "crate::route",
    "crate::runner",
    "crate::schedule",
    "crate::store",
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
            for m in MAILBOX {
                assert!(!l.contains(m) || *file == "lib.rs", "{file}:{}: the engine uses `{m}`: {line}", n + 1);
            }
        }
    }
}

/// `default-features = false` builds the engine alone: none of the mailbox layer's mail, TLS,
/// CSV, TOML, phone-number or database crates is in its dependency tree.
#[test]
fn the_engine_alone_needs_no_mail_tls_csv_toml_phone_or_database_crate() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = std::process::Command::new(cargo)
        .args(["tree", "-p", "voicemail-core", "--no-default-features", "-e", "normal", "--prefix", "none"])
        .args(["--offline", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8_lossy(&out.stdout);
    let crates: Vec<&str> = tree.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(crates.contains(&"voicemail-core") && crates.contains(&"hound"), "{tree}");
    for banned in
        ["lettre", "mail-builder", "maildir", "rustls", "webpki-roots", "csv", "toml", "rlibphonenumber", "rusqlite"]
    {
        assert!(!crates.contains(&banned), "{banned} in the engine's tree:\n{tree}");
    }
}
