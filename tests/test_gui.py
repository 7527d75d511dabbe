"""The plugin in the real Wireshark Qt GUI, under Xvfb: installed by `tcpstall install-plugins`,
it loads without a Lua error and annotates the lab capture (see docs/gui_screenshot.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs"))
import gui_screenshot  # noqa: E402
from conftest import run_tshark, truth  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def gui_run(tmp_path_factory):
    missing = gui_screenshot.missing_tools()
    if missing:
        pytest.skip(f"GUI test needs {', '.join(missing)} (apt-get install wireshark-qt xvfb xdotool imagemagick)")
    return gui_screenshot.run_gui(tmp_path_factory.mktemp("gui") / "shot.png")


def test_gui_loads_plugin_without_lua_error(gui_run):
    assert "Lua: Error" not in gui_run.stderr and "Lua Error" not in gui_run.stderr
    # A Lua load error opens a dialog; the only visible window must be the capture's.
    assert gui_run.window_titles and all("heartbeat-loss-server" in t for t in gui_run.window_titles), \
        gui_run.window_titles


def test_gui_screenshot_written(gui_run):
    assert gui_run.screenshot.stat().st_size > 20_000


def test_installed_plugin_listed_by_wireshark(isolated_home, tshark_path):
    from click.testing import CliRunner
    from pytshark_ext.cli import main
    assert CliRunner().invoke(main, ["install-plugins"]).exit_code == 0
    plugins = run_tshark([tshark_path, "-G", "plugins"], home=isolated_home, capture_output=True, text=True).stdout
    assert any(line.startswith("tcpstall.lua") and "lua script" in line for line in plugins.splitlines())


def open_in_dialog(env, win, path, attempts=3):
    """File > Open (ctrl+O in window `win`), type `path` into the dialog, Return; until a window
    titled after the file shows. On a busy machine the dialog may take the keys before its file
    name field has focus, so a missed attempt is retried (typing over the field, ctrl+A first)."""
    import time
    for _ in range(attempts):
        dialogs = gui_screenshot.xdo(env, "search", "--onlyvisible", "--name", "Open Capture File").split()
        if not dialogs:
            gui_screenshot.xdo(env, "windowactivate", "--sync", win)
            gui_screenshot.xdo(env, "key", "ctrl+o")
            dialogs = [gui_screenshot.wait_window(env, "Open Capture File", timeout=30)]
        time.sleep(1.5)                      # let the dialog list its folder and focus the field
        gui_screenshot.xdo(env, "windowactivate", "--sync", dialogs[-1])
        gui_screenshot.xdo(env, "key", "ctrl+a")
        gui_screenshot.xdo(env, "type", "--delay", "20", str(path))
        time.sleep(0.3)
        gui_screenshot.xdo(env, "key", "Return")
        try:
            return gui_screenshot.wait_window(env, path.name, timeout=20)
        except TimeoutError:
            continue
    raise TimeoutError(f"Wireshark did not open {path.name} through File > Open ({attempts} attempts)")


def test_reopening_a_file_in_the_gui_starts_from_a_clean_state(tmp_path):
    """File > Open of a second capture in the same Wireshark window: tcpstall's init must forget the
    first file. The first file (clean-bulk, 2828 frames, no hole) leaves state for frame numbers
    far above the second's (heartbeat-loss, 160 frames): state kept across files would take the
    second file's frames for revisits and report no release. A test-only probe
    (tests/data/gui_probe.lua) records the releases tcpstall reports in each file."""
    import time
    missing = gui_screenshot.missing_tools()
    if missing:
        pytest.skip(f"GUI test needs {', '.join(missing)} (apt-get install wireshark-qt xvfb xdotool imagemagick)")
    first, second = ROOT / "sample_captures" / "clean-bulk-server.pcapng", ROOT / "sample_captures" / "heartbeat-loss-server.pcapng"
    probe_out = tmp_path / "probe.txt"
    args = ["-X", f"lua_script:{ROOT / 'tests' / 'data' / 'gui_probe.lua'}", "-r", str(first)]
    with gui_screenshot.wireshark_session(args, {"TCPSTALL_PROBE_OUT": str(probe_out)}) as (env, ws):
        win = gui_screenshot.main_window(env, first.name)
        open_in_dialog(env, win, second)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "160 frames" not in (probe_out.read_text() if probe_out.exists() else ""):
            time.sleep(0.5)
    assert "Lua Error" not in ws.stderr_text and "Lua: Error" not in ws.stderr_text
    lines = probe_out.read_text().splitlines()
    assert "2828 frames, releases " in lines                           # the first file: nothing held
    t = truth("heartbeat-loss")["faults"][0]
    want = f"160 frames, releases {t['arrived_at_server'][0]['frame']}={t['held_at_server'][0]['len']}"
    assert lines[-1] == want, lines
