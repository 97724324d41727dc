//! Reminders of calls not returned (`[followup]`).
//!
//! A message that is not called back within `remind_after` of **business time** (counted in
//! the mailbox's business hours, holidays excluded; wall-clock time without business hours,
//! see [`Schedule::business_time_between`](crate::schedule::Schedule::business_time_between))
//! gets a reminder e-mail: to the person it is assigned to, or to the shared recipients
//! (`[delivery.smtp] to`) while nobody has it. Another follows every `remind_every`. After
//! `escalate_after` the escalation goes to the same people and to `escalate_to`, and so does
//! every reminder after it. A reminder is sent once: its step (`remind-1`, `remind-2`, ...,
//! `escalate`, a [`ReminderStep`]) is recorded in the store in the same transaction that
//! queues its delivery in the outbox, so neither a second pass, another process nor a restart
//! sends it again. A pass that comes late (the machine was off) sends only the latest due
//! reminder, not every one it missed; when the escalation and a reminder fall due in one pass,
//! only the escalation goes out.
//!
//! Reminders go to people, so they go by SMTP (the `smtp` target's server and sender, its
//! recipients replaced by the reminder's): `[followup]` needs `[delivery.smtp]`. They carry
//! the recording and use the reminder templates of `[email]` ([`crate::template`]).
//!
//! Who gets a reminder of an assigned message: the assignee when it is an e-mail address (what
//! auto-assignment by the directory records), else the directory's manager of that name; an
//! assignee that is neither gets none (the shared recipients do, and a warning is logged).
//!
//! This module holds the rules ([`FollowupConfig::due`], [`recipients`]); the mailbox applies
//! them in [`Mailbox::remind`], which the [`Runner`](crate::runner::Runner) calls with the real
//! clock and `inbox remind --at TIME` with the time given.

use std::time::Duration;

use jiff::Timestamp;

use crate::config::Config;
use crate::deliver::validate_address;
use crate::followup::{FollowUp, ReminderStep};
use crate::mailbox::{Mailbox, MailboxError};
use crate::message::MessageId;
use crate::store::{Lifecycle, NewReminder};

/// `[followup]`: when to remind of a message not called back, and when to escalate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowupConfig {
    /// Business time after the call until the first reminder (`remind_after`).
    pub remind_after: Duration,
    /// Business time between later reminders (`remind_every`); `None`: one reminder only.
    pub remind_every: Option<Duration>,
    /// Business time after the call until the escalation (`escalate_after`); `None`: none.
    pub escalate_after: Option<Duration>,
    /// Who else gets the escalation and every reminder after it (`escalate_to`).
    pub escalate_to: Vec<String>,
}

/// A reminder due now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The reminder to send.
    pub step: ReminderStep,
    /// Reminders due at the same time that this one stands for (recorded as done, not sent).
    pub covers: Vec<ReminderStep>,
    /// Whether `escalate_to` receives it.
    pub escalated: bool,
}

impl FollowupConfig {
    /// The business time after the call at which `step` falls due (`None`: never).
    pub fn threshold(&self, step: ReminderStep) -> Option<Duration> {
        match step {
            ReminderStep::Escalate => self.escalate_after,
            ReminderStep::Remind(1) => Some(self.remind_after),
            ReminderStep::Remind(0) => None,
            ReminderStep::Remind(n) => self.remind_every?.checked_mul(n - 1)?.checked_add(self.remind_after),
        }
    }

    /// Whether `step` goes to `escalate_to` too: the escalation, and reminders due at or after
    /// it.
    pub fn is_escalated(&self, step: ReminderStep) -> bool {
        match step {
            ReminderStep::Escalate => true,
            step => match (self.escalate_after, self.threshold(step)) {
                (Some(e), Some(t)) => t >= e,
                _ => false,
            },
        }
    }

    /// The reminder to send for a message that has waited `waited` (business time) and had the
    /// reminders `done`; `None` when nothing is due.
    pub fn due(&self, waited: Duration, done: &[ReminderStep]) -> Option<Due> {
        let latest = self.latest_reminder(waited);
        let max_done = max_reminder(done);
        let remind = latest.filter(|n| *n > max_done).map(ReminderStep::Remind);
        let escalate =
            self.escalate_after.filter(|e| waited >= *e).is_some() && !done.contains(&ReminderStep::Escalate);
        match (escalate, remind) {
            (true, remind) => {
                Some(Due { step: ReminderStep::Escalate, covers: remind.into_iter().collect(), escalated: true })
            }
            (false, Some(step)) => Some(Due { step, covers: Vec::new(), escalated: self.is_escalated(step) }),
            (false, None) => None,
        }
    }

    /// The business time after the call at which the next reminder falls due, once `done`
    /// were sent; `None` when no more will come.
    pub fn next_threshold(&self, done: &[ReminderStep]) -> Option<Duration> {
        let max_done = max_reminder(done);
        let next_remind = max_done.checked_add(1).and_then(|n| self.threshold(ReminderStep::Remind(n)));
        let escalate = self.escalate_after.filter(|_| !done.contains(&ReminderStep::Escalate));
        match (next_remind, escalate) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The number of the latest reminder due after `waited`, if any.
    fn latest_reminder(&self, waited: Duration) -> Option<u32> {
        let past = waited.checked_sub(self.remind_after)?;
        match self.remind_every {
            None => Some(1),
            Some(every) if every.is_zero() => Some(1),
            Some(every) => {
                let n = past.as_nanos() / every.as_nanos();
                Some(u32::try_from(n).unwrap_or(u32::MAX - 1).saturating_add(1))
            }
        }
    }
}

fn max_reminder(done: &[ReminderStep]) -> u32 {
    done.iter()
        .filter_map(|s| match s {
            ReminderStep::Remind(n) => Some(*n),
            ReminderStep::Escalate => None,
        })
        .max()
        .unwrap_or(0)
}

/// Who receives a reminder of a message in state `followup`: the assignee (see the
/// [module docs](self)) or, while nobody has it, the shared recipients; with `escalate_to`
/// when `escalated`. Without duplicates (compared case-insensitively), in that order.
pub fn recipients(config: &Config, followup: &FollowUp, escalated: bool) -> Vec<String> {
    let shared = || config.delivery.smtp.as_ref().map(|s| s.to.clone()).unwrap_or_default();
    let mut out: Vec<String> = match followup {
        FollowUp::Assigned { to, .. } => match assignee_address(config, to) {
            Some(address) => vec![address],
            None => {
                tracing::warn!(assignee = %to, "the assignee is neither an e-mail address nor a manager in the directory; reminding the shared recipients");
                shared()
            }
        },
        FollowUp::New => shared(),
        FollowUp::CalledBack { .. } => Vec::new(),
    };
    if escalated && let Some(f) = &config.followup {
        out.extend(f.escalate_to.iter().cloned());
    }
    let mut unique: Vec<String> = Vec::with_capacity(out.len());
    for a in out {
        if !unique.iter().any(|u| u.eq_ignore_ascii_case(&a)) {
            unique.push(a);
        }
    }
    unique
}

/// The e-mail address of an assignee: itself when it is one, else the address of the
/// directory's manager of that name (compared without regard to case).
pub fn assignee_address(config: &Config, assignee: &str) -> Option<String> {
    let assignee = assignee.trim();
    if validate_address(assignee).is_ok() {
        return Some(assignee.to_owned());
    }
    let directory = config.client_directory()?;
    directory
        .clients()
        .iter()
        .find(|c| c.manager_name.trim().to_lowercase() == assignee.to_lowercase())
        .map(|c| c.manager_email.clone())
}

/// What one [`Mailbox::remind`] pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemindReport {
    /// Reminders queued: the message, the reminder, its recipients.
    pub queued: Vec<(MessageId, ReminderStep, Vec<String>)>,
    /// The earliest time a further reminder of a message waiting now falls due (the messages
    /// as they are; a new message or a change may make it earlier).
    pub next_due: Option<Timestamp>,
}

impl Mailbox {
    /// One reminder pass at `now` (`[followup]`; nothing without it): for every stored message
    /// not called back, queues the reminder due at `now`, if any and not queued before (see
    /// the [module docs](self)), and wakes delivery. Safe to run from several processes at
    /// once: each reminder is queued at most once.
    pub fn remind(&self, now: Timestamp) -> Result<RemindReport, MailboxError> {
        let mut report = RemindReport::default();
        let config = self.config();
        let Some(followup) = &config.followup else { return Ok(report) };
        let done = self.store().reminder_steps()?;
        let schedule = &config.schedule;
        for m in self.store().list(false, false)? {
            if m.lifecycle != Lifecycle::Stored || m.followup.is_called_back() {
                continue;
            }
            let started = m.meta.started_at;
            let mut steps: Vec<ReminderStep> =
                done.iter().filter(|(id, _)| *id == m.meta.id).map(|(_, step)| *step).collect();
            let waited = schedule.business_time_between(started, now);
            if let Some(due) = followup.due(waited, &steps) {
                let to = recipients(config, &m.followup, due.escalated);
                if to.is_empty() {
                    tracing::debug!(id = %m.meta.id, step = %due.step, "a reminder is due but has nobody to go to");
                } else {
                    let reminder = NewReminder {
                        step: due.step,
                        covers: due.covers.clone(),
                        to: to.clone(),
                        by: "reminder".to_owned(),
                    };
                    if self.store().queue_reminder(&m.meta.id, &reminder, now)? {
                        tracing::info!(id = %m.meta.id, step = %due.step, to = %to.join(", "), "reminder queued");
                        report.queued.push((m.meta.id.clone(), due.step, to));
                    }
                }
                steps.push(due.step);
                steps.extend(due.covers);
            }
            let next = followup.next_threshold(&steps).and_then(|t| schedule.add_business_time(started, t));
            if let Some(next) = next.filter(|n| *n > now) {
                report.next_due = Some(report.next_due.map_or(next, |d| d.min(next)));
            }
        }
        if !report.queued.is_empty() {
            self.wake();
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3600;

    fn cfg(every: Option<u64>, escalate: Option<u64>) -> FollowupConfig {
        FollowupConfig {
            remind_after: Duration::from_secs(4 * H),
            remind_every: every.map(|h| Duration::from_secs(h * H)),
            escalate_after: escalate.map(|h| Duration::from_secs(h * H)),
            escalate_to: vec!["boss@example.com".into()],
        }
    }

    fn hours(h: u64) -> Duration {
        Duration::from_secs(h * H)
    }

    #[test]
    fn reminders_then_escalation() {
        let c = cfg(Some(4), Some(10));
        assert_eq!(c.due(hours(3), &[]), None);
        assert_eq!(c.next_threshold(&[]), Some(hours(4)));
        let first = c.due(hours(5), &[]).unwrap();
        assert_eq!(first, Due { step: ReminderStep::Remind(1), covers: vec![], escalated: false });
        // Not again for the same step.
        assert_eq!(c.due(hours(5), &[ReminderStep::Remind(1)]), None);
        assert_eq!(c.next_threshold(&[ReminderStep::Remind(1)]), Some(hours(8)));
        assert_eq!(c.due(hours(8), &[ReminderStep::Remind(1)]).map(|d| d.step), Some(ReminderStep::Remind(2)));
        // The escalation at 10 h; it stands for a reminder due in the same pass.
        let done = [ReminderStep::Remind(1), ReminderStep::Remind(2)];
        assert_eq!(c.next_threshold(&done), Some(hours(10)));
        let e = c.due(hours(10), &done).unwrap();
        assert_eq!(e, Due { step: ReminderStep::Escalate, covers: vec![], escalated: true });
        let late = c.due(hours(13), &[ReminderStep::Remind(1)]).unwrap();
        assert_eq!(late.step, ReminderStep::Escalate);
        assert_eq!(late.covers, vec![ReminderStep::Remind(3)]);
        // Reminders after the escalation go to escalate_to too.
        let done = [ReminderStep::Remind(1), ReminderStep::Remind(3), ReminderStep::Escalate];
        assert_eq!(c.due(hours(13), &done), None);
        let next = c.due(hours(16), &done).unwrap();
        assert_eq!(next, Due { step: ReminderStep::Remind(4), covers: vec![], escalated: true });
    }

    #[test]
    fn a_late_pass_sends_only_the_latest() {
        let c = cfg(Some(4), None);
        assert_eq!(c.due(hours(30), &[]).map(|d| d.step), Some(ReminderStep::Remind(7)));
        assert_eq!(c.next_threshold(&[ReminderStep::Remind(7)]), Some(hours(32)));
        // Never an older one after a newer one.
        assert_eq!(c.due(hours(30), &[ReminderStep::Remind(7)]), None);
    }

    #[test]
    fn one_reminder_without_remind_every() {
        let c = cfg(None, None);
        assert_eq!(c.due(hours(100), &[]).map(|d| d.step), Some(ReminderStep::Remind(1)));
        assert_eq!(c.due(hours(100), &[ReminderStep::Remind(1)]), None);
        assert_eq!(c.next_threshold(&[ReminderStep::Remind(1)]), None);
        assert_eq!(c.threshold(ReminderStep::Remind(2)), None);
        assert!(!c.is_escalated(ReminderStep::Remind(1)));
    }

    #[test]
    fn escalation_before_the_first_reminder() {
        let c = cfg(Some(4), Some(2));
        assert_eq!(c.due(hours(3), &[]).map(|d| d.step), Some(ReminderStep::Escalate));
        assert_eq!(c.next_threshold(&[ReminderStep::Escalate]), Some(hours(4)));
        assert!(c.due(hours(4), &[ReminderStep::Escalate]).is_some_and(|d| d.escalated));
    }
}
