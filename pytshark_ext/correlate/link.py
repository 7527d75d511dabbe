"""The tcpstall plugin's findings of each capture (`analyze`) added to a correlation, each HOL
and retries finding linked to the losses between the capture points that explain it.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Dict, Iterable, List

from ..records import Finding
from .result import CorrelationResult


LINKED_KINDS = ("hol_blocked", "retries")     # rwnd throttling is not caused by a loss


def link_side_findings(result: CorrelationResult, side: str, findings: Iterable[Finding]) -> CorrelationResult:
    """Add one capture's findings (tcpstall plugin: hol_blocked, rwnd_throttling, retries), times
    moved to A's clock and ids prefixed with the side, each HOL/retries finding linked
    (`caused_by`) to the lost segments that explain it:
      - hol_blocked: the loss whose delivering retransmission is the frame that filled the hole
        (`numbers["filled_by_frame"]` in that capture); without it, a loss of the same flow sent
        before the hold ended and delivered at or after the hold started;
      - retries: losses of the same flow between the first send and the last retransmission.
    Pure: returns a new result."""
    if side not in ("A", "B"):
        raise ValueError(f"side must be A or B, not {side!r}")
    shift = 0.0 if side == "A" else -(result.clock_offset_ms or 0.0) / 1000.0
    flows_of_stream: Dict[int, set] = {}
    for f in result.flows:
        for st in (f.a_streams if side == "A" else f.b_streams):
            flows_of_stream.setdefault(st, set()).add(f.id)
    # the losses by the frame of this capture that delivered them (a HOL finding names the frame
    # that filled its hole), and those never delivered: indexes into result.lost, in its order
    # (a lossy bulk pair has thousands of HOL findings and of losses)
    lost = [r for r in result.lost if not r.redundant]
    delivered_in: Dict[int, List[int]] = {}
    undelivered: List[int] = []
    for i, r in enumerate(lost):
        dv = r.delivered_by
        if dv is None:
            undelivered.append(i)
        elif side == r.upstream:
            delivered_in.setdefault(dv.up_frame, []).append(i)
        else:                               # (side is the downstream capture)
            delivered_in.setdefault(dv.down_frame, []).append(i)

    def in_time(r, start: float, end: float) -> bool:
        done = r.delivered_by.arrived_at if r.delivered_by else math.inf
        return bool(r.len) and r.sent_at <= end + 1e-6 and done >= start - 1e-3

    added = []
    for n, f in enumerate(findings, 1):
        start, end = f.start + shift, f.end + shift
        flows = flows_of_stream.get(f.stream) if f.stream is not None else None
        causes: List[str] = []
        if f.kind in LINKED_KINDS:
            filled = (f.numbers or {}).get("filled_by_frame")
            if f.kind == "hol_blocked" and filled is not None:
                # the loss its filler delivered; a loss never delivered, by time
                picked = sorted(delivered_in.get(filled, []) + [i for i in undelivered if in_time(lost[i], start, end)])
            else:
                picked = [i for i, r in enumerate(lost) if in_time(r, start, end)]
            causes = [lost[i].id for i in picked if flows is None or lost[i].flow in flows]
        base_id = f.id or f"{f.kind}-{n}"
        added.append(replace(f, start=start, end=end, id=f"{side}:{base_id}",
                             caused_by=tuple(dict.fromkeys(tuple(f.caused_by) + tuple(causes))),
                             evidence=tuple(f.evidence) + (f"capture {side}, tcp.stream {f.stream}",),
                             numbers={**(f.numbers or {}), "side": side,
                                      "flow": ",".join(sorted(flows)) if flows else None}))
    merged = sorted(list(result.findings) + added, key=lambda x: (x.start, x.kind))
    return replace(result, findings=tuple(merged))


def with_plugin_findings(result: CorrelationResult, analysis_a, analysis_b) -> CorrelationResult:
    """`result` plus both captures' plugin findings, linked to the losses (pure)."""
    result = link_side_findings(result, "A", analysis_a.findings)
    return link_side_findings(result, "B", analysis_b.findings)
