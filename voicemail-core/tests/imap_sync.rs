//! The follow-up state on the mail server, both ways (issue "Returning every call", item 2),
//! against a real Dovecot (Debian `dovecot-imapd`) started by the test on 127.0.0.1, with the
//! mailbox's background [`Runner`] (delivery and the IMAP watcher) and a second, test-side IMAP
//! session in the role of a manager's mail client:
//!
//! - a client's call is APPENDed with keyword `VM-Assigned` and an `X-Voicemail-Manager`
//!   header naming the client's manager; an unknown caller's without the keyword;
//! - the mail client setting `vm-calledback` (what a Thunderbird tag named `VM-CalledBack`
//!   stores) on the copy turns the message called back, by `imap:vm`;
//! - another process (a second `Mailbox` on the spool) recording a callback sets
//!   `VM-CalledBack` on that message's copy, and a later assignment `VM-Assigned`;
//! - a copy expunged before its call was returned comes back, exactly once, with a history
//!   entry; a called-back one that is expunged does not.
//!
//! Twice: with the server's IDLE and CONDSTORE, and polling a server that announces neither
//! (`imap_capability` without them). Every wait is bounded (30 s) and asserts an outcome, not
//! a duration. Without a dovecot binary the tests print "SKIPPED: dovecot not found ..." and
//! pass, or fail when `VOICEMAIL_REQUIRE_INTEROP` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use support::{Dovecot, ImapClient};
use voicemail_core::config::{Config, DirectoryConfig};
use voicemail_core::deliver::build_email;
use voicemail_core::followup::{Event, FollowUp};
use voicemail_core::message::MessageMeta;
use voicemail_core::runner::Runner;
use voicemail_core::store::DeliveryState;
use voicemail_core::{CallSetup, Mailbox, route};

const CLIENTS: &str = "number,client,manager_name,manager_email\n\
8 (495) 123-45-67,ООО «Ромашка»,Анна Петрова,anna@example.com\n";

/// Waits until `ready` holds, at most 30 s; panics naming `what` (with the server's log).
fn wait(dovecot: &Dovecot, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not within 30 s\ndovecot log:\n{}", dovecot.log());
}

fn config(dir: &Path, dovecot: &Dovecot) -> Config {
    let mut c = support::mailbox_config(dir);
    std::fs::write(dir.join("clients.csv"), CLIENTS).unwrap();
    c.directory = Some(DirectoryConfig { path: dir.join("clients.csv"), default_region: "RU".to_owned() });
    c.load_directory().unwrap();
    let mut imap = support::imap_target(dovecot, "secret");
    imap.poll_interval = Duration::from_secs(2);
    imap.timeout = Duration::from_secs(10);
    c.delivery.imap = Some(imap);
    c
}

/// The Message-ID (without angle brackets) the message's e-mail has.
fn message_id(cfg: &Config, meta: &MessageMeta) -> String {
    build_email(meta, &[], &route::email_context(cfg, meta, &FollowUp::New)).unwrap().message_id
}

fn delivered(mailbox: &Mailbox, meta: &MessageMeta) -> bool {
    mailbox.show(&meta.id).unwrap().deliveries.iter().any(|d| d.target == "imap" && d.state == DeliveryState::Delivered)
}

fn has(flags: &Option<Vec<String>>, keyword: &str) -> bool {
    flags.as_ref().is_some_and(|f| f.iter().any(|k| k.eq_ignore_ascii_case(keyword)))
}

/// The one copy of `meta` in the folder: its UID.
fn only_copy(client: &mut ImapClient, cfg: &Config, meta: &MessageMeta) -> u32 {
    let uids = client.uids(&message_id(cfg, meta));
    assert_eq!(uids.len(), 1, "copies of {}: {uids:?}", meta.id);
    uids[0]
}

fn restores(mailbox: &Mailbox, meta: &MessageMeta) -> Vec<String> {
    mailbox
        .show(&meta.id)
        .unwrap()
        .history
        .iter()
        .filter(|h| matches!(h.event, Event::Restored { .. }))
        .map(|h| format!("{}: {}", h.by, h.event.describe()))
        .collect()
}

fn both_ways(settings: &str) {
    let tmp = support::TempDir::new("imap-sync");
    let Some(dovecot) = support::dovecot(&tmp.path().join("dovecot"), settings) else { return };
    let cfg = config(tmp.path(), &dovecot);
    let mailbox = Mailbox::open(cfg.clone()).unwrap();
    let runner = Runner::start(&mailbox).unwrap();

    // A and B: the client's calls (assigned to the manager at once); C: an unknown caller.
    let now = Timestamp::now();
    let a = support::record(&mailbox, CallSetup::new("+74951234567", now), 0.3, now);
    let b = support::record(&mailbox, CallSetup::new("8 (495) 123-45-67", now), 0.3, now);
    let c = support::record(&mailbox, CallSetup::new("+15551234567", now), 0.3, now);
    assert!(
        matches!(mailbox.show(&a.id).unwrap().followup, FollowUp::Assigned { ref to, .. } if to == "anna@example.com")
    );
    assert_eq!(mailbox.show(&c.id).unwrap().followup, FollowUp::New);
    wait(&dovecot, "all three delivered to the IMAP folder", || [&a, &b, &c].iter().all(|m| delivered(&mailbox, m)));

    // The APPEND carried the state and the manager.
    let mut client = dovecot.client("Voicemail");
    let (ua, ub, uc) =
        (only_copy(&mut client, &cfg, &a), only_copy(&mut client, &cfg, &b), only_copy(&mut client, &cfg, &c));
    let flags = client.flags(ua);
    assert!(has(&flags, "VM-Assigned") && !has(&flags, "VM-CalledBack"), "{flags:?}");
    let flags = client.flags(uc);
    assert!(!has(&flags, "VM-Assigned") && !has(&flags, "VM-CalledBack"), "{flags:?}");
    let files = support::maildir_files(&dovecot.maildir().join(".Voicemail"));
    assert_eq!(files.len(), 3, "{files:?}");
    let managers: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let raw = std::fs::read(f).unwrap();
            let parser = mail_parser::MessageParser::default()
                .header_address(mail_parser::HeaderName::Other("X-Voicemail-Manager".into()));
            let msg = parser.parse(&raw).unwrap();
            let manager = msg.header("X-Voicemail-Manager")?.as_address()?.first()?;
            Some(format!("{} <{}>", manager.name()?, manager.address()?))
        })
        .collect();
    assert_eq!(managers.len(), 2, "the client's two messages name the manager: {managers:?}");
    assert!(managers.iter().all(|m| m == "Анна Петрова <anna@example.com>"), "{managers:?}");

    // Mail client → store: the manager tags A in Thunderbird (which stores the tag's keyword
    // lower-cased).
    client.add_keyword(ua, "vm-calledback");
    wait(&dovecot, "A called back through its IMAP keyword", || mailbox.show(&a.id).unwrap().followup.is_called_back());
    let shown = mailbox.show(&a.id).unwrap();
    assert!(matches!(shown.followup, FollowUp::CalledBack { ref by, .. } if by == "imap:vm"), "{:?}", shown.followup);
    assert!(shown.history.iter().any(|h| h.by == "imap:vm" && matches!(h.event, Event::CalledBack { .. })));

    // Store → mail client: another process records B's callback; B's copy gets the keyword.
    let other = Mailbox::open(cfg.clone()).unwrap();
    other.called_back(&b.id, "boris", Some("ordered three more"), Timestamp::now()).unwrap();
    wait(&dovecot, "VM-CalledBack on B's copy", || has(&client.flags(ub), "VM-CalledBack"));

    // Expunged: C (not called back) comes back, B (called back) does not.
    client.expunge(uc);
    client.expunge(ub);
    wait(&dovecot, "C's copy put back", || client.uids(&message_id(&cfg, &c)).len() == 1);
    let uc2 = only_copy(&mut client, &cfg, &c);
    assert_ne!(uc2, uc);
    // A later change shows the watcher passed over the folder again: C, assigned by another
    // process, gets VM-Assigned on its new copy.
    other.assign(&c.id, "anna@example.com", "boss", Timestamp::now()).unwrap();
    wait(&dovecot, "VM-Assigned on C's new copy", || has(&client.flags(uc2), "VM-Assigned"));
    assert_eq!(only_copy(&mut client, &cfg, &c), uc2, "put back once");
    assert!(client.uids(&message_id(&cfg, &b)).is_empty(), "a called-back copy may go");
    let restored = restores(&mailbox, &c);
    assert_eq!(restored.len(), 1, "{restored:?}");
    assert!(
        restored[0].starts_with("imap-watcher: imap copy put back: expunged from Voicemail before the call"),
        "{restored:?}"
    );
    assert!(restores(&mailbox, &b).is_empty());
    assert!(restores(&mailbox, &a).is_empty());

    client.logout();
    runner.stop();
    let log = dovecot.log();
    assert!(!log.contains("Panic") && !log.contains("Fatal"), "{log}");
}

#[test]
fn follow_up_state_both_ways_with_idle_and_condstore() {
    both_ways("");
}

#[test]
fn follow_up_state_both_ways_by_polling() {
    both_ways("imap_capability = IMAP4rev1 LITERAL+ UIDPLUS\n");
}
