//! An offline call: no network, no SIP — the whole voicemail pipeline driven by a simulated
//! caller and a simulated clock, through the mailbox like every other front-end.
//!
//! The caller waits for the beep, then sends FILE (any format the greeting decoder reads) as
//! RTP through the core, with seeded loss, reordering and duplication, and hangs up at the end
//! of the file or at `--hangup-at` seconds after the answer. The mailbox stores the message
//! (`<spool>/<id>.wav` and its record in the spool's store; see `inbox show ID`) and its
//! metadata is printed as one JSON line. With `--config`, the greeting follows the configured
//! calendar at `--at`, and the message is delivered through the configured targets (a failed
//! delivery stays queued; see `inbox status` and `inbox deliver`). Without it, the embedded
//! defaults are used without delivery and without the silence timeout.
//!
//! ```text
//! cargo run --release --example offline_call -- --input FILE --caller NUMBER [--name "Display Name"]
//!     [--codec pcmu|pcma] [--hangup-at SECONDS] [--loss P] [--reorder P] [--duplicate P]
//!     [--seed N] [--out SPOOL_DIR] [--config FILE] [--at RFC3339]
//! ```

use std::io::Write as _;
use std::process::ExitCode;

use voicemail_examples::config::one_line;
use voicemail_examples::offline::{Args, run};

fn main() -> ExitCode {
    let result = Args::parse(std::env::args().skip(1)).and_then(|args| run(&args));
    match result {
        Ok(outcome) => {
            for p in outcome.pending() {
                eprintln!("offline_call: delivery pending (will be retried): {}", one_line(&p));
            }
            let _ = writeln!(std::io::stdout(), "{}", outcome.meta.to_json_line());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("offline_call: {}", e.lines().next().unwrap_or("error"));
            ExitCode::from(2)
        }
    }
}
