//! The mailbox from the command line: list messages, assign them, log callbacks, delete, and
//! see or push delivery.
//!
//! ```text
//! cargo run --example inbox -- [--config FILE] list
//! cargo run --example inbox -- [--config FILE] show ID
//! cargo run --example inbox -- [--config FILE] assign ID --to NAME
//! cargo run --example inbox -- [--config FILE] called-back ID --by NAME [--note TEXT]
//! cargo run --example inbox -- [--config FILE] delete ID [--force --reason TEXT]
//! cargo run --example inbox -- [--config FILE] status        # delivery state of every message
//! cargo run --example inbox -- [--config FILE] deliver       # attempt due deliveries now (also recovers
//!                                                           # messages of interrupted calls)
//! ```
//! Without `--config` the embedded defaults are used (spool `./voicemail-data/spool`).

use std::process::ExitCode;

use jiff::Timestamp;
use voicemail_core::config::Config;
use voicemail_core::mailbox::{ForceReason, Mailbox, MessageStatus};
use voicemail_core::route::Router;
use voicemail_core::spool::Spool;

const USAGE: &str = "usage: inbox [--config FILE] (list | show ID | assign ID --to NAME | \
called-back ID --by NAME [--note TEXT] | delete ID [--force --reason TEXT] | status | deliver)";

fn line(s: &MessageStatus) -> String {
    let (caller, name, dur, when) = match &s.meta {
        Some(m) => (
            m.caller.as_str(),
            m.caller_name.as_deref().unwrap_or(""),
            format!("{}.{:01}s", m.duration_ms / 1000, (m.duration_ms % 1000) / 100),
            m.started_at.to_string(),
        ),
        None => ("?", "", "?".to_owned(), "?".to_owned()),
    };
    format!("{}  {when}  {caller:<16} {name:<20} {dur:>6}  {}", s.id, s.state().describe())
}

/// Takes the value after `flag` out of `rest`.
fn option(rest: &mut Vec<String>, flag: &str) -> Result<Option<String>, String> {
    match rest.iter().position(|a| a == flag) {
        None => Ok(None),
        Some(i) if i + 1 < rest.len() => {
            let v = rest.remove(i + 1);
            rest.remove(i);
            Ok(Some(v))
        }
        Some(_) => Err(format!("{flag} needs a value")),
    }
}

fn run() -> Result<(), String> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let config = match option(&mut args, "--config")? {
        Some(path) => Config::load(std::path::Path::new(&path)).map_err(|e| e.to_string())?,
        None => Config::default_embedded(),
    };
    let force = match args.iter().position(|a| a == "--force") {
        Some(i) => {
            args.remove(i);
            true
        }
        None => false,
    };
    let to = option(&mut args, "--to")?;
    let by = option(&mut args, "--by")?;
    let note = option(&mut args, "--note")?;
    let reason = option(&mut args, "--reason")?;
    let mut words = args.into_iter();
    let command = words.next().ok_or(USAGE)?;
    let id = words.next();
    if let Some(extra) = words.next() {
        return Err(format!("unexpected argument {extra:?}\n{USAGE}"));
    }
    let need_id = || id.clone().ok_or_else(|| format!("{command} needs a message id\n{USAGE}"));
    let now = Timestamp::now();
    let mailbox = || Mailbox::open(&config.spool).map_err(|e| e.to_string());
    match command.as_str() {
        "list" => {
            for s in mailbox()?.list().map_err(|e| e.to_string())? {
                println!("{}", line(&s));
            }
        }
        "show" => {
            let s = mailbox()?.show(&need_id()?).map_err(|e| e.to_string())?;
            println!("{}", line(&s));
            if let Some(m) = &s.meta {
                println!("{}", serde_json::to_string_pretty(m).map_err(|e| e.to_string())?);
            }
            for h in &s.workflow.history {
                println!("history: {}", h.describe());
            }
        }
        "assign" => {
            let to = to.ok_or("assign needs --to NAME")?;
            let s = mailbox()?.assign(&need_id()?, &to, now).map_err(|e| e.to_string())?;
            println!("{}", line(&s));
        }
        "called-back" => {
            let by = by.ok_or("called-back needs --by NAME")?;
            let s = mailbox()?.called_back(&need_id()?, &by, now, note.as_deref()).map_err(|e| e.to_string())?;
            println!("{}", line(&s));
        }
        "delete" => {
            let force = match (force, reason) {
                (true, Some(r)) => Some(ForceReason::new(r)),
                (true, None) => return Err("--force needs --reason TEXT".into()),
                (false, Some(_)) => return Err("--reason goes with --force".into()),
                (false, None) => None,
            };
            let r = mailbox()?.delete(&need_id()?, force, now).map_err(|e| e.to_string())?;
            println!("deleted {}{}", r.id, if r.forced { " (forced)" } else { "" });
        }
        "status" => {
            let router = Router::from_config(config).map_err(|e| e.to_string())?;
            for s in router.outbox().status().map_err(|e| e.to_string())? {
                let next = s.next_attempt.map(|t| format!(" next {t}")).unwrap_or_default();
                let err = s.last_error.map(|e| format!(" last error: {e}")).unwrap_or_default();
                println!("{}  {:<8} {:?} attempts {}{next}{err}", s.id, s.target, s.state, s.attempts);
            }
        }
        "deliver" => {
            let spool = Spool::open(&config.spool).map_err(|e| e.to_string())?;
            let recovered = spool.recover().map_err(|e| e.to_string())?;
            let router = Router::from_config(config).map_err(|e| e.to_string())?;
            let queued = router.recover(now).map_err(|e| e.to_string())?;
            let report = router.run_due(now);
            println!(
                "recovered {} interrupted, queued {queued}, attempted {}, delivered {}, failed {}",
                recovered.len(),
                report.attempted,
                report.delivered.len(),
                report.failed.len()
            );
            for f in &report.failed {
                println!("failed: {f:?}");
            }
        }
        _ => return Err(format!("unknown command {command:?}\n{USAGE}")),
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("inbox: {e}");
            ExitCode::from(2)
        }
    }
}
