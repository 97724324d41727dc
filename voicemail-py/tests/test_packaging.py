"""The installed distribution (wheel or sdist, as scripts/test installs each in a venv of its
own) carries its metadata: license expression and files, project URLs, the version of the
crate, and the package as installed (not the source tree)."""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path

import pytest

import voicemail
from conftest import REPO


def test_imported_from_the_installation() -> None:
    direct_url = metadata.distribution("voicemail").read_text("direct_url.json")
    if direct_url and json.loads(direct_url).get("dir_info", {}).get("editable"):
        pytest.skip("an editable install (maturin develop)")
    package = Path(voicemail.__file__).resolve().parent
    assert package.parent.name == "site-packages", package
    assert not package.is_relative_to(REPO / "voicemail-py")


def test_version_is_the_crates() -> None:
    assert metadata.version("voicemail") == voicemail.__version__


def test_license_files_and_expression() -> None:
    meta = metadata.metadata("voicemail")
    assert meta["License-Expression"] == "MIT OR Apache-2.0"
    assert sorted(meta.get_all("License-File") or []) == ["LICENSE-APACHE", "LICENSE-MIT"]
    dist = metadata.distribution("voicemail")
    files = {Path(str(f)).name: f for f in dist.files or [] if Path(str(f)).name.startswith("LICENSE-")}
    assert sorted(files) == ["LICENSE-APACHE", "LICENSE-MIT"]
    for name, f in files.items():
        installed = Path(str(f.locate())).read_text(encoding="utf-8")
        assert installed == (REPO / name).read_text(encoding="utf-8"), name


def test_project_urls() -> None:
    urls = dict(u.split(", ", 1) for u in metadata.metadata("voicemail").get_all("Project-URL") or [])
    assert set(urls) >= {"Homepage", "Repository", "Issues"}
    if sys.version_info < (3, 11):
        pytest.skip("tomllib needs Python 3.11")
    import tomllib

    workspace = tomllib.loads((REPO / "Cargo.toml").read_text(encoding="utf-8"))
    repository = workspace["workspace"]["package"].get("repository")
    if repository is None:
        pytest.skip("the workspace names no repository")
    assert urls["Repository"] == repository
    assert all(u.startswith(repository) for u in urls.values()), urls


def test_typed() -> None:
    dist = metadata.distribution("voicemail")
    names = {str(f) for f in dist.files or []}
    assert "voicemail/py.typed" in names and "voicemail/_voicemail.pyi" in names
