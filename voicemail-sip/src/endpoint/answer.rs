//! From answering an INVITE to its ACK: 180 Ringing, the ring delay, the 200 OK (our SDP
//! answer, or our offer for a late offer), then the wait for the ACK.
//!
//! - The greeting starts at the ACK, or at the first RTP packet from the caller once the 200
//!   OK is out ([`MediaCommand::Accepted`]): nothing goes to the address an SDP names before
//!   the caller has shown it is there.
//! - A late offer (an INVITE without SDP) gets our offer in the 200 OK; the ACK carries the
//!   answer, which sets the codec ([`MediaCommand::Codec`]) and the remote address before the
//!   greeting starts. An ACK without an acceptable answer is still an ACK: the call is hung
//!   up with BYE and, like every ACKed call, leaves its (empty) message.
//! - A 200 OK not ACKed within `sip.ack_timeout` (64·T1 by default, RFC 3261 §13.3.1.4) ends
//!   the call with BYE and no message ([`AckOutcome::NotAcked`]); so does the SIP stack giving
//!   up on the ACK itself. A CANCEL before the answer, or a BYE before the ACK, is the caller
//!   hanging up: that call becomes a message.

use std::time::Instant;

use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver, TerminatedReason};
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{Header, StatusCode};
use voicemail_core::{CodecChange, MessageId};

use super::{CallSignal, Shared, may_send};
use crate::media::MediaCommand;
use crate::sdp::{self, LocalOffer, Negotiated};
use crate::srtp::SrtpKeys;

/// How answering a call ended.
pub(super) enum AckOutcome {
    /// The ACK arrived; for a late offer, with the answer it carried and the SRTP keys it
    /// settled (when our offer was SRTP).
    Acked(Option<(Negotiated, Option<SrtpKeys>)>),
    /// The call ended before the ACK (CANCEL, BYE, a shutdown, the dialog failing), or the
    /// ACK of a late offer had no acceptable answer: it becomes a message.
    Ended,
    /// The 200 OK was never ACKed: the call leaves no message.
    NotAcked,
}

/// What answering a call needs.
pub(super) struct Answering<'a> {
    pub(super) shared: &'a Shared,
    pub(super) dialog: &'a InviteDialog,
    pub(super) states: &'a mut DialogStateReceiver,
    pub(super) commands: &'a crate::media::Commands,
    /// The SDP of the 200 OK: our answer, or our offer.
    pub(super) sdp: Vec<u8>,
    /// Our offer, when the INVITE had none.
    pub(super) late_offer: Option<&'a LocalOffer>,
    pub(super) signal: &'a mut CallSignal,
    pub(super) id: &'a MessageId,
}

impl Answering<'_> {
    async fn command(&self, command: MediaCommand) {
        self.commands.send(command);
    }

    /// The caller (or the stack) ended the call.
    async fn remote_ended(&mut self) -> AckOutcome {
        self.signal.remote_ended = true;
        self.command(MediaCommand::Hangup).await;
        AckOutcome::Ended
    }
}

/// Rings, answers and waits for the ACK; see the [module docs](self).
pub(super) async fn answer(mut a: Answering<'_>) -> AckOutcome {
    if let Err(e) = a.dialog.ringing(None, None) {
        tracing::debug!(error = %e, "180 ringing");
    }
    let ring = tokio::time::sleep(a.shared.sip.ring_delay);
    tokio::pin!(ring);
    loop {
        tokio::select! {
            () = &mut ring => break,
            st = a.states.recv() => match st {
                Some(DialogState::Terminated(_, reason)) => {
                    tracing::debug!(id = %a.id, ?reason, "ended before the answer");
                    return a.remote_ended().await;
                }
                Some(_) => {}
                None => return a.remote_ended().await,
            },
            () = a.shared.shutdown.cancelled() => {
                let _ = a.dialog.reject(Some(StatusCode::TemporarilyUnavailable), Some("shutting down".into()));
                return a.remote_ended().await;
            }
        }
    }
    // The 200 OK, retransmitted by the stack until the ACK; 64·T1 from now at the latest.
    let deadline = tokio::time::Instant::now() + a.shared.sip.ack_timeout;
    let headers = vec![Header::ContentType(rsipstack::sip::ContentType::new("application/sdp"))];
    if let Err(e) = a.dialog.accept(Some(headers), Some(std::mem::take(&mut a.sdp))) {
        tracing::warn!(error = %e, "sending 200 OK failed");
    }
    if a.late_offer.is_none() {
        a.command(MediaCommand::Accepted).await;
    }
    loop {
        tokio::select! {
            st = a.states.recv() => match st {
                Some(DialogState::Confirmed(..)) => return acked(&mut a).await,
                Some(DialogState::Terminated(_, TerminatedReason::Timeout)) => {
                    // The stack gave up on the ACK (and sent the BYE itself).
                    a.signal.remote_ended = true;
                    a.command(MediaCommand::Hangup).await;
                    return AckOutcome::NotAcked;
                }
                Some(DialogState::Terminated(_, reason)) => {
                    tracing::debug!(id = %a.id, ?reason, "ended before the ACK");
                    return a.remote_ended().await;
                }
                Some(_) => {}
                None => return a.remote_ended().await,
            },
            () = tokio::time::sleep_until(deadline) => {
                a.signal.bye = true;
                a.command(MediaCommand::Hangup).await;
                return AckOutcome::NotAcked;
            }
            () = a.shared.shutdown.cancelled(), if !a.signal.shutdown_hangup => {
                a.signal.shutdown_hangup = true;
                a.command(MediaCommand::Hangup).await;
                return AckOutcome::Ended;
            }
        }
    }
}

/// The ACK arrived: start the greeting; for a late offer, with the answer it carries.
async fn acked(a: &mut Answering<'_>) -> AckOutcome {
    let Some(offer) = a.late_offer else {
        a.command(MediaCommand::Answered).await;
        return AckOutcome::Acked(None);
    };
    let body = a.dialog.last_remote_ack().map(|ack| ack.body).unwrap_or_default();
    match sdp::accept_answer_srtp(&body, offer) {
        Ok((n, keys)) => {
            if let Some(keys) = keys {
                a.command(MediaCommand::Srtp(keys)).await;
            }
            let change =
                CodecChange { codec: n.codec, payload_type: n.payload_type, dtmf_payload_type: n.dtmf_payload_type };
            a.command(MediaCommand::Codec(change)).await;
            let hold = !may_send(&n) || !n.direction.remote_sends();
            a.command(MediaCommand::Remote { addr: n.remote_rtp, send: may_send(&n), hold }).await;
            a.command(MediaCommand::Answered).await;
            tracing::debug!(id = %a.id, codec = ?n.codec, remote = ?n.remote_rtp, "late offer answered in the ACK");
            AckOutcome::Acked(Some((n, keys)))
        }
        Err(e) => {
            if let Some(suppressed) = a.shared.log_limit.allow("late-offer-answer", Instant::now()) {
                tracing::warn!(id = %a.id, error = %e, suppressed, "the ACK of a late offer has no acceptable answer: hanging up");
            }
            a.signal.bye = true;
            a.command(MediaCommand::Hangup).await;
            AckOutcome::Ended
        }
    }
}
