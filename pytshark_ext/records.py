"""Frozen records that flow between the stages: capture -> tshark -> records -> analyzers -> findings.

Every stage consumes and produces these; none of them knows about tshark's text format or about
rendering. Times are epoch seconds (float) in the clock of the host that produced them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple


@dataclass(frozen=True)
class Segment:
    """One TCP packet as seen at one capture point (one row of `tshark -T fields`)."""
    frame: int
    time: float                 # frame.time_epoch, capture host's clock
    src: str                    # IP address (v4 or v6), as tshark prints it
    dst: str
    sport: int
    dport: int
    seq_raw: int                # tcp.seq_raw
    ack_raw: int                # tcp.ack_raw (0 when no ACK flag)
    length: int                 # tcp.len (payload bytes)
    flags: int                  # tcp.flags as an int (FIN=1 SYN=2 RST=4 PSH=8 ACK=16)
    window: int                 # tcp.window_size_value (raw, unscaled)
    tsval: Optional[int] = None
    tsecr: Optional[int] = None
    ip_id: Optional[int] = None
    sack: Tuple[Tuple[int, int], ...] = ()   # raw (left, right) SACK blocks
    stream: Optional[int] = None             # tcp.stream: per-file numbering, display only

    @property
    def endpoints(self) -> Tuple[Tuple[str, int], Tuple[str, int]]:
        return (self.src, self.sport), (self.dst, self.dport)


@dataclass(frozen=True)
class LogEvent:
    """One application-log event, its timestamp already converted to epoch seconds (UTC)."""
    time: float
    source: str                 # log file name (display)
    line_no: int
    text: str                   # the message, continuation lines (stack traces) appended
    kind: str = "line"          # line / duration / start / end / timeout / error
    duration_s: Optional[float] = None   # explicit duration stated by the line ("cost 239ms")
    start: Optional[float] = None        # for durations and start/end pairs: when it began


@dataclass(frozen=True)
class Finding:
    """A diagnosis: what happened, when, on which evidence, and what caused it."""
    kind: str                   # hol_blocked, rwnd_throttling, retries, lost, app_stall, app_timeout ...
    summary: str                # one sentence with the numbers
    start: float
    end: float
    stream: Optional[int] = None
    frames: Tuple[int, ...] = ()
    evidence: Tuple[str, ...] = ()
    caused_by: Tuple[str, ...] = ()      # ids of other findings
    id: str = ""
    numbers: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def duration_ms(self) -> float:
        return (self.end - self.start) * 1000.0


# --- two-capture correlation (pytshark_ext.correlate) -------------------------------------------
# Times are epoch seconds in capture A's clock unless a field says otherwise; "A"/"B" name the
# two captures in the order the user gave them.

@dataclass(frozen=True)
class DelayStats:
    """One-way delay between the two capture points for one direction, in milliseconds."""
    count: int
    min: float
    median: float
    p99: float
    max: float


@dataclass(frozen=True)
class Delivery:
    """The transmission that finally got a lost segment's bytes past the downstream capture point."""
    up_frame: Optional[int]         # frame of that (re)transmission in the upstream capture
    down_frame: int                 # frame where it arrived in the downstream capture
    sent_at: Optional[float]        # upstream send time (A's clock)
    arrived_at: float               # arrival at the downstream point (A's clock)
    after_ms: float                 # arrived_at - the lost segment's original send time
    transmission: int               # 2 = first retransmission, 3 = second, ...


@dataclass(frozen=True)
class LostSegment:
    """A transmission seen at the upstream capture point and never at the downstream one
    (or, with kind "unseen_upstream", the reverse: the upstream capture missed it)."""
    flow: str                       # FlowPair.id
    direction: str                  # "src:port -> dst:port" as addressed in capture A
    upstream: str                   # "A" or "B": the capture nearer this direction's sender
    seen_at: str                    # capture holding the packet ("A"/"B")
    frame: int                      # its frame number there
    seq_raw: int
    seq_rel: int                    # as Wireshark shows it in that capture
    len: int
    tsval: Optional[int]
    sent_at: float                  # when `seen_at` captured it, in A's clock
    delivered_by: Optional[Delivery] = None
    kind: str = "lost"              # lost | unseen_upstream
    id: str = ""
    transmission: int = 1           # 1 = original send, 2 = first retransmission, ... (at `seen_at`)
    flags: int = 0                  # tcp.flags (SYN/FIN/RST/ACK ...) of that packet
    redundant: bool = False         # a retransmission whose earlier copy had got through (spurious): lost
                                    # all the same, but it delayed nothing (delivered_by stays None)


@dataclass(frozen=True)
class FlowDirection:
    """One direction of a paired connection."""
    direction: str                  # "src:port -> dst:port" in capture A
    direction_b: str                # the same direction as addressed in capture B
    upstream: Optional[str]         # "A"/"B": capture nearer this direction's sender (None: unknown)
    matched: int
    only_a: int
    only_b: int
    delay_ms: Optional[DelayStats]
    ip_id_stable: Optional[bool]
    reordered: int


@dataclass(frozen=True)
class FlowPair:
    """One TCP connection seen in both captures, paired by segment content (NAT may differ)."""
    id: str
    a: Tuple[Tuple[str, int], Tuple[str, int]]    # endpoints in capture A (first = first sender seen)
    b: Tuple[Tuple[str, int], Tuple[str, int]]    # the same endpoints as addressed in capture B
    nat: bool
    directions: Tuple[FlowDirection, ...]
    a_streams: Tuple[int, ...] = ()               # tcp.stream numbers in A (display only)
    b_streams: Tuple[int, ...] = ()
