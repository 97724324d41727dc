"""The GIL is released while Rust works: other Python threads make progress during a long
``rtp_batch``, and calls run from several threads at once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import voicemail
from conftest import Driver, make_config, rtp_packet, wav_frames


@pytest.fixture
def long_calls(tmp_path: Path) -> voicemail.Mailbox:
    """A mailbox whose calls may record for an hour without a silence timeout."""
    return voicemail.Mailbox(make_config(tmp_path, '[recording]\nmax_length = "1h"\nsilence_timeout = "off"\n'))


def recording_call(mailbox: voicemail.Mailbox) -> tuple[voicemail.Call, float]:
    call = mailbox.start_call(caller="+1", rtp_seed=1)
    d = Driver(call)
    d.answer()
    d.until_state("recording")
    return call, d.now


def test_other_threads_run_during_a_long_batch(long_calls: voicemail.Mailbox) -> None:
    call, start = recording_call(long_calls)
    n = 150_000  # 50 minutes of audio (a 48 MB WAV, deleted at the end)
    packets = [(start + 0.02 * i, rtp_packet(i, 160 * i, bytes([i & 0xFF]) * 160)) for i in range(n)]
    done = threading.Event()
    took: list[float] = []

    def work() -> None:
        t0 = time.perf_counter()
        call.rtp_batch(packets)
        took.append(time.perf_counter() - t0)
        done.set()

    worker = threading.Thread(target=work)
    last = time.perf_counter()
    longest_gap = 0.0
    ticks = 0
    worker.start()
    while not done.is_set():
        now = time.perf_counter()
        longest_gap = max(longest_gap, now - last)
        last = now
        ticks += 1
    worker.join()
    assert took and took[0] > 0.06, f"the batch was too short to measure ({took})"
    # With the GIL held for the whole batch, this thread would stall for all of it.
    print(f"batch {took[0]:.3f}s, longest main-thread gap {longest_gap:.4f}s, {ticks} ticks")
    assert longest_gap < took[0] / 2, f"main thread stalled {longest_gap:.3f}s of a {took[0]:.3f}s batch"
    assert ticks > 100
    assert call.recorded_samples == n * 160
    call.hangup(start + 0.02 * n)
    call.drain()
    long_calls.delete(call.id, force_reason="test audio")


def test_calls_in_parallel_threads(long_calls: voicemail.Mailbox) -> None:
    def one(i: int) -> bytes:
        call, start = recording_call(long_calls)
        payloads = [bytes([(i * 7 + k) & 0xFF]) * 160 for k in range(250)]
        for k, p in enumerate(payloads):
            call.rtp(start + 0.02 * k, rtp_packet(k, 160 * k, p))
            call.drain()
        call.hangup(start + 0.02 * len(payloads))
        message = next(o.message for o in call.drain() if isinstance(o, voicemail.MessageRecorded))
        assert message.duration_ms == 5000
        assert message.wav_path is not None
        assert wav_frames(message.wav_path) == voicemail.decode_audio("pcmu", b"".join(payloads))
        return message.id.encode()

    with ThreadPoolExecutor(max_workers=4) as pool:
        ids = sorted(pool.map(one, range(8)))
    assert len(set(ids)) == 8
    assert sorted(m.id.encode() for m in long_calls.list()) == ids


def test_one_call_shared_between_threads(long_calls: voicemail.Mailbox) -> None:
    call, start = recording_call(long_calls)
    errors: list[BaseException] = []

    def poll() -> None:
        try:
            for _ in range(2000):
                call.poll_output()
                _ = call.state, call.stats
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=poll) for _ in range(3)]
    for t in threads:
        t.start()
    for k in range(500):
        call.rtp(start + 0.02 * k, rtp_packet(k, 160 * k, b"\x33" * 160))
    for t in threads:
        t.join()
    assert not errors
    assert call.stats.packets_received == 500
