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
