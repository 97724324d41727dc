"""The exception hierarchy: VoicemailError and its subclasses; malformed arguments as
ValueError; I/O failures as builtin OSError subclasses with errno and filename."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import pytest

import voicemail
from conftest import make_config


@pytest.mark.parametrize(
    ("cls", "base"),
    [
        (voicemail.VoicemailError, Exception),
        (voicemail.ConfigError, voicemail.VoicemailError),
        (voicemail.GreetingError, voicemail.VoicemailError),
        (voicemail.RecordingError, voicemail.VoicemailError),
        (voicemail.CallError, voicemail.VoicemailError),
        (voicemail.MailboxError, voicemail.VoicemailError),
        (voicemail.MessageNotFoundError, voicemail.MailboxError),
        (voicemail.InvalidTransitionError, voicemail.MailboxError),
        (voicemail.NotCalledBackError, voicemail.MailboxError),
        (voicemail.SpoolFullError, voicemail.MailboxError),
        (voicemail.DeliveryError, voicemail.VoicemailError),
        (voicemail.SipError, voicemail.VoicemailError),
    ],
)
def test_hierarchy(cls: type, base: type) -> None:
    assert issubclass(cls, base)
    assert cls.__module__ == "voicemail"
    assert cls.__doc__
    assert not issubclass(cls, OSError)


def test_config_error_key_defaults_to_none() -> None:
    assert voicemail.ConfigError("x").key is None


def test_io_failures_are_os_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as e:
        voicemail.Prompt.load(tmp_path / "nope.wav")
    assert e.value.errno == 2 and e.value.filename == str(tmp_path / "nope.wav")
    with pytest.raises(IsADirectoryError):
        voicemail.Prompt.load(tmp_path)
    # A spool that is a file.
    (tmp_path / "taken").write_bytes(b"")
    with pytest.raises(OSError) as spool_error:
        voicemail.Mailbox(make_config(tmp_path, spool="taken"))
    assert spool_error.value.filename == str(tmp_path / "taken")
    assert not isinstance(spool_error.value, voicemail.VoicemailError)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_permission_denied(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(PermissionError) as e:
            voicemail.Mailbox(make_config(tmp_path, spool="locked/spool"))
        assert e.value.filename == str(locked / "spool")
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize(("transport", "kind"), [("udp", socket.SOCK_DGRAM), ("tcp", socket.SOCK_STREAM)])
def test_sip_bind_failure_is_an_os_error(tmp_path: Path, transport: str, kind: int) -> None:
    config = voicemail.Config.from_toml(
        f'mailbox = "x"\ntimezone = "UTC"\nspool = "spool"\n[sip]\ntransports = ["{transport}"]\n',
        base_dir=tmp_path,
    )
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            s.listen()
        port = s.getsockname()[1]
        with pytest.raises(OSError, match="cannot listen") as e:
            voicemail.SipEndpoint(config, deliver=False, listen=f"127.0.0.1:{port}")
    # The errno and the text agree: EADDRINUSE (98 on Linux), whichever layer bound the socket.
    assert type(e.value) is OSError and not isinstance(e.value, voicemail.VoicemailError)
    assert e.value.errno == errno.EADDRINUSE
    assert e.value.strerror is not None
    assert f"{transport} 127.0.0.1:{port}" in e.value.strerror
    assert f"(os error {errno.EADDRINUSE})" in e.value.strerror
    assert os.strerror(errno.EADDRINUSE) in e.value.strerror
    assert str(e.value).startswith(f"[Errno {errno.EADDRINUSE}] ")


def test_sip_bind_failure_bad_address(tmp_path: Path) -> None:
    config = voicemail.Config.from_toml(
        'mailbox = "x"\ntimezone = "UTC"\nspool = "spool"\n[sip]\ntransports = ["udp"]\n', base_dir=tmp_path
    )
    with pytest.raises(ValueError, match="IP:PORT"):
        voicemail.SipEndpoint(config, deliver=False, listen="localhost")
