"""`tcpstall analyze`'s findings at a glance (pytshark_ext/render/findings.py): severity per row,
identical findings grouped, relative and absolute times, many episodes summarised."""
from __future__ import annotations

import json

from click.testing import CliRunner

from pytshark_ext.cli import main
from pytshark_ext.records import Finding
from pytshark_ext.render import findings
from pytshark_ext.render.findings import findings_lines, group_identical

from conftest import ROOT

T0 = 1_700_000_000.0


def finding(i, start, ms, summary="retries note: FIN resent after close()", kind="retries", stream=0,
            severity="note", frames=None):
    return Finding(kind=kind, summary=summary, start=T0 + start, end=T0 + start + ms / 1000, stream=stream,
                   frames=tuple(frames or (10 * i, 10 * i + 1)), evidence=(f"evidence {i}",), id=f"{kind}-{i}",
                   numbers={"severity": severity})


def test_identical_findings_on_one_stream_are_one_row_with_count_and_frames():
    fs = [finding(i, i * 1.5, 200.0 + i) for i in range(1, 5)] + [finding(9, 2.0, 5.0, stream=1)]
    rows = group_identical(fs)
    assert [(r.first.stream, r.count, r.first_frame, r.last_frame) for r in rows] == [(0, 4, 10, 41), (1, 1, 90, 91)]
    text = "\n".join(findings_lines(fs, T0))
    assert "4× retries note: FIN resent after close()" in text and "10…41" in text
    # the group shows its worst duration and the first one's evidence only
    assert "204.0" in text and "[retries-1] evidence 1" in text and "[retries-2]" not in text


def test_rows_carry_severity_relative_and_utc_time():
    fs = [finding(1, 12.25, 30.0, summary="HOL-blocked delivery: …", kind="hol_blocked", severity="warn")]
    [header, _, row] = findings_lines(fs, T0)[0].splitlines()
    assert header.split()[:5] == ["severity", "finding", "stream", "start", "s"]
    assert row.split()[:6] == ["warn", "hol_blocked", "0", "12.250", "22:13:32.250000", "30.0"]


def test_many_episodes_become_a_summary_and_the_ten_longest():
    fs = [finding(i, i * 0.01, ms=float(i), summary=f"HOL-blocked delivery: held {i} ms", kind="hol_blocked",
                  severity="warn" if i > 1990 else "note") for i in range(1, 2001)]
    lines = findings_lines(fs, T0)
    table = lines[0].splitlines()[2:]
    assert len(table) == 11
    assert table[0].startswith("warn") and "2000 hol_blocked findings, 2001000.0 ms in all, worst 2000.0 ms (hol_blocked-2000)" in table[0]
    assert sorted(int(r.split("held ")[1].split()[0]) for r in table[1:]) == list(range(1991, 2001))
    assert len(lines) == 1 + 10         # evidence of the rows shown only


def test_analyze_text_summarises_a_bulk_capture_and_json_keeps_all(module_home):
    cap = str(ROOT / "tests" / "data" / "bulk-loss-head-server.pcapng")
    text = CliRunner().invoke(main, ["analyze", cap], catch_exceptions=False).output
    data = json.loads(CliRunner().invoke(main, ["analyze", "--json", cap], catch_exceptions=False).output)
    hol = [f for f in data["findings"] if f["kind"] == "hol_blocked"]
    assert len(hol) > 10
    worst = max(hol, key=lambda f: f["duration_ms"])
    assert f"{len(hol)} hol_blocked findings" in text and f"({worst['id']})" in text
    assert sum(1 for line in text.splitlines() if "HOL-blocked delivery: released" in line) == 10


def test_a_finding_at_the_first_frame_starts_at_zero_not_minus_zero():
    # t0 comes from the plugin's stream table, printed to the microsecond (syn-blackhole-client)
    assert findings._since(1764684733.7092457, 1764684733.709246) == "0.000"
    assert findings._since(10.0, 12.5) == "-2.500"          # a real negative stays visible
