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
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token, Waker};
use quinn_udp::{RecvMeta, UdpSocketState};
use tokio::sync::oneshot;
use voicemail_core::{Call, CallState, CodecChange, DtmfDigit, Event, Input, MessageMeta, Output};

use crate::hooks::CallNotifier;
use crate::srtp::{SRTP_TRAILER_ROOM, SrtpKeys, SrtpSession};

/// The largest datagram the thread accepts (larger ones are truncated, and then malformed).
const RECV_BUF: usize = 2048;

/// Datagrams read from one socket at once (`recvmmsg`). A call's socket rarely holds more
/// than one; a batch that comes back short means the socket is empty.
const RECV_BATCH: usize = 4;

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
    /// Its RTP socket (non-blocking, from [`PortPool::bind`]).
    pub socket: UdpSocket,
    /// The SDP's RTP address.
    pub remote: Option<SocketAddr>,
    /// Whether the offer lets us send.
    pub send: bool,
    /// Hears the call's state changes and DTMF keys.
    pub notifier: Option<CallNotifier>,
    /// SRTP, when negotiated: what is sent is protected, what arrives must authenticate.
    pub srtp: Option<SrtpSession>,
}

/// The threads that drive every call's media; see the [module docs](self).
///
/// Dropping the engine stops its threads; calls still on them are dropped (their recordings
/// are complete up to the last checkpoint and left to recovery).
pub struct MediaEngine {
    workers: Vec<WorkerHandle>,
}

impl std::fmt::Debug for MediaEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaEngine").field("threads", &self.workers.len()).finish_non_exhaustive()
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
    /// Starts `threads` media threads (at least one).
    pub fn new(threads: usize) -> io::Result<Self> {
        // Threads started before a failure are stopped when `engine` drops.
        let mut engine = Self { workers: Vec::new() };
        for n in 0..threads.max(1) {
            let poll = Poll::new()?;
            let waker = Waker::new(poll.registry(), WAKER)?;
            let shared = Arc::new(WorkerShared {
                queue: Mutex::new(Vec::new()),
                waker,
                stop: AtomicBool::new(false),
                calls: AtomicUsize::new(0),
            });
            let worker = Worker::new(poll, shared.clone());
            let thread = std::thread::Builder::new().name(format!("voicemail-media-{n}")).spawn(move || worker.run())?;
            engine.workers.push(WorkerHandle { shared, thread: Some(thread) });
        }
        Ok(engine)
    }

    /// One media thread per core (at most 8).
    pub fn per_core() -> io::Result<Self> {
        Self::new(std::thread::available_parallelism().map_or(1, |n| n.get().min(8)))
    }

    /// Hands a call to the least loaded media thread. Its commands go through the returned
    /// [`Commands`] (dropping them hangs the call up); the receiver gets the outcome when
    /// the call ends (an error only if the call's thread failed while handling it).
    pub fn start(&self, start: MediaStart) -> (Commands, oneshot::Receiver<MediaOutcome>) {
        let (done, outcome) = oneshot::channel();
        let worker = self
            .workers
            .iter()
            .min_by_key(|w| w.shared.calls.load(Ordering::Relaxed))
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
    recv: [Vec<u8>; RECV_BATCH],
    meta: [RecvMeta; RECV_BATCH],
    send: Vec<u8>,
    srtp: Vec<u8>,
}

/// One media thread: its calls, their sockets and their deadlines.
struct Worker {
    poll: Poll,
    shared: Arc<WorkerShared>,
    /// Calls by slot; a slot's token is its index + 1 (0 is the waker).
    slots: Vec<Option<Box<CallMedia>>>,
    free: Vec<usize>,
    by_key: HashMap<u64, usize>,
    /// (deadline, slot, key): an entry is live while that slot holds that key with that
    /// deadline; others are dropped when they come up.
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    bufs: Buffers,
}

impl Worker {
    fn new(poll: Poll, shared: Arc<WorkerShared>) -> Self {
        Self {
            poll,
            shared,
            slots: Vec::new(),
            free: Vec::new(),
            by_key: HashMap::new(),
            timers: BinaryHeap::new(),
            bufs: Buffers {
                recv: std::array::from_fn(|_| vec![0u8; RECV_BUF]),
                meta: [RecvMeta::default(); RECV_BATCH],
                send: vec![0u8; RECV_BUF],
                srtp: Vec::with_capacity(RECV_BUF + SRTP_TRAILER_ROOM),
            },
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut queue = Vec::new();
        while !self.shared.stop.load(Ordering::Acquire) {
            let timeout = self.timers.peek().map(|Reverse((at, ..))| at.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "media thread: poll failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            for event in &events {
                if event.token() != WAKER {
                    self.guarded(event.token().0 - 1, |slot, bufs| slot.readable(bufs));
                }
            }
            // Commands (and new calls) after the packets that woke us, in the order sent.
            std::mem::swap(&mut queue, &mut *self.shared.queue.lock().unwrap_or_else(|e| e.into_inner()));
            for (key, message) in queue.drain(..) {
                self.message(key, message);
            }
            let now = Instant::now();
            while let Some(&Reverse((at, index, key))) = self.timers.peek() {
                if at > now {
                    break;
                }
                self.timers.pop();
                let live = matches!(self.slots.get(index), Some(Some(slot)) if slot.key == key && slot.deadline == Some(at));
                if live {
                    self.guarded(index, |slot, _| {
                        slot.deadline = None;
                        let result = slot.call.handle_input(Input::Tick(now));
                        slot.after_input(result);
                    });
                }
            }
        }
    }

    fn message(&mut self, key: u64, message: Message) {
        match message {
            Message::Start(start) => {
                let (start, done) = *start;
                let index = self.free.pop().unwrap_or_else(|| {
                    self.slots.push(None);
                    self.slots.len() - 1
                });
                let mut socket = mio::net::UdpSocket::from_std(start.socket);
                let ready = UdpSocketState::new((&socket).into()).and_then(|udp| {
                    self.poll.registry().register(&mut socket, Token(index + 1), mio::Interest::READABLE)?;
                    Ok(udp)
                });
                let udp = match ready {
                    Ok(udp) => udp,
                    Err(e) => {
                        // Not expected of a socket we bound: the call ends at once (no message
                        // from here; recovery stores its empty recording) and the caller gets a BYE.
                        tracing::error!(error = %e, "cannot read an RTP socket; ending the call");
                        self.free.push(index);
                        self.shared.calls.fetch_sub(1, Ordering::Relaxed);
                        let _ = done.send(MediaOutcome { meta: None, ended_by_call: true, packets_sent: 0 });
                        return;
                    }
                };
                self.slots[index] = Some(Box::new(CallMedia {
                    key,
                    call: start.call,
                    socket,
                    udp,
                    remote: start.remote,
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
                // The first drain: the call's first deadline.
                self.guarded(index, |_, _| {});
            }
            Message::Command(command) => self.command(key, Some(command)),
            Message::Closed => self.command(key, None),
        }
    }

    /// Hands call `key` a command from its signalling (`None`: its [`Commands`] were dropped).
    /// Before a hang-up (either), the call reads what its socket already holds: those packets
    /// came before the hang-up.
    fn command(&mut self, key: u64, command: Option<MediaCommand>) {
        let Some(&index) = self.by_key.get(&key) else { return };
        let hangup = matches!(command, Some(MediaCommand::Hangup) | None);
        self.guarded(index, |slot, bufs| {
            if hangup {
                slot.readable(bufs);
            }
            slot.command(command);
        });
    }

    /// Runs `f` on the call in `index`, then drains its output; ends the call when it is over
    /// or when `f` or the drain panicked (its outcome then never comes; recovery stores it).
    fn guarded(&mut self, index: usize, f: impl FnOnce(&mut CallMedia, &mut Buffers)) {
        let Some(Some(slot)) = self.slots.get_mut(index) else { return };
        let bufs = &mut self.bufs;
        let result = catch_unwind(AssertUnwindSafe(|| {
            f(slot, bufs);
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
        if ended && let Some(mut slot) = self.slots[index].take() {
            let _ = self.poll.registry().deregister(&mut slot.socket);
            self.by_key.remove(&slot.key);
            self.free.push(index);
            self.shared.calls.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// One call on a media thread.
struct CallMedia {
    key: u64,
    call: Call,
    socket: mio::net::UdpSocket,
    /// Reads the socket in batches.
    udp: UdpSocketState,
    remote: Option<SocketAddr>,
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
                        if self.socket.send_to(datagram, to).is_ok() {
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

    /// Reads the socket until it is empty (it is edge-triggered), feeding every datagram.
    fn readable(&mut self, bufs: &mut Buffers) {
        loop {
            let Buffers { recv, meta, srtp, send } = bufs;
            let mut slices = recv.each_mut().map(|b| IoSliceMut::new(b));
            let count = match self.udp.recv((&self.socket).into(), &mut slices, meta) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // An ICMP error of an earlier send, reported once: the socket goes on.
                    tracing::debug!(error = %e, "rtp receive error");
                    continue;
                }
            };
            for (slice, m) in slices.iter().zip(meta.iter()).take(count) {
                // With receive offload, one buffer holds several datagrams of `stride` bytes.
                for datagram in slice[..m.len.min(slice.len())].chunks(m.stride.max(1)) {
                    self.datagram(datagram, m.addr, srtp);
                    if self.drain(send, srtp).is_none() {
                        return;
                    }
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
        if !self.latched && looks_like_rtp(datagram) {
            self.remote = Some(from);
            self.latched = true;
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
        for seq in 0..count {
            let mut p = vec![0x80, 0];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
            p.extend_from_slice(&ssrc.to_be_bytes());
            p.extend_from_slice(&[0x55; 160]);
            caller.send_to(&p, to).expect("send");
        }
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
                socket,
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
            let mut buf = [0u8; 2048];
            for _ in 0..5 {
                let (len, from) = caller.recv_from(&mut buf).expect("greeting packet");
                assert!(len > 12 && from == *ours, "an RTP packet from the call's socket");
            }
            std::thread::sleep(Duration::from_millis(100));
            talk(caller, *ours, 0x1000 + n as u32, 10 * (n as u16 + 1));
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
            socket,
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
}
