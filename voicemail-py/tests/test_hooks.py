"""Per-call hooks of ``voicemail.SipEndpoint`` over SIP, with SIPp as the caller:
``on_call`` rejects a call with 486 (SIPp expects exactly that final response), chooses
another configured mailbox and greeting (asyncio, coroutine hooks), and a decision that does
not come in time leaves the call answered as usual; ``on_state`` hears the call's states in
order, and ``on_dtmf`` the finish key. Skipped without SIPp (/usr/bin/sipp, Debian sip-tester), unless
VOICEMAIL_REQUIRE_INTEROP=1."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import pytest

import voicemail
from conftest import GREETING_MS, free_port_block, sipp_argv, sipp_failure, sipp_path

SIPP = sipp_path()
pytestmark = [pytest.mark.sipp, pytest.mark.skipif(SIPP is None, reason="SIPp not found (Debian package sip-tester)")]

REFUSED = Path(__file__).parent / "sipp" / "uac_refused.xml"

TWO = """
default_mailbox = "Support"

[sip]
listen = "127.0.0.1:0"
rtp_ports = "30000-39999"

[[mailboxes]]
mailbox = "Sales"
numbers = ["100"]
timezone = "UTC"
spool = "sales"
[mailboxes.store]
min_free = "0"
[mailboxes.greetings]
default = "builtin:default"
short = "builtin:default"

[[mailboxes]]
mailbox = "Support"
numbers = ["4951234500"]
timezone = "UTC"
spool = "support"
[mailboxes.store]
min_free = "0"
"""


def one_mailbox(tmp_path: Path) -> voicemail.Config:
    text = 'mailbox = "Python"\ntimezone = "UTC"\nspool = "spool"\n[store]\nmin_free = "0"\n'
    text += '[sip]\nlisten = "127.0.0.1:0"\nrtp_ports = "30000-39999"\n'
    return voicemail.Config.from_toml(text, base_dir=tmp_path)


def refused_argv(workdir: Path, target: Tuple[str, int], status: int) -> List[str]:
    """SIPp placing one call that must get the final response ``status``."""
    workdir.mkdir(parents=True, exist_ok=True)
    xml = REFUSED.read_text(encoding="utf-8").replace("{{CALLER}}", "+74951230000").replace("{{STATUS}}", str(status))
    (workdir / "uac_refused.xml").write_text(xml, encoding="utf-8")
    assert SIPP is not None
    return [SIPP, f"{target[0]}:{target[1]}", "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", str(free_port_block(1))] + [
        "-mp",
        str(free_port_block(8)),
        "-nostdin",
        "-timeout",
        "60s",
        "-timeout_error",
        "-trace_err",
        "-sf",
        "uac_refused.xml",
        "-s",
        "4951234500",
        "-m",
        "1",
    ]


def serving(endpoint: voicemail.SipEndpoint) -> Tuple[threading.Thread, List[BaseException]]:
    errors: List[BaseException] = []

    def serve() -> None:
        try:
            endpoint.run()
        except BaseException as e:  # reported by the caller's assertion
            errors.append(e)

    thread = threading.Thread(target=serve)
    thread.start()
    return thread, errors


def stop(endpoint: voicemail.SipEndpoint, thread: threading.Thread, errors: List[BaseException]) -> None:
    endpoint.shutdown()
    thread.join(60)
    assert not thread.is_alive() and not errors


def run_sipp(argv: List[str], workdir: Path) -> None:
    run = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=90)
    assert run.returncode == 0, sipp_failure(workdir, run.stdout + run.stderr)


def test_on_call_rejects_with_486_and_sipp_sees_it(tmp_path: Path) -> None:
    config = one_mailbox(tmp_path)
    seen: List[voicemail.IncomingCall] = []
    states: List[str] = []

    def on_call(call: voicemail.IncomingCall) -> voicemail.Reject:
        seen.append(call)
        return voicemail.Reject(486)

    endpoint = voicemail.SipEndpoint(
        config, deliver=False, on_call=on_call, on_state=lambda call_id, state: states.append(state)
    )
    thread, errors = serving(endpoint)
    try:
        workdir = tmp_path / "sipp"
        # The scenario accepts nothing but a 486 to its INVITE (then ACKs it); anything else fails it.
        run_sipp(refused_argv(workdir, endpoint.local_addr, 486), workdir)
    finally:
        stop(endpoint, thread, errors)
    [call] = seen
    assert (call.caller, call.called, call.mailbox, call.source) == ("+74951230000", "4951234500", "Python", "127.0.0.1")
    assert call.call_id and call.caller_name is None and call.diverted_from is None
    # A rejected call leaves no message and never starts.
    assert voicemail.Mailbox(config).list() == []
    assert states == []


def test_async_hooks_choose_the_mailbox_and_greeting(tmp_path: Path) -> None:
    config = voicemail.Config.from_toml(TWO, base_dir=tmp_path)
    seen: List[voicemail.IncomingCall] = []
    states: List[Tuple[str, str]] = []

    async def on_call(call: voicemail.IncomingCall) -> voicemail.Accept:
        await asyncio.sleep(0)  # runs on the test's event loop
        seen.append(call)
        return voicemail.Accept(mailbox="Sales", greeting="short")

    async def on_state(call_id: str, state: str) -> None:
        states.append((call_id, state))

    async def scenario() -> voicemail.Message:
        async with voicemail.SipEndpoint(config, deliver=False, on_call=on_call, on_state=on_state) as endpoint:
            workdir = tmp_path / "sipp"
            argv = sipp_argv(workdir, endpoint.local_addr, greeting_ms=GREETING_MS, stream_ms=1000)
            sipp = await asyncio.create_subprocess_exec(
                *argv, cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
            )
            message = await asyncio.wait_for(endpoint.messages().__anext__(), timeout=90)
            out, _ = await asyncio.wait_for(sipp.communicate(), timeout=90)
            assert sipp.returncode == 0, sipp_failure(workdir, out.decode(errors="replace"))
            # The last notice may still be on its way to the loop.
            for _ in range(500):
                if states and states[-1][1] == "ended":
                    break
                await asyncio.sleep(0.01)
        return message

    message = asyncio.run(scenario())
    [call] = seen
    # The endpoint chose Support (the called number); the hook moved the call to Sales.
    assert call.mailbox == "Support" and call.called == "4951234500"
    assert message.mailbox == "Sales" and message.greeting == "short"
    assert message.wav_path is not None and message.wav_path.parent == tmp_path / "sales"
    assert [m.message.id for m in voicemail.Mailbox(config, "Sales").list()] == [message.id]
    assert voicemail.Mailbox(config, "Support").list() == []
    assert {call_id for call_id, _ in states} == {call.call_id}
    assert [s for _, s in states] == ["answered", "greeting", "beep", "recording", "ended"]


def test_a_late_decision_answers_the_call_as_usual(tmp_path: Path) -> None:
    config = one_mailbox(tmp_path)
    stored = threading.Event()
    decided: List[Optional[bool]] = []

    def on_call(call: voicemail.IncomingCall) -> voicemail.Reject:
        # Holds the decision until the call was answered anyway and its message stored.
        decided.append(stored.wait(60))
        return voicemail.Reject(603)

    endpoint = voicemail.SipEndpoint(
        config, deliver=False, on_call=on_call, decision_timeout=0.5, on_message=lambda m: stored.set()
    )
    thread, errors = serving(endpoint)
    try:
        workdir = tmp_path / "sipp"
        run_sipp(sipp_argv(workdir, endpoint.local_addr, greeting_ms=1000, stream_ms=0), workdir)
        assert stored.wait(60)
    finally:
        stop(endpoint, thread, errors)
    [message] = [m.message for m in voicemail.Mailbox(config).list()]
    assert message.end_reason == "hang-up"
    for _ in range(100):
        if decided:
            break
        threading.Event().wait(0.05)
    assert decided == [True]


def test_hook_arguments_are_checked(tmp_path: Path) -> None:
    config = one_mailbox(tmp_path)
    bad: Callable[..., object] = voicemail.SipEndpoint
    with pytest.raises(TypeError, match="on_call must be callable"):
        bad(config, on_call=3)
    with pytest.raises(ValueError, match="decision_timeout"):
        voicemail.SipEndpoint(config, decision_timeout=0)
    with pytest.raises(ValueError, match="from 400 to 699"):
        voicemail.Reject(200)
    with pytest.raises(ValueError, match="from 400 to 699"):
        voicemail.Reject(700)
    assert voicemail.Reject().status == 486
    assert voicemail.Accept(mailbox="Sales") == voicemail.Accept(mailbox="Sales")


def test_on_dtmf_hears_the_finish_key(tmp_path: Path) -> None:
    config = one_mailbox(tmp_path)
    seen: List[voicemail.IncomingCall] = []
    notices: List[Tuple[str, str, str]] = []
    done = threading.Event()

    def on_state(call_id: str, state: str) -> None:
        notices.append(("state", call_id, state))
        if state == "ended":
            done.set()

    endpoint = voicemail.SipEndpoint(
        config,
        deliver=False,
        on_call=lambda call: seen.append(call),
        on_dtmf=lambda call_id, digit: notices.append(("dtmf", call_id, digit)),
        on_state=on_state,
    )
    thread, errors = serving(endpoint)
    try:
        workdir = tmp_path / "sipp"
        argv = sipp_argv(workdir, endpoint.local_addr, greeting_ms=GREETING_MS, stream_ms=1000)
        xml = (Path(__file__).parent / "sipp" / "uac_finish_key_info.xml").read_text(encoding="utf-8")
        for key, value in {"CALLER": "+74951230000", "GREETING_MS": str(GREETING_MS), "STREAM_MS": "1000"}.items():
            xml = xml.replace("{{" + key + "}}", value)
        xml = xml.replace("{{FILE}}", "tone.wav").replace("{{PT}}", "0").replace("{{CODEC}}", "PCMU")
        (workdir / "uac_call.xml").write_text(xml, encoding="utf-8")  # the scenario sipp_argv names
        # SIPp presses # by SIP INFO after a second of audio and expects our BYE.
        run_sipp(argv, workdir)
        assert done.wait(30)
        assert endpoint.dropped_notices == 0
    finally:
        stop(endpoint, thread, errors)
    [call] = seen
    assert {call_id for _, call_id, _ in notices} == {call.call_id}
    assert [(kind, value) for kind, _, value in notices] == [
        ("state", "answered"),
        ("state", "greeting"),
        ("state", "beep"),
        ("state", "recording"),
        ("dtmf", "#"),
        ("state", "ended"),
    ]
    [message] = [m.message for m in voicemail.Mailbox(config).list()]
    assert message.end_reason == "finish-key" and message.dtmf == "#"


def test_a_failing_on_call_answers_the_call_as_usual(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = one_mailbox(tmp_path)
    raised: List[BaseException] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: raised.append(u.exc_value))
    answers = iter([ValueError("no decision today"), "not a decision"])

    def on_call(call: voicemail.IncomingCall) -> voicemail.Accept:
        answer = next(answers)
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[return-value]

    endpoint = voicemail.SipEndpoint(config, deliver=False, on_call=on_call)
    thread, errors = serving(endpoint)
    try:
        for n in range(2):
            workdir = tmp_path / f"sipp{n}"
            run_sipp(sipp_argv(workdir, endpoint.local_addr, greeting_ms=1000, stream_ms=0), workdir)
    finally:
        stop(endpoint, thread, errors)
    # Both calls were answered and recorded; the hook's failures went to sys.unraisablehook.
    assert len(voicemail.Mailbox(config).list()) == 2
    assert [type(e) for e in raised] == [ValueError, TypeError]
    assert "on_call must return voicemail.Accept, voicemail.Reject or None, not str" in str(raised[1])
