"""`tcpstall analyze`: run tshark once with the tcpstall plugin over one capture and collect what
it found, per stream and as findings.

One tshark run, one pass: `-q -z tcpstall,records -z tcpstall,tsv`. After the last frame the plugin
prints, for every frame it annotates, the rows `-2 -Y tcpstall -T fields -e <tcpstall fields>` would
print (`-z tcpstall,records`, plugins/tcpstall/records.lua: the same render as a revisit, without a
second pass), then the `-z tcpstall,tsv` summary of every TCP stream with the analyzers' per-stream
columns. The findings are built from the rows by pure functions (`findings_from_rows`), the
renderers are separate (`render_table`, `to_json`). The plugin does the analysis; this module only
gathers and presents it. The two-pass run stays the oracle the tests compare the records with.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from .records import Finding
from .render.json import finding_dict
from .tshark import BATCH_DECODE, BATCH_PREFS, FIELD_SEP, OCCURRENCE_SEP, TsharkFailed, run_lines

# --- what we ask tshark for --------------------------------------------------------------------

FIELDS: Tuple[str, ...] = (
    "frame.number", "frame.time_epoch", "tcp.stream",
    "tcpstall.hol.hold_ms", "tcpstall.hol.release_frame",
    "tcpstall.hol.released_bytes", "tcpstall.hol.released_segments", "tcpstall.hol.max_hold_ms",
    "tcpstall.hol.first_held_frame", "tcpstall.hol.filled_by", "tcpstall.hol.view",
    "tcpstall.hol.severity", "tcpstall.hol.fill",
    "tcpstall.thin_stream.interval_ms", "tcpstall.thin_stream.wait_ms",
    "tcpstall.thin_stream.wait_estimated", "tcpstall.thin_stream.rtt_ms",
    "tcpstall.rwnd.window", "tcpstall.rwnd.scale", "tcpstall.rwnd.scale_inferred",
    "tcpstall.rwnd.cap_mbps", "tcpstall.rwnd.limited_ms", "tcpstall.rwnd.rtt_ms", "tcpstall.rwnd.bytes",
    "tcpstall.rwnd.start_frame", "tcpstall.rwnd.end_frame", "tcpstall.rwnd.cause",
    "tcpstall.rwnd.cause_text", "tcpstall.rwnd.ongoing", "tcpstall.rwnd.ended_by", "tcpstall.rwnd.predicted_ms",
    "tcpstall.rwnd.zero_window_ms", "tcpstall.rwnd.cannot_tell_reason",
    "tcpstall.retries.count", "tcpstall.retries.elapsed_s", "tcpstall.retries.abort_at_s",
    "tcpstall.retries.rto_count", "tcpstall.retries.budget_s", "tcpstall.retries.first_frame",
    "tcpstall.retries.outcome", "tcpstall.retries.kind", "tcpstall.retries.linux_like",
    "tcpstall.retries.assumed", "tcpstall.retries.budget_from", "tcpstall.retries.reset_by", "tcpstall.retries.not_linux",
    "tcpstall.retries.probe", "tcpstall.retries.synack",
    "tcpstall.retrans.trigger", "tcpstall.retrans.dupacks", "tcpstall.retrans.since_first_ms",
    # expert infos (each prints a count when present): which the frame carries
    "tcpstall.hol.released", "tcpstall.hol.blocked",
    "tcpstall.rwnd.throttling", "tcpstall.rwnd.cannot_tell", "tcpstall.retries.approaching", "tcpstall.retries.final",
    "tcpstall.retries.ended", "tcpstall.retries.control", "tcpstall.thin_stream",
)
DISPLAY_FILTER = "tcpstall"
STAT_ARG = "tcpstall,tsv"
RECORDS_ARG = "tcpstall,records"
RECORDS_HEADER, RECORDS_END = "TCPSTALL_RECORDS", "TCPSTALL_RECORDS_END"
# the records' own column: on a release frame, the held-only frames it released (records.lua)
HELD_FRAMES = "tcpstall.hol.held_frames"

_NUMERIC_STREAM_KEYS = {"stream", "sport", "dport", "first_frame", "last_frame"}


@dataclass(frozen=True)
class StreamSummary:
    """One TCP stream as the plugin's `-z tcpstall,tsv` summary reports it."""
    stream: int
    src: str
    sport: int
    dst: str
    dport: int
    first_t: float
    last_t: float
    columns: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def endpoints(self) -> str:
        return f"{_host(self.src)}:{self.sport} <-> {_host(self.dst)}:{self.dport}"


@dataclass(frozen=True)
class AnalysisResult:
    capture: str
    streams: Tuple[StreamSummary, ...]
    findings: Tuple[Finding, ...]
    plugin_errors: int = 0
    first_plugin_error: Optional[str] = None
    warnings: Tuple[str, ...] = ()
    # frames the plugin classified as retransmissions (tcpstall.retrans.trigger: not capture
    # duplicates, not late originals), for the timeline's marks
    retransmissions: Tuple[int, ...] = ()

    @property
    def start(self) -> Optional[float]:
        return min((s.first_t for s in self.streams), default=None)


def _host(addr: str) -> str:
    return f"[{addr}]" if ":" in addr else addr


# --- parsing -----------------------------------------------------------------------------------

Row = Dict[str, List[str]]


def z_tsv_record(line: str) -> Optional[Tuple[str, Dict[str, str]]]:
    """("TCPSTALL", per-stream key=values) or ("TCPSTALL_END", totals) for a line of the plugin's
    `-z tcpstall,tsv` output; None for any other line."""
    kind, _, rest = line.partition("\t")
    if kind not in ("TCPSTALL", "TCPSTALL_END"):
        return None
    return kind, dict(p.split("=", 1) for p in rest.split("\t") if "=" in p)


def parse_output(lines: Iterable[str], fields: Sequence[str] = FIELDS):
    """Split tshark's stdout into field rows (dicts field -> occurrences), stream summaries and
    the plugin's error count. Pure: takes lines, returns data. Rows are `-T fields` rows of
    `fields` (a two-pass run), or the rows of `-z tcpstall,records` after its header (see
    plugins/tcpstall/records.lua), of which only the fields in `fields` are kept."""
    rows: List[Row] = []
    streams: List[StreamSummary] = []
    errors, first_error = 0, None
    n = len(fields)
    record_field: Optional[Dict[str, str]] = None     # "K" -> field name, for the wanted fields
    for line in lines:
        if record_field is not None and FIELD_SEP in line:
            rows.append(_compact_held(_record_row(line, record_field)))
            continue
        z = z_tsv_record(line)
        if z is not None and z[0] == "TCPSTALL":
            streams.append(_stream_from_kv(z[1]))
        elif z is not None:
            errors = int(z[1].get("errors", "0") or 0)
            first_error = z[1].get("first_error")
        elif line.startswith(RECORDS_HEADER + "\t"):
            names = line.partition("fields=")[2].split(",")
            wanted = set(fields) | {HELD_FRAMES}
            record_field = {str(k): f for k, f in enumerate(names, 1) if f in wanted}
        elif line.startswith(RECORDS_END + "\t"):
            record_field = None
        elif FIELD_SEP in line or (n == 1 and line):
            cols = line.split(FIELD_SEP)
            if len(cols) != n:
                raise TsharkFailed(f"tshark printed a row with {len(cols)} columns, expected {n}")
            # sparse: most of the ~40 fields are empty on any frame, and a big capture has a row
            # for every held segment (absent fields read as [] through the accessors below)
            rows.append(_compact_held({f: c.split(OCCURRENCE_SEP) for f, c in zip(fields, cols) if c}))
    return rows, streams, errors, first_error


def _record_row(line: str, record_field: Mapping[str, str]) -> Row:
    """One `-z tcpstall,records` row: frame, time, stream, then K=VALUE per value (K: the field's
    position in the header), a field given twice in one frame is two occurrences."""
    frame, time, stream, *values = line.split(FIELD_SEP)
    row: Row = {"frame.number": [frame], "frame.time_epoch": [time]}
    if stream:
        row["tcp.stream"] = [stream]
    for kv in values:
        k, _, v = kv.partition("=")
        name = record_field.get(k)
        if name is not None:
            if name in row:
                row[name].append(v)
            else:
                row[name] = [v]
    return row


# What the findings need from a frame that is only *held* (most frames of a lossy bulk capture):
# which release it waits for. Its expert text and hold time stay in the capture.
_HELD_KEEP = ("frame.number", "frame.time_epoch", "tcp.stream", "tcpstall.hol.release_frame")


class _HeldRow:
    """A held-only frame as four strings in slots (~250 bytes) instead of a dict of lists (~700):
    read through .get() like any Row."""
    __slots__ = _HELD_ATTRS = ("frame", "time", "stream", "release")
    _ATTR = dict(zip(_HELD_KEEP, _HELD_ATTRS))

    def __init__(self, row: Row):
        for key, attr in self._ATTR.items():
            v = row.get(key)
            setattr(self, attr, v[0] if v else None)

    def get(self, name: str, default=None):
        attr = self._ATTR.get(name)
        v = getattr(self, attr) if attr else None
        return default if v is None else [v]


def _compact_held(row: Row) -> Row:
    if "tcpstall.hol.release_frame" not in row or any(
            k.startswith(("tcpstall.rwnd", "tcpstall.retries", "tcpstall.retrans", "tcpstall.thin"))
            or k == "tcpstall.hol.released_bytes" for k in row):
        return row
    return _HeldRow(row)


def _stream_from_kv(kv: Mapping[str, str]) -> StreamSummary:
    cols = {k: v for k, v in kv.items()
            if k not in _NUMERIC_STREAM_KEYS | {"src", "dst", "first_t", "last_t"}}
    return StreamSummary(stream=int(kv["stream"]), src=kv.get("src", ""), sport=int(kv.get("sport", 0)),
                         dst=kv.get("dst", ""), dport=int(kv.get("dport", 0)),
                         first_t=float(kv.get("first_t", 0)), last_t=float(kv.get("last_t", 0)),
                         columns=cols)


def _f(row: Row, name: str) -> Optional[float]:
    v = row.get(name) or []
    return float(v[0]) if v and v[0] != "" else None


def _i(row: Row, name: str) -> Optional[int]:
    v = row.get(name) or []
    if not v or v[0] == "":
        return None
    return int(v[0], 16) if v[0].startswith("0x") else int(float(v[0]))


def _s(row: Row, name: str) -> Optional[str]:
    v = row.get(name) or []
    return v[0] if v else None


def _has(row: Row, name: str) -> bool:
    return bool(row.get(name))


def _bool(v: Optional[str]) -> Optional[bool]:
    """A boolean field's text: 1/0 (Wireshark 4.0) or True/False (4.4)."""
    return None if v is None else v.lower() in ("1", "true")


def _b(row: Row, name: str) -> Optional[bool]:
    return _bool(_s(row, name))


# --- findings ----------------------------------------------------------------------------------

def findings_from_rows(rows: Sequence[Row]) -> List[Finding]:
    """Findings from the plugin's per-frame output (rows of FIELDS). Pure."""
    by_frame: Dict[int, Row] = {}
    for r in rows:
        n = _i(r, "frame.number")
        if n is not None:
            by_frame[n] = r
    findings: List[Finding] = []
    findings += _hol_findings(rows, by_frame)
    findings += _rwnd_findings(rows, by_frame)
    findings += _rwnd_cannot_tell_findings(rows)
    findings += _retries_findings(rows)
    findings.sort(key=lambda f: (f.start, f.stream if f.stream is not None else -1, f.kind))
    return [Finding(kind=f.kind, summary=f.summary, start=f.start, end=f.end, stream=f.stream,
                    frames=f.frames, evidence=f.evidence, caused_by=f.caused_by,
                    id=f"{f.kind}-{i + 1}", numbers=f.numbers) for i, f in enumerate(findings)]


def _hol_findings(rows: Sequence[Row], by_frame: Mapping[int, Row]) -> List[Finding]:
    held_by_release: Dict[int, List[int]] = {}
    for r in rows:
        rel = _i(r, "tcpstall.hol.release_frame")
        if rel is not None:
            held_by_release.setdefault(rel, []).append(_i(r, "frame.number"))
    out = []
    for r in rows:
        if _i(r, "tcpstall.hol.released_bytes") is None:
            continue
        frame = _i(r, "frame.number")
        end = _f(r, "frame.time_epoch")
        max_hold = _f(r, "tcpstall.hol.max_hold_ms") or 0.0
        filled_by = _i(r, "tcpstall.hol.filled_by")
        filler = by_frame.get(filled_by) if filled_by is not None else None
        trigger = _s(filler, "tcpstall.retrans.trigger") if filler else None
        thin = _thin_stream(filler) if filler else None
        held = sorted([h for h in held_by_release.get(frame, []) if h is not None]
                      + [int(h) for h in ",".join(r.get(HELD_FRAMES) or ()).split(",") if h])
        frames = tuple(sorted(set(held + [frame] + ([filled_by] if filled_by else []))))
        numbers = {
            "released_bytes": _i(r, "tcpstall.hol.released_bytes"),
            "released_segments": _i(r, "tcpstall.hol.released_segments"),
            "max_hold_ms": round(max_hold, 3),
            "first_held_frame": _i(r, "tcpstall.hol.first_held_frame"),
            "release_frame": frame,
            "filled_by_frame": filled_by,
            "trigger": trigger,
            "fill": _s(r, "tcpstall.hol.fill"),
            "view": _s(r, "tcpstall.hol.view"),
            "severity": _s(r, "tcpstall.hol.severity"),
            "held_frames": held,
        }
        since_first = _f(filler, "tcpstall.retrans.since_first_ms") if filler else None
        if since_first is not None:
            # the hole's data was first sent this long before its retransmission (the loss began then)
            numbers["retransmit_after_ms"] = since_first
            numbers["original_sent_at"] = round(_f(filler, "frame.time_epoch") - since_first / 1000.0, 6)
        if thin:
            numbers["thin_stream"] = thin
        segs = numbers["released_segments"]
        fill = numbers["fill"] or "cannot_tell"
        summary = (f"HOL-blocked delivery: released {numbers['released_bytes']} bytes"
                   + (f" in {segs} segment{'s' if segs != 1 else ''}" if segs is not None else "")
                   + f" held up to {max_hold:.1f} ms; filled by "
                   + (f"{trigger} retransmission" if fill == "retransmission" and trigger else fill.replace("_", " ")))
        evidence = (_thin_text(thin),) if thin else ()
        out.append(Finding(kind="hol_blocked", summary=summary, start=end - max_hold / 1000.0, end=end,
                           stream=_i(r, "tcp.stream"), frames=frames, evidence=evidence, numbers=numbers))
    return out


def _rwnd_findings(rows: Sequence[Row], by_frame: Optional[Mapping[int, Row]] = None) -> List[Finding]:
    """One finding per window-limited episode. The rwnd analyzer reports an episode twice with the
    `tcpstall.rwnd.throttling` expert: when it has lasted `rwnd_min_episode_ms` (no
    `tcpstall.rwnd.end_frame`) and on the frame that shows it ended (with `end_frame`); both carry
    `tcpstall.rwnd.start_frame`. The end report wins (an episode still running when the capture
    ends or the connection is reset has one too, `ongoing`, `ended_by` capture_end / reset, on
    revisits); without an end report the start report's numbers (`ongoing`)."""
    if by_frame is None:
        by_frame = {n: r for r in rows if (n := _i(r, "frame.number")) is not None}
    episodes: Dict[Tuple[Optional[int], Optional[int]], Row] = {}
    order: List[Tuple[Optional[int], Optional[int]]] = []
    for r in rows:
        if not _has(r, "tcpstall.rwnd.throttling"):
            continue
        key = (_i(r, "tcp.stream"), _i(r, "tcpstall.rwnd.start_frame") or _i(r, "frame.number"))
        if key not in episodes:
            order.append(key)
            episodes[key] = r
        elif _i(r, "tcpstall.rwnd.end_frame") is not None:
            episodes[key] = r
    out = []
    for key in order:
        r = episodes[key]
        t = _f(r, "frame.time_epoch")
        limited = _f(r, "tcpstall.rwnd.limited_ms") or 0.0
        start_frame = _i(r, "tcpstall.rwnd.start_frame")
        end_frame = _i(r, "tcpstall.rwnd.end_frame")
        start_row = by_frame.get(start_frame) if start_frame is not None else None
        start_t = _f(start_row, "frame.time_epoch") if start_row else None
        if start_t is None:
            start_t = t - limited / 1000.0
        numbers = {
            "window": _i(r, "tcpstall.rwnd.window"),
            "scale": _i(r, "tcpstall.rwnd.scale"),
            "scale_inferred": (_s(r, "tcpstall.rwnd.scale_inferred") or "").lower() in ("1", "true", "yes"),
            "cap_mbps": _f(r, "tcpstall.rwnd.cap_mbps"),
            "rtt_ms": _f(r, "tcpstall.rwnd.rtt_ms"),
            "limited_ms": limited,
            "bytes": _i(r, "tcpstall.rwnd.bytes"),
            "start_frame": start_frame,
            "end_frame": end_frame,
            "reported_frame": _i(r, "frame.number"),
            "cause": _s(r, "tcpstall.rwnd.cause"),
            "cause_text": _s(r, "tcpstall.rwnd.cause_text"),
            "severity": "warn",         # tcpstall.rwnd.throttling's registered severity (tcpstall.lua)
            "ongoing": (_s(r, "tcpstall.rwnd.ongoing") or "").lower() in ("1", "true", "yes")
            if _has(r, "tcpstall.rwnd.ongoing") else end_frame is None,
            "ended_by": _s(r, "tcpstall.rwnd.ended_by"),
            "predicted_ms": _f(r, "tcpstall.rwnd.predicted_ms"),
            "zero_window_ms": _f(r, "tcpstall.rwnd.zero_window_ms"),
        }
        summary = f"receiver window throttling: rwnd {numbers['window']} B, window-limited {limited:.1f} ms" + (
            f", {numbers['bytes']} B sent" if numbers["bytes"] is not None else "") + (
            f", capped at {numbers['cap_mbps']:.1f} Mbit/s at RTT {numbers['rtt_ms']:.1f} ms"
            if numbers["cap_mbps"] is not None and numbers["rtt_ms"] is not None else "") + (
            f"; {numbers['cause']}" if numbers["cause"] else "")
        frames = tuple(sorted({f for f in (start_frame, end_frame, _i(r, "frame.number")) if f is not None}))
        out.append(Finding(kind="rwnd_throttling", summary=summary, start=start_t,
                           end=start_t + limited / 1000.0, stream=key[0], frames=frames, numbers=numbers,
                           evidence=(f"likely cause: {numbers['cause_text']}",) if numbers["cause_text"] else ()))
    return out


# tcpstall.rwnd.cannot_tell_reason -> what the capture lacks, in words (plugins/tcpstall/README.md)
CANNOT_TELL_REASONS = {
    "scale_and_rtt_unknown": "the handshake is not in the capture (window scale unknown) and without TCP "
                             "timestamps this capture point does not show the sender's round trip",
    "rtt_unknown": "without TCP timestamps and the handshake this capture point does not show the sender's round trip",
}


def _rwnd_cannot_tell_findings(rows: Sequence[Row]) -> List[Finding]:
    """A note where the rwnd analyzer says the capture cannot tell whether the receiver window
    limited the sender (expert `tcpstall.rwnd.cannot_tell`, on revisits: two-pass and records):
    silence there would read as "the window did not limit"."""
    out = []
    for r in rows:
        if not _has(r, "tcpstall.rwnd.cannot_tell"):
            continue
        reason = _s(r, "tcpstall.rwnd.cannot_tell_reason") or ""
        t = _f(r, "frame.time_epoch") or 0.0
        frame = _i(r, "frame.number")
        out.append(Finding(
            kind="rwnd_cannot_tell", start=t, end=t, stream=_i(r, "tcp.stream"),
            frames=(frame,) if frame is not None else (),
            summary="receiver window: cannot tell whether it limited the sender: "
                    + CANNOT_TELL_REASONS.get(reason, reason.replace("_", " ")),
            evidence=("a capture with the handshake, or one taken at the sender, can tell",),
            numbers={"reason": reason, "severity": "note"}))   # tcpstall.rwnd.cannot_tell is a note
    return out


def _thin_stream(row: Row) -> Optional[dict]:
    """The thin-stream fields of a retransmission (None without the thin-stream note)."""
    if not _has(row, "tcpstall.thin_stream"):
        return None
    return {"interval_ms": _f(row, "tcpstall.thin_stream.interval_ms"), "wait_ms": _f(row, "tcpstall.thin_stream.wait_ms"),
            "wait_estimated": _b(row, "tcpstall.thin_stream.wait_estimated"),
            "rtt_ms": _f(row, "tcpstall.thin_stream.rtt_ms"), "dupacks": _i(row, "tcpstall.retrans.dupacks")}


def _thin_text(t: Mapping) -> str:
    return (f"thin stream: the sender sends one segment every ~{t['interval_ms']:.1f} ms; the loss evidence took "
            f"{t['wait_ms']:.1f} ms{' (est.)' if t['wait_estimated'] else ''} (RTT {t['rtt_ms']:.1f} ms)")


def _at(row: Row, name: str, i: int) -> Optional[str]:
    """Occurrence i of a field (a frame that ends one retries episode and retransmits for
    another has two of each), the last one when there are fewer."""
    v = row.get(name) or []
    return v[min(i, len(v) - 1)] if v else None


def _ends(row: Row) -> int:
    """How many retries episodes this frame ends: their end records come first in its fields."""
    return len(row.get("tcpstall.retries.ended") or [])


# control episodes that are harmless once answered (a FIN ACKed late, a keepalive answered); a SYN
# episode is a finding even when the handshake completes: connect() waited all that time
_HARMLESS_WHEN_ANSWERED = ("fin", "probe")


def _retries_findings(rows: Sequence[Row]) -> List[Finding]:
    """One finding per retries episode (keyed by stream and the frame that first sent the data):
    a data episode once it has a `tcpstall.retries.approaching`/`final` warning, a FIN / SYN /
    probe episode that nothing answered. First send to the episode's end, the highest
    retransmission number, the plugin's abort prediction (`abort_at_s`, `budget_s`, `assumed`,
    `linux_like`) and the outcome: the frame with `tcpstall.retries.ended` (recovered / reset /
    aborted by a later frame), else the outcome the plugin puts on the last retransmission
    (capture_ends / aborted), all read from fields."""
    tx: Dict[tuple, List[Row]] = {}
    ends: Dict[tuple, Tuple[Row, int]] = {}      # episode -> (the frame that ended it, its end record's index)
    for r in rows:
        stream = _i(r, "tcp.stream")
        n_end = _ends(r)
        for i in range(n_end):
            ends[(stream, _at(r, "tcpstall.retries.first_frame", i))] = (r, i)
        if len(r.get("tcpstall.retries.count") or []) > n_end:
            tx.setdefault((stream, _at(r, "tcpstall.retries.first_frame", n_end)), []).append(r)
    out = []
    for k, rs in tx.items():
        last = rs[-1]
        i_last = _ends(last)
        kind = _at(last, "tcpstall.retries.kind", i_last) or "data"
        end_row, i_end = ends.get(k, (None, 0))
        own_outcome = _at(last, "tcpstall.retries.outcome", i_last) if len(
            last.get("tcpstall.retries.outcome") or []) > i_last else None
        outcome = _at(end_row, "tcpstall.retries.outcome", i_end) if end_row else (own_outcome or "capture_ends")
        warned = [r for r in rs if _has(r, "tcpstall.retries.approaching") or _has(r, "tcpstall.retries.final")]
        if kind == "data" and not warned or kind in _HARMLESS_WHEN_ANSWERED and outcome == "recovered":
            continue
        t_last = _f(last, "frame.time_epoch")
        elapsed = float(_at(last, "tcpstall.retries.elapsed_s", i_last) or 0.0)
        start = t_last - elapsed
        final = next((r for r in rs if _has(r, "tcpstall.retries.final")), None)
        linux_like = _at(last, "tcpstall.retries.linux_like", i_last)
        numbers = {
            "kind": kind,
            "probe": _at(last, "tcpstall.retries.probe", i_last),
            "synack": _bool(_at(last, "tcpstall.retries.synack", i_last)) if kind == "syn" else None,
            "count": max(int(_at(r, "tcpstall.retries.count", _ends(r))) for r in rs),
            "rto_count": _i(last, "tcpstall.retries.rto_count"),
            "elapsed_s": elapsed,
            "abort_at_s": _f(last, "tcpstall.retries.abort_at_s"),
            "budget_s": _f(last, "tcpstall.retries.budget_s"),
            "budget_from": _s(last, "tcpstall.retries.budget_from"),
            "assumed": _s(last, "tcpstall.retries.assumed"),
            "linux_like": _bool(linux_like),
            "not_linux": _s(last, "tcpstall.retries.not_linux"),
            "first_frame": int(k[1]) if k[1] else None,
            "final_frame": _i(final, "frame.number") if final else None,
            # the registered severity of the episode's strongest expert (tcpstall.lua)
            "severity": "error" if final else "warn" if warned else "note",
            "outcome": outcome,
            "reset_by": _at(end_row, "tcpstall.retries.reset_by", i_end) if end_row else None,
            "end_frame": _i(end_row, "frame.number") if end_row else _i(last, "frame.number"),
        }
        end = t_last
        frames = [_i(r, "frame.number") for r in rs]
        if end_row is not None:
            end = _f(end_row, "frame.time_epoch") or t_last
            numbers["count"] = max(numbers["count"], int(_at(end_row, "tcpstall.retries.count", i_end) or 0))
            numbers["stall_s"] = float(_at(end_row, "tcpstall.retries.elapsed_s", i_end))
            frames.append(_i(end_row, "frame.number"))
        out.append(Finding(kind="retries", summary=_retries_summary(numbers), start=start, end=end,
                           stream=k[0], frames=tuple(frames), numbers=numbers))
    return out


_WHAT = {"fin": "FIN retransmissions", "syn": "SYN retransmissions", "probe": "probes"}


def _retries_summary(n: Mapping) -> str:
    """The episode in words, from its numbers."""
    if n["kind"] != "data":
        what = {"keepalive": "keepalive probes", "zero_window": "zero-window probes"}.get(n["probe"], _WHAT[n["kind"]])
        if n.get("synack"):
            what = "SYN-ACK retransmissions"
        if n["outcome"] == "recovered":       # only SYN episodes (see _HARMLESS_WHEN_ANSWERED)
            return (f"connection setup delayed: {n['count']} {what}, the handshake completed "
                    f"{n['stall_s']:.3f} s after the first {'SYN-ACK' if n['synack'] else 'SYN'}")
        return f"{n['count']} unanswered {what} in {n['elapsed_s']:.3f} s; {n['outcome']}" + (
            f" (RST by the {n['reset_by']})" if n["reset_by"] else "")
    text = (f"retries approaching tcp_retries2: {n['count']} retransmissions ({n['rto_count']} RTO) without ACK "
            f"for {n['elapsed_s']:.3f} s")
    if n["linux_like"] is False:
        text += f"; the sender does not behave like Linux ({n['not_linux']}): no Linux abort prediction"
    elif n["abort_at_s"] is not None:
        text += f"; Linux gives up at ≈{n['abort_at_s']:.3f} s (budget {n['budget_s']:.3f} s" + (
            f"; assumed {n['assumed']})" if n["assumed"] else ")")
    if n["final_frame"] is not None:
        text += f"; last retransmission before the predicted abort in frame {n['final_frame']}"
    return text + f"; {n['outcome']}" + (f" (RST by the {n['reset_by']})" if n["reset_by"] else "")


# --- running -----------------------------------------------------------------------------------

def analyze_capture(capture: str, *, tshark: Optional[str] = None,
                    prefs: Optional[Mapping[str, object]] = None) -> AnalysisResult:
    """Run tshark with the plugin over `capture`, one pass; raises tshark.TsharkError subclasses."""
    run = run_lines(str(capture), tshark=tshark, prefs={**BATCH_PREFS, **(prefs or {})},
                    tolerate_truncation=True, extra=["-q", "-z", RECORDS_ARG, "-z", STAT_ARG, *BATCH_DECODE])
    return result_from_lines(str(capture), run, run)


def result_from_lines(capture: str, lines: Iterable[str], run) -> AnalysisResult:
    """The AnalysisResult of the plugin's output lines (records and summary) of one run; `run`
    (a TsharkRun, read to its end) tells whether the capture was cut short."""
    rows, streams, errors, first_error = parse_output(lines)
    warnings = (f"{run.truncated} (analysed the packets before the cut)",) if run.truncated else ()
    retransmissions = tuple(_i(r, "frame.number") for r in rows if _has(r, "tcpstall.retrans.trigger"))
    return AnalysisResult(capture=capture, streams=tuple(streams),
                          findings=tuple(findings_from_rows(rows)),
                          plugin_errors=errors, first_plugin_error=first_error, warnings=warnings,
                          retransmissions=retransmissions)


# --- rendering ---------------------------------------------------------------------------------

_BOOLS = {"true": True, "false": False}


def _col_value(v: str):
    """A -z tcpstall,tsv value with its JSON type: the plugin prints plain numbers, true/false, a word
    (retries_outcome) or "-" (nothing to report: null)."""
    if v in ("-", ""):
        return None
    if v in _BOOLS:
        return _BOOLS[v]
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


def _json_columns(columns: Mapping[str, str]) -> dict:
    return {k: _col_value(v) for k, v in columns.items()}


def to_json(result: AnalysisResult) -> dict:
    return {
        "capture": result.capture,
        "streams": [
            {"stream": s.stream, "src": s.src, "sport": s.sport, "dst": s.dst, "dport": s.dport,
             "start": s.first_t, "end": s.last_t, **_json_columns(s.columns)}
            for s in result.streams],
        "findings": [finding_dict(f) for f in result.findings],
        "plugin_errors": result.plugin_errors,
        "warnings": list(result.warnings),
    }


def _column_title(key: str) -> str:
    """The plugin's -z column key as a header: "rwnd_limited_ms" -> "rwnd limited ms"."""
    words = key.split("_")
    return " ".join(w.upper() if w in ("hol", "rto") else w for w in words)


def render_table(result: AnalysisResult) -> str:
    from tabulate import tabulate

    from .render.findings import findings_lines

    t0 = result.start or 0.0
    keys: List[str] = []
    for s in result.streams:
        for k in s.columns:
            if k not in keys:
                keys.append(k)
    headers = ["stream", "endpoints", "duration s"] + [_column_title(k) for k in keys]
    table = [[s.stream, s.endpoints, f"{s.last_t - s.first_t:.3f}"] + [s.columns.get(k, "") for k in keys]
             for s in result.streams]
    parts = [f"{result.capture}: {len(result.streams)} TCP stream(s), {len(result.findings)} finding(s)",
             tabulate(table, headers=headers, tablefmt="simple", disable_numparse=True)]
    if result.findings:
        parts.append("")
        parts.extend(findings_lines(result.findings, t0))
    else:
        parts.append("")
        parts.append("no stalls found")
    if result.plugin_errors:
        parts.append(f"warning: the plugin hit {result.plugin_errors} internal error(s); first: "
                     f"{result.first_plugin_error}")
    return "\n".join(parts)
