//! Follow-up from the command line (issue "Returning every call", items 1, 3 and 5):
//!
//! - a client's call is assigned to the client's manager as soon as it is stored, and
//!   `inbox show` says `directory` did it; an unknown caller's stays new;
//! - `inbox remind --at` with a message 5 business hours old sends exactly one reminder, to the
//!   manager only, checked at a real SMTP server (aiosmtpd); a second run at the same time
//!   sends nothing; the weekend does not count; later the escalation goes to the manager and
//!   `escalate_to` in one e-mail; once the call is returned nothing more is sent;
//! - an e-mail of a mailbox with `language = "ru"` has a Russian subject and body with the
//!   caller in E.164 and national format, and a configured `subject` template changes the
//!   subject.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use mail_parser::{MessageParser, MimeHeaders};
use voicemail_examples::offline::{Args, run};

const CLIENTS: &str = "number,client,manager_name,manager_email\n\
8 (495) 123-45-67,ООО «Ромашка»,Анна Петрова,anna@example.com\n";

/// A mailbox in `dir` (Moscow time, office hours Monday to Friday 09:00-18:00, the client
/// directory above) with `extra` appended.
fn write_mailbox(dir: &Path, extra: &str) -> PathBuf {
    std::fs::write(dir.join("clients.csv"), CLIENTS).unwrap();
    let path = dir.join("vm.toml");
    std::fs::write(
        &path,
        format!(
            "mailbox = \"Sales\"\ntimezone = \"Europe/Moscow\"\nspool = \"spool\"\n\n\
             [schedule.business_hours]\nmonday = \"09:00-18:00\"\ntuesday = \"09:00-18:00\"\n\
             wednesday = \"09:00-18:00\"\nthursday = \"09:00-18:00\"\nfriday = \"09:00-18:00\"\n\
             saturday = \"closed\"\nsunday = \"closed\"\n\n\
             [directory]\npath = \"clients.csv\"\ndefault_region = \"RU\"\n\n{extra}\n"
        ),
    )
    .unwrap();
    path
}

/// One offline call from `caller` at `at` (RFC 3339); returns the message id.
fn call(dir: &Path, config: &Path, caller: &str, at: &str) -> String {
    let input = dir.join("speech.wav");
    write_wav8k(&input, &speechlike(8000));
    let mut a = Args::new(&input, caller);
    a.name = Some("Ivan Petrov".into());
    a.config = Some(config.to_path_buf());
    a.at = Some(at.parse().unwrap());
    run(&a).unwrap().meta.id.to_string()
}

/// The e-mails the SMTP server accepted that are reminders of `id`, as (step, recipients).
fn reminders(smtp: &SmtpServer, id: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for path in smtp.messages() {
        let raw = std::fs::read(&path).unwrap();
        if mail_header(&raw, "X-Voicemail-Id").as_deref() != Some(id) {
            continue;
        }
        if let Some(step) = mail_header(&raw, "X-Voicemail-Reminder") {
            out.push((step, mail_header(&raw, "X-RcptTo").unwrap_or_default()));
        }
    }
    out.sort();
    out
}

fn remind(config: &Path, at: &str) -> String {
    let out = inbox(config, &["remind", "--at", at]);
    assert_eq!(out.code(), Some(0), "inbox remind --at {at}: {}", out.stderr);
    out.stdout
}

#[test]
fn reminders_reach_the_manager_once_then_escalate() {
    let dir = temp_dir("followup");
    let Some(smtp) = SmtpServer::start(&dir.path().join("smtp")) else { return };
    let followup = format!(
        "[delivery.smtp]\nhost = \"127.0.0.1\"\nport = {}\nfrom = \"vm@example.com\"\nto = [\"office@example.com\"]\n\n\
         [followup]\nremind_after = \"4h\"\nremind_every = \"6h\"\nescalate_after = \"12h\"\n\
         escalate_to = [\"head@example.com\"]\n",
        smtp.port()
    );
    let config = write_mailbox(dir.path(), &followup);
    // Friday 2026-11-27 10:00 in Moscow, from the client's number written another way.
    let id = call(dir.path(), &config, "+7 495 123 45 67", "2026-11-27T10:00:00+03:00");
    let stranger = call(dir.path(), &config, "+7 999 000 00 00", "2026-11-27T10:30:00+03:00");

    // Item 1: assigned to the manager at once, by the directory; the stranger's stays new.
    let shown = show(&config, &id);
    assert_eq!(shown["followup"]["state"], "assigned", "{shown}");
    assert_eq!(shown["followup"]["to"], "anna@example.com");
    let history: Vec<(&str, &str)> = shown["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["by"].as_str().unwrap(), h["event"]["event"].as_str().unwrap()))
        .collect();
    assert_eq!(history[..2], [("offline_call", "recorded"), ("directory", "assigned")], "{history:?}");
    let text = inbox(&config, &["show", &id]).stdout;
    assert!(text.contains("directory: assigned to anna@example.com"), "{text}");
    assert_eq!(show(&config, &stranger)["followup"]["state"], "new");
    // Both messages' own e-mails went out when they were stored.
    let originals = smtp.messages().len();
    assert_eq!(originals, 2);

    // 15:00: 5 business hours. Exactly one reminder, to the manager only (not the office).
    let out = remind(&config, "2026-11-27T15:00");
    assert!(out.contains(&format!("reminder: {id} remind-1 to anna@example.com")), "{out}");
    assert!(out.contains("delivered 2,"), "this one and the stranger's (to the office): {out}");
    assert_eq!(reminders(&smtp, &id), [("remind-1".to_owned(), "anna@example.com".to_owned())]);
    assert_eq!(reminders(&smtp, &stranger), [("remind-1".to_owned(), "office@example.com".to_owned())]);
    // The same time again: nothing.
    let out = remind(&config, "2026-11-27T15:00");
    assert!(out.starts_with("queued 0 reminders\nattempted 0,"), "{out}");
    // Saturday noon: 26 hours later on the clock, but 8 business hours: nothing due.
    let out = remind(&config, "2026-11-28T12:00");
    assert!(out.starts_with("queued 0 reminders\nattempted 0,"), "{out}");
    assert_eq!(smtp.messages().len(), originals + 2);

    // The stranger's call is returned: it gets no more reminders.
    let done = inbox(&config, &["called-back", &stranger, "--by", "Boris", "--note", "ok"]);
    assert_eq!(done.code(), Some(0), "{}", done.stderr);

    // Monday 13:30: 12.5 business hours. The escalation (which stands for reminder 2, due at
    // 10 h) goes to the manager and escalate_to in one e-mail.
    let out = remind(&config, "2026-11-30T13:30");
    assert!(out.contains(&format!("reminder: {id} escalate to anna@example.com, head@example.com")), "{out}");
    assert!(out.contains("queued 1 reminders"), "{out}");
    let sent = reminders(&smtp, &id);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0].0, "escalate");
    assert!(sent[0].1.contains("anna@example.com") && sent[0].1.contains("head@example.com"), "{sent:?}");
    assert!(!sent[0].1.contains("office@example.com"), "{sent:?}");
    assert_eq!(reminders(&smtp, &stranger).len(), 1);
    let out = remind(&config, "2026-11-30T13:30");
    assert!(out.starts_with("queued 0 reminders"), "{out}");

    // The escalation reads as one, with the caller's number and the waiting time.
    let escalation = smtp
        .messages()
        .into_iter()
        .map(|p| std::fs::read(p).unwrap())
        .find(|raw| mail_header(raw, "X-Voicemail-Reminder").as_deref() == Some("escalate"))
        .unwrap();
    let subject = MessageParser::default().parse(&escalation).unwrap().subject().unwrap().to_owned();
    assert_eq!(subject, "Escalation: call back +74951234567 (Ivan Petrov) [ООО «Ромашка»], waiting 12 h 30 min");

    // History and status say what happened.
    let shown = inbox(&config, &["show", &id]).stdout;
    for want in [
        "reminder: reminder 1 queued for anna@example.com",
        "reminder: escalation queued for",
        "delivery: reminder 1 sent",
    ] {
        assert!(shown.contains(want), "{want:?} not in\n{shown}");
    }
    let status = inbox(&config, &["status"]).stdout;
    assert!(
        status.lines().any(|l| l.starts_with(&id) && l.contains("smtp escalate") && l.contains("delivered")),
        "{status}"
    );

    // Called back: no further reminder (the next would be due at 16 h).
    let done = inbox(&config, &["called-back", &id, "--by", "Anna"]);
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    let out = remind(&config, "2026-12-02T18:00");
    assert!(out.starts_with("queued 0 reminders\nattempted 0,"), "{out}");
    assert_eq!(reminders(&smtp, &id).len(), 2);

    // Bad input is refused.
    let out = inbox(&config, &["remind", "--at", "tomorrow"]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("--at"), "{}", out.stderr);
    let plain = config_without_followup(dir.path());
    let out = inbox(&plain, &["remind"]);
    assert_eq!(out.code(), Some(2));
    assert!(out.stderr.contains("[followup]"), "{}", out.stderr);
}

fn config_without_followup(dir: &Path) -> PathBuf {
    let sub = dir.join("plain");
    std::fs::create_dir_all(&sub).unwrap();
    write_mailbox(&sub, "")
}

#[test]
fn russian_e_mail_and_a_custom_subject() {
    let dir = temp_dir("followup-ru");
    let config = write_mailbox(dir.path(), &format!("[email]\nlanguage = \"ru\"\n\n{MAILDIR}"));
    let id = call(dir.path(), &config, "84951234567", "2026-11-27T14:32:00+03:00");
    let folder = dir.path().join("Maildir/.Voicemail");
    let mails = maildir_messages(&folder);
    assert_eq!(mails.len(), 1);
    let raw = std::fs::read(&mails[0]).unwrap();
    let msg = MessageParser::default().parse(&raw).unwrap();
    let subject = msg.subject().unwrap();
    assert!(subject.starts_with("Голосовое сообщение от +74951234567 (Ivan Petrov), 0:0"), "{subject}");
    assert!(subject.ends_with(" [ООО «Ромашка»]"), "{subject}");
    let body = mail_text(&raw);
    for want in [
        "Звонил:        +74951234567 (8 (495) 123-45-67)",
        "Когда:         27.11.2026 14:32 (Europe/Moscow)",
        "Менеджер:      Анна Петрова <anna@example.com>",
        "Как закончился звонок: абонент положил трубку",
        &format!("Запись во вложении. Сообщение {id}."),
    ] {
        assert!(body.lines().any(|l| l == want), "{want:?} not in\n{body}");
    }
    let name = msg.attachment(0).and_then(MimeHeaders::attachment_name);
    assert_eq!(name, Some("+74951234567_2026-11-27_14-32.wav"));

    // A custom subject template (the body stays the built-in Russian one).
    let sub = dir.path().join("custom");
    std::fs::create_dir_all(&sub).unwrap();
    let custom = write_mailbox(
        &sub,
        &format!(
            "[email]\nlanguage = \"ru\"\nsubject = \"Перезвонить: {{{{ caller_national }}}} {{{{ client }}}}\"\n\n{MAILDIR}"
        ),
    );
    call(&sub, &custom, "+74951234567", "2026-11-27T14:32:00+03:00");
    let mails = maildir_messages(&sub.join("Maildir/.Voicemail"));
    let raw = std::fs::read(&mails[0]).unwrap();
    let msg = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(msg.subject(), Some("Перезвонить: 8 (495) 123-45-67 ООО «Ромашка»"));
    assert!(mail_text(&raw).contains("Звонил:        +74951234567 (8 (495) 123-45-67)"));

    // A template mistake is an error at start-up that names the key.
    let bad = write_mailbox(&sub, "[email]\nsubject = \"{{ nubmer }}\"\n");
    let out = inbox(&bad, &["list"]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("email.subject"), "{}", out.stderr);
}
