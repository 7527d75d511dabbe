"""Application logs on the packet timeline: read timestamps, find events, fix the time zone.

A log line becomes a `records.LogEvent` whose `time` is epoch seconds (UTC) on the clock of the host
that wrote it (the host of the capture named by `FILE@A` / `FILE@B`). Pure library: no printing, no
exit; problems are `LogError` / `LogSpecError` / `LogFormatError`, everything else is counted in
`LogStats` and summarised as warning strings in `LogRead.warnings`.

API
---
parse_log_spec(spec) -> LogSpec
    "FILE", "FILE@A", "FILE@B:+08:00", "FILE:+05:30": the `@A|@B` and `:±HH:MM` suffixes are
    recognised only at the end, so "C:\\logs\\a.log" or "x@y.log" stay file names.
parse_tz(text) -> int
    "+08:00", "-0530", "+8", "Z", "UTC" -> UTC offset in seconds (local = UTC + offset).
iter_log_events(path, tz=None, fmt=None, ref_time=None, stats=None, source=None) -> Iterator[LogEvent]
    Streams the file line by line (bounded memory). Opens the file eagerly, so a missing or
    unreadable file raises `LogError` at the call, not at the first `next()`. `stats`, if given,
    is a `LogStats` filled while iterating.
read_log(path, tz=None, fmt=None, ref_time=None, span=None, source=None, pair=True) -> LogRead
    Convenience wrapper: events (paired with `pair_events`), stats, warnings. With `span=(lo, hi)`
    (capture start/end) it keeps only events near the span -- within 14 h of it while the zone is
    still unknown -- so a 10 M-line log costs memory for that window only.
infer_tz_offset(event_times, activity_times, window=0.1) -> (offset_s, matched) | None
    For zone-less logs: the whole quarter-hour in [-14 h, +14 h] that puts most log events within
    `window` seconds of a packet (ties: closer on average, then smaller |offset|).
align_log_tz(read, activity_times, span=None, window=0.1) -> LogRead
    Applies `infer_tz_offset` when the log is zone-less, no zone was given, and the inferred offset
    aligns at least twice as many events as offset 0; adds the one warning line saying so.
pair_events(events) -> list[LogEvent]
    "Read Start"/"Read End", "begin sync"/"sync done", "send heartbeat 17"/"heartbeat 17 ok" ->
    one kind="span" event (start, duration_s); unmatched starts/ends stay as they are. A timeout
    line without a duration takes its start and duration from the latest open start line naming
    the same operation ("send AppendEntries to 92" ... "AppendEntries timeout and retry").
shift_events(events, seconds) -> list[LogEvent]      events moved `seconds` earlier
format_offset(seconds) -> str                        28800 -> "+08:00"
parse_duration(text) -> float | None                 "239ms" -> 0.239 (bare number: ms)
start_end_key(msg) -> ("start"|"end", key) | None    the start/end marker pairing uses

LogStats (lines, events, continuations, garbage, garbage_lines, invalid_timestamps, binary_lines,
truncated_lines, formats, zoned, zoneless, has_zone, yearless, read_error, first_time, last_time)
is filled while streaming; LogRead = (path, source, events, stats, warnings, tz, tz_inferred).

Formats (detected per line; the name is what `LogStats.formats` counts)
------------------------------------------------------------------------
go          2019/08/14 15:18:45.703679 node.go:233: msg   (Go `log`, also nginx error log)
iso8601     2024-02-20T16:45:47.750+0800 msg, [..] bracketed, any fraction, Z/±HH[:MM]/UTC zone,
            or a space-separated date with a zone (also journalctl -o short-iso[-precise])
datetime    2024-02-20 16:45:47,123 msg   (Python logging asctime, log4j %d / logback, zone-less)
rfc5424     <165>1 2003-10-11T22:14:15.003Z host app - - msg
rfc3164     <34>Feb 20 16:45:47 host app[1]: msg   (also journalctl -o short)
journal-precise  Feb 20 16:45:47.123456 host app[1]: msg   (journalctl -o short-precise)
klog        I0220 16:45:47.750123    1234 file.go:12] msg   (glog/klog; E/F lines are errors)
clf         [20/Feb/2024:16:45:47 +0800] msg   (Apache/NCSA time, mostly via --log-format)
time-only   16:45:47.750 [main] INFO  c.x.Foo - msg   (log4j2 / logback default pattern)
epoch-s / epoch-ms / epoch-us / epoch-ns   1708418747.123456 msg, 1708418747123 msg ...
custom      --log-format REGEX with named groups `ts` (parsed as any format above), optional
            `msg` (the message; without it the whole line) and `duration` ("239ms", "1.2 s";
            a bare integer is milliseconds, a bare decimal number seconds).

Dates and zones
---------------
A zone in the line wins; otherwise `tz` (seconds east of UTC, from `--log-tz` or the spec);
otherwise the wall time is taken as UTC and the line counts as zone-less (`LogStats.zoneless`), for
`align_log_tz` to fix. Year-less formats (rfc3164, journal-precise, klog) take the year, and
time-only lines the date, that puts the line nearest to the previous event -- for the first line,
nearest to `ref_time` (pass the capture's first packet time) or else the file's modification time.
So a log crossing New Year or midnight stays monotonic; a time-only log with a gap > 12 h does not.

Lines
-----
Lines without a timestamp (stack traces) are appended to the previous event's text (capped at
4 KiB per event). They are garbage (counted, first line numbers kept) when no event precedes them,
when they hold binary (NUL) bytes, or when their timestamp is not a valid date. Lines longer than
64 KiB are cut (the timestamp is at the start). Undecodable bytes become U+FFFD; UTF-16 (BOM) and
gzip files are read too.

Events (kind)
-------------
timeout     "timeout", "timed out", "deadline exceeded", ETIMEDOUT (not "timeout=5s" settings, nor
            "no connect timeout", "without timeout", "timeout disabled")
error       connection reset/refused, broken pipe, unreachable, E* errno names, ERROR/FATAL level,
            "failed", exceptions, syslog severity <= err, klog E/F
duration    "cost 239ms", "took 1.2s", "elapsed 30 s", "proc_time=950.003713" (bare number after
            `key=` is ms, or the unit the key names: _us, _s ...), Go durations "1m2.5s"
start / end first or last word start/begin/send/enter... / end/done/finished/ok/exit...
line        anything else
Timeouts and errors look at the whole text (stack trace included), the others at the first line.
Any duration found sets `duration_s` and `start = time - duration_s` (the line is written at the
end of what it measures), whatever the kind.
"""
from __future__ import annotations

import bisect
import datetime as _dt
import gzip
import io
import os
import re
import time as _time
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Pattern, Sequence, Tuple, Union

from .records import LogEvent

MAX_LINE = 64 * 1024          # longer lines are cut: the timestamp is at the start
MAX_TEXT = 4096               # per event, continuation lines included
GARBAGE_SAMPLES = 5           # line numbers kept to point the user at bad lines
QUARTER_HOUR = 900
MAX_OFFSET = 14 * 3600        # UTC-12 .. UTC+14, rounded up to the symmetric range
TZ_SAMPLE = 2000              # events scored per candidate offset: keeps inference < 1 s

_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()
_LATEST_EPOCH = 4102444800    # 2100-01-01: longer digit runs are not timestamps


class LogError(Exception):
    """The log file cannot be read at all (missing, a directory, no permission)."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"cannot read log {path}: {problem}")
        self.path = path
        self.problem = problem


class LogSpecError(ValueError):
    """A `--log` / `--log-tz` argument that does not parse."""


class LogFormatError(ValueError):
    """A `--log-format` regex that does not compile or lacks the `ts` group."""


# ---------------------------------------------------------------------------------------------
# command-line specs

@dataclass(frozen=True)
class LogSpec:
    path: str
    side: Optional[str] = None        # "A" / "B": which capture's host wrote the log
    tz: Optional[int] = None          # UTC offset in seconds given with the spec


_TZ_TEXT = r"Z|UTC|[+-]\d{1,2}(?::?\d{2})?"
_SPEC = re.compile(r"(?P<path>.+?)(?:@(?P<side>[AaBb]))?(?::(?P<tz>%s))?" % _TZ_TEXT, re.S)
_TZ = re.compile(r"(?P<sign>[+-])(?P<h>\d{1,2})(?::?(?P<m>\d{2}))?")


def parse_tz(text: str) -> int:
    """`+08:00`, `-0530`, `+8`, `Z`, `UTC` -> seconds east of UTC."""
    text = text.strip()
    if text.upper() in ("Z", "UTC"):
        return 0
    m = _TZ.fullmatch(text)
    if not m:
        raise LogSpecError(f"time zone {text!r}: expected ±HH:MM, e.g. +08:00")
    hours, minutes = int(m.group("h")), int(m.group("m") or 0)
    if minutes >= 60 or hours * 3600 + minutes * 60 > MAX_OFFSET:
        raise LogSpecError(f"time zone {text!r}: outside -14:00..+14:00")
    sign = -1 if m.group("sign") == "-" else 1
    return sign * (hours * 3600 + minutes * 60)


def parse_log_spec(spec: str) -> LogSpec:
    """`FILE`, `FILE@A`, `FILE@B:+08:00`, `FILE:+05:30` -> LogSpec (suffixes only at the end)."""
    m = _SPEC.fullmatch(spec)
    if not m:
        raise LogSpecError(f"--log {spec!r}: expected FILE, FILE@A or FILE@B, optionally :±HH:MM")
    side = m.group("side")
    tz = m.group("tz")
    return LogSpec(m.group("path"), side.upper() if side else None, parse_tz(tz) if tz else None)


def format_offset(seconds: int) -> str:
    """3600*8 -> '+08:00' (the form --log-tz takes)."""
    sign = "-" if seconds < 0 else "+"
    hours, rest = divmod(abs(int(seconds)), 3600)
    return f"{sign}{hours:02d}:{rest // 60:02d}"


# ---------------------------------------------------------------------------------------------
# timestamps

class _Stamp(NamedTuple):
    fmt: str
    secs: int                  # whole seconds of the wall time, as if it were UTC
    frac: str                  # fraction digits ("" when none): kept as text for exactness
    zone: Optional[int]        # offset stated by the line, seconds east of UTC
    end: int                   # where the timestamp ends in the line
    severe: bool               # the format itself says error (syslog severity, klog E/F)


@lru_cache(maxsize=4096)
def _day_start(year: int, month: int, day: int) -> int:
    return (_dt.date(year, month, day).toordinal() - _EPOCH_ORDINAL) * 86400


def _clock(m) -> int:
    hour, minute, second = map(int, m.group("H", "M", "S"))
    if hour > 23 or minute > 59 or second > 60:      # 60: a leap second
        raise ValueError("bad time of day")
    return hour * 3600 + minute * 60 + second


def _zone(text: Optional[str]) -> Optional[int]:
    if not text:
        return None
    if text in ("Z", "UTC", "GMT"):
        return 0
    digits = text[1:].replace(":", "")
    seconds = int(digits[:2]) * 3600 + int(digits[2:4] or 0) * 60
    return -seconds if text[0] == "-" else seconds


_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_MON = "(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_HMS = r"(?P<H>\d{2}):(?P<M>\d{2}):(?P<S>\d{2})"
_ISO_CORE = (r"(?P<Y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})(?P<sep>[T ])" + _HMS
             + r"(?:[.,](?P<frac>\d{1,9}))?"
             # a space before the zone only for forms that cannot be a count ("-12 items")
             + r"(?:(?P<zone>Z|[+-]\d{2}(?::?\d{2})?)|\s(?P<zone_sp>[+-]\d{2}:?\d{2}|UTC|GMT))?"
             + r"(?![\d:])")


class _Context:
    """What timestamp conversion needs beyond the line: the zone given and the date anchor."""

    def __init__(self, tz: Optional[int], anchor: float):
        self.tz = tz
        self.anchor = anchor                 # UTC epoch of the previous event (or the reference)
        self.yearless = 0

    def nearest(self, candidates: List[int]) -> int:
        """The candidate wall time (as-if-UTC seconds) closest to the anchor's wall time."""
        target = self.anchor + (self.tz or 0)
        return min(candidates, key=lambda s: abs(s - target))

    def in_nearest_year(self, month: int, day: int, clock: int) -> int:
        self.yearless += 1
        year = _time.gmtime(self.anchor + (self.tz or 0)).tm_year
        candidates = []
        for y in (year - 1, year, year + 1):
            try:
                candidates.append(_day_start(y, month, day) + clock)
            except ValueError:               # Feb 29 in a common year
                pass
        if not candidates:
            raise ValueError("bad date")
        return self.nearest(candidates)

    def on_nearest_day(self, clock: int) -> int:
        self.yearless += 1
        today = int(self.anchor + (self.tz or 0)) // 86400 * 86400
        return self.nearest([today - 86400 + clock, today + clock, today + 86400 + clock])


def _conv_iso(m, ctx: _Context) -> _Stamp:
    g = m.group
    zone = _zone(g("zone") or g("zone_sp"))
    name = "iso8601" if g("sep") == "T" or zone is not None else "datetime"
    secs = _day_start(int(g("Y")), int(g("m")), int(g("d"))) + _clock(m)
    return _Stamp(name, secs, g("frac") or "", zone, m.end(), False)


def _conv_rfc5424(m, ctx: _Context) -> _Stamp:
    stamp = _conv_iso(m, ctx)
    return stamp._replace(fmt="rfc5424", severe=int(m.group("pri")) % 8 <= 3)


def _conv_go(m, ctx: _Context) -> _Stamp:
    year, month, day, frac = m.group("Y", "m", "d", "frac")
    secs = _day_start(int(year), int(month), int(day)) + _clock(m)
    return _Stamp("go", secs, frac or "", None, m.end(), False)


def _conv_rfc3164(m, ctx: _Context) -> _Stamp:
    g = m.group
    secs = ctx.in_nearest_year(_MONTHS[g("mon")], int(g("d")), _clock(m))
    severe = g("pri") is not None and int(g("pri")) % 8 <= 3
    return _Stamp("journal-precise" if g("frac") else "rfc3164", secs, g("frac") or "", None,
                  m.end(), severe)


def _conv_klog(m, ctx: _Context) -> _Stamp:
    g = m.group
    secs = ctx.in_nearest_year(int(g("m")), int(g("d")), _clock(m))
    return _Stamp("klog", secs, g("frac"), None, m.end(), g("lvl") in "EF")


def _conv_clf(m, ctx: _Context) -> _Stamp:
    g = m.group
    secs = _day_start(int(g("Y")), _MONTHS[g("mon")], int(g("d"))) + _clock(m)
    return _Stamp("clf", secs, "", _zone(g("zone")), m.end(), False)


def _conv_time_only(m, ctx: _Context) -> _Stamp:
    return _Stamp("time-only", ctx.on_nearest_day(_clock(m)), m.group("frac"), None,
                  m.end(), False)


_EPOCH_UNITS = {10: "epoch-s", 13: "epoch-ms", 16: "epoch-us", 19: "epoch-ns"}


def _conv_epoch(m, ctx: _Context) -> _Stamp:
    digits = m.group("int")
    secs = int(digits[:10])
    if secs > _LATEST_EPOCH:
        raise ValueError("not a plausible epoch")
    # the digits beyond the seconds are the fraction: exact for ms/us/ns
    return _Stamp(_EPOCH_UNITS[len(digits)], secs, digits[10:] + (m.group("frac") or ""), 0,
                  m.end(), False)


@dataclass(frozen=True)
class _Format:
    regex: Pattern[str]
    convert: Callable[..., _Stamp]


# Order matters only where two could match the same text: none of these overlap at the start.
_FORMATS: Tuple[_Format, ...] = (
    _Format(re.compile(r"\[?" + _ISO_CORE + r"\]?"), _conv_iso),
    _Format(re.compile(r"\[?(?P<Y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2}) " + _HMS
                       + r"(?:\.(?P<frac>\d{1,9}))?\]?(?=\s|$)"), _conv_go),
    _Format(re.compile(r"<(?P<pri>\d{1,3})>\d{1,2} " + _ISO_CORE), _conv_rfc5424),
    _Format(re.compile(r"(?:<(?P<pri>\d{1,3})>)?" + _MON + r" (?P<d>[ \d]\d) " + _HMS
                       + r"(?:\.(?P<frac>\d{1,9}))?(?=\s|$)"), _conv_rfc3164),
    _Format(re.compile(r"(?P<lvl>[IWEF])(?P<m>\d{2})(?P<d>\d{2}) " + _HMS
                       + r"\.(?P<frac>\d{6})(?=\s|$)"), _conv_klog),
    _Format(re.compile(r"\[?(?P<d>\d{2})/" + _MON + r"/(?P<Y>\d{4}):" + _HMS
                       + r"(?: (?P<zone>[+-]\d{4}))?\]?"), _conv_clf),
    _Format(re.compile(r"\[?" + _HMS + r"[.,](?P<frac>\d{3,9})\]?(?=\s|$)"), _conv_time_only),
    _Format(re.compile(r"\[?(?P<int>\d{19}|\d{16}|\d{13}|\d{10})(?:\.(?P<frac>\d{1,9}))?\]?"
                       r"(?=[\s,;|]|$)"), _conv_epoch),
)


# consecutive lines nearly always share a format: try the last one first
_TRY_ORDER = tuple((i,) + tuple(j for j in range(len(_FORMATS)) if j != i)
                   for i in range(len(_FORMATS)))


class _Invalid(Exception):
    """A line that starts like a timestamp but is not a real date (month 13, Feb 30)."""


def _match_stamp(text: str, ctx: _Context, hint: List[int]) -> Optional[_Stamp]:
    """Timestamp at the start of `text`; `hint[0]` is the format that matched last (tried first)."""
    for i in _TRY_ORDER[hint[0]]:
        m = _FORMATS[i].regex.match(text)
        if m:
            hint[0] = i
            try:
                return _FORMATS[i].convert(m, ctx)
            except ValueError as exc:
                raise _Invalid(str(exc)) from exc
    return None


# ---------------------------------------------------------------------------------------------
# message classification

_TIMEOUT = re.compile(r"(?i:timed?[ _-]?out\b(?!\s*[:=])|deadline[ _]exceeded|ETIMEDOUT)")
# a setting that says there is no timeout ("connecting (no connect timeout)", "timeout disabled"):
# cut before looking for a timeout, so the line does not become one
_NO_TIMEOUT = re.compile(r"(?i)\b(?:no|without|infinite|disabled?)\s+(?:[\w-]+\s+)?time[ _-]?out\b"
                         r"|\btime[ _-]?out\s+(?:disabled|none|off|infinite)\b")
_ERROR = re.compile(
    r"(?i:connection (?:reset|refused|aborted)|reset by peer|broken pipe|no route to host"
    r"|network is unreachable|\bfail(?:ed|ure)\b)"
    r"|\bE(?:CONNRESET|CONNREFUSED|CONNABORTED|PIPE|HOSTUNREACH|NETUNREACH)\b"
    r"|\b(?:ERROR|FATAL|PANIC|CRITICAL)\b|\bpanic:|\w(?:Exception|Error)\b")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "msec": 1e-3,
          "msecs": 1e-3, "millisecond": 1e-3, "milliseconds": 1e-3, "s": 1.0, "sec": 1.0,
          "secs": 1.0, "second": 1.0, "seconds": 1.0, "m": 60.0, "min": 60.0, "mins": 60.0,
          "minute": 60.0, "minutes": 60.0, "h": 3600.0}
_UNIT = r"(?P<unit>ns|us|µs|μs|ms|msecs?|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h)\b"
# Go's time.Duration prints "1h2m3.5s": hours and minutes are prefixes of the last number
_GO_PREFIX = r"(?:(?P<h>\d+)h(?=\d))?(?:(?P<min>\d+)m(?=\d))?"
# Numbers are rare in a line, keys are not: find the numbers, then look at the word before.
_NUMBER = re.compile(r"(?<![\w.])" + _GO_PREFIX + r"(?P<num>\d+(?:\.\d+)?)(?:\s?" + _UNIT + r")?",
                     re.I)
_DURATION_KEYS = frozenset(("cost", "costs", "took", "takes", "taken", "elapsed", "duration",
                            "latency", "spent", "in", "after"))
_DURATION_KEY_SUFFIXES = ("_time", "_ms", "_us", "_usec", "_sec", "_secs", "_seconds",
                          "_duration", "_elapsed", "_latency")
_DURATION_TEXT = re.compile(r"\s*" + _GO_PREFIX + r"(?P<num>\d+(?:\.\d+)?)\s*(?:" + _UNIT + r")?\s*")
_KEY_UNITS = (("_us", 1e-6), ("_usec", 1e-6), ("_sec", 1.0), ("_secs", 1.0), ("_seconds", 1.0))

_START_WORDS = frozenset(("start", "started", "starting", "begin", "begins", "beginning", "send",
                          "sending", "enter", "entering"))
_END_WORDS = frozenset(("end", "ended", "ends", "done", "finish", "finished", "complete",
                        "completed", "ok", "exit", "exiting", "returned"))
# What precedes the message proper: a framework header ("[main] INFO  c.x.Foo - ",
# "- root - INFO - "), a syslog "host app[123]: ", a source location (Go "node.go:233: ",
# klog "1234 x.go:12] ").
_FRAMEWORK_HEADER = re.compile(r".*?\b(?:TRACE|DEBUG|INFO|WARN|WARNING|ERROR|NOTICE)\b.*? - "
                               r"|(?:[\w.-]+\s)?[\w./@-]+\[\d+\]:\s")
_SOURCE_LOCATION = re.compile(r"(?:\d+\s+)?[\w./-]+\.\w+:\d+\]?:?\s+")
_PUNCT = ".,:;!()[]{}\"'"
_MARKERS = _START_WORDS | _END_WORDS
# cheap substring tests that let most lines skip the timeout / error regexes
_TIMEOUT_HINTS = ("time", "deadline")
_ERROR_HINTS = ("error", "fatal", "panic", "critical", "fail", "reset", "refused", "abort",
                "broken pipe", "unreach", "no route", "econn", "epipe", "exception")


def _bare_number_scale(num: str) -> float:
    """A number without a unit: integers are milliseconds ("cost=239"), numbers with a fraction
    are seconds ("proc_time=950.003713" was the 15-minute hang of incident C, not 0.95 s)."""
    return 1.0 if "." in num else 1e-3


def _seconds(num: str, unit: Optional[str], hours: Optional[str], minutes: Optional[str],
             unitless: Optional[float] = None) -> float:
    scale = _UNITS[unit.lower()] if unit else (unitless if unitless is not None else _bare_number_scale(num))
    value = float(num) * scale
    return value + int(hours or 0) * 3600 + int(minutes or 0) * 60


def _key_before(msg: str, at: int) -> Tuple[str, bool]:
    """(lower-cased word before position `at`, whether a ':' or '=' separates it)."""
    before = msg[max(0, at - 64):at].rstrip()
    separated = before.endswith((":", "="))
    if separated:
        before = before[:-1].rstrip()
    words = before.rsplit(None, 1)
    return (words[-1].strip(_PUNCT).lower() if words else ""), separated


def _find_duration(msg: str) -> Optional[float]:
    """"cost 239ms" -> 0.239; a bare number counts only after `key=`/`key:` (see
    _bare_number_scale for its unit)."""
    for m in _NUMBER.finditer(msg):
        unit = m.group("unit")
        key, separated = _key_before(msg, m.start())
        if not (key in _DURATION_KEYS or key.endswith(_DURATION_KEY_SUFFIXES)):
            continue
        if unit is None and not separated:
            continue                                  # "after 3 retries", "in 5 chunks"
        unitless = next((s for suffix, s in _KEY_UNITS if key.endswith(suffix)), None)
        return _seconds(m.group("num"), unit, m.group("h"), m.group("min"), unitless)
    return None


def parse_duration(text: str) -> Optional[float]:
    """A `duration` group's text: "239ms", "1.2 s", "1m2.5s"; a bare integer is milliseconds,
    a bare number with a fraction seconds."""
    m = _DURATION_TEXT.fullmatch(text)
    if not m:
        return None
    return _seconds(m.group("num"), m.group("unit"), m.group("h"), m.group("min"))


def _marker_words(msg: str) -> List[str]:
    header = _FRAMEWORK_HEADER.match(msg)
    body = msg[header.end():] if header else msg
    location = _SOURCE_LOCATION.match(body)
    if location:
        body = body[location.end():]
    # `key=value` tokens are attributes ("Read End n=21 seq=30"), not words of the operation
    return [w for w in (w.strip(_PUNCT).lower() for w in body.split()) if w and "=" not in w]


def start_end_key(msg: str) -> Optional[Tuple[str, str]]:
    """("start"|"end", key) when the message's first or last word marks a start or an end.

    The key is the message without those marker words, so "send heartbeat 17" and
    "heartbeat 17 ok" share the key "heartbeat 17", "Read Start" and "Read End" share "read".
    """
    if _MARKERS.isdisjoint(w.strip(_PUNCT) for w in msg.lower().split()):
        return None
    words = _marker_words(msg)
    if not words:
        return None
    first, last = words[0], words[-1]
    if last in _END_WORDS or (first in _END_WORDS and last not in _START_WORDS):
        kind = "end"
    elif first in _START_WORDS or last in _START_WORDS:
        kind = "start"
    else:
        return None
    lo, hi = 0, len(words)
    while lo < hi and words[lo] in _MARKERS:
        lo += 1
    while hi > lo and words[hi - 1] in _MARKERS:
        hi -= 1
    return kind, " ".join(words[lo:hi])


def _classify(first_line: str, text: str, severe: bool, has_duration: bool) -> str:
    low = text.lower()
    if any(h in low for h in _TIMEOUT_HINTS) and _TIMEOUT.search(_NO_TIMEOUT.sub("", text)):
        return "timeout"
    if severe or (any(h in low for h in _ERROR_HINTS) and _ERROR.search(text)):
        return "error"
    if has_duration:
        return "duration"
    marker = start_end_key(first_line)
    return marker[0] if marker else "line"


# ---------------------------------------------------------------------------------------------
# reading

@dataclass
class LogStats:
    """Counts gathered while streaming one log (mutable: filled by iter_log_events)."""
    lines: int = 0
    events: int = 0
    continuations: int = 0            # timestamp-less lines attached to the previous event
    garbage: int = 0                  # lines that are neither events nor continuations
    garbage_lines: List[int] = field(default_factory=list)   # first few garbage line numbers
    invalid_timestamps: int = 0       # garbage that looked like a timestamp (month 13 ...)
    binary_lines: int = 0             # lines with NUL bytes
    truncated_lines: int = 0          # longer than MAX_LINE
    formats: Counter = field(default_factory=Counter)
    zoned: int = 0                    # events whose line states its zone (or epoch)
    zoneless: int = 0                 # events read as wall time in `tz` (or UTC if none)
    yearless: int = 0                 # events dated by the anchor (year or day missing)
    read_error: Optional[str] = None  # I/O error that ended the read early (corrupt gzip ...)
    first_time: Optional[float] = None
    last_time: Optional[float] = None

    @property
    def has_zone(self) -> bool:
        """True when every event carried its own zone: nothing to assume or infer."""
        return self.zoned > 0 and self.zoneless == 0

    def garbage_line(self, line_no: int) -> None:
        self.garbage += 1
        if len(self.garbage_lines) < GARBAGE_SAMPLES:
            self.garbage_lines.append(line_no)


def _open(path: str):
    """Binary stream (or text for UTF-16), sniffed by content, not by name."""
    if os.path.isdir(path):
        raise LogError(path, "is a directory")
    try:
        raw = open(path, "rb")
    except FileNotFoundError:
        raise LogError(path, "no such file") from None
    except PermissionError:
        raise LogError(path, "permission denied") from None
    except OSError as exc:
        raise LogError(path, exc.strerror or str(exc)) from None
    head = raw.peek(4)[:4]
    if head[:2] == b"\x1f\x8b":
        raw.close()                 # GzipFile(fileobj=...) would not close it for us
        return gzip.open(path, "rb")
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return io.TextIOWrapper(raw, encoding="utf-16", errors="replace", newline=None)
    return raw


def _lines(stream) -> Iterator[Tuple[str, bool, bool]]:
    """(text without newline, truncated, binary) per line, never holding more than MAX_LINE."""
    newline = "\n" if isinstance(stream, io.TextIOBase) else b"\n"
    while True:
        chunk = stream.readline(MAX_LINE)
        if not chunk:
            return
        truncated = False
        while len(chunk) >= MAX_LINE and not chunk.endswith(newline):
            rest = stream.readline(MAX_LINE)      # skip the remainder of an over-long line
            truncated = True
            if not rest or rest.endswith(newline):
                break
        if isinstance(chunk, bytes):
            chunk = chunk.decode("utf-8", "replace")
        binary = "\0" in chunk
        if binary:                  # keep NULs out of event text (JSON, pcapng comments)
            chunk = chunk.replace("\0", "\ufffd")
        yield chunk.rstrip("\r\n").lstrip("\ufeff"), truncated, binary


class _Custom:
    """--log-format: a regex with named groups ts (required), msg, duration."""

    def __init__(self, fmt: Union[str, Pattern[str]]):
        try:
            self.regex = re.compile(fmt) if isinstance(fmt, str) else fmt
        except re.error as exc:
            raise LogFormatError(f"--log-format: {exc}") from None
        if "ts" not in self.regex.groupindex:
            raise LogFormatError("--log-format needs a named group (?P<ts>...) for the timestamp")
        self.has_msg = "msg" in self.regex.groupindex
        self.has_duration = "duration" in self.regex.groupindex


class _Pending:
    """The event being built: its continuation lines arrive before it can be emitted."""
    __slots__ = ("time", "line_no", "parts", "size", "severe", "duration")

    def __init__(self, time: float, line_no: int, msg: str, severe: bool, duration: Optional[float]):
        self.time, self.line_no, self.severe, self.duration = time, line_no, severe, duration
        self.parts = [msg[:MAX_TEXT]]
        self.size = len(self.parts[0])

    def add(self, line: str) -> None:
        if self.size < MAX_TEXT:
            piece = line[:MAX_TEXT - self.size]
            self.parts.append(piece)
            self.size += len(piece) + 1

    def event(self, source: str) -> LogEvent:
        first = self.parts[0]
        text = "\n".join(self.parts)
        duration = self.duration if self.duration is not None else _find_duration(first)
        kind = _classify(first, text, self.severe, duration is not None)
        start = self.time - duration if duration is not None else None
        return LogEvent(self.time, source, self.line_no, text, kind, duration, start)


def iter_log_events(path: str, tz: Optional[int] = None, fmt: Union[str, Pattern[str], None] = None,
                    ref_time: Optional[float] = None, stats: Optional[LogStats] = None,
                    source: Optional[str] = None) -> Iterator[LogEvent]:
    """Stream the events of one log; see the module docstring for formats and rules.

    tz: seconds east of UTC for lines without a zone. fmt: --log-format regex. ref_time: epoch near
    the log (capture start) to date year-less/time-only lines; default the file's mtime.
    Raises LogError (now, not on first next()) when the file cannot be opened.
    """
    custom = _Custom(fmt) if fmt is not None else None
    stream = _open(path)
    anchor = ref_time if ref_time is not None else os.stat(path).st_mtime
    return _read_events(stream, custom, _Context(tz, anchor), stats or LogStats(),
                        source or os.path.basename(path))


def _read_events(stream, custom: Optional[_Custom], ctx: _Context, stats: LogStats,
                 source: str) -> Iterator[LogEvent]:
    hint = [0]
    pending: Optional[_Pending] = None
    try:
        for line_no, (line, truncated, binary) in enumerate(_lines(stream), 1):
            stats.lines += 1
            stats.truncated_lines += truncated
            stats.binary_lines += binary
            if not line.strip():
                continue
            try:
                new = _parse_line(line, line_no, custom, ctx, hint, stats)
            except _Invalid:
                stats.invalid_timestamps += 1
                stats.garbage_line(line_no)
                continue
            if new is not None:
                if pending is not None:
                    yield _emit(pending, source, stats)
                pending = new
                ctx.anchor = new.time
            elif pending is not None and not binary:
                pending.add(line)
                stats.continuations += 1
            else:
                stats.garbage_line(line_no)
    except (OSError, EOFError) as exc:       # corrupt gzip, I/O error: keep what was read
        stats.read_error = str(exc) or type(exc).__name__
    finally:
        stream.close()
        stats.yearless = ctx.yearless
    if pending is not None:
        yield _emit(pending, source, stats)


def _parse_line(line: str, line_no: int, custom: Optional[_Custom], ctx: _Context,
                hint: List[int], stats: LogStats) -> Optional[_Pending]:
    duration = None
    if line[0] in " \t":                      # indented: a continuation, never a timestamp
        return None
    if custom is None:
        stamp = _match_stamp(line, ctx, hint)
        if stamp is None:
            return None
        msg = line[stamp.end:].lstrip(" \t]|-:")
    else:
        m = custom.regex.search(line)
        if m is None or m.group("ts") is None:
            return None
        stamp = _match_stamp(m.group("ts").strip(), ctx, hint)
        if stamp is None:
            raise _Invalid("ts group is not a known timestamp")
        stamp = stamp._replace(fmt="custom")
        msg = (m.group("msg") or "") if custom.has_msg else line
        if custom.has_duration and m.group("duration"):
            duration = parse_duration(m.group("duration"))
    offset = stamp.zone if stamp.zone is not None else (ctx.tz or 0)
    frac = int(stamp.frac) / 10 ** len(stamp.frac) if stamp.frac else 0.0
    time = (stamp.secs - offset) + frac
    stats.formats[stamp.fmt] += 1
    if stamp.zone is None:
        stats.zoneless += 1
    else:
        stats.zoned += 1
    return _Pending(time, line_no, msg, stamp.severe, duration)


def _emit(pending: _Pending, source: str, stats: LogStats) -> LogEvent:
    stats.events += 1
    if stats.first_time is None or pending.time < stats.first_time:
        stats.first_time = pending.time
    if stats.last_time is None or pending.time > stats.last_time:
        stats.last_time = pending.time
    return pending.event(source)


# ---------------------------------------------------------------------------------------------
# whole log: events + warnings

@dataclass(frozen=True)
class LogRead:
    path: str
    source: str
    events: Tuple[LogEvent, ...]
    stats: LogStats
    warnings: Tuple[str, ...] = ()
    tz: Optional[int] = None            # zone given by the user (None: not given)
    tz_inferred: Optional[int] = None   # zone found by align_log_tz


def read_log(path: str, tz: Optional[int] = None, fmt: Union[str, Pattern[str], None] = None,
             ref_time: Optional[float] = None, span: Optional[Tuple[float, float]] = None,
             source: Optional[str] = None, pair: bool = True) -> LogRead:
    """Read a whole log (see module docstring); `span` bounds what is kept in memory."""
    stats = LogStats()
    events = [e for e in iter_log_events(path, tz, fmt, ref_time, stats, source)
              if _near(e, span, zone_known=tz is not None)]
    if span is not None and not stats.zoneless:
        # every line stated its zone: nothing will be shifted, trim to the capture now
        events = [e for e in events if _near(e, span, zone_known=True)]
    if pair:
        events = pair_events(events)
    source = source or os.path.basename(path)
    return LogRead(path, source, tuple(events), stats, tuple(_warnings(source, stats, ref_time)), tz)


SPAN_MARGIN = 60.0      # log events this close to a capture still matter (timeouts, app stalls)


def _near(event: LogEvent, span: Optional[Tuple[float, float]], zone_known: bool) -> bool:
    if span is None:
        return True
    # while the zone may still be inferred, an event up to 14 h away can land in the capture
    reach = SPAN_MARGIN + (0 if zone_known else MAX_OFFSET)
    return span[0] - reach <= event.time <= span[1] + reach


def _warnings(source: str, stats: LogStats, ref_time: Optional[float]) -> List[str]:
    out = []
    if stats.events == 0:
        out.append(f"{source}: no timestamped lines among {stats.lines} lines; "
                   f"give --log-format REGEX with a (?P<ts>...) group")
    elif stats.garbage:
        first = ", ".join(str(n) for n in stats.garbage_lines)
        out.append(f"{source}: {stats.garbage} of {stats.lines} lines unparseable, ignored "
                   f"(lines {first}{', ...' if stats.garbage > len(stats.garbage_lines) else ''})")
    if stats.binary_lines:
        out.append(f"{source}: {stats.binary_lines} lines contain binary (NUL) bytes")
    if stats.truncated_lines:
        out.append(f"{source}: {stats.truncated_lines} lines longer than {MAX_LINE // 1024} KiB cut")
    if stats.yearless and ref_time is None:
        out.append(f"{source}: timestamps without year/date dated from the file's modification time")
    if stats.read_error:
        out.append(f"{source}: reading stopped early: {stats.read_error}")
    return out


# ---------------------------------------------------------------------------------------------
# time-zone inference

def _nearest_distance(sorted_times: Sequence[float], t: float) -> float:
    i = bisect.bisect_left(sorted_times, t)
    best = float("inf")
    if i < len(sorted_times):
        best = sorted_times[i] - t
    if i > 0:
        best = min(best, t - sorted_times[i - 1])
    return best


def _score(events: Sequence[float], activity: Sequence[float], offset: int,
           window: float) -> Tuple[int, float]:
    """(events within window of a packet, closeness 0..1 summed) for log times shifted by -offset."""
    lo = bisect.bisect_left(events, activity[0] + offset - window)
    hi = bisect.bisect_right(events, activity[-1] + offset + window)
    sample = range(lo, hi, max(1, (hi - lo) // TZ_SAMPLE))
    matched, closeness = 0, 0.0
    for i in sample:
        d = _nearest_distance(activity, events[i] - offset)
        if d <= window:
            matched += 1
            closeness += 1.0 - d / window
    scale = (hi - lo) / len(sample) if sample else 0.0      # sampled -> all events in range
    return round(matched * scale), closeness * scale


def infer_tz_offset(event_times: Sequence[float], activity_times: Sequence[float],
                    window: float = 0.1, min_matched: int = 3) -> Optional[Tuple[int, int]]:
    """(offset_s, matched): the UTC offset of a zone-less log that best aligns it with packets.

    event_times are zone-less wall times read as UTC; the true time is `t - offset_s`. Candidates
    are whole quarter-hours in [-14 h, +14 h]; the best puts most events within `window` s of
    some packet (ties: closer on average, then the smaller |offset|). None when fewer than
    `min_matched` events (or all, if fewer) align anywhere.
    """
    events = sorted(event_times)
    activity = sorted(activity_times)
    if not events or not activity:
        return None
    best = None
    for offset in sorted(range(-MAX_OFFSET, MAX_OFFSET + 1, QUARTER_HOUR), key=abs):
        matched, closeness = _score(events, activity, offset, window)
        if best is None or (matched, closeness) > best[0]:
            best = ((matched, closeness), offset)
    (matched, _), offset = best
    if matched < min(min_matched, len(events)):
        return None
    return offset, matched


def shift_events(events: Sequence[LogEvent], seconds: float) -> List[LogEvent]:
    """Events moved `seconds` earlier (a log in UTC+8 read as UTC is 8 h late)."""
    return [replace(e, time=e.time - seconds,
                    start=None if e.start is None else e.start - seconds) for e in events]


def align_log_tz(read: LogRead, activity_times: Sequence[float],
                 span: Optional[Tuple[float, float]] = None, window: float = 0.1) -> LogRead:
    """Infer and apply the zone of a zone-less log given no --log-tz; else return `read` as is.

    Applied only when the inferred offset aligns at least twice as many events as offset 0 (the
    log "lies hours away"); adds one warning line. `span` re-trims to the capture afterwards.
    """
    if read.tz is not None or read.stats.zoned or not read.events or not activity_times:
        return read
    times = [e.time for e in read.events]
    guess = infer_tz_offset(times, activity_times, window)
    if guess is None or guess[0] == 0:
        return read
    offset, matched = guess
    at_zero, _ = _score(sorted(times), sorted(activity_times), 0, window)
    if matched < 2 * at_zero:
        return read
    events = shift_events(read.events, offset)
    events = [e for e in events if _near(e, span, zone_known=True)]
    note = (f"{read.source}: zone-less timestamps lie {abs(offset) / 3600:g} h from the capture; "
            f"assuming UTC{format_offset(offset)} ({matched} of {len(times)} events within "
            f"{window * 1000:g} ms of a packet; --log-tz overrides)")
    return replace(read, events=tuple(events), warnings=read.warnings + (note,), tz_inferred=offset)


# ---------------------------------------------------------------------------------------------
# start/end pairing

def pair_events(events: Sequence[LogEvent]) -> List[LogEvent]:
    """Replace each start/end pair (same source and key, latest open start) by one "span" event.

    The span's time is the end's, `start` the start's, `duration_s` the difference, `line_no` the
    start's line, and its text both lines joined by " ... ". Output is sorted by time.
    """
    open_starts: Dict[Tuple[str, str], List[int]] = {}
    out: List[Optional[LogEvent]] = []
    for event in events:
        if event.kind == "timeout" and event.duration_s is None:
            begin = _start_of_timeout(event, open_starts, out)
            out.append(event if begin is None else replace(event, duration_s=event.time - begin.time,
                                                             start=begin.time))
            continue
        marker = start_end_key(event.text.split("\n", 1)[0]) if event.kind in ("start", "end") else None
        if marker is None:
            out.append(event)
            continue
        kind, key = marker
        stack = open_starts.setdefault((event.source, key), [])
        if kind == "start":
            stack.append(len(out))
            out.append(event)
        elif stack and out[stack[-1]].time <= event.time:
            index = stack.pop()
            begin = out[index]
            out[index] = None
            out.append(LogEvent(event.time, event.source, begin.line_no,
                                f"{begin.text} ... {event.text}", "span",
                                event.time - begin.time, begin.time))
        else:
            out.append(event)
    return sorted((e for e in out if e is not None), key=lambda e: (e.time, e.line_no))


# words that say nothing about which operation timed out
_TIMEOUT_NOISE = frozenset(("timeout", "timed", "out", "and", "retry", "retrying", "the", "for", "to", "after",
                            "deadline", "exceeded", "error", "failed", "request"))


def _start_of_timeout(event: LogEvent, open_starts: Dict[Tuple[str, str], List[int]],
                      out: List[Optional[LogEvent]]) -> Optional[LogEvent]:
    """The start line a bare timeout line closes: the latest open start of the same log whose key
    shares a word naming the operation ("send AppendEntries to 92" ... "AppendEntries timeout and
    retry": 'appendentries'). It is taken off the open starts (one timeout per start)."""
    words = {w for w in _marker_words(event.text.split("\n", 1)[0])
             if w not in _TIMEOUT_NOISE and w not in _MARKERS and not w.isdigit()}
    best = None
    for (source, key), stack in open_starts.items():
        if source != event.source or not stack or words.isdisjoint(key.split()):
            continue
        begin = out[stack[-1]]
        if begin.time <= event.time and (best is None or begin.time > best[0].time):
            best = (begin, stack)
    if best is None:
        return None
    best[1].pop()
    return best[0]
