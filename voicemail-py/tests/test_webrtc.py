"""WebRTC with aiortc (PyPI): ``examples/python/webrtc_answer.py`` answers an aiortc caller's
peer connection over 127.0.0.1 with the PCM API of ``voicemail.Call``; the caller hears the
greeting, speaks a 440 Hz tone after the beep and hangs up, and the message is stored with
that tone in its recording. Skipped without aiortc, unless VOICEMAIL_REQUIRE_INTEROP=1."""

from __future__ import annotations

import importlib.util
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import voicemail
from conftest import REPO, wav_frames

if importlib.util.find_spec("aiortc") is None:
    if os.environ.get("VOICEMAIL_REQUIRE_INTEROP") == "1":
        pytest.fail("aiortc is not installed (pip install aiortc), and VOICEMAIL_REQUIRE_INTEROP=1", pytrace=False)
    pytest.skip("aiortc is not installed (pip install aiortc)", allow_module_level=True)


def test_webrtc_example_records_an_aiortc_caller(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    run = subprocess.run(
        [sys.executable, str(REPO / "examples" / "python" / "webrtc_answer.py"), "--spool", str(spool), "--seconds", "3"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    message = voicemail.Message.from_json(run.stdout.strip().splitlines()[-1])
    assert message.caller == "webrtc-demo" and message.end_reason == "hang-up"
    # The caller spoke for 3 s after the beep (give or take the network and the clocks).
    assert 2000 <= message.duration_ms <= 6000, message.duration_ms
    assert message.media.packets_received > 100
    # The message is stored in the mailbox, its recording holds the caller's tone.
    mailbox = voicemail.Mailbox(voicemail.Config.from_toml(f'mailbox = "webrtc"\ntimezone = "UTC"\nspool = "{spool}"\n'))
    assert mailbox.show(message.id).message == message
    assert message.wav_path is not None
    frames = wav_frames(message.wav_path)
    samples = struct.unpack(f"<{len(frames) // 2}h", frames)
    middle = samples[len(samples) // 4 : len(samples) * 3 // 4]
    assert max(middle) > 8000
    crossings = sum(1 for a, b in zip(middle, middle[1:]) if a < 0 <= b)
    assert abs(crossings - 440 * len(middle) / 8000) < 0.05 * 440 * len(middle) / 8000, crossings
    # The caller heard the greeting (speech, not silence) before the beep.
    peak = re.search(r"greeting heard by the caller: peak (\d+)", run.stderr)
    assert peak is not None and int(peak.group(1)) > 3000, run.stderr[-2000:]
