"""The startup warning about ``lsb_release``, which the LiveKit SDK runs on every connect."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agents.transport.sdk_host import lsb_release_on_path, warn_about_host


def test_an_lsb_release_on_path_is_found_and_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    tool = tmp_path / "lsb_release"
    tool.write_text("#!/bin/sh\necho Distributor ID: Test\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert lsb_release_on_path() == str(tool)
    warn_about_host()
    out = capsys.readouterr().out
    assert "lsb_release_on_path" in out and str(tool) in out


def test_none_on_path_or_a_hidden_one_is_not_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert lsb_release_on_path() is None
    hidden = tmp_path / "lsb_release"  # what scripts/without-lsb-release leaves: /bin/false
    os.symlink("/bin/false", hidden)
    assert lsb_release_on_path() is None
    warn_about_host()
    assert "lsb_release_on_path" not in capsys.readouterr().out
