"""The click layer: exit codes (0 ok, 1 environment/input problem, 2 usage) and messages."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from pytshark_ext import __version__
from pytshark_ext.cli import main
from pytshark_ext.paths import plugin_dir

from conftest import run_tshark


def run(*args, env=None):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_version():
    res = run("--version")
    assert res.exit_code == 0 and __version__ in res.output


def test_help_teaches_the_commands():
    res = run("--help")
    assert res.exit_code == 0
    for word in ("doctor", "analyze", "correlate", "scan", "install-plugins", "HOL-blocked delivery"):
        assert word in res.output


def test_unknown_command_is_usage_error():
    assert run("frobnicate").exit_code == 2


def test_doctor_ok_with_real_tshark(isolated_home):
    res = run("doctor")
    assert res.exit_code == 0, res.output
    assert "Lua:            5." in res.output
    assert str(isolated_home) in res.output          # the personal folder under our HOME
    assert "installed:      no" in res.output


def test_doctor_explains_missing_tshark_in_one_line(isolated_home):
    res = CliRunner().invoke(main, ["doctor"], env={"PATH": "/nonexistent", "TSHARK": ""})
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "tshark not found" in lines[0] and "apt-get install tshark" in lines[0]


@pytest.mark.slow      # installs the plugin and starts tshark several times
def test_install_plugins_then_tshark_sees_fields(isolated_home, tshark_path):
    first = run("install-plugins")
    assert first.exit_code == 0, first.output
    assert "installed" in first.output
    folder = isolated_home / ".local/lib/wireshark/plugins"
    assert (folder / "tcpstall" / "tcpstall.lua").is_file()
    fields = run_tshark([tshark_path, "-G", "fields"], home=isolated_home, capture_output=True, text=True).stdout
    assert "\ttcpstall.hol.hold_ms\t" in fields
    assert "Lua: Error" not in fields
    again = run("install-plugins")                   # idempotent
    assert again.exit_code == 0 and "installed " not in again.output and "up to date" in again.output
    assert "identical" in run("doctor").output
    gone = run("install-plugins", "--uninstall")
    assert gone.exit_code == 0 and not (folder / "tcpstall").exists()


def test_install_plugins_dir_override(tmp_path):
    target = tmp_path / "custom plugins"
    res = run("install-plugins", "--dir", str(target))
    assert res.exit_code == 0
    shipped = sorted(p.relative_to(plugin_dir()) for p in plugin_dir().rglob("*.lua"))
    assert sorted(p.relative_to(target / "tcpstall") for p in target.rglob("*.lua")) == shipped


@pytest.mark.slow      # installs the plugin and starts tshark several times
def test_doctor_flags_a_stale_installed_copy(isolated_home):
    assert run("install-plugins").exit_code == 0
    stale = isolated_home / ".local/lib/wireshark/plugins/tcpstall/tcpstall.lua"
    stale.write_text(stale.read_text() + "\n-- locally edited\n")
    res = run("doctor")
    assert res.exit_code == 1 and "DIFFERENT copy" in res.output


@pytest.mark.slow      # installs the plugin and starts tshark several times
def test_install_plugins_replaces_the_old_layout(isolated_home):
    """A copy installed before the tcpstall/ subfolder (tcpstall.lua and tcpstall/<modules> at the
    top of the folder, which Wireshark 4.4 as root cannot load) is reported, then replaced."""
    import shutil
    from pathlib import Path
    folder = isolated_home / ".local/lib/wireshark/plugins"
    folder.mkdir(parents=True)
    shutil.copy(plugin_dir() / "tcpstall.lua", folder)
    shutil.copytree(plugin_dir() / "tcpstall", folder / "tcpstall")
    res = run("doctor")
    assert res.exit_code == 1 and "(old layout)" in res.output
    res = run("install-plugins")
    assert res.exit_code == 0 and "(old layout)" in res.output
    assert sorted(p.relative_to(folder) for p in folder.rglob("*.lua")) == \
        sorted(Path("tcpstall") / p.relative_to(plugin_dir()) for p in plugin_dir().rglob("*.lua"))
    assert "identical" in run("doctor").output


@pytest.mark.slow      # installs the plugin and starts tshark several times
def test_doctor_says_what_tshark_said_when_the_plugin_fails_to_load(isolated_home, tmp_path, monkeypatch):
    import shutil
    broken = tmp_path / "plugins"
    shutil.copytree(plugin_dir(), broken)
    (broken / "tcpstall" / "seq.lua").write_text("local core = ...\nerror('deliberately broken module')\n")
    monkeypatch.setenv("TCPSTALL_PLUGINS", str(broken))
    res = run("doctor")
    assert res.exit_code == 1 and "loaded:         NO" in res.output, res.output
    fix = [ln for ln in res.output.splitlines() if ln.startswith("fix:")]
    assert len(fix) == 1 and "tshark: Lua: Error during loading:" in fix[0] and "deliberately broken" in fix[0]
