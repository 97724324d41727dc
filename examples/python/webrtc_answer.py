#!/usr/bin/env python3
"""Answer a WebRTC call (aiortc) with the voicemail engine: greeting, beep, a recorded message.

WebRTC stacks decode the media themselves, so the answerer talks PCM with the call
(``Call.feed_pcm`` / ``Call.drain_pcm``) instead of RTP: each audio frame the caller's track
yields is resampled to 48 kHz mono 16-bit and fed to the call; the greeting comes back as
``SendPcm`` frames, paced by the call's timeouts, and is played on an outgoing audio track.
The call is made by the mailbox, so the message lands in its spool and store like a SIP one::

    call = mailbox.start_call(caller=..., now=time.monotonic())
    call.answered(now)
    on each decoded frame:  call.feed_pcm(now, pcm, 48000); drain
    at each Timeout(at):    call.tick(at); drain
    drain = call.drain_pcm(48000): SendPcm -> outgoing track, MessageRecorded -> stored message
    when the caller's track ends (or the signalling says it hung up): call.hangup(now)

:class:`VoicemailAnswerer` is the part to reuse: give it the caller's SDP offer, send back the
answer it returns, however your signalling carries them. Run as a script, it places a demo
call from an aiortc caller in the same process over 127.0.0.1 (no STUN, no other network):
the caller plays a 440 Hz tone (or ``--input`` audio file, read by PyAV) for ``--seconds``
after the beep, then hangs up; the stored message is printed as one JSON line on stdout.

    pip install aiortc
    python examples/python/webrtc_answer.py --spool /tmp/vm --seconds 3
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import math
import sys
import time
from array import array
from pathlib import Path
from typing import Any, Coroutine, Final, List, Optional, Set

import aioice.ice
import av
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError

import voicemail

#: The rate the answerer exchanges PCM with the call at (WebRTC's Opus rate).
RATE: Final = 48000
#: Samples in one 20 ms frame at ``RATE``.
FRAME = RATE // 50
TIME_BASE = fractions.Fraction(1, RATE)


def log(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def loopback_only() -> None:
    """Makes ICE gather 127.0.0.1 alone (aioice leaves loopback out by default)."""
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


def mono_frame(pcm: bytes, pts: int) -> av.AudioFrame:
    """A 16-bit mono ``av.AudioFrame`` at ``RATE`` of ``pcm``."""
    frame = av.AudioFrame(format="s16", layout="mono", samples=len(pcm) // 2)
    frame.planes[0].update(pcm)
    frame.pts = pts
    frame.sample_rate = RATE
    frame.time_base = TIME_BASE
    return frame


class PacedTrack(MediaStreamTrack):
    """An outgoing audio track of 20 ms frames paced by the clock; the audio comes from a
    buffer (silence while it is empty)."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._buffer = bytearray()
        self._start: Optional[float] = None
        self._pts = 0

    def play(self, pcm: bytes) -> None:
        self._buffer += pcm

    def next_pcm(self) -> bytes:
        """The next frame's audio (override to generate it)."""
        chunk = bytes(self._buffer[: FRAME * 2])
        del self._buffer[: FRAME * 2]
        return chunk.ljust(FRAME * 2, b"\0")

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += FRAME
            wait = self._start + self._pts / RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        return mono_frame(self.next_pcm(), self._pts)


class VoicemailAnswerer:
    """Answers one WebRTC peer connection with a call of ``mailbox``."""

    def __init__(self, mailbox: voicemail.Mailbox, caller: str) -> None:
        self.mailbox = mailbox
        self.caller = caller
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.greeting = PacedTrack()
        self.call: Optional[voicemail.Call] = None
        self.message: asyncio.Future[voicemail.Message] = asyncio.get_running_loop().create_future()
        self._deadline = math.inf
        self._wake = asyncio.Event()
        self._tasks: Set[asyncio.Task[None]] = set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def answer(self, offer: RTCSessionDescription) -> RTCSessionDescription:
        """Takes the caller's offer, answers the call (the greeting starts) and returns the
        SDP answer for the signalling to carry back."""
        self.call = self.mailbox.start_call(caller=self.caller, codec="pcmu", now=time.monotonic())
        log(f"call from {self.caller}: answering, message {self.call.id}")
        self.pc.addTrack(self.greeting)

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self._spawn(self._record(track))

        await self.pc.setRemoteDescription(offer)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self.call.answered(time.monotonic())
        self._drain()
        self._spawn(self._clock())
        return self.pc.localDescription

    def _drain(self) -> None:
        """Every output up to the next timeout: greeting audio to the outgoing track."""
        assert self.call is not None
        for out in self.call.drain_pcm(RATE):
            if isinstance(out, voicemail.SendPcm):
                self.greeting.play(out.pcm)
            elif isinstance(out, voicemail.Timeout):
                self._deadline = out.at
            elif isinstance(out, voicemail.StateChanged):
                log(f"state: {out.state}")
            elif isinstance(out, voicemail.MessageRecorded) and not self.message.done():
                self.message.set_result(out.message)
        self._wake.set()

    async def _clock(self) -> None:
        """Ticks the call at its deadlines until it ends."""
        assert self.call is not None
        while not self.call.ended:
            self._wake.clear()
            delay = self._deadline - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), min(delay, 1.0))
                except asyncio.TimeoutError:
                    pass
                continue
            self.call.tick(max(time.monotonic(), self._deadline))
            self._drain()

    async def _record(self, track: MediaStreamTrack) -> None:
        """Feeds the caller's decoded audio to the call; the track's end is the hang-up."""
        assert self.call is not None
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        last = time.monotonic()
        while not self.call.ended:
            try:
                frame = await track.recv()
            except MediaStreamError:
                break
            if not isinstance(frame, av.AudioFrame):
                continue
            last = max(last, time.monotonic())
            for mono in resampler.resample(frame):
                if not self.call.ended:
                    self.call.feed_pcm(last, bytes(mono.planes[0])[: mono.samples * 2], RATE)
                    self._drain()
        self.hangup()

    def hangup(self) -> None:
        """The caller hung up (its track ended, or the signalling said so)."""
        if self.call is not None and not self.call.ended:
            self.call.hangup(time.monotonic())
            self._drain()

    async def close(self) -> None:
        self.hangup()
        await self.pc.close()
        for task in list(self._tasks):
            task.cancel()


class ToneTrack(PacedTrack):
    """The demo caller's voice: a 440 Hz tone."""

    def __init__(self) -> None:
        super().__init__()
        self._n = 0

    def next_pcm(self) -> bytes:
        samples = array("h", (int(math.sin(2 * math.pi * 440 * (self._n + i) / RATE) * 12000) for i in range(FRAME)))
        self._n += FRAME
        return samples.tobytes()


async def demo_call(mailbox: voicemail.Mailbox, seconds: float, source: Optional[Path]) -> voicemail.Message:
    """An aiortc caller on 127.0.0.1 calls a ``VoicemailAnswerer`` and speaks for ``seconds``
    after the beep; returns the stored message."""
    loopback_only()
    caller = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    player = MediaPlayer(str(source)) if source is not None else None
    voice: MediaStreamTrack = player.audio if player is not None and player.audio is not None else ToneTrack()
    caller.addTrack(voice)
    heard: List[int] = []

    @caller.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        async def listen() -> None:
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:
                    return
                if isinstance(frame, av.AudioFrame):
                    heard.append(max((abs(s) for s in array("h", bytes(frame.planes[0]))), default=0))

        asyncio.ensure_future(listen())

    answerer = VoicemailAnswerer(mailbox, caller="webrtc-demo")
    try:
        await caller.setLocalDescription(await caller.createOffer())
        answer = await answerer.answer(caller.localDescription)
        await caller.setRemoteDescription(answer)
        assert answerer.call is not None
        while answerer.call.state != "recording" and not answerer.call.ended:
            await asyncio.sleep(0.05)
        log(f"recording: speaking for {seconds:g} s")
        await asyncio.sleep(seconds)
        log(f"greeting heard by the caller: peak {max(heard, default=0)}")
        await caller.close()  # hang up: the answerer's track ends
        return await asyncio.wait_for(answerer.message, 30)
    finally:
        await caller.close()
        await answerer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--config", type=Path, help="mailbox configuration (TOML); overrides --spool")
    parser.add_argument("--spool", type=Path, default=Path("voicemail-data/spool"), help="the mailbox's spool")
    parser.add_argument("--seconds", type=float, default=3.0, help="how long the demo caller speaks (default 3)")
    parser.add_argument("--input", type=Path, help="audio file the demo caller plays (default: a 440 Hz tone)")
    args = parser.parse_args()
    try:
        if args.config:
            config = voicemail.Config.load(args.config)
        else:
            text = f'mailbox = "webrtc"\ntimezone = "UTC"\nspool = {json.dumps(str(args.spool.resolve()))}\n'
            config = voicemail.Config.from_toml(text)
        message = asyncio.run(demo_call(voicemail.Mailbox(config), args.seconds, args.input))
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except (OSError, voicemail.VoicemailError) as e:
        log(f"webrtc_answer: {e}")
        return 1
    print(message.to_json(), flush=True)
    log(f"message {message.id}: {message.duration_ms} ms, ended by {message.end_reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
