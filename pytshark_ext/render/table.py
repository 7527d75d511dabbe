"""Readable tables (tabulate) for `tcpstall correlate`. Times are seconds since the first packet
of capture A (Wireshark's frame.time_relative there), so rows can be found in Wireshark."""
from __future__ import annotations

import datetime as _dt
from typing import List, Optional

from tabulate import tabulate


def _utc(t: Optional[float]) -> str:
    if t is None:
        return "-"
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def _ms(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.3f}"


def correlate_table(result, max_rows: int = 50) -> str:
    t0 = result.a.first or 0.0
    rel = (lambda t: f"{t - t0:.6f}")
    out: List[str] = []
    out.append(f"A: {result.a.path}  ({result.a.packets} TCP packets, from {_utc(result.a.first)})")
    out.append(f"B: {result.b.path}  ({result.b.packets} TCP packets, from {_utc(result.b.first)}, B's clock)")
    ov = result.overlap
    out.append(f"overlap: {ov['duration_s']:.3f} s"
               + (f" (partial: {ov['outside_a']} packets of A and {ov['outside_b']} of B outside it)"
                  if ov.get("partial") else "")
               + f"; {result.matched} transmissions seen in both")
    if result.clock_offset_ms is not None:
        out.append(f"clock offset (B - A): {result.clock_offset_ms:+.3f} ms "
                   f"± {result.clock_offset_bound_ms:.3f} ms (exact if the path delay is symmetric)")
    else:
        out.append("clock offset (B - A): unknown (no connection seen both ways in both captures)")
    out.append("")
    rows = []
    for f in result.flows:
        for d in f.directions:
            st = d.delay_ms
            rows.append([f.id, d.direction + (f"  [B: {d.direction_b}]" if f.nat else ""),
                         f"{d.upstream}" if d.upstream else "?", d.matched, d.only_a, d.only_b,
                         _ms(st.min if st else None), _ms(st.median if st else None),
                         _ms(st.p99 if st else None), _ms(st.max if st else None), d.reordered])
    out.append(tabulate(rows, headers=["flow", "direction (A's addresses)", "nearer sender", "both", "A only",
                                       "B only", "min ms", "median ms", "p99 ms", "max ms", "reordered"],
                        tablefmt="simple", disable_numparse=True))
    out.append("")
    if result.lost_total:
        rows = []
        for r in result.lost[:max_rows]:
            dv = r.delivered_by
            down = "B" if r.upstream == "A" else "A"
            how = (f"transmission #{dv.transmission} ({r.upstream} frame {dv.up_frame}) reached {down} "
                   f"frame {dv.down_frame} +{dv.after_ms:.1f} ms" if dv
                   else f"an earlier copy (spurious retransmission #{r.transmission})" if r.redundant
                   else "not delivered in the captures")
            rows.append([r.id, r.direction, f"{r.seen_at} {r.frame}", r.seq_rel, r.seq_raw, r.len,
                         rel(r.sent_at), how])
        out.append(f"lost between the capture points: {result.lost_total}")
        out.append(tabulate(rows, headers=["id", "direction", "frame", "seq (rel)", "seq (raw)", "len", "sent s",
                                           "delivered by"], tablefmt="simple", disable_numparse=True))
        if result.lost_total > max_rows:
            out.append(f"… {result.lost_total - max_rows} more (--json lists up to the cap)")
    else:
        out.append("lost between the capture points: none")
    if result.unseen_upstream_total:
        out.append("")
        out.append(f"seen only nearer the receiver (the capture nearer the sender missed them): "
                   f"{result.unseen_upstream_total}")
        rows = [[r.id, r.direction, f"{r.seen_at} {r.frame}", r.seq_rel, r.len, rel(r.sent_at)]
                for r in result.unseen_upstream[:max_rows]]
        out.append(tabulate(rows, headers=["id", "direction", "frame", "seq (rel)", "len", "seen s"],
                            tablefmt="simple", disable_numparse=True))
    if result.not_captured_total:
        out.append("")
        out.append(f"never seen downstream but acknowledged by the receiver (capture drops, not losses): "
                   f"{result.not_captured_total}")
    other = [f for f in result.findings if f.kind not in ("lost", "unseen_upstream")]
    if other:
        out.append("")
        rows = [[f.id, f.kind, rel(f.start), f"{f.duration_ms:.1f}", ",".join(f.caused_by) or "-", f.summary]
                for f in other[:max_rows]]
        out.append(tabulate(rows, headers=["finding", "kind", "start s", "ms", "caused by", "summary"],
                            tablefmt="simple", disable_numparse=True))
    if result.unpaired.get("A") or result.unpaired.get("B"):
        out.append("")
        out.append(f"connections in one capture only: A {result.unpaired.get('A', 0)}, B {result.unpaired.get('B', 0)}")
    for n in result.notes:
        out.append(f"note: {n}")
    return "\n".join(out)
