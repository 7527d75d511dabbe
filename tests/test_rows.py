"""`-z tcpstall,rows` (plugins/tcpstall/rows.lua): the rows correlate matches, printed by the plugin in
its `-q` pass, are the rows the `-T fields` output of the same capture gives (correlate's extraction
with the plugin loaded), value for value: the plugin computes the rows; `-T fields` is the oracle."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from pytshark_ext.correlate.fieldrows import ROWS_ARG, correlate_command_kwargs, rows_from_blocks, rows_from_plugin_blocks
from pytshark_ext.pipeline import CaptureRead, read_pair
from pytshark_ext.render.json import correlate_json
from pytshark_ext.tshark import BATCH_DECODE, SEGMENT_PREFS, run_lines

from conftest import ROOT, SAMPLES, sample

pytestmark = pytest.mark.usefixtures("module_home")

DATA = ROOT / "tests" / "data"
# the inner loop: each kind of shape once (IP IDs without timestamps, duplicates, reordering, a
# clock stepping back, a non-Linux sender, a lossy bulk transfer); the full suite: every capture
INNER = {"heartbeat-loss-nots-server.pcapng", "small-rcvbuf-nots-nohs-server.pcapng", "capdup-nots-server.pcapng",
         "reorder-dup-receiver.pcapng", "timeback-server.pcapng", "nonlinux-windows-client.pcapng",
         "bulk-loss-head-server.pcapng"}
CAPTURES = sorted(SAMPLES.glob("*.pcapng")) + sorted(DATA.glob("*.pcapng"))


def fields_rows(capture: str) -> list:
    kw = correlate_command_kwargs(None)
    kw.update(with_plugin=True, prefs=dict(SEGMENT_PREFS), extra=list(BATCH_DECODE))
    return [(int(r[0]), *r[1:]) for r in rows_from_blocks(run_lines(capture, **kw).blocks(), capture)]


def plugin_rows(capture: str) -> list:
    run = run_lines(capture, with_plugin=True, prefs=dict(SEGMENT_PREFS), extra=["-q", "-z", ROWS_ARG, *BATCH_DECODE])
    return [(int(r[0]), *r[1:]) for r in rows_from_plugin_blocks(run.blocks(), capture)]


@pytest.mark.parametrize("capture", [pytest.param(p, id=p.name, marks=() if p.name in INNER else pytest.mark.slow)
                                     for p in CAPTURES])
def test_plugin_rows_are_the_fields_rows(capture):
    want = fields_rows(str(capture))
    assert want, "every committed capture has TCP segments"
    assert plugin_rows(str(capture)) == want


@pytest.mark.parametrize("snaplen", [40, 54, 60])
def test_truncated_frames_give_the_same_rows(tmp_path, snaplen):
    """editcap -s: 40 bytes keep the ports and sequence number but not the flags (the core does not
    analyze such a frame: its row comes from the extractors), 54 a bare TCP header, 60 part of the
    timestamp option."""
    cut = tmp_path / f"cut{snaplen}.pcapng"
    subprocess.run([shutil.which("editcap"), "-s", str(snaplen), str(sample("heartbeat-loss-client.pcapng")),
                    str(cut)], check=True, capture_output=True)
    want = fields_rows(str(cut))
    assert want or snaplen == 40
    assert plugin_rows(str(cut)) == want


def test_the_default_read_takes_the_plugins_rows():
    """`correlate` with the plugin reads its rows in the `-q` pass (no `-T fields`); a display filter of
    the user's needs `-T fields`: both give the same correlation."""
    a, b = (str(sample(f"heartbeat-loss-{side}.pcapng")) for side in ("client", "server"))
    read = CaptureRead(a, "A")
    try:
        assert ROWS_ARG in read.run.cmd and "-T" not in read.run.cmd
    finally:
        read.close()
    assert correlate_json(read_pair(a, b).result) == correlate_json(read_pair(a, b, display_filter="tcp").result)
