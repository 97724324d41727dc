"""The mailbox workflow (New → Assigned → CalledBack, deletion rules) and delivery through the
outbox into a Maildir folder."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import voicemail

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)


def record(spool: Path, id: str, caller: str, started_at: datetime, audio_packets: int = 0) -> voicemail.Message:
    """A finished call in the spool: ``<id>.wav`` from a Call and ``<id>.json`` beside it."""
    call = voicemail.Call(id=id, caller=caller, recording=spool / f"{id}.wav", started_at=started_at, beep=False)
    call.answered(0.0)
    call.hangup(0.5)
    message = next(o.message for o in call.drain() if isinstance(o, voicemail.MessageRecorded))
    (spool / f"{id}.json").write_text(message.to_json(), encoding="utf-8")
    return message


@pytest.fixture
def mailbox(spool: Path) -> voicemail.Mailbox:
    record(spool, "m2", "+74951234567", T0 + timedelta(minutes=5))
    record(spool, "m1", "+15551230000", T0)
    return voicemail.Mailbox(spool)


def test_list_and_show(mailbox: voicemail.Mailbox, spool: Path) -> None:
    listed = mailbox.list()
    assert [m.id for m in listed] == ["m1", "m2"]  # by start time
    m1 = mailbox.show("m1")
    assert m1.message is not None and m1.message.caller == "+15551230000"
    assert m1.wav == spool / "m1.wav"
    assert m1.state.name == "new" and m1.state.who is None and m1.state.at is None
    assert m1.history == []
    assert mailbox.spool == spool


def test_workflow(mailbox: voicemail.Mailbox) -> None:
    at = T0 + timedelta(hours=1)
    s = mailbox.assign("m1", "Anna", at=at)
    assert (s.state.name, s.state.who, s.state.at) == ("assigned", "Anna", at)
    s = mailbox.assign("m1", "Boris")  # reassigning is allowed; `at` defaults to now
    assert s.state.description == "assigned to Boris"
    assert s.state.at is not None and s.state.at.tzinfo is not None
    s = mailbox.called_back("m1", "Boris", note="ordered 3 more", at=at + timedelta(hours=1))
    assert (s.state.name, s.state.who, s.state.note) == ("called-back", "Boris", "ordered 3 more")
    assert [h.name for h in s.history] == ["assigned", "assigned", "called-back"]
    assert mailbox.show("m1").state == s.state

    with pytest.raises(voicemail.InvalidTransitionError, match="called back"):
        mailbox.assign("m1", "Carol")
    with pytest.raises(voicemail.InvalidTransitionError):
        mailbox.called_back("m1", "Carol")

    record_ = mailbox.delete("m1", at=at + timedelta(hours=2))
    assert (record_.id, record_.forced, record_.reason, record_.caller) == ("m1", False, None, "+15551230000")
    assert record_.state.name == "called-back"
    with pytest.raises(voicemail.MessageNotFoundError, match="deleted"):
        mailbox.show("m1")


def test_deleting_before_a_callback_needs_a_reason(mailbox: voicemail.Mailbox, spool: Path) -> None:
    with pytest.raises(voicemail.NotCalledBackError) as e:
        mailbox.delete("m2")
    assert isinstance(e.value, voicemail.MailboxError) and isinstance(e.value, voicemail.VoicemailError)
    assert (spool / "m2.wav").exists()
    with pytest.raises(voicemail.MailboxError, match="reason"):
        mailbox.delete("m2", force_reason="")
    record_ = mailbox.delete("m2", "spam call", at=T0 + timedelta(days=1))
    assert record_.forced and record_.reason == "spam call" and record_.state.name == "new"
    assert record_.at == T0 + timedelta(days=1)
    assert not (spool / "m2.wav").exists() and not (spool / "m2.json").exists()
    assert [(d.id, d.forced) for d in mailbox.deletions()] == [("m2", True)]
    assert (spool / "deletions.log").read_text().count("spam call") == 1


def test_refusals(mailbox: voicemail.Mailbox, tmp_path: Path) -> None:
    with pytest.raises(voicemail.MessageNotFoundError):
        mailbox.show("nope")
    with pytest.raises(voicemail.MailboxError, match="invalid message id"):
        mailbox.show("../etc/passwd")
    with pytest.raises(voicemail.MailboxError, match="assignee"):
        mailbox.assign("m2", "")
    with pytest.raises(ValueError, match="timezone-aware"):
        mailbox.assign("m2", "Anna", at=datetime(2026, 1, 1))
    with pytest.raises(FileNotFoundError) as e:
        voicemail.Mailbox(tmp_path / "no-spool")
    assert e.value.filename == str(tmp_path / "no-spool")
    with pytest.raises(TypeError):
        voicemail.Mailbox(42)  # type: ignore[arg-type]


def test_mailbox_of_a_config(tmp_path: Path) -> None:
    (tmp_path / "spool").mkdir()
    config = voicemail.Config.from_toml('mailbox = "x"\ntimezone = "UTC"\nspool = "spool"\n', base_dir=tmp_path)
    record(tmp_path / "spool", "c1", "+1", T0)
    assert [m.id for m in voicemail.Mailbox(config).list()] == ["c1"]


def test_delivery_into_a_maildir_and_outbox_status(tmp_path: Path) -> None:
    config = voicemail.Config.from_toml(
        'mailbox = "Sales"\ntimezone = "UTC"\nspool = "spool"\n'
        '[delivery.maildir]\nroot = "Maildir"\nfolder = "Voicemail"\n',
        base_dir=tmp_path,
    )
    delivery = voicemail.Delivery(config)
    message = record(tmp_path / "spool", "d1", "+74951234567", T0)
    outbox = voicemail.Outbox(config)
    assert outbox.unqueued() == ["d1"]

    assert delivery.submit(message, now=T0) == ["maildir"]
    assert delivery.submit(message, now=T0) == ["maildir"]  # idempotent
    [pending] = outbox.status()
    assert (pending.id, pending.target, pending.state, pending.attempts) == ("d1", "maildir", "pending", 0)
    assert pending.next_attempt == T0 and pending.delivered_at is None
    assert outbox.next_due() == T0

    report = delivery.run_due(now=T0 + timedelta(seconds=1))
    assert report.delivered == [("d1", "maildir")] and report.failed == [] and report.attempted == 1
    [done] = voicemail.Outbox(tmp_path / "spool").status()
    assert done.state == "delivered" and done.delivered_at == T0 + timedelta(seconds=1)
    assert done.next_attempt is None
    assert outbox.next_due() is None
    mails = list((tmp_path / "Maildir" / ".Voicemail" / "new").iterdir())
    assert len(mails) == 1
    assert b"+74951234567" in mails[0].read_bytes()


def test_failing_delivery_stays_queued(tmp_path: Path) -> None:
    from conftest import free_udp_port

    port = free_udp_port()  # nothing listens on TCP there (almost surely)
    config = voicemail.Config.from_toml(
        f'mailbox = "Sales"\ntimezone = "UTC"\nspool = "spool"\n[delivery.smtp]\nhost = "127.0.0.1"\nport = {port}\n'
        'from = "vm@example.com"\nto = ["sales@example.com"]\n',
        base_dir=tmp_path,
    )
    delivery = voicemail.Delivery(config)
    message = record(tmp_path / "spool", "f1", "+1", T0)
    delivery.submit(message, now=T0)
    report = delivery.run_due(now=T0)
    assert report.delivered == [] and [f[:2] for f in report.failed] == [("f1", "smtp")]
    assert report.next_due is not None and report.next_due > T0
    [status] = voicemail.Outbox(config).status()
    assert status.state == "failing" and status.attempts == 1 and status.last_error
