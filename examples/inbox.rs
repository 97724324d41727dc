//! The mailbox from the command line: list and show messages, assign them, log callbacks,
//! delete, and see or push delivery. Every command goes through the mailbox, so it is safe
//! while the answering machine (or another `inbox`) works on the same spool.
//!
//! ```text
//! cargo run --example inbox -- [--config FILE] list [--json]
//! cargo run --example inbox -- [--config FILE] show ID [--json]      # metadata, follow-up, history, deliveries
//! cargo run --example inbox -- [--config FILE] assign ID --to NAME [--by WHO]
//! cargo run --example inbox -- [--config FILE] called-back ID [--by NAME] [--note TEXT]
//! cargo run --example inbox -- [--config FILE] delete ID [--force --reason TEXT] [--by WHO]
//! cargo run --example inbox -- [--config FILE] status                # every delivery and its state
//! cargo run --example inbox -- [--config FILE] deliver               # recover, then attempt what is due now
//! cargo run --example inbox -- [--config FILE] deliver --retry ID [--target T]   # queue a rejected delivery again
//! cargo run --example inbox -- [--config FILE] recover               # store calls whose process died
//! cargo run --example inbox -- [--config FILE] recover --spool DIR --node NAME   # a dead node's calls, from its spool
//! cargo run --example inbox -- [--config FILE] export ID --out FILE   # the message's recording into FILE
//! cargo run --example inbox -- [--config FILE] remind [--at TIME]     # one reminder pass, then send what is due by SMTP
//! ```
//!
//! `remind` runs what the answering machine does continuously (`[followup]`): it queues the
//! reminders due at `TIME` (default now; RFC 3339 like `2026-11-27T18:00:00+03:00`, or
//! `2026-11-27T18:00` in the mailbox's time zone) and attempts the SMTP deliveries due then.
//! A reminder is queued once: a second run at the same time queues nothing.
//!
//! With a store shared by several nodes (`[store] url`), `recover --spool DIR --node NAME`
//! is the operator's command for a node that died and does not come back: run on any other
//! node with the dead node's spool directory (its disk mounted here) and its `[store] node`
//! name, it stores that node's interrupted calls as `interrupted` messages, their audio in
//! the database, exactly as the dead node would have after a restart. Make sure the node is
//! really down first: its live calls are protected by a file lock only on its own machine.
//! With the embedded store (no `url`) the spool is recovered in place and `--node` is not
//! needed. `export` writes a message's recording (from this node's spool or the shared
//! store) to a file.
//!
//! `--mailbox NAME` picks one mailbox of a file with several (`[[mailboxes]]`); without it,
//! the file's only mailbox or its `default_mailbox` (a file with several mailboxes and no
//! default needs the option). Every command works on that mailbox alone.
//!
//! Without `--config` the embedded defaults are used (spool `./voicemail-data/spool`). `--by`
//! defaults to the `USER` environment variable, else `inbox`. Exit status: 0 done; 2 bad
//! input or a change the mailbox refuses (unknown id, not called back yet, ...), with a
//! one-line message on stderr; 1 anything else (the spool or the store failed).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use jiff::Timestamp;
use serde_json::json;
use voicemail_core::followup::FollowUp;
use voicemail_core::mailbox::RunReport;
use voicemail_core::store::{Delivery, StoreError, StoredMessage};
use voicemail_core::{Mailbox, MailboxError, MessageId};
use voicemail_examples::config::{Load, load_all, load_one, one_line};

const USAGE: &str = "usage: inbox [--config FILE] [--mailbox NAME] (list [--json] | show ID [--json] | assign ID --to NAME [--by WHO] | \
called-back ID [--by NAME] [--note TEXT] | delete ID [--force --reason TEXT] [--by WHO] | status | \
deliver [--retry ID [--target T]] | recover [--spool DIR --node NAME] | remind [--at TIME] | export ID --out FILE)";

/// `writeln!` into the output buffer (`inbox` writes its output once, at the end).
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}

/// Options that take a value, and switches.
const VALUE_OPTIONS: &[&str] = &[
    "--config",
    "--mailbox",
    "--to",
    "--by",
    "--note",
    "--reason",
    "--retry",
    "--target",
    "--at",
    "--spool",
    "--node",
    "--out",
];
const SWITCHES: &[&str] = &["--force", "--json"];

/// Why a command did not complete.
enum Failure {
    /// Bad input, or a change the mailbox refuses: exit 2.
    Refused(String),
    /// The spool or the store failed: exit 1.
    Failed(String),
}

impl From<MailboxError> for Failure {
    fn from(e: MailboxError) -> Self {
        let refused = matches!(
            e,
            MailboxError::InvalidId(_)
                | MailboxError::Store(
                    StoreError::NotFound(_)
                        | StoreError::Deleted { .. }
                        | StoreError::Recording(_)
                        | StoreError::Exists(_)
                        | StoreError::FollowUp { .. }
                )
        );
        if refused { Failure::Refused(e.to_string()) } else { Failure::Failed(e.to_string()) }
    }
}

fn refused(message: impl Into<String>) -> Failure {
    Failure::Refused(message.into())
}

/// The parsed command line.
struct Command {
    words: Vec<String>,
    options: Vec<(&'static str, String)>,
    switches: Vec<&'static str>,
}

impl Command {
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, Failure> {
        let mut cmd = Command { words: Vec::new(), options: Vec::new(), switches: Vec::new() };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                return Err(refused(USAGE));
            }
            if let Some(&name) = VALUE_OPTIONS.iter().find(|&&o| o == arg) {
                let value = args.next().ok_or_else(|| refused(format!("{name} needs a value")))?;
                if cmd.options.iter().any(|(n, _)| *n == name) {
                    return Err(refused(format!("{name} is given twice")));
                }
                cmd.options.push((name, value));
            } else if let Some(&name) = SWITCHES.iter().find(|&&o| o == arg) {
                if !cmd.switches.contains(&name) {
                    cmd.switches.push(name);
                }
            } else if arg.starts_with("--") {
                return Err(refused(format!("unknown option {arg}")));
            } else {
                cmd.words.push(arg);
            }
        }
        Ok(cmd)
    }

    fn option(&self, name: &str) -> Option<&str> {
        self.options.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    fn switch(&self, name: &str) -> bool {
        self.switches.contains(&name)
    }

    /// Refuses options the command does not take, and extra words.
    fn check(&self, command: &str, ids: usize, allowed: &[&str]) -> Result<(), Failure> {
        for name in self.options.iter().map(|(n, _)| *n).chain(self.switches.iter().copied()) {
            if !matches!(name, "--config" | "--mailbox") && !allowed.contains(&name) {
                return Err(refused(format!("{command} does not take {name}")));
            }
        }
        match self.words.len().saturating_sub(1) {
            n if n < ids => Err(refused(format!("{command} needs a message id"))),
            n if n > ids => Err(refused(format!("unexpected argument {:?}", self.words[ids + 1]))),
            _ => Ok(()),
        }
    }

    /// The message id after the command word, parsed (never a path).
    fn id(&self) -> Result<MessageId, Failure> {
        let word = self.words.get(1).ok_or_else(|| refused("a message id is needed"))?;
        MessageId::parse(word).map_err(|e| refused(e.to_string()))
    }

    /// `--by`, else `$USER`, else `inbox`.
    fn by(&self) -> String {
        match self.option("--by") {
            Some(by) => by.to_owned(),
            None => std::env::var("USER").ok().filter(|u| !u.trim().is_empty()).unwrap_or_else(|| "inbox".to_owned()),
        }
    }
}

fn seconds(ms: u64) -> String {
    format!("{}.{}s", ms / 1000, (ms % 1000) / 100)
}

/// The message's state in one word or phrase: `recording`, `deleted`, or its follow-up.
fn state(m: &StoredMessage) -> String {
    match m.lifecycle {
        voicemail_core::store::Lifecycle::Stored => m.followup.describe(),
        other => other.as_str().to_owned(),
    }
}

fn list_line(m: &StoredMessage) -> String {
    let meta = &m.meta;
    let deliveries: Vec<String> = m.deliveries.iter().map(|d| format!("{}:{}", d.target, d.state.as_str())).collect();
    format!(
        "{}  {}  {:<16} {:<20} {:>6}  {}  {}",
        meta.id,
        meta.started_at.strftime("%Y-%m-%d %H:%M:%S"),
        meta.caller,
        meta.caller_name.as_deref().unwrap_or(""),
        seconds(meta.duration_ms),
        state(m),
        deliveries.join(" ")
    )
}

fn delivery_line(d: &Delivery) -> String {
    let target = match d.reminder {
        Some(step) => format!("{} {step}", d.target),
        None => d.target.clone(),
    };
    let mut line = format!("{}  {:<8} {:<9} attempts {}", d.id, target, d.state.as_str(), d.attempts);
    if let Some(t) = d.next_attempt {
        line.push_str(&format!("  next {t}"));
    }
    if let Some(t) = d.delivered_at {
        line.push_str(&format!("  delivered {t}"));
    }
    if let Some(ack) = &d.ack {
        line.push_str(&format!("  ack: {}", one_line(ack)));
    }
    if let Some(e) = &d.last_error {
        line.push_str(&format!("  last error: {}", one_line(e)));
    }
    line
}

fn delivery_json(d: &Delivery) -> serde_json::Value {
    json!({
        "target": d.target,
        "reminder": d.reminder,
        "state": d.state,
        "attempts": d.attempts,
        "next_attempt": d.next_attempt,
        "last_attempt": d.last_attempt,
        "last_error": d.last_error,
        "delivered_at": d.delivered_at,
        "ack": d.ack,
    })
}

fn message_json(m: &StoredMessage) -> serde_json::Value {
    json!({
        "meta": m.meta,
        "lifecycle": m.lifecycle,
        "followup": m.followup,
        "history": m.history,
        "deliveries": m.deliveries.iter().map(delivery_json).collect::<Vec<_>>(),
    })
}

fn show(out: &mut String, m: &StoredMessage) {
    let meta = &m.meta;
    outln!(out, "id:        {}", meta.id);
    match &meta.caller_name {
        Some(name) => outln!(out, "caller:    {} ({})", meta.caller, one_line(name)),
        None => outln!(out, "caller:    {}", meta.caller),
    }
    if let Some(mailbox) = &meta.mailbox {
        outln!(out, "mailbox:   {}", one_line(mailbox));
    }
    outln!(out, "called:    {}", meta.called);
    if let Some(from) = &meta.diverted_from {
        outln!(out, "forwarded: by {}", one_line(from));
    }
    outln!(out, "started:   {}", meta.started_at);
    outln!(out, "duration:  {}", seconds(meta.duration_ms));
    outln!(out, "ended by:  {}", meta.end_reason);
    outln!(out, "codec:     {}", meta.codec);
    outln!(out, "greeting:  {}", meta.greeting);
    outln!(out, "dtmf:      {}", meta.dtmf);
    if let Some(wav) = &meta.wav_path {
        outln!(out, "wav:       {}", wav.display());
    }
    if let Some(text) = &meta.transcript {
        outln!(out, "transcript:");
        for line in text.lines() {
            outln!(out, "  {}", line.chars().filter(|c| !c.is_control()).collect::<String>());
        }
    }
    outln!(out, "message:   {}", m.lifecycle.as_str());
    let followup = match &m.followup {
        FollowUp::New => "new".to_owned(),
        FollowUp::Assigned { to, at } => format!("assigned to {to} at {at}"),
        FollowUp::CalledBack { by, at, note } => match note {
            Some(note) => format!("called back by {by} at {at}: {}", one_line(note)),
            None => format!("called back by {by} at {at}"),
        },
    };
    outln!(out, "follow-up: {followup}");
    outln!(out, "history:");
    for h in &m.history {
        outln!(out, "  {}", one_line(&h.describe()));
    }
    outln!(out, "deliveries:");
    for d in &m.deliveries {
        outln!(out, "  {}", delivery_line(d));
    }
}

fn report(out: &mut String, r: &RunReport) {
    for (id, target, error) in &r.failed {
        outln!(out, "failed: {id} {target}: {}", one_line(error));
    }
    for (id, target, error) in &r.rejected {
        outln!(out, "rejected: {id} {target}: {}", one_line(error));
    }
}

fn run() -> Result<String, Failure> {
    let mut out = String::new();
    let cmd = Command::parse(std::env::args().skip(1))?;
    let command = cmd.words.first().cloned().ok_or_else(|| refused(USAGE))?;
    // Check the command line before opening anything.
    match command.as_str() {
        "list" => cmd.check(&command, 0, &["--json"])?,
        "status" => cmd.check(&command, 0, &[])?,
        "recover" => cmd.check(&command, 0, &["--spool", "--node"])?,
        "export" => cmd.check(&command, 1, &["--out"])?,
        "show" => cmd.check(&command, 1, &["--json"])?,
        "assign" => cmd.check(&command, 1, &["--to", "--by"])?,
        "called-back" => cmd.check(&command, 1, &["--by", "--note"])?,
        "delete" => cmd.check(&command, 1, &["--force", "--reason", "--by"])?,
        "deliver" => cmd.check(&command, 0, &["--retry", "--target"])?,
        "remind" => cmd.check(&command, 0, &["--at"])?,
        _ => return Err(refused(format!("unknown command {command:?}; {USAGE}"))),
    }
    if command == "recover" && cmd.option("--node").is_some() && cmd.option("--spool").is_none() {
        return Err(refused("--node goes with --spool DIR"));
    }
    if command == "export" && cmd.option("--out").is_none() {
        return Err(refused("export needs --out FILE"));
    }
    if command == "deliver" && cmd.option("--target").is_some() && cmd.option("--retry").is_none() {
        return Err(refused("--target goes with --retry ID"));
    }
    let retry = cmd.option("--retry").map(MessageId::parse).transpose().map_err(|e| refused(e.to_string()))?;
    let id = if cmd.words.len() > 1 { Some(cmd.id()?) } else { None };
    let id = || id.clone().ok_or_else(|| refused(format!("{command} needs a message id")));
    // Delivery and recovery route messages (the client directory names the manager); the
    // workflow needs neither the directory nor the greetings, so `inbox` starts fast.
    let needs =
        if matches!(command.as_str(), "deliver" | "recover" | "remind") { Load::Directory } else { Load::Nothing };
    let path = cmd.option("--config").map(PathBuf::from);
    let name = cmd.option("--mailbox");
    if name.is_none() {
        let all = load_all(path.as_deref(), Load::Nothing).map_err(Failure::Refused)?;
        if all.mailboxes.len() > 1 && all.default_config().is_none() {
            let names: Vec<String> = all.names().iter().map(|n| format!("{n:?}")).collect();
            return Err(refused(format!(
                "the configuration has several mailboxes ({}) and no default_mailbox: name one with --mailbox NAME",
                names.join(", ")
            )));
        }
    }
    let config = load_one(path.as_deref(), name, needs).map_err(Failure::Refused)?;
    let at = match cmd.option("--at") {
        None => None,
        Some(text) => Some(
            voicemail_core::schedule::parse_instant(text, &config.timezone)
                .map_err(|e| refused(format!("--at: {e}")))?,
        ),
    };
    if command == "remind" && config.followup.is_none() {
        return Err(refused("remind needs [followup] in the configuration"));
    }
    if command == "recover"
        && cmd.option("--spool").is_some()
        && cmd.option("--node").is_none()
        && config.store.url.is_some()
    {
        return Err(refused("recover --spool DIR needs --node NAME: the dead node's [store] node"));
    }
    let mailbox = Mailbox::open(config)?;
    let now = at.unwrap_or_else(Timestamp::now);
    match command.as_str() {
        "list" => {
            for m in mailbox.list(false)? {
                if cmd.switch("--json") {
                    outln!(out, "{}", message_json(&m));
                } else {
                    outln!(out, "{}", list_line(&m));
                }
            }
        }
        "show" => {
            let m = mailbox.show(&id()?)?;
            if cmd.switch("--json") {
                outln!(out, "{}", message_json(&m));
            } else {
                show(&mut out, &m);
            }
        }
        "assign" => {
            let to = cmd.option("--to").ok_or_else(|| refused("assign needs --to NAME"))?;
            let m = mailbox.assign(&id()?, to, &cmd.by(), now)?;
            outln!(out, "{}", list_line(&m));
        }
        "called-back" => {
            let m = mailbox.called_back(&id()?, &cmd.by(), cmd.option("--note"), now)?;
            outln!(out, "{}", list_line(&m));
        }
        "delete" => {
            let reason = match (cmd.switch("--force"), cmd.option("--reason")) {
                (true, Some(r)) => Some(r),
                (true, None) => return Err(refused("--force needs --reason TEXT")),
                (false, Some(_)) => return Err(refused("--reason goes with --force")),
                (false, None) => None,
            };
            let id = id()?;
            mailbox.delete(&id, reason, &cmd.by(), now)?;
            match reason {
                Some(r) => outln!(out, "deleted {id} (forced: {})", one_line(r)),
                None => outln!(out, "deleted {id}"),
            }
        }
        "status" => {
            for d in mailbox.deliveries()? {
                outln!(out, "{}", delivery_line(&d));
            }
        }
        "deliver" => {
            if let Some(id) = retry {
                let target = cmd.option("--target");
                if let Some(t) = target
                    && !mailbox.targets().iter().any(|k| k == t)
                {
                    let targets = mailbox.targets();
                    let known = if targets.is_empty() { "none is".to_owned() } else { targets.join(", ") + " are" };
                    return Err(refused(format!("--target {t:?} is not a configured target ({known} configured)")));
                }
                let queued = mailbox.retry(&id, target, &cmd.by(), now)?;
                if queued == 0 {
                    return Err(refused(format!("message {id} has no undelivered delivery to retry")));
                }
                let r = mailbox.deliver_all_due(now)?;
                outln!(
                    out,
                    "queued {queued} again; attempted {}, delivered {}, failed {}, rejected {}",
                    r.attempted,
                    r.delivered.len(),
                    r.failed.len(),
                    r.rejected.len()
                );
                report(&mut out, &r);
            } else {
                let recovered = mailbox.recover(now)?;
                let r = mailbox.deliver_all_due(now)?;
                outln!(
                    out,
                    "recovered {}, attempted {}, delivered {}, failed {}, rejected {}",
                    recovered.len(),
                    r.attempted,
                    r.delivered.len(),
                    r.failed.len(),
                    r.rejected.len()
                );
                report(&mut out, &r);
                if mailbox.targets().is_empty() {
                    eprintln!("inbox: no delivery target is configured; messages stay in the spool");
                }
            }
        }
        "remind" => {
            let r = mailbox.remind(now)?;
            outln!(out, "queued {} reminders", r.queued.len());
            for (id, step, to) in &r.queued {
                outln!(out, "reminder: {id} {step} to {}", to.join(", "));
            }
            let d = mailbox.deliver_due("smtp", now)?;
            outln!(
                out,
                "attempted {}, delivered {}, failed {}, rejected {}",
                d.attempted,
                d.delivered.len(),
                d.failed.len(),
                d.rejected.len()
            );
            report(&mut out, &d);
            if let Some(next) = r.next_due {
                outln!(out, "next reminder due at {next}");
            }
        }
        "export" => {
            let id = id()?;
            let Some(audio) = mailbox.audio(&id)? else {
                return Err(refused(format!("message {id} has no recording")));
            };
            let out_path = PathBuf::from(cmd.option("--out").unwrap_or_default());
            std::fs::write(&out_path, &audio)
                .map_err(|e| Failure::Failed(format!("writing {}: {e}", out_path.display())))?;
            outln!(out, "wrote {} bytes to {}", audio.len(), out_path.display());
        }
        "recover" => {
            let recovered = match cmd.option("--spool") {
                Some(dir) => {
                    mailbox.recover_spool(std::path::Path::new(dir), cmd.option("--node").unwrap_or(""), now)?
                }
                None => mailbox.recover(now)?,
            };
            outln!(out, "recovered {}", recovered.len());
            for m in &recovered {
                outln!(out, "recovered: {} {} {} {}", m.id, m.caller, seconds(m.duration_ms), m.end_reason);
            }
        }
        _ => return Err(refused(USAGE)),
    }
    Ok(out)
}

fn main() -> ExitCode {
    match run() {
        Ok(out) => {
            // A closed pipe (`inbox list | head`) is not an error of ours.
            let mut stdout = std::io::stdout().lock();
            match stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    eprintln!("inbox: writing the output: {e}");
                    ExitCode::from(1)
                }
                _ => ExitCode::SUCCESS,
            }
        }
        Err(Failure::Refused(e)) => {
            eprintln!("inbox: {}", one_line(&e));
            ExitCode::from(2)
        }
        Err(Failure::Failed(e)) => {
            eprintln!("inbox: {}", one_line(&e));
            ExitCode::from(1)
        }
    }
}
