"""Several mailboxes in one configuration (``[[mailboxes]]``): ``Config`` names them and
gives each one's configuration, ``Mailbox(config, name)`` opens one (its own spool),
``SipEndpoint`` opens them all, messages name their mailbox, and the transcription hook's
text reaches ``Message.transcript``. A one-mailbox file behaves as before."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

import voicemail
from conftest import Driver, make_config, rtp_packet

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)

TWO = """
default_mailbox = "Support"

[sip]
listen = "127.0.0.1:0"

[[mailboxes]]
mailbox = "Sales"
number = "+74951234500"
numbers = ["sales", "100"]
timezone = "UTC"
spool = "sales"
[mailboxes.store]
min_free = "0"

[[mailboxes]]
mailbox = "Support"
numbers = ["200"]
timezone = "UTC"
spool = "support"
[mailboxes.store]
min_free = "0"
[mailboxes.delivery.maildir]
root = "Maildir"
folder = "Support"
[mailboxes.transcription]
command = ["sh", "-c", "echo 'Please call me back.'"]
timeout = "30s"
"""


def record(mailbox: voicemail.Mailbox, caller: str) -> voicemail.Message:
    """A finished call of half a second."""
    call = mailbox.start_call(caller=caller, started_at=T0)
    call.answered(0.0)
    call.hangup(0.5)
    return next(o.message for o in call.drain() if isinstance(o, voicemail.MessageRecorded))


def test_a_file_of_several_mailboxes(tmp_path: Path) -> None:
    config = voicemail.Config.from_toml(TWO, base_dir=tmp_path)
    assert config.mailboxes == ["Sales", "Support"]
    assert config.default_mailbox == "Support"
    # The properties describe the default mailbox.
    assert config.mailbox == "Support" and config.numbers == ["200"]
    sales = config.mailbox_config("sales")
    assert (sales.mailbox, sales.number, sales.numbers) == ("Sales", "+74951234500", ["sales", "100"])
    assert sales.spool == tmp_path / "sales"
    with pytest.raises(ValueError, match='no mailbox is named "Marketing"'):
        config.mailbox_config("Marketing")
    with pytest.raises(voicemail.ConfigError) as e:
        voicemail.Config.from_toml(TWO.replace('spool = "support"', 'spool = "sales"'), base_dir=tmp_path)
    assert e.value.key == "mailboxes[1].spool"


def test_each_mailbox_keeps_its_own_messages(tmp_path: Path) -> None:
    config = voicemail.Config.from_toml(TWO, base_dir=tmp_path)
    support = voicemail.Mailbox(config)
    assert support.name == "Support" and support.spool == tmp_path / "support"
    sales = voicemail.Mailbox(config, "Sales")
    assert sales.name == "Sales" and sales.spool == tmp_path / "sales"
    with pytest.raises(ValueError, match="Sales"):
        voicemail.Mailbox(config, "Nobody")
    message = record(sales, "+15551230000")
    assert message.mailbox == "Sales" and message.diverted_from is None and message.transcript is None
    assert [m.message.id for m in sales.list()] == [message.id]
    assert support.list() == []


def test_the_transcript_reaches_the_message(tmp_path: Path) -> None:
    support = voicemail.Mailbox(voicemail.Config.from_toml(TWO, base_dir=tmp_path), "Support")
    # A second of the caller's audio after the greeting (an empty recording is not transcribed).
    d = Driver(support.start_call(caller="+15551230000", started_at=T0))
    d.answer()
    d.until_state("recording")
    start = d.now
    for i in range(50):
        d.rtp(start + i * 0.02, rtp_packet(i, i * 160, bytes([0x55]) * 160))
    message = d.hangup(start + 1.0)
    assert message.duration_ms > 0
    assert message.transcript is None, "stored first, transcribed before its delivery"
    report = support.deliver()
    assert len(report.delivered) == 1
    assert support.show(message.id).message.transcript == "Please call me back."
    mails = list((tmp_path / "Maildir" / ".Support" / "new").iterdir())
    assert len(mails) == 1 and b"Please call me back." in mails[0].read_bytes()


def test_the_endpoint_opens_every_mailbox(tmp_path: Path) -> None:
    config = voicemail.Config.from_toml(TWO, base_dir=tmp_path)
    endpoint = voicemail.SipEndpoint(config, deliver=False)
    assert sorted(endpoint.mailboxes) == ["Sales", "Support"]
    assert endpoint.mailbox.name == "Support"
    assert endpoint.mailboxes["Sales"].spool == tmp_path / "sales"


def test_a_one_mailbox_file_is_unchanged(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    assert config.mailboxes == ["Test"] and config.default_mailbox == "Test"
    assert config.numbers == []
    mailbox = voicemail.Mailbox(config)
    assert mailbox.name == "Test"
    assert record(mailbox, "+1").mailbox == "Test"
