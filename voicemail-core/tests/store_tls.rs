//! The shared store over TLS (`sslmode` in `[store] url`, `[store] ca_file`), against a
//! PostgreSQL that serves TLS with a certificate of a test CA and accepts TCP connections only
//! over TLS (testkit `Postgres::start_tls`, `hostssl` in `pg_hba.conf`):
//!
//! - with `sslmode=require` and the test CA as `ca_file`, a mailbox records a call and the
//!   store gives it back, recording included; the default `sslmode` (`prefer`) uses TLS too;
//! - a CA that did not issue the server's certificate fails the connection with an error that
//!   says TLS failed and why, without the password, with `prefer` too (no fallback to plain
//!   text); so do the public CAs (no `ca_file`);
//! - `sslmode=disable` is refused by that server: the tests above did use TLS;
//! - against a server without TLS, `require` fails and `prefer` connects in clear;
//! - the configuration refuses a `ca_file` without a `url` or with `sslmode=disable`, and
//!   libpq's `verify-full` with a pointer to `require`.
//!
//! Without PostgreSQL installed the server tests are skipped with the reason printed, or fail
//! when `VOICEMAIL_REQUIRE_INTEROP` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

use jiff::Timestamp;
use voicemail_core::config::Config;
use voicemail_core::store::{Lifecycle, PostgresStore, Store};
use voicemail_core::{CallSetup, Mailbox};
use voicemail_testkit::{Postgres, TempDir, TestCa, temp_dir};

/// A TLS-only server, the CA of its certificate and another CA.
struct Server {
    pg: Postgres,
    ca: PathBuf,
    other_ca: PathBuf,
    _dir: TempDir,
}

/// The server the tests running at the same time share; stopped when the last ends.
fn server() -> Option<Arc<Server>> {
    static SHARED: Mutex<Weak<Server>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = shared.upgrade() {
        return Some(s);
    }
    let dir = temp_dir("store-tls");
    let ca = TestCa::new(&dir.path().join("ca"));
    let issued = ca.issue("db", &["127.0.0.1", "localhost"]);
    let other = TestCa::new(&dir.path().join("other-ca"));
    let pg = Postgres::start_tls(&issued)?;
    let s = Arc::new(Server { pg, ca: ca.ca_file(), other_ca: other.ca_file(), _dir: dir });
    *shared = Arc::downgrade(&s);
    Some(s)
}

impl Server {
    /// A new database's URL with a password (trust authentication ignores it; errors must not
    /// show it) and `query`.
    fn url(&self, query: &str) -> String {
        static DATABASES: AtomicU32 = AtomicU32::new(0);
        let n = DATABASES.fetch_add(1, Ordering::SeqCst);
        let plain = self.pg.create_database(&format!("tls{}_{n}", std::process::id()));
        let url = plain.replacen("postgres@", "postgres:s3cret@", 1);
        if query.is_empty() { url } else { format!("{url}?{query}") }
    }
}

fn t0() -> Timestamp {
    "2026-12-03T08:00:00Z".parse().unwrap()
}

/// Opening a store at `url` with `ca_file` fails; the error's text.
fn refused(url: &str, ca_file: Option<&Path>) -> String {
    match PostgresStore::open_with_ca_file(url, "n", ca_file) {
        Ok(_) => panic!("{url} with {ca_file:?} should fail"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn require_with_the_servers_ca_stores_and_reads_back() {
    let Some(s) = server() else { return };
    let dir = temp_dir("store-tls-mailbox");
    let mut config = support::mailbox_config(dir.path());
    config.store.url = Some(s.url("sslmode=require"));
    config.store.ca_file = Some(s.ca.clone());
    config.store.node = "a".to_owned();
    let mailbox = Mailbox::open(config).unwrap();
    let meta = support::record(&mailbox, CallSetup::new("+74951234567", t0()), 0.2, t0());
    let got = mailbox.show(&meta.id).unwrap();
    assert_eq!((got.lifecycle, got.meta.caller.as_str()), (Lifecycle::Stored, "+74951234567"));
    let wav = mailbox.audio(&meta.id).unwrap().expect("the recording is in the database");
    assert!(wav.starts_with(b"RIFF"), "a WAV");
}

#[test]
fn prefer_uses_tls_when_the_server_offers_it() {
    let Some(s) = server() else { return };
    let store = PostgresStore::open_with_ca_file(&s.url(""), "n", Some(&s.ca)).unwrap();
    assert!(store.list(true, false).unwrap().is_empty());
    assert_eq!(store.schema_version().unwrap(), 1);
}

#[test]
fn a_certificate_of_another_ca_is_refused() {
    let Some(s) = server() else { return };
    for query in ["sslmode=require", "sslmode=prefer"] {
        let e = refused(&s.url(query), Some(&s.other_ca));
        assert!(e.contains("TLS failed") && e.contains("certificate"), "{query}: {e}");
        // Why: both test CAs have the same name, so the other one's signature does not match.
        assert!(e.contains("did not verify (BadSignature)"), "{query}: says why: {e}");
        assert!(!e.contains("s3cret") && e.contains("postgres:***@"), "{query}: password redacted: {e}");
    }
    // Without ca_file: the public CAs, which did not issue it either.
    let e = refused(&s.url("sslmode=require"), None);
    assert!(e.contains("TLS failed") && e.contains("UnknownIssuer"), "{e}");
}

#[test]
fn the_server_refuses_connections_without_tls() {
    let Some(s) = server() else { return };
    let e = refused(&s.url("sslmode=disable"), None);
    assert!(e.contains("no pg_hba.conf entry") && e.contains("no encryption"), "{e}");
    assert!(!e.contains("s3cret"), "{e}");
}

#[test]
fn require_refuses_a_server_without_tls_and_prefer_speaks_to_it_in_clear() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.create_database("plain");
    let e = refused(&format!("{url}?sslmode=require"), None);
    assert!(e.contains("TLS handshake: server does not support TLS"), "{e}");
    let store = PostgresStore::open(&url, "n").unwrap();
    assert!(store.list(true, false).unwrap().is_empty());
}

fn config_error(store: &str) -> (Option<String>, String) {
    let text = format!("mailbox = \"Sales\"\ntimezone = \"Europe/Moscow\"\nspool = \"spool\"\n\n[store]\n{store}");
    match Config::from_toml_str(&text) {
        Ok(_) => panic!("should be refused:\n{text}"),
        Err(e) => (e.key().map(str::to_owned), e.to_string()),
    }
}

#[test]
fn the_configuration_reads_and_checks_ca_file() {
    let text = "mailbox = \"Sales\"\ntimezone = \"Europe/Moscow\"\nspool = \"spool\"\n\n[store]\n\
                url = \"postgres://vm@db.example.com/vm?sslmode=require\"\nca_file = \"/etc/voicemail/db-ca.pem\"\n";
    let c = Config::from_toml_str(text).unwrap();
    assert_eq!(c.store.ca_file.as_deref(), Some(Path::new("/etc/voicemail/db-ca.pem")));

    let (key, e) = config_error("ca_file = \"/etc/voicemail/db-ca.pem\"\n");
    assert_eq!(key.as_deref(), Some("store.ca_file"), "{e}");
    assert!(e.contains("set store.url"), "{e}");
    let (key, e) = config_error("url = \"postgres://vm@db/vm?sslmode=disable\"\nca_file = \"ca.pem\"\n");
    assert_eq!(key.as_deref(), Some("store.ca_file"), "{e}");
    assert!(e.contains("sslmode=disable"), "{e}");
    let (key, e) = config_error("url = \"postgres://vm@db/vm?sslmode=verify-full\"\n");
    assert_eq!(key.as_deref(), Some("store.url"), "{e}");
    assert!(e.contains("use sslmode=require"), "{e}");
    assert!(
        Config::from_toml_str(
            "mailbox = \"Sales\"\ntimezone = \"Europe/Moscow\"\nspool = \"spool\"\n\n[store]\n\
         url = \"postgres://vm@db/vm?sslmode=require\"\n"
        )
        .is_ok()
    );
}
