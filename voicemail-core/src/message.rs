//! A recorded message: the metadata every call attempt yields, and its typed id.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::codec::CodecKind;

/// The longest message id accepted.
const MAX_ID_LEN: usize = 128;

/// A message id: the one format every part of the product uses.
///
/// New ids are `YYYYMMDDTHHMMSSZ-<16 hex digits>` (the call's UTC start to the second, then
/// 64 random bits; [`MessageId::generate`]), so they sort by time. Parsing accepts any id
/// that can safely name a file: 1 to 128 ASCII letters, digits, `.`, `_` or `-`, not starting
/// with `.` and without `..` (older spools used other shapes). Caller-supplied strings never
/// become ids; ids that arrive from users (a command line, Python, the web) are parsed, so a
/// path separator or a `..` is refused before anything touches the disk.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MessageId(String);

/// A string that is not a valid [`MessageId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid message id {0:?}: expected 1-128 letters, digits, '.', '_' or '-' (not starting with '.', no '..')")]
pub struct InvalidMessageId(pub String);

impl MessageId {
    /// A new id for a call that started at `started_at`; `random` supplies the 64 random bits
    /// (the engine owns no random source: the mailbox passes them in).
    pub fn generate(started_at: jiff::Timestamp, random: u64) -> Self {
        Self(format!("{}-{random:016x}", started_at.strftime("%Y%m%dT%H%M%SZ")))
    }

    /// Checks `id` and wraps it.
    pub fn parse(id: &str) -> Result<Self, InvalidMessageId> {
        let ok = !id.is_empty()
            && id.len() <= MAX_ID_LEN
            && !id.starts_with('.')
            && !id.contains("..")
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok { Ok(Self(id.to_owned())) } else { Err(InvalidMessageId(id.chars().take(MAX_ID_LEN).collect())) }
    }

    /// The id as a string (safe as a file name stem).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for MessageId {
    type Err = InvalidMessageId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for MessageId {
    type Error = InvalidMessageId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<MessageId> for String {
    fn from(id: MessageId) -> Self {
        id.0
    }
}

impl AsRef<str> for MessageId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for MessageId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for MessageId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

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
    /// The message id (unique within a mailbox).
    pub id: MessageId,
    /// The caller's number as signalled (user part of From, or of P-Asserted-Identity or
    /// Remote-Party-ID from a trusted source).
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
    /// Where the WAV file is, filled in by the mailbox that stores the message (absent when
    /// the recording was not written to a file of the mailbox).
    pub wav_path: Option<PathBuf>,
    /// Media counters of the call.
    pub media: MediaStats,
    /// The name of the mailbox that took the call (`mailbox` of its configuration), filled in
    /// by the mailbox that stores the message (absent in records of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<String>,
    /// The number that forwarded the call to the mailbox, as signalled (History-Info, RFC
    /// 7044, or Diversion, RFC 5806), when the call was diverted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverted_from: Option<String>,
    /// The recording's transcript by `[transcription] command`, when one ran and printed
    /// something; added after the message was stored, before its first delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript: Option<String>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        let id = MessageId::generate(jiff::Timestamp::UNIX_EPOCH, 0xabc);
        assert_eq!(id.as_str(), "19700101T000000Z-0000000000000abc");
        assert_eq!(MessageId::parse(id.as_str()), Ok(id));
        for good in ["20261127T143205Z-abc_1.x", "msg-1", "a"] {
            assert!(MessageId::parse(good).is_ok(), "{good:?}");
        }
        let long = "x".repeat(129);
        for bad in ["", ".hidden", "../x", "a/b", "a b", "a\nb", "a..b", "é", long.as_str()] {
            assert!(MessageId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<MessageId>("\"../etc\"").is_err());
    }
}
