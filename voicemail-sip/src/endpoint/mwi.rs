//! The endpoint's side of message-waiting indication ([`crate::mwi`]): SUBSCRIBE dialogs on
//! rsipstack's server subscription dialogs, NOTIFYs in them, unsolicited NOTIFYs on client
//! transactions, and the watcher that recomputes the managers' counts when the store changes.
//!
//! ```text
//!  Mailbox::subscribe (a message stored here) ─┐
//!  Mailbox::change_mark, every poll_interval ──┴► watcher: counts per manager (store list)
//!                                                   │ changed: watch channel ──► each subscription task: NOTIFY
//!                                                   └ changed: unsolicited NOTIFY to the manager's `notify` phones
//!  SUBSCRIBE (no To tag) ──► on_subscribe: checks, 200 OK + Expires, subscription task
//!  re-SUBSCRIBE in the dialog ──► the dialog ──► subscription task: CSeq in order? refresh,
//!                                                  or Expires: 0 ends it; out of order: 500
//! ```

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rsipstack::dialog::dialog::DialogState;
use rsipstack::dialog::subscription::ServerSubscriptionDialog;
use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::sip::{Header, Method, Request, SipMessage, StatusCode, Transport};
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::transaction::{Transaction, TransactionEvent};
use tokio::sync::{Notify, mpsc, watch};

use super::{Shared, contact_uri, send_reply};
use crate::classify::{self, Reply, ReplyExtra};
use crate::mwi::{self, Counts, Expiry, MwiConfig, Sequence, Subscriptions};

/// The longest wait for the answer to a NOTIFY (64·T1).
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(32);
/// How long a server transaction is kept to answer retransmissions of its request.
const TRANSACTION_LINGER: Duration = Duration::from_secs(40);

/// Every manager's counts; `None` until first computed.
type AllCounts = Option<Arc<HashMap<String, Counts>>>;

/// The MWI state of one endpoint.
pub(super) struct MwiService {
    pub(super) config: MwiConfig,
    subs: Mutex<Subscriptions>,
    counts: watch::Sender<AllCounts>,
    /// Woken when this process stores a message or changes one.
    pub(super) wake: Arc<Notify>,
    cseq: AtomicU32,
    /// Each subscription's task takes the re-SUBSCRIBEs of its dialog (by dialog id).
    routes: Mutex<HashMap<String, mpsc::Sender<Transaction>>>,
    /// Subscriptions whose first NOTIFY was answered and that have not ended.
    pub(super) notified_subscriptions: AtomicUsize,
    /// NOTIFYs answered with 2xx, in subscriptions and unsolicited.
    pub(super) notifies: AtomicU64,
}

impl MwiService {
    pub(super) fn new(config: MwiConfig) -> Self {
        let subs = Mutex::new(Subscriptions::new(&config));
        Self {
            config,
            subs,
            counts: watch::channel(None).0,
            wake: Arc::new(Notify::new()),
            cseq: AtomicU32::new(1),
            routes: Mutex::new(HashMap::new()),
            notified_subscriptions: AtomicUsize::new(0),
            notifies: AtomicU64::new(0),
        }
    }

    fn subs(&self) -> std::sync::MutexGuard<'_, Subscriptions> {
        self.subs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<Transaction>>> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A SUBSCRIBE in an existing subscription dialog: handed to the subscription's task, which
/// answers it before it sends the NOTIFY that follows; 481 when the subscription has ended.
pub(super) fn on_resubscribe(shared: &Arc<Shared>, tx: Transaction, dialog_id: &str) {
    let Some(service) = &shared.mwi else { return };
    let route = service.routes().get(dialog_id).cloned();
    let refused = match route {
        Some(route) => match route.try_send(tx) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(tx) | mpsc::error::TrySendError::Closed(tx)) => tx,
        },
        None => tx,
    };
    tokio::spawn(send_reply(refused, reply(481, "the subscription has ended")));
}

/// The managers' counts over every mailbox's store, on a blocking thread.
async fn compute(shared: &Arc<Shared>, config: &MwiConfig) -> Option<HashMap<String, Counts>> {
    let mailboxes = shared.mailboxes.all().to_vec();
    let config = config.clone();
    let listed = tokio::task::spawn_blocking(move || {
        let mut messages = Vec::new();
        for mailbox in &mailboxes {
            messages.extend(mailbox.list(true)?);
        }
        Ok::<_, voicemail_core::MailboxError>(mwi::count(&messages, &config))
    })
    .await;
    match listed {
        Ok(Ok(counts)) => Some(counts),
        Ok(Err(e)) => {
            if let Some(suppressed) = shared.log_limit.allow("mwi-store", Instant::now()) {
                tracing::warn!(error = %e, suppressed, "mwi: cannot read the store");
            }
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "mwi: counting failed");
            None
        }
    }
}

/// The current counts (computed now if the watcher has not yet).
async fn current(shared: &Arc<Shared>, service: &MwiService) -> Arc<HashMap<String, Counts>> {
    if let Some(c) = service.counts.borrow().clone() {
        return c;
    }
    Arc::new(compute(shared, &service.config).await.unwrap_or_default())
}

/// Recomputes the counts whenever the store changes, until shutdown; publishes them to the
/// subscriptions and sends the unsolicited NOTIFYs of the managers whose counts changed (and
/// of every manager at start, so the lamps are right after a restart).
pub(super) async fn watch_store(shared: Arc<Shared>, service: Arc<MwiService>) {
    let mut mark: Option<Vec<i64>> = None;
    let mut last: HashMap<String, Counts> = HashMap::new();
    let mut first = true;
    loop {
        let now_mark = {
            let mailboxes = shared.mailboxes.all().to_vec();
            let marks = move || mailboxes.iter().map(|m| m.change_mark()).collect::<Result<Vec<_>, _>>();
            tokio::task::spawn_blocking(marks).await.ok().and_then(Result::ok)
        };
        if first || now_mark.is_none() || now_mark != mark {
            mark = now_mark;
            if let Some(counts) = compute(&shared, &service.config).await {
                for m in &service.config.managers {
                    let email = m.email.to_ascii_lowercase();
                    let c = counts.get(&email).copied().unwrap_or_default();
                    if (first || last.get(&email) != Some(&c)) && !m.notify.is_empty() {
                        tracing::debug!(manager = %m.email, new = c.new, old = c.old, "mwi: counts changed");
                        let user = m.users.first().cloned().unwrap_or_default();
                        for target in &m.notify {
                            tokio::spawn(unsolicited(shared.clone(), target.clone(), user.clone(), c));
                        }
                    }
                }
                last = counts.clone();
                service.counts.send_replace(Some(Arc::new(counts)));
                first = false;
            }
        }
        tokio::select! {
            () = service.wake.notified() => {}
            () = tokio::time::sleep(service.config.poll_interval) => {}
            () = shared.shutdown.cancelled() => return,
        }
    }
}

/// `sip:<user>@<advertised address>`: the Message-Account of a manager's summary.
fn account(shared: &Shared, user: &str) -> String {
    let host = match shared.sip.advertised_ip() {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    format!("sip:{user}@{host}:{}", shared.local_addr.port())
}

fn notify_headers(state: String) -> Vec<Header> {
    vec![
        Header::Event(rsipstack::sip::headers::Event::new(mwi::EVENT_PACKAGE)),
        Header::SubscriptionState(rsipstack::sip::headers::SubscriptionState::new(state)),
        Header::ContentType(rsipstack::sip::ContentType::new(mwi::CONTENT_TYPE)),
    ]
}

/// Sends one unsolicited NOTIFY (RFC 3842 §3.2) to `target` on a client transaction.
async fn unsolicited(shared: Arc<Shared>, target: String, user: String, counts: Counts) {
    let sent = tokio::time::timeout(
        NOTIFY_TIMEOUT + Duration::from_secs(2),
        send_unsolicited(&shared, &target, &user, counts),
    )
    .await;
    let problem = match sent {
        Ok(Ok(status)) if (200..300).contains(&status) => {
            if let Some(service) = &shared.mwi {
                service.notifies.fetch_add(1, Ordering::SeqCst);
            }
            return;
        }
        Ok(Ok(status)) => format!("answered {status}"),
        Ok(Err(e)) => e,
        Err(_) => "no answer".to_owned(),
    };
    if let Some(suppressed) = shared.log_limit.allow("mwi-unsolicited", Instant::now()) {
        tracing::warn!(%target, problem, suppressed, "mwi: unsolicited NOTIFY failed");
    }
}

async fn send_unsolicited(shared: &Arc<Shared>, target: &str, user: &str, counts: Counts) -> Result<u16, String> {
    use rsipstack::sip::{Param, Uri, typed};
    let service = shared.mwi.as_ref().ok_or("mwi is off")?;
    let uri = Uri::try_from(target).map_err(|e| e.to_string())?;
    let inner = shared.dialogs.endpoint.clone();
    let transport = if target.to_ascii_lowercase().contains("transport=tcp") { Transport::Tcp } else { Transport::Udp };
    let local = inner.transport_layer.get_addrs().into_iter().find(|a| a.r#type == Some(transport));
    let via = inner.get_via(local, None).map_err(|e| e.to_string())?;
    let from_uri = Uri::try_from(account(shared, user).as_str()).map_err(|e| e.to_string())?;
    let from =
        typed::From { display_name: None, uri: from_uri, params: vec![Param::Tag(rsipstack::transaction::make_tag())] };
    let to = typed::To { display_name: None, uri: uri.clone(), params: vec![] };
    let seq = service.cseq.fetch_add(1, Ordering::SeqCst);
    let mut req = inner.make_request(Method::Notify, uri, via, from, to, seq, None);
    for h in notify_headers("active".to_owned()) {
        req.headers.push(h);
    }
    req.body = mwi::summary_body(&account(shared, user), counts).into_bytes();
    let key = TransactionKey::from_request(&req, TransactionRole::Client).map_err(|e| e.to_string())?;
    let mut tx = Transaction::new_client(key, req, inner, None);
    tx.send().await.map_err(|e| e.to_string())?;
    while let Some(msg) = tx.receive().await {
        if let SipMessage::Response(r) = msg {
            let code = r.status_code.code();
            if code >= 200 {
                return Ok(code);
            }
        }
    }
    Err("the transaction ended without an answer".to_owned())
}

/// The `Expires` of a request, `None` when absent or unreadable (larger values are capped).
fn expires_of(req: &Request) -> Option<u32> {
    let v = req.headers.iter().find(|h| h.name().eq_ignore_ascii_case("Expires"))?.value().trim().to_owned();
    v.parse::<u64>().ok().map(|s| u32::try_from(s).unwrap_or(u32::MAX))
}

/// The request's CSeq number; `None` when absent or unreadable (`classify::check_request`
/// answers such a request 400 before it gets here).
fn cseq_of(req: &Request) -> Option<u32> {
    req.cseq_header().ok()?.seq().ok()
}

/// The answer to a re-SUBSCRIBE out of order (RFC 3261 §12.2.2): 500 with a reason phrase
/// that says why (a `StatusCode` of its own: the standard one always writes its standard
/// phrase).
fn out_of_order() -> StatusCode {
    StatusCode::Other(500, "CSeq Out of Order".to_owned())
}

/// Whether the request's `Event` is `message-summary`.
fn is_message_summary(req: &Request) -> bool {
    req.headers
        .iter()
        .find(|h| h.name().eq_ignore_ascii_case("Event") || h.name() == "o")
        .is_some_and(|h| h.value().split(';').next().unwrap_or("").trim().eq_ignore_ascii_case(mwi::EVENT_PACKAGE))
}

/// Whether the request accepts the summary's media type (no `Accept` means it does).
fn accepts_summary(req: &Request) -> bool {
    let accepts: Vec<String> = req
        .headers
        .iter()
        .filter(|h| h.name().eq_ignore_ascii_case("Accept"))
        .flat_map(|h| {
            h.value()
                .split(',')
                .map(|a| a.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .filter(|a| !a.is_empty())
        .collect();
    accepts.is_empty() || accepts.iter().any(|a| a == mwi::CONTENT_TYPE || a == "application/*" || a == "*/*")
}

/// The user a SUBSCRIBE is for: the Request-URI's user, else To's.
fn target_user(req: &Request) -> Option<String> {
    if let Some(u) = req.uri.user() {
        return Some(u.to_owned());
    }
    let to = req.to_header().ok()?.typed().ok()?;
    to.uri.user().map(str::to_owned)
}

fn reply(status: u16, why: impl Into<String>) -> Reply {
    Reply { status, extra: ReplyExtra::None, why: why.into() }
}

fn retry_after(status: u16, why: &str, seconds: u32) -> Reply {
    Reply { status, extra: ReplyExtra::RetryAfter(seconds), why: why.to_owned() }
}

/// Answers with headers a [`Reply`] has no room for (`Allow-Events`, `Min-Expires`).
async fn refuse(mut tx: Transaction, status: u16, headers: Vec<Header>, why: &str, source: IpAddr) {
    tracing::debug!(status, why, %source, "SUBSCRIBE refused");
    if let Err(e) = tx.reply_with(StatusCode::from(status), headers, None).await {
        tracing::debug!(error = %e, status, "sending a reply failed");
    }
}

/// A SUBSCRIBE outside any dialog: checks it, answers it, and runs the subscription.
pub(super) async fn on_subscribe(shared: Arc<Shared>, tx: Transaction, source: IpAddr) {
    let Some(service) = shared.mwi.clone() else { return };
    let req = tx.original.clone();
    if let Err(r) = classify::check_request(&req) {
        send_reply(tx, r).await;
        return;
    }
    // The dialog's first remote sequence number (RFC 3261 §12.2.2).
    let Some(cseq) = cseq_of(&req) else {
        send_reply(tx, reply(400, "bad CSeq")).await;
        return;
    };
    let allow = &shared.sip.allow_from;
    if !allow.is_empty() && !allow.iter().any(|r| r.contains(source)) {
        send_reply(tx, reply(403, format!("source {source} is not in sip.allow_from"))).await;
        return;
    }
    if !shared.accepting.load(Ordering::SeqCst) {
        send_reply(tx, retry_after(503, "shutting down", 30)).await;
        return;
    }
    if !is_message_summary(&req) {
        let allow_events = Header::Other("Allow-Events".into(), mwi::EVENT_PACKAGE.into());
        refuse(tx, 489, vec![allow_events], "event package is not message-summary", source).await;
        return;
    }
    if !accepts_summary(&req) {
        refuse(tx, 406, Vec::new(), "the subscriber does not accept the summary type", source).await;
        return;
    }
    let Some((user, manager)) =
        target_user(&req).and_then(|u| service.config.manager_for_user(&u).map(|m| (u, m.email.to_ascii_lowercase())))
    else {
        send_reply(tx, reply(404, "no manager for this user")).await;
        return;
    };
    let granted = match mwi::negotiate_expiry(expires_of(&req), &service.config) {
        Expiry::TooBrief(min) => {
            let h = Header::MinExpires(rsipstack::sip::headers::MinExpires::new(min.to_string()));
            refuse(tx, 423, vec![h], "subscription too brief", source).await;
            return;
        }
        Expiry::End => 0,
        Expiry::Grant(s) => s,
    };
    // A fetch (`Expires: 0`) counts too while its NOTIFY is out.
    let admitted = service.subs().admit(source);
    if let Err(refusal) = admitted {
        if let Some(suppressed) = shared.log_limit.allow("mwi-limit", Instant::now()) {
            tracing::warn!(%source, ?refusal, suppressed, "mwi: subscription limit reached: 503");
        }
        send_reply(tx, retry_after(503, "subscription limit", 60)).await;
        return;
    }
    let transport = tx.connection.as_ref().map_or(Transport::Udp, |c| c.transport());
    let (state_tx, states) = shared.dialogs.new_dialog_state_channel();
    let dialog = match shared.dialogs.get_or_create_server_subscription(
        &tx,
        state_tx,
        None,
        contact_uri(&shared, transport, &tx.original.uri),
    ) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "mwi: cannot create the subscription dialog");
            send_reply(tx, reply(500, e.to_string())).await;
            return;
        }
    };
    let dialog_id = dialog.id();
    let id = dialog_id.to_string();
    let inserted = service.subs().insert(id.clone(), source, manager.clone(), cseq, granted, Instant::now());
    if let Err(refusal) = inserted {
        shared.dialogs.remove_dialog(&dialog_id);
        tracing::debug!(?refusal, "mwi: subscription limit reached: 503");
        send_reply(tx, retry_after(503, "subscription limit", 60)).await;
        return;
    }
    // The 200 OK goes out now (before the first NOTIFY); the transaction then lingers to
    // answer retransmissions of the SUBSCRIBE.
    let expires = vec![Header::Expires(granted.into())];
    let mut tx = tx;
    if let Err(e) = dialog.accept(Some(expires), None) {
        tracing::debug!(error = %e, "mwi: accepting the subscription");
    }
    while let Ok(event) = tx.tu_receiver.try_recv() {
        if let TransactionEvent::Respond(r) = event
            && let Err(e) = tx.respond(r).await
        {
            tracing::debug!(error = %e, "mwi: sending the 200 OK");
        }
    }
    linger(tx);
    tracing::debug!(%user, %manager, %source, granted, "mwi: subscription");
    let (route, resubscribes) = mpsc::channel(4);
    service.routes().insert(id.clone(), route);
    let sub = Sub {
        shared: shared.clone(),
        service: service.clone(),
        dialog,
        id: id.clone(),
        account: account(&shared, &user),
        manager,
    };
    sub.run(states, resubscribes, granted).await;
    service.routes().remove(&id);
    shared.dialogs.remove_dialog(&dialog_id);
}

/// Keeps an answered server transaction alive for a while, to answer retransmissions.
fn linger(mut tx: Transaction) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(TRANSACTION_LINGER, async { while tx.receive().await.is_some() {} }).await;
    });
}

/// Answers a re-SUBSCRIBE (the To tag is already in it).
async fn answer(mut tx: Transaction, status: StatusCode, headers: Vec<Header>) {
    if let Err(e) = tx.reply_with(status, headers, None).await {
        tracing::debug!(error = %e, "mwi: answering a re-SUBSCRIBE");
    }
    linger(tx);
}

/// Decrements a counter when dropped.
struct Counted<'a>(&'a AtomicUsize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Sub {
    shared: Arc<Shared>,
    service: Arc<MwiService>,
    dialog: ServerSubscriptionDialog,
    id: String,
    account: String,
    manager: String,
}

/// How a subscription's NOTIFY went.
enum Sent {
    Ok,
    /// No answer, or an error answer: the subscription is gone (RFC 6665 §4.1.3).
    Gone,
}

impl Sub {
    async fn notify(&self, state: String, counts: Counts) -> Sent {
        let body = mwi::summary_body(&self.account, counts).into_bytes();
        let sent =
            tokio::time::timeout(NOTIFY_TIMEOUT, self.dialog.notify(Some(notify_headers(state)), Some(body))).await;
        match sent {
            Ok(Ok(Some(r))) if r.status_code.code() < 300 => {
                self.service.notifies.fetch_add(1, Ordering::SeqCst);
                Sent::Ok
            }
            other => {
                let why = match other {
                    Ok(Ok(Some(r))) => format!("answered {}", r.status_code.code()),
                    Ok(Ok(None)) => "the dialog is not confirmed".to_owned(),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "no answer".to_owned(),
                };
                if let Some(suppressed) = self.shared.log_limit.allow("mwi-notify", Instant::now()) {
                    tracing::info!(account = %self.account, why, suppressed, "mwi: NOTIFY failed: subscription ended");
                }
                Sent::Gone
            }
        }
    }

    async fn counts(&self) -> Counts {
        current(&self.shared, &self.service).await.get(&self.manager).copied().unwrap_or_default()
    }

    fn remaining(&self) -> u32 {
        self.service.subs().remaining(&self.id, Instant::now()).unwrap_or(0)
    }

    /// Sends the first NOTIFY, then one per change, refreshes on re-SUBSCRIBE, and ends with a
    /// final NOTIFY (`terminated`) on `Expires: 0`, expiry or shutdown.
    async fn run(
        self,
        mut states: rsipstack::dialog::dialog::DialogStateReceiver,
        mut resubscribes: mpsc::Receiver<Transaction>,
        granted: u32,
    ) {
        if granted == 0 {
            // A fetch (RFC 6665 §4.4.3): one NOTIFY, terminated.
            let c = self.counts().await;
            let _ = self.notify("terminated;reason=timeout".to_owned(), c).await;
            self.service.subs().remove(&self.id);
            return;
        }
        let mut counts_rx = self.service.counts.subscribe();
        let mut deadline = tokio::time::Instant::now() + Duration::from_secs(u64::from(granted));
        let mut sent = self.counts().await;
        counts_rx.mark_unchanged();
        let final_state = 'run: {
            if let Sent::Gone = self.notify(format!("active;expires={}", self.remaining()), sent).await {
                break 'run None;
            }
            self.service.notified_subscriptions.fetch_add(1, Ordering::SeqCst);
            let _counted = Counted(&self.service.notified_subscriptions);
            loop {
                tokio::select! {
                    tx = resubscribes.recv() => {
                        let Some(tx) = tx else { break 'run None };
                        // RFC 3261 §12.2.2, before anything else: a CSeq not above the last
                        // one (a delayed refresh, an unsubscribe overtaken by a refresh) gets
                        // 500 and changes nothing; an equal one too (see `advance_remote_seq`).
                        let Some(cseq) = cseq_of(&tx.original) else {
                            answer(tx, StatusCode::BadRequest, Vec::new()).await;
                            continue;
                        };
                        let order = self.service.subs().advance_remote_seq(&self.id, cseq);
                        if let Sequence::OutOfOrder(remote) = order {
                            tracing::debug!(account = %self.account, cseq, remote, "mwi: re-SUBSCRIBE out of order: 500");
                            answer(tx, out_of_order(), Vec::new()).await;
                            continue;
                        }
                        if !is_message_summary(&tx.original) {
                            let h = Header::Other("Allow-Events".into(), mwi::EVENT_PACKAGE.into());
                            answer(tx, StatusCode::BadEvent, vec![h]).await;
                            continue;
                        }
                        match mwi::negotiate_expiry(expires_of(&tx.original), &self.service.config) {
                            Expiry::TooBrief(min) => {
                                let h = Header::MinExpires(rsipstack::sip::headers::MinExpires::new(min.to_string()));
                                answer(tx, StatusCode::IntervalTooBrief, vec![h]).await;
                            }
                            Expiry::End => {
                                answer(tx, StatusCode::OK, vec![Header::Expires(0.into())]).await;
                                break 'run Some("terminated;reason=timeout".to_owned());
                            }
                            Expiry::Grant(s) => {
                                self.service.subs().refresh(&self.id, s, Instant::now());
                                deadline = tokio::time::Instant::now() + Duration::from_secs(u64::from(s));
                                answer(tx, StatusCode::OK, vec![Header::Expires(s.into())]).await;
                                // RFC 6665 §4.2.1.2: a NOTIFY follows every accepted refresh.
                                sent = self.counts().await;
                                if let Sent::Gone = self.notify(format!("active;expires={}", self.remaining()), sent).await {
                                    break 'run None;
                                }
                            }
                        }
                    }
                    st = states.recv() => match st {
                        Some(DialogState::Terminated(..)) | None => break 'run None,
                        Some(_) => {}
                    },
                    changed = counts_rx.changed() => {
                        if changed.is_err() {
                            break 'run None;
                        }
                        let now = self.counts().await;
                        if now != sent {
                            sent = now;
                            if let Sent::Gone = self.notify(format!("active;expires={}", self.remaining()), sent).await {
                                break 'run None;
                            }
                        }
                    }
                    () = tokio::time::sleep_until(deadline) => break 'run Some("terminated;reason=timeout".to_owned()),
                    () = self.shared.shutdown.cancelled() => break 'run Some("terminated;reason=giveup;retry-after=30".to_owned()),
                }
            }
        };
        self.service.subs().remove(&self.id);
        if let Some(state) = final_state {
            let c = self.counts().await;
            let _ = self.notify(state, c).await;
        }
        tracing::debug!(account = %self.account, "mwi: subscription ended");
    }
}
