//! The shared store on PostgreSQL: [`PostgresStore`].

use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use postgres::config::SslMode;
use postgres::error::SqlState;
use postgres::{Client, IsolationLevel, Transaction};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{
    Attempt, Claim, Delivery, DeliveryState, HandOff, ImapCopy, ImapCopyState, Imported, Lifecycle, NewDelivery,
    NewReminder, Outcome, Store, StoreError, StoredMessage, from_json, lifecycle, ms, redact_url, step_key, to_json,
    ts,
};
use crate::followup::{Change, Event, FollowUp, HistoryEntry, ReminderStep};
use crate::message::{MessageId, MessageMeta};

/// The key of the advisory lock migrations hold (`pg_advisory_xact_lock`): "voicemai" in
/// ASCII, so it is unlikely to meet another application's lock in the same database.
pub const MIGRATION_LOCK: i64 = 0x766f_6963_656d_6169;
/// Connections kept open for reuse.
const POOL_SIZE: usize = 8;
/// How often a transaction that failed with a serialization failure or deadlock is run again.
const RETRIES: u32 = 8;
/// How long connecting may take, when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long unacknowledged data may wait, and an idle connection go unprobed, before the
/// connection counts as dead (`tcp_user_timeout`, `keepalives_idle`, when the URL does not say).
const DEAD_PEER_TIMEOUT: Duration = Duration::from_secs(30);

/// The schema, one step per version (`schema_migrations` has a row per step applied).
const MIGRATIONS: &[&str] = &[
    // 1: messages (with the node recording a call in progress), their history (with the
    // change counter), deliveries and reminders (the outbox), the IMAP watcher's knowledge of
    // each copy, and the recordings of stored messages.
    "CREATE TABLE messages (
        id TEXT PRIMARY KEY NOT NULL,
        lifecycle TEXT NOT NULL,
        started_ms BIGINT NOT NULL,
        meta TEXT NOT NULL,
        followup TEXT NOT NULL,
        deleted_ms BIGINT,
        node TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX messages_by_time ON messages(started_ms, id);
    CREATE INDEX messages_recording ON messages(node) WHERE lifecycle = 'recording';
    CREATE TABLE counters (
        name TEXT PRIMARY KEY NOT NULL,
        value BIGINT NOT NULL
    );
    INSERT INTO counters (name, value) VALUES ('history', 0);
    CREATE TABLE history (
        seq BIGINT PRIMARY KEY,
        message_id TEXT NOT NULL REFERENCES messages(id),
        entry TEXT NOT NULL
    );
    CREATE INDEX history_by_message ON history(message_id, seq);
    CREATE TABLE deliveries (
        message_id TEXT NOT NULL REFERENCES messages(id),
        target TEXT NOT NULL,
        step TEXT NOT NULL DEFAULT '',
        extra_to TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0,
        next_ms BIGINT,
        last_attempt_ms BIGINT,
        last_error TEXT,
        delivered_ms BIGINT,
        ack TEXT,
        lease_owner TEXT,
        lease_until_ms BIGINT,
        PRIMARY KEY (message_id, target, step)
    );
    CREATE INDEX deliveries_due ON deliveries(target, state, next_ms);
    CREATE TABLE reminder_steps (
        message_id TEXT NOT NULL REFERENCES messages(id),
        step TEXT NOT NULL,
        queued_ms BIGINT NOT NULL,
        PRIMARY KEY (message_id, step)
    );
    CREATE TABLE imap_copies (
        message_id TEXT PRIMARY KEY NOT NULL REFERENCES messages(id),
        folder TEXT NOT NULL,
        uidvalidity BIGINT NOT NULL,
        uid BIGINT,
        keywords TEXT NOT NULL DEFAULT '[]',
        done BOOLEAN NOT NULL DEFAULT FALSE,
        restores BIGINT NOT NULL DEFAULT 0,
        updated_ms BIGINT NOT NULL
    );
    CREATE TABLE audio (
        id TEXT PRIMARY KEY NOT NULL REFERENCES messages(id),
        wav BYTEA NOT NULL
    );",
];

/// The PostgreSQL store shared by several nodes (`[store] url`, see [`crate::store`]): a small
/// pool of connections, reconnecting when one broke.
///
/// # Consistency
///
/// Every [`Store`] method is one transaction. Reads run at `REPEATABLE READ` (one consistent
/// snapshot); writes run at `READ COMMITTED` and lock what they read and check before they
/// write it (`SELECT ... FOR UPDATE` on the message's row), so two nodes changing one message
/// queue on its row and no update is lost. A transaction that fails with a serialization
/// failure or a deadlock (SQLSTATE `40001`, `40P01`: nothing of it was committed) is run
/// again, a few times; so is one whose connection was lost before its commit (a server
/// restart, an administrator's termination), on a new connection. A commit that fails is
/// reported, not repeated: it may have taken effect.
///
/// Deliveries (and reminders, which are deliveries) are claimed with
/// `SELECT ... FOR UPDATE SKIP LOCKED` and leased in the row (`lease_owner`, `lease_until_ms`):
/// two nodes claiming at once get different rows, a claimed row is not claimed again while its
/// lease lasts, and a node that dies mid-delivery leaves its claims to whoever claims after the
/// lease expired. Lease times are the callers' clocks: the nodes' clocks must agree to well
/// within a lease (15 minutes).
///
/// [`Store::change_mark`] is a counter row bumped in every transaction that adds a history
/// entry (the entry's `seq` is the new value). The row lock makes those transactions commit
/// in counter order, so a node that polls the mark never misses a change; a plain sequence
/// would not do that, as its values can commit out of order.
///
/// # Calls in progress and recordings
///
/// A call in progress belongs to the node recording it ([`PostgresStore::node`], recorded by
/// [`Store::begin`]): [`Store::recording`] lists only this node's, so a node never "recovers" a
/// live call of another; [`Store::recording_on`] lists another (dead) node's for an operator's
/// recovery of its spool. A finished recording is stored in the database (table `audio`) in the
/// transaction that stores its message: every node reads it there, so any node can deliver a
/// message, stream it to the web queue or hand it to Python, with no shared file system, and
/// one database backup holds everything. Deleting the message deletes it.
///
/// # TLS
///
/// The URL's `sslmode` says whether connections use TLS (rustls):
///
/// - `disable`: never; the password and every record travel in clear.
/// - `prefer` (the default): when the server offers it (a server without TLS is spoken to in
///   clear). When it does, its certificate is verified like with `require`, and a certificate
///   that does not verify fails the connection: there is no fallback to plain text.
/// - `require`: always; a server without TLS is refused.
///
/// The server's certificate must chain to a CA of the CA file (`[store] ca_file`,
/// [`PostgresStore::open_with_ca_file`]), or to a public CA (the webpki roots) without one,
/// and name the URL's host (a DNS name, or an IP address in the certificate). An unverified
/// certificate is never accepted, so `require` gives what libpq calls `verify-full`.
/// `sslmode=verify-ca` and `verify-full` are refused with a pointer to `require`; client
/// certificates (`sslcert`, `sslkey`) are not supported.
///
/// # Schema
///
/// Versioned in `schema_migrations` (one row per step applied). Migrations run at open,
/// inside a transaction holding `pg_advisory_xact_lock(`[`MIGRATION_LOCK`]`)`, so nodes
/// starting at once apply each step exactly once; a database whose schema is newer than this
/// program knows is refused with a clear error.
pub struct PostgresStore {
    config: postgres::Config,
    /// TLS for connections whose `sslmode` asks for it.
    tls: MakeRustlsConnect,
    /// The URL without its password, for errors and logs.
    shown: String,
    node: String,
    pool: Mutex<Vec<Client>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("url", &self.shown).field("node", &self.node).finish_non_exhaustive()
    }
}

/// A failure inside a transaction: the database's (maybe worth running again), the commit's
/// (never run again: it may have taken effect) or the store's.
enum TxError {
    Db(&'static str, postgres::Error),
    Commit(postgres::Error),
    Store(StoreError),
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Store(e)
    }
}

type TxResult<T> = Result<T, TxError>;

fn db(action: &'static str) -> impl Fn(postgres::Error) -> TxError {
    move |e| TxError::Db(action, e)
}

/// The server's own words (with its detail) when it sent an error; the client's otherwise
/// (with their cause: "error performing TLS handshake: server does not support TLS").
fn words(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => match d.detail() {
            Some(detail) => format!("{}: {detail}", d.message()),
            None => d.message().to_owned(),
        },
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// Why connecting failed: [`words`], with what failed in TLS when it did.
fn connect_words(e: &postgres::Error) -> String {
    use std::error::Error as _;
    // The adapter's handshake error is an `io::Error` around rustls's.
    let cause = e.source();
    let io = cause.and_then(|c| c.downcast_ref::<std::io::Error>());
    match io.and_then(|io| io.get_ref()).and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(why)) => format!(
            "TLS failed: the server's certificate did not verify ({why}); it must be issued by a CA \
             of [store] ca_file (a public CA without it) for the URL's host"
        ),
        Some(other) => format!("TLS failed: {other}"),
        None => words(e),
    }
}

/// The TLS of connections: rustls (ring), verifying the server's certificate against the CAs
/// of `ca_file`, or the public web roots without one.
fn tls_connector(ca_file: Option<&Path>) -> Result<MakeRustlsConnect, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            for certificate in crate::deliver::read_ca_file(path).map_err(|e| format!("store.{e}"))? {
                roots.add(certificate).map_err(|e| format!("store.ca_file {}: {e}", path.display()))?;
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn store_error(action: &'static str, e: &postgres::Error) -> StoreError {
    StoreError::Database { action, message: words(e), full: e.code() == Some(&SqlState::DISK_FULL) }
}

/// The connection is gone: closed, or the server is ending it (SQLSTATE class 57, operator
/// intervention: an administrator's or a shutdown's termination).
fn lost_connection(e: &postgres::Error) -> bool {
    e.is_closed() || e.code().is_some_and(|c| c.code().starts_with("57P"))
}

fn retryable(e: &postgres::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED)
}

/// Parses a `postgres://` (or `postgresql://`) URL; the error says what is wrong.
pub(crate) fn parse_url(url: &str) -> Result<postgres::Config, String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(format!("expected a URL like \"postgres://user@host:5432/database\", found {:?}", redact_url(url)));
    }
    // libpq's stricter modes: `require` here verifies what they verify (and the host name).
    let query = url.split_once('?').map_or("", |(_, q)| q);
    for mode in query.split('&').filter_map(|p| p.strip_prefix("sslmode=")) {
        if mode == "verify-ca" || mode == "verify-full" {
            return Err(format!(
                "sslmode={mode}: use sslmode=require, which with this program always verifies the server's \
                 certificate (against [store] ca_file, or the public CAs) and its host name"
            ));
        }
    }
    let mut config = postgres::Config::from_str(url).map_err(|e| format!("invalid PostgreSQL URL: {e}"))?;
    if config.get_hosts().is_empty() {
        return Err("the PostgreSQL URL names no host".to_owned());
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    // A database that went silent (a dead host, a partition) is noticed within about a
    // minute instead of blocking the node: unacknowledged data and idle connections time out.
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(DEAD_PEER_TIMEOUT);
    }
    if config.get_keepalives_idle() > DEAD_PEER_TIMEOUT {
        config.keepalives_idle(DEAD_PEER_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("voicemail");
    }
    Ok(config)
}

impl PostgresStore {
    /// Connects to the database at `url` as node `node` (the name calls in progress are
    /// recorded under) and brings its schema up to date. TLS, when the URL's `sslmode` asks
    /// for it, trusts the public CAs (see [`PostgresStore::open_with_ca_file`]).
    pub fn open(url: &str, node: &str) -> Result<Self, StoreError> {
        Self::open_with_ca_file(url, node, None)
    }

    /// [`PostgresStore::open`], where the server's TLS certificate must chain to a CA of
    /// `ca_file` (PEM certificates; `[store] ca_file`) instead of a public CA when `Some`.
    /// See [TLS](PostgresStore#tls).
    pub fn open_with_ca_file(url: &str, node: &str, ca_file: Option<&Path>) -> Result<Self, StoreError> {
        let failed = |message| StoreError::Database { action: "opening the database", message, full: false };
        let config = parse_url(url).map_err(failed)?;
        if ca_file.is_some() && config.get_ssl_mode() == SslMode::Disable {
            return Err(failed(format!(
                "{}: sslmode=disable (no TLS) with a CA file: remove one of them",
                redact_url(url)
            )));
        }
        let tls = tls_connector(ca_file).map_err(failed)?;
        let store = Self {
            config,
            tls,
            shown: redact_url(url),
            node: node.to_owned(),
            pool: Mutex::new(Vec::with_capacity(POOL_SIZE)),
        };
        store.migrate()?;
        tracing::debug!(url = %store.shown, node, "store opened");
        Ok(store)
    }

    /// The node this store records calls in progress under.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn connect(&self) -> Result<Client, StoreError> {
        self.config.connect(self.tls.clone()).map_err(|e| StoreError::Database {
            action: "connecting",
            message: format!("{}: {}", self.shown, connect_words(&e)),
            full: false,
        })
    }

    /// A connection of the pool (one that is not closed), or a new one.
    fn client(&self) -> Result<Client, StoreError> {
        loop {
            let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match pooled {
                Some(c) if c.is_closed() => continue,
                Some(c) => return Ok(c),
                None => return self.connect(),
            }
        }
    }

    fn put_back(&self, client: Client) {
        if client.is_closed() {
            return;
        }
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOL_SIZE {
            pool.push(client);
        }
    }

    /// Runs `f` in one transaction at `level` and commits; runs it again after a
    /// serialization failure or a deadlock, and on a new connection when a pooled one turns
    /// out to be broken before anything was sent.
    fn run<T>(
        &self,
        action: &'static str,
        level: IsolationLevel,
        read_only: bool,
        mut f: impl FnMut(&mut Transaction<'_>) -> TxResult<T>,
    ) -> Result<T, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut client = self.client()?;
            let out = match client.build_transaction().isolation_level(level).read_only(read_only).start() {
                Ok(mut tx) => match f(&mut tx) {
                    Ok(out) => tx.commit().map(|()| out).map_err(TxError::Commit),
                    Err(e) => Err(e),
                },
                Err(e) => Err(TxError::Db(action, e)),
            };
            let lost = |e: &postgres::Error| lost_connection(e) || client.is_closed();
            match out {
                Ok(out) => {
                    self.put_back(client);
                    return Ok(out);
                }
                // The connection broke before the commit (the server restarted or terminated
                // it, a proxy closed it, often while it sat in the pool): the server rolled
                // the transaction back; run it again on a new connection.
                Err(TxError::Db(_, e)) if lost(&e) && attempt <= RETRIES => {
                    tracing::debug!(action, error = %e, "a store connection was lost; reconnecting");
                    // Its siblings in the pool are probably gone too (a server restart).
                    self.pool.lock().unwrap_or_else(|e| e.into_inner()).clear();
                }
                Err(TxError::Db(_, e)) if retryable(&e) && attempt <= RETRIES => {
                    self.put_back(client);
                    tracing::debug!(action, attempt, error = %e, "store transaction conflicted; running it again");
                    std::thread::sleep(Duration::from_millis(2 * u64::from(attempt)));
                }
                Err(TxError::Db(what, e)) => {
                    self.put_back(client);
                    return Err(store_error(what, &e));
                }
                // A failed commit is not run again: whether it took effect is unknown when the
                // connection broke during it; the caller's next pass sees the outcome.
                Err(TxError::Commit(e)) => {
                    self.put_back(client);
                    return Err(store_error(action, &e));
                }
                Err(TxError::Store(e)) => {
                    self.put_back(client);
                    return Err(e);
                }
            }
        }
    }

    /// Runs `f` in a write transaction (`READ COMMITTED`; `f` locks what it checks).
    fn write<T>(
        &self,
        action: &'static str,
        f: impl FnMut(&mut Transaction<'_>) -> TxResult<T>,
    ) -> Result<T, StoreError> {
        self.run(action, IsolationLevel::ReadCommitted, false, f)
    }

    /// Runs `f` in a read-only transaction on one snapshot (`REPEATABLE READ`).
    fn read<T>(
        &self,
        action: &'static str,
        f: impl FnMut(&mut Transaction<'_>) -> TxResult<T>,
    ) -> Result<T, StoreError> {
        self.run(action, IsolationLevel::RepeatableRead, true, f)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let known = MIGRATIONS.len() as i64;
        self.write("migrating", |tx| {
            let fail = db("migrating");
            // Nodes starting at once queue here; the lock ends with the transaction.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).map_err(&fail)?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                    version BIGINT PRIMARY KEY NOT NULL,
                    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                )",
            )
            .map_err(&fail)?;
            let version: i64 =
                tx.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[]).map_err(&fail)?.get(0);
            if version > known {
                return Err(StoreError::Database {
                    action: "opening the database",
                    message: format!(
                        "{}: schema version {version} is newer than this program's ({known}); upgrade the program",
                        self.shown
                    ),
                    full: false,
                }
                .into());
            }
            for (i, step) in MIGRATIONS.iter().enumerate().skip(usize::try_from(version).unwrap_or(0)) {
                tx.batch_execute(step).map_err(&fail)?;
                tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&(i as i64 + 1)]).map_err(&fail)?;
                tracing::info!(version = i + 1, "store schema migrated");
            }
            Ok(())
        })
    }

    /// The schema version of the database (the number of migration steps applied).
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.read("reading the schema version", |tx| {
            Ok(tx
                .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])
                .map_err(db("reading the schema version"))?
                .get(0))
        })
    }
}

/// A `messages` row.
struct Row {
    id: String,
    lifecycle: String,
    meta: String,
    followup: String,
    deleted_ms: Option<i64>,
}

impl Row {
    const COLUMNS: &'static str = "id, lifecycle, meta, followup, deleted_ms";

    fn from_sql(r: &postgres::Row) -> Self {
        Self { id: r.get(0), lifecycle: r.get(1), meta: r.get(2), followup: r.get(3), deleted_ms: r.get(4) }
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

const DELIVERY_COLUMNS: &str =
    "message_id, target, extra_to, state, attempts, next_ms, last_attempt_ms, last_error, delivered_ms, ack, step";

fn delivery_from_row(r: &postgres::Row) -> Result<Delivery, StoreError> {
    let id: String = r.get(0);
    let state: String = r.get(3);
    let attempts: i64 = r.get(4);
    let state = match state.as_str() {
        "delivered" => DeliveryState::Delivered,
        "rejected" => DeliveryState::Rejected,
        _ if attempts > 0 => DeliveryState::Failing,
        _ => DeliveryState::Pending,
    };
    let extra: String = r.get(2);
    let step: String = r.get(10);
    Ok(Delivery {
        id: MessageId::parse(&id).unwrap_or_else(|_| MessageId::generate(Timestamp::UNIX_EPOCH, 0)),
        target: r.get(1),
        reminder: ReminderStep::parse(&step),
        extra_to: from_json(&id, &extra)?,
        state,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        next_attempt: match state {
            DeliveryState::Pending | DeliveryState::Failing => r.get::<_, Option<i64>>(5).map(ts),
            _ => None,
        },
        last_attempt: r.get::<_, Option<i64>>(6).map(ts),
        last_error: r.get(7),
        delivered_at: r.get::<_, Option<i64>>(8).map(ts),
        ack: r.get(9),
    })
}

fn add_history(tx: &mut Transaction<'_>, id: &str, entry: &HistoryEntry) -> TxResult<()> {
    let entry = to_json(entry)?;
    tx.execute(
        "WITH c AS (UPDATE counters SET value = value + 1 WHERE name = 'history' RETURNING value)
         INSERT INTO history (seq, message_id, entry) SELECT value, $1, $2 FROM c",
        &[&id, &entry],
    )
    .map_err(db("writing history"))?;
    Ok(())
}

fn history_of(tx: &mut Transaction<'_>, id: &str) -> TxResult<Vec<HistoryEntry>> {
    let rows = tx
        .query("SELECT entry FROM history WHERE message_id = $1 ORDER BY seq", &[&id])
        .map_err(db("reading history"))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(from_json(id, row.get::<_, &str>(0))?);
    }
    Ok(out)
}

fn deliveries_of(tx: &mut Transaction<'_>, id: &str) -> TxResult<Vec<Delivery>> {
    let rows = tx
        .query(
            &format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE message_id = $1
                 ORDER BY target, step != '', next_ms, step"
            ),
            &[&id],
        )
        .map_err(db("reading deliveries"))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(delivery_from_row(r)?);
    }
    Ok(out)
}

/// The message's row, locked for update when `lock`.
fn row_of(tx: &mut Transaction<'_>, id: &str, lock: bool) -> TxResult<Option<Row>> {
    let sql = format!("SELECT {} FROM messages WHERE id = $1{}", Row::COLUMNS, if lock { " FOR UPDATE" } else { "" });
    Ok(tx.query_opt(&sql, &[&id]).map_err(db("reading a message"))?.as_ref().map(Row::from_sql))
}

fn get_in(tx: &mut Transaction<'_>, id: &MessageId) -> TxResult<Option<StoredMessage>> {
    let Some(row) = row_of(tx, id.as_str(), false)? else { return Ok(None) };
    let mut m = row.into_message()?;
    m.history = history_of(tx, id.as_str())?;
    m.deliveries = deliveries_of(tx, id.as_str())?;
    Ok(Some(m))
}

fn insert_deliveries(
    tx: &mut Transaction<'_>,
    id: &str,
    deliveries: &[NewDelivery],
    hand_off: Option<HandOff<'_>>,
    now: Timestamp,
) -> TxResult<()> {
    for d in deliveries {
        let lease = hand_off.filter(|h| h.targets.contains(&d.target));
        tx.execute(
            "INSERT INTO deliveries (message_id, target, extra_to, state, attempts, next_ms, lease_owner, lease_until_ms)
             VALUES ($1, $2, $3, 'pending', 0, $4, $5, $6) ON CONFLICT DO NOTHING",
            &[&id, &d.target, &to_json(&d.extra_to)?, &ms(now), &lease.map(|h| h.owner), &lease.map(|h| ms(h.until))],
        )
        .map_err(db("queueing deliveries"))?;
    }
    Ok(())
}

/// Drops the reminders of `id` not sent yet and not being attempted (the message was called
/// back or deleted); their steps stay recorded.
fn drop_unsent_reminders(tx: &mut Transaction<'_>, id: &str, now: Timestamp) -> TxResult<()> {
    tx.execute(
        "DELETE FROM deliveries WHERE message_id = $1 AND step != '' AND state != 'delivered'
         AND (lease_until_ms IS NULL OR lease_until_ms <= $2)",
        &[&id, &ms(now)],
    )
    .map_err(db("dropping reminders"))?;
    Ok(())
}

/// Records one attempt's outcome in `tx` and releases its lease.
fn record_attempt(
    tx: &mut Transaction<'_>,
    id: &MessageId,
    target: &str,
    reminder: Option<ReminderStep>,
    attempt: &Attempt,
    now: Timestamp,
) -> TxResult<()> {
    const DONE: &str = "last_attempt_ms = $3, lease_owner = NULL, lease_until_ms = NULL
                        WHERE message_id = $1 AND target = $2 AND step = $4";
    let fail = db("recording a delivery attempt");
    let step = step_key(reminder);
    let (key, at) = ((id.as_str(), target), ms(now));
    let event = match attempt {
        Attempt::Delivered(ack) => {
            let sql = format!("UPDATE deliveries SET state = 'delivered', delivered_ms = $3, ack = $5, {DONE}");
            tx.execute(&sql, &[&key.0, &key.1, &at, &step, ack]).map_err(&fail)?;
            Some(match reminder {
                Some(step) => Event::ReminderSent { step, detail: ack.clone() },
                None => Event::Delivered { target: target.to_owned(), detail: ack.clone() },
            })
        }
        Attempt::Failed { error, retry_at } => {
            let sql = format!("UPDATE deliveries SET attempts = attempts + 1, last_error = $5, next_ms = $6, {DONE}");
            tx.execute(&sql, &[&key.0, &key.1, &at, &step, error, &ms(*retry_at)]).map_err(&fail)?;
            None
        }
        Attempt::Rejected(error) => {
            let sql =
                format!("UPDATE deliveries SET state = 'rejected', attempts = attempts + 1, last_error = $5, {DONE}");
            tx.execute(&sql, &[&key.0, &key.1, &at, &step, error]).map_err(&fail)?;
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

/// Inserts or replaces the row of `id`'s IMAP copy; `restored` counts one more restore.
fn upsert_imap_copy(
    tx: &mut Transaction<'_>,
    id: &MessageId,
    state: &ImapCopyState,
    restored: bool,
    now: Timestamp,
) -> TxResult<()> {
    let keywords = serde_json::to_string(&state.keywords).unwrap_or_else(|_| "[]".to_owned());
    tx.execute(
        "INSERT INTO imap_copies (message_id, folder, uidvalidity, uid, keywords, done, restores, updated_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (message_id) DO UPDATE SET folder = excluded.folder, uidvalidity = excluded.uidvalidity,
           uid = excluded.uid, keywords = excluded.keywords, done = excluded.done,
           restores = imap_copies.restores + excluded.restores, updated_ms = excluded.updated_ms",
        &[
            &id.as_str(),
            &state.folder,
            &i64::from(state.uidvalidity),
            &state.uid.map(i64::from),
            &keywords,
            &state.done,
            &i64::from(restored),
            &ms(now),
        ],
    )
    .map_err(db("recording an imap copy"))?;
    Ok(())
}

impl Store for PostgresStore {
    fn begin(&self, meta: &MessageMeta, _now: Timestamp) -> Result<(), StoreError> {
        let (meta_json, followup) = (to_json(meta)?, to_json(&FollowUp::New)?);
        self.write("recording a new call", |tx| {
            let inserted = tx
                .execute(
                    "INSERT INTO messages (id, lifecycle, started_ms, meta, followup, node)
                     VALUES ($1, 'recording', $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    &[&meta.id.as_str(), &ms(meta.started_at), &meta_json, &followup, &self.node],
                )
                .map_err(db("recording a new call"))?;
            if inserted == 0 {
                return Err(StoreError::Exists(meta.id.clone()).into());
            }
            Ok(())
        })
    }

    fn abandon(&self, id: &MessageId) -> Result<(), StoreError> {
        self.write("forgetting a call", |tx| {
            tx.execute("DELETE FROM messages WHERE id = $1 AND lifecycle = 'recording'", &[&id.as_str()])
                .map_err(db("forgetting a call"))?;
            Ok(())
        })
    }

    fn finish(
        &self,
        meta: &MessageMeta,
        deliveries: &[NewDelivery],
        recorded: &HistoryEntry,
        assigned: Option<(&FollowUp, &HistoryEntry)>,
        audio: Option<&[u8]>,
        hand_off: Option<HandOff<'_>>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let meta_json = to_json(meta)?;
        let new = to_json(&FollowUp::New)?;
        self.write("storing a message", |tx| {
            let fail = db("storing a message");
            let id = meta.id.as_str();
            let current = tx
                .query_opt("SELECT lifecycle FROM messages WHERE id = $1 FOR UPDATE", &[&id])
                .map_err(&fail)?
                .map(|r| r.get::<_, String>(0));
            match current.as_deref() {
                Some("recording") => {
                    tx.execute(
                        "UPDATE messages SET lifecycle = 'stored', meta = $2, started_ms = $3 WHERE id = $1",
                        &[&id, &meta_json, &ms(meta.started_at)],
                    )
                    .map_err(&fail)?;
                }
                Some(_) => return Ok(false),
                None => {
                    let inserted = tx
                        .execute(
                            "INSERT INTO messages (id, lifecycle, started_ms, meta, followup, node)
                             VALUES ($1, 'stored', $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                            &[&id, &ms(meta.started_at), &meta_json, &new, &self.node],
                        )
                        .map_err(&fail)?;
                    if inserted == 0 {
                        return Ok(false);
                    }
                }
            }
            if let Some(wav) = audio {
                tx.execute(
                    "INSERT INTO audio (id, wav) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET wav = excluded.wav",
                    &[&id, &wav],
                )
                .map_err(db("storing a recording"))?;
            }
            add_history(tx, id, recorded)?;
            if let Some((followup, entry)) = assigned {
                tx.execute("UPDATE messages SET followup = $2 WHERE id = $1", &[&id, &to_json(followup)?])
                    .map_err(&fail)?;
                add_history(tx, id, entry)?;
            }
            insert_deliveries(tx, id, deliveries, hand_off, now)?;
            Ok(true)
        })
    }

    fn recording(&self) -> Result<Vec<MessageId>, StoreError> {
        self.recording_on(&self.node)
    }

    fn recording_on(&self, node: &str) -> Result<Vec<MessageId>, StoreError> {
        self.read("listing calls in progress", |tx| {
            let rows = tx
                .query("SELECT id FROM messages WHERE lifecycle = 'recording' AND node = $1 ORDER BY id", &[&node])
                .map_err(db("listing calls in progress"))?;
            Ok(rows.iter().filter_map(|r| MessageId::parse(r.get::<_, &str>(0)).ok()).collect())
        })
    }

    fn get(&self, id: &MessageId) -> Result<Option<StoredMessage>, StoreError> {
        self.read("reading a message", |tx| get_in(tx, id))
    }

    fn list(&self, include_deleted: bool, with_history: bool) -> Result<Vec<StoredMessage>, StoreError> {
        self.read("listing messages", |tx| {
            let fail = db("listing messages");
            let filter = if include_deleted { "" } else { "WHERE lifecycle != 'deleted'" };
            let rows: Vec<Row> = tx
                .query(&format!("SELECT {} FROM messages {filter} ORDER BY started_ms, id", Row::COLUMNS), &[])
                .map_err(&fail)?
                .iter()
                .map(Row::from_sql)
                .collect();
            let mut by_id = std::collections::HashMap::new();
            let deliveries = tx
                .query(
                    &format!(
                        "SELECT {DELIVERY_COLUMNS} FROM deliveries
                         ORDER BY message_id, target, step != '', next_ms, step"
                    ),
                    &[],
                )
                .map_err(&fail)?;
            for r in &deliveries {
                let d = delivery_from_row(r)?;
                by_id.entry(r.get::<_, String>(0)).or_insert_with(Vec::new).push(d);
            }
            let mut history = std::collections::HashMap::new();
            if with_history {
                for r in tx.query("SELECT message_id, entry FROM history ORDER BY seq", &[]).map_err(&fail)? {
                    let id: String = r.get(0);
                    match from_json::<HistoryEntry>(&id, r.get(1)) {
                        Ok(entry) => history.entry(id).or_insert_with(Vec::new).push(entry),
                        Err(e) => return Err(e.into()),
                    }
                }
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
                m.history = history.remove(&id).unwrap_or_default();
                out.push(m);
            }
            Ok(out)
        })
    }

    fn change(&self, id: &MessageId, change: &Change, by: &str, at: Timestamp) -> Result<StoredMessage, StoreError> {
        self.write("changing a message", |tx| {
            let Some(row) = row_of(tx, id.as_str(), true)? else { return Err(StoreError::NotFound(id.clone()).into()) };
            let deleted_ms = row.deleted_ms;
            let current = row.into_message()?;
            match current.lifecycle {
                Lifecycle::Deleted => {
                    return Err(StoreError::Deleted {
                        id: id.clone(),
                        at: deleted_ms.map_or(Timestamp::UNIX_EPOCH, ts),
                    }
                    .into());
                }
                Lifecycle::Recording => return Err(StoreError::Recording(id.clone()).into()),
                Lifecycle::Stored => {}
            }
            let (next, entry) = current
                .followup
                .apply(change, by, at)
                .map_err(|source| StoreError::FollowUp { id: id.clone(), source })?;
            if matches!(change, Change::Delete { .. }) {
                tx.execute(
                    "UPDATE messages SET lifecycle = 'deleted', deleted_ms = $2 WHERE id = $1",
                    &[&id.as_str(), &ms(at)],
                )
                .map_err(db("deleting a message"))?;
                tx.execute("DELETE FROM audio WHERE id = $1", &[&id.as_str()]).map_err(db("deleting a recording"))?;
            } else {
                tx.execute("UPDATE messages SET followup = $2 WHERE id = $1", &[&id.as_str(), &to_json(&next)?])
                    .map_err(db("changing a message"))?;
            }
            if matches!(change, Change::Delete { .. } | Change::CalledBack { .. }) {
                drop_unsent_reminders(tx, id.as_str(), at)?;
            }
            add_history(tx, id.as_str(), &entry)?;
            Ok(get_in(tx, id)?.ok_or_else(|| StoreError::NotFound(id.clone()))?)
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
            let fail = db("claiming deliveries");
            // Rows another node is claiming right now are skipped, not waited for; a row
            // leased by a claim committed since this statement began is re-checked (and left).
            let rows = tx
                .query(
                    "SELECT d.message_id, d.extra_to, d.attempts, m.meta, d.step, m.followup,
                            d.lease_until_ms IS NOT NULL FROM deliveries d
                     JOIN messages m ON m.id = d.message_id
                     WHERE d.target = $1 AND d.state = 'pending' AND d.next_ms <= $2
                       AND (d.lease_until_ms IS NULL OR d.lease_until_ms <= $2)
                       AND m.lifecycle = 'stored'
                     ORDER BY d.next_ms, d.message_id, d.step LIMIT $3
                     FOR UPDATE OF d SKIP LOCKED",
                    &[&target, &ms(now), &i64::try_from(limit).unwrap_or(i64::MAX)],
                )
                .map_err(&fail)?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let (id, extra, attempts, meta, step, followup): (&str, &str, i64, &str, &str, &str) =
                    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
                let leased: bool = r.get(6);
                tx.execute(
                    "UPDATE deliveries SET lease_owner = $4, lease_until_ms = $5
                     WHERE message_id = $1 AND target = $2 AND step = $3",
                    &[&id, &target, &step, &owner, &ms(lease_until)],
                )
                .map_err(&fail)?;
                out.push(Claim {
                    meta: from_json(id, meta)?,
                    target: target.to_owned(),
                    reminder: ReminderStep::parse(step),
                    followup: from_json(id, followup)?,
                    extra_to: from_json(id, extra)?,
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
        let step = step_key(reminder);
        self.write("releasing a delivery", |tx| {
            tx.execute(
                // An expired lease, not none: `Claim::resumed` of the next claim stays true.
                "UPDATE deliveries SET lease_owner = NULL, lease_until_ms = 0
                 WHERE message_id = $1 AND target = $2 AND step = $3 AND lease_owner = $4",
                &[&id.as_str(), &target, &step, &owner],
            )
            .map_err(db("releasing a delivery"))?;
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
        if outcomes.is_empty() {
            return Ok(());
        }
        self.write("recording delivery attempts", |tx| {
            outcomes.iter().try_for_each(|o| record_attempt(tx, &o.id, target, o.reminder, &o.attempt, now))
        })
    }

    /// The server acknowledges the commit before its WAL record is flushed
    /// (`synchronous_commit = off` for this transaction only).
    fn attempted_all_unsynced(&self, target: &str, outcomes: &[Outcome], now: Timestamp) -> Result<(), StoreError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        self.write("recording delivery attempts", |tx| {
            tx.batch_execute("SET LOCAL synchronous_commit TO OFF").map_err(db("recording delivery attempts"))?;
            outcomes.iter().try_for_each(|o| record_attempt(tx, &o.id, target, o.reminder, &o.attempt, now))
        })
    }

    fn retry(&self, id: &MessageId, target: Option<&str>, by: &str, now: Timestamp) -> Result<usize, StoreError> {
        self.write("queueing a delivery again", |tx| {
            let fail = db("queueing a delivery again");
            if row_of(tx, id.as_str(), true)?.is_none() {
                return Err(StoreError::NotFound(id.clone()).into());
            }
            let targets: Vec<(String, String)> = tx
                .query(
                    "SELECT target, step FROM deliveries WHERE message_id = $1 AND state != 'delivered'
                     AND ($2::text IS NULL OR target = $2::text) AND (lease_until_ms IS NULL OR lease_until_ms <= $3)
                     ORDER BY target, step FOR UPDATE",
                    &[&id.as_str(), &target, &ms(now)],
                )
                .map_err(&fail)?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            for (t, step) in &targets {
                tx.execute(
                    "UPDATE deliveries SET state = 'pending', next_ms = $4, lease_owner = NULL
                     WHERE message_id = $1 AND target = $2 AND step = $3",
                    &[&id.as_str(), t, step, &ms(now)],
                )
                .map_err(&fail)?;
                let target = if step.is_empty() { t.clone() } else { format!("{t} ({step})") };
                let entry = HistoryEntry { at: now, by: by.to_owned(), event: Event::Retried { target } };
                add_history(tx, id.as_str(), &entry)?;
            }
            Ok(targets.len())
        })
    }

    fn next_due(&self, target: &str) -> Result<Option<Timestamp>, StoreError> {
        self.read("reading the outbox", |tx| {
            let next: Option<i64> = tx
                .query_one(
                    "SELECT MIN(GREATEST(d.next_ms, COALESCE(d.lease_until_ms, 0))) FROM deliveries d
                     JOIN messages m ON m.id = d.message_id
                     WHERE d.target = $1 AND d.state = 'pending' AND m.lifecycle = 'stored'",
                    &[&target],
                )
                .map_err(db("reading the outbox"))?
                .get(0);
            Ok(next.map(ts))
        })
    }

    fn queue_depth(&self, target: &str) -> Result<u64, StoreError> {
        self.read("reading the outbox", |tx| {
            let n: i64 = tx
                .query_one(
                    "SELECT COUNT(*) FROM deliveries d JOIN messages m ON m.id = d.message_id
                     WHERE d.target = $1 AND d.state = 'pending' AND m.lifecycle = 'stored'",
                    &[&target],
                )
                .map_err(db("reading the outbox"))?
                .get(0);
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    fn deliveries(&self) -> Result<Vec<Delivery>, StoreError> {
        self.read("reading the outbox", |tx| {
            let columns = DELIVERY_COLUMNS.split(", ").map(|c| format!("d.{c}")).collect::<Vec<_>>().join(", ");
            let rows = tx
                .query(
                    &format!(
                        "SELECT {columns} FROM deliveries d JOIN messages m ON m.id = d.message_id
                         WHERE m.lifecycle != 'deleted' ORDER BY d.message_id, d.target, d.step != '', d.next_ms, d.step"
                    ),
                    &[],
                )
                .map_err(db("reading the outbox"))?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(delivery_from_row(r)?);
            }
            Ok(out)
        })
    }

    fn import(&self, m: &Imported) -> Result<bool, StoreError> {
        let (meta, followup) = (to_json(&m.meta)?, to_json(&m.followup)?);
        self.write("importing a message", |tx| {
            let id = m.meta.id.as_str();
            let deleted_ms = (m.lifecycle == Lifecycle::Deleted)
                .then(|| m.history.last().map_or(ms(m.meta.started_at), |h| ms(h.at)));
            let inserted = tx
                .execute(
                    "INSERT INTO messages (id, lifecycle, started_ms, meta, followup, deleted_ms, node)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                    &[&id, &m.lifecycle.as_str(), &ms(m.meta.started_at), &meta, &followup, &deleted_ms, &self.node],
                )
                .map_err(db("importing a message"))?;
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
                tx.execute(
                    "INSERT INTO deliveries (message_id, target, extra_to, state, attempts, next_ms,
                     last_attempt_ms, last_error, delivered_ms, ack) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT DO NOTHING",
                    &[
                        &id,
                        &d.target,
                        &to_json(&d.extra_to)?,
                        &state,
                        &i64::from(d.attempts),
                        &d.next_attempt.map(ms).unwrap_or_else(|| ms(m.meta.started_at)),
                        &d.last_attempt.map(ms),
                        &d.last_error,
                        &d.delivered_at.map(ms),
                        &d.ack,
                    ],
                )
                .map_err(db("importing a delivery"))?;
            }
            Ok(true)
        })
    }

    fn reminder_steps(&self) -> Result<Vec<(MessageId, ReminderStep)>, StoreError> {
        self.read("reading reminders", |tx| {
            let rows = tx
                .query(
                    "SELECT r.message_id, r.step, m.followup FROM reminder_steps r JOIN messages m ON m.id = r.message_id
                     WHERE m.lifecycle = 'stored' ORDER BY r.message_id, r.step",
                    &[],
                )
                .map_err(db("reading reminders"))?;
            let mut out = Vec::new();
            for r in &rows {
                let (id, step, followup): (&str, &str, &str) = (r.get(0), r.get(1), r.get(2));
                let called_back = from_json::<FollowUp>(id, followup).map_or(true, |f| f.is_called_back());
                if let (Ok(id), Some(step), false) = (MessageId::parse(id), ReminderStep::parse(step), called_back) {
                    out.push((id, step));
                }
            }
            Ok(out)
        })
    }

    fn queue_reminder(&self, id: &MessageId, reminder: &NewReminder, now: Timestamp) -> Result<bool, StoreError> {
        let to = to_json(&reminder.to)?;
        self.write("queueing a reminder", |tx| {
            let fail = db("queueing a reminder");
            let Some(row) = row_of(tx, id.as_str(), true)? else { return Ok(false) };
            let message = row.into_message()?;
            if message.lifecycle != Lifecycle::Stored || message.followup.is_called_back() {
                return Ok(false);
            }
            let done: Vec<ReminderStep> = tx
                .query("SELECT step FROM reminder_steps WHERE message_id = $1", &[&id.as_str()])
                .map_err(&fail)?
                .iter()
                .filter_map(|r| ReminderStep::parse(r.get::<_, &str>(0)))
                .collect();
            let later = |n: u32| done.iter().any(|d| matches!(d, ReminderStep::Remind(m) if *m >= n));
            let stale = match reminder.step {
                ReminderStep::Escalate => done.contains(&ReminderStep::Escalate),
                ReminderStep::Remind(n) => later(n),
            };
            if stale {
                return Ok(false);
            }
            for step in std::iter::once(&reminder.step).chain(&reminder.covers) {
                tx.execute(
                    "INSERT INTO reminder_steps (message_id, step, queued_ms) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                    &[&id.as_str(), &step.key(), &ms(now)],
                )
                .map_err(&fail)?;
            }
            tx.execute(
                "INSERT INTO deliveries (message_id, target, step, extra_to, state, attempts, next_ms)
                 VALUES ($1, 'smtp', $2, $3, 'pending', 0, $4)",
                &[&id.as_str(), &reminder.step.key(), &to, &ms(now)],
            )
            .map_err(&fail)?;
            let event = Event::ReminderQueued { step: reminder.step, to: reminder.to.clone() };
            add_history(tx, id.as_str(), &HistoryEntry { at: now, by: reminder.by.clone(), event })?;
            Ok(true)
        })
    }

    fn set_transcript(&self, id: &MessageId, transcript: &str) -> Result<bool, StoreError> {
        self.write("storing a transcript", |tx| {
            let fail = db("storing a transcript");
            let meta = tx
                .query_opt(
                    "SELECT meta FROM messages WHERE id = $1 AND lifecycle = 'stored' FOR UPDATE",
                    &[&id.as_str()],
                )
                .map_err(&fail)?;
            let Some(meta) = meta else { return Ok(false) };
            let mut meta: MessageMeta = from_json(id.as_str(), meta.get(0))?;
            meta.transcript = Some(transcript.to_owned());
            tx.execute("UPDATE messages SET meta = $2 WHERE id = $1", &[&id.as_str(), &to_json(&meta)?])
                .map_err(&fail)?;
            Ok(true)
        })
    }

    fn imap_copies(&self) -> Result<Vec<ImapCopy>, StoreError> {
        self.read("reading imap copies", |tx| {
            let rows = tx
                .query(
                    "SELECT m.id, m.meta, m.followup, c.folder, c.uidvalidity, c.uid, c.keywords, c.done, c.restores
                     FROM deliveries d
                     JOIN messages m ON m.id = d.message_id
                     LEFT JOIN imap_copies c ON c.message_id = d.message_id
                     WHERE d.target = 'imap' AND d.state = 'delivered' AND d.step = ''
                       AND m.lifecycle = 'stored' AND NOT COALESCE(c.done, FALSE)
                     ORDER BY m.started_ms, m.id",
                    &[],
                )
                .map_err(db("reading imap copies"))?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let id: &str = r.get(0);
                let (meta, followup) = match (from_json(id, r.get(1)), from_json(id, r.get(2))) {
                    (Ok(meta), Ok(followup)) => (meta, followup),
                    (Err(e), _) | (_, Err(e)) => {
                        tracing::warn!(%id, error = %e, "unreadable message record");
                        continue;
                    }
                };
                let (folder, uidvalidity): (Option<String>, Option<i64>) = (r.get(3), r.get(4));
                let state = match (folder, uidvalidity) {
                    (Some(folder), Some(uidvalidity)) => Some(ImapCopyState {
                        folder,
                        uidvalidity: u32::try_from(uidvalidity).unwrap_or(0),
                        uid: r.get::<_, Option<i64>>(5).and_then(|u| u32::try_from(u).ok()),
                        keywords: r
                            .get::<_, Option<&str>>(6)
                            .and_then(|k| serde_json::from_str(k).ok())
                            .unwrap_or_default(),
                        done: r.get::<_, Option<bool>>(7).unwrap_or(false),
                    }),
                    _ => None,
                };
                let restores = r.get::<_, Option<i64>>(8).and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
                out.push(ImapCopy { meta, followup, state, restores });
            }
            Ok(out)
        })
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
        self.read("reading the history", |tx| {
            Ok(tx
                .query_one("SELECT value FROM counters WHERE name = 'history'", &[])
                .map_err(db("reading the history"))?
                .get(0))
        })
    }

    fn keeps_audio(&self) -> bool {
        true
    }

    fn audio(&self, id: &MessageId) -> Result<Option<Vec<u8>>, StoreError> {
        self.read("reading a recording", |tx| {
            Ok(tx
                .query_opt("SELECT wav FROM audio WHERE id = $1", &[&id.as_str()])
                .map_err(db("reading a recording"))?
                .map(|r| r.get(0)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_passwords_hidden() {
        assert_eq!(redact_url("postgres://vm:secret@db:5432/vm"), "postgres://vm:***@db:5432/vm");
        assert_eq!(redact_url("postgres://vm@db/vm"), "postgres://vm@db/vm");
        assert_eq!(redact_url("postgresql://a:b@h/d?sslmode=disable"), "postgresql://a:***@h/d?sslmode=disable");
        assert_eq!(redact_url("postgres://h/d?password=x&user=y"), "postgres://h/d?***");
        assert!(parse_url("postgres://vm@127.0.0.1:5432/vm").is_ok());
        assert!(parse_url("mysql://vm@db/vm").unwrap_err().contains("expected a URL like"));
        assert!(parse_url("postgres://vm@127.0.0.1:notaport/vm").unwrap_err().contains("invalid PostgreSQL URL"));
        assert!(!parse_url("mysql://vm:pw@db/vm").unwrap_err().contains("pw"));
        assert!(parse_url("postgres://vm@db/vm?sslmode=disable").is_ok());
    }

    #[test]
    fn sslmodes_are_read() {
        let mode = |url: &str| parse_url(url).map(|c| c.get_ssl_mode());
        assert_eq!(mode("postgres://vm@db/vm?sslmode=require"), Ok(SslMode::Require));
        assert_eq!(mode("postgres://vm@db/vm?sslmode=disable"), Ok(SslMode::Disable));
        assert_eq!(mode("postgres://vm@db/vm"), Ok(SslMode::Prefer));
        for strict in ["verify-ca", "verify-full"] {
            let e = parse_url(&format!("postgres://vm@db/vm?connect_timeout=5&sslmode={strict}")).unwrap_err();
            assert!(e.contains(&format!("sslmode={strict}: use sslmode=require")), "{e}");
        }
        assert!(parse_url("postgres://vm@db/vm?sslmode=sometimes").unwrap_err().contains("invalid PostgreSQL URL"));
    }

    #[test]
    fn ca_files_are_checked() {
        assert!(tls_connector(None).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = tls_connector(Some(&missing)).err().unwrap();
        assert!(e.starts_with("store.ca_file ") && e.contains("missing.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(tls_connector(Some(&empty)).err().unwrap().contains("no CERTIFICATE"));
        let e = PostgresStore::open_with_ca_file("postgres://vm:pw@127.0.0.1:1/vm?sslmode=disable", "n", Some(&empty))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sslmode=disable") && !e.contains("pw"), "{e}");
    }
}
