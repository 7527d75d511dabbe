"""Finding texts for what correlate found: capture gaps (packets one capture missed although
the network delivered them), segments lost between the capture points and how they were
delivered, segments seen downstream only, delay spikes, reordering.
"""
from __future__ import annotations

from typing import List

from ..records import Finding


def _control_name(flags: int) -> str:
    names = [n for bit, n in ((0x02, "SYN"), (0x01, "FIN"), (0x04, "RST")) if flags & bit]
    if not names:
        return "pure ACK"
    return "/".join(names) + ("-ACK" if flags & 0x10 else "") + " segment"


def correlation_findings(lost, unseen, spikes, reorders, not_captured=(), *,
                         max_listed: int) -> List[Finding]:
    """Findings for the lost and unseen segments (LostSegment), the delay spikes and the
    reorderings, in time order (listing at most `max_listed` of each kind of segment)."""
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
    for r in lost[:max_listed]:
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
    for r in unseen[:max_listed]:
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
            numbers={"peak_ms": s.peak_ms, "median_ms": s.baseline_ms, "flow": s.flow, "direction": s.direction}))
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
