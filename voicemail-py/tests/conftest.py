"""Shared helpers of the voicemail Python tests: RTP packets, a simulated-clock driver for
``voicemail.Call``, WAV reading, temporary configurations and mailboxes."""

from __future__ import annotations

import math
import os
import random
import shutil
import socket
import struct
import time
import wave
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Tuple

import pytest

import voicemail

#: The repository root (voicemail-py/tests/ → ../..).
REPO = Path(__file__).resolve().parents[2]
#: The configuration documented in the repository.
EXAMPLE_CONFIG = REPO / "examples" / "voicemail.toml"


def rtp_packet(seq: int, ts: int, payload: bytes, *, pt: int = 0, ssrc: int = 0x1234_5678, marker: bool = False) -> bytes:
    """An RTP packet (version 2, no CSRC, no extension)."""
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFF_FFFF, ssrc) + payload


def dtmf_event(event: int, *, end: bool, duration: int) -> bytes:
    """An RFC 4733 telephone-event payload (volume 10)."""
    return struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)


def wav_frames(path: Path) -> bytes:
    """The data chunk of an 8 kHz 16-bit mono WAV, checking the format."""
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (1, 8000, 2), path
        return w.readframes(w.getnframes())


def wav_ms(path: Path) -> int:
    """The length of a WAV in milliseconds."""
    with wave.open(str(path), "rb") as w:
        return w.getnframes() * 1000 // w.getframerate()


class Driver:
    """Drives a ``voicemail.Call`` with a simulated clock: every input is followed by a full
    drain, and the outputs are sorted into packets, events and the last timeout."""

    def __init__(self, call: voicemail.Call, start: float = 1000.0) -> None:
        self.call = call
        self.now = start
        self.sent: List[Tuple[float, voicemail.SendRtp]] = []
        self.events: List[object] = []
        self.timeout: Optional[float] = None
        self.message: Optional[voicemail.Message] = None

    def _collect(self) -> None:
        for out in self.call.drain():
            if isinstance(out, voicemail.SendRtp):
                self.sent.append((self.now, out))
            elif isinstance(out, voicemail.Timeout):
                self.timeout = out.at
            else:
                self.events.append(out)
                if isinstance(out, voicemail.MessageRecorded):
                    assert self.message is None, "a second MessageRecorded"
                    self.message = out.message

    def answer(self) -> None:
        self.call.answered(self.now)
        self._collect()

    def advance_to(self, t: float) -> None:
        """Moves the clock to ``t``, ticking at every deadline on the way."""
        while self.timeout is not None and self.timeout <= t and not self.call.ended:
            self.now = max(self.now, self.timeout)
            self.call.tick(self.now)
            self._collect()
        self.now = max(self.now, t)
        if not self.call.ended:
            self.call.tick(self.now)
            self._collect()

    def until_state(self, state: str, limit: float = 60.0) -> None:
        """Ticks at each deadline until the call is in ``state``."""
        end = self.now + limit
        while self.call.state != state:
            assert self.timeout is not None and self.timeout <= end, f"never reached {state}"
            before = (self.timeout, len(self.sent), len(self.events))
            self.now = self.timeout
            self.call.tick(self.now)
            self._collect()
            # Ticking at a Timeout's `at` always reaches that deadline: something happens.
            assert (self.timeout, len(self.sent), len(self.events)) != before, f"no progress at {self.now}"

    def rtp(self, t: float, data: bytes) -> None:
        self.now = t
        self.call.rtp(t, data)
        self._collect()

    def hangup(self, t: float) -> voicemail.Message:
        self.now = t
        self.call.hangup(t)
        self._collect()
        assert self.message is not None
        return self.message

    def states(self) -> List[str]:
        return [e.state for e in self.events if isinstance(e, voicemail.StateChanged)]


def make_config(base: Path, extra: str = "", *, spool: str = "spool") -> voicemail.Config:
    """A configuration whose spool is ``base/spool`` (time zone UTC, no free-space check);
    ``extra`` is appended TOML (``[recording]``, ``[delivery.maildir]``, ...)."""
    text = f'mailbox = "Test"\ntimezone = "UTC"\nspool = "{spool}"\n[store]\nmin_free = "0"\n' + extra
    return voicemail.Config.from_toml(text, base_dir=base)


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def mailbox(tmp_path: Path) -> voicemail.Mailbox:
    """A mailbox with the default recording settings and no delivery target."""
    return voicemail.Mailbox(make_config(tmp_path))


@pytest.fixture
def new_call(mailbox: voicemail.Mailbox) -> Iterator[Callable[..., voicemail.Call]]:
    """A factory of calls of ``mailbox``: ``new_call(**start_call_kwargs)``."""

    def make(**kwargs: Any) -> voicemail.Call:
        kwargs.setdefault("caller", "+74951234567")
        kwargs.setdefault("rtp_seed", 7)
        return mailbox.start_call(**kwargs)

    yield make


@pytest.fixture
def example_config(tmp_path: Path) -> voicemail.Config:
    """``examples/voicemail.toml`` copied into a temporary directory (with its client
    directory), so its relative spool and Maildir land there."""
    d = tmp_path / "cfg"
    d.mkdir()
    shutil.copy(EXAMPLE_CONFIG, d / "voicemail.toml")
    shutil.copy(REPO / "examples" / "clients.csv", d / "clients.csv")
    return voicemail.Config.load(d / "voicemail.toml")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def sipp_path() -> Optional[str]:
    """SIPp, or ``None`` (tests then skip, unless VOICEMAIL_REQUIRE_INTEROP=1 makes it fail)."""
    path = shutil.which("sipp") or ("/usr/bin/sipp" if os.path.exists("/usr/bin/sipp") else None)
    if path is None and os.environ.get("VOICEMAIL_REQUIRE_INTEROP") == "1":
        pytest.fail("sipp not found (Debian package sip-tester), and VOICEMAIL_REQUIRE_INTEROP=1")
    return path


#: SIPp, or ``None`` (test modules call ``sipp_path()`` to skip, or fail when it is required).
SIPP = shutil.which("sipp") or ("/usr/bin/sipp" if os.path.exists("/usr/bin/sipp") else None)
#: The SIPp scenario: one call that waits for the greeting, streams a tone, hangs up.
SCENARIO = Path(__file__).parent / "sipp" / "uac_call.xml"
#: How long the greeting and the beep play, in ms (plus a little).
GREETING_MS = math.ceil((voicemail.Prompt.default().duration + voicemail.Prompt.beep().duration) * 1000) + 40


def write_ulaw_wav(path: Path, seconds: float, freq: float) -> None:
    """An 8 kHz μ-law WAV (format 7, as SIPp's rtp_stream reads it) of a sine tone."""
    n = round(seconds * 8000)
    pcm = b"".join(struct.pack("<h", int(math.sin(2 * math.pi * freq * i / 8000) * 12000)) for i in range(n))
    data = voicemail.encode_audio("pcmu", pcm)
    fmt = struct.pack("<HHIIHHH", 7, 1, 8000, 8000, 1, 8, 0)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"fact" + struct.pack("<II", 4, n) + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def free_port_block(span: int) -> int:
    """The first of ``span`` consecutive free UDP ports on 127.0.0.1 (from 40000 up)."""
    rng = random.Random(os.getpid() ^ time.time_ns())
    for _ in range(200):
        base = 40000 + rng.randrange(10000) * 2
        held = []
        try:
            for i in range(span):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(s)
                s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no free port block")


def sipp_argv(workdir: Path, target: tuple[str, int], *, greeting_ms: int, stream_ms: int) -> List[str]:
    """SIPp placing one call from +74951230000 to 4951234500 (scenario tests/sipp/uac_call.xml)."""
    workdir.mkdir(parents=True, exist_ok=True)
    write_ulaw_wav(workdir / "tone.wav", max(stream_ms / 1000 + 1, 1.0), 440.0)
    xml = SCENARIO.read_text(encoding="utf-8")
    for key, value in {
        "CALLER": "+74951230000",
        "GREETING_MS": str(greeting_ms),
        "STREAM_MS": str(stream_ms),
        "FILE": "tone.wav",
    }.items():
        xml = xml.replace("{{" + key + "}}", value)
    assert "{{" not in xml
    (workdir / "uac_call.xml").write_text(xml, encoding="utf-8")
    sip_port = free_port_block(1)
    media = free_port_block(8)
    assert SIPP is not None
    return (
        [SIPP, f"{target[0]}:{target[1]}", "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", str(sip_port)]
        + ["-mp", str(media), "-nostdin", "-timeout", "60s", "-timeout_error", "-trace_err"]
        + ["-sf", "uac_call.xml", "-s", "4951234500", "-m", "1"]
    )


def sipp_failure(workdir: Path, out: str) -> str:
    """What SIPp printed and logged, for an assertion message."""
    errors = "".join(p.read_text(errors="replace") for p in workdir.glob("*_errors.log"))
    return f"{out[-3000:]}\n--- errors.log\n{errors[-3000:]}"
