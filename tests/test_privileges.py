"""As root, Wireshark 4.2+ skips Lua plugins: tcpstall then runs tshark unprivileged
(pytshark_ext.privileges). The decision is tested with stand-in tsharks; the unprivileged runs with
the real tshark, forced on this machine's version (4.0 runs Lua as root, so the drop is forced
here; in the Debian 13 root with 4.4 the whole suite takes that path by itself)."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest

from pytshark_ext import privileges
from pytshark_ext import tshark as ts
from pytshark_ext.analyze import analyze_capture, to_json
from pytshark_ext.paths import plugin_script

from conftest import sample

needs_root = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                                reason="needs root and setpriv (util-linux) to drop privileges")


@pytest.fixture(autouse=True)
def _fresh_decisions():
    privileges.reset()
    ts._plugin_args_cache.clear()
    yield
    privileges.reset()
    ts._plugin_args_cache.clear()


def stand_in(tmp_path, plugins_output: str):
    """A stand-in tshark (labelled fake) whose `-G plugins` prints `plugins_output`."""
    fake = tmp_path / "tshark"
    fake.write_text("#!/bin/sh\ncat <<'EOF'\n" + plugins_output + "EOF\n")
    fake.chmod(0o755)
    return str(fake)


def test_not_root_never_changes_anything(monkeypatch, tmp_path):
    monkeypatch.setattr(privileges, "is_superuser", lambda: False)
    fake = stand_in(tmp_path, "g711.so\t0.1.0\tcodec\t/usr/lib/g711.so\n")
    assert privileges.run_as(fake) is None
    assert privileges.prepare([fake, "-r", "x"]).argv == [fake, "-r", "x"]


@pytest.mark.parametrize("listing,drops", [
    ("g711.so\t0.1.0\tcodec\t/usr/lib/g711.so\n", True),              # lists plugins, not ours: 4.4 as root
    ("g711.so\t0.1.0\tcodec\t/usr/lib/g711.so\ntcpstall.lua\t\tlua script\t{script}\n", False),   # 4.4 user
    ("{script}\t\tlua script\t{script}\n", False),                     # 4.0 names -X scripts by their path
    ("", False),                                                       # tells nothing: run as we are
])
def test_root_drops_only_when_the_plugin_would_be_skipped(monkeypatch, tmp_path, listing, drops):
    monkeypatch.setattr(privileges, "is_superuser", lambda: True)
    fake = stand_in(tmp_path, listing.format(script=plugin_script()))
    ident = privileges.run_as(fake)
    assert (ident is not None) is drops
    if drops:
        assert ident.user == "nobody" and ident.uid != 0 and ident.gid != 0


def test_no_such_user_is_one_line_with_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(privileges, "is_superuser", lambda: True)
    monkeypatch.setenv(privileges.USER_ENV, "no-such-user-tcpstall")
    fake = stand_in(tmp_path, "g711.so\t0.1.0\tcodec\t/usr/lib/g711.so\n")
    with pytest.raises(ts.TsharkFailed) as err:
        ts.tshark_folders(fake)
    msg = str(err.value)
    assert "\n" not in msg and "run_user_scripts_when_superuser" in msg and "no-such-user-tcpstall" in msg
    assert privileges.USER_ENV in msg


def force_drop(monkeypatch, read_cap: bool):
    """Root as on Wireshark 4.2+: tcpstall must run tshark unprivileged (with or without the read
    capability, as in a container whose capability set lacks it)."""
    monkeypatch.setattr(privileges, "_plugin_loads_as_we_are", lambda tshark: False)
    monkeypatch.setattr(privileges, "_holds_read_cap", lambda: read_cap)
    privileges.reset()
    ts._plugin_args_cache.clear()


@needs_root
@pytest.mark.parametrize("read_cap", [True, False])
def test_the_unprivileged_tshark_is_unprivileged(monkeypatch, read_cap):
    force_drop(monkeypatch, read_cap)
    how = ts.launch([shutil.which("tshark"), "-v"])
    probe = ["sh", "-c", 'id -u; id -g; id -G; grep -E "^Cap(Eff|Amb):" /proc/self/status; echo "$HOME"']
    argv = how.argv[:how.argv.index("--") + 1] + probe if read_cap else probe
    out = subprocess.run(argv, capture_output=True, text=True, check=True, **how.popen_kwargs).stdout.split()
    uid, gid, groups = out[0], out[1], out[2]
    caps = dict(zip(out[3:7:2], (int(x, 16) for x in out[4:8:2])))
    assert uid != "0" and gid != "0" and groups == gid          # no supplementary groups (no root group)
    want = 1 << privileges.CAP_DAC_READ_SEARCH if read_cap else 0
    assert caps == {"CapEff:": want, "CapAmb:": want}
    assert out[-1] == privileges.NO_HOME


def analysis(path) -> dict:
    doc = to_json(analyze_capture(str(path)))
    assert doc.pop("capture") == str(path) and doc["findings"]
    return doc


@needs_root
@pytest.mark.parametrize("read_cap", [True, False])
def test_dropped_analysis_is_the_same_on_a_capture_only_root_can_reach(monkeypatch, tmp_path, read_cap):
    """A capture in a folder only root may enter (pytest's own tmp folders are 0700): with the
    capability tshark opens it by name; without, it gets it as an inherited descriptor."""
    want = analysis(sample("heartbeat-loss-server.pcapng"))
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    cap = private / "heartbeat loss.pcapng"
    shutil.copyfile(sample("heartbeat-loss-server.pcapng"), cap)
    cap.chmod(0o600 if read_cap else 0o644)
    force_drop(monkeypatch, read_cap)
    assert privileges.run_as(shutil.which("tshark")) is not None
    assert analysis(cap) == want


@needs_root
def test_without_the_capability_a_root_only_file_is_one_line_with_the_fix(monkeypatch, tmp_path):
    cap = tmp_path / "root-only.pcapng"
    shutil.copyfile(sample("heartbeat-loss-server.pcapng"), cap)
    cap.chmod(0o600)
    force_drop(monkeypatch, False)
    with pytest.raises(ts.CaptureError) as err:
        analyze_capture(str(cap))
    msg = str(err.value)
    assert msg.startswith(f"{cap}: ") and "permission" in msg and "\n" not in msg
    assert "/proc/self/fd" not in msg                     # tshark's name for it is put back


@needs_root
def test_without_the_capability_the_plugin_is_read_from_a_copy(monkeypatch):
    force_drop(monkeypatch, False)
    tshark = shutil.which("tshark")
    copy = privileges.plugin_script_for(tshark)
    assert copy != plugin_script() and copy.read_bytes() == plugin_script().read_bytes()
    mode = stat.S_IMODE(copy.parent.stat().st_mode)
    assert mode & 0o005 == 0o005 and stat.S_IMODE(copy.stat().st_mode) & 0o004


@needs_root
def test_pyshark_gets_a_tshark_that_runs_unprivileged(monkeypatch):
    force_drop(monkeypatch, True)
    wrapper = privileges.wrapper_executable(shutil.which("tshark"))
    assert wrapper != shutil.which("tshark")
    out = subprocess.run([wrapper, "-r", str(sample("heartbeat-loss-server.pcapng")),
                          "-X", f"lua_script:{plugin_script()}", "-q", "-z", "tcpstall"],
                         capture_output=True, text=True, check=True)
    assert "tcpstall: TCP stall diagnostics" in out.stdout and "Running as user" not in out.stderr
