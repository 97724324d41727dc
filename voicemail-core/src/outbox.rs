//! The durable outbox: every (message, destination) pair is retried with backoff until the
//! destination acknowledged it, and the state of each pair is on disk.
//!
//! # On disk
//!
//! Under the spool directory (which holds the recording `<id>.wav` and its metadata
//! `<id>.json`), the outbox keeps:
//!
//! - `outbox/<id>.eml`: the complete e-mail, built once at [`Outbox::enqueue`]. Every retry
//!   sends these exact bytes, so the `Message-ID` the targets deduplicate on never changes.
//! - `outbox/<id>.json`: an [`OutboxRecord`]: per destination the attempts, the last error,
//!   the next attempt time, and once acknowledged the time and the target's reply.
//! - `outbox/delivered/<id>.json`: the record once every destination acknowledged; the
//!   `.eml` is then removed (the WAV and metadata stay in the spool).
//!
//! Every write goes to a temporary file that is `fsync`ed, renamed into place, and followed by
//! an `fsync` of the directory, so a crash leaves the old or the new state, never a torn one.
//! Order of writes at enqueue: the spool metadata (if missing), the `.eml`, then the record;
//! at delivery: the record is rewritten right after each acknowledgement, before the next
//! destination is tried. A crash between a target's acknowledgement and that rewrite makes the
//! pair due again after restart: the Maildir and IMAP targets find the message and acknowledge
//! without a second copy; SMTP sends it once more (at most one duplicate).
//!
//! Nothing is ever dropped: a failing pair stays, with its attempt count and last error
//! visible through [`Outbox::status`] and logged with `tracing::warn!`, and is retried after
//! [`RetryPolicy::delay`] (5 s doubling up to 10 min by default). Records that cannot be read
//! are reported, never removed.
//!
//! Time is always passed in (`now`); the outbox never reads the clock. One process should run
//! an outbox directory at a time (the caller's loop: `run_due(now)`, then sleep until
//! [`Outbox::next_due`]).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::deliver::{self, EmailContext, EmailError, OutgoingEmail, Target};
use crate::durable;
use crate::message::MessageMeta;

const OUTBOX_DIR: &str = "outbox";
const DELIVERED_DIR: &str = "delivered";
const MAX_ID_LEN: usize = 128;

/// Why an outbox operation failed. Delivery failures are not errors of the outbox: they are
/// recorded per pair and show in [`RunReport`] and [`Outbox::status`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// A file-system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The message id cannot name a file.
    #[error("invalid message id {0:?}: expected 1-128 letters, digits, '.', '_' or '-', not starting with '.'")]
    InvalidId(String),
    /// `enqueue` was called without a destination.
    #[error("message {0} has no destination")]
    NoDestinations(String),
    /// The e-mail could not be built.
    #[error("building the e-mail for {id}: {source}")]
    Email {
        /// The message id.
        id: String,
        /// What went wrong.
        source: EmailError,
    },
    /// A record or the metadata could not be (de)serialised.
    #[error("{path}: {source}")]
    Json {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
}

/// Where one message goes: a target key (see [`Target::key`]) and, for SMTP, recipients
/// besides the target's own (a matched client's manager).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// The target's key: `"maildir"`, `"smtp"`, `"imap"`.
    pub target: String,
    /// Extra envelope recipients for this message (SMTP only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_to: Vec<String>,
}

impl Destination {
    /// A destination for the target with this key and no extra recipients.
    pub fn new(target: impl Into<String>) -> Self {
        Self { target: target.into(), extra_to: Vec::new() }
    }

    /// The Maildir target.
    pub fn maildir() -> Self {
        Self::new("maildir")
    }

    /// The SMTP target, with extra recipients for this message.
    pub fn smtp(extra_to: Vec<String>) -> Self {
        Self { target: "smtp".to_owned(), extra_to }
    }

    /// The IMAP target.
    pub fn imap() -> Self {
        Self::new("imap")
    }
}

/// How long to wait before retrying a failed pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay after the first failure.
    pub initial: Duration,
    /// The delay never grows beyond this.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { initial: Duration::from_secs(5), max: Duration::from_secs(600) }
    }
}

impl RetryPolicy {
    /// The delay after `failures` consecutive failures (1 → `initial`, doubling, capped at
    /// `max`).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(32);
        self.initial.saturating_mul(1u32 << doublings.min(31)).min(self.max)
    }
}

/// The state of one (message, destination) pair on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairRecord {
    /// Where the message goes.
    pub destination: Destination,
    /// Failed attempts so far (reset never: it counts the pair's whole history).
    pub attempts: u32,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// When the last attempt was made.
    pub last_attempt: Option<Timestamp>,
    /// When the pair is due next (ignored once delivered).
    pub next_attempt: Timestamp,
    /// When the destination acknowledged the message.
    pub delivered_at: Option<Timestamp>,
    /// The destination's acknowledgement.
    pub ack: Option<String>,
}

/// Everything the outbox knows about one message (`outbox/<id>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxRecord {
    /// The message id.
    pub id: String,
    /// The e-mail's `Message-ID` (without angle brackets).
    pub message_id: String,
    /// When the message was enqueued.
    pub enqueued_at: Timestamp,
    /// One entry per destination.
    pub pairs: Vec<PairRecord>,
}

/// Where a pair stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryState {
    /// Not tried yet.
    Pending,
    /// Tried and failed at least once; will be retried at `next_attempt`.
    Failing,
    /// Acknowledged by the destination.
    Delivered,
}

/// One (message, destination) pair as [`Outbox::status`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryStatus {
    /// The message id.
    pub id: String,
    /// The destination's target key.
    pub target: String,
    /// Where the pair stands.
    pub state: DeliveryState,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// The next attempt (`None` once delivered).
    pub next_attempt: Option<Timestamp>,
    /// When the destination acknowledged it.
    pub delivered_at: Option<Timestamp>,
}

/// A failed attempt in a [`RunReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The message id.
    pub id: String,
    /// The destination's target key (empty when the record itself could not be read).
    pub target: String,
    /// What went wrong.
    pub error: String,
    /// Failed attempts so far, this one included.
    pub attempts: u32,
    /// When the pair is retried.
    pub next_attempt: Option<Timestamp>,
}

/// What one [`Outbox::run_due`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Pairs attempted.
    pub attempted: usize,
    /// Pairs acknowledged in this run: (message id, target key).
    pub delivered: Vec<(String, String)>,
    /// Pairs that failed in this run.
    pub failed: Vec<Failure>,
    /// The earliest time a still-undelivered pair is due.
    pub next_due: Option<Timestamp>,
}

/// The durable outbox of one spool directory. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Outbox {
    spool: PathBuf,
    dir: PathBuf,
    policy: RetryPolicy,
}

impl Outbox {
    /// Opens (creating `outbox/` and `outbox/delivered/` if needed) the outbox of an existing
    /// spool directory.
    pub fn open(spool: impl Into<PathBuf>) -> Result<Self, OutboxError> {
        let spool = spool.into();
        if !spool.is_dir() {
            return Err(io_error("opening spool", &spool, std::io::ErrorKind::NotFound.into()));
        }
        let dir = spool.join(OUTBOX_DIR);
        for d in [dir.clone(), dir.join(DELIVERED_DIR)] {
            if !d.is_dir() {
                fs::create_dir_all(&d).map_err(|e| io_error("creating", &d, e))?;
                if let Some(parent) = d.parent() {
                    sync_dir(parent)?;
                }
            }
        }
        Ok(Self { spool, dir, policy: RetryPolicy::default() })
    }

    /// Replaces the retry policy.
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The spool directory.
    pub fn spool(&self) -> &Path {
        &self.spool
    }

    /// Builds the e-mail for `meta` and queues it for every destination, all due at `now`.
    ///
    /// The attachment is the WAV at `meta.wav_path`, else `<spool>/<id>.wav`, else an empty
    /// WAV (a message is delivered even if nothing was recorded). `<spool>/<id>.json` is
    /// written first if it is missing. Enqueueing a message that is already queued or
    /// delivered changes nothing and returns `Ok(false)`.
    pub fn enqueue(
        &self,
        meta: &MessageMeta,
        ctx: &EmailContext,
        destinations: &[Destination],
        now: Timestamp,
    ) -> Result<bool, OutboxError> {
        validate_id(&meta.id)?;
        if self.is_known(&meta.id) {
            return Ok(false);
        }
        let meta_path = self.spool.join(format!("{}.json", meta.id));
        if !meta_path.exists() {
            let json = serde_json::to_vec_pretty(meta)
                .map_err(|source| OutboxError::Json { path: meta_path.clone(), source })?;
            write_atomic(&meta_path, &json)?;
        }
        let wav_path = match &meta.wav_path {
            Some(p) => Some(p.clone()),
            None => Some(self.spool.join(format!("{}.wav", meta.id))).filter(|p| p.is_file()),
        };
        let wav = match wav_path {
            Some(p) => fs::read(&p).map_err(|e| io_error("reading recording", &p, e))?,
            None => deliver::empty_wav(),
        };
        let email = deliver::build_email(meta, &wav, ctx)
            .map_err(|source| OutboxError::Email { id: meta.id.clone(), source })?;
        self.enqueue_email(&email, destinations, now)
    }

    /// Queues an already built e-mail (keyed by [`OutgoingEmail::voicemail_id`]). See
    /// [`Outbox::enqueue`].
    pub fn enqueue_email(
        &self,
        email: &OutgoingEmail,
        destinations: &[Destination],
        now: Timestamp,
    ) -> Result<bool, OutboxError> {
        let id = &email.voicemail_id;
        validate_id(id)?;
        if self.is_known(id) {
            return Ok(false);
        }
        let mut pairs: Vec<PairRecord> = Vec::new();
        for d in destinations {
            if let Some(existing) = pairs.iter_mut().find(|p| p.destination.target == d.target) {
                for r in &d.extra_to {
                    if !existing.destination.extra_to.contains(r) {
                        existing.destination.extra_to.push(r.clone());
                    }
                }
            } else {
                pairs.push(PairRecord {
                    destination: d.clone(),
                    attempts: 0,
                    last_error: None,
                    last_attempt: None,
                    next_attempt: now,
                    delivered_at: None,
                    ack: None,
                });
            }
        }
        if pairs.is_empty() {
            return Err(OutboxError::NoDestinations(id.clone()));
        }
        write_atomic(&self.eml_path(id), &email.bytes)?;
        let record = OutboxRecord { id: id.clone(), message_id: email.message_id.clone(), enqueued_at: now, pairs };
        self.save(&record)?;
        tracing::info!(id = %id, destinations = record.pairs.len(), "message queued for delivery");
        Ok(true)
    }

    /// Attempts every pair that is due at `now` with the target of its key, records each
    /// outcome on disk as it happens, and moves fully delivered messages to `delivered/`.
    pub fn run_due(&self, now: Timestamp, targets: &[&dyn Target]) -> RunReport {
        let mut report = RunReport::default();
        let ids = match self.active_ids() {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the outbox");
                report.failed.push(Failure {
                    id: String::new(),
                    target: String::new(),
                    error: e.to_string(),
                    attempts: 0,
                    next_attempt: None,
                });
                return report;
            }
        };
        for id in ids {
            if let Err(e) = self.run_message(&id, now, targets, &mut report) {
                tracing::warn!(id = %id, error = %e, "outbox record not processed");
                report.failed.push(Failure {
                    id: id.clone(),
                    target: String::new(),
                    error: e.to_string(),
                    attempts: 0,
                    next_attempt: None,
                });
            }
        }
        report
    }

    fn run_message(
        &self,
        id: &str,
        now: Timestamp,
        targets: &[&dyn Target],
        report: &mut RunReport,
    ) -> Result<(), OutboxError> {
        let mut record = self.load(&self.record_path(id))?;
        let mut bytes: Option<Result<Vec<u8>, String>> = None;
        for i in 0..record.pairs.len() {
            let pair = &record.pairs[i];
            if pair.delivered_at.is_some() {
                continue;
            }
            if pair.next_attempt > now {
                report.next_due = min_ts(report.next_due, pair.next_attempt);
                continue;
            }
            report.attempted += 1;
            let key = pair.destination.target.clone();
            let outcome = match targets.iter().find(|t| t.key() == key) {
                None => Err(format!("no target configured for {key:?}")),
                Some(target) => {
                    let path = self.eml_path(id);
                    let loaded = bytes.get_or_insert_with(|| {
                        fs::read(&path).map_err(|e| io_error("reading e-mail", &path, e).to_string())
                    });
                    match loaded {
                        Err(e) => Err(e.clone()),
                        Ok(b) => {
                            let email = OutgoingEmail {
                                voicemail_id: record.id.clone(),
                                message_id: record.message_id.clone(),
                                bytes: b.clone(),
                                extra_recipients: pair.destination.extra_to.clone(),
                            };
                            target.deliver(&email).map_err(|e| e.to_string())
                        }
                    }
                }
            };
            let pair = &mut record.pairs[i];
            pair.last_attempt = Some(now);
            match outcome {
                Ok(ack) => {
                    tracing::info!(id = %id, target = %key, ack = %ack.detail, "delivered");
                    pair.delivered_at = Some(now);
                    pair.ack = Some(ack.detail);
                    report.delivered.push((id.to_owned(), key));
                }
                Err(error) => {
                    pair.attempts = pair.attempts.saturating_add(1);
                    let delay = SignedDuration::try_from(self.policy.delay(pair.attempts))
                        .unwrap_or(SignedDuration::from_secs(600));
                    pair.next_attempt = now.checked_add(delay).unwrap_or(now);
                    pair.last_error = Some(error.clone());
                    tracing::warn!(
                        id = %id, target = %key, attempts = pair.attempts,
                        next_attempt = %pair.next_attempt, error = %error,
                        "delivery failed; will retry"
                    );
                    report.next_due = min_ts(report.next_due, pair.next_attempt);
                    report.failed.push(Failure {
                        id: id.to_owned(),
                        target: key,
                        error,
                        attempts: pair.attempts,
                        next_attempt: Some(pair.next_attempt),
                    });
                }
            }
            // Record the outcome before trying the next destination.
            self.save(&record)?;
        }
        if record.pairs.iter().all(|p| p.delivered_at.is_some()) {
            self.finish(&record)?;
        }
        Ok(())
    }

    /// Moves a fully delivered record to `delivered/` and removes its `.eml`.
    fn finish(&self, record: &OutboxRecord) -> Result<(), OutboxError> {
        let from = self.record_path(&record.id);
        let to = self.dir.join(DELIVERED_DIR).join(format!("{}.json", record.id));
        fs::rename(&from, &to).map_err(|e| io_error("moving", &from, e))?;
        sync_dir(&self.dir.join(DELIVERED_DIR))?;
        sync_dir(&self.dir)?;
        let eml = self.eml_path(&record.id);
        match fs::remove_file(&eml) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("removing", &eml, e)),
        }
    }

    /// Every pair of every queued and delivered message, sorted by message id. A record that
    /// cannot be read shows as one failing entry with an empty target and the read error.
    pub fn status(&self) -> Result<Vec<DeliveryStatus>, OutboxError> {
        let mut paths: Vec<(String, PathBuf)> =
            self.active_ids()?.into_iter().map(|id| (id.clone(), self.record_path(&id))).collect();
        for id in list_ids(&self.dir.join(DELIVERED_DIR))? {
            let path = self.dir.join(DELIVERED_DIR).join(format!("{id}.json"));
            paths.push((id, path));
        }
        paths.sort();
        let mut out = Vec::new();
        for (id, path) in paths {
            let r = match self.load(&path) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(id = %id, error = %e, "unreadable outbox record");
                    out.push(DeliveryStatus {
                        id,
                        target: String::new(),
                        state: DeliveryState::Failing,
                        attempts: 0,
                        last_error: Some(e.to_string()),
                        next_attempt: None,
                        delivered_at: None,
                    });
                    continue;
                }
            };
            for p in &r.pairs {
                let state = match (p.delivered_at, p.attempts) {
                    (Some(_), _) => DeliveryState::Delivered,
                    (None, 0) => DeliveryState::Pending,
                    (None, _) => DeliveryState::Failing,
                };
                out.push(DeliveryStatus {
                    id: r.id.clone(),
                    target: p.destination.target.clone(),
                    state,
                    attempts: p.attempts,
                    last_error: p.last_error.clone(),
                    next_attempt: p.delivered_at.is_none().then_some(p.next_attempt),
                    delivered_at: p.delivered_at,
                });
            }
        }
        Ok(out)
    }

    /// The record of a queued or delivered message.
    pub fn record(&self, id: &str) -> Result<Option<OutboxRecord>, OutboxError> {
        validate_id(id)?;
        for path in [self.record_path(id), self.dir.join(DELIVERED_DIR).join(format!("{id}.json"))] {
            if path.is_file() {
                return self.load(&path).map(Some);
            }
        }
        Ok(None)
    }

    /// The earliest time an undelivered pair is due, or `None` when nothing is waiting.
    pub fn next_due(&self) -> Result<Option<Timestamp>, OutboxError> {
        let mut next = None;
        for id in self.active_ids()? {
            // Unreadable records are reported by `status` and `run_due`; they are never due.
            let Ok(record) = self.load(&self.record_path(&id)) else { continue };
            for p in record.pairs.iter().filter(|p| p.delivered_at.is_none()) {
                next = min_ts(next, p.next_attempt);
            }
        }
        Ok(next)
    }

    /// Ids of messages in the spool (`<id>.json` or `<id>.wav`) that the outbox has never
    /// seen: after a crash between recording and enqueueing, the caller routes and enqueues
    /// them so nothing is lost.
    pub fn unqueued(&self) -> Result<Vec<String>, OutboxError> {
        let entries = fs::read_dir(&self.spool).map_err(|e| io_error("reading", &self.spool, e))?;
        let mut ids = BTreeSet::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error("reading", &self.spool, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".state.json") {
                continue;
            }
            let stem = name.strip_suffix(".json").or_else(|| name.strip_suffix(".wav"));
            if let Some(stem) = stem
                && validate_id(stem).is_ok()
                && !self.is_known(stem)
            {
                ids.insert(stem.to_owned());
            }
        }
        Ok(ids.into_iter().collect())
    }

    fn is_known(&self, id: &str) -> bool {
        self.record_path(id).exists() || self.dir.join(DELIVERED_DIR).join(format!("{id}.json")).exists()
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn eml_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.eml"))
    }

    fn active_ids(&self) -> Result<Vec<String>, OutboxError> {
        list_ids(&self.dir)
    }

    fn load(&self, path: &Path) -> Result<OutboxRecord, OutboxError> {
        let bytes = fs::read(path).map_err(|e| io_error("reading", path, e))?;
        serde_json::from_slice(&bytes).map_err(|source| OutboxError::Json { path: path.to_owned(), source })
    }

    fn save(&self, record: &OutboxRecord) -> Result<(), OutboxError> {
        let path = self.record_path(&record.id);
        let json =
            serde_json::to_vec_pretty(record).map_err(|source| OutboxError::Json { path: path.clone(), source })?;
        write_atomic(&path, &json)
    }
}

/// Checks that a message id can name a file in the spool: 1-128 ASCII letters, digits, `.`,
/// `_`, `-`, not starting with `.`.
pub fn validate_id(id: &str) -> Result<(), OutboxError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && !id.starts_with('.')
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok { Ok(()) } else { Err(OutboxError::InvalidId(id.to_owned())) }
}

fn min_ts(a: Option<Timestamp>, b: Timestamp) -> Option<Timestamp> {
    Some(a.map_or(b, |a| a.min(b)))
}

fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> OutboxError {
    OutboxError::Io { action, path: path.to_owned(), source }
}

/// `<id>` of every `<id>.json` directly in `dir`, sorted.
fn list_ids(dir: &Path) -> Result<Vec<String>, OutboxError> {
    let entries = fs::read_dir(dir).map_err(|e| io_error("reading", dir, e))?;
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error("reading", dir, e))?;
        let name = entry.file_name();
        if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json"))
            && validate_id(id).is_ok()
        {
            ids.push(id.to_owned());
        }
    }
    ids.sort();
    Ok(ids)
}

fn sync_dir(dir: &Path) -> Result<(), OutboxError> {
    durable::sync_dir(dir).map_err(|e| io_error("syncing", dir, e))
}

/// Writes `bytes` to `path` atomically (see [`durable::write_atomic`]).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OutboxError> {
    durable::write_atomic(path, bytes).map_err(|e| io_error("writing", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1), Duration::from_secs(5));
        assert_eq!(p.delay(2), Duration::from_secs(10));
        assert_eq!(p.delay(4), Duration::from_secs(40));
        assert_eq!(p.delay(8), Duration::from_secs(600));
        assert_eq!(p.delay(1000), Duration::from_secs(600));
    }

    #[test]
    fn ids() {
        assert!(validate_id("20261127T143205Z-abc_1.x").is_ok());
        for bad in ["", ".hidden", "../x", "a/b", "a b", "a\nb"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }
}
