"""The findings of one capture as a person reads them at a glance (`tcpstall analyze`'s text).

- each row says its severity (the plugin's: warn / note; "-" for findings that have none);
- identical findings repeated along one stream (same kind, severity and summary) are one row with
  a count and their first and last frame;
- times are seconds since the capture's first packet (Wireshark's time column) and the time of
  day (UTC), so a row is found both in Wireshark and in a log;
- a stream with more than `top` findings of one kind (a bulk transfer with 2 000 HOL episodes) gets
  one summary row (count, total, worst) and its `top` longest, not 2 000 rows.

`--json` is not made here: it keeps every finding.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import List, Sequence

from tabulate import tabulate

TOP = 10            # rows per stream and kind before the rest are summarised

HEADERS = ["severity", "finding", "stream", "start s", "time (UTC)", "ms", "frames", "summary"]


@dataclass
class _Row:
    first: object                # the first Finding of the group (its id, evidence, summary)
    count: int
    first_frame: object
    last_frame: object
    worst_ms: float
    total_ms: float


def _time_of_day(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%H:%M:%S.%f")


def _severity(f) -> str:
    return (f.numbers or {}).get("severity") or "-"


def _frames(frames: Sequence[int]) -> list:
    return [x for x in frames if x is not None]


def _frames_text(frames: Sequence[int], limit: int = 6) -> str:
    fr = [str(x) for x in frames]
    return ",".join(fr) if len(fr) <= limit else ",".join(fr[:limit]) + f",… ({len(fr)})"


def group_identical(findings) -> List[_Row]:
    """One row per (stream, kind, severity, summary), in the order of first appearance."""
    rows: dict = {}
    for f in findings:
        key = (f.stream, f.kind, _severity(f), f.summary)
        fr = _frames(f.frames)
        row = rows.get(key)
        if row is None:
            rows[key] = _Row(f, 1, fr[0] if fr else None, fr[-1] if fr else None, f.duration_ms, f.duration_ms)
        else:
            row.count += 1
            row.last_frame = fr[-1] if fr else row.last_frame
            row.worst_ms = max(row.worst_ms, f.duration_ms)
            row.total_ms += f.duration_ms
    return list(rows.values())


def _since(t: float, t0: float) -> str:
    """Seconds since the capture's start; t0 is printed to the microsecond, so a finding at the first
    frame can come out a few nanoseconds before it: never print that as "-0.000"."""
    return f"{round(t - t0, 3) + 0.0:.3f}"


def _summary_row(kind_rows: List[_Row], top: int, t0: float) -> list:
    """The row that stands for all of one stream's findings of one kind."""
    fs = [r.first for r in kind_rows]
    worst = max(kind_rows, key=lambda r: r.worst_ms)
    total = sum(r.total_ms for r in kind_rows)
    first = min(fs, key=lambda f: f.start)
    count = sum(r.count for r in kind_rows)
    text = (f"{count} {first.kind} findings, {total:.1f} ms in all, worst {worst.worst_ms:.1f} ms "
            f"({worst.first.id}); the {top} longest follow, --json lists every one")
    return [_severity_of(kind_rows), first.kind, first.stream, _since(first.start, t0), _time_of_day(first.start),
            f"{worst.worst_ms:.1f}", "-", text]


def _severity_of(rows: List[_Row]) -> str:
    levels = {_severity(r.first) for r in rows}
    for level in ("error", "warn", "note"):
        if level in levels:
            return level
    return "-"


def _row(r: _Row, t0: float) -> list:
    f = r.first
    if r.count == 1:
        frames = _frames_text(_frames(f.frames))
        summary = f.summary
    else:
        frames = f"{r.first_frame}…{r.last_frame}"
        summary = f"{r.count}× {f.summary}"
    return [_severity(f), f.kind, f.stream, _since(f.start, t0), _time_of_day(f.start), f"{r.worst_ms:.1f}",
            frames, summary]


def findings_lines(findings, t0: float, top: int = TOP) -> List[str]:
    """The findings table and the evidence lines of the findings it shows."""
    by_stream_kind: dict = {}
    for r in group_identical(findings):
        by_stream_kind.setdefault((r.first.stream, r.first.kind), []).append(r)
    table, shown = [], []
    for rows in by_stream_kind.values():
        if len(rows) > top:
            table.append((rows[0].first.start, -1, _summary_row(rows, top, t0)))
            rows = sorted(rows, key=lambda r: r.worst_ms, reverse=True)[:top]
        for r in rows:
            table.append((r.first.start, 0, _row(r, t0)))
            shown.append(r.first)
    table.sort(key=lambda x: (x[0], x[1]))
    lines = [tabulate([row for _, _, row in table], headers=HEADERS, tablefmt="simple", disable_numparse=True)]
    for f in sorted(shown, key=lambda f: f.start):
        lines.extend(f"  [{f.id}] {e}" for e in f.evidence)
    return lines
