"""The matching engine: two streams of rows (`fieldrows.Row`, one per capture) merged in
(estimated) common time order, every transmission of one capture paired with the same
transmission in the other.

Packets are matched by TCP content, never by `tcp.stream` (numbered per file) nor by addresses
(NAT may rewrite them) nor by IP ID alone: one *transmission instance* is
(seq_raw, ack_raw, len, TSval, TSecr) — a retransmission carries a new TSval, so it is a
separate instance — with the IP ID as a tie-breaker where the flow shows it is preserved.

Streaming: rows are consumed as they arrive. Unmatched transmissions wait in a window that is
evicted as the other capture moves past them, so memory depends on packets in flight over the
horizon, not on capture length. Per-packet statistics are kept as integer-microsecond
histograms. What is left at the end (`Engine.A`, `Engine.B`: per-direction statistics and the
transmissions never matched) is turned into a result by `builder`.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from itertools import chain
from typing import Dict, Iterator, List, Optional, Tuple

from ..tshark import FIELD_SEP
from .fieldrows import Row

MASK = 0xFFFFFFFF
HALF = 0x80000000
LEN_MAX = HALF - 1              # a longer "segment" is no longer in order
SYN_FIN = 0x03


class Dir:
    """One direction (src:port -> dst:port) of one capture."""
    __slots__ = ("side", "idx", "key", "count", "max_end", "base", "peer", "hist", "lo", "hi",
                 "matched", "ip_eq", "ip_ne", "fills", "buckets", "reo_win", "reo_head", "reo_max",
                 "reo_last", "reordered", "reo_examples", "streams", "first_t", "conflicts", "retx",
                 "max_ack", "last_stream")

    def __init__(self, side: str, idx: int, key: tuple, stream):
        self.side = side
        self.idx = idx
        self.key = key                  # (src, sport, dst, dport), as text
        self.count = 0
        self.max_end: Optional[int] = None
        self.base: Optional[int] = None  # for relative seq (Wireshark's: ISN, or first seq - 1)
        self.peer: Optional["Dir"] = None
        # statistics, kept on A's directions only (the match's "owner")
        self.hist: Dict[int, int] = {}   # tB - tA in integer microseconds -> count
        self.lo = math.inf
        self.hi = -math.inf
        self.matched = 0
        self.ip_eq = 0
        self.ip_ne = 0
        self.fills: List[tuple] = []     # matched transmissions that filled a hole (retransmissions)
        self.buckets: Dict[int, list] = {}  # 100 ms of A time -> [min d, max d, tA@min, tA@max, fA@min, fA@max]
        self.reo_win: List[tuple] = []  # matches in B's order; the first reo_head already judged
        self.reo_head = 0
        self.reo_max = -1
        self.reo_last = -1               # B index of the last match judged
        self.reordered = 0
        self.reo_examples: List[tuple] = []
        self.streams = {stream} if stream not in (None, "") else set()
        self.last_stream = stream
        self.first_t: Optional[float] = None
        self.conflicts = 0
        self.retx: Dict[int, int] = {}   # seq -> transmissions seen (only for retransmitted seqs)
        self.max_ack: Optional[int] = None  # highest cumulative ACK sent in this direction

    @property
    def label(self) -> str:
        s, sp, d, dp = self.key
        return f"{_host(s)}:{sp} -> {_host(d)}:{dp}"


def _host(addr: str) -> str:
    return f"[{addr}]" if ":" in addr else addr


class Side:
    __slots__ = ("name", "dirs", "pending", "queue", "first", "last", "count", "done", "unmatched",
                 "outside_before", "outside_after", "dropped_nomatch", "cap_start", "cap_end")

    def __init__(self, name: str):
        self.name = name
        self.dirs: Dict[tuple, Dir] = {}
        self.pending: Dict[tuple, object] = {}   # content key -> entry, or list of entries
        self.queue: List[tuple] = []             # entries in arrival order (for eviction)
        self.first: Optional[float] = None
        self.last: Optional[float] = None
        self.count = 0
        self.done = False
        self.unmatched: List[tuple] = []         # evicted entries the other side never had
        self.outside_before = 0
        self.outside_after = 0
        self.dropped_nomatch = 0
        self.cap_start: Optional[float] = None   # the capture process's own span (pcapng ISB), if known
        self.cap_end: Optional[float] = None

    def running(self) -> Tuple[Optional[float], Optional[float]]:
        """When this capture was certainly running: its packets, widened by the ISB span."""
        first, last = self.first, self.last
        if self.cap_start is not None and (first is None or self.cap_start < first):
            first = self.cap_start
        if self.cap_end is not None and (last is None or self.cap_end > last):
            last = self.cap_end
        return first, last


# entry tuple: (time, frame, dir, seq, len, ip_id, idx, transmission number or 0, key, tsval, flags, tsecr)
E_T, E_F, E_D, E_SEQ, E_LEN, E_IPID, E_IDX, E_FILL, E_KEY, E_TSV, E_FL, E_TSE = range(12)

BUCKET_S = 0.1
# Matches complete in the order of whichever capture is read second, so they are re-sorted into
# B's order in a window before a-order inversions are counted; a match that completes later than
# the window allows is not judged at all (never a false "reordered").
REORDER_WINDOW = 4096
REORDER_BATCH = 256
NO_MATCH_CAP = 500_000


@dataclass
class CorrelateOptions:
    slack_s: float = 0.5                # extra wait before a transmission is declared unmatched
    spike_min_ms: float = 10.0          # a delay spike exceeds the median by at least this...
    spike_factor: float = 3.0           # ...and by this many times (median - min)
    max_listed: int = 1000              # cap on listed lost/unseen segments (counts stay exact)


class Engine:
    def __init__(self, options: CorrelateOptions):
        self.opt = options
        self.A = Side("A")
        self.B = Side("B")
        self.lo = math.inf      # min over all matches of tB - tA
        self.hi = -math.inf
        self.matches = 0
        self._since_evict = 0
        self.on_match = None    # called (A frame, B frame) per match, when set (match_frames)

    # -- per row ---------------------------------------------------------------------------
    def ingest(self, side: Side, other: Side, row: Row, rows: Iterator[Row], lim: float,
               theta: float) -> Optional[Row]:
        """Ingest `row` and the rows after it while they are not past `lim` (A: t <= lim, B:
        t - theta < lim); return the first row not ingested, None when `rows` is exhausted.
        One loop for a run of rows, matches included (no call per row): this is where correlate
        spends its time."""
        is_a = side is self.A
        if is_a:
            # t > lim, asked as B's test is: the next float above lim is the least t that passes
            theta, lim = 0.0, math.nextafter(lim, math.inf)
        dirs = side.dirs
        mine, theirs = side.pending, other.pending
        queue = side.queue
        other_done = other.done
        since = self._since_evict
        t = side.last
        on_match = self.on_match
        for row in chain((row,), rows):
            if row[1] - theta >= lim:
                break
            frame, t, dk, seq, ack, ln, fl, tsv, tse, ipid, stream, key = row
            d = dirs.get(dk)
            if d is None:
                if side.first is None:             # (a side's first row always opens a direction)
                    side.first = t
                d = dirs[dk] = Dir(side.name, len(dirs), tuple(dk.split(FIELD_SEP)), stream)
                d.first_t = t
                d.base = seq if fl & 0x02 else (seq - 1) & MASK
            elif stream != d.last_stream:          # tcp.stream changes only on port reuse
                d.last_stream = stream
                if stream not in (None, "") and len(d.streams) < 8:
                    d.streams.add(stream)
            if fl & 0x02:
                d.base = seq                       # a SYN: relative numbering starts here
            d.count += 1
            fill = 0
            if ln or fl & SYN_FIN:
                end = seq + ln
                if fl & SYN_FIN:
                    end += 1
                if not 0 <= end <= MASK:
                    end &= MASK
                me = d.max_end
                if me is None or (me == seq and 0 <= ln < LEN_MAX):   # in order: the new highest
                    d.max_end = end
                else:
                    if ((seq - me) & MASK) >= HALF:
                        # starts below the highest sequence number seen: a retransmission (or reordering)
                        fill = d.retx[seq] = d.retx.get(seq, 1) + 1
                    if ((end - me) & MASK) < HALF and end != me:
                        d.max_end = end
            if fl & 0x10:
                ma = d.max_ack
                if ma is None or (ack != ma and ((ack - ma) & MASK) < HALF):
                    d.max_ack = ack
            # outside the other capture's span? (the other side finished before this time)
            if other_done and self.matches and self._beyond_other(side, other, t):
                side.outside_after += 1
                continue
            # the content key (in the row) is hash((seq, ack, len)): a collision between two different
            # in-flight transmissions needs ~2^32 of them pending at once. TCP timestamps are not in
            # the key but decide among its candidates (_pick): one capture may have lost them
            # (snaplen 54 cuts the options), and then they must not prevent the match.
            cand = theirs.pop(key, None)
            # the common case, one candidate that fits, is decided here as _pick would decide it
            if cand is not None and not (
                    type(cand) is tuple
                    and (not tsv or not cand[E_TSV] or (cand[E_TSV] == tsv and cand[E_TSE] == tse))
                    and (not ipid or not cand[E_IPID] or cand[E_IPID] == ipid)):
                cands = cand if type(cand) is list else [cand]
                pick = self._pick(side, d, cands, tsv, tse, ipid)
                if pick is None:
                    theirs[key] = cand
                    cand = None
                else:
                    cand = cands.pop(pick)
                    if cands:
                        theirs[key] = cands if len(cands) > 1 else cands[0]
            if cand is None:
                entry = (t, frame, d, seq, ln, ipid, d.count, fill, key, tsv, fl, tse)
                cur = mine.get(key)
                if cur is None:
                    mine[key] = entry
                elif type(cur) is list:
                    cur.append(entry)
                else:
                    mine[key] = [cur, entry]
                queue.append(entry)
            else:
                # a match: its statistics belong to A's direction
                ct, cf, cd, cseq, cln, cipid, cn, cfill, _, _, _, _ = cand
                if is_a:
                    da, db, ta, tb, fa, fb = d, cd, t, ct, frame, cf
                else:
                    da, db, ta, tb, fa, fb = cd, d, ct, t, cf, frame
                if on_match is not None:
                    on_match(fa, fb)
                peer = da.peer
                if peer is None and db.peer is None:
                    da.peer = peer = db
                    db.peer = da
                if peer is not db:
                    da.conflicts += 1
                else:
                    delta = tb - ta
                    self.matches += 1
                    if delta < da.lo:                  # (the engine's extremes are those of its directions)
                        da.lo = delta
                        if delta < self.lo:
                            self.lo = delta
                    if delta > da.hi:
                        da.hi = delta
                        if delta > self.hi:
                            self.hi = delta
                    us = round(delta * 1e6)
                    h = da.hist
                    h[us] = h.get(us, 0) + 1
                    da.matched += 1
                    if ipid and cipid:
                        if ipid == cipid:
                            da.ip_eq += 1
                        else:
                            da.ip_ne += 1
                    bk = int(ta / BUCKET_S)
                    bu = da.buckets.get(bk)
                    if bu is None:
                        da.buckets[bk] = [delta, delta, ta, ta, fa, fa]
                    elif delta < bu[0]:
                        bu[0] = delta
                        bu[2] = ta
                        bu[4] = fa
                    elif delta > bu[1]:
                        bu[1] = delta
                        bu[3] = ta
                        bu[5] = fa
                    if fill or cfill:
                        # (seq, len, A frame, A time, B frame, B time, A's transmission number, B's)
                        fill_a, fill_b, s_a, l_a = (fill, cfill, seq, ln) if is_a else (cfill, fill, cseq, cln)
                        da.fills.append((s_a, l_a, int(fa), ta, int(fb), tb, fill_a or 1, fill_b or 1))
                    # the reorder window, kept sorted: matches mostly complete in B's order already
                    win = da.reo_win
                    na, nb = (d.count, cn) if is_a else (cn, d.count)
                    item = (nb, na, fa, fb, ta)
                    if not win or nb > win[-1][0]:     # (B indices are unique in a window)
                        win.append(item)
                        if len(win) - da.reo_head > REORDER_WINDOW + REORDER_BATCH:
                            self._reorder_judge(da, REORDER_WINDOW)
                    else:
                        self._reorder_judge(da, REORDER_WINDOW)
                        bisect.insort(win, item, da.reo_head)
                        self._reorder_judge(da, REORDER_WINDOW)
            since += 1
            if since >= 512:
                since = 0
                side.last = t
                self.evict()
        else:
            row = None
        self._since_evict = since
        side.last = t
        return row

    def _pick(self, side: Side, d: Dir, cands: List[tuple], tsv, tse, ipid) -> Optional[int]:
        """Which pending transmission of the other capture this one is: the same TSval/TSecr
        where both captures have them (a retransmission differs from its original only there),
        then the same IP ID, else the oldest — unless this flow preserves IP IDs and they differ."""
        fits = [i for i, c in enumerate(cands)
                if not tsv or not c[E_TSV] or (c[E_TSV] == tsv and c[E_TSE] == tse)]
        if not fits:
            return None
        if ipid:
            for i in fits:
                if cands[i][E_IPID] == ipid:
                    return i
        i = fits[0]
        if ipid and cands[i][E_IPID] and self._ipid_strict(side, d, cands[i]):
            return None
        return i

    def _ipid_strict(self, side: Side, d: Dir, other_entry: tuple) -> bool:
        """Refuse a match on differing IP IDs only where this flow preserves IP IDs."""
        a = d if side is self.A else other_entry[E_D]
        return a.ip_eq >= 8 and a.ip_ne * 20 <= a.ip_eq

    def _beyond_other(self, side: Side, other: Side, t: float) -> bool:
        last = other.running()[1]
        if side is self.A:
            return t + self.lo > last + self.opt.slack_s
        return t - self.hi > last + self.opt.slack_s

    @staticmethod
    def _reorder_judge(da: Dir, keep: int) -> None:
        """Judge the matches at the front of the window (the first in B's order) until `keep`
        are left. Judged REORDER_BATCH at a time, they get the verdicts they would get one by one
        as the window overflows, as long as matches arrive in B's order: one that does not first
        brings the window back to REORDER_WINDOW (ingest)."""
        win = da.reo_win
        head, end = da.reo_head, len(win) - keep
        last, high = da.reo_last, da.reo_max
        while head < end:
            ib, ia, fa, fb, ta = win[head]
            head += 1
            if ib < last:
                continue                # too late to place in B's order: not judged
            last = ib
            if ia < high:
                da.reordered += 1
                if len(da.reo_examples) < 20:
                    da.reo_examples.append((int(fa), int(fb), ta))
            else:
                high = ia
        da.reo_last, da.reo_max = last, high
        if head >= 1024:                # drop the judged ones now and then
            del win[:head]
            head = 0
        da.reo_head = head

    # -- eviction --------------------------------------------------------------------------
    def evict(self, final: bool = False) -> None:
        A, B = self.A, self.B
        if self.matches == 0:
            if final:
                return
            for side in (A, B):    # no common segment yet: bound memory, keep the newest
                if len(side.queue) > NO_MATCH_CAP:
                    cut = len(side.queue) - NO_MATCH_CAP // 2
                    for e in side.queue[:cut]:
                        if self._unpend(side, e):
                            side.dropped_nomatch += 1
                    del side.queue[:cut]
            return
        spread = min(30.0, max(0.0, self.hi - self.lo))
        slack = self.opt.slack_s + 2 * spread
        # A entry at tA is due at B by tA + hi; B entry at tB was at A by tB - lo (A downstream)
        # or is due there by tB - lo ... either way within [tB - hi, tB - lo].
        horizon_a = (B.last - self.hi - slack) if (B.last is not None and not final) else math.inf
        horizon_b = (A.last + self.lo - slack) if (A.last is not None and not final) else math.inf
        if B.done and not final:
            horizon_a = math.inf
        if A.done and not final:
            horizon_b = math.inf
        for side, horizon in ((A, horizon_a), (B, horizon_b)):
            q = side.queue
            n = 0
            # before the other capture started: not a loss, not worth keeping
            if side is A:
                first = B.running()[0]
                before = (first - self.hi - slack) if first is not None else -math.inf
            else:
                first = A.running()[0]
                before = (first + self.lo - slack) if first is not None else -math.inf
            pending = side.pending
            for e in q:
                if not e[E_T] < horizon:
                    break
                n += 1
                if e[E_KEY] in pending and self._unpend(side, e):   # (most were matched meanwhile)
                    if e[E_T] < before:
                        side.outside_before += 1
                    else:
                        side.unmatched.append(e)
            if n:
                del q[:n]

    @staticmethod
    def _unpend(side: Side, e: tuple) -> bool:
        """Remove a still-pending entry; False when it was matched meanwhile."""
        key = e[E_KEY]
        cur = side.pending.get(key)
        if cur is None:
            return False
        if cur is e:
            del side.pending[key]
            return True
        if type(cur) is list:
            for i, c in enumerate(cur):
                if c is e:
                    cur.pop(i)
                    if len(cur) == 1:
                        side.pending[key] = cur[0]
                    elif not cur:
                        del side.pending[key]
                    return True
        return False

    # -- main loop ---------------------------------------------------------------------------
    def run(self, rows_a: Iterator[Row], rows_b: Iterator[Row]) -> None:
        A, B = self.A, self.B
        ingest = self.ingest
        ra = next(rows_a, None)
        rb = next(rows_b, None)
        if ra is None:
            A.done = True
        if rb is None:
            B.done = True
        inf = math.inf
        while ra is not None or rb is not None:
            # read the capture that is behind (in estimated common time) until it catches up
            theta = 0.0 if self.matches == 0 else (self.lo + self.hi) / 2
            if rb is None or (ra is not None and ra[1] <= rb[1] - theta):
                ra = ingest(A, B, ra, rows_a, inf if rb is None else rb[1] - theta, theta)
                if ra is None:
                    A.done = True
            else:
                # exactly the negation of the test above (no float rearrangement: never loop idle)
                rb = ingest(B, A, rb, rows_b, inf if ra is None else ra[1], theta)
                if rb is None:
                    B.done = True
        self.evict(final=True)
        for side in (A, B):
            side.count = sum(d.count for d in side.dirs.values())
            for e in side.queue:
                if self._unpend(side, e):
                    side.unmatched.append(e)
            side.queue = []
            for d in side.dirs.values():
                self._reorder_judge(d, 0)
