//! The IMAP folder watcher against a hostile server (tests/support/misbehaving_server.py
//! `imap-hostile` on 127.0.0.1): absurd numbers, broken and overlong responses, a literal far
//! beyond the limit, a broken list in IDLE, BYE, a 2 MiB line without end. Each ends that
//! session with a logged error, never a panic: the watcher reconnects (with back-off) and meets
//! every variant in turn, a valid `VM-CalledBack` among them still marks the message called
//! back (by `imap:vm`), and the runner stops when asked. Without a python3 the test prints
//! "SKIPPED" and passes, or fails when `VOICEMAIL_REQUIRE_INTEROP` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use jiff::Timestamp;
use voicemail_core::deliver::ImapTarget;
use voicemail_core::followup::FollowUp;
use voicemail_core::runner::Runner;
use voicemail_core::{CallSetup, Mailbox};

#[test]
fn hostile_server_sessions_end_in_errors_and_reconnects() {
    let Some(python) = support::python() else { return };
    let tmp = support::TempDir::new("imap-hostile");
    let sessions = tmp.path().join("sessions.log");
    let (_server, port) = support::start_misbehaving_server(&python, "imap-hostile", &[sessions.to_str().unwrap()]);
    let mut cfg = support::mailbox_config(tmp.path());
    let mut imap = ImapTarget::new("127.0.0.1", port, "vm", "secret", "Voicemail");
    imap.timeout = Duration::from_secs(10);
    imap.poll_interval = Duration::from_secs(1);
    cfg.delivery.imap = Some(imap);
    let mailbox = Mailbox::open(cfg).unwrap();
    let now = Timestamp::now();
    let meta = support::record(&mailbox, CallSetup::new("+74951234567", now), 0.2, now);
    // Delivered (the server answers delivery properly) before the watcher starts, so that its
    // first session has a copy to look at.
    let report = mailbox.deliver_all_due(now).unwrap();
    assert_eq!(report.delivered.len(), 1, "{report:?}");
    let runner = Runner::start(&mailbox).unwrap();

    // Five watcher sessions: every hostile variant once, and a reconnect after the last.
    let deadline = Instant::now() + Duration::from_secs(90);
    let count = || std::fs::read_to_string(&sessions).map(|s| s.lines().count()).unwrap_or(0);
    while count() < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(count() >= 5, "the watcher reconnected after each hostile session: {} sessions", count());
    let shown = mailbox.show(&meta.id).unwrap();
    assert!(matches!(shown.followup, FollowUp::CalledBack { ref by, .. } if by == "imap:vm"), "{:?}", shown.followup);
    runner.stop();
}
