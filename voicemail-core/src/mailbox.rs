//! The [`Mailbox`]: the one owner of a message's life.
//!
//! ```text
//!  front-end (SIP endpoint, offline_call, Python)      inbox, web, Python
//!      │ start_call ──► Call + CallLease                   │ list / show / assign /
//!      │   (id, greeting by calendar, WAV in the spool,    │ called_back / delete /
//!      │    provisional record in the store)               │ status / retry
//!      │ finish_call(lease, meta) ──► stored + queued ──► listeners (JSON line, on_message)
//!      ▼                                    │
//!  recover(): calls whose process died      ▼
//!  (lock on the WAV free) → `interrupted`   deliver_due(target): claim, deliver, record
//!                                           remind(now): reminders due → outbox (smtp)
//! ```
//!
//! A message from a caller found in the client directory is assigned to the client's manager
//! (by e-mail address) in the transaction that stores it; its history says `directory`
//! assigned it. Others stay New. [`Mailbox::remind`] (module [`crate::remind`]) queues the
//! reminders of messages not called back in time.
//!
//! Every front-end goes through the mailbox and nothing else: it never names a spool file,
//! never builds a [`CallConfig`] from the configuration itself and never runs recovery on its
//! own. Several processes may open one mailbox at once; see [`crate::store`] for how they
//! stay consistent, and [`crate::store`]'s spool module docs for who owns a live recording.
//!
//! A delivery worker of this process (the [`Runner`](crate::runner::Runner)'s, per target)
//! gets the deliveries of the messages this process stores handed to it: the commit that
//! stores a message leases them to the process ([`HandOff`]), so the worker attempts them
//! without a claim of its own, one synced commit fewer per message. A process that dies
//! leaves them to any other once the lease (10 minutes) ends; the next attempt then looks for
//! the copy the dead one may have stored, as after any lease.
//!
//! Time comes in as arguments (`now`), so the mailbox can be driven by a simulated clock; the
//! background [`Runner`](crate::runner::Runner) reads the real one.

use std::hash::{BuildHasher, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

use crate::call::{Call, CallConfig};
use crate::codec::{Codec, CodecKind};
use crate::config::Config;
use crate::deliver::{self, DeliveryError, OutgoingEmail, SmtpTarget, Target};
use crate::followup::{Change, Event, FollowUp, HistoryEntry, ReminderStep};
use crate::greeting::Prompt;
use crate::message::{EndReason, InvalidMessageId, MessageId, MessageMeta};
use crate::recording::{Recording, RecordingSpec};
use crate::route;
use crate::store::spool::{Claim as WavClaim, LockedWav, Spool};
use crate::store::{
    Attempt, Claim, Delivery, HandOff, NewDelivery, Outcome, SqliteStore, Store, StoreError, StoredMessage,
};
use crate::transcribe::{self, TranscriptionError, Transcripts, Turn};

/// How long a claimed delivery stays ours: longer than any attempt can take.
const DELIVERY_LEASE: SignedDuration = SignedDuration::from_mins(15);
/// Deliveries claimed at once by one worker (their outcomes are recorded in one commit).
const CLAIM_BATCH: usize = 16;
/// A batch that has run this long releases its untried claims: the lease stays far off.
const BATCH_TIME: Duration = Duration::from_secs(120);
/// The most deliveries of one batch attempted at once ([`Target::concurrency`]).
const MAX_CONCURRENCY: usize = 64;
/// How long the deliveries handed to this process's own delivery workers stay leased to it
/// ([`HandOff`]): a process that dies leaves them to the others this long.
const HANDOFF_LEASE: SignedDuration = SignedDuration::from_mins(10);
/// A handed delivery is attempted only this soon after it was handed. When its worker is
/// further behind, it is given back and claimed like any other, with a whole
/// [`DELIVERY_LEASE`].
const HANDOFF_FRESH: SignedDuration = SignedDuration::from_mins(1);
/// The most handed deliveries waiting per target; beyond, messages are queued unleased.
const HANDOFF_QUEUE: usize = 4096;

/// Why a mailbox operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailboxError {
    /// The spool directory cannot be used.
    #[error("spool {path}: {source}")]
    Spool {
        /// The directory or file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The spool's file system is (nearly) full: new calls are refused until space is freed.
    #[error("the spool {path} has {free} bytes free, less than the {min_free} it keeps free: new calls are refused")]
    SpoolFull {
        /// The spool directory.
        path: PathBuf,
        /// Bytes free.
        free: u64,
        /// Bytes the configuration keeps free (`[store] min_free`).
        min_free: u64,
    },
    /// The store failed or refused the change.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An id that is not a message id.
    #[error(transparent)]
    InvalidId(#[from] InvalidMessageId),
    /// The call could not be set up (invalid codec parameters, ...).
    #[error("cannot start the call: {0}")]
    Call(#[from] crate::Error),
    /// A message's recording belongs to another call.
    #[error("the lease of message {lease} cannot store message {meta}")]
    WrongLease {
        /// The lease's message.
        lease: MessageId,
        /// The metadata's message.
        meta: MessageId,
    },
}

impl MailboxError {
    /// Whether the failure is a full disk: new calls get 503 with Retry-After, and what
    /// failed is retried once space is freed.
    pub fn is_full(&self) -> bool {
        match self {
            MailboxError::SpoolFull { .. } => true,
            MailboxError::Store(e) => e.is_full(),
            MailboxError::Spool { source, .. } => source.kind() == io::ErrorKind::StorageFull,
            MailboxError::Call(crate::Error::Recording(crate::recording::RecordingError::Io(e))) => {
                e.kind() == io::ErrorKind::StorageFull
            }
            _ => false,
        }
    }

    /// The message was not found (or was deleted).
    pub fn is_not_found(&self) -> bool {
        matches!(self, MailboxError::Store(StoreError::NotFound(_)))
    }
}

/// What a front-end knows about a new call; the mailbox adds the rest (id, greeting, limits).
#[derive(Debug, Clone)]
pub struct CallSetup {
    /// The caller's number as signalled.
    pub caller: String,
    /// The caller's display name.
    pub caller_name: Option<String>,
    /// The called number; empty means the mailbox's own number.
    pub called: String,
    /// Wall-clock time of the call: the calendar picks the greeting for it.
    pub started_at: Timestamp,
    /// The negotiated audio codec.
    pub codec: CodecKind,
    /// Its payload type.
    pub payload_type: u8,
    /// The telephone-event payload type (RFC 4733), if negotiated.
    pub dtmf_payload_type: Option<u8>,
    /// Packetization time of the greeting and beep.
    pub ptime: Duration,
    /// Seed of the outgoing RTP stream; `None` picks a random one.
    pub rtp_seed: Option<u64>,
    /// A greeting to play instead of the calendar's: a name of `[greetings]`.
    pub greeting: Option<String>,
    /// Who records the call, for the message's history (`answering-machine`, `python`, ...).
    pub recorded_by: String,
    /// The number that forwarded the call here (History-Info or Diversion), if it was
    /// diverted: kept in the message's [`MessageMeta::diverted_from`].
    pub diverted_from: Option<String>,
}

impl CallSetup {
    /// A call from `caller` at `started_at`: PCMU, telephone-event 101, 20 ms.
    pub fn new(caller: impl Into<String>, started_at: Timestamp) -> Self {
        Self {
            caller: caller.into(),
            caller_name: None,
            called: String::new(),
            started_at,
            codec: CodecKind::Pcmu,
            payload_type: 0,
            dtmf_payload_type: Some(101),
            ptime: Duration::from_millis(20),
            rtp_seed: None,
            greeting: None,
            recorded_by: "answering-machine".to_owned(),
            diverted_from: None,
        }
    }

    /// Sets the codec and its static payload type (96 for L16 and Opus).
    pub fn with_codec(mut self, codec: CodecKind) -> Self {
        self.codec = codec;
        self.payload_type = codec.static_payload_type().unwrap_or(96);
        self
    }
}

/// A call started by [`Mailbox::start_call`]: drive `call`, then give `lease` and the
/// [`MessageRecorded`](crate::Event::MessageRecorded) metadata to [`Mailbox::finish_call`].
#[derive(Debug)]
pub struct StartedCall {
    /// The engine's call, recording into the spool.
    pub call: Call,
    /// This process's hold on the recording until the message is stored.
    pub lease: CallLease,
}

/// This process's hold on a call's recording: while it (or the call) lives, no other process
/// recovers the call. Dropped without [`Mailbox::finish_call`] (a crash, a bug), the call is
/// recovered as `interrupted` by the next recovery pass.
#[derive(Debug)]
pub struct CallLease {
    id: MessageId,
    wav: LockedWav,
    recorded_by: String,
    diverted_from: Option<String>,
}

impl CallLease {
    /// The message id.
    pub fn id(&self) -> &MessageId {
        &self.id
    }

    /// The recording's file.
    pub fn wav_path(&self) -> &Path {
        self.wav.path()
    }
}

/// A recording as a file ([`Mailbox::audio_file`]); a temporary copy is removed on drop.
struct AudioFile {
    path: PathBuf,
    temporary: bool,
}

impl AudioFile {
    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for AudioFile {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What one [`Mailbox::deliver_due`] pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Deliveries attempted.
    pub attempted: usize,
    /// Acknowledged: (message, target).
    pub delivered: Vec<(MessageId, String)>,
    /// Failed, to be retried: (message, target, error).
    pub failed: Vec<(MessageId, String, String)>,
    /// Refused for good: (message, target, the server's words).
    pub rejected: Vec<(MessageId, String, String)>,
}

impl RunReport {
    fn absorb(&mut self, other: RunReport) {
        self.attempted += other.attempted;
        self.delivered.extend(other.delivered);
        self.failed.extend(other.failed);
        self.rejected.extend(other.rejected);
    }
}

type Listener = Box<dyn Fn(&MessageMeta) + Send + Sync>;

/// Names a listener registered with [`Mailbox::subscribe`], for [`Mailbox::unsubscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subscription(u64);

/// A finished call whose storing failed (a full disk): retried by [`Mailbox::recover`].
struct Pending {
    lease: CallLease,
    meta: MessageMeta,
}

/// Deliveries leased to this process as their messages were stored, for its own delivery
/// workers: a worker takes them without a claim of its own (a synced commit per message).
#[derive(Default)]
struct HandOffs {
    /// The targets with a delivery worker in this process, and how many.
    workers: std::collections::HashMap<String, usize>,
    /// Per target, the handed deliveries with the end of their lease, oldest first.
    queued: std::collections::HashMap<String, std::collections::VecDeque<(Claim, Timestamp)>>,
}

/// A delivery worker's registration ([`Mailbox::delivery_worker`]); dropping it ends it.
pub(crate) struct DeliveryWorker {
    mailbox: Mailbox,
    target: String,
}

impl Drop for DeliveryWorker {
    fn drop(&mut self) {
        self.mailbox.worker_stopped(&self.target);
    }
}

struct Inner {
    config: Config,
    spool: Spool,
    store: Box<dyn Store>,
    targets: Vec<Arc<dyn Target + Send + Sync>>,
    /// The SMTP target with no recipients of its own: reminders go to theirs only.
    reminders: Option<SmtpTarget>,
    retry: RetryPolicy,
    owner: String,
    keys: std::collections::hash_map::RandomState,
    counter: AtomicU64,
    pending: Mutex<Vec<Pending>>,
    hand_offs: Mutex<HandOffs>,
    /// One transcription per message (`[transcription]`), shared by the delivery workers.
    transcripts: Transcripts,
    listeners: Mutex<Vec<(Subscription, Listener)>>,
    /// Bumped (and waited on) when a message is stored: wakes delivery workers.
    stored: (Mutex<u64>, Condvar),
    /// Bumped by every follow-up change made through this mailbox: the IMAP watcher looks.
    changes: AtomicU64,
}

/// One mailbox: its configuration, spool and store. Cheap to clone; safe to share between
/// threads. See the [module docs](self).
#[derive(Clone)]
pub struct Mailbox {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("mailbox", &self.inner.config.mailbox)
            .field("spool", &self.inner.spool.dir())
            .finish_non_exhaustive()
    }
}

/// How long to wait before retrying a failed delivery.
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
    /// The delay after `failures` failures (1 → `initial`, doubling, capped at `max`).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.initial.saturating_mul(1u32 << doublings).min(self.max)
    }
}

/// The store of `config`: PostgreSQL when `[store] url` names one, else SQLite in the spool.
fn open_store(config: &Config, spool: &Spool) -> Result<Box<dyn Store>, MailboxError> {
    match &config.store.url {
        None => Ok(Box::new(SqliteStore::open(&spool.db_path())?)),
        #[cfg(feature = "postgres")]
        Some(url) => Ok(Box::new(crate::store::PostgresStore::open_with_ca_file(
            url,
            &config.store.node,
            config.store.ca_file.as_deref(),
        )?)),
        #[cfg(not(feature = "postgres"))]
        Some(url) => Err(StoreError::Database {
            action: "opening the database",
            message: format!(
                "{}: this program was built without PostgreSQL support (cargo feature `postgres`)",
                crate::store::redact_url(url)
            ),
            full: false,
        }
        .into()),
    }
}

fn spool_error(path: &Path) -> impl Fn(io::Error) -> MailboxError + '_ {
    move |source| MailboxError::Spool { path: path.to_path_buf(), source }
}

impl Mailbox {
    /// Opens the mailbox of `config`: creates the spool if needed, opens (or creates) its
    /// store and imports the JSON files of an older spool.
    ///
    /// Greetings are used as the configuration has them loaded ([`Config::load`] loads them);
    /// a greeting that is not loaded plays the bundled default instead.
    ///
    /// The store is the spool's embedded SQLite database, or the PostgreSQL database of
    /// `[store] url` shared by several nodes (this one named by `[store] node`); a program
    /// built without the cargo feature `postgres` refuses such a configuration.
    pub fn open(config: Config) -> Result<Self, MailboxError> {
        let spool = Spool::open(&config.spool).map_err(spool_error(&config.spool))?;
        let store = open_store(&config, &spool)?;
        let mut targets: Vec<Arc<dyn Target + Send + Sync>> = Vec::new();
        if let Some(m) = &config.delivery.maildir {
            targets.push(Arc::new(m.clone()));
        }
        if let Some(s) = &config.delivery.smtp {
            targets.push(Arc::new(s.clone()));
        }
        if let Some(i) = &config.delivery.imap {
            targets.push(Arc::new(i.clone()));
        }
        let reminders = config.delivery.smtp.as_ref().map(|s| SmtpTarget { to: Vec::new(), ..s.clone() });
        let keys = std::collections::hash_map::RandomState::new();
        let mut h = keys.build_hasher();
        h.write_u128(Timestamp::now().as_nanosecond() as u128);
        let owner = format!("{}/pid{}-{:08x}", config.store.node, std::process::id(), h.finish() as u32);
        let mailbox = Mailbox {
            inner: Arc::new(Inner {
                config,
                spool,
                store,
                targets,
                reminders,
                retry: RetryPolicy::default(),
                owner,
                keys,
                counter: AtomicU64::new(0),
                pending: Mutex::new(Vec::new()),
                hand_offs: Mutex::new(HandOffs::default()),
                transcripts: Transcripts::default(),
                listeners: Mutex::new(Vec::new()),
                stored: (Mutex::new(0), Condvar::new()),
                changes: AtomicU64::new(0),
            }),
        };
        crate::store::legacy::import(&mailbox.inner.spool, mailbox.store())?;
        Ok(mailbox)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The spool directory.
    pub fn spool_dir(&self) -> &Path {
        self.inner.spool.dir()
    }

    /// The keys of the configured delivery targets (`maildir`, `smtp`, `imap`).
    pub fn targets(&self) -> Vec<String> {
        self.inner.targets.iter().map(|t| t.key()).collect()
    }

    /// Whether the store is shared by several nodes (`[store] url`): it keeps the recordings.
    pub fn shares_store(&self) -> bool {
        self.store().keeps_audio()
    }

    pub(crate) fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    /// 64 random bits (SipHash with this process's random keys over a counter and the time).
    fn random(&self) -> u64 {
        let mut h = self.inner.keys.build_hasher();
        h.write_u64(self.inner.counter.fetch_add(1, Ordering::Relaxed));
        h.write_u128(Timestamp::now().as_nanosecond() as u128);
        h.finish()
    }

    /// Calls `listener` with every message as soon as it is durably stored (finished calls,
    /// recovered ones), before any delivery is attempted. Listeners run on the thread that
    /// stored the message and must return quickly.
    pub fn subscribe(&self, listener: impl Fn(&MessageMeta) + Send + Sync + 'static) -> Subscription {
        let id = Subscription(self.inner.counter.fetch_add(1, Ordering::Relaxed));
        self.inner.listeners.lock().unwrap_or_else(|e| e.into_inner()).push((id, Box::new(listener)));
        id
    }

    /// Removes a listener; it is not called again once this returns.
    pub fn unsubscribe(&self, subscription: Subscription) {
        self.inner.listeners.lock().unwrap_or_else(|e| e.into_inner()).retain(|(id, _)| *id != subscription);
    }

    fn stored(&self, meta: &MessageMeta) {
        for (_, l) in self.inner.listeners.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            l(meta);
        }
        self.wake();
    }

    /// Asks the background [`Runner`](crate::runner::Runner) to look for work now: deliveries
    /// that are due and finished calls whose storing failed. The mailbox wakes it itself
    /// whenever it stores a message. Calls whose recording process died (for example a call's
    /// task that failed without storing its message) are looked for at least every
    /// [`POLL`](crate::runner::POLL), not at each wake-up: that pass takes a file lock per call
    /// in progress.
    pub fn wake(&self) {
        let (lock, cv) = &self.inner.stored;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        cv.notify_all();
    }

    /// Registers a delivery worker for `target` in this process ([`crate::runner`]) until the
    /// returned value is dropped. Meanwhile, deliveries to `target` are leased to this process
    /// in the commit that stores their message, and [`Mailbox::deliver_pass`] takes them
    /// without a claim. When the last worker of a target ends, the deliveries handed to it
    /// and not taken are given back.
    pub(crate) fn delivery_worker(&self, target: &str) -> DeliveryWorker {
        *self.hand_offs().workers.entry(target.to_owned()).or_default() += 1;
        DeliveryWorker { mailbox: self.clone(), target: target.to_owned() }
    }

    fn hand_offs(&self) -> std::sync::MutexGuard<'_, HandOffs> {
        self.inner.hand_offs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn worker_stopped(&self, target: &str) {
        let left: Vec<Claim> = {
            let mut h = self.hand_offs();
            match h.workers.get_mut(target) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    Vec::new()
                }
                Some(_) => {
                    h.workers.remove(target);
                    h.queued.remove(target).unwrap_or_default().into_iter().map(|(c, _)| c).collect()
                }
                None => Vec::new(),
            }
        };
        self.give_back(&left);
    }

    /// The targets of `deliveries` to hand to this process's workers: those with a worker
    /// and room in its queue.
    fn handing(&self, deliveries: &[NewDelivery]) -> Vec<String> {
        let h = self.hand_offs();
        deliveries
            .iter()
            .filter(|d| {
                h.workers.contains_key(&d.target) && h.queued.get(&d.target).is_none_or(|q| q.len() < HANDOFF_QUEUE)
            })
            .map(|d| d.target.clone())
            .collect()
    }

    /// Queues the deliveries of a message just stored with a [`HandOff`] to `targets` for
    /// this process's workers (given back if the worker ended meanwhile).
    fn hand(
        &self,
        meta: &MessageMeta,
        followup: &FollowUp,
        deliveries: &[NewDelivery],
        targets: &[String],
        until: Timestamp,
    ) {
        let mut back = Vec::new();
        {
            let mut h = self.hand_offs();
            for d in deliveries.iter().filter(|d| targets.contains(&d.target)) {
                let claim = Claim {
                    meta: meta.clone(),
                    target: d.target.clone(),
                    reminder: None,
                    followup: followup.clone(),
                    extra_to: d.extra_to.clone(),
                    attempts: 0,
                    resumed: false,
                };
                if h.workers.contains_key(&d.target) {
                    h.queued.entry(d.target.clone()).or_default().push_back((claim, until));
                } else {
                    back.push(claim);
                }
            }
        }
        self.give_back(&back);
    }

    /// Up to `limit` deliveries handed to this process for `target` that are still fresh at
    /// `now` ([`HANDOFF_FRESH`]); the older ones met on the way are given back.
    fn take_handed(&self, target: &str, now: Timestamp, limit: usize) -> Vec<Claim> {
        let mut fresh = Vec::new();
        let mut stale = Vec::new();
        {
            let mut h = self.hand_offs();
            let Some(queue) = h.queued.get_mut(target) else { return fresh };
            while fresh.len() < limit {
                let Some((claim, until)) = queue.pop_front() else { break };
                if until.duration_since(now) >= HANDOFF_LEASE - HANDOFF_FRESH {
                    fresh.push(claim);
                } else {
                    stale.push(claim);
                }
            }
        }
        self.give_back(&stale);
        fresh
    }

    /// Releases handed deliveries not attempted: any process claims them at once (and looks
    /// for an earlier copy first, as after any lease).
    fn give_back(&self, claims: &[Claim]) {
        for c in claims {
            if let Err(e) = self.store().release(&c.meta.id, &c.target, c.reminder, &self.inner.owner) {
                tracing::warn!(id = %c.meta.id, target = c.target, error = %e, "cannot give a delivery back; it waits for its lease to end");
            }
        }
    }

    /// Waits until [`Mailbox::wake`] after `seen` or `timeout`; returns the new generation.
    pub(crate) fn wait_for_work(&self, seen: u64, timeout: Duration) -> u64 {
        let (lock, cv) = &self.inner.stored;
        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = cv.wait_timeout_while(guard, timeout, |g| *g == seen).unwrap_or_else(|e| e.into_inner());
        *guard
    }

    /// The greeting for `setup`: the named one, else the calendar's, at `setup.started_at`;
    /// a greeting that is not loaded plays the bundled default (logged).
    fn greeting(&self, setup: &CallSetup) -> Prompt {
        let config = &self.inner.config;
        let name = setup.greeting.clone().unwrap_or_else(|| config.greeting_at(setup.started_at).name);
        match config.prompt(&name) {
            Some(p) => p.clone(),
            None => {
                if config.prompt(crate::config::DEFAULT_GREETING_NAME).is_some() || name != "default" {
                    tracing::warn!(greeting = %name, "greeting not loaded; playing the bundled default");
                }
                Prompt::default_greeting().renamed(&name)
            }
        }
    }

    /// Whether the spool can take a new message now; `Err(SpoolFull)` when it cannot.
    pub fn check_space(&self) -> Result<(), MailboxError> {
        let min_free = self.inner.config.store.min_free_bytes;
        if min_free == 0 {
            return Ok(());
        }
        let dir = self.inner.spool.dir();
        let free = self.inner.spool.free_space().map_err(spool_error(dir))?;
        if free < min_free {
            return Err(MailboxError::SpoolFull { path: dir.to_path_buf(), free, min_free });
        }
        Ok(())
    }

    /// Starts a call: a new message id, the greeting of this moment, the recording in the
    /// spool (owned by this process until [`Mailbox::finish_call`]) and the message's
    /// provisional record. A full spool is refused ([`MailboxError::is_full`]) before any
    /// file is made; nothing is left behind when a step fails.
    pub fn start_call(&self, setup: CallSetup, now: Instant) -> Result<StartedCall, MailboxError> {
        self.check_space()?;
        let config = &self.inner.config;
        let spool = &self.inner.spool;
        let id = MessageId::generate(setup.started_at, self.random());
        let format = config.recording.format;
        let wav = spool.create_wav(&id, format).map_err(spool_error(&spool.recording_path(&id, format)))?;
        let started = self.build_call(&id, &wav, &setup, now).and_then(|call| {
            let mut provisional = call.provisional_meta();
            provisional.wav_path = Some(wav.path().to_path_buf());
            provisional.mailbox = Some(config.mailbox.clone());
            provisional.diverted_from = setup.diverted_from.clone();
            self.store().begin(&provisional, setup.started_at)?;
            Ok(call)
        });
        match started {
            Ok(call) => {
                tracing::debug!(%id, caller = %setup.caller, mailbox = %config.mailbox, "call started");
                let lease = CallLease { id, wav, recorded_by: setup.recorded_by, diverted_from: setup.diverted_from };
                Ok(StartedCall { call, lease })
            }
            Err(e) => {
                drop(wav);
                if let Err(rm) = spool.remove_wav(&id) {
                    tracing::warn!(%id, error = %rm, "cannot remove the recording of a call that did not start");
                }
                Err(e)
            }
        }
    }

    fn build_call(
        &self,
        id: &MessageId,
        wav: &LockedWav,
        setup: &CallSetup,
        now: Instant,
    ) -> Result<Call, MailboxError> {
        let config = &self.inner.config;
        let mut cfg = CallConfig::new(id.clone(), setup.caller.clone(), setup.started_at).with_codec(setup.codec);
        cfg.payload_type = setup.payload_type;
        cfg.dtmf_payload_type = setup.dtmf_payload_type.filter(|pt| *pt != setup.payload_type);
        cfg.ptime = setup.ptime;
        cfg.caller_name = setup.caller_name.clone();
        cfg.called =
            if setup.called.is_empty() { config.number.clone().unwrap_or_default() } else { setup.called.clone() };
        cfg.rtp_seed = setup.rtp_seed.unwrap_or_else(|| self.random());
        cfg.opus_sample_rate_hz = config.media.opus_sample_rate_hz;
        config.recording.apply_to(&mut cfg).map_err(crate::Error::from)?;
        let spec = RecordingSpec::for_call(config.recording.format, cfg.codec, cfg.sample_rate_hz());
        let recording = Recording::with_spec(wav.sink(), spec).map_err(crate::Error::from)?;
        Ok(Call::new(cfg, self.greeting(setup), recording, now)?)
    }

    /// Stores a finished call's message (the [`MessageRecorded`](crate::Event::MessageRecorded)
    /// metadata): syncs the recording, commits the metadata and queues every delivery in one
    /// transaction, tells the listeners, and wakes delivery. Returns the stored metadata
    /// (with its `wav_path`).
    ///
    /// When storing fails (a full disk), the mailbox keeps the call and retries it on every
    /// [`Mailbox::recover`] until it succeeds; the error is returned for the log.
    pub fn finish_call(
        &self,
        lease: CallLease,
        mut meta: MessageMeta,
        now: Timestamp,
    ) -> Result<MessageMeta, MailboxError> {
        if meta.id != lease.id {
            return Err(MailboxError::WrongLease { lease: lease.id.clone(), meta: meta.id.clone() });
        }
        meta.wav_path = Some(lease.wav.path().to_path_buf());
        meta.mailbox = Some(self.inner.config.mailbox.clone());
        if meta.diverted_from.is_none() {
            meta.diverted_from.clone_from(&lease.diverted_from);
        }
        match self.store_finished(Some(&lease), &meta, &lease.recorded_by, now) {
            Ok(_) => Ok(meta),
            Err(e) => {
                tracing::error!(id = %meta.id, caller = %meta.caller, error = %e, "storing the message failed; retrying later");
                self.inner.pending.lock().unwrap_or_else(|e| e.into_inner()).push(Pending { lease, meta });
                Err(e)
            }
        }
    }

    /// Drops a started call without leaving a message: forgets its provisional record, removes
    /// its recording and logs `reason` with the caller. For a call that never was one, such as
    /// an INVITE whose 200 OK was never acknowledged (RFC 3261 §13.3.1.4): every other call,
    /// however short, goes to [`Mailbox::finish_call`]. Drop the engine's [`Call`] first (it
    /// writes into the recording).
    ///
    /// The store keeps no trace of the call (no tombstone: nothing was delivered, listed or
    /// followed up, and the log line is its record); listeners are not called. The record is
    /// forgotten before the file is removed, under the recording's lock, so a recovery in any
    /// process never turns the call into an `interrupted` message. When the store cannot
    /// forget it, the error is returned and the call is left to recovery, which stores it
    /// like any interrupted call (nothing is lost); a recording that cannot be removed is
    /// logged and removed by the next [`Mailbox::clean_spool`] when it is empty.
    pub fn discard_call(&self, lease: CallLease, reason: &str) -> Result<(), MailboxError> {
        let id = lease.id.clone();
        let caller = self.store().get(&id).ok().flatten().map(|r| r.meta.caller).unwrap_or_default();
        if let Err(e) = self.store().abandon(&id) {
            tracing::error!(%id, %caller, reason, error = %e, "cannot discard the call; recovery will store it");
            return Err(e.into());
        }
        let removed = self.inner.spool.remove_wav(&id);
        drop(lease);
        if let Err(e) = removed {
            tracing::warn!(%id, error = %e, "cannot remove the recording of a discarded call");
        }
        tracing::info!(%id, %caller, reason, "call discarded without a message");
        Ok(())
    }

    /// Syncs the recording and commits the message with its deliveries; tells listeners when
    /// it was newly stored.
    fn store_finished(
        &self,
        wav: Option<&CallLease>,
        meta: &MessageMeta,
        by: &str,
        now: Timestamp,
    ) -> Result<bool, MailboxError> {
        if let Some(wav) = wav {
            wav.wav.sync().map_err(spool_error(wav.wav.path()))?;
        }
        // A shared store keeps the recording itself, stored with the message in one
        // transaction: any node delivers, streams and exports it without this node's spool.
        let audio = match wav {
            Some(wav) if self.store().keeps_audio() => {
                Some(std::fs::read(wav.wav.path()).map_err(spool_error(wav.wav.path()))?)
            }
            _ => None,
        };
        let routing = route::route(&self.inner.config, &meta.caller);
        let entry = HistoryEntry {
            at: now,
            by: by.to_owned(),
            event: Event::Recorded { end_reason: meta.end_reason.as_str().to_owned() },
        };
        // A known client's message is the manager's from the start: the same transaction.
        let assigned = routing
            .assign_to
            .as_ref()
            .and_then(|to| FollowUp::New.apply(&Change::Assign { to: to.clone() }, route::DIRECTORY, now).ok());
        let assigned_ref = assigned.as_ref().map(|(state, entry)| (state, entry));
        // This process's delivery workers take the deliveries leased to it in this commit,
        // without a claim's commit of their own.
        let handing = self.handing(&routing.deliveries);
        let until = now.checked_add(HANDOFF_LEASE).unwrap_or(now);
        let hand_off = (!handing.is_empty()).then(|| HandOff { owner: &self.inner.owner, until, targets: &handing });
        let new =
            self.store().finish(meta, &routing.deliveries, &entry, assigned_ref, audio.as_deref(), hand_off, now)?;
        if new {
            if !handing.is_empty() {
                let followup = assigned.as_ref().map_or(FollowUp::New, |(state, _)| state.clone());
                self.hand(meta, &followup, &routing.deliveries, &handing, until);
            }
            if routing.deliveries.is_empty() {
                tracing::info!(id = %meta.id, "no delivery target configured: the message stays in the spool");
            }
            if let Some(to) = &routing.assign_to {
                tracing::info!(id = %meta.id, client = routing.client.as_deref().unwrap_or(""), %to, "assigned to the client's manager");
            }
            self.stored(meta);
        }
        Ok(new)
    }

    /// Recovery, safe to run at any time from any process: stores the finished calls whose
    /// storing failed earlier (in this process), and the calls whose recording process died
    /// (their WAV repaired, end reason `interrupted`, duration from the WAV). Calls that a
    /// live process is recording are never touched. Returns the messages it stored.
    ///
    /// With a store shared by several nodes (`[store] url`), only this node's calls (`[store]
    /// node`) are looked at: another node's live call is never touched from here, and a dead
    /// node's calls are recovered by that node when it restarts, or from its spool by
    /// [`Mailbox::recover_spool`].
    pub fn recover(&self, now: Timestamp) -> Result<Vec<MessageMeta>, MailboxError> {
        let mut out = Vec::new();
        let mut first_error = self.retry_pending(now, &mut out);
        for id in self.store().recording()? {
            // A shared store's call of this node without a recording here is left alone (and
            // logged): two nodes sharing one name would otherwise take each other's live calls.
            // `recover_spool` (an operator) stores it.
            let missing_is_final = !self.store().keeps_audio();
            match self.recover_one(&self.inner.spool, &id, missing_is_final, now) {
                Ok(Some(meta)) => out.push(meta),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(%id, error = %e, "recovering an interrupted call failed; retrying later");
                    first_error.get_or_insert(e);
                }
            }
        }
        match (first_error, out.is_empty()) {
            (Some(e), true) => Err(e),
            _ => Ok(out),
        }
    }

    /// Stores the finished calls whose storing failed earlier in this process (the first part
    /// of [`Mailbox::recover`], without its look at every call in progress): cheap enough for
    /// the [`Runner`](crate::runner::Runner) to run whenever a message is stored.
    pub(crate) fn recover_pending(&self, now: Timestamp) -> Result<Vec<MessageMeta>, MailboxError> {
        let mut out = Vec::new();
        match self.retry_pending(now, &mut out) {
            Some(e) if out.is_empty() => Err(e),
            _ => Ok(out),
        }
    }

    /// Retries storing the pending calls into `out`; the first error, if any.
    fn retry_pending(&self, now: Timestamp, out: &mut Vec<MessageMeta>) -> Option<MailboxError> {
        let pending = std::mem::take(&mut *self.inner.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if pending.is_empty() {
            return None;
        }
        let mut still = Vec::new();
        let mut first_error = None;
        for p in pending {
            match self.store_finished(Some(&p.lease), &p.meta, &p.lease.recorded_by, now) {
                Ok(_) => out.push(p.meta),
                Err(e) => {
                    first_error.get_or_insert(e);
                    still.push(p);
                }
            }
        }
        self.inner.pending.lock().unwrap_or_else(|e| e.into_inner()).extend(still);
        first_error
    }

    /// Recovers the calls in progress of node `node` from its spool `dir`, as seen from this
    /// node: for an operator whose node died and does not come back (its spool's disk moved
    /// or mounted here). Each call found in the store as recording on `node` is stored as
    /// `interrupted` with what its recording in `dir` holds (repaired), exactly like
    /// [`Mailbox::recover`] does for this node's own calls after a restart; a recording another
    /// process on this machine still holds is left alone. With the shared store the audio goes
    /// into the database, so `dir` may be removed afterwards.
    ///
    /// With the embedded SQLite store each spool has its own database: the dead spool is
    /// opened as a mailbox of this configuration and recovered in place (`node` is not used).
    pub fn recover_spool(&self, dir: &Path, node: &str, now: Timestamp) -> Result<Vec<MessageMeta>, MailboxError> {
        if !dir.is_dir() {
            let source = io::Error::new(io::ErrorKind::NotFound, "no such spool directory");
            return Err(MailboxError::Spool { path: dir.to_path_buf(), source });
        }
        if !self.store().keeps_audio() {
            let mut config = self.inner.config.clone();
            config.spool = dir.to_path_buf();
            return Mailbox::open(config)?.recover(now);
        }
        let spool = Spool::open(dir).map_err(spool_error(dir))?;
        let mut out = Vec::new();
        let mut first_error = None;
        for id in self.store().recording_on(node)? {
            match self.recover_one(&spool, &id, true, now) {
                Ok(Some(meta)) => out.push(meta),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(%id, node, error = %e, "recovering a call of another node failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        match (first_error, out.is_empty()) {
            (Some(e), true) => Err(e),
            _ => Ok(out),
        }
    }

    /// Recovers call `id` whose recording is in `spool`; a call without a recording there is
    /// stored (with no audio) when `missing_is_final`, else left alone.
    fn recover_one(
        &self,
        spool: &Spool,
        id: &MessageId,
        missing_is_final: bool,
        now: Timestamp,
    ) -> Result<Option<MessageMeta>, MailboxError> {
        let wav = match spool.claim_wav(id).map_err(spool_error(&spool.wav_path(id)))? {
            WavClaim::Live => return Ok(None),
            WavClaim::Dead(wav) => Some(wav),
            WavClaim::Missing if missing_is_final => None,
            WavClaim::Missing => {
                tracing::warn!(
                    %id,
                    node = %self.inner.config.store.node,
                    spool = %spool.dir().display(),
                    "a call of this node has no recording in its spool: is [store] node unique? \
                     `inbox recover --spool DIR --node NAME` stores it if the recording is lost"
                );
                return Ok(None);
            }
        };
        // Under the lock, the record is final: a writer that stored its message did so before
        // it let go of the file.
        let Some(record) = self.store().get(id)? else { return Ok(None) };
        if record.lifecycle != crate::store::Lifecycle::Recording {
            return Ok(None);
        }
        let mut meta = record.meta;
        meta.end_reason = EndReason::Interrupted;
        meta.mailbox.get_or_insert_with(|| self.inner.config.mailbox.clone());
        let duration_ms = match &wav {
            Some(w) => w.repair().map(|r| r.duration_ms()).unwrap_or_else(|e| {
                tracing::warn!(%id, error = %e, "the recording of an interrupted call is not repairable");
                0
            }),
            None => 0,
        };
        meta.duration_ms = duration_ms;
        meta.wav_path = wav.as_ref().map(|w| w.path().to_path_buf());
        let lease = wav.map(|wav| CallLease {
            id: id.clone(),
            wav,
            recorded_by: "recovery".to_owned(),
            diverted_from: meta.diverted_from.clone(),
        });
        let stored = self.store_finished(lease.as_ref(), &meta, "recovery", now)?;
        if stored {
            tracing::warn!(%id, caller = %meta.caller, duration_ms = meta.duration_ms, "recovered the message of an interrupted call");
            Ok(Some(meta))
        } else {
            Ok(None)
        }
    }

    /// Removes recordings of deleted messages (a crash between the deletion and the removal;
    /// with a shared store, a message this node recorded and another deleted) and empty
    /// recordings that no record names and no process owns (a crash while a call was being
    /// set up). A non-empty recording without a record is kept and logged. The
    /// [`Runner`](crate::runner::Runner) runs it when it starts (with a shared store, every
    /// [`CLEAN_SHARED`](crate::runner::CLEAN_SHARED) too).
    pub fn clean_spool(&self) {
        let spool = &self.inner.spool;
        let Ok(ids) = spool.wav_ids() else { return };
        if ids.is_empty() {
            return;
        }
        for id in ids {
            let record = match self.store().get(&id) {
                Ok(r) => r,
                Err(_) => continue,
            };
            let remove = match record {
                Some(r) => r.lifecycle == crate::store::Lifecycle::Deleted,
                None => match spool.claim_wav(&id) {
                    Ok(WavClaim::Dead(wav)) => {
                        let empty = wav.repair().map(|r| r.samples == 0).unwrap_or(false);
                        if !empty {
                            tracing::warn!(%id, "a recording without a record is kept in the spool");
                        }
                        empty
                    }
                    _ => false,
                },
            };
            if remove && let Err(e) = spool.remove_wav(&id) {
                tracing::warn!(%id, error = %e, "cannot remove a stale recording");
            }
        }
    }

    /// Attempts the deliveries to `target` that are due at `now`, a few at a time, until none
    /// is due. Each outcome is recorded before the next attempt: acknowledged, failed (retried
    /// with back-off) or rejected for good (an SMTP 5xx, an IMAP `NO`; retried only on
    /// [`Mailbox::retry`]).
    pub fn deliver_due(&self, target: &str, now: Timestamp) -> Result<RunReport, MailboxError> {
        self.deliver_pass(target, now, false, &|| true)
    }

    /// One delivery pass. With `stop_at_failure`, the pass ends at the first transient failure
    /// (the target is probably down: the other claimed deliveries are released untried);
    /// `keep_going` is asked before each attempt.
    ///
    /// A target that takes several deliveries at once ([`Target::concurrency`], a local
    /// Maildir) has a batch's attempts made side by side, each on a thread of its own, so that
    /// their file syncs overlap (the file system shares its journal commits between them)
    /// instead of queueing one behind the other.
    pub(crate) fn deliver_pass(
        &self,
        target: &str,
        now: Timestamp,
        stop_at_failure: bool,
        keep_going: &(dyn Fn() -> bool + Sync),
    ) -> Result<RunReport, MailboxError> {
        let mut report = RunReport::default();
        let Some(t) = self.inner.targets.iter().find(|t| t.key() == target).cloned() else {
            return Ok(report);
        };
        let concurrency = t.concurrency().clamp(1, MAX_CONCURRENCY);
        let until = now.checked_add(DELIVERY_LEASE).unwrap_or(now);
        let limit = CLAIM_BATCH.max(concurrency);
        loop {
            // First the deliveries handed to this process as their messages were stored.
            let handed = self.take_handed(target, now, limit);
            let claims = if handed.is_empty() {
                self.store().claim(target, now, &self.inner.owner, until, limit)?
            } else {
                handed
            };
            if claims.is_empty() {
                return Ok(report);
            }
            // The batch's outcomes are recorded together, after the target made its deliveries
            // durable (`sync`): one synced commit per batch. A crash before that commit
            // delivers the batch again, which every target acknowledges without a second copy
            // where it can (Maildir and IMAP find the message's own name or Message-ID).
            let tried = self.attempt_batch(t.as_ref(), &claims, concurrency, now, stop_at_failure, keep_going);
            let mut outcomes = Vec::with_capacity(claims.len());
            let mut untried = Vec::new();
            for (c, tried) in claims.iter().zip(tried) {
                // Stopped (or stopped while the transcription ran, or the batch ran long):
                // this one goes back untried.
                let Some(outcome) = tried else {
                    untried.push(c);
                    continue;
                };
                report.attempted += 1;
                let id = c.meta.id.clone();
                let attempt = match outcome {
                    Ok(ack) => {
                        tracing::info!(%id, target, ack = %ack, "delivered");
                        Attempt::Delivered(ack)
                    }
                    Err(e) if e.is_permanent() => {
                        let error = e.to_string();
                        tracing::warn!(%id, target, %error, "delivery rejected for good; `inbox deliver --retry {id}` queues it again");
                        report.rejected.push((id.clone(), target.to_owned(), error.clone()));
                        Attempt::Rejected(error)
                    }
                    Err(e) => {
                        let error = e.to_string();
                        tracing::warn!(%id, target, attempts = c.attempts + 1, %error, "delivery failed; will retry");
                        report.failed.push((id.clone(), target.to_owned(), error.clone()));
                        self.failed_attempt(error, c.attempts, now)
                    }
                };
                outcomes.push((Outcome { id, reminder: c.reminder, attempt }, c.attempts));
            }
            self.record_outcomes(t.as_ref(), target, outcomes, now, &mut report)?;
            for c in &untried {
                self.store().release(&c.meta.id, target, c.reminder, &self.inner.owner)?;
            }
            if !untried.is_empty() {
                return Ok(report);
            }
        }
    }

    /// Attempts a claimed batch, on up to `concurrency` threads (this one included), and
    /// returns each claim's outcome in the batch's order: `None` for a claim left untried.
    /// Once `keep_going` says stop, a transient failure happens with `stop_at_failure`, or the
    /// batch has run longer than [`BATCH_TIME`], no further claim is tried (the attempts in
    /// progress on other threads finish and count).
    fn attempt_batch(
        &self,
        t: &(dyn Target + Send + Sync),
        claims: &[Claim],
        concurrency: usize,
        now: Timestamp,
        stop_at_failure: bool,
        keep_going: &(dyn Fn() -> bool + Sync),
    ) -> Vec<Option<Result<String, DeliveryError>>> {
        let claimed_at = Instant::now();
        let next = AtomicUsize::new(0);
        let stopped = AtomicBool::new(false);
        // Each worker takes the next claim until none is left; a stop is seen by all.
        let work = || {
            let mut done = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                let Some(c) = claims.get(index) else { return done };
                let stop = stopped.load(Ordering::SeqCst) || !keep_going() || claimed_at.elapsed() > BATCH_TIME;
                let meta = if stop { None } else { self.with_transcript(c, keep_going) };
                let outcome = meta.map(|meta| self.attempt(t, c, &meta, now));
                match &outcome {
                    None => stopped.store(true, Ordering::SeqCst),
                    Some(Err(e)) if stop_at_failure && !e.is_permanent() => stopped.store(true, Ordering::SeqCst),
                    Some(_) => {}
                }
                done.push((index, outcome));
            }
        };
        let helpers = concurrency.min(claims.len()).saturating_sub(1);
        let mut done = if helpers == 0 {
            work()
        } else {
            std::thread::scope(|scope| {
                // A helper that cannot be started leaves its share to the others.
                let handles: Vec<_> = (0..helpers)
                    .filter_map(|_| {
                        std::thread::Builder::new().name("vm-deliver-batch".into()).spawn_scoped(scope, work).ok()
                    })
                    .collect();
                let mut done = work();
                for h in handles {
                    done.extend(h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
                }
                done
            })
        };
        done.sort_unstable_by_key(|(index, _)| *index);
        done.into_iter().map(|(_, outcome)| outcome).collect()
    }

    /// The outcome of a failed attempt after `attempts` earlier ones: retried after the retry
    /// policy's delay.
    fn failed_attempt(&self, error: String, attempts: u32, now: Timestamp) -> Attempt {
        let delay = self.inner.retry.delay(attempts.saturating_add(1));
        let retry_at =
            now.checked_add(SignedDuration::try_from(delay).unwrap_or(SignedDuration::from_mins(10))).unwrap_or(now);
        Attempt::Failed { error, retry_at }
    }

    /// Makes a batch's deliveries durable (`Target::sync`) and records its outcomes in one
    /// commit. When the sync fails, the batch's deliveries count as failed and are retried.
    fn record_outcomes(
        &self,
        t: &dyn Target,
        target: &str,
        outcomes: Vec<(Outcome, u32)>,
        now: Timestamp,
        report: &mut RunReport,
    ) -> Result<(), MailboxError> {
        let synced = if outcomes.iter().any(|(o, _)| matches!(o.attempt, Attempt::Delivered(_))) {
            t.sync().map_err(|e| e.to_string())
        } else {
            Ok(())
        };
        let outcomes: Vec<Outcome> = outcomes
            .into_iter()
            .map(|(o, attempts)| match (&o.attempt, &synced) {
                (Attempt::Delivered(_), Err(error)) => {
                    tracing::warn!(id = %o.id, target, %error, "the delivered copy could not be made durable; will retry");
                    report.failed.push((o.id.clone(), target.to_owned(), error.clone()));
                    Outcome { attempt: self.failed_attempt(error.clone(), attempts, now), ..o }
                }
                (Attempt::Delivered(_), Ok(())) => {
                    report.delivered.push((o.id.clone(), target.to_owned()));
                    o
                }
                _ => o,
            })
            .collect();
        // A target that finds its earlier copies needs no sync here: losing this commit in a
        // power loss leaves the deliveries leased, and the attempt after the lease finds them.
        if t.finds_earlier_copies() {
            Ok(self.store().attempted_all_unsynced(target, &outcomes, now)?)
        } else {
            Ok(self.store().attempted_all(target, &outcomes, now)?)
        }
    }

    /// The retry policy of failed deliveries.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.inner.retry
    }

    /// The claimed message's metadata with its transcript. For the message's own e-mail, with
    /// `[transcription]` configured and no transcript stored yet, the transcription runs
    /// first (once per message and process: another worker's run is waited for), at most its
    /// timeout. `None` when `keep_going` stopped it: the delivery is then released untried.
    fn with_transcript(&self, c: &crate::store::Claim, keep_going: &dyn Fn() -> bool) -> Option<MessageMeta> {
        let meta = &c.meta;
        let Some(config) = &self.inner.config.transcription else { return Some(meta.clone()) };
        if c.reminder.is_some() || meta.transcript.is_some() || meta.duration_ms == 0 {
            return Some(meta.clone());
        }
        let Some(audio) = self.audio_file(meta) else { return Some(meta.clone()) };
        let audio = audio.path();
        let id = &meta.id;
        let transcripts = &self.inner.transcripts;
        let transcript = match transcripts.turn(id, config.timeout + Duration::from_secs(1), keep_going) {
            Turn::Known(text) => text,
            Turn::Run => match transcribe::transcribe(config, audio, keep_going) {
                Ok(text) => {
                    if let Some(t) = &text {
                        tracing::info!(%id, chars = t.chars().count(), "transcribed");
                        if let Err(e) = self.store().set_transcript(id, t) {
                            tracing::warn!(%id, error = %e, "storing the transcript failed; the e-mail has it");
                        }
                    } else {
                        tracing::info!(%id, "the transcription printed nothing");
                    }
                    transcripts.finish(id, text.clone());
                    text
                }
                Err(TranscriptionError::Aborted) => {
                    transcripts.abandon(id);
                    return None;
                }
                Err(e) => {
                    tracing::warn!(%id, error = %e, "transcription failed; the message goes without a transcript");
                    transcripts.finish(id, None);
                    None
                }
            },
        };
        if transcript.is_none() && !keep_going() {
            return None;
        }
        Some(MessageMeta { transcript, ..meta.clone() })
    }

    /// The recording of `meta` as a file, for the transcription program: the spool's file, or
    /// (recorded on another node) a copy of the shared store's in the temporary directory,
    /// removed when the returned value is dropped.
    fn audio_file(&self, meta: &MessageMeta) -> Option<AudioFile> {
        if let Some(path) = meta.wav_path.as_deref().filter(|p| p.is_file()) {
            return Some(AudioFile { path: path.to_path_buf(), temporary: false });
        }
        let bytes = match self.store().audio(&meta.id) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(id = %meta.id, error = %e, "cannot read the recording from the store");
                return None;
            }
        };
        let ext = meta.wav_path.as_deref().and_then(|p| p.extension()).and_then(|e| e.to_str()).unwrap_or("wav");
        let path = std::env::temp_dir().join(format!("voicemail-{}-{:016x}.{ext}", meta.id, self.random()));
        match std::fs::write(&path, bytes) {
            Ok(()) => Some(AudioFile { path, temporary: true }),
            Err(e) => {
                tracing::warn!(id = %meta.id, path = %path.display(), error = %e, "cannot write the recording for transcription");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// The recording of `meta` (a valid empty WAV when it has none).
    fn recording_of(&self, meta: &MessageMeta) -> Result<Vec<u8>, DeliveryError> {
        match self.audio_of(meta) {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Ok(deliver::empty_wav()),
            Err(MailboxError::Spool { path, source }) => Err(DeliveryError::Maildir { path, source }),
            Err(e) => Err(DeliveryError::Config(format!("reading the recording: {e}"))),
        }
    }

    /// The recording of a stored message (WAV, or Ogg/Opus with `[recording] format =
    /// "opus"`): what delivery attaches, the web queue streams, Python and `inbox` export.
    /// `None` when the message has none (deleted, still being recorded, or recorded empty).
    ///
    /// It is read from this node's spool when the file is here, else from the shared store
    /// (`[store] url`), which keeps every stored message's recording: any node reads any
    /// message's audio, whichever node recorded it.
    pub fn audio(&self, id: &MessageId) -> Result<Option<Vec<u8>>, MailboxError> {
        let m = self.show(id)?;
        if m.lifecycle != crate::store::Lifecycle::Stored {
            return Ok(None);
        }
        self.audio_of(&m.meta)
    }

    /// [`Mailbox::audio`] of a message whose metadata is at hand.
    fn audio_of(&self, meta: &MessageMeta) -> Result<Option<Vec<u8>>, MailboxError> {
        if let Some(path) = meta.wav_path.as_deref() {
            match std::fs::read(path) {
                Ok(bytes) => return Ok(Some(bytes)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(MailboxError::Spool { path: path.to_path_buf(), source: e }),
            }
        }
        Ok(self.store().audio(&meta.id)?)
    }

    /// The message's own e-mail in follow-up state `followup`, with the IMAP keywords of that
    /// state: what delivery APPENDs, and what the IMAP watcher puts back.
    pub(crate) fn email_for(&self, meta: &MessageMeta, followup: &FollowUp) -> Result<OutgoingEmail, DeliveryError> {
        let wav = self.recording_of(meta)?;
        let ctx = route::email_context(&self.inner.config, meta, followup);
        let email = deliver::build_email(meta, &wav, &ctx).map_err(|e| DeliveryError::Config(e.to_string()))?;
        let keywords = deliver::imap_keywords(followup).iter().map(|k| (*k).to_owned()).collect();
        Ok(OutgoingEmail { keywords, ..email })
    }

    /// The `Message-ID` (without angle brackets) of the message's own e-mail.
    pub(crate) fn message_id_of(&self, meta: &MessageMeta) -> String {
        let ctx = route::email_context(&self.inner.config, meta, &FollowUp::New);
        deliver::message_id_for(meta.id.as_str(), &ctx.from)
    }

    /// A number that grows with every change to the store's messages (stored, assigned,
    /// called back, deleted, delivered...), made by this or any other process using the same
    /// spool: poll it to notice changes cheaply.
    pub fn change_mark(&self) -> Result<i64, MailboxError> {
        Ok(self.store().change_mark()?)
    }

    /// How many follow-up changes were made through this mailbox (in this process).
    pub(crate) fn change_count(&self) -> u64 {
        self.inner.changes.load(Ordering::SeqCst)
    }

    /// Builds the e-mail (from the stored metadata `meta` of the claimed message, with its
    /// transcript, and the recording) and hands it to `t`; a reminder goes to its own
    /// recipients only, by SMTP.
    fn attempt(
        &self,
        t: &dyn Target,
        c: &crate::store::Claim,
        meta: &MessageMeta,
        now: Timestamp,
    ) -> Result<String, DeliveryError> {
        let Some(step) = c.reminder else {
            let email = self.email_for(meta, &c.followup)?;
            let email = OutgoingEmail { extra_recipients: c.extra_to.clone(), may_be_stored: c.resumed, ..email };
            return t.deliver_unsynced(&email).map(|ack| ack.detail);
        };
        let Some(smtp) = self.inner.reminders.as_ref().filter(|_| c.target == "smtp") else {
            return Err(DeliveryError::Config("reminders go by smtp, and [delivery.smtp] is not configured".into()));
        };
        let wav = self.recording_of(meta)?;
        let ctx = route::email_context(&self.inner.config, meta, &c.followup);
        let reminder = self.reminder_for(meta, step, &c.extra_to, now);
        let email =
            deliver::build_reminder(meta, &wav, &ctx, &reminder).map_err(|e| DeliveryError::Config(e.to_string()))?;
        smtp.deliver(&email).map(|ack| ack.detail)
    }

    /// The reminder `step` of `meta` to `to`, sent at `now`: how long the message has waited
    /// (business time) and whether it is escalated.
    fn reminder_for(&self, meta: &MessageMeta, step: ReminderStep, to: &[String], now: Timestamp) -> deliver::Reminder {
        let config = &self.inner.config;
        let schedule = &config.schedule;
        deliver::Reminder {
            step,
            to: to.to_vec(),
            waited: schedule.business_time_between(meta.started_at, now),
            business_hours: schedule.business_hours().is_some(),
            escalated: step == ReminderStep::Escalate || config.followup.as_ref().is_some_and(|f| f.is_escalated(step)),
            date: now,
        }
    }

    /// [`Mailbox::deliver_due`] for every target, one after the other.
    pub fn deliver_all_due(&self, now: Timestamp) -> Result<RunReport, MailboxError> {
        let mut report = RunReport::default();
        for key in self.targets() {
            report.absorb(self.deliver_due(&key, now)?);
        }
        Ok(report)
    }

    /// The earliest time a delivery to `target` is due, if any is waiting.
    pub fn next_due(&self, target: &str) -> Result<Option<Timestamp>, MailboxError> {
        Ok(self.store().next_due(target)?)
    }

    /// Queues rejected or failing deliveries of `id` again, due now (all targets, or one);
    /// `by` asked for it (recorded in the history). A delivery being attempted at this moment
    /// is left alone. Returns how many were queued.
    pub fn retry(&self, id: &MessageId, target: Option<&str>, by: &str, now: Timestamp) -> Result<usize, MailboxError> {
        let n = self.store().retry(id, target, by, now)?;
        if n > 0 {
            self.wake();
        }
        Ok(n)
    }

    /// Every delivery of every message, by message id then target.
    pub fn deliveries(&self) -> Result<Vec<Delivery>, MailboxError> {
        Ok(self.store().deliveries()?)
    }

    /// Every message not deleted, oldest call first; `with_history` adds each one's history.
    pub fn list(&self, with_history: bool) -> Result<Vec<StoredMessage>, MailboxError> {
        Ok(self.store().list(false, with_history)?)
    }

    /// Every message, deleted ones included.
    pub fn list_all(&self) -> Result<Vec<StoredMessage>, MailboxError> {
        Ok(self.store().list(true, true)?)
    }

    /// One message with its history and deliveries (deleted ones too).
    pub fn show(&self, id: &MessageId) -> Result<StoredMessage, MailboxError> {
        self.store().get(id)?.ok_or_else(|| StoreError::NotFound(id.clone()).into())
    }

    /// Applies a follow-up change (assign, called back, delete) made by `by` at `now`. A
    /// deletion removes the recording once the record says deleted; the record and its
    /// history stay.
    pub fn change(
        &self,
        id: &MessageId,
        change: &Change,
        by: &str,
        now: Timestamp,
    ) -> Result<StoredMessage, MailboxError> {
        let message = self.store().change(id, change, by, now)?;
        self.inner.changes.fetch_add(1, Ordering::SeqCst);
        if let Change::Delete { force_reason } = change {
            if let Some(reason) = force_reason.as_deref().filter(|_| !message.followup.is_called_back()) {
                tracing::warn!(%id, %by, reason, "forced deletion of a message that was not called back");
            } else {
                tracing::info!(%id, %by, "deleted a called-back message");
            }
            let spool = &self.inner.spool;
            spool.remove_wav(id).and_then(|()| spool.sync_dir()).map_err(spool_error(&spool.wav_path(id)))?;
        }
        Ok(message)
    }

    /// Assigns a message to `to` (made by `by`).
    pub fn assign(&self, id: &MessageId, to: &str, by: &str, now: Timestamp) -> Result<StoredMessage, MailboxError> {
        self.change(id, &Change::Assign { to: to.to_owned() }, by, now)
    }

    /// Records that `by` called the caller back, with an optional note.
    pub fn called_back(
        &self,
        id: &MessageId,
        by: &str,
        note: Option<&str>,
        now: Timestamp,
    ) -> Result<StoredMessage, MailboxError> {
        self.change(id, &Change::CalledBack { note: note.map(str::to_owned) }, by, now)
    }

    /// Deletes a message; one that was not called back needs a reason.
    pub fn delete(
        &self,
        id: &MessageId,
        force_reason: Option<&str>,
        by: &str,
        now: Timestamp,
    ) -> Result<StoredMessage, MailboxError> {
        self.change(id, &Change::Delete { force_reason: force_reason.map(str::to_owned) }, by, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::MaildirTarget;
    use crate::{Input, Output};

    fn t0() -> Timestamp {
        "2026-11-27T11:33:00Z".parse().unwrap()
    }

    fn open(dir: &Path) -> Mailbox {
        let mut c = Config::default_embedded();
        c.spool = dir.join("spool");
        c.store.min_free_bytes = 0;
        c.delivery.maildir = Some(MaildirTarget { root: dir.join("shared"), folder: "Voicemail".to_owned() });
        Mailbox::open(c).unwrap()
    }

    /// A caller who hangs up during the greeting: a zero-length message, stored at `now`.
    fn record(mailbox: &Mailbox, now: Timestamp) -> MessageMeta {
        let StartedCall { mut call, lease } =
            mailbox.start_call(CallSetup::new("+74951234567", now), Instant::now()).unwrap();
        let at = Instant::now();
        call.handle_input(Input::Answered(at)).unwrap();
        call.handle_input(Input::Hangup(at + Duration::from_millis(500))).unwrap();
        let meta = loop {
            match call.poll_output() {
                Output::Event(crate::Event::MessageRecorded(m)) => break *m,
                Output::Timeout(_) => panic!("no message"),
                _ => {}
            }
        };
        drop(call);
        mailbox.finish_call(lease, meta, now).unwrap()
    }

    /// Another process's view of the store.
    fn other(dir: &Path) -> SqliteStore {
        SqliteStore::open(&dir.join("spool").join(crate::store::spool::DB_FILE)).unwrap()
    }

    /// With a delivery worker in the process, a message's delivery is leased to the process in
    /// the commit that stores it and delivered from there without a claim; nobody else can
    /// claim it meanwhile. Without one, it is queued for any claimer.
    #[test]
    fn deliveries_are_handed_to_the_processs_own_worker() {
        let dir = tempfile::tempdir().unwrap();
        let mailbox = open(dir.path());
        let unhanded = record(&mailbox, t0());
        let worker = mailbox.delivery_worker("maildir");
        let handed = record(&mailbox, t0());
        let claims = other(dir.path()).claim("maildir", t0(), "other/1", t0() + DELIVERY_LEASE, 10).unwrap();
        assert_eq!(claims.iter().map(|c| &c.meta.id).collect::<Vec<_>>(), [&unhanded.id], "the handed one is leased");
        let report = mailbox.deliver_due("maildir", t0() + SignedDuration::from_secs(1)).unwrap();
        assert_eq!(report.delivered, [(handed.id.clone(), "maildir".to_owned())], "{report:?}");
        let new = dir.path().join("shared/.Voicemail/new");
        let files: Vec<_> = std::fs::read_dir(&new).unwrap().map(|e| e.unwrap().file_name()).collect();
        let name = format!("voicemail.{}.", handed.id);
        assert!(matches!(&files[..], [f] if f.to_string_lossy().starts_with(&name)), "{files:?}");
        assert!(mailbox.inner.hand_offs.lock().unwrap().queued["maildir"].is_empty());
        drop(worker);
        assert!(!mailbox.inner.hand_offs.lock().unwrap().workers.contains_key("maildir"));
    }

    /// Handed deliveries a worker did not take are given back when it ends, and when they
    /// waited longer than [`HANDOFF_FRESH`]: claimed at once, as resumed ones. A process that
    /// dies with deliveries handed leaves them to others at the end of their lease.
    #[test]
    fn handed_deliveries_not_taken_are_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let mailbox = open(dir.path());
        let lease = t0() + DELIVERY_LEASE;

        let worker = mailbox.delivery_worker("maildir");
        let a = record(&mailbox, t0());
        drop(worker);
        let claims = other(dir.path()).claim("maildir", t0(), "other/1", lease, 10).unwrap();
        assert_eq!(claims.iter().map(|c| (&c.meta.id, c.resumed)).collect::<Vec<_>>(), [(&a.id, true)]);

        let worker = mailbox.delivery_worker("maildir");
        let b = record(&mailbox, t0());
        let late = t0() + HANDOFF_FRESH + SignedDuration::from_secs(1);
        let report = mailbox.deliver_due("maildir", late).unwrap();
        assert_eq!(report.delivered, [(b.id.clone(), "maildir".to_owned())], "given back, then claimed: {report:?}");
        assert_eq!(crate::store::Store::get(&other(dir.path()), &b.id).unwrap().unwrap().history.len(), 2);

        let c = record(&mailbox, t0());
        drop(mailbox);
        let store = other(dir.path());
        let before = t0() + HANDOFF_LEASE - SignedDuration::from_secs(1);
        assert!(store.claim("maildir", before, "other/1", lease, 10).unwrap().is_empty());
        let after = t0() + HANDOFF_LEASE + SignedDuration::from_secs(1);
        let claims = store.claim("maildir", after, "other/1", after + DELIVERY_LEASE, 10).unwrap();
        assert_eq!(claims.iter().map(|c| (&c.meta.id, c.resumed)).collect::<Vec<_>>(), [(&c.id, true)]);
        // The worker's end gives back only what is still its own.
        drop(worker);
        assert!(store.claim("maildir", after, "third/1", after + DELIVERY_LEASE, 10).unwrap().is_empty());
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1), Duration::from_secs(5));
        assert_eq!(p.delay(2), Duration::from_secs(10));
        assert_eq!(p.delay(4), Duration::from_secs(40));
        assert_eq!(p.delay(8), Duration::from_secs(600));
        assert_eq!(p.delay(1000), Duration::from_secs(600));
    }
}
