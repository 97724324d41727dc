//! The `Mailbox` owns a message's whole life: a call started through it records into its spool,
//! is stored with its deliveries in one step, is delivered, followed up and deleted with its
//! history; a call whose process died is recovered by whoever looks first, a live one never;
//! several mailboxes (as several processes would) on one spool never lose an update; a call
//! discarded without a message (an INVITE never ACKed) leaves no record, file or recovery; a
//! full spool refuses new calls without leaving files; an older JSON spool is imported.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use voicemail_core::config::Config;
use voicemail_core::deliver::MaildirTarget;
use voicemail_core::followup::{Event as HistoryEvent, FollowUp, FollowUpError};
use voicemail_core::store::{DeliveryState, Lifecycle, StoreError};
use voicemail_core::{CallSetup, EndReason, Input, Mailbox, MailboxError, MessageId, MessageMeta, StartedCall};

fn config(dir: &Path, maildir: bool) -> Config {
    let mut c = support::mailbox_config(dir);
    c.delivery.maildir = maildir.then(|| MaildirTarget { root: dir.join("Maildir"), folder: "Voicemail".to_owned() });
    c
}

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn record(mailbox: &Mailbox, caller: &str, started: &str, seconds: u32) -> MessageMeta {
    support::record(mailbox, CallSetup::new(caller, at(started)), f64::from(seconds), at(started))
}

fn wavs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .collect();
    v.sort();
    v
}

fn maildir_files(dir: &Path) -> Vec<PathBuf> {
    let new = dir.join("Maildir/.Voicemail/new");
    std::fs::read_dir(new).map(|r| r.map(|e| e.unwrap().path()).collect()).unwrap_or_default()
}

#[test]
fn a_call_is_recorded_stored_delivered_followed_up_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mailbox = Mailbox::open(config(dir.path(), true)).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    {
        let seen = seen.clone();
        mailbox.subscribe(move |m| seen.lock().unwrap().push(m.id.clone()));
    }
    let meta = record(&mailbox, "+74951234567", "2026-11-27T10:00:00Z", 3);
    assert_eq!(meta.end_reason, EndReason::HangUp);
    assert!((2_980..=3_100).contains(&meta.duration_ms), "{}", meta.duration_ms);
    let wav = meta.wav_path.clone().unwrap();
    assert_eq!(wav, dir.path().join("spool").join(format!("{}.wav", meta.id)));
    assert_eq!(hound::WavReader::open(&wav).unwrap().duration() as u64, meta.duration_ms * 8);
    assert_eq!(*seen.lock().unwrap(), vec![meta.id.clone()], "listeners hear of it once it is stored");

    // Stored and queued, not yet delivered.
    let m = mailbox.show(&meta.id).unwrap();
    assert_eq!(m.lifecycle, Lifecycle::Stored);
    assert_eq!(m.meta, meta);
    assert_eq!(m.followup, FollowUp::New);
    assert_eq!(m.deliveries.len(), 1);
    assert_eq!(m.deliveries[0].state, DeliveryState::Pending);
    assert!(maildir_files(dir.path()).is_empty());

    let report = mailbox.deliver_all_due(Timestamp::now()).unwrap();
    assert_eq!(report.delivered, vec![(meta.id.clone(), "maildir".to_owned())]);
    assert_eq!(maildir_files(dir.path()).len(), 1);
    assert_eq!(mailbox.deliver_all_due(Timestamp::now()).unwrap().attempted, 0, "delivered once");
    assert_eq!(mailbox.show(&meta.id).unwrap().deliveries[0].state, DeliveryState::Delivered);

    // Follow-up, with history.
    let t = at("2026-11-27T11:00:00Z");
    mailbox.assign(&meta.id, "Anna", "boss", t).unwrap();
    let refused = mailbox.delete(&meta.id, None, "boss", t).unwrap_err();
    assert!(
        matches!(
            refused,
            MailboxError::Store(StoreError::FollowUp { source: FollowUpError::NotCalledBack { .. }, .. })
        ),
        "{refused}"
    );
    mailbox.called_back(&meta.id, "Anna", Some("ordered 3 more"), t).unwrap();
    assert!(mailbox.assign(&meta.id, "Boris", "boss", t).is_err(), "CalledBack is final");
    let deleted = mailbox.delete(&meta.id, None, "Anna", t).unwrap();
    assert_eq!(deleted.lifecycle, Lifecycle::Deleted);
    assert!(!wav.exists(), "the recording is gone");
    assert!(mailbox.list(false).unwrap().is_empty());
    let all = mailbox.list_all().unwrap();
    let events: Vec<String> = all[0].history.iter().map(|h| format!("{}:{}", h.by, h.event.describe())).collect();
    assert_eq!(
        events,
        [
            "answering-machine:recorded (ended by hang-up)",
            &format!("delivery:delivered to maildir: {}", all[0].deliveries[0].ack.as_deref().unwrap()),
            "boss:assigned to Anna",
            "Anna:called back: ordered 3 more",
            "Anna:deleted",
        ]
    );
    assert!(matches!(mailbox.assign(&meta.id, "X", "boss", t), Err(MailboxError::Store(StoreError::Deleted { .. }))));
}

#[test]
fn forced_deletion_needs_a_reason_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mailbox = Mailbox::open(config(dir.path(), false)).unwrap();
    let meta = record(&mailbox, "+74951234567", "2026-11-27T10:00:00Z", 1);
    for bad in ["", "  ", "a\u{7}b"] {
        assert!(mailbox.delete(&meta.id, Some(bad), "boss", Timestamp::now()).is_err(), "{bad:?}");
    }
    mailbox.delete(&meta.id, Some("spam"), "boss", Timestamp::now()).unwrap();
    let h = &mailbox.show(&meta.id).unwrap().history;
    assert_eq!(h.last().unwrap().event, HistoryEvent::Deleted { forced: true, reason: Some("spam".into()) });
}

#[test]
fn without_targets_messages_stay_in_the_spool_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mailbox = Mailbox::open(config(dir.path(), false)).unwrap();
    let meta = record(&mailbox, "+74951234567", "2026-11-27T10:00:00Z", 1);
    assert!(mailbox.show(&meta.id).unwrap().deliveries.is_empty());
    drop(mailbox);
    // A restart on a spool that holds messages and has no target works.
    let again = Mailbox::open(config(dir.path(), false)).unwrap();
    assert_eq!(again.list(false).unwrap().len(), 1);
    assert!(again.recover(Timestamp::now()).unwrap().is_empty());
    // A target configured later does not resend old messages; new ones go out.
    let with = Mailbox::open(config(dir.path(), true)).unwrap();
    let second = record(&with, "+74951234567", "2026-11-27T10:05:00Z", 1);
    let report = with.deliver_all_due(Timestamp::now()).unwrap();
    assert_eq!(report.delivered, vec![(second.id, "maildir".to_owned())]);
}

#[test]
fn a_live_call_is_never_recovered_and_a_dead_one_is() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Mailbox::open(config(dir.path(), true)).unwrap();
    // Another process on the same spool: its own store connection and its own file handles.
    let other = Mailbox::open(config(dir.path(), true)).unwrap();

    let StartedCall { mut call, lease } =
        recorder.start_call(CallSetup::new("+74951112233", at("2026-11-27T10:00:00Z")), Instant::now()).unwrap();
    let mut driver = support::Caller::new();
    driver.answer(&mut call);
    driver.talk(&mut call, 150);
    // While the call lives, recovery and delivery from the other process leave it alone.
    assert!(other.recover(Timestamp::now()).unwrap().is_empty());
    assert_eq!(other.deliver_all_due(Timestamp::now()).unwrap().attempted, 0);
    assert_eq!(other.list(false).unwrap()[0].lifecycle, Lifecycle::Recording);
    // The call goes on and ends normally: its real message is the one stored.
    driver.now += Duration::from_secs(1);
    call.handle_input(Input::Hangup(driver.now)).unwrap();
    let meta = driver.drain(&mut call).1.unwrap();
    let stored = recorder.finish_call(lease, meta, Timestamp::now()).unwrap();
    assert_eq!(stored.end_reason, EndReason::HangUp);
    assert!(other.recover(Timestamp::now()).unwrap().is_empty());
    assert_eq!(other.show(&stored.id).unwrap().meta.end_reason, EndReason::HangUp);

    // A call whose recorder vanished (its call and lease dropped, as at a crash): the other
    // process recovers it with the audio it has and the caller.
    let StartedCall { mut call, lease } =
        recorder.start_call(CallSetup::new("+74959998877", at("2026-11-27T10:10:00Z")), Instant::now()).unwrap();
    let mut driver = support::Caller::new();
    driver.answer(&mut call);
    driver.talk(&mut call, 100);
    let id = lease.id().clone();
    drop(call);
    drop(lease);
    let recovered = other.recover(Timestamp::now()).unwrap();
    assert_eq!(recovered.len(), 1);
    let r = &recovered[0];
    assert_eq!((r.id.clone(), r.caller.as_str(), r.end_reason), (id.clone(), "+74959998877", EndReason::Interrupted));
    assert!((1_900..=2_100).contains(&r.duration_ms), "{}", r.duration_ms);
    assert!(recorder.recover(Timestamp::now()).unwrap().is_empty(), "recovered once");
    let report = other.deliver_all_due(Timestamp::now()).unwrap();
    assert_eq!(report.delivered.len(), 2);
}

#[test]
fn a_discarded_call_leaves_no_message_no_file_and_nothing_to_recover() {
    let dir = tempfile::tempdir().unwrap();
    let mailbox = Mailbox::open(config(dir.path(), true)).unwrap();
    let other = Mailbox::open(config(dir.path(), true)).unwrap();
    let heard = Arc::new(Mutex::new(0));
    {
        let heard = heard.clone();
        mailbox.subscribe(move |_| *heard.lock().unwrap() += 1);
    }
    let StartedCall { mut call, lease } =
        mailbox.start_call(CallSetup::new("+74951112233", at("2026-11-27T10:00:00Z")), Instant::now()).unwrap();
    // The greeting even played and some audio was recorded (RTP started it before the ACK).
    let mut driver = support::Caller::new();
    driver.answer(&mut call);
    driver.talk(&mut call, 50);
    call.handle_input(Input::Hangup(driver.now)).unwrap();
    drop(call);
    assert_eq!(wavs(&dir.path().join("spool")).len(), 1);
    mailbox.discard_call(lease, "the 200 OK was never ACKed").unwrap();
    assert!(wavs(&dir.path().join("spool")).is_empty());
    assert!(mailbox.list(false).unwrap().is_empty(), "no record, no tombstone");
    assert!(other.recover(Timestamp::now()).unwrap().is_empty());
    assert!(mailbox.recover(Timestamp::now()).unwrap().is_empty());
    assert_eq!(mailbox.deliver_all_due(Timestamp::now()).unwrap().attempted, 0);
    assert_eq!(*heard.lock().unwrap(), 0, "listeners hear of stored messages only");
}

#[test]
fn a_full_spool_refuses_new_calls_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), true);
    c.store.min_free_bytes = u64::MAX;
    let mailbox = Mailbox::open(c).unwrap();
    let e = mailbox.start_call(CallSetup::new("+74951234567", Timestamp::now()), Instant::now()).unwrap_err();
    assert!(e.is_full(), "{e}");
    assert!(e.to_string().contains("new calls are refused"), "{e}");
    assert!(wavs(&dir.path().join("spool")).is_empty());
    assert!(mailbox.list(false).unwrap().is_empty());
}

#[test]
fn concurrent_changes_from_several_mailboxes_never_lose_an_update() {
    let dir = tempfile::tempdir().unwrap();
    let first = Mailbox::open(config(dir.path(), false)).unwrap();
    let meta = record(&first, "+74951234567", "2026-11-27T10:00:00Z", 1);
    let id = meta.id.clone();
    let applied = Arc::new(Mutex::new(0usize));
    let threads: Vec<_> = (0..8)
        .map(|n| {
            let (cfg, id, applied) = (config(dir.path(), false), id.clone(), applied.clone());
            std::thread::spawn(move || {
                let mailbox = Mailbox::open(cfg).unwrap();
                for i in 0..25 {
                    let t = Timestamp::now();
                    let r = match (n + i) % 3 {
                        0 => mailbox.assign(&id, &format!("m{n}"), "t", t),
                        1 => mailbox.called_back(&id, &format!("m{n}"), None, t),
                        _ => mailbox.delete(&id, if i % 2 == 0 { Some("spam") } else { None }, "t", t),
                    };
                    match r {
                        Ok(_) => *applied.lock().unwrap() += 1,
                        Err(MailboxError::Store(StoreError::FollowUp { .. } | StoreError::Deleted { .. })) => {}
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                    assert!(mailbox.list_all().is_ok());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let m = first.show(&id).unwrap();
    let changes = m.history.iter().filter(|h| !matches!(h.event, HistoryEvent::Recorded { .. })).count();
    assert_eq!(changes, *applied.lock().unwrap(), "every applied change is in the history, once");
    // The history replays to the final state.
    let mut state = FollowUp::New;
    let mut deleted = false;
    for h in &m.history {
        match &h.event {
            HistoryEvent::Assigned { to } => {
                assert!(!state.is_called_back() && !deleted);
                state = FollowUp::Assigned { to: to.clone(), at: h.at };
            }
            HistoryEvent::CalledBack { note } => {
                assert!(!state.is_called_back() && !deleted);
                state = FollowUp::CalledBack { by: h.by.clone(), at: h.at, note: note.clone() };
            }
            HistoryEvent::Deleted { forced, .. } => {
                assert!(!deleted);
                assert_eq!(*forced, !state.is_called_back());
                deleted = true;
            }
            _ => {}
        }
    }
    assert_eq!(state, m.followup);
    assert_eq!(deleted, m.lifecycle == Lifecycle::Deleted);
}

#[test]
fn ids_from_outside_never_name_a_file_outside_the_spool() {
    for bad in ["../etc/passwd", "a/b", ".hidden", "", "x\n"] {
        assert!(MessageId::parse(bad).is_err(), "{bad:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let mailbox = Mailbox::open(config(dir.path(), false)).unwrap();
    let unknown = MessageId::parse("20261127T100000Z-0000000000000000").unwrap();
    assert!(mailbox.show(&unknown).unwrap_err().is_not_found());
}

#[test]
fn an_older_json_spool_is_imported_once() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(spool.join("outbox/delivered")).unwrap();
    let meta = |id: &str, caller: &str| {
        format!(
            r#"{{"id":"{id}","caller":"{caller}","caller_name":null,"called":"","started_at":"2026-11-27T10:00:00Z",
            "duration_ms":1000,"end_reason":"hang-up","codec":"pcmu","greeting":"default","dtmf":"",
            "wav_path":null,"media":{{"packets_received":0,"malformed":0,"unknown_payload_type":0,"duplicates":0,
            "late":0,"lost":0,"ssrc_changes":0,"concealed_samples":0}}}}"#
        )
    };
    std::fs::write(spool.join("old-1.json"), meta("old-1", "+7111")).unwrap();
    std::fs::write(
        spool.join("old-1.state.json"),
        r#"{"state":{"state":"assigned","to":"Anna","at":"2026-11-27T11:00:00Z"},
           "history":[{"state":"assigned","to":"Anna","at":"2026-11-27T11:00:00Z"}]}"#,
    )
    .unwrap();
    std::fs::write(
        spool.join("outbox/delivered/old-1.json"),
        r#"{"id":"old-1","message_id":"x@y","enqueued_at":"2026-11-27T10:00:01Z","pairs":[{"destination":{"target":"maildir"},
           "attempts":0,"last_error":null,"last_attempt":"2026-11-27T10:00:01Z","next_attempt":"2026-11-27T10:00:01Z",
           "delivered_at":"2026-11-27T10:00:01Z","ack":"stored"}]}"#,
    )
    .unwrap();
    std::fs::write(spool.join("old-2.json.partial"), meta("old-2", "+7222")).unwrap();
    std::fs::write(spool.join("notes.json"), "{\"not\": \"a message\"}").unwrap();
    std::fs::write(
        spool.join("deletions.log"),
        r#"{"id":"old-0","at":"2026-11-26T10:00:00Z","forced":true,"reason":"spam","state":{"state":"new"},"caller":"+7000"}"#,
    )
    .unwrap();

    let mailbox = Mailbox::open(config(dir.path(), true)).unwrap();
    let again = Mailbox::open(config(dir.path(), true)).unwrap();
    let all = again.list_all().unwrap();
    let ids: Vec<&str> = all.iter().map(|m| m.meta.id.as_str()).collect();
    assert_eq!(ids, ["old-0", "old-1", "old-2"]);
    let old1 = &all[1];
    assert_eq!(old1.followup, FollowUp::Assigned { to: "Anna".into(), at: at("2026-11-27T11:00:00Z") });
    assert_eq!(old1.deliveries[0].state, DeliveryState::Delivered);
    assert_eq!(all[0].lifecycle, Lifecycle::Deleted);
    assert_eq!(all[2].lifecycle, Lifecycle::Recording);
    // The interrupted call (no recording file left) is recovered with its caller.
    let recovered = mailbox.recover(Timestamp::now()).unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!((recovered[0].caller.as_str(), recovered[0].end_reason), ("+7222", EndReason::Interrupted));
    // The JSON files moved out of the way; the foreign one stayed.
    assert!(spool.join("imported-json/old-1.json").is_file());
    assert!(!spool.join("old-1.json").exists() && !spool.join("outbox").exists());
    assert!(spool.join("notes.json").is_file());
}

/// `Mailbox::audio` is what every reader of a recording uses (delivery, the web queue, Python,
/// `inbox export`): with the embedded store it is the spool's file, byte for byte; a message
/// deleted, unknown or still being recorded has none.
#[test]
fn audio_is_the_spooled_recording() {
    let tmp = support::TempDir::new("mailbox-audio");
    let mailbox = Mailbox::open(config(tmp.path(), false)).unwrap();
    let meta = record(&mailbox, "+74951234567", "2026-11-27T11:33:00Z", 1);
    let file = std::fs::read(meta.wav_path.as_ref().unwrap()).unwrap();
    assert_eq!(mailbox.audio(&meta.id).unwrap().as_deref(), Some(&file[..]));
    let StartedCall { call, lease } =
        mailbox.start_call(CallSetup::new("+74950000000", at("2026-11-27T11:34:00Z")), Instant::now()).unwrap();
    assert_eq!(mailbox.audio(lease.id()).unwrap(), None, "still being recorded");
    drop((call, lease));
    mailbox.delete(&meta.id, Some("test"), "anna", at("2026-11-27T11:35:00Z")).unwrap();
    assert_eq!(mailbox.audio(&meta.id).unwrap(), None, "deleted");
    let unknown = MessageId::parse("20990101T000000Z-0000000000000000").unwrap();
    assert!(mailbox.audio(&unknown).unwrap_err().is_not_found());
}
