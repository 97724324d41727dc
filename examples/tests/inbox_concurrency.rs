//! Concurrent `inbox` processes on one spool never lose or tear an update. 200 messages are
//! stored; for each, a pair of `inbox` processes is started at once with two of `assign --to X`,
//! `called-back --by Y`, `delete` and `delete --force --reason R` (all 16 combinations, in
//! turn), four pairs at a time, while another loop runs `inbox list` over and over.
//!
//! Every command exits 0 (applied) or 2 with one clean line on stderr (a refused change: never
//! a panic, a corrupt record or "database is locked"); every `inbox list` succeeds. For each
//! message, the history `inbox show` prints lists exactly the commands that said they applied,
//! and applying them in that order from the start — one serial order of the pair — refuses
//! exactly the commands that failed and gives the final state that `inbox show` prints.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use voicemail_core::config::Config;
use voicemail_core::{CallSetup, Event, Input, Mailbox, MessageId, Output, StartedCall};

const PAIRS: usize = 200;
const PAIRS_AT_ONCE: usize = 4;

/// One `inbox` command of the test.
#[derive(Debug, Clone, PartialEq)]
enum Cmd {
    Assign { to: String, by: String },
    CalledBack { by: String, note: String },
    Delete { by: String },
    Force { by: String, reason: String },
}

impl Cmd {
    /// Command `kind` (0-3) of side `side` of pair `pair`; names are unique per command.
    fn new(kind: usize, pair: usize, side: char) -> Cmd {
        match kind {
            0 => Cmd::Assign { to: format!("agent-{pair}{side}"), by: format!("boss-{pair}{side}") },
            1 => Cmd::CalledBack { by: format!("caller-{pair}{side}"), note: format!("note {pair}{side}") },
            2 => Cmd::Delete { by: format!("cleaner-{pair}{side}") },
            _ => Cmd::Force { by: format!("admin-{pair}{side}"), reason: format!("reason {pair}{side}") },
        }
    }

    fn args(&self, id: &str) -> Vec<String> {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match self {
            Cmd::Assign { to, by } => v(&["assign", id, "--to", to, "--by", by]),
            Cmd::CalledBack { by, note } => v(&["called-back", id, "--by", by, "--note", note]),
            Cmd::Delete { by } => v(&["delete", id, "--by", by]),
            Cmd::Force { by, reason } => v(&["delete", id, "--force", "--reason", reason, "--by", by]),
        }
    }
}

/// The follow-up rules, as the model the results are checked against.
#[derive(Debug, Clone, PartialEq)]
struct State {
    followup: (String, Option<String>), // ("new" | "assigned" | "called-back", to / by)
    deleted: bool,
}

impl State {
    fn new() -> State {
        State { followup: ("new".into(), None), deleted: false }
    }

    /// Applies `cmd`: the history entry it records (as `inbox show --json` prints it), or
    /// `None` when it is refused.
    fn apply(&mut self, cmd: &Cmd) -> Option<serde_json::Value> {
        use serde_json::json;
        if self.deleted {
            return None;
        }
        let called_back = self.followup.0 == "called-back";
        match cmd {
            Cmd::Assign { to, by } if !called_back => {
                self.followup = ("assigned".into(), Some(to.clone()));
                Some(json!({"by": by, "event": {"event": "assigned", "to": to}}))
            }
            Cmd::CalledBack { by, note } if !called_back => {
                self.followup = ("called-back".into(), Some(by.clone()));
                Some(json!({"by": by, "event": {"event": "called-back", "note": note}}))
            }
            Cmd::Delete { by } if called_back => {
                self.deleted = true;
                Some(json!({"by": by, "event": {"event": "deleted", "forced": false, "reason": null}}))
            }
            Cmd::Force { by, reason } => {
                self.deleted = true;
                Some(json!({"by": by, "event": {"event": "deleted", "forced": !called_back, "reason": reason}}))
            }
            _ => None,
        }
    }

    /// The state as `inbox show --json` prints it.
    fn of(shown: &serde_json::Value) -> State {
        let f = &shown["followup"];
        let state = f["state"].as_str().unwrap().to_owned();
        let who = match state.as_str() {
            "assigned" => f["to"].as_str().map(str::to_owned),
            "called-back" => f["by"].as_str().map(str::to_owned),
            _ => None,
        };
        State { followup: (state, who), deleted: shown["lifecycle"] == "deleted" }
    }
}

/// Stores `n` messages (calls hung up during the greeting) through the mailbox.
fn store_messages(config: &Path, n: usize) -> Vec<MessageId> {
    let text = std::fs::read_to_string(config).unwrap();
    let config = Config::from_toml_str_in(&text, config.parent().unwrap()).unwrap();
    let mailbox = Mailbox::open(config).unwrap();
    (0..n)
        .map(|i| {
            let now = Instant::now();
            let setup = CallSetup::new(format!("+7495{i:07}"), jiff::Timestamp::now());
            let StartedCall { mut call, lease } = mailbox.start_call(setup, now).unwrap();
            call.handle_input(Input::Answered(now)).unwrap();
            call.handle_input(Input::Hangup(now)).unwrap();
            let meta = loop {
                match call.poll_output() {
                    Output::Event(Event::MessageRecorded(meta)) => break *meta,
                    Output::Timeout(_) => panic!("the call did not end"),
                    _ => {}
                }
            };
            drop(call);
            mailbox.finish_call(lease, meta, jiff::Timestamp::now()).unwrap().id
        })
        .collect()
}

/// Checks that a finished `inbox` run applied (true) or was refused cleanly (false).
fn outcome(what: &str, out: &Finished) -> bool {
    match out.code() {
        Some(0) => true,
        Some(2) => {
            let err = out.stderr.trim_end();
            assert!(!err.contains('\n') && err.starts_with("inbox: "), "{what}: not one clean line: {err:?}");
            for bad in ["panick", "locked", "busy", "unreadable", "corrupt", "database"] {
                assert!(!err.contains(bad), "{what}: {err}");
            }
            false
        }
        other => panic!("{what}: exit {other:?}\nstdout: {}\nstderr: {}", out.stdout, out.stderr),
    }
}

#[test]
fn concurrent_inbox_commands_serialize() {
    let dir = temp_dir("inbox-race");
    let config = write_config(dir.path(), "34000-34999", "");
    let ids = store_messages(&config, PAIRS);
    let pairs: Vec<(MessageId, Cmd, Cmd)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), Cmd::new(i % 4, i, 'a'), Cmd::new((i / 4) % 4, i, 'b')))
        .collect();

    // `inbox list`, over and over, until the pairs are done.
    let stop = Arc::new(AtomicBool::new(false));
    let lister = {
        let (stop, config, ids) = (stop.clone(), config.clone(), ids.clone());
        std::thread::spawn(move || {
            let mut runs = 0u32;
            let mut took = Duration::ZERO;
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                let out = inbox(&config, &["list"]);
                took += started.elapsed();
                assert_eq!(out.code(), Some(0), "inbox list failed: {}", out.stderr);
                for line in out.stdout.lines() {
                    let id = line.split_whitespace().next().unwrap();
                    assert!(ids.iter().any(|i| i == id), "inbox list printed {line:?}");
                }
                runs += 1;
            }
            (runs, took)
        })
    };

    // The pairs, PAIRS_AT_ONCE at a time; both commands of a pair start together.
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<(bool, bool)>> = vec![None; PAIRS];
    let done: Vec<Vec<(usize, bool, bool)>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..PAIRS_AT_ONCE)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some((id, a, b)) = pairs.get(i) else { return mine };
                        let (args_a, args_b) = (a.args(id.as_str()), b.args(id.as_str()));
                        let (out_a, out_b) = std::thread::scope(|s| {
                            let ta = s.spawn(|| inbox(&config, &args_a.iter().map(String::as_str).collect::<Vec<_>>()));
                            let tb = s.spawn(|| inbox(&config, &args_b.iter().map(String::as_str).collect::<Vec<_>>()));
                            (ta.join().unwrap(), tb.join().unwrap())
                        });
                        mine.push((
                            i,
                            outcome(&format!("{args_a:?}"), &out_a),
                            outcome(&format!("{args_b:?}"), &out_b),
                        ));
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for (i, a, b) in done.into_iter().flatten() {
        results[i] = Some((a, b));
    }
    stop.store(true, Ordering::SeqCst);
    let (lists, list_time) = lister.join().unwrap();

    // Each message: the history is the applied commands in one serial order of the pair.
    let (mut both, mut one, mut none) = (0, 0, 0);
    for (i, (id, a, b)) in pairs.iter().enumerate() {
        let (ok_a, ok_b) = results[i].unwrap();
        let shown = show(&config, id.as_str());
        let history: Vec<serde_json::Value> = shown["history"].as_array().unwrap()[1..]
            .iter()
            .map(|h| serde_json::json!({"by": h["by"], "event": h["event"]}))
            .collect();
        assert_eq!(history.len(), usize::from(ok_a) + usize::from(ok_b), "pair {i} {a:?} {b:?}: {history:?}");
        let serial = [(a, b, ok_a, ok_b), (b, a, ok_b, ok_a)].into_iter().any(|(first, second, ok1, ok2)| {
            let mut state = State::new();
            let e1 = state.apply(first);
            let e2 = state.apply(second);
            let applied: Vec<serde_json::Value> = [e1.clone(), e2.clone()].into_iter().flatten().collect();
            e1.is_some() == ok1 && e2.is_some() == ok2 && applied == history && state == State::of(&shown)
        });
        assert!(serial, "pair {i}: {a:?} -> {ok_a}, {b:?} -> {ok_b}: no serial order gives {shown}");
        match (ok_a, ok_b) {
            (true, true) => both += 1,
            (false, false) => none += 1,
            _ => one += 1,
        }
    }
    eprintln!(
        "{PAIRS} pairs: both applied {both}, one applied {one}, none {none}; {lists} `inbox list` runs, {:.1} ms each",
        list_time.as_secs_f64() * 1000.0 / f64::from(lists.max(1))
    );
    // How fast `inbox` starts on this spool, alone (a figure, not an assertion).
    let started = Instant::now();
    for _ in 0..10 {
        assert_eq!(inbox(&config, &["list"]).code(), Some(0));
    }
    eprintln!("`inbox list` alone on {PAIRS} messages: {:.1} ms", started.elapsed().as_secs_f64() * 100.0);
    assert!(both > 0 && one > 0 && none > 0, "every outcome occurs");
    assert!(lists > 0);
}

/// The literal form: 200 pairs of `assign` / `called-back` / `delete` on ONE message,
/// four pairs at a time, while `inbox list` runs in a loop. Every command applies or is refused
/// cleanly; the history is exactly the applied commands, and replaying it from the start is
/// valid at every step and ends in the state `inbox show` prints; every refused command is
/// one the rules refuse at some point of that history (so a serial order explains it).
#[test]
fn concurrent_inbox_commands_on_one_message() {
    let dir = temp_dir("inbox-one");
    let config = write_config(dir.path(), "35000-35999", "");
    let id = store_messages(&config, 1).remove(0);
    // Racing reassignments first (each pair: two assigns, or an assign against a callback
    // late on), then deletes against callbacks at the end: most commands can apply, and the
    // message dies only in the last pairs.
    let pairs: Vec<(Cmd, Cmd)> = (0..PAIRS)
        .map(|i| match PAIRS - i {
            1..=4 => (Cmd::new(2, i, 'a'), Cmd::new(1, i, 'b')),
            5..=12 => (Cmd::new(0, i, 'a'), Cmd::new(1, i, 'b')),
            _ => (Cmd::new(0, i, 'a'), Cmd::new(0, i, 'b')),
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let lister = {
        let (stop, config) = (stop.clone(), config.clone());
        std::thread::spawn(move || {
            let mut runs = 0u32;
            while !stop.load(Ordering::SeqCst) {
                let out = inbox(&config, &["list"]);
                assert_eq!(out.code(), Some(0), "inbox list failed: {}", out.stderr);
                runs += 1;
            }
            runs
        })
    };
    let next = AtomicUsize::new(0);
    let outcomes: Vec<(Cmd, bool)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..PAIRS_AT_ONCE)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some((a, b)) = pairs.get(i) else { return mine };
                        let (args_a, args_b) = (a.args(id.as_str()), b.args(id.as_str()));
                        let (out_a, out_b) = std::thread::scope(|s| {
                            let ta = s.spawn(|| inbox(&config, &args_a.iter().map(String::as_str).collect::<Vec<_>>()));
                            let tb = s.spawn(|| inbox(&config, &args_b.iter().map(String::as_str).collect::<Vec<_>>()));
                            (ta.join().unwrap(), tb.join().unwrap())
                        });
                        mine.push((a.clone(), outcome(&format!("{args_a:?}"), &out_a)));
                        mine.push((b.clone(), outcome(&format!("{args_b:?}"), &out_b)));
                    }
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    stop.store(true, Ordering::SeqCst);
    let lists = lister.join().unwrap();

    let shown = show(&config, id.as_str());
    let history: Vec<serde_json::Value> = shown["history"].as_array().unwrap()[1..]
        .iter()
        .map(|h| serde_json::json!({"by": h["by"], "event": h["event"]}))
        .collect();
    let applied: Vec<&Cmd> = outcomes.iter().filter(|(_, ok)| *ok).map(|(c, _)| c).collect();
    assert_eq!(history.len(), applied.len(), "the history lists every applied change once");
    // Replay the history: each entry must be an applied command the rules accept in turn.
    let mut state = State::new();
    let mut states = vec![state.clone()];
    for entry in &history {
        let cmd = applied
            .iter()
            .find(|c| state.clone().apply(c).as_ref() == Some(entry))
            .unwrap_or_else(|| panic!("history entry {entry} is no applied command valid in state {state:?}"));
        state.apply(cmd);
        states.push(state.clone());
    }
    assert_eq!(state, State::of(&shown), "replaying the history gives the final state");
    for (cmd, ok) in &outcomes {
        if !ok {
            assert!(
                states.iter().any(|s| s.clone().apply(cmd).is_none()),
                "{cmd:?} was refused, but the rules accept it in every state of the history"
            );
        }
    }
    eprintln!("one message: {} of {} commands applied; {lists} `inbox list` runs", applied.len(), outcomes.len());
    assert!(applied.len() > PAIRS && lists > 0, "most commands apply");
}
