"""Shared fixtures: the committed lab captures and a real tshark."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_captures"


def sample(name: str) -> Path:
    """A committed capture; the test fails (not skips) when it is missing: they are committed."""
    path = SAMPLES / name
    assert path.is_file(), f"committed sample capture missing: {path}"
    return path


def truth(scenario: str) -> dict:
    return json.loads(sample(f"{scenario}.truth.json").read_text())


@pytest.fixture(scope="session")
def tshark_path() -> str:
    path = shutil.which("tshark")
    assert path, "tshark is required by the test suite (make test installs it)"
    return path


@pytest.fixture
def isolated_home(tmp_path, monkeypatch):
    """A fresh HOME: Wireshark's personal folders (plugins, prefs) start empty there, so tests
    never see or touch the user's own installation."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    from pytshark_ext import tshark
    tshark._plugin_args_cache.clear()
    yield home
    tshark._plugin_args_cache.clear()
