"""pipeline.py: one tshark per capture gives the rows to match, the plugin's findings and the
timeline's packets — the same as the separate reads they replace."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
from click.testing import CliRunner

from pytshark_ext import tshark as ts
from pytshark_ext.analyze import analyze_capture, to_json
from pytshark_ext.cli import main
from pytshark_ext.pipeline import read_capture, read_pair
from pytshark_ext.timeline import packets_from_segments, retransmitted_frames

from conftest import sample

PAIRS = ["heartbeat-loss", "small-rcvbuf-nohs", "peer-vanishes"]


@pytest.fixture(autouse=True, scope="module")
def _home(module_home):
    yield


def tshark_runs(monkeypatch) -> list:
    """(capture, command) of every tshark run started from here on (TsharkRun)."""
    runs = []
    real_init = ts.TsharkRun.__init__

    def keeping(self, cmd, capture, *args, **kwargs):
        runs.append((capture, cmd))
        real_init(self, cmd, capture, *args, **kwargs)

    monkeypatch.setattr(ts.TsharkRun, "__init__", keeping)
    return runs


def pair(name):
    return str(sample(f"{name}-client.pcapng")), str(sample(f"{name}-server.pcapng"))


@pytest.mark.parametrize("name", [pytest.param(p, marks=() if p == "heartbeat-loss" else pytest.mark.slow)
                                  for p in PAIRS])
def test_the_plugin_findings_of_the_one_read_are_analyze_s(name):
    """Correlate's read (raw sequence numbers, the plugin printing the rows as well) changes nothing
    the plugin reports: findings and stream summaries as `tcpstall analyze` gives them."""
    a, b = pair(name)
    read = read_pair(a, b)
    for path, analysis in zip((a, b), read.analyses):
        assert to_json(analysis) == to_json(analyze_capture(path))
    linked = [f for f in read.result.findings if "side" in (f.numbers or {})]
    assert len(linked) == sum(len(an.findings) for an in read.analyses) > 0


def test_timeline_packets_of_the_one_read_are_the_plain_pass_s():
    """The packets the timeline keeps (window and SACK blocks included) are those of a plain
    SEGMENT_FIELDS pass over the capture."""
    a, b = pair("heartbeat-loss")
    read = read_pair(a, b, packets=True)
    for path, packets in zip((a, b), read.packets):
        want = packets_from_segments(packets.side, path, ts.iter_segments(path))
        assert replace(packets, retransmissions=None) == want
        assert any(s.sack for s in packets.segments)      # (the heartbeat loss is SACKed)
    analysis, packets = read_capture(b)
    assert to_json(analysis) == to_json(analyze_capture(b))
    assert packets.segments == read.packets[1].segments


def test_correlate_with_logs_and_html_starts_one_tshark_per_capture(tmp_path, monkeypatch):
    """`tcpstall correlate A B --log …@A --log …@B --html OUT`: one tshark run reads each capture
    (`tshark -G folders`, the plugin-folder probe, aside)."""
    runs = tshark_runs(monkeypatch)
    a, b = pair("heartbeat-loss")
    out = tmp_path / "page.html"
    res = CliRunner().invoke(main, ["correlate", a, b, "--log", f"{sample('heartbeat-loss-sender.log')}@A",
                                    "--log", f"{sample('heartbeat-loss-receiver.log')}@B", "--html", str(out)])
    assert res.exit_code == 0, res.output
    assert sorted(capture for capture, _ in runs) == sorted([a, b])
    assert out.stat().st_size > 0


def test_batch_runs_turn_wiresharks_sequence_analysis_off(monkeypatch):
    """analyze, scan and correlate run the plugin without Wireshark's sequence analysis
    (tshark.BATCH_PREFS: ~430 B per packet less; the plugin's output is the same,
    tests/test_records.py); a --pref of the user's wins."""
    runs = tshark_runs(monkeypatch)
    a, b = pair("heartbeat-loss")
    off, on = "tcp.analyze_sequence_numbers:FALSE", "tcp.analyze_sequence_numbers:TRUE"
    analyze_capture(a)
    read_pair(a, b)
    assert len(runs) == 3 and all(off in cmd and on not in cmd for _, cmd in runs)
    runs.clear()
    analyze_capture(a, prefs={"tcp.analyze_sequence_numbers": True})
    assert on in runs[0][1] and off not in runs[0][1]


def test_timeline_retransmissions_are_the_plugin_s_not_every_lower_sequence():
    """reorder-nots at the receiver (truth): frames 61 and 227 are late originals and 95, 297
    network duplicates — a sequence number below the highest sent, but no retransmission; the
    client's retransmissions of those two segments (spurious: the originals got through) arrive
    later and are. Without the plugin (--no-plugin) the timeline can only go by sequence numbers."""
    truth_late = json.loads((sample("reorder-nots.truth.json")).read_text())["reordering"]
    read = read_pair(*pair("reorder-nots"), packets=True)
    server = read.packets[1]
    marked = set(server.retransmissions)
    late = {r["server_frame"] for r in truth_late["late"]}
    copies = {r["server_frames"][1] for r in truth_late["duplicates"]}
    assert late == {61, 227} and copies == {95, 297}
    assert not marked & (late | copies)
    for r in truth_late["late"]:
        resent = [s.frame for s in server.segments if s.seq_raw == r["seq_raw"] and s.frame != r["server_frame"]]
        assert resent and set(resent) <= marked
    assert late | copies <= set(retransmitted_frames(server.segments))      # what sequence numbers alone say
