"""Two captures of the same connections, laid side by side: which segments were lost between
the capture points, the clock offset between the capture hosts, one-way delays, reordering.

Packets are matched by TCP content, never by `tcp.stream` (numbered per file) nor by addresses
(NAT may rewrite them) nor by IP ID alone: one *transmission instance* is
(seq_raw, ack_raw, len, TSval, TSecr) — a retransmission carries a new TSval, so it is a
separate instance — with the IP ID as a tie-breaker where the flow shows it is preserved.

Streaming: both tshark processes run in parallel and rows are consumed as they arrive, merged
in (estimated) common time order. Unmatched transmissions wait in a window that is evicted as
the other capture moves past them, so memory depends on packets in flight over the horizon,
not on capture length. Per-packet statistics are kept as integer-microsecond histograms.

Clock offset (NTP-style): for a direction where A is upstream, d = tB - tA = offset + delay;
in the other direction d = offset - delay. With delays >= 0, offset lies in
[max d_down, min d_up]; we report the midpoint and half the width as the bound (exact when
the two one-way delays between the capture points are equal).

Entry points: `correlate(segments_a, segments_b)` over iterables of `Segment` (pure), and
`correlate_captures(path_a, path_b)` which streams both captures through tshark.
"""
from __future__ import annotations

import bisect
import gc
import math
from dataclasses import dataclass, replace
from itertools import accumulate
from typing import Dict, Iterable, List, Optional, Tuple

from ..records import (DelayStats, Delivery, Finding, FlowDirection, FlowPair, LostSegment,
                      Segment)
from ..tshark import FIELD_SEP, TsharkError, on_both, run_lines
from .capture_span import capture_span
from .fieldrows import (CORRELATE_FIELDS, Row, correlate_command_kwargs, rows_from_blocks, rows_from_segments,
                        threaded_blocks)
from .matching import (BUCKET_S, E_D, E_F, E_FILL, E_FL, E_LEN, E_SEQ, E_T, E_TSV, HALF, MASK, CorrelateOptions,
                       Dir, Engine)

SEG_SPAN_MAX = 0x40000          # no segment is longer than 256 KiB: how far back an index lookup looks


class CorrelateError(TsharkError):
    """The two captures cannot be correlated (e.g. they share no TCP segment); one line."""


# --- result ------------------------------------------------------------------------------------

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


def _stats_from_hist(hist: Dict[int, int], sign: int, offset_us: float) -> Optional[DelayStats]:
    """Delay stats (ms) from a histogram of tB - tA (us): delay = sign * (d - offset)."""
    if not hist:
        return None
    keys = sorted(hist, reverse=sign < 0)           # in increasing order of delay
    acc = list(accumulate(map(hist.__getitem__, keys)))
    total = acc[-1]

    def delay(i: int) -> float:
        return sign * (keys[i] - offset_us)

    def pct(p: float) -> float:
        return delay(bisect.bisect_left(acc, max(1, math.ceil(p * total))))

    return DelayStats(total, round(delay(0) / 1000, 3), round(pct(0.5) / 1000, 3),
                      round(pct(0.99) / 1000, 3), round(delay(-1) / 1000, 3))


def _merge_hists(hists: Iterable[Dict[int, int]]) -> Dict[int, int]:
    out: Dict[int, int] = {}
    for h in hists:
        for k, n in h.items():
            out[k] = out.get(k, 0) + n
    return out


def _control_name(flags: int) -> str:
    names = [n for bit, n in ((0x02, "SYN"), (0x01, "FIN"), (0x04, "RST")) if flags & bit]
    if not names:
        return "pure ACK"
    return "/".join(names) + ("-ACK" if flags & 0x10 else "") + " segment"


def _seq_in(seq: int, start: int, length: int) -> bool:
    return ((seq - start) & MASK) < max(length, 1)


def _rel(seq: int, d: "Dir") -> int:
    """seq relative to direction d's base: the sort key of the per-direction segment indexes."""
    return (seq - (d.base or 0)) & MASK


class _Builder:
    """Turns the engine's state into a CorrelationResult (runs once, at the end)."""

    def __init__(self, eng: Engine, path_a: str, path_b: str, opt: CorrelateOptions):
        self.e = eng
        self.opt = opt
        self.path_a = path_a
        self.path_b = path_b
        self.notes: List[str] = []
        self._fill_index: Dict[int, tuple] = {}
        self._unmatched_index: Dict[int, dict] = {}

    def build(self) -> CorrelationResult:
        e = self.e
        A, B = e.A, e.B
        span_a = CaptureSpan(self.path_a, A.count, A.first, A.last)
        span_b = CaptureSpan(self.path_b, B.count, B.first, B.last)
        if A.count == 0:
            raise CorrelateError(f"{self.path_a}: no TCP segments in this capture")
        if B.count == 0:
            raise CorrelateError(f"{self.path_b}: no TCP segments in this capture")
        if e.matches == 0:
            raise CorrelateError(f"{self.path_a} and {self.path_b} share no TCP segments: they are not "
                                 "captures of the same connections (or do not overlap in time)")
        # flows: A directions that matched, grouped into connections
        pairs = [d for d in A.dirs.values() if d.peer is not None and d.matched]
        conns: Dict[frozenset, List[Dir]] = {}
        for d in pairs:
            s, sp, t, tp = d.key
            conns.setdefault(frozenset([(s, sp), (t, tp)]), []).append(d)
        # orientation + offset: flows with both directions give the NTP bound
        up_min, down_max = math.inf, -math.inf
        orient: Dict[int, str] = {}        # id(A dir) -> upstream capture
        for ds in conns.values():
            if len(ds) == 2:
                d1, d2 = ds
                if (d1.lo - d2.hi) >= (d2.lo - d1.hi):
                    up, down = d1, d2
                else:
                    up, down = d2, d1
                orient[id(up)] = "A"
                orient[id(down)] = "B"
                up_min = min(up_min, up.lo)
                down_max = max(down_max, down.hi)
        if up_min < math.inf:
            theta = (up_min + down_max) / 2
            bound = (up_min - down_max) / 2
            if bound < 0:
                self.notes.append("the minimum delays in the two directions overlap (negative RTT room): "
                                  "the clock of one capture host jumped or drifted during the captures")
                bound = abs(bound)
            offset_ms: Optional[float] = theta * 1000
            bound_ms: Optional[float] = bound * 1000
        else:
            theta = 0.0
            offset_ms = bound_ms = None
            self.notes.append("no connection was seen in both directions in both captures: the clock offset "
                              "cannot be measured; one-way delays assume synchronised clocks")
        for ds in conns.values():
            for d in ds:
                if id(d) not in orient:
                    orient[id(d)] = "A" if (d.lo + d.hi) / 2 >= theta else "B"
        self.theta = theta
        theta_us = theta * 1e6

        flows: List[FlowPair] = []
        flow_of: Dict[int, Tuple[str, Dir, str]] = {}   # id(dir) (either side) -> (flow id, A dir, upstream)
        by_orient: Dict[str, List[Dict[int, int]]] = {"A->B": [], "B->A": []}
        spikes: List[DelaySpike] = []
        reorders: List[Reordering] = []
        delay_of: Dict[int, DelayStats] = {}
        conn_list = sorted(conns.values(), key=lambda ds: min(d.first_t for d in ds))
        for n, ds in enumerate(conn_list, 1):
            fid = f"f{n}"
            ds = sorted(ds, key=lambda d: d.first_t)
            fdirs = []
            for d in ds:
                up = orient[id(d)]
                sign = 1 if up == "A" else -1
                st = _stats_from_hist(d.hist, sign, theta_us)
                delay_of[id(d)] = st
                by_orient["A->B" if up == "A" else "B->A"].append(d.hist)
                flow_of[id(d)] = (fid, d, up)
                flow_of[id(d.peer)] = (fid, d, up)
                stable = None
                if d.ip_eq + d.ip_ne >= 8:
                    stable = d.ip_ne * 20 <= d.ip_eq
                fdirs.append([d, up, st, stable])
                if d.reordered:
                    reorders.append(Reordering(fid, d.label, d.reordered, tuple(d.reo_examples)))
                spikes.extend(self._spikes(fid, d, sign, st))
            flows.append((fid, ds, fdirs))
        # unmatched entries -> lost / unseen upstream / outside overlap
        self.delay_of = delay_of
        lost, unseen, not_captured, counts = self._classify(flow_of)
        # flow records (with counts)
        flow_recs = []
        for fid, ds, fdirs in flows:
            recs = []
            for d, up, st, stable in fdirs:
                recs.append(FlowDirection(d.label, d.peer.label, up, d.matched,
                                          counts.get((id(d), "A"), 0), counts.get((id(d), "B"), 0),
                                          st, stable, d.reordered))
            first = ds[0]
            s, sp, t, tp = first.key
            bs, bsp, bt, btp = first.peer.key
            nat = (s, str(sp), t, str(tp)) != (bs, str(bsp), bt, str(btp))
            a_streams = tuple(sorted({int(x) for d in ds for x in d.streams if str(x).isdigit()}))
            b_streams = tuple(sorted({int(x) for d in ds for x in d.peer.streams if str(x).isdigit()}))
            flow_recs.append(FlowPair(fid, ((s, int(sp)), (t, int(tp))), ((bs, int(bsp)), (bt, int(btp))),
                                      nat, tuple(recs), a_streams, b_streams))
        one_way = {}
        for k, hs in by_orient.items():
            if hs:
                st = _stats_from_hist(_merge_hists(hs), 1 if k == "A->B" else -1, theta_us)
                if st:
                    one_way[k] = st
        # unpaired connections
        def conn(d):
            return frozenset([(d.key[0], d.key[1]), (d.key[2], d.key[3])])
        unpaired_a = {conn(d) for d in A.dirs.values() if id(d) not in flow_of}
        unpaired_a -= set(conns)
        paired_b = {conn(d.peer) for d in pairs}
        unpaired_b = {conn(d) for d in B.dirs.values() if id(d) not in flow_of} - paired_b
        overlap = self._overlap(counts)
        findings = self._findings(lost, unseen, spikes, reorders, not_captured)
        lost_total = len(lost)
        unseen_total = len(unseen)
        if lost_total > self.opt.max_listed:
            self.notes.append(f"{lost_total} lost segments: only the first {self.opt.max_listed} are listed")
        return CorrelationResult(
            a=span_a, b=span_b,
            clock_offset_ms=None if offset_ms is None else round(offset_ms, 3),
            clock_offset_bound_ms=None if bound_ms is None else round(bound_ms, 3),
            one_way_delay_ms=one_way, flows=tuple(flow_recs),
            lost=tuple(lost[:self.opt.max_listed]), unseen_upstream=tuple(unseen[:self.opt.max_listed]),
            lost_total=lost_total, unseen_upstream_total=unseen_total,
            not_captured=tuple(not_captured[:self.opt.max_listed]), not_captured_total=len(not_captured),
            reordering=tuple(reorders), spikes=tuple(spikes), overlap=overlap, findings=tuple(findings),
            unpaired={"A": len(unpaired_a), "B": len(unpaired_b)}, matched=e.matches,
            notes=tuple(self.notes))

    # -- pieces ------------------------------------------------------------------------------
    def _to_a(self, side: str, t: float) -> float:
        return t if side == "A" else t - self.theta

    def _classify(self, flow_of):
        e = self.e
        lost: List[LostSegment] = []
        unseen: List[LostSegment] = []
        not_captured: List[LostSegment] = []
        counts: Dict[Tuple[int, str], int] = {}
        self.outside = {"A": 0, "B": 0}
        self.unpaired_packets = {"A": 0, "B": 0}
        spans = {"A": e.A.running(), "B": e.B.running()}
        for side in (e.A, e.B):
            other = "B" if side.name == "A" else "A"
            ofirst, olast = spans[other]
            ofirst_a, olast_a = self._to_a(other, ofirst), self._to_a(other, olast)
            for ent in side.unmatched:
                d: Dir = ent[E_D]
                info = flow_of.get(id(d))
                if info is None:
                    self.unpaired_packets[side.name] += 1
                    continue
                fid, adir, up = info
                t_a = self._to_a(side.name, ent[E_T])
                # Only a claim when the other capture was certainly running when the packet was due
                # there: its arrival (or, seen downstream only, its send) time, over the whole range of
                # delays seen in this direction, must fall inside the other capture's span.
                ds = self.delay_of.get(id(adir))
                dmin = (ds.min if ds else 0.0) / 1000
                dmax = (ds.max if ds else 0.0) / 1000
                if side.name == up:
                    lo_t, hi_t = t_a + dmin, t_a + dmax
                else:
                    lo_t, hi_t = t_a - dmax, t_a - dmin
                if lo_t < ofirst_a or hi_t > olast_a:
                    self.outside[side.name] += 1
                    continue
                counts[(id(adir), side.name)] = counts.get((id(adir), side.name), 0) + 1
                # each record is made once, when its id is known (below): here its fields
                seq, length = ent[E_SEQ], ent[E_LEN]
                rec = dict(
                    flow=fid, direction=adir.label, upstream=up, seen_at=side.name, frame=int(ent[E_F]),
                    seq_raw=seq, seq_rel=(seq - d.base) & MASK if d.base is not None else seq,
                    len=length, tsval=int(ent[E_TSV]) if str(ent[E_TSV]).isdigit() else None,
                    sent_at=t_a, transmission=ent[E_FILL] or 1, flags=ent[E_FL])
                if side.name == up:
                    # pure ACKs are listed too (a lost ACK can stall a sender)
                    rec["delivered_by"] = dv = self._delivery(adir, up, seq, length, t_a)
                    if dv is None and length and self._acked(adir, seq, length):
                        if rec["transmission"] > 1 and not self._earlier_copy_lost(side, d, seq, length, ent[E_T]):
                            # a retransmission whose earlier copy got through (a spurious retransmission):
                            # this copy was lost in the network all the same, but delayed nothing
                            rec["redundant"] = True
                            lost.append(rec)
                        else:
                            # never seen downstream, yet the receiver acknowledged it: the downstream
                            # capture dropped it (or it took another path) -- not a network loss
                            not_captured.append(rec)
                    else:
                        lost.append(rec)
                else:
                    unseen.append(rec)
        out = []
        for lst, prefix, kind in ((lost, "lost", "lost"), (unseen, "unseen", "unseen_upstream"),
                                  (not_captured, "notcap", "not_captured")):
            lst.sort(key=lambda r: r["sent_at"])
            out.append([LostSegment(**r, kind=kind, id=f"{prefix}-{i}") for i, r in enumerate(lst, 1)])
        return out[0], out[1], out[2], counts

    def _earlier_copy_lost(self, side, d: Dir, seq: int, length: int, t: float) -> bool:
        """Is an earlier transmission of any byte of [seq, seq+length), sent by `d` and seen at `side`,
        also missing from the other capture? (If not, the earlier copy reached it.)"""
        index = self._unmatched_index.get(id(side))
        if index is None:
            # per direction: the unmatched payload-carrying entries sorted by relative start
            index = self._unmatched_index[id(side)] = {}
            for ent in side.unmatched:
                dd = ent[E_D]
                if ent[E_LEN]:
                    index.setdefault(id(dd), []).append((_rel(ent[E_SEQ], dd), ent[E_LEN], ent[E_T]))
            for rows in index.values():
                rows.sort()
        rows = index.get(id(d), ())
        r = _rel(seq, d)
        lo = bisect.bisect_left(rows, (r - SEG_SPAN_MAX,))
        hi = bisect.bisect_left(rows, (r + length,))
        return any(start + ln > r and when < t for start, ln, when in rows[lo:hi])

    def _acked(self, adir: Dir, seq: int, length: int) -> bool:
        """Did the receiver (reverse direction, in either capture) acknowledge seq+length?"""
        s, sp, t, tp = adir.key
        rev = self.e.A.dirs.get(FIELD_SEP.join((t, tp, s, sp)))
        end = (seq + length) & MASK
        for d in (rev, rev.peer if rev is not None else None):
            if d is not None and d.max_ack is not None and ((d.max_ack - end) & MASK) < HALF:
                return True
        return False

    def _delivery(self, adir: Dir, up: str, seq_raw: int, length: int,
                  sent_at: float) -> Optional[Delivery]:
        """The first matched retransmission covering the lost segment's first byte that reached the
        downstream point after the original was sent."""
        if length == 0:
            return None
        idx = self._fill_index.get(id(adir))
        if idx is None:
            rows = sorted((_rel(f[0], adir), f) for f in adir.fills)
            idx = self._fill_index[id(adir)] = ([r[0] for r in rows], [r[1] for r in rows])
        starts, fills = idx
        r = _rel(seq_raw, adir)
        hi = bisect.bisect_right(starts, r)
        lo = bisect.bisect_left(starts, r - SEG_SPAN_MAX)
        best = None
        for (seq, ln, fa, ta, fb, tb, na, nb) in fills[lo:hi]:
            if not _seq_in(seq_raw, seq, ln):
                continue
            if up == "A":
                sent, arrived, up_f, down_f, nth = ta, tb - self.theta, fa, fb, na
            else:
                sent, arrived, up_f, down_f, nth = tb - self.theta, ta, fb, fa, nb
            if sent < sent_at:
                continue
            if best is None or arrived < best.arrived_at:
                best = Delivery(up_f, down_f, sent, arrived, round((arrived - sent_at) * 1000, 3), nth)
        return best

    def _spikes(self, fid: str, d: Dir, sign: int, st: Optional[DelayStats]) -> List[DelaySpike]:
        if st is None or st.count < 20:
            return []
        thr_ms = st.median + max(self.opt.spike_min_ms, self.opt.spike_factor * (st.median - st.min))
        out: List[DelaySpike] = []
        cur = None
        for bk in sorted(d.buckets):
            mn, mx, tmn, tmx, fmn, fmx = d.buckets[bk]
            if sign > 0:
                worst, tw, fw = (mx - self.theta) * 1000, tmx, fmx
            else:
                worst, tw, fw = (self.theta - mn) * 1000, tmn, fmn
            if worst < thr_ms:
                continue
            if cur is not None and tw - cur[1] <= 2 * BUCKET_S + 1e-9:
                cur[1] = tw
                if worst > cur[2]:
                    cur[2], cur[3] = worst, fw
            else:
                if cur is not None:
                    out.append(cur)
                cur = [tw, tw, worst, fw]
        if cur is not None:
            out.append(cur)
        return [DelaySpike(fid, d.label, s, e, round(p, 3), st.median, int(f)) for s, e, p, f in out]

    def _overlap(self, counts) -> Dict[str, object]:
        e = self.e
        a0, a1 = e.A.running()
        b0, b1 = (self._to_a("B", x) for x in e.B.running())
        start, end = max(a0, b0), min(a1, b1)
        partial = (abs(a0 - b0) > 1.0 or abs(a1 - b1) > 1.0)
        outside_a = self.outside["A"] + e.A.outside_after + e.A.dropped_nomatch
        outside_b = self.outside["B"] + e.B.outside_after + e.B.dropped_nomatch
        if partial:
            self.notes.append(
                f"the captures overlap for {max(0.0, end - start):.3f} s only (A: {a1 - a0:.3f} s, B: {b1 - b0:.3f} s): "
                f"{outside_a} packets of A and {outside_b} of B fall outside the other capture and are not "
                "counted as lost")
        return {"start": start, "end": end, "duration_s": round(max(0.0, end - start), 6), "partial": partial,
                "outside_a": outside_a, "outside_b": outside_b,
                "unpaired_packets_a": self.unpaired_packets["A"], "unpaired_packets_b": self.unpaired_packets["B"]}

    def _findings(self, lost, unseen, spikes, reorders, not_captured=()) -> List[Finding]:
        out: List[Finding] = []
        # capture gaps: packets one capture missed although the network delivered them
        missed = [(r.upstream, r) for r in unseen] + [("B" if r.upstream == "A" else "A", r) for r in not_captured]
        for cap in ("A", "B"):
            items = sorted((r for c, r in missed if c == cap), key=lambda r: r.sent_at)
            episodes: List[list] = []
            for r in items:
                if episodes and r.sent_at - episodes[-1][-1].sent_at <= 1.0:
                    episodes[-1].append(r)
                else:
                    episodes.append([r])
            for i, ep in enumerate(episodes, 1):
                other = "B" if cap == "A" else "A"
                out.append(Finding(
                    kind="capture_gap", id=f"gap-{cap}-{i}", start=ep[0].sent_at, end=ep[-1].sent_at,
                    summary=(f"capture {cap} missed {len(ep)} packets that capture {other} saw and the network "
                             f"delivered (capture drops or another path): not losses between the points"),
                    frames=tuple(r.frame for r in ep[:20]),
                    evidence=tuple(f"{r.seen_at} frame {r.frame}: {r.direction} seq {r.seq_rel} len {r.len}"
                                   + (" (acknowledged by the receiver)" if r.kind == "not_captured" else "")
                                   for r in ep[:5]),
                    numbers={"capture": cap, "packets": len(ep)}))
        for r in lost[:self.opt.max_listed]:
            down = "B" if r.upstream == "A" else "A"
            what = f"{r.len}-byte segment" if r.len else _control_name(r.flags)
            if r.transmission > 1:
                what += f" (transmission #{r.transmission})"
            if r.redundant:
                how = (f"an earlier transmission of the same bytes had got through to {down} (a spurious "
                       "retransmission): this loss delayed nothing")
                end = r.sent_at
            elif r.delivered_by:
                dv = r.delivered_by
                how = (f"delivered by transmission #{dv.transmission} ({r.upstream} frame {dv.up_frame}), "
                       f"which reached {down} (frame {dv.down_frame}) {dv.after_ms:.1f} ms after this one was sent")
                end = dv.arrived_at
            else:
                how = ("never delivered within the captures" if r.len or r.flags & 0x03
                       else "not retransmitted (ACKs and RSTs are not)")
                end = r.sent_at
            ev = [f"{r.seen_at} frame {r.frame}: seq {r.seq_raw} (relative {r.seq_rel}) len {r.len}"
                  + (f" TSval {r.tsval}" if r.tsval is not None else ""),
                  f"no packet with this seq/len/TSval in capture {down}"]
            if r.delivered_by:
                ev.append(f"{down} frame {r.delivered_by.down_frame}: the retransmission arrived")
            out.append(Finding(
                kind="lost", id=r.id, start=r.sent_at, end=end,
                summary=f"{what} {r.direction} (seq {r.seq_rel}) lost between {r.upstream} and {down}; {how}",
                frames=(r.frame,), evidence=tuple(ev),
                numbers={"seq_raw": r.seq_raw, "len": r.len, "seen_at": r.seen_at, "flow": r.flow,
                         "delivered_after_ms": r.delivered_by.after_ms if r.delivered_by else None}))
        for r in unseen[:self.opt.max_listed]:
            down = "B" if r.upstream == "A" else "A"
            out.append(Finding(
                kind="unseen_upstream", id=r.id, start=r.sent_at, end=r.sent_at,
                summary=(f"{r.len}-byte segment {r.direction} (seq {r.seq_rel}) seen at {down} (frame {r.frame}) "
                         f"but never at {r.upstream}, which is nearer the sender: capture drop or another path"),
                frames=(r.frame,), evidence=(f"{r.seen_at} frame {r.frame}: seq {r.seq_raw} len {r.len}",),
                numbers={"seq_raw": r.seq_raw, "len": r.len, "seen_at": r.seen_at, "flow": r.flow}))
        for i, s in enumerate(spikes, 1):
            out.append(Finding(
                kind="delay_spike", id=f"spike-{i}", start=s.start, end=s.end,
                summary=(f"one-way delay {s.direction} peaked at {s.peak_ms:.1f} ms (median {s.baseline_ms:.1f} ms)"),
                frames=(s.frame_a,), evidence=(f"A frame {s.frame_a}: {s.peak_ms:.1f} ms between the capture points",),
                numbers={"peak_ms": s.peak_ms, "median_ms": s.baseline_ms, "flow": s.flow}))
        for i, r in enumerate(reorders, 1):
            t0 = min(x[2] for x in r.examples) if r.examples else 0.0
            t1 = max(x[2] for x in r.examples) if r.examples else 0.0
            out.append(Finding(
                kind="reordering", id=f"reorder-{i}", start=t0, end=t1,
                summary=f"{r.count} segments {r.direction} arrived in a different order than they were sent",
                frames=tuple(x[0] for x in r.examples),
                evidence=tuple(f"A frame {fa} / B frame {fb}" for fa, fb, _ in r.examples[:5]),
                numbers={"count": r.count, "flow": r.flow}))
        out.sort(key=lambda f: (f.start, f.kind))
        return out


# --- plugin findings per side, linked to the losses --------------------------------------------

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
    added = []
    for n, f in enumerate(findings, 1):
        start, end = f.start + shift, f.end + shift
        flows = flows_of_stream.get(f.stream) if f.stream is not None else None
        causes: List[str] = []
        if f.kind in LINKED_KINDS:
            filled = (f.numbers or {}).get("filled_by_frame")
            for r in result.lost:
                if r.redundant or (flows is not None and r.flow not in flows):
                    continue
                dv = r.delivered_by
                if f.kind == "hol_blocked" and filled is not None and dv is not None:
                    down = "B" if r.upstream == "A" else "A"
                    if (side == down and dv.down_frame == filled) or (side == r.upstream and dv.up_frame == filled):
                        causes.append(r.id)
                    continue
                done = dv.arrived_at if dv else math.inf
                if r.len and r.sent_at <= end + 1e-6 and done >= start - 1e-3:
                    causes.append(r.id)
        base_id = f.id or f"{f.kind}-{n}"
        added.append(replace(f, start=start, end=end, id=f"{side}:{base_id}",
                             caused_by=tuple(dict.fromkeys(tuple(f.caused_by) + tuple(causes))),
                             evidence=tuple(f.evidence) + (f"capture {side}, tcp.stream {f.stream}",),
                             numbers={**(f.numbers or {}), "side": side,
                                      "flow": ",".join(sorted(flows)) if flows else None}))
    merged = sorted(list(result.findings) + added, key=lambda x: (x.start, x.kind))
    return replace(result, findings=tuple(merged))


def analyze_both(path_a: str, path_b: str, *, tshark: Optional[str] = None,
                 prefs=None) -> Tuple[object, object]:
    """Run the tcpstall plugin (`analyze.analyze_capture`) over both captures, in parallel."""
    from ..analyze import analyze_capture

    return on_both(lambda path: analyze_capture(path, tshark=tshark, prefs=prefs), path_a, path_b)


def with_plugin_findings(result: CorrelationResult, analysis_a, analysis_b) -> CorrelationResult:
    """`result` plus both captures' plugin findings, linked to the losses (pure)."""
    result = link_side_findings(result, "A", analysis_a.findings)
    return link_side_findings(result, "B", analysis_b.findings)


# --- entry points -------------------------------------------------------------------------------

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
    return _Builder(eng, name_a, name_b, opt).build()

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
