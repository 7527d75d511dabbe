"""Open a lab capture in the real Wireshark GUI (under Xvfb) with tcpstall installed by
`tcpstall install-plugins`, and screenshot it: packet list with tcpstall columns, the tcpstall
subtree expanded in the detail pane.

    python docs/gui_screenshot.py [OUT.png]      (default: docs/wireshark-hol-released.png)

Needs Debian's wireshark-qt, xvfb, xdotool and imagemagick. The test suite imports `run_gui`
to check that the plugin loads in the GUI without a Lua error.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CAPTURE = ROOT / "sample_captures" / "heartbeat-loss-server.pcapng"
FILTER = "tcpstall.hol.released"
COLUMNS = ('"No.","%m","Time","%t","Source","%s","Destination","%d",'
           '"max hold ms","%Cus:tcpstall.hol.max_hold_ms:0:R",'
           '"released B","%Cus:tcpstall.hol.released_bytes:0:R",'
           '"trigger","%Cus:tcpstall.retrans.trigger:0:R","Info","%i"')
NEEDED = ("wireshark", "Xvfb", "xdotool", "import")


def missing_tools():
    return [t for t in NEEDED if shutil.which(t) is None]


@dataclass
class GuiRun:
    stderr: str
    window_titles: list
    screenshot: Path


def xdo(env, *args) -> str:
    return subprocess.run(["xdotool", *args], env=env, capture_output=True, text=True).stdout.strip()


def wait_window(env, pattern: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = xdo(env, "search", "--onlyvisible", "--name", pattern).split()
        if ids:
            return ids[-1]
        time.sleep(0.5)
    raise TimeoutError(f"no Wireshark window matching {pattern!r} after {timeout:.0f} s")


@contextmanager
def wireshark_session(args, env_extra=None):
    """Wireshark (args after `wireshark`) on a fresh Xvfb, with tcpstall installed into a fresh HOME by
    `tcpstall install-plugins`. Yields (env for xdotool, the Wireshark process); on exit stops both
    and leaves Wireshark's stderr in `proc.stderr_text`."""
    with tempfile.TemporaryDirectory(prefix="tcpstall-gui-") as tmp:
        env = dict(os.environ, HOME=tmp, XDG_RUNTIME_DIR=tmp, QT_ACCESSIBILITY="0", **(env_extra or {}))
        env.pop("XDG_CONFIG_HOME", None)
        tcpstall = [sys.executable, "-m", "pytshark_ext.cli"]
        subprocess.run(tcpstall + ["install-plugins"], env=env, check=True, capture_output=True, cwd=ROOT)
        xvfb = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        ws = None
        try:
            env["DISPLAY"] = ":" + xvfb.stdout.readline().strip()
            ws = subprocess.Popen(["wireshark", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True)
            yield env, ws
        finally:
            if ws is not None:
                ws.terminate()
                try:
                    _, err = ws.communicate(timeout=10)
                except subprocess.TimeoutExpired:
                    ws.kill()
                    _, err = ws.communicate()
                ws.stderr_text = err or ""
            xvfb.terminate()
            xvfb.wait()


def main_window(env, pattern: str):
    """The window whose title matches `pattern`, moved to 0,0, 1600x1000, active, the first packet
    row clicked (so that keys go to it)."""
    win = wait_window(env, pattern)
    xdo(env, "windowmove", win, "0", "0")
    xdo(env, "windowsize", win, "1600", "1000")
    time.sleep(2)
    xdo(env, "windowactivate", "--sync", win)
    xdo(env, "mousemove", "--window", win, "400", "120", "click", "1")     # first packet row
    time.sleep(0.5)
    return win


def run_gui(out: Path, capture: Path = CAPTURE, display_filter: str = FILTER, frame: int = 0) -> GuiRun:
    """Install the plugin into a fresh HOME, start Wireshark on Xvfb, screenshot, quit."""
    args = ["-r", str(capture), "-Y", display_filter,
            "-o", "gui.layout_content_3:NONE", "-o", f"gui.column.format:{COLUMNS}"]
    if frame:
        args += ["-g", str(frame)]
    with wireshark_session(args) as (env, ws):
        win = main_window(env, capture.name)
        # Move to the detail pane, expand the last tree item (the postdissector's subtree:
        # tcpstall) with all its children.
        xdo(env, "mousemove", "--window", win, "300", "545", "click", "1")     # first detail row
        time.sleep(0.3)
        xdo(env, "key", "--delay", "300", "End", "shift+Right")
        time.sleep(1.5)
        titles = [xdo(env, "getwindowname", w)
                  for w in xdo(env, "search", "--onlyvisible", "--name", ".").split()]
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["import", "-window", "root", "-crop", "1600x1000+0+0", str(out)], env=env, check=True)
    return GuiRun(ws.stderr_text, titles, out)


if __name__ == "__main__":
    missing = missing_tools()
    if missing:
        sys.exit(f"gui_screenshot: missing {', '.join(missing)} (apt-get install wireshark-qt xvfb xdotool imagemagick)")
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "wireshark-hol-released.png"
    result = run_gui(target)
    print(f"wrote {result.screenshot}; windows: {result.window_titles}")
