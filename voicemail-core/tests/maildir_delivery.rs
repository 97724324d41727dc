//! Delivery into a Maildir++ folder through the durable outbox: the message lands in
//! `<root>/.Voicemail/new` with an attachment byte-identical to the spooled WAV; a retry after
//! a simulated crash (the file is stored but the outbox state on disk still says pending),
//! even after a mail reader moved the file to `cur/`, leaves exactly one copy; a zero-length
//! message is delivered like any other; a caller number with `../` writes nothing outside the
//! folder, and an id that could escape the spool is refused; an unreadable outbox record is
//! reported (run report and status) and kept, and does not block other messages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use jiff::Timestamp;
use voicemail_core::deliver::{EmailContext, MaildirTarget, OutgoingEmail, Target, empty_wav};
use voicemail_core::outbox::{DeliveryState, Destination, Outbox, OutboxError};

fn target(root: &Path) -> MaildirTarget {
    MaildirTarget { root: root.join("shared"), folder: "Voicemail".to_owned() }
}

fn ctx() -> EmailContext {
    EmailContext::new(support::moscow(), "voicemail@example.org")
}

fn t0() -> Timestamp {
    "2026-11-27T11:33:00Z".parse().unwrap()
}

/// Every file anywhere under `dir` (recursively).
fn all_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(all_files(&p)) } else { out.push(p) }
    }
    out
}

#[test]
fn delivers_into_maildir_plus_folder() {
    let tmp = support::TempDir::new("maildir-ok");
    let spool = tmp.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let wav = support::sample_wav(16_000, 7);
    let meta = support::spool_message(&spool, "m1", "+74951234567", &wav);
    let target = target(tmp.path());

    let outbox = Outbox::open(&spool).unwrap();
    assert!(outbox.enqueue(&meta, &ctx(), &[Destination::maildir()], t0()).unwrap());
    // Metadata is in the spool before any delivery.
    assert!(spool.join("m1.json").is_file());
    let report = outbox.run_due(t0(), &[&target]);
    assert_eq!(report.delivered, [("m1".to_owned(), "maildir".to_owned())], "{report:?}");
    assert!(report.failed.is_empty());

    let folder = tmp.path().join("shared").join(".Voicemail");
    assert!(folder.join("tmp").is_dir() && folder.join("cur").is_dir());
    assert_eq!(std::fs::read_dir(folder.join("tmp")).unwrap().count(), 0, "tmp/ left over");
    let files = support::maildir_files(&folder);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].parent().unwrap().ends_with("new"));
    let (_, attachment) = support::message_id_and_attachment(&std::fs::read(&files[0]).unwrap());
    assert_eq!(attachment, wav);

    // Readable by the maildir crate as a message of the sub-folder.
    let md = maildir::Maildir::from(tmp.path().join("shared"));
    let sub = md.subfolder(".Voicemail").unwrap();
    assert_eq!(sub.count_new(), 1);

    let status = outbox.status().unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].state, DeliveryState::Delivered);
    // Enqueueing again is a no-op; running again delivers nothing.
    assert!(!outbox.enqueue(&meta, &ctx(), &[Destination::maildir()], t0()).unwrap());
    assert_eq!(outbox.run_due(t0(), &[&target]).attempted, 0);
    assert_eq!(support::maildir_files(&folder).len(), 1);
}

#[test]
fn retry_after_crash_leaves_one_copy() {
    let tmp = support::TempDir::new("maildir-crash");
    let spool = tmp.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let wav = support::sample_wav(800, 8);
    let target = target(tmp.path());
    let folder = target.folder_path();

    for (id, move_to_cur) in [("m2", false), ("m3", true)] {
        let meta = support::spool_message(&spool, id, "+74951234567", &wav);
        let outbox = Outbox::open(&spool).unwrap();
        outbox.enqueue(&meta, &ctx(), &[Destination::maildir()], t0()).unwrap();
        let record = outbox.record(id).unwrap().unwrap();

        // The "crashed" run: the target stored the message, the outbox never recorded it.
        let email = OutgoingEmail {
            voicemail_id: id.to_owned(),
            message_id: record.message_id.clone(),
            bytes: std::fs::read(spool.join("outbox").join(format!("{id}.eml"))).unwrap(),
            extra_recipients: Vec::new(),
        };
        let first = target.deliver(&email).unwrap();
        assert!(!first.already_present);
        if move_to_cur {
            // A mail reader saw it: new/<name> → cur/<name>:2,S
            let name = MaildirTarget::file_name_for(&email);
            std::fs::rename(folder.join("new").join(&name), folder.join("cur").join(format!("{name}:2,S"))).unwrap();
        }
        drop(outbox);

        // Restart: the state on disk still says pending.
        let outbox = Outbox::open(&spool).unwrap();
        let status = outbox.status().unwrap();
        assert!(status.iter().any(|s| s.id == id && s.state == DeliveryState::Pending), "{status:?}");
        let report = outbox.run_due(t0(), &[&target]);
        assert_eq!(report.delivered, [(id.to_owned(), "maildir".to_owned())]);
        let ack = outbox.record(id).unwrap().unwrap().pairs[0].ack.clone().unwrap();
        assert!(ack.starts_with("already stored"), "{ack}");
    }

    let files = support::maildir_files(&folder);
    assert_eq!(files.len(), 2, "exactly one copy of each message: {files:?}");
    for f in files {
        let (_, attachment) = support::message_id_and_attachment(&std::fs::read(f).unwrap());
        assert_eq!(attachment, wav);
    }
}

#[test]
fn zero_length_message_is_delivered() {
    let tmp = support::TempDir::new("maildir-empty");
    let spool = tmp.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    // Nothing was recorded to a file: no wav_path and no <id>.wav in the spool.
    let mut meta = support::sample_meta("m4", "+74951234567", None);
    meta.duration_ms = 0;
    let target = target(tmp.path());
    let outbox = Outbox::open(&spool).unwrap();
    outbox.enqueue(&meta, &ctx(), &[Destination::maildir()], t0()).unwrap();
    let report = outbox.run_due(t0(), &[&target]);
    assert_eq!(report.delivered.len(), 1, "{report:?}");
    let files = support::maildir_files(&target.folder_path());
    let (_, attachment) = support::message_id_and_attachment(&std::fs::read(&files[0]).unwrap());
    assert_eq!(attachment, empty_wav());
}

#[test]
fn hostile_caller_and_id_stay_inside() {
    let tmp = support::TempDir::new("maildir-evil");
    let spool = tmp.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let target = target(tmp.path());
    let outbox = Outbox::open(&spool).unwrap();

    let mut meta = support::sample_meta("m5", "../../../../tmp/evil\r\nX: y", Some("../x"));
    meta.duration_ms = 0;
    outbox.enqueue(&meta, &ctx(), &[Destination::maildir()], t0()).unwrap();
    assert_eq!(outbox.run_due(t0(), &[&target]).delivered.len(), 1);
    for f in all_files(tmp.path()) {
        let rel = f.strip_prefix(tmp.path()).unwrap();
        assert!(
            rel.starts_with("spool") || rel.starts_with("shared/.Voicemail"),
            "file written outside spool and folder: {}",
            f.display()
        );
    }

    let bad = support::sample_meta("../escape", "+7", None);
    assert!(matches!(outbox.enqueue(&bad, &ctx(), &[Destination::maildir()], t0()), Err(OutboxError::InvalidId(_))));
    let bad_folder = MaildirTarget { root: tmp.path().join("shared"), folder: "../../x".to_owned() };
    let email = OutgoingEmail {
        voicemail_id: "m6".to_owned(),
        message_id: "x@y".to_owned(),
        bytes: b"Subject: x\r\n\r\nx\r\n".to_vec(),
        extra_recipients: Vec::new(),
    };
    assert!(bad_folder.deliver(&email).is_err());
}

#[test]
fn unconfigured_target_keeps_the_message() {
    let tmp = support::TempDir::new("maildir-missing");
    let spool = tmp.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let meta = support::spool_message(&spool, "m7", "+74951234567", &support::sample_wav(80, 9));
    let outbox = Outbox::open(&spool).unwrap();
    outbox.enqueue(&meta, &ctx(), &[Destination::maildir(), Destination::imap()], t0()).unwrap();
    let target = target(tmp.path());
    let report = outbox.run_due(t0(), &[&target]);
    assert_eq!(report.delivered.len(), 1);
    assert_eq!(report.failed.len(), 1);
    assert!(report.failed[0].error.contains("no target configured"), "{:?}", report.failed);
    let status = outbox.status().unwrap();
    let imap = status.iter().find(|s| s.target == "imap").unwrap();
    assert_eq!(imap.state, DeliveryState::Failing);
    assert_eq!(imap.next_attempt, Some(t0().checked_add(jiff::SignedDuration::from_secs(5)).unwrap()));
    // The message is neither dropped nor finished.
    assert!(spool.join("outbox").join("m7.json").is_file());
    assert!(spool.join("outbox").join("m7.eml").is_file());
}

#[test]
fn unqueued_spool_messages_are_listed() {
    let tmp = support::TempDir::new("maildir-unqueued");
    let spool = tmp.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let outbox = Outbox::open(&spool).unwrap();
    support::spool_message(&spool, "recorded-only", "+7", &support::sample_wav(8, 1));
    std::fs::write(spool.join("recorded-only.state.json"), b"{}").unwrap();
    let meta = support::spool_message(&spool, "queued", "+7", &support::sample_wav(8, 1));
    outbox.enqueue(&meta, &ctx(), &[Destination::maildir()], t0()).unwrap();
    assert_eq!(outbox.unqueued().unwrap(), ["recorded-only"]);
}

#[test]
fn corrupt_record_is_reported_and_kept() {
    let tmp = support::TempDir::new("maildir-corrupt");
    let spool = tmp.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let outbox = Outbox::open(&spool).unwrap();
    let bad = spool.join("outbox").join("broken.json");
    std::fs::write(&bad, b"{ not json").unwrap();
    let meta = support::spool_message(&spool, "good", "+7", &support::sample_wav(8, 1));
    outbox.enqueue(&meta, &ctx(), &[Destination::maildir()], t0()).unwrap();
    let target = target(tmp.path());
    let report = outbox.run_due(t0(), &[&target]);
    assert_eq!(report.delivered, [("good".to_owned(), "maildir".to_owned())]);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].id, "broken");
    let status = outbox.status().unwrap();
    let broken = status.iter().find(|s| s.id == "broken").unwrap();
    assert_eq!(broken.state, DeliveryState::Failing);
    assert!(broken.last_error.is_some());
    assert!(bad.is_file(), "an unreadable record is never removed");
}
