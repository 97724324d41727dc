//! Per-call hooks: the application's say on each incoming call, and notifications of what
//! happens in it.
//!
//! [`CallHooks::on_call`] decides each new INVITE once the endpoint's own checks passed (the
//! allow-list, the call limit, the rate limit, a mailbox for the number called): answer it
//! (possibly in another of the configured mailboxes, with another greeting) or reject it with
//! a final status (486 Busy Here, 603 Decline, ...). It may block (it runs on a blocking
//! thread, never on the SIP transport task) but the endpoint waits for it at most
//! [`HookSettings::decision_timeout`]: a decision that comes later (or a hook that panics) is
//! ignored, logged, and the call gets the endpoint's default behaviour (answered in the mailbox
//! the endpoint chose, with the calendar's greeting).
//!
//! [`CallHooks::on_notice`] hears each call's state changes and DTMF keys
//! ([`CallNotice`]). Notices go through a bounded queue to one thread of their own, so a slow
//! hook never stalls media: when the queue is full a notice is dropped and counted
//! ([`EndpointHandle::dropped_notices`](crate::EndpointHandle::dropped_notices)).
//!
//! Install hooks with [`Endpoint::with_hooks`](crate::Endpoint::with_hooks).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use voicemail_core::{CallState, DtmfDigit, Event};

use crate::limit::LogLimiter;

/// What the endpoint knows about an incoming call when the application decides on it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IncomingCall {
    /// The SIP `Call-ID` of the INVITE: it names the call in every [`CallNotice`].
    pub call_id: String,
    /// The caller's number (as the message records it).
    pub caller: String,
    /// The caller's display name, if any.
    pub caller_name: Option<String>,
    /// The called number.
    pub called: String,
    /// The number that diverted the call here (History-Info or Diversion), if any.
    pub diverted_from: Option<String>,
    /// The mailbox the endpoint chose for the call (`mailbox` of its configuration).
    pub mailbox: String,
    /// The source address of the INVITE.
    pub source: IpAddr,
}

/// How to answer a call the application accepts; the defaults are the endpoint's own choice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accept {
    /// Record into this mailbox (a `mailbox` name of the configuration's `[[mailboxes]]`)
    /// instead of the one the endpoint chose. An unknown name is ignored (logged).
    pub mailbox: Option<String>,
    /// Play this greeting (a name of the mailbox's `[greetings]`) instead of the calendar's.
    /// A name the mailbox does not have is ignored (logged).
    pub greeting: Option<String>,
}

/// A final status to reject a call with: 400 to 699.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RejectStatus(u16);

/// A status code that cannot reject a call (not 400 to 699).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a call can only be rejected with a final status from 400 to 699, not {0}")]
pub struct InvalidRejectStatus(pub u16);

impl RejectStatus {
    /// 486 Busy Here.
    pub const BUSY_HERE: RejectStatus = RejectStatus(486);
    /// 603 Decline.
    pub const DECLINE: RejectStatus = RejectStatus(603);

    /// The status `code`, if it is 400 to 699.
    pub fn new(code: u16) -> Result<Self, InvalidRejectStatus> {
        if (400..=699).contains(&code) { Ok(Self(code)) } else { Err(InvalidRejectStatus(code)) }
    }

    /// The status code.
    pub fn code(self) -> u16 {
        self.0
    }
}

/// The application's decision on an incoming call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallDecision {
    /// Answer it (and record a message).
    Accept(Accept),
    /// Reject it with this final status; it leaves no message.
    Reject(RejectStatus),
}

impl Default for CallDecision {
    /// The endpoint's default behaviour: answer in the mailbox it chose.
    fn default() -> Self {
        CallDecision::Accept(Accept::default())
    }
}

/// Something that happened in a call, named by its SIP `Call-ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallNotice {
    /// The call moved to a new state (`answered`, `greeting`, `beep`, `recording`, `ended`).
    State {
        /// The SIP `Call-ID`.
        call_id: String,
        /// The new state.
        state: CallState,
    },
    /// The caller pressed a key (RFC 4733 or SIP INFO), once per key press.
    Dtmf {
        /// The SIP `Call-ID`.
        call_id: String,
        /// The key.
        digit: DtmfDigit,
    },
}

/// The application's hooks into the endpoint's calls. Both methods have defaults (accept
/// every call; ignore notices), so an implementation overrides what it needs.
pub trait CallHooks: Send + Sync + 'static {
    /// Decides on an incoming call (see the [module docs](self)). Runs on a blocking thread;
    /// may take at most [`HookSettings::decision_timeout`].
    fn on_call(&self, call: &IncomingCall) -> CallDecision {
        let _ = call;
        CallDecision::default()
    }

    /// Hears a state change or a DTMF key of a call, on the hooks' own thread, in order.
    fn on_notice(&self, notice: CallNotice) {
        let _ = notice;
    }
}

/// Limits of the hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookSettings {
    /// The longest wait for [`CallHooks::on_call`] (default 3 s); then the call gets the
    /// default behaviour.
    pub decision_timeout: Duration,
    /// Notices waiting for [`CallHooks::on_notice`] at most (default 1024); more are dropped
    /// and counted.
    pub queue: usize,
}

impl Default for HookSettings {
    fn default() -> Self {
        Self { decision_timeout: Duration::from_secs(3), queue: 1024 }
    }
}

/// The installed hooks, shared by the endpoint's calls.
pub(crate) struct Hooks {
    hooks: Arc<dyn CallHooks>,
    settings: HookSettings,
    notices: mpsc::SyncSender<CallNotice>,
    dropped: AtomicU64,
    log_limit: LogLimiter,
}

impl Hooks {
    /// Installs `hooks` and starts the thread that hands notices to them (it ends when the
    /// endpoint is gone and the queue is empty).
    pub(crate) fn start(hooks: Arc<dyn CallHooks>, settings: HookSettings) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<CallNotice>(settings.queue.max(1));
        let listener = hooks.clone();
        std::thread::Builder::new().name("vm-call-hooks".into()).spawn(move || {
            while let Ok(notice) = rx.recv() {
                listener.on_notice(notice);
            }
        })?;
        Ok(Self {
            hooks,
            settings,
            notices: tx,
            dropped: AtomicU64::new(0),
            log_limit: LogLimiter::new(5, Duration::from_secs(60)),
        })
    }

    /// The application's decision on `call`, within the time budget; the default behaviour
    /// when it does not come in time or the hook panicked.
    pub(crate) async fn decide(&self, call: IncomingCall) -> CallDecision {
        let hooks = self.hooks.clone();
        let call_id = call.call_id.clone();
        let deciding = tokio::task::spawn_blocking(move || hooks.on_call(&call));
        match tokio::time::timeout(self.settings.decision_timeout, deciding).await {
            Ok(Ok(decision)) => decision,
            Ok(Err(e)) => {
                tracing::warn!(%call_id, error = %e, "the on_call hook failed: the call is answered as usual");
                CallDecision::default()
            }
            Err(_) => {
                if let Some(suppressed) = self.log_limit.allow("decision-timeout", Instant::now()) {
                    tracing::warn!(
                        %call_id,
                        timeout_ms = self.settings.decision_timeout.as_millis() as u64,
                        suppressed,
                        "no decision from the on_call hook in time: the call is answered as usual"
                    );
                }
                CallDecision::default()
            }
        }
    }

    /// Queues a notice; drops and counts it when the queue is full.
    fn notify(&self, notice: CallNotice) {
        if let Err(mpsc::TrySendError::Full(_)) = self.notices.try_send(notice) {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if let Some(suppressed) = self.log_limit.allow("notice-dropped", Instant::now()) {
                tracing::warn!(dropped, suppressed, "the call hooks are too slow: a notice was dropped");
            }
        }
    }

    /// Notices dropped so far because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// One call's source of notices, for its media thread.
#[derive(Clone)]
pub struct CallNotifier {
    call_id: String,
    hooks: Arc<Hooks>,
}

impl std::fmt::Debug for CallNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallNotifier").field("call_id", &self.call_id).finish_non_exhaustive()
    }
}

impl CallNotifier {
    pub(crate) fn new(call_id: String, hooks: Arc<Hooks>) -> Self {
        Self { call_id, hooks }
    }

    /// Passes on a call's event: state changes and DTMF keys (others are not notices).
    pub fn event(&self, event: &Event) {
        let notice = match event {
            Event::StateChanged(state) => CallNotice::State { call_id: self.call_id.clone(), state: *state },
            Event::DtmfReceived(digit) => CallNotice::Dtmf { call_id: self.call_id.clone(), digit: *digit },
            _ => return,
        };
        self.hooks.notify(notice);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_status_is_4xx_to_6xx() {
        assert_eq!(RejectStatus::new(486).map(RejectStatus::code), Ok(486));
        assert_eq!(RejectStatus::new(699).map(RejectStatus::code), Ok(699));
        assert_eq!(RejectStatus::new(399), Err(InvalidRejectStatus(399)));
        assert_eq!(RejectStatus::new(200), Err(InvalidRejectStatus(200)));
        assert_eq!(RejectStatus::new(700), Err(InvalidRejectStatus(700)));
    }

    struct Slow(std::sync::Mutex<Vec<CallNotice>>);

    impl CallHooks for Slow {
        fn on_notice(&self, notice: CallNotice) {
            std::thread::sleep(Duration::from_millis(50));
            self.0.lock().unwrap_or_else(|e| e.into_inner()).push(notice);
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let slow = Arc::new(Slow(std::sync::Mutex::new(Vec::new())));
        let hooks = Arc::new(Hooks::start(slow, HookSettings { queue: 2, ..HookSettings::default() }).unwrap());
        let notifier = CallNotifier::new("c1".into(), hooks.clone());
        for _ in 0..20 {
            notifier.event(&Event::StateChanged(CallState::Recording));
        }
        // At most the queue plus the one in the hook's hands got through.
        assert!(hooks.dropped() >= 17, "dropped {}", hooks.dropped());
    }
}
