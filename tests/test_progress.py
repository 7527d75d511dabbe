"""The progress line (pytshark_ext/progress.py): tshark's read position on its capture, from /proc."""
from __future__ import annotations

import io
import subprocess
import sys

import pytest

from pytshark_ext import progress
from pytshark_ext import tshark as ts

from conftest import ROOT, sample

BULK = ROOT / "tests" / "data" / "bulk-loss-head-server.pcapng"


@pytest.fixture
def stream():
    out = io.StringIO()
    progress.enable(out, delay=0.0, interval=0.01)
    yield out
    progress.enable(None)


def test_read_position_is_the_readers_offset_in_the_capture():
    """A real process holding the capture open at a known offset: its fd's pos in /proc."""
    cap = sample("heartbeat-loss-server.pcapng")
    child = subprocess.Popen([sys.executable, "-c", "import sys; f = open(sys.argv[1], 'rb', buffering=0); f.read(1000); "
                              "print('ready', flush=True); sys.stdin.readline()", str(cap)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        w = progress._Watch(child.pid, str(cap.resolve()), cap.name, cap.stat().st_size, 0.0)
        assert progress.read_position(w) == 1000
        w.pos = 1000
        assert progress._line([w]) == f"tcpstall: reading {cap.name} {100000 // w.size} % of {w.size / 1e6:.1f} MB"
    finally:
        child.communicate("\n")


def test_a_two_pass_run_reports_both_passes_and_erases_its_line(stream, module_home):
    rows = list(ts.iter_fields(str(BULK), ["frame.number"], two_pass=True))
    assert len(rows) > 5000
    out = stream.getvalue()
    assert f"tcpstall: reading {BULK.name} " in out and out.endswith("\r\x1b[K")
    assert all(0 <= int(part.split(" % ")[0].rsplit(" ", 1)[1]) <= 100 for part in out.split("\r\x1b[K") if part)


def test_off_by_default_and_with_quiet(module_home):
    progress.enable(None)
    assert progress.watch(1, str(BULK)) is None
    from click.testing import CliRunner
    from pytshark_ext.cli import main
    res = CliRunner().invoke(main, ["analyze", "-q", str(BULK)], catch_exceptions=False)
    assert res.exit_code == 0 and "tcpstall: reading" not in res.output
