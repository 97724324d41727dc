"""voicemail.Call, started by ``Mailbox.start_call`` and driven with a simulated clock: the
greeting and beep as paced RTP, the recording byte-exact through G.711, every way a call ends,
the message stored before it is seen, and misuse raising CallError."""

from __future__ import annotations

import gc
import inspect
import math
import random
import wave
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest

import voicemail
from conftest import Driver, dtmf_event, make_config, rtp_packet, wav_frames

NewCall = Callable[..., voicemail.Call]


def test_before_any_input_the_call_waits_forever(new_call: NewCall) -> None:
    call = new_call()
    assert call.state == "ringing"
    out = call.poll_output()
    assert isinstance(out, voicemail.Timeout)
    assert out.at == math.inf


def test_greeting_and_beep_are_sent_as_paced_rtp(new_call: NewCall) -> None:
    call = new_call(rtp_seed=42)
    d = Driver(call, start=500.0)
    d.answer()
    assert d.states() == ["answered", "greeting"]
    d.until_state("recording")
    assert d.states() == ["answered", "greeting", "beep", "recording"]

    greeting = voicemail.Prompt.default().encoded("pcmu")
    beep = voicemail.Prompt.beep().encoded("pcmu")
    payloads = b"".join(p.payload for _, p in d.sent)
    assert payloads == greeting + beep

    n_greeting = math.ceil(len(greeting) / 160)
    n_beep = math.ceil(len(beep) / 160)
    assert len(d.sent) == n_greeting + n_beep
    first = d.sent[0][1]
    assert first.marker and first.payload_type == 0 and len(first.data) == 12 + 160
    assert d.sent[0][0] == 500.0
    # Each packet is sent when the previous one has played out (the last greeting packet may
    # be short, so the beep starts early), and the timestamps count the same samples.
    sizes = [len(p.payload) for _, p in d.sent]
    assert sizes.count(160) >= len(sizes) - 2
    for i, (t, p) in enumerate(d.sent):
        assert p.sequence == (first.sequence + i) & 0xFFFF
        assert p.ssrc == first.ssrc
        assert p.marker == (i == 0)
        if i > 0:
            prev_t, prev = d.sent[i - 1]
            assert t == pytest.approx(prev_t + sizes[i - 1] / 8000, abs=1e-6), f"packet {i} paced at {t}"
            assert p.timestamp == (prev.timestamp + sizes[i - 1]) & 0xFFFF_FFFF
    # Recording starts when the beep's last packet has played out.
    assert d.now == pytest.approx(d.sent[-1][0] + sizes[-1] / 8000, abs=1e-6)


@pytest.mark.parametrize("origin", [0.0, 12_345.678_901, 1e9 + 0.123_456_789, 86_400.5])
def test_ticking_at_a_timeout_reaches_the_deadline(new_call: NewCall, origin: float) -> None:
    # `at` is rounded up so that feeding it back as `now` is never a nanosecond early.
    call = new_call()
    d = Driver(call, start=origin)
    d.answer()
    d.until_state("recording")
    assert len(d.sent) > 200


def test_same_seed_same_stream(new_call: NewCall) -> None:
    a, b = new_call(rtp_seed=9), new_call(rtp_seed=9)
    assert a.id != b.id
    a.answered(1.0)
    b.answered(77.0)
    pa = [o for o in a.drain() if isinstance(o, voicemail.SendRtp)]
    pb = [o for o in b.drain() if isinstance(o, voicemail.SendRtp)]
    assert pa == pb and len(pa) == 1


@pytest.mark.parametrize(("codec", "pt"), [("pcmu", 0), ("pcma", 8)])
def test_recording_is_byte_exact_through_g711(new_call: NewCall, codec: str, pt: int) -> None:
    call = new_call(codec=codec)
    d = Driver(call)
    d.answer()
    d.until_state("recording")
    start = d.now
    rng = random.Random(codec)
    payloads = [bytes(rng.randrange(256) for _ in range(160)) for _ in range(100)]
    for i, payload in enumerate(payloads):
        d.rtp(start + 0.02 * i, rtp_packet(1000 + i, 16000 + 160 * i, payload, pt=pt, marker=i == 0))
    message = d.hangup(start + 0.02 * len(payloads))

    assert message.end_reason == "hang-up"
    assert message.codec == codec
    assert message.duration_ms == 2000
    assert message.wav_path is not None
    assert wav_frames(message.wav_path) == voicemail.decode_audio(codec, b"".join(payloads))
    assert call.stats.packets_received == 100 and call.stats.lost == 0


def test_g711_committed_vectors() -> None:
    # ITU-T G.711 / Sun g711.c values.
    ulaw = voicemail.decode_audio("pcmu", bytes([0x00, 0x80, 0xFF, 0x7F, 0xEF]))
    assert [int.from_bytes(ulaw[i : i + 2], "little", signed=True) for i in range(0, 10, 2)] == [
        -32124,
        32124,
        0,
        0,
        132,
    ]
    alaw = voicemail.decode_audio("pcma", bytes([0xD5, 0x55, 0xAA, 0x2A]))
    assert [int.from_bytes(alaw[i : i + 2], "little", signed=True) for i in range(0, 8, 2)] == [8, -8, 32256, -32256]
    assert voicemail.encode_audio("pcmu", b"\x00\x00") == b"\xff"
    assert voicemail.encode_audio("pcma", b"\x00\x00") == b"\xd5"
    # decode ∘ encode is the identity on decoded codewords (every 8-bit code).
    for codec in ("pcmu", "pcma"):
        pcm = voicemail.decode_audio(codec, bytes(range(256)))
        assert voicemail.decode_audio(codec, voicemail.encode_audio(codec, pcm)) == pcm
    with pytest.raises(ValueError):
        voicemail.encode_audio("pcmu", b"\x00")
    with pytest.raises(ValueError):
        voicemail.decode_audio("g729", b"")  # type: ignore[arg-type]


def test_hang_up_during_the_greeting_leaves_an_empty_message(new_call: NewCall, spool: Path) -> None:
    started = datetime(2026, 11, 27, 10, 52, 3, 123456, tzinfo=timezone.utc)
    call = new_call(caller="+15551230000", caller_name="Ivan", called="100", started_at=started)
    assert call.id.startswith("20261127T105203Z-")
    d = Driver(call)
    d.answer()
    d.advance_to(d.now + 1.5)
    assert call.state == "greeting"
    message = d.hangup(d.now)
    assert d.states() == ["answered", "greeting", "ended"]
    assert message.duration_ms == 0
    assert message.end_reason == "hang-up"
    assert (message.id, message.caller, message.caller_name, message.called) == (call.id, "+15551230000", "Ivan", "100")
    assert message.started_at == started
    assert message.greeting == "default"
    assert message.wav_path == spool / f"{call.id}.wav"
    assert message.wav_path.stat().st_size == 44
    assert wav_frames(message.wav_path) == b""
    assert call.ended


def test_hang_up_before_the_answer_is_a_message_too(new_call: NewCall) -> None:
    call = new_call()
    call.hangup(3.0)
    events = call.drain()
    recorded = [e for e in events if isinstance(e, voicemail.MessageRecorded)]
    assert len(recorded) == 1 and recorded[0].message.duration_ms == 0


def test_finish_key_by_sip_info_and_rfc4733(new_call: NewCall) -> None:
    # SIP INFO ('#') during the greeting skips to the beep; RFC 4733 '#' ends the recording.
    call = new_call()
    d = Driver(call)
    d.answer()
    d.advance_to(d.now + 1.0)
    call.dtmf(d.now, "#")
    d._collect()
    assert "beep" in d.states()
    d.until_state("recording")
    t = d.now
    for i in range(10):
        d.rtp(t + 0.02 * i, rtp_packet(i, 160 * i, b"\x55" * 160))
    t += 0.2
    # The digit is reported (and the call ends) on the event's first packet.
    d.rtp(t, rtp_packet(10, 1600, dtmf_event(11, end=False, duration=160), pt=101))
    assert call.ended
    message = d.message
    assert message is not None
    assert message.end_reason == "finish-key"
    assert message.dtmf == "##"
    assert [e.digit for e in d.events if isinstance(e, voicemail.DtmfReceived)] == ["#", "#"]
    assert message.duration_ms == 200


def limited(tmp_path: Path, name: str, recording: str) -> voicemail.Mailbox:
    """A mailbox of its own (spool ``name``) with these ``[recording]`` settings."""
    return voicemail.Mailbox(make_config(tmp_path, f"[recording]\n{recording}\n", spool=name))


def test_max_length_silence_and_media_timeouts(tmp_path: Path) -> None:
    # max_length: 2 s of audio into a 1 s limit.
    call = limited(tmp_path, "long", 'max_length = "1s"\nsilence_timeout = "off"').start_call(caller="+1")
    d = Driver(call)
    d.answer()
    d.until_state("recording")
    t = d.now
    for i in range(100):
        if call.ended:
            break
        d.rtp(t + 0.02 * i, rtp_packet(i, 160 * i, b"\x12" * 160))
    assert d.message is not None and d.message.end_reason == "max-length"
    assert d.message.duration_ms == 1000

    # silence_timeout: μ-law silence (0xFF) for longer than 1 s.
    call = limited(tmp_path, "quiet", 'silence_timeout = "1s"').start_call(caller="+1")
    d = Driver(call)
    d.answer()
    d.until_state("recording")
    t = d.now
    for i in range(100):
        if call.ended:
            break
        d.rtp(t + 0.02 * i, rtp_packet(i, 160 * i, b"\xff" * 160))
    assert d.message is not None and d.message.end_reason == "silence-timeout"

    # media_timeout: the caller sends nothing at all.
    call = limited(tmp_path, "gone", 'media_timeout = "2s"').start_call(caller="+1")
    d = Driver(call)
    d.answer()
    d.advance_to(d.now + 60)
    assert d.message is not None and d.message.end_reason == "media-timeout"


def test_hold_suspends_the_media_timeout(tmp_path: Path) -> None:
    call = limited(tmp_path, "held", 'media_timeout = "2s"').start_call(caller="+1")
    d = Driver(call)
    d.answer()
    call.hold(d.now, True)  # straight away: the 2 s media timeout is shorter than the greeting
    d.advance_to(d.now + 60)
    assert d.message is None and call.state == "recording", "on hold, silence does not end the call"
    call.hold(d.now, False)
    d.advance_to(d.now + 3)
    assert d.message is not None and d.message.end_reason == "media-timeout"


def test_malformed_rtp_is_counted_not_raised(new_call: NewCall) -> None:
    call = new_call()
    call.answered(1.0)
    for junk in (b"", b"\x00", b"\x80\x00", b"garbage" * 10, bytes(11)):
        call.rtp(1.01, junk)
    assert call.stats.malformed == 5
    assert call.stats.packets_received == 5
    assert call.state == "greeting"


def test_misuse_raises_call_error(new_call: NewCall) -> None:
    call = new_call()
    call.answered(10.0)
    with pytest.raises(voicemail.CallError, match="backwards"):
        call.tick(9.0)
    with pytest.raises(voicemail.CallError, match="backwards"):
        call.rtp(0.0, b"")
    with pytest.raises(ValueError, match="finite"):
        call.tick(math.nan)
    with pytest.raises(ValueError, match="DTMF"):
        call.dtmf(11.0, "x")
    with pytest.raises(ValueError, match="DTMF"):
        call.dtmf(11.0, "12")
    call.hangup(11.0)
    call.drain()
    with pytest.raises(voicemail.CallError, match="ended"):
        call.tick(12.0)
    with pytest.raises(voicemail.CallError, match="ended"):
        call.rtp(12.0, rtp_packet(1, 1, b"\xff" * 160))
    assert issubclass(voicemail.CallError, voicemail.VoicemailError)


def test_invalid_arguments(new_call: NewCall, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown codec"):
        new_call(codec="g729")
    with pytest.raises(voicemail.ConfigError, match="ptime"):
        new_call(ptime_ms=15)
    with pytest.raises(ValueError, match="unknown greeting"):
        new_call(greeting="nope")
    with pytest.raises(ValueError, match="timezone-aware"):
        new_call(started_at=datetime(2026, 1, 1))
    with pytest.raises(TypeError):
        new_call(recording=tmp_path / "x.wav")
    # Nothing was left in the spool by the refused calls.
    assert list((tmp_path / "spool").glob("*.wav")) == []
    # A full spool ([store] min_free) refuses new calls before any file is made.
    full = voicemail.Mailbox(
        voicemail.Config.from_toml('mailbox = "x"\ntimezone = "UTC"\nspool = "full"\n[store]\nmin_free = "1000000GB"\n', base_dir=tmp_path)
    )
    with pytest.raises(voicemail.SpoolFullError, match="free") as e:
        full.start_call(caller="+1")
    assert isinstance(e.value, voicemail.MailboxError)
    with pytest.raises(voicemail.SpoolFullError):
        full.check_space()
    assert list((tmp_path / "full").glob("*.wav")) == []


def test_calls_are_made_only_by_the_mailbox(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="start_call"):
        voicemail.Call(id="x", caller="1", recording=tmp_path / "x.wav")
    with pytest.raises(TypeError, match="start_call"):
        voicemail.Call()


def test_custom_greeting_beep_and_finish_key(tmp_path: Path) -> None:
    # A greeting file (WAV written with the stdlib), the beep and the finish key from the config.
    path = tmp_path / "hello.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x10\x00" * 1600)
    config = make_config(
        tmp_path,
        '[recording]\nfinish_key = "*"\nbeep_frequency_hz = 440\nbeep_length = "500ms"\n'
        '[greetings]\nhello = "hello.wav"\n',
    )
    hello = config.prompt("hello")
    assert hello is not None and hello.pcm() == b"\x10\x00" * 1600
    assert voicemail.Prompt.load(path).pcm() == hello.pcm()
    beep = voicemail.Prompt.beep(440.0, 0.5)
    assert (beep.name, beep.samples, beep.duration) == ("beep", 4000, 0.5)
    call = voicemail.Mailbox(config).start_call(caller="+1", greeting="hello", codec="pcma", ptime_ms=40)
    d = Driver(call)
    d.answer()
    d.until_state("recording")
    payloads = b"".join(p.payload for _, p in d.sent)
    assert payloads == hello.encoded("pcma") + beep.encoded("pcma")
    assert len(d.sent) == math.ceil(1600 / 320) + math.ceil(4000 / 320)
    call.dtmf(d.now, "#")  # not the finish key here
    call.dtmf(d.now, "*")
    d._collect()
    assert d.message is not None and d.message.end_reason == "finish-key" and d.message.greeting == "hello"
    assert d.message.dtmf == "#*"

    with pytest.raises(voicemail.GreetingError):
        voicemail.Prompt.from_bytes("junk", b"not audio at all", format="wav")
    with pytest.raises(voicemail.GreetingError):
        voicemail.Prompt.beep(5000.0)
    silence = voicemail.Prompt.from_pcm("hush", b"\x00\x00" * 800)
    assert silence.pcm() == b"\x00\x00" * 800 and silence.renamed("x").name == "x"


def test_message_attributes_and_json(new_call: NewCall) -> None:
    started = datetime(2026, 3, 1, 9, 0, tzinfo=timezone(timedelta(hours=3)))
    call = new_call(caller_name="Анна", started_at=started)
    call.answered(0.0)
    provisional = call.provisional_message()
    assert provisional.end_reason == "interrupted"
    call.hangup(1.0)
    message = next(o.message for o in call.drain() if isinstance(o, voicemail.MessageRecorded))
    assert message.started_at == started
    assert message.started_at.tzinfo == timezone.utc
    d: dict[str, Any] = message.to_dict()
    assert d["caller_name"] == "Анна" and d["end_reason"] == "hang-up" and d["media"]["packets_received"] == 0
    assert d["wav_path"] == str(message.wav_path)
    again = voicemail.Message.from_json(message.to_json())
    assert again == message and again is not message
    assert isinstance(message.media, voicemail.MediaStats)
    with pytest.raises(ValueError):
        voicemail.Message.from_json("{}")


def test_outputs_are_frozen_values_that_pattern_match(new_call: NewCall) -> None:
    call = new_call()
    call.answered(0.0)
    kinds = []
    for out in call.drain():
        match out:
            case voicemail.StateChanged(state):
                kinds.append(f"state:{state}")
            case voicemail.SendRtp(data):
                kinds.append(f"rtp:{len(data)}")
            case voicemail.Timeout(at):
                kinds.append(f"timeout:{at:.2f}")
    assert kinds == ["state:answered", "state:greeting", "rtp:172", "timeout:0.02"]
    assert voicemail.Timeout(1.5) == voicemail.Timeout(1.5)
    assert voicemail.StateChanged("beep") != voicemail.StateChanged("ended")
    assert hash(voicemail.DtmfReceived("5")) == hash(voicemail.DtmfReceived("5"))
    rtp = voicemail.SendRtp(rtp_packet(5, 6, b"ab", pt=8, ssrc=7, marker=True))
    assert (rtp.sequence, rtp.timestamp, rtp.ssrc, rtp.payload_type, rtp.marker, rtp.payload) == (5, 6, 7, 8, True, b"ab")
    assert bytes(rtp) == rtp.data and len(rtp) == 14
    with pytest.raises(AttributeError):
        rtp.data = b""  # type: ignore[misc]


def test_rtp_batch_drains_after_each_packet(new_call: NewCall) -> None:
    call = new_call(codec="pcma")
    d = Driver(call)
    d.answer()
    d.until_state("recording")
    start = d.now
    payloads = [bytes([i]) * 160 for i in range(50)]
    outs = call.rtp_batch([(start + 0.02 * i, rtp_packet(i, 160 * i, p, pt=8)) for i, p in enumerate(payloads)])
    assert isinstance(outs[-1], voicemail.Timeout)
    assert not any(isinstance(o, voicemail.Timeout) for o in outs[:-1])
    call.hangup(start + 1.0)
    message = next(o.message for o in call.drain() if isinstance(o, voicemail.MessageRecorded))
    assert message.wav_path is not None
    assert wav_frames(message.wav_path) == voicemail.decode_audio("pcma", b"".join(payloads))
    assert call.rtp_batch.__doc__ and "GIL" in call.rtp_batch.__doc__


def test_call_with_a_config_uses_its_calendar_and_limits(example_config: voicemail.Config) -> None:
    new_year = datetime(2027, 1, 3, 12, 0, tzinfo=timezone(timedelta(hours=3)))
    call = voicemail.Mailbox(example_config).start_call(caller="8 (495) 123-45-67", started_at=new_year)
    call.answered(0.0)
    call.hangup(0.5)
    message = next(o.message for o in call.drain() if isinstance(o, voicemail.MessageRecorded))
    assert message.greeting == "new_year"
    assert message.called == "+74951234500"


def test_the_message_is_stored_before_it_is_seen(tmp_path: Path) -> None:
    mailbox = voicemail.Mailbox(make_config(tmp_path, '[delivery.maildir]\nroot = "Maildir"\nfolder = "Voicemail"\n'))
    call = mailbox.start_call(caller="+74951234567")
    [status] = mailbox.list()
    assert (status.id, status.lifecycle) == (call.id, "recording")
    d = Driver(call)
    d.answer()
    d.until_state("recording")
    start = d.now
    for i in range(50):
        d.rtp(start + 0.02 * i, rtp_packet(i, 160 * i, b"\x42" * 160))
    message = d.hangup(start + 1.0)
    # MessageRecorded came after the mailbox committed the message and queued its delivery.
    status = mailbox.show(message.id)
    assert status.lifecycle == "stored" and status.message == message
    assert status.wav == message.wav_path and message.wav_path is not None and message.wav_path.parent == mailbox.spool
    assert [(h.event, h.by) for h in status.history] == [("recorded", "python")]
    assert status.history[0].to_dict()["end_reason"] == "hang-up"
    assert [(x.target, x.state) for x in status.deliveries] == [("maildir", "pending")]
    assert message.duration_ms == 1000


def test_a_dropped_call_is_recovered_as_interrupted(mailbox: voicemail.Mailbox) -> None:
    call = mailbox.start_call(caller="+15550001111")
    id = call.id
    d = Driver(call)
    d.answer()
    d.until_state("recording")
    start = d.now
    for i in range(150):  # 3 s
        d.rtp(start + 0.02 * i, rtp_packet(i, 160 * i, b"\x42" * 160))
    assert mailbox.recover() == [], "a live call is never recovered"
    del d, call
    gc.collect()  # the call (and its hold on the recording) is gone, as if its process died
    [message] = mailbox.recover()
    assert (message.id, message.caller, message.end_reason) == (id, "+15550001111", "interrupted")
    assert 2000 <= message.duration_ms <= 3000
    assert message.wav_path is not None and len(wav_frames(message.wav_path)) // 16 == message.duration_ms
    status = mailbox.show(id)
    assert status.lifecycle == "stored" and [(h.event, h.by) for h in status.history] == [("recorded", "recovery")]
    assert mailbox.recover() == []


def test_documented_signatures() -> None:
    sig = inspect.signature(voicemail.Mailbox.start_call)
    params = [p for p in sig.parameters.values() if p.name != "self"]
    assert params[0].name == "caller"
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params)
    assert sig.parameters["dtmf_payload_type"].default == 101
    assert sig.parameters["greeting"].default is None
    assert voicemail.Call.__doc__ and "sans-IO" in voicemail.Call.__doc__ and "start_call" in voicemail.Call.__doc__
    assert str(inspect.signature(voicemail.Call.rtp)) == "(self, now, data, /)"
    for name in ("answered", "rtp", "dtmf", "hangup", "tick", "poll_output", "drain", "rtp_batch"):
        assert getattr(voicemail.Call, name).__doc__, name
