"""The type stubs match the native module (``mypy.stubtest``), and the package is typed."""

from __future__ import annotations

import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import voicemail


def test_py_typed_and_stubs_ship() -> None:
    package = Path(voicemail.__file__).parent
    assert (package / "py.typed").is_file()
    assert (package / "_voicemail.pyi").is_file()


def test_everything_exported_is_documented() -> None:
    for name in voicemail.__all__:
        obj = getattr(voicemail, name)
        if inspect.isclass(obj) or inspect.isroutine(obj):
            assert obj.__doc__, name


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed")
def test_stubtest() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "voicemail._voicemail"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
