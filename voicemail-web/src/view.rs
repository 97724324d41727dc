//! What pages and the JSON API show of a message: one [`MessageView`] for both.

use std::time::Duration;

use jiff::{Timestamp, tz::TimeZone};
use serde::Serialize;
use voicemail_core::config::Config;
use voicemail_core::followup::{Event, FollowUp};
use voicemail_core::store::{Lifecycle, StoredMessage};

/// One message as shown.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MessageView {
    pub id: String,
    /// The message's page.
    pub url: String,
    /// Its recording (absent once deleted, or while recorded).
    pub audio_url: Option<String>,
    /// The caller's number as signalled.
    pub caller: String,
    pub caller_name: Option<String>,
    /// A `tel:` URI to call back, when the caller's number is a phone number.
    pub tel: Option<String>,
    /// The caller's number in E.164, when the client directory could read it.
    pub caller_e164: Option<String>,
    /// The matched client, manager's name and e-mail.
    pub client: Option<String>,
    pub manager: Option<String>,
    pub manager_email: Option<String>,
    /// When the call came, UTC, RFC 3339.
    pub started_at: String,
    /// When the call came, in the mailbox's time zone.
    pub local_time: String,
    /// How long ago, in words (`3 h 5 min ago`, `just now`).
    pub age: String,
    pub duration_ms: u64,
    /// The length as `M:SS`.
    pub duration: String,
    pub end_reason: String,
    pub greeting: String,
    /// `recording`, `stored` or `deleted`.
    pub lifecycle: &'static str,
    /// The follow-up state, as the mailbox has it.
    pub followup: FollowUp,
    /// `new`, `assigned` or `called-back`.
    pub state: &'static str,
    /// `new`, `assigned to Anna`, `called back by Boris`.
    pub state_text: String,
    pub assigned_to: Option<String>,
    pub called_back_by: Option<String>,
    pub called_back_at: Option<String>,
    pub note: Option<String>,
    /// Not called back in time: past `[followup] remind_after` (in business hours) when the
    /// mailbox has reminders, else older than `[web] overdue_after`.
    pub overdue: bool,
    /// Only for one message: its history, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<HistoryView>>,
}

/// One line of a message's history.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HistoryView {
    /// UTC, RFC 3339.
    pub at: String,
    pub local_time: String,
    pub by: String,
    /// What happened, as the mailbox records it.
    pub event: Event,
    /// In words.
    pub text: String,
}

/// Builds views; knows the time zone, the directory and the overdue age.
pub(crate) struct Viewer<'a> {
    pub config: &'a Config,
    pub overdue_after: Duration,
    pub now: Timestamp,
}

impl Viewer<'_> {
    /// Whether a call that started at `started` (`age` ago) waits too long: the reminders'
    /// first threshold in business hours when `[followup]` is set, else `overdue_after`.
    fn is_late(&self, started: Timestamp, age: Duration) -> bool {
        match &self.config.followup {
            Some(f) => self.config.schedule.business_time_between(started, self.now) >= f.remind_after,
            None => age >= self.overdue_after,
        }
    }

    fn local(&self, at: Timestamp) -> String {
        local_time(at, &self.config.timezone)
    }

    pub(crate) fn message(&self, m: &StoredMessage, with_history: bool) -> MessageView {
        let meta = &m.meta;
        let id = meta.id.as_str().to_owned();
        let client = voicemail_core::route::client_for(self.config, &meta.caller);
        let e164 = self.config.client_directory().and_then(|d| d.normalize(&meta.caller));
        let tel = e164.clone().or_else(|| dialable(&meta.caller)).map(|n| format!("tel:{n}"));
        let age = self.now.duration_since(meta.started_at);
        let age_std = Duration::try_from(age).unwrap_or(Duration::ZERO);
        let (assigned_to, called_back_by, called_back_at, note) = match &m.followup {
            FollowUp::New => (None, None, None, None),
            FollowUp::Assigned { to, .. } => (Some(to.clone()), None, None, None),
            FollowUp::CalledBack { by, at, note } => (None, Some(by.clone()), Some(self.local(*at)), note.clone()),
        };
        let stored = m.lifecycle == Lifecycle::Stored;
        MessageView {
            url: format!("/messages/{id}"),
            audio_url: (stored && meta.wav_path.is_some()).then(|| format!("/messages/{id}/audio")),
            id,
            caller: meta.caller.clone(),
            caller_name: meta.caller_name.clone(),
            tel,
            caller_e164: e164,
            client: client.map(|c| c.client.clone()),
            manager: client.map(|c| c.manager_name.clone()),
            manager_email: client.map(|c| c.manager_email.clone()),
            started_at: meta.started_at.to_string(),
            local_time: self.local(meta.started_at),
            age: words(age_std),
            duration_ms: meta.duration_ms,
            duration: minutes_seconds(meta.duration_ms),
            end_reason: meta.end_reason.as_str().to_owned(),
            greeting: meta.greeting.clone(),
            lifecycle: m.lifecycle.as_str(),
            state: m.followup.name(),
            state_text: m.followup.describe(),
            followup: m.followup.clone(),
            assigned_to,
            called_back_by,
            called_back_at,
            note,
            overdue: stored && !m.followup.is_called_back() && self.is_late(m.meta.started_at, age_std),
            history: with_history.then(|| {
                m.history
                    .iter()
                    .map(|h| HistoryView {
                        at: h.at.to_string(),
                        local_time: self.local(h.at),
                        by: h.by.clone(),
                        event: h.event.clone(),
                        text: h.event.describe(),
                    })
                    .collect()
            }),
        }
    }

    /// The queue: stored messages not called back, oldest call first.
    pub(crate) fn queue(&self, messages: &[StoredMessage]) -> Vec<MessageView> {
        let mut waiting: Vec<&StoredMessage> =
            messages.iter().filter(|m| m.lifecycle == Lifecycle::Stored && !m.followup.is_called_back()).collect();
        waiting.sort_by(|a, b| a.meta.started_at.cmp(&b.meta.started_at).then_with(|| a.meta.id.cmp(&b.meta.id)));
        waiting.into_iter().map(|m| self.message(m, false)).collect()
    }
}

/// `Thu 2026-11-27 14:03 MSK`.
pub(crate) fn local_time(at: Timestamp, tz: &TimeZone) -> String {
    at.to_zoned_datetime(tz.clone()).strftime("%a %Y-%m-%d %H:%M %Z").to_string()
}

/// `+74951234567` or `4951234500` from what a caller signalled, when it is a plain number
/// (digits with the usual separators, 3 to 20 digits); `None` for anything else.
fn dialable(caller: &str) -> Option<String> {
    let mut out = String::new();
    for (i, c) in caller.trim().chars().enumerate() {
        match c {
            '+' if i == 0 => out.push('+'),
            '0'..='9' => out.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    let digits = out.trim_start_matches('+').len();
    (3..=20).contains(&digits).then_some(out)
}

/// `0:07`, `12:30`.
fn minutes_seconds(ms: u64) -> String {
    let s = (ms + 500) / 1000;
    format!("{}:{:02}", s / 60, s % 60)
}

/// `just now`, `5 min ago`, `3 h 5 min ago`, `2 d 4 h ago`.
fn words(d: Duration) -> String {
    let m = d.as_secs() / 60;
    match m {
        0 => "just now".to_owned(),
        1..60 => format!("{m} min ago"),
        60..1440 => format!("{} h {} min ago", m / 60, m % 60),
        _ => format!("{} d {} h ago", m / 1440, (m % 1440) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_times() {
        assert_eq!(dialable("+7 (495) 123-45-67").as_deref(), Some("+74951234567"));
        assert_eq!(dialable("4951234500").as_deref(), Some("4951234500"));
        assert_eq!(dialable("anonymous"), None);
        assert_eq!(dialable("12"), None);
        assert_eq!(dialable("1+2"), None);
        assert_eq!(dialable("\"><script>"), None);
        assert_eq!(minutes_seconds(0), "0:00");
        assert_eq!(minutes_seconds(9_950), "0:10");
        assert_eq!(minutes_seconds(3_020), "0:03");
        assert_eq!(minutes_seconds(750_000), "12:30");
        assert_eq!(words(Duration::from_secs(30)), "just now");
        assert_eq!(words(Duration::from_secs(5 * 60)), "5 min ago");
        assert_eq!(words(Duration::from_secs(3 * 3600 + 300)), "3 h 5 min ago");
        assert_eq!(words(Duration::from_secs(2 * 86_400 + 4 * 3600)), "2 d 4 h ago");
    }
}
