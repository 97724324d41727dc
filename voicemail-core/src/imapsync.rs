//! The IMAP watcher: a message's follow-up state on the mail server, both ways.
//!
//! A message delivered by IMAP carries its state as keywords, set at APPEND
//! ([`KEYWORD_ASSIGNED`], [`KEYWORD_CALLED_BACK`]; [`crate::deliver::imap_keywords`]). While
//! the answering machine runs (a [`Runner`](crate::runner::Runner) thread, when
//! `[delivery.imap]` has `watch = true`, the default), the watcher keeps one IMAP session on the
//! folder and keeps copies and store in step:
//!
//! - **Mail client → store.** A copy that carries `VM-CalledBack` (compared without regard
//!   to case: Thunderbird stores its tags lower-cased) marks its message called back, made by
//!   `imap:<login>` ([`changed_by`]).
//! - **Store → mail client.** A change made anywhere else (`inbox`, the web queue, Python, in
//!   any process) adds the keywords of the new state to the copy (`UID STORE +FLAGS.SILENT`).
//!   Changes in other processes are noticed through the store's history
//!   ([`Store::change_mark`](crate::store::Store::change_mark), looked at every
//!   [`STORE_POLL`]); this process's own at once.
//! - **Nothing deleted before the callback.** A copy expunged from the folder before its call
//!   was returned is put back (APPEND again, with its keywords; at most [`MAX_RESTORES`]
//!   times per message), and the message's history says so ([`RESTORED_BY`]). Once the call was
//!   returned, the copy may go.
//!
//! Messages are matched by `Message-ID` (`UID SEARCH HEADER Message-ID`, as delivery does);
//! the UID found is kept in the store per message, valid for the folder's `UIDVALIDITY`. Only
//! copies that are not settled are watched: those of messages not called back yet, and
//! called-back ones whose copy does not show it yet.
//!
//! How the server is watched: `IDLE` (RFC 2177) where the server has it, renewed every
//! `poll_interval`; else polling (`NOOP` and a fetch) every `poll_interval`. With `CONDSTORE`
//! (RFC 7162) only flags changed since the last look are fetched (`CHANGEDSINCE`), and the
//! copies' presence is checked (`UID SEARCH UID`) when the server reported an expunge and
//! every `poll_interval`; without it every watched copy's flags are fetched each time.
//! A failed session (server down, a timeout, a refusal) is logged and retried with back-off
//! (1 s doubling to 5 min); nothing is lost meanwhile, since the state is compared again on
//! reconnect.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::deliver::imap::{IdleEnd, Session, append_uid, quoted_mailbox};
use crate::deliver::{DeliveryError, ImapTarget, KEYWORD_ASSIGNED, KEYWORD_CALLED_BACK, imap_keywords};
use crate::followup::{Change, Event, FollowUp, HistoryEntry};
use crate::mailbox::{Mailbox, MailboxError};
use crate::message::MessageId;
use crate::store::{ImapCopy, ImapCopyState, Lifecycle, StoreError};

/// How often the watcher looks for changes that other processes made in the store.
pub const STORE_POLL: Duration = Duration::from_secs(1);

/// How often a copy expunged before its call was returned is put back, at most; then the
/// watcher logs that it gives up on that copy.
pub const MAX_RESTORES: u32 = 10;

/// Who puts an expunged copy back, in the message's history.
pub const RESTORED_BY: &str = "imap-watcher";

/// How often the watcher looks for a stop request and this process's changes.
const TICK: Duration = Duration::from_millis(250);

/// The first delay before reconnecting after a failed session; it doubles up to
/// [`RECONNECT_MAX`].
const RECONNECT_MIN: Duration = Duration::from_secs(1);
const RECONNECT_MAX: Duration = Duration::from_secs(300);

/// A session that lasted this long resets the back-off.
const HEALTHY_SESSION: Duration = Duration::from_secs(60);

/// Who a callback seen in the mail folder is recorded as made by: `imap:<login>` (the IMAP
/// account's user name), or `imap:<folder>` when there is no user name; at most 200
/// characters, control characters replaced.
pub fn changed_by(target: &ImapTarget) -> String {
    let who = if target.username.trim().is_empty() { &target.folder } else { &target.username };
    let who: String = who.chars().map(|c| if c.is_control() { ' ' } else { c }).take(190).collect();
    format!("imap:{}", who.trim())
}

/// Why a watcher session ended.
#[derive(Debug, thiserror::Error)]
enum WatchError {
    #[error(transparent)]
    Imap(#[from] DeliveryError),
    #[error(transparent)]
    Mailbox(#[from] MailboxError),
    #[error("imap folder {folder:?}: {message}")]
    Folder { folder: String, message: &'static str },
}

impl From<StoreError> for WatchError {
    fn from(e: StoreError) -> Self {
        WatchError::Mailbox(e.into())
    }
}

/// Whether `flags` holds `keyword` (ASCII case-insensitively).
fn has_keyword(flags: &[String], keyword: &str) -> bool {
    flags.iter().any(|f| f.eq_ignore_ascii_case(keyword))
}

/// The follow-up keywords among `flags`, spelled as this program spells them.
fn our_keywords(flags: &[String]) -> Vec<String> {
    [KEYWORD_ASSIGNED, KEYWORD_CALLED_BACK].iter().filter(|k| has_keyword(flags, k)).map(|k| (*k).to_owned()).collect()
}

/// Runs the watcher of `target` until `stop` is set: sessions, reconnecting with back-off.
pub(crate) fn run(mailbox: &Mailbox, target: &ImapTarget, stop: &AtomicBool) {
    let mut watcher = Watcher { mailbox, target, by: changed_by(target), stop, warned: HashSet::new() };
    let mut failures = 0u32;
    while !watcher.stopped() {
        let started = Instant::now();
        match watcher.session() {
            Ok(()) => return,
            Err(e) => {
                if started.elapsed() >= HEALTHY_SESSION {
                    failures = 0;
                }
                failures = failures.saturating_add(1);
                let delay = RECONNECT_MIN.saturating_mul(1 << failures.saturating_sub(1).min(16)).min(RECONNECT_MAX);
                tracing::warn!(folder = %target.folder, error = %e, retry_in = ?delay, "imap watcher: session failed; reconnecting");
                watcher.sleep(delay);
            }
        }
    }
}

struct Watcher<'a> {
    mailbox: &'a Mailbox,
    target: &'a ImapTarget,
    /// `imap:<login>`.
    by: String,
    stop: &'a AtomicBool,
    /// Messages a warning was logged for already (restores given up, keywords refused).
    warned: HashSet<(MessageId, &'static str)>,
}

/// The selected folder, for one session.
struct Folder {
    /// Quoted and encoded, as sent.
    quoted: String,
    uidvalidity: u32,
    /// The server has CONDSTORE and the folder keeps mod-sequences.
    condstore: bool,
    idle: bool,
    /// The baseline for `CHANGEDSINCE`: the highest mod-sequence seen.
    modseq: Option<u64>,
    /// The flags last seen of each watched copy, by UID.
    flags: HashMap<u32, Vec<String>>,
}

/// A watched message in one pass.
struct Entry {
    copy: ImapCopy,
    uid: Option<u32>,
}

impl Watcher<'_> {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn sleep(&self, duration: Duration) {
        let end = Instant::now() + duration;
        while !self.stopped() {
            let now = Instant::now();
            if now >= end {
                return;
            }
            std::thread::sleep(TICK.min(end - now));
        }
    }

    /// Logs `message` once per message and kind.
    fn warn_once(&mut self, id: &MessageId, kind: &'static str, message: &str) {
        if self.warned.insert((id.clone(), kind)) {
            tracing::warn!(%id, folder = %self.target.folder, "imap watcher: {message}");
        }
    }

    /// One session: log in, select the folder, then pass after pass until stopped (`Ok`) or
    /// the session fails.
    fn session(&mut self) -> Result<(), WatchError> {
        let target = self.target;
        let mut session = Session::open(target)?;
        let result = self.watch(&mut session);
        session.logout();
        result
    }

    fn watch(&mut self, s: &mut Session<'_>) -> Result<(), WatchError> {
        let target = self.target;
        let capabilities = s.capabilities()?;
        let has = |c: &str| capabilities.iter().any(|x| x == c);
        let condstore = has("CONDSTORE") || has("QRESYNC");
        let quoted = quoted_mailbox(&target.folder)?;
        s.create(&quoted)?;
        let info = s.select(&quoted, condstore)?;
        let folder_error = |message| WatchError::Folder { folder: target.folder.clone(), message };
        if info.read_only {
            return Err(folder_error("the folder is read-only for this account"));
        }
        let Some(uidvalidity) = info.uidvalidity else { return Err(folder_error("the server sent no UIDVALIDITY")) };
        let mut folder = Folder {
            quoted,
            uidvalidity,
            condstore: condstore && info.highest_modseq.is_some(),
            idle: has("IDLE"),
            modseq: info.highest_modseq,
            flags: HashMap::new(),
        };
        tracing::info!(
            folder = %target.folder,
            idle = folder.idle,
            condstore = folder.condstore,
            poll_interval = ?target.poll_interval,
            "imap watcher: watching the folder"
        );
        let mut verify = true;
        loop {
            if self.stopped() {
                return Ok(());
            }
            // Taken before the pass: a change made during it brings another pass.
            let mark = self.mailbox.store().change_mark()?;
            let changes = self.mailbox.change_count();
            self.pass(s, &mut folder, verify)?;
            let until = Instant::now() + target.poll_interval;
            let mut store_checked = Instant::now();
            let (mailbox, stop) = (self.mailbox, self.stop);
            let mut interrupt = || {
                if stop.load(Ordering::SeqCst) || mailbox.change_count() != changes {
                    return true;
                }
                if store_checked.elapsed() < STORE_POLL {
                    return false;
                }
                store_checked = Instant::now();
                mailbox.store().change_mark().is_ok_and(|m| m != mark)
            };
            let end = if folder.idle {
                s.idle(until, TICK, &mut interrupt)?
            } else {
                let end = loop {
                    if interrupt() {
                        break IdleEnd::Interrupted;
                    }
                    let now = Instant::now();
                    if now >= until {
                        break IdleEnd::Timeout;
                    }
                    std::thread::sleep(TICK.min(until - now));
                };
                if !self.stopped() {
                    s.noop()?;
                }
                end
            };
            verify = end == IdleEnd::Timeout;
        }
    }

    /// One pass over the copies that are not settled: find their UIDs, read their flags, and
    /// bring copies and store in step. `verify` checks every copy is still there even without
    /// an expunge reported.
    fn pass(&mut self, s: &mut Session<'_>, folder: &mut Folder, verify: bool) -> Result<(), WatchError> {
        let copies = self.mailbox.store().imap_copies()?;
        let target = self.target;
        let mut entries: Vec<Entry> = copies
            .into_iter()
            .map(|copy| {
                let uid = copy
                    .state
                    .as_ref()
                    .filter(|st| st.folder == target.folder && st.uidvalidity == folder.uidvalidity)
                    .and_then(|st| st.uid);
                Entry { copy, uid }
            })
            .collect();
        let watched: HashSet<u32> = entries.iter().filter_map(|e| e.uid).collect();
        folder.flags.retain(|uid, _| watched.contains(uid));

        // Copies never looked up (or whose UID is void): by Message-ID.
        let mut not_found: HashSet<MessageId> = HashSet::new();
        for e in entries.iter_mut().filter(|e| e.uid.is_none()) {
            let message_id = self.mailbox.message_id_of(&e.copy.meta);
            match s.search_message_id(&message_id)?.into_iter().max() {
                Some(uid) => e.uid = Some(uid),
                None => {
                    not_found.insert(e.copy.meta.id.clone());
                }
            }
        }

        // Their flags: all of those not read in this session yet; of the others, what changed.
        let unread: Vec<u32> = entries.iter().filter_map(|e| e.uid).filter(|u| !folder.flags.contains_key(u)).collect();
        let read: Vec<u32> = entries.iter().filter_map(|e| e.uid).filter(|u| folder.flags.contains_key(u)).collect();
        let mut gone: HashSet<u32> = HashSet::new();
        if !unread.is_empty() {
            let got = s.fetch_flags(&unread, None, folder.condstore)?;
            let seen: HashSet<u32> = got.iter().map(|f| f.uid).collect();
            gone.extend(unread.iter().filter(|u| !seen.contains(u)));
            Self::note_flags(folder, got);
        }
        if !read.is_empty() {
            match folder.modseq.filter(|_| folder.condstore) {
                Some(since) => {
                    let got = s.fetch_flags(&read, Some(since), true)?;
                    Self::note_flags(folder, got);
                    if s.take_expunged() || verify {
                        let present: HashSet<u32> = s.present(&read)?.into_iter().collect();
                        gone.extend(read.iter().filter(|u| !present.contains(u)));
                    }
                }
                None => {
                    let got = s.fetch_flags(&read, None, false)?;
                    let seen: HashSet<u32> = got.iter().map(|f| f.uid).collect();
                    gone.extend(read.iter().filter(|u| !seen.contains(u)));
                    Self::note_flags(folder, got);
                }
            }
        }
        for uid in &gone {
            folder.flags.remove(uid);
        }

        let now = Timestamp::now();
        for e in &entries {
            let missing = match e.uid {
                Some(uid) => gone.contains(&uid),
                None => not_found.contains(&e.copy.meta.id),
            };
            if missing {
                self.missing(s, folder, e, now)?;
            } else if let Some(uid) = e.uid
                && let Some(flags) = folder.flags.get(&uid).cloned()
            {
                let flags = self.in_step(s, folder, e, uid, flags, now)?;
                folder.flags.insert(uid, flags);
            }
        }
        Ok(())
    }

    fn note_flags(folder: &mut Folder, fetched: Vec<crate::deliver::imap::Fetch>) {
        for f in fetched {
            if let Some(m) = f.modseq {
                folder.modseq = Some(folder.modseq.map_or(m, |old| old.max(m)));
            }
            folder.flags.insert(f.uid, f.flags);
        }
    }

    /// Brings a present copy (at `uid`, with `flags`) and its message in step; returns the
    /// copy's flags afterwards.
    fn in_step(
        &mut self,
        s: &mut Session<'_>,
        folder: &Folder,
        e: &Entry,
        uid: u32,
        mut flags: Vec<String>,
        now: Timestamp,
    ) -> Result<Vec<String>, WatchError> {
        let id = &e.copy.meta.id;
        let mut followup = e.copy.followup.clone();
        if has_keyword(&flags, KEYWORD_CALLED_BACK) && !followup.is_called_back() {
            match self.mailbox.change(id, &Change::CalledBack { note: None }, &self.by, now) {
                Ok(m) => {
                    tracing::info!(%id, by = %self.by, folder = %self.target.folder, "called back: {KEYWORD_CALLED_BACK} set in the mail folder");
                    followup = m.followup;
                }
                // Changed meanwhile (called back or deleted elsewhere): as the store has it now.
                Err(MailboxError::Store(StoreError::FollowUp { .. } | StoreError::Deleted { .. })) => {
                    let current = self.mailbox.show(id)?;
                    if current.lifecycle != Lifecycle::Stored {
                        return Ok(flags);
                    }
                    followup = current.followup;
                }
                Err(err) => return Err(err.into()),
            }
        }
        let wanted: Vec<String> =
            imap_keywords(&followup).iter().filter(|k| !has_keyword(&flags, k)).map(|k| (*k).to_owned()).collect();
        if !wanted.is_empty() {
            match s.add_keywords(uid, &wanted)? {
                Ok(()) => {
                    tracing::info!(%id, keywords = ?wanted, folder = %self.target.folder, "imap watcher: keywords set");
                    flags.extend(wanted);
                }
                Err(reply) => {
                    let message = format!("the server refused to set keywords {wanted:?}: {reply}");
                    self.warn_once(id, "keywords", &message);
                }
            }
        }
        let state = ImapCopyState {
            folder: self.target.folder.clone(),
            uidvalidity: folder.uidvalidity,
            uid: Some(uid),
            keywords: our_keywords(&flags),
            done: followup.is_called_back() && has_keyword(&flags, KEYWORD_CALLED_BACK),
        };
        if e.copy.state.as_ref() != Some(&state) {
            self.mailbox.store().set_imap_copy(id, &state, now)?;
        }
        Ok(flags)
    }

    /// A copy that is not (or no longer) in the folder: settled when the call was returned,
    /// else put back.
    fn missing(&mut self, s: &mut Session<'_>, folder: &Folder, e: &Entry, now: Timestamp) -> Result<(), WatchError> {
        let id = &e.copy.meta.id;
        let settled = |followup: &FollowUp| ImapCopyState {
            folder: self.target.folder.clone(),
            uidvalidity: folder.uidvalidity,
            uid: None,
            keywords: Vec::new(),
            done: followup.is_called_back(),
        };
        if e.copy.followup.is_called_back() {
            tracing::info!(%id, folder = %self.target.folder, "imap watcher: the copy of a called-back message is gone; not put back");
            self.mailbox.store().set_imap_copy(id, &settled(&e.copy.followup), now)?;
            return Ok(());
        }
        // Looked at once more, after the server told all it knows (NOOP): the copy may live on
        // under another UID (moved back, copied), or be one this session did not see yet.
        s.noop()?;
        if let Some(uid) = s.search_message_id(&self.mailbox.message_id_of(&e.copy.meta))?.into_iter().max() {
            let state = ImapCopyState { uid: Some(uid), ..settled(&e.copy.followup) };
            self.mailbox.store().set_imap_copy(id, &state, now)?;
            return Ok(());
        }
        if self.warned.contains(&(id.clone(), "append")) {
            // Refused for good earlier in this run: not asked again until a restart.
            return Ok(());
        }
        if e.copy.restores >= MAX_RESTORES {
            let message = format!(
                "the copy was expunged again before its call was returned; it was put back {MAX_RESTORES} times and is not put back again"
            );
            self.warn_once(id, "restores", &message);
            return Ok(());
        }
        // As the store has it right now: called back or deleted meanwhile, it is not put back.
        let current = self.mailbox.show(id)?;
        if current.lifecycle != Lifecycle::Stored {
            return Ok(());
        }
        if current.followup.is_called_back() {
            self.mailbox.store().set_imap_copy(id, &settled(&current.followup), now)?;
            return Ok(());
        }
        let appended = self
            .mailbox
            .email_for(&current.meta, &current.followup)
            .and_then(|email| s.append(&folder.quoted, &email.keywords, &email.bytes).map(|status| (email, status)));
        let (email, status) = match appended {
            Ok(done) => done,
            Err(err) if err.is_permanent() => {
                self.warn_once(
                    id,
                    "append",
                    &format!(
                        "cannot put the expunged copy back (refused for good; tried again after a restart): {err}"
                    ),
                );
                return Ok(());
            }
            Err(err) => return Err(err.into()),
        };
        let uid = append_uid(&status).filter(|(v, _)| *v == folder.uidvalidity).map(|(_, uid)| uid);
        let entry = HistoryEntry {
            at: now,
            by: RESTORED_BY.to_owned(),
            event: Event::Restored {
                target: "imap".to_owned(),
                detail: format!(
                    "expunged from {} before the call was returned; APPEND: {}",
                    self.target.folder,
                    status.chars().take(200).collect::<String>()
                ),
            },
        };
        let state = ImapCopyState { uid, keywords: email.keywords.clone(), ..settled(&current.followup) };
        self.mailbox.store().imap_copy_restored(id, &state, &entry)?;
        tracing::warn!(%id, folder = %self.target.folder, "imap watcher: a copy was expunged before its call was returned; put back");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_compare_without_case() {
        let flags = vec!["\\Seen".to_owned(), "vm-calledback".to_owned()];
        assert!(has_keyword(&flags, KEYWORD_CALLED_BACK));
        assert!(!has_keyword(&flags, KEYWORD_ASSIGNED));
        assert_eq!(our_keywords(&flags), [KEYWORD_CALLED_BACK]);
    }

    #[test]
    fn who_changed_it() {
        let mut t = ImapTarget::new("h", 143, "voicemail", "p", "Voicemail");
        assert_eq!(changed_by(&t), "imap:voicemail");
        t.username = " ".into();
        assert_eq!(changed_by(&t), "imap:Voicemail");
        t.username = "x".repeat(500);
        assert_eq!(changed_by(&t).chars().count(), 195);
    }
}
