//! The callback workflow of the spool: New → Assigned → CalledBack, persisted beside the
//! recordings and surviving a reopen (a restart); transitions that make no sense are errors;
//! a message that was not called back is only deleted by force with a reason, and such a
//! deletion is logged (a `tracing` warning and a line in the spool's `deletions.log`);
//! deletion removes the WAV, the metadata and the state. Ids from outside never reach a path
//! outside the spool.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use voicemail_core::mailbox::{DELETIONS_LOG, ForceReason, Mailbox, MailboxError, WorkflowState, validate_id};
use voicemail_core::{CodecKind, EndReason, MediaStats, MessageMeta};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh spool directory under the target's temporary directory.
fn spool(test: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("mailbox-{test}-{}-{n}", std::process::id()))
        .join("spool");
    let _ = fs::remove_dir_all(&dir);
    if let Err(e) = fs::create_dir_all(&dir) {
        panic!("create {}: {e}", dir.display());
    }
    dir
}

fn ts(s: &str) -> Timestamp {
    match s.parse() {
        Ok(t) => t,
        Err(e) => panic!("timestamp {s}: {e}"),
    }
}

fn meta(id: &str, caller: &str, started_at: &str) -> MessageMeta {
    MessageMeta {
        id: id.to_owned(),
        caller: caller.to_owned(),
        caller_name: Some("Ivan".to_owned()),
        called: "+74951234500".to_owned(),
        started_at: ts(started_at),
        duration_ms: 4200,
        end_reason: EndReason::HangUp,
        codec: CodecKind::Pcmu,
        greeting: "default".to_owned(),
        dtmf: String::new(),
        wav_path: None,
        media: MediaStats::default(),
    }
}

/// Writes `<id>.wav` and `<id>.json` like the recorder does.
fn put_message(spool: &Path, id: &str, caller: &str, started_at: &str) {
    let json = match serde_json::to_vec(&meta(id, caller, started_at)) {
        Ok(j) => j,
        Err(e) => panic!("{e}"),
    };
    let ok = fs::write(spool.join(format!("{id}.json")), json)
        .and_then(|()| fs::write(spool.join(format!("{id}.wav")), b"RIFF....WAVE"));
    if let Err(e) = ok {
        panic!("write message {id}: {e}");
    }
}

fn open(spool: &Path) -> Mailbox {
    match Mailbox::open(spool) {
        Ok(m) => m,
        Err(e) => panic!("open {}: {e}", spool.display()),
    }
}

fn ok<T>(r: Result<T, MailboxError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[test]
fn new_assigned_called_back_survives_a_restart() {
    let dir = spool("lifecycle");
    put_message(&dir, "m1", "+74951234567", "2026-06-10T07:00:00Z");
    put_message(&dir, "m2", "+78005553535", "2026-06-10T06:00:00Z");
    let mb = open(&dir);

    let list = ok(mb.list());
    assert_eq!(list.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["m2", "m1"], "sorted by time");
    assert!(list.iter().all(|m| *m.state() == WorkflowState::New));
    assert_eq!(list[1].meta.as_ref().map(|m| m.caller.as_str()), Some("+74951234567"));
    assert_eq!(list[1].wav.as_deref(), Some(dir.join("m1.wav").as_path()));

    ok(mb.assign("m1", "Anna", ts("2026-06-10T08:00:00Z")));
    ok(mb.assign("m1", "Boris", ts("2026-06-10T08:05:00Z"))); // reassigned
    drop(mb);

    // A restart: a new Mailbox over the same spool sees the same state.
    let mb = open(&dir);
    let m1 = ok(mb.show("m1"));
    assert_eq!(*m1.state(), WorkflowState::Assigned { to: "Boris".into(), at: ts("2026-06-10T08:05:00Z") });
    assert_eq!(m1.workflow.history.len(), 2);

    ok(mb.called_back("m1", "Boris", ts("2026-06-10T09:00:00Z"), Some("will send the invoice\nby Friday")));
    drop(mb);
    let mb = open(&dir);
    let m1 = ok(mb.show("m1"));
    assert_eq!(
        *m1.state(),
        WorkflowState::CalledBack {
            by: "Boris".into(),
            at: ts("2026-06-10T09:00:00Z"),
            note: Some("will send the invoice\nby Friday".into())
        }
    );
    assert_eq!(
        m1.workflow.history.iter().map(WorkflowState::name).collect::<Vec<_>>(),
        ["assigned", "assigned", "called-back"]
    );
    // The state lives beside the recording.
    assert!(dir.join("m1.state.json").is_file());
    assert_eq!(*ok(mb.show("m2")).state(), WorkflowState::New);
    assert!(!dir.join("m2.state.json").exists());
    // A message can be called back straight from New.
    ok(mb.called_back("m2", "Anna", ts("2026-06-10T09:30:00Z"), None));
    assert_eq!(ok(mb.show("m2")).state().name(), "called-back");
}

#[test]
fn transitions_that_make_no_sense_are_errors() {
    let dir = spool("transitions");
    put_message(&dir, "m1", "+74951234567", "2026-06-10T07:00:00Z");
    let mb = open(&dir);
    let at = ts("2026-06-10T08:00:00Z");

    assert!(matches!(mb.assign("nope", "Anna", at), Err(MailboxError::NotFound(_))));
    assert!(matches!(mb.called_back("nope", "Anna", at, None), Err(MailboxError::NotFound(_))));
    assert!(matches!(mb.show("nope"), Err(MailboxError::NotFound(_))));

    ok(mb.called_back("m1", "Anna", at, None));
    let e = mb.assign("m1", "Boris", at);
    assert!(matches!(e, Err(MailboxError::InvalidTransition { .. })), "{e:?}");
    let e = mb.called_back("m1", "Boris", at, None);
    assert!(matches!(e, Err(MailboxError::InvalidTransition { .. })), "{e:?}");
    if let Err(e) = mb.assign("m1", "Boris", at) {
        assert_eq!(e.to_string(), "message m1 is called back by Anna: cannot assign it (it was already called back)");
    }

    // Empty or control-character names and notes are refused.
    put_message(&dir, "m2", "+74951234567", "2026-06-10T07:00:00Z");
    for bad in ["", "  ", "Anna\r\nBcc: x", "\u{7}"] {
        assert!(matches!(mb.assign("m2", bad, at), Err(MailboxError::InvalidText { .. })), "{bad:?}");
        assert!(matches!(mb.called_back("m2", bad, at, None), Err(MailboxError::InvalidText { .. })), "{bad:?}");
    }
    assert!(matches!(mb.called_back("m2", "Anna", at, Some("\0")), Err(MailboxError::InvalidText { .. })));
    assert_eq!(*ok(mb.show("m2")).state(), WorkflowState::New);

    // Once deleted, the id says so.
    ok(mb.delete("m1", None, at));
    let e = mb.called_back("m1", "Anna", at, None);
    assert!(matches!(e, Err(MailboxError::Deleted { .. })), "{e:?}");
    assert!(matches!(mb.assign("m1", "Anna", at), Err(MailboxError::Deleted { .. })));
    assert!(matches!(mb.delete("m1", None, at), Err(MailboxError::Deleted { .. })));
}

#[test]
fn deletion_before_callback_needs_force_and_a_reason() {
    let dir = spool("delete");
    put_message(&dir, "m1", "+74951234567", "2026-06-10T07:00:00Z");
    put_message(&dir, "m2", "+78005553535", "2026-06-10T07:10:00Z");
    let mb = open(&dir);
    let at = ts("2026-06-11T10:00:00Z");

    // New: refused.
    let e = mb.delete("m1", None, at);
    assert!(matches!(e, Err(MailboxError::NotCalledBack { .. })), "{e:?}");
    if let Err(e) = e {
        assert!(e.to_string().contains("needs a forced deletion with a reason"), "{e}");
    }
    // Assigned: refused.
    ok(mb.assign("m1", "Anna", at));
    assert!(matches!(mb.delete("m1", None, at), Err(MailboxError::NotCalledBack { .. })));
    // An empty reason is not a reason.
    assert!(matches!(
        mb.delete("m1", Some(ForceReason::new("  ")), at),
        Err(MailboxError::InvalidText { field: "reason", .. })
    ));
    assert!(dir.join("m1.wav").is_file() && dir.join("m1.json").is_file() && dir.join("m1.state.json").is_file());
    assert!(!dir.join(DELETIONS_LOG).exists());

    // Forced: deleted, logged as a warning and in deletions.log.
    let logs = capture_warnings(|| mb.delete("m1", Some(ForceReason::new("spam call")), at));
    let (result, warnings) = logs;
    let record = ok(result);
    assert!(record.forced);
    assert_eq!(record.reason.as_deref(), Some("spam call"));
    assert_eq!(record.caller.as_deref(), Some("+74951234567"));
    assert!(
        warnings.iter().any(|w| w.contains("forced deletion") && w.contains("spam call") && w.contains("m1")),
        "{warnings:?}"
    );
    for f in ["m1.wav", "m1.json", "m1.state.json"] {
        assert!(!dir.join(f).exists(), "{f} should be removed");
    }

    // Called back: deleted without force, not a forced deletion.
    ok(mb.called_back("m2", "Boris", at, Some("done")));
    let (result, warnings) = capture_warnings(|| mb.delete("m2", None, at));
    assert!(!ok(result).forced);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(!dir.join("m2.wav").exists());
    assert!(ok(mb.list()).is_empty());

    // The log survives a restart and records both, in order.
    let mb = open(&dir);
    let log = ok(mb.deletions());
    assert_eq!(log.len(), 2);
    assert_eq!((log[0].id.as_str(), log[0].forced), ("m1", true));
    assert_eq!(log[0].state, WorkflowState::Assigned { to: "Anna".into(), at });
    assert_eq!((log[1].id.as_str(), log[1].forced), ("m2", false));
    let text = fs::read_to_string(dir.join(DELETIONS_LOG)).unwrap_or_default();
    assert_eq!(text.lines().count(), 2);
    assert!(text.contains("spam call"));
}

#[test]
fn ids_from_outside_never_leave_the_spool() {
    let root = spool("traversal");
    let dir = root.clone();
    put_message(&dir, "m1", "+74951234567", "2026-06-10T07:00:00Z");
    // A file outside the spool that a traversal would hit.
    let outside = dir.parent().map(|p| p.join("victim")).unwrap_or_default();
    let _ = fs::write(outside.with_extension("wav"), b"x");
    let _ = fs::write(outside.with_extension("json"), b"{}");
    let mb = open(&dir);
    let at = ts("2026-06-10T08:00:00Z");
    let hostile = [
        "../victim",
        "..",
        ".",
        "",
        "/etc/passwd",
        "m1/../../victim",
        "m1\0",
        "..\\victim",
        "m1.state",
        ".m1",
        "ïd",
        "a b",
    ];
    let long = "a".repeat(10_000);
    for id in hostile.iter().copied().chain([long.as_str()]) {
        assert!(validate_id(id).is_err(), "{id:?}");
        assert!(matches!(mb.show(id), Err(MailboxError::InvalidId(_))), "{id:?}");
        assert!(matches!(mb.assign(id, "Anna", at), Err(MailboxError::InvalidId(_))), "{id:?}");
        assert!(matches!(mb.called_back(id, "Anna", at, None), Err(MailboxError::InvalidId(_))), "{id:?}");
        assert!(matches!(mb.delete(id, Some(ForceReason::new("x")), at), Err(MailboxError::InvalidId(_))), "{id:?}");
    }
    assert!(outside.with_extension("wav").exists() && outside.with_extension("json").exists());
    assert!(!outside.with_extension("state.json").exists());
    assert!(!dir.join(DELETIONS_LOG).exists());
}

#[test]
fn listing_shows_every_recording_and_skips_foreign_files() {
    let dir = spool("listing");
    put_message(&dir, "m1", "+74951234567", "2026-06-10T07:00:00Z");
    // A recording whose metadata was never written (crash mid-call) is still listed.
    let _ = fs::write(dir.join("orphan.wav"), b"RIFF");
    // A recording with unreadable metadata is listed, without metadata.
    let _ = fs::write(dir.join("broken.wav"), b"RIFF");
    let _ = fs::write(dir.join("broken.json"), b"{not json");
    // Metadata without a recording (written for an empty message) is listed.
    let json = serde_json::to_vec(&meta("nowav", "+7", "2026-06-10T06:00:00Z")).unwrap_or_default();
    let _ = fs::write(dir.join("nowav.json"), json);
    // Other components' files are not messages.
    let _ = fs::write(dir.join("outbox.json"), b"{\"queue\":[]}");
    let _ = fs::write(dir.join("notes.txt"), b"hello");
    let _ = fs::write(dir.join(".hidden.wav"), b"x");
    let _ = fs::create_dir_all(dir.join("sub.wav"));
    let mb = open(&dir);
    let ids: Vec<String> = ok(mb.list()).into_iter().map(|m| m.id).collect();
    assert_eq!(ids, ["nowav", "m1", "broken", "orphan"]);
    let orphan = ok(mb.show("orphan"));
    assert!(orphan.meta.is_none() && orphan.wav.is_some());
}

#[test]
fn a_missing_spool_and_a_corrupt_state_file_are_errors() {
    let dir = spool("corrupt");
    assert!(matches!(Mailbox::open(dir.join("missing")), Err(MailboxError::NoSpool(_))));
    put_message(&dir, "m1", "+74951234567", "2026-06-10T07:00:00Z");
    let _ = fs::write(dir.join("m1.state.json"), b"{\"state\":\"bogus\"}");
    let mb = open(&dir);
    assert!(matches!(mb.show("m1"), Err(MailboxError::CorruptState { .. })));
    assert!(matches!(mb.assign("m1", "Anna", ts("2026-06-10T08:00:00Z")), Err(MailboxError::CorruptState { .. })));
}

// ---- a minimal tracing subscriber that records WARN events as text ----

struct Capture(Arc<Mutex<Vec<String>>>);

struct Visitor(String);

impl tracing::field::Visit for Visitor {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push_str(&format!(" {}={}", field.name(), value));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            let mut v = Visitor(String::new());
            event.record(&mut v);
            if let Ok(mut lines) = self.0.lock() {
                lines.push(v.0);
            }
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn capture_warnings<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let result = tracing::subscriber::with_default(Capture(lines.clone()), f);
    let lines = lines.lock().map(|l| l.clone()).unwrap_or_default();
    (result, lines)
}
