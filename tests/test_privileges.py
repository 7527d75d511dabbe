"""As root, Wireshark 4.2+ skips Lua plugins: tcpstall runs tshark unprivileged whenever it runs as
root (pytshark_ext.privileges), on 4.0 as on 4.4, so the whole suite takes that path when run as
root; here, the decision and both ways of reaching the capture (by name with CAP_DAC_READ_SEARCH,
or as an inherited descriptor without it)."""
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

pytestmark = pytest.mark.slow      # tshark started as other users, several ways; the full suite (make test) runs it

needs_root = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                                reason="needs root and setpriv (util-linux) to drop privileges")


@pytest.fixture(autouse=True)
def _fresh_decisions():
    privileges.reset()
    ts._plugin_args_cache.clear()
    yield
    privileges.reset()
    ts._plugin_args_cache.clear()


def test_not_root_never_changes_anything(monkeypatch):
    monkeypatch.setattr(privileges, "is_superuser", lambda: False)
    assert privileges.run_as() is None
    assert privileges.prepare(["tshark", "-r", "x"]).argv == ["tshark", "-r", "x"]


@pytest.mark.parametrize("user,drops", [(None, True), ("root", False)])
def test_root_runs_tshark_as_nobody_unless_told_root(monkeypatch, user, drops):
    monkeypatch.setattr(privileges, "is_superuser", lambda: True)
    if user is None:
        monkeypatch.delenv(privileges.USER_ENV, raising=False)
    else:
        monkeypatch.setenv(privileges.USER_ENV, user)
    ident = privileges.run_as()
    assert (ident is not None) is drops
    if drops:
        assert ident.user == "nobody" and ident.uid != 0 and ident.gid != 0


def test_no_such_user_is_one_line_with_the_fix(monkeypatch):
    monkeypatch.setattr(privileges, "is_superuser", lambda: True)
    monkeypatch.setenv(privileges.USER_ENV, "no-such-user-tcpstall")
    with pytest.raises(ts.TsharkFailed) as err:
        ts.tshark_folders(shutil.which("tshark") or "tshark")
    msg = str(err.value)
    assert "\n" not in msg and "no-such-user-tcpstall" in msg and "no such user" in msg


def force_drop(monkeypatch, read_cap: bool):
    """tcpstall as root runs tshark unprivileged, with or without the read capability (as in a
    container whose capability set lacks it)."""
    monkeypatch.delenv(privileges.USER_ENV, raising=False)
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


def private_copy(tmp_path, mode: int):
    """The heartbeat capture in a folder only root may enter (pytest's tmp folders are 0700 too)."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    cap = private / "heartbeat loss.pcapng"
    shutil.copyfile(sample("heartbeat-loss-server.pcapng"), cap)
    cap.chmod(mode)
    return cap


@needs_root
@pytest.mark.parametrize("read_cap", [True, False])
def test_a_capture_only_root_can_reach_gives_the_same_analysis(monkeypatch, tmp_path, read_cap):
    """With the capability tshark opens a root-only file (0600) by its name; without it, a file
    others may read (0644) in a folder they may not enter reaches it as an inherited descriptor."""
    force_drop(monkeypatch, True)
    want = analysis(sample("heartbeat-loss-server.pcapng"))
    cap = private_copy(tmp_path, 0o600 if read_cap else 0o644)
    force_drop(monkeypatch, read_cap)
    assert analysis(cap) == want


@needs_root
def test_unprivileged_tshark_gives_what_root_gets_where_root_runs_lua(monkeypatch):
    """Where this tshark runs Lua for root (Debian 12's 4.0), root's analysis is the reference."""
    monkeypatch.setenv(privileges.USER_ENV, "root")
    try:
        want = analysis(sample("heartbeat-loss-server.pcapng"))
    except ts.TsharkError as exc:
        pytest.skip(f"this tshark skips Lua plugins for root (Wireshark 4.2+): {exc}")
    force_drop(monkeypatch, True)
    assert privileges.run_as() is not None
    assert analysis(sample("heartbeat-loss-server.pcapng")) == want


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
    copy = privileges.plugin_script_for()
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
