//! The mailbox's background work, for long-running front-ends (the answering machine, the
//! Python endpoint): one delivery worker thread per target, so a dead or silent server delays
//! only its own target, one housekeeping thread that runs [`Mailbox::recover`] (calls
//! whose process died, messages whose storing failed on a full disk), and, with `[followup]`,
//! one that runs [`Mailbox::remind`] with the real clock (reminders of calls not returned;
//! the `smtp` worker then sends them), and, with `[delivery.imap]` and `watch = true` (the
//! default), the IMAP watcher (follow-up state between the store and the copies' keywords,
//! both ways; expunged copies put back).
//!
//! The workers record [`crate::telemetry`] metrics: each message stored, each delivery pass's
//! outcomes and the queue's depth per target.
//!
//! Workers wake when a message is stored in this process, when their next retry is due, and
//! at least every [`POLL`] (another process may have queued work). [`Runner::stop`] lets each
//! worker finish its attempt in progress, gives due deliveries a last short pass, and joins.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::mailbox::{Mailbox, RunReport, Subscription};
use crate::telemetry;

/// The longest a worker sleeps without looking for work.
pub const POLL: Duration = Duration::from_secs(5);
/// The longest the reminder worker sleeps between passes.
pub const REMIND_POLL: Duration = Duration::from_secs(60);
/// How often the spool is cleaned with a shared store (`[store] url`): recordings of messages
/// deleted on other nodes are removed.
pub const CLEAN_SHARED: Duration = Duration::from_secs(60);
/// How long workers keep delivering due messages after [`Runner::stop`].
const FINAL_PASS: Duration = Duration::from_secs(10);

/// Background delivery and recovery of one mailbox. Start with [`Runner::start`].
#[derive(Debug)]
pub struct Runner {
    mailbox: Mailbox,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Counts each stored message ([`telemetry::MESSAGES`]) while the runner runs.
    counting: Option<Subscription>,
}

impl Runner {
    /// Starts the workers: recovery runs at once, then every [`POLL`].
    pub fn start(mailbox: &Mailbox) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        {
            let (mailbox, stop) = (mailbox.clone(), stop.clone());
            threads
                .push(std::thread::Builder::new().name("vm-recovery".into()).spawn(move || recovery(&mailbox, &stop))?);
        }
        if mailbox.config().followup.is_some() {
            let (mailbox, stop) = (mailbox.clone(), stop.clone());
            threads.push(std::thread::Builder::new().name("vm-remind".into()).spawn(move || remind(&mailbox, &stop))?);
        }
        if let Some(imap) = mailbox.config().delivery.imap.clone().filter(|i| i.watch) {
            let (mailbox, stop) = (mailbox.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("vm-imap-watch".into())
                    .spawn(move || crate::imapsync::run(&mailbox, &imap, &stop))?,
            );
        }
        for target in mailbox.targets() {
            let (mailbox, stop) = (mailbox.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("vm-deliver-{target}"))
                    .spawn(move || deliver(&mailbox, &target, &stop))?,
            );
        }
        let counting = Some(mailbox.subscribe(telemetry::message_stored));
        Ok(Self { mailbox: mailbox.clone(), stop, threads, counting })
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
        if let Some(s) = self.counting.take() {
            self.mailbox.unsubscribe(s);
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if !self.threads.is_empty() || self.counting.is_some() {
            self.halt();
        }
    }
}

/// Recovery passes: a whole one ([`Mailbox::recover`]) at once and every [`POLL`]; when this
/// process stores a message in between, only its failed stores are retried. A whole pass looks
/// at every call in progress (a file lock each), so running it per stored message would cost
/// calls × messages during a burst of hang-ups.
fn recovery(mailbox: &Mailbox, stop: &AtomicBool) {
    mailbox.clean_spool();
    let mut cleaned = Instant::now();
    let mut scanned: Option<Instant> = None;
    let mut seen = 0;
    loop {
        let whole = scanned.is_none_or(|at| at.elapsed() >= POLL);
        let pass = if whole {
            scanned = Some(Instant::now());
            mailbox.recover(Timestamp::now())
        } else {
            mailbox.recover_pending(Timestamp::now())
        };
        if let Err(e) = pass {
            tracing::warn!(error = %e, "recovery pass failed; retrying");
        }
        // With a shared store, another node may delete a message this node recorded: its
        // recording here goes within a [`CLEAN_SHARED`] (the database's copy went at once).
        if mailbox.shares_store() && cleaned.elapsed() >= CLEAN_SHARED {
            mailbox.clean_spool();
            cleaned = Instant::now();
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let next_scan = scanned.map_or(Duration::ZERO, |at| POLL.saturating_sub(at.elapsed()));
        seen = mailbox.wait_for_work(seen, next_scan);
        if stop.load(Ordering::SeqCst) {
            // One last pass: a message stored while stopping is not left waiting.
            let _ = mailbox.recover(Timestamp::now());
            return;
        }
    }
}

/// Reminder passes: at once, then when the next reminder falls due, at least every
/// [`REMIND_POLL`] (a message may have been stored or changed by another process), and when
/// this process stores a message.
fn remind(mailbox: &Mailbox, stop: &AtomicBool) {
    let mut seen = 0;
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let wait = match mailbox.remind(Timestamp::now()) {
            Ok(report) => report.next_due.map_or(REMIND_POLL, |next| {
                let ms = next.as_millisecond().saturating_sub(Timestamp::now().as_millisecond()).max(0);
                Duration::from_millis(u64::try_from(ms).unwrap_or(0)).min(REMIND_POLL)
            }),
            Err(e) => {
                tracing::warn!(error = %e, "reminder pass failed; retrying");
                REMIND_POLL
            }
        };
        seen = mailbox.wait_for_work(seen, wait.max(Duration::from_millis(100)));
    }
}

fn deliver(mailbox: &Mailbox, target: &str, stop: &AtomicBool) {
    // Deliveries to `target` are handed to this worker as this process stores their messages.
    let _worker = mailbox.delivery_worker(target);
    let mut seen = 0;
    // Consecutive passes that ended in a transient failure: the target is probably down, so
    // it is left alone for the retry policy's delay (new messages wait too).
    let mut failures = 0u32;
    loop {
        let pass = mailbox.deliver_pass(target, Timestamp::now(), true, &|| !stop.load(Ordering::SeqCst));
        record(mailbox, target, &pass);
        match pass {
            Ok(report) if !report.failed.is_empty() => failures = failures.saturating_add(1),
            Ok(report) if report.attempted > 0 => failures = 0,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(target, error = %e, "delivery pass failed; retrying");
                failures = failures.saturating_add(1);
            }
        }
        if stop.load(Ordering::SeqCst) {
            final_pass(mailbox, target, failures);
            return;
        }
        let backoff_until = (failures > 0).then(|| Instant::now() + mailbox.retry_policy().delay(failures));
        loop {
            let wait = match backoff_until {
                Some(until) => until.saturating_duration_since(Instant::now()).min(POLL),
                None => until_due(mailbox, target),
            };
            seen = mailbox.wait_for_work(seen, wait.max(Duration::from_millis(10)));
            if stop.load(Ordering::SeqCst) || backoff_until.is_none_or(|u| Instant::now() >= u) {
                break;
            }
        }
    }
}

/// How long until the next delivery to `target` is due, at most [`POLL`].
fn until_due(mailbox: &Mailbox, target: &str) -> Duration {
    match mailbox.next_due(target) {
        Ok(Some(t)) => {
            let ms = t.as_millisecond().saturating_sub(Timestamp::now().as_millisecond()).max(0);
            Duration::from_millis(u64::try_from(ms).unwrap_or(0)).min(POLL)
        }
        _ => POLL,
    }
}

/// After a stop request: deliveries due now get [`FINAL_PASS`] more (none if the target is
/// failing), so a message stored just before the stop goes out.
fn final_pass(mailbox: &Mailbox, target: &str, failures: u32) {
    if failures > 0 {
        return;
    }
    let end = Instant::now() + FINAL_PASS;
    let pass = mailbox.deliver_pass(target, Timestamp::now(), true, &|| Instant::now() < end);
    record(mailbox, target, &pass);
    if let Err(e) = pass {
        tracing::warn!(target, error = %e, "last delivery pass failed");
    }
}

/// Records a delivery pass's outcomes and the queue's depth after it ([`telemetry`]).
fn record(mailbox: &Mailbox, target: &str, pass: &Result<RunReport, crate::mailbox::MailboxError>) {
    let name = &mailbox.config().mailbox;
    if let Ok(report) = pass {
        telemetry::delivery_pass(name, target, report);
    }
    match mailbox.store().queue_depth(target) {
        Ok(depth) => telemetry::queue_depth(name, target, depth),
        Err(e) => tracing::debug!(target, error = %e, "reading the delivery queue's depth"),
    }
}
