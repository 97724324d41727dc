#!/usr/bin/env python3
"""A ``voicemail.SipEndpoint`` in its own process, for ``test_shutdown.py``.

    python serve_endpoint.py CONFIG.toml

Prints ``ready <port>`` on stdout once the SIP port is bound, then one JSON line per message
(``on_message``: as soon as the mailbox stored it), and ``stopped`` on stderr when ``run()``
returned (after SIGTERM, ``shutdown()``); Ctrl-C ends it with status 130.
"""

from __future__ import annotations

import sys
from pathlib import Path

import voicemail


def show(message: voicemail.Message) -> None:
    # One write per line: messages arrive on a worker thread.
    sys.stdout.write(message.to_json() + "\n")
    sys.stdout.flush()


def main() -> int:
    config = voicemail.Config.load(Path(sys.argv[1]))
    endpoint = voicemail.SipEndpoint(config, on_message=show)
    sys.stdout.write(f"ready {endpoint.local_addr[1]}\n")
    sys.stdout.flush()
    try:
        endpoint.run()
    except KeyboardInterrupt:
        return 130
    print("stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
