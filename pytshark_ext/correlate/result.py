"""What correlate returns: `CorrelationResult` and its parts, pure data (the renderers, the
timeline and diagnose consume it as is), and `CorrelateError` when there is no result.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from ..records import DelayStats, Finding, FlowPair, LostSegment
from ..tshark import TsharkError


class CorrelateError(TsharkError):
    """The two captures cannot be correlated (e.g. they share no TCP segment); one line."""


@dataclass(frozen=True)
class CaptureSpan:
    path: str
    packets: int
    first: Optional[float]          # this capture's own clock
    last: Optional[float]


@dataclass(frozen=True)
class DelaySpike:
    flow: str
    direction: str
    start: float                    # A's clock
    end: float
    peak_ms: float                  # worst one-way delay in the episode
    baseline_ms: float              # the direction's median one-way delay
    frame_a: int                    # A frame of the worst sample


@dataclass(frozen=True)
class Reordering:
    flow: str
    direction: str
    count: int
    examples: Tuple[Tuple[int, int, float], ...]   # (A frame, B frame, A time)


@dataclass(frozen=True)
class CorrelationResult:
    """Everything correlate found: pure data (a later diagnose step consumes it as is)."""
    a: CaptureSpan
    b: CaptureSpan
    clock_offset_ms: Optional[float]           # B's clock minus A's
    clock_offset_bound_ms: Optional[float]
    one_way_delay_ms: Dict[str, DelayStats]    # "A->B" / "B->A" (all flows of that orientation)
    flows: Tuple[FlowPair, ...]
    lost: Tuple[LostSegment, ...]              # lost between the capture points
    unseen_upstream: Tuple[LostSegment, ...]   # seen downstream only (upstream capture missed it)
    lost_total: int
    unseen_upstream_total: int
    not_captured: Tuple[LostSegment, ...]      # missing downstream but acknowledged: capture drop there
    not_captured_total: int
    reordering: Tuple[Reordering, ...]
    spikes: Tuple[DelaySpike, ...]
    overlap: Dict[str, object]                 # start/end (A clock), duration_s, partial, outside counts
    findings: Tuple[Finding, ...]
    unpaired: Dict[str, int]                   # connections seen in one capture only
    matched: int
    notes: Tuple[str, ...] = ()

    def to_b_clock(self, t_a: float) -> float:
        return t_a + (self.clock_offset_ms or 0.0) / 1000.0

    def to_a_clock(self, t_b: float) -> float:
        return t_b - (self.clock_offset_ms or 0.0) / 1000.0
