//! Operational metrics of the SIP endpoint, through the [`metrics`] facade: calls in progress,
//! calls by outcome, refused calls by reason, SIP responses sent by status code, and the RTP
//! counters of each finished call (from the jitter buffer's [`MediaStats`]).
//!
//! Nothing is recorded anywhere until the application installs a recorder (the answering
//! machine installs a Prometheus one under `[metrics]`); without one, recording is a no-op.
//! The mailbox layer's metrics (messages, deliveries, queue depth) are in
//! [`voicemail_core::telemetry`].
//!
//! | name | type | labels |
//! |---|---|---|
//! | [`CALLS_IN_PROGRESS`] `voicemail_sip_calls_in_progress` | gauge | |
//! | [`CALLS`] `voicemail_sip_calls_total` | counter | `outcome`: `recorded`, `not_acked`, `failed`, `refused` |
//! | [`REJECTIONS`] `voicemail_sip_rejections_total` | counter | `reason`: `invite_rate`, `call_limit`, `not_allowed`, `no_mailbox`, `shutting_down`, `spool_full`, `no_rtp_port`, `sdp_not_acceptable`, `bad_request`, `internal` |
//! | [`RESPONSES`] `voicemail_sip_responses_total` | counter | `code` (`180`, `200`, `404`, ...) |
//! | [`RTP_PACKETS`] `voicemail_rtp_packets_total` | counter | `kind`: `received`, `lost`, `late`, `duplicate`, `malformed`, `unknown_payload_type` |

use rsipstack::sip::SipMessage;
use rsipstack::transaction::endpoint::MessageInspector;
use rsipstack::transport::SipAddr;
use voicemail_core::MediaStats;

/// Calls whose supervisor runs (from the INVITE taken to the message stored).
pub const CALLS_IN_PROGRESS: &str = "voicemail_sip_calls_in_progress";
/// Calls (INVITEs that passed the request checks and found a mailbox) by outcome:
/// `recorded` (the message was stored), `not_acked` (a 200 OK never ACKed: no message),
/// `failed` (ended without a message; recovery stores its recording), `refused` (answered
/// with an error before the call started: no RTP port, an unacceptable offer, a full spool).
pub const CALLS: &str = "voicemail_sip_calls_total";
/// INVITEs refused, by reason.
pub const REJECTIONS: &str = "voicemail_sip_rejections_total";
/// SIP responses the endpoint's transactions sent, by status code; each sending counts, a
/// retransmission too (a response repeated for a retransmitted request, Timer G).
pub const RESPONSES: &str = "voicemail_sip_responses_total";
/// RTP packets of finished calls, by what became of them.
pub const RTP_PACKETS: &str = "voicemail_rtp_packets_total";

/// Registers the descriptions (help texts) of this module's metrics with the installed
/// recorder. Optional: metrics are recorded without it.
pub fn describe() {
    metrics::describe_gauge!(CALLS_IN_PROGRESS, "Calls in progress.");
    metrics::describe_counter!(CALLS, "Calls by outcome (recorded, not_acked, failed, refused).");
    metrics::describe_counter!(REJECTIONS, "INVITEs refused, by reason.");
    metrics::describe_counter!(RESPONSES, "SIP responses sent, by status code.");
    metrics::describe_counter!(
        RTP_PACKETS,
        "RTP packets of finished calls: received, lost, late, duplicate, malformed, unknown_payload_type."
    );
}

/// Sets the calls-in-progress gauge.
pub(crate) fn calls_in_progress(n: usize) {
    #[allow(clippy::cast_precision_loss)] // exact far beyond any call count
    metrics::gauge!(CALLS_IN_PROGRESS).set(n as f64);
}

/// Counts an INVITE refused for `reason` (one of [`REJECTIONS`]'s reasons).
pub(crate) fn rejected(reason: &'static str) {
    metrics::counter!(REJECTIONS, "reason" => reason).increment(1);
}

/// Counts an INVITE refused by the request checks ([`crate::classify`]) with `status`, for
/// `why`.
pub(crate) fn invite_refused(status: u16, why: &str) {
    rejected(refusal_reason(status, why));
}

/// The [`REJECTIONS`] reason of a refusal by the request checks.
fn refusal_reason(status: u16, why: &str) -> &'static str {
    match status {
        403 => "not_allowed",
        503 if why == crate::classify::CALL_LIMIT => "call_limit",
        503 if why == crate::classify::SHUTTING_DOWN => "shutting_down",
        488 => "sdp_not_acceptable",
        500..=599 => "internal",
        _ => "bad_request",
    }
}

/// A call's outcome, counted in [`CALLS`] when the call's supervisor ends (also when it
/// panics or returns early: `refused` unless set otherwise).
pub(crate) struct CallOutcome(&'static str);

impl CallOutcome {
    /// A call that has not got anywhere yet.
    pub(crate) fn new() -> Self {
        Self("refused")
    }

    /// Sets the outcome counted when this ends.
    pub(crate) fn set(&mut self, outcome: &'static str) {
        self.0 = outcome;
    }
}

impl Drop for CallOutcome {
    fn drop(&mut self) {
        metrics::counter!(CALLS, "outcome" => self.0).increment(1);
    }
}

/// Adds a finished call's RTP counters.
pub(crate) fn rtp(stats: &MediaStats) {
    for (kind, n) in [
        ("received", stats.packets_received),
        ("lost", stats.lost),
        ("late", stats.late),
        ("duplicate", stats.duplicates),
        ("malformed", stats.malformed),
        ("unknown_payload_type", stats.unknown_payload_type),
    ] {
        metrics::counter!(RTP_PACKETS, "kind" => kind).increment(n);
    }
}

/// Counts every response the SIP stack sends ([`RESPONSES`]); leaves messages unchanged.
pub(crate) struct Inspector;

impl MessageInspector for Inspector {
    fn before_send(&self, msg: SipMessage, _dest: Option<&SipAddr>) -> SipMessage {
        if let SipMessage::Response(r) = &msg {
            metrics::counter!(RESPONSES, "code" => r.status_code.code().to_string()).increment(1);
        }
        msg
    }

    fn after_received(&self, msg: SipMessage, _from: Option<&SipAddr>) -> SipMessage {
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_told_apart_by_reason_not_only_by_status() {
        use crate::classify::{CALL_LIMIT, SHUTTING_DOWN};
        assert_eq!(refusal_reason(503, CALL_LIMIT), "call_limit");
        assert_eq!(refusal_reason(503, SHUTTING_DOWN), "shutting_down");
        assert_eq!(refusal_reason(503, "anything else"), "internal");
        assert_eq!(refusal_reason(403, ""), "not_allowed");
        assert_eq!(refusal_reason(488, ""), "sdp_not_acceptable");
        assert_eq!(refusal_reason(420, ""), "bad_request");
    }
}
