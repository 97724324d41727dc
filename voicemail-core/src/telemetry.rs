//! Operational metrics of the mailbox layer, through the [`metrics`] facade: messages stored
//! by how their call ended, delivery attempts by target and outcome, and the delivery queue's
//! depth per target. The [`runner::Runner`](crate::runner::Runner) records them as it works.
//!
//! Nothing is recorded anywhere until the application installs a recorder (the answering
//! machine installs a Prometheus one under `[metrics]`): without one every call here is a
//! no-op, so the library stays embeddable. The engine (`call`, `io`, `codec`, `rtp`,
//! `jitter`, `greeting`, `recording`, `message`) records nothing itself: its counters
//! ([`MediaStats`](crate::MediaStats)) are read by the adapters.
//!
//! | name | type | labels |
//! |---|---|---|
//! | [`MESSAGES`] `voicemail_messages_total` | counter | `mailbox`, `end_reason` (`hang-up`, `interrupted`, ...) |
//! | [`DELIVERIES`] `voicemail_deliveries_total` | counter | `mailbox`, `target` (`maildir`, `smtp`, `imap`), `outcome` (`delivered`, `failed`, `rejected`) |
//! | [`DELIVERY_QUEUE`] `voicemail_delivery_queue` | gauge | `mailbox`, `target` |

use crate::mailbox::RunReport;
use crate::message::MessageMeta;

/// Messages durably stored (finished calls and recovered ones), by the call's end reason.
pub const MESSAGES: &str = "voicemail_messages_total";
/// Delivery attempts by target kind and outcome: `delivered` (acknowledged), `failed` (to be
/// retried), `rejected` (refused for good, until queued again).
pub const DELIVERIES: &str = "voicemail_deliveries_total";
/// Deliveries waiting for their target (pending or failing), as of the target worker's last
/// pass.
pub const DELIVERY_QUEUE: &str = "voicemail_delivery_queue";

/// Registers the descriptions (help texts) of this module's metrics with the installed
/// recorder. Optional: metrics are recorded without it.
pub fn describe() {
    metrics::describe_counter!(MESSAGES, "Messages stored (finished and recovered calls), by end reason.");
    metrics::describe_counter!(DELIVERIES, "Delivery attempts, by target kind and outcome.");
    metrics::describe_gauge!(DELIVERY_QUEUE, "Deliveries waiting for their target (pending or failing).");
}

/// Counts a message that was just stored.
pub(crate) fn message_stored(meta: &MessageMeta) {
    let mailbox = meta.mailbox.clone().unwrap_or_default();
    metrics::counter!(MESSAGES, "mailbox" => mailbox, "end_reason" => meta.end_reason.as_str()).increment(1);
}

/// Counts the attempts of one delivery pass of `target`.
pub(crate) fn delivery_pass(mailbox: &str, target: &str, report: &RunReport) {
    for (outcome, n) in
        [("delivered", report.delivered.len()), ("failed", report.failed.len()), ("rejected", report.rejected.len())]
    {
        // Each series exists from the first pass on, at 0 until something happens.
        let counter = metrics::counter!(
            DELIVERIES,
            "mailbox" => mailbox.to_owned(),
            "target" => target.to_owned(),
            "outcome" => outcome
        );
        counter.increment(u64::try_from(n).unwrap_or(u64::MAX));
    }
}

/// Sets the depth of `target`'s delivery queue.
pub(crate) fn queue_depth(mailbox: &str, target: &str, depth: u64) {
    #[allow(clippy::cast_precision_loss)] // exact far beyond any real queue
    let depth = depth as f64;
    metrics::gauge!(DELIVERY_QUEUE, "mailbox" => mailbox.to_owned(), "target" => target.to_owned()).set(depth);
}
