"""Shared fixtures: the committed lab captures and a real tshark."""
from __future__ import annotations

import json
import shutil
import subprocess
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


def tshark_bool(text: str) -> bool:
    """A boolean field as tshark prints it: 1/0 (4.0) or True/False (FT_BOOLEAN since 4.2).
    Anything else is not a boolean field's text and fails the test."""
    assert text in ("1", "0", "True", "False"), f"not a tshark boolean: {text!r}"
    return text in ("1", "True")


def run_tshark(cmd, home=None, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run for a tshark command line, started the way tcpstall starts tshark (as root on
    Wireshark 4.2+: unprivileged, or `-X lua_script:` would be skipped; pytshark_ext.privileges).
    `home`: the HOME whose personal plugin folder that tshark should load (the unprivileged one
    otherwise gets none), for tests of an installed copy."""
    from pytshark_ext.tshark import launch
    how = launch([str(c) for c in cmd])
    popen = dict(how.popen_kwargs)
    if "env" in popen:              # unprivileged: the caller's environment, with that tshark's HOME
        popen["env"] = dict(kwargs.pop("env", popen["env"]), HOME=str(home or popen["env"]["HOME"]))
    try:
        return subprocess.run(how.argv, **kwargs, **popen)
    finally:
        how.started()


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


@pytest.fixture(scope="session")
def _read_only_home(tmp_path_factory):
    """The HOME of module_home, one per test process, with what tcpstall learnt of it: the plugin
    arguments (from `-G folders`), which hold for every module since none installs anything there."""
    return tmp_path_factory.mktemp("home"), {}


@pytest.fixture(scope="module")
def module_home(_read_only_home):
    """isolated_home shared by the tests that only read captures (nothing installed, no prefs
    written): tcpstall then asks tshark for its folders (`-G folders`) once per test process
    instead of once per test (a third of the inner loop's tshark runs) or per module."""
    home, plugin_args_cache = _read_only_home
    from pytshark_ext import tshark
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        mp.delenv("XDG_CONFIG_HOME", raising=False)
        mp.setattr(tshark, "_plugin_args_cache", plugin_args_cache)
        yield home


def inner_loop(variants, inner=None):
    """Parameters of a test over variants (captures, settings): the inner loop (plain `pytest`)
    checks those in `inner` (by default the first), the full suite (`make test`, CI) every one;
    it keeps plain `pytest` under a minute."""
    inner = [variants[0]] if inner is None else list(inner)
    assert all(v in variants for v in inner), inner
    return [v if v in inner else pytest.param(v, marks=pytest.mark.slow) for v in variants]


def pytest_collection_modifyitems(items):
    """The inner loop (plain `pytest`: not lab, gui or slow) runs each plugin check once: in one
    pass, and at one capture point (the server's, where the receiver-side shapes are). The two-pass
    variant (the render contract of plugins/tcpstall/README.md, the same verdicts on revisits) and
    the client-side capture of a test parametrized by `side` are `slow`: the full suite
    (`make test`, CI: `-m ""`) runs them."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("two_pass") is True or params.get("side") == "client":
            item.add_marker(pytest.mark.slow)
