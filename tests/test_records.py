"""`-z tcpstall,records` (plugins/tcpstall/records.lua) against its oracle, two-pass `-T fields`.

The records are what `tshark -2 -Y tcpstall -T fields -e <every tcpstall field>` prints, from one
pass, sparse, with the held-only rows folded into their release frame's row
(`tcpstall.hol.held_frames`). This runs both on real captures and compares them value by value
(the text of every value, every occurrence), plus the `-z tcpstall,tsv` summary, which in one pass
must come out as after a second pass (episodes open at the end closed by the revisit). The same
holds with what batch runs add: `-d tcp.port==1-65535,data` (tshark.BATCH_DECODE) and Wireshark's
sequence analysis off (tshark.BATCH_PREFS): the records run has both, the two-pass oracle neither
(tshark's defaults, as in the GUI).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from pytshark_ext import analyze as an
from pytshark_ext.tshark import (BATCH_DECODE, BATCH_PREFS, FIELD_SEP, OCCURRENCE_SEP, build_command, find_tshark,
                                 pref_args)

from conftest import run_tshark

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = sorted(p for d in (ROOT / "sample_captures", ROOT / "tests" / "data")
                  for p in d.glob("*.pcap*"))
# the inner loop: one capture per detector (HOL at the receiver, rwnd, retries) and capture
# duplicates; the rest in the full suite
FAST = {"heartbeat-loss-server.pcapng", "peer-vanishes-client.pcapng", "capdup-nots-server.pcapng"}
BATCH = (*pref_args(BATCH_PREFS), *BATCH_DECODE)     # what analyze and correlate run with
HELD_ONLY = {"tcpstall.hol.hold_ms", "tcpstall.hol.release_frame", "tcpstall.hol.severity",
             "tcpstall.hol.hole_bytes", "tcpstall.hol.reported_by", "tcpstall.hol.blocked"}


@pytest.fixture(autouse=True, scope="module")
def _home(module_home):
    yield


def _run(cmd):
    proc = run_tshark(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Lua" not in proc.stderr, proc.stderr[-2000:]
    return proc.stdout.split("\n")   # (not splitlines: it splits at \x1e, OCCURRENCE_SEP, too)


def _summary(lines):
    return [line for line in lines if line.startswith(("TCPSTALL\t", "TCPSTALL_END\t"))]


def records(capture: Path, extra=()):
    """{frame: {field: [values]}}, the header's names, and the summary lines of one records run."""
    lines = _run(build_command(find_tshark(), str(capture), extra=["-q", "-z", an.RECORDS_ARG, "-z", an.STAT_ARG,
                                                                   *extra]))
    header = next(line for line in lines if line.startswith(an.RECORDS_HEADER + "\t"))
    names = header.partition("fields=")[2].split(",")
    rows = {}
    for line in lines:
        if FIELD_SEP in line:
            frame, time, stream, *values = line.split(FIELD_SEP)
            row = {"frame.time_epoch": [time], "tcp.stream": [stream]}
            for kv in values:
                k, _, v = kv.partition("=")
                row.setdefault(names[int(k) - 1], []).append(v)
            assert frame not in rows
            rows[frame] = row
    assert f"{an.RECORDS_END}\trows={len(rows)}" in lines
    return rows, names, _summary(lines)


def two_pass(capture: Path, names):
    """The oracle: the same fields from `-2 -Y tcpstall -T fields`, held-only rows folded as
    records.lua documents."""
    fields = [n for n in names if n != an.HELD_FRAMES]
    lines = _run(build_command(find_tshark(), str(capture), fields=["frame.number", "frame.time_epoch", "tcp.stream",
                                                                   *fields],
                               display_filter="tcpstall", two_pass=True, extra=["-z", an.STAT_ARG]))
    rows, held_of = {}, {}
    for line in lines:
        if FIELD_SEP not in line:
            continue
        frame, time, stream, *cols = line.split(FIELD_SEP)
        row = {f: c.split(OCCURRENCE_SEP) for f, c in zip(fields, cols) if c}
        release = row.get("tcpstall.hol.release_frame")
        if release and set(row) <= HELD_ONLY and int(release[0]) > int(frame):
            held_of.setdefault(release[0], []).append(frame)
            continue
        rows[frame] = {"frame.time_epoch": [time], "tcp.stream": [stream], **row}
    for release, held in held_of.items():
        rows.setdefault(release, {"frame.time_epoch": [""], "tcp.stream": [""]})[an.HELD_FRAMES] = [",".join(held)]
    return rows, _summary(lines)


@pytest.mark.parametrize("capture", [pytest.param(c, id=c.name, marks=() if c.name in FAST else pytest.mark.slow)
                                     for c in CAPTURES])
def test_records_are_the_two_pass_rows(capture):
    got, names, summary = records(capture, BATCH)
    want, want_summary = two_pass(capture, names)
    assert got.keys() == want.keys()
    for frame in want:
        assert got[frame].keys() == want[frame].keys(), f"frame {frame}"
        for name, values in want[frame].items():
            assert len(got[frame][name]) == len(values) and all(
                _same(x, y) for x, y in zip(got[frame][name], values)), (frame, name, got[frame][name], values)
    assert summary == want_summary


_BOOL_TEXT = {"True": "1", "False": "0"}


def _same(record: str, field: str) -> bool:
    """A records value is the text Wireshark 4.0 prints (%.15g doubles, 1/0 booleans); 4.4 prints
    doubles with up to 17 digits and booleans True/False: the same value."""
    field = _BOOL_TEXT.get(field, field)
    if record == field:
        return True
    try:
        return abs(float(record) - float(field)) <= 1e-12 * max(1.0, abs(float(field)))
    except ValueError:
        return False


def test_records_fold_held_frames_into_their_release():
    """On the heartbeat loss at the receiver: the one held frame (92) has no row of its own, its
    release (94) lists it; without the batch settings the records are the same."""
    capture = ROOT / "sample_captures" / "heartbeat-loss-server.pcapng"
    rows, names, _ = records(capture)
    assert "92" not in rows and rows["94"][an.HELD_FRAMES] == ["92"]
    assert rows["94"]["tcpstall.hol.released_bytes"] == ["21"]
    assert records(capture, BATCH)[0] == rows
    assert names[-1] == an.HELD_FRAMES and len(names) == len(set(names))
