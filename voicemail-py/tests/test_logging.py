"""Rust's logs reach Python's ``logging`` under the ``voicemail`` logger, at their own levels,
and only when the Python logger is enabled for that level at the time."""

from __future__ import annotations

import logging
import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator, List

import pytest

import voicemail
from conftest import make_config

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)


class Collect(logging.Handler):
    """Keeps every record it is given."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def vm_logger() -> Iterator[logging.Logger]:
    """The ``voicemail`` logger, restored to its level and handlers afterwards."""
    logger = logging.getLogger("voicemail")
    level, handlers = logger.level, list(logger.handlers)
    yield logger
    logger.setLevel(level)
    logger.handlers[:] = handlers


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that is bound but not listening: connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def smtp_mailbox(tmp_path: Path, port: int) -> voicemail.Mailbox:
    smtp = (
        f'[delivery.smtp]\nhost = "127.0.0.1"\nport = {port}\nfrom = "vm@example.com"\n'
        'to = ["sales@example.com"]\nconnect_timeout = "2s"\n'
    )
    return voicemail.Mailbox(make_config(tmp_path, smtp))


def record_message(mailbox: voicemail.Mailbox) -> voicemail.Message:
    call = mailbox.start_call(caller="+74951234567", started_at=T0)
    call.answered(0.0)
    call.hangup(0.5)
    return next(o.message for o in call.drain() if isinstance(o, voicemail.MessageRecorded))


def failures(handler: Collect, message: voicemail.Message) -> List[logging.LogRecord]:
    """The delivery-failure records of ``message`` (other tests' mailboxes may still log)."""
    return [r for r in handler.records if "delivery failed" in r.getMessage() and message.id in r.getMessage()]


def test_a_failed_delivery_is_a_warning_record(tmp_path: Path, closed_port: int, vm_logger: logging.Logger) -> None:
    handler = Collect()
    vm_logger.addHandler(handler)
    vm_logger.setLevel(logging.DEBUG)
    mailbox = smtp_mailbox(tmp_path, closed_port)
    message = record_message(mailbox)

    report = mailbox.deliver()
    assert [f[:2] for f in report.failed] == [(message.id, "smtp")]
    assert voicemail.flush_logs()

    [warning] = failures(handler, message)
    assert warning.name == "voicemail.core.mailbox"
    assert warning.levelno == logging.WARNING and warning.levelname == "WARNING"
    text = warning.getMessage()
    assert text.startswith("delivery failed; will retry")
    assert message.id in text and 'target="smtp"' in text and "attempts=1" in text
    assert warning.pathname.endswith("mailbox.rs") and warning.lineno > 0
    # Records are ordinary: the standard formatter renders them.
    assert "WARNING voicemail.core.mailbox delivery failed" in logging.Formatter(
        "%(levelname)s %(name)s %(message)s"
    ).format(warning)
    # INFO and DEBUG records of voicemail's own modules come too when asked for, in order.
    migrated = [r for r in handler.records if r.getMessage().startswith("store schema migrated")]
    started = [r for r in handler.records if r.getMessage().startswith("call started")]
    assert migrated and all(r.levelno == logging.INFO and r.name == "voicemail.core.store.sqlite" for r in migrated)
    assert [r.levelno for r in started] == [logging.DEBUG] and message.id in started[0].getMessage()
    assert handler.records.index(migrated[0]) < handler.records.index(started[0]) < handler.records.index(warning)
    assert all(r.name.startswith("voicemail.") for r in handler.records)


def test_the_python_level_decides(tmp_path: Path, closed_port: int, vm_logger: logging.Logger) -> None:
    handler = Collect()
    vm_logger.addHandler(handler)
    mailbox = smtp_mailbox(tmp_path, closed_port)
    message = record_message(mailbox)

    # ERROR: the warning is not handled.
    vm_logger.setLevel(logging.ERROR)
    now = datetime.now(timezone.utc)
    assert len(mailbox.deliver(now).failed) == 1
    assert voicemail.flush_logs()
    assert failures(handler, message) == []
    assert all(r.levelno >= logging.ERROR for r in handler.records)

    # WARNING, changed at run time: the retry's warning is handled, nothing below it is.
    vm_logger.setLevel(logging.WARNING)
    assert len(mailbox.deliver(now + timedelta(hours=1)).failed) == 1
    assert voicemail.flush_logs()
    [warning] = failures(handler, message)
    assert warning.levelno == logging.WARNING and "attempts=2" in warning.getMessage()
    assert all(r.levelno >= logging.WARNING for r in handler.records)

    # A child logger can be set on its own: voicemail.core.mailbox off, the rest unchanged.
    logging.getLogger("voicemail.core.mailbox").setLevel(logging.CRITICAL)
    try:
        assert len(mailbox.deliver(now + timedelta(hours=2)).failed) == 1
        assert voicemail.flush_logs()
        assert len(failures(handler, message)) == 1
    finally:
        logging.getLogger("voicemail.core.mailbox").setLevel(logging.NOTSET)


def test_records_propagate_to_the_root_logger(
    tmp_path: Path, closed_port: int, vm_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    mailbox = smtp_mailbox(tmp_path, closed_port)
    message = record_message(mailbox)
    mailbox.deliver()
    assert voicemail.flush_logs()
    assert [(r.name, r.levelname) for r in caplog.records if "delivery failed" in r.getMessage() and message.id in r.getMessage()] == [
        ("voicemail.core.mailbox", "WARNING")
    ]


def test_flush_logs_arguments() -> None:
    assert voicemail.flush_logs(0.5) is True
    with pytest.raises(ValueError, match="timeout"):
        voicemail.flush_logs(-1.0)
