"""Rows from tshark `-T fields` output, as correlate reads them: the command (CORRELATE_FIELDS,
`correlate_command_kwargs`), the conversion of its output to rows (`rows_from_blocks`, column by
column; `rows_from_segments` for `Segment` records), and a reader thread per tshark run
(`threaded_blocks`), so both tshark processes run in parallel while the rows are consumed as they
arrive (the matching engine, `matching`, merges the two streams).
"""
from __future__ import annotations

import queue
import threading
from itertools import chain
from typing import Callable, Iterable, Iterator, List, Optional, Sequence

from ..records import Segment
from ..tshark import FIELD_SEP, SEGMENT_FILTER, SEGMENT_PREFS, TsharkFailed

# Row layout used internally (a plain tuple: building a dataclass per packet would cost more than
# tshark itself):
# (frame, time, direction, seq, ack, len, flags, tsval, tsecr, ip_id, stream, key)
# where direction is "src sport dst dport" joined by FIELD_SEP (one string hashes faster than a
# tuple of four) and key = hash((seq, ack, len)), the content key (see matching.Engine.ingest).
# The frame number may be tshark's text (then all decimal digits): it is only reported, made an
# int there.
Row = tuple


def rows_from_segments(segments: Iterable[Segment]) -> Iterator[Row]:
    for s in segments:
        seq, ack, ln = s.seq_raw, s.ack_raw or 0, s.length or 0
        direction = FIELD_SEP.join((s.src, str(s.sport), s.dst, str(s.dport)))
        yield (s.frame, s.time, direction, seq, ack, ln, s.flags or 0,
               "" if s.tsval is None else str(s.tsval), "" if s.tsecr is None else str(s.tsecr),
               "" if s.ip_id is None else str(s.ip_id), s.stream, hash((seq, ack, ln)))


# What correlate asks tshark for: SEGMENT_FIELDS without the window and the SACK blocks, which it
# does not use (fewer columns to print and to split), and one occurrence per field, the last one:
# the innermost header of a tunnelled packet.
CORRELATE_FIELDS = (
    "frame.number", "frame.time_epoch", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
    "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.ack_raw", "tcp.len", "tcp.flags",
    "tcp.options.timestamp.tsval", "tcp.options.timestamp.tsecr", "ip.id", "tcp.stream",
)


def correlate_command_kwargs(display_filter: Optional[str] = None) -> dict:
    """Keyword arguments for `tshark.build_command`/`run_lines` as correlate runs tshark (the
    benchmark times exactly this command bare)."""
    flt = SEGMENT_FILTER if not display_filter else f"({SEGMENT_FILTER}) && ({display_filter})"
    return dict(fields=CORRELATE_FIELDS, occurrence="l", display_filter=flt, prefs=dict(SEGMENT_PREFS),
                with_plugin=False)


class _Parsed(dict):
    """text -> int(text, base) (0 for ""), computed once per distinct text: for fields with few
    distinct values (tcp.flags, tcp.len), a dict lookup is cheaper than int()."""

    def __init__(self, base: int):
        super().__init__()
        self.base = base

    def __missing__(self, text: str) -> int:
        v = self[text] = int(text, self.base) if text else 0
        return v


def _ints(col: List[str]) -> List[int]:
    """int() of every text, 0 for an empty one (ValueError for anything else)."""
    try:
        return list(map(int, col))
    except ValueError:
        return [int(x) if x else 0 for x in col]


def _either(v4: List[str], v6: List[str]) -> List[str]:
    """ip.x, else ipv6.x, per row."""
    return v4 if all(v4) else [a or b for a, b in zip(v4, v6)]


def rows_from_blocks(blocks: Iterable[str], capture: str = "", *, fields: Sequence[str] = CORRELATE_FIELDS,
                     tee: Optional[Callable[[List[str], int], None]] = None) -> Iterator[Row]:
    """Rows from blocks of `fields` lines (`TsharkRun.blocks()`: whole lines, joined by newlines):
    one iterator for the whole stream. `fields` starts with CORRELATE_FIELDS; `tee`, when given,
    is handed each piece's texts (a flat list, len(fields) per row) before they become rows, for
    the fields after those (pipeline: the timeline's packets). A block is split at once and
    converted column by column; one with anything unusual (a truncated frame, a field that is not
    a number) goes through the row-by-row path, which skips such rows."""
    n = len(fields)
    assert tuple(fields[:len(CORRELATE_FIELDS)]) == CORRELATE_FIELDS
    flag_bits, lengths = _Parsed(16), _Parsed(10)

    def block_rows(block: str) -> Iterable[Row]:
        c = block.replace("\n", FIELD_SEP).split(FIELD_SEP)
        teed = tee
        if len(c) == n * (block.count("\n") + 1):          # (else some row is malformed)
            if tee is not None:
                tee(c, n)
                teed = None
            frame, t, sport, seq = c[0::n], c[1::n], c[6::n], c[8::n]
            if all(seq) and all(sport) and all(t) and all(frame) and "".join(frame).isdecimal():
                try:
                    seq, ack = list(map(int, seq)), _ints(c[9::n])
                    ln = list(map(lengths.__getitem__, c[10::n]))
                    direction = map(FIELD_SEP.join,
                                    zip(_either(c[2::n], c[4::n]), sport, _either(c[3::n], c[5::n]), c[7::n]))
                    return zip(frame, list(map(float, t)), direction, seq, ack, ln,
                               list(map(flag_bits.__getitem__, c[11::n])), c[12::n], c[13::n], c[14::n],
                               c[15::n], list(map(hash, zip(seq, ack, ln))))
                except ValueError:
                    pass
        return list(_rows_one_by_one(block.split("\n"), n, flag_bits, capture, teed))

    # in pieces of ~PIECE characters: a whole block's field texts would not stay in the CPU cache
    return chain.from_iterable(map(block_rows, chain.from_iterable(map(_pieces, blocks))))


PIECE = 16384

# The plugin's rows (`-z tcpstall,rows`, plugins/tcpstall/rows.lua): frame, time, seq, ack, len,
# flags (decimal), tsval, tsecr, ip.id, direction ("src sport dst dport"), tcp.stream; the rows
# `rows_from_blocks` makes of the `-T fields` output of the same capture (tests/test_rows.py).
ROWS_ARG = "tcpstall,rows"
PLUGIN_ROW_COLUMNS = 11
# `-z tcpstall,segments`: the same rows and two more columns the timeline reads: the window
# (tcp.window_size_value) and the SACK blocks as raw edges ("left:right,left:right")
SEGMENTS_ARG = "tcpstall,segments"
PLUGIN_SEGMENT_COLUMNS = 13


class _Directions(dict):
    """"src sport dst dport" -> the direction key of a Row (FIELD_SEP-joined), once per text."""

    def __missing__(self, text: str) -> str:
        v = self[text] = FIELD_SEP.join(text.split(" "))
        return v


def rows_from_plugin_blocks(blocks: Iterable[str], capture: str = "", *,
                            tee: Optional[Callable[[List[str], int], None]] = None) -> Iterator[Row]:
    """Rows from blocks of the plugin's row lines (whole lines, joined by newlines), converted
    column by column as in rows_from_blocks; a block with a malformed row goes row by row. `tee`:
    the lines are `-z tcpstall,segments` ones, and it is handed each piece's texts (a flat list,
    PLUGIN_SEGMENT_COLUMNS per row) before they become rows (pipeline: the timeline's packets)."""
    n = PLUGIN_ROW_COLUMNS if tee is None else PLUGIN_SEGMENT_COLUMNS
    flag_bits, lengths, directions = _Parsed(10), _Parsed(10), _Directions()

    def block_rows(block: str) -> Iterable[Row]:
        c = block.replace("\n", FIELD_SEP).split(FIELD_SEP)
        if len(c) == n * (block.count("\n") + 1) and all(c[2::n]):
            if tee is not None:
                tee(c, n)
            try:
                seq, ack = list(map(int, c[2::n])), _ints(c[3::n])
                ln = list(map(lengths.__getitem__, c[4::n]))
                return zip(c[0::n], list(map(float, c[1::n])), map(directions.__getitem__, c[9::n]), seq, ack, ln,
                           list(map(flag_bits.__getitem__, c[5::n])), c[6::n], c[7::n], c[8::n], c[10::n],
                           list(map(hash, zip(seq, ack, ln))))
            except ValueError:
                pass
        rows = []
        for line in block.split("\n"):
            c = line.split(FIELD_SEP)
            if len(c) != n:
                raise TsharkFailed(f"{capture}: the plugin printed a row with {len(c)} columns, expected {n}")
            if tee is not None and c[2]:
                tee(c, n)
            frame, t, seq, ack, ln, fl, tsv, tse, ipid, dk, stream = c[:PLUGIN_ROW_COLUMNS]
            if not seq:
                continue                    # truncated frame (as rows_from_blocks)
            try:
                key = int(seq), int(ack) if ack else 0, int(ln) if ln else 0
                rows.append((int(frame), float(t), directions[dk], *key, flag_bits[fl], tsv, tse, ipid, stream,
                             hash(key)))
            except ValueError:
                continue
        return rows

    return chain.from_iterable(map(block_rows, chain.from_iterable(map(_pieces, blocks))))


def _pieces(block: str) -> Iterator[str]:
    """A block of lines cut into runs of whole lines of about PIECE characters."""
    start = 0
    while True:
        cut = block.find("\n", start + PIECE)
        if cut < 0:
            yield block[start:] if start else block
            return
        yield block[start:cut]
        start = cut + 1


def _rows_one_by_one(lines: List[str], n: int, flag_bits: _Parsed, capture: str,
                     tee: Optional[Callable[[List[str], int], None]] = None) -> Iterator[Row]:
    for line in lines:
        c = line.split(FIELD_SEP)
        if len(c) != n:
            raise TsharkFailed(f"{capture}: tshark printed a row with {len(c)} columns, expected {n}")
        if tee is not None:
            tee(c, n)
        frame, t, src, dst, src6, dst6, sp, dp, seq, ack, ln, fl, tsv, tse, ipid, stream = c[:16]
        if not seq or not sp or not t:
            continue                    # truncated frame
        try:
            key = int(seq), int(ack) if ack else 0, int(ln) if ln else 0
            row = (int(frame), float(t), FIELD_SEP.join((src or src6, sp, dst or dst6, dp)), *key,
                   flag_bits[fl], tsv, tse, ipid, stream, hash(key))
        except ValueError:
            continue
        yield row


def threaded_blocks(run, capture: str, depth: int = 4) -> Iterator[str]:
    """A TsharkRun's output in blocks of whole lines (`run.blocks()`), read by a thread into a
    bounded queue, so that tshark keeps running while the main thread works on the other capture.
    A short queue (with the pipe, about 2 MB ahead) also keeps the two tsharks abreast: one that
    runs ahead soon waits, and leaves its CPU to the one behind and to this process, instead of
    finishing first and leaving the other to run alone at the end."""
    q: "queue.Queue" = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                pass
        return False

    def pump():
        tail = None
        blocks = run.blocks()
        try:
            for block in blocks:
                if not put(block):
                    break
            blocks.close()               # (the consumer stopped: the run ends here, in this thread)
        except BaseException as exc:     # handed to the consumer, raised there
            tail = exc
        put(("end", tail))

    th = threading.Thread(target=pump, name=f"tshark-reader {capture}", daemon=True)
    th.start()
    try:
        while True:
            item = q.get()
            if type(item) is tuple:
                if item[1] is not None:
                    raise item[1]
                return
            yield item
    finally:
        stop.set()
