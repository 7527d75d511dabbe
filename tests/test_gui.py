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
    plugins = subprocess.run([tshark_path, "-G", "plugins"], capture_output=True, text=True).stdout
    assert any(line.startswith("tcpstall.lua") and "lua script" in line for line in plugins.splitlines())
