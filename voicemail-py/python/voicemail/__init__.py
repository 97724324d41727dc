"""voicemail: an answering machine for VoIP.

- :class:`Mailbox` — the one owner of a message's life: ``Mailbox(config).start_call(...)``
  starts a call, and its message is stored before you see it; ``list``/``show``/``assign``/
  ``called_back``/``delete`` (New → Assigned → CalledBack, with history), ``deliveries``/
  ``deliver``/``retry`` (Maildir, SMTP, IMAP), ``recover`` (calls whose process died).
- :class:`Call` — the sans-IO call engine for integrators with their own SIP/RTP stack
  (made by ``Mailbox.start_call``): feed ``answered``/``rtp``/``dtmf``/``hangup``/``tick``
  with ``time.monotonic()`` seconds, drain ``poll_output()`` (``SendRtp``, ``Timeout``,
  ``StateChanged``, ``DtmfReceived``, ``MessageRecorded``); or, for a media stack that
  decodes (WebRTC), ``feed_pcm``/``drain_pcm`` (``SendPcm``) with 16-bit PCM at 8-48 kHz.
- :class:`SipEndpoint` — the complete SIP answering machine on a mailbox; blocking ``run()``
  or asyncio (``async with endpoint: async for message in endpoint.messages(): ...``);
  stops gracefully on Ctrl-C and SIGTERM. Per-call hooks: ``on_call`` (:class:`Accept`,
  :class:`Reject`), ``on_dtmf``, ``on_state``, plain functions or coroutines.
- :class:`Config` (TOML), :class:`Prompt`.

Rust's logs go to Python's :mod:`logging` under the ``voicemail`` logger
(``voicemail.core.mailbox``, ``voicemail.sip.endpoint``, ...), at their own levels, from a
thread of their own (:func:`flush_logs` waits for them).

Errors derive from :class:`VoicemailError`; malformed arguments (a bad message id, an empty
name) are ``ValueError``; I/O failures are builtin ``OSError`` subclasses.
"""

from __future__ import annotations

from typing import Literal, Union

from voicemail._endpoint import SipEndpoint
from voicemail._voicemail import (
    Accept,
    Call,
    CallError,
    Client,
    Config,
    ConfigError,
    DeliveryError,
    DeliveryReport,
    DeliveryStatus,
    DtmfReceived,
    GreetingChoice,
    GreetingError,
    HistoryEntry,
    IncomingCall,
    InvalidTransitionError,
    Mailbox,
    MailboxError,
    MediaStats,
    Message,
    MessageNotFoundError,
    MessageRecorded,
    MessageStatus,
    NotCalledBackError,
    Prompt,
    RecordingError,
    Reject,
    SendPcm,
    SendRtp,
    SipError,
    SpoolFullError,
    StateChanged,
    Timeout,
    VoicemailError,
    WorkflowState,
    __version__,
    decode_audio,
    encode_audio,
    flush_logs,
)

#: An event of a call (the non-packet, non-timeout outputs).
Event = Union[StateChanged, DtmfReceived, MessageRecorded]
#: Anything ``Call.poll_output()`` returns.
Output = Union[SendRtp, Timeout, StateChanged, DtmfReceived, MessageRecorded]
#: The sample rates ``Call.feed_pcm`` and ``Call.drain_pcm`` take, in Hz.
PcmRate = Literal[8000, 16000, 24000, 32000, 48000]
#: Anything ``Call.drain_pcm(rate)`` returns.
PcmOutput = Union[SendPcm, Timeout, StateChanged, DtmfReceived, MessageRecorded]

__all__ = [
    "Accept",
    "Call",
    "CallError",
    "Client",
    "Config",
    "ConfigError",
    "DeliveryError",
    "DeliveryReport",
    "DeliveryStatus",
    "DtmfReceived",
    "Event",
    "GreetingChoice",
    "GreetingError",
    "HistoryEntry",
    "IncomingCall",
    "InvalidTransitionError",
    "Mailbox",
    "MailboxError",
    "MediaStats",
    "Message",
    "MessageNotFoundError",
    "MessageRecorded",
    "MessageStatus",
    "NotCalledBackError",
    "Output",
    "PcmOutput",
    "PcmRate",
    "Prompt",
    "RecordingError",
    "Reject",
    "SendPcm",
    "SendRtp",
    "SipEndpoint",
    "SipError",
    "SpoolFullError",
    "StateChanged",
    "Timeout",
    "VoicemailError",
    "WorkflowState",
    "__version__",
    "decode_audio",
    "encode_audio",
    "flush_logs",
]
