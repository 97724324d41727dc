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


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed")
def test_pattern_matching_is_precisely_typed(tmp_path: Path) -> None:
    # tests/typecheck_match.py asserts the type of every `case Output(x)` capture; a misuse of
    # a captured value is an error (it would pass if the capture were Any).
    misuse = tmp_path / "misuse.py"
    misuse.write_text(
        "import voicemail\n\n\n"
        "def f(out: voicemail.Output) -> int:\n"
        "    match out:\n"
        "        case voicemail.SendRtp(data):\n"
        "            return data + 1\n"
        "        case voicemail.Timeout(at):\n"
        "            return at.hex()\n"
        "    return 0\n"
    )
    here = Path(__file__).parent
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(here / "typecheck_match.py"), str(misuse)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=here.parent,
    )
    errors = [line for line in run.stdout.splitlines() if ": error:" in line]
    assert not [e for e in errors if "typecheck_match.py" in e], run.stdout
    assert any('Unsupported operand types for + ("bytes" and "int")' in e for e in errors), run.stdout
    assert any('Incompatible return value type (got "str", expected "int")' in e for e in errors), run.stdout
    # Nothing else is wrong: only the two misuses (and what follows from the first) are errors.
    assert all(f"{misuse.name}:7:" in e or f"{misuse.name}:9:" in e for e in errors), run.stdout
