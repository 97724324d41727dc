//! Inputs to and outputs from a [`Call`](crate::call::Call).

use std::time::Instant;

use bytes::Bytes;

use crate::codec::CodecKind;
use crate::message::MessageMeta;
use crate::rtp::dtmf::DtmfDigit;

/// Where a call is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallState {
    /// Created, not answered yet.
    Ringing,
    /// Answered; the greeting starts at once.
    Answered,
    /// Playing the greeting.
    Greeting,
    /// Playing the beep.
    Beep,
    /// Recording the caller.
    Recording,
    /// Ended; the message has been reported.
    Ended,
}

impl CallState {
    /// The lowercase name (`ringing`, `greeting`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Ringing => "ringing",
            CallState::Answered => "answered",
            CallState::Greeting => "greeting",
            CallState::Beep => "beep",
            CallState::Recording => "recording",
            CallState::Ended => "ended",
        }
    }
}

/// Something that happened to the call, fed in with [`Call::handle_input`](crate::call::Call::handle_input).
/// Every input carries the time it happened; time never goes backwards.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// The call was answered (SIP 200 OK sent/ACKed): start the greeting.
    Answered(Instant),
    /// A datagram arrived on the call's RTP port. Anything may be in it.
    Rtp(Instant, &'a [u8]),
    /// A DTMF digit arrived out of band (SIP INFO).
    Dtmf(Instant, DtmfDigit),
    /// The caller hung up (BYE or CANCEL).
    Hangup(Instant),
    /// The call went on hold (`true`: a re-INVITE with sendonly, inactive or `c=0.0.0.0`) or
    /// came off it (`false`). On hold, a silent media path does not end the call; the media
    /// timeout starts afresh when the hold ends. The recording goes on either way.
    Hold(Instant, bool),
    /// The caller's codec changed: a re-INVITE or UPDATE was answered with another codec, or
    /// the ACK of a late-offer INVITE answered the offer with a codec other than the one the
    /// call was made with. From now on the greeting and beep go out in the new codec (the
    /// prompt goes on where it was), audio of the new payload type is recorded, and audio
    /// still arriving with the previous payload type (in flight when the change was made) is
    /// decoded with the previous codec. The recording keeps its rate: audio of a codec at
    /// another rate is resampled to it. The message's [`codec`](MessageMeta::codec) is the
    /// codec in use when the call ends.
    ///
    /// A change whose payload types are not 0..=127, or whose telephone-event payload type is
    /// the audio one, is refused with [`Error::InvalidConfig`](crate::Error::InvalidConfig)
    /// (the call goes on unchanged). A change to the codec in use changes nothing.
    Codec(Instant, CodecChange),
    /// Time passed (a deadline given by [`Output::Timeout`] was reached).
    Tick(Instant),
}

/// The codec a call uses from an [`Input::Codec`] on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CodecChange {
    /// The audio codec.
    pub codec: CodecKind,
    /// Its RTP payload type (sent, and expected from the caller).
    pub payload_type: u8,
    /// The RFC 4733 telephone-event payload type, if negotiated.
    pub dtmf_payload_type: Option<u8>,
}

impl CodecChange {
    /// `codec` with its static payload type (96 for L16 and Opus) and telephone-event 101.
    pub fn new(codec: CodecKind) -> Self {
        use crate::codec::Codec as _;
        Self { codec, payload_type: codec.static_payload_type().unwrap_or(96), dtmf_payload_type: Some(101) }
    }
}

impl Input<'_> {
    /// The time the input carries.
    pub fn time(&self) -> Instant {
        match *self {
            Input::Answered(t)
            | Input::Rtp(t, _)
            | Input::Dtmf(t, _)
            | Input::Hangup(t)
            | Input::Hold(t, _)
            | Input::Codec(t, _)
            | Input::Tick(t) => t,
        }
    }
}

/// What the call wants done next, pulled with [`Call::poll_output`](crate::call::Call::poll_output).
#[derive(Debug)]
#[must_use]
pub enum Output {
    /// Send this RTP packet to the caller now.
    SendRtp(RtpOut),
    /// Something happened.
    Event(Event),
    /// Nothing more to do until this time (or until the next input). `None`-like deadlines are
    /// never returned: an ended call returns a timeout far in the future.
    Timeout(Instant),
}

/// An outgoing RTP packet: a 12-byte header and a payload shared with the greeting cache
/// (cloning it does not copy or allocate).
#[derive(Debug, Clone)]
pub struct RtpOut {
    /// The RTP header (version 2, no CSRC, no extension).
    pub header: [u8; 12],
    /// The encoded payload.
    pub payload: Bytes,
}

impl RtpOut {
    /// The packet's total length.
    pub fn len(&self) -> usize {
        12 + self.payload.len()
    }

    /// Always false: a packet has at least a header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Copies the packet into `buf` and returns its length, or `None` when `buf` is too short.
    pub fn write_to(&self, buf: &mut [u8]) -> Option<usize> {
        let n = self.len();
        let dst = buf.get_mut(..n)?;
        dst[..12].copy_from_slice(&self.header);
        dst[12..].copy_from_slice(&self.payload);
        Some(n)
    }

    /// The packet as a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        v.extend_from_slice(&self.header);
        v.extend_from_slice(&self.payload);
        v
    }
}

/// Something the call reports.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The call moved to a new state.
    StateChanged(CallState),
    /// A DTMF digit was received (RFC 4733 or SIP INFO), once per key press.
    DtmfReceived(DtmfDigit),
    /// The call ended and its message is complete: the WAV is finalised. Exactly once per call.
    MessageRecorded(Box<MessageMeta>),
}
