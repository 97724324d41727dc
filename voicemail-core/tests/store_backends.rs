//! The store's behaviours hold on both backends: the embedded SQLite store and the shared
//! PostgreSQL one. Each test body below runs twice, once per backend (modules `sqlite` and
//! `postgres`, made by `both!`): a call's record from `begin` to `finish`, listing, follow-up
//! changes and their refusals, claims with leases, deliveries leased as their message is stored
//! (a hand-off to the storing process's own worker), attempts, retries, reminders, the IMAP
//! watcher's state, the change mark, transcripts and recordings kept by the store.
//!
//! The PostgreSQL runs use a throwaway cluster (testkit `Postgres`), shared by the tests
//! running at the same time, with a database of their own each. Without PostgreSQL installed
//! they are skipped with the reason printed, or fail when `VOICEMAIL_REQUIRE_INTEROP` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

use jiff::Timestamp;
use voicemail_core::CodecKind;
use voicemail_core::followup::{Change, Event, FollowUp, HistoryEntry, ReminderStep};
use voicemail_core::message::{EndReason, MediaStats, MessageId, MessageMeta};
use voicemail_core::store::{
    Attempt, DeliveryState, HandOff, ImapCopyState, Lifecycle, NewDelivery, NewReminder, Outcome, PostgresStore,
    SqliteStore, Store, StoreError,
};
use voicemail_testkit::{Postgres, TempDir, temp_dir};

#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A store under test and what keeps it alive.
struct Opened {
    store: Box<dyn Store>,
    _dir: TempDir,
    _cluster: Option<Arc<Postgres>>,
}

impl std::ops::Deref for Opened {
    type Target = dyn Store;
    fn deref(&self) -> &Self::Target {
        self.store.as_ref()
    }
}

/// The cluster the PostgreSQL runs share while any of them runs; stopped when the last ends.
fn cluster() -> Option<Arc<Postgres>> {
    static SHARED: Mutex<Weak<Postgres>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(pg) = shared.upgrade() {
        return Some(pg);
    }
    let pg = Arc::new(Postgres::start()?);
    *shared = Arc::downgrade(&pg);
    Some(pg)
}

/// A new, empty store of `backend`; `None` when PostgreSQL is not installed (skipped).
fn open(backend: Backend) -> Option<Opened> {
    static DATABASES: AtomicU32 = AtomicU32::new(0);
    let dir = temp_dir("store");
    match backend {
        Backend::Sqlite => {
            let store = SqliteStore::open(&dir.path().join("voicemail.sqlite3")).unwrap();
            Some(Opened { store: Box::new(store), _dir: dir, _cluster: None })
        }
        Backend::Postgres => {
            let pg = cluster()?;
            let n = DATABASES.fetch_add(1, Ordering::SeqCst);
            let url = pg.create_database(&format!("t{}_{n}", std::process::id()));
            let store = PostgresStore::open(&url, "node-a").unwrap();
            Some(Opened { store: Box::new(store), _dir: dir, _cluster: Some(pg) })
        }
    }
}

/// Each test body, run once per backend.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name(super::Backend::Sqlite) })*
        }
        mod postgres {
            $(#[test] fn $name() { super::$name(super::Backend::Postgres) })*
        }
    };
}

both!(
    a_call_from_begin_to_finish,
    follow_up_changes_and_refusals,
    claims_leases_attempts_and_retries,
    handed_deliveries_are_leased_with_their_message,
    reminders_are_queued_once_and_dropped_when_called_back,
    imap_copy_state,
    change_mark_grows_with_every_history_entry,
    transcripts_and_kept_recordings,
);

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_795_779_125 + s).unwrap()
}

fn id(n: u64) -> MessageId {
    MessageId::generate(at(n as i64), n)
}

fn meta(id: &MessageId, started: i64) -> MessageMeta {
    MessageMeta {
        id: id.clone(),
        caller: "+74951234567".into(),
        caller_name: None,
        called: String::new(),
        started_at: at(started),
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

fn recorded(s: i64) -> HistoryEntry {
    HistoryEntry { at: at(s), by: "test".into(), event: Event::Recorded { end_reason: "hang-up".into() } }
}

fn targets(keys: &[&str]) -> Vec<NewDelivery> {
    keys.iter().map(|k| NewDelivery { target: (*k).to_owned(), extra_to: Vec::new() }).collect()
}

/// Stores message `n` (started at `n` s) with deliveries to `keys`.
fn stored(store: &dyn Store, n: u64, keys: &[&str]) -> MessageId {
    let id = id(n);
    assert!(
        store
            .finish(&meta(&id, n as i64), &targets(keys), &recorded(n as i64), None, None, None, at(n as i64))
            .unwrap()
    );
    id
}

fn a_call_from_begin_to_finish(backend: Backend) {
    let Some(store) = open(backend) else { return };
    let (a, b) = (id(1), id(2));
    store.begin(&meta(&a, 1), at(1)).unwrap();
    store.begin(&meta(&b, 2), at(2)).unwrap();
    assert!(matches!(store.begin(&meta(&a, 1), at(3)), Err(StoreError::Exists(_))));
    assert_eq!(store.recording().unwrap(), [a.clone(), b.clone()]);
    assert_eq!(store.recording_on("node-a").unwrap().len(), 2);
    assert_eq!(store.get(&a).unwrap().unwrap().lifecycle, Lifecycle::Recording);

    // A call whose start failed leaves nothing.
    store.abandon(&b).unwrap();
    assert!(store.get(&b).unwrap().is_none());

    let mut m = meta(&a, 1);
    m.duration_ms = 4200;
    assert!(store.finish(&m, &targets(&["maildir", "smtp"]), &recorded(5), None, None, None, at(5)).unwrap());
    assert!(!store.finish(&m, &targets(&["maildir"]), &recorded(6), None, None, None, at(6)).unwrap(), "stored once");
    assert!(store.recording().unwrap().is_empty());
    let got = store.get(&a).unwrap().unwrap();
    assert_eq!((got.lifecycle, got.meta.duration_ms, &got.followup), (Lifecycle::Stored, 4200, &FollowUp::New));
    assert_eq!(got.history, [recorded(5)]);
    let ds: Vec<_> = got.deliveries.iter().map(|d| (d.target.as_str(), d.state)).collect();
    assert_eq!(ds, [("maildir", DeliveryState::Pending), ("smtp", DeliveryState::Pending)]);

    // A message stored without a call record (recovered), with an assignment from the start.
    let c = id(3);
    let (state, entry) =
        FollowUp::New.apply(&Change::Assign { to: "anna@example.com".into() }, "directory", at(7)).unwrap();
    assert!(store.finish(&meta(&c, 0), &[], &recorded(7), Some((&state, &entry)), None, None, at(7)).unwrap());
    let got = store.get(&c).unwrap().unwrap();
    assert_eq!(got.followup, FollowUp::Assigned { to: "anna@example.com".into(), at: at(7) });
    assert_eq!(got.history.len(), 2);

    // Oldest call first; history only when asked; deleted ones only when asked.
    let list = store.list(false, false).unwrap();
    assert_eq!(list.iter().map(|m| m.id().clone()).collect::<Vec<_>>(), [c.clone(), a.clone()]);
    assert!(list.iter().all(|m| m.history.is_empty()));
    assert_eq!(list[1].deliveries.len(), 2);
    let list = store.list(false, true).unwrap();
    assert_eq!(list[0].history.len(), 2);
    store.change(&c, &Change::Delete { force_reason: Some("spam".into()) }, "anna", at(8)).unwrap();
    assert_eq!(store.list(false, false).unwrap().len(), 1);
    assert_eq!(store.list(true, true).unwrap().len(), 2);
    assert!(store.get(&id(99)).unwrap().is_none());
}

fn follow_up_changes_and_refusals(backend: Backend) {
    let Some(store) = open(backend) else { return };
    let a = stored(&*store, 1, &[]);
    let m = store.change(&a, &Change::Assign { to: "anna".into() }, "boss", at(10)).unwrap();
    assert_eq!(m.followup, FollowUp::Assigned { to: "anna".into(), at: at(10) });
    let m = store.change(&a, &Change::Assign { to: "boris".into() }, "boss", at(11)).unwrap();
    assert_eq!(m.history.len(), 3, "recorded, assigned, reassigned");
    let refused = store.change(&a, &Change::Delete { force_reason: None }, "boris", at(12));
    assert!(matches!(refused, Err(StoreError::FollowUp { .. })), "{refused:?}");
    let m = store.change(&a, &Change::CalledBack { note: Some("all fine".into()) }, "boris", at(13)).unwrap();
    assert!(m.followup.is_called_back());
    assert!(matches!(
        store.change(&a, &Change::Assign { to: "x".into() }, "y", at(14)),
        Err(StoreError::FollowUp { .. })
    ));
    store.change(&a, &Change::Delete { force_reason: None }, "boris", at(15)).unwrap();
    let m = store.get(&a).unwrap().unwrap();
    assert_eq!((m.lifecycle, m.history.len()), (Lifecycle::Deleted, 5));
    match store.change(&a, &Change::CalledBack { note: None }, "x", at(16)) {
        Err(StoreError::Deleted { at: when, .. }) => assert_eq!(when, at(15)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store.change(&id(9), &Change::CalledBack { note: None }, "x", at(16)),
        Err(StoreError::NotFound(_))
    ));
    let r = id(10);
    store.begin(&meta(&r, 10), at(10)).unwrap();
    assert!(matches!(store.change(&r, &Change::CalledBack { note: None }, "x", at(16)), Err(StoreError::Recording(_))));
}

fn claims_leases_attempts_and_retries(backend: Backend) {
    let Some(store) = open(backend) else { return };
    let a = stored(&*store, 1, &["maildir", "smtp"]);
    let b = stored(&*store, 2, &["maildir"]);
    let lease = at(100);
    assert_eq!(store.queue_depth("maildir").unwrap(), 2);
    assert_eq!(store.next_due("maildir").unwrap(), Some(at(1)));

    // Claimed with a lease: nobody else gets them until it expires or they are released.
    let claims = store.claim("maildir", at(10), "node-a/1", lease, 1).unwrap();
    assert_eq!(claims.iter().map(|c| &c.meta.id).collect::<Vec<_>>(), [&a]);
    assert!(!claims[0].resumed, "a first attempt: nothing can be stored yet");
    let claims = store.claim("maildir", at(10), "node-a/1", lease, 10).unwrap();
    assert_eq!(claims.iter().map(|c| &c.meta.id).collect::<Vec<_>>(), [&b]);
    assert!(store.claim("maildir", at(11), "node-b/1", lease, 10).unwrap().is_empty(), "leased");
    assert_eq!(store.next_due("maildir").unwrap(), Some(lease));
    store.release(&b, "maildir", None, "node-b/1").unwrap();
    assert!(store.claim("maildir", at(12), "node-b/1", lease, 10).unwrap().is_empty(), "not the owner's to give back");
    store.release(&b, "maildir", None, "node-a/1").unwrap();
    let again = store.claim("maildir", at(12), "node-b/1", lease, 10).unwrap();
    assert_eq!(again.iter().map(|c| &c.meta.id).collect::<Vec<_>>(), [&b]);
    assert!(again[0].resumed, "given back: the giver cannot be told from a crashed attempt");
    // A lease that expired (its owner died) is claimed by the next one, which may find what
    // the dead one stored.
    let expired = store.claim("maildir", at(100), "node-b/2", at(200), 10).unwrap();
    assert_eq!(expired.len(), 2, "both leases ended at 100");
    assert!(expired.iter().all(|c| c.resumed));

    // Outcomes: delivered, failed (retried later), rejected (retried on request).
    store
        .attempted_all(
            "maildir",
            &[
                Outcome { id: a.clone(), reminder: None, attempt: Attempt::Delivered("ok".into()) },
                Outcome {
                    id: b.clone(),
                    reminder: None,
                    attempt: Attempt::Failed { error: "disk".into(), retry_at: at(150) },
                },
            ],
            at(101),
        )
        .unwrap();
    let ds = store.get(&b).unwrap().unwrap().deliveries;
    assert_eq!((ds[0].state, ds[0].attempts, ds[0].next_attempt), (DeliveryState::Failing, 1, Some(at(150))));
    assert!(store.claim("maildir", at(149), "n", at(300), 10).unwrap().is_empty(), "not due yet");
    let c = store.claim("maildir", at(150), "n", at(300), 10).unwrap();
    assert_eq!((c[0].attempts, c[0].resumed), (1, true));
    store.attempted(&b, "maildir", None, &Attempt::Rejected("550 no".into()), at(151)).unwrap();
    let m = store.get(&b).unwrap().unwrap();
    assert_eq!(m.deliveries[0].state, DeliveryState::Rejected);
    assert_eq!(m.history.last().unwrap().event.describe(), "rejected by maildir: 550 no");
    assert!(store.claim("maildir", at(500), "n", at(600), 10).unwrap().is_empty(), "rejected for good");
    let a_m = store.get(&a).unwrap().unwrap();
    assert_eq!(a_m.deliveries[0].state, DeliveryState::Delivered);
    assert_eq!(a_m.deliveries[0].ack.as_deref(), Some("ok"));

    assert_eq!(store.retry(&b, Some("maildir"), "anna", at(160)).unwrap(), 1);
    assert_eq!(store.retry(&a, Some("maildir"), "anna", at(160)).unwrap(), 0, "delivered stays delivered");
    assert!(matches!(store.retry(&id(9), None, "anna", at(160)), Err(StoreError::NotFound(_))));
    assert_eq!(store.claim("maildir", at(160), "n", at(600), 10).unwrap().len(), 1);
    // smtp of `a` is untouched by all this.
    assert_eq!(store.queue_depth("smtp").unwrap(), 1);
    assert!(!store.claim("smtp", at(160), "n", at(600), 10).unwrap()[0].resumed);
    let all = store.deliveries().unwrap();
    assert_eq!(all.len(), 3);
}

/// A hand-off leases the deliveries to its targets in the commit that stores the message: no
/// other claimer gets them until the lease ends, and then as a resumed delivery (the one it
/// was handed to may have stored it before dying). The other targets' are queued as usual.
fn handed_deliveries_are_leased_with_their_message(backend: Backend) {
    let Some(store) = open(backend) else { return };
    let a = id(1);
    let handed = ["maildir".to_owned()];
    let hand_off = HandOff { owner: "node-a/1", until: at(600), targets: &handed };
    let deliveries = targets(&["maildir", "smtp"]);
    assert!(store.finish(&meta(&a, 1), &deliveries, &recorded(1), None, None, Some(hand_off), at(1)).unwrap());
    assert!(store.claim("maildir", at(2), "node-b/1", at(900), 10).unwrap().is_empty(), "handed to node-a/1");
    assert_eq!(store.next_due("maildir").unwrap(), Some(at(600)));
    let smtp = store.claim("smtp", at(2), "node-b/1", at(900), 10).unwrap();
    assert_eq!(smtp.iter().map(|c| (&c.meta.id, c.resumed)).collect::<Vec<_>>(), [(&a, false)]);
    let after = store.claim("maildir", at(601), "node-b/1", at(900), 10).unwrap();
    assert_eq!(after.iter().map(|c| (&c.meta.id, c.resumed)).collect::<Vec<_>>(), [(&a, true)]);
    // The holder records its outcome without a claim (here without a sync, as for a target
    // that finds its earlier copies): the lease goes with it.
    let b = id(2);
    assert!(store.finish(&meta(&b, 2), &deliveries, &recorded(2), None, None, Some(hand_off), at(2)).unwrap());
    let delivered = Attempt::Delivered("stored".into());
    let outcome = Outcome { id: b.clone(), reminder: None, attempt: delivered };
    store.attempted_all_unsynced("maildir", &[outcome], at(3)).unwrap();
    let got = store.get(&b).unwrap().unwrap();
    let ds: Vec<_> = got.deliveries.iter().map(|d| (d.target.as_str(), d.state)).collect();
    assert_eq!(ds, [("maildir", DeliveryState::Delivered), ("smtp", DeliveryState::Pending)]);
}

fn reminders_are_queued_once_and_dropped_when_called_back(backend: Backend) {
    let Some(store) = open(backend) else { return };
    let id = stored(&*store, 1, &["smtp"]);
    let reminder = NewReminder {
        step: ReminderStep::Remind(1),
        covers: Vec::new(),
        to: vec!["anna@example.com".into()],
        by: "reminder".into(),
    };
    assert!(store.queue_reminder(&id, &reminder, at(10)).unwrap());
    assert!(!store.queue_reminder(&id, &reminder, at(11)).unwrap(), "never twice for one step");
    assert_eq!(store.reminder_steps().unwrap(), [(id.clone(), ReminderStep::Remind(1))]);
    let escalation =
        NewReminder { step: ReminderStep::Escalate, covers: vec![ReminderStep::Remind(3)], ..reminder.clone() };
    assert!(store.queue_reminder(&id, &escalation, at(20)).unwrap());
    let stale = NewReminder { step: ReminderStep::Remind(2), ..reminder.clone() };
    assert!(!store.queue_reminder(&id, &stale, at(21)).unwrap());

    let claims = store.claim("smtp", at(30), "me", at(900), 10).unwrap();
    let kinds: Vec<_> = claims.iter().map(|c| c.reminder).collect();
    assert_eq!(kinds, [None, Some(ReminderStep::Remind(1)), Some(ReminderStep::Escalate)]);
    assert_eq!(claims[1].extra_to, ["anna@example.com"]);
    store.attempted(&id, "smtp", Some(ReminderStep::Remind(1)), &Attempt::Delivered("250 ok".into()), at(31)).unwrap();
    store.release(&id, "smtp", None, "me").unwrap();
    store.release(&id, "smtp", Some(ReminderStep::Escalate), "me").unwrap();

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

fn imap_copy_state(backend: Backend) {
    let Some(store) = open(backend) else { return };
    let a = stored(&*store, 1, &["imap"]);
    let b = stored(&*store, 2, &["imap"]);
    assert!(store.imap_copies().unwrap().is_empty(), "not delivered yet");
    store.claim("imap", at(5), "n", at(50), 10).unwrap();
    store.attempted(&a, "imap", None, &Attempt::Delivered("OK".into()), at(6)).unwrap();
    store.release(&b, "imap", None, "n").unwrap();
    let copies = store.imap_copies().unwrap();
    assert_eq!(copies.len(), 1);
    assert_eq!((&copies[0].meta.id, &copies[0].state, copies[0].restores), (&a, &None, 0));

    let mark = store.change_mark().unwrap();
    let state = ImapCopyState {
        folder: "Voicemail".into(),
        uidvalidity: 7,
        uid: Some(3),
        keywords: vec!["VM-Assigned".into()],
        done: false,
    };
    store.set_imap_copy(&a, &state, at(7)).unwrap();
    assert_eq!(store.imap_copies().unwrap()[0].state.as_ref(), Some(&state));
    assert_eq!(store.change_mark().unwrap(), mark, "no history entry");
    let entry = HistoryEntry {
        at: at(8),
        by: "imap".into(),
        event: Event::Restored { target: "imap".into(), detail: "put back".into() },
    };
    let restored = ImapCopyState { uid: Some(9), ..state.clone() };
    store.imap_copy_restored(&a, &restored, &entry).unwrap();
    let copy = &store.imap_copies().unwrap()[0];
    assert_eq!((copy.state.as_ref().and_then(|s| s.uid), copy.restores), (Some(9), 1));
    assert!(store.change_mark().unwrap() > mark);
    assert_eq!(store.get(&a).unwrap().unwrap().history.last(), Some(&entry));
    store.set_imap_copy(&a, &ImapCopyState { done: true, ..restored }, at(9)).unwrap();
    assert!(store.imap_copies().unwrap().is_empty(), "settled");
    assert!(store.set_imap_copy(&id(99), &state, at(10)).is_err(), "no such message");
}

fn change_mark_grows_with_every_history_entry(backend: Backend) {
    let Some(store) = open(backend) else { return };
    let mut last = store.change_mark().unwrap();
    let mut grew = |what: &str| {
        let now = store.change_mark().unwrap();
        assert!(now > last, "{what}: {now} after {last}");
        last = now;
    };
    let a = stored(&*store, 1, &["maildir"]);
    grew("stored");
    store.change(&a, &Change::Assign { to: "anna".into() }, "boss", at(2)).unwrap();
    grew("assigned");
    store.claim("maildir", at(3), "n", at(30), 1).unwrap();
    store.attempted(&a, "maildir", None, &Attempt::Delivered("ok".into()), at(4)).unwrap();
    grew("delivered");
    store.change(&a, &Change::CalledBack { note: None }, "anna", at(5)).unwrap();
    grew("called back");
    let before = store.change_mark().unwrap();
    store.claim("maildir", at(6), "n", at(60), 1).unwrap();
    assert_eq!(store.change_mark().unwrap(), before, "a claim adds no history entry");

    // Writers at once: every entry counts, none is lost.
    let store = Arc::new(store);
    let ids: Vec<MessageId> = (10..14).map(|n| stored(&**store, n, &[])).collect();
    let before = store.change_mark().unwrap();
    std::thread::scope(|s| {
        for (i, id) in ids.iter().enumerate() {
            let store = &store;
            s.spawn(move || {
                for k in 0..5 {
                    store.change(id, &Change::Assign { to: format!("p{i}-{k}") }, "boss", at(20 + k)).unwrap();
                }
            });
        }
    });
    assert_eq!(store.change_mark().unwrap() - before, 20);
    for id in &ids {
        assert_eq!(store.get(id).unwrap().unwrap().history.len(), 6);
    }
}

fn transcripts_and_kept_recordings(backend: Backend) {
    let Some(store) = open(backend) else { return };
    let a = id(1);
    assert!(!store.set_transcript(&a, "hello").unwrap(), "unknown");
    store.begin(&meta(&a, 1), at(1)).unwrap();
    assert!(!store.set_transcript(&a, "hello").unwrap(), "still recording");
    let wav = b"RIFF....WAVEfmt recording bytes".to_vec();
    assert!(store.finish(&meta(&a, 1), &[], &recorded(2), None, Some(&wav), None, at(2)).unwrap());
    assert!(store.set_transcript(&a, "hello").unwrap());
    assert_eq!(store.get(&a).unwrap().unwrap().meta.transcript.as_deref(), Some("hello"));
    let kept = store.audio(&a).unwrap();
    if store.keeps_audio() {
        assert_eq!(kept.as_deref(), Some(&wav[..]));
    } else {
        assert_eq!(kept, None, "the spool's file is the recording");
    }
    store.change(&a, &Change::Delete { force_reason: Some("test".into()) }, "x", at(3)).unwrap();
    assert_eq!(store.audio(&a).unwrap(), None, "deleted with its message");
    assert!(!store.set_transcript(&a, "again").unwrap(), "deleted");
}
