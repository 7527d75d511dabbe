"""`tcpstall analyze`: the library (one two-pass tshark run -> streams + findings) and the CLI."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from pytshark_ext import analyze as an
from pytshark_ext.cli import main
from pytshark_ext.tshark import FIELD_SEP

from conftest import sample, truth


@pytest.fixture(autouse=True, scope="module")
def _home(module_home):
    yield


@pytest.fixture(scope="module")
def hb_server():
    return an.analyze_capture(str(sample("heartbeat-loss-server.pcapng")))


def test_parse_output_splits_rows_and_summary():
    n = len(an.FIELDS)
    row = ["7", "100.5", "0"] + [""] * (n - 3)
    lines = [FIELD_SEP.join(row),
             "TCPSTALL\tstream=0\tsrc=10.0.0.1\tsport=1\tdst=10.0.0.2\tdport=2\tfirst_t=1.0\tlast_t=2.0"
             "\tfirst_frame=1\tlast_frame=9\thol_episodes=0",
             "TCPSTALL_END\tstreams=1\terrors=0"]
    rows, streams, errors, first = an.parse_output(lines)
    assert len(rows) == 1 and rows[0]["frame.number"] == ["7"] and "tcpstall.hol.hold_ms" not in rows[0]
    assert streams[0].stream == 0 and streams[0].columns == {"hol_episodes": "0"}
    assert errors == 0 and first is None


def test_held_only_rows_are_kept_compact_and_read_the_same():
    """Hand-made rows (a parser unit test): a frame that is only held keeps frame, time, stream and
    release frame in a small slotted object; a held frame with more to say stays a full row."""
    fields = an.FIELDS
    def line(**kv):
        return FIELD_SEP.join(kv.get(f, "") for f in fields)
    held = {"frame.number": "31", "frame.time_epoch": "100.25", "tcp.stream": "2",
            "tcpstall.hol.release_frame": "40", "tcpstall.hol.hold_ms": "12.5",
            "tcpstall.hol.blocked": "1"}
    busy = dict(held, **{"frame.number": "32", "tcpstall.retrans.trigger": "fast"})
    rows, _, _, _ = an.parse_output([line(**held), line(**busy)], fields)
    small, full = rows
    assert not isinstance(small, dict) and isinstance(full, dict)
    assert (an._i(small, "frame.number"), an._f(small, "frame.time_epoch"), an._i(small, "tcp.stream"),
            an._i(small, "tcpstall.hol.release_frame")) == (31, 100.25, 2, 40)
    assert small.get("tcpstall.hol.hold_ms") is None
    assert an._s(full, "tcpstall.retrans.trigger") == "fast"
    [f] = an.findings_from_rows(rows + [{"frame.number": ["40"], "frame.time_epoch": ["100.3"],
                                         "tcp.stream": ["2"], "tcpstall.hol.released_bytes": ["84"],
                                         "tcpstall.hol.max_hold_ms": ["50"]}])
    assert f.numbers["held_frames"] == [31, 32] and f.numbers["release_frame"] == 40


def test_hol_finding_matches_truth(hb_server):
    t = truth("heartbeat-loss")["faults"][0]
    held, filler = t["held_at_server"][0], t["arrived_at_server"][0]
    assert hb_server.plugin_errors == 0
    assert len(hb_server.streams) == 1
    [f] = [f for f in hb_server.findings if f.kind == "hol_blocked"]
    assert f.stream == 0
    assert f.numbers["release_frame"] == filler["frame"]
    assert f.numbers["first_held_frame"] == held["frame"]
    assert f.numbers["released_bytes"] == 21
    assert abs(f.numbers["max_hold_ms"] - held["hold_ms"]) <= 1.0
    assert abs(f.duration_ms - held["hold_ms"]) <= 1.0
    assert abs(f.start - held["time"]) <= 0.001 and abs(f.end - filler["time"]) <= 0.001
    assert held["frame"] in f.frames and filler["frame"] in f.frames
    assert f.numbers["trigger"] == "rack" and f.numbers["severity"] == "warn"
    assert "thin_stream" in f.numbers
    assert f.summary.startswith("HOL-blocked delivery: released 21 bytes")


def test_short_hold_is_a_note_under_the_same_name():
    r = an.analyze_capture(str(sample("heartbeat-loss-server.pcapng")), prefs={"hol_warn_ms": 50})
    [f] = [f for f in r.findings if f.kind == "hol_blocked"]
    assert f.numbers["severity"] == "note" and f.numbers["max_hold_ms"] < 50


def test_json_shape(hb_server):
    d = an.to_json(hb_server)
    json.dumps(d)   # serialisable
    assert set(d) >= {"streams", "findings"}
    s = d["streams"][0]
    assert s["hol_episodes"] == 1 and isinstance(s["hol_worst_ms"], float)
    # JSON types: nothing to report is null, the window scale a number with its own "inferred" flag
    assert s["retries_stall_s"] is None and s["rwnd_window"] is None
    assert s["rwnd_scale"] == 10 and s["rwnd_scale_inferred"] is False
    f = d["findings"][0]
    # the one finding shape of every --json output (render.json.finding_dict), the plugin's numbers nested
    assert set(f) == {"id", "kind", "summary", "start", "end", "duration_ms", "evidence", "caused_by",
                      "frames", "stream", "numbers"}
    for key in ("released_bytes", "max_hold_ms", "first_held_frame", "release_frame"):
        assert key in f["numbers"], key
    assert f["kind"] == "hol_blocked"


def test_json_columns_carry_the_plain_values():
    """Pure: -z tcpstall,tsv values are plain, JSON carries them typed and splits nothing (issue 16:
    the window scale was one "10 inferred" value, split here)."""
    cols = {"rwnd_scale": "10", "rwnd_scale_inferred": "true", "rwnd_window": "-", "rwnd_limited_ms": "1618.0",
            "retries_linux_like": "false", "retries_outcome": "capture_ends", "hol_episodes": "0"}
    assert an._json_columns(cols) == {"rwnd_scale": 10, "rwnd_scale_inferred": True, "rwnd_window": None,
                                      "rwnd_limited_ms": 1618.0, "retries_linux_like": False,
                                      "retries_outcome": "capture_ends", "hol_episodes": 0}


def test_table_render(hb_server):
    text = an.render_table(hb_server)
    assert "HOL episodes" in text and "hol_blocked" in text and "HOL-blocked delivery" in text


def test_clean_capture_has_no_findings():
    r = an.analyze_capture(str(sample("clean-heartbeat-server.pcapng")))
    assert r.findings == () and r.plugin_errors == 0
    assert "no stalls found" in an.render_table(r)


def test_cli_table_and_json():
    runner = CliRunner()
    cap = str(sample("heartbeat-loss-client.pcapng"))
    res = runner.invoke(main, ["analyze", cap])
    assert res.exit_code == 0, res.output
    assert "hol_blocked" in res.output and "HOL worst ms" in res.output
    res = runner.invoke(main, ["analyze", cap, "--json", "-o", "hol_warn_ms:50"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    [f] = d["findings"]
    assert f["numbers"]["view"] == "sender" and f["numbers"]["severity"] == "note"   # 20 ms hold < 50 ms threshold


def test_cli_errors_are_one_line():
    runner = CliRunner()
    res = runner.invoke(main, ["analyze", "/nonexistent/capture.pcapng"])
    assert res.exit_code == 1 and "no such file" in res.output
    res = runner.invoke(main, ["analyze", str(sample("heartbeat-loss-client.pcapng")), "-o", "nocolon"])
    assert res.exit_code == 1 and "NAME:VALUE" in res.output


@pytest.mark.parametrize("pref", ["tcp_retries2:eight", "rto_min_ms:50ms", "rto_max_ms:-1", "user_timeout_ms:1.5"])
def test_cli_sender_settings_must_be_whole_numbers(pref):
    """A value the plugin cannot read would silently count as not given: one line, exit 2."""
    for cmd in (["analyze", str(sample("heartbeat-loss-client.pcapng"))],
                ["correlate", str(sample("heartbeat-loss-client.pcapng")), str(sample("heartbeat-loss-server.pcapng"))]):
        res = CliRunner().invoke(main, cmd + ["-o", pref])
        assert res.exit_code == 2 and pref in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_retries_severity_is_the_strongest_experts():
    """peer-vanishes with tcp_retries2=6: the last retransmission before the predicted abort is in
    the capture (tcpstall.retries.final, error); with the default 15 it is not (approaching: warn)."""
    from pytshark_ext.analyze import analyze_capture
    cap = str(sample("peer-vanishes-client.pcapng"))
    [short] = [f for f in analyze_capture(cap, prefs={"tcp_retries2": "6"}).findings if f.kind == "retries"]
    [default] = [f for f in analyze_capture(cap).findings if f.kind == "retries"]
    assert (short.numbers["severity"], short.numbers["final_frame"] is not None) == ("error", True)
    assert (default.numbers["severity"], default.numbers["final_frame"]) == ("warn", None)
