"""Application stalls and timeouts explained by what TCP did: causal chains over packets + logs.

Input: the TCP evidence of one capture (`facts_from_analysis`) or of two correlated captures
(`facts_from_correlation`: losses between the capture points, plugin findings of both sides,
clock offset) and the application logs attached to the hosts (`timeline.SideLog`, events in
capture A's clock). Output: one `Finding` per app incident, kind `app_timeout` (the app said it
timed out) or `app_stall` (an operation took unusually long), whose `summary` is the causal
chain in one line with the numbers, `caused_by` the ids of the TCP findings/losses behind it and
`numbers` the values the chain states (also `numbers["chain"]`: the steps as a list).

Causes recognised (the three incident classes of DESIGN.md §1):
  hol      a segment lost between the captures (or a HOL episode in one capture) whose
           loss-to-delivery interval overlaps the app's window; with the held bytes, the
           retransmission trigger and the thin-stream explanation
  rwnd     a receiver-window-throttling episode covering the app's window: window/RTT, the
           bytes/window x RTT estimate, the log line stating the receive buffer, and the window
           that would have met the app's own timeout
  retries  retransmissions / probes without an answer (peer gone): the plugin's episode (counts,
           outcome, who reset, its Linux abort prediction and the settings it assumed) set
           against the moment the app failed; Python has no abort model of its own

Pure functions; no tshark, no printing.
"""
from __future__ import annotations

import datetime as _dt
import math
import re
import statistics
from dataclasses import dataclass, field, replace
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from .applog import format_offset
from .records import Finding, LogEvent, LostSegment, Segment

DIAG_KINDS = ("app_stall", "app_timeout")


@dataclass(frozen=True)
class DiagnoseOptions:
    stall_min_ms: float = 100.0        # a logged duration below this is never a stall
    stall_factor: float = 2.0          # ... and must be this many times its kind's median
    group_min: int = 5                 # (when that kind of line occurs at least this often)
    single_min_ms: float = 1000.0      # a one-off duration below this is reported only if TCP explains it
    slack_s: float = 0.005             # tolerance when intersecting windows


@dataclass(frozen=True)
class TcpFacts:
    """What the packets say, normalised for one or two captures; times in capture A's clock."""
    sides: Tuple[str, ...]                              # ("A",) or ("A", "B")
    names: Mapping[str, str]                            # side -> capture path
    findings: Tuple[Finding, ...]                       # plugin (+ correlate) findings
    lost: Tuple[LostSegment, ...] = ()
    clock_offset_s: float = 0.0                         # B - A
    one_way_ms: Mapping[str, float] = field(default_factory=dict)   # "A->B" -> median
    packets: Mapping[str, Sequence[Segment]] = field(default_factory=dict)  # own clock per side


def facts_from_correlation(result, packets: Optional[Mapping[str, object]] = None) -> TcpFacts:
    """From a correlate.CorrelationResult (with plugin findings linked) and timeline.CapturePackets."""
    return TcpFacts(
        sides=("A", "B"), names={"A": result.a.path, "B": result.b.path},
        # (a lost redundant copy delayed nothing: it explains no stall)
        findings=tuple(result.findings), lost=tuple(r for r in result.lost if r.kind == "lost" and not r.redundant),
        clock_offset_s=(result.clock_offset_ms or 0.0) / 1000.0,
        one_way_ms={k: v.median for k, v in result.one_way_delay_ms.items()},
        packets={k: tuple(v.segments) for k, v in (packets or {}).items()})


def facts_from_analysis(analysis, packets=None, side: str = "A") -> TcpFacts:
    """From one capture's analyze.AnalysisResult (the plugin's findings)."""
    findings = tuple(replace(f, numbers={**(f.numbers or {}), "side": side}) for f in analysis.findings)
    return TcpFacts(sides=(side,), names={side: analysis.capture}, findings=findings,
                    packets={side: tuple(packets.segments)} if packets is not None else {})


@dataclass(frozen=True)
class Incident:
    """One thing the app logged as slow or timed out, in A's clock."""
    side: str
    kind: str                       # app_stall / app_timeout
    event: LogEvent
    start: float
    end: float
    app_ms: Optional[float]         # the duration the app stated (None: a bare timeout line)
    others: Tuple[LogEvent, ...] = ()    # more lines about the same incident
    weak: bool = False              # a one-off duration with no baseline: kept only if explained

    @property
    def ref(self) -> str:
        return f"{self.event.source}:{self.event.line_no}"


@dataclass(frozen=True)
class Diagnosis:
    findings: Tuple[Finding, ...]
    incidents: Tuple[Incident, ...]
    explained: int
    unexplained: int


# --- time text ---------------------------------------------------------------------------------

def clock(t: float, zone: Optional[int] = None) -> str:
    """HH:MM:SS.ffffff in the given UTC offset (seconds), or UTC."""
    tz = _dt.timezone(_dt.timedelta(seconds=zone or 0))
    return _dt.datetime.fromtimestamp(t, tz).strftime("%H:%M:%S.%f")


def zone_label(zone: Optional[int]) -> str:
    if not zone:
        return "UTC"
    return format_offset(zone)


def _num(x: float) -> str:
    """2079208 -> '2 079 208'."""
    return f"{int(round(x)):,}".replace(",", " ")


def _ms(x: float) -> str:
    """140 -> '140 ms', 20.354 -> '20.4 ms', 26778 -> '26.78 s'."""
    if x >= 10_000:
        return f"{x / 1000:.2f} s"
    return f"{x:.1f}".rstrip("0").rstrip(".") + " ms"


# --- incidents from the logs -------------------------------------------------------------------

_DIGITS = re.compile(r"\d+(?:\.\d+)?")


def _template(text: str) -> str:
    first = text.split("\n", 1)[0]
    # drop a leading "file.go:96:" / "[thread]" location and all numbers: "heartbeat seq= read cost ms"
    first = re.sub(r"^\S+\.\w+:\d+:\s*", "", first)
    return _DIGITS.sub("#", first)


def find_incidents(logs: Sequence, options: DiagnoseOptions = DiagnoseOptions()) -> List[Incident]:
    """App timeouts (kind timeout) and stalls (a stated duration >= stall_min_ms that is, when
    the same kind of line is frequent, >= stall_factor x its median) from SideLogs. Lines about
    the same interval on the same host become one incident. A one-off duration (no baseline)
    below single_min_ms is `weak`: `diagnose` reports it only when TCP explains it."""
    out: List[Incident] = []
    for lg in logs:
        groups: Dict[str, List[float]] = {}
        for e in lg.events:
            if e.duration_s is not None:
                groups.setdefault(_template(e.text), []).append(e.duration_s)
        medians = {k: statistics.median(v) for k, v in groups.items() if len(v) >= options.group_min}
        found: List[Incident] = []
        for e in lg.events:
            dur = e.duration_s
            if e.kind == "timeout":
                # a bare timeout line (no duration, no start line paired with it) is an instant
                start = e.start if e.start is not None else e.time
                found.append(Incident(lg.side, "app_timeout", e, start, e.time,
                                      dur * 1000 if dur is not None else None))
                continue
            if dur is None or dur * 1000 < options.stall_min_ms:
                continue
            med = medians.get(_template(e.text))
            if med is not None and dur < options.stall_factor * med:
                continue
            weak = med is None and dur * 1000 < options.single_min_ms
            found.append(Incident(lg.side, "app_stall", e, e.start if e.start is not None else e.time - dur,
                                  e.time, dur * 1000, weak=weak))
        out.extend(_merge_same(found))
    out.sort(key=lambda i: (i.start, i.side))
    return out


def _merge_same(incidents: List[Incident]) -> List[Incident]:
    """Incidents of one log whose windows mostly coincide (a span and its "cost" line) -> one; a
    timeout line wins the kind, the longer stated duration the numbers."""
    out: List[Incident] = []
    for inc in sorted(incidents, key=lambda i: i.start):
        prev = out[-1] if out else None
        if prev is not None:
            inter = min(prev.end, inc.end) - max(prev.start, inc.start)
            shorter = min(prev.end - prev.start, inc.end - inc.start)
            if inter >= 0 and (shorter <= 0 or inter >= 0.8 * shorter) and abs(prev.end - inc.end) < 1.0:
                main, other = (prev, inc) if (prev.app_ms or 0) >= (inc.app_ms or 0) else (inc, prev)
                kind = "app_timeout" if "app_timeout" in (prev.kind, inc.kind) else "app_stall"
                out[-1] = replace(main, kind=kind, others=main.others + (other.event,) + other.others,
                                  weak=prev.weak and inc.weak)
                continue
        out.append(inc)
    return out


# --- candidate causes --------------------------------------------------------------------------

def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return min(a1, b1) - max(a0, b0)


def _side_of(f: Finding) -> Optional[str]:
    return (f.numbers or {}).get("side")


def _lost_window(r: LostSegment) -> Tuple[float, float]:
    end = r.delivered_by.arrived_at if r.delivered_by else math.inf
    return r.sent_at, end


@dataclass
class _Cause:
    kind: str                       # hol / rwnd / retries / delay
    score: float
    lost: Optional[LostSegment] = None
    finding: Optional[Finding] = None
    related: List[Finding] = field(default_factory=list)
    lost_related: List[LostSegment] = field(default_factory=list)   # retries: its transmissions

    @property
    def ids(self) -> Tuple[str, ...]:
        ids = []
        if self.lost is not None:
            ids.append(self.lost.id)
        if self.finding is not None:
            ids.append(self.finding.id)
        ids += [f.id for f in self.related] + [r.id for r in self.lost_related]
        return tuple(dict.fromkeys(i for i in ids if i))


def _candidates(inc: Incident, facts: TcpFacts, opt: DiagnoseOptions) -> List[_Cause]:
    w0, w1 = inc.start - opt.slack_s, inc.end + opt.slack_s
    span = max(w1 - w0, 1e-6)
    out: List[_Cause] = []
    hol = [f for f in facts.findings if f.kind == "hol_blocked"]
    # losses a retries finding accounts for (the peer was gone) belong to that finding
    by_retries: Dict[str, Finding] = {}
    for f in facts.findings:
        if f.kind == "retries":
            for cid in f.caused_by:
                by_retries.setdefault(cid, f)
    for r in facts.lost:
        if not r.len or r.id in by_retries:
            continue
        a, b = _lost_window(r)
        ov = _overlap(w0, w1, a, min(b, w1 + 3600))
        if ov < 0:
            continue
        linked = [f for f in hol if r.id in f.caused_by]
        base = 3.0 if r.delivered_by is not None else 1.5     # never delivered: not a HOL story
        out.append(_Cause("hol", base + ov / span, lost=r, related=linked))
    claimed = {f.id for c in out for f in c.related}
    for f in facts.findings:
        if f.id in claimed or f.kind not in ("hol_blocked", "rwnd_throttling", "retries"):
            continue
        start, end = f.start, f.end
        if f.kind == "hol_blocked":
            # the stall began when the lost data was first sent, not when the hold was first seen
            start = min(start, (f.numbers or {}).get("original_sent_at") or start)
        if f.kind == "retries":
            # the retries continue past the last retransmission the capture holds
            end = max(f.end, inc.end) if f.start <= inc.end + opt.slack_s else f.end
        ov = _overlap(w0, w1, start, end)
        if ov < 0:
            continue
        frac = ov / span
        same = 0.5 if _side_of(f) in (None, inc.side) else 0.0
        kind = {"hol_blocked": "hol", "rwnd_throttling": "rwnd", "retries": "retries"}[f.kind]
        base = {"hol": 2.0, "retries": 2.0, "rwnd": 1.0}[kind]
        if kind == "rwnd" and frac < 0.3:
            continue                # a short window-limited stretch does not explain a long stall
        related = [by_id for by_id in facts.lost if by_id.id in f.caused_by] if kind == "retries" else []
        out.append(_Cause(kind, base + frac + same, finding=f, lost_related=related))
    # a one-way delay spike between the two capture points (correlate): the packets were late in
    # the network (or a capture host stalled), not held by TCP; the weakest explanation, only
    # when nothing of TCP's own overlaps. Its time is the worst sample's at A: the segment was
    # between the points for peak_ms around it.
    for f in facts.findings:
        if f.kind != "delay_spike":
            continue
        peak_s = ((f.numbers or {}).get("peak_ms") or 0.0) / 1000.0
        ov = _overlap(w0, w1, f.start - peak_s, f.end + peak_s)
        if ov >= 0:
            # (the larger delay wins among spikes that cover the incident alike)
            out.append(_Cause("delay", 0.5 + min(ov / span, 1.0) + peak_s, finding=f))
    out.sort(key=lambda c: -c.score)
    return out


# --- chains ------------------------------------------------------------------------------------

def _what(inc: Incident) -> str:
    """B's Read blocked 140 ms / A's heartbeat timed out after 50 ms / A's request took 6540 ms."""
    text = inc.event.text.split("\n", 1)[0].lower()
    s = inc.side
    if inc.kind == "app_timeout":
        if "etimedout" in text or "connection timed out" in text:
            dur = f" after {_ms(inc.app_ms)}" if inc.app_ms else ""
            return f"{s}'s request failed with ETIMEDOUT{dur}"
        if inc.app_ms:
            noun = "heartbeat" if "heartbeat" in text else ("request" if "request" in text else "operation")
            if "proc_time" in text or "took" in text:
                return f"{s}'s {noun} took {_ms(inc.app_ms)} and timed out"
            return f"{s}'s {noun} timed out after {_ms(inc.app_ms)}"
        return f"{s} logged a timeout"
    if "read" in text:
        return f"{s}'s Read blocked {_ms(inc.app_ms)}"
    if "request" in text or "proc_time" in text:
        return f"{s}'s request took {_ms(inc.app_ms)}"
    return f"{s}'s operation took {_ms(inc.app_ms)}"


def _step0(inc: Incident, zone: Optional[int], offset_s: float = 0.0) -> str:
    """The app's own words and time: the log line's timestamp as written (its host's clock)."""
    own = inc.end + (offset_s if inc.side == "B" else 0.0)
    return f"{_what(inc)} (log {inc.ref}, {'until ' if inc.app_ms else 'at '}{clock(own, zone)})"


_TRIGGER_WORDS = {"rto": "an RTO retransmission", "fast": "a fast retransmit", "rack": "a RACK retransmission",
                  "tlp": "a tail loss probe"}


def _thin_words(trigger: Optional[str], later: int, every_ms: float) -> str:
    """Why a thin stream recovers slowly, for the trigger that finally retransmitted."""
    segs = f"{later} later segment{'s' if later != 1 else ''}"
    if trigger == "fast":
        return (f"the 3 duplicate ACKs needed {segs}, and the sender wrote one every ~{every_ms:.0f} ms "
                f"(thin stream)")
    if trigger == "rto":
        return (f"the sender wrote one segment every ~{every_ms:.0f} ms (thin stream): too few duplicate "
                f"ACKs for a fast retransmit, so the retransmission timer had to expire")
    return (f"the loss only showed once {segs} {'were' if later != 1 else 'was'} SACKed, and the sender "
            f"wrote one every ~{every_ms:.0f} ms (thin stream)")


def _short_times(times: Sequence[float], zone: Optional[int]) -> str:
    """22:15:18.735327, .795349, 19.855338 -- the issue's ".168, .249, .330" style."""
    out, prev = [], None
    for t in times:
        full = clock(t, zone)
        if prev is not None and full[:8] == prev[:8]:
            out.append(full[8:])
        elif prev is not None and full[:6] == prev[:6]:
            out.append(full[6:])
        else:
            out.append(full)
        prev = full
    return ", ".join(out)


def _hol_chain(inc: Incident, c: _Cause, facts: TcpFacts, zone) -> Tuple[List[str], dict]:
    opt_slack_ms = DiagnoseOptions.slack_s * 1000
    r = c.lost
    nums: dict = {"cause": "hol"}
    steps = []
    if r is not None:
        down = "B" if r.upstream == "A" else "A"
        nums.update(lost_id=r.id, lost_seq_raw=r.seq_raw, lost_len=r.len, sent_at=round(r.sent_at, 6),
                    sent_by=r.upstream, lost_frame=r.frame)
        steps.append(f"seq {r.seq_raw} ({r.len} B) sent {clock(r.sent_at, zone)} by {r.upstream} "
                     f"(frame {r.frame}) was lost between the captures")
        down_hol = [f for f in c.related if _side_of(f) == down] or list(c.related)
        up_hol = [f for f in c.related if _side_of(f) == r.upstream] or list(c.related)
        h = down_hol[0] if down_hol else None
        if h is not None:
            n = h.numbers or {}
            nums.update(held_bytes=n.get("released_bytes"), hold_ms=n.get("max_hold_ms"),
                        held_segments=n.get("released_segments"))
            steps.append(f"{down} held {n.get('released_bytes')} B for {n.get('max_hold_ms'):.1f} ms behind it "
                         f"(HOL-blocked delivery, {h.id})")
        dv = r.delivered_by
        if dv is not None:
            retx_ms = (dv.sent_at - r.sent_at) * 1000 if dv.sent_at is not None else None
            trigger = None
            thin = None
            for f in up_hol + down_hol:
                n = f.numbers or {}
                trigger = trigger or n.get("trigger")
                thin = thin or n.get("thin_stream")
            nums.update(delivered_at=round(dv.arrived_at, 6),
                        delivered_at_downstream_clock=round(dv.arrived_at + (facts.clock_offset_s if down == "B" else 0), 6),
                        delivered_after_ms=round(dv.after_ms, 3),
                        retransmit_after_ms=round(retx_ms, 3) if retx_ms is not None else None,
                        retransmission=dv.transmission, trigger=trigger)
            how = _TRIGGER_WORDS.get(trigger or "", "a retransmission")
            if dv.transmission > 2:
                how += f" (transmission #{dv.transmission})"
            step = f"released by {how} {retx_ms:.1f} ms after the original" if retx_ms is not None \
                else f"released by {how}"
            step += f", which reached {down} at {clock(dv.arrived_at, zone)} (+{dv.after_ms:.1f} ms)"
            held = nums.get("held_segments")
            if thin:
                nums.update(thin_stream=True, send_interval_ms=thin["interval_ms"])
                step += ": " + _thin_words(trigger, held or 1, thin["interval_ms"])
            steps.append(step)
            if inc.side == down and inc.app_ms:
                gap = (inc.end - dv.arrived_at) * 1000
                nums["app_end_after_delivery_ms"] = round(gap, 3)
                if gap >= -opt_slack_ms:
                    nums["explained_ms"] = round((dv.arrived_at - inc.start) * 1000, 3)
                    steps.append(f"{down}'s read returned {max(gap, 0.0):.1f} ms after that arrival")
                else:       # (a later copy delivered it: the app's read ended on an earlier one)
                    steps.append(f"{down}'s read returned before that arrival: this delivery did not end it")
        else:
            steps.append("it was not delivered within the captures")
    else:
        f = c.finding
        n = f.numbers or {}
        side = _side_of(f) or inc.side
        nums.update(hol_id=f.id, held_bytes=n.get("released_bytes"), hold_ms=n.get("max_hold_ms"),
                    trigger=n.get("trigger"), release_frame=n.get("release_frame"))
        filler = None
        if n.get("filled_by_frame") is not None:
            filler = next((s for s in facts.packets.get(side, ()) if s.frame == n["filled_by_frame"]), None)
        missing = f"seq {filler.seq_raw} ({filler.length} B)" if filler is not None else "a segment"
        if filler is not None:
            nums.update(missing_seq_raw=filler.seq_raw, missing_len=filler.length)
        if n.get("view") == "sender":     # the sender's capture: the data left, the receiver never got it
            steps.append(f"the data at seq {filler.seq_raw if filler is not None else '?'} sent by {side} was lost "
                         f"on the way: the receiver acknowledged "
                         f"{n.get('released_bytes')} B sent after it (SACK/dupACK) and held them "
                         f"{n.get('max_hold_ms'):.1f} ms (HOL-blocked delivery, {f.id})")
        else:
            steps.append(f"{missing} was missing in {side}'s capture: {n.get('released_bytes')} B arrived after it "
                         f"and were held {n.get('max_hold_ms'):.1f} ms (HOL-blocked delivery, {f.id})")
        trig = n.get("trigger")
        step = f"released by {'a ' + trig + ' ' if trig and trig != 'unknown' else ''}retransmission " \
               f"(frame {n.get('filled_by_frame')})"
        if n.get("original_sent_at") is not None:
            nums.update(sent_at=n["original_sent_at"], retransmit_after_ms=n["retransmit_after_ms"])
            step += (f" sent {n['retransmit_after_ms']:.1f} ms after the original "
                     f"({clock(n['original_sent_at'], zone)})")
        step += f", released at {clock(f.end, zone)}"
        thin = n.get("thin_stream")
        if thin:
            nums.update(thin_stream=True, send_interval_ms=thin["interval_ms"])
            step += f"; one segment every ~{thin['interval_ms']:.0f} ms (thin stream) delayed loss detection"
        steps.append(step)
        if inc.app_ms:
            nums["explained_ms"] = round((f.end - inc.start) * 1000, 3)
            if side == inc.side:
                gap = (inc.end - f.end) * 1000
                nums["app_end_after_delivery_ms"] = round(gap, 3)
                if gap >= -opt_slack_ms:
                    steps.append(f"{side}'s read returned {max(gap, 0.0):.1f} ms after that arrival")
    return steps, nums


_BYTES_IN_LOG = re.compile(r"bytes=(\d+)")
_APP_TIMEOUT = re.compile(r"timeout[ =:(]*(\d+(?:\.\d+)?)\s*(ms|s)\b", re.I)
_RCVBUF = re.compile(r"(SO_RCVBUF|rcvbuf|receive buffer|rmem)", re.I)


def capture_host(segments: Sequence[Segment]) -> Optional[str]:
    """The address of the host a single capture was taken on: the endpoint that answers the
    other's data fastest (its ACKs leave right away, the peer's come back a round trip later)."""
    delays: Dict[str, List[float]] = {}
    sent: Dict[tuple, List[Tuple[int, float]]] = {}
    for s in segments:
        if s.length:
            sent.setdefault((s.src, s.sport), []).append(((s.seq_raw + s.length) & 0xFFFFFFFF, s.time))
        if s.flags & 0x10:
            waiting = sent.get((s.dst, s.dport))
            if waiting:
                end, t = waiting[0]
                if ((s.ack_raw - end) & 0xFFFFFFFF) < 0x80000000:
                    delays.setdefault(s.src, []).append(s.time - t)
                    waiting.clear()
    if not delays:
        return segments[0].src if segments else None
    return min(delays, key=lambda k: statistics.median(delays[k]))


def _data_receiver(facts: TcpFacts, f: Finding) -> Optional[str]:
    """"A"/"B": the host that receives the data of the finding's episode (the one advertising the
    small window), from the busiest data direction in capture A and capture A's own host."""
    segs = facts.packets.get("A") or ()
    if not segs:
        return None
    inside = [s for s in segs if f.start - 0.5 <= s.time <= f.end + 0.5 and s.length]
    if not inside:
        return None
    volume: Dict[str, int] = {}
    for s in inside:
        volume[s.dst] = volume.get(s.dst, 0) + s.length
    dst = max(volume, key=volume.get)
    host_a = capture_host(segs[:20000])
    if dst == host_a:
        return "A"
    return "B" if "B" in facts.sides else None


def _rwnd_chain(inc: Incident, c: _Cause, facts: TcpFacts, logs, zone) -> Tuple[List[str], dict]:
    f = c.finding
    n = f.numbers or {}
    window = n.get("window")
    # the plugin's mean round while window-limited (sender turn + receiver turn): one window each
    rtt_ms = n.get("rtt_ms")
    sent = n.get("bytes")
    if sent is None:
        m = _BYTES_IN_LOG.search(inc.event.text)
        sent = int(m.group(1)) if m else None
    receiver = _data_receiver(facts, f) or "the receiver"
    limited = n.get("limited_ms")
    nums = {"cause": "rwnd", "rwnd_id": f.id, "window": window, "scale": n.get("scale"),
            "limited_ms": limited, "rtt_ms": rtt_ms, "bytes": sent, "cap_mbps": n.get("cap_mbps")}
    steps = [f"{receiver} advertised a {window} B receive window for {_ms(limited or 0)} of it "
             f"(receiver window throttling, {f.id})"]
    if sent and window and rtt_ms:
        est = sent / window * rtt_ms
        nums.update(model_ms=round(est, 1), cycle_ms=rtt_ms)
        vs = ""
        if inc.app_ms:
            nums["model_error_pct"] = round(abs(est - inc.app_ms) / inc.app_ms * 100, 2)
            vs = f"; the app measured {_ms(inc.app_ms)}, {nums['model_error_pct']:.1f} % off"
        steps.append(f"one window per round of {rtt_ms:.2f} ms (data → ACK → next data): {_num(sent)} B / "
                     f"{window} B × {rtt_ms:.2f} ms ≈ {_ms(est)}"
                     + (f" (throughput capped at {n['cap_mbps']:.1f} Mbit/s)" if n.get("cap_mbps") else "") + vs)
    for lg in sorted(logs, key=lambda lg: lg.side != receiver):      # the receiver's own log first
        for e in lg.events:
            if _RCVBUF.search(e.text.split("\n", 1)[0]):
                steps.append(f"{lg.side}'s log states the receive buffer: "
                             f"“{_short(e.text)}” ({e.source}:{e.line_no})")
                nums["rcvbuf_log"] = f"{e.source}:{e.line_no}"
                break
        if "rcvbuf_log" in nums:
            break
    m = _APP_TIMEOUT.search(inc.event.text)
    if m and sent and rtt_ms:
        t_ms = float(m.group(1)) * (1000 if m.group(2).lower() == "s" else 1)
        need = sent * nums.get("cycle_ms", rtt_ms) / t_ms
        nums.update(app_timeout_ms=t_ms, window_needed=int(math.ceil(need)))
        steps.append(f"→ to finish within the app's {t_ms:.0f} ms timeout the window must be ≥ "
                     f"{_num(math.ceil(need))} B")
    return steps, nums


def _short(text: str, n: int = 100) -> str:
    first = text.split("\n", 1)[0]
    return first if len(first) <= n else first[:n - 1] + "…"


_CONTROL_WHAT = {"keepalive": "keepalive probes", "zero_window": "zero-window probes", "probe": "probes"}

# The plugin's abort prediction against the time the app saw the error: the kernel checks its
# budget when the (clamped) RTO timer fires, and the lab's ETIMEDOUTs came up to 1.6 % (32 ms of
# 1.95 s, a timer that fired late) after the prediction; 3 % still tells tcp_retries2 values apart
# (each adds one doubled RTO, far more than 3 %).
_ABORT_MATCH = 0.03


def _delay_chain(c: _Cause) -> Tuple[List[str], dict]:
    """A one-way delay spike correlate measured between the capture points."""
    f = c.finding
    n = f.numbers or {}
    frame = f.frames[0] if f.frames else None
    steps = [f"a segment {n.get('direction')} (A frame {frame}) was {n.get('peak_ms'):.1f} ms between the "
             f"capture points where the median is {n.get('median_ms'):.1f} ms ({f.id}): delayed in the network "
             "between them (or a capture host stalled), with no loss, retransmission, window limit or "
             "retries episode: not TCP"]
    return steps, {"cause": "delay_spike", "spike_id": f.id, "delay_ms": n.get("peak_ms"),
                   "median_ms": n.get("median_ms"), "frame_a": frame}


def _retries_chain(inc: Incident, c: _Cause, facts: TcpFacts, zone) -> Tuple[List[str], dict]:
    """The retries episode as the plugin measured it: counts, first send, outcome, who reset,
    and its Linux abort prediction (abort_at_s, budget_s, the settings it assumed), set against
    the moment the app failed. No abort model of its own."""
    f = c.finding
    n = f.numbers or {}
    side = _side_of(f) or inc.side
    first = f.start
    kind = n.get("kind") or "data"
    count, outcome = n.get("count"), n.get("outcome")
    nums: dict = {"cause": "retries", "retries_id": f.id, "retries_kind": kind, "retransmissions": count,
                  "rto_retransmissions": n.get("rto_count"), "first_send": round(first, 6), "outcome": outcome,
                  "reset_by": n.get("reset_by"), "linux_like": n.get("linux_like"), "budget_s": n.get("budget_s"),
                  "assumed": n.get("assumed"), "budget_from": n.get("budget_from"),
                  "predicted_abort_after_s": n.get("abort_at_s")}
    if kind == "data":
        steps = [f"{side} sent the data at {clock(first, zone)} and retransmitted it {count} times without an ACK "
                 f"({n.get('rto_count')} by the RTO timer), the last {clock(f.end, zone)} ({f.id})"]
    else:
        what = _CONTROL_WHAT.get(n.get("probe") or kind, kind)
        steps = [f"{side} sent {count} {what} from {clock(first, zone)} and none was answered ({f.id})"
                 if kind == "probe" else
                 f"{side} sent its {kind.upper()} at {clock(first, zone)} and retransmitted it {count} times "
                 f"without an answer ({f.id})"]
    peer = [s for s in facts.sides if s != side]
    if c.lost_related:
        lost = c.lost_related
        steps.append(f"capture {peer[0] if peer else 'B'} saw none of {'these' if len(lost) > 1 else 'this'} "
                     f"{len(lost)} transmission{'s' if len(lost) > 1 else ''} ({lost[0].id}"
                     f"{' … ' + lost[-1].id if len(lost) > 1 else ''}): the path or the peer was gone")
        nums["lost_transmissions"] = len(lost)
    elif peer and facts.packets.get(peer[0]):
        segs = facts.packets[peer[0]]
        shift = facts.clock_offset_s if peer[0] == "B" else 0.0
        last_peer = max((s.time - shift for s in segs), default=None)
        if last_peer is not None and last_peer < first:
            steps.append(f"capture {peer[0]} holds no packet after {clock(last_peer, zone)}: "
                         f"the peer was unreachable")
    app_after = inc.end - first if inc.kind == "app_timeout" or inc.app_ms is None else None
    nums["app_failed_after_s"] = round(app_after, 6) if app_after is not None else None
    stall = n.get("stall_s")
    abort = n.get("abort_at_s")
    if outcome == "reset" and n.get("reset_by") != "sender":
        steps.append(f"a RST from the peer answered retransmission #{count}"
                     + (f" {stall:.3f} s after the first send" if stall is not None else "")
                     + ": the connection was reset (no tcp_retries2 abort)")
    elif outcome in ("aborted", "reset"):
        how = ("its keepalive gave up" if n.get("probe") == "keepalive" else
               "it gave up on its retransmission timer" if outcome == "aborted" else "its application reset it")
        steps.append(f"{side} reset the connection itself after {count} unanswered "
                     f"{_CONTROL_WHAT.get(n.get('probe') or '', 'retransmissions')}"
                     + (f", {stall:.3f} s after the first" if stall is not None else "") + f": {how}")
    elif outcome == "recovered":
        steps.append(f"the peer answered {stall:.3f} s after the first send: the connection recovered"
                     if stall is not None else "the peer answered: the connection recovered")
    elif kind != "data":
        steps.append(f"nothing answered until the capture ends: the kernel gives up by "
                     f"{'tcp_syn_retries' if kind == 'syn' else 'tcp_orphan_retries' if kind == 'fin' else 'its probe limit'}")
    elif n.get("linux_like") is False:
        steps.append(f"the sender does not behave like Linux ({n.get('not_linux')}): no Linux abort prediction")
    elif abort is not None:
        assumed = n.get("assumed")
        by = "TCP_USER_TIMEOUT" if n.get("budget_from") == "user_timeout" else "tcp_retries2"
        step = (f"the kernel's abort: Linux gives up {abort:.3f} s after the first send (budget "
                f"{n.get('budget_s'):.3f} s by {by} from the first RTO retransmission, checked when the RTO timer fires"
                + (f"; assumed {assumed}" if assumed else "") + ")")
        if app_after:
            err = abs(abort - app_after) / app_after
            nums["abort_error_pct"] = round(err * 100, 2)
            if err <= _ABORT_MATCH:
                nums["kernel_abort"] = True
                step += f"; the app failed after {app_after:.3f} s ({err * 100:.1f} % off): that is the kernel's abort"
            else:
                nums["kernel_abort"] = False
                step += (f"; the app failed after {app_after:.3f} s, not at that abort"
                         + (f" (the prediction assumed {assumed}: give the sender's settings with -o)" if assumed else ""))
        steps.append(step)
    if kind == "data" and outcome not in ("reset", "recovered"):
        steps.append("→ would have failed faster: an RPC deadline, or TCP_USER_TIMEOUT / a lower tcp_retries2")
    return steps, nums


# --- entry point -------------------------------------------------------------------------------

def diagnose(facts: TcpFacts, logs: Sequence, *, zone: Optional[int] = None,
             options: DiagnoseOptions = DiagnoseOptions()) -> Diagnosis:
    """App incidents of `logs` (SideLogs, events in A's clock) explained by `facts`.

    Returns findings of kind app_stall / app_timeout, ids `app-1`, `app-2` … in time order; an
    incident sharing its root cause with an earlier one says so ("→ also A's timeout at …")."""
    incidents = find_incidents(logs, options)
    chosen: List[Tuple[Incident, Optional[_Cause]]] = []
    for inc in incidents:
        if inc.side not in facts.sides:
            if not inc.weak:
                chosen.append((inc, None))
            continue
        cands = _candidates(inc, facts, options)
        if not cands and inc.weak:
            continue                # a one-off 140 ms request TCP has nothing to say about
        chosen.append((inc, cands[0] if cands else None))
    by_root: Dict[str, List[int]] = {}
    for i, (inc, c) in enumerate(chosen):
        if c is not None:
            by_root.setdefault(c.ids[0], []).append(i)
    findings: List[Finding] = []
    explained = 0
    for i, (inc, c) in enumerate(chosen):
        step0 = _step0(inc, zone, facts.clock_offset_s)
        base = {"side": inc.side, "log": inc.ref, "log_text": _short(inc.event.text, 300),
                "app_ms": None if inc.app_ms is None else round(inc.app_ms, 3), "app_start": round(inc.start, 6), "app_end": round(inc.end, 6),
                "zone": zone_label(zone)}
        if c is None:
            why = ("no capture of this host" if inc.side not in facts.sides else
                   "no loss, HOL, window or retries episode on the captured connections in its window")
            untold = [f.id for f in facts.findings
                      if f.kind == "rwnd_cannot_tell" and _side_of(f) in (None, inc.side)]
            if inc.side in facts.sides and untold:
                # the capture could not see a window limit: do not let the silence read as "none"
                why = ("no loss, HOL or retries episode in its window; whether the receiver window limited the "
                       f"sender this capture cannot tell ({', '.join(untold)})")
            nums = {**base, "cause": None, "chain": [step0]}
            summary = f"{step0}: TCP does not explain it ({why})"
            caused = ()
        else:
            explained += 1
            if c.kind == "hol":
                steps, extra = _hol_chain(inc, c, facts, zone)
            elif c.kind == "rwnd":
                steps, extra = _rwnd_chain(inc, c, facts, logs, zone)
            elif c.kind == "retries":
                steps, extra = _retries_chain(inc, c, facts, zone)
            else:
                steps, extra = _delay_chain(c)
            also = [chosen[j][0] for j in by_root.get(c.ids[0], []) if j != i]
            if also:
                groups: Dict[str, List[Incident]] = {}
                for o in also:
                    groups.setdefault(_what(o), []).append(o)
                parts = []
                for what, incs in groups.items():
                    own = [o.end + (facts.clock_offset_s if o.side == "B" else 0.0) for o in incs]
                    n_txt = f" ×{len(incs)}" if len(incs) > 1 else ""
                    parts.append(f"{what}{n_txt} at {_short_times(own, zone)} "
                                 f"({incs[0].ref}{' …' if len(incs) > 1 else ''})")
                steps.append("→ also " + "; ".join(parts))
            nums = {**base, **extra, "chain": [step0] + steps}
            summary = " ← ".join([step0] + [s for s in steps if not s.startswith("→")])
            arrows = [s for s in steps if s.startswith("→")]
            if arrows:
                summary += " " + " ".join(arrows)
            caused = c.ids
        evidence = tuple(f"{e.source}:{e.line_no}: {_short(e.text, 200)}" for e in (inc.event,) + inc.others)
        findings.append(Finding(kind=inc.kind, summary=summary, start=inc.start, end=inc.end, stream=None,
                                frames=(), evidence=evidence, caused_by=caused, id=f"app-{i + 1}",
                                numbers=nums))
    return Diagnosis(tuple(findings), tuple(inc for inc, _ in chosen), explained, len(chosen) - explained)


def windows_of(diagnosis: Diagnosis, facts: TcpFacts, limit: int = 20) -> List[Tuple[float, float]]:
    """Time windows (A's clock) worth showing in a timeline: each incident widened to its causes."""
    by_id = {f.id: f for f in facts.findings}
    lost = {r.id: r for r in facts.lost}
    out = []
    for f in diagnosis.findings[:limit]:
        a, b = f.start, f.end
        for cid in f.caused_by:
            if cid in lost:
                r = lost[cid]
                a = min(a, r.sent_at)
                if r.delivered_by:
                    b = max(b, r.delivered_by.arrived_at)
            elif cid in by_id and by_id[cid].kind == "hol_blocked":
                a, b = min(a, by_id[cid].start), max(b, by_id[cid].end)
        out.append((a, b))
    if not out:
        out = [(f.start, f.end) for f in facts.findings if f.kind in ("hol_blocked", "rwnd_throttling", "retries")][:limit]
    return out
