//! Message-waiting indication: the lamp on a manager's phone (RFC 3842 over RFC 6665).
//!
//! A manager's phone subscribes to the `message-summary` event package with a SUBSCRIBE to
//! one of the SIP users that `[[sip.mwi.managers]]` lists for the manager; the endpoint
//! answers 200 OK and sends a NOTIFY at once and on every change of the manager's counts.
//! Phones listed in the manager's `notify` get the same NOTIFY unsolicited (RFC 3842 §3.2).
//!
//! The counts ([`count`]): a message assigned to the manager and not called back is *new*
//! (it lights the lamp); a message called back whose last assignment was to the manager is
//! *old*. Deleted messages count for nobody.
//!
//! This module is the pure part, with no socket and no clock: the configuration
//! ([`MwiConfig`], the `[sip.mwi]` table), the body ([`summary_body`]), the expiry rule
//! ([`negotiate_expiry`]) and the subscription table with its limits ([`Subscriptions`]).
//! The endpoint drives them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::Deserialize;
use voicemail_core::followup::{Event, FollowUp};
use voicemail_core::store::StoredMessage;

use crate::config::SipConfigError;

/// The event package (RFC 3842).
pub const EVENT_PACKAGE: &str = "message-summary";

/// The body's media type (RFC 3842 §5).
pub const CONTENT_TYPE: &str = "application/simple-message-summary";

/// One manager whose lamp the endpoint drives (`[[sip.mwi.managers]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manager {
    /// The manager's e-mail address as in the client directory (`email`): messages assigned to
    /// it count for this manager (compared without regard to case).
    pub email: String,
    /// The SIP users a phone subscribes to for this manager (`users`): the user part of the
    /// SUBSCRIBE's Request-URI (else of To). At least one; each names one manager only.
    pub users: Vec<String>,
    /// Phones that get unsolicited NOTIFYs on every change (`notify`, SIP URIs like
    /// `"sip:201@192.0.2.10:5060"`); optional.
    pub notify: Vec<String>,
}

/// The `[sip.mwi]` table. Absent: SUBSCRIBE gets 405 as before.
#[derive(Debug, Clone, PartialEq)]
pub struct MwiConfig {
    /// The managers (`[[sip.mwi.managers]]`).
    pub managers: Vec<Manager>,
    /// The shortest subscription accepted, in seconds (`min_expires`, default 60); a shorter
    /// one gets 423 Interval Too Brief with `Min-Expires`.
    pub min_expires: u32,
    /// The longest subscription granted, in seconds (`max_expires`, default 3600); a longer
    /// one is granted this long. It is also what a SUBSCRIBE without `Expires` gets.
    pub max_expires: u32,
    /// The most subscriptions at once (`max_subscriptions`, default 256); more get 503.
    pub max_subscriptions: usize,
    /// The most subscriptions at once from one IP address (`max_subscriptions_per_source`,
    /// default 16); more get 503.
    pub max_subscriptions_per_source: usize,
    /// How often the store is checked for changes made by other processes (`inbox`, the web
    /// queue, IMAP) (`poll_interval`, default `"2s"`); changes made in this process are seen
    /// at once.
    pub poll_interval: Duration,
}

impl Default for MwiConfig {
    fn default() -> Self {
        Self {
            managers: Vec::new(),
            min_expires: 60,
            max_expires: 3600,
            max_subscriptions: 256,
            max_subscriptions_per_source: 16,
            poll_interval: Duration::from_secs(2),
        }
    }
}

impl MwiConfig {
    /// The manager a SIP user subscribes for.
    pub fn manager_for_user(&self, user: &str) -> Option<&Manager> {
        self.managers.iter().find(|m| m.users.iter().any(|u| u == user))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMwi {
    min_expires: Option<i64>,
    max_expires: Option<i64>,
    max_subscriptions: Option<i64>,
    max_subscriptions_per_source: Option<i64>,
    poll_interval: Option<String>,
    #[serde(default)]
    managers: Vec<RawManager>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManager {
    email: Option<String>,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    notify: Vec<String>,
}

fn range(key: &str, v: Option<i64>, min: i64, max: i64, default: i64) -> Result<i64, SipConfigError> {
    let v = v.unwrap_or(default);
    if !(min..=max).contains(&v) {
        return Err(SipConfigError::new(key, format!("{v} is out of range {min} to {max}")));
    }
    Ok(v)
}

impl RawMwi {
    pub(crate) fn validate(self) -> Result<MwiConfig, SipConfigError> {
        let d = MwiConfig::default();
        let min_expires = range("sip.mwi.min_expires", self.min_expires, 1, 86_400, i64::from(d.min_expires))?;
        let max_expires = range("sip.mwi.max_expires", self.max_expires, 1, 86_400, i64::from(d.max_expires))?;
        if max_expires < min_expires {
            return Err(SipConfigError::new("sip.mwi.max_expires", "must not be less than min_expires"));
        }
        let max_subscriptions =
            range("sip.mwi.max_subscriptions", self.max_subscriptions, 1, 100_000, d.max_subscriptions as i64)?;
        let per_source = range(
            "sip.mwi.max_subscriptions_per_source",
            self.max_subscriptions_per_source,
            1,
            100_000,
            d.max_subscriptions_per_source as i64,
        )?;
        let poll_interval = match self.poll_interval {
            None => d.poll_interval,
            Some(text) => {
                let p = voicemail_core::config::parse_duration(&text)
                    .map_err(|e| SipConfigError::new("sip.mwi.poll_interval", e))?;
                if p < Duration::from_millis(100) || p > Duration::from_secs(3600) {
                    return Err(SipConfigError::new("sip.mwi.poll_interval", "must be 100ms to 1h"));
                }
                p
            }
        };
        let mut managers: Vec<Manager> = Vec::new();
        for (i, m) in self.managers.into_iter().enumerate() {
            let key = |k: &str| format!("sip.mwi.managers[{i}].{k}");
            let email = m.email.ok_or_else(|| SipConfigError::new(key("email"), "required key is missing"))?;
            let email = email.trim().to_owned();
            if email.is_empty() || !email.contains('@') || email.len() > 254 {
                return Err(SipConfigError::new(key("email"), format!("{email:?} is not an e-mail address")));
            }
            if m.users.is_empty() {
                return Err(SipConfigError::new(key("users"), "at least one SIP user is required"));
            }
            for u in &m.users {
                if u.is_empty() || u.len() > 64 || !u.chars().all(is_user_char) {
                    return Err(SipConfigError::new(key("users"), format!("{u:?} is not a SIP user part")));
                }
                if managers.iter().any(|o| o.users.contains(u)) {
                    return Err(SipConfigError::new(key("users"), format!("{u:?} is listed for two managers")));
                }
            }
            for n in &m.notify {
                let ok = rsipstack::sip::Uri::try_from(n.as_str())
                    .is_ok_and(|u| matches!(u.scheme, Some(rsipstack::sip::Scheme::Sip)));
                if !ok {
                    return Err(SipConfigError::new(key("notify"), format!("{n:?} is not a sip: URI")));
                }
            }
            managers.push(Manager { email, users: m.users, notify: m.notify });
        }
        Ok(MwiConfig {
            managers,
            min_expires: min_expires as u32,
            max_expires: max_expires as u32,
            max_subscriptions: max_subscriptions as usize,
            max_subscriptions_per_source: per_source as usize,
            poll_interval,
        })
    }
}

/// RFC 3261 `user` characters (unreserved, escaped and user-unreserved), `%` escapes kept.
fn is_user_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.!~*'()&=+$,;?/%".contains(c)
}

/// A manager's voice-message counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Counts {
    /// Assigned to the manager and not called back.
    pub new: u32,
    /// Called back, last assigned to the manager.
    pub old: u32,
}

/// The counts of every manager of `config` (by lower-case e-mail), from the store's messages
/// (not deleted, with their history).
pub fn count(messages: &[StoredMessage], config: &MwiConfig) -> HashMap<String, Counts> {
    let mut out: HashMap<String, Counts> =
        config.managers.iter().map(|m| (m.email.to_ascii_lowercase(), Counts::default())).collect();
    for m in messages {
        let (email, new) = match &m.followup {
            FollowUp::Assigned { to, .. } => (to.as_str(), true),
            FollowUp::CalledBack { .. } => {
                let last = m.history.iter().rev().find_map(|h| match &h.event {
                    Event::Assigned { to } => Some(to.as_str()),
                    _ => None,
                });
                match last {
                    Some(to) => (to, false),
                    None => continue,
                }
            }
            FollowUp::New => continue,
        };
        if let Some(c) = out.get_mut(&email.to_ascii_lowercase()) {
            if new {
                c.new = c.new.saturating_add(1);
            } else {
                c.old = c.old.saturating_add(1);
            }
        }
    }
    out
}

/// The RFC 3842 body: `Messages-Waiting`, `Message-Account` and the `Voice-Message` counts
/// (no urgent messages: `(0/0)`).
pub fn summary_body(account: &str, counts: Counts) -> String {
    let waiting = if counts.new > 0 { "yes" } else { "no" };
    format!(
        "Messages-Waiting: {waiting}\r\nMessage-Account: {account}\r\nVoice-Message: {}/{} (0/0)\r\n",
        counts.new, counts.old
    )
}

/// What a SUBSCRIBE's `Expires` leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// The subscription lasts this many seconds.
    Grant(u32),
    /// `Expires: 0`: end the subscription (a fetch when it is new) with a final NOTIFY.
    End,
    /// Shorter than `min_expires`: 423 Interval Too Brief with `Min-Expires`.
    TooBrief(u32),
}

/// The expiry for a requested `Expires` (`None`: the header is absent or unreadable), bounded
/// by the configuration (RFC 6665 §4.2.1.1).
pub fn negotiate_expiry(requested: Option<u32>, config: &MwiConfig) -> Expiry {
    match requested {
        Some(0) => Expiry::End,
        Some(s) if s < config.min_expires => Expiry::TooBrief(config.min_expires),
        Some(s) => Expiry::Grant(s.min(config.max_expires)),
        None => Expiry::Grant(config.max_expires),
    }
}

/// Why a new subscription is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_subscriptions` reached.
    Total,
    /// `max_subscriptions_per_source` reached for the source.
    PerSource,
}

/// One subscription in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Where it comes from.
    pub source: IpAddr,
    /// The manager's lower-case e-mail.
    pub manager: String,
    /// When it ends unless refreshed.
    pub expires_at: Instant,
    /// The dialog's remote sequence number (RFC 3261 §12.2.2): the CSeq of the initial
    /// SUBSCRIBE, then of each in-order re-SUBSCRIBE.
    pub remote_seq: u32,
}

/// Where a re-SUBSCRIBE's CSeq stands against its dialog's remote sequence number
/// (RFC 3261 §12.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sequence {
    /// Above it: in order; it is now the remote sequence number.
    InOrder,
    /// Not above it (the remote sequence number is given): out of order, to be answered 500
    /// and otherwise ignored.
    OutOfOrder(u32),
    /// No such subscription.
    Unknown,
}

/// The live subscriptions by dialog id, bounded in number per source and in total; time is
/// an input.
#[derive(Debug)]
pub struct Subscriptions {
    max_total: usize,
    max_per_source: usize,
    by_id: HashMap<String, Subscription>,
}

impl Subscriptions {
    /// An empty table with the limits of `config`.
    pub fn new(config: &MwiConfig) -> Self {
        Self {
            max_total: config.max_subscriptions,
            max_per_source: config.max_subscriptions_per_source,
            by_id: HashMap::new(),
        }
    }

    /// Whether one more subscription from `source` fits.
    pub fn admit(&self, source: IpAddr) -> Result<(), Refusal> {
        if self.by_id.len() >= self.max_total {
            return Err(Refusal::Total);
        }
        if self.by_id.values().filter(|s| s.source == source).count() >= self.max_per_source {
            return Err(Refusal::PerSource);
        }
        Ok(())
    }

    /// Adds subscription `id` for `expires` from `now`, if it fits; `remote_seq` is the CSeq
    /// of its initial SUBSCRIBE.
    pub fn insert(
        &mut self,
        id: String,
        source: IpAddr,
        manager: String,
        remote_seq: u32,
        expires: u32,
        now: Instant,
    ) -> Result<(), Refusal> {
        self.admit(source)?;
        let expires_at = now + Duration::from_secs(u64::from(expires));
        self.by_id.insert(id, Subscription { source, manager, expires_at, remote_seq });
        Ok(())
    }

    /// Checks the CSeq of a re-SUBSCRIBE in subscription `id` against the remote sequence
    /// number and, when it is above, makes it the remote sequence number (RFC 3261 §12.2.2).
    ///
    /// An equal CSeq is out of order too: a retransmission of the request that set it (same
    /// branch) is absorbed by its server transaction and never gets here, so an equal CSeq
    /// arriving here is a new request that reuses the number, which §12.2.2 does not make in
    /// order ("greater than"); pjsip answers it 500 as well.
    pub fn advance_remote_seq(&mut self, id: &str, cseq: u32) -> Sequence {
        let Some(s) = self.by_id.get_mut(id) else { return Sequence::Unknown };
        if cseq <= s.remote_seq {
            return Sequence::OutOfOrder(s.remote_seq);
        }
        s.remote_seq = cseq;
        Sequence::InOrder
    }

    /// Refreshes subscription `id` for `expires` from `now`; its new end, `None` if unknown.
    pub fn refresh(&mut self, id: &str, expires: u32, now: Instant) -> Option<Instant> {
        let s = self.by_id.get_mut(id)?;
        s.expires_at = now + Duration::from_secs(u64::from(expires));
        Some(s.expires_at)
    }

    /// Seconds left of subscription `id` at `now` (for `Subscription-State: active;expires=`).
    pub fn remaining(&self, id: &str, now: Instant) -> Option<u32> {
        let s = self.by_id.get(id)?;
        Some(u32::try_from(s.expires_at.saturating_duration_since(now).as_secs()).unwrap_or(u32::MAX))
    }

    /// Ends subscription `id`.
    pub fn remove(&mut self, id: &str) -> Option<Subscription> {
        self.by_id.remove(id)
    }

    /// The subscriptions that ended unrefreshed by `now`.
    pub fn expired(&self, now: Instant) -> Vec<String> {
        self.by_id.iter().filter(|(_, s)| s.expires_at <= now).map(|(id, _)| id.clone()).collect()
    }

    /// Live subscriptions.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use voicemail_core::followup::HistoryEntry;

    fn config() -> MwiConfig {
        MwiConfig {
            managers: vec![Manager { email: "Anna@Example.com".into(), users: vec!["201".into()], notify: vec![] }],
            max_subscriptions: 3,
            max_subscriptions_per_source: 2,
            ..MwiConfig::default()
        }
    }

    #[test]
    fn body_follows_rfc_3842() {
        let yes = summary_body("sip:201@127.0.0.1", Counts { new: 2, old: 1 });
        assert_eq!(yes, "Messages-Waiting: yes\r\nMessage-Account: sip:201@127.0.0.1\r\nVoice-Message: 2/1 (0/0)\r\n");
        let no = summary_body("sip:201@127.0.0.1", Counts { new: 0, old: 3 });
        assert!(no.starts_with("Messages-Waiting: no\r\n"), "{no}");
        assert!(no.contains("Voice-Message: 0/3 (0/0)"), "{no}");
    }

    #[test]
    fn expiry_is_bounded() {
        let c = config();
        assert_eq!(negotiate_expiry(Some(0), &c), Expiry::End);
        assert_eq!(negotiate_expiry(Some(10), &c), Expiry::TooBrief(60));
        assert_eq!(negotiate_expiry(Some(60), &c), Expiry::Grant(60));
        assert_eq!(negotiate_expiry(Some(100_000), &c), Expiry::Grant(3600));
        assert_eq!(negotiate_expiry(None, &c), Expiry::Grant(3600));
    }

    #[test]
    fn subscriptions_refresh_expire_and_are_bounded() {
        let c = config();
        let mut subs = Subscriptions::new(&c);
        let t0 = Instant::now();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        subs.insert("1".into(), a, "anna@example.com".into(), 1, 60, t0).unwrap();
        subs.insert("2".into(), a, "anna@example.com".into(), 1, 120, t0).unwrap();
        assert_eq!(subs.insert("3".into(), a, "x".into(), 1, 60, t0), Err(Refusal::PerSource));
        subs.insert("3".into(), b, "x".into(), 1, 60, t0).unwrap();
        assert_eq!(subs.admit("127.0.0.3".parse().unwrap()), Err(Refusal::Total));
        assert_eq!(subs.remaining("1", t0), Some(60));
        assert!(subs.expired(t0 + Duration::from_secs(59)).is_empty());
        let mut gone = subs.expired(t0 + Duration::from_secs(60));
        gone.sort();
        assert_eq!(gone, vec!["1".to_owned(), "3".to_owned()]);
        // A refresh moves the end; an unknown id is not refreshed.
        subs.refresh("1", 600, t0 + Duration::from_secs(30)).unwrap();
        let mut gone = subs.expired(t0 + Duration::from_secs(120));
        gone.sort();
        assert_eq!(gone, vec!["2".to_owned(), "3".to_owned()]);
        assert_eq!(subs.refresh("9", 60, t0), None);
        // Removing one frees its place.
        assert!(subs.remove("1").is_some());
        subs.insert("4".into(), a, "anna@example.com".into(), 1, 60, t0).unwrap();
        assert_eq!(subs.len(), 3);
    }

    #[test]
    fn remote_seq_only_grows() {
        let mut subs = Subscriptions::new(&config());
        let t0 = Instant::now();
        subs.insert("1".into(), "127.0.0.1".parse().unwrap(), "x".into(), 5, 60, t0).unwrap();
        // Lower or equal (RFC 3261 §12.2.2): out of order, the number stays.
        assert_eq!(subs.advance_remote_seq("1", 4), Sequence::OutOfOrder(5));
        assert_eq!(subs.advance_remote_seq("1", 5), Sequence::OutOfOrder(5));
        // Higher, by more than one: in order, and the new number.
        assert_eq!(subs.advance_remote_seq("1", 9), Sequence::InOrder);
        assert_eq!(subs.advance_remote_seq("1", 6), Sequence::OutOfOrder(9));
        assert_eq!(subs.advance_remote_seq("1", u32::MAX), Sequence::InOrder);
        assert_eq!(subs.advance_remote_seq("1", u32::MAX), Sequence::OutOfOrder(u32::MAX));
        assert_eq!(subs.advance_remote_seq("2", 1), Sequence::Unknown);
    }

    fn stored(followup: FollowUp, assigned_to: Option<&str>) -> StoredMessage {
        let meta = voicemail_core::MessageMeta {
            id: voicemail_core::MessageId::parse("20261127-120000-0001").unwrap(),
            caller: "+74951234567".into(),
            caller_name: None,
            called: String::new(),
            started_at: jiff::Timestamp::UNIX_EPOCH,
            duration_ms: 1000,
            end_reason: voicemail_core::EndReason::HangUp,
            codec: voicemail_core::CodecKind::Pcmu,
            greeting: "default".into(),
            dtmf: String::new(),
            wav_path: None,
            media: voicemail_core::MediaStats::default(),
            mailbox: None,
            diverted_from: None,
            transcript: None,
        };
        let history = assigned_to
            .map(|to| HistoryEntry {
                at: jiff::Timestamp::UNIX_EPOCH,
                by: "t".into(),
                event: Event::Assigned { to: to.into() },
            })
            .into_iter()
            .collect();
        StoredMessage {
            meta,
            lifecycle: voicemail_core::store::Lifecycle::Stored,
            followup,
            history,
            deliveries: Vec::new(),
        }
    }

    #[test]
    fn counts_new_and_old_per_manager() {
        let at = jiff::Timestamp::UNIX_EPOCH;
        let messages = vec![
            stored(FollowUp::Assigned { to: "anna@example.com".into(), at }, Some("anna@example.com")),
            stored(FollowUp::Assigned { to: "ANNA@example.com".into(), at }, Some("ANNA@example.com")),
            stored(FollowUp::Assigned { to: "boris@example.com".into(), at }, Some("boris@example.com")),
            stored(FollowUp::CalledBack { by: "x".into(), at, note: None }, Some("anna@example.com")),
            stored(FollowUp::CalledBack { by: "x".into(), at, note: None }, None),
            stored(FollowUp::New, None),
        ];
        let counts = count(&messages, &config());
        assert_eq!(counts.len(), 1);
        assert_eq!(counts["anna@example.com"], Counts { new: 2, old: 1 });
    }

    /// The commented `[sip.mwi]` block of `examples/voicemail.toml`, uncommented, is valid.
    #[test]
    fn example_block_parses() {
        let text = include_str!("../../examples/voicemail.toml");
        let start = text.find("# [sip.mwi]").unwrap();
        let end = start + text[start..].find("\n\n").unwrap();
        let block: String =
            text[start..end].lines().map(|l| l.strip_prefix("# ").unwrap_or(l)).collect::<Vec<_>>().join("\n");
        let sip = crate::SipConfig::from_toml_str(&format!("[sip]\n{block}\n")).unwrap();
        let mwi = sip.mwi.unwrap();
        assert_eq!(mwi.managers.len(), 1);
        assert_eq!(mwi.managers[0].users, ["201", "anna"]);
        assert_eq!(mwi.managers[0].notify, ["sip:201@192.0.2.10:5060"]);
        assert_eq!((mwi.min_expires, mwi.max_expires), (60, 3600));
    }

    #[test]
    fn config_table() {
        let sip = crate::SipConfig::from_toml_str(
            "[sip.mwi]\nmin_expires = 30\npoll_interval = \"500ms\"\n[[sip.mwi.managers]]\nemail = \"anna@example.com\"\nusers = [\"201\", \"anna\"]\nnotify = [\"sip:201@127.0.0.1:5070\"]\n",
        )
        .unwrap();
        let mwi = sip.mwi.unwrap();
        assert_eq!(mwi.min_expires, 30);
        assert_eq!(mwi.poll_interval, Duration::from_millis(500));
        assert_eq!(mwi.manager_for_user("anna").unwrap().email, "anna@example.com");
        assert!(mwi.manager_for_user("202").is_none());
        for (text, key) in [
            ("[[sip.mwi.managers]]\nusers = [\"201\"]", "sip.mwi.managers[0].email"),
            ("[[sip.mwi.managers]]\nemail = \"a@b\"", "sip.mwi.managers[0].users"),
            ("[[sip.mwi.managers]]\nemail = \"a@b\"\nusers = [\"2 1\"]", "sip.mwi.managers[0].users"),
            (
                "[[sip.mwi.managers]]\nemail = \"a@b\"\nusers = [\"1\"]\nnotify = [\"tel:1\"]",
                "sip.mwi.managers[0].notify",
            ),
            (
                "[[sip.mwi.managers]]\nemail = \"a@b\"\nusers = [\"1\"]\n[[sip.mwi.managers]]\nemail = \"c@d\"\nusers = [\"1\"]",
                "sip.mwi.managers[1].users",
            ),
            ("[sip.mwi]\nmin_expires = 600\nmax_expires = 60", "sip.mwi.max_expires"),
            ("[sip.mwi]\nfoo = 1", "sip.mwi.foo"),
        ] {
            let text = if text.starts_with("[[") { format!("[sip]\n{text}") } else { text.to_owned() };
            let e = crate::SipConfig::from_toml_str(&text).unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
        }
    }
}
