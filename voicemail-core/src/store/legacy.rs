//! Import of a spool written by earlier versions, which kept everything in JSON files:
//!
//! ```text
//! <id>.json            metadata of a finished message     <id>.json.partial  of a call in progress
//! <id>.state.json      follow-up state and history        deletions.log      one JSON line per deletion
//! outbox/<id>.json     delivery record (+ <id>.eml)       outbox/delivered/<id>.json
//! ```
//!
//! Each message is imported in one transaction unless the store has it already, so opening
//! one old spool from several processes at once imports it once. The JSON files are then
//! moved to `imported-json/` (recordings stay where they are); nothing is deleted.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::Deserialize;

use super::spool::{IMPORTED_DIR, Spool};
use super::{Delivery, DeliveryState, Imported, Lifecycle, Store, StoreError};
use crate::codec::CodecKind;
use crate::followup::{Event, FollowUp, HistoryEntry};
use crate::message::{EndReason, MediaStats, MessageId, MessageMeta};

#[derive(Deserialize)]
struct OldWorkflow {
    state: FollowUp,
    #[serde(default)]
    history: Vec<FollowUp>,
}

#[derive(Deserialize)]
struct OldDestination {
    target: String,
    #[serde(default)]
    extra_to: Vec<String>,
}

#[derive(Deserialize)]
struct OldPair {
    destination: OldDestination,
    attempts: u32,
    last_error: Option<String>,
    last_attempt: Option<Timestamp>,
    next_attempt: Timestamp,
    delivered_at: Option<Timestamp>,
    ack: Option<String>,
}

#[derive(Deserialize)]
struct OldOutboxRecord {
    pairs: Vec<OldPair>,
}

#[derive(Deserialize)]
struct OldDeletion {
    id: String,
    at: Timestamp,
    forced: bool,
    reason: Option<String>,
    state: FollowUp,
    caller: Option<String>,
}

/// Files of one old message.
#[derive(Default)]
struct Files {
    meta: Option<PathBuf>,
    partial: Option<PathBuf>,
    state: Option<PathBuf>,
    outbox: Option<PathBuf>,
    eml: Option<PathBuf>,
}

/// Imports the JSON files of an older spool, if there are any. Returns how many messages the
/// store did not have.
pub(crate) fn import(spool: &Spool, store: &dyn Store) -> Result<usize, StoreError> {
    let io_err = |e: io::Error| StoreError::Database {
        action: "importing an older spool",
        message: e.to_string(),
        full: e.kind() == io::ErrorKind::StorageFull,
    };
    let dir = spool.dir();
    let mut files: BTreeMap<MessageId, Files> = BTreeMap::new();
    let mut found_any = false;
    for entry in fs::read_dir(dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let (stem, slot): (&str, fn(&mut Files) -> &mut Option<PathBuf>) =
            if let Some(s) = name.strip_suffix(".state.json") {
                (s, |f| &mut f.state)
            } else if let Some(s) = name.strip_suffix(".json.partial") {
                (s, |f| &mut f.partial)
            } else if let Some(s) = name.strip_suffix(".json") {
                (s, |f| &mut f.meta)
            } else {
                continue;
            };
        let Ok(id) = MessageId::parse(stem) else { continue };
        *slot(files.entry(id).or_default()) = Some(path);
        found_any = true;
    }
    let outbox = dir.join("outbox");
    for sub in [outbox.clone(), outbox.join("delivered")] {
        let Ok(entries) = fs::read_dir(&sub) else { continue };
        for entry in entries {
            let path = entry.map_err(io_err)?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            let (stem, eml) = match (name.strip_suffix(".json"), name.strip_suffix(".eml")) {
                (Some(s), _) => (s, false),
                (_, Some(s)) => (s, true),
                _ => continue,
            };
            let Ok(id) = MessageId::parse(stem) else { continue };
            let f = files.entry(id).or_default();
            if eml {
                f.eml = Some(path)
            } else {
                f.outbox = Some(path)
            }
            found_any = true;
        }
    }
    let deletions = dir.join("deletions.log");
    found_any |= deletions.is_file();
    if !found_any {
        return Ok(0);
    }

    let mut imported = 0;
    let mut done: Vec<PathBuf> = Vec::new();
    for (id, f) in &files {
        let read = |p: &Path| fs::read(p).ok();
        let meta: Option<MessageMeta> =
            f.meta.as_deref().or(f.partial.as_deref()).and_then(read).and_then(|b| serde_json::from_slice(&b).ok());
        let Some(mut meta) = meta else {
            // Not message metadata (another program's file) or unreadable: left where it is.
            if let Some(p) = f.meta.as_deref().or(f.partial.as_deref()) {
                tracing::warn!(path = %p.display(), "not importable: not message metadata");
            }
            continue;
        };
        if &meta.id != id {
            tracing::warn!(%id, "metadata names another id; imported under the file's id");
            meta.id = id.clone();
        }
        let (followup, mut history) = match f.state.as_deref().and_then(read) {
            Some(bytes) => match serde_json::from_slice::<OldWorkflow>(&bytes) {
                Ok(w) => (w.state, w.history.iter().filter_map(history_of).collect()),
                Err(e) => {
                    tracing::warn!(%id, error = %e, "unreadable follow-up state: imported as new");
                    (FollowUp::New, Vec::new())
                }
            },
            None => (FollowUp::New, Vec::new()),
        };
        let lifecycle = if f.meta.is_some() { Lifecycle::Stored } else { Lifecycle::Recording };
        if lifecycle == Lifecycle::Stored {
            history.insert(
                0,
                HistoryEntry {
                    at: meta.started_at,
                    by: "import".to_owned(),
                    event: Event::Recorded { end_reason: meta.end_reason.as_str().to_owned() },
                },
            );
        }
        let deliveries = f
            .outbox
            .as_deref()
            .and_then(read)
            .and_then(|b| serde_json::from_slice::<OldOutboxRecord>(&b).ok())
            .map(|r| r.pairs.into_iter().map(|p| delivery_of(id, p)).collect())
            .unwrap_or_default();
        let message = Imported { meta, lifecycle, followup, history, deliveries };
        if store.import(&message)? {
            imported += 1;
        }
        done.extend([&f.meta, &f.partial, &f.state, &f.outbox, &f.eml].into_iter().flatten().cloned());
    }

    if let Ok(text) = fs::read_to_string(&deletions) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(d) = serde_json::from_str::<OldDeletion>(line) else { continue };
            let Ok(id) = MessageId::parse(&d.id) else { continue };
            let meta = MessageMeta {
                id,
                caller: d.caller.unwrap_or_default(),
                caller_name: None,
                called: String::new(),
                started_at: d.at,
                duration_ms: 0,
                end_reason: EndReason::Interrupted,
                codec: CodecKind::Pcmu,
                greeting: String::new(),
                dtmf: String::new(),
                wav_path: None,
                media: MediaStats::default(),
                mailbox: None,
                diverted_from: None,
                transcript: None,
            };
            let entry = HistoryEntry {
                at: d.at,
                by: "import".to_owned(),
                event: Event::Deleted { forced: d.forced, reason: d.reason },
            };
            let message = Imported {
                meta,
                lifecycle: Lifecycle::Deleted,
                followup: d.state,
                history: vec![entry],
                deliveries: Vec::new(),
            };
            if store.import(&message)? {
                imported += 1;
            }
        }
        done.push(deletions);
    }

    let target = dir.join(IMPORTED_DIR);
    fs::create_dir_all(target.join("outbox").join("delivered")).map_err(io_err)?;
    for path in done {
        let rel = path.strip_prefix(dir).unwrap_or(&path);
        match fs::rename(&path, target.join(rel)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(e)),
            _ => {}
        }
    }
    let _ = fs::remove_dir(outbox.join("delivered"));
    let _ = fs::remove_dir(&outbox);
    spool.sync_dir().map_err(io_err)?;
    if imported > 0 {
        tracing::info!(messages = imported, "imported the JSON files of an older spool");
    }
    Ok(imported)
}

fn history_of(state: &FollowUp) -> Option<HistoryEntry> {
    match state {
        FollowUp::New => None,
        FollowUp::Assigned { to, at } => {
            Some(HistoryEntry { at: *at, by: "import".to_owned(), event: Event::Assigned { to: to.clone() } })
        }
        FollowUp::CalledBack { by, at, note } => {
            Some(HistoryEntry { at: *at, by: by.clone(), event: Event::CalledBack { note: note.clone() } })
        }
    }
}

fn delivery_of(id: &MessageId, p: OldPair) -> Delivery {
    let state = match (p.delivered_at, p.attempts) {
        (Some(_), _) => DeliveryState::Delivered,
        (None, 0) => DeliveryState::Pending,
        (None, _) => DeliveryState::Failing,
    };
    Delivery {
        id: id.clone(),
        target: p.destination.target,
        reminder: None,
        extra_to: p.destination.extra_to,
        state,
        attempts: p.attempts,
        next_attempt: Some(p.next_attempt),
        last_attempt: p.last_attempt,
        last_error: p.last_error,
        delivered_at: p.delivered_at,
        ack: p.ack,
    }
}
