"""``Timeout.at`` is never earlier than the latest time given to the call, so a loop that feeds
every Timeout back as ``now`` never raises "time went backwards", whatever the network does."""

from __future__ import annotations

import random
from typing import Callable, List, Tuple

import pytest

import voicemail
from conftest import rtp_packet

NewCall = Callable[..., voicemail.Call]


class Feeder:
    """Feeds a call and checks every output: each ``Timeout`` is fed back with ``tick(at)``."""

    def __init__(self, call: voicemail.Call, start: float) -> None:
        self.call = call
        self.latest = start
        self.timeouts = 0
        self.ticks = 0
        self.at = start

    def drain(self) -> None:
        outs = self.call.drain()
        last = outs[-1]
        assert isinstance(last, voicemail.Timeout)
        self.timeouts += 1
        assert last.at >= self.latest, f"Timeout(at={last.at!r}) before the latest input {self.latest!r}"
        self.at = last.at

    def give(self, now: float, feed: Callable[[float], None]) -> None:
        assert now >= self.latest
        self.latest = now
        feed(now)
        self.drain()

    def tick_until(self, t: float, state: str | None = None) -> None:
        """Feeds every Timeout back, exactly as given, while it is due by ``t`` (and, with
        ``state``, until the call is in that state)."""
        for _ in range(100_000):
            if self.call.ended or self.at > t or self.call.state == state:
                return
            self.ticks += 1
            self.give(self.at, self.call.tick)
        pytest.fail(f"the call kept asking for ticks before {t}")


def run_call(call: voicemail.Call, seed: int, start: float) -> Feeder:
    """Answers at ``start``; the caller sends 10 s of audio every 20 ms from then on (through
    the greeting, the beep and the recording), delivered with random delays (up to 400 ms, so
    out of order and in bursts), losses and duplicates; the Timeouts are fed back between
    arrivals, before or after a datagram that arrives when one is due (so greeting packets go
    out late, in bursts); then a hang-up."""
    rng = random.Random(seed)
    f = Feeder(call, start)
    f.give(start, call.answered)
    arrivals: List[Tuple[float, bytes]] = []
    for i in range(500):
        if rng.random() < 0.05:
            continue
        sent = start + 0.02 * i
        delay = rng.choice([0.0, 0.001, rng.uniform(0, 0.06), rng.uniform(0, 0.4)])
        packet = rtp_packet(100 + i, 8000 + 160 * i, bytes([0x55]) * 160, marker=i == 0)
        arrivals.append((sent + delay, packet))
        if rng.random() < 0.03:
            arrivals.append((sent + delay + rng.uniform(0, 0.1), packet))
    arrivals.sort(key=lambda a: a[0])
    states = set()
    for t, packet in arrivals:
        # A loop that finds a datagram and a due deadline at once may handle either first.
        if rng.random() < 0.5:
            f.tick_until(t)
        if call.ended:
            break
        states.add(call.state)
        now = max(t, f.latest)
        f.give(now, lambda n: call.rtp(n, packet))
    assert {"greeting", "recording"} <= states
    if not call.ended:
        f.tick_until(f.latest + 0.5)
        f.give(max(f.latest, arrivals[-1][0]) + 0.5, call.hangup)
    assert call.ended
    return f


def test_a_late_input_after_the_greeting(new_call: NewCall) -> None:
    # Nothing fed during the greeting: the next input (at 10 s) finds every greeting and beep
    # packet due; the engine sends them and asks to start recording when the beep ended (about
    # 5 s), already past. That deadline is the input's time, so it can be fed back.
    call = new_call()
    call.answered(100.0)
    assert isinstance(call.drain()[-1], voicemail.Timeout)
    call.rtp(110.0, rtp_packet(1, 160, bytes(160)))
    outs = call.drain()
    assert sum(isinstance(o, voicemail.SendRtp) for o in outs) > 200
    last = outs[-1]
    assert isinstance(last, voicemail.Timeout) and last.at == 110.0
    call.tick(last.at)
    assert call.state == "recording"
    assert isinstance(call.drain()[-1], voicemail.Timeout)


@pytest.mark.parametrize("seed", range(40))
def test_every_timeout_can_be_fed_back(new_call: NewCall, seed: int) -> None:
    start = [0.0, 1000.0, 12_345.678_901, 1e9 + 0.123_456_789][seed % 4]
    f = run_call(new_call(), seed, start)
    assert f.timeouts > 400 and f.ticks > 50


def test_rtp_batch_timeouts_are_not_before_the_last_packet(new_call: NewCall) -> None:
    call = new_call()
    f = Feeder(call, 50.0)
    f.give(50.0, call.answered)
    f.tick_until(80.0, "recording")
    assert call.state == "recording"
    t0 = f.latest
    # Packets that arrive long after they were sent, all at once, at the same time.
    packets = [(t0 + 1.0, rtp_packet(i, 160 * i, bytes(160))) for i in range(50)]
    outs = call.rtp_batch(packets)
    last = outs[-1]
    assert isinstance(last, voicemail.Timeout) and last.at >= t0 + 1.0
    call.tick(last.at)
    assert isinstance(call.drain()[-1], voicemail.Timeout)
