//! RTP for every call: the port pool and the media threads that drive the core [`Call`]s.
//!
//! A few media threads ([`MediaEngine`], one per core by default) each own many calls. A
//! thread waits on one `epoll` set for all its calls' RTP sockets, its command queue and the
//! earliest deadline of its calls (one timer heap per thread, no timer per call). For each
//! call it is a thin driver in the quinn style: it drains [`Call::poll_output`] (sending each
//! RTP packet to the caller, reporting events, keeping the deadline), then feeds whatever
//! comes first: a datagram on the call's socket ([`Input::Rtp`]), the deadline
//! ([`Input::Tick`]) or a command from the call's signalling ([`MediaCommand`], through
//! [`Commands`]). When the call is [`CallState::Ended`] its [`MediaOutcome`] (the message's
//! metadata) goes to the signalling side.
//!
//! Nothing is allocated per packet: each thread reuses one receive buffer and one send
//! buffer for all its calls, and the greeting's payloads are shared `Bytes` slices. Sockets
//! are edge-triggered and read until empty. A panic while one call is handled ends that call
//! only (its recording is left to recovery); the thread goes on with the others.
//!
//! **Shared RTP ports** ([`MediaEngine::with_shared_ports`], the `[sip]` key
//! `shared_rtp_ports`): instead of a socket per call, each thread has a few RTP ports that all
//! its calls share, so one `recvmmsg` reads up to [`quinn_udp::BATCH_SIZE`] packets of many calls
//! and the kernel keeps a handful of sockets instead of one per call. A datagram goes to the call
//! whose remote address (the SDP's, then the latched one) it comes from; when several calls
//! have that address, to the one whose SSRC it carries (or to one that has none yet). A datagram
//! from an address no call has latches a call only if exactly one call not yet latched came by
//! SIP from the datagram's IP address (a caller behind NAT); otherwise it is dropped and
//! counted. Latching is thus stricter than with a port per call (where the first RTP packet
//! from anywhere latches), never looser.
//!
//! SRTP: every packet is protected before it is sent and unprotected when it arrives, in
//! place in the thread's buffers ([`SrtpSession`]); a packet that does not authenticate is
//! dropped before anything else looks at it, so it cannot move the latch below.
//!
//! Symmetric RTP: packets go to the address the SDP names until the first RTP packet
//! arrives; from then on they go to (and are only accepted from) the address the caller
//! really sends from. RTCP arriving on the RTP port is handed to the core, which drops and
//! counts it, and never moves the latch.
//!
//! Nothing is sent before the caller has shown it is there: the greeting starts at the ACK
//! ([`MediaCommand::Answered`]) or, once the 200 OK is out ([`MediaCommand::Accepted`]), at the
//! first RTP packet from the caller, whichever comes first. An INVITE whose SDP names someone
//! else's address and which is never ACKed thus sends no RTP anywhere.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Poll, Token, Waker};
use quinn_udp::{RecvMeta, UdpSocketState};
use tokio::sync::oneshot;
use voicemail_core::{Call, CallState, CodecChange, DtmfDigit, Event, Input, MessageMeta, Output};

use crate::hooks::CallNotifier;
use crate::srtp::{SRTP_TRAILER_ROOM, SrtpKeys, SrtpSession};

/// The largest datagram the thread accepts (larger ones are truncated, and then malformed).
const RECV_BUF: usize = 2048;

/// Datagrams read from one call's socket at once (`recvmmsg`). A call's socket rarely holds
/// more than one; a batch that comes back short means the socket is empty.
const RECV_BATCH: usize = 4;

/// Datagrams read from a shared port at once: as many as one `recvmmsg` of quinn-udp takes.
const SHARED_BATCH: usize = quinn_udp::BATCH_SIZE;

/// Batches one shared port may read in one turn of its thread; a port with more waiting is
/// read again after the thread's timers and commands (so a flood on one port delays them by
/// at most this many batches).
const SHARED_TURN: usize = 8;

/// Batches read from a shared port before a hang-up of one of its calls: enough for a full
/// receive buffer of small datagrams ([`SHARED_RCVBUF`]), a bound only against a flood.
const SHARED_HANGUP_TURNS: usize = 512;

/// The receive buffer asked for each shared port. Linux grants at most `net.core.rmem_max`
/// (without the privilege to exceed it); a smaller grant is logged at start.
const SHARED_RCVBUF: usize = 8 << 20;

/// Asks for a receive buffer of `wanted` bytes on `socket` and returns the size granted (0
/// when it cannot be read). Linux grants at most `net.core.rmem_max` to a process without the
/// privilege to exceed it (and reports twice what it grants, its bookkeeping included).
pub(crate) fn ask_recv_buffer(socket: socket2::SockRef<'_>, wanted: usize) -> usize {
    if let Err(e) = socket.set_recv_buffer_size(wanted) {
        tracing::debug!(error = %e, wanted, "asking for a UDP receive buffer");
    }
    socket.recv_buffer_size().unwrap_or(0)
}

/// quinn-udp's state for reading `socket` with `recvmmsg`, without the control messages it
/// asks for and we never read. `UdpSocketState::new` turns on a receive timestamp, the
/// packet's destination address and its TOS byte; each is a `put_cmsg` per packet in the
/// kernel, and while any socket asks for timestamps the kernel stamps every packet it
/// receives. Turned off again here; a failure leaves one on, which costs only that.
fn udp_state(socket: &UdpSocket) -> io::Result<UdpSocketState> {
    let udp = UdpSocketState::new(socket.into())?;
    let sock = socket2::SockRef::from(socket);
    let v6 = socket.local_addr().is_ok_and(|a| a.is_ipv6());
    let quiet = if v6 { sock.set_recv_tclass_v6(false) } else { sock.set_recv_tos_v4(false) };
    #[cfg(target_os = "linux")]
    let quiet = {
        use nix::sys::socket::{setsockopt, sockopt};
        let fd = socket.as_raw_fd();
        let pktinfo = if v6 {
            setsockopt(fd, sockopt::Ipv6RecvPacketInfo, &false)
        } else {
            setsockopt(fd, sockopt::Ipv4PacketInfo, &false)
        };
        quiet.and(pktinfo.map_err(io::Error::from)).and(setsockopt(fd, sockopt::ReceiveTimestampns, &false).map_err(io::Error::from))
    };
    if let Err(e) = quiet {
        tracing::debug!(error = %e, "an RTP socket keeps a control message on");
    }
    Ok(udp)
}

/// A command from the call's signalling to its media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaCommand {
    /// The 200 OK was sent: start the greeting at the first RTP packet from the caller if it
    /// comes before the ACK ([`MediaCommand::Answered`]).
    Accepted,
    /// The ACK arrived: start the greeting (if RTP from the caller has not started it).
    Answered,
    /// The codec changed (a re-INVITE, or the answer in the ACK of a late offer).
    Codec(CodecChange),
    /// A DTMF digit arrived by SIP INFO.
    Dtmf(DtmfDigit),
    /// The call is over (BYE, CANCEL, no ACK, or shutdown).
    Hangup,
    /// A re-INVITE changed where media goes (`None`: hold with `c=0.0.0.0`) and whether we
    /// may send (`false` for sendonly or inactive offers).
    Remote {
        /// The new remote RTP address.
        addr: Option<SocketAddr>,
        /// Whether to send RTP at all.
        send: bool,
        /// Whether the call is on hold (one-way or no media): the media timeout is suspended.
        hold: bool,
    },
    /// A re-INVITE changed the SRTP keys (the caller's new key, or a new suite).
    Srtp(SrtpKeys),
}

/// Hands out RTP sockets from a port range, even ports only, round robin.
#[derive(Debug)]
pub struct PortPool {
    ip: IpAddr,
    low: u16,
    high: u16,
    next: Mutex<u16>,
}

impl PortPool {
    /// A pool binding on `ip` within `low..=high`.
    pub fn new(ip: IpAddr, low: u16, high: u16) -> Self {
        let low = low.saturating_add(low % 2);
        Self { ip, low, high, next: Mutex::new(low) }
    }

    /// Binds a non-blocking socket on the next free even port.
    pub fn bind(&self) -> io::Result<UdpSocket> {
        let slots = usize::from((self.high.saturating_sub(self.low)) / 2 + 1);
        for _ in 0..slots {
            let port = {
                let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
                let port = *next;
                *next = match port.checked_add(2) {
                    Some(p) if p <= self.high => p,
                    _ => self.low,
                };
                port
            };
            let addr = SocketAddr::new(self.ip, port);
            match UdpSocket::bind(addr) {
                Ok(s) => {
                    s.set_nonblocking(true)?;
                    return Ok(s);
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("no free RTP port in {}-{} on {}", self.low, self.high, self.ip),
        ))
    }
}

/// How a call's media ended.
#[derive(Debug)]
pub struct MediaOutcome {
    /// The message, when the call reported one (always, unless the core refused an input).
    pub meta: Option<MessageMeta>,
    /// Whether the call ended without a [`MediaCommand::Hangup`] (finish key, limits, media
    /// timeout): the endpoint then sends the BYE.
    pub ended_by_call: bool,
    /// RTP packets sent to the caller (greeting and beep).
    pub packets_sent: u64,
}

/// What a call's media needs to start: see [`MediaEngine::start`].
pub struct MediaStart {
    /// The call, from the mailbox.
    pub call: Call,
    /// Its RTP port, from [`MediaEngine::rtp_port`].
    pub port: RtpPort,
    /// The IP address the call's SIP came from: a caller behind NAT on a shared port is
    /// latched by it (see the [module docs](self)).
    pub signal_ip: Option<IpAddr>,
    /// The SDP's RTP address.
    pub remote: Option<SocketAddr>,
    /// Whether the offer lets us send.
    pub send: bool,
    /// Hears the call's state changes and DTMF keys.
    pub notifier: Option<CallNotifier>,
    /// SRTP, when negotiated: what is sent is protected, what arrives must authenticate.
    pub srtp: Option<SrtpSession>,
}

/// A new call's RTP port: its own socket, or a share of one of a media thread's ports.
#[derive(Debug)]
pub struct RtpPort(PortKind);

#[derive(Debug)]
enum PortKind {
    Own(UdpSocket),
    Shared(SharedLease),
}

impl RtpPort {
    /// The address the SDP answer names.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.0 {
            PortKind::Own(socket) => socket.local_addr(),
            PortKind::Shared(lease) => Ok(lease.local),
        }
    }
}

impl From<UdpSocket> for RtpPort {
    /// A socket of the call's own (non-blocking, from [`PortPool::bind`]).
    fn from(socket: UdpSocket) -> Self {
        Self(PortKind::Own(socket))
    }
}

/// A call's place on a shared port; the port's count of calls drops with it.
#[derive(Debug)]
struct SharedLease {
    worker: usize,
    /// The port's index on its thread.
    port: usize,
    local: SocketAddr,
    calls: Arc<AtomicUsize>,
}

impl Drop for SharedLease {
    fn drop(&mut self) {
        self.calls.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A shared port, as the signalling side picks one for a new call.
struct SharedPortInfo {
    worker: usize,
    port: usize,
    local: SocketAddr,
    calls: Arc<AtomicUsize>,
}

/// The threads that drive every call's media; see the [module docs](self).
///
/// Dropping the engine stops its threads; calls still on them are dropped (their recordings
/// are complete up to the last checkpoint and left to recovery).
pub struct MediaEngine {
    workers: Vec<WorkerHandle>,
    shared: Vec<SharedPortInfo>,
}

impl std::fmt::Debug for MediaEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaEngine")
            .field("threads", &self.workers.len())
            .field("shared_ports", &self.shared.len())
            .finish_non_exhaustive()
    }
}

struct WorkerHandle {
    shared: Arc<WorkerShared>,
    thread: Option<JoinHandle<()>>,
}

/// What a media thread shares with the signalling side.
struct WorkerShared {
    queue: Mutex<Vec<(u64, Message)>>,
    waker: Waker,
    stop: AtomicBool,
    /// Calls on this thread (started, not yet ended): new calls go to the least loaded thread.
    calls: AtomicUsize,
}

enum Message {
    Start(Box<(MediaStart, oneshot::Sender<MediaOutcome>)>),
    Command(MediaCommand),
    /// The call's [`Commands`] were dropped: the call is over.
    Closed,
}

/// Keys of calls, unique within a process.
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

const WAKER: Token = Token(0);

impl MediaEngine {
    /// Starts `threads` media threads (at least one); every call has an RTP socket of its own.
    pub fn new(threads: usize) -> io::Result<Self> {
        Self::start_threads(threads, 0, None)
    }

    /// Starts `threads` media threads (at least one), each with `ports_per_thread` RTP ports
    /// from `pool` that its calls share (see the [module docs](self)); 0 ports: a socket per
    /// call, as [`MediaEngine::new`].
    pub fn with_shared_ports(threads: usize, ports_per_thread: usize, pool: &PortPool) -> io::Result<Self> {
        Self::start_threads(threads, ports_per_thread, Some(pool))
    }

    fn start_threads(threads: usize, ports_per_thread: usize, pool: Option<&PortPool>) -> io::Result<Self> {
        // Threads started before a failure are stopped when `engine` drops.
        let mut engine = Self { workers: Vec::new(), shared: Vec::new() };
        for n in 0..threads.max(1) {
            let poll = Poll::new()?;
            let waker = Waker::new(poll.registry(), WAKER)?;
            let mut ports = Vec::new();
            for k in 0..pool.map_or(0, |_| ports_per_thread) {
                let socket = pool.expect("a pool with shared ports").bind()?;
                let port = SharedPort::new(socket, &poll, k)?;
                engine.shared.push(SharedPortInfo {
                    worker: n,
                    port: k,
                    local: port.socket.local_addr()?,
                    calls: Arc::new(AtomicUsize::new(0)),
                });
                ports.push(port);
            }
            let shared = Arc::new(WorkerShared {
                queue: Mutex::new(Vec::new()),
                waker,
                stop: AtomicBool::new(false),
                calls: AtomicUsize::new(0),
            });
            let worker = Worker::new(poll, shared.clone(), ports);
            let thread = std::thread::Builder::new().name(format!("voicemail-media-{n}")).spawn(move || worker.run())?;
            engine.workers.push(WorkerHandle { shared, thread: Some(thread) });
        }
        Ok(engine)
    }

    /// One media thread per core (at most 8), each with `ports_per_thread` shared RTP ports
    /// from `pool` (0: a socket per call).
    pub fn per_core(ports_per_thread: usize, pool: &PortPool) -> io::Result<Self> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        Self::with_shared_ports(threads, ports_per_thread, pool)
    }

    /// The RTP port for a new call: a socket of its own from `pool`, or the shared port with
    /// the fewest calls. Its address goes into the SDP answer; then it goes to
    /// [`MediaEngine::start`] (or is dropped, if the call is refused).
    pub fn rtp_port(&self, pool: &PortPool) -> io::Result<RtpPort> {
        let Some(info) = self.shared.iter().min_by_key(|p| p.calls.load(Ordering::Relaxed)) else {
            return pool.bind().map(RtpPort::from);
        };
        info.calls.fetch_add(1, Ordering::Relaxed);
        Ok(RtpPort(PortKind::Shared(SharedLease {
            worker: info.worker,
            port: info.port,
            local: info.local,
            calls: info.calls.clone(),
        })))
    }

    /// Hands a call to a media thread: the one of its shared port, or else the least loaded.
    /// Its commands go through the returned [`Commands`] (dropping them hangs the call up);
    /// the receiver gets the outcome when the call ends (an error only if the call's thread
    /// failed while handling it).
    pub fn start(&self, start: MediaStart) -> (Commands, oneshot::Receiver<MediaOutcome>) {
        let (done, outcome) = oneshot::channel();
        let worker = match &start.port.0 {
            PortKind::Shared(lease) => self.workers.get(lease.worker),
            PortKind::Own(_) => self.workers.iter().min_by_key(|w| w.shared.calls.load(Ordering::Relaxed)),
        }
        .map(|w| w.shared.clone())
        .expect("the engine has at least one thread");
        let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
        worker.calls.fetch_add(1, Ordering::Relaxed);
        let commands = Commands { key, worker };
        commands.push(Message::Start(Box::new((start, done))));
        (commands, outcome)
    }
}

impl Drop for MediaEngine {
    fn drop(&mut self) {
        for w in &self.workers {
            w.shared.stop.store(true, Ordering::Release);
            let _ = w.shared.waker.wake();
        }
        for w in &mut self.workers {
            if let Some(thread) = w.thread.take()
                && thread.join().is_err()
            {
                tracing::error!("a media thread panicked");
            }
        }
    }
}

/// The signalling side of one call's media: its commands. Dropping it hangs the call up.
pub struct Commands {
    key: u64,
    worker: Arc<WorkerShared>,
}

impl std::fmt::Debug for Commands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commands").field("key", &self.key).finish_non_exhaustive()
    }
}

impl Commands {
    /// Passes a command to the call (ignored once the call has ended).
    pub fn send(&self, command: MediaCommand) {
        self.push(Message::Command(command));
    }

    fn push(&self, message: Message) {
        let was_empty = {
            let mut queue = self.worker.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.push((self.key, message));
            queue.len() == 1
        };
        // One wake-up per batch: the thread takes the whole queue when it wakes.
        if was_empty && let Err(e) = self.worker.waker.wake() {
            tracing::error!(error = %e, "cannot wake a media thread");
        }
    }
}

impl Drop for Commands {
    fn drop(&mut self) {
        self.push(Message::Closed);
    }
}

/// The buffers a media thread reuses for all its calls.
struct Buffers {
    send: Vec<u8>,
    srtp: Vec<u8>,
}

/// The receive buffers of a media thread (taken out of the thread while a shared port's batch
/// is handed to its calls).
#[derive(Default)]
struct RecvBuffers {
    bufs: Vec<Vec<u8>>,
    meta: Vec<RecvMeta>,
}

impl RecvBuffers {
    fn new() -> Self {
        Self { bufs: vec![vec![0u8; RECV_BUF]; SHARED_BATCH], meta: vec![RecvMeta::default(); SHARED_BATCH] }
    }

    /// Reads one batch of at most `max` datagrams from `socket`.
    fn recv(&mut self, udp: &UdpSocketState, socket: &UdpSocket, max: usize) -> io::Result<usize> {
        let max = max.min(self.bufs.len());
        let mut slices: [IoSliceMut<'_>; SHARED_BATCH] = std::array::from_fn(|_| IoSliceMut::new(&mut []));
        for (slice, buf) in slices.iter_mut().zip(self.bufs.iter_mut()) {
            *slice = IoSliceMut::new(buf);
        }
        udp.recv(socket.into(), &mut slices[..max], &mut self.meta[..max])
    }

    /// The datagrams of the last batch of `count`, with their sources. With receive offload,
    /// one buffer holds several datagrams of `stride` bytes.
    fn datagrams(&self, count: usize) -> impl Iterator<Item = (&[u8], SocketAddr)> {
        self.bufs.iter().zip(&self.meta).take(count).flat_map(|(buf, m)| {
            buf[..m.len.min(buf.len())].chunks(m.stride.max(1)).map(move |d| (d, m.addr))
        })
    }
}

/// A media thread's RTP port shared by many calls, and where its datagrams go.
struct SharedPort {
    socket: Arc<UdpSocket>,
    udp: UdpSocketState,
    /// Calls by remote address (the SDP's until latched, then the caller's); several calls
    /// with one address are told apart by SSRC.
    routes: HashMap<SocketAddr, Vec<usize>>,
    /// Calls not yet latched, by the IP address their SIP came from.
    pending: HashMap<IpAddr, Vec<usize>>,
    /// Not read to the end in the last turn: to be read again before the next poll waits.
    backlog: bool,
    /// Datagrams that went to no call.
    unrouted: u64,
}

impl SharedPort {
    fn new(socket: UdpSocket, poll: &Poll, k: usize) -> io::Result<Self> {
        let udp = udp_state(&socket)?;
        // A few milliseconds of a thousand calls' packets must fit while the thread is busy.
        // Said once per process: every shared port of every thread gets the same grant.
        static WARNED: AtomicBool = AtomicBool::new(false);
        let granted = ask_recv_buffer(socket2::SockRef::from(&socket), SHARED_RCVBUF);
        if granted < SHARED_RCVBUF && !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                granted,
                wanted = SHARED_RCVBUF,
                "a shared RTP port's receive buffer is small: raise net.core.rmem_max, or bursts of packets may be dropped"
            );
        }
        poll.registry().register(&mut SourceFd(&socket.as_raw_fd()), Token(k + 1), mio::Interest::READABLE)?;
        Ok(Self {
            socket: Arc::new(socket),
            udp,
            routes: HashMap::new(),
            pending: HashMap::new(),
            backlog: false,
            unrouted: 0,
        })
    }

    /// The call a datagram from `from` goes to, if any.
    fn route(&self, slots: &[Option<Box<CallMedia>>], from: SocketAddr, datagram: &[u8]) -> Option<usize> {
        let ssrc_of = |index: &usize| slots.get(*index).and_then(|s| s.as_ref()).and_then(|s| s.ssrc);
        match self.routes.get(&from).map(Vec::as_slice) {
            Some([one]) => Some(*one),
            Some(several) => {
                let ssrc = rtp_ssrc(datagram);
                several
                    .iter()
                    .find(|i| ssrc.is_some() && ssrc_of(i) == ssrc)
                    .or_else(|| several.iter().find(|i| ssrc_of(i).is_none()))
                    .copied()
            }
            None => match self.pending.get(&from.ip()).map(Vec::as_slice) {
                Some([one]) => Some(*one),
                _ => None,
            },
        }
    }
}

/// Adds `index` to `map[key]`.
fn enlist<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Vec<usize>>, key: K, index: usize) {
    map.entry(key).or_default().push(index);
}

/// Removes `index` from `map[key]` (and the key, when no call is left on it).
fn delist<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Vec<usize>>, key: &K, index: usize) {
    if let Some(list) = map.get_mut(key) {
        list.retain(|&i| i != index);
        if list.is_empty() {
            map.remove(key);
        }
    }
}

/// One media thread: its calls, their sockets and their deadlines.
struct Worker {
    poll: Poll,
    shared: Arc<WorkerShared>,
    /// Its shared ports; port `k`'s token is `k + 1`.
    ports: Vec<SharedPort>,
    /// Calls by slot; a slot's token is its index + 1 + the number of shared ports (0 is the
    /// waker).
    slots: Vec<Option<Box<CallMedia>>>,
    free: Vec<usize>,
    by_key: HashMap<u64, usize>,
    /// (deadline, slot, key): an entry is live while that slot holds that key with that
    /// deadline; others are dropped when they come up.
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    bufs: Buffers,
    recv: RecvBuffers,
}

impl Worker {
    fn new(poll: Poll, shared: Arc<WorkerShared>, ports: Vec<SharedPort>) -> Self {
        Self {
            poll,
            shared,
            ports,
            slots: Vec::new(),
            free: Vec::new(),
            by_key: HashMap::new(),
            timers: BinaryHeap::new(),
            bufs: Buffers { send: vec![0u8; RECV_BUF], srtp: Vec::with_capacity(RECV_BUF + SRTP_TRAILER_ROOM) },
            recv: RecvBuffers::new(),
        }
    }

    fn slot_token(&self, index: usize) -> Token {
        Token(index + 1 + self.ports.len())
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut queue = Vec::new();
        while !self.shared.stop.load(Ordering::Acquire) {
            let timeout = if self.ports.iter().any(|p| p.backlog) {
                Some(Duration::ZERO)
            } else {
                self.timers.peek().map(|Reverse((at, ..))| at.saturating_duration_since(Instant::now()))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "media thread: poll failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            for event in &events {
                let token = event.token().0;
                if token == WAKER.0 {
                    continue;
                }
                if let Some(port) = self.ports.get_mut(token - 1) {
                    port.backlog = true;
                } else {
                    let index = token - 1 - self.ports.len();
                    self.guarded(index, |slot, bufs, recv| slot.readable(bufs, recv));
                }
            }
            // Commands (and new calls) after the packets that woke us, in the order sent (a
            // hang-up first reads what its call's socket holds).
            std::mem::swap(&mut queue, &mut *self.shared.queue.lock().unwrap_or_else(|e| e.into_inner()));
            for (key, message) in queue.drain(..) {
                self.message(key, message);
            }
            // Shared ports after the new calls: a caller answers the 200 OK, sent after its
            // call was queued here, so a call's first packets must find it.
            for k in 0..self.ports.len() {
                if self.ports[k].backlog {
                    self.port_readable(k, SHARED_TURN);
                }
            }
            let now = Instant::now();
            while let Some(&Reverse((at, index, key))) = self.timers.peek() {
                if at > now {
                    break;
                }
                self.timers.pop();
                let live = matches!(self.slots.get(index), Some(Some(slot)) if slot.key == key && slot.deadline == Some(at));
                if live {
                    self.guarded(index, |slot, _, _| {
                        slot.deadline = None;
                        let result = slot.call.handle_input(Input::Tick(now));
                        slot.after_input(result);
                    });
                }
            }
        }
    }

    /// Reads shared port `k` for at most `turns` batches, handing each datagram to its call.
    fn port_readable(&mut self, k: usize, turns: usize) {
        let mut recv = std::mem::take(&mut self.recv);
        let mut empty = false;
        for _ in 0..turns {
            let port = &self.ports[k];
            let count = match recv.recv(&port.udp, &port.socket, SHARED_BATCH) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    empty = true;
                    break;
                }
                Err(e) => {
                    // An ICMP error of an earlier send, reported once: the socket goes on.
                    tracing::debug!(error = %e, "rtp receive error");
                    continue;
                }
            };
            for (datagram, from) in recv.datagrams(count) {
                let Some(index) = self.ports[k].route(&self.slots, from, datagram) else {
                    let port = &mut self.ports[k];
                    port.unrouted += 1;
                    if port.unrouted.is_power_of_two() {
                        tracing::debug!(unrouted = port.unrouted, %from, "rtp datagrams on a shared port that belong to no call");
                    }
                    continue;
                };
                self.guarded(index, |slot, bufs, _| {
                    slot.datagram(datagram, from, &mut bufs.srtp);
                });
            }
            // A short batch does not mean the port is empty: a pending error (ICMP for an
            // earlier send) ends a batch early. Only `WouldBlock` says so; until then the port
            // stays in the backlog (its readiness edge came and went).
        }
        self.recv = recv;
        self.ports[k].backlog = !empty;
    }

    fn message(&mut self, key: u64, message: Message) {
        match message {
            Message::Start(start) => {
                let (start, done) = *start;
                let index = self.free.pop().unwrap_or_else(|| {
                    self.slots.push(None);
                    self.slots.len() - 1
                });
                let rtp = match start.port.0 {
                    PortKind::Own(socket) => {
                        let token = self.slot_token(index);
                        let ready = udp_state(&socket).and_then(|udp| {
                            self.poll.registry().register(&mut SourceFd(&socket.as_raw_fd()), token, mio::Interest::READABLE)?;
                            Ok(udp)
                        });
                        match ready {
                            Ok(udp) => Rtp::Own { socket: Arc::new(socket), udp },
                            Err(e) => {
                                // Not expected of a socket we bound: the call ends at once (no
                                // message from here; recovery stores its empty recording) and
                                // the caller gets a BYE.
                                tracing::error!(error = %e, "cannot read an RTP socket; ending the call");
                                self.free.push(index);
                                self.shared.calls.fetch_sub(1, Ordering::Relaxed);
                                let _ = done.send(MediaOutcome { meta: None, ended_by_call: true, packets_sent: 0 });
                                return;
                            }
                        }
                    }
                    PortKind::Shared(lease) => match self.ports.get(lease.port) {
                        Some(port) => Rtp::Shared { socket: port.socket.clone(), route: None, pending: None, lease },
                        None => {
                            tracing::error!("a call for a shared port this thread does not have; ending it");
                            self.free.push(index);
                            self.shared.calls.fetch_sub(1, Ordering::Relaxed);
                            let _ = done.send(MediaOutcome { meta: None, ended_by_call: true, packets_sent: 0 });
                            return;
                        }
                    },
                };
                self.slots[index] = Some(Box::new(CallMedia {
                    key,
                    call: start.call,
                    rtp,
                    remote: start.remote,
                    signal_ip: start.signal_ip,
                    ssrc: None,
                    send: start.send,
                    latched: false,
                    accepted: false,
                    answered: false,
                    hung_up: false,
                    abandoned: false,
                    meta: None,
                    packets_sent: 0,
                    srtp: start.srtp,
                    srtp_dropped: 0,
                    notifier: start.notifier,
                    deadline: None,
                    done: Some(done),
                }));
                self.by_key.insert(key, index);
                // The first drain: the call's first deadline (and its routes on a shared port).
                self.guarded(index, |_, _, _| {});
            }
            Message::Command(command) => self.command(key, Some(command)),
            Message::Closed => self.command(key, None),
        }
    }

    /// Hands call `key` a command from its signalling (`None`: its [`Commands`] were dropped).
    /// Before a hang-up (either), what the call's socket already holds is read: those packets
    /// came before the hang-up.
    fn command(&mut self, key: u64, command: Option<MediaCommand>) {
        let Some(&index) = self.by_key.get(&key) else { return };
        let hangup = matches!(command, Some(MediaCommand::Hangup) | None);
        if hangup && let Some(Some(slot)) = self.slots.get(index) && let Rtp::Shared { lease, .. } = &slot.rtp {
            // The whole port, to the end: the call's packets may be anywhere in it (the reads
            // are no waste: every datagram there has to be read anyway).
            let k = lease.port;
            self.port_readable(k, SHARED_HANGUP_TURNS);
        }
        self.guarded(index, |slot, bufs, recv| {
            if hangup {
                slot.readable(bufs, recv);
            }
            slot.command(command);
        });
    }

    /// Runs `f` on the call in `index`, then drains its output; ends the call when it is over
    /// or when `f` or the drain panicked (its outcome then never comes; recovery stores it).
    fn guarded(&mut self, index: usize, f: impl FnOnce(&mut CallMedia, &mut Buffers, &mut RecvBuffers)) {
        let Some(Some(slot)) = self.slots.get_mut(index) else { return };
        let (bufs, recv) = (&mut self.bufs, &mut self.recv);
        let result = catch_unwind(AssertUnwindSafe(|| {
            f(slot, bufs, recv);
            slot.drain(&mut bufs.send, &mut bufs.srtp)
        }));
        let ended = match result {
            Ok(Some(at)) => {
                if slot.deadline.is_none_or(|d| at < d) {
                    slot.deadline = Some(at);
                    self.timers.push(Reverse((at, index, slot.key)));
                }
                false
            }
            Ok(None) => {
                if let Some(done) = slot.done.take() {
                    let _ = done.send(MediaOutcome {
                        meta: slot.meta.take(),
                        ended_by_call: !slot.hung_up,
                        packets_sent: slot.packets_sent,
                    });
                }
                true
            }
            Err(_) => {
                tracing::error!("a call's media panicked; the call is dropped and its recording left to recovery");
                true
            }
        };
        reroute(&mut self.ports, index, slot, ended);
        if ended && let Some(slot) = self.slots[index].take() {
            if let Rtp::Own { socket, .. } = &slot.rtp {
                let _ = self.poll.registry().deregister(&mut SourceFd(&socket.as_raw_fd()));
            }
            self.by_key.remove(&slot.key);
            self.free.push(index);
            self.shared.calls.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Keeps a call's entries in its shared port's routes as its state says: under its remote
/// address, and (until latched) under the IP address of its SIP; none once it has `ended`.
fn reroute(ports: &mut [SharedPort], index: usize, slot: &mut CallMedia, ended: bool) {
    let Rtp::Shared { lease, route, pending, .. } = &mut slot.rtp else { return };
    let Some(port) = ports.get_mut(lease.port) else { return };
    let want_route = if ended { None } else { slot.remote };
    if *route != want_route {
        if let Some(old) = route.take() {
            delist(&mut port.routes, &old, index);
        }
        if let Some(new) = want_route {
            enlist(&mut port.routes, new, index);
        }
        *route = want_route;
    }
    let want_pending = if ended || slot.latched { None } else { slot.signal_ip };
    if *pending != want_pending {
        if let Some(old) = pending.take() {
            delist(&mut port.pending, &old, index);
        }
        if let Some(new) = want_pending {
            enlist(&mut port.pending, new, index);
        }
        *pending = want_pending;
    }
}

/// A call's RTP socket: its own, or its thread's shared port.
enum Rtp {
    Own {
        socket: Arc<UdpSocket>,
        /// Reads the socket in batches.
        udp: UdpSocketState,
    },
    Shared {
        socket: Arc<UdpSocket>,
        lease: SharedLease,
        /// Where the call is listed in the port's routes and pending calls.
        route: Option<SocketAddr>,
        pending: Option<IpAddr>,
    },
}

impl Rtp {
    fn socket(&self) -> &UdpSocket {
        match self {
            Rtp::Own { socket, .. } | Rtp::Shared { socket, .. } => socket,
        }
    }
}

/// One call on a media thread.
struct CallMedia {
    key: u64,
    call: Call,
    rtp: Rtp,
    remote: Option<SocketAddr>,
    /// Where the call's SIP came from (latches a caller behind NAT on a shared port).
    signal_ip: Option<IpAddr>,
    /// The SSRC of the caller's last RTP packet.
    ssrc: Option<u32>,
    send: bool,
    latched: bool,
    /// The 200 OK is out / the greeting has started.
    accepted: bool,
    answered: bool,
    hung_up: bool,
    /// The call refused even its hang-up: it is dropped as it is.
    abandoned: bool,
    meta: Option<MessageMeta>,
    packets_sent: u64,
    srtp: Option<SrtpSession>,
    srtp_dropped: u64,
    notifier: Option<CallNotifier>,
    /// The deadline in the thread's timer heap.
    deadline: Option<Instant>,
    done: Option<oneshot::Sender<MediaOutcome>>,
}

impl CallMedia {
    /// Drains the call's output; its next deadline, or `None` when the call has ended.
    fn drain(&mut self, send: &mut [u8], srtp: &mut Vec<u8>) -> Option<Instant> {
        let deadline = loop {
            match self.call.poll_output() {
                Output::SendRtp(pkt) => {
                    if let (true, Some(to)) = (self.send, self.remote)
                        && let Some(n) = pkt.write_to(send)
                    {
                        let datagram = match self.srtp.as_mut() {
                            None => &send[..n],
                            Some(session) => {
                                srtp.clear();
                                srtp.extend_from_slice(&send[..n]);
                                if let Err(e) = session.protect(srtp) {
                                    tracing::debug!(error = %e, "srtp protect");
                                    continue;
                                }
                                &srtp[..]
                            }
                        };
                        // A lost datagram (or a full socket buffer) is like a lost packet on
                        // the wire; never fatal.
                        if self.rtp.socket().send_to(datagram, to).is_ok() {
                            self.packets_sent += 1;
                        }
                    }
                }
                Output::Event(Event::MessageRecorded(m)) => self.meta = Some(*m),
                Output::Event(event) => {
                    if let Some(n) = &self.notifier {
                        n.event(&event);
                    }
                }
                Output::Timeout(at) => break at,
            }
        };
        (self.call.state() != CallState::Ended && !self.abandoned).then_some(deadline)
    }

    /// Reads the call's own socket until it is empty (it is edge-triggered), feeding every
    /// datagram. (A shared port is read by its thread.)
    fn readable(&mut self, bufs: &mut Buffers, recv: &mut RecvBuffers) {
        loop {
            let Rtp::Own { socket, udp } = &self.rtp else { return };
            let count = match recv.recv(udp, socket, RECV_BATCH) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // An ICMP error of an earlier send, reported once: the socket goes on.
                    tracing::debug!(error = %e, "rtp receive error");
                    continue;
                }
            };
            for (datagram, from) in recv.datagrams(count) {
                self.datagram(datagram, from, &mut bufs.srtp);
                if self.drain(&mut bufs.send, &mut bufs.srtp).is_none() {
                    return;
                }
            }
            if count < RECV_BATCH {
                return;
            }
        }
    }

    fn datagram(&mut self, received: &[u8], from: SocketAddr, srtp: &mut Vec<u8>) {
        let now = Instant::now();
        let datagram = match self.srtp.as_mut() {
            None => received,
            Some(session) => {
                // SRTCP is not used (we send no RTCP; the core drops RTCP anyway).
                if !looks_like_rtp(received) {
                    return;
                }
                srtp.clear();
                srtp.extend_from_slice(received);
                if session.unprotect(srtp).is_err() {
                    self.srtp_dropped += 1;
                    if self.srtp_dropped.is_power_of_two() {
                        tracing::debug!(dropped = self.srtp_dropped, %from, "srtp packets that do not authenticate");
                    }
                    return;
                }
                &srtp[..]
            }
        };
        if self.latched && Some(from) != self.remote {
            return; // not the caller's stream
        }
        if let Some(ssrc) = rtp_ssrc(datagram) {
            self.ssrc = Some(ssrc);
            if !self.latched {
                self.remote = Some(from);
                self.latched = true;
            }
        }
        if self.accepted && !self.answered && self.latched {
            // The caller is there (symmetric RTP): no need to wait for the ACK.
            self.answered = true;
            if let Err(e) = self.call.handle_input(Input::Answered(now)) {
                tracing::debug!(error = %e, "answer at the first RTP packet");
            }
        }
        let result = self.call.handle_input(Input::Rtp(now, datagram));
        self.after_input(result);
    }

    /// A command from the signalling; `None` when its [`Commands`] were dropped.
    fn command(&mut self, command: Option<MediaCommand>) {
        let now = Instant::now();
        let result = match command {
            Some(MediaCommand::Accepted) => {
                self.accepted = true;
                Ok(())
            }
            Some(MediaCommand::Answered) => {
                self.answered = true;
                self.call.handle_input(Input::Answered(now))
            }
            Some(MediaCommand::Codec(change)) => {
                if let Err(e) = self.call.handle_input(Input::Codec(now, change)) {
                    // Refused (the endpoint checks the SDP first): the call goes on unchanged.
                    tracing::warn!(error = %e, ?change, "codec change refused");
                }
                Ok(())
            }
            Some(MediaCommand::Dtmf(d)) => self.call.handle_input(Input::Dtmf(now, d)),
            Some(MediaCommand::Remote { addr, send, hold }) => {
                self.remote = addr;
                self.send = send;
                self.latched = false;
                self.ssrc = None;
                self.call.handle_input(Input::Hold(now, hold))
            }
            Some(MediaCommand::Srtp(keys)) => match SrtpSession::new(&keys) {
                Ok(session) => {
                    self.srtp = Some(session);
                    Ok(())
                }
                Err(e) => {
                    tracing::warn!(error = %e, "new srtp keys refused; ending the call");
                    self.hung_up = true;
                    self.call.handle_input(Input::Hangup(now))
                }
            },
            Some(MediaCommand::Hangup) | None => {
                if self.call.state() == CallState::Ended {
                    return;
                }
                self.hung_up = true;
                self.call.handle_input(Input::Hangup(now))
            }
        };
        self.after_input(result);
    }

    /// An input the call refused (only caller misuse can fail): end the call rather than spin.
    fn after_input(&mut self, result: voicemail_core::Result<()>) {
        if let Err(e) = result {
            tracing::warn!(error = %e, "the call refused an input; ending it");
            if self.call.state() != CallState::Ended {
                self.hung_up = true;
                if let Err(e) = self.call.handle_input(Input::Hangup(Instant::now())) {
                    tracing::error!(error = %e, "the call refused its hang-up; dropping it");
                    self.abandoned = true;
                }
            }
        }
    }
}

/// RTP version 2 and a payload type outside the RTCP range (RFC 5761 §4).
fn looks_like_rtp(d: &[u8]) -> bool {
    d.len() >= 12 && d[0] >> 6 == 2 && !(72..=95).contains(&(d[1] & 0x7f))
}

/// The SSRC of an RTP packet (`None` for anything else).
fn rtp_ssrc(d: &[u8]) -> Option<u32> {
    looks_like_rtp(d).then(|| u32::from_be_bytes([d[8], d[9], d[10], d[11]]))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use voicemail_core::recording::Recording;
    use voicemail_core::{CallConfig, MessageId, Prompt};

    use super::*;

    /// A call with a 100 ms greeting (5 packets) and no beep, recording into memory.
    fn call(n: usize) -> Call {
        let id = MessageId::parse(&format!("media-{n}")).expect("id");
        let mut config = CallConfig::new(id, format!("+7495123456{n}"), jiff::Timestamp::UNIX_EPOCH);
        config.beep = None;
        let greeting = Prompt::from_pcm("short", vec![1000; 800]).expect("greeting");
        let recording = Recording::new(io::Cursor::new(Vec::new())).expect("recording");
        Call::new(config, greeting, recording, Instant::now()).expect("call")
    }

    /// `count` PCMU packets of 20 ms from `ssrc`.
    fn talk(caller: &UdpSocket, to: SocketAddr, ssrc: u32, count: u16) {
        talk_from(caller, to, ssrc, 0, count);
    }

    /// `count` PCMU packets of 20 ms from `ssrc`, the first numbered `first`.
    fn talk_from(caller: &UdpSocket, to: SocketAddr, ssrc: u32, first: u16, count: u16) {
        for seq in first..first + count {
            let mut p = vec![0x80, 0];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
            p.extend_from_slice(&ssrc.to_be_bytes());
            p.extend_from_slice(&[0x55; 160]);
            caller.send_to(&p, to).expect("send");
        }
    }

    /// Caller `n` hears the whole greeting (5 packets) from `ours`, then talks for
    /// `10 * (n + 1)` packets (the call reads its clock when a packet is handled, so a packet
    /// sent after the greeting's end is recorded).
    fn hear_greeting_then_talk(n: usize, caller: &UdpSocket, ours: SocketAddr) {
        let mut buf = [0u8; 2048];
        for _ in 0..5 {
            let (len, from) = caller.recv_from(&mut buf).expect("greeting packet");
            assert!(len > 12 && from == ours, "an RTP packet from the call's port");
        }
        std::thread::sleep(Duration::from_millis(100));
        talk(caller, ours, 0x1000 + n as u32, 10 * (n as u16 + 1));
    }

    #[test]
    fn one_thread_drives_several_calls_each_on_its_own_socket() {
        let engine = MediaEngine::new(1).expect("engine");
        let ports = PortPool::new(IpAddr::from([127, 0, 0, 1]), 0, 0);
        let mut calls = Vec::new();
        for n in 0..3 {
            // Port 0: the system picks a free one.
            let socket = ports.bind().expect("bind");
            let ours = socket.local_addr().expect("addr");
            let caller = UdpSocket::bind("127.0.0.1:0").expect("caller");
            caller.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
            let start = MediaStart {
                call: call(n),
                port: socket.into(),
                signal_ip: None,
                remote: Some(caller.local_addr().expect("addr")),
                send: true,
                notifier: None,
                srtp: None,
            };
            let (commands, outcome) = engine.start(start);
            commands.send(MediaCommand::Answered);
            calls.push((caller, ours, commands, outcome));
        }
        // Each caller hears the whole greeting from its own call's socket, then talks for a
        // different time: 10, 20 and 30 packets (the call reads its clock when a packet is
        // handled, so a packet sent after the greeting's end is recorded).
        for (n, (caller, ours, ..)) in calls.iter().enumerate() {
            hear_greeting_then_talk(n, caller, *ours);
        }
        let mut outcomes = Vec::new();
        for (n, (_, _, commands, outcome)) in calls.into_iter().enumerate() {
            if n == 1 {
                drop(commands); // dropping the commands hangs up too
            } else {
                commands.send(MediaCommand::Hangup);
            }
            outcomes.push(outcome.blocking_recv().expect("outcome"));
        }
        for (n, outcome) in outcomes.iter().enumerate() {
            let meta = outcome.meta.as_ref().expect("a message");
            assert_eq!(meta.id.as_str(), format!("media-{n}"));
            assert!(!outcome.ended_by_call, "hung up by the signalling");
            assert!(outcome.packets_sent > 0);
            // Each call got exactly its own caller's packets, in order (the recording's length
            // also counts the silence up to the hang-up).
            assert_eq!(meta.media.packets_received, 10 * (n as u64 + 1), "call {n}");
            assert_eq!((meta.media.lost, meta.media.ssrc_changes), (0, 0), "call {n}");
            assert!(meta.duration_ms >= 200 * (n as u64 + 1), "call {n}: {} ms", meta.duration_ms);
        }
        drop(engine); // the thread ends
    }

    #[test]
    fn a_hang_up_first_records_what_the_socket_already_holds() {
        let engine = MediaEngine::new(1).expect("engine");
        let ports = PortPool::new(IpAddr::from([127, 0, 0, 1]), 0, 0);
        let socket = ports.bind().expect("bind");
        let ours = socket.local_addr().expect("addr");
        let caller = UdpSocket::bind("127.0.0.1:0").expect("caller");
        // The caller's packets wait in the socket before the media thread has seen the call.
        talk(&caller, ours, 0x2000, 15);
        let start = MediaStart {
            call: call(0),
            port: socket.into(),
            signal_ip: None,
            remote: Some(caller.local_addr().expect("addr")),
            send: false,
            notifier: None,
            srtp: None,
        };
        let (done, outcome) = oneshot::channel();
        let worker = engine.workers[0].shared.clone();
        let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
        worker.calls.fetch_add(1, Ordering::Relaxed);
        {
            // The call, its answer and its hang-up reach the thread in one batch: the hang-up
            // is handled before the thread has polled the new socket.
            let mut queue = worker.queue.lock().expect("queue");
            queue.push((key, Message::Start(Box::new((start, done)))));
            queue.push((key, Message::Command(MediaCommand::Answered)));
            queue.push((key, Message::Command(MediaCommand::Hangup)));
        }
        worker.waker.wake().expect("wake");
        let outcome = outcome.blocking_recv().expect("outcome");
        let meta = outcome.meta.expect("a message");
        assert_eq!(meta.media.packets_received, 15, "the packets that came before the hang-up are read");
        assert!(!outcome.ended_by_call);
        drop(engine);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn rtp_sockets_ask_for_no_control_message() {
        use nix::sys::socket::{getsockopt, sockopt};
        for addr in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(socket) = UdpSocket::bind(addr) else { continue };
            let _udp = udp_state(&socket).unwrap();
            let fd = socket.as_raw_fd();
            let sock = socket2::SockRef::from(&socket);
            assert!(!getsockopt(fd, sockopt::ReceiveTimestampns).unwrap(), "{addr}: timestamps");
            if addr.starts_with('[') {
                assert!(!getsockopt(fd, sockopt::Ipv6RecvPacketInfo).unwrap(), "{addr}: packet info");
                assert!(!sock.recv_tclass_v6().unwrap(), "{addr}: traffic class");
            } else {
                assert!(!getsockopt(fd, sockopt::Ipv4PacketInfo).unwrap(), "{addr}: packet info");
                assert!(!sock.recv_tos_v4().unwrap(), "{addr}: TOS");
            }
        }
    }

    /// A caller socket on `ip` that gives up after 10 s.
    fn caller_on(ip: [u8; 4]) -> UdpSocket {
        let caller = UdpSocket::bind((IpAddr::from(ip), 0)).expect("caller");
        caller.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        caller
    }

    /// A call on `engine`'s shared port whose SDP names `remote` and whose SIP came from `ip`.
    fn shared_call(
        engine: &MediaEngine,
        pool: &PortPool,
        n: usize,
        remote: SocketAddr,
        signal_ip: [u8; 4],
        send: bool,
    ) -> (SocketAddr, Commands, oneshot::Receiver<MediaOutcome>) {
        let port = engine.rtp_port(pool).expect("shared port");
        let ours = port.local_addr().expect("addr");
        let start = MediaStart {
            call: call(n),
            port,
            signal_ip: Some(IpAddr::from(signal_ip)),
            remote: Some(remote),
            send,
            notifier: None,
            srtp: None,
        };
        let (commands, outcome) = engine.start(start);
        (ours, commands, outcome)
    }

    fn hang_up(commands: Commands, outcome: oneshot::Receiver<MediaOutcome>) -> MessageMeta {
        commands.send(MediaCommand::Hangup);
        outcome.blocking_recv().expect("outcome").meta.expect("a message")
    }

    #[test]
    fn calls_on_one_shared_port_each_hear_and_record_their_own_caller() {
        let pool = PortPool::new(IpAddr::from([127, 0, 0, 1]), 0, 0);
        let engine = MediaEngine::with_shared_ports(1, 1, &pool).expect("engine");
        let mut calls = Vec::new();
        for n in 0..3 {
            let caller = caller_on([127, 0, 0, 1]);
            let (ours, commands, outcome) =
                shared_call(&engine, &pool, n, caller.local_addr().expect("addr"), [127, 0, 0, 1], true);
            commands.send(MediaCommand::Answered);
            calls.push((caller, ours, commands, outcome));
        }
        assert!(calls.iter().all(|c| c.1 == calls[0].1), "one port for all three calls");
        for (n, (caller, ours, ..)) in calls.iter().enumerate() {
            hear_greeting_then_talk(n, caller, *ours);
        }
        for (n, (_, _, commands, outcome)) in calls.into_iter().enumerate() {
            let meta = hang_up(commands, outcome);
            assert_eq!(meta.id.as_str(), format!("media-{n}"));
            assert_eq!(meta.media.packets_received, 10 * (n as u64 + 1), "call {n}");
            assert_eq!((meta.media.lost, meta.media.ssrc_changes), (0, 0), "call {n}");
        }
        drop(engine);
    }

    #[test]
    fn calls_from_one_address_on_a_shared_port_are_told_apart_by_ssrc() {
        let pool = PortPool::new(IpAddr::from([127, 0, 0, 1]), 0, 0);
        let engine = MediaEngine::with_shared_ports(1, 1, &pool).expect("engine");
        let caller = caller_on([127, 0, 0, 1]);
        let remote = caller.local_addr().expect("addr");
        let (ours, first, first_outcome) = shared_call(&engine, &pool, 0, remote, [127, 0, 0, 1], false);
        let (_, second, second_outcome) = shared_call(&engine, &pool, 1, remote, [127, 0, 0, 1], false);
        first.send(MediaCommand::Answered);
        second.send(MediaCommand::Answered);
        std::thread::sleep(Duration::from_millis(50));
        // The first stream claims the first call, the second stream the other; then both go on.
        talk(&caller, ours, 0xA, 4);
        std::thread::sleep(Duration::from_millis(50));
        talk(&caller, ours, 0xB, 7);
        std::thread::sleep(Duration::from_millis(50));
        talk_from(&caller, ours, 0xA, 4, 3);
        talk_from(&caller, ours, 0xB, 7, 2);
        std::thread::sleep(Duration::from_millis(50));
        let (a, b) = (hang_up(first, first_outcome), hang_up(second, second_outcome));
        assert_eq!((a.media.packets_received, a.media.ssrc_changes, a.media.lost), (7, 0, 0));
        assert_eq!((b.media.packets_received, b.media.ssrc_changes, b.media.lost), (9, 0, 0));
    }

    #[test]
    fn a_caller_behind_nat_is_latched_on_a_shared_port_only_when_its_sip_address_is_unambiguous() {
        let pool = PortPool::new(IpAddr::from([127, 0, 0, 1]), 0, 0);
        let engine = MediaEngine::with_shared_ports(1, 1, &pool).expect("engine");
        // The SDP names a port nobody sends from; the caller's RTP comes from another one of the
        // IP address its SIP came from.
        let elsewhere = SocketAddr::from(([127, 0, 0, 1], 9));
        let (ours, commands, outcome) = shared_call(&engine, &pool, 0, elsewhere, [127, 0, 0, 1], true);
        commands.send(MediaCommand::Accepted);
        let caller = caller_on([127, 0, 0, 1]);
        talk(&caller, ours, 0x77, 10);
        // The first packet latches the call and starts the greeting, sent to where RTP came from.
        let mut buf = [0u8; 2048];
        let (_, from) = caller.recv_from(&mut buf).expect("the greeting, at the caller's real address");
        assert_eq!(from, ours);
        let meta = hang_up(commands, outcome);
        assert_eq!(meta.media.packets_received, 10);

        // Two new calls from one SIP address: a stranger's packets from it latch neither.
        let ip = [127, 0, 0, 3];
        let nowhere = SocketAddr::from((ip, 9));
        let (_, first, first_outcome) = shared_call(&engine, &pool, 1, nowhere, ip, false);
        let (_, second, second_outcome) = shared_call(&engine, &pool, 2, nowhere, ip, false);
        first.send(MediaCommand::Answered);
        second.send(MediaCommand::Answered);
        std::thread::sleep(Duration::from_millis(50));
        talk(&caller_on(ip), ours, 0x99, 10);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(hang_up(first, first_outcome).media.packets_received, 0);
        assert_eq!(hang_up(second, second_outcome).media.packets_received, 0);
    }
}
