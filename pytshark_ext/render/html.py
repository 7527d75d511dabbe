"""`--html OUT.html`: one self-contained page (inline CSS and SVG, no script, no external
resource) with a ladder diagram per incident window and the findings.

Ladder: capture A's host on the left, B's on the right, time downwards (capture A's clock; long
quiet stretches are folded, with a ≈ marker saying how long). A packet seen in both captures is
an arrow from where it was seen first to where it was seen second; a packet lost between the
captures ends in ✕ halfway; amber bars on an axis are data held behind a hole (HOL); log events
are written beside their host, app incidents as brackets.

The page is an lxml tree serialized once, so it is well-formed and every capture- or log-derived
string is escaped by construction (a log line holding `<script>` stays text). It is written as
polyglot markup: HTML5 for the browser, well-formed XML for a parser; the ladder is inline SVG in
the SVG namespace.

Label layout (no two labels overlap): four columns side by side (timestamps, A's log lines,
arrow labels between the axes, B's log lines); a label is cut to its column's width, measured with
a conservative monospace character width, and keeps its full text as a <title> tooltip. Labels of
one instant stack in rows under it, and the time scale leaves every labelled instant as many rows
as its fullest column needs before the next one.

`render_html` is pure (report -> str); `write_html` writes through a temporary file in the
target directory and renames it, so OUT.html is never half-written.
"""
from __future__ import annotations

import bisect
import itertools
import os
import statistics
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from lxml import etree
from lxml.builder import E as H          # HTML elements, no namespace (the page is served as text/html)

from ..correlate import match_frames
from ..diagnose import capture_host, clock, zone_label
from ..records import Finding, LogEvent, Segment
from ..timeline import LogReport, flags_text

SVG_NS = "http://www.w3.org/2000/svg"
MAX_ARROWS = 60           # per window; the rest is counted in a fold marker
X_A, X_B = 460, 840       # the two axes
WIDTH = 1200
TOP = 60
GAP_CAP_PX = 250          # a quiet stretch longer than this is folded ...
FOLD_PX = 50              # ... to this height
ROW_PX = 16               # one label row: an 11 px line box is ~13 px high
FONT_PX = 11              # ladder text
TIME_FONT_PX = 10         # the timestamp column
MARK_FONT_PX = 12         # ✕ and ? where an arrow ends between the axes
# Monospace fonts advance 0.6 em per character (DejaVu, Noto, Liberation Mono, Menlo, Consolas);
# 0.62 leaves room for a fallback font. Wide (CJK) characters take a full em.
CHAR_EM, WIDE_EM = 0.62, 1.0
MONO = '"DejaVu Sans Mono","Noto Sans Mono","Liberation Mono",Menlo,Consolas,ui-monospace,monospace'

# Written with the XML serializer, which would escape <, > and &: the CSS must not hold them.
CSS = f"""
body{{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#1d232b;background:#fff}}
h1{{font-size:20px;margin:0 0 4px}} h2{{font-size:16px;margin:28px 0 8px}} .sub{{color:#5b6570}}
.finding{{border-left:4px solid #c0392b;padding:6px 12px;margin:10px 0;background:#fbf3f2}}
.finding.ok{{border-color:#7f8c8d;background:#f4f6f7}}
.chain{{margin:4px 0 0 0;padding-left:18px}} .chain li{{margin:2px 0}}
.kind{{font-weight:600}} .ids{{color:#5b6570;font-size:12px}}
table{{border-collapse:collapse;font-size:12px}} td,th{{border-bottom:1px solid #e3e6e8;padding:3px 8px;text-align:left;vertical-align:top;overflow-wrap:anywhere}}
th{{background:#f4f6f7}} .src-A{{color:#1f5fa8}} .src-B{{color:#8e44ad}} .log{{color:#2c7a4b}} .warn{{color:#a35a00}}
svg{{max-width:100%;height:auto}}
svg text{{font-family:{MONO};font-size:{FONT_PX}px}} svg text.time{{font-size:{TIME_FONT_PX}px}}
svg text.mark{{font-size:{MARK_FONT_PX}px}} svg text.axis{{font-weight:bold}}
.mono{{font-family:{MONO};font-size:12px}}
"""


@dataclass
class _Arrow:
    t0: float
    t1: Optional[float]       # None: lost (ends in ✕)
    from_a: bool              # drawn from A's axis to B's
    label: str
    kind: str                 # data / ack / retx / lost
    marks: Tuple[str, ...] = ()


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
    # the pairs correlate's engine makes of these packets (content, TCP timestamps, IP IDs)
    pairs = match_frames(a, b)
    pending = {s.frame: s for s in b}
    a_dir_from_a: Dict[tuple, bool] = {}
    unmatched_a = []
    for s in a:
        m = pending.pop(pairs.get(s.frame), None)
        if m is not None:
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
    for m in pending.values():
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


# --- label layout ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Column:
    left: float
    right: float
    baseline: float           # label baseline relative to its instant's y (above the arrow: negative)
    font_px: int
    css_class: Optional[str] = None


COLUMNS = {
    "time": _Column(4, 100, 4, TIME_FONT_PX, "time"),     # HH:MM:SS.ffffff of each arrow's start
    "A": _Column(108, X_A - 22, 4, FONT_PX),                # A's log lines, left of A's incident bracket
    "mid": _Column(X_A + 8, X_B - 8, -4, FONT_PX),          # arrow and HOL labels between the axes
    "B": _Column(X_B + 22, WIDTH - 4, 4, FONT_PX),          # B's log lines, right of B's bracket
}


def _text_px(text: str, font_px: float) -> float:
    """Conservative rendered width of `text` in the ladder's monospace font."""
    return font_px * sum(WIDE_EM if unicodedata.east_asian_width(c) in "WF" else CHAR_EM for c in text)


def _fit(text: str, width_px: float, font_px: float) -> str:
    """`text`, cut and ended with … where it would be wider than `width_px`."""
    if _text_px(text, font_px) <= width_px:
        return text
    room = width_px - _text_px("…", font_px)
    ends = itertools.accumulate(_text_px(c, font_px) for c in text)
    return text[:sum(1 for end in ends if end <= room)] + "…"


@dataclass(frozen=True)
class _Label:
    t: float                  # the instant it belongs to (A's clock)
    column: str               # key of COLUMNS
    text: str
    color: str
    slot: int                 # row under the instant: labels of one instant stack
    align: str = "start"      # start / end: against the column's left / right edge
    title: str = ""           # tooltip (default: the full text when the label is cut)


class _Rows:
    """Rows taken per (column, instant), and the rows each instant needs: those of its fullest column."""

    def __init__(self) -> None:
        self._taken: Dict[Tuple[str, float], int] = {}
        self.needed: Dict[float, int] = {}

    def take(self, column: str, t: float, n: int = 1) -> int:
        """The first of `n` free rows of `column` under instant `t`."""
        slot = self._taken.get((column, t), 0)
        self._taken[(column, t)] = slot + n
        self.needed[t] = max(self.needed.get(t, 0), slot + n)
        return slot


def _baseline(y: float, column: str, slot: int) -> float:
    return y + COLUMNS[column].baseline + slot * ROW_PX


class _YMap:
    """Piecewise-linear time -> y: px_per_ms within activity, quiet stretches folded. A labelled
    instant starts no higher than where the rows of the previous labelled instant end."""

    def __init__(self, times: Sequence[float], rows: Dict[float, int], px_per_ms: float):
        self.ts = sorted(set(times) | set(rows))
        self.ys: List[float] = []
        self.folds: List[Tuple[float, float]] = []     # (y, seconds folded)
        y = free = TOP                                  # free: below the last labelled instant's rows
        prev = None
        for t in self.ts:
            if prev is not None:
                dy = (t - prev) * 1000 * px_per_ms
                if dy > GAP_CAP_PX:
                    y = max(y, free)
                    self.folds.append((y + FOLD_PX / 2, t - prev))
                    dy = FOLD_PX
                y += dy
            if rows.get(t):
                y = max(y, free)
                free = y + rows[t] * ROW_PX
            self.ys.append(y)
            prev = t
        self.bottom = max(y, free) + 20                # where the axes end
        self.height = self.bottom + 30

    def __call__(self, t: float) -> float:
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
MARKED = ("lost", "unseen")     # arrows that end between the axes in a mark (✕, ?) one row under their label


def _arrow_labels(arrows: Sequence[_Arrow], rows: _Rows, zone) -> Tuple[List[_Label], List[Optional[int]]]:
    """Each arrow's label and timestamp; and per arrow the row of its end mark (✕, ?), if any."""
    labels: List[_Label] = []
    mark_slots: List[Optional[int]] = []
    stamped = set()
    for x in arrows:
        stamp = clock(x.t0, zone)
        if stamp not in stamped:           # instants apart by less than the µs shown share one
            stamped.add(stamp)
            labels.append(_Label(x.t0, "time", stamp, "#7f8c8d", rows.take("time", x.t0)))
        mark = None
        if x.kind in ("data", "retx") + MARKED or x.marks:
            slot = rows.take("mid", x.t0, 2 if x.kind in MARKED else 1)
            mark = slot + 1 if x.kind in MARKED else None
            text = x.label + (" — " + "; ".join(x.marks) if x.marks else "")
            labels.append(_Label(x.t0, "mid", text, COLORS.get(x.kind, "#1f5fa8"), slot,
                                 "start" if x.from_a else "end"))
        mark_slots.append(mark)
    return labels, mark_slots


def _log_labels(logs: Sequence[Tuple[str, LogEvent]], rows: _Rows) -> List[_Label]:
    """Log lines (first line of each) beside their host, full text and origin as tooltip."""
    return [_Label(e.time, side, e.text.split("\n", 1)[0],
                   "#c0392b" if e.kind in ("timeout", "error") else "#2c7a4b", rows.take(side, e.time),
                   "end" if side == "A" else "start", f"{e.source}:{e.line_no}: {e.text}")
            for side, e in logs]


def _held_labels(held: Sequence[Tuple[str, float, float, str]], rows: _Rows) -> List[_Label]:
    """'held N B M ms' beside its amber bar, at the bar's middle."""
    out = []
    for side, a, b, text in held:
        mid = (a + b) / 2
        out.append(_Label(mid, "mid", text, "#b9770e", rows.take("mid", mid), "start" if side == "A" else "end"))
    return out


# --- SVG drawing ----------------------------------------------------------------------------------

def _svg(parent, tag: str, text: Optional[str] = None, title: Optional[str] = None, **attrs):
    """Append an SVG element. `stroke_width=2` is written stroke-width="2", `class_` class; floats get
    one decimal; None attributes are left out. `title` becomes the element's tooltip."""
    el = etree.SubElement(parent, f"{{{SVG_NS}}}{tag}",
                          {k.rstrip("_").replace("_", "-"): f"{v:.1f}" if isinstance(v, float) else str(v)
                           for k, v in attrs.items() if v is not None})
    if title:
        etree.SubElement(el, f"{{{SVG_NS}}}title").text = title
        el[0].tail = text
    else:
        el.text = text
    return el


def _svg_text(parent, text: str, width_px: float, font_px: float = FONT_PX, title: str = "", **attrs):
    """A <text> cut to `width_px`; its tooltip is `title`, or the full text when it was cut."""
    shown = _fit(text, width_px, font_px)
    return _svg(parent, "text", shown, title or (text if shown != text else None), **attrs)


def _draw_label(svg, lb: _Label, ymap: _YMap) -> None:
    col = COLUMNS[lb.column]
    _svg_text(svg, lb.text, col.right - col.left, col.font_px, lb.title,
              x=col.left if lb.align == "start" else col.right, y=_baseline(ymap(lb.t), lb.column, lb.slot),
              text_anchor=lb.align, fill=lb.color, class_=col.css_class)


def _draw_axes(svg, report: LogReport, ymap: _YMap) -> None:
    """The two hosts' names on top, their axes, and the fold marks across them."""
    names = report.facts.names
    half = (X_B - X_A) / 2 - 8                 # a centred title stops short of the middle
    left_width, right_width = 2 * min(half, X_A - 4), 2 * min(half, WIDTH - 4 - X_B)
    _svg_text(svg, "A: " + os.path.basename(names.get("A", "")), left_width, x=X_A, y=20,
              text_anchor="middle", class_="axis")
    if "B" in report.packets:
        right = "B: " + os.path.basename(names.get("B", ""))
    else:
        host = capture_host(report.packets["A"].segments[:20000]) or ""
        peers = {s.dst if s.src == host else s.src for s in report.packets["A"].segments[:2000]}
        right = "peer " + ", ".join(sorted(peers)[:2])
        _svg_text(svg, f"(host {host})", left_width, x=X_A, y=34, text_anchor="middle", fill="#5b6570")
    _svg_text(svg, right, right_width, x=X_B, y=20, text_anchor="middle", class_="axis")
    for x in (X_A, X_B):
        _svg(svg, "line", x1=x, y1=TOP - 20, x2=x, y2=ymap.bottom, stroke="#34495e", stroke_width=2)
    mid = COLUMNS["mid"]
    for y, secs in ymap.folds:
        _svg_text(svg, f"≈ {secs * 1000:.0f} ms folded", mid.right - mid.left,
                  x=(X_A + X_B) / 2, y=y + 4, text_anchor="middle", fill="#7f8c8d")
        for x in (X_A, X_B):
            _svg(svg, "line", x1=x - 8, y1=y - 3, x2=x + 8, y2=y + 3, stroke="#7f8c8d")


def _draw_held_bars(svg, held: Sequence[Tuple[str, float, float, str]], ymap: _YMap) -> None:
    for side, a, b, text in held:
        x = X_A if side == "A" else X_B
        _svg(svg, "rect", title=text, x=x - 5, y=ymap(a), width=10, height=max(ymap(b) - ymap(a), 2.0),
             fill="#f39c12", opacity="0.8")


def _draw_arrow(svg, x: _Arrow, ymap: _YMap, mark_slot: Optional[int], marker_id: str) -> None:
    y0 = ymap(x.t0)
    color = COLORS.get(x.kind, "#1f5fa8")
    x0, x1 = (X_A, X_B) if x.from_a else (X_B, X_A)
    xm = (x0 + x1) / 2
    if x.kind in MARKED:
        mark_y = _baseline(y0, "mid", mark_slot)
        if x.kind == "lost":
            _svg(svg, "line", x1=x0, y1=y0, x2=xm, y2=mark_y - 4, stroke=color, stroke_width=2)
            _svg(svg, "text", "✕", x=xm, y=mark_y, text_anchor="middle", fill=color, class_="mark")
        else:
            retx = any("retransmission" in m for m in x.marks)
            stroke = COLORS["retx"] if retx else color
            _svg(svg, "line", x1=x0, y1=y0, x2=xm, y2=mark_y - 4, stroke=stroke, stroke_width=2,
                 stroke_dasharray="5 3")
            _svg(svg, "text", "?", x=xm + 4, y=mark_y, fill=stroke, class_="mark")
    elif x.kind == "edge":
        _svg(svg, "line", x1=x0, y1=y0, x2=x0 + (x1 - x0) * 0.25, y2=y0, stroke=color, stroke_dasharray="3 3")
    else:
        _svg(svg, "line", title=x.label + ("; " + "; ".join(x.marks) if x.marks else ""),
             x1=x0, y1=y0, x2=x1, y2=ymap(x.t1), stroke=color,
             stroke_width=2 if x.kind in ("data", "retx") else 1, marker_end=f"url(#{marker_id})")


def _draw_incidents(svg, incidents: Sequence[Finding], ymap: _YMap, lo: float) -> None:
    """App incidents: red brackets beside their host."""
    for f in incidents:
        side = (f.numbers or {}).get("side", "A")
        x = X_A - 14 if side == "A" else X_B + 14
        ya, yb = ymap(max(f.start, lo - 1)), ymap(f.end)
        dx = -6 if side == "A" else 6
        _svg(svg, "path", title=f.summary, d=f"M{x - dx},{ya:.1f} L{x},{ya:.1f} L{x},{yb:.1f} L{x - dx},{yb:.1f}",
             fill="none", stroke="#c0392b", stroke_width=2)


def _window_logs(report: LogReport, lo: float, hi: float) -> List[Tuple[str, LogEvent]]:
    logs = [(lg.side, e) for lg in report.logs for e in lg.events
            if lo <= e.time <= hi or (e.start is not None and e.start <= hi and e.time >= lo)]
    if len(logs) > 80:
        logs = [x for x in logs if x[1].kind != "line"][:80]
    return logs


def _px_per_ms(arrows: Sequence[_Arrow], times: Sequence[float]) -> float:
    """The typical gap between consecutive packets gets ~16 px (dense bursts stay readable), but a
    short window still fills ~900 px; long quiet stretches are folded by _YMap."""
    distinct = sorted(set(times))
    starts = sorted(set(x.t0 for x in arrows))
    gaps = [(b - a) * 1000 for a, b in zip(starts, starts[1:]) if b > a]     # between packets
    span_ms = max((distinct[-1] - distinct[0]) * 1000, 1.0)
    px = max(16.0 / statistics.median(gaps) if gaps else 1.0, 900.0 / span_ms)
    return min(30.0, max(0.5, px))


def _ladder(report: LogReport, lo: float, hi: float, number: int):
    """The SVG ladder of window [lo, hi] (A's clock), or None when nothing happened in it."""
    arrows, hidden = _window_arrows(report, lo, hi)
    logs = _window_logs(report, lo, hi)
    incidents = [f for f in report.diagnosis.findings if f.end >= lo and f.start <= hi]
    held = _held_spans(report, lo, hi)
    times = [x.t0 for x in arrows] + [x.t1 for x in arrows if x.t1 is not None]
    times += [e.time for _, e in logs] + [f.start for f in incidents] + [f.end for f in incidents]
    times += [t for _, a, b, _ in held for t in (a, b)]
    if not times:
        return None
    rows = _Rows()
    labels, mark_slots = _arrow_labels(arrows, rows, report.zone)
    labels += _log_labels(logs, rows) + _held_labels(held, rows)
    ymap = _YMap(times, rows.needed, _px_per_ms(arrows, times))
    height = int(ymap.height)
    svg = etree.Element(f"{{{SVG_NS}}}svg", nsmap={None: SVG_NS})
    for k, v in {"width": WIDTH, "height": height, "viewBox": f"0 0 {WIDTH} {height}", "role": "img",
                 "aria-label": f"ladder {number}"}.items():
        svg.set(k, str(v))
    marker_id = f"arrowhead-{number}"
    marker = _svg(_svg(svg, "defs"), "marker", id=marker_id, markerWidth=8, markerHeight=8, refX=7, refY=3,
                  orient="auto")
    _svg(marker, "path", d="M0,0 L7,3 L0,6 z", fill="context-stroke")
    _svg(svg, "rect", x=0, y=0, width=WIDTH, height=height, fill="#fff")
    _draw_axes(svg, report, ymap)
    _draw_held_bars(svg, held, ymap)
    for arrow, mark_slot in zip(arrows, mark_slots):
        _draw_arrow(svg, arrow, ymap, mark_slot, marker_id)
    _draw_incidents(svg, incidents, ymap, lo)
    for side, e in logs:
        _svg(svg, "circle", cx=X_A if side == "A" else X_B, cy=ymap(e.time), r="3.5", fill="#2c7a4b")
    for lb in labels:
        _draw_label(svg, lb, ymap)
    if hidden:
        _svg(svg, "text", f"{hidden} more packets in this window not drawn", x=(X_A + X_B) / 2,
             y=ymap.bottom + 18, text_anchor="middle", fill="#7f8c8d")
    return svg


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


# --- the page -------------------------------------------------------------------------------------

LEGEND = ("arrows: blue data, grey ACK, orange retransmission, red ✕ lost between the captures, dashed ? "
          "not in the other capture; amber bar: data held behind a hole; green: log lines; red bracket: app "
          "incident")
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def _finding_div(f: Finding):
    chain = (f.numbers or {}).get("chain") or [f.summary]
    ids = f.id + (" · caused by " + ", ".join(f.caused_by) if f.caused_by else "")
    div = H.div({"class": "finding" + ("" if f.caused_by else " ok")},
                H.span({"class": "kind"}, f.kind), " ", H.span({"class": "ids"}, ids),
                H.ul({"class": "chain"}, *[H.li(("" if i == 0 or s.startswith("→") else "← ") + s)
                                           for i, s in enumerate(chain)]))
    if not f.caused_by:
        div.append(H.div(f.summary))
    div.extend(H.div({"class": "mono"}, x) for x in f.evidence)
    return div


def _diagnosis(report: LogReport) -> list:
    d = report.diagnosis
    if not report.logs:
        return [H.h2("Diagnosis"),
                H.p("No application log given (--log): the ladders show the capture findings.")]
    return ([H.h2(f"Diagnosis: {len(d.findings)} app incident(s), {d.explained} explained by TCP")]
            + ([_finding_div(f) for f in d.findings] or [H.p("The logs show no stall or timeout.")]))


def _merged_windows(wins: Sequence[Tuple[float, float]]) -> List[Tuple[float, float]]:
    """Windows widened by 30 ms each side; overlapping ones merged."""
    merged: List[Tuple[float, float]] = []
    for a, b in sorted(wins):
        a, b = a - 0.03, b + 0.03
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _table(header: Sequence[str], rows) -> etree._Element:
    return H.table(H.tr(*[H.th(h) for h in header]), *rows)


def _findings_table(findings: Sequence[Finding], zone):
    return _table(("id", "kind", "start", "ms", "caused by", "summary"),
                  (H.tr(H.td(f.id), H.td(f.kind), H.td(clock(f.start, zone)), H.td(f"{f.duration_ms:.1f}"),
                        H.td(", ".join(f.caused_by)), H.td(f.summary)) for f in findings))


def _timeline_table(report: LogReport):
    def row(r):
        where = r.frame if r.frame is not None else (f"{r.log}:{r.line_no}" if r.log else "")
        cls = "log" if r.source.startswith("log") else f"src-{r.source}"
        return H.tr({"class": cls}, H.td({"class": "mono"}, clock(r.time, report.zone)), H.td(r.source),
                    H.td(str(where)), H.td({"class": "mono"}, r.text), H.td("; ".join(r.marks)))
    return _table(("time", "source", "frame / line", "event", "what"), (row(r) for r in report.rows[:600]))


def _polyglot(page) -> str:
    """The tree as markup that is both HTML5 and well-formed XML."""
    for el in page.iter():
        if isinstance(el.tag, str) and "}" not in el.tag and el.tag not in VOID and el.text is None and not len(el):
            el.text = ""      # <td></td>, never <td/>: an HTML parser reads <td/> as an open tag
    return etree.tostring(page, encoding="unicode", doctype="<!DOCTYPE html>")


def render_html(report: LogReport, *, title: str = "tcpstall", tcp_findings: Sequence[Finding] = (),
                notes: Sequence[str] = (), windows: Optional[Sequence[Tuple[float, float]]] = None) -> str:
    """The whole page. `tcp_findings`: the capture findings to list too (lost, HOL, rwnd, retries)."""
    from ..diagnose import windows_of
    zone = report.zone
    names = " · ".join(f"{k}: {v}" for k, v in sorted(report.facts.names.items()))
    body = H.body(H.h1(title), H.div({"class": "sub"}, f"{names} · times: capture A's clock, {zone_label(zone)}"))
    body.extend(_diagnosis(report))
    wins = list(windows) if windows is not None else windows_of(report.diagnosis, report.facts)
    for i, (a, b) in enumerate(_merged_windows(wins), 1):
        body.extend([H.h2(f"Ladder {i}: {clock(a, zone)} – {clock(b, zone)}"), H.div({"class": "sub"}, LEGEND)])
        svg = _ladder(report, a, b, i)
        if svg is not None:
            body.append(svg)
    if tcp_findings:
        body.extend([H.h2("Capture findings"), _findings_table(tcp_findings, zone)])
    body.extend([H.h2("Timeline"), _timeline_table(report)])
    warn = list(report.warnings) + list(notes)
    if warn:
        body.append(H.h2("Notes"))
        body.extend(H.div({"class": "warn"}, w) for w in warn)
    head = H.head(H.meta(charset="utf-8"), H.meta(name="viewport", content="width=device-width, initial-scale=1"),
                  H.title(title), H.style(CSS))
    return _polyglot(H.html({"lang": "en"}, head, body))


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
