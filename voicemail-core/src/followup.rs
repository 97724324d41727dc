//! Follow-up: who returns a message's call, and what happened to the message since.
//!
//! Each message goes New → Assigned (to whom) → CalledBack (by whom, with a note). A message
//! can be reassigned while it is Assigned; once CalledBack it is final. Deleting a message
//! before it was called back is refused unless forced with a reason. Every change is a
//! [`HistoryEntry`]: who did it, when, and with what note, deletions included.
//!
//! This module holds the rules only ([`FollowUp::apply`]); the [`Mailbox`](crate::mailbox::Mailbox)
//! applies them to the store inside one transaction, so two processes changing one message at
//! once never lose an update.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

const MAX_NAME_LEN: usize = 200;
const MAX_NOTE_LEN: usize = 4000;

/// Where a message is in the callback workflow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum FollowUp {
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

impl FollowUp {
    /// A short human description: `new`, `assigned to Anna`, `called back by Boris`.
    pub fn describe(&self) -> String {
        match self {
            FollowUp::New => "new".to_owned(),
            FollowUp::Assigned { to, .. } => format!("assigned to {to}"),
            FollowUp::CalledBack { by, .. } => format!("called back by {by}"),
        }
    }

    /// The state's name: `new`, `assigned` or `called-back`.
    pub fn name(&self) -> &'static str {
        match self {
            FollowUp::New => "new",
            FollowUp::Assigned { .. } => "assigned",
            FollowUp::CalledBack { .. } => "called-back",
        }
    }

    /// Whether the call was returned (the message may then be deleted).
    pub fn is_called_back(&self) -> bool {
        matches!(self, FollowUp::CalledBack { .. })
    }

    /// Applies `change` made by `by` at `at`: the new state (unchanged for a deletion) and the
    /// history entry to record, or why the change is refused.
    pub fn apply(&self, change: &Change, by: &str, at: Timestamp) -> Result<(FollowUp, HistoryEntry), FollowUpError> {
        check_name("by", by)?;
        let refused = |action: &'static str| FollowUpError::InvalidTransition { state: self.describe(), action };
        let (next, event) = match change {
            Change::Assign { to } => {
                check_name("assignee", to)?;
                if self.is_called_back() {
                    return Err(refused("assign it (it was already called back)"));
                }
                (FollowUp::Assigned { to: to.clone(), at }, Event::Assigned { to: to.clone() })
            }
            Change::CalledBack { note } => {
                if let Some(note) = note {
                    check_note("note", note)?;
                }
                if self.is_called_back() {
                    return Err(refused("record another callback"));
                }
                (
                    FollowUp::CalledBack { by: by.to_owned(), at, note: note.clone() },
                    Event::CalledBack { note: note.clone() },
                )
            }
            Change::Delete { force_reason } => {
                if let Some(reason) = force_reason {
                    check_note("reason", reason)?;
                }
                let forced = !self.is_called_back();
                if forced && force_reason.is_none() {
                    return Err(FollowUpError::NotCalledBack { state: self.describe() });
                }
                (self.clone(), Event::Deleted { forced, reason: force_reason.clone() })
            }
        };
        Ok((next, HistoryEntry { at, by: by.to_owned(), event }))
    }
}

/// A change someone asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Assign (or reassign) the message to someone.
    Assign {
        /// Who is to call back.
        to: String,
    },
    /// The caller was called back (by whoever makes the change).
    CalledBack {
        /// What was said or agreed.
        note: Option<String>,
    },
    /// Delete the message: its recording is removed, its record and history stay.
    Delete {
        /// Needed (not empty) when the message was not called back.
        force_reason: Option<String>,
    },
}

/// One line of a message's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When it happened.
    pub at: Timestamp,
    /// Who did it: a person, or the part of the product that acted (`answering-machine`,
    /// `recovery`, `delivery`, ...).
    pub by: String,
    /// What happened.
    pub event: Event,
}

impl HistoryEntry {
    /// One line for people: `2026-11-27T12:00:00Z  Anna: assigned to Boris`.
    pub fn describe(&self) -> String {
        format!("{}  {}: {}", self.at, self.by, self.event.describe())
    }
}

/// What happened to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Event {
    /// The call was recorded and the message stored.
    Recorded {
        /// Why the call ended (`hang-up`, `interrupted`, ...).
        end_reason: String,
    },
    /// Assigned to someone.
    Assigned {
        /// Who is to call back.
        to: String,
    },
    /// The caller was called back.
    CalledBack {
        /// The note, if any.
        note: Option<String>,
    },
    /// The message was deleted.
    Deleted {
        /// Whether it was deleted before a callback, by force.
        forced: bool,
        /// The reason given.
        reason: Option<String>,
    },
    /// A delivery target acknowledged the message.
    Delivered {
        /// The target (`maildir`, `smtp`, `imap`).
        target: String,
        /// What the target said.
        detail: String,
    },
    /// A delivery target refused the message for good.
    Rejected {
        /// The target.
        target: String,
        /// The server's words.
        error: String,
    },
    /// A rejected delivery was queued again.
    Retried {
        /// The target.
        target: String,
    },
    /// A reminder that the call is still to be returned was queued (`[followup]`).
    ReminderQueued {
        /// Which reminder.
        step: ReminderStep,
        /// Its recipients.
        to: Vec<String>,
    },
    /// The SMTP server acknowledged a reminder.
    ReminderSent {
        /// Which reminder.
        step: ReminderStep,
        /// What the server said.
        detail: String,
    },
    /// The SMTP server refused a reminder for good.
    ReminderRejected {
        /// Which reminder.
        step: ReminderStep,
        /// The server's words.
        error: String,
    },
    /// The message's copy at a target was removed before its call was returned, and was put
    /// back (the IMAP watcher, [`crate::imapsync`]).
    Restored {
        /// The target (`imap`).
        target: String,
        /// What happened and what the target said.
        detail: String,
    },
}

impl Event {
    /// A short description: `assigned to Anna`, `delivered to maildir`, ...
    pub fn describe(&self) -> String {
        match self {
            Event::Recorded { end_reason } => format!("recorded (ended by {end_reason})"),
            Event::Assigned { to } => format!("assigned to {to}"),
            Event::CalledBack { note: Some(note) } => format!("called back: {note}"),
            Event::CalledBack { note: None } => "called back".to_owned(),
            Event::Deleted { forced: true, reason } => {
                format!("deleted before a callback ({})", reason.as_deref().unwrap_or(""))
            }
            Event::Deleted { forced: false, .. } => "deleted".to_owned(),
            Event::Delivered { target, detail } => format!("delivered to {target}: {detail}"),
            Event::Rejected { target, error } => format!("rejected by {target}: {error}"),
            Event::Retried { target } => format!("delivery to {target} queued again"),
            Event::ReminderQueued { step, to } => format!("{} queued for {}", step.describe(), to.join(", ")),
            Event::ReminderSent { step, detail } => format!("{} sent: {detail}", step.describe()),
            Event::ReminderRejected { step, error } => format!("{} rejected: {error}", step.describe()),
            Event::Restored { target, detail } => format!("{target} copy put back: {detail}"),
        }
    }
}

/// One reminder of a message not called back (`[followup]`): the n-th reminder, or the
/// escalation. Each is sent at most once per message; its key (`remind-1`, `escalate`) is
/// how the store remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ReminderStep {
    /// The n-th reminder (1 after `remind_after`, then one more every `remind_every`).
    Remind(u32),
    /// The escalation after `escalate_after`, also to `escalate_to`.
    Escalate,
}

impl ReminderStep {
    /// The key: `remind-1`, `remind-2`, ..., `escalate`.
    pub fn key(self) -> String {
        match self {
            ReminderStep::Remind(n) => format!("remind-{n}"),
            ReminderStep::Escalate => "escalate".to_owned(),
        }
    }

    /// Parses a key made by [`ReminderStep::key`].
    pub fn parse(key: &str) -> Option<Self> {
        if key == "escalate" {
            return Some(ReminderStep::Escalate);
        }
        let n = key.strip_prefix("remind-")?;
        if n.is_empty() || n.starts_with('0') || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        n.parse().ok().map(ReminderStep::Remind)
    }

    /// `reminder 2`, `escalation`.
    pub fn describe(self) -> String {
        match self {
            ReminderStep::Remind(n) => format!("reminder {n}"),
            ReminderStep::Escalate => "escalation".to_owned(),
        }
    }
}

impl std::fmt::Display for ReminderStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key())
    }
}

impl TryFrom<String> for ReminderStep {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        ReminderStep::parse(&s).ok_or_else(|| format!("not a reminder step: {s:?}"))
    }
}

impl From<ReminderStep> for String {
    fn from(step: ReminderStep) -> String {
        step.key()
    }
}

/// Why a follow-up change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FollowUpError {
    /// The change makes no sense in the message's current state.
    #[error("the message is {state}: cannot {action}")]
    InvalidTransition {
        /// The current state (`new`, `assigned to ...`, `called back by ...`).
        state: String,
        /// What was attempted.
        action: &'static str,
    },
    /// Deleting a message that was not called back needs a forced deletion with a reason.
    #[error("the message is {state} and has not been called back: deleting it needs a forced deletion with a reason")]
    NotCalledBack {
        /// The current state.
        state: String,
    },
    /// A name, note or reason is empty, too long or contains control characters.
    #[error("invalid {field}: {message}")]
    InvalidText {
        /// Which argument.
        field: &'static str,
        /// What is wrong.
        message: &'static str,
    },
}

fn check_name(field: &'static str, value: &str) -> Result<(), FollowUpError> {
    let bad = |message| FollowUpError::InvalidText { field, message };
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

fn check_note(field: &'static str, value: &str) -> Result<(), FollowUpError> {
    let bad = |message| FollowUpError::InvalidText { field, message };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn transitions() {
        let assign = Change::Assign { to: "Anna".into() };
        let (s, h) = FollowUp::New.apply(&assign, "boss", at(1)).unwrap();
        assert_eq!(s, FollowUp::Assigned { to: "Anna".into(), at: at(1) });
        assert_eq!(h.by, "boss");
        let (s, _) = s.apply(&Change::Assign { to: "Boris".into() }, "boss", at(2)).unwrap();
        assert_eq!(s.describe(), "assigned to Boris");
        let del = Change::Delete { force_reason: None };
        assert!(matches!(s.apply(&del, "x", at(3)), Err(FollowUpError::NotCalledBack { .. })));
        let (s, _) = s.apply(&Change::CalledBack { note: Some("ok".into()) }, "Boris", at(4)).unwrap();
        assert!(s.is_called_back());
        assert!(s.apply(&assign, "boss", at(5)).is_err());
        assert!(s.apply(&Change::CalledBack { note: None }, "Boris", at(5)).is_err());
        let (same, h) = s.apply(&del, "boss", at(6)).unwrap();
        assert_eq!(same, s);
        assert_eq!(h.event, Event::Deleted { forced: false, reason: None });
        let forced = Change::Delete { force_reason: Some("spam".into()) };
        let (_, h) = FollowUp::New.apply(&forced, "boss", at(7)).unwrap();
        assert_eq!(h.event, Event::Deleted { forced: true, reason: Some("spam".into()) });
    }

    #[test]
    fn reminder_step_keys_round_trip() {
        for step in [ReminderStep::Remind(1), ReminderStep::Remind(12), ReminderStep::Escalate] {
            assert_eq!(ReminderStep::parse(&step.key()), Some(step));
            let json = serde_json::to_string(&step).unwrap();
            assert_eq!(serde_json::from_str::<ReminderStep>(&json).unwrap(), step);
        }
        for bad in ["", "remind-", "remind-0", "remind-01", "remind-x", "escalated", "remind-99999999999"] {
            assert_eq!(ReminderStep::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn text_is_checked() {
        for bad in ["", "  ", "a\nb", "a\u{7}"] {
            assert!(FollowUp::New.apply(&Change::Assign { to: bad.into() }, "x", at(0)).is_err(), "{bad:?}");
        }
        let long = "x".repeat(201);
        assert!(FollowUp::New.apply(&Change::Assign { to: long }, "x", at(0)).is_err());
        let note = Change::CalledBack { note: Some("line one\nline two".into()) };
        assert!(FollowUp::New.apply(&note, "x", at(0)).is_ok());
    }
}
