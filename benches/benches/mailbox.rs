//! The mailbox's CPU per message, apart from the media path: `MESSAGES` calls (default 1,000)
//! of 10 s each go through a `Mailbox` on a temporary spool (SQLite store, WAV recording file,
//! synced): all are set up first (as in a burst of calls), then each is recorded and stored,
//! then every message is delivered to a Maildir folder. The process's CPU time (user and
//! system, from /proc/self/stat) of each phase is divided by the messages. The same calls
//! driven into an in-memory recording without a mailbox are measured first: what the stored
//! calls cost beyond them is the mailbox's own (file, store, sync). Linux only.
//!
//!     cargo bench -p voicemail-benches --bench mailbox
//!     MESSAGES=3000 cargo bench -p voicemail-benches --bench mailbox
//!
//! Wall time is printed too but is the disk's (every message is synced): compare CPU.
use std::time::Instant;

use voicemail_benches::{caller_packets, drive, env_number, offline_call, stat_cpu_seconds};
use voicemail_core::config::Config;
use voicemail_core::deliver::MaildirTarget;
use voicemail_core::{CallSetup, Mailbox, Prompt, StartedCall};

/// CPU seconds (user + system) of this process so far.
fn process_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    stat_cpu_seconds(stat.rsplit_once(')').map_or("", |(_, rest)| rest))
}

/// Runs `f` and returns (CPU seconds, wall seconds).
fn measure(f: impl FnOnce()) -> (f64, f64) {
    let (cpu, wall) = (process_cpu(), Instant::now());
    f();
    (process_cpu() - cpu, wall.elapsed().as_secs_f64())
}

fn row(what: &str, (cpu, wall): (f64, f64), n: u64) {
    let n = n as f64;
    println!("| {what} | {:.0} µs | {:.0} µs |", cpu / n * 1e6, wall / n * 1e6);
}

fn main() {
    let messages = env_number("MESSAGES", 1000);
    let dir = std::env::temp_dir().join(format!("voicemail-bench-mailbox-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = Config::default_embedded();
    config.spool = dir.join("spool");
    config.store.min_free_bytes = 0;
    config.recording.silence_timeout = None;
    config.delivery.maildir = Some(MaildirTarget { root: dir.join("Maildir"), folder: "Voicemail".to_owned() });
    let mailbox = Mailbox::open(config).expect("mailbox");
    let packets = caller_packets(10);
    let greeting = Prompt::default_greeting();

    let engine = measure(|| {
        for _ in 0..messages {
            std::hint::black_box(offline_call(&greeting, &packets));
        }
    });
    let mut started = Vec::with_capacity(messages as usize);
    let start = measure(|| {
        for _ in 0..messages {
            let base = Instant::now();
            let call = mailbox.start_call(CallSetup::new("+74951234567", jiff::Timestamp::now()), base).expect("start");
            started.push((call, base));
        }
    });
    let calls = measure(|| {
        for (StartedCall { mut call, lease }, base) in started {
            let (meta, _) = drive(&mut call, &packets, base);
            drop(call);
            mailbox.finish_call(lease, meta, jiff::Timestamp::now()).expect("stored");
        }
    });
    let mut delivered = 0;
    let delivery = measure(|| {
        while delivered < messages as usize {
            let report = mailbox.deliver_all_due(jiff::Timestamp::now()).expect("delivery");
            assert!(!report.delivered.is_empty(), "nothing delivered: {report:?}");
            delivered += report.delivered.len();
        }
    });
    println!("{messages} messages of 10 s each (CPU and wall time per message):");
    println!("| phase | CPU | wall |");
    println!("|---|---|---|");
    row("the call alone (engine, in-memory WAV)", engine, messages);
    row("call set-up (`start_call`: recording file, store)", start, messages);
    row("the call recorded to its file and stored (`finish_call`)", calls, messages);
    row("  of which the mailbox's own", (calls.0 - engine.0, calls.1 - engine.1), messages);
    row("delivery to Maildir", delivery, messages);
    drop(mailbox);
    let _ = std::fs::remove_dir_all(&dir);
}
