#!/usr/bin/env python3
"""Run the SIP answering machine from Python and print each message as it arrives.

Every call to the endpoint is answered: the greeting the calendar picks plays, then a beep,
and the caller is recorded into the mailbox's spool. Each message is printed as one JSON line
on stdout as soon as the mailbox has stored it (and, with a configuration that names delivery
targets, it is then delivered by e-mail). Calls a crashed run left behind are recovered at
start. Ctrl-C or SIGTERM stops accepting calls, lets the calls in progress finish their
messages, and exits.

    python examples/python/sip_endpoint.py --config examples/voicemail.toml
    python examples/python/sip_endpoint.py --listen 127.0.0.1:5062 --asyncio

A test call with SIPp (from another terminal)::

    sipp -sn uac 127.0.0.1:5060 -s 4951234500 -m 1 -d 10000 -timeout 60s -timeout_error -nostdin
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import voicemail


def log(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def show(message: voicemail.Message) -> None:
    print(message.to_json(), flush=True)


def blocking(endpoint: voicemail.SipEndpoint) -> None:
    """``run()`` in this thread; messages arrive through ``on_message``."""
    endpoint.run()  # returns after SIGTERM or shutdown(); re-raises Ctrl-C after a clean stop


async def with_asyncio(endpoint: voicemail.SipEndpoint) -> None:
    """``async with`` starts and stops the endpoint; ``messages()`` yields each message and
    ends when the endpoint stops (SIGTERM)."""
    async with endpoint:
        async for message in endpoint.messages():
            show(message)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--config", type=Path, help="mailbox configuration (TOML); default: built-in defaults")
    parser.add_argument("--listen", help='SIP address "IP:PORT", overriding [sip] listen (port 0: any free port)')
    parser.add_argument("--asyncio", action="store_true", help="use the asyncio interface")
    parser.add_argument("--no-deliver", action="store_true", help="no deliveries or recovery from this process")
    args = parser.parse_args()

    try:
        config = voicemail.Config.load(args.config) if args.config else voicemail.Config.default()
        endpoint = voicemail.SipEndpoint(
            config,
            on_message=show if not args.asyncio else None,
            deliver=not args.no_deliver,
            listen=args.listen,
        )
    except (OSError, voicemail.VoicemailError) as e:
        log(f"sip_endpoint: {e}")
        return 1
    host, port = endpoint.local_addr
    log(f"listening on {host}:{port} (udp+tcp), spool {endpoint.spool}; Ctrl-C or SIGTERM to stop")
    try:
        if args.asyncio:
            asyncio.run(with_asyncio(endpoint))
        else:
            blocking(endpoint)
    except KeyboardInterrupt:
        log("stopped (Ctrl-C)")
    else:
        log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
