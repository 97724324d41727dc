"""The PCM side of ``voicemail.Call`` (``feed_pcm``, ``drain_pcm``), for media stacks that
decode (WebRTC): decoded 16-bit frames at 8 to 48 kHz go in, the greeting comes out as PCM
at the rate asked for, and the recording holds the caller's audio at the call's rate. Bad
input raises clear errors. A simulated clock, no sockets."""

from __future__ import annotations

import math
import struct
from array import array
from typing import Callable, List

import pytest

import voicemail
from conftest import wav_frames

NewCall = Callable[..., voicemail.Call]


def tone(freq: float, rate: int, samples: int, start: int = 0, amplitude: int = 12000) -> bytes:
    return array("h", (int(math.sin(2 * math.pi * freq * (start + i) / rate) * amplitude) for i in range(samples))).tobytes()


def play_greeting(call: voicemail.Call, now: float, rate: voicemail.PcmRate) -> tuple[float, List[voicemail.SendPcm]]:
    """Answers and ticks at every deadline until the recording starts; the greeting's PCM."""
    call.answered(now)
    out: List[voicemail.SendPcm] = []
    for _ in range(10_000):
        at = now
        for o in call.drain_pcm(rate):
            if isinstance(o, voicemail.SendPcm):
                out.append(o)
            elif isinstance(o, voicemail.Timeout):
                at = o.at
        if call.state == "recording":
            return now, out
        now = max(now, at)
        call.tick(now)
    raise AssertionError("the greeting never ended")


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_greeting_comes_out_as_pcm_at_the_rate_asked(new_call: NewCall, rate: voicemail.PcmRate) -> None:
    call = new_call()
    _, frames = play_greeting(call, 100.0, rate)
    assert frames and all(f.rate == rate for f in frames)
    # One ptime (20 ms) of audio per packet, at the rate asked for (the prompts' last ones shorter).
    sizes = [f.samples for f in frames]
    assert max(sizes) == rate // 50 and sizes.count(rate // 50) >= len(sizes) - 2
    total = sum(f.samples for f in frames)
    expected = (voicemail.Prompt.default().duration + voicemail.Prompt.beep().duration) * rate
    assert abs(total - expected) <= rate // 50 * 2, (total, expected)
    samples = array("h")
    for f in frames:
        samples.frombytes(f.pcm)
    assert max(abs(s) for s in samples) > 3000  # speech, not silence


@pytest.mark.parametrize(("codec", "rate"), [("pcmu", 48000), ("pcma", 8000), ("g722", 16000), ("opus", 48000), ("pcmu", 24000)])
def test_fed_pcm_is_recorded(new_call: NewCall, codec: str, rate: voicemail.PcmRate) -> None:
    call = new_call(codec=codec)
    now, _ = play_greeting(call, 100.0, rate)
    # Two seconds of a 440 Hz tone in 20 ms frames, paced like a real stream; the last frame
    # comes in two halves (the half frame waits for the rest).
    frame = rate // 50
    for i in range(100):
        now += 0.02
        if i == 99:
            call.feed_pcm(now, tone(440, rate, frame // 2, i * frame), rate)
            call.feed_pcm(now, tone(440, rate, frame - frame // 2, i * frame + frame // 2), rate)
        else:
            call.feed_pcm(now, tone(440, rate, frame, i * frame), rate)
        call.drain_pcm(rate)
    call.hangup(now + 0.02)
    [message] = [o.message for o in call.drain_pcm(rate) if isinstance(o, voicemail.MessageRecorded)]
    assert message.end_reason == "hang-up" and message.codec == codec
    assert message.wav_path is not None
    if codec in ("pcmu", "pcma"):
        frames = wav_frames(message.wav_path)
        samples = struct.unpack(f"<{len(frames) // 2}h", frames)
        assert abs(len(samples) - 16000) <= 320, len(samples)
        middle = samples[2000:14000]
        assert max(middle) > 8000
        crossings = sum(1 for a, b in zip(middle, middle[1:]) if a < 0 <= b)
        assert abs(crossings - 440 * len(middle) / 8000) < 20, crossings
    else:
        assert message.duration_ms >= 1900, message.duration_ms
    assert message.media.packets_received == 100


def test_bad_pcm_input_raises_clear_errors(new_call: NewCall) -> None:
    call = new_call()
    call.answered(1.0)
    with pytest.raises(ValueError, match="rate must be 8000, 16000, 24000, 32000 or 48000"):
        call.feed_pcm(1.0, b"\x00\x00" * 160, 44100)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rate must be"):
        call.feed_pcm(1.0, b"\x00\x00" * 160, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="even number of bytes"):
        call.feed_pcm(1.0, b"\x00" * 321, 8000)
    with pytest.raises(ValueError, match="rate must be"):
        call.drain_pcm(11025)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        call.feed_pcm(1.0, "not bytes", 8000)  # type: ignore[arg-type]
    call.hangup(2.0)
    call.drain_pcm(8000)
    with pytest.raises(voicemail.CallError):
        call.feed_pcm(3.0, b"\x00\x00" * 160, 8000)


def test_send_pcm_matches() -> None:
    out = voicemail.SendPcm(b"\x01\x00\x02\x00", 16000)
    match out:
        case voicemail.SendPcm(pcm, rate):
            assert (pcm, rate, out.samples) == (b"\x01\x00\x02\x00", 16000, 2)
        case _:
            raise AssertionError("no match")
