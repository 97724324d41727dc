//! Where messages live: their metadata, follow-up state and history, and the delivery outbox,
//! behind the narrow [`Store`] trait; the recordings stay WAV files in the spool.
//!
//! The default store is [`SqliteStore`]: an embedded SQLite database in the spool directory
//! (`voicemail.sqlite3`, WAL, every commit `fsync`ed). Several processes can use one spool at
//! once (the answering machine, `inbox`, Python): each change is one `BEGIN IMMEDIATE`
//! transaction that reads, checks and writes, so no update is lost and no record is torn.
//! Deliveries are claimed with a lease (owner and expiry in the row), so two processes never
//! deliver the same message to the same target at once, and a process that dies
//! mid-delivery leaves it to another when its lease expires.
//!
//! With `[store] url = "postgres://..."` (cargo feature `postgres`) the store is
//! `PostgresStore`: one PostgreSQL database shared by several nodes, with the same
//! semantics (row locks instead of the database lock, the same leases), and two differences
//! that come from sharing: a call in progress belongs to the node recording it
//! ([`Store::recording`] lists only this node's; [`Store::recording_on`] another's, for an
//! operator's recovery), and the store keeps each stored message's recording
//! ([`Store::keeps_audio`], [`Store::audio`]) so that any node can deliver and show it.
//!
//! The outbox holds reminders too (`[followup]`, [`crate::remind`]): a reminder is a delivery
//! of its message to the `smtp` target with a [`ReminderStep`]; the step is also recorded on
//! its own (the message's reminder steps) in the transaction that queues it, so a reminder is
//! queued once, ever. A message called back or deleted drops its reminders not yet sent.
//!
//! The IMAP watcher (a thread of [`crate::runner::Runner`]) keeps what it knows of each
//! message's copy in the IMAP folder ([`ImapCopyState`]: its UID, the keywords it carries,
//! whether it is settled), and notices changes made by any process through
//! [`Store::change_mark`].
//!
//! The [`Mailbox`](crate::mailbox::Mailbox) is the only user of a store; applications talk to
//! the mailbox.

pub(crate) mod legacy;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
pub(crate) mod spool;
mod sqlite;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::followup::{Change, FollowUp, FollowUpError, HistoryEntry, ReminderStep};
use crate::message::{MessageId, MessageMeta};

#[cfg(feature = "postgres")]
pub use postgres::{MIGRATION_LOCK, PostgresStore};
pub use sqlite::SqliteStore;

/// `url` without its password (`postgres://vm:***@host/db`; a query string that sets one is
/// hidden whole), for messages and logs.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let tail = match tail.split_once('?') {
        Some((path, query)) if query.to_ascii_lowercase().contains("password") => format!("{path}?***"),
        _ => tail.to_owned(),
    };
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No message with this id.
    #[error("message {0} not found")]
    NotFound(MessageId),
    /// The message was deleted.
    #[error("message {id} was deleted at {at}")]
    Deleted {
        /// The id.
        id: MessageId,
        /// When.
        at: Timestamp,
    },
    /// The message is still being recorded.
    #[error("message {0} is still being recorded")]
    Recording(MessageId),
    /// A message with this id exists already.
    #[error("message {0} exists already")]
    Exists(MessageId),
    /// The follow-up change is refused.
    #[error("message {id}: {source}")]
    FollowUp {
        /// The id.
        id: MessageId,
        /// Why.
        source: FollowUpError,
    },
    /// The database failed (a full disk, a corrupt file, a lock held too long, ...).
    #[error("store {action}: {message}")]
    Database {
        /// What was being done.
        action: &'static str,
        /// The database's words.
        message: String,
        /// The file system is full.
        full: bool,
    },
    /// A record could not be read back.
    #[error("store: unreadable record of {id}: {message}")]
    Corrupt {
        /// The message.
        id: String,
        /// What is wrong.
        message: String,
    },
}

impl StoreError {
    /// Whether the failure is a full disk (retrying after space is freed helps).
    pub fn is_full(&self) -> bool {
        matches!(self, StoreError::Database { full: true, .. })
    }
}

/// Where a message is in its life in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lifecycle {
    /// Its call is being recorded (or its recorder died and it awaits recovery).
    Recording,
    /// Recorded and stored.
    Stored,
    /// Deleted: the recording is gone; the record and its history stay.
    Deleted,
}

impl Lifecycle {
    /// `recording`, `stored` or `deleted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Recording => "recording",
            Lifecycle::Stored => "stored",
            Lifecycle::Deleted => "deleted",
        }
    }
}

/// Where one (message, target) delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryState {
    /// Not tried yet.
    Pending,
    /// Tried and failed; retried at `next_attempt`.
    Failing,
    /// Acknowledged by the target.
    Delivered,
    /// Refused for good by the target (an SMTP 5xx, an IMAP `NO`); retried only on request.
    Rejected,
}

impl DeliveryState {
    /// `pending`, `failing`, `delivered` or `rejected`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Failing => "failing",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Rejected => "rejected",
        }
    }
}

/// One (message, target) delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The message.
    pub id: MessageId,
    /// The target's key: `maildir`, `smtp`, `imap`.
    pub target: String,
    /// The reminder this delivery carries (`smtp` only); `None` for the message's own e-mail.
    pub reminder: Option<ReminderStep>,
    /// Envelope recipients besides the target's own (a matched client's manager; SMTP); a
    /// reminder's recipients (the target's own are not used for reminders).
    pub extra_to: Vec<String>,
    /// Where it stands.
    pub state: DeliveryState,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When it is due next (pending and failing only).
    pub next_attempt: Option<Timestamp>,
    /// When it was last tried.
    pub last_attempt: Option<Timestamp>,
    /// The last failure or the rejection, in the server's words.
    pub last_error: Option<String>,
    /// When the target acknowledged it.
    pub delivered_at: Option<Timestamp>,
    /// What the target said when it acknowledged.
    pub ack: Option<String>,
}

/// A delivery to queue when a message is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// The target's key.
    pub target: String,
    /// Extra envelope recipients.
    pub extra_to: Vec<String>,
}

/// Deliveries leased as they are queued ([`Store::finish`]): the process storing the message
/// delivers them itself, without a claim of their own ([`Store::claim`], a synced commit).
/// A process that dies before delivering them leaves them to others once `until` is past, as
/// with a claim: the next claim looks for an earlier copy ([`Claim::resumed`]).
#[derive(Debug, Clone, Copy)]
pub struct HandOff<'a> {
    /// The lease's owner, as [`Store::claim`]'s `owner`.
    pub owner: &'a str,
    /// When the lease ends.
    pub until: Timestamp,
    /// The targets whose deliveries are leased; the others are queued without a lease.
    pub targets: &'a [String],
}

/// A reminder to queue ([`Store::queue_reminder`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReminder {
    /// The reminder sent.
    pub step: ReminderStep,
    /// Reminders due at the same time that it stands for: recorded as done, not sent.
    pub covers: Vec<ReminderStep>,
    /// Its recipients.
    pub to: Vec<String>,
    /// Who queues it, for the history (`reminder`).
    pub by: String,
}

/// One message as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The metadata (for a message being recorded: what was known at the start).
    pub meta: MessageMeta,
    /// Recording, stored or deleted.
    pub lifecycle: Lifecycle,
    /// The follow-up state.
    pub followup: FollowUp,
    /// Who did what, oldest first.
    pub history: Vec<HistoryEntry>,
    /// One entry per delivery target.
    pub deliveries: Vec<Delivery>,
}

impl StoredMessage {
    /// The message id.
    pub fn id(&self) -> &MessageId {
        &self.meta.id
    }
}

/// A delivery claimed for an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The message.
    pub meta: MessageMeta,
    /// The target's key.
    pub target: String,
    /// The reminder it carries; `None` for the message's own e-mail.
    pub reminder: Option<ReminderStep>,
    /// The message's follow-up state when it was claimed (a reminder names the assignee).
    pub followup: FollowUp,
    /// Extra envelope recipients.
    pub extra_to: Vec<String>,
    /// Failed attempts before this one.
    pub attempts: u32,
    /// An earlier attempt may have stored the message at the target: one failed, or the
    /// delivery was leased before (a process crashed mid-attempt, or gave a claim back).
    /// `false` for a first attempt, which need not look for an earlier copy.
    pub resumed: bool,
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Acknowledged; what the target said.
    Delivered(String),
    /// Failed; retry at `retry_at`.
    Failed {
        /// What went wrong.
        error: String,
        /// When to retry.
        retry_at: Timestamp,
    },
    /// Refused for good; the server's words.
    Rejected(String),
}

/// How one claimed delivery's attempt ended: what [`Store::attempted_all`] records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The message.
    pub id: MessageId,
    /// The reminder step, or `None` for the message's own e-mail.
    pub reminder: Option<ReminderStep>,
    /// How the attempt ended.
    pub attempt: Attempt,
}

/// A message of an older JSON spool, for [`Store::import`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The metadata.
    pub meta: MessageMeta,
    /// Stored (or still recording, from a `.json.partial`) or deleted.
    pub lifecycle: Lifecycle,
    /// The follow-up state.
    pub followup: FollowUp,
    /// Its history.
    pub history: Vec<HistoryEntry>,
    /// Its deliveries.
    pub deliveries: Vec<Delivery>,
}

/// What the IMAP watcher knows of a message's copy in the IMAP folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImapCopyState {
    /// The folder the copy is in (`[delivery.imap] folder`); the UID is valid only there.
    pub folder: String,
    /// The folder's `UIDVALIDITY` when the UID was learnt; another value voids the UID.
    pub uidvalidity: u32,
    /// The copy's UID, when known.
    pub uid: Option<u32>,
    /// The follow-up keywords the copy was last seen (or made) to carry.
    pub keywords: Vec<String>,
    /// Settled: the message was called back and its copy carries `VM-CalledBack` or is gone;
    /// the watcher no longer looks at it.
    pub done: bool,
}

/// A message delivered to the IMAP folder whose copy is not settled yet, for the watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapCopy {
    /// The message's metadata.
    pub meta: MessageMeta,
    /// Its follow-up state.
    pub followup: FollowUp,
    /// What is known of its copy; `None` before the watcher first looked.
    pub state: Option<ImapCopyState>,
    /// How often the copy was put back after it was expunged.
    pub restores: u32,
}

/// The store a [`Mailbox`](crate::mailbox::Mailbox) keeps its messages in. Every method is one
/// atomic, durable step; implementations are safe to use from several threads and processes.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Records that a call started: its provisional metadata, in state `recording`.
    fn begin(&self, meta: &MessageMeta, now: Timestamp) -> Result<(), StoreError>;

    /// Forgets a call whose start failed after [`Store::begin`] (nothing was recorded).
    fn abandon(&self, id: &MessageId) -> Result<(), StoreError>;

    /// Stores a finished message and queues its deliveries, in one transaction; `assigned`,
    /// when given, is the message's follow-up state from the start (auto-assignment) with its
    /// history entry. `audio` is the recording's bytes when the store keeps recordings
    /// ([`Store::keeps_audio`]), stored in the same transaction; a store that does not keep
    /// them ignores it. With `hand_off`, the deliveries to its targets are queued leased to
    /// its owner. Returns false (changing nothing) when the message was stored before.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        meta: &MessageMeta,
        deliveries: &[NewDelivery],
        recorded: &HistoryEntry,
        assigned: Option<(&FollowUp, &HistoryEntry)>,
        audio: Option<&[u8]>,
        hand_off: Option<HandOff<'_>>,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Ids of this node's messages in state `recording`: the calls it records (or recorded
    /// before it died). A store of one spool (SQLite) has every call on its one node.
    fn recording(&self) -> Result<Vec<MessageId>, StoreError>;

    /// Ids of messages in state `recording` on node `node` (the node name a shared store was
    /// opened with), for an operator recovering a dead node's spool from another node. A
    /// store of one spool has one node: every call in progress is its.
    fn recording_on(&self, node: &str) -> Result<Vec<MessageId>, StoreError> {
        let _ = node;
        self.recording()
    }

    /// One message with its history and deliveries.
    fn get(&self, id: &MessageId) -> Result<Option<StoredMessage>, StoreError>;

    /// Every message, oldest call first (with deliveries; history only when asked).
    fn list(&self, include_deleted: bool, with_history: bool) -> Result<Vec<StoredMessage>, StoreError>;

    /// Applies a follow-up change made by `by` at `at` (rules: [`FollowUp::apply`]), records
    /// its history entry and, for a deletion, marks the message deleted.
    fn change(&self, id: &MessageId, change: &Change, by: &str, at: Timestamp) -> Result<StoredMessage, StoreError>;

    /// Claims up to `limit` deliveries to `target` that are due at `now` and not leased, for
    /// `owner` until `lease_until`.
    fn claim(
        &self,
        target: &str,
        now: Timestamp,
        owner: &str,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Claim>, StoreError>;

    /// Releases `owner`'s lease on a claimed delivery that was not attempted; a lease that
    /// ended and was taken by another claimer stays theirs.
    fn release(
        &self,
        id: &MessageId,
        target: &str,
        reminder: Option<ReminderStep>,
        owner: &str,
    ) -> Result<(), StoreError>;

    /// Records how an attempt on a claimed delivery ended and releases the lease.
    fn attempted(
        &self,
        id: &MessageId,
        target: &str,
        reminder: Option<ReminderStep>,
        attempt: &Attempt,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// [`Store::attempted`] for several claimed deliveries to `target` at once, in one
    /// transaction (one synced commit for a batch of attempts).
    fn attempted_all(&self, target: &str, outcomes: &[Outcome], now: Timestamp) -> Result<(), StoreError> {
        outcomes.iter().try_for_each(|o| self.attempted(&o.id, target, o.reminder, &o.attempt, now))
    }

    /// [`Store::attempted_all`] for a target that recognises the copies it already holds
    /// ([`Target::finds_earlier_copies`](crate::deliver::Target::finds_earlier_copies)): the
    /// commit need not be synced (it is made durable by the next synced one). A power loss
    /// that loses it leaves the deliveries leased as they were; the attempt after the lease
    /// finds the copies instead of storing them again. The default syncs it.
    fn attempted_all_unsynced(&self, target: &str, outcomes: &[Outcome], now: Timestamp) -> Result<(), StoreError> {
        self.attempted_all(target, outcomes, now)
    }

    /// Queues rejected (and failing) deliveries of `id` again, due at `now`, all targets or one,
    /// except one that is leased (being attempted); `by` is recorded in the history.
    fn retry(&self, id: &MessageId, target: Option<&str>, by: &str, now: Timestamp) -> Result<usize, StoreError>;

    /// The earliest time a pending or failing delivery to `target` is due.
    fn next_due(&self, target: &str) -> Result<Option<Timestamp>, StoreError>;

    /// How many deliveries to `target` wait (pending or failing) of messages stored.
    fn queue_depth(&self, target: &str) -> Result<u64, StoreError>;

    /// Every delivery of every message not deleted, by message id.
    fn deliveries(&self) -> Result<Vec<Delivery>, StoreError>;

    /// Imports a message of an older spool unless the store has it. Returns whether it did.
    fn import(&self, message: &Imported) -> Result<bool, StoreError>;

    /// The reminder steps recorded for messages that are stored and not called back.
    fn reminder_steps(&self) -> Result<Vec<(MessageId, ReminderStep)>, StoreError>;

    /// Queues a reminder of message `id` in one transaction: records its step (and the steps
    /// it covers), queues its delivery to `smtp` due at `now`, and adds the history entry.
    /// Returns false (changing nothing) when the message is not stored, was called back, or
    /// the step (or a later reminder) was queued before.
    fn queue_reminder(&self, id: &MessageId, reminder: &NewReminder, now: Timestamp) -> Result<bool, StoreError>;

    /// Adds the transcript to a stored message's metadata (`[transcription]`). Returns false
    /// (changing nothing) when the message is not stored (unknown, recording or deleted).
    fn set_transcript(&self, id: &MessageId, transcript: &str) -> Result<bool, StoreError>;

    /// The messages stored and delivered to the `imap` target whose copy is not settled
    /// ([`ImapCopyState::done`]), oldest call first.
    fn imap_copies(&self) -> Result<Vec<ImapCopy>, StoreError>;

    /// Records what is known of message `id`'s IMAP copy.
    fn set_imap_copy(&self, id: &MessageId, state: &ImapCopyState, now: Timestamp) -> Result<(), StoreError>;

    /// Records that message `id`'s IMAP copy was put back after an expunge: its new state,
    /// one more restore, and the history entry, in one transaction.
    fn imap_copy_restored(&self, id: &MessageId, state: &ImapCopyState, entry: &HistoryEntry)
    -> Result<(), StoreError>;

    /// A number that grows with every history entry, whichever process adds it (every
    /// follow-up change, delivery and reminder adds one): a cheap way to notice changes.
    fn change_mark(&self) -> Result<i64, StoreError>;

    /// Whether the store keeps each stored message's recording itself (the shared PostgreSQL
    /// store: every node reads it there), rather than only the spool's file (SQLite).
    fn keeps_audio(&self) -> bool {
        false
    }

    /// The recording of message `id` as the store keeps it; `None` when it keeps none (a
    /// store that does not keep recordings, a message deleted or still being recorded).
    fn audio(&self, id: &MessageId) -> Result<Option<Vec<u8>>, StoreError> {
        let _ = id;
        Ok(None)
    }
}

// The column encodings both backends share.

/// A timestamp column: milliseconds since the epoch.
fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

/// A timestamp column read back (the epoch for a value out of range).
fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A JSON column.
fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Database {
        action: "encoding a record",
        message: e.to_string(),
        full: false,
    })
}

/// A JSON column of message `id` read back.
fn from_json<T: serde::de::DeserializeOwned>(id: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt { id: id.to_owned(), message: e.to_string() })
}

/// The `lifecycle` column read back.
fn lifecycle(text: &str) -> Lifecycle {
    match text {
        "recording" => Lifecycle::Recording,
        "deleted" => Lifecycle::Deleted,
        _ => Lifecycle::Stored,
    }
}

/// The `step` column of a delivery: `''` for the message's own e-mail.
fn step_key(reminder: Option<ReminderStep>) -> String {
    reminder.map(ReminderStep::key).unwrap_or_default()
}
