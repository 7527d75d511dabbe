"""Application-log reader: formats, zones, events, pairing, tz inference, hostile input.

Expected epochs were computed independently with datetime (e.g. 2024-02-20 16:45:47 +08:00 is
1708418747); times are compared in whole microseconds so float noise cannot hide a real error.
"""
import gzip
import os
import random
import tracemalloc

import pytest

from pytshark_ext import applog
from pytshark_ext.applog import (LogError, LogFormatError, LogSpec, LogSpecError, LogStats,
                                 align_log_tz, infer_tz_offset, iter_log_events, pair_events,
                                 parse_duration, parse_log_spec, parse_tz, read_log)
from pytshark_ext.records import LogEvent

H8 = 8 * 3600
REF_2024 = 1708418747.0          # 2024-02-20 08:45:47 UTC: "the capture" for year-less formats
T_2024 = 1708418747_000000       # 2024-02-20 16:45:47 +08:00 in microseconds


def us(t):
    return round(t * 1_000_000)


def write(tmp_path, text, name="app.log"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def events_of(tmp_path, text, **kw):
    stats = LogStats()
    events = list(iter_log_events(write(tmp_path, text), stats=stats, **kw))
    return events, stats


def one(tmp_path, line, **kw):
    events, stats = events_of(tmp_path, line + "\n", **kw)
    assert len(events) == 1, events
    return events[0], stats


# --------------------------------------------------------------------------------- formats

@pytest.mark.parametrize("line, kw, expected_us, fmt, zoned", [
    ("2019/08/14 15:18:45.703679 node.go:233: Read Start", {"tz": H8}, 1565767125703679, "go", False),
    ("[2024-02-20T16:45:47.750+0800][worker-1] proc_time=950.003713", {}, T_2024 + 750000,
     "iso8601", True),
    ("2024-02-20T08:45:47.123456Z GET /", {}, T_2024 + 123456, "iso8601", True),
    ("2024-02-20T16:45:47.123456789+08:00 nanos", {}, T_2024 + 123457, "iso8601", True),
    ("2024-02-20 16:45:47 +08:00 space before zone", {}, T_2024, "iso8601", True),
    ("2024-02-20 08:45:47.5 UTC zone word", {}, T_2024 + 500000, "iso8601", True),
    # journalctl -o short-iso / short-iso-precise
    ("2024-02-20T16:45:47+0800 host sshd[123]: Accepted", {}, T_2024, "iso8601", True),
    ("2024-02-20T16:45:47.123456+0800 host sshd[123]: Accepted", {}, T_2024 + 123456, "iso8601", True),
    # Python logging default asctime, log4j %d / logback ISO8601: zone-less, comma fraction
    ("2024-02-20 16:45:47,123 - root - INFO - hello", {"tz": H8}, T_2024 + 123000, "datetime", False),
    ("2024-02-20 16:45:47,123 [main] INFO  com.x.Foo - hello", {"tz": H8}, T_2024 + 123000,
     "datetime", False),
    ("<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 - hi", {},
     1065910455003000, "rfc5424", True),
    # RFC 3164 / journalctl -o short and short-precise: no year, dated from ref_time
    ("<38>Feb 20 16:45:47 host app[1]: hello", {"tz": H8, "ref_time": REF_2024}, T_2024,
     "rfc3164", False),
    ("Feb 20 16:45:47 host app[1]: hello", {"tz": H8, "ref_time": REF_2024}, T_2024, "rfc3164", False),
    ("Feb 20 16:45:47.123456 host app[1]: hello", {"tz": H8, "ref_time": REF_2024},
     T_2024 + 123456, "journal-precise", False),
    ("I0220 16:45:47.750123    1234 file.go:12] hello", {"tz": H8, "ref_time": REF_2024},
     T_2024 + 750123, "klog", False),
    # log4j2 / logback default pattern: time of day only, dated from ref_time
    ("16:45:47.750 [main] INFO  c.x.Foo - hello", {"tz": H8, "ref_time": REF_2024},
     T_2024 + 750000, "time-only", False),
    ("[20/Feb/2024:16:45:47 +0800] GET /", {}, T_2024, "clf", True),
    ("1708418747.123456 hello", {}, T_2024 + 123456, "epoch-s", True),
    ("1708418747123 hello", {}, T_2024 + 123000, "epoch-ms", True),
    ("1708418747123456 hello", {}, T_2024 + 123456, "epoch-us", True),
    ("1708418747123456789 hello", {}, T_2024 + 123457, "epoch-ns", True),
])
def test_format_exact_time(tmp_path, line, kw, expected_us, fmt, zoned):
    event, stats = one(tmp_path, line, **kw)
    assert us(event.time) == expected_us
    assert dict(stats.formats) == {fmt: 1}
    assert stats.has_zone is zoned
    assert event.line_no == 1


def test_zone_less_without_tz_reads_wall_time_as_utc(tmp_path):
    event, stats = one(tmp_path, "2019/08/14 15:18:45.703679 node.go:233: Read Start")
    assert us(event.time) == 1565795925703679
    assert (stats.zoneless, stats.zoned) == (1, 0)


def test_zone_in_line_wins_over_tz_argument(tmp_path):
    event, _ = one(tmp_path, "2024-02-20T16:45:47+08:00 x", tz=-5 * 3600)
    assert us(event.time) == T_2024


def test_message_text_follows_timestamp(tmp_path):
    event, _ = one(tmp_path, "[2024-02-20T16:45:47.750+0800][worker-1] proc_time=950.003713")
    assert event.text == "[worker-1] proc_time=950.003713"
    assert event.kind == "duration"
    assert event.duration_s == pytest.approx(950.003713, abs=1e-9)   # incident C: the 15-min hang
    assert us(event.start) == T_2024 + 750000 - 950003713


def test_yearless_lines_cross_new_year(tmp_path):
    text = "Dec 31 23:59:59 h a[1]: old\nJan  1 00:00:01 h a[1]: new\n"
    events, stats = events_of(tmp_path, text, tz=0, ref_time=1704067200.0)  # 2024-01-01Z
    assert [us(e.time) for e in events] == [1704067199000000, 1704067201000000]
    assert stats.yearless == 2


def test_time_only_lines_cross_midnight(tmp_path):
    text = "23:59:59.000 [main] INFO a - x\n00:00:01.000 [main] INFO a - y\n"
    events, _ = events_of(tmp_path, text, tz=0, ref_time=1708473540.0)  # 2024-02-20 23:59Z
    assert [us(e.time) for e in events] == [1708473599000000, 1708473601000000]


def test_yearless_without_ref_time_uses_mtime_and_warns(tmp_path):
    path = write(tmp_path, "Feb 20 16:45:47 host app[1]: hello\n")
    os.utime(path, (REF_2024, REF_2024))
    read = read_log(path, tz=H8)
    assert us(read.events[0].time) == T_2024
    assert any("modification time" in w for w in read.warnings)


# --------------------------------------------------------------------------------- Go log, incident A

GO_LOG = """\
2019/08/14 15:18:45.703679 node.go:233: Read Start
2019/08/14 15:18:45.943000 node.go:240: Read End
2019/08/14 15:18:45.943100 node.go:241: cost 239ms
"""


def test_go_log_read_start_end_cost(tmp_path):
    events, stats = events_of(tmp_path, GO_LOG, tz=H8)
    assert [e.kind for e in events] == ["start", "end", "duration"]
    assert [e.line_no for e in events] == [1, 2, 3]
    assert us(events[2].time) == 1565767125943100
    assert us(events[2].duration_s) == 239000
    assert us(events[2].start) == 1565767125704100
    assert stats.formats["go"] == 3 and stats.garbage == 0


def test_go_log_pairs_into_a_span(tmp_path):
    read = read_log(write(tmp_path, GO_LOG), tz=H8)
    assert [e.kind for e in read.events] == ["span", "duration"]
    span = read.events[0]
    assert us(span.start) == 1565767125703679
    assert us(span.time) == 1565767125943000
    assert us(span.duration_s) == 239321
    assert span.line_no == 1
    assert span.text == "node.go:233: Read Start ... node.go:240: Read End"


def test_key_value_attributes_do_not_hide_the_end_marker(tmp_path):
    # the lab's receiver log: "Read End n=21 seq=30" ends the "Read Start" before it
    text = ("2019/08/14 15:18:45.703679 conn.go:88: Read Start\n"
            "2019/08/14 15:18:45.943000 conn.go:95: Read End n=21 seq=30\n")
    read = read_log(write(tmp_path, text), tz=H8)
    assert [e.kind for e in read.events] == ["span"]
    assert us(read.events[0].duration_s) == 239321


# --------------------------------------------------------------------------------- events

@pytest.mark.parametrize("msg, seconds", [
    ("cost 239ms", 0.239),
    ("took 1.2s", 1.2),
    ("elapsed 30 s", 30.0),
    ("proc_time=950.003713", 950.003713),      # a fraction: seconds
    ("proc_time=239", 0.239),                   # an integer: milliseconds
    ("rpc done, took 1m2.5s", 62.5),
    ("latency_us=1500", 0.0015),
    ("wait_sec: 2", 2.0),
    ("read 20 bytes in 250µs", 0.00025),
    ("duration=3 seconds", 3.0),
])
def test_explicit_durations(tmp_path, msg, seconds):
    event, _ = one(tmp_path, "2024-02-20T16:45:47+08:00 " + msg)
    assert event.duration_s == pytest.approx(seconds, rel=1e-12)
    assert us(event.start) == T_2024 - round(seconds * 1e6)


@pytest.mark.parametrize("msg", ["retry after 3 retries", "sent 5 chunks in 2 batches",
                                 "dial timeout=5s configured"])
def test_numbers_without_duration_are_not_durations(tmp_path, msg):
    event, _ = one(tmp_path, "2024-02-20T16:45:47+08:00 " + msg)
    assert (event.kind, event.duration_s, event.start) == ("line", None, None)


@pytest.mark.parametrize("msg, kind", [
    ("read tcp 10.0.0.1:5000->10.0.0.2:41234: i/o timeout", "timeout"),
    ("heartbeat 17 timed out", "timeout"),
    ("rpc error: code = DeadlineExceeded desc = context deadline exceeded", "timeout"),
    ("connect() failed: ETIMEDOUT", "timeout"),
    ("read: connection reset by peer", "error"),
    ("write: broken pipe", "error"),
    ("send failed: ECONNREFUSED", "error"),
    ("java.net.SocketException: Socket closed", "error"),
    ("ordinary progress message", "line"),
    # settings that say there is no timeout (syn-blackhole's client log) are not timeouts
    ("connecting to 198.18.2.2:9000 (no connect timeout)", "line"),
    ("dialing without timeout", "line"),
    ("read timeout disabled", "line"),
    ("no retry; request timed out", "timeout"),
])
def test_timeouts_and_errors(tmp_path, msg, kind):
    event, _ = one(tmp_path, "2024-02-20T16:45:47+08:00 " + msg)
    assert event.kind == kind


def test_timeout_keeps_its_stated_duration(tmp_path):
    event, _ = one(tmp_path, "2024-02-20T16:45:47+08:00 heartbeat timed out after 50ms")
    assert event.kind == "timeout"
    assert us(event.duration_s) == 50000 and us(event.start) == T_2024 - 50000


def test_severity_from_format(tmp_path):
    text = ("<35>Feb 20 16:45:47 host app[1]: quiet words\n"      # 35 % 8 = 3: err
            "E0220 16:45:47.750123    1234 file.go:12] quiet words\n"
            "W0220 16:45:47.750123    1234 file.go:12] quiet words\n")
    events, _ = events_of(tmp_path, text, tz=H8, ref_time=REF_2024)
    assert [e.kind for e in events] == ["error", "error", "line"]


# --------------------------------------------------------------------------------- continuation, garbage

def test_stack_trace_attaches_to_previous_event(tmp_path):
    text = ("2024-02-20 16:45:47,123 [main] ERROR c.x.Client - call failed\n"
            "java.net.SocketTimeoutException: Read timed out\n"
            "\tat java.net.SocketInputStream.read(SocketInputStream.java:150)\n"
            "\tat c.x.Client.call(Client.java:42)\n"
            "2024-02-20 16:45:48,000 [main] INFO  c.x.Client - next\n")
    events, stats = events_of(tmp_path, text, tz=H8)
    assert len(events) == 2
    assert events[0].text.count("\n") == 3
    assert events[0].text.endswith("c.x.Client.call(Client.java:42)")
    assert events[0].kind == "timeout"          # the stack trace says why it failed
    assert events[1].line_no == 5
    assert (stats.lines, stats.events, stats.continuations, stats.garbage) == (5, 2, 3, 0)


def test_garbage_is_counted_and_reported(tmp_path):
    text = ("banner without time\n"
            "another one\n"
            "2024-02-20T16:45:47+08:00 first event\n"
            "continuation\n"
            "bin\x00ary\n"
            "2024-13-45T10:00:00Z not a date\n"
            "2024-02-20T16:45:48+08:00 second event\n")
    path = write(tmp_path, text)
    read = read_log(path)
    assert len(read.events) == 2
    s = read.stats
    assert (s.lines, s.events, s.continuations, s.garbage) == (7, 2, 1, 4)
    assert s.garbage_lines == [1, 2, 5, 6]
    assert s.invalid_timestamps == 1 and s.binary_lines == 1
    assert "app.log: 4 of 7 lines unparseable, ignored (lines 1, 2, 5, 6)" in read.warnings


def test_continuation_text_is_capped(tmp_path):
    text = "2024-02-20T16:45:47+08:00 boom\n" + "\tat frame\n" * 10000
    events, stats = events_of(tmp_path, text)
    assert stats.continuations == 10000
    assert len(events[0].text) <= applog.MAX_TEXT + 1


# --------------------------------------------------------------------------------- hostile input

def test_binary_file(tmp_path):
    path = write(tmp_path, random.Random(7).randbytes(300_000), "core.bin")
    read = read_log(path)
    assert read.events == ()
    assert read.stats.lines > 0 and read.stats.garbage > 0
    assert read.warnings[0].startswith("core.bin: no timestamped lines among")


def test_non_utf8_message(tmp_path):
    raw = "2024-02-20T16:45:47+08:00 用户 ".encode("gbk") + b"caf\xe9 \xff\xfe\n"
    path = write(tmp_path, raw, "gbk.log")
    events = list(iter_log_events(path))
    assert len(events) == 1 and us(events[0].time) == T_2024
    assert "\ufffd" in events[0].text


def test_one_megabyte_line(tmp_path):
    text = ("2024-02-20T16:45:47+08:00 " + "x" * 1_000_000 + "\n"
            + "y" * 1_000_000 + "\n"             # no timestamp: a (cut) continuation
            + "2024-02-20T16:45:48+08:00 next\n")
    path = write(tmp_path, text)
    read = read_log(path)
    assert [us(e.time) for e in read.events] == [T_2024, T_2024 + 1_000_000]
    assert read.stats.lines == 3 and read.stats.truncated_lines == 2
    assert len(read.events[0].text) <= applog.MAX_TEXT + 1
    assert any("2 lines longer than 64 KiB cut" in w for w in read.warnings)


def test_one_megabyte_without_newline(tmp_path):
    path = write(tmp_path, "z" * (1 << 20))
    read = read_log(path)
    assert (read.stats.lines, read.stats.garbage, read.stats.truncated_lines) == (1, 1, 1)


def test_empty_file(tmp_path):
    read = read_log(write(tmp_path, ""))
    assert read.events == () and read.stats.lines == 0
    assert read.warnings == ("app.log: no timestamped lines among 0 lines; "
                             "give --log-format REGEX with a (?P<ts>...) group",)


def test_gzip_and_utf16(tmp_path):
    line = "2024-02-20T16:45:47.5+08:00 hello\r\n"
    gz = tmp_path / "a.log.1"
    gz.write_bytes(gzip.compress(line.encode()))
    u16 = write(tmp_path, line.encode("utf-16"), "win.log")
    for path in (str(gz), u16):
        events = list(iter_log_events(path))
        assert [(us(e.time), e.text) for e in events] == [(T_2024 + 500000, "hello")]


def test_truncated_gzip_keeps_what_was_read(tmp_path):
    data = gzip.compress(("2024-02-20T16:45:47+08:00 hello\n" * 5000).encode())
    path = write(tmp_path, data[: len(data) // 2], "cut.gz")
    read = read_log(path)
    assert 0 < len(read.events) < 5000
    assert any("reading stopped early" in w for w in read.warnings)


def test_unreadable_files(tmp_path, monkeypatch):
    with pytest.raises(LogError, match=r"cannot read log .*missing\.log: no such file"):
        iter_log_events(str(tmp_path / "missing.log"))     # raised at the call, not on next()
    with pytest.raises(LogError, match="is a directory"):
        read_log(str(tmp_path))

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    path = write(tmp_path, "x\n")
    monkeypatch.setattr(applog, "open", denied, raising=False)
    with pytest.raises(LogError) as info:
        read_log(path)
    assert info.value.path == path and info.value.problem == "permission denied"


def _peak_bytes_streaming(path):
    stats = LogStats()
    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_log_events(path, stats=stats))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == stats.events
    return peak


@pytest.mark.slow      # writes and streams a large log
def test_streaming_memory_does_not_grow_with_the_log(tmp_path):
    line = "2019/08/14 15:18:45.703679 node.go:233: heartbeat sent, cost 1ms\n"
    small = _peak_bytes_streaming(write(tmp_path, line * 2_000, "small.log"))
    big = _peak_bytes_streaming(write(tmp_path, line * 40_000, "big.log"))     # 2.6 MB
    assert big < small + 100_000
    assert big < 1_000_000


def test_read_log_keeps_only_events_near_the_span(tmp_path):
    lines = "".join(f"{1708418747 + i * 3600} tick {i}\n" for i in range(48))
    read = read_log(write(tmp_path, lines), span=(1708418747 + 10 * 3600, 1708418747 + 11 * 3600))
    assert [e.text for e in read.events] == ["tick 10", "tick 11"]   # zoned: +-60 s margin
    assert read.stats.events == 48


# --------------------------------------------------------------------------------- custom format

def test_log_format_regex(tmp_path):
    fmt = r'^\S+ \S+ \S+ \[(?P<ts>[^\]]+)\] "(?P<msg>[^"]*)" \d+ \d+ (?P<duration>\S+)$'
    text = ('10.0.0.9 - - [20/Feb/2024:16:45:47 +0800] "GET /register HTTP/1.1" 200 512 3.02s\n'
            '10.0.0.9 - - [20/Feb/2024:16:45:48 +0800] "GET / HTTP/1.1" 200 512 239\n'
            'not an access-log line\n')
    events, stats = events_of(tmp_path, text, fmt=fmt)
    assert [(us(e.time), e.text, e.kind) for e in events] == [
        (T_2024, "GET /register HTTP/1.1", "duration"),
        (T_2024 + 1_000_000, "GET / HTTP/1.1\nnot an access-log line", "duration")]
    assert [e.duration_s for e in events] == [pytest.approx(3.02), pytest.approx(0.239)]
    assert dict(stats.formats) == {"custom": 2}


def test_log_format_unknown_timestamp_is_garbage(tmp_path):
    events, stats = events_of(tmp_path, "at 5 past noon: hi\n", fmt=r"^at (?P<ts>[^:]+):")
    assert events == [] and stats.invalid_timestamps == 1 and stats.garbage == 1


@pytest.mark.parametrize("fmt, message", [(r"(?P<time>\d+)", "named group"),
                                          (r"(?P<ts>[", "--log-format")])
def test_log_format_errors(tmp_path, fmt, message):
    with pytest.raises(LogFormatError, match=message):
        iter_log_events(write(tmp_path, "x\n"), fmt=fmt)


@pytest.mark.parametrize("text, seconds", [("239ms", 0.239), ("1.2 s", 1.2), ("1m2.5s", 62.5),
                                           ("950.003713", 950.003713), ("239", 0.239),
                                           ("fast", None)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == (None if seconds is None else pytest.approx(seconds))


# --------------------------------------------------------------------------------- specs

@pytest.mark.parametrize("spec, expected", [
    ("app.log", LogSpec("app.log")),
    ("app.log@A", LogSpec("app.log", "A")),
    ("app.log@b:+08:00", LogSpec("app.log", "B", H8)),
    ("app.log:+05:30", LogSpec("app.log", None, 19800)),
    ("app.log@A:-0330", LogSpec("app.log", "A", -12600)),
    ("C:\\logs\\node@1.log@B", LogSpec("C:\\logs\\node@1.log", "B")),
    ("C:\\logs\\app.log", LogSpec("C:\\logs\\app.log")),
    ("/var/log/x@A.log", LogSpec("/var/log/x@A.log")),
    ("logs/2024-02-20T16:45.log", LogSpec("logs/2024-02-20T16:45.log")),
    ("odd@C", LogSpec("odd@C")),
])
def test_parse_log_spec(spec, expected):
    assert parse_log_spec(spec) == expected


@pytest.mark.parametrize("bad", ["", "app.log@A:+15:00", "app.log:+08:75"])
def test_parse_log_spec_errors(bad):
    with pytest.raises(LogSpecError):
        parse_log_spec(bad)


@pytest.mark.parametrize("text, seconds", [("+08:00", H8), ("-0530", -19800), ("+8", H8),
                                           ("Z", 0), ("utc", 0), ("+05:45", 20700)])
def test_parse_tz(text, seconds):
    assert parse_tz(text) == seconds


# --------------------------------------------------------------------------------- tz inference

def _activity_and_shifted_log(offset, n_packets=3000, every=0.06, start=1565795900.0):
    """Heartbeats every 60 ms (jittered); the app logs every 7th one 1-3 ms later, `offset` late."""
    rng = random.Random(42)
    packets = [start + i * every + rng.uniform(-0.005, 0.005) for i in range(n_packets)]
    logged = [p + offset + rng.uniform(0.001, 0.003) for p in packets[::7]]
    return packets, logged


def test_infer_finds_plus_eight_hours():
    packets, logged = _activity_and_shifted_log(H8)
    assert infer_tz_offset(logged, packets) == (H8, len(logged))


@pytest.mark.parametrize("offset", [-5 * 3600, 5 * 3600 + 45 * 60, 0])
def test_infer_other_offsets(offset):
    packets, logged = _activity_and_shifted_log(offset)
    assert infer_tz_offset(logged, packets)[0] == offset


def test_infer_returns_none_when_nothing_aligns():
    packets, _ = _activity_and_shifted_log(0)
    far = [packets[0] + 3 * 86400 + i for i in range(50)]
    assert infer_tz_offset(far, packets) is None
    assert infer_tz_offset([], packets) is None
    assert infer_tz_offset([packets[0] + 0.5], packets[:1]) is None      # outside the 0.1 s window
    assert infer_tz_offset([packets[0] + 0.05], packets[:1]) == (0, 1)


def test_infer_tie_prefers_smallest_offset():
    t0 = 1565795900.0
    every_quarter_hour = [t0 + k * 900 for k in range(-200, 201)]   # every candidate aligns
    assert infer_tz_offset([t0, t0 + 1800], every_quarter_hour) == (0, 2)


@pytest.mark.parametrize("seconds, text", [(H8, "+08:00"), (-19800, "-05:30"), (0, "+00:00"),
                                           (20700, "+05:45")])
def test_format_offset(seconds, text):
    assert applog.format_offset(seconds) == text


def test_infer_is_fast_on_big_inputs():
    import time
    packets, logged = _activity_and_shifted_log(H8, n_packets=200_000)
    t0 = time.perf_counter()
    assert infer_tz_offset(logged, packets)[0] == H8
    assert time.perf_counter() - t0 < 3.0


def _go_log(times):
    import time
    return "".join(time.strftime("%Y/%m/%d %H:%M:%S", time.gmtime(t)) + f".{round(t % 1 * 1e6):06d}"
                   f" node.go:120: heartbeat {i} received\n" for i, t in enumerate(times))


def test_align_log_tz_shifts_zone_less_log_and_says_so(tmp_path):
    packets, logged = _activity_and_shifted_log(H8)
    span = (packets[0], packets[-1])
    read = read_log(write(tmp_path, _go_log(logged)), span=span)
    aligned = align_log_tz(read, packets, span=span)
    assert aligned.tz_inferred == H8
    assert [us(e.time) for e in aligned.events] == [us(e.time - H8) for e in read.events]
    assert aligned.warnings[-1].startswith(
        f"app.log: zone-less timestamps lie 8 h from the capture; assuming UTC+08:00 "
        f"({len(logged)} of {len(logged)} events within 100 ms of a packet")
    # --log-tz given: left alone
    given = read_log(write(tmp_path, _go_log(logged)), tz=0)
    assert align_log_tz(given, packets) is given


def test_align_log_tz_leaves_aligned_or_zoned_logs(tmp_path):
    packets, logged = _activity_and_shifted_log(0)
    read = read_log(write(tmp_path, _go_log(logged)))
    assert align_log_tz(read, packets) is read
    zoned = read_log(write(tmp_path, "".join(f"{t:.6f} hb\n" for t in logged), "z.log"))
    assert align_log_tz(zoned, packets) is zoned


# --------------------------------------------------------------------------------- pairing

def ev(t, text, kind, line_no, source="a.log"):
    return LogEvent(t, source, line_no, text, kind)


def test_pair_send_ok_and_begin_end():
    events = [ev(10.0, "send heartbeat 17", "start", 1),
              ev(10.1, "send heartbeat 18", "start", 2),
              ev(10.25, "heartbeat 18 ok", "end", 3),
              ev(10.3, "heartbeat 17 ok", "end", 4),
              ev(11.0, "[main] INFO c.x.Sync - begin sync", "start", 5),
              ev(11.5, "[main] INFO c.x.Sync - sync done", "end", 6)]
    spans = pair_events(events)
    assert [(e.kind, e.line_no, e.start, round(e.duration_s, 6)) for e in spans] == [
        ("span", 2, 10.1, 0.15), ("span", 1, 10.0, 0.3), ("span", 5, 11.0, 0.5)]
    assert spans[0].text == "send heartbeat 18 ... heartbeat 18 ok"


def test_pair_latest_open_start_and_orphans():
    events = [ev(1.0, "Read Start", "start", 1),          # never ended (the app timed out)
              ev(2.0, "Read Start", "start", 2),
              ev(2.2, "Read End", "end", 3),
              ev(3.0, "Read End", "end", 4),
              ev(3.5, "Read End", "end", 6),              # end without a start
              ev(4.0, "Read Start", "start", 5, source="b.log")]
    out = pair_events(events)
    # innermost first: nested or concurrent operations with one key pair like brackets
    assert [(e.kind, e.line_no, e.source, e.start, e.time) for e in out] == [
        ("span", 2, "a.log", 2.0, 2.2), ("span", 1, "a.log", 1.0, 3.0),
        ("end", 6, "a.log", None, 3.5), ("start", 5, "b.log", None, 4.0)]
    assert round(out[0].duration_s, 6) == 0.2


def test_bare_timeout_pairs_with_its_start_line_and_nothing_else():
    """Issue 16: "send AppendEntries to 92" then "AppendEntries timeout and retry" 50 ms later is a
    50 ms timeout; a timeout line with no start line of its operation keeps no duration."""
    from pytshark_ext.applog import pair_events
    from pytshark_ext.records import LogEvent
    send, timeout = "raft.go:1007: send AppendEntries to 92", "raft.go:1021: AppendEntries timeout and retry"
    events = [LogEvent(10.0, "r.log", 1, send, "start", None, None),
              LogEvent(10.05, "r.log", 2, timeout, "timeout", None, None),
              LogEvent(10.06, "r.log", 3, send, "start", None, None),
              LogEvent(10.111, "r.log", 4, timeout, "timeout", None, None),
              LogEvent(10.2, "r.log", 5, "snapshot timeout", "timeout", None, None),
              LogEvent(10.3, "other.log", 1, timeout, "timeout", None, None)]
    out = {(e.source, e.line_no): e for e in pair_events(events) if e.kind == "timeout"}
    assert out[("r.log", 2)].duration_s == pytest.approx(0.05) and out[("r.log", 2)].start == 10.0
    assert out[("r.log", 4)].duration_s == pytest.approx(0.051) and out[("r.log", 4)].start == 10.06
    assert out[("r.log", 5)].duration_s is None and out[("r.log", 5)].start is None
    assert out[("other.log", 1)].duration_s is None          # another log's start is not its start
