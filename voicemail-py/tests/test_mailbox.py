"""voicemail.Mailbox: the follow-up workflow (New → Assigned → CalledBack, deletion rules,
history), the error mapping, and delivery into a Maildir folder with its status."""

from __future__ import annotations

import gc
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import voicemail
from conftest import free_udp_port, make_config

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)
MAILDIR = '[delivery.maildir]\nroot = "Maildir"\nfolder = "Voicemail"\n'


def record(mailbox: voicemail.Mailbox, caller: str, started_at: datetime) -> voicemail.Message:
    """A finished call: started by the mailbox, answered, hung up after half a second."""
    call = mailbox.start_call(caller=caller, started_at=started_at)
    call.answered(0.0)
    call.hangup(0.5)
    return next(o.message for o in call.drain() if isinstance(o, voicemail.MessageRecorded))


@pytest.fixture
def two(mailbox: voicemail.Mailbox) -> tuple[voicemail.Message, voicemail.Message]:
    later = record(mailbox, "+74951234567", T0 + timedelta(minutes=5))
    first = record(mailbox, "+15551230000", T0)
    return first, later


def test_list_and_show(mailbox: voicemail.Mailbox, two: tuple[voicemail.Message, voicemail.Message], spool: Path) -> None:
    first, later = two
    listed = mailbox.list()
    assert [m.id for m in listed] == [first.id, later.id]  # by start time
    m1 = mailbox.show(first.id)
    assert m1.message == first and m1.message.caller == "+15551230000"
    assert m1.wav == spool / f"{first.id}.wav" and m1.lifecycle == "stored"
    assert m1.state.name == "new" and m1.state.who is None and m1.state.at is None
    assert [h.event for h in m1.history] == ["recorded"]
    assert m1.deliveries == []  # no delivery target configured
    assert mailbox.spool == spool and mailbox.targets == []
    assert repr(m1).startswith("MessageStatus(")


def test_workflow(mailbox: voicemail.Mailbox, two: tuple[voicemail.Message, voicemail.Message]) -> None:
    id = two[0].id
    at = T0 + timedelta(hours=1)
    s = mailbox.assign(id, "Anna", by="boss", at=at)
    assert (s.state.name, s.state.who, s.state.at) == ("assigned", "Anna", at)
    s = mailbox.assign(id, "Boris")  # reassigning is allowed; `at` defaults to now, `by` to "python"
    assert s.state.description == "assigned to Boris"
    assert s.state.at is not None and s.state.at.tzinfo is not None
    s = mailbox.called_back(id, by="Boris", note="ordered 3 more", at=at + timedelta(hours=1))
    assert (s.state.name, s.state.who, s.state.note) == ("called-back", "Boris", "ordered 3 more")
    assert [(h.event, h.by) for h in s.history] == [
        ("recorded", "python"),  # calls started from Python are recorded by "python"
        ("assigned", "boss"),
        ("assigned", "python"),
        ("called-back", "Boris"),
    ]
    assert s.history[1].at == at and s.history[1].to_dict()["to"] == "Anna"
    assert s.history[3].description == "called back: ordered 3 more"
    assert mailbox.show(id).state == s.state

    with pytest.raises(voicemail.InvalidTransitionError, match="called back"):
        mailbox.assign(id, "Carol")
    with pytest.raises(voicemail.InvalidTransitionError):
        mailbox.called_back(id, by="Carol")

    deleted = mailbox.delete(id, by="boss", at=at + timedelta(hours=2))
    assert deleted.lifecycle == "deleted" and deleted.wav is None and deleted.state.name == "called-back"
    assert deleted.history[-1].to_dict() == {
        "event": "deleted",
        "forced": False,
        "reason": None,
        "by": "boss",
        "at": "2026-11-27T13:00:00Z",
    }
    assert [m.id for m in mailbox.list()] == [two[1].id]
    assert [m.id for m in mailbox.list(deleted=True)] == [id, two[1].id]
    assert mailbox.show(id).lifecycle == "deleted"  # the record and its history stay
    with pytest.raises(voicemail.MessageNotFoundError, match="deleted"):
        mailbox.assign(id, "Anna")


def test_deleting_before_a_callback_needs_a_reason(
    mailbox: voicemail.Mailbox, two: tuple[voicemail.Message, voicemail.Message], spool: Path
) -> None:
    id = two[1].id
    with pytest.raises(voicemail.NotCalledBackError) as e:
        mailbox.delete(id)
    assert isinstance(e.value, voicemail.MailboxError) and isinstance(e.value, voicemail.VoicemailError)
    assert (spool / f"{id}.wav").exists()
    with pytest.raises(ValueError, match="reason"):
        mailbox.delete(id, force_reason="")
    s = mailbox.delete(id, force_reason="spam call", at=T0 + timedelta(days=1))
    assert s.lifecycle == "deleted" and s.state.name == "new"
    last = s.history[-1]
    assert (last.event, last.by, last.at) == ("deleted", "python", T0 + timedelta(days=1))
    assert last.to_dict()["forced"] is True and last.to_dict()["reason"] == "spam call"
    assert not (spool / f"{id}.wav").exists()


def test_refusals(mailbox: voicemail.Mailbox, two: tuple[voicemail.Message, voicemail.Message], tmp_path: Path) -> None:
    id = two[0].id
    with pytest.raises(voicemail.MessageNotFoundError):
        mailbox.show("nope")
    # Malformed arguments are ValueErrors, checked before anything is touched.
    for bad in ("../etc/passwd", "", "a/b", ".hidden"):
        with pytest.raises(ValueError, match="invalid message id"):
            mailbox.show(bad)
    with pytest.raises(ValueError, match="assignee"):
        mailbox.assign(id, "")
    with pytest.raises(ValueError, match="by"):
        mailbox.called_back(id, by=" ")
    with pytest.raises(ValueError, match="timezone-aware"):
        mailbox.assign(id, "Anna", at=datetime(2026, 1, 1))
    assert mailbox.show(id).state.name == "new"
    with pytest.raises(TypeError):
        voicemail.Mailbox(tmp_path)  # type: ignore[arg-type]
    with pytest.raises(voicemail.DeliveryError, match="smtp"):
        mailbox.deliver(target="smtp")
    with pytest.raises(voicemail.DeliveryError):
        mailbox.retry(id, "imap")


def test_several_mailboxes_share_one_spool(tmp_path: Path) -> None:
    a = voicemail.Mailbox(make_config(tmp_path))
    message = record(a, "+1", T0)
    b = voicemail.Mailbox(make_config(tmp_path))
    b.assign(message.id, "Anna")
    assert a.show(message.id).state.who == "Anna"


def test_delivery_into_a_maildir_and_its_status(tmp_path: Path) -> None:
    mailbox = voicemail.Mailbox(make_config(tmp_path, MAILDIR))
    assert mailbox.targets == ["maildir"]
    message = record(mailbox, "+74951234567", T0)
    [pending] = mailbox.deliveries()
    assert (pending.id, pending.target, pending.state, pending.attempts) == (message.id, "maildir", "pending", 0)
    assert pending.delivered_at is None and pending.next_attempt is not None
    assert mailbox.next_due() == pending.next_attempt == mailbox.next_due("maildir")

    report = mailbox.deliver()
    assert report.delivered == [(message.id, "maildir")] and report.failed == report.rejected == []
    assert report.attempted == 1
    [done] = voicemail.Mailbox(make_config(tmp_path, MAILDIR)).deliveries()
    assert done.state == "delivered" and done.delivered_at is not None and done.ack
    assert done.next_attempt is None
    assert mailbox.next_due() is None
    assert mailbox.deliver().attempted == 0
    status = mailbox.show(message.id)
    assert [h.event for h in status.history] == ["recorded", "delivered"]
    assert status.deliveries[0].state == "delivered"
    mails = list((tmp_path / "Maildir" / ".Voicemail" / "new").iterdir())
    assert len(mails) == 1
    assert b"+74951234567" in mails[0].read_bytes()


def test_failing_delivery_stays_queued_and_can_be_retried(tmp_path: Path) -> None:
    port = free_udp_port()  # nothing listens on TCP there (almost surely)
    smtp = (
        f'[delivery.smtp]\nhost = "127.0.0.1"\nport = {port}\nfrom = "vm@example.com"\nto = ["sales@example.com"]\n'
    )
    mailbox = voicemail.Mailbox(make_config(tmp_path, smtp))
    message = record(mailbox, "+1", T0)
    report = mailbox.deliver()
    assert report.delivered == [] and [f[:2] for f in report.failed] == [(message.id, "smtp")]
    [status] = mailbox.deliveries()
    assert status.state == "failing" and status.attempts == 1 and status.last_error
    assert status.last_attempt is not None
    next_due = mailbox.next_due()
    assert next_due is not None and next_due > datetime.now(timezone.utc)
    assert mailbox.deliver().attempted == 0  # not due yet
    assert mailbox.retry(message.id) == 1  # due now again
    assert mailbox.deliver().attempted == 1


def test_audio_and_recover_spool(mailbox: voicemail.Mailbox, spool: Path, tmp_path: Path) -> None:
    """``audio()`` is the recording as every reader gets it (the spool's file here, the shared
    store's copy on another node); ``recover_spool()`` recovers a dead recorder's calls from
    its spool (with the embedded store: in place)."""
    m = record(mailbox, "+1", T0)
    assert mailbox.audio(m.id) == (spool / f"{m.id}.wav").read_bytes()
    mailbox.delete(m.id, force_reason="test")
    assert mailbox.audio(m.id) is None
    with pytest.raises(voicemail.MessageNotFoundError):
        mailbox.audio("20990101T000000Z-0000000000000000")
    with pytest.raises(ValueError, match="invalid message id"):
        mailbox.audio("../x")

    other = voicemail.Mailbox(make_config(tmp_path, spool="other"))
    call = other.start_call(caller="+2", started_at=T0)
    call.answered(0.0)
    del call  # the recorder goes away without storing its message
    gc.collect()
    recovered = mailbox.recover_spool(tmp_path / "other", "dead-node")
    assert [(r.caller, r.end_reason) for r in recovered] == [("+2", "interrupted")]
    assert mailbox.recover_spool(tmp_path / "other", "dead-node") == []
    with pytest.raises(FileNotFoundError):
        mailbox.recover_spool(tmp_path / "nowhere", "dead-node")
