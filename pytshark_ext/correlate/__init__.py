"""Two captures of the same connections, laid side by side: which segments were lost between
the capture points, the clock offset between the capture hosts, one-way delays, reordering.

Entry points: `correlate(segments_a, segments_b)` over iterables of `Segment` (pure), and
`correlate_captures(path_a, path_b)` which streams both captures through tshark (two processes
in parallel, rows consumed as they arrive); `with_plugin_findings` adds the plugin's findings
of each capture, linked to the losses. The stages, one module each:

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
from dataclasses import replace
from typing import Iterable, Optional, Tuple

from ..records import Segment
from ..tshark import TsharkError, run_lines
from .builder import Builder
from .capture_span import capture_span
from .fieldrows import (CORRELATE_FIELDS, Row, correlate_command_kwargs, rows_from_blocks, rows_from_segments,
                        threaded_blocks)
from .link import analyze_both, link_side_findings, with_plugin_findings
from .matching import CorrelateOptions, Engine
from .result import CaptureSpan, CorrelateError, CorrelationResult, DelaySpike, Reordering

__all__ = [
    "correlate", "correlate_rows", "correlate_captures", "CorrelateOptions", "CorrelateError",
    "CorrelationResult", "CaptureSpan", "DelaySpike", "Reordering", "analyze_both", "link_side_findings",
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


def correlate_captures(path_a: str, path_b: str, *, tshark: Optional[str] = None,
                       display_filter: Optional[str] = None,
                       options: Optional[CorrelateOptions] = None) -> CorrelationResult:
    """Stream both captures through tshark (two processes in parallel) and correlate them."""
    path_a, path_b = str(path_a), str(path_b)
    kw = correlate_command_kwargs(display_filter)
    run_a = run_lines(path_a, tshark=tshark, tolerate_truncation=True, **kw)   # both start now
    try:
        run_b = run_lines(path_b, tshark=tshark, tolerate_truncation=True, **kw)
    except BaseException:
        _close(run_a)
        raise
    try:
        result = correlate_rows(rows_from_blocks(threaded_blocks(run_a, path_a), path_a),
                                rows_from_blocks(threaded_blocks(run_b, path_b), path_b),
                                name_a=path_a, name_b=path_b, options=options,
                                span_a=capture_span(path_a), span_b=capture_span(path_b))
        cut = tuple(f"{r.truncated} (correlated the packets before the cut)"
                    for r in (run_a, run_b) if r.truncated)
        return replace(result, notes=result.notes + cut) if cut else result
    finally:
        _close(run_a)
        _close(run_b)


def _close(run) -> None:
    """Stop a tshark run that may still be going (after an error on the other capture)."""
    try:
        run.close()
    except TsharkError:
        pass
