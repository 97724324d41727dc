//! The SIP endpoint: transports, the request loop, and one supervisor per call.
//!
//! ```text
//!  UDP/TCP/TLS ──► rsipstack (transport, transactions, dialogs); it answers what does not
//!                 │ parse (400/501/505, patches/rsipstack), caps TCP and TLS connections
//!                 │ (`max_connections`, `max_connections_per_source`, handshakes included)
//!                 │ and closes idle ones (`idle_timeout`)
//!                 │ incoming transactions
//!                 ▼
//!           Endpoint::run ── INVITE rate limit per source (503 + Retry-After)
//!                 │
//!                 ├── classify_request ──► Reply (4xx/5xx/OPTIONS 200)
//!                 │                       └─────► InDialog (BYE, ACK, INFO, re-INVITE → dialog)
//!                 ▼ NewCall
//!           mailbox_for: the mailbox of the diverting number, Request-URI or To user (divert,
//!           Mailboxes::select); none and no default: 404
//!                 │
//!           hooks (`Endpoint::with_hooks`, `crate::hooks`): the application's decision on a
//!           blocking thread within its time budget: reject (4xx-6xx), another mailbox/greeting
//!                 │
//!           call supervisor (one task per call): RTP socket, SDP answer or, without an offer,
//!           our offer (400/488 end here), Mailbox::start_call (full spool: 503), then
//!           `answer`: 180, ring delay, 200, the ACK (late offer: its answer) within
//!           `ack_timeout`; then dialog events (re-INVITEs: hold, address, codec)
//!           ─► MediaCommand ─► media thread (one per core, each owns and drives many core
//!                 │             Calls; the greeting starts at the ACK or the caller's first RTP)
//!                 │ the call's media ended (the supervisor held the CallLease meanwhile)
//!                 ▼
//!           Mailbox::finish_call on a blocking thread, BYE if the call ended on our side;
//!           a 200 never ACKed: Mailbox::discard_call (no message), BYE
//!
//!  Mailbox::subscribe (every mailbox) ──► Endpoint::messages() (finished calls, recovered ones)
//!  a Runner per mailbox (deliveries per target, recovery): started and stopped by Endpoint::run
//!  SUBSCRIBE message-summary (with `[sip.mwi]`) ──► mwi: subscription dialogs, NOTIFYs,
//!           a watcher of every mailbox's counts per manager (see `endpoint/mwi.rs`)
//! ```

mod answer;
mod mwi;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use rand::{Rng, SeedableRng};
use rsipstack::dialog::dialog::{DialogState, TerminatedReason, TransactionHandle};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::sip::{Header, Method, Request, StatusCode, Transport};
use rsipstack::transaction::TransactionReceiver;
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{TcpListenerConnection, TransportLayer};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use voicemail_core::runner::Runner;
use voicemail_core::{CallLease, CallSetup, CodecChange, Mailbox, Mailboxes, MessageMeta, StartedCall};

use crate::classify::{self, ACCEPT, Decision, InfoDtmf, NewCall, Policy, Reply, ReplyExtra};
use crate::config::SipConfig;
use crate::error::{Error, Result};
use crate::hooks::{CallDecision, CallHooks, CallNotifier, HookSettings, Hooks, IncomingCall};
use crate::limit::{InviteLimiter, LogLimiter};
use crate::media::{self, MediaCommand, PortPool};
use crate::register::{AccountStatus, RegistrationHandle};
use crate::sdp::{self, Direction, LocalMedia, Negotiated, SdpError, SrtpOffer};
use crate::srtp::{MasterKey, SrtpKeys, SrtpSession};
use crate::telemetry;

/// How long the endpoint waits for calls to finish after a shutdown request.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// The longest wait for the answer to our BYE before the call's resources are released.
const BYE_TIMEOUT: Duration = Duration::from_secs(10);
/// `Retry-After` (seconds) of the 503 that new calls get while the spool is full.
const FULL_RETRY_AFTER_S: u32 = 60;
/// Warnings a peer can cause with every request: at most this many of each kind per
/// [`LOG_INTERVAL`].
const LOG_LINES: u32 = 5;
/// See [`LOG_LINES`].
const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// The sending end of the application's message stream; `None` once [`Endpoint::run`] returned.
type MessageSender = Mutex<Option<mpsc::UnboundedSender<MessageMeta>>>;

/// The SIP voicemail endpoint of one [`Mailbox`] or several ([`Mailboxes`]: one SIP listener
/// and one RTP port range for all). Create it with [`Endpoint::bind`], take the message stream
/// with [`Endpoint::messages`], then [`Endpoint::run`] it until [`EndpointHandle::shutdown`].
///
/// Each INVITE goes to the mailbox its diverting number, Request-URI user or To user selects
/// (History-Info, Diversion; [`Mailboxes::select`]), else to the default mailbox; without one it
/// gets 404 Not Found. Every call goes through its mailbox: [`Mailbox::start_call`] makes it
/// (message id, greeting of the moment, recording in the spool) and [`Mailbox::finish_call`]
/// stores its message. By default [`Endpoint::run`] also runs every mailbox's background work
/// (a [`Runner`] each: deliveries per target, recovery of interrupted calls);
/// [`Endpoint::without_background_work`] leaves that to the embedder.
pub struct Endpoint {
    shared: Arc<Shared>,
    stack: rsipstack::transaction::Endpoint,
    incoming: TransactionReceiver,
    messages: Option<mpsc::UnboundedReceiver<MessageMeta>>,
    stack_token: CancellationToken,
    background: bool,
}

/// A cloneable handle to a running endpoint: ask it to shut down, read its counters.
#[derive(Clone)]
pub struct EndpointHandle {
    shared: Arc<Shared>,
}

impl EndpointHandle {
    /// Stops accepting calls (new INVITEs get 503), hangs up the calls in progress (they
    /// finish their messages), and makes [`Endpoint::run`] return.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }

    /// Calls [`EndpointHandle::shutdown`] on the first SIGINT or SIGTERM, from a task on the
    /// current tokio runtime (it panics outside one, like `tokio::spawn`). The task ends when
    /// the endpoint shuts down for another reason.
    ///
    /// Optional: front-ends that handle signals themselves (or must not take them over) never
    /// call it. Once called, tokio handles both signals for the rest of the process's life,
    /// so a second SIGINT or SIGTERM no longer kills the process; the shutdown grace period
    /// bounds how long [`Endpoint::run`] still takes.
    #[cfg(unix)]
    pub fn shutdown_on_signals(&self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let shared = self.shared.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
                _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
                () = shared.shutdown.cancelled() => return,
            }
            shared.shutdown.cancel();
        });
        Ok(())
    }

    /// Whether the endpoint takes new calls: bound and not shutting down (nor stopped). The
    /// answering machine's `/healthz` reports it.
    pub fn is_accepting(&self) -> bool {
        self.shared.accepting.load(Ordering::SeqCst)
    }

    /// Calls in progress.
    pub fn active_calls(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// The address SIP listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The address SIP over TLS listens on (`[sip] tls_listen`), if it does.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.shared.tls_addr
    }

    /// Message-waiting subscriptions (`[sip.mwi]`) whose first NOTIFY was answered and that
    /// have not ended.
    pub fn mwi_subscriptions(&self) -> usize {
        self.shared.mwi.as_ref().map_or(0, |m| m.notified_subscriptions.load(Ordering::SeqCst))
    }

    /// Message-waiting NOTIFYs answered with 2xx so far (in subscriptions and unsolicited).
    pub fn mwi_notifies(&self) -> u64 {
        self.shared.mwi.as_ref().map_or(0, |m| m.notifies.load(Ordering::SeqCst))
    }

    /// Call notices ([`crate::hooks::CallNotice`]) dropped because the hooks were too slow.
    pub fn dropped_notices(&self) -> u64 {
        self.shared.hooks.get().map_or(0, |h| h.dropped())
    }

    /// The registration state of every `[[sip.accounts]]` entry (empty before
    /// [`Endpoint::run`] starts them, or without accounts).
    pub fn registrations(&self) -> Vec<AccountStatus> {
        self.shared
            .registrations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|r| r.status())
            .unwrap_or_default()
    }
}

struct Shared {
    sip: SipConfig,
    mailboxes: Mailboxes,
    dialogs: DialogLayer,
    ports: PortPool,
    /// The threads that drive every call's RTP.
    media: media::MediaEngine,
    active: AtomicUsize,
    idle: Notify,
    accepting: AtomicBool,
    shutdown: CancellationToken,
    /// Fed by the mailbox's listener (which holds it weakly); closed (taken) when
    /// [`Endpoint::run`] returns, which ends the application's stream.
    messages: Arc<MessageSender>,
    local_addr: SocketAddr,
    /// Where SIP over TLS listens, if it does.
    tls_addr: Option<SocketAddr>,
    rng: Mutex<rand::rngs::SmallRng>,
    registrations: Mutex<Option<RegistrationHandle>>,
    /// The per-source INVITE rate limit (`invite_rate`, `invite_burst`).
    invites: Mutex<InviteLimiter>,
    /// Rate limit of the warnings a peer can cause at will.
    log_limit: LogLimiter,
    /// Message-waiting indication, with `[sip.mwi]`.
    mwi: Option<Arc<mwi::MwiService>>,
    /// The application's per-call hooks ([`Endpoint::with_hooks`]).
    hooks: OnceLock<Arc<Hooks>>,
}

impl Shared {
    fn random(&self) -> u64 {
        self.rng.lock().unwrap_or_else(|e| e.into_inner()).random()
    }

    /// Ends the application's message stream.
    fn close_messages(&self) {
        self.messages.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// Releases a call slot when the call's supervisor ends (also when it panics).
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        let before = self.0.active.fetch_sub(1, Ordering::SeqCst);
        telemetry::calls_in_progress(before.saturating_sub(1));
        if before == 1 {
            self.0.idle.notify_one();
        }
    }
}

/// The mailboxes' background work while [`Endpoint::run`] runs. [`Endpoint::run`] stops it on
/// a blocking thread; if `run`'s future is dropped instead, a thread of its own stops it, so
/// no runtime worker waits for the joins.
struct Background(Vec<Runner>);

/// Stops runners one after the other (each lets its attempts in progress finish).
fn stop_all(runners: Vec<Runner>) {
    for runner in runners {
        runner.stop();
    }
}

impl Background {
    async fn stop(mut self) {
        let runners = std::mem::take(&mut self.0);
        if !runners.is_empty()
            && let Err(e) = tokio::task::spawn_blocking(move || stop_all(runners)).await
        {
            tracing::error!(error = %e, "stopping the mailboxes' background work failed");
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let runners = std::mem::take(&mut self.0);
        if !runners.is_empty() {
            let spawned = std::thread::Builder::new().name("vm-runner-stop".into()).spawn(move || stop_all(runners));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot stop the mailboxes' background work on a thread of its own");
            }
        }
    }
}

/// The mailbox's listener: hands a stored message to the application's stream, if it is open.
fn forward(to: &Weak<MessageSender>, meta: &MessageMeta) {
    let Some(sender) = to.upgrade() else { return };
    if let Some(tx) = sender.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        let _ = tx.send(meta.clone());
    }
}

impl Endpoint {
    /// Binds the SIP transports of `sip` and prepares the endpoint for `mailboxes`: one
    /// [`Mailbox`] (opened with [`Mailbox::open`] on a configuration whose greetings are
    /// loaded, for example by [`Config::load`](voicemail_core::config::Config::load)), which
    /// takes every call, or several ([`Mailboxes::open`] on a
    /// [`MailboxesConfig`](voicemail_core::config::MailboxesConfig)).
    ///
    /// The endpoint subscribes to every mailbox ([`Mailbox::subscribe`]) here: from now on
    /// every message they store goes to [`Endpoint::messages`] until [`Endpoint::run`]
    /// returns.
    pub async fn bind(sip: SipConfig, mailboxes: impl Into<Mailboxes>) -> Result<Self> {
        let mailboxes = mailboxes.into();
        let stack_token = CancellationToken::new();
        let transports = TransportLayer::new(stack_token.clone());
        let local_addr = bind_transports(&sip, &transports, &stack_token).await?;
        let tls_addr = bind_tls(&sip, &transports).await?;
        // The `Allow` of the stack's 501 answers: the same methods as ours.
        let allows = classify::allowed_methods(sip.mwi.is_some()).to_vec();
        let stack = rsipstack::EndpointBuilder::new()
            .with_user_agent(concat!("voicemail/", env!("CARGO_PKG_VERSION")))
            .with_cancel_token(stack_token.clone())
            .with_transport_layer(transports)
            .with_allows(allows)
            .with_inspector(Box::new(telemetry::Inspector))
            .build();
        let incoming = stack.incoming_transactions()?;
        let dialogs = DialogLayer::new(stack.inner.clone());
        let (messages_tx, messages_rx) = mpsc::unbounded_channel();
        let messages = Arc::new(Mutex::new(Some(messages_tx)));
        for mailbox in mailboxes.all() {
            // Weak: the mailbox may outlive the endpoint, and a listener cannot be removed.
            let to = Arc::downgrade(&messages);
            mailbox.subscribe(move |meta| forward(&to, meta));
        }
        if let Some(warning) = sip.open_network_warning() {
            tracing::warn!("{warning}");
        }
        let seed = seed();
        // RTP binds where SIP listens; the SDP names the advertised address.
        let ports = PortPool::new(sip.listen.ip(), sip.rtp_ports.0, sip.rtp_ports.1);
        let media = media::MediaEngine::per_core(sip.shared_rtp_ports, &ports).map_err(Error::Media)?;
        let invites = Mutex::new(InviteLimiter::new(sip.invite_rate, sip.invite_burst));
        let mwi = sip.mwi.clone().map(|config| Arc::new(mwi::MwiService::new(config)));
        if let Some(service) = &mwi {
            // Weak: as for the message stream; a message stored here wakes the watcher.
            for mailbox in mailboxes.all() {
                let wake = Arc::downgrade(&service.wake);
                mailbox.subscribe(move |_| {
                    if let Some(w) = wake.upgrade() {
                        w.notify_one();
                    }
                });
            }
        }
        let shared = Arc::new(Shared {
            sip,
            mailboxes,
            dialogs,
            ports,
            media,
            active: AtomicUsize::new(0),
            idle: Notify::new(),
            accepting: AtomicBool::new(true),
            shutdown: CancellationToken::new(),
            messages,
            local_addr,
            tls_addr,
            rng: Mutex::new(rand::rngs::SmallRng::seed_from_u64(seed)),
            registrations: Mutex::new(None),
            invites,
            log_limit: LogLimiter::new(LOG_LINES, LOG_INTERVAL),
            mwi,
            hooks: OnceLock::new(),
        });
        Ok(Self { shared, stack, incoming, messages: Some(messages_rx), stack_token, background: true })
    }

    /// Runs the endpoint without the mailbox's background work: [`Endpoint::run`] then starts
    /// no [`Runner`], so this endpoint neither delivers messages nor recovers interrupted
    /// calls. For embedders that run them elsewhere (their own [`Runner::start`], another
    /// process sharing the spool, `inbox deliver`). Calls are still made and stored by the
    /// mailbox, and [`Endpoint::messages`] still yields each message as it is stored; a
    /// message whose storing failed (a full disk) is stored by the next
    /// [`Mailbox::recover`], which is then the embedder's to run.
    pub fn without_background_work(mut self) -> Self {
        self.background = false;
        self
    }

    /// The address SIP listens on (with the real port when the configuration asked for 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The address SIP over TLS listens on (`[sip] tls_listen`, with the real port when the
    /// configuration asked for 0), if it does.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.shared.tls_addr
    }

    /// Installs the application's per-call hooks ([`crate::hooks`]): a decision on each new
    /// call, and notices of each call's state changes and DTMF keys. Starts the thread that
    /// hands notices to them (its failure to start is the error). Hooks installed once
    /// stay: a second call changes nothing.
    pub fn with_hooks(self, hooks: Arc<dyn CallHooks>, settings: HookSettings) -> std::io::Result<Self> {
        if self.shared.hooks.get().is_none() {
            let hooks = Hooks::start(hooks, settings)?;
            let _ = self.shared.hooks.set(Arc::new(hooks));
        }
        Ok(self)
    }

    /// The stream of stored messages: each message's metadata (with its `wav_path`) as soon
    /// as the mailbox has durably stored it, before any delivery is attempted. It carries
    /// this endpoint's calls, messages recovered from calls a dead process left (by the
    /// background work's recovery) and any other message stored through the same
    /// [`Mailbox`]. The stream ends when [`Endpoint::run`] returns. Take it before
    /// [`Endpoint::run`] (messages are not kept for a stream nobody took); returns `None`
    /// after the first call.
    pub fn messages(&mut self) -> Option<mpsc::UnboundedReceiver<MessageMeta>> {
        self.messages.take()
    }

    /// A handle to shut the endpoint down and read its counters.
    pub fn handle(&self) -> EndpointHandle {
        EndpointHandle { shared: self.shared.clone() }
    }

    /// Starts the mailbox's background work (unless
    /// [`without_background_work`](Endpoint::without_background_work)), serves SIP until
    /// [`EndpointHandle::shutdown`], then lets the calls in progress end (they are hung up
    /// with BYE and their messages stored), stops the background work (deliveries in progress
    /// finish, due ones get a last short pass) and returns. The message stream ends then.
    pub async fn run(mut self) -> Result<()> {
        // Nobody reads a stream that was not taken: don't pile messages up in it.
        drop(self.messages.take());
        let mut background = Background(Vec::new());
        if self.background {
            for mailbox in self.shared.mailboxes.all() {
                match Runner::start(mailbox) {
                    Ok(runner) => background.0.push(runner),
                    Err(e) => {
                        self.shared.close_messages();
                        return Err(Error::Background(e));
                    }
                }
            }
        }
        let result = self.serve().await;
        let shared = self.shared.clone();
        shared.shutdown.cancel();
        shared.accepting.store(false, Ordering::SeqCst);
        let registrations = shared.registrations.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(r) = registrations {
            r.shutdown().await;
        }
        self.stack_token.cancel();
        background.stop().await;
        // Every finished call has been stored: the application's message stream ends.
        shared.close_messages();
        result
    }

    /// The request loop, until shutdown and the end of the calls in progress (or the grace
    /// period), or until the SIP stack stops.
    async fn serve(&mut self) -> Result<()> {
        let inner = self.stack.inner.clone();
        let mut serve = tokio::spawn(async move { inner.serve().await });
        let shared = self.shared.clone();
        if !shared.sip.accounts.is_empty() {
            let handle = crate::register::spawn_registrations_with(
                self.stack.inner.clone(),
                shared.sip.accounts.clone(),
                registration_options(&shared),
                &self.stack_token,
            )?;
            *shared.registrations.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        }
        let _watcher = shared.mwi.clone().map(|service| {
            let watcher = tokio::spawn(mwi::watch_store(shared.clone(), service));
            AbortOnDrop(watcher)
        });
        let mut grace_deadline: Option<tokio::time::Instant> = None;
        loop {
            if grace_deadline.is_some() && shared.active.load(Ordering::SeqCst) == 0 {
                break;
            }
            let grace = async {
                match grace_deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                tx = self.incoming.recv() => match tx {
                    Some(tx) => on_transaction(&shared, tx),
                    None => break,
                },
                () = shared.shutdown.cancelled(), if grace_deadline.is_none() => {
                    shared.accepting.store(false, Ordering::SeqCst);
                    let calls = shared.active.load(Ordering::SeqCst);
                    tracing::info!(calls, "shutting down: new calls get 503, calls in progress are hung up");
                    grace_deadline = Some(tokio::time::Instant::now() + SHUTDOWN_GRACE);
                }
                () = shared.idle.notified() => {}
                () = grace => {
                    tracing::warn!(calls = shared.active.load(Ordering::SeqCst), "calls still running after the shutdown grace period");
                    break;
                }
                r = &mut serve => {
                    let e = match r {
                        Ok(Err(e)) => e.to_string(),
                        Ok(Ok(())) => "stopped".to_owned(),
                        Err(e) => e.to_string(),
                    };
                    tracing::error!(error = %e, "the sip stack stopped");
                    break;
                }
            }
        }
        Ok(())
    }
}

/// Our registered Contacts name where we listen (the advertised address, each transport's
/// listening port); TCP and TLS registrations get a keep-alive well within our own idle timeout.
fn registration_options(shared: &Shared) -> crate::register::RegistrationOptions {
    let ip = shared.sip.advertised_ip();
    let at = |port: u16| SocketAddr::new(ip, port);
    let sip = &shared.sip;
    crate::register::RegistrationOptions {
        contacts: crate::register::LocalContacts {
            udp: sip.udp.then(|| at(shared.local_addr.port())),
            tcp: sip.tcp.then(|| at(shared.local_addr.port())),
            tls: shared.tls_addr.map(|a| at(a.port())),
        },
        keepalive: crate::register::DEFAULT_KEEPALIVE.min(sip.idle_timeout / 2),
    }
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A seed from the OS's per-process hash keys and the clock.
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    h.finish()
}

/// The OS error inside a stack error (its errno kept: a busy port is `AddrInUse`), else the
/// stack's words.
fn io_error(e: rsipstack::Error) -> std::io::Error {
    match e {
        rsipstack::Error::IoError(e) => e,
        other => std::io::Error::other(other.to_string()),
    }
}

/// The receive buffer the SIP UDP socket asks for. Linux grants at most `net.core.rmem_max`
/// (doubled, like every size asked); the default would be `rmem_default`, 208 kB on Debian.
/// A burst of requests (a thousand INVITEs or BYEs in a second) queues while the SIP task
/// is busy, and with the default buffer a few hundred of them overflowed it and were dropped
/// (only the sender's retransmission, 500 ms later, got an answer).
pub(crate) const SIP_RCVBUF: usize = 2 << 20;

/// The SIP UDP socket: bound to `addr`, nonblocking, with a receive buffer of
/// [`SIP_RCVBUF`] (or what the kernel allows, said once in the log).
fn sip_udp_socket(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    let granted = media::ask_recv_buffer(socket2::SockRef::from(&socket), SIP_RCVBUF);
    if granted < SIP_RCVBUF {
        tracing::info!(
            granted,
            wanted = SIP_RCVBUF,
            "the SIP UDP socket's receive buffer is smaller than asked: raise net.core.rmem_max so bursts of requests are not dropped"
        );
    }
    socket.bind(&addr.into())?;
    tokio::net::UdpSocket::from_std(socket.into())
}

/// Binds UDP and TCP on the configured address; port 0 picks one free for both. TCP
/// connections are capped (`max_connections`, `max_connections_per_source`) and closed after
/// `idle_timeout` without traffic.
async fn bind_transports(sip: &SipConfig, layer: &TransportLayer, token: &CancellationToken) -> Result<SocketAddr> {
    layer.set_stream_connection_limits(sip.max_connections, sip.max_connections_per_source);
    layer.set_stream_idle_timeout(sip.idle_timeout);
    let want = sip.listen;
    for _attempt in 0..20 {
        let mut addr = want;
        let udp = if sip.udp {
            let socket = sip_udp_socket(addr).map_err(|source| Error::Bind { transport: "udp", addr, source })?;
            let conn = UdpConnection::from_socket(Arc::new(socket), None, Some(token.child_token()))
                .await
                .map_err(|e| Error::Bind { transport: "udp", addr, source: io_error(e) })?;
            let bound = conn.get_addr().get_socketaddr().unwrap_or(addr);
            addr.set_port(bound.port());
            Some(conn)
        } else {
            None
        };
        if sip.tcp {
            if want.port() == 0 && !sip.udp {
                let l = std::net::TcpListener::bind(addr).map_err(|source| Error::Bind {
                    transport: "tcp",
                    addr,
                    source,
                })?;
                addr = l.local_addr().map_err(|source| Error::Bind { transport: "tcp", addr, source })?;
            }
            // rsipstack binds the listener only when serving; check the port now.
            match std::net::TcpListener::bind(addr) {
                Ok(l) => drop(l),
                Err(_) if want.port() == 0 => continue,
                Err(source) => return Err(Error::Bind { transport: "tcp", addr, source }),
            }
        }
        // UDP first: the first listener is the one rsipstack names in the Via of in-dialog
        // requests sent over UDP (BYE, NOTIFY), which must say UDP (RFC 3261 §18.1.1).
        if let Some(udp) = udp {
            layer.add_transport(udp.into());
        }
        if sip.tcp {
            let tcp = TcpListenerConnection::new(addr, None).await?;
            layer.add_transport(tcp.into());
        }
        return Ok(addr);
    }
    Err(Error::Bind {
        transport: "tcp",
        addr: want,
        source: std::io::Error::other("no port free for both UDP and TCP"),
    })
}

/// Configures TLS: the CAs trusted for outgoing connections, and the TLS listener of
/// `[sip] tls_listen` (port 0 picks a free one). Returns the listener's address.
async fn bind_tls(sip: &SipConfig, layer: &TransportLayer) -> Result<Option<SocketAddr>> {
    let addr = match &sip.tls {
        None => None,
        Some(tls) => {
            // rsipstack binds the listener only when serving; check (and pick) the port now.
            let listener = std::net::TcpListener::bind(tls.addr).map_err(|source| Error::Bind {
                transport: "tls",
                addr: tls.addr,
                source,
            })?;
            let addr =
                listener.local_addr().map_err(|source| Error::Bind { transport: "tls", addr: tls.addr, source })?;
            drop(listener);
            Some(addr)
        }
    };
    crate::tls::bind(sip, layer, addr).await?;
    Ok(addr)
}

/// The source IP of a transaction's request (loopback when unknown).
fn source_of(tx: &Transaction) -> IpAddr {
    tx.connection
        .as_ref()
        .and_then(|c| c.get_remote_addr())
        .and_then(|a| a.get_socketaddr().ok())
        .map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |a| a.ip())
}

fn on_transaction(shared: &Arc<Shared>, tx: Transaction) {
    let source = source_of(&tx);
    if tx.original.method == Method::Invite && !classify::has_to_tag(&tx.original) {
        let limited = shared.invites.lock().unwrap_or_else(|e| e.into_inner()).check(source, Instant::now());
        if let Err(retry_after) = limited {
            if let Some(suppressed) = shared.log_limit.allow("invite-rate", Instant::now()) {
                tracing::warn!(%source, retry_after, suppressed, "INVITE rate limit of the source exceeded: 503");
            }
            telemetry::rejected("invite_rate");
            let why = "INVITE rate limit".to_owned();
            tokio::spawn(send_reply(tx, Reply { status: 503, extra: ReplyExtra::RetryAfter(retry_after), why }));
            return;
        }
    }
    if tx.original.method == Method::Subscribe && shared.mwi.is_some() && !classify::has_to_tag(&tx.original) {
        tokio::spawn(mwi::on_subscribe(shared.clone(), tx, source));
        return;
    }
    let dialog = shared.dialogs.match_dialog(&tx);
    if let Some(rsipstack::dialog::dialog::Dialog::ServerSubscription(d)) = &dialog
        && classify::check_request(&tx.original).is_ok()
    {
        match tx.original.method {
            Method::Subscribe => mwi::on_resubscribe(shared, tx, &d.id().to_string()),
            Method::Ack => {}
            _ => {
                // A subscription dialog takes re-SUBSCRIBEs only (and exists only with MWI on).
                let extra = ReplyExtra::AllowAccept { subscriptions: true };
                let reply = Reply { status: 405, extra, why: "not in a subscription".into() };
                tokio::spawn(send_reply(tx, reply));
            }
        }
        return;
    }
    let allow_from = shared.sip.allow_from.as_slice();
    let policy = Policy {
        accepting: shared.accepting.load(Ordering::SeqCst),
        allow_from,
        active_calls: shared.active.load(Ordering::SeqCst),
        max_calls: shared.sip.max_calls,
        srtp: shared.sip.srtp,
        subscriptions: shared.mwi.is_some(),
    };
    let decision = classify::classify_request(&tx.original, source, dialog.is_some(), &policy);
    match decision {
        Decision::NewCall(new_call) => {
            let Some((mailbox, diverted_from)) = mailbox_for(shared, &tx.original, source) else {
                telemetry::rejected("no_mailbox");
                let why = "no mailbox for the number called".to_owned();
                tokio::spawn(send_reply(tx, Reply { status: 404, extra: ReplyExtra::None, why }));
                return;
            };
            telemetry::calls_in_progress(shared.active.fetch_add(1, Ordering::SeqCst) + 1);
            let slot = Slot(shared.clone());
            let shared = shared.clone();
            // The set-up's state is boxed apart, so it is freed once the call is answered: the
            // future that lives as long as the call holds only a `LiveCall`.
            let set_up = Box::pin(set_up_call(shared, tx, new_call, mailbox, diverted_from, slot));
            tokio::spawn(async move {
                if let Some(call) = set_up.await {
                    call.run().await;
                }
            });
        }
        Decision::InDialog => {
            if let Some(mut dialog) = dialog {
                tokio::spawn(async move {
                    let mut tx = tx;
                    if let Err(e) = dialog.handle(&mut tx).await {
                        tracing::debug!(error = %e, "in-dialog request");
                    }
                });
            }
        }
        Decision::Reply(reply) => {
            if reply.status >= 400 {
                tracing::debug!(method = %tx.original.method, status = reply.status, why = %reply.why, %source, "rejected");
                if reply.why == classify::CALL_LIMIT
                    && let Some(suppressed) = shared.log_limit.allow("call-limit", Instant::now())
                {
                    let max_calls = shared.sip.max_calls;
                    tracing::warn!(%source, max_calls, suppressed, "sip.max_calls calls in progress: a new call refused with 503");
                }
                if tx.original.method == Method::Invite && !classify::has_to_tag(&tx.original) {
                    telemetry::invite_refused(reply.status, &reply.why);
                }
            }
            tokio::spawn(send_reply(tx, reply));
        }
        Decision::Ignore | Decision::Drop => {}
    }
}

/// The mailbox a new call is for, and the number that diverted it here (if any): see
/// [`crate::divert`] and [`Mailboxes::select`]. `None` (logged, at a bounded rate) when no
/// mailbox takes it.
fn mailbox_for(shared: &Shared, req: &Request, source: IpAddr) -> Option<(Mailbox, Option<String>)> {
    let dialled = crate::divert::dialled(req);
    let Some(selected) = shared.mailboxes.select(&dialled) else {
        if let Some(suppressed) = shared.log_limit.allow("no-mailbox", Instant::now()) {
            tracing::info!(
                diverted_from = dialled.diverted_from.as_deref().unwrap_or(""),
                request_uri = dialled.request_uri.as_deref().unwrap_or(""),
                to = dialled.to.as_deref().unwrap_or(""),
                %source,
                suppressed,
                "no mailbox for the number called: 404"
            );
        }
        return None;
    };
    tracing::debug!(mailbox = %selected.mailbox.config().mailbox, by = selected.by.as_str(), "mailbox chosen");
    Some((selected.mailbox.clone(), dialled.diverted_from))
}

fn extra_headers(extra: &ReplyExtra) -> Vec<Header> {
    match extra {
        ReplyExtra::None => Vec::new(),
        ReplyExtra::AllowAccept { subscriptions } => {
            let mut headers = vec![
                Header::Allow(rsipstack::sip::Allow::new(classify::allow(*subscriptions))),
                Header::Accept(rsipstack::sip::Accept::new(ACCEPT)),
            ];
            if *subscriptions {
                headers.push(Header::Other("Allow-Events".into(), crate::mwi::EVENT_PACKAGE.into()));
            }
            headers
        }
        ReplyExtra::Unsupported(list) => vec![Header::Unsupported(rsipstack::sip::Unsupported::new(list.clone()))],
        ReplyExtra::RetryAfter(s) => vec![Header::RetryAfter(rsipstack::sip::RetryAfter::new(s.to_string()))],
    }
}

async fn send_reply(mut tx: Transaction, reply: Reply) {
    let headers = extra_headers(&reply.extra);
    if let Err(e) = tx.reply_with(StatusCode::from(reply.status), headers, None).await {
        tracing::debug!(error = %e, status = reply.status, "sending a reply failed");
    }
}

/// Our Contact for a dialog whose INVITE came over `transport`: the advertised address with
/// the port of that transport's listener. Over TLS it is a `sips:` URI when the INVITE's
/// Request-URI was one (RFC 3261 §12.1.1), else `;transport=tls`.
fn contact_uri(
    shared: &Shared,
    transport: Transport,
    request_uri: &rsipstack::sip::Uri,
) -> Option<rsipstack::sip::Uri> {
    let ip = shared.sip.advertised_ip();
    let host = match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    let user = &shared.sip.user;
    let uri = match (transport, shared.tls_addr) {
        (Transport::Tls, Some(tls)) if matches!(request_uri.scheme, Some(rsipstack::sip::Scheme::Sips)) => {
            format!("sips:{user}@{host}:{}", tls.port())
        }
        (Transport::Tls, Some(tls)) => format!("sip:{user}@{host}:{};transport=tls", tls.port()),
        (Transport::Tcp, _) => format!("sip:{user}@{host}:{};transport=tcp", shared.local_addr.port()),
        _ => format!("sip:{user}@{host}:{}", shared.local_addr.port()),
    };
    rsipstack::sip::Uri::try_from(uri.as_str()).ok()
}

/// Whether a negotiated direction lets us send RTP.
fn may_send(n: &Negotiated) -> bool {
    n.remote_rtp.is_some() && matches!(n.direction, Direction::SendRecv | Direction::RecvOnly)
}

/// A new call from its INVITE to its answer: the hooks, the RTP socket, the SDP answer, the
/// dialog, the call made by the mailbox, its media, then 180/200 and the ACK (a call whose
/// 200 OK is never ACKed goes on as a `LiveCall` to be discarded). `None` when the call was
/// refused; its reply has been sent.
async fn set_up_call(
    shared: Arc<Shared>,
    mut tx: Transaction,
    new_call: Box<NewCall>,
    mailbox: Mailbox,
    diverted_from: Option<String>,
    slot: Slot,
) -> Option<LiveCall> {
    let counted = telemetry::CallOutcome::new();
    let source = tx.connection.as_ref().and_then(|c| c.get_remote_addr()).map(|a| a.to_string()).unwrap_or_default();
    let transport = tx.connection.as_ref().map_or(Transport::Udp, |c| c.transport());
    if let Err(e) = tx.send_trying().await {
        tracing::debug!(error = %e, "100 trying");
    }
    // 0. The application's say (`crate::hooks`), within its time budget.
    let (mailbox, greeting, notifier) = match apply_hooks(&shared, &tx, &new_call, mailbox, &diverted_from).await {
        Ok(chosen) => chosen,
        Err(reply) => {
            send_reply(tx, reply).await;
            return None;
        }
    };
    // 1. The RTP port, and the answer with it.
    let rtp_port = match shared.media.rtp_port(&shared.ports) {
        Ok(s) => s,
        Err(e) => {
            if let Some(suppressed) = shared.log_limit.allow("no-rtp-port", Instant::now()) {
                tracing::warn!(error = %e, suppressed, "no RTP port for a new call");
            }
            telemetry::rejected("no_rtp_port");
            send_reply(tx, Reply { status: 503, extra: ReplyExtra::RetryAfter(5), why: e.to_string() }).await;
            return None;
        }
    };
    let port = rtp_port.local_addr().map_or(0, |a| a.port());
    let signal_ip = Some(source_of(&tx)).filter(|ip| !ip.is_unspecified());
    let local = LocalMedia { ip: shared.sip.advertised_ip(), port, session_id: shared.random() >> 1, version: 1 };
    let offer = tx.original.body.clone();
    let media_config = mailbox.config().media.clone();
    let Some(srtp_offer) = srtp_offer(&shared) else {
        telemetry::rejected("internal");
        send_reply(tx, Reply { status: 500, extra: ReplyExtra::None, why: "no random key for SRTP".into() }).await;
        return None;
    };
    // A late offer (no SDP): our offer goes in the 200 OK, the call starts with our first
    // codec and takes the answer's from the ACK.
    let late_offer = offer.is_empty().then(|| sdp::make_offer_srtp(&local, &media_config, &srtp_offer));
    let (negotiated, srtp_keys) = match &late_offer {
        Some(ours) => (ours.provisional(), None),
        None => match sdp::negotiate_srtp(&offer, &local, &media_config, &srtp_offer) {
            Ok(n) => n,
            Err(e) => {
                let status = if matches!(e, SdpError::Malformed(_)) { 400 } else { 488 };
                telemetry::invite_refused(status, "");
                send_reply(tx, Reply { status, extra: ReplyExtra::None, why: e.to_string() }).await;
                return None;
            }
        },
    };
    // 2. The dialog (in memory only: nothing is sent yet).
    let (state_tx, mut states) = shared.dialogs.new_dialog_state_channel();
    let contact = contact_uri(&shared, transport, &tx.original.uri);
    let dialog = match shared.dialogs.get_or_create_server_invite(&tx, state_tx, None, contact) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "cannot create the dialog");
            telemetry::rejected("internal");
            send_reply(tx, Reply { status: 500, extra: ReplyExtra::None, why: e.to_string() }).await;
            return None;
        }
    };
    let dialog_id = dialog.id();
    // 3. The call, made by the mailbox (id, greeting, recording in the spool), last: a call
    // refused before this point leaves no file.
    let parties = &new_call.parties;
    let mut setup = CallSetup::new(parties.caller.clone(), Timestamp::now()).with_codec(negotiated.codec);
    setup.payload_type = negotiated.payload_type;
    setup.dtmf_payload_type = negotiated.dtmf_payload_type;
    setup.ptime = negotiated.ptime;
    setup.caller_name = parties.caller_name.clone();
    setup.called = parties.called.clone();
    setup.diverted_from = diverted_from;
    setup.greeting = greeting;
    let starting = mailbox.clone();
    let started = tokio::task::spawn_blocking(move || starting.start_call(setup, Instant::now())).await;
    let (call, lease) = match started {
        Ok(Ok(StartedCall { call, lease })) => (call, lease),
        Ok(Err(e)) => {
            telemetry::rejected(if e.is_full() { "spool_full" } else { "internal" });
            let reply = if e.is_full() {
                if let Some(suppressed) = shared.log_limit.allow("spool-full", Instant::now()) {
                    tracing::warn!(caller = %parties.caller, %source, error = %e, suppressed, "the spool is full: call refused with 503");
                }
                Reply { status: 503, extra: ReplyExtra::RetryAfter(FULL_RETRY_AFTER_S), why: e.to_string() }
            } else {
                tracing::error!(caller = %parties.caller, %source, error = %e, "cannot start the call");
                Reply { status: 500, extra: ReplyExtra::None, why: e.to_string() }
            };
            shared.dialogs.remove_dialog(&dialog_id);
            send_reply(tx, reply).await;
            return None;
        }
        Err(e) => {
            tracing::error!(caller = %parties.caller, %source, error = %e, "starting the call failed");
            telemetry::rejected("internal");
            shared.dialogs.remove_dialog(&dialog_id);
            send_reply(tx, Reply { status: 500, extra: ReplyExtra::None, why: e.to_string() }).await;
            return None;
        }
    };
    let id = lease.id().clone();
    {
        let mut d = dialog.clone();
        tokio::spawn(async move {
            if let Err(e) = d.handle(&mut tx).await {
                tracing::debug!(error = %e, "invite transaction");
            }
        });
    }
    tracing::debug!(%id, caller = %parties.caller, called = %parties.called, %source, codec = ?negotiated.codec, "incoming call");
    // 4. Media.
    let srtp_session = match srtp_keys.as_ref().map(SrtpSession::new).transpose() {
        Ok(session) => session,
        Err(e) => {
            // Keys of the right length are always taken: this is not expected.
            tracing::error!(%id, error = %e, "srtp");
            None
        }
    };
    let (commands, media) = shared.media.start(media::MediaStart {
        call,
        port: rtp_port,
        signal_ip,
        remote: negotiated.remote_rtp,
        send: may_send(&negotiated),
        notifier,
        srtp: srtp_session,
    });
    let mut call_state = CallSignal { remote_ended: false, shutdown_hangup: false, bye: false };
    // 5. 180 Ringing, the ring delay, 200 OK, the ACK.
    let answering = answer::Answering {
        shared: &shared,
        dialog: &dialog,
        states: &mut states,
        commands: &commands,
        sdp: negotiated.answer.clone().into_bytes(),
        late_offer: late_offer.as_ref(),
        signal: &mut call_state,
        id: &id,
    };
    let acked = answer::answer(answering).await;
    let mut offer_state = OfferState { negotiated, media_config, srtp: (srtp_offer, srtp_keys), reoffer: None };
    if let answer::AckOutcome::Acked(Some((n, keys))) = &acked {
        // The caller's SDP of a late offer is its answer: the session is what it settled.
        offer_state.negotiated = n.clone();
        offer_state.srtp.1 = *keys;
    }
    let discard = matches!(acked, answer::AckOutcome::NotAcked);
    Some(LiveCall {
        shared,
        mailbox,
        new_call,
        counted,
        source,
        dialog,
        dialog_id,
        states,
        commands,
        media,
        local,
        offer_state,
        call_state,
        discard,
        lease,
        id,
        _slot: slot,
    })
}

/// A call after its answer (or after giving up on the ACK): what the rest of its life needs.
/// It lives as long as the call, so it is kept small: the set-up's state lives in
/// [`set_up_call`]'s own future, freed before the call goes on.
struct LiveCall {
    shared: Arc<Shared>,
    mailbox: Mailbox,
    new_call: Box<NewCall>,
    counted: telemetry::CallOutcome,
    source: String,
    dialog: rsipstack::dialog::invite_dialog::InviteDialog,
    dialog_id: rsipstack::dialog::DialogId,
    states: rsipstack::dialog::dialog::DialogStateReceiver,
    commands: media::Commands,
    media: tokio::sync::oneshot::Receiver<media::MediaOutcome>,
    local: LocalMedia,
    offer_state: OfferState,
    call_state: CallSignal,
    /// The 200 OK was never ACKed: no message.
    discard: bool,
    lease: CallLease,
    id: voicemail_core::MessageId,
    _slot: Slot,
}

impl LiveCall {
    /// The call until its media ends, then its message and the BYE.
    async fn run(self) {
        let LiveCall {
            shared,
            mailbox,
            new_call,
            mut counted,
            source,
            dialog,
            dialog_id,
            mut states,
            commands,
            mut media,
            mut local,
            mut offer_state,
            mut call_state,
            discard,
            lease,
            id,
            _slot,
        } = self;
        // 6. The call, until its media ends.
        let outcome = loop {
            tokio::select! {
                r = &mut media => break r,
                st = states.recv() => match st {
                    Some(state) => {
                        Box::pin(on_dialog_state(state, &dialog, &shared, &mut local, &mut offer_state, &commands, &mut call_state))
                            .await;
                    }
                    None => {
                        if !call_state.remote_ended {
                            call_state.remote_ended = true;
                            commands.send(MediaCommand::Hangup);
                        }
                        // Keep waiting for the media only.
                        break (&mut media).await;
                    }
                },
                () = shared.shutdown.cancelled(), if !call_state.shutdown_hangup && !call_state.remote_ended => {
                    call_state.shutdown_hangup = true;
                    commands.send(MediaCommand::Hangup);
                }
            }
        };
        drop(commands);
        // 7. The message, stored by the mailbox (which tells the application); then the BYE.
        let (meta, ended_by_call) = match outcome {
            Ok(o) => (o.meta, o.ended_by_call),
            Err(e) => {
                tracing::error!(%id, error = %e, "the call's media failed");
                (None, true)
            }
        };
        let we_end = !call_state.remote_ended && (ended_by_call || call_state.shutdown_hangup || call_state.bye);
        if discard {
            // A 200 OK never ACKed is not a call (RFC 3261 §13.3.1.4): no message, and the slot
            // is free at once; the BYE goes on without it.
            if let Some(suppressed) = shared.log_limit.allow("no-ack", Instant::now()) {
                tracing::warn!(%id, caller = %new_call.parties.caller, %source, suppressed, "the 200 OK was never ACKed: call dropped without a message");
            }
            counted.set("not_acked");
            Box::pin(discard_call(&mailbox, lease)).await;
            let shared = shared.clone();
            tokio::spawn(async move {
                if we_end {
                    Box::pin(end_dialog(&dialog, &id)).await;
                }
                shared.dialogs.remove_dialog(&dialog_id);
            });
            return;
        }
        if let Some(meta) = &meta {
            telemetry::rtp(&meta.media);
        }
        match meta {
            Some(meta) => {
                // Stored now, or kept by the mailbox and stored by recovery.
                counted.set("recorded");
                Box::pin(finish_call(&mailbox, lease, meta, &source)).await;
            }
            None => {
                counted.set("failed");
                // Letting go of the recording lets recovery store it (end reason `interrupted`).
                drop(lease);
                tracing::error!(%id, "the call ended without a message; recovery will store its recording");
            }
        }
        if we_end {
            Box::pin(end_dialog(&dialog, &id)).await;
        }
        shared.dialogs.remove_dialog(&dialog_id);
    }
}

/// The application's decision on a new call, when hooks are installed: `Err` with the reply
/// when it rejects the call; else the mailbox and greeting to use and the call's notifier.
async fn apply_hooks(
    shared: &Shared,
    tx: &Transaction,
    new_call: &NewCall,
    mailbox: Mailbox,
    diverted_from: &Option<String>,
) -> std::result::Result<(Mailbox, Option<String>, Option<CallNotifier>), Reply> {
    let Some(hooks) = shared.hooks.get() else { return Ok((mailbox, None, None)) };
    use rsipstack::sip::prelude::HeadersExt as _;
    let call_id = tx.original.call_id_header().map(|h| h.value().to_owned()).unwrap_or_default();
    let parties = &new_call.parties;
    let call = IncomingCall {
        call_id: call_id.clone(),
        caller: parties.caller.clone(),
        caller_name: parties.caller_name.clone(),
        called: parties.called.clone(),
        diverted_from: diverted_from.clone(),
        mailbox: mailbox.config().mailbox.clone(),
        source: source_of(tx),
    };
    let accept = match hooks.decide(call).await {
        CallDecision::Reject(status) => {
            tracing::info!(%call_id, caller = %parties.caller, status = status.code(), "call rejected by the on_call hook");
            return Err(Reply {
                status: status.code(),
                extra: ReplyExtra::None,
                why: "rejected by the application".into(),
            });
        }
        CallDecision::Accept(accept) => accept,
    };
    let mut mailbox = mailbox;
    if let Some(name) = &accept.mailbox {
        match shared.mailboxes.get(name) {
            Some(chosen) => mailbox = chosen.clone(),
            None => tracing::warn!(%call_id, mailbox = %name, "the on_call hook chose an unknown mailbox: ignored"),
        }
    }
    let greeting = accept.greeting.filter(|name| {
        let known = mailbox.config().greetings.contains_key(name);
        if !known {
            tracing::warn!(%call_id, greeting = %name, "the on_call hook chose a greeting the mailbox does not have: ignored");
        }
        known
    });
    Ok((mailbox, greeting, Some(CallNotifier::new(call_id, hooks.clone()))))
}

/// Ends the dialog from our side: BYE once answered (bounded by [`BYE_TIMEOUT`]), else a 480.
async fn end_dialog(dialog: &rsipstack::dialog::invite_dialog::InviteDialog, id: &voicemail_core::MessageId) {
    match dialog.state() {
        DialogState::Confirmed(..) | DialogState::WaitAck(..) => {
            match tokio::time::timeout(BYE_TIMEOUT, dialog.bye()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%id, error = %e, "BYE"),
                Err(_) => tracing::debug!(%id, "no answer to our BYE"),
            }
        }
        DialogState::Terminated(..) => {}
        _ => {
            let _ = dialog.reject(Some(StatusCode::TemporarilyUnavailable), None);
        }
    }
}

/// Drops a call that never was one ([`Mailbox::discard_call`] on a blocking thread).
async fn discard_call(mailbox: &Mailbox, lease: CallLease) {
    let id = lease.id().clone();
    let mailbox = mailbox.clone();
    let discarded =
        tokio::task::spawn_blocking(move || mailbox.discard_call(lease, "the 200 OK was never ACKed")).await;
    match discarded {
        Ok(Ok(())) => {}
        // The mailbox logged it; recovery stores the call as interrupted.
        Ok(Err(_)) => {}
        Err(e) => tracing::error!(%id, error = %e, "discarding the call failed; recovery will store it"),
    }
}

/// Stores a finished call's message: [`Mailbox::finish_call`] on a blocking thread (it syncs
/// the recording and commits to the store).
async fn finish_call(mailbox: &Mailbox, lease: CallLease, meta: MessageMeta, source: &str) {
    let id = lease.id().clone();
    let mailbox = mailbox.clone();
    let stored = tokio::task::spawn_blocking(move || mailbox.finish_call(lease, meta, Timestamp::now())).await;
    match stored {
        Ok(Ok(meta)) => tracing::info!(
            %id,
            mailbox = meta.mailbox.as_deref().unwrap_or(""),
            caller = %meta.caller,
            called = %meta.called,
            duration_ms = meta.duration_ms,
            end_reason = %meta.end_reason,
            codec = ?meta.codec,
            dtmf = %meta.dtmf,
            %source,
            "call recorded"
        ),
        // The mailbox logged it and keeps the message; recovery stores it later.
        Ok(Err(e)) => tracing::warn!(%id, error = %e, "the message is not stored yet"),
        Err(e) => tracing::error!(%id, error = %e, "storing the message failed; recovery will store its recording"),
    }
}

struct CallSignal {
    /// The caller (or the stack) ended the dialog: no BYE from us.
    remote_ended: bool,
    /// We hung the call up because of a shutdown.
    shutdown_hangup: bool,
    /// We hung the call up for a signalling reason (no ACK, an ACK without an acceptable
    /// answer): BYE.
    bye: bool,
}

struct OfferState {
    negotiated: Negotiated,
    /// The codec preference; a new offer keeps the call's codec when it still has it.
    media_config: voicemail_core::config::MediaConfig,
    /// The SRTP policy with our key (kept for the whole call) and the keys in use.
    srtp: (SrtpOffer, Option<SrtpKeys>),
    /// Our offer in the 200 OK of a re-INVITE without one, with that re-INVITE's CSeq number:
    /// its ACK brings the answer.
    reoffer: Option<(u32, sdp::LocalOffer)>,
}

/// The SRTP policy of a new call, with a fresh master key of ours (`None` when the system's
/// random source fails, which it does not).
fn srtp_offer(shared: &Shared) -> Option<SrtpOffer> {
    let mode = shared.sip.srtp;
    let local_key = match mode {
        crate::srtp::SrtpMode::Off => SrtpOffer::OFF.local_key,
        _ => match MasterKey::random() {
            Ok(key) => key,
            Err(e) => {
                tracing::error!(error = %e, "no random SRTP key");
                return None;
            }
        },
    };
    Some(SrtpOffer { mode, local_key })
}

/// A state change of a call's dialog.
async fn on_dialog_state(
    state: DialogState,
    dialog: &rsipstack::dialog::invite_dialog::InviteDialog,
    shared: &Shared,
    local: &mut LocalMedia,
    offers: &mut OfferState,
    commands: &media::Commands,
    call: &mut CallSignal,
) {
    // What the answers that list our methods carry (in-dialog OPTIONS, 405, 415).
    let allow_accept = &ReplyExtra::AllowAccept { subscriptions: shared.mwi.is_some() };
    match state {
        DialogState::Terminated(_, reason) => {
            if !matches!(reason, TerminatedReason::UasBye) && !call.remote_ended {
                call.remote_ended = true;
                commands.send(MediaCommand::Hangup);
            }
        }
        DialogState::Updated(_, req, handle) => on_offer(req, handle, local, offers, commands).await,
        DialogState::Info(_, req, handle) => {
            let ct = classify::content_type(&req);
            let status = match classify::info_dtmf(ct.as_deref(), &req.body) {
                InfoDtmf::Digit(d) => {
                    commands.send(MediaCommand::Dtmf(d));
                    StatusCode::OK
                }
                InfoDtmf::Empty => StatusCode::OK,
                InfoDtmf::UnsupportedType => StatusCode::UnsupportedMediaType,
                InfoDtmf::Invalid => StatusCode::BadRequest,
            };
            let headers =
                if status == StatusCode::UnsupportedMediaType { Some(extra_headers(allow_accept)) } else { None };
            let _ = handle.respond(status, headers, None).await;
        }
        DialogState::Options(_, _, handle) => {
            let _ = handle.respond(StatusCode::OK, Some(extra_headers(allow_accept)), None).await;
        }
        DialogState::Refer(_, _, handle)
        | DialogState::Message(_, _, handle)
        | DialogState::Notify(_, _, handle)
        | DialogState::Publish(_, _, handle) => {
            let _ = handle.respond(StatusCode::MethodNotAllowed, Some(extra_headers(allow_accept)), None).await;
        }
        DialogState::Confirmed(..) => {
            // After a re-INVITE without an offer, its ACK brings the answer to ours (also
            // notified after other requests: only that re-INVITE's ACK counts).
            if let Some((cseq, _)) = &offers.reoffer
                && let Some(ack) = dialog.last_remote_ack()
                && cseq_number(&ack) == Some(*cseq)
                && let Some((_, offer)) = offers.reoffer.take()
            {
                on_reoffer_answer(&ack.body, &offer, offers, commands, &shared.log_limit);
            }
        }
        DialogState::Calling(_) | DialogState::Trying(_) | DialogState::Early(..) | DialogState::WaitAck(..) => {}
    }
}

/// A re-INVITE or UPDATE: answer a new offer (hold, unhold, a new address, another codec) or,
/// for a re-INVITE without one, make ours ([`sdp::make_reoffer`]; the answer comes in the ACK,
/// [`on_reoffer_answer`]); an UPDATE without an offer changes nothing. The call's codec is
/// kept while the offer still has it; an offer without it gets the first of ours that it has,
/// and the call follows ([`MediaCommand::Codec`]: the recording keeps its rate, the greeting
/// goes on in the new codec).
async fn on_offer(
    req: Request,
    handle: TransactionHandle,
    local: &mut LocalMedia,
    offers: &mut OfferState,
    commands: &media::Commands,
) {
    let sdp_header = || vec![Header::ContentType(rsipstack::sip::ContentType::new("application/sdp"))];
    let mut next = *local;
    next.version = local.version.saturating_add(1);
    if req.body.is_empty() {
        if req.method == Method::Update {
            // RFC 3311 §5.2: an UPDATE without an offer changes nothing; its 200 has no SDP.
            let _ = handle.respond(StatusCode::OK, None, None).await;
            return;
        }
        // RFC 3261 §14.2: the 200 OK of a re-INVITE without an offer carries ours; the ACK
        // brings the answer (`on_reoffer_answer`).
        let srtp_key = offers.srtp.1.as_ref().map(|_| offers.srtp.0.local_key);
        let offer = sdp::make_reoffer(&next, &offers.negotiated, &offers.media_config, srtp_key);
        let body = offer.sdp.clone().into_bytes();
        *local = next;
        offers.reoffer = cseq_number(&req).map(|cseq| (cseq, offer));
        let _ = handle.respond(StatusCode::OK, Some(sdp_header()), Some(body)).await;
        return;
    }
    let body = req.body.clone();
    let mut keep = offers.media_config.clone();
    keep.codecs.retain(|c| *c != offers.negotiated.codec);
    keep.codecs.insert(0, offers.negotiated.codec);
    // A call that started with SRTP stays with SRTP (and one without stays without).
    let (mut srtp_offer, keys_in_use) = offers.srtp;
    srtp_offer.mode = if keys_in_use.is_some() { crate::srtp::SrtpMode::Required } else { crate::srtp::SrtpMode::Off };
    match sdp::negotiate_srtp(&body, &next, &keep, &srtp_offer) {
        Ok((n, keys)) => {
            *local = next;
            let answer = n.answer.clone().into_bytes();
            follow_session(offers, n, keys, commands);
            let _ = handle.respond(StatusCode::OK, Some(sdp_header()), Some(answer)).await;
        }
        Err(SdpError::NotAcceptable(_)) => {
            let _ = handle.respond(StatusCode::NotAcceptableHere, None, None).await;
        }
        Err(SdpError::Malformed(_)) => {
            let _ = handle.respond(StatusCode::BadRequest, None, None).await;
        }
    }
}

/// The call follows a new offer/answer exchange: its codec and SRTP keys when they changed,
/// where to send, and whether it is on hold; `n` and `keys` become the session's.
fn follow_session(offers: &mut OfferState, n: Negotiated, keys: Option<SrtpKeys>, commands: &media::Commands) {
    let was = &offers.negotiated;
    if (n.codec, n.payload_type, n.dtmf_payload_type) != (was.codec, was.payload_type, was.dtmf_payload_type) {
        let change =
            CodecChange { codec: n.codec, payload_type: n.payload_type, dtmf_payload_type: n.dtmf_payload_type };
        tracing::debug!(from = ?was.codec, to = ?n.codec, payload_type = n.payload_type, "codec changed");
        commands.send(MediaCommand::Codec(change));
    }
    let key_of = |k: &SrtpKeys| (k.suite, k.remote);
    if keys.as_ref().map(key_of) != offers.srtp.1.as_ref().map(key_of)
        && let Some(keys) = keys
    {
        commands.send(MediaCommand::Srtp(keys));
    }
    // Any direction that is not two-way is a hold (RFC 3264 §8.4; `c=0.0.0.0` is RFC 2543's).
    let hold = !may_send(&n) || !n.direction.remote_sends();
    commands.send(MediaCommand::Remote { addr: n.remote_rtp, send: may_send(&n), hold });
    tracing::debug!(direction = ?n.direction, remote = ?n.remote_rtp, "session modified");
    offers.srtp.1 = keys;
    offers.negotiated = n;
}

/// The CSeq number of an in-dialog request.
fn cseq_number(req: &Request) -> Option<u32> {
    rsipstack::sip::prelude::HeadersExt::cseq_header(req).ok().and_then(|c| c.seq().ok())
}

/// The answer (in the ACK) to our offer in the 200 OK of a re-INVITE without one: the call
/// follows it (codec, keys, where to send, hold), as for a new offer. An ACK without an
/// acceptable answer leaves the session as it was (logged at a bounded rate): the caller is
/// still there, and hanging up would cut the message short.
fn on_reoffer_answer(
    body: &[u8],
    offer: &sdp::LocalOffer,
    offers: &mut OfferState,
    commands: &media::Commands,
    log_limit: &crate::limit::LogLimiter,
) {
    match sdp::accept_answer_srtp(body, offer) {
        Ok((n, keys)) => follow_session(offers, n, keys, commands),
        Err(e) => {
            if let Some(suppressed) = log_limit.allow("reoffer-answer", Instant::now()) {
                tracing::warn!(error = %e, suppressed, "the ACK of a re-INVITE without an offer has no acceptable answer to ours: the session stays as it was");
            }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_sip_udp_socket_asks_for_a_receive_buffer_for_bursts() {
        let socket = sip_udp_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let granted = socket2::SockRef::from(&socket).recv_buffer_size().unwrap();
        let max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max").unwrap().trim().parse().unwrap();
        // Linux caps what is asked at rmem_max and doubles it; left alone, the socket would
        // have rmem_default.
        assert_eq!(granted, 2 * SIP_RCVBUF.min(max));
    }
}
