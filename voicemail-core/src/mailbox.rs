//! The mailbox workflow: who calls a message back, and when a message may be deleted.
//!
//! Each message in the spool (`<id>.wav` plus its metadata `<id>.json`) goes through
//! New → Assigned (to whom, when) → CalledBack (by whom, when, a note). A message can be
//! reassigned while it is Assigned; once CalledBack it is final. Deleting a message before
//! it was called back is refused unless forced with a reason; every deletion is appended to
//! `deletions.log` in the spool, and a forced one is also logged with `tracing::warn!`.
//!
//! # On disk
//!
//! The workflow state of message `<id>` is one JSON file, `<spool>/<id>.state.json`, holding the
//! current state and the history of transitions. A message without a state file is New. Each
//! write goes to a temporary file (`.<id>.state.json.tmp`) that is `fsync`ed, renamed over the
//! state file and followed by an `fsync` of the spool directory, so after a crash the state is
//! either the old or the new one, never a torn file. One file per message (rather than one
//! shared log) keeps a message's state next to its recording, lets deletion remove everything
//! about a message, and makes a corrupted file affect one message only.
//!
//! `deletions.log` is append-only JSON lines (one [`DeletionRecord`] per line), `fsync`ed after
//! every append; it is written *before* any file is removed, so a deletion is never unrecorded.
//!
//! # Safety of ids
//!
//! Ids passed in are checked ([`validate_id`]): ASCII letters, digits, `.`, `_` and `-`, at
//! most 128 characters, not starting with `.`, no `..`. So no call can reach a path outside
//! the spool. Time is always passed in (`at`); this module never reads the clock.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::durable;
use crate::message::MessageMeta;

/// File name of the deletion log in the spool.
pub const DELETIONS_LOG: &str = "deletions.log";

const STATE_SUFFIX: &str = ".state.json";
const MAX_ID_LEN: usize = 128;
const MAX_NAME_LEN: usize = 200;
const MAX_NOTE_LEN: usize = 4000;

/// Why a mailbox operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailboxError {
    /// The spool directory does not exist or is not a directory.
    #[error("spool directory {0} does not exist")]
    NoSpool(PathBuf),
    /// The id is not a valid message id.
    #[error("invalid message id {0:?}: expected letters, digits, '.', '_' or '-' (no '..', not starting with '.')")]
    InvalidId(String),
    /// No message with this id is in the spool.
    #[error("message {0} not found")]
    NotFound(String),
    /// The message was deleted.
    #[error("message {id} was deleted at {at}")]
    Deleted {
        /// The id.
        id: String,
        /// When it was deleted.
        at: Timestamp,
    },
    /// The transition makes no sense in the message's current state.
    #[error("message {id} is {state}: cannot {action}")]
    InvalidTransition {
        /// The id.
        id: String,
        /// The current state (`new`, `assigned to ...`, `called back by ...`).
        state: String,
        /// What was attempted.
        action: &'static str,
    },
    /// Deleting a message that was not called back needs `--force` with a reason.
    #[error("message {id} is {state} and has not been called back: deleting it needs a forced deletion with a reason")]
    NotCalledBack {
        /// The id.
        id: String,
        /// The current state.
        state: String,
    },
    /// A name, note or reason is empty, too long or contains control characters.
    #[error("invalid {field}: {message}")]
    InvalidText {
        /// Which argument.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A state file could not be parsed.
    #[error("corrupt state file {path}: {source}")]
    CorruptState {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// Where a message is in the callback workflow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum WorkflowState {
    /// Nobody has taken it yet.
    #[default]
    New,
    /// Someone is to call back.
    Assigned {
        /// Who.
        to: String,
        /// When it was assigned.
        at: Timestamp,
    },
    /// The caller was called back.
    CalledBack {
        /// Who called back.
        by: String,
        /// When.
        at: Timestamp,
        /// What was said or agreed, if noted.
        note: Option<String>,
    },
}

impl WorkflowState {
    /// A short human description: `new`, `assigned to Anna`, `called back by Boris`.
    pub fn describe(&self) -> String {
        match self {
            WorkflowState::New => "new".to_owned(),
            WorkflowState::Assigned { to, .. } => format!("assigned to {to}"),
            WorkflowState::CalledBack { by, .. } => format!("called back by {by}"),
        }
    }

    /// The state's name: `new`, `assigned` or `called-back`.
    pub fn name(&self) -> &'static str {
        match self {
            WorkflowState::New => "new",
            WorkflowState::Assigned { .. } => "assigned",
            WorkflowState::CalledBack { .. } => "called-back",
        }
    }
}

/// The persisted workflow record of one message: the current state and every transition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowRecord {
    /// The current state.
    pub state: WorkflowState,
    /// Every state the message entered, oldest first (New is implicit and not listed).
    pub history: Vec<WorkflowState>,
}

/// One message as the inbox shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageStatus {
    /// The message id (the file stem in the spool).
    pub id: String,
    /// The metadata, or `None` when `<id>.json` is missing or unreadable (the recording is
    /// still listed, so nothing hides).
    pub meta: Option<MessageMeta>,
    /// The recording, if `<id>.wav` exists.
    pub wav: Option<PathBuf>,
    /// The workflow state and history.
    pub workflow: WorkflowRecord,
}

impl MessageStatus {
    /// The current workflow state.
    pub fn state(&self) -> &WorkflowState {
        &self.workflow.state
    }
}

/// A forced deletion's justification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForceReason {
    /// Why the message is deleted without a callback (must not be empty).
    pub reason: String,
}

impl ForceReason {
    /// A reason.
    pub fn new(reason: impl Into<String>) -> Self {
        ForceReason { reason: reason.into() }
    }
}

/// One line of `deletions.log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionRecord {
    /// The deleted message's id.
    pub id: String,
    /// When it was deleted.
    pub at: Timestamp,
    /// Whether it was deleted before a callback, by force.
    pub forced: bool,
    /// The reason given for a forced deletion.
    pub reason: Option<String>,
    /// The workflow state it was in.
    pub state: WorkflowState,
    /// The caller's number, when the metadata was readable.
    pub caller: Option<String>,
}

/// The spool directory seen as a mailbox. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Mailbox {
    spool: PathBuf,
}

impl Mailbox {
    /// Opens the mailbox of an existing spool directory.
    pub fn open(spool: impl Into<PathBuf>) -> Result<Self, MailboxError> {
        let spool = spool.into();
        if !spool.is_dir() {
            return Err(MailboxError::NoSpool(spool));
        }
        Ok(Mailbox { spool })
    }

    /// The spool directory.
    pub fn spool(&self) -> &Path {
        &self.spool
    }

    /// Every message in the spool, sorted by start time (messages without metadata last),
    /// then id. A message is any `<id>.wav`, or any `<id>.json` holding message metadata.
    pub fn list(&self) -> Result<Vec<MessageStatus>, MailboxError> {
        let entries = fs::read_dir(&self.spool).map_err(|source| MailboxError::Io {
            action: "cannot read spool directory",
            path: self.spool.clone(),
            source,
        })?;
        let mut ids = BTreeSet::new();
        for entry in entries {
            let entry = entry.map_err(|source| MailboxError::Io {
                action: "cannot read spool directory",
                path: self.spool.clone(),
                source,
            })?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(STATE_SUFFIX) {
                continue;
            }
            let stem = if let Some(stem) = name.strip_suffix(".wav") {
                stem
            } else if let Some(stem) = name.strip_suffix(".json") {
                stem
            } else {
                continue;
            };
            if validate_id(stem).is_ok() {
                ids.insert(stem.to_owned());
            }
        }
        let mut out = Vec::new();
        for id in ids {
            let status = self.status(&id)?;
            // A `.json` that is not message metadata and has no recording is not a message
            // (another component's file); a recording always is.
            if status.meta.is_some() || status.wav.is_some() {
                out.push(status);
            }
        }
        out.sort_by(|a, b| {
            let ka = a.meta.as_ref().map(|m| m.started_at);
            let kb = b.meta.as_ref().map(|m| m.started_at);
            match (ka, kb) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            }
            .then_with(|| a.id.cmp(&b.id))
        });
        Ok(out)
    }

    /// One message.
    pub fn show(&self, id: &str) -> Result<MessageStatus, MailboxError> {
        validate_id(id)?;
        let status = self.status(id)?;
        if status.meta.is_none() && status.wav.is_none() {
            return Err(self.missing(id));
        }
        Ok(status)
    }

    /// Assigns a New or Assigned message to `to` at `at`.
    pub fn assign(&self, id: &str, to: &str, at: Timestamp) -> Result<MessageStatus, MailboxError> {
        check_name("assignee", to)?;
        let mut status = self.show(id)?;
        match status.workflow.state {
            WorkflowState::New | WorkflowState::Assigned { .. } => {}
            WorkflowState::CalledBack { .. } => {
                return Err(MailboxError::InvalidTransition {
                    id: id.to_owned(),
                    state: status.workflow.state.describe(),
                    action: "assign it (it was already called back)",
                });
            }
        }
        let next = WorkflowState::Assigned { to: to.to_owned(), at };
        status.workflow.history.push(next.clone());
        status.workflow.state = next;
        self.write_state(id, &status.workflow)?;
        Ok(status)
    }

    /// Records that `by` called the caller back at `at`, with an optional note.
    pub fn called_back(
        &self,
        id: &str,
        by: &str,
        at: Timestamp,
        note: Option<&str>,
    ) -> Result<MessageStatus, MailboxError> {
        check_name("caller-back name", by)?;
        if let Some(note) = note {
            check_note(note)?;
        }
        let mut status = self.show(id)?;
        if let WorkflowState::CalledBack { .. } = status.workflow.state {
            return Err(MailboxError::InvalidTransition {
                id: id.to_owned(),
                state: status.workflow.state.describe(),
                action: "record another callback",
            });
        }
        let next = WorkflowState::CalledBack { by: by.to_owned(), at, note: note.map(str::to_owned) };
        status.workflow.history.push(next.clone());
        status.workflow.state = next;
        self.write_state(id, &status.workflow)?;
        Ok(status)
    }

    /// Deletes a message (recording, metadata and state). A message that was not called back
    /// is only deleted with a [`ForceReason`]; the deletion is appended to `deletions.log`
    /// before any file is removed, and a forced one is also logged as a warning.
    pub fn delete(&self, id: &str, force: Option<ForceReason>, at: Timestamp) -> Result<DeletionRecord, MailboxError> {
        if let Some(f) = &force {
            check_note(&f.reason).map_err(|e| match e {
                MailboxError::InvalidText { message, .. } => MailboxError::InvalidText { field: "reason", message },
                other => other,
            })?;
        }
        let status = self.show(id)?;
        let called_back = matches!(status.workflow.state, WorkflowState::CalledBack { .. });
        let forced = !called_back;
        let reason = match (called_back, force) {
            (true, f) => f.map(|f| f.reason),
            (false, Some(f)) => Some(f.reason),
            (false, None) => {
                return Err(MailboxError::NotCalledBack { id: id.to_owned(), state: status.workflow.state.describe() });
            }
        };
        let record = DeletionRecord {
            id: id.to_owned(),
            at,
            forced,
            reason,
            state: status.workflow.state.clone(),
            caller: status.meta.as_ref().map(|m| m.caller.clone()),
        };
        self.append_deletion(&record)?;
        if forced {
            tracing::warn!(
                id = %record.id,
                state = %record.state.describe(),
                reason = record.reason.as_deref().unwrap_or(""),
                "forced deletion of a message that was not called back"
            );
        } else {
            tracing::info!(id = %record.id, "deleted a called-back message");
        }
        for path in [self.spool.join(format!("{id}.wav")), self.spool.join(format!("{id}.json")), self.state_path(id)] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(MailboxError::Io { action: "cannot remove", path, source });
                }
            }
        }
        sync_dir(&self.spool)?;
        Ok(record)
    }

    /// Every deletion recorded in `deletions.log`, oldest first. Unparseable lines are skipped.
    pub fn deletions(&self) -> Result<Vec<DeletionRecord>, MailboxError> {
        let path = self.spool.join(DELETIONS_LOG);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(MailboxError::Io { action: "cannot read", path, source });
            }
        };
        Ok(text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect())
    }

    fn missing(&self, id: &str) -> MailboxError {
        let deleted = self.deletions().ok().and_then(|d| d.into_iter().rev().find(|r| r.id == id));
        match deleted {
            Some(r) => MailboxError::Deleted { id: id.to_owned(), at: r.at },
            None => MailboxError::NotFound(id.to_owned()),
        }
    }

    /// Reads what is on disk about a (validated) id.
    fn status(&self, id: &str) -> Result<MessageStatus, MailboxError> {
        let wav = self.spool.join(format!("{id}.wav"));
        let wav = wav.is_file().then_some(wav);
        let meta_path = self.spool.join(format!("{id}.json"));
        let meta = match fs::read(&meta_path) {
            Ok(bytes) => match serde_json::from_slice::<MessageMeta>(&bytes) {
                Ok(meta) => Some(meta),
                Err(e) => {
                    if wav.is_some() {
                        tracing::warn!(path = %meta_path.display(), error = %e, "unreadable message metadata");
                    }
                    None
                }
            },
            Err(_) => None,
        };
        let workflow = self.read_state(id)?;
        Ok(MessageStatus { id: id.to_owned(), meta, wav, workflow })
    }

    fn state_path(&self, id: &str) -> PathBuf {
        self.spool.join(format!("{id}{STATE_SUFFIX}"))
    }

    fn read_state(&self, id: &str) -> Result<WorkflowRecord, MailboxError> {
        let path = self.state_path(id);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| MailboxError::CorruptState { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(WorkflowRecord::default()),
            Err(source) => Err(MailboxError::Io { action: "cannot read", path, source }),
        }
    }

    fn write_state(&self, id: &str, record: &WorkflowRecord) -> Result<(), MailboxError> {
        let path = self.state_path(id);
        let mut bytes = serde_json::to_vec_pretty(record)
            .map_err(|source| MailboxError::CorruptState { path: path.clone(), source })?;
        bytes.push(b'\n');
        durable::write_atomic(&path, &bytes).map_err(|source| MailboxError::Io { action: "cannot write", path, source })
    }

    fn append_deletion(&self, record: &DeletionRecord) -> Result<(), MailboxError> {
        let path = self.spool.join(DELETIONS_LOG);
        let mut line = serde_json::to_string(record)
            .map_err(|source| MailboxError::CorruptState { path: path.clone(), source })?;
        line.push('\n');
        let mut file = OpenOptions::new().create(true).append(true).open(&path).map_err(|source| MailboxError::Io {
            action: "cannot open",
            path: path.clone(),
            source,
        })?;
        file.write_all(line.as_bytes()).and_then(|()| file.sync_all()).map_err(|source| MailboxError::Io {
            action: "cannot append to",
            path,
            source,
        })
    }
}

/// Checks a message id passed in from outside: ASCII letters, digits, `.`, `_`, `-`; 1 to 128
/// characters; not starting with `.`; no `..`; not ending in `.state`.
pub fn validate_id(id: &str) -> Result<(), MailboxError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && !id.starts_with('.')
        && !id.contains("..")
        && !id.ends_with(".state")
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok { Ok(()) } else { Err(MailboxError::InvalidId(id.chars().take(MAX_ID_LEN).collect())) }
}

fn check_name(field: &'static str, value: &str) -> Result<(), MailboxError> {
    let bad = |message: &str| MailboxError::InvalidText { field, message: message.to_owned() };
    if value.trim().is_empty() {
        return Err(bad("it is empty"));
    }
    if value.chars().count() > MAX_NAME_LEN {
        return Err(bad("it is longer than 200 characters"));
    }
    if value.chars().any(char::is_control) {
        return Err(bad("it contains a control character"));
    }
    Ok(())
}

fn check_note(value: &str) -> Result<(), MailboxError> {
    let bad = |message: &str| MailboxError::InvalidText { field: "note", message: message.to_owned() };
    if value.trim().is_empty() {
        return Err(bad("it is empty"));
    }
    if value.chars().count() > MAX_NOTE_LEN {
        return Err(bad("it is longer than 4000 characters"));
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(bad("it contains a control character"));
    }
    Ok(())
}

/// `fsync`s a directory so a rename or removal in it is durable.
fn sync_dir(dir: &Path) -> Result<(), MailboxError> {
    durable::sync_dir(dir).map_err(|source| MailboxError::Io {
        action: "cannot sync directory",
        path: dir.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        for good in ["20261127T101500Z-1", "abc", "a.b", "A_b-9"] {
            assert!(validate_id(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../etc/passwd",
            "a/b",
            "a\\b",
            "a\0b",
            ".hidden",
            "a..b",
            "x.state",
            "ünïcode",
            &"a".repeat(129),
        ] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }
}
