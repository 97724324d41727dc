#!/usr/bin/env python3
"""Drive a ``voicemail.Call`` from your own RTP stack: an asyncio UDP loop, no SIP at all.

It binds a UDP port, treats the source of the first datagram as the caller, asks the mailbox
for a call (``Mailbox.start_call``: id, greeting, limits, recording in the spool), answers,
sends the greeting and the beep back as RTP paced by the call's timeouts, records what the
caller sends, and ends when the call ends (media timeout, silence, ``#``) or after
``--seconds`` (then it hangs up). The stored message is printed as one JSON line on stdout;
progress goes to stderr. This is the loop an integrator with an existing SIP/RTP stack
writes::

    call = mailbox.start_call(caller=..., now=now)
    call.answered(now)
    while not call.ended:
        for out in call.drain():                       # ends with a Timeout
            SendRtp      -> socket.sendto(out.data, caller)
            events       -> StateChanged / DtmfReceived / MessageRecorded
            Timeout(at)  -> wait for a datagram (call.rtp) or until `at` (call.tick)

The message is stored in the mailbox before ``MessageRecorded`` is returned; delivering it
is the mailbox's business (``Mailbox.deliver()``, or a running ``SipEndpoint``).

Try it with two terminals::

    python examples/python/udp_call.py --port 40000 --spool /tmp/vm
    # then send RTP to 127.0.0.1:40000 (PCMU, payload type 0), e.g. from a softphone or a test
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Optional, Tuple

import voicemail

Addr = Tuple[str, int]


class RtpProtocol(asyncio.DatagramProtocol):
    """Queues every datagram with its arrival time (``time.monotonic()``) and source."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Tuple[float, bytes, Addr]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        self.queue.put_nowait((time.monotonic(), data, addr))


def log(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def open_mailbox(args: argparse.Namespace) -> voicemail.Mailbox:
    """The mailbox of ``--config``, or one made from the command line's options."""
    if args.config:
        return voicemail.Mailbox(voicemail.Config.load(args.config))
    media_timeout_ms = max(1000, round(args.media_timeout * 1000))
    text = (
        f'mailbox = "udp_call"\ntimezone = "UTC"\nspool = {json.dumps(str(args.spool.resolve()))}\n'
        f'[recording]\nmedia_timeout = "{media_timeout_ms}ms"\n'
    )
    if args.greeting:
        text += f"[greetings]\ndefault = {json.dumps(str(args.greeting.resolve()))}\n"
    return voicemail.Mailbox(voicemail.Config.from_toml(text))


async def run(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(RtpProtocol, local_addr=(args.host, args.port))
    host, port = transport.get_extra_info("sockname")[:2]
    log(f"listening on {host}:{port}")
    try:
        mailbox = await loop.run_in_executor(None, open_mailbox, args)
        # The first datagram is the caller: answer it.
        now, first, caller = await proto.queue.get()
        call = mailbox.start_call(caller=f"{caller[0]}:{caller[1]}", codec=args.codec, now=now)
        log(f"call from {caller[0]}:{caller[1]}: answering, message {call.id} in {mailbox.spool}")
        call.answered(now)
        call.rtp(now, first)
        hang_up_at = now + args.seconds
        last = now  # the latest time given to the call
        message: Optional[voicemail.Message] = None
        while message is None:
            deadline = hang_up_at
            for out in call.drain():
                if isinstance(out, voicemail.SendRtp):
                    transport.sendto(out.data, caller)
                elif isinstance(out, voicemail.Timeout):
                    deadline = min(deadline, out.at)
                elif isinstance(out, voicemail.StateChanged):
                    log(f"state: {out.state}")
                elif isinstance(out, voicemail.DtmfReceived):
                    log(f"DTMF: {out.digit}")
                elif isinstance(out, voicemail.MessageRecorded):
                    message = out.message
            if message is not None:
                break
            try:
                now, data, addr = await asyncio.wait_for(proto.queue.get(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                now = last = max(time.monotonic(), deadline, last)
                if now >= hang_up_at:
                    log(f"{args.seconds:g} s passed: hanging up")
                    call.hangup(now)
                else:
                    call.tick(now)
                continue
            if addr == caller:  # anything else is not this call's media
                # A datagram queued before the last tick carries an older arrival time; the
                # call's clock must never go backwards.
                last = max(now, last)
                call.rtp(last, data)
        print(message.to_json(), flush=True)
        log(f"message {message.id}: {message.duration_ms} ms, ended by {message.end_reason}")
        return 0
    finally:
        transport.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="UDP port (default 0: any free port, printed)")
    parser.add_argument("--config", type=Path, help="mailbox configuration (TOML); overrides the three options below")
    parser.add_argument("--spool", type=Path, default=Path("voicemail-data/spool"), help="the mailbox's spool")
    parser.add_argument("--greeting", type=Path, help="greeting audio file (default: the bundled greeting)")
    parser.add_argument("--media-timeout", type=float, default=5.0, help="end after this long without RTP (default 5, at least 1)")
    parser.add_argument("--codec", choices=["pcmu", "pcma"], default="pcmu", help="the caller's codec")
    parser.add_argument("--seconds", type=float, default=60.0, help="hang up after this long (default 60)")
    args = parser.parse_args()
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except (OSError, voicemail.VoicemailError) as e:
        log(f"udp_call: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
