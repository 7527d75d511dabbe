"""The engine's final state (`matching.Engine`) turned into a `CorrelationResult`, once, at the
end: connections paired across the captures, the clock offset and one-way delays, every
transmission left unmatched classified (lost between the capture points, unseen upstream, not
captured downstream, or outside the other capture) with the retransmission that delivered it,
delay spikes, the overlap of the captures; the finding texts come from `findings`.

Clock offset (NTP-style): for a direction where A is upstream, d = tB - tA = offset + delay;
in the other direction d = offset - delay. With delays >= 0, offset lies in
[max d_down, min d_up]; we report the midpoint and half the width as the bound (exact when
the two one-way delays between the capture points are equal).
"""
from __future__ import annotations

import bisect
import math
from itertools import accumulate
from typing import Dict, Iterable, List, Optional, Tuple

from ..records import DelayStats, Delivery, FlowDirection, FlowPair, LostSegment
from ..tshark import FIELD_SEP
from .findings import correlation_findings
from .matching import (BUCKET_S, E_D, E_F, E_FILL, E_FL, E_LEN, E_SEQ, E_T, E_TSV, HALF, MASK, CorrelateOptions,
                       Dir, Engine)
from .result import CaptureSpan, CorrelateError, CorrelationResult, DelaySpike, Reordering

SEG_SPAN_MAX = 0x40000          # no segment is longer than 256 KiB: how far back an index lookup looks


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


def _seq_in(seq: int, start: int, length: int) -> bool:
    return ((seq - start) & MASK) < max(length, 1)


def _rel(seq: int, d: "Dir") -> int:
    """seq relative to direction d's base: the sort key of the per-direction segment indexes."""
    return (seq - (d.base or 0)) & MASK


class Builder:
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
        findings = correlation_findings(lost, unseen, spikes, reorders, not_captured,
                                        max_listed=self.opt.max_listed)
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
