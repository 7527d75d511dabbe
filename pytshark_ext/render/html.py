"""`--html OUT.html`: one self-contained page (inline CSS and SVG, no script, no external
resource) with a ladder diagram per incident window and the findings.

Ladder: capture A's host on the left, B's on the right, time downwards (capture A's clock; long
quiet stretches are folded, with a ≈ marker saying how long). A packet seen in both captures is
an arrow from where it was seen first to where it was seen second; a packet lost between the
captures ends in ✕ halfway; amber bars on an axis are data held behind a hole (HOL); log events
are written beside their host, app incidents as brackets. Every capture- or log-derived string is
escaped with html.escape (a log line holding `<script>` stays text).

`render_html` is pure (report -> str); `write_html` writes through a temporary file in the
target directory and renames it, so OUT.html is never half-written.
"""
from __future__ import annotations

import html
import os
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..diagnose import clock, zone_label
from ..records import Finding, Segment
from ..timeline import LogReport, capture_host, flags_text

E = lambda s: html.escape(str(s), quote=True)   # noqa: E731  (one name, used everywhere)

MAX_ARROWS = 60           # per window; the rest is counted in a fold marker
X_A, X_B = 420, 740       # the two axes
WIDTH = 1120
TOP = 60
GAP_CAP_PX = 250          # a quiet stretch longer than this is folded ...
FOLD_PX = 50              # ... to this height

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#1d232b;background:#fff}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:28px 0 8px} .sub{color:#5b6570}
.finding{border-left:4px solid #c0392b;padding:6px 12px;margin:10px 0;background:#fbf3f2}
.finding.ok{border-color:#7f8c8d;background:#f4f6f7}
.chain{margin:4px 0 0 0;padding-left:18px} .chain li{margin:2px 0}
.kind{font-weight:600} .ids{color:#5b6570;font-size:12px}
table{border-collapse:collapse;font-size:12px} td,th{border-bottom:1px solid #e3e6e8;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f4f6f7} .src-A{color:#1f5fa8} .src-B{color:#8e44ad} .log{color:#2c7a4b}
svg text{font:11px ui-monospace,SFMono-Regular,Menlo,monospace} .warn{color:#a35a00}
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
"""


@dataclass
class _Arrow:
    t0: float
    t1: Optional[float]       # None: lost (ends in ✕)
    from_a: bool              # drawn from A's axis to B's
    label: str
    kind: str                 # data / ack / retx / lost
    marks: Tuple[str, ...] = ()


def _key(s: Segment):
    return (s.seq_raw, s.ack_raw, s.length, s.tsval, s.tsecr, s.flags & 0x17)


def _window_arrows(report: LogReport, lo: float, hi: float) -> Tuple[List[_Arrow], int]:
    """Arrows (A's clock) for packets in [lo, hi] of both captures; returns (arrows, not drawn)."""
    pk = report.packets
    off = report.facts.clock_offset_s
    marks: Dict[Tuple[str, int], Tuple[str, ...]] = {}
    for r in report.rows:
        if r.frame is not None and r.marks:
            marks[(r.source, r.frame)] = r.marks
    lost_frames = {(r.seen_at, r.frame): r for r in report.facts.lost}
    a = [s for s in pk["A"].segments if lo <= s.time <= hi] if "A" in pk else []
    b = [s for s in pk["B"].segments if lo <= s.time - off <= hi] if "B" in pk else []
    arrows: List[_Arrow] = []
    if "B" not in pk:               # one capture: horizontal arrows, the capture's host on the left
        host = capture_host(pk["A"].segments[:20000])
        for s in a:
            arrows.append(_Arrow(s.time, s.time, s.src == host, _label(s), _kind(s),
                                 marks.get(("A", s.frame), ())))
        return _thin(arrows)
    pending: Dict[tuple, List[Segment]] = {}
    for s in b:
        pending.setdefault(_key(s), []).append(s)
    a_dir_from_a: Dict[tuple, bool] = {}
    unmatched_a = []
    for s in a:
        lst = pending.get(_key(s))
        if lst:
            m = lst.pop(0)
            tb = m.time - off
            from_a = s.time <= tb
            a_dir_from_a[(s.src, s.sport)] = from_a
            mk = marks.get(("A", s.frame), ()) + marks.get(("B", m.frame), ())
            arrows.append(_Arrow(min(s.time, tb), max(s.time, tb), from_a, _label(s), _kind(s, mk), mk))
        else:
            unmatched_a.append(s)
    for s in unmatched_a:
        from_a = a_dir_from_a.get((s.src, s.sport), True)
        mk = marks.get(("A", s.frame), ())
        if ("A", s.frame) in lost_frames:
            arrows.append(_Arrow(s.time, None, True, _label(s), "lost", mk))
        elif s.length and from_a:       # data B's capture does not hold (B stopped, or never got it)
            arrows.append(_Arrow(s.time, None, True, _label(s), "unseen", mk + ("not in B's capture",)))
        else:
            arrows.append(_Arrow(s.time, None if from_a else s.time, from_a, _label(s), "edge", mk))
    for lst in pending.values():
        for m in lst:
            mk = marks.get(("B", m.frame), ())
            if ("B", m.frame) in lost_frames:
                arrows.append(_Arrow(m.time - off, None, False, _label(m), "lost", mk))
            else:
                arrows.append(_Arrow(m.time - off, m.time - off, False, _label(m), "edge", mk))
    arrows.sort(key=lambda x: x.t0)
    return _thin(arrows)


def _thin(arrows: List[_Arrow]) -> Tuple[List[_Arrow], int]:
    if len(arrows) <= MAX_ARROWS:
        return arrows, 0
    keep = set(range(15)) | set(range(len(arrows) - 15, len(arrows)))
    keep |= {i for i, x in enumerate(arrows) if x.marks or x.kind in ("lost", "retx", "unseen")}
    kept = [x for i, x in enumerate(arrows) if i in keep][:MAX_ARROWS + 40]
    return kept, len(arrows) - len(kept)


def _label(s: Segment) -> str:
    return f"{flags_text(s.flags)} seq={s.seq_raw} len={s.length}"


def _kind(s: Segment, marks: Tuple[str, ...] = ()) -> str:
    if any("retransmission" in m for m in marks):
        return "retx"
    return "data" if s.length else "ack"


class _YMap:
    """Piecewise-linear time -> y: px_per_ms within activity, quiet stretches folded."""

    def __init__(self, times: Sequence[float], px_per_ms: float):
        self.ts = sorted(set(times))
        self.ys: List[float] = []
        self.folds: List[Tuple[float, float, float]] = []     # (y, seconds folded, at time)
        y = TOP
        prev = None
        for t in self.ts:
            if prev is not None:
                dy = (t - prev) * 1000 * px_per_ms
                if dy > GAP_CAP_PX:
                    self.folds.append((y + FOLD_PX / 2, t - prev, prev))
                    dy = FOLD_PX
                y += max(dy, 0.0)
            self.ys.append(y)
            prev = t
        self.height = (self.ys[-1] if self.ys else TOP) + 50

    def __call__(self, t: float) -> float:
        import bisect
        i = bisect.bisect_left(self.ts, t)
        if i < len(self.ts) and self.ts[i] == t:
            return self.ys[i]
        if i == 0:
            return self.ys[0] if self.ys else TOP
        if i >= len(self.ts):
            return self.ys[-1]
        t0, t1, y0, y1 = self.ts[i - 1], self.ts[i], self.ys[i - 1], self.ys[i]
        return y0 + (y1 - y0) * (t - t0) / (t1 - t0)


COLORS = {"data": "#1f5fa8", "ack": "#8a96a3", "retx": "#d35400", "lost": "#c0392b", "edge": "#b0b8c0",
          "unseen": "#c0392b"}


def _ladder(report: LogReport, lo: float, hi: float, title: str) -> str:
    zone = report.zone
    arrows, hidden = _window_arrows(report, lo, hi)
    logs = [(lg.side, e) for lg in report.logs for e in lg.events
            if lo <= e.time <= hi or (e.start is not None and e.start <= hi and e.time >= lo)]
    if len(logs) > 80:
        logs = [x for x in logs if x[1].kind != "line"][:80]
    incidents = [f for f in report.diagnosis.findings if f.end >= lo and f.start <= hi]
    held = _held_spans(report, lo, hi)
    times = [x.t0 for x in arrows] + [x.t1 for x in arrows if x.t1 is not None]
    times += [e.time for _, e in logs] + [f.start for f in incidents] + [f.end for f in incidents]
    times += [t for _, a, b, _ in held for t in (a, b)]
    times = [t for t in times if t is not None]
    if not times:
        return ""
    # scale: the typical gap between consecutive packets gets ~16 px (dense bursts stay readable),
    # but a short window still fills ~900 px; long quiet stretches are folded by _YMap
    distinct = sorted(set(times))
    starts = sorted(set(x.t0 for x in arrows))
    gaps = [(b - a) * 1000 for a, b in zip(starts, starts[1:]) if b > a]     # between packets
    span_ms = max((distinct[-1] - distinct[0]) * 1000, 1.0)
    px = max(16.0 / statistics.median(gaps) if gaps else 1.0, 900.0 / span_ms)
    ymap = _YMap(times, min(30.0, max(0.5, px)))
    names = report.facts.names
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{int(ymap.height)}" '
           f'viewBox="0 0 {WIDTH} {int(ymap.height)}" role="img" aria-label="{E(title)}">',
           '<defs><marker id="ah" markerWidth="8" markerHeight="8" refX="7" refY="3" orient="auto">'
           '<path d="M0,0 L7,3 L0,6 z" fill="context-stroke"/></marker></defs>',
           f'<rect x="0" y="0" width="{WIDTH}" height="{int(ymap.height)}" fill="#fff"/>']
    two = "B" in report.packets
    out.append(f'<text x="{X_A}" y="20" text-anchor="middle" font-weight="bold">A: {E(os.path.basename(names.get("A", "")))}</text>')
    if two:
        right = "B: " + E(os.path.basename(names.get("B", "")))
    else:
        host = capture_host(report.packets["A"].segments[:20000]) or ""
        peers = {s.dst if s.src == host else s.src for s in report.packets["A"].segments[:2000]}
        right = "peer " + E(", ".join(sorted(peers)[:2]))
        out.append(f'<text x="{X_A}" y="34" text-anchor="middle" fill="#5b6570">(host {E(host)})</text>')
    out.append(f'<text x="{X_B}" y="20" text-anchor="middle" font-weight="bold">{right}</text>')
    bottom = ymap.height - 30
    for x in (X_A, X_B):
        out.append(f'<line x1="{x}" y1="{TOP - 20}" x2="{x}" y2="{bottom:.1f}" stroke="#34495e" stroke-width="2"/>')
    for y, secs, _ in ymap.folds:
        out.append(f'<text x="{(X_A + X_B) / 2}" y="{y + 4:.1f}" text-anchor="middle" fill="#7f8c8d">'
                   f'≈ {secs * 1000:.0f} ms folded</text>')
        for x in (X_A, X_B):
            out.append(f'<line x1="{x - 8}" y1="{y - 3:.1f}" x2="{x + 8}" y2="{y + 3:.1f}" stroke="#7f8c8d"/>')
    # held spans (HOL) on the receiving axis
    for side, a, b, text in held:
        x = X_A if side == "A" else X_B
        out.append(f'<rect x="{x - 5}" y="{ymap(a):.1f}" width="10" height="{max(ymap(b) - ymap(a), 2):.1f}" '
                   f'fill="#f39c12" opacity="0.8"><title>{E(text)}</title></rect>')
        out.append(f'<text x="{x + (-10 if side == "B" else 10)}" y="{(ymap(a) + ymap(b)) / 2 + 4:.1f}" '
                   f'text-anchor="{"end" if side == "B" else "start"}" fill="#b9770e">{E(text)}</text>')
    # arrows
    last_label_y = -100.0
    for x in arrows:
        y0 = ymap(x.t0)
        color = COLORS.get(x.kind, "#1f5fa8")
        x0, x1 = (X_A, X_B) if x.from_a else (X_B, X_A)
        if x.kind == "lost":
            xm = (x0 + x1) / 2
            ym = y0 + 18
            out.append(f'<line x1="{x0}" y1="{y0:.1f}" x2="{xm}" y2="{ym:.1f}" stroke="{color}" stroke-width="2"/>')
            out.append(f'<text x="{xm}" y="{ym + 5:.1f}" text-anchor="middle" font-size="16" fill="{color}">✕</text>')
        elif x.kind == "unseen":
            xm = (x0 + x1) / 2
            ym = y0 + 14
            retx = any("retransmission" in m for m in x.marks)
            c2 = COLORS["retx"] if retx else color
            out.append(f'<line x1="{x0}" y1="{y0:.1f}" x2="{xm}" y2="{ym:.1f}" stroke="{c2}" stroke-width="2" '
                       f'stroke-dasharray="5 3"/>')
            out.append(f'<text x="{xm + 4}" y="{ym + 4:.1f}" fill="{c2}">?</text>')
        elif x.kind == "edge":
            y1 = y0
            xm = x0 + (x1 - x0) * 0.25
            out.append(f'<line x1="{x0}" y1="{y0:.1f}" x2="{xm}" y2="{y1:.1f}" stroke="{color}" '
                       f'stroke-dasharray="3 3"/>')
        else:
            y1 = ymap(x.t1)
            out.append(f'<line x1="{x0}" y1="{y0:.1f}" x2="{x1}" y2="{y1:.1f}" stroke="{color}" '
                       f'stroke-width="{2 if x.kind in ("data", "retx") else 1}" marker-end="url(#ah)">'
                       f'<title>{E(x.label + ("; " + "; ".join(x.marks) if x.marks else ""))}</title></line>')
        if x.kind in ("data", "retx", "lost", "unseen") or x.marks:
            label = x.label + (" — " + "; ".join(x.marks) if x.marks else "")
            label = label if len(label) <= 52 else label[:51] + "…"
            ly = y0 - 4
            if x.from_a:
                out.append(f'<text x="{X_A + 8}" y="{ly:.1f}" fill="{color}">{E(label)}</text>')
            else:
                out.append(f'<text x="{X_B - 8}" y="{ly:.1f}" text-anchor="end" fill="{color}">{E(label)}</text>')
        if y0 - last_label_y >= 13:
            out.append(f'<text x="4" y="{y0 + 4:.1f}" fill="#7f8c8d" font-size="10">'
                       f'{E(clock(x.t0, zone))}</text>')
            last_label_y = y0
    if hidden:
        out.append(f'<text x="{(X_A + X_B) / 2}" y="{bottom + 18:.1f}" text-anchor="middle" fill="#7f8c8d">'
                   f'{hidden} more packets in this window not drawn</text>')
    # app incidents: brackets beside their host
    for f in incidents:
        side = (f.numbers or {}).get("side", "A")
        x = X_A - 14 if side == "A" else X_B + 14
        ya, yb = ymap(max(f.start, lo - 1)), ymap(f.end)
        dx = -6 if side == "A" else 6
        out.append(f'<path d="M{x - dx},{ya:.1f} L{x},{ya:.1f} L{x},{yb:.1f} L{x - dx},{yb:.1f}" fill="none" '
                   f'stroke="#c0392b" stroke-width="2"><title>{E(f.summary)}</title></path>')
    # log events beside their host
    last_y = {"A": -100.0, "B": -100.0}
    for side, e in logs:
        y = ymap(e.time)
        ax = X_A if side == "A" else X_B
        out.append(f'<circle cx="{ax}" cy="{y:.1f}" r="3.5" fill="#2c7a4b"/>')
        ty = max(y + 4, last_y[side] + 12)
        last_y[side] = ty
        text = e.text.split("\n", 1)[0]
        text = text if len(text) <= 46 else text[:45] + "…"
        color = "#c0392b" if e.kind in ("timeout", "error") else "#2c7a4b"
        if side == "A":
            out.append(f'<text x="{ax - 30}" y="{ty:.1f}" text-anchor="end" fill="{color}">'
                       f'<title>{E(e.source)}:{e.line_no}: {E(e.text)}</title>{E(text)}</text>')
        else:
            out.append(f'<text x="{ax + 30}" y="{ty:.1f}" fill="{color}">'
                       f'<title>{E(e.source)}:{e.line_no}: {E(e.text)}</title>{E(text)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _held_spans(report: LogReport, lo: float, hi: float) -> List[Tuple[str, float, float, str]]:
    """(side, from, to, text) in A's clock for HOL findings of the capture nearer the receiver."""
    out = []
    for f in report.facts.findings:
        n = f.numbers or {}
        if f.kind != "hol_blocked" or f.end < lo or f.start > hi:
            continue
        side = n.get("side", "A")
        if n.get("view") == "sender":
            continue
        out.append((side, f.start, f.end, f"held {n.get('released_bytes')} B {n.get('max_hold_ms')} ms"))
    return out


def _finding_html(f: Finding, zone) -> str:
    chain = (f.numbers or {}).get("chain") or [f.summary]
    ok = "" if f.caused_by else " ok"
    items = "".join(f"<li>{'' if i == 0 or s.startswith('→') else '← '}{E(s)}</li>" for i, s in enumerate(chain))
    ev = "".join(f"<div class=\"mono\">{E(x)}</div>" for x in f.evidence)
    tail = "" if f.caused_by else f"<div>{E(f.summary)}</div>"
    return (f'<div class="finding{ok}"><span class="kind">{E(f.kind)}</span> <span class="ids">{E(f.id)}'
            f'{" · caused by " + E(", ".join(f.caused_by)) if f.caused_by else ""}</span>'
            f'<ul class="chain">{items}</ul>{tail}{ev}</div>')


def render_html(report: LogReport, *, title: str = "tcpstall", tcp_findings: Sequence[Finding] = (),
                notes: Sequence[str] = (), windows: Optional[Sequence[Tuple[float, float]]] = None) -> str:
    """The whole page. `tcp_findings`: the capture findings to list too (lost, HOL, rwnd, retries)."""
    from ..diagnose import windows_of
    zone = report.zone
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{E(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{E(title)}</h1>"]
    names = report.facts.names
    parts.append('<div class="sub">' + " · ".join(f"{E(k)}: {E(v)}" for k, v in sorted(names.items()))
                 + f" · times: capture A's clock, {E(zone_label(zone))}</div>")
    d = report.diagnosis
    if report.logs:
        parts.append(f"<h2>Diagnosis: {len(d.findings)} app incident(s), {d.explained} explained by TCP</h2>")
        parts += [_finding_html(f, zone) for f in d.findings] or ["<p>The logs show no stall or timeout.</p>"]
    else:
        parts.append("<h2>Diagnosis</h2><p>No application log given (--log): the ladders show the capture "
                     "findings.</p>")
    wins = list(windows) if windows is not None else windows_of(d, report.facts)
    merged: List[Tuple[float, float]] = []
    for a, b in sorted(wins):
        a, b = a - 0.03, b + 0.03
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    for i, (a, b) in enumerate(merged, 1):
        parts.append(f"<h2>Ladder {i}: {E(clock(a, zone))} – {E(clock(b, zone))}</h2>")
        parts.append('<div class="sub">arrows: blue data, grey ACK, orange retransmission, red ✕ lost between '
                     'the captures, dashed ? not in the other capture; amber bar: data held behind a hole; green: log lines; red bracket: app '
                     'incident</div>')
        parts.append(_ladder(report, a, b, f"ladder {i}"))
    if tcp_findings:
        parts.append("<h2>Capture findings</h2><table><tr><th>id</th><th>kind</th><th>start</th><th>ms</th>"
                     "<th>caused by</th><th>summary</th></tr>")
        for f in tcp_findings:
            parts.append(f"<tr><td>{E(f.id)}</td><td>{E(f.kind)}</td><td>{E(clock(f.start, zone))}</td>"
                         f"<td>{f.duration_ms:.1f}</td><td>{E(', '.join(f.caused_by))}</td><td>{E(f.summary)}</td></tr>")
        parts.append("</table>")
    parts.append("<h2>Timeline</h2><table><tr><th>time</th><th>source</th><th>frame / line</th><th>event</th>"
                 "<th>what</th></tr>")
    for r in report.rows[:600]:
        where = r.frame if r.frame is not None else (f"{r.log}:{r.line_no}" if r.log else "")
        cls = "log" if r.source.startswith("log") else f"src-{r.source}"
        parts.append(f'<tr class="{cls}"><td class="mono">{E(clock(r.time, zone))}</td><td>{E(r.source)}</td>'
                     f"<td>{E(where)}</td><td class=\"mono\">{E(r.text)}</td><td>{E('; '.join(r.marks))}</td></tr>")
    parts.append("</table>")
    warn = list(report.warnings) + list(notes)
    if warn:
        parts.append("<h2>Notes</h2>" + "".join(f'<div class="warn">{E(w)}</div>' for w in warn))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(path: str, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same directory (renamed on success)."""
    out = Path(path)
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise OSError(f"{path}: directory {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=str(folder))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, out)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
