"""`-z tcpstall,rows` / `,segments` (plugins/tcpstall/rows.lua): the rows correlate matches and the
timeline's segments, printed by the plugin in its `-q` pass, are those the `-T fields` output of the
same capture gives (correlate's extraction with the plugin loaded; a plain SEGMENT_FIELDS pass),
value for value: the plugin computes them; `-T fields` is the oracle."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from pytshark_ext.correlate.fieldrows import (ROWS_ARG, SEGMENTS_ARG, correlate_command_kwargs, rows_from_blocks,
                                              rows_from_plugin_blocks)
from pytshark_ext.pipeline import CaptureRead, _plugin_segment, read_pair
from pytshark_ext.render.json import correlate_json
from pytshark_ext.tshark import BATCH_DECODE, SEGMENT_PREFS, iter_segments, run_lines

from conftest import ROOT, SAMPLES, sample

pytestmark = pytest.mark.usefixtures("module_home")

DATA = ROOT / "tests" / "data"
# the inner loop: a few shapes (IP IDs without timestamps, capture duplicates, a clock stepping
# back, a non-Linux sender; SACK blocks for the segments); the full suite: every capture
INNER = {"heartbeat-loss-nots-server.pcapng", "capdup-nots-server.pcapng", "timeback-server.pcapng",
         "nonlinux-windows-client.pcapng"}
INNER_SEGMENTS = {"heartbeat-loss-nots-server.pcapng", "bulk-loss-head-server.pcapng"}   # (SACK blocks)
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


def plugin_segments(capture: str) -> list:
    texts: list = []
    run = run_lines(capture, with_plugin=True, prefs=dict(SEGMENT_PREFS),
                    extra=["-q", "-z", SEGMENTS_ARG, *BATCH_DECODE])
    rows = list(rows_from_plugin_blocks(run.blocks(), capture, tee=lambda c, n: texts.extend(
        c[i:i + n] for i in range(0, len(c), n))))
    assert len(rows) == len(texts)
    return [s for s in map(_plugin_segment, texts) if s is not None]


@pytest.mark.parametrize("capture", [pytest.param(p, id=p.name, marks=() if p.name in INNER_SEGMENTS else pytest.mark.slow)
                                     for p in CAPTURES])
def test_plugin_segments_are_the_plain_pass_segments(capture):
    """With the timeline's columns (window, SACK blocks as raw edges): the Segments of a plain
    SEGMENT_FIELDS pass, no plugin."""
    want = list(iter_segments(str(capture)))
    assert plugin_segments(str(capture)) == want


@pytest.mark.parametrize("snaplen", [40, pytest.param(54, marks=pytest.mark.slow), pytest.param(60, marks=pytest.mark.slow)])
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
    assert plugin_segments(str(cut)) == list(iter_segments(str(cut)))


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
