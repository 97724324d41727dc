//! Several mailboxes in one configuration file: the `[[mailboxes]]` shape reads with key paths
//! that name the mailbox, a one-mailbox file still reads (and its mailbox takes every call),
//! names, spools and selecting numbers must differ, `Mailboxes` opens them all and chooses
//! the mailbox of a call by its diverting number, then Request-URI, then To (a default, or
//! none: refused), and a message records its mailbox and diverting number in metadata that
//! older records still read.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use voicemail_core::config::{Config, ConfigError, MailboxesConfig};
use voicemail_core::mailboxes::SelectedBy;
use voicemail_core::{CallSetup, Dialled, Mailboxes, MessageMeta};

const TWO: &str = r#"
default_mailbox = "Sales"

[sip]
listen = "127.0.0.1:0"

[web]
listen = "127.0.0.1:0"
public_url = "https://vm.example.com/"
mailbox = "Support"
[[web.users]]
name = "anna"
password_hash = "x"

[[mailboxes]]
mailbox = "Sales"
number = "+74951234500"
numbers = ["sales", "100"]
timezone = "Europe/Moscow"
spool = "sales/spool"
[mailboxes.greetings]
default = "builtin:default"
[mailboxes.delivery.maildir]
root = "Maildir"
folder = "Sales"

[[mailboxes]]
mailbox = "Support"
number = "+74951234600"
timezone = "UTC"
spool = "support/spool"
[mailboxes.delivery.maildir]
root = "Maildir"
folder = "Support"
[mailboxes.transcription]
command = ["./stt.sh", "--in", "{audio}"]
timeout = "5s"
"#;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn err(text: &str) -> ConfigError {
    match MailboxesConfig::from_toml_str(text) {
        Ok(_) => panic!("should be rejected:\n{text}"),
        Err(e) => e,
    }
}

fn assert_err(text: &str, key: &str, needle: &str) {
    let e = err(text);
    assert_eq!(e.key(), Some(key), "{e}");
    assert!(e.to_string().contains(needle), "{e:?} should mention {needle:?}");
}

/// `TWO` with `from` replaced by `to` (which must occur).
fn two_with(from: &str, to: &str) -> String {
    assert!(TWO.contains(from), "{from:?}");
    TWO.replacen(from, to, 1)
}

#[test]
fn two_mailboxes_read_with_shared_sip_and_web() {
    let base = Path::new("/etc/vm");
    let c = MailboxesConfig::from_toml_str_in(TWO, base).unwrap();
    assert!(c.is_multi());
    assert_eq!(c.names(), ["Sales", "Support"]);
    assert_eq!(c.default_mailbox.as_deref(), Some("Sales"));
    assert_eq!(c.primary().mailbox, "Sales");
    assert_eq!(c.get("support").map(|m| m.mailbox.as_str()), Some("Support"));
    let (sales, support) = (&c.mailboxes[0], &c.mailboxes[1]);
    assert_eq!(sales.spool, base.join("sales/spool"));
    assert_eq!(support.spool, base.join("support/spool"));
    assert_eq!(sales.numbers, ["sales", "100"]);
    assert_eq!(support.timezone_name(), "UTC");
    // [sip] and [web] are shared; the web queue serves Support, so only its e-mails link it.
    assert!(sales.sip.is_some() && support.sip.is_some());
    assert_eq!(c.web_mailbox().mailbox, "Support");
    assert_eq!(sales.public_url, None);
    assert_eq!(support.public_url.as_deref(), Some("https://vm.example.com"));
    // The transcription hook: the relative program resolved against the file's directory.
    let t = support.transcription.as_ref().unwrap();
    assert_eq!(t.command, ["/etc/vm/./stt.sh", "--in", "{audio}"]);
    assert_eq!(t.timeout, std::time::Duration::from_secs(5));
    assert!(sales.transcription.is_none());
    // Config alone refuses the shape and says what reads it.
    let e = Config::from_toml_str(TWO).unwrap_err();
    assert_eq!(e.key(), Some("mailboxes"));
    assert!(e.to_string().contains("MailboxesConfig"), "{e}");
}

#[test]
fn a_one_mailbox_file_is_a_set_of_one_whose_mailbox_is_the_default() {
    let c = MailboxesConfig::from_toml_str("mailbox = \"Sales\"\ntimezone = \"UTC\"\nspool = \"s\"\n").unwrap();
    assert!(!c.is_multi());
    assert_eq!(c.names(), ["Sales"]);
    assert_eq!(c.default_mailbox.as_deref(), Some("Sales"));
    // Its errors keep their old key paths.
    let e = MailboxesConfig::from_toml_str("mailbox = \"S\"\ntimezone = \"Mars/Base\"\nspool = \"s\"\n").unwrap_err();
    assert_eq!(e.key(), Some("timezone"));
    // And a mailbox of its own takes every call, whatever the number.
    let dir = support::TempDir::new("one-mailbox");
    let mailboxes = Mailboxes::open(MailboxesConfig::from(support::mailbox_config(dir.path()))).unwrap();
    let s = mailboxes.select(&Dialled { request_uri: Some("999".into()), ..Dialled::default() }).unwrap();
    assert_eq!(s.by, SelectedBy::Default);
}

#[test]
fn the_documented_examples_load() {
    let c = MailboxesConfig::load(&repo_root().join("examples/mailboxes.toml"))
        .unwrap_or_else(|e| panic!("examples/mailboxes.toml: {e}"));
    assert_eq!(c.names(), ["Sales", "Support"]);
    assert_eq!(c.default_mailbox.as_deref(), Some("Sales"));
    assert!(c.mailboxes[1].client_directory().is_some(), "the directory of a mailbox is loaded");
    assert!(c.mailboxes.iter().all(|m| m.prompt("default").is_some()), "the greetings are loaded");
    let one = MailboxesConfig::load(&repo_root().join("examples/voicemail.toml")).unwrap();
    assert_eq!(one.names(), ["Sales"]);
    assert_eq!(one.mailboxes[0].numbers, ["sales"]);
}

#[test]
fn errors_name_the_mailbox_and_the_key() {
    // A serde error deep inside a mailbox.
    assert_err(
        &two_with("folder = \"Support\"", "folder = \"Support\"\nsize = 1"),
        "mailboxes[1].delivery.maildir.size",
        "unknown field",
    );
    assert_err(
        &two_with(
            "folder = \"Sales\"",
            "folder = \"Sales\"\n[mailboxes.delivery.smtp]\nhost = \"h\"\nport = 25\nfrom = \"a@b.c\"\nto = [\"nobody\"]",
        ),
        "mailboxes[0].delivery.smtp.to[0]",
        "e-mail address",
    );
    // A validation error.
    assert_err(&two_with("timezone = \"UTC\"", "timezone = \"Nowhere/Land\""), "mailboxes[1].timezone", "time zone");
    assert_err(&two_with("timeout = \"5s\"", "timeout = \"1h\""), "mailboxes[1].transcription.timeout", "10m");
    assert_err(
        &two_with("command = [\"./stt.sh\", \"--in\", \"{audio}\"]", "command = []"),
        "mailboxes[1].transcription.command",
        "program",
    );
    // Shared tables inside a mailbox, mailbox keys at the top.
    assert_err(
        &two_with("[mailboxes.transcription]", "[mailboxes.sip]\nlisten = \"x\"\n[mailboxes.transcription]"),
        "mailboxes[1].sip",
        "top level",
    );
    assert_err(&format!("timezone = \"UTC\"\n{TWO}"), "timezone", "[[mailboxes]]");
    // Names, spools and numbers are each a mailbox's own.
    assert_err(
        &two_with("mailbox = \"Support\"\nnumber", "mailbox = \"sales\"\nnumber"),
        "mailboxes[1].mailbox",
        "name",
    );
    assert_err(&two_with("spool = \"support/spool\"", "spool = \"./sales/spool/\""), "mailboxes[1].spool", "spool");
    // And so are their shared databases: two mailboxes on one would see each other's messages.
    let store = |spool: &str| format!("spool = \"{spool}\"\n[mailboxes.store]\nurl = \"postgres://vm@db/vm\"");
    let both = two_with("spool = \"sales/spool\"", &store("sales/spool"));
    let both = both.replacen("spool = \"support/spool\"", &store("support/spool"), 1);
    assert_err(&both, "mailboxes[1].store.url", "database of its own");
    assert_err(
        &two_with("number = \"+74951234600\"", "number = \"8 (495) 123-45-00\""),
        "mailboxes[1].number",
        "mailboxes[0]",
    );
    assert_err(
        &two_with("number = \"+74951234600\"", "numbers = [\"x\", \"SALES\"]"),
        "mailboxes[1].numbers[1]",
        "mailboxes[0]",
    );
    // A mailbox nothing selects, a default or web mailbox that does not exist.
    assert_err(&two_with("number = \"+74951234600\"", ""), "mailboxes[1]", "no number selects");
    assert_err(
        &two_with("default_mailbox = \"Sales\"", "default_mailbox = \"Marketing\""),
        "default_mailbox",
        "Marketing",
    );
    assert_err(&two_with("mailbox = \"Support\"\n[[web", "mailbox = \"Nobody\"\n[[web"), "web.mailbox", "Nobody");
    assert_err("mailboxes = []", "mailboxes", "at least one");
}

#[test]
fn calls_go_to_the_mailbox_of_their_number() {
    let dir = support::TempDir::new("mailboxes");
    let text = TWO
        .replace("[mailboxes.transcription]\ncommand = [\"./stt.sh\", \"--in\", \"{audio}\"]\ntimeout = \"5s\"\n", "");
    let open = |text: &str| {
        let mut c = MailboxesConfig::from_toml_str_in(text, dir.path()).unwrap();
        for m in &mut c.mailboxes {
            m.store.min_free_bytes = 0;
        }
        Mailboxes::open(c).unwrap()
    };
    let mailboxes = open(&text);
    assert_eq!(mailboxes.all().len(), 2);
    assert_eq!(mailboxes.primary().config().mailbox, "Sales");
    let pick = |m: &Mailboxes, div: Option<&str>, ruri: Option<&str>, to: Option<&str>| {
        let d = Dialled {
            diverted_from: div.map(str::to_owned),
            request_uri: ruri.map(str::to_owned),
            to: to.map(str::to_owned),
        };
        m.select(&d).map(|s| (s.mailbox.config().mailbox.clone(), s.by))
    };
    let name = |s: &str| s.to_owned();
    assert_eq!(pick(&mailboxes, None, Some("+74951234600"), None), Some((name("Support"), SelectedBy::RequestUri)));
    assert_eq!(
        pick(&mailboxes, Some("84951234600"), Some("sales"), None),
        Some((name("Support"), SelectedBy::DivertedFrom))
    );
    assert_eq!(pick(&mailboxes, None, Some("vm"), Some("Sales")), Some((name("Sales"), SelectedBy::To)));
    assert_eq!(pick(&mailboxes, Some("555"), Some("vm"), Some("vm")), Some((name("Sales"), SelectedBy::Default)));
    // Without a default, nothing takes an unknown number.
    drop(mailboxes);
    let no_default = open(&text.replace("default_mailbox = \"Sales\"", ""));
    assert!(no_default.default_mailbox().is_none());
    assert!(pick(&no_default, Some("555"), Some("vm"), Some("vm")).is_none());
    assert_eq!(pick(&no_default, None, Some("100"), None).map(|p| p.0), Some(name("Sales")));

    // Each mailbox records into its own spool, and the message names the mailbox and the
    // diverting number.
    let support_box = no_default.get("Support").unwrap();
    let mut setup = CallSetup::new("+74957654321", Timestamp::now());
    setup.diverted_from = Some("84951234600".to_owned());
    let meta = support::record(support_box, setup, 1.0, Timestamp::now());
    assert_eq!(meta.mailbox.as_deref(), Some("Support"));
    assert_eq!(meta.diverted_from.as_deref(), Some("84951234600"));
    assert!(meta.wav_path.as_ref().unwrap().starts_with(dir.path().join("support/spool")));
    assert_eq!(support_box.show(&meta.id).unwrap().meta, meta);
    assert!(no_default.get("Sales").unwrap().show(&meta.id).is_err(), "the other store does not have it");
    // Its e-mail says so.
    let report = support_box.deliver_all_due(Timestamp::now()).unwrap();
    assert_eq!(report.delivered.len(), 1);
    let mails = support::maildir_files(&dir.path().join("Maildir/.Support"));
    assert_eq!(mails.len(), 1);
    let raw = std::fs::read(&mails[0]).unwrap();
    let mail = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert_eq!(mail.header_raw("X-Voicemail-Mailbox").map(str::trim), Some("Support"));
    assert_eq!(mail.header_raw("X-Voicemail-Diverted-From").map(str::trim), Some("+74951234600"));
    assert!(mail.body_text(0).unwrap().contains("Forwarded from: +74951234600"), "{:?}", mail.body_text(0));
    assert!(support::maildir_files(&dir.path().join("Maildir/.Sales")).is_empty());
}

#[test]
fn metadata_of_older_records_still_reads() {
    let old = r#"{"id":"20261127T113205Z-0123456789abcdef","caller":"+74951234567","caller_name":null,
        "called":"","started_at":"2026-11-27T11:32:05Z","duration_ms":1000,"end_reason":"hang-up",
        "codec":"pcmu","greeting":"default","dtmf":"","wav_path":null,"media":{"packets_received":0,
        "malformed":0,"unknown_payload_type":0,"duplicates":0,"late":0,"lost":0,"ssrc_changes":0,
        "concealed_samples":0}}"#;
    let meta: MessageMeta = serde_json::from_str(old).unwrap();
    assert_eq!((meta.mailbox, meta.diverted_from, meta.transcript), (None, None, None));
    // Absent fields are not written either, so older readers see what they know.
    let line = support::sample_meta("m-1", "+74951234567", None).to_json_line();
    assert!(!line.contains("mailbox") && !line.contains("diverted_from") && !line.contains("transcript"), "{line}");
}
