"""`tcpstall correlate` on the committed two-point lab captures (ground truth in *.truth.json)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from conftest import inner_loop, sample, truth
from pytshark_ext.cli import main
from pytshark_ext.correlate import CorrelateError, correlate, link_side_findings, with_plugin_findings
from pytshark_ext.pipeline import correlate_captures, read_pair
from pytshark_ext.records import Finding
from pytshark_ext.render.json import correlate_json
from pytshark_ext.render.pcapng import correlate_comments, write_annotated
from pytshark_ext.render.table import correlate_table
from pytshark_ext.tshark import iter_segments

# these tests only read captures: a HOME of their own, shared (conftest.module_home)
pytestmark = pytest.mark.usefixtures("module_home")


def pair(scenario: str):
    return str(sample(f"{scenario}-client.pcapng")), str(sample(f"{scenario}-server.pcapng"))


@pytest.fixture(scope="module")
def hb():
    a, b = pair("heartbeat-loss")
    return correlate_captures(a, b)


@pytest.fixture(scope="module")
def hb_truth():
    return truth("heartbeat-loss")


# --- heartbeat-loss: exactly the dropped segment ------------------------------------------------

def test_heartbeat_loss_reports_exactly_the_dropped_segment(hb, hb_truth):
    dropped = hb_truth["dropped_segments"]
    assert len(dropped) == 1
    d = dropped[0]
    assert hb.lost_total == 1 and len(hb.lost) == 1
    lost = hb.lost[0]
    assert (lost.seq_raw, lost.len, lost.tsval, lost.frame) == (d["seq_raw"], d["len"], d["tsval"], d["frame"])
    assert lost.seen_at == "A" and lost.upstream == "A" and lost.transmission == 1
    assert lost.direction == f"{d['src']} -> {d['dst']}"
    assert lost.sent_at == pytest.approx(d["time"], abs=2e-6)
    assert hb.unseen_upstream_total == 0


def test_heartbeat_loss_delivery_is_the_truth_retransmission(hb, hb_truth):
    f = hb_truth["faults"][0]
    dv = hb.lost[0].delivered_by
    assert dv is not None
    assert dv.up_frame == f["retransmissions"][0]["frame"]
    assert dv.down_frame == f["arrived_at_server"][0]["frame"]
    assert dv.transmission == 2
    # same host clock in the lab: arrival - original send == the truth's after_ms (up to the offset estimate)
    assert dv.after_ms == pytest.approx(f["arrived_at_server"][0]["after_ms"], abs=0.5)


def _client_server(t):
    d = t["dropped_segments"][0]
    return d["src"], d["dst"]          # "ip:port" strings, client -> server


def test_heartbeat_loss_offset_and_delays_match_the_lab(hb, hb_truth):
    configured = hb_truth["topology"]["one_way_delay_ms"]["configured"]
    # both captures share one clock: offset ~ 0, and certainly inside its own bound
    assert abs(hb.clock_offset_ms) < 0.5
    assert abs(hb.clock_offset_ms) <= hb.clock_offset_bound_ms
    # the bound is half the minimum RTT between the capture points: ~ the configured one-way delay
    assert configured <= hb.clock_offset_bound_ms <= configured + 1.0
    for key in ("A->B", "B->A"):
        st = hb.one_way_delay_ms[key]
        assert configured - 0.5 <= st.min <= configured + 1.0, (key, st)
        assert configured <= st.median <= configured + 3.0, (key, st)
        assert st.min <= st.median <= st.p99 <= st.max
    # which capture is nearer the sender of each direction
    (flow,) = hb.flows
    by_dir = {d.direction: d.upstream for d in flow.directions}
    client, server = _client_server(hb_truth)
    assert by_dir == {f"{client} -> {server}": "A", f"{server} -> {client}": "B"}
    assert not flow.nat
    # every server packet was also seen at the client, which has the one dropped packet more
    assert hb.matched == hb.b.packets == hb.a.packets - 1


def test_nosack_variant_delivery_by_a_larger_retransmission():
    t = truth("heartbeat-loss-nosack")
    r = correlate_captures(*pair("heartbeat-loss-nosack"))
    (d,) = t["dropped_segments"]
    assert [(x.seq_raw, x.len, x.frame) for x in r.lost] == [(d["seq_raw"], d["len"], d["frame"])]
    f = t["faults"][0]
    dv = r.lost[0].delivered_by
    # the retransmission carried more than the lost 21 bytes (repacketized): still found
    assert (dv.up_frame, dv.down_frame) == (f["retransmissions"][0]["frame"], f["arrived_at_server"][0]["frame"])
    assert f["retransmissions"][0]["len"] > d["len"]


@pytest.mark.parametrize("scenario", inner_loop(
    ["heartbeat-loss", "heartbeat-loss-nosack", "cable-back", "peer-restarts", "peer-vanishes",
     "peer-vanishes-usertimeout", "seq-wrap", "clean-rpc", "small-rcvbuf-nohs", "app-not-reading"],
    inner=["heartbeat-loss", "peer-vanishes", "small-rcvbuf-nohs"]))
def test_lost_set_equals_the_lab_drops(scenario):
    """Every packet the router dropped (both directions, retransmissions included), nothing else.
    peer-vanishes: the server capture sees nothing after the blackhole; its pcapng statistics
    block says it was still running, so the retransmissions are losses, not "outside B"."""
    t = truth(scenario)
    want = sorted((d["frame"], d["seq_raw"], d["len"], d["tsval"]) for d in t["dropped_segments"])
    r = correlate_captures(*pair(scenario))
    got = sorted((x.frame, x.seq_raw, x.len, x.tsval) for x in r.lost)
    assert got == want
    client = f"{t['topology']['client']}:"
    for x in r.lost:        # the client capture is A: client-sent drops are seen at A, server-sent at B
        assert x.seen_at == ("A" if x.direction.startswith(client) else "B")
    assert r.not_captured_total == 0 and r.unseen_upstream_total == 0


@pytest.mark.parametrize("scenario", ["clean-heartbeat", "clean-bulk"])
def test_clean_pair_nothing_lost(scenario):
    assert truth(scenario)["dropped_segments"] == []
    r = correlate_captures(*pair(scenario))
    assert r.lost_total == 0 and r.unseen_upstream_total == 0
    assert r.matched == r.a.packets == r.b.packets
    assert not [f for f in r.findings if f.kind in ("lost", "unseen_upstream")]


# --- symmetry, NAT, pure-function entry point --------------------------------------------------

def test_swapped_arguments_give_the_mirrored_answer(hb):
    a, b = pair("heartbeat-loss")
    sw = correlate_captures(b, a)
    assert sw.clock_offset_ms == pytest.approx(-hb.clock_offset_ms, abs=0.002)
    assert sw.clock_offset_bound_ms == pytest.approx(hb.clock_offset_bound_ms, abs=0.002)
    assert sw.one_way_delay_ms["A->B"] == hb.one_way_delay_ms["B->A"]
    assert sw.one_way_delay_ms["B->A"] == hb.one_way_delay_ms["A->B"]
    (l1,), (l2,) = hb.lost, sw.lost
    assert (l2.seen_at, l2.upstream) == ("B", "B")
    assert (l2.frame, l2.seq_raw, l2.len, l2.tsval) == (l1.frame, l1.seq_raw, l1.len, l1.tsval)
    # sent_at is in the first capture's clock, which is the other host now
    assert l2.sent_at == pytest.approx(l1.sent_at + hb.clock_offset_ms / 1000, abs=5e-6)
    d1, d2 = l1.delivered_by, l2.delivered_by
    assert (d2.up_frame, d2.down_frame) == (d1.up_frame, d1.down_frame)
    assert d2.after_ms == pytest.approx(d1.after_ms, abs=0.01)


@pytest.fixture(scope="module")
def natted_server(tmp_path_factory, hb_truth):
    tool = shutil.which("tcprewrite")
    if tool is None:
        pytest.skip("tcprewrite not installed (Debian package tcpreplay): NAT test needs it")
    out = tmp_path_factory.mktemp("nat") / "heartbeat-loss-server-nat.pcap"
    # what a source NAT between client and server would show at the server: another client address/port
    client_ip, client_port = _client_server(hb_truth)[0].rsplit(":", 1)
    subprocess.run([tool, f"--pnat={client_ip}/32:203.0.113.7/32", f"--portmap={client_port}:40001", "--fixcsum",
                    "-i", str(sample("heartbeat-loss-server.pcapng")), "-o", str(out)],
                   check=True, capture_output=True)
    return str(out)


def test_nat_rewritten_pair_still_pairs(hb, hb_truth, natted_server):
    a, _ = pair("heartbeat-loss")
    r = correlate_captures(a, natted_server)
    (flow,) = r.flows
    assert flow.nat
    (cip, cport), (sip, sport) = (x.rsplit(":", 1) for x in _client_server(hb_truth))
    assert flow.a == ((cip, int(cport)), (sip, int(sport)))
    assert flow.b == (("203.0.113.7", 40001), (sip, int(sport)))
    assert r.matched == hb.matched
    assert [(x.seq_raw, x.len, x.frame) for x in r.lost] == [(x.seq_raw, x.len, x.frame) for x in hb.lost]
    assert r.lost[0].delivered_by.down_frame == hb.lost[0].delivered_by.down_frame
    assert abs(r.clock_offset_ms) < 0.5


def test_segments_api_agrees_with_capture_path(hb):
    a, b = pair("heartbeat-loss")
    r = correlate(iter_segments(a), iter_segments(b), name_a=a, name_b=b)
    assert [(x.frame, x.seq_raw, x.delivered_by) for x in r.lost] == \
        [(x.frame, x.seq_raw, x.delivered_by) for x in hb.lost]
    assert r.clock_offset_ms == hb.clock_offset_ms
    assert r.one_way_delay_ms == hb.one_way_delay_ms


# --- overlap and bad pairs -------------------------------------------------------------------

def test_partial_overlap_is_reported_not_counted_as_loss(tmp_path, hb):
    a, b = pair("heartbeat-loss")
    # drop the server capture's first second: the client capture's first second has no counterpart
    # (the loss is ~1.8 s in, so it stays inside the overlap)
    start = hb.b.first + 1.0
    cut = tmp_path / "server-tail.pcapng"
    subprocess.run(["editcap", "-A", f"{start:.6f}", b, str(cut)], check=True, capture_output=True)
    r = correlate_captures(a, str(cut))
    assert r.overlap["partial"] is True
    assert r.overlap["outside_a"] > 10
    assert r.overlap["start"] == pytest.approx(start, abs=0.1)
    assert any("overlap" in n for n in r.notes)
    # the packets before B started are not "lost"; the real loss still is
    assert [(x.seq_raw, x.frame) for x in r.lost] == [(x.seq_raw, x.frame) for x in hb.lost]


def test_capture_drops_are_not_reported_as_losses(tmp_path, hb, hb_truth):
    """Frames deleted from the server capture (what a dumpcap drop looks like): a client data segment
    the server still acknowledged, and a server segment the client capture shows."""
    a, b = pair("heartbeat-loss")
    client = _client_server(hb_truth)[0]
    segs = list(iter_segments(b))
    data = [s for s in segs if f"{s.src}:{s.sport}" == client and s.length == 21]
    acks = [s for s in segs if f"{s.dst}:{s.dport}" == client and not s.flags & 0x07]   # server -> client
    victim_data, victim_ack = data[5], acks[5]          # well before the heartbeat that was dropped
    cut = tmp_path / "server-with-drops.pcapng"
    subprocess.run(["editcap", b, str(cut), str(victim_data.frame), str(victim_ack.frame)], check=True,
                   capture_output=True)
    r = correlate_captures(a, str(cut))
    # the real loss is still the only loss
    assert [(x.seq_raw, x.len) for x in r.lost] == [(x.seq_raw, x.len) for x in hb.lost]
    (nc,) = r.not_captured
    assert (nc.seq_raw, nc.len, nc.seen_at) == (victim_data.seq_raw, 21, "A")
    (un,) = r.unseen_upstream
    assert (un.seq_raw, un.len, un.seen_at, un.upstream) == (victim_ack.seq_raw, victim_ack.length, "A", "B")
    gaps = [f for f in r.findings if f.kind == "capture_gap"]
    assert gaps and all(f.numbers["capture"] == "B" for f in gaps)
    assert sum(f.numbers["packets"] for f in gaps) == 2


def test_captures_sharing_nothing_fail_with_one_line(tmp_path):
    a, _ = pair("clean-heartbeat")
    _, b = pair("small-rcvbuf")
    with pytest.raises(CorrelateError, match="share no TCP segments"):
        correlate_captures(a, b)
    res = CliRunner().invoke(main, ["correlate", "--no-plugin", a, b])
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "share no TCP segments" in lines[0] and "Traceback" not in res.output


def test_missing_capture_is_one_line_naming_the_file(tmp_path):
    a, _ = pair("heartbeat-loss")
    missing = str(tmp_path / "nope.pcapng")
    res = CliRunner().invoke(main, ["correlate", "--no-plugin", a, missing])
    assert res.exit_code == 1
    assert res.output.strip().count("\n") == 0 and missing in res.output


def test_not_a_capture_is_one_line(tmp_path):
    a, _ = pair("heartbeat-loss")
    junk = tmp_path / "junk.pcapng"
    junk.write_text("this is not a capture\n")
    res = CliRunner().invoke(main, ["correlate", "--no-plugin", a, str(junk)])
    assert res.exit_code == 1
    assert str(junk) in res.output and "Traceback" not in res.output


# --- CLI, JSON, annotate, plugin findings ----------------------------------------------------

def test_cli_json_schema(hb_truth):
    a, b = pair("heartbeat-loss")
    res = CliRunner().invoke(main, ["correlate", "--json", a, b])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    for key in ("clock_offset_ms", "clock_offset_bound_ms", "one_way_delay_ms", "flows", "lost", "findings"):
        assert key in doc
    assert set(doc["one_way_delay_ms"]) == {"A->B", "B->A"}
    for st in doc["one_way_delay_ms"].values():
        assert {"min", "median", "p99", "max", "count", "nearer_sender"} <= set(st)
    (lost,) = doc["lost"]
    d = hb_truth["dropped_segments"][0]
    assert lost["seq_raw"] == d["seq_raw"] and lost["len"] == d["len"]
    assert lost["sent_at"] == pytest.approx(d["time"], abs=2e-6)
    assert lost["direction"] == "{} -> {}".format(*_client_server(hb_truth))
    assert lost["delivered_by"]["up_frame"] == hb_truth["faults"][0]["retransmissions"][0]["frame"]
    kinds = {f["kind"] for f in doc["findings"]}
    assert "lost" in kinds
    for f in doc["findings"]:
        assert {"kind", "summary", "start", "end", "duration_ms", "evidence", "caused_by"} <= set(f)
    # the plugin's HOL findings, one per side, both caused by the lost segment
    hol = [f for f in doc["findings"] if f["kind"] == "hol_blocked"]
    assert {f["numbers"]["side"] for f in hol} == {"A", "B"}
    assert all(f["caused_by"] == [lost["id"]] for f in hol)


def test_hol_hold_on_receiver_side_matches_truth(hb, hb_truth):
    a, b = pair("heartbeat-loss")
    r = with_plugin_findings(hb, *read_pair(a, b).analyses)
    (hol_b,) = [f for f in r.findings if f.kind == "hol_blocked" and f.numbers["side"] == "B"]
    held = hb_truth["faults"][0]["held_at_server"][0]
    assert hol_b.numbers["max_hold_ms"] == pytest.approx(held["hold_ms"], abs=0.1)
    # the hold ends when the delivering retransmission arrives at B
    assert hol_b.end == pytest.approx(hb.lost[0].delivered_by.arrived_at, abs=1e-5)
    assert hol_b.caused_by == ("lost-1",)


def test_link_side_findings_by_time_without_filled_frame(hb):
    dv = hb.lost[0].delivered_by
    unrelated = Finding(kind="hol_blocked", summary="x", start=hb.a.first, end=hb.a.first + 0.01, stream=0)
    related = Finding(kind="retries", summary="y", start=dv.sent_at - 0.05, end=dv.sent_at, stream=0)
    rwnd = Finding(kind="rwnd_throttling", summary="z", start=dv.sent_at - 0.05, end=dv.sent_at, stream=0)
    r = link_side_findings(hb, "A", [unrelated, related, rwnd])
    by_kind = {f.kind: f for f in r.findings if f.numbers.get("side") == "A"}
    assert by_kind["hol_blocked"].caused_by == ()
    assert by_kind["retries"].caused_by == ("lost-1",)
    assert by_kind["rwnd_throttling"].caused_by == ()


def test_table_output(hb, hb_truth):
    text = correlate_table(hb)
    assert "lost between the capture points: 1" in text
    assert str(hb_truth["dropped_segments"][0]["seq_raw"]) in text and "clock offset (B - A)" in text


def test_annotate_writes_comments(tmp_path, hb, hb_truth):
    a, _ = pair("heartbeat-loss")
    out = tmp_path / "annotated.pcapng"
    comments = correlate_comments(hb)
    f = hb_truth["faults"][0]
    orig, retx = f["client_frame"], f["retransmissions"][0]["frame"]
    after = f["arrived_at_server"][0]["after_ms"]
    m = re.fullmatch(rf"tcpstall: lost before reaching B; retransmitted in frame {retx}, arrived at B \+([\d.]+) ms",
                     comments[orig])
    assert m and float(m.group(1)) == pytest.approx(after, abs=0.2)
    write_annotated(a, str(out), comments)
    got = subprocess.run(["tshark", "-n", "-r", str(out), "-Y", "frame.comment", "-T", "fields",
                          "-e", "frame.number", "-e", "frame.comment"], capture_output=True, text=True, check=True)
    rows = dict(line.split("\t", 1) for line in got.stdout.splitlines())
    assert set(rows) >= {str(orig), str(retx)}
    assert "lost before reaching B" in rows[str(orig)]
    assert list(tmp_path.iterdir()) == [out]          # no temporary left behind


def test_annotate_failure_leaves_nothing(tmp_path):
    a, b = pair("heartbeat-loss")
    out = tmp_path / "missing-dir" / "x.pcapng"
    res = CliRunner().invoke(main, ["correlate", "--no-plugin", "--annotate", str(out), a, b])
    assert res.exit_code == 1 and "missing-dir" in res.output
    assert not out.parent.exists()
    # editcap itself failing (frame comment on a file that is not a capture): no partial output
    junk = tmp_path / "junk.pcapng"
    junk.write_text("not a capture")
    with pytest.raises(Exception):
        write_annotated(str(junk), str(tmp_path / "y.pcapng"), {1: "x"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.pcapng"]


def test_json_roundtrip_of_result(hb):
    doc = correlate_json(hb)
    assert json.loads(json.dumps(doc)) == doc
    assert doc["lost_total"] == 1 and doc["unseen_upstream_total"] == 0


def test_ip_id_breaks_ties_when_there_are_no_tcp_timestamps():
    """Without TCP timestamps a retransmission has the same seq/ack/len as the original: the IP ID
    (Linux increments it per packet) tells which transmission reached B. Pure function, records
    only (the transport-level content two capture points would record for such a flow)."""
    from pytshark_ext.records import Segment

    def seg(frame, t, seq, ip_id, src="10.0.0.1", sport=5000, dst="10.0.0.2", dport=80, ln=100, ack=1):
        return Segment(frame=frame, time=t, src=src, dst=dst, sport=sport, dport=dport, seq_raw=seq, ack_raw=ack,
                       length=ln, flags=0x18, window=500, tsval=None, tsecr=None, ip_id=ip_id)

    a, b = [], []
    for i in range(12):                         # in-order data, every one delivered 5 ms later
        a.append(seg(len(a) + 1, 1.0 + i * 0.01, 1000 + i * 100, 10 + i))
        b.append(seg(len(b) + 1, 1.005 + i * 0.01, 1000 + i * 100, 10 + i))
        a.append(seg(len(a) + 1, 1.011 + i * 0.01, 1, 500 + i, "10.0.0.2", 80, "10.0.0.1", 5000, 0, 1100 + i * 100))
        b.append(seg(len(b) + 1, 1.006 + i * 0.01, 1, 500 + i, "10.0.0.2", 80, "10.0.0.1", 5000, 0, 1100 + i * 100))
    lost_seq = 1000 + 12 * 100
    a.append(seg(len(a) + 1, 1.2, lost_seq, 40))           # original: dropped between A and B
    orig_frame = len(a)
    a.append(seg(len(a) + 1, 1.4, lost_seq, 41))           # retransmission: same seq/ack/len, new IP ID
    b.append(seg(len(b) + 1, 1.405, lost_seq, 41))
    r = correlate(a, b)
    (lost,) = r.lost
    assert (lost.frame, lost.seq_raw) == (orig_frame, lost_seq)
    assert lost.delivered_by.up_frame == orig_frame + 1 and lost.delivered_by.down_frame == len(b)
    assert r.one_way_delay_ms["A->B"].max == pytest.approx(5.0, abs=0.01)


def test_block_parser_agrees_with_the_row_by_row_one():
    """rows_from_blocks converts whole blocks column by column; a block with anything unusual
    goes row by row. Both give the same rows (a frame number may stay text), skip the same
    truncated rows, and refuse a row with a wrong number of columns."""
    from pytshark_ext.correlate.fieldrows import _Parsed, _rows_one_by_one, correlate_command_kwargs, rows_from_blocks
    from pytshark_ext.tshark import FIELD_SEP, TsharkFailed, run_lines

    lines = list(run_lines(str(sample("heartbeat-loss-client.pcapng")), **correlate_command_kwargs()))
    n = len(lines[0].split(FIELD_SEP))
    truncated = FIELD_SEP.join(["99999", "1.5"] + [""] * (n - 2))      # no TCP fields: skipped
    for text in (lines, lines[:7] + [truncated] + lines[7:]):
        fast = list(rows_from_blocks(["\n".join(text[i:i + 50]) for i in range(0, len(text), 50)]))
        slow = list(_rows_one_by_one(text, n, _Parsed(16), "x"))
        assert len(slow) == len(lines) and [(int(r[0]),) + r[1:] for r in fast] == slow
    with pytest.raises(TsharkFailed, match="columns"):
        list(rows_from_blocks(["\n".join(lines[:3] + [lines[3] + FIELD_SEP] + lines[4:9])]))


# --- a lost spurious retransmission -------------------------------------------------------------

def test_a_lost_spurious_retransmission_is_a_loss_that_delayed_nothing():
    """tests/data/bulk-loss-head-*: the start of the lab's bulk-loss run (1 % random drops in the
    router; see tests/data/README.md). Three of its drops are spurious retransmissions: the original
    reached the server, the copy sent a few ms later was dropped. The receiver acknowledged the bytes
    (the original delivered them), so that ACK says nothing about the copy: it is a network loss like
    the others, not a capture drop, marked redundant, and never blamed for a stall."""
    from lab import pcaptools as pt   # the lab's own matcher: independent of correlate
    from pathlib import Path

    data = Path(__file__).resolve().parent / "data"
    a, b = str(data / "bulk-loss-head-client.pcapng"), str(data / "bulk-loss-head-server.pcapng")
    client_segs, server_segs = pt.segments(a), pt.segments(b)
    client = client_segs[0].src
    dropped = pt.missing(client_segs, server_segs, client)          # the server capture runs 30 ms longer
    lost_frames = {s.frame for s in dropped}
    # a dropped copy of bytes an earlier, not dropped copy had carried
    spurious = {s.frame for s in dropped
                if any(o.seq == s.seq and o.frame < s.frame and o.frame not in lost_frames for o in client_segs)}
    assert len(dropped) == 36 and spurious == {3436, 3952, 5755}

    r = correlate_captures(a, b)
    assert sorted(x.frame for x in r.lost) == sorted(s.frame for s in dropped)
    assert r.lost_total == 36 and r.not_captured_total == 0 and r.unseen_upstream_total == 0
    assert {x.frame for x in r.lost if x.redundant} == spurious
    for x in r.lost:
        assert (x.delivered_by is None) == x.redundant      # every other drop was retransmitted in time
        if x.redundant:
            assert x.transmission == 2
            f = next(f for f in r.findings if f.id == x.id)
            assert "delayed nothing" in f.summary
    assert correlate_json(r)["lost"][[x.frame for x in r.lost].index(3436)]["redundant"] is True
    from pytshark_ext.diagnose import facts_from_correlation
    assert not any(x.redundant for x in facts_from_correlation(r).lost)
