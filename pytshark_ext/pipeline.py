"""The one orchestrator of a run: every capture is read by ONE tshark process.

    capture -> tshark, the plugin loaded ----> -T fields rows --+--> correlate's matching engine
               (one process per capture,                        +--> the timeline's packets
                both captures at once)                               (--log / --html only)
                                          `--> after the last frame: -z tcpstall,records
                                               and -z tcpstall,tsv --> the plugin's findings
                                                                       (analyze.result_from_lines)

then findings -> renderers (cli). The rows come first and stream into the engine as tshark prints
them; the plugin prints its records once it has seen the whole capture (plugins/tcpstall/records.lua:
what a second pass would print, without one), so its findings are ready when the rows end. With
`plugin=False` the same reads run without the plugin (`correlate --no-plugin`: tshark's own
sequence analysis off too, the bare extraction).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from typing import Callable, Iterator, List, Mapping, Optional, Sequence, Tuple

from .analyze import RECORDS_ARG, STAT_ARG, AnalysisResult, result_from_lines
from .correlate import CorrelateOptions, CorrelationResult, correlate_rows, with_plugin_findings
from .correlate.capture_span import capture_span
from .correlate.fieldrows import (CORRELATE_FIELDS, ROWS_ARG, SEGMENTS_ARG, correlate_command_kwargs,
                                  rows_from_blocks, rows_from_plugin_blocks, threaded_blocks)
from .records import Segment
from .timeline import CapturePackets, packets_from_segments
from .tshark import BATCH_DECODE, SEGMENT_PREFS, TsharkError, TsharkRun, run_lines, segment_from_texts

# what the timeline needs beyond correlate's fields: the window, and the SACK option as bytes (one
# occurrence holds every block: correlate's rows take the last occurrence of each field)
TIMELINE_FIELDS = ("tcp.window_size_value", "tcp.options.sack")
PLUGIN_OUTPUT = "TCPSTALL"          # the records and the summary start so; a row starts with a digit


@dataclass(frozen=True)
class PairRead:
    """What one read of each of two captures gives."""
    result: CorrelationResult                                     # plugin findings linked when it ran
    analyses: Optional[Tuple[AnalysisResult, AnalysisResult]]     # the plugin's per capture
    packets: Optional[Tuple[CapturePackets, CapturePackets]]      # for the timeline, when asked


class CaptureRead:
    """One tshark process over one capture: `rows()` streams correlate's rows (and collects the
    timeline's packets), then `analysis()` is the plugin's result from the output that followed."""

    def __init__(self, path: str, side: str, *, tshark: Optional[str] = None,
                 display_filter: Optional[str] = None, prefs: Optional[Mapping[str, object]] = None,
                 plugin: bool = True, packets: bool = False):
        self.path, self.side, self.plugin = str(path), side, plugin
        kw = correlate_command_kwargs(display_filter)
        # The plugin prints the rows itself (`-z tcpstall,rows`, with the timeline's columns
        # `-z tcpstall,segments`) in a `-q` pass: `-T fields` makes tshark build every packet's
        # visible tree, which doubled the plugin run. `-T fields` stays for a display filter of the
        # user's and for the bare extraction (no plugin).
        self.plugin_rows = plugin and not display_filter
        if plugin:
            # the prefs analyze runs with (BATCH_PREFS: no sequence analysis; SEGMENT_PREFS' raw
            # sequence numbers change none of the plugin's output: tests/test_pipeline.py)
            kw.update(with_plugin=True, prefs={**SEGMENT_PREFS, **(prefs or {})},
                      extra=["-z", RECORDS_ARG, "-z", STAT_ARG, *BATCH_DECODE])
        if self.plugin_rows:
            kw.update(fields=(), display_filter=None,
                      extra=["-q", "-z", SEGMENTS_ARG if packets else ROWS_ARG, *kw["extra"]])
        elif packets:
            kw["fields"] = CORRELATE_FIELDS + TIMELINE_FIELDS
        self._segments: Optional[List[Segment]] = [] if packets else None
        self._tail: List[str] = []
        self.run: TsharkRun = run_lines(self.path, tshark=tshark, tolerate_truncation=True, **kw)

    def rows(self) -> Iterator:
        if self.plugin_rows:
            tee = self._keeper(_plugin_segment) if self._segments is not None else None
            return rows_from_plugin_blocks(self._row_blocks(threaded_blocks(self.run, self.path)), self.path, tee=tee)
        tee = self._keeper(_segment) if self._segments is not None else None
        fields = CORRELATE_FIELDS + (TIMELINE_FIELDS if tee else ())
        return rows_from_blocks(self._row_blocks(threaded_blocks(self.run, self.path)), self.path,
                                fields=fields, tee=tee)

    def _row_blocks(self, blocks: Iterator[str]) -> Iterator[str]:
        """The blocks of rows; what follows the last row (the plugin's output) goes to _tail."""
        for block in blocks:
            if self._tail:
                self._tail.append(block)
                continue
            if block.startswith(PLUGIN_OUTPUT):
                at = 0
            else:
                at = block.find("\n" + PLUGIN_OUTPUT)
                if at < 0:
                    yield block
                    continue
                yield block[:at]
                at += 1
            self._tail.append(block[at:])

    def _keeper(self, convert: Callable[[Sequence[str]], Optional[Segment]]):
        """The tee that keeps the timeline's Segments: `convert` turns one row's texts (the tee gets
        them flat, n per row) into a Segment, None for a truncated frame."""
        def keep(texts: Sequence[str], n: int) -> None:
            for i in range(0, len(texts), n):
                seg = convert(texts[i:i + n])
                if seg is not None:
                    self._segments.append(seg)
        return keep

    def analysis(self) -> Optional[AnalysisResult]:
        if not self.plugin:
            return None
        return result_from_lines(self.path, "\n".join(self._tail).split("\n"), self.run)

    def packets(self, analysis: Optional[AnalysisResult] = None) -> Optional[CapturePackets]:
        """The timeline's packets, with the plugin's retransmissions when `analysis` is given."""
        if self._segments is None:
            return None
        packets = packets_from_segments(self.side, self.path, self._segments)
        return replace(packets, retransmissions=analysis.retransmissions) if analysis else packets

    def close(self) -> None:
        """Stop the tshark run if it is still going (after an error elsewhere)."""
        try:
            self.run.close()
        except TsharkError:
            pass


def read_pair(path_a: str, path_b: str, *, tshark: Optional[str] = None, display_filter: Optional[str] = None,
              prefs: Optional[Mapping[str, object]] = None, plugin: bool = True, packets: bool = False,
              options: Optional[CorrelateOptions] = None) -> PairRead:
    """Both captures, one tshark each, both running at once: correlated, with the plugin's findings
    of each linked to the losses, and the timeline's packets when `packets`."""
    kw = dict(tshark=tshark, display_filter=display_filter, prefs=prefs, plugin=plugin, packets=packets)
    read_a = CaptureRead(path_a, "A", **kw)
    try:
        read_b = CaptureRead(path_b, "B", **kw)
    except BaseException:
        read_a.close()
        raise
    try:
        result = correlate_rows(read_a.rows(), read_b.rows(), name_a=read_a.path, name_b=read_b.path,
                                options=options, span_a=capture_span(read_a.path),
                                span_b=capture_span(read_b.path))
        cut = tuple(f"{r.run.truncated} (correlated the packets before the cut)"
                    for r in (read_a, read_b) if r.run.truncated)
        if cut:
            result = replace(result, notes=result.notes + cut)
        analyses = None
        if plugin:
            analyses = (read_a.analysis(), read_b.analysis())
            result = with_plugin_findings(result, *analyses)
        both = None
        if packets:
            both = (read_a.packets(analyses and analyses[0]), read_b.packets(analyses and analyses[1]))
        return PairRead(result=result, analyses=analyses, packets=both)
    finally:
        read_a.close()
        read_b.close()


def correlate_captures(path_a: str, path_b: str, *, tshark: Optional[str] = None,
                       display_filter: Optional[str] = None,
                       options: Optional[CorrelateOptions] = None) -> CorrelationResult:
    """The correlation alone (no plugin: `correlate --no-plugin`, the bare extraction)."""
    return read_pair(path_a, path_b, tshark=tshark, display_filter=display_filter, plugin=False,
                     options=options).result


def read_capture(path: str, *, tshark: Optional[str] = None, prefs: Optional[Mapping[str, object]] = None,
                 display_filter: Optional[str] = None) -> Tuple[AnalysisResult, CapturePackets]:
    """One capture, one tshark: the plugin's result and the timeline's packets (`analyze --log`)."""
    read = CaptureRead(path, "A", tshark=tshark, display_filter=display_filter, prefs=prefs, packets=True)
    try:
        for _ in read.rows():
            pass
        analysis = read.analysis()
        return analysis, read.packets(analysis)
    finally:
        read.close()


# --- timeline segments from the row texts --------------------------------------------------------

def _sack_blocks(option_hex: str) -> Tuple[Tuple[int, int], ...]:
    """(left, right) raw edges from the SACK option's bytes (kind 5, length, 8 bytes per block)."""
    if not option_hex:
        return ()
    data = bytes.fromhex(option_hex.replace(":", ""))[2:]
    return tuple(struct.unpack_from("!II", data, i) for i in range(0, len(data) - 7, 8))


def _plugin_segment(t: Sequence[str]) -> Optional[Segment]:
    """A Segment (as a plain SEGMENT_FIELDS pass makes it) from one `-z tcpstall,segments` row."""
    frame, time, seq, ack, tlen, flags, tsval, tsecr, ip_id, direction, stream, window, sack = t
    src, sport, dst, dport = direction.split(" ")
    try:
        blocks = tuple(tuple(map(int, b.split(":"))) for b in sack.split(",")) if sack else ()
    except ValueError:
        return None
    return segment_from_texts(frame, time, src, dst, sport, dport, seq, ack, tlen, flags, window, tsval, tsecr,
                              ip_id, stream, blocks)


def _segment(t: Sequence[str]) -> Optional[Segment]:
    """A Segment (as a plain SEGMENT_FIELDS pass makes it) from one row of CORRELATE_FIELDS +
    TIMELINE_FIELDS; None for a truncated frame."""
    (frame, time, ip_src, ip_dst, ip6_src, ip6_dst, sport, dport, seq, ack, tlen, flags,
     tsval, tsecr, ip_id, stream, window, sack) = t
    try:
        blocks = _sack_blocks(sack)
    except ValueError:
        return None
    return segment_from_texts(frame, time, ip_src or ip6_src, ip_dst or ip6_dst, sport, dport, seq, ack, tlen,
                              flags, window, tsval, tsecr, ip_id, stream, blocks)
