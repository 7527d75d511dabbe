"""Two captures of the same connections, laid side by side: which segments were lost between
the capture points, the clock offset between the capture hosts, one-way delays, reordering.

Entry points (pure: no tshark here, pytshark_ext/pipeline.py reads the captures):
`correlate(segments_a, segments_b)` over iterables of `Segment`, `correlate_rows` over the rows
of fieldrows (as tshark prints them, consumed as they arrive); `with_plugin_findings` adds the
plugin's findings of each capture, linked to the losses. The stages, one module each:

    fieldrows     tshark -T fields output -> rows (and the reader thread per tshark run)
    capture_span  when each capture process was running (pcapng ISB), beyond its packets
    matching      the streaming engine: transmissions matched across the captures by content
    builder       the engine's final state -> CorrelationResult (offset, delays, losses, spikes)
    findings      the finding texts of a correlation
    result        CorrelationResult and its parts (pure data), CorrelateError
    link          the plugin's findings per capture, linked to the losses that explain them
"""
from __future__ import annotations

import gc
from typing import Dict, Iterable, Optional, Tuple

from ..records import Segment
from .builder import Builder
from .capture_span import capture_span
from .fieldrows import CORRELATE_FIELDS, Row, correlate_command_kwargs, rows_from_blocks, rows_from_segments
from .link import link_side_findings, with_plugin_findings
from .matching import CorrelateOptions, Engine
from .result import CaptureSpan, CorrelateError, CorrelationResult, DelaySpike, Reordering

__all__ = [
    "correlate", "correlate_rows", "match_frames", "CorrelateOptions", "CorrelateError",
    "CorrelationResult", "CaptureSpan", "DelaySpike", "Reordering", "link_side_findings",
    "with_plugin_findings", "capture_span", "CORRELATE_FIELDS", "correlate_command_kwargs",
    "rows_from_blocks", "rows_from_segments",
]


Span = Optional[Tuple[Optional[float], Optional[float]]]


def correlate(segments_a: Iterable[Segment], segments_b: Iterable[Segment], *, name_a: str = "A",
              name_b: str = "B", options: Optional[CorrelateOptions] = None,
              span_a: Span = None, span_b: Span = None) -> CorrelationResult:
    """Correlate two streams of Segments (each in capture order). `span_a`/`span_b`: when each
    capture was running, if known beyond its packets (see `capture_span`)."""
    return correlate_rows(rows_from_segments(segments_a), rows_from_segments(segments_b),
                          name_a=name_a, name_b=name_b, options=options, span_a=span_a, span_b=span_b)


def match_frames(segments_a: Iterable[Segment], segments_b: Iterable[Segment],
                 options: Optional[CorrelateOptions] = None) -> Dict[int, int]:
    """A frame -> B frame of every transmission the engine matches across the two (e.g. the
    packets of one ladder window: the HTML page draws what correlate matched, by its rules)."""
    eng = Engine(options or CorrelateOptions())
    pairs: Dict[int, int] = {}
    eng.on_match = lambda fa, fb: pairs.__setitem__(int(fa), int(fb))
    eng.run(rows_from_segments(segments_a), rows_from_segments(segments_b))
    return pairs


def correlate_rows(rows_a: Iterable[Row], rows_b: Iterable[Row], *, name_a: str = "A", name_b: str = "B",
                   options: Optional[CorrelateOptions] = None, span_a: Span = None,
                   span_b: Span = None) -> CorrelationResult:
    opt = options or CorrelateOptions()
    eng = Engine(opt)
    for side, span in ((eng.A, span_a), (eng.B, span_b)):
        if span:
            side.cap_start, side.cap_end = span
    # no reference cycles are made per packet, but a pending entry per packet would trigger the
    # cyclic collector every few hundred packets, each time walking the whole window of them
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        eng.run(iter(rows_a), iter(rows_b))
    finally:
        if gc_was_enabled:
            gc.enable()
    return Builder(eng, name_a, name_b, opt).build()
