"""Packets and application logs on one clock (capture A's).

The job of this module: keep the packets a diagnosis and a ladder diagram need from each capture
(`packets_from_segments`; pipeline.py reads them in the capture's one tshark run), attach each
`--log` to the host of its capture
(time zone given, stated in the lines, or inferred from packet activity; B's host clock moved to
A's with the measured clock offset), and build the merged timeline rows (key packets of both
captures + log events, marked by source) that the table and HTML renderers print.

Pure: no tshark here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from .applog import LogRead, LogSpec, LogSpecError, align_log_tz, parse_tz, read_log, shift_events
from .diagnose import diagnose, facts_from_analysis, facts_from_correlation, windows_of
from .records import Finding, LogEvent, LostSegment, Segment

MAX_PACKETS = 200_000         # per capture: kept as records for the timeline / ladder / diagnosis
ACTIVITY_GRID = 0.001         # packet times for zone inference, thinned to one per millisecond


# --- packets -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class CapturePackets:
    side: str                               # "A" / "B"
    path: str
    segments: Tuple[Segment, ...]           # that capture's own clock (first MAX_PACKETS)
    activity: Tuple[float, ...]             # packet times thinned to ACTIVITY_GRID, own clock
    first: Optional[float] = None
    last: Optional[float] = None
    total: int = 0
    truncated: bool = False                 # more than MAX_PACKETS: later packets not kept
    # the frames the plugin classified as retransmissions (AnalysisResult.retransmissions); None
    # when it did not run (--no-plugin): then they are told by sequence numbers alone
    retransmissions: Optional[Tuple[int, ...]] = None

    @property
    def span(self) -> Optional[Tuple[float, float]]:
        return None if self.first is None else (self.first, self.last)


def packets_from_segments(side: str, path: str, segments: Iterable[Segment],
                          max_keep: int = MAX_PACKETS) -> CapturePackets:
    kept: List[Segment] = []
    activity: List[float] = []
    first = last = None
    total = 0
    last_cell = None
    for s in segments:
        total += 1
        if first is None:
            first = s.time
        last = s.time
        cell = int(s.time / ACTIVITY_GRID)
        if cell != last_cell:
            activity.append(s.time)
            last_cell = cell
        if len(kept) < max_keep:
            kept.append(s)
    activity.sort()
    return CapturePackets(side, path, tuple(kept), tuple(activity), first, last, total, total > max_keep)


# --- logs --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SideLog:
    """One application log attached to the host of one capture."""
    side: str                               # "A" / "B"
    read: LogRead                           # events in that host's clock, zone applied
    events: Tuple[LogEvent, ...]            # the same events in capture A's clock
    zone: Optional[int] = None              # for display: given, inferred or stated by the lines
    warnings: Tuple[str, ...] = ()

    @property
    def source(self) -> str:
        return self.read.source


_ZONE_IN_LINE = re.compile(r"\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\s?(Z|[+-]\d{2}:?\d{2})\b")


def stated_zone(path: str, lines: int = 50) -> Optional[int]:
    """The UTC offset the first timestamped lines of a log state (ISO/CLF style), if any."""
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as fh:
            for _ in range(lines):
                line = fh.readline(4096)
                if not line:
                    break
                m = _ZONE_IN_LINE.search(line)
                if m:
                    z = m.group(1)
                    return 0 if z == "Z" else parse_tz(z if ":" in z else z[:3] + ":" + z[3:])
    except (OSError, ValueError):
        return None
    return None


def attach_log(spec: LogSpec, packets: CapturePackets, *, default_tz: Optional[int] = None,
               fmt: Optional[str] = None, clock_offset_s: float = 0.0,
               side: Optional[str] = None) -> SideLog:
    """Read `spec.path` as written on the host of `packets` (side A or B).

    Zone: the spec's own (`FILE@B:+08:00`), else `default_tz` (--log-tz), else what the lines
    state, else inferred from packet activity (`align_log_tz`, one warning line). B's events are
    moved to A's clock: t_A = t_B - clock_offset_s (offset = B - A). Raises applog's LogError /
    LogFormatError."""
    side = side or spec.side or packets.side
    tz = spec.tz if spec.tz is not None else default_tz
    read = read_log(spec.path, tz=tz, fmt=fmt, ref_time=packets.first, span=packets.span)
    read = align_log_tz(read, packets.activity, packets.span)
    warnings = list(read.warnings)
    if packets.span and read.stats.events:
        lo, hi = packets.span
        near = [e for e in read.events if lo - 60 <= e.time <= hi + 60]
        if not near:
            warnings.append(f"{read.source}: no event within a minute of capture {side}'s packets "
                            f"({read.stats.events} events; give the log's zone with --log-tz ±HH:MM "
                            f"or FILE@{side}:±HH:MM)")
    zone = tz if tz is not None else read.tz_inferred
    if zone is None and read.stats.zoned:
        zone = stated_zone(spec.path)
    events = tuple(shift_events(read.events, clock_offset_s)) if clock_offset_s else read.events
    return SideLog(side, read, events, zone, tuple(warnings))


# --- merged timeline ---------------------------------------------------------------------------

@dataclass(frozen=True)
class TimelineRow:
    time: float                             # capture A's clock
    source: str                             # "A" / "B" (packets) or "log A" / "log B"
    text: str
    frame: Optional[int] = None             # packets: frame number in that capture
    line_no: Optional[int] = None           # logs: line number
    log: Optional[str] = None               # logs: file name
    marks: Tuple[str, ...] = ()             # lost / retransmission / held / fills hole / stall ...
    gap: int = 0                            # a "… N packets …" row: how many were left out


FLAG_NAMES = ((0x02, "SYN"), (0x10, "ACK"), (0x08, "PSH"), (0x01, "FIN"), (0x04, "RST"))


def flags_text(flags: int) -> str:
    return ",".join(n for bit, n in FLAG_NAMES if flags & bit) or "-"


def packet_text(s: Segment) -> str:
    host = (lambda a: f"[{a}]" if ":" in a else a)
    parts = [f"{host(s.src)}:{s.sport} → {host(s.dst)}:{s.dport} [{flags_text(s.flags)}]",
             f"seq={s.seq_raw}"]
    if s.flags & 0x10:
        parts.append(f"ack={s.ack_raw}")
    parts.append(f"len={s.length}")
    if s.sack:
        parts.append("SACK " + " ".join(f"{l}-{r}" for l, r in s.sack))
    return " ".join(parts)


def packet_marks(result_lost: Sequence[LostSegment], findings: Sequence[Finding]) -> Dict[Tuple[str, int], List[str]]:
    """(side, frame) -> marks, from correlate's losses and the plugin/app findings."""
    marks: Dict[Tuple[str, int], List[str]] = {}

    def add(side, frame, text):
        if side and frame:
            lst = marks.setdefault((side, int(frame)), [])
            if text not in lst:
                lst.append(text)

    for r in result_lost:
        down = "B" if r.upstream == "A" else "A"
        add(r.seen_at, r.frame, f"LOST before {down} ({r.id})")
        dv = r.delivered_by
        if dv:
            add(r.upstream, dv.up_frame, f"retransmission #{dv.transmission} of {r.seen_at} frame {r.frame}")
            add(down, dv.down_frame, f"fills the hole (+{dv.after_ms:.1f} ms)")
    for f in findings:
        side = (f.numbers or {}).get("side")
        n = f.numbers or {}
        if f.kind == "hol_blocked" and side:
            for h in n.get("held_frames") or ():
                add(side, h, f"held behind a hole ({f.id})")
            add(side, n.get("release_frame"), f"releases {n.get('released_bytes')} B held "
                                               f"{n.get('max_hold_ms')} ms ({f.id})")
        elif f.kind == "retries" and side:
            for fr in f.frames:
                add(side, fr, f"retransmission, no ACK ({f.id})")
    return marks


def build_timeline(packets: Mapping[str, CapturePackets], logs: Sequence[SideLog],
                   windows: Sequence[Tuple[float, float]], *, clock_offset_s: float = 0.0,
                   marks: Optional[Mapping[Tuple[str, int], Sequence[str]]] = None,
                   per_window: int = 40, pad_s: float = 0.05, max_log_rows: int = 40) -> List[TimelineRow]:
    """Merged rows (A's clock) for the given windows (A's clock): per capture every packet of a
    window holding at most `per_window`, else the marked ones and the first/last 4 (a gap row
    counts the rest), and
    the log events of each window (non-"line" events first, at most `max_log_rows` per window)."""
    marks = dict(marks or {})
    for side, cp in packets.items():
        frames = cp.retransmissions if cp.retransmissions is not None else retransmitted_frames(cp.segments)
        for frame in frames:
            if not any("retransmission" in m for m in marks.get((side, frame), ())):
                marks[(side, frame)] = tuple(marks.get((side, frame), ())) + ("retransmission",)
    rows: List[TimelineRow] = []
    merged = _merge_windows([(a - pad_s, b + pad_s) for a, b in windows])
    for lo, hi in merged:
        for side, cp in sorted(packets.items()):
            shift = clock_offset_s if side == "B" else 0.0
            inside = [s for s in cp.segments if lo <= s.time - shift <= hi]
            if len(inside) <= per_window:
                keep_idx = set(range(len(inside)))
            else:
                keep_idx = set(range(4)) | set(range(len(inside) - 4, len(inside)))
            keep_idx |= {i for i, s in enumerate(inside) if (side, s.frame) in marks}
            skipped = 0
            for i, s in enumerate(inside):
                if i not in keep_idx:
                    skipped += 1
                    continue
                if skipped:
                    rows.append(TimelineRow(s.time - shift - 1e-9, side, f"… {skipped} packet{'s' if skipped != 1 else ''} …", gap=skipped))
                    skipped = 0
                rows.append(TimelineRow(s.time - shift, side, packet_text(s), frame=s.frame,
                                        marks=tuple(marks.get((side, s.frame), ()))))
        for lg in logs:
            inside = [e for e in lg.events if lo <= e.time <= hi or
                      (e.start is not None and e.start <= hi and e.time >= lo)]
            if len(inside) > max_log_rows:
                important = [e for e in inside if e.kind != "line"]
                inside = sorted(important[:max_log_rows], key=lambda e: e.time)
            for e in inside:
                rows.append(TimelineRow(e.time, f"log {lg.side}", e.text.split("\n", 1)[0],
                                        line_no=e.line_no, log=lg.source,
                                        marks=(e.kind,) if e.kind != "line" else ()))
    rows.sort(key=lambda r: (r.time, r.source))
    return rows


def retransmitted_frames(segments: Sequence[Segment]) -> List[int]:
    """Frames whose payload starts below the highest sequence number already sent in that
    direction (retransmissions, or reordering at this capture point): only when the plugin did
    not run, which tells retransmissions from late originals and capture duplicates."""
    high: Dict[tuple, int] = {}
    out = []
    for s in segments:
        if not s.length:
            continue
        k = (s.src, s.sport, s.dst, s.dport)
        end = (s.seq_raw + s.length) & 0xFFFFFFFF
        h = high.get(k)
        if h is None or ((end - h) & 0xFFFFFFFF) < 0x80000000 and end != h:
            if h is not None and ((s.seq_raw - h) & 0xFFFFFFFF) >= 0x80000000:
                out.append(s.frame)
            high[k] = end
        else:
            out.append(s.frame)
    return out


def _merge_windows(windows: Sequence[Tuple[float, float]]) -> List[Tuple[float, float]]:
    out: List[Tuple[float, float]] = []
    for a, b in sorted(windows):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


# --- glue: everything the renderers need, for one or two captures ------------------------------

@dataclass(frozen=True)
class LogReport:
    logs: Tuple[SideLog, ...]
    facts: object                           # diagnose.TcpFacts
    diagnosis: object                       # diagnose.Diagnosis
    rows: Tuple[TimelineRow, ...]
    zone: Optional[int]                     # display zone (first log's)
    packets: Mapping[str, CapturePackets]
    warnings: Tuple[str, ...] = ()


def _display_zone(logs: Sequence[SideLog]) -> Optional[int]:
    for lg in logs:
        if lg.zone is not None:
            return lg.zone
    return None


def report_for_correlation(result, packets: Tuple[CapturePackets, CapturePackets], specs: Sequence[LogSpec],
                           *, default_tz: Optional[int] = None, fmt: Optional[str] = None) -> LogReport:
    """Attach each `FILE@A|B` log to its capture's host, diagnose, build the merged timeline."""
    pa, pb = packets
    offset = (result.clock_offset_ms or 0.0) / 1000.0
    logs = []
    for spec in specs:
        if spec.side not in ("A", "B"):
            raise LogSpecError(f"--log {spec.path}: say which capture's host wrote it: {spec.path}@A or {spec.path}@B")
        cp = pa if spec.side == "A" else pb
        logs.append(attach_log(spec, cp, default_tz=default_tz, fmt=fmt,
                               clock_offset_s=offset if spec.side == "B" else 0.0))
    facts = facts_from_correlation(result, {"A": pa, "B": pb})
    return _finish(logs, facts, {"A": pa, "B": pb}, packet_marks(facts.lost, facts.findings), offset)


def report_for_analysis(analysis, packets: CapturePackets, specs: Sequence[LogSpec], *,
                        default_tz: Optional[int] = None, fmt: Optional[str] = None) -> LogReport:
    """One capture: every log belongs to its host (`FILE` or `FILE@A`)."""
    logs = []
    for spec in specs:
        if spec.side not in (None, "A"):
            raise LogSpecError(f"--log {spec.path}@{spec.side}: analyze reads one capture; "
                               f"give the log as {spec.path} (it is the capture host's)")
        logs.append(attach_log(spec, packets, default_tz=default_tz, fmt=fmt, side="A"))
    facts = facts_from_analysis(analysis, packets, "A")
    return _finish(logs, facts, {"A": packets}, packet_marks((), facts.findings), 0.0)


def _finish(logs, facts, packets, marks, offset) -> LogReport:
    zone = _display_zone(logs)
    diag = diagnose(facts, logs, zone=zone)
    rows = build_timeline(packets, logs, windows_of(diag, facts), clock_offset_s=offset, marks=marks)
    warnings = [w for lg in logs for w in lg.warnings]
    warnings += [f"capture {cp.side}: more than {MAX_PACKETS} packets; the timeline shows the first "
                 f"{MAX_PACKETS} only" for cp in packets.values() if cp.truncated]
    return LogReport(tuple(logs), facts, diag, tuple(rows), zone, packets, tuple(warnings))


def log_comments(logs: Sequence[SideLog], packets: CapturePackets, side: str = "A",
                 limit: int = 5000) -> Dict[int, str]:
    """Frame comments for `--annotate`: each log line of host `side` on the nearest packet of
    that host's capture (its own clock), at most `limit` lines (incidents first)."""
    import bisect
    segs = packets.segments
    if not segs:
        return {}
    times = [s.time for s in segs]
    out: Dict[int, List[str]] = {}
    events = [e for lg in logs if lg.side == side for e in lg.read.events]
    events.sort(key=lambda e: (e.kind == "line", e.time))
    for e in events[:limit]:
        i = bisect.bisect_left(times, e.time)
        best = min((j for j in (i - 1, i) if 0 <= j < len(segs)), key=lambda j: abs(times[j] - e.time))
        if abs(times[best] - e.time) > 5.0:
            continue
        dt = (e.time - times[best]) * 1000
        out.setdefault(segs[best].frame, []).append(
            f"log {e.source}:{e.line_no} ({dt:+.3f} ms): {e.text.splitlines()[0][:300]}")
    return {k: " | ".join(v) for k, v in out.items()}
