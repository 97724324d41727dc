//! The follow-up state on the mail server, end to end (issue "Returning every call", item 2):
//! the answering machine with `[delivery.imap]` on a real Dovecot (testkit's, on 127.0.0.1),
//! two SIPp calls, `inbox` runs as other processes, and a test-side IMAP session in the role
//! of the managers' mail client.
//!
//! - A client's call is delivered to Dovecot with keyword `VM-Assigned` and an
//!   `X-Voicemail-Manager` header naming the client's manager; an unknown caller's without.
//! - Setting `vm-calledback` (what a Thunderbird tag named `VM-CalledBack` stores) on the
//!   client's copy turns the message called back in `inbox show`, by `imap:vm`.
//! - The unknown caller's copy, expunged before its call was returned, comes back once (its
//!   history says so); `inbox called-back` on it then sets `VM-CalledBack` on the copy; the
//!   called-back client's copy, expunged, stays gone.
//!
//! Every wait is bounded (60 s) and asserts an outcome, never a duration.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const CLIENTS: &str = "number,client,manager_name,manager_email\n\
8 (495) 123-45-67,ООО «Ромашка»,Анна Петрова,anna@example.com\n";

const WAIT: Duration = Duration::from_secs(60);

/// Waits until `ready`, asking every 250 ms, at most [`WAIT`]; panics naming `what`.
fn wait(dovecot: &Dovecot, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{what}: not within {WAIT:?}\ndovecot log:\n{}", dovecot.log());
}

/// One SIPp call from `caller` with a second of audio; returns the message's id.
fn call(sipp: &Path, dir: &Path, am: &mut AnsweringMachine, caller: &str) -> String {
    let xml = scenario(
        dir,
        "uac_stream",
        &[
            ("CALLER", caller.into()),
            ("PT", "0".into()),
            ("CODEC", "PCMU".into()),
            ("GREETING_MS", greeting_ms().to_string()),
            ("FILE", "tone.wav".into()),
            ("STREAM_MS", "1000".into()),
        ],
    );
    let mut sipp = sipp_call(sipp, dir, &am.addr, &xml, "voicemail");
    let status = sipp.wait_timeout(Duration::from_secs(90)).expect("sipp did not finish");
    assert!(status.success(), "sipp failed: {status:?} (see {}/*_errors.log)", dir.display());
    let meta = am.next_message(Duration::from_secs(30)).expect("a JSON line on stdout");
    assert_eq!(meta.caller, caller);
    meta.id.to_string()
}

/// The UIDs of the copies of message `id` in the folder.
fn copies(client: &mut ImapClient, id: &str) -> Vec<u32> {
    client
        .ok(&format!("UID SEARCH HEADER X-Voicemail-Id \"{id}\""))
        .iter()
        .filter_map(|l| l.strip_prefix("* SEARCH"))
        .flat_map(|rest| rest.split_whitespace().filter_map(|w| w.parse().ok()).collect::<Vec<u32>>())
        .collect()
}

fn one_copy(client: &mut ImapClient, id: &str) -> u32 {
    let uids = copies(client, id);
    assert_eq!(uids.len(), 1, "copies of {id}: {uids:?}");
    uids[0]
}

fn events(shown: &serde_json::Value, kind: &str) -> Vec<serde_json::Value> {
    shown["history"].as_array().unwrap().iter().filter(|h| h["event"]["event"] == kind).cloned().collect()
}

#[test]
fn follow_up_state_on_the_mail_server_both_ways() {
    let Some(sipp_bin) = sipp() else { return };
    let dir = temp_dir("imap-followup");
    let Some(dovecot) = Dovecot::start(&dir.path().join("dovecot"), "") else { return };
    std::fs::write(dir.path().join("clients.csv"), CLIENTS).unwrap();
    let extra = format!(
        "[directory]\npath = \"clients.csv\"\ndefault_region = \"RU\"\n\n\
         [delivery.imap]\nhost = \"127.0.0.1\"\nport = {}\nusername = \"{DOVECOT_USER}\"\n\
         password = \"{DOVECOT_PASSWORD}\"\nfolder = \"Voicemail\"\ntimeout = \"10s\"\nwatch = true\n\
         poll_interval = \"5s\"\n",
        dovecot.port()
    );
    let config = write_config(dir.path(), "37000-37999", &extra);
    let mut am = AnsweringMachine::start(&config);
    am.wait_log("imap watcher: watching the folder", WAIT).expect("the IMAP watcher started");
    ulaw_tone(&dir.path().join("tone.wav"), 2.0, 440.0);

    // A: the client (assigned to the manager at once); B: an unknown caller.
    let a = call(&sipp_bin, dir.path(), &mut am, "+74951234567");
    let b = call(&sipp_bin, dir.path(), &mut am, "+74957777777");
    let mut client = dovecot.client("Voicemail");
    wait(&dovecot, "both delivered to the IMAP folder", || {
        copies(&mut client, &a).len() == 1 && copies(&mut client, &b).len() == 1
    });
    let (ua, ub) = (one_copy(&mut client, &a), one_copy(&mut client, &b));
    assert!(client.has_keyword(ua, "VM-Assigned"), "{:?}", client.flags(ua));
    assert!(!client.has_keyword(ub, "VM-Assigned"), "{:?}", client.flags(ub));
    let files = maildir_messages(&dovecot.maildir().join(".Voicemail"));
    let manager_of = |id: &str| {
        files
            .iter()
            .map(|f| std::fs::read(f).unwrap())
            .find(|raw| mail_header(raw, "X-Voicemail-Id").as_deref() == Some(id))
            .map(|raw| {
                let parser = mail_parser::MessageParser::default()
                    .header_address(mail_parser::HeaderName::Other("X-Voicemail-Manager".into()));
                let msg = parser.parse(&raw).unwrap();
                msg.header("X-Voicemail-Manager")
                    .and_then(|h| h.as_address())
                    .and_then(|a| a.first())
                    .map(|m| format!("{} <{}>", m.name().unwrap_or_default(), m.address().unwrap_or_default()))
            })
    };
    assert_eq!(manager_of(&a), Some(Some("Анна Петрова <anna@example.com>".to_owned())));
    assert_eq!(manager_of(&b), Some(None), "an unknown caller has no manager");

    // The manager tags A in the mail client: called back, by imap:vm.
    client.add_keyword(ua, "vm-calledback");
    wait(&dovecot, "A called back in `inbox show`", || show(&config, &a)["followup"]["state"] == "called-back");
    let shown = show(&config, &a);
    assert_eq!(shown["followup"]["by"], "imap:vm", "{shown}");
    let called: Vec<_> = events(&shown, "called-back");
    assert_eq!(called.len(), 1, "{shown}");
    assert_eq!(called[0]["by"], "imap:vm");

    // B's copy expunged before its call was returned: it comes back, once.
    client.expunge(ub);
    wait(&dovecot, "B's copy put back", || copies(&mut client, &b).len() == 1);
    let ub2 = one_copy(&mut client, &b);
    assert_ne!(ub2, ub);
    // A (called back) may go.
    client.expunge(ua);
    // Another process records B's callback: its copy gets the keyword (so the watcher has
    // looked at the folder again since both expunges).
    let out = inbox(&config, &["called-back", &b, "--by", "boris", "--note", "ordered three more"]);
    assert_eq!(out.code(), Some(0), "inbox called-back: {}", out.stderr);
    wait(&dovecot, "VM-CalledBack on B's copy", || client.has_keyword(ub2, "VM-CalledBack"));
    assert_eq!(one_copy(&mut client, &b), ub2, "put back once");
    assert!(copies(&mut client, &a).is_empty(), "a called-back copy is not put back");
    let shown = show(&config, &b);
    let restored = events(&shown, "restored");
    assert_eq!(restored.len(), 1, "{shown}");
    assert_eq!(restored[0]["by"], "imap-watcher");
    assert!(events(&show(&config, &a), "restored").is_empty());

    client.logout();
    let status = am.stop("TERM");
    assert!(status.success(), "{status:?}");
}
