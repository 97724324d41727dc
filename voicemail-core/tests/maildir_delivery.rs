//! Delivery into a Maildir++ folder through the mailbox: the message lands in
//! `<root>/.Voicemail/new` with an attachment byte-identical to the spooled WAV; a retry after
//! a simulated crash (the file is stored but the store still says pending), even after a mail
//! reader moved the file to `cur/`, leaves exactly one copy; a zero-length message is delivered
//! like any other; a hostile caller number writes nothing outside the spool and the folder; a
//! target that fails keeps its message pending with back-off while another target delivers;
//! a folder half made (its `new/` there, its `tmp/` not yet: another thread or process is
//! creating it, or crashed doing so) is completed, not failed, also by many threads at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use jiff::{SignedDuration, Timestamp};
use voicemail_core::config::Config;
use voicemail_core::deliver::{self, ImapTarget, MaildirTarget, OutgoingEmail, Target};
use voicemail_core::store::{DeliveryState, SqliteStore, Store};
use voicemail_core::{CallSetup, Mailbox, route};

fn config(dir: &Path) -> Config {
    let mut c = support::mailbox_config(dir);
    c.delivery.maildir = Some(MaildirTarget { root: dir.join("shared"), folder: "Voicemail".to_owned() });
    c
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
    let mailbox = Mailbox::open(config(tmp.path())).unwrap();
    let meta = support::record(&mailbox, CallSetup::new("+74951234567", t0()), 2.0, t0());
    let wav = std::fs::read(meta.wav_path.as_ref().unwrap()).unwrap();

    let report = mailbox.deliver_all_due(t0()).unwrap();
    assert_eq!(report.delivered, [(meta.id.clone(), "maildir".to_owned())], "{report:?}");
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
    assert_eq!(md.subfolder(".Voicemail").unwrap().count_new(), 1);

    let deliveries = mailbox.deliveries().unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].state, DeliveryState::Delivered);
    // Running again delivers nothing.
    assert_eq!(mailbox.deliver_all_due(t0()).unwrap().attempted, 0);
    assert_eq!(support::maildir_files(&folder).len(), 1);
}

#[test]
fn retry_after_crash_leaves_one_copy() {
    let tmp = support::TempDir::new("maildir-crash");
    let cfg = config(tmp.path());
    let target = cfg.delivery.maildir.clone().unwrap();
    let folder = target.folder_path();
    let mut wavs = Vec::new();
    for move_to_cur in [false, true] {
        let mailbox = Mailbox::open(cfg.clone()).unwrap();
        let meta = support::record(&mailbox, CallSetup::new("+74951234567", t0()), 0.5, t0());
        let wav = std::fs::read(meta.wav_path.as_ref().unwrap()).unwrap();
        // The "crashed" run: it claimed the delivery (a lease that runs out at once), the
        // target stored the message, the store never recorded it.
        let store = SqliteStore::open(&cfg.spool.join("voicemail.sqlite3")).unwrap();
        assert_eq!(store.claim("maildir", t0(), "crashed/1", t0(), 10).unwrap().len(), 1);
        drop(store);
        let ctx = route::email_context(&cfg, &meta, &voicemail_core::followup::FollowUp::New);
        let email: OutgoingEmail = deliver::build_email(&meta, &wav, &ctx).unwrap();
        assert!(!target.deliver(&email).unwrap().already_present);
        if move_to_cur {
            // A mail reader saw it: new/<name> → cur/<name>:2,S
            let name = MaildirTarget::file_name_for(&email);
            std::fs::rename(folder.join("new").join(&name), folder.join("cur").join(format!("{name}:2,S"))).unwrap();
        }
        drop(mailbox);

        // Restart: the store still says pending.
        let mailbox = Mailbox::open(cfg.clone()).unwrap();
        let pending = mailbox.deliveries().unwrap();
        assert!(pending.iter().any(|d| d.id == meta.id && d.state == DeliveryState::Pending), "{pending:?}");
        let report = mailbox.deliver_all_due(t0()).unwrap();
        assert_eq!(report.delivered, [(meta.id.clone(), "maildir".to_owned())]);
        let ack = mailbox.show(&meta.id).unwrap().deliveries[0].ack.clone().unwrap();
        assert!(ack.starts_with("already stored"), "{ack}");
        wavs.push(wav);
    }
    let files = support::maildir_files(&folder);
    assert_eq!(files.len(), 2, "exactly one copy of each message: {files:?}");
    for f in files {
        let (_, attachment) = support::message_id_and_attachment(&std::fs::read(f).unwrap());
        assert!(wavs.contains(&attachment));
    }
}

#[test]
fn zero_length_message_is_delivered() {
    let tmp = support::TempDir::new("maildir-empty");
    let mailbox = Mailbox::open(config(tmp.path())).unwrap();
    let meta = support::record_empty(&mailbox, CallSetup::new("+74951234567", t0()), t0());
    assert_eq!(meta.duration_ms, 0);
    assert_eq!(std::fs::read(meta.wav_path.as_ref().unwrap()).unwrap(), deliver::empty_wav());
    assert_eq!(mailbox.deliver_all_due(t0()).unwrap().delivered.len(), 1);
    let files = support::maildir_files(&tmp.path().join("shared/.Voicemail"));
    let (_, attachment) = support::message_id_and_attachment(&std::fs::read(&files[0]).unwrap());
    assert_eq!(attachment, deliver::empty_wav());
}

#[test]
fn hostile_caller_stays_inside() {
    let tmp = support::TempDir::new("maildir-evil");
    let mailbox = Mailbox::open(config(tmp.path())).unwrap();
    let mut setup = CallSetup::new("../../../../tmp/evil\r\nX: y", t0());
    setup.caller_name = Some("../x".to_owned());
    setup.called = "../../called".to_owned();
    support::record(&mailbox, setup, 0.2, t0());
    assert_eq!(mailbox.deliver_all_due(t0()).unwrap().delivered.len(), 1);
    for f in all_files(tmp.path()) {
        let rel = f.strip_prefix(tmp.path()).unwrap();
        assert!(
            rel.starts_with("spool") || rel.starts_with("shared/.Voicemail") || rel.starts_with("shared"),
            "file written outside spool and folder: {}",
            f.display()
        );
        assert!(!rel.to_string_lossy().contains("evil"), "{}", rel.display());
    }
    let bad_folder = MaildirTarget { root: tmp.path().join("shared"), folder: "../../x".to_owned() };
    let email = OutgoingEmail {
        voicemail_id: "m6".to_owned(),
        message_id: "x@y".to_owned(),
        bytes: b"Subject: x\r\n\r\nx\r\n".to_vec(),
        extra_recipients: Vec::new(),
        keywords: Vec::new(),
        may_be_stored: true,
    };
    assert!(bad_folder.deliver(&email).is_err());
}

#[test]
fn a_failing_target_keeps_its_message_while_another_delivers() {
    let tmp = support::TempDir::new("maildir-imap-down");
    let mut cfg = config(tmp.path());
    // Nothing listens there: connection refused, a transient failure.
    let port = support::free_port();
    cfg.delivery.imap = Some(ImapTarget::new("127.0.0.1", port, "vm", "secret", "Voicemail"));
    let mailbox = Mailbox::open(cfg).unwrap();
    let meta = support::record(&mailbox, CallSetup::new("+74951234567", t0()), 0.2, t0());
    let report = mailbox.deliver_all_due(t0()).unwrap();
    assert_eq!(report.delivered, [(meta.id.clone(), "maildir".to_owned())]);
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(report.rejected.is_empty(), "a refused connection is not a rejection");
    let imap = mailbox.deliveries().unwrap().into_iter().find(|d| d.target == "imap").unwrap();
    assert_eq!(imap.state, DeliveryState::Failing);
    assert_eq!(imap.attempts, 1);
    assert_eq!(imap.next_attempt, Some(t0().checked_add(SignedDuration::from_secs(5)).unwrap()));
    assert!(imap.last_error.as_deref().unwrap().contains(&format!("127.0.0.1:{port}")), "{imap:?}");
    // Not due before its back-off; due after.
    assert_eq!(mailbox.deliver_all_due(t0().checked_add(SignedDuration::from_secs(1)).unwrap()).unwrap().attempted, 0);
    let later = t0().checked_add(SignedDuration::from_secs(5)).unwrap();
    assert_eq!(mailbox.deliver_all_due(later).unwrap().failed.len(), 1);
    assert_eq!(mailbox.next_due("imap").unwrap(), Some(later.checked_add(SignedDuration::from_secs(10)).unwrap()));
}

fn email(id: &str) -> OutgoingEmail {
    OutgoingEmail {
        voicemail_id: id.to_owned(),
        message_id: format!("{id}@test"),
        bytes: b"Subject: x\r\n\r\nx\r\n".to_vec(),
        extra_recipients: Vec::new(),
        keywords: Vec::new(),
        may_be_stored: false,
    }
}

#[test]
fn a_half_made_folder_is_completed() {
    let tmp = support::TempDir::new("maildir-half");
    let target = MaildirTarget { root: tmp.path().join("shared"), folder: "Voicemail".to_owned() };
    let folder = target.folder_path();
    // As `maildir::create_subfolder_dirs` leaves it between its `new` and its `tmp`.
    std::fs::create_dir_all(folder.join("cur")).unwrap();
    std::fs::create_dir_all(folder.join("new")).unwrap();
    let ack = target.deliver(&email("m1")).unwrap();
    assert!(!ack.already_present, "{ack:?}");
    assert_eq!(support::maildir_files(&folder).len(), 1);
    assert!(folder.join("maildirfolder").is_file());
}

#[test]
fn threads_delivering_into_a_new_folder_at_once_all_succeed() {
    let tmp = support::TempDir::new("maildir-race");
    for round in 0..200 {
        let target = MaildirTarget { root: tmp.path().join(format!("shared{round}")), folder: "Voicemail".to_owned() };
        let barrier = std::sync::Barrier::new(8);
        std::thread::scope(|s| {
            for i in 0..8 {
                let (target, barrier) = (&target, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    target.deliver(&email(&format!("r{round}m{i}"))).unwrap();
                });
            }
        });
        assert_eq!(support::maildir_files(&target.folder_path()).len(), 8);
    }
}
