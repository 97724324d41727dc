"""End to end over SIP: SIPp calls a ``voicemail.SipEndpoint`` started from Python, and the
test reads the delivered message — through ``async for ... in endpoint.messages()``, through
``on_message`` with a blocking ``run()``, and from the ``sip_endpoint.py`` example (stopped with
SIGINT or SIGTERM). ``test_shutdown.py`` kills and stops an endpoint in mid-call. Skipped without SIPp (/usr/bin/sipp, Debian sip-tester), unless
VOICEMAIL_REQUIRE_INTEROP=1 (``test_endpoint.py`` has the tests that need no SIP peer)."""

from __future__ import annotations

import asyncio
import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import List, Optional

import pytest

import voicemail
from conftest import GREETING_MS, REPO, sipp_argv, sipp_failure, sipp_path, wav_frames

SIPP = sipp_path()
pytestmark = [pytest.mark.sipp, pytest.mark.skipif(SIPP is None, reason="SIPp not found (Debian package sip-tester)")]


def make_config(tmp_path: Path, deliver: bool = True) -> voicemail.Config:
    text = 'mailbox = "Python"\ntimezone = "UTC"\nnumber = "+74951234500"\nspool = "spool"\n'
    if deliver:
        text += '[delivery.maildir]\nroot = "Maildir"\nfolder = "Voicemail"\n'
    text += '[sip]\nlisten = "127.0.0.1:0"\nrtp_ports = "30000-39999"\n'
    return voicemail.Config.from_toml(text, base_dir=tmp_path)


def check_stored(message: voicemail.Message, config: voicemail.Config) -> None:
    """The message is stored in the mailbox exactly as it was handed over."""
    status = voicemail.Mailbox(config).show(message.id)
    assert status.lifecycle == "stored" and status.message == message


def test_sipp_call_through_asyncio(tmp_path: Path) -> None:
    config = make_config(tmp_path)

    async def scenario() -> voicemail.Message:
        async with voicemail.SipEndpoint(config) as endpoint:
            assert endpoint.running
            workdir = tmp_path / "sipp"
            argv = sipp_argv(workdir, endpoint.local_addr, greeting_ms=GREETING_MS, stream_ms=3000)
            sipp = await asyncio.create_subprocess_exec(
                *argv, cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
            )
            messages = endpoint.messages()
            message = await asyncio.wait_for(messages.__anext__(), timeout=90)
            out, _ = await asyncio.wait_for(sipp.communicate(), timeout=90)
            assert sipp.returncode == 0, sipp_failure(workdir, out.decode(errors="replace"))
            # The message is handed over when it is stored; the call's slot is freed just after,
            # when its supervisor ends (bounded wait for that event, not a timing check).
            for _ in range(500):
                if endpoint.active_calls == 0:
                    break
                await asyncio.sleep(0.02)
            assert endpoint.active_calls == 0
        # Leaving `async with` stopped the endpoint and ended the message stream.
        assert not endpoint.running
        rest = [m async for m in messages]
        assert rest == []
        return message

    message = asyncio.run(scenario())
    assert message.caller == "+74951230000"
    assert message.caller_name == "Py Caller"
    assert message.called == "4951234500"
    assert message.end_reason == "hang-up"
    assert message.codec == "pcmu"
    assert message.greeting == "default"
    assert abs(message.duration_ms - 3000) <= 150, message.duration_ms
    assert message.wav_path is not None and message.wav_path.parent == tmp_path / "spool"
    frames = wav_frames(message.wav_path)
    assert len(frames) // 16 == message.duration_ms  # 8 kHz, 2 bytes a sample
    # The caller's 440 Hz tone was recorded: a loud, periodic signal (18.18 samples/period).
    samples = struct.unpack(f"<{len(frames) // 2}h", frames)
    middle = samples[4000:20000]
    assert max(middle) > 8000
    crossings = sum(1 for a, b in zip(middle, middle[1:]) if a < 0 <= b)
    assert abs(crossings - 440 * len(middle) / 8000) < 20, crossings
    check_stored(message, config)
    # deliver=True: the endpoint's mailbox delivered it into the Maildir folder (at the latest
    # in its last pass when the endpoint stopped), and the delivery status says so.
    mails = list((tmp_path / "Maildir" / ".Voicemail" / "new").iterdir())
    assert len(mails) == 1 and b"+74951230000" in mails[0].read_bytes()
    [status] = voicemail.Mailbox(config).deliveries()
    assert (status.id, status.state) == (message.id, "delivered")


def test_blocking_run_with_a_callback(tmp_path: Path) -> None:
    config = make_config(tmp_path, deliver=False)
    got: List[voicemail.Message] = []
    arrived = threading.Event()

    def on_message(message: voicemail.Message) -> None:
        got.append(message)
        arrived.set()

    endpoint = voicemail.SipEndpoint(config, on_message=on_message, deliver=False)
    errors: List[BaseException] = []

    def serve() -> None:
        try:
            endpoint.run()
        except BaseException as e:  # reported by the assertion below
            errors.append(e)

    server = threading.Thread(target=serve)
    server.start()
    try:
        workdir = tmp_path / "sipp"
        run = subprocess.run(
            sipp_argv(workdir, endpoint.local_addr, greeting_ms=1500, stream_ms=0),
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert run.returncode == 0, sipp_failure(workdir, run.stdout + run.stderr)
        assert arrived.wait(30), "no message reached on_message"
    finally:
        endpoint.shutdown()
        server.join(60)
    assert not server.is_alive() and not errors
    [message] = got
    assert message.duration_ms == 0 and message.end_reason == "hang-up"
    assert message.wav_path is not None and message.wav_path.stat().st_size == 44
    check_stored(message, config)
    with pytest.raises(RuntimeError, match="already run"):
        endpoint.run()
    assert not (tmp_path / "Maildir").exists()  # deliver=False


@pytest.mark.parametrize(
    ("mode", "stop"),
    [([], signal.SIGINT), (["--asyncio"], signal.SIGINT), ([], signal.SIGTERM), (["--asyncio"], signal.SIGTERM)],
    ids=["blocking-sigint", "asyncio-sigint", "blocking-sigterm", "asyncio-sigterm"],
)
def test_sip_endpoint_example(tmp_path: Path, mode: List[str], stop: signal.Signals) -> None:
    cfg = tmp_path / "voicemail.toml"
    cfg.write_text(
        'mailbox = "Example"\ntimezone = "UTC"\nspool = "spool"\n[sip]\nlisten = "127.0.0.1:0"\nrtp_ports = "30000-39999"\n',
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "examples" / "python" / "sip_endpoint.py"), "--config", str(cfg), "--no-deliver"]
        + mode,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out: Optional[str] = None
    try:
        assert proc.stderr is not None and proc.stdout is not None
        line = proc.stderr.readline()
        assert line.startswith("listening on 127.0.0.1:"), line
        port = int(line.split()[2].rsplit(":", 1)[1])
        workdir = tmp_path / "sipp"
        run = subprocess.run(
            sipp_argv(workdir, ("127.0.0.1", port), greeting_ms=1000, stream_ms=0),
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert run.returncode == 0, sipp_failure(workdir, run.stdout + run.stderr)
        json_line = proc.stdout.readline()
        message = voicemail.Message.from_json(json_line)
        assert message.caller == "+74951230000" and message.end_reason == "hang-up"
        proc.send_signal(stop)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopped" in err

