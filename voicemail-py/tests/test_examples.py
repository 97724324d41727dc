"""The Python examples run: ``udp_call.py`` answers RTP this test sends it over 127.0.0.1 and
records it through a mailbox (the WAV's length and its last second are checked byte for
byte, and the message is stored)."""

from __future__ import annotations

import math
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import voicemail
from conftest import REPO, rtp_packet, wav_frames

EXAMPLES = REPO / "examples" / "python"


def test_udp_call_example(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "udp_call.py"), "--port", "0", "--spool", str(tmp_path / "spool")]
        + ["--media-timeout", "1", "--seconds", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith("listening on 127.0.0.1:"), line
        target = ("127.0.0.1", int(line.rsplit(":", 1)[1]))

        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        received: list[tuple[float, bytes]] = []
        rng = random.Random(5)
        payloads: list[bytes] = []
        greeting_s = voicemail.Prompt.default().duration + voicemail.Prompt.beep().duration
        send_for = greeting_s + 2.5
        t0 = time.monotonic()
        k = 0
        while time.monotonic() - t0 < send_for:
            payload = bytes(rng.randrange(256) for _ in range(160))
            payloads.append(payload)
            sock.sendto(rtp_packet(k, 160 * k, payload, marker=k == 0), target)
            k += 1
            next_at = t0 + 0.02 * k
            while True:
                try:
                    data, _ = sock.recvfrom(2048)
                    received.append((time.monotonic(), data))
                except BlockingIOError:
                    pass
                left = next_at - time.monotonic()
                if left <= 0:
                    break
                time.sleep(min(left, 0.005))
        last_sent = time.monotonic()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err

    # The greeting and the beep came back, complete and in order.
    greeting = voicemail.Prompt.default().encoded("pcmu") + voicemail.Prompt.beep().encoded("pcmu")
    assert b"".join(d[12:] for _, d in received) == greeting
    assert len(received) == math.ceil(voicemail.Prompt.default().samples / 160) + math.ceil(2000 / 160)
    seqs = [int.from_bytes(d[2:4], "big") for _, d in received]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:]))

    message = voicemail.Message.from_json(out.strip().splitlines()[-1])
    assert message.end_reason == "media-timeout"
    assert message.caller == f"127.0.0.1:{sock.getsockname()[1]}"
    assert message.wav_path == tmp_path / "spool" / f"{message.id}.wav"
    # The mailbox stored it before the example saw it.
    spool_config = voicemail.Config.from_toml(f'mailbox = "x"\ntimezone = "UTC"\nspool = "{tmp_path / "spool"}"\n')
    status = voicemail.Mailbox(spool_config).show(message.id)
    assert status.lifecycle == "stored" and status.message == message
    frames = wav_frames(message.wav_path)
    assert len(frames) // 16 == message.duration_ms  # 8 kHz, 2 bytes a sample

    # Recording starts when the beep's last packet has played out (≈ 20 ms after it left).
    recording_from = received[-1][0] + 0.02
    expected_ms = (last_sent - recording_from) * 1000
    assert abs(message.duration_ms - expected_ms) < 150, (message.duration_ms, expected_ms)
    # The end of the recording is exactly the caller's last packets, decoded.
    tail = voicemail.decode_audio("pcmu", b"".join(payloads[-50:]))
    assert frames.endswith(tail)
    sock.close()


def test_examples_show_help() -> None:
    for name in ("udp_call.py", "sip_endpoint.py"):
        run = subprocess.run([sys.executable, str(EXAMPLES / name), "--help"], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        assert "usage:" in run.stdout


def test_sip_endpoint_example_reports_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('mailbox = "x"\n', encoding="utf-8")
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "sip_endpoint.py"), "--config", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 1
    assert "sip_endpoint:" in run.stderr and "timezone" in run.stderr
