"""JSON for `tcpstall correlate --json` (a plain dict; the caller dumps it), and the findings[]
shape every --json output shares (`finding_dict`; analyze --json and scan --json use it too).

Schema (stable; times are epoch seconds in capture A's clock unless named otherwise):

    schema                     "tcpstall.correlate/1"
    capture_a / capture_b      {path, packets, first, last}            first/last: that capture's own clock
    clock_offset_ms            B's clock minus A's (null when no connection was seen both ways)
    clock_offset_bound_ms      |error| bound: half the room left by the minimum RTT between the points
    one_way_delay_ms           {"A->B": {count, min, median, p99, max, nearer_sender}, "B->A": {...}}
                               "A->B": directions whose sender is nearer capture A
    overlap                    {start, end, duration_s, partial, outside_a, outside_b, ...}
    matched                    transmissions seen in both captures
    flows[]                    {id, nat, a: [[ip, port], [ip, port]], b: [...], a_streams, b_streams,
                                directions[]: {direction, direction_b, nearer_sender, matched, only_a, only_b,
                                               one_way_delay_ms, ip_id_stable, reordered}}
    lost[]                     {id, flow, direction, nearer_sender, seen_at, frame, seq_raw, seq_rel, len, tsval,
                                transmission (1 = original), flags (tcp.flags as an int),
                                sent_at, delivered_by: null | {transmission, up_frame, down_frame, sent_at,
                                                               arrived_at, after_ms},
                                redundant: true when an earlier transmission of the same bytes had got
                                           through (a spurious retransmission lost: it delayed nothing)}
    lost_total                 (lost[] is capped; this is the full count)
    unseen_upstream[]          same shape: seen nearer the receiver only (the upstream capture missed it)
    unseen_upstream_total
    not_captured[]             same shape: never seen downstream yet acknowledged by the receiver, and no earlier
    not_captured_total         copy of its bytes got through (a capture drop at the downstream point, not a loss)
    reordering[]               {flow, direction, count, examples: [{frame_a, frame_b, time}]}
    delay_spikes[]             {flow, direction, start, end, peak_ms, median_ms, frame_a}
    findings[]                 {id, kind, summary, start, end, duration_ms, evidence, caused_by, frames, stream,
                                numbers}   kind: lost, unseen_upstream, capture_gap, delay_spike, reordering, and per
                                           capture (numbers.side) the plugin's hol_blocked, rwnd_throttling,
                                           retries
    unpaired_connections       {"A": n, "B": n}: connections seen in one capture only
    notes[]
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Optional

from ..records import DelayStats, Finding, LostSegment

SCHEMA_VERSION = 1


def _r(x: Optional[float], nd: int = 6):
    return None if x is None else round(x, nd)


def delay_dict(st: Optional[DelayStats]) -> Optional[dict]:
    return None if st is None else asdict(st)


def lost_dict(r: LostSegment) -> dict:
    d = {"id": r.id, "flow": r.flow, "direction": r.direction, "nearer_sender": r.upstream,
         "seen_at": r.seen_at, "frame": r.frame, "seq_raw": r.seq_raw, "seq_rel": r.seq_rel, "len": r.len,
         "tsval": r.tsval, "transmission": r.transmission, "flags": r.flags, "sent_at": _r(r.sent_at), "delivered_by": None,
         "redundant": r.redundant}
    if r.delivered_by is not None:
        dv = r.delivered_by
        d["delivered_by"] = {"transmission": dv.transmission, "up_frame": dv.up_frame,
                             "down_frame": dv.down_frame, "sent_at": _r(dv.sent_at),
                             "arrived_at": _r(dv.arrived_at), "after_ms": round(dv.after_ms, 3)}
    return d


def finding_dict(f: Finding) -> dict:
    """The one JSON shape of a Finding, in every command's output (analyze, correlate, scan, and the
    app findings of --log): the plugin's or the diagnosis's numbers stay under `numbers`, where a
    number named like a fixed key (retries' `kind`) cannot be lost."""
    return {"id": f.id, "kind": f.kind, "summary": f.summary, "start": _r(f.start), "end": _r(f.end),
            "duration_ms": round(f.duration_ms, 3), "evidence": list(f.evidence), "caused_by": list(f.caused_by),
            "frames": [x for x in f.frames if x is not None], "stream": f.stream,
            "numbers": dict(f.numbers or {})}


def correlate_json(result) -> dict:
    """The JSON document for a CorrelationResult."""
    ow = {}
    for k, st in result.one_way_delay_ms.items():
        ow[k] = {**asdict(st), "nearer_sender": k.split("->")[0]}
    return {
        "schema": f"tcpstall.correlate/{SCHEMA_VERSION}",
        "capture_a": asdict(result.a),
        "capture_b": asdict(result.b),
        "clock_offset_ms": result.clock_offset_ms,
        "clock_offset_bound_ms": result.clock_offset_bound_ms,
        "one_way_delay_ms": ow,
        "overlap": dict(result.overlap),
        "matched": result.matched,
        "flows": [{
            "id": f.id, "nat": f.nat, "a": [list(e) for e in f.a], "b": [list(e) for e in f.b],
            "a_streams": list(f.a_streams), "b_streams": list(f.b_streams),
            "directions": [{
                "direction": d.direction, "direction_b": d.direction_b, "nearer_sender": d.upstream,
                "matched": d.matched, "only_a": d.only_a, "only_b": d.only_b,
                "one_way_delay_ms": delay_dict(d.delay_ms), "ip_id_stable": d.ip_id_stable,
                "reordered": d.reordered} for d in f.directions]}
            for f in result.flows],
        "lost": [lost_dict(r) for r in result.lost],
        "lost_total": result.lost_total,
        "unseen_upstream": [lost_dict(r) for r in result.unseen_upstream],
        "unseen_upstream_total": result.unseen_upstream_total,
        "not_captured": [lost_dict(r) for r in result.not_captured],
        "not_captured_total": result.not_captured_total,
        "reordering": [{"flow": r.flow, "direction": r.direction, "count": r.count,
                        "examples": [{"frame_a": a, "frame_b": b, "time": _r(t)} for a, b, t in r.examples]}
                       for r in result.reordering],
        "delay_spikes": [{"flow": s.flow, "direction": s.direction, "start": _r(s.start), "end": _r(s.end),
                          "peak_ms": s.peak_ms, "median_ms": s.baseline_ms, "frame_a": s.frame_a}
                         for s in result.spikes],
        "findings": [finding_dict(f) for f in result.findings],
        "unpaired_connections": dict(result.unpaired),
        "notes": list(result.notes),
    }
