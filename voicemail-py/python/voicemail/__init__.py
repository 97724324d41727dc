"""voicemail: an answering machine for VoIP.

- :class:`Call` — the sans-IO call engine for integrators with their own SIP/RTP stack:
  feed ``answered``/``rtp``/``dtmf``/``hangup``/``tick`` with ``time.monotonic()`` seconds,
  drain ``poll_output()`` (``SendRtp``, ``Timeout``, ``StateChanged``, ``DtmfReceived``,
  ``MessageRecorded``).
- :class:`SipEndpoint` — the complete SIP answering machine; blocking ``run()`` or asyncio
  (``async with endpoint: async for message in endpoint.messages(): ...``).
- :class:`Config` (TOML), :class:`Mailbox` (New → Assigned → CalledBack), :class:`Outbox`,
  :class:`Delivery`, :class:`Prompt`.

Errors derive from :class:`VoicemailError`; I/O failures are builtin ``OSError`` subclasses.
"""

from __future__ import annotations

from typing import Union

from voicemail._endpoint import SipEndpoint
from voicemail._voicemail import (
    Call,
    CallError,
    Client,
    Config,
    ConfigError,
    DeletionRecord,
    Delivery,
    DeliveryError,
    DeliveryReport,
    DeliveryStatus,
    DtmfReceived,
    GreetingChoice,
    GreetingError,
    InvalidTransitionError,
    Mailbox,
    MailboxError,
    MediaStats,
    Message,
    MessageNotFoundError,
    MessageRecorded,
    MessageStatus,
    NotCalledBackError,
    Outbox,
    Prompt,
    RecordingError,
    SendRtp,
    SipError,
    StateChanged,
    Timeout,
    VoicemailError,
    WorkflowState,
    __version__,
    decode_audio,
    encode_audio,
)

#: An event of a call (the non-packet, non-timeout outputs).
Event = Union[StateChanged, DtmfReceived, MessageRecorded]
#: Anything ``Call.poll_output()`` returns.
Output = Union[SendRtp, Timeout, StateChanged, DtmfReceived, MessageRecorded]

__all__ = [
    "Call",
    "CallError",
    "Client",
    "Config",
    "ConfigError",
    "DeletionRecord",
    "Delivery",
    "DeliveryError",
    "DeliveryReport",
    "DeliveryStatus",
    "DtmfReceived",
    "Event",
    "GreetingChoice",
    "GreetingError",
    "InvalidTransitionError",
    "Mailbox",
    "MailboxError",
    "MediaStats",
    "Message",
    "MessageNotFoundError",
    "MessageRecorded",
    "MessageStatus",
    "NotCalledBackError",
    "Outbox",
    "Output",
    "Prompt",
    "RecordingError",
    "SendRtp",
    "SipEndpoint",
    "SipError",
    "StateChanged",
    "Timeout",
    "VoicemailError",
    "WorkflowState",
    "__version__",
    "decode_audio",
    "encode_audio",
]
