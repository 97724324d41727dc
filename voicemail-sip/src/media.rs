//! RTP for one call: the port pool and the task that drives the core [`Call`].
//!
//! The task is a thin driver in the quinn style: it drains [`Call::poll_output`] (sending
//! each RTP packet to the caller, reporting events, keeping the deadline), then waits for
//! whichever comes first: a datagram on the call's socket ([`Input::Rtp`]), the deadline
//! ([`Input::Tick`]) or a command from the call's signalling ([`MediaCommand`]). It ends when
//! the call is [`CallState::Ended`] and returns the message's metadata.
//!
//! Nothing is allocated per packet: one receive buffer and one send buffer are reused, the
//! greeting's payloads are shared `Bytes` slices, and the timer is reset in place.
//!
//! SRTP ([`run_secure`]): every packet is protected before it is sent and unprotected when it
//! arrives, in place in the same two buffers ([`SrtpSession`]); a packet that does not
//! authenticate is dropped before anything else looks at it, so it cannot move the latch below.
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

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use voicemail_core::{Call, CallState, CodecChange, DtmfDigit, Event, Input, MessageMeta, Output};

use crate::hooks::CallNotifier;
use crate::srtp::{SRTP_TRAILER_ROOM, SrtpKeys, SrtpSession};

/// The largest datagram the task accepts (larger ones are truncated, and then malformed).
const RECV_BUF: usize = 2048;

/// A command from the call's signalling to its media task.
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

    /// Binds a socket on the next free even port.
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
            match std::net::UdpSocket::bind(addr) {
                Ok(s) => {
                    s.set_nonblocking(true)?;
                    return UdpSocket::from_std(s);
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

/// How the media task ended.
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

/// Drives `call` until it ends. `remote` is the SDP's RTP address, `send` whether the
/// offer lets us send; `notifier` hears the call's state changes and DTMF keys.
pub async fn run(
    call: Call,
    socket: UdpSocket,
    remote: Option<SocketAddr>,
    send: bool,
    commands: mpsc::Receiver<MediaCommand>,
    notifier: Option<CallNotifier>,
) -> MediaOutcome {
    run_secure(call, socket, remote, send, commands, notifier, None).await
}

/// [`run`], with SRTP when `srtp` is given: what is sent is protected, what arrives must
/// authenticate (anything else is dropped and counted).
pub async fn run_secure(
    mut call: Call,
    socket: UdpSocket,
    mut remote: Option<SocketAddr>,
    mut send: bool,
    mut commands: mpsc::Receiver<MediaCommand>,
    notifier: Option<CallNotifier>,
    mut srtp: Option<SrtpSession>,
) -> MediaOutcome {
    // With SRTP the packets are (un)protected in place: room for the tag, reused buffers.
    let mut recv_buf = vec![0u8; RECV_BUF];
    let mut send_buf = vec![0u8; RECV_BUF];
    let mut srtp_buf: Vec<u8> = Vec::with_capacity(RECV_BUF + SRTP_TRAILER_ROOM);
    let mut srtp_dropped = 0u64;
    let mut latched = false;
    // The 200 OK is out / the greeting has started.
    let mut accepted = false;
    let mut answered = false;
    let mut meta = None;
    let mut hung_up = false;
    let mut commands_open = true;
    let mut packets_sent = 0u64;
    let sleep = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(sleep);
    loop {
        let deadline = loop {
            match call.poll_output() {
                Output::SendRtp(pkt) => {
                    if let (true, Some(to)) = (send, remote)
                        && let Some(n) = pkt.write_to(&mut send_buf)
                    {
                        let datagram = match srtp.as_mut() {
                            None => &send_buf[..n],
                            Some(session) => {
                                srtp_buf.clear();
                                srtp_buf.extend_from_slice(&send_buf[..n]);
                                if let Err(e) = session.protect(&mut srtp_buf) {
                                    tracing::debug!(error = %e, "srtp protect");
                                    continue;
                                }
                                &srtp_buf[..]
                            }
                        };
                        // A lost datagram is like a lost packet on the wire; never fatal.
                        if socket.send_to(datagram, to).await.is_ok() {
                            packets_sent += 1;
                        }
                    }
                }
                Output::Event(Event::MessageRecorded(m)) => meta = Some(*m),
                Output::Event(event) => {
                    if let Some(n) = &notifier {
                        n.event(&event);
                    }
                }
                Output::Timeout(at) => break at,
            }
        };
        if call.state() == CallState::Ended {
            break;
        }
        // Re-arm the timer only when the call needs an earlier wake-up (or it fired): most
        // packets push the deadline later (the media timeout), and a wake-up that comes too
        // early is only a tick the call ignores, so the timer wheel is not touched per packet.
        let deadline = tokio::time::Instant::from_std(deadline);
        if sleep.is_elapsed() || deadline < sleep.deadline() {
            sleep.as_mut().reset(deadline);
        }
        let input_result = tokio::select! {
            r = socket.recv_from(&mut recv_buf) => match r {
                Ok((n, from)) => {
                    let now = Instant::now();
                    let datagram = match srtp.as_mut() {
                        None => &recv_buf[..n],
                        Some(session) => {
                            // SRTCP is not used (we send no RTCP; the core drops RTCP anyway).
                            if !looks_like_rtp(&recv_buf[..n]) {
                                continue;
                            }
                            srtp_buf.clear();
                            srtp_buf.extend_from_slice(&recv_buf[..n]);
                            if session.unprotect(&mut srtp_buf).is_err() {
                                srtp_dropped += 1;
                                if srtp_dropped.is_power_of_two() {
                                    tracing::debug!(dropped = srtp_dropped, %from, "srtp packets that do not authenticate");
                                }
                                continue;
                            }
                            &srtp_buf[..]
                        }
                    };
                    if latched && Some(from) != remote {
                        continue; // not the caller's stream
                    }
                    if !latched && looks_like_rtp(datagram) {
                        remote = Some(from);
                        latched = true;
                    }
                    if accepted && !answered && latched {
                        // The caller is there (symmetric RTP): no need to wait for the ACK.
                        answered = true;
                        if let Err(e) = call.handle_input(Input::Answered(now)) {
                            tracing::debug!(error = %e, "answer at the first RTP packet");
                        }
                    }
                    call.handle_input(Input::Rtp(now, datagram))
                }
                Err(e) => {
                    tracing::debug!(error = %e, "rtp receive error");
                    continue;
                }
            },
            () = &mut sleep => call.handle_input(Input::Tick(Instant::now())),
            cmd = commands.recv(), if commands_open => {
                let now = Instant::now();
                match cmd {
                    Some(MediaCommand::Accepted) => {
                        accepted = true;
                        Ok(())
                    }
                    Some(MediaCommand::Answered) => {
                        answered = true;
                        call.handle_input(Input::Answered(now))
                    }
                    Some(MediaCommand::Codec(change)) => {
                        if let Err(e) = call.handle_input(Input::Codec(now, change)) {
                            // Refused (the endpoint checks the SDP first): the call goes on unchanged.
                            tracing::warn!(error = %e, ?change, "codec change refused");
                        }
                        Ok(())
                    }
                    Some(MediaCommand::Dtmf(d)) => call.handle_input(Input::Dtmf(now, d)),
                    Some(MediaCommand::Remote { addr, send: s, hold }) => {
                        remote = addr;
                        send = s;
                        latched = false;
                        call.handle_input(Input::Hold(now, hold))
                    }
                    Some(MediaCommand::Srtp(keys)) => match SrtpSession::new(&keys) {
                        Ok(session) => {
                            srtp = Some(session);
                            Ok(())
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "new srtp keys refused; ending the call");
                            hung_up = true;
                            call.handle_input(Input::Hangup(now))
                        }
                    },
                    Some(MediaCommand::Hangup) => {
                        hung_up = true;
                        call.handle_input(Input::Hangup(now))
                    }
                    None => {
                        commands_open = false;
                        hung_up = true;
                        call.handle_input(Input::Hangup(now))
                    }
                }
            }
        };
        if let Err(e) = input_result {
            // Only caller misuse can fail; end the call rather than spin.
            tracing::warn!(error = %e, "the call refused an input; ending it");
            if call.state() != CallState::Ended {
                hung_up = true;
                if call.handle_input(Input::Hangup(Instant::now())).is_err() {
                    break;
                }
            }
        }
    }
    MediaOutcome { meta, ended_by_call: !hung_up, packets_sent }
}

/// RTP version 2 and a payload type outside the RTCP range (RFC 5761 §4).
fn looks_like_rtp(d: &[u8]) -> bool {
    d.len() >= 12 && d[0] >> 6 == 2 && !(72..=95).contains(&(d[1] & 0x7f))
}
