"""voicemail.SipEndpoint without a SIP peer: Ctrl-C and SIGTERM stop a blocking ``run()``
cleanly (and the previous SIGTERM handler comes back), SIGTERM stops an asyncio endpoint,
asyncio start/stop, and the sockets are released when an endpoint stops or is dropped."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

import voicemail


def make_config(tmp_path: Path) -> voicemail.Config:
    return voicemail.Config.from_toml(
        'mailbox = "x"\ntimezone = "UTC"\nspool = "spool"\n[sip]\nlisten = "127.0.0.1:0"\nrtp_ports = "30000-39999"\n',
        base_dir=tmp_path,
    )


def assert_port_free(host: str, port: int) -> None:
    gc.collect()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(50):
            try:
                s.bind((host, port))
                return
            except OSError:
                time.sleep(0.1)
    pytest.fail(f"{host}:{port} still bound after the endpoint stopped")


def test_ctrl_c_stops_run_cleanly(tmp_path: Path) -> None:
    endpoint = voicemail.SipEndpoint(make_config(tmp_path), deliver=False)
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        endpoint.run()
    timer.join()
    assert time.monotonic() - started < 10
    assert not endpoint.running
    # The port is free again once the endpoint stopped.
    host, port = endpoint.local_addr
    del endpoint
    assert_port_free(host, port)


def test_sigterm_stops_run_cleanly(tmp_path: Path) -> None:
    seen: list[int] = []

    def previous(signum: int, frame: object) -> None:
        seen.append(signum)

    old = signal.signal(signal.SIGTERM, previous)
    try:
        endpoint = voicemail.SipEndpoint(make_config(tmp_path), deliver=False)
        timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGTERM))
        timer.start()
        started = time.monotonic()
        endpoint.run()  # returns normally after SIGTERM
        timer.join()
        assert time.monotonic() - started < 10
        assert not endpoint.running and seen == []
        # The handler that was there before run() is back.
        assert signal.getsignal(signal.SIGTERM) is previous
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, old)


def test_sigterm_stops_an_asyncio_endpoint(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    endpoint = voicemail.SipEndpoint(make_config(tmp_path))

    async def scenario() -> list[voicemail.Message]:
        async with endpoint:
            assert signal.getsignal(signal.SIGTERM) is not before
            asyncio.get_running_loop().call_later(0.3, os.kill, os.getpid(), signal.SIGTERM)
            # SIGTERM stops the endpoint: the message stream ends by itself.
            return [m async for m in endpoint.messages()]

    assert asyncio.run(asyncio.wait_for(scenario(), 30)) == []
    assert not endpoint.running
    assert signal.getsignal(signal.SIGTERM) is before


def test_an_endpoint_that_never_ran_releases_its_port(tmp_path: Path) -> None:
    endpoint = voicemail.SipEndpoint(make_config(tmp_path), deliver=False)
    host, port = endpoint.local_addr
    assert not endpoint.running and "ready" in repr(endpoint)
    del endpoint
    assert_port_free(host, port)


def test_asyncio_start_and_stop(tmp_path: Path) -> None:
    seen: list[voicemail.Message] = []
    endpoint = voicemail.SipEndpoint(make_config(tmp_path), on_message=seen.append)

    async def scenario() -> None:
        with pytest.raises(RuntimeError, match="start"):
            await endpoint.messages().__anext__()
        await endpoint.start()
        assert endpoint.running and endpoint.active_calls == 0
        with pytest.raises(RuntimeError, match="already"):
            await endpoint.start()
        await endpoint.stop()
        assert not endpoint.running
        assert [m async for m in endpoint.messages()] == []
        await endpoint.wait()

    asyncio.run(scenario())
    assert seen == []
    assert endpoint.spool == tmp_path / "spool" and (tmp_path / "spool").is_dir()
    assert endpoint.mailbox.spool == endpoint.spool and endpoint.mailbox.list() == []
    assert_port_free(*endpoint.local_addr)


def test_shutdown_before_run_returns_at_once(tmp_path: Path) -> None:
    endpoint = voicemail.SipEndpoint(make_config(tmp_path), deliver=False)
    endpoint.shutdown()
    t = threading.Thread(target=endpoint.run)
    t.start()
    t.join(30)
    assert not t.is_alive()
    with pytest.raises(TypeError, match="callable"):
        voicemail.SipEndpoint(make_config(tmp_path), on_message=42)  # type: ignore[arg-type]


def test_tables_only_the_answering_machine_serves_are_warned_about(tmp_path: Path) -> None:
    config = voicemail.Config.from_toml(
        'mailbox = "x"\ntimezone = "UTC"\nspool = "spool"\n[sip]\nlisten = "127.0.0.1:0"\nrtp_ports = "30000-39999"\n'
        '[metrics]\nlisten = "127.0.0.1:0"\n[log]\nformat = "json"\n',
        base_dir=tmp_path,
    )
    with pytest.warns(UserWarning, match=r"does not serve \[metrics\] .*, \[log\] ") as warned:
        endpoint = voicemail.SipEndpoint(config, deliver=False)
    assert len(warned) == 1
    assert warned[0].filename == __file__, "the warning points at the caller's line"
    del endpoint
    # Without them nothing is said (pytest turns any warning into an error here).
    (tmp_path / "plain").mkdir()
    plain = voicemail.SipEndpoint(make_config(tmp_path / "plain"), deliver=False)
    del plain
