//! Reminders through the mailbox (`[followup]`): two mailboxes on one spool (as two processes)
//! running reminder passes at the same moment queue each reminder once; a message called back
//! gets no more; and the background runner, reading the real clock, sends a due reminder to
//! a real SMTP server (`python3 -m aiosmtpd`) without being asked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use voicemail_core::config::Config;
use voicemail_core::deliver::SmtpTarget;
use voicemail_core::followup::{Event, ReminderStep};
use voicemail_core::remind::FollowupConfig;
use voicemail_core::runner::Runner;
use voicemail_core::{CallSetup, Mailbox};

fn config(dir: &Path, smtp_port: u16) -> Config {
    let mut c = support::mailbox_config(dir);
    let mut smtp = SmtpTarget::new("127.0.0.1", smtp_port, "vm@example.com");
    smtp.to = vec!["office@example.com".to_owned()];
    smtp.connect_timeout = Duration::from_secs(2);
    c.delivery.smtp = Some(smtp);
    c.followup = Some(FollowupConfig {
        remind_after: Duration::from_secs(3600),
        remind_every: Some(Duration::from_secs(3600)),
        escalate_after: None,
        escalate_to: Vec::new(),
    });
    c
}

fn queued(mailbox: &Mailbox, id: &voicemail_core::MessageId) -> Vec<ReminderStep> {
    mailbox
        .show(id)
        .unwrap()
        .history
        .iter()
        .filter_map(|h| match &h.event {
            Event::ReminderQueued { step, .. } => Some(*step),
            _ => None,
        })
        .collect()
}

#[test]
fn concurrent_passes_queue_each_reminder_once() {
    let dir = support::TempDir::new("remind-race");
    // Nothing listens on the SMTP port: reminders stay queued, nothing is sent.
    let cfg = config(dir.path(), support::free_port());
    let t0: Timestamp = "2026-11-27T08:00:00Z".parse().unwrap();
    let a = Mailbox::open(cfg.clone()).unwrap();
    let b = Mailbox::open(cfg).unwrap();
    let ids: Vec<_> = (0..3).map(|_| support::record(&a, CallSetup::new("+74951234567", t0), 0.2, t0).id).collect();

    // No business hours: wall-clock time. At +1h30 reminder 1 is due, at +3h30 reminder 3
    // (reminder 2 was missed: a late pass sends only the latest).
    for (at, want) in
        [(90, vec![ReminderStep::Remind(1)]), (210, vec![ReminderStep::Remind(1), ReminderStep::Remind(3)])]
    {
        let now = t0 + SignedDuration::from_mins(at);
        std::thread::scope(|s| {
            for mailbox in [&a, &b, &a, &b] {
                s.spawn(move || {
                    for _ in 0..5 {
                        mailbox.remind(now).unwrap();
                    }
                });
            }
        });
        for id in &ids {
            assert_eq!(queued(&a, id), want, "{id}");
            let reminders: Vec<_> = a.show(id).unwrap().deliveries.iter().filter_map(|d| d.reminder).collect();
            assert_eq!(reminders, want);
        }
    }
    let report = a.remind(t0 + SignedDuration::from_mins(210)).unwrap();
    assert!(report.queued.is_empty());
    assert_eq!(report.next_due, Some(t0 + SignedDuration::from_hours(4)));

    // Called back: its unsent reminders are dropped and no more are queued.
    a.called_back(&ids[0], "anna", None, t0 + SignedDuration::from_mins(220)).unwrap();
    assert!(a.show(&ids[0]).unwrap().deliveries.iter().all(|d| d.reminder.is_none()));
    let report = b.remind(t0 + SignedDuration::from_hours(10)).unwrap();
    let mut reminded = report.queued.clone();
    reminded.sort();
    let office = vec!["office@example.com".to_owned()];
    let mut want = vec![
        (ids[1].clone(), ReminderStep::Remind(10), office.clone()),
        (ids[2].clone(), ReminderStep::Remind(10), office),
    ];
    want.sort();
    assert_eq!(reminded, want);
}

#[test]
fn the_runner_sends_due_reminders_by_itself() {
    let Some(python) = support::python_with_aiosmtpd() else { return };
    let dir = support::TempDir::new("remind-runner");
    let port = support::free_port();
    let smtp_dir = dir.path().join("smtp");
    let mut server = support::ServerGuard::spawn(
        "aiosmtpd",
        Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&smtp_dir)
            .stdout(Stdio::null()),
    );
    assert!(support::wait_for_port(port, Duration::from_secs(20)), "aiosmtpd did not start");
    server.assert_running("after starting");

    let mailbox = Mailbox::open(config(dir.path(), port)).unwrap();
    // A call 90 minutes ago: reminder 1 (after 1 h) is due now, on the real clock.
    let started = Timestamp::now() - SignedDuration::from_mins(90);
    let meta = support::record(&mailbox, CallSetup::new("+74951234567", started), 0.2, Timestamp::now());
    let runner = Runner::start(&mailbox).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let reminder_sent = || {
        support::maildir_files(&smtp_dir)
            .iter()
            .any(|f| String::from_utf8_lossy(&std::fs::read(f).unwrap()).contains("X-Voicemail-Reminder: remind-1"))
    };
    while !reminder_sent() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    runner.stop();
    assert!(reminder_sent(), "the runner sent the due reminder");
    // The message itself and one reminder: two e-mails, and the reminder went to the office.
    assert_eq!(support::maildir_files(&smtp_dir).len(), 2);
    let m = mailbox.show(&meta.id).unwrap();
    assert!(m.history.iter().any(|h| matches!(h.event, Event::ReminderSent { step: ReminderStep::Remind(1), .. })));
    // Stopped: another pass at the same time queues nothing new.
    assert!(mailbox.remind(Timestamp::now()).unwrap().queued.is_empty());
}
