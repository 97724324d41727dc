//! The mailbox's background work, for long-running front-ends (the answering machine, the
//! Python endpoint): one delivery worker thread per target, so a dead or silent server delays
//! only its own target, and one housekeeping thread that runs [`Mailbox::recover`] (calls
//! whose process died, messages whose storing failed on a full disk).
//!
//! Workers wake when a message is stored in this process, when their next retry is due, and
//! at least every [`POLL`] (another process may have queued work). [`Runner::stop`] lets each
//! worker finish its attempt in progress, gives due deliveries a last short pass, and joins.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::mailbox::Mailbox;

/// The longest a worker sleeps without looking for work.
pub const POLL: Duration = Duration::from_secs(5);
/// How long workers keep delivering due messages after [`Runner::stop`].
const FINAL_PASS: Duration = Duration::from_secs(10);

/// Background delivery and recovery of one mailbox. Start with [`Runner::start`].
#[derive(Debug)]
pub struct Runner {
    mailbox: Mailbox,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Runner {
    /// Starts the workers: recovery runs at once, then every [`POLL`].
    pub fn start(mailbox: &Mailbox) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        {
            let (mailbox, stop) = (mailbox.clone(), stop.clone());
            threads.push(std::thread::Builder::new().name("vm-recovery".into()).spawn(move || recovery(&mailbox, &stop))?);
        }
        for target in mailbox.targets() {
            let (mailbox, stop) = (mailbox.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("vm-deliver-{target}"))
                    .spawn(move || deliver(&mailbox, &target, &stop))?,
            );
        }
        Ok(Self { mailbox: mailbox.clone(), stop, threads })
    }

    /// Stops the workers: each finishes its attempt in progress and tries what is due for a
    /// few more seconds; returns when all have ended.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.mailbox.wake();
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                tracing::error!("a mailbox worker panicked");
            }
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.halt();
        }
    }
}

fn recovery(mailbox: &Mailbox, stop: &AtomicBool) {
    let mut seen = 0;
    loop {
        if let Err(e) = mailbox.recover(Timestamp::now()) {
            tracing::warn!(error = %e, "recovery pass failed; retrying");
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
        seen = mailbox.wait_for_work(seen, POLL);
        if stop.load(Ordering::SeqCst) {
            // One last pass: a message stored while stopping is not left waiting.
            let _ = mailbox.recover(Timestamp::now());
            return;
        }
    }
}

fn deliver(mailbox: &Mailbox, target: &str, stop: &AtomicBool) {
    let mut seen = 0;
    let mut stop_at: Option<Instant> = None;
    loop {
        if stop.load(Ordering::SeqCst) && stop_at.is_none() {
            stop_at = Some(Instant::now() + FINAL_PASS);
        }
        let now = Timestamp::now();
        if let Err(e) = mailbox.deliver_due(target, now) {
            tracing::warn!(target, error = %e, "delivery pass failed; retrying");
        }
        if let Some(at) = stop_at {
            let due = mailbox.next_due(target).ok().flatten().is_some_and(|t| t <= Timestamp::now());
            if !due || Instant::now() >= at {
                return;
            }
            continue;
        }
        let wait = match mailbox.next_due(target) {
            Ok(Some(t)) => {
                let ms = t.as_millisecond().saturating_sub(Timestamp::now().as_millisecond()).max(0);
                Duration::from_millis(u64::try_from(ms).unwrap_or(0)).min(POLL)
            }
            _ => POLL,
        };
        seen = mailbox.wait_for_work(seen, wait.max(Duration::from_millis(10)));
    }
}
