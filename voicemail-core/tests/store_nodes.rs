//! Two nodes on one PostgreSQL store (`[store] url`), each a `Mailbox` with a spool and a node
//! name of its own, as two answering machines of a cluster are:
//!
//! - a delivery is made exactly once when both nodes run delivery passes at the same time;
//! - a delivery claimed by a node that died (leased, never attempted) is taken over by the
//!   other once the lease expired, and not before;
//! - a follow-up change made on one node is seen on the other, and moves its change mark; a
//!   deletion on one node removes the recording from the database and, at its next spool
//!   cleaning, from the spool of the node that recorded it;
//! - a node's recovery never touches the other node's call in progress (nor does a node
//!   misconfigured with the same name, whose spool lacks the recording); an operator recovers
//!   a dead node's calls from its spool on another node (`recover_spool`), as `interrupted`;
//! - a message recorded on one node is delivered by the other after the first node's spool
//!   is gone: its recording is in the database;
//! - nodes migrating a new database at once both succeed, and apply each step once; a schema
//!   newer than the program is refused.
//!
//! Without PostgreSQL installed the tests are skipped with the reason printed, or fail when
//! `VOICEMAIL_REQUIRE_INTEROP` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use jiff::{SignedDuration, Timestamp};
use voicemail_core::config::Config;
use voicemail_core::deliver::MaildirTarget;
use voicemail_core::followup::Event;
use voicemail_core::store::{Lifecycle, PostgresStore, Store};
use voicemail_core::{CallSetup, EndReason, Mailbox, StartedCall};
use voicemail_testkit::Postgres;

fn t0() -> Timestamp {
    "2026-11-27T11:33:00Z".parse().unwrap()
}

/// Node `node`'s configuration: its spool under `dir/<node>`, the shared Maildir, the store.
fn config(dir: &Path, url: &str, node: &str) -> Config {
    let mut c = support::mailbox_config(&dir.join(node));
    c.delivery.maildir = Some(MaildirTarget { root: dir.join("shared"), folder: "Voicemail".to_owned() });
    c.store.url = Some(url.to_owned());
    c.store.node = node.to_owned();
    c
}

/// A cluster and two nodes on a new database of it.
struct Cluster {
    tmp: support::TempDir,
    url: String,
    a: Mailbox,
    b: Mailbox,
    _pg: Postgres,
}

fn cluster(tag: &str) -> Option<Cluster> {
    let pg = Postgres::start()?;
    let url = pg.create_database("voicemail");
    let tmp = support::TempDir::new(tag);
    let a = Mailbox::open(config(tmp.path(), &url, "a")).unwrap();
    let b = Mailbox::open(config(tmp.path(), &url, "b")).unwrap();
    Some(Cluster { tmp, url, a, b, _pg: pg })
}

fn maildir(tmp: &Path) -> Vec<std::path::PathBuf> {
    support::maildir_files(&tmp.join("shared/.Voicemail"))
}

#[test]
fn a_delivery_is_made_once_when_both_nodes_deliver_at_once() {
    let Some(c) = cluster("nodes-once") else { return };
    let mut ids = Vec::new();
    for i in 0..12 {
        let node = if i % 2 == 0 { &c.a } else { &c.b };
        ids.push(support::record(node, CallSetup::new(format!("+7495000{i:04}"), t0()), 0.2, t0()).id);
    }
    let now = t0() + SignedDuration::from_secs(1);
    let barrier = std::sync::Barrier::new(2);
    let (ra, rb) = std::thread::scope(|s| {
        let a = s.spawn(|| {
            barrier.wait();
            c.a.deliver_due("maildir", now).unwrap()
        });
        let b = s.spawn(|| {
            barrier.wait();
            c.b.deliver_due("maildir", now).unwrap()
        });
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(ra.delivered.len() + rb.delivered.len(), 12, "{ra:?} {rb:?}");
    assert_eq!(ra.attempted + rb.attempted, 12, "no delivery attempted twice");
    assert_eq!(maildir(c.tmp.path()).len(), 12);
    for id in &ids {
        let m = c.a.show(id).unwrap();
        let delivered = m.history.iter().filter(|h| matches!(h.event, Event::Delivered { .. })).count();
        assert_eq!(delivered, 1, "{id}");
    }
}

#[test]
fn a_dead_nodes_claim_is_taken_over_after_its_lease() {
    let Some(c) = cluster("nodes-lease") else { return };
    let meta = support::record(&c.a, CallSetup::new("+74951112233", t0()), 0.2, t0());
    // Node a claims the delivery and dies before attempting it.
    let dead = PostgresStore::open(&c.url, "a").unwrap();
    let lease_until = t0() + SignedDuration::from_mins(15);
    assert_eq!(dead.claim("maildir", t0(), "a/pid1", lease_until, 16).unwrap().len(), 1);
    drop(dead);

    let r = c.b.deliver_due("maildir", t0() + SignedDuration::from_mins(1)).unwrap();
    assert_eq!(r.attempted, 0, "leased by a");
    assert_eq!(c.b.next_due("maildir").unwrap(), Some(lease_until));
    let r = c.b.deliver_due("maildir", lease_until + SignedDuration::from_secs(1)).unwrap();
    assert_eq!(r.delivered, [(meta.id.clone(), "maildir".to_owned())]);
    assert_eq!(maildir(c.tmp.path()).len(), 1);
}

#[test]
fn a_change_on_one_node_is_seen_on_the_other() {
    let Some(c) = cluster("nodes-change") else { return };
    let meta = support::record(&c.a, CallSetup::new("+74951112233", t0()), 0.2, t0());
    let mark = c.b.change_mark().unwrap();
    assert_eq!(c.b.list(false).unwrap().len(), 1, "b lists a's message");
    c.a.called_back(&meta.id, "anna", Some("done"), t0() + SignedDuration::from_mins(5)).unwrap();
    assert!(c.b.show(&meta.id).unwrap().followup.is_called_back());
    assert!(c.b.change_mark().unwrap() > mark);
    // And back: b deletes, a sees it.
    c.b.delete(&meta.id, None, "boris", t0() + SignedDuration::from_mins(6)).unwrap();
    assert_eq!(c.a.show(&meta.id).unwrap().lifecycle, Lifecycle::Deleted);
    assert!(c.a.audio(&meta.id).unwrap().is_none(), "the recording went with the message");
    // a's own file goes at its next spool cleaning (the runner's recovery thread, every minute).
    assert!(c.a.shares_store());
    let file = meta.wav_path.clone().unwrap();
    assert!(file.is_file());
    c.a.clean_spool();
    assert!(!file.exists(), "a's copy of the deleted recording is removed");
}

#[test]
fn recovery_leaves_another_nodes_live_call_alone_and_an_operator_recovers_a_dead_nodes_spool() {
    let Some(c) = cluster("nodes-recover") else { return };
    let StartedCall { mut call, lease } =
        c.a.start_call(CallSetup::new("+74957654321", t0()), std::time::Instant::now()).unwrap();
    let mut caller = support::Caller::new();
    caller.answer(&mut call);
    caller.talk(&mut call, 100); // 2 s
    let id = lease.id().clone();

    // Node b's own recovery: a's call is not b's.
    assert!(c.b.recover(t0()).unwrap().is_empty());
    let b_store = PostgresStore::open(&c.url, "b").unwrap();
    assert!(b_store.recording().unwrap().is_empty());
    assert_eq!(b_store.recording_on("a").unwrap(), std::slice::from_ref(&id));
    // Pointed at a's spool while a records, the operator's recovery leaves the call alone.
    let a_spool = c.tmp.path().join("a/spool");
    assert!(c.b.recover_spool(&a_spool, "a", t0()).unwrap().is_empty(), "a's call is live");
    assert_eq!(c.b.show(&id).unwrap().lifecycle, Lifecycle::Recording);

    // A node misconfigured with a's name (another spool) does not take the call either.
    let mut twin = config(c.tmp.path(), &c.url, "twin");
    twin.store.node = "a".to_owned();
    assert!(Mailbox::open(twin).unwrap().recover(t0()).unwrap().is_empty());
    assert_eq!(c.b.show(&id).unwrap().lifecycle, Lifecycle::Recording);

    // Node a dies (its lock on the recording goes with it) and does not come back.
    drop((call, lease));
    let recovered = c.b.recover_spool(&a_spool, "a", t0()).unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!((&recovered[0].id, recovered[0].end_reason), (&id, EndReason::Interrupted));
    assert!(recovered[0].duration_ms >= 1500, "{} ms", recovered[0].duration_ms);
    assert!(c.b.recover_spool(&a_spool, "a", t0()).unwrap().is_empty(), "once");
    let audio = c.b.audio(&id).unwrap().expect("the recording is in the store");
    std::fs::remove_dir_all(c.tmp.path().join("a")).unwrap();
    assert_eq!(c.b.audio(&id).unwrap().as_deref(), Some(&audio[..]));
    let r = c.b.deliver_due("maildir", t0() + SignedDuration::from_secs(1)).unwrap();
    assert_eq!(r.delivered.len(), 1);
    let bytes = std::fs::read(&maildir(c.tmp.path())[0]).unwrap();
    let (_, attachment) = support::message_id_and_attachment(&bytes);
    assert_eq!(attachment, audio);
    assert!(c.b.recover_spool(&c.tmp.path().join("nowhere"), "a", t0()).is_err(), "no such spool");
}

#[test]
fn a_message_recorded_on_one_node_is_delivered_by_the_other_without_its_spool() {
    let Some(c) = cluster("nodes-audio") else { return };
    let meta = support::record(&c.a, CallSetup::new("+74951112233", t0()), 1.0, t0());
    let wav = std::fs::read(meta.wav_path.as_ref().unwrap()).unwrap();
    assert!(wav.len() > 8000, "one second of audio");
    drop(c.a);
    std::fs::remove_dir_all(c.tmp.path().join("a")).unwrap();

    assert_eq!(c.b.audio(&meta.id).unwrap().as_deref(), Some(&wav[..]));
    let r = c.b.deliver_due("maildir", t0() + SignedDuration::from_secs(1)).unwrap();
    assert_eq!(r.delivered, [(meta.id.clone(), "maildir".to_owned())]);
    let files = maildir(c.tmp.path());
    assert_eq!(files.len(), 1);
    let (_, attachment) = support::message_id_and_attachment(&std::fs::read(&files[0]).unwrap());
    assert_eq!(attachment, wav, "the attachment is the recording, byte for byte");
}

#[test]
fn nodes_migrating_at_once_apply_each_step_once() {
    let Some(pg) = Postgres::start() else { return };
    for round in 0..3 {
        let url = pg.create_database(&format!("migrate_{round}"));
        let barrier = std::sync::Barrier::new(4);
        std::thread::scope(|s| {
            let opened: Vec<_> = (0..4)
                .map(|i| {
                    let (url, barrier) = (&url, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        PostgresStore::open(url, &format!("n{i}")).map(|s| s.schema_version().unwrap())
                    })
                })
                .collect();
            for o in opened {
                let version = o.join().unwrap().unwrap();
                assert_eq!(version, 1);
            }
        });
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let rows: i64 = client.query_one("SELECT COUNT(*) FROM schema_migrations", &[]).unwrap().get(0);
        assert_eq!(rows, 1, "one row per step");
        if round == 0 {
            client.execute("INSERT INTO schema_migrations (version) VALUES (99)", &[]).unwrap();
            let e = PostgresStore::open(&url, "n").unwrap_err().to_string();
            assert!(e.contains("schema version 99 is newer than this program's (1)"), "{e}");
        }
    }
}

/// Connections the server closed (a restart, an administrator, a proxy) are replaced: the
/// store keeps working after every connection of its pool was terminated.
#[test]
fn connections_closed_by_the_server_are_replaced() {
    let Some(c) = cluster("nodes-reconnect") else { return };
    let meta = support::record(&c.a, CallSetup::new("+74951112233", t0()), 0.2, t0());
    // Several connections in the pool: parallel readers.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| c.a.list(true).unwrap());
        }
    });
    let mut admin = postgres::Client::connect(&c.url, postgres::NoTls).unwrap();
    for round in 0..2 {
        let killed: i64 = admin
            .query_one(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE application_name = 'voicemail' AND pid <> pg_backend_pid()",
                &[],
            )
            .unwrap()
            .get(0);
        assert!(killed >= 1, "round {round}: {killed} connections terminated");
        assert_eq!(c.a.show(&meta.id).unwrap().meta.id, meta.id);
        c.a.assign(&meta.id, &format!("anna{round}"), "boss", t0()).unwrap();
        assert_eq!(c.b.list(false).unwrap().len(), 1);
    }
}
