//! The `inbox` command line: bad input is one line on stderr and exit status 2, and nothing
//! is touched (ids are parsed, never used as paths); `show` prints the metadata, follow-up
//! state, the whole history (who, when, note) and every delivery; `--by` defaults to `$USER`,
//! else `inbox`. A delivery a real SMTP server (aiosmtpd) refuses with 554 is `rejected` in
//! `inbox status` with the server's words, is not retried by `inbox deliver`, and is delivered
//! by `inbox deliver --retry ID --target smtp` once the server accepts.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use voicemail_examples::offline::{Args, run};

/// One offline call into the spool of `config`; returns its id.
fn message(dir: &Path, config: &Path) -> String {
    let input = dir.join("speech.wav");
    write_wav8k(&input, &speechlike(8000));
    let mut a = Args::new(&input, "+74951234567");
    a.name = Some("Ivan Petrov".into());
    a.config = Some(config.to_path_buf());
    run(&a).unwrap().meta.id.to_string()
}

fn refused(config: &Path, args: &[&str], why: &str) {
    let out = inbox(config, args);
    assert_eq!(out.code(), Some(2), "{args:?}: {out:?}");
    let err = out.stderr.trim_end();
    assert!(!err.contains('\n') && err.starts_with("inbox: "), "{args:?}: {err:?}");
    assert!(err.contains(why), "{args:?}: {err:?} does not say {why:?}");
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let dir = temp_dir("inbox-cli");
    let config = write_config(dir.path(), "35000-35999", "");
    let id = message(dir.path(), &config);
    let id = id.as_str();
    refused(&config, &["show", "../../etc/passwd"], "invalid message id");
    refused(&config, &["delete", "/tmp/x", "--force", "--reason", "r"], "invalid message id");
    refused(&config, &["show"], "needs a message id");
    refused(&config, &["show", "20990101T000000Z-0000000000000000"], "not found");
    refused(&config, &["assign", id], "--to");
    refused(&config, &["assign", id, "--to", "a\nb"], "control character");
    refused(&config, &["called-back", id, "--by", " "], "empty");
    refused(&config, &["delete", id], "called back");
    refused(&config, &["delete", id, "--force"], "--reason");
    refused(&config, &["delete", id, "--reason", "spam"], "--force");
    refused(&config, &["list", "extra"], "unexpected argument");
    refused(&config, &["list", "--to", "x"], "does not take --to");
    refused(&config, &["--bogus", "list"], "unknown option");
    refused(&config, &["frobnicate"], "unknown command");
    refused(&config, &["deliver", "--target", "smtp"], "--retry");
    refused(&config, &["deliver", "--retry", id, "--target", "imap"], "not a configured target");
    refused(&dir.path().join("missing.toml"), &["list"], "missing.toml");

    // Nothing changed: the message is as it was stored.
    let shown = show(&config, id);
    assert_eq!(shown["followup"]["state"], "new");
    assert_eq!(shown["history"].as_array().unwrap().len(), 1);

    // `--by` defaults to $USER (the helper sets "tester"), else "inbox".
    assert_eq!(inbox(&config, &["assign", id, "--to", "Anna"]).code(), Some(0));
    let out = run_bounded(
        "inbox",
        Command::new(example("inbox"))
            .arg("--config")
            .arg(&config)
            .args(["called-back", id, "--note", "ok"])
            .env_remove("USER"),
        Duration::from_secs(60),
    );
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let out = inbox(&config, &["delete", id, "--by", "Boris"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let shown = show(&config, id);
    let history: Vec<(&str, &str)> = shown["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["by"].as_str().unwrap(), h["event"]["event"].as_str().unwrap()))
        .collect();
    assert_eq!(history[0].1, "recorded");
    assert_eq!(history[1..], [("tester", "assigned"), ("inbox", "called-back"), ("Boris", "deleted")]);
    assert_eq!(shown["lifecycle"], "deleted");
    assert!(!dir.path().join("spool").join(format!("{id}.wav")).exists(), "the recording is removed");
    // The text form has the same: who, when, and the note.
    let text = inbox(&config, &["show", id]);
    assert_eq!(text.code(), Some(0));
    for want in
        ["follow-up: called back by inbox at ", "tester: assigned to Anna", "inbox: called back: ok", "Boris: deleted"]
    {
        assert!(text.stdout.contains(want), "{want:?} not in\n{}", text.stdout);
    }
    assert!(inbox(&config, &["list"]).stdout.is_empty(), "a deleted message is not listed");
}

#[test]
fn a_rejected_delivery_is_shown_and_retried_on_request() {
    let installed =
        Command::new(PYTHON).args(["-c", "import aiosmtpd"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if !installed {
        missing("aiosmtpd not installed (Debian package python3-aiosmtpd)");
        return;
    }
    let dir = temp_dir("inbox-reject");
    let port = free_port();
    let smtp = format!(
        "[delivery.smtp]\nhost = \"127.0.0.1\"\nport = {port}\nfrom = \"vm@example.com\"\nto = [\"office@example.com\"]\n"
    );
    let config = write_config(dir.path(), "36000-36999", &smtp);
    // A real aiosmtpd whose handler refuses every message after DATA.
    std::fs::write(
        dir.path().join("reject_handler.py"),
        "class Reject:\n    async def handle_DATA(self, server, session, envelope):\n        return '554 5.7.1 refused by policy'\n",
    )
    .unwrap();
    let rejecting = ChildGuard::spawn(
        "aiosmtpd (rejecting)",
        Command::new(PYTHON)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "reject_handler.Reject"])
            .env("PYTHONPATH", dir.path())
            .stdout(Stdio::null()),
    );
    assert!(wait_for_port(port, Duration::from_secs(20)), "the rejecting server did not start");

    let id = message(dir.path(), &config);
    let status = inbox(&config, &["status"]);
    assert_eq!(status.code(), Some(0), "{}", status.stderr);
    let line = status.stdout.lines().find(|l| l.starts_with(&id)).expect("a status line");
    assert!(line.contains(" smtp ") && line.contains(" rejected "), "{line}");
    assert!(line.contains("554") && line.contains("refused by policy"), "the server's words: {line}");
    // A rejected delivery waits for a person: `deliver` does not try it again.
    let out = inbox(&config, &["deliver"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(out.stdout.starts_with("recovered 0, attempted 0,"), "{}", out.stdout);

    drop(rejecting);
    let Some(server) = SmtpServer::start_on(&dir.path().join("smtp"), port) else { return };
    refused(&config, &["deliver", "--retry", "20990101T000000Z-0000000000000000"], "not found");
    let out = inbox(&config, &["deliver", "--retry", &id, "--target", "smtp"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(out.stdout.starts_with("queued 1 again; attempted 1, delivered 1,"), "{}", out.stdout);
    assert_eq!(server.messages().len(), 1, "the server has the message");
    let status = inbox(&config, &["status"]).stdout;
    assert!(status.lines().any(|l| l.starts_with(&id) && l.contains(" delivered ")), "{status}");
    refused(&config, &["deliver", "--retry", &id], "no undelivered delivery");
    let text = inbox(&config, &["show", &id]).stdout;
    for want in ["rejected by smtp: ", "delivery to smtp queued again", "delivered to smtp"] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }
}

/// A file with several mailboxes: `--mailbox NAME` picks one (ignoring case), every command
/// works on that mailbox's store alone; without it the default mailbox is used, and a file
/// with no default refuses to guess. `show` names the mailbox of the message.
#[test]
fn mailbox_option_picks_one_of_several() {
    let dir = temp_dir("inbox-mailboxes");
    let body = "[sip]\nlisten = \"127.0.0.1:0\"\n\n\
        [[mailboxes]]\nmailbox = \"Sales\"\nnumber = \"+74951234500\"\ntimezone = \"UTC\"\nspool = \"sales\"\n\n\
        [[mailboxes]]\nmailbox = \"Support\"\nnumbers = [\"200\"]\ntimezone = \"UTC\"\nspool = \"support\"\n";
    let config = dir.path().join("two.toml");
    std::fs::write(&config, format!("default_mailbox = \"Support\"\n{body}")).unwrap();
    // The offline call goes to the default mailbox, Support.
    let id = message(dir.path(), &config);
    let list = |args: &[&str]| {
        let out = inbox(&config, args);
        assert_eq!(out.code(), Some(0), "{args:?}: {}", out.stderr);
        out.stdout.lines().filter(|l| l.starts_with(&id)).count()
    };
    assert_eq!(list(&["list"]), 1, "the default mailbox");
    assert_eq!(list(&["--mailbox", "support", "list"]), 1);
    assert_eq!(list(&["--mailbox", "Sales", "list"]), 0, "Sales has its own store");
    refused(&config, &["--mailbox", "Sales", "show", &id], "not found");
    let shown = inbox(&config, &["--mailbox", "Support", "show", &id]);
    assert_eq!(shown.code(), Some(0), "{}", shown.stderr);
    assert!(shown.stdout.contains("mailbox:   Support"), "{}", shown.stdout);
    assert_eq!(inbox(&config, &["--mailbox", "Support", "assign", &id, "--to", "Anna"]).code(), Some(0));
    let json = inbox(&config, &["--mailbox", "Support", "show", &id, "--json"]);
    let json: serde_json::Value = serde_json::from_str(json.stdout.trim()).unwrap();
    assert_eq!(json["followup"]["state"], "assigned", "{json}");
    refused(&config, &["--mailbox", "Marketing", "list"], "no mailbox is named \"Marketing\"");

    // Without a default_mailbox, `inbox` needs --mailbox.
    std::fs::write(&config, body).unwrap();
    refused(&config, &["list"], "--mailbox");
    assert_eq!(list(&["--mailbox", "Support", "list"]), 1);
}
