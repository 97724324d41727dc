"""Shared helpers of the voicemail Python tests: RTP packets, a simulated-clock driver for
``voicemail.Call``, WAV reading and temporary configurations."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import wave
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

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


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    d = tmp_path / "spool"
    d.mkdir()
    return d


@pytest.fixture
def new_call(spool: Path) -> Iterator[object]:
    """A factory of calls recording into the spool: ``new_call(id, **kwargs)``."""

    def make(id: str = "msg-1", **kwargs: object) -> voicemail.Call:
        kwargs.setdefault("caller", "+74951234567")
        kwargs.setdefault("rtp_seed", 7)
        return voicemail.Call(id=id, recording=spool / f"{id}.wav", **kwargs)  # type: ignore[arg-type]

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
