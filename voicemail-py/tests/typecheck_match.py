"""Pattern matching on a call's outputs is precisely typed: mypy (strict, run by scripts/test
and by ``test_stubs.py``) checks this file; it is never imported (pytest collects ``test_*``)."""

from __future__ import annotations

from typing import Literal, assert_never, assert_type

import voicemail


def handle(out: voicemail.Output) -> None:
    match out:
        case voicemail.SendRtp(data):
            assert_type(data, bytes)
        case voicemail.Timeout(at):
            assert_type(at, float)
        case voicemail.StateChanged(state):
            assert_type(state, Literal["ringing", "answered", "greeting", "beep", "recording", "ended"])
        case voicemail.DtmfReceived(digit):
            assert_type(digit, str)
        case voicemail.MessageRecorded(message):
            assert_type(message, voicemail.Message)
            assert_type(message.duration_ms, int)
        case _:
            assert_never(out)
