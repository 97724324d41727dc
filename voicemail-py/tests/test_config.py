"""voicemail.Config: loading TOML, the greeting calendar and the client directory."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import voicemail

MSK = timezone(timedelta(hours=3))


def test_the_documented_example_loads(example_config: voicemail.Config, tmp_path: Path) -> None:
    c = example_config
    assert c.mailbox == "Sales"
    assert c.number == "+74951234500"
    assert c.timezone == "Europe/Moscow"
    assert c.spool == tmp_path / "cfg" / ".." / "voicemail-data" / "spool"
    assert c.delivery_targets == ["maildir", "smtp"]
    assert c.max_length == 180.0
    assert c.greetings["default"] == "builtin:default"
    assert set(c.greetings) >= {"default", "after_hours", "new_year", "may_holidays", "vacation"}
    prompt = c.prompt("new_year")
    assert prompt is not None and prompt.name == "new_year" and prompt.samples > 8000
    assert c.prompt("nope") is None


@pytest.mark.parametrize(
    ("at", "name", "kind"),
    [
        (datetime(2027, 1, 3, 12, 0, tzinfo=MSK), "new_year", "holiday"),
        (datetime(2026, 12, 31, 0, 0, tzinfo=MSK), "new_year", "holiday"),
        (datetime(2026, 5, 2, 10, 0, tzinfo=MSK), "may_holidays", "holiday"),
        (datetime(2026, 8, 5, 10, 0, tzinfo=MSK), "vacation", "temporary"),
        # Inside business hours: the example names no business-hours greeting.
        (datetime(2026, 11, 25, 10, 0, tzinfo=MSK), "default", "default"),
        (datetime(2026, 11, 25, 13, 30, tzinfo=MSK), "after_hours", "after-hours"),
        (datetime(2026, 11, 25, 20, 0, tzinfo=MSK), "after_hours", "after-hours"),
        (datetime(2026, 11, 28, 11, 0, tzinfo=MSK), "after_hours", "after-hours"),  # Saturday
        # 06:30 UTC is 09:30 in Moscow: business hours.
        (datetime(2026, 11, 25, 6, 30, tzinfo=timezone.utc), "default", "default"),
        (datetime(2026, 11, 25, 5, 30, tzinfo=timezone.utc), "after_hours", "after-hours"),
    ],
)
def test_greeting_calendar(example_config: voicemail.Config, at: datetime, name: str, kind: str) -> None:
    assert example_config.greeting_at(at) == name
    choice = example_config.greeting_choice(at)
    assert (choice.name, choice.kind) == (name, kind)
    assert choice.reason


def test_naive_datetimes_are_refused(example_config: voicemail.Config) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        example_config.greeting_at(datetime(2026, 11, 25, 10, 0))


def test_client_directory(example_config: voicemail.Config) -> None:
    c = example_config
    assert c.has_directory
    for number in ("8 (495) 123-45-67", "+7 495 123 45 67", "74951234567", "+74951234567"):
        client = c.lookup_client(number)
        assert client is not None, number
        assert client.client == "ООО «Ромашка»"
        assert client.manager_name == "Анна Петрова"
        assert client.manager_email == "anna.petrova@example.com"
        assert "+74951234567" in client.numbers
    acme = c.lookup_client("+1 (202) 555-0173")
    assert acme is not None and acme.client == "Acme Corp"
    assert c.lookup_client("+7 999 000-00-00") is None
    assert c.lookup_client("not a number") is None
    assert c.normalize_number("8 (800) 555-35-35") == "+78005553535"


def test_default_config() -> None:
    c = voicemail.Config.default()
    assert c.mailbox == "voicemail"
    assert c.timezone == "UTC"
    assert c.spool == Path("voicemail-data/spool")
    assert c.delivery_targets == ["maildir"]
    assert c.greetings == {"default": "builtin:default"}
    assert not c.has_directory and c.lookup_client("+74951234567") is None
    assert c.greeting_at(datetime.now(timezone.utc)) == "default"


def test_from_toml_with_a_greeting_file(tmp_path: Path) -> None:
    import wave

    (tmp_path / "g").mkdir()
    with wave.open(str(tmp_path / "g" / "closed.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x00\x01" * 16000)
    text = """
mailbox = "Support"
timezone = "America/New_York"
spool = "spool"
[greetings]
closed = "g/closed.wav"
[schedule]
after_hours_greeting = "closed"
[schedule.business_hours]
monday = "09:00-17:00"
tuesday = "09:00-17:00"
wednesday = "09:00-17:00"
thursday = "09:00-17:00"
friday = "09:00-17:00"
saturday = "closed"
sunday = "closed"
"""
    c = voicemail.Config.from_toml(text, base_dir=tmp_path)
    assert c.spool == tmp_path / "spool"
    assert c.delivery_targets == []
    closed = c.prompt("closed")
    assert closed is not None and closed.samples == 8000  # 1 s at 16 kHz → 8 kHz
    nyc = timezone(timedelta(hours=-5))
    assert c.greeting_at(datetime(2026, 11, 25, 20, 0, tzinfo=nyc)) == "closed"
    assert c.greeting_at(datetime(2026, 11, 25, 10, 0, tzinfo=nyc)) == "default"


@pytest.mark.parametrize(
    ("text", "key", "match"),
    [
        ('mailbox = "x"\ntimezone = "UTC"\nspool = "s"\ncolour = "red"\n', "colour", "unknown"),
        ('mailbox = "x"\ntimezone = "Mars/Olympus"\nspool = "s"\n', "timezone", None),
        ('mailbox = "x"\ntimezone = "UTC"\nspool = "s"\n[recording]\nmax_length = "forever"\n', "recording.max_length", None),
        (
            'mailbox = "x"\ntimezone = "UTC"\nspool = "s"\n[schedule]\nafter_hours_greeting = "nope"\n',
            "schedule.after_hours_greeting",
            None,
        ),
        ('mailbox = "x"\ntimezone = "UTC"\nspool = "s"\n[sip]\n', None, None),
    ],
)
def test_config_errors_name_the_key(text: str, key: str | None, match: str | None) -> None:
    if key is None:
        voicemail.Config.from_toml(text)  # an empty [sip] table is valid
        return
    with pytest.raises(voicemail.ConfigError, match=match) as e:
        voicemail.Config.from_toml(text)
    assert e.value.key == key
    assert key in str(e.value)
    assert isinstance(e.value, voicemail.VoicemailError)


def test_missing_files_are_os_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as e:
        voicemail.Config.load(tmp_path / "missing.toml")
    assert e.value.filename == str(tmp_path / "missing.toml")
    assert e.value.errno == 2
    # A greeting file that does not exist is a configuration error naming the key.
    with pytest.raises(voicemail.ConfigError) as ce:
        voicemail.Config.from_toml('mailbox = "x"\ntimezone = "UTC"\nspool = "s"\n[greetings]\ndefault = "nope.wav"\n', base_dir=tmp_path)
    assert ce.value.key == "greetings.default"
    # A directory CSV that does not exist is a FileNotFoundError naming the file.
    text = 'mailbox = "x"\ntimezone = "UTC"\nspool = "s"\n[directory]\npath = "clients.csv"\ndefault_region = "RU"\n'
    with pytest.raises(FileNotFoundError) as fe:
        voicemail.Config.from_toml(text, base_dir=tmp_path)
    assert fe.value.filename == str(tmp_path / "clients.csv")
    assert "directory.path" in str(fe.value)


def test_sip_table_errors_are_config_errors(tmp_path: Path) -> None:
    c = voicemail.Config.from_toml('mailbox = "x"\ntimezone = "UTC"\nspool = "s"\n[sip]\nmax_calls = 0\n', base_dir=tmp_path)
    with pytest.raises(voicemail.ConfigError) as e:
        voicemail.SipEndpoint(c, deliver=False)
    assert e.value.key == "sip.max_calls"
