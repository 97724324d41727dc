//! An offline call: no network, no SIP — the whole voicemail pipeline driven by a simulated
//! caller and a simulated clock.
//!
//! The caller waits for the beep, then sends FILE (any format the greeting decoder reads) as
//! RTP through the core, with seeded loss, reordering and duplication, and hangs up at the end
//! of the file or at `--hangup-at` seconds after the answer. The message's WAV and JSON
//! metadata land in the spool directory; the metadata is printed as one JSON line. With
//! `--config`, the greeting follows the configured calendar at `--at`, and the message is
//! delivered through the configured targets (failed deliveries stay queued; see `inbox`).
//!
//! ```text
//! cargo run --release --example offline_call -- --input FILE --caller NUMBER [--name "Display Name"]
//!     [--codec pcmu|pcma] [--hangup-at SECONDS] [--loss P] [--reorder P] [--duplicate P]
//!     [--seed N] [--out DIR] [--config FILE] [--at RFC3339]
//! ```

use std::process::ExitCode;

use voicemail_examples::offline::{Args, run};

fn main() -> ExitCode {
    let result = Args::parse(std::env::args().skip(1)).and_then(|args| run(&args));
    match result {
        Ok(outcome) => {
            for p in &outcome.pending {
                eprintln!("offline_call: delivery pending (will be retried): {p}");
            }
            println!("{}", outcome.meta.to_json_line());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("offline_call: {}", e.lines().next().unwrap_or("error"));
            ExitCode::from(2)
        }
    }
}
