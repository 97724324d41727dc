//! A recorded message: the metadata every call attempt yields.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::codec::CodecKind;

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum EndReason {
    /// The caller hung up (SIP BYE or CANCEL).
    HangUp,
    /// The caller pressed the finish key (RFC 4733 or SIP INFO).
    FinishKey,
    /// The recording reached its maximum length.
    MaxLength,
    /// The caller was silent for longer than the silence timeout.
    SilenceTimeout,
    /// No RTP arrived for longer than the media timeout.
    MediaTimeout,
    /// Writing the recording failed (for example a full disk); what was written is kept.
    RecordingFailed,
    /// The process stopped during the call; the message was recovered at start-up.
    Interrupted,
}

impl EndReason {
    /// The kebab-case name used in metadata (`hang-up`, `finish-key`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::HangUp => "hang-up",
            EndReason::FinishKey => "finish-key",
            EndReason::MaxLength => "max-length",
            EndReason::SilenceTimeout => "silence-timeout",
            EndReason::MediaTimeout => "media-timeout",
            EndReason::RecordingFailed => "recording-failed",
            EndReason::Interrupted => "interrupted",
        }
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything known about one message. Serialises to the JSON written beside the WAV.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageMeta {
    /// The message id, chosen by the adapter (unique within a spool).
    pub id: String,
    /// The caller's number as signalled (user part of From, or P-Asserted-Identity).
    pub caller: String,
    /// The caller's display name, if any.
    pub caller_name: Option<String>,
    /// The called number (mailbox).
    pub called: String,
    /// When the call was answered, in UTC.
    pub started_at: jiff::Timestamp,
    /// Length of the recorded audio in milliseconds (samples / 8).
    pub duration_ms: u64,
    /// Why the call ended.
    pub end_reason: EndReason,
    /// The codec the caller's audio arrived in.
    pub codec: CodecKind,
    /// The name of the greeting that was played.
    pub greeting: String,
    /// DTMF digits received during the call, in order.
    pub dtmf: String,
    /// Where the WAV file is (absent when the recording was not written to a file).
    pub wav_path: Option<PathBuf>,
    /// Media counters of the call.
    pub media: MediaStats,
}

impl MessageMeta {
    /// The recorded length as a [`Duration`].
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.duration_ms)
    }

    /// The metadata as one line of JSON.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// Counters of what arrived on the media path. Malformed input is counted here, never an error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaStats {
    /// RTP packets received (all, including dropped ones).
    pub packets_received: u64,
    /// Packets that were not valid RTP (or were RTCP) and were dropped.
    pub malformed: u64,
    /// Packets with a payload type the call did not negotiate.
    pub unknown_payload_type: u64,
    /// Duplicate packets dropped by the jitter buffer.
    pub duplicates: u64,
    /// Packets that arrived after their slot had been played out.
    pub late: u64,
    /// Packets never received (gaps filled with silence).
    pub lost: u64,
    /// SSRC changes seen.
    pub ssrc_changes: u64,
    /// Samples of silence inserted for gaps.
    pub concealed_samples: u64,
}
