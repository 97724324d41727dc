"""A call in progress survives the end of the process serving it. SIPp calls a
``SipEndpoint`` running in its own process (``serve_endpoint.py``) and streams a tone for 10 s:

- SIGKILL after about 4 s of audio: nothing runs at the end, yet the next endpoint on the same
  spool recovers the message (end reason ``interrupted``, the audio up to the kill) and
  delivers it to the Maildir folder;
- SIGTERM after about 4 s of audio: the endpoint stops by itself as gracefully as on Ctrl-C:
  it hangs the call up, stores the complete message, delivers it, and exits with status 0.

Skipped without SIPp (/usr/bin/sipp), unless VOICEMAIL_REQUIRE_INTEROP=1. Every wait is
bounded; every child is killed by its PID when a test ends.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, List, Optional

import pytest

import voicemail
from conftest import GREETING_MS, sipp_argv, sipp_path, wav_frames

SIPP = sipp_path()
pytestmark = [pytest.mark.sipp, pytest.mark.skipif(SIPP is None, reason="SIPp not found (Debian package sip-tester)")]
SCRIPT = Path(__file__).parent / "serve_endpoint.py"
CALLER = "+74951230000"
#: Audio streamed before the signal, in seconds.
AUDIO_BEFORE_SIGNAL = 4.0


class Child:
    """A child process whose stdout lines are read on a thread (so waits can be bounded)."""

    def __init__(self, argv: List[str], cwd: Optional[Path] = None) -> None:
        self.proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[Optional[str]] = queue.Queue()
        self.err: List[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._threads = [
            threading.Thread(target=self._read_out, args=(self.proc.stdout,), daemon=True),
            threading.Thread(target=self._read_err, args=(self.proc.stderr,), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read_out(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _read_err(self, stream: IO[str]) -> None:
        for line in stream:
            self.err.append(line.rstrip("\n"))

    def line(self, timeout: float) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no output within {timeout} s; stderr:\n" + "\n".join(self.err[-40:]))
        if line is None:
            pytest.fail(f"the process ended (status {self.proc.poll()}); stderr:\n" + "\n".join(self.err[-40:]))
        return line

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        for t in self._threads:
            t.join(10)
        return code

    def kill(self) -> None:
        """SIGKILL by PID if it still runs, reap it and close its pipes."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        for t in self._threads:
            t.join(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "voicemail.toml"
    path.write_text(
        'mailbox = "Python"\ntimezone = "UTC"\nnumber = "+74951234500"\nspool = "spool"\n'
        '[store]\nmin_free = "0"\n'
        '[delivery.maildir]\nroot = "Maildir"\nfolder = "Voicemail"\n'
        '[sip]\nlisten = "127.0.0.1:0"\nrtp_ports = "30000-39999"\n',
        encoding="utf-8",
    )
    return path


def start_endpoint(config: Path) -> tuple[Child, int]:
    child = Child([sys.executable, str(SCRIPT), str(config)])
    ready = child.line(60)
    assert ready.startswith("ready "), ready
    return child, int(ready.split()[1])


def call_and_wait_for_audio(tmp_path: Path, port: int) -> tuple[Child, float]:
    """Starts SIPp's 10 s call; returns once about ``AUDIO_BEFORE_SIGNAL`` seconds of its audio
    were recorded, with how many milliseconds of audio that should be."""
    workdir = tmp_path / "sipp"
    sipp = Child(sipp_argv(workdir, ("127.0.0.1", port), greeting_ms=GREETING_MS, stream_ms=10_000), cwd=workdir)
    spool = tmp_path / "spool"
    deadline = time.monotonic() + 30
    while not list(spool.glob("*.wav")):  # the mailbox started the call (ring delay 0: answered)
        assert time.monotonic() < deadline, "the call never started: " + "\n".join(sipp.err[-20:])
        assert sipp.proc.poll() is None, "SIPp ended: " + "\n".join(sipp.err[-20:])
        time.sleep(0.02)
    started = time.monotonic()
    # The greeting and the beep play, then SIPp streams (it waits as long after its ACK).
    time.sleep(GREETING_MS / 1000 + AUDIO_BEFORE_SIGNAL)
    return sipp, (time.monotonic() - started) * 1000 - GREETING_MS


def maildir_mails(tmp_path: Path, timeout: float) -> List[bytes]:
    new = tmp_path / "Maildir" / ".Voicemail" / "new"
    deadline = time.monotonic() + timeout
    while True:
        if new.is_dir() and (mails := sorted(new.iterdir())):
            return [m.read_bytes() for m in mails]
        if time.monotonic() >= deadline:
            return []
        time.sleep(0.1)


def test_sigkill_recovery(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    children: List[Child] = []
    try:
        first, port = start_endpoint(config)
        children.append(first)
        sipp, audio_ms = call_and_wait_for_audio(tmp_path, port)
        children.append(sipp)
        os.kill(first.proc.pid, signal.SIGKILL)
        assert first.wait(30) == -signal.SIGKILL
        sipp.kill()  # its call cannot end normally any more
        # Nothing ran at the end: the message is still "recording", its WAV a bare stream.
        [pending] = voicemail.Mailbox(voicemail.Config.load(config)).list()
        assert pending.lifecycle == "recording" and pending.message.caller == CALLER

        # The next endpoint on the same spool recovers it at once, hands it over, delivers it.
        second, _ = start_endpoint(config)
        children.append(second)
        message = voicemail.Message.from_json(second.line(60))
        assert message.id == pending.id
        assert (message.caller, message.end_reason) == (CALLER, "interrupted")
        assert 2000 < message.duration_ms <= audio_ms + 500, (message.duration_ms, audio_ms)
        assert message.wav_path is not None and len(wav_frames(message.wav_path)) // 16 == message.duration_ms
        mails = maildir_mails(tmp_path, 60)
        assert len(mails) == 1 and CALLER.encode() in mails[0]
        os.kill(second.proc.pid, signal.SIGTERM)
        assert second.wait(60) == 0, second.err
        assert "stopped" in second.err
        status = voicemail.Mailbox(voicemail.Config.load(config)).show(message.id)
        assert status.lifecycle == "stored"
        assert [(h.event, h.by) for h in status.history][0] == ("recorded", "recovery")
        assert "delivered" in [h.event for h in status.history]
    finally:
        for child in children:
            child.kill()


def test_sigterm_completes_message(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    children: List[Child] = []
    try:
        endpoint, port = start_endpoint(config)
        children.append(endpoint)
        sipp, audio_ms = call_and_wait_for_audio(tmp_path, port)
        children.append(sipp)
        os.kill(endpoint.proc.pid, signal.SIGTERM)
        # It stops by itself: the call is hung up, its message stored, handed over, delivered.
        assert endpoint.wait(60) == 0, endpoint.err
        assert "stopped" in endpoint.err
        message = voicemail.Message.from_json(endpoint.line(5))
        assert message.caller == CALLER
        assert message.end_reason != "interrupted"
        assert message.end_reason == "hang-up"  # the endpoint hangs up on shutdown
        # The recording covers the audio received until the signal (and the ~100 ms it takes
        # the endpoint to hang up).
        assert abs(message.duration_ms - audio_ms) < 700, (message.duration_ms, audio_ms)
        assert message.wav_path is not None and len(wav_frames(message.wav_path)) // 16 == message.duration_ms
        # Delivered before the process exited (the last delivery pass on stop).
        mails = maildir_mails(tmp_path, 0)
        assert len(mails) == 1 and CALLER.encode() in mails[0]
        status = voicemail.Mailbox(voicemail.Config.load(config)).show(message.id)
        assert status.lifecycle == "stored" and status.message == message
        assert [x.state for x in status.deliveries] == ["delivered"]
    finally:
        for child in children:
            child.kill()
