//! One endpoint, two mailboxes (`[[mailboxes]]`): SIPp calls Sales and Support directly (by
//! Request-URI user), forwarded with Diversion (RFC 5806) and with History-Info (RFC 7044) to
//! a voicemail user no mailbox has, and an unknown number. Each call lands in its own
//! mailbox: its spool, its greeting (Support's calendar picks the greeting `support`), its
//! Maildir folder, with the mailbox and the diverting number in the metadata and the e-mail;
//! the unknown number gets 404 and leaves no message.

#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{run_sipp, scenario};
use voicemail_core::config::MailboxesConfig;
use voicemail_core::{Mailboxes, MessageMeta};
use voicemail_sip::{Endpoint, SipConfig};

const CONFIG: &str = r#"
[sip]
listen = "127.0.0.1:0"
rtp_ports = "20000-29999"

[[mailboxes]]
mailbox = "Sales"
number = "+74951234500"
numbers = ["sales", "100"]
timezone = "Europe/Moscow"
spool = "sales/spool"
[mailboxes.store]
min_free = "0"
[mailboxes.delivery.maildir]
root = "Maildir"
folder = "Sales"

[[mailboxes]]
mailbox = "Support"
number = "+74951234600"
numbers = ["200"]
timezone = "Europe/Moscow"
spool = "support/spool"
[mailboxes.store]
min_free = "0"
[mailboxes.greetings]
support = "support.wav"
[mailboxes.schedule]
default_greeting = "support"
[mailboxes.delivery.maildir]
root = "Maildir"
folder = "Support"
"#;

/// The e-mails delivered into `folder` of the Maildir under `root`.
fn mails(root: &Path, folder: &str) -> Vec<PathBuf> {
    let new = root.join(format!(".{folder}/new"));
    let mut out: Vec<PathBuf> =
        std::fs::read_dir(new).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    out.sort();
    out
}

#[test]
fn two_numbers_reach_two_mailboxes() {
    let Some(sipp) = common::tool("sipp", "sip-tester") else { return };
    common::log_to_stderr();
    let dir = common::temp_dir("mailboxes");
    common::write_pcm_wav(&dir.path().join("support.wav"), 8000, 1.0, 600.0);
    let mut config = MailboxesConfig::from_toml_str_in(CONFIG, dir.path()).unwrap();
    config.load_prompts().unwrap();
    let sip = SipConfig::from_table(config.sip.as_ref()).unwrap();
    let mailboxes = Mailboxes::open(config).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut endpoint = rt.block_on(Endpoint::bind(sip, mailboxes.clone())).unwrap();
    let mut messages = endpoint.messages().unwrap();
    let handle = endpoint.handle();
    let target = endpoint.local_addr().to_string();
    let run = rt.spawn(endpoint.run());

    let sipp_dir = dir.path().join("sipp");
    std::fs::create_dir_all(&sipp_dir).unwrap();
    // (caller, Request-URI user, To user, header line)
    let calls = [
        ("+15550000001", "100", "100", "Subject: direct to Sales"),
        ("+15550000002", "200", "200", "Subject: direct to Support"),
        ("+15550000003", "vm", "vm", "Diversion: <sip:+74951234600@pbx.example.com>;reason=no-answer;counter=1"),
        (
            "+15550000004",
            "vm",
            "vm",
            "History-Info: <sip:84951234500@pbx.example.com>;index=1, <sip:vm@pbx.example.com?Reason=SIP%3Bcause%3D408>;index=1.1;mp=1",
        ),
    ];
    for (caller, ruri, to, header) in calls {
        let vars = [
            ("CALLER", caller.to_owned()),
            ("RURI", ruri.to_owned()),
            ("TO", to.to_owned()),
            ("HEADER", header.to_owned()),
            ("HANGUP_MS", "500".to_owned()),
        ];
        let xml = scenario(&sipp_dir, "uac_dialled", &vars);
        let run =
            run_sipp(&sipp, &sipp_dir, &target, &["-sf", xml.to_str().unwrap(), "-m", "1"], Duration::from_secs(30));
        assert!(run.success(), "call from {caller}: {}", run.describe());
    }
    // An unknown number, with no default mailbox: 404.
    let xml = scenario(&sipp_dir, "uac_refused", &[("CALLER", "+15550000005".into()), ("STATUS", "404".into())]);
    let refused = run_sipp(
        &sipp,
        &sipp_dir,
        &target,
        &["-sf", xml.to_str().unwrap(), "-s", "999", "-m", "1"],
        Duration::from_secs(30),
    );
    assert!(refused.success(), "the unknown number: {}", refused.describe());

    let mut got: Vec<MessageMeta> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 4 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rt.block_on(async { tokio::time::timeout(left, messages.recv()).await.ok().flatten() }) {
            Some(m) => got.push(m),
            None => break,
        }
    }
    assert_eq!(got.len(), 4, "{got:?}");
    got.sort_by(|a, b| a.caller.cmp(&b.caller));
    let want = [
        ("+15550000001", "Sales", None, "default"),
        ("+15550000002", "Support", None, "support"),
        ("+15550000003", "Support", Some("+74951234600"), "support"),
        ("+15550000004", "Sales", Some("84951234500"), "default"),
    ];
    for (meta, (caller, mailbox, diverted, greeting)) in got.iter().zip(want) {
        assert_eq!(meta.caller, caller);
        assert_eq!(meta.mailbox.as_deref(), Some(mailbox), "{meta:?}");
        assert_eq!(meta.diverted_from.as_deref(), diverted, "{meta:?}");
        assert_eq!(meta.greeting, greeting, "{meta:?}");
        let own = mailboxes.get(mailbox).unwrap();
        assert_eq!(own.show(&meta.id).unwrap().meta, *meta);
        let spool = dir.path().join(format!("{}/spool", mailbox.to_lowercase()));
        assert!(meta.wav_path.as_ref().is_some_and(|p| p.starts_with(&spool) && p.is_file()), "{meta:?}");
        let other = mailboxes.all().iter().find(|m| m.config().mailbox != mailbox).unwrap();
        assert!(other.show(&meta.id).is_err(), "the other mailbox does not have {}", meta.id);
    }

    // Each mailbox's deliveries go to its own folder.
    let maildir = dir.path().join("Maildir");
    let deadline = Instant::now() + Duration::from_secs(60);
    while (mails(&maildir, "Sales").len() < 2 || mails(&maildir, "Support").len() < 2) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for (folder, callers) in
        [("Sales", ["+15550000001", "+15550000004"]), ("Support", ["+15550000002", "+15550000003"])]
    {
        let files = mails(&maildir, folder);
        assert_eq!(files.len(), 2, "{folder}: {files:?}");
        let texts: Vec<String> = files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect();
        for caller in callers {
            assert!(texts.iter().any(|t| t.contains(caller)), "{folder} has no e-mail from {caller}");
        }
        assert!(texts.iter().all(|t| t.contains(&format!("X-Voicemail-Mailbox: {folder}"))), "{folder}");
    }
    let diverted = std::fs::read_to_string(&mails(&maildir, "Support")[1]).unwrap()
        + &std::fs::read_to_string(&mails(&maildir, "Support")[0]).unwrap();
    assert!(diverted.contains("X-Voicemail-Diverted-From: +74951234600"), "{diverted}");

    handle.shutdown();
    let r = rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), run).await });
    assert!(matches!(r, Ok(Ok(Ok(())))), "endpoint run: {r:?}");
}
