//! The embedded store: SQLite (bundled) in the spool directory.
//!
//! One connection per process, behind a mutex. The database is in WAL mode, so readers never
//! wait for writers; writes happen in `BEGIN IMMEDIATE` transactions (writers of other
//! processes queue on the database lock, up to [`BUSY_TIMEOUT`]), and every commit is synced
//! (`synchronous = FULL`) but those of changes that need not be (below).
//!
//! Group commit: the threads of one process that write at the same moment (a burst of calls
//! starting or ending) share one transaction and so one synced commit. Each change runs in a
//! savepoint of its own, so a change that fails is undone alone; a change returns only once
//! the commit that holds it is synced (or with the commit's error). A thread that finishes
//! its change while others wait for the connection leaves the transaction open for them; the
//! last one, or the [`MAX_BATCH`]th, commits for all.
//!
//! A change that need not be synced ([`Store::attempted_all_unsynced`]) starts or joins a
//! batch committed with `synchronous = NORMAL`: in WAL mode that commit is not synced, and the
//! next synced commit (of any connection: the log is one file, synced whole) makes it durable.
//! A change that must be synced never joins such a batch: it commits it and starts its own.
//!
//! The schema is versioned with `PRAGMA user_version`; migrations run at open, inside a write
//! transaction, so processes opening one spool at once apply them exactly once.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{
    Attempt, Claim, Delivery, DeliveryState, HandOff, ImapCopy, ImapCopyState, Imported, Lifecycle, NewDelivery,
    NewReminder, Outcome, Store, StoreError, StoredMessage, from_json, lifecycle, ms, step_key, to_json, ts,
};
use crate::followup::{Change, Event, FollowUp, HistoryEntry, ReminderStep};
use crate::message::{MessageId, MessageMeta};

/// How long a write waits for another process's write transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The schema, one step per version (`PRAGMA user_version` is the number of steps applied).
const MIGRATIONS: &[&str] = &[
    // 1: messages, their history, their deliveries.
    "CREATE TABLE messages (
        id TEXT PRIMARY KEY NOT NULL,
        lifecycle TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        meta TEXT NOT NULL,
        followup TEXT NOT NULL,
        deleted_ms INTEGER
    );
    CREATE INDEX messages_by_time ON messages(started_ms, id);
    CREATE INDEX messages_by_lifecycle ON messages(lifecycle);
    CREATE TABLE history (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id TEXT NOT NULL REFERENCES messages(id),
        entry TEXT NOT NULL
    );
    CREATE INDEX history_by_message ON history(message_id, seq);
    CREATE TABLE deliveries (
        message_id TEXT NOT NULL REFERENCES messages(id),
        target TEXT NOT NULL,
        extra_to TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_ms INTEGER,
        last_attempt_ms INTEGER,
        last_error TEXT,
        delivered_ms INTEGER,
        ack TEXT,
        lease_owner TEXT,
        lease_until_ms INTEGER,
        PRIMARY KEY (message_id, target)
    );
    CREATE INDEX deliveries_due ON deliveries(target, state, next_ms);",
    // 2: reminders (`[followup]`). A delivery row may carry a reminder step ('' is the
    // message's own e-mail), so the outbox key becomes (message, target, step); the steps
    // queued per message are kept on their own, never deleted while the message exists.
    "CREATE TABLE deliveries_v2 (
        message_id TEXT NOT NULL REFERENCES messages(id),
        target TEXT NOT NULL,
        step TEXT NOT NULL DEFAULT '',
        extra_to TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_ms INTEGER,
        last_attempt_ms INTEGER,
        last_error TEXT,
        delivered_ms INTEGER,
        ack TEXT,
        lease_owner TEXT,
        lease_until_ms INTEGER,
        PRIMARY KEY (message_id, target, step)
    );
    INSERT INTO deliveries_v2 (message_id, target, step, extra_to, state, attempts, next_ms, last_attempt_ms,
        last_error, delivered_ms, ack, lease_owner, lease_until_ms)
        SELECT message_id, target, '', extra_to, state, attempts, next_ms, last_attempt_ms, last_error,
        delivered_ms, ack, lease_owner, lease_until_ms FROM deliveries;
    DROP TABLE deliveries;
    ALTER TABLE deliveries_v2 RENAME TO deliveries;
    CREATE INDEX deliveries_due ON deliveries(target, state, next_ms);
    CREATE TABLE reminder_steps (
        message_id TEXT NOT NULL REFERENCES messages(id),
        step TEXT NOT NULL,
        queued_ms INTEGER NOT NULL,
        PRIMARY KEY (message_id, step)
    );",
    // 3: the IMAP watcher's knowledge of each message's copy in the IMAP folder: its UID
    // (valid for one folder and UIDVALIDITY), the keywords it carries (a JSON array), whether
    // it is settled, and how often it was put back.
    "CREATE TABLE imap_copies (
        message_id TEXT PRIMARY KEY NOT NULL REFERENCES messages(id),
        folder TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL,
        uid INTEGER,
        keywords TEXT NOT NULL DEFAULT '[]',
        done INTEGER NOT NULL DEFAULT 0,
        restores INTEGER NOT NULL DEFAULT 0,
        updated_ms INTEGER NOT NULL
    );",
];

/// The SQLite store of one spool: WAL, one write transaction per change, a versioned schema
/// (see [`crate::store`]).
pub struct SqliteStore {
    state: Mutex<State>,
    /// Signalled when a batch of writes is committed (or its commit failed).
    committed: Condvar,
    /// Threads about to take the connection: a writer that sees one leaves its batch open.
    queued: AtomicUsize,
}

/// The most changes one commit holds.
const MAX_BATCH: usize = 64;

/// Statements kept prepared per connection: more than the store's distinct statements, so
/// none is parsed and planned again while the program runs (rusqlite keeps 16 by default).
const STATEMENT_CACHE: usize = 128;

/// The connection and the batch of writes open on it.
struct State {
    conn: Connection,
    /// A write transaction is open, holding batch `batch`'s changes, not committed yet.
    open: bool,
    /// Changes in the open batch.
    changes: usize,
    /// The number of the open batch, or of the last one.
    batch: u64,
    /// Every batch up to this one is finished (committed, or its commit failed).
    done: u64,
    /// The batches whose commit failed, with the error (the last few).
    failed: VecDeque<(u64, StoreError)>,
    /// The open batch is committed without a sync (`synchronous = NORMAL` until its commit).
    unsynced: bool,
    /// Batches committed with a sync.
    synced: u64,
}

impl State {
    fn commit_error(&self, batch: u64) -> Option<StoreError> {
        self.failed.iter().find(|(b, _)| *b == batch).map(|(_, e)| match e {
            StoreError::Database { action, message, full } => {
                StoreError::Database { action, message: message.clone(), full: *full }
            }
            other => StoreError::Database { action: "committing", message: other.to_string(), full: false },
        })
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

fn db_error(action: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| {
        let full = e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull);
        StoreError::Database { action, message: e.to_string(), full }
    }
}

/// Runs `sql` (one statement) with `params`, prepared once per connection.
fn exec(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// The first row of `sql` (one statement) with `params`, prepared once per connection.
fn query_one<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(params, f)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(db_error("opening the database"))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db_error("opening the database"))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // A statement's plan does not depend on the values bound to it: without this, binding
        // a parameter the planner looked at (such as a LIMIT) makes SQLite parse and plan the
        // statement again at every use.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map_err(db_error("opening the database"))?;
        // WAL is persistent; switching needs a moment without other writers, which the busy
        // timeout waits for.
        let mode: String =
            conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(db_error("switching to WAL"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(%mode, "the store's file system does not support WAL; using {mode}");
        }
        conn.pragma_update(None, "synchronous", "FULL").map_err(db_error("opening the database"))?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db_error("opening the database"))?;
        // Checkpoint at about 1 MB of WAL, so a small disk is not filled by the log.
        conn.pragma_update(None, "wal_autocheckpoint", 256).map_err(db_error("opening the database"))?;
        let state = State {
            conn,
            open: false,
            changes: 0,
            batch: 0,
            done: 0,
            failed: VecDeque::new(),
            unsynced: false,
            synced: 0,
        };
        let mut store = Self { state: Mutex::new(state), committed: Condvar::new(), queued: AtomicUsize::new(0) };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let conn = &mut self.state.get_mut().unwrap_or_else(|e| e.into_inner()).conn;
        // Up to date (the usual case): no write lock needed.
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(db_error("migrating"))?;
        if version == MIGRATIONS.len() as i64 {
            return Ok(());
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_error("migrating"))?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(db_error("migrating"))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::Database {
                action: "opening the database",
                message: format!("schema version {version} is newer than this program's ({known}); upgrade it"),
                full: false,
            });
        }
        for (i, step) in MIGRATIONS.iter().enumerate().skip(usize::try_from(version).unwrap_or(0)) {
            tx.execute_batch(step).map_err(db_error("migrating"))?;
            tx.pragma_update(None, "user_version", i as i64 + 1).map_err(db_error("migrating"))?;
            tracing::info!(version = i + 1, "store schema migrated");
        }
        tx.commit().map_err(db_error("migrating"))
    }

    /// Takes the connection, with no write transaction open on it (a batch left open is
    /// committed first).
    fn lock(&self) -> MutexGuard<'_, State> {
        let mut state = self.take();
        if state.open {
            let _ = self.commit(&mut state);
        }
        state
    }

    /// Takes the connection as it is.
    fn take(&self) -> MutexGuard<'_, State> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.queued.fetch_sub(1, Ordering::SeqCst);
        state
    }

    /// Commits the open batch and wakes the writers waiting for it.
    fn commit(&self, state: &mut State) -> Result<(), StoreError> {
        let result = exec(&state.conn, "COMMIT", []).map(drop).map_err(db_error("committing"));
        if result.is_err() && !state.conn.is_autocommit() {
            let _ = state.conn.execute_batch("ROLLBACK");
        }
        if state.unsynced {
            state.unsynced = false;
            if let Err(e) = exec(&state.conn, "PRAGMA synchronous = FULL", []) {
                tracing::error!(error = %e, "cannot set the store's commits to be synced again");
            }
        } else if result.is_ok() {
            state.synced += 1;
        }
        state.open = false;
        state.changes = 0;
        state.done = state.batch;
        if let Err(e) = &result {
            let copy = StoreError::Database { action: "committing", message: e.to_string(), full: e.is_full() };
            state.failed.push_back((state.batch, copy));
            if state.failed.len() > 16 {
                state.failed.pop_front();
            }
        }
        self.committed.notify_all();
        result
    }

    /// Runs `f` as one change (in a savepoint: undone alone when it fails) of the open write
    /// batch, and returns once the batch is committed and synced.
    fn write<T>(
        &self,
        action: &'static str,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write_as(action, true, f)
    }

    /// [`SqliteStore::write`]; with `synced` false, the change may be committed without a sync
    /// (see the module docs).
    fn write_as<T>(
        &self,
        action: &'static str,
        synced: bool,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut state = self.take();
        if state.open && (state.conn.is_autocommit() || (synced && state.unsynced)) {
            // A failed change made SQLite roll the whole batch back (a full disk, an I/O
            // error): the commit fails, and so do its writers. Or this change must be synced
            // and the open batch will not be: it goes first, unsynced.
            let _ = self.commit(&mut state);
        }
        if !state.open {
            if !synced {
                exec(&state.conn, "PRAGMA synchronous = NORMAL", []).map_err(db_error(action))?;
                state.unsynced = true;
            }
            if let Err(e) = exec(&state.conn, "BEGIN IMMEDIATE", []) {
                if state.unsynced {
                    state.unsynced = false;
                    let _ = exec(&state.conn, "PRAGMA synchronous = FULL", []);
                }
                return Err(db_error(action)(e));
            }
            state.open = true;
            state.batch += 1;
        }
        let batch = state.batch;
        let out = match exec(&state.conn, "SAVEPOINT change", []) {
            Err(e) => Err(db_error(action)(e)),
            Ok(_) => match f(&state.conn) {
                Ok(v) => exec(&state.conn, "RELEASE change", []).map(|_| v).map_err(db_error(action)),
                Err(e) => {
                    let _ = state.conn.execute_batch("ROLLBACK TO change; RELEASE change");
                    Err(e)
                }
            },
        };
        state.changes += 1;
        if self.queued.load(Ordering::SeqCst) == 0 || state.changes >= MAX_BATCH {
            let committed = self.commit(&mut state);
            return out.and_then(|v| committed.map(|()| v));
        }
        // A thread waiting for the connection goes on with the batch; one of them commits it.
        let state = self.committed.wait_while(state, |s| s.done < batch).unwrap_or_else(|e| e.into_inner());
        match state.commit_error(batch) {
            Some(e) => Err(e),
            None => out,
        }
    }

    fn record_attempts(
        &self,
        target: &str,
        outcomes: &[Outcome],
        synced: bool,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        self.write_as("recording delivery attempts", synced, |tx| {
            outcomes.iter().try_for_each(|o| record_attempt(tx, &o.id, target, o.reminder, &o.attempt, now))
        })
    }

    /// Runs `f` in a read transaction (one consistent snapshot).
    fn read<T>(
        &self,
        action: &'static str,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let state = self.lock();
        exec(&state.conn, "BEGIN DEFERRED", []).map_err(db_error(action))?;
        let out = f(&state.conn);
        // Nothing to keep: ending the transaction only lets go of its snapshot.
        if let Err(e) = exec(&state.conn, "ROLLBACK", []) {
            tracing::debug!(error = %e, "ending a read transaction");
        }
        out
    }
}

/// A `messages` row.
struct Row {
    id: String,
    lifecycle: String,
    meta: String,
    followup: String,
}

impl Row {
    const COLUMNS: &'static str = "id, lifecycle, meta, followup";

    fn from_sql(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self { id: r.get(0)?, lifecycle: r.get(1)?, meta: r.get(2)?, followup: r.get(3)? })
    }

    fn into_message(self) -> Result<StoredMessage, StoreError> {
        Ok(StoredMessage {
            meta: from_json(&self.id, &self.meta)?,
            lifecycle: lifecycle(&self.lifecycle),
            followup: from_json(&self.id, &self.followup)?,
            history: Vec::new(),
            deliveries: Vec::new(),
        })
    }
}

fn delivery_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, Delivery, String)> {
    let id: String = r.get(0)?;
    let state: String = r.get(3)?;
    let attempts: i64 = r.get(4)?;
    let state = match state.as_str() {
        "delivered" => DeliveryState::Delivered,
        "rejected" => DeliveryState::Rejected,
        _ if attempts > 0 => DeliveryState::Failing,
        _ => DeliveryState::Pending,
    };
    let extra: String = r.get(2)?;
    let step: String = r.get(10)?;
    let parsed_id = MessageId::parse(&id).unwrap_or_else(|_| MessageId::generate(Timestamp::UNIX_EPOCH, 0));
    Ok((
        id,
        Delivery {
            id: parsed_id,
            target: r.get(1)?,
            reminder: ReminderStep::parse(&step),
            extra_to: Vec::new(),
            state,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            next_attempt: match state {
                DeliveryState::Pending | DeliveryState::Failing => r.get::<_, Option<i64>>(5)?.map(ts),
                _ => None,
            },
            last_attempt: r.get::<_, Option<i64>>(6)?.map(ts),
            last_error: r.get(7)?,
            delivered_at: r.get::<_, Option<i64>>(8)?.map(ts),
            ack: r.get(9)?,
        },
        extra,
    ))
}

const DELIVERY_COLUMNS: &str =
    "message_id, target, extra_to, state, attempts, next_ms, last_attempt_ms, last_error, delivered_ms, ack, step";

/// The deliveries of a target due at `?2` and not leased, at most `?3` of them.
const CLAIM_SQL: &str = "SELECT d.message_id, d.extra_to, d.attempts, m.meta, d.step, m.followup,
        d.lease_until_ms IS NOT NULL FROM deliveries d
    JOIN messages m ON m.id = d.message_id
    WHERE d.target = ?1 AND d.state = 'pending' AND d.next_ms <= ?2
      AND (d.lease_until_ms IS NULL OR d.lease_until_ms <= ?2)
      AND m.lifecycle = 'stored'
    ORDER BY d.next_ms, d.message_id, d.step LIMIT ?3";

/// Drops the reminders of `id` not sent yet and not being attempted (the message was called
/// back or deleted); their steps stay recorded.
fn drop_unsent_reminders(tx: &Connection, id: &str, now: Timestamp) -> Result<(), StoreError> {
    exec(
        tx,
        "DELETE FROM deliveries WHERE message_id = ?1 AND step != '' AND state != 'delivered'
         AND (lease_until_ms IS NULL OR lease_until_ms <= ?2)",
        params![id, ms(now)],
    )
    .map_err(db_error("dropping reminders"))?;
    Ok(())
}

fn deliveries_of(tx: &Connection, id: &str) -> Result<Vec<Delivery>, StoreError> {
    let mut stmt = tx
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE message_id = ?1 ORDER BY target, step != '', next_ms, step"
        ))
        .map_err(db_error("reading deliveries"))?;
    let rows = stmt.query_map([id], delivery_from_row).map_err(db_error("reading deliveries"))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, mut d, extra) = row.map_err(db_error("reading deliveries"))?;
        d.extra_to = from_json(&id, &extra)?;
        out.push(d);
    }
    Ok(out)
}

/// Records one attempt's outcome in `tx` and releases its lease.
fn record_attempt(
    tx: &Connection,
    id: &MessageId,
    target: &str,
    reminder: Option<ReminderStep>,
    attempt: &Attempt,
    now: Timestamp,
) -> Result<(), StoreError> {
    const DONE: &str = "last_attempt_ms = ?3, lease_owner = NULL, lease_until_ms = NULL
                            WHERE message_id = ?1 AND target = ?2 AND step = ?4";
    let fail = db_error("recording a delivery attempt");
    let step = step_key(reminder);
    let key = (id.as_str(), target, ms(now), step.as_str());
    let event = match attempt {
        Attempt::Delivered(ack) => {
            let sql = format!("UPDATE deliveries SET state = 'delivered', delivered_ms = ?3, ack = ?5, {DONE}");
            exec(tx, &sql, params![key.0, key.1, key.2, key.3, ack]).map_err(&fail)?;
            Some(match reminder {
                Some(step) => Event::ReminderSent { step, detail: ack.clone() },
                None => Event::Delivered { target: target.to_owned(), detail: ack.clone() },
            })
        }
        Attempt::Failed { error, retry_at } => {
            let sql = format!("UPDATE deliveries SET attempts = attempts + 1, last_error = ?5, next_ms = ?6, {DONE}");
            exec(tx, &sql, params![key.0, key.1, key.2, key.3, error, ms(*retry_at)]).map_err(&fail)?;
            None
        }
        Attempt::Rejected(error) => {
            let sql =
                format!("UPDATE deliveries SET state = 'rejected', attempts = attempts + 1, last_error = ?5, {DONE}");
            exec(tx, &sql, params![key.0, key.1, key.2, key.3, error]).map_err(&fail)?;
            Some(match reminder {
                Some(step) => Event::ReminderRejected { step, error: error.clone() },
                None => Event::Rejected { target: target.to_owned(), error: error.clone() },
            })
        }
    };
    match event {
        Some(event) => add_history(tx, id.as_str(), &HistoryEntry { at: now, by: "delivery".to_owned(), event }),
        None => Ok(()),
    }
}

fn history_of(tx: &Connection, id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
    let mut stmt = tx
        .prepare_cached("SELECT entry FROM history WHERE message_id = ?1 ORDER BY seq")
        .map_err(db_error("reading history"))?;
    let rows = stmt.query_map([id], |r| r.get::<_, String>(0)).map_err(db_error("reading history"))?;
    let mut out = Vec::new();
    for row in rows {
        out.push(from_json(id, &row.map_err(db_error("reading history"))?)?);
    }
    Ok(out)
}

fn add_history(tx: &Connection, id: &str, entry: &HistoryEntry) -> Result<(), StoreError> {
    let entry = to_json(entry)?;
    tx.prepare_cached("INSERT INTO history (message_id, entry) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute(params![id, entry]))
        .map_err(db_error("writing history"))?;
    Ok(())
}

fn row_of(tx: &Connection, id: &str) -> Result<Option<Row>, StoreError> {
    query_one(tx, &format!("SELECT {} FROM messages WHERE id = ?1", Row::COLUMNS), [id], Row::from_sql)
        .optional()
        .map_err(db_error("reading a message"))
}

fn get_in(tx: &Connection, id: &MessageId) -> Result<Option<StoredMessage>, StoreError> {
    let Some(row) = row_of(tx, id.as_str())? else { return Ok(None) };
    let mut m = row.into_message()?;
    m.history = history_of(tx, id.as_str())?;
    m.deliveries = deliveries_of(tx, id.as_str())?;
    Ok(Some(m))
}

fn insert_deliveries(
    tx: &Connection,
    id: &str,
    deliveries: &[NewDelivery],
    hand_off: Option<HandOff<'_>>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO deliveries (message_id, target, extra_to, state, attempts, next_ms,
                 lease_owner, lease_until_ms)
             VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?5, ?6)",
        )
        .map_err(db_error("queueing deliveries"))?;
    for d in deliveries {
        let lease = hand_off.filter(|h| h.targets.contains(&d.target));
        stmt.execute(params![
            id,
            d.target,
            to_json(&d.extra_to)?,
            ms(now),
            lease.map(|h| h.owner),
            lease.map(|h| ms(h.until))
        ])
        .map_err(db_error("queueing deliveries"))?;
    }
    Ok(())
}

/// Inserts or replaces the row of `id`'s IMAP copy; `restored` counts one more restore.
fn upsert_imap_copy(
    tx: &Connection,
    id: &MessageId,
    state: &ImapCopyState,
    restored: bool,
    now: Timestamp,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO imap_copies (message_id, folder, uidvalidity, uid, keywords, done, restores, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(message_id) DO UPDATE SET folder = excluded.folder, uidvalidity = excluded.uidvalidity,
           uid = excluded.uid, keywords = excluded.keywords, done = excluded.done,
           restores = restores + excluded.restores, updated_ms = excluded.updated_ms",
    )
    .and_then(|mut s| {
        s.execute(params![
            id.as_str(),
            state.folder,
            i64::from(state.uidvalidity),
            state.uid.map(i64::from),
            serde_json::to_string(&state.keywords).unwrap_or_else(|_| "[]".to_owned()),
            state.done,
            i64::from(restored),
            ms(now)
        ])
    })
    .map_err(db_error("recording an imap copy"))?;
    Ok(())
}

impl Store for SqliteStore {
    fn begin(&self, meta: &MessageMeta, _now: Timestamp) -> Result<(), StoreError> {
        self.write("recording a new call", |tx| {
            let inserted = exec(
                tx,
                "INSERT OR IGNORE INTO messages (id, lifecycle, started_ms, meta, followup)
                     VALUES (?1, 'recording', ?2, ?3, ?4)",
                params![meta.id.as_str(), ms(meta.started_at), to_json(meta)?, to_json(&FollowUp::New)?],
            )
            .map_err(db_error("recording a new call"))?;
            if inserted == 0 {
                return Err(StoreError::Exists(meta.id.clone()));
            }
            Ok(())
        })
    }

    fn abandon(&self, id: &MessageId) -> Result<(), StoreError> {
        self.write("forgetting a call", |tx| {
            exec(tx, "DELETE FROM messages WHERE id = ?1 AND lifecycle = 'recording'", [id.as_str()])
                .map_err(db_error("forgetting a call"))?;
            Ok(())
        })
    }

    fn finish(
        &self,
        meta: &MessageMeta,
        deliveries: &[NewDelivery],
        recorded: &HistoryEntry,
        assigned: Option<(&FollowUp, &HistoryEntry)>,
        _audio: Option<&[u8]>,
        hand_off: Option<HandOff<'_>>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.write("storing a message", |tx| {
            let id = meta.id.as_str();
            let current: Option<String> = query_one(tx, "SELECT lifecycle FROM messages WHERE id = ?1", [id], |r| r.get(0))
                .optional()
                .map_err(db_error("storing a message"))?;
            match current.as_deref() {
                Some("recording") => {
                    exec(
                        tx,
                        "UPDATE messages SET lifecycle = 'stored', meta = ?2, started_ms = ?3 WHERE id = ?1",
                        params![id, to_json(meta)?, ms(meta.started_at)],
                    )
                    .map_err(db_error("storing a message"))?;
                }
                Some(_) => return Ok(false),
                None => {
                    exec(
                        tx,
                        "INSERT INTO messages (id, lifecycle, started_ms, meta, followup) VALUES (?1, 'stored', ?2, ?3, ?4)",
                        params![id, ms(meta.started_at), to_json(meta)?, to_json(&FollowUp::New)?],
                    )
                    .map_err(db_error("storing a message"))?;
                }
            }
            add_history(tx, id, recorded)?;
            if let Some((followup, entry)) = assigned {
                exec(tx, "UPDATE messages SET followup = ?2 WHERE id = ?1", params![id, to_json(followup)?])
                    .map_err(db_error("storing a message"))?;
                add_history(tx, id, entry)?;
            }
            insert_deliveries(tx, id, deliveries, hand_off, now)?;
            Ok(true)
        })
    }

    fn recording(&self) -> Result<Vec<MessageId>, StoreError> {
        self.read("listing calls in progress", |tx| {
            let mut stmt = tx
                .prepare_cached("SELECT id FROM messages WHERE lifecycle = 'recording' ORDER BY id")
                .map_err(db_error("listing calls in progress"))?;
            let ids = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(db_error("listing calls in progress"))?
                .filter_map(|r| r.ok().and_then(|s| MessageId::parse(&s).ok()))
                .collect();
            Ok(ids)
        })
    }

    fn get(&self, id: &MessageId) -> Result<Option<StoredMessage>, StoreError> {
        self.read("reading a message", |tx| get_in(tx, id))
    }

    fn list(&self, include_deleted: bool, with_history: bool) -> Result<Vec<StoredMessage>, StoreError> {
        self.read("listing messages", |tx| {
            let filter = if include_deleted { "" } else { "WHERE lifecycle != 'deleted'" };
            let mut stmt = tx
                .prepare(&format!("SELECT {} FROM messages {filter} ORDER BY started_ms, id", Row::COLUMNS))
                .map_err(db_error("listing messages"))?;
            let rows: Vec<Row> = stmt
                .query_map([], Row::from_sql)
                .map_err(db_error("listing messages"))?
                .collect::<Result<_, _>>()
                .map_err(db_error("listing messages"))?;
            let mut by_id = std::collections::HashMap::new();
            let mut deliveries = tx
                .prepare(&format!(
                    "SELECT {DELIVERY_COLUMNS} FROM deliveries ORDER BY message_id, target, step != '', next_ms, step"
                ))
                .map_err(db_error("listing messages"))?;
            for row in deliveries.query_map([], delivery_from_row).map_err(db_error("listing messages"))? {
                let (id, mut d, extra) = row.map_err(db_error("listing messages"))?;
                d.extra_to = from_json(&id, &extra)?;
                by_id.entry(id).or_insert_with(Vec::new).push(d);
            }
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let id = row.id.clone();
                // One unreadable record must not hide the others: it is logged and skipped.
                let mut m = match row.into_message() {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(%id, error = %e, "unreadable message record");
                        continue;
                    }
                };
                m.deliveries = by_id.remove(&id).unwrap_or_default();
                if with_history {
                    m.history = history_of(tx, &id)?;
                }
                out.push(m);
            }
            Ok(out)
        })
    }

    fn change(&self, id: &MessageId, change: &Change, by: &str, at: Timestamp) -> Result<StoredMessage, StoreError> {
        self.write("changing a message", |tx| {
            let Some(row) = row_of(tx, id.as_str())? else { return Err(StoreError::NotFound(id.clone())) };
            let deleted_ms: Option<i64> =
                query_one(tx, "SELECT deleted_ms FROM messages WHERE id = ?1", [id.as_str()], |r| r.get(0))
                    .map_err(db_error("changing a message"))?;
            let current = row.into_message()?;
            match current.lifecycle {
                Lifecycle::Deleted => {
                    return Err(StoreError::Deleted {
                        id: id.clone(),
                        at: deleted_ms.map_or(Timestamp::UNIX_EPOCH, ts),
                    });
                }
                Lifecycle::Recording => return Err(StoreError::Recording(id.clone())),
                Lifecycle::Stored => {}
            }
            let (next, entry) = current
                .followup
                .apply(change, by, at)
                .map_err(|source| StoreError::FollowUp { id: id.clone(), source })?;
            if matches!(change, Change::Delete { .. }) {
                exec(
                    tx,
                    "UPDATE messages SET lifecycle = 'deleted', deleted_ms = ?2 WHERE id = ?1",
                    params![id.as_str(), ms(at)],
                )
                .map_err(db_error("deleting a message"))?;
            } else {
                exec(tx, "UPDATE messages SET followup = ?2 WHERE id = ?1", params![id.as_str(), to_json(&next)?])
                    .map_err(db_error("changing a message"))?;
            }
            if matches!(change, Change::Delete { .. } | Change::CalledBack { .. }) {
                drop_unsent_reminders(tx, id.as_str(), at)?;
            }
            add_history(tx, id.as_str(), &entry)?;
            get_in(tx, id)?.ok_or_else(|| StoreError::NotFound(id.clone()))
        })
    }

    fn claim(
        &self,
        target: &str,
        now: Timestamp,
        owner: &str,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Claim>, StoreError> {
        self.write("claiming deliveries", |tx| {
            let mut stmt = tx.prepare_cached(CLAIM_SQL).map_err(db_error("claiming deliveries"))?;
            type ClaimRow = (String, String, i64, String, String, String, bool);
            let rows: Vec<ClaimRow> = stmt
                .query_map(params![target, ms(now), limit as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
                })
                .map_err(db_error("claiming deliveries"))?
                .collect::<Result<_, _>>()
                .map_err(db_error("claiming deliveries"))?;
            let mut lease = tx
                .prepare_cached(
                    "UPDATE deliveries SET lease_owner = ?4, lease_until_ms = ?5
                     WHERE message_id = ?1 AND target = ?2 AND step = ?3",
                )
                .map_err(db_error("claiming deliveries"))?;
            let mut out = Vec::with_capacity(rows.len());
            for (id, extra, attempts, meta, step, followup, leased) in rows {
                lease
                    .execute(params![id, target, step, owner, ms(lease_until)])
                    .map_err(db_error("claiming deliveries"))?;
                out.push(Claim {
                    meta: from_json(&id, &meta)?,
                    target: target.to_owned(),
                    reminder: ReminderStep::parse(&step),
                    followup: from_json(&id, &followup)?,
                    extra_to: from_json(&id, &extra)?,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    resumed: attempts > 0 || leased,
                });
            }
            Ok(out)
        })
    }

    fn release(
        &self,
        id: &MessageId,
        target: &str,
        reminder: Option<ReminderStep>,
        owner: &str,
    ) -> Result<(), StoreError> {
        self.write("releasing a delivery", |tx| {
            exec(
                tx,
                // An expired lease, not none: the next claim cannot tell whether this one's
                // was an earlier attempt's retry (`Claim::resumed` stays true).
                "UPDATE deliveries SET lease_owner = NULL, lease_until_ms = 0
                 WHERE message_id = ?1 AND target = ?2 AND step = ?3 AND lease_owner = ?4",
                params![id.as_str(), target, step_key(reminder), owner],
            )
            .map_err(db_error("releasing a delivery"))?;
            Ok(())
        })
    }

    fn attempted(
        &self,
        id: &MessageId,
        target: &str,
        reminder: Option<ReminderStep>,
        attempt: &Attempt,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.write("recording a delivery attempt", |tx| record_attempt(tx, id, target, reminder, attempt, now))
    }

    fn attempted_all(&self, target: &str, outcomes: &[Outcome], now: Timestamp) -> Result<(), StoreError> {
        self.record_attempts(target, outcomes, true, now)
    }

    fn attempted_all_unsynced(&self, target: &str, outcomes: &[Outcome], now: Timestamp) -> Result<(), StoreError> {
        self.record_attempts(target, outcomes, false, now)
    }

    fn retry(&self, id: &MessageId, target: Option<&str>, by: &str, now: Timestamp) -> Result<usize, StoreError> {
        self.write("queueing a delivery again", |tx| {
            if row_of(tx, id.as_str())?.is_none() {
                return Err(StoreError::NotFound(id.clone()));
            }
            let mut stmt = tx
                .prepare_cached(
                    "SELECT target, step FROM deliveries WHERE message_id = ?1 AND state != 'delivered'
                     AND (?2 IS NULL OR target = ?2) AND (lease_until_ms IS NULL OR lease_until_ms <= ?3)",
                )
                .map_err(db_error("queueing a delivery again"))?;
            let targets: Vec<(String, String)> = stmt
                .query_map(params![id.as_str(), target, ms(now)], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db_error("queueing a delivery again"))?
                .collect::<Result<_, _>>()
                .map_err(db_error("queueing a delivery again"))?;
            for (t, step) in &targets {
                exec(
                    tx,
                    "UPDATE deliveries SET state = 'pending', next_ms = ?4, lease_owner = NULL
                     WHERE message_id = ?1 AND target = ?2 AND step = ?3",
                    params![id.as_str(), t, step, ms(now)],
                )
                .map_err(db_error("queueing a delivery again"))?;
                let target = if step.is_empty() { t.clone() } else { format!("{t} ({step})") };
                let entry = HistoryEntry { at: now, by: by.to_owned(), event: Event::Retried { target } };
                add_history(tx, id.as_str(), &entry)?;
            }
            Ok(targets.len())
        })
    }

    fn next_due(&self, target: &str) -> Result<Option<Timestamp>, StoreError> {
        self.read("reading the outbox", |tx| {
            let next: Option<i64> = query_one(
                tx,
                "SELECT MIN(MAX(d.next_ms, COALESCE(d.lease_until_ms, 0))) FROM deliveries d
                     JOIN messages m ON m.id = d.message_id
                     WHERE d.target = ?1 AND d.state = 'pending' AND m.lifecycle = 'stored'",
                [target],
                |r| r.get(0),
            )
            .map_err(db_error("reading the outbox"))?;
            Ok(next.map(ts))
        })
    }

    fn queue_depth(&self, target: &str) -> Result<u64, StoreError> {
        self.read("reading the outbox", |tx| {
            let n: i64 = query_one(
                tx,
                "SELECT COUNT(*) FROM deliveries d JOIN messages m ON m.id = d.message_id
                     WHERE d.target = ?1 AND d.state = 'pending' AND m.lifecycle = 'stored'",
                [target],
                |r| r.get(0),
            )
            .map_err(db_error("reading the outbox"))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    fn deliveries(&self) -> Result<Vec<Delivery>, StoreError> {
        self.read("reading the outbox", |tx| {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT {} FROM deliveries d JOIN messages m ON m.id = d.message_id
                     WHERE m.lifecycle != 'deleted' ORDER BY d.message_id, d.target, d.step != '', d.next_ms, d.step",
                    DELIVERY_COLUMNS.split(", ").map(|c| format!("d.{c}")).collect::<Vec<_>>().join(", ")
                ))
                .map_err(db_error("reading the outbox"))?;
            let mut out = Vec::new();
            for row in stmt.query_map([], delivery_from_row).map_err(db_error("reading the outbox"))? {
                let (id, mut d, extra) = row.map_err(db_error("reading the outbox"))?;
                d.extra_to = from_json(&id, &extra)?;
                out.push(d);
            }
            Ok(out)
        })
    }

    fn import(&self, m: &Imported) -> Result<bool, StoreError> {
        self.write("importing a message", |tx| {
            let id = m.meta.id.as_str();
            let inserted = exec(
                tx,
                "INSERT OR IGNORE INTO messages (id, lifecycle, started_ms, meta, followup, deleted_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    id,
                    m.lifecycle.as_str(),
                    ms(m.meta.started_at),
                    to_json(&m.meta)?,
                    to_json(&m.followup)?,
                    (m.lifecycle == Lifecycle::Deleted)
                        .then(|| m.history.last().map_or(ms(m.meta.started_at), |h| ms(h.at)))
                ],
            )
            .map_err(db_error("importing a message"))?;
            if inserted == 0 {
                return Ok(false);
            }
            for h in &m.history {
                add_history(tx, id, h)?;
            }
            for d in &m.deliveries {
                let state = match d.state {
                    DeliveryState::Delivered => "delivered",
                    DeliveryState::Rejected => "rejected",
                    DeliveryState::Pending | DeliveryState::Failing => "pending",
                };
                exec(
                    tx,
                    "INSERT OR IGNORE INTO deliveries (message_id, target, extra_to, state, attempts, next_ms,
                     last_attempt_ms, last_error, delivered_ms, ack) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![
                        id,
                        d.target,
                        to_json(&d.extra_to)?,
                        state,
                        i64::from(d.attempts),
                        d.next_attempt.map(ms).unwrap_or_else(|| ms(m.meta.started_at)),
                        d.last_attempt.map(ms),
                        d.last_error,
                        d.delivered_at.map(ms),
                        d.ack
                    ],
                )
                .map_err(db_error("importing a delivery"))?;
            }
            Ok(true)
        })
    }

    fn reminder_steps(&self) -> Result<Vec<(MessageId, ReminderStep)>, StoreError> {
        self.read("reading reminders", |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT r.message_id, r.step, m.followup FROM reminder_steps r JOIN messages m ON m.id = r.message_id
                     WHERE m.lifecycle = 'stored' ORDER BY r.message_id, r.step",
                )
                .map_err(db_error("reading reminders"))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
                .map_err(db_error("reading reminders"))?;
            let mut out = Vec::new();
            for row in rows {
                let (id, step, followup) = row.map_err(db_error("reading reminders"))?;
                let called_back = from_json::<FollowUp>(&id, &followup).map_or(true, |f| f.is_called_back());
                if let (Ok(id), Some(step), false) = (MessageId::parse(&id), ReminderStep::parse(&step), called_back) {
                    out.push((id, step));
                }
            }
            Ok(out)
        })
    }

    fn queue_reminder(&self, id: &MessageId, reminder: &NewReminder, now: Timestamp) -> Result<bool, StoreError> {
        let fail = db_error("queueing a reminder");
        self.write("queueing a reminder", |tx| {
            let Some(row) = row_of(tx, id.as_str())? else { return Ok(false) };
            let message = row.into_message()?;
            if message.lifecycle != Lifecycle::Stored || message.followup.is_called_back() {
                return Ok(false);
            }
            let mut stmt = tx.prepare_cached("SELECT step FROM reminder_steps WHERE message_id = ?1").map_err(&fail)?;
            let done: Vec<ReminderStep> = stmt
                .query_map([id.as_str()], |r| r.get::<_, String>(0))
                .map_err(&fail)?
                .filter_map(|r| r.ok().and_then(|s| ReminderStep::parse(&s)))
                .collect();
            let later = |n: u32| done.iter().any(|d| matches!(d, ReminderStep::Remind(m) if *m >= n));
            let stale = match reminder.step {
                ReminderStep::Escalate => done.contains(&ReminderStep::Escalate),
                ReminderStep::Remind(n) => later(n),
            };
            if stale {
                return Ok(false);
            }
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO reminder_steps (message_id, step, queued_ms) VALUES (?1, ?2, ?3)",
                )
                .map_err(&fail)?;
            for step in std::iter::once(&reminder.step).chain(&reminder.covers) {
                insert.execute(params![id.as_str(), step.key(), ms(now)]).map_err(&fail)?;
            }
            exec(
                tx,
                "INSERT INTO deliveries (message_id, target, step, extra_to, state, attempts, next_ms)
                 VALUES (?1, 'smtp', ?2, ?3, 'pending', 0, ?4)",
                params![id.as_str(), reminder.step.key(), to_json(&reminder.to)?, ms(now)],
            )
            .map_err(&fail)?;
            let event = Event::ReminderQueued { step: reminder.step, to: reminder.to.clone() };
            add_history(tx, id.as_str(), &HistoryEntry { at: now, by: reminder.by.clone(), event })?;
            Ok(true)
        })
    }

    fn set_transcript(&self, id: &MessageId, transcript: &str) -> Result<bool, StoreError> {
        let fail = db_error("storing a transcript");
        self.write("storing a transcript", |tx| {
            let meta: Option<String> =
                query_one(tx, "SELECT meta FROM messages WHERE id = ?1 AND lifecycle = 'stored'", [id.as_str()], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(&fail)?;
            let Some(meta) = meta else { return Ok(false) };
            let mut meta: MessageMeta = from_json(id.as_str(), &meta)?;
            meta.transcript = Some(transcript.to_owned());
            exec(tx, "UPDATE messages SET meta = ?2 WHERE id = ?1", params![id.as_str(), to_json(&meta)?])
                .map_err(&fail)?;
            Ok(true)
        })
    }

    fn imap_copies(&self) -> Result<Vec<ImapCopy>, StoreError> {
        self.read("reading imap copies", Self::imap_copy_rows)
    }

    fn set_imap_copy(&self, id: &MessageId, state: &ImapCopyState, now: Timestamp) -> Result<(), StoreError> {
        self.write("recording an imap copy", |tx| upsert_imap_copy(tx, id, state, false, now))
    }

    fn imap_copy_restored(
        &self,
        id: &MessageId,
        state: &ImapCopyState,
        entry: &HistoryEntry,
    ) -> Result<(), StoreError> {
        self.write("recording a restored imap copy", |tx| {
            upsert_imap_copy(tx, id, state, true, entry.at)?;
            add_history(tx, id.as_str(), entry)
        })
    }

    fn change_mark(&self) -> Result<i64, StoreError> {
        let state = self.lock();
        query_one(&state.conn, "SELECT COALESCE(MAX(seq), 0) FROM history", [], |r| r.get(0))
            .map_err(db_error("reading the history"))
    }
}

impl SqliteStore {
    fn imap_copy_rows(tx: &Connection) -> Result<Vec<ImapCopy>, StoreError> {
        let fail = db_error("reading imap copies");
        let mut stmt = tx
            .prepare_cached(
                "SELECT m.id, m.meta, m.followup, c.folder, c.uidvalidity, c.uid, c.keywords, c.done, c.restores
                 FROM deliveries d
                 JOIN messages m ON m.id = d.message_id
                 LEFT JOIN imap_copies c ON c.message_id = d.message_id
                 WHERE d.target = 'imap' AND d.state = 'delivered' AND d.step = ''
                   AND m.lifecycle = 'stored' AND COALESCE(c.done, 0) = 0
                 ORDER BY m.started_ms, m.id",
            )
            .map_err(&fail)?;
        type CopyRow = (
            String,
            String,
            String,
            Option<String>,
            Option<i64>,
            Option<i64>,
            Option<String>,
            Option<bool>,
            Option<i64>,
        );
        let rows: Vec<CopyRow> = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?))
            })
            .map_err(&fail)?
            .collect::<Result<_, _>>()
            .map_err(&fail)?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, meta, followup, folder, uidvalidity, uid, keywords, done, restores) in rows {
            let (meta, followup) = match (from_json(&id, &meta), from_json(&id, &followup)) {
                (Ok(meta), Ok(followup)) => (meta, followup),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(%id, error = %e, "unreadable message record");
                    continue;
                }
            };
            let state = match (folder, uidvalidity) {
                (Some(folder), Some(uidvalidity)) => Some(ImapCopyState {
                    folder,
                    uidvalidity: u32::try_from(uidvalidity).unwrap_or(0),
                    uid: uid.and_then(|u| u32::try_from(u).ok()),
                    keywords: keywords.and_then(|k| serde_json::from_str(&k).ok()).unwrap_or_default(),
                    done: done.unwrap_or(false),
                }),
                _ => None,
            };
            out.push(ImapCopy {
                meta,
                followup,
                state,
                restores: restores.and_then(|r| u32::try_from(r).ok()).unwrap_or(0),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::CodecKind;
    use crate::message::{EndReason, MediaStats};

    fn meta(id: &str) -> MessageMeta {
        MessageMeta {
            id: MessageId::parse(id).unwrap(),
            caller: "+74951234567".into(),
            caller_name: None,
            called: String::new(),
            started_at: Timestamp::from_second(1_795_779_125).unwrap(),
            duration_ms: 1000,
            end_reason: EndReason::HangUp,
            codec: CodecKind::Pcmu,
            greeting: "default".into(),
            dtmf: String::new(),
            wav_path: None,
            media: MediaStats::default(),
            mailbox: None,
            diverted_from: None,
            transcript: None,
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_795_779_125 + s).unwrap()
    }

    /// A store of schema version 1 (as the previous release wrote it) with one message and
    /// its pending SMTP delivery is migrated to version 2 at open: the delivery is kept and
    /// still claimed, reminders of the message get rows of their own, once per step.
    #[test]
    fn migration_to_v2_keeps_deliveries_and_adds_reminders() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("voicemail.sqlite3");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            let m = meta("msg-1");
            conn.execute(
                "INSERT INTO messages (id, lifecycle, started_ms, meta, followup) VALUES ('msg-1', 'stored', ?1, ?2, ?3)",
                params![ms(m.started_at), serde_json::to_string(&m).unwrap(), r#"{"state":"new"}"#],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO deliveries (message_id, target, extra_to, state, attempts, next_ms, last_error)
                 VALUES ('msg-1', 'smtp', '[\"anna@example.com\"]', 'pending', 2, ?1, 'timeout')",
                [ms(at(0))],
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let version: i64 = store.lock().conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, 3);
        let id = MessageId::parse("msg-1").unwrap();
        let before = store.deliveries().unwrap();
        assert_eq!(before.len(), 1);
        assert_eq!((before[0].state, before[0].attempts, before[0].reminder), (DeliveryState::Failing, 2, None));
        assert_eq!(before[0].extra_to, ["anna@example.com"]);

        let reminder = NewReminder {
            step: ReminderStep::Remind(1),
            covers: Vec::new(),
            to: vec!["anna@example.com".into()],
            by: "reminder".into(),
        };
        assert!(store.queue_reminder(&id, &reminder, at(10)).unwrap());
        assert!(!store.queue_reminder(&id, &reminder, at(11)).unwrap(), "never twice for one step");
        assert_eq!(store.reminder_steps().unwrap(), [(id.clone(), ReminderStep::Remind(1))]);
        // An escalation standing for reminder 3: reminder 2 can no longer be queued.
        let escalation =
            NewReminder { step: ReminderStep::Escalate, covers: vec![ReminderStep::Remind(3)], ..reminder.clone() };
        assert!(store.queue_reminder(&id, &escalation, at(20)).unwrap());
        let stale = NewReminder { step: ReminderStep::Remind(2), ..reminder.clone() };
        assert!(!store.queue_reminder(&id, &stale, at(21)).unwrap());

        // The message's own delivery and both reminders are claimed from the one outbox.
        let claims = store.claim("smtp", at(30), "me", at(900), 10).unwrap();
        let kinds: Vec<_> = claims.iter().map(|c| c.reminder).collect();
        assert_eq!(kinds, [None, Some(ReminderStep::Remind(1)), Some(ReminderStep::Escalate)]);
        store
            .attempted(&id, "smtp", Some(ReminderStep::Remind(1)), &Attempt::Delivered("250 ok".into()), at(31))
            .unwrap();
        store.release(&id, "smtp", None, "me").unwrap();
        store.release(&id, "smtp", Some(ReminderStep::Escalate), "me").unwrap();
        let ds = store.deliveries().unwrap();
        let states: Vec<_> = ds.iter().map(|d| (d.reminder, d.state)).collect();
        assert_eq!(
            states,
            [
                (None, DeliveryState::Failing),
                (Some(ReminderStep::Remind(1)), DeliveryState::Delivered),
                (Some(ReminderStep::Escalate), DeliveryState::Pending),
            ]
        );

        // Called back: the escalation not sent yet is dropped, the sent reminder stays, and
        // nothing more can be queued.
        store.change(&id, &Change::CalledBack { note: None }, "anna", at(40)).unwrap();
        let m = store.get(&id).unwrap().unwrap();
        let left: Vec<_> = m.deliveries.iter().map(|d| d.reminder).collect();
        assert_eq!(left, [None, Some(ReminderStep::Remind(1))]);
        let events: Vec<String> = m.history.iter().map(|h| h.event.describe()).collect();
        assert!(events.iter().any(|e| e == "reminder 1 sent: 250 ok"), "{events:?}");
        assert!(events.iter().any(|e| e == "escalation queued for anna@example.com"), "{events:?}");
        let next = NewReminder { step: ReminderStep::Remind(4), ..reminder };
        assert!(!store.queue_reminder(&id, &next, at(50)).unwrap());
        assert!(store.reminder_steps().unwrap().is_empty(), "only messages not called back");
    }

    /// A statement is parsed and planned once per connection: claiming again and again, with
    /// another time and limit bound each time, reuses the claim's plan (SQLite would plan it
    /// anew at every bind of its LIMIT without the query planner stability guarantee).
    #[test]
    fn claims_reuse_their_prepared_statement() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        for i in 0..5 {
            assert!(store.claim("smtp", at(i), "me", at(i + 60), 1 + i as usize).unwrap().is_empty());
        }
        let state = store.lock();
        let claim = state.conn.prepare_cached(CLAIM_SQL).unwrap();
        assert_eq!(claim.get_status(rusqlite::StatementStatus::RePrepare), 0);
    }

    /// Outcomes of a target that finds its earlier copies are committed without a sync, and
    /// seen at once by other connections; the connection syncs its other commits as before.
    #[test]
    fn unsynced_outcomes_skip_the_sync_of_their_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = SqliteStore::open(&path).unwrap();
        let synced = |store: &SqliteStore| store.lock().synced;
        let m = meta("msg-1");
        let recorded =
            HistoryEntry { at: at(0), by: "t".into(), event: Event::Recorded { end_reason: "hang-up".into() } };
        let maildir = [NewDelivery { target: "maildir".into(), extra_to: Vec::new() }];
        let before = synced(&store);
        assert!(store.finish(&m, &maildir, &recorded, None, None, None, at(0)).unwrap());
        assert_eq!(store.claim("maildir", at(1), "me", at(900), 10).unwrap().len(), 1);
        assert_eq!(synced(&store), before + 2, "storing and claiming are synced");

        let delivered = Outcome { id: m.id.clone(), reminder: None, attempt: Attempt::Delivered("ok".into()) };
        store.attempted_all_unsynced("maildir", &[delivered], at(2)).unwrap();
        assert_eq!(synced(&store), before + 2, "no sync for the outcome");
        let sync_mode: i64 = store.lock().conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(sync_mode, 2, "FULL again after the unsynced commit");
        let other = SqliteStore::open(&path).unwrap();
        assert_eq!(other.deliveries().unwrap()[0].state, DeliveryState::Delivered);

        let m2 = meta("msg-2");
        assert!(store.finish(&m2, &maildir, &recorded, None, None, None, at(3)).unwrap());
        let failed = Outcome {
            id: m2.id.clone(),
            reminder: None,
            attempt: Attempt::Failed { error: "x".into(), retry_at: at(60) },
        };
        store.attempted_all("maildir", &[failed], at(4)).unwrap();
        assert_eq!(synced(&store), before + 4);
    }

    /// Auto-assignment is part of storing the message: its state and history come with it.
    /// Group commit: threads writing at once share commits, each change stands or fails on
    /// its own (a duplicate `begin` fails while the others of its batch are kept), and every
    /// change is there once its call returned, also for another connection.
    #[test]
    fn concurrent_writes_share_commits_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = std::sync::Arc::new(SqliteStore::open(&path).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let mut exists = 0;
                    for i in 0..50 {
                        // Threads 0 and 1 begin the same ids: one of each pair fails.
                        let m = meta(&format!("msg-{}-{i}", if t < 2 { 0 } else { t }));
                        match store.begin(&m, at(0)) {
                            Ok(()) => {}
                            Err(StoreError::Exists(_)) => exists += 1,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    exists
                })
            })
            .collect();
        let exists: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(exists, 50, "each duplicated id fails once");
        let other = SqliteStore::open(&path).unwrap();
        assert_eq!(other.recording().unwrap().len(), 7 * 50);
        assert!(!store.state.lock().unwrap().open, "no batch is left open");
    }

    #[test]
    fn finish_with_an_assignment() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        let m = meta("msg-2");
        let recorded =
            HistoryEntry { at: at(0), by: "x".into(), event: Event::Recorded { end_reason: "hang-up".into() } };
        let (state, entry) =
            FollowUp::New.apply(&Change::Assign { to: "anna@example.com".into() }, "directory", at(0)).unwrap();
        assert!(store.finish(&m, &[], &recorded, Some((&state, &entry)), None, None, at(0)).unwrap());
        assert!(!store.finish(&m, &[], &recorded, Some((&state, &entry)), None, None, at(1)).unwrap(), "stored once");
        let got = store.get(&m.id).unwrap().unwrap();
        assert_eq!(got.followup, FollowUp::Assigned { to: "anna@example.com".into(), at: at(0) });
        assert_eq!(got.history.len(), 2);
        assert_eq!(got.history[1].by, "directory");
    }

    /// A store of schema version 2 with a message delivered to `imap` is migrated to version
    /// 3 at open: the message's copy is to be watched; what the watcher learns is kept, a
    /// restore is counted and logged in the history, and a settled copy or one of a message
    /// not delivered to `imap` yet is not watched.
    #[test]
    fn migration_to_v3_and_imap_copies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("voicemail.sqlite3");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(MIGRATIONS[1]).unwrap();
            conn.pragma_update(None, "user_version", 2).unwrap();
            for (id, target, state) in
                [("msg-1", "imap", "delivered"), ("msg-2", "imap", "pending"), ("msg-3", "smtp", "delivered")]
            {
                let m = meta(id);
                conn.execute(
                    "INSERT INTO messages (id, lifecycle, started_ms, meta, followup) VALUES (?1, 'stored', ?2, ?3, ?4)",
                    params![id, ms(m.started_at), serde_json::to_string(&m).unwrap(), r#"{"state":"new"}"#],
                )
                .unwrap();
                conn.execute(
                    "INSERT INTO deliveries (message_id, target, extra_to, state, next_ms) VALUES (?1, ?2, '[]', ?3, 0)",
                    params![id, target, state],
                )
                .unwrap();
            }
        }
        let store = SqliteStore::open(&path).unwrap();
        let version: i64 = store.lock().conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, 3);
        let id = MessageId::parse("msg-1").unwrap();
        let copies = store.imap_copies().unwrap();
        assert_eq!(copies.len(), 1);
        assert_eq!((&copies[0].meta.id, &copies[0].state, copies[0].restores), (&id, &None, 0));

        let mark = store.change_mark().unwrap();
        let state = ImapCopyState {
            folder: "Voicemail".into(),
            uidvalidity: 7,
            uid: Some(3),
            keywords: vec!["VM-Assigned".into()],
            done: false,
        };
        store.set_imap_copy(&id, &state, at(1)).unwrap();
        assert_eq!(store.imap_copies().unwrap()[0].state.as_ref(), Some(&state));
        assert_eq!(store.change_mark().unwrap(), mark, "no history entry");

        let entry = HistoryEntry {
            at: at(2),
            by: "imap".into(),
            event: Event::Restored { target: "imap".into(), detail: "put back".into() },
        };
        let restored = ImapCopyState { uid: Some(9), ..state.clone() };
        store.imap_copy_restored(&id, &restored, &entry).unwrap();
        let copy = &store.imap_copies().unwrap()[0];
        assert_eq!((copy.state.as_ref().and_then(|s| s.uid), copy.restores), (Some(9), 1));
        assert!(store.change_mark().unwrap() > mark);
        assert_eq!(store.get(&id).unwrap().unwrap().history.last(), Some(&entry));

        store.set_imap_copy(&id, &ImapCopyState { done: true, ..restored }, at(3)).unwrap();
        assert!(store.imap_copies().unwrap().is_empty(), "settled");
        let copy = |id: &str| store.set_imap_copy(&MessageId::parse(id).unwrap(), &state, at(4));
        copy("msg-2").unwrap();
        assert!(store.imap_copies().unwrap().is_empty(), "not delivered to imap yet");
        assert!(copy("msg-9").is_err(), "no such message");
    }
}
