"""HOL-blocked delivery: golden `-T fields` runs of the real plugin over the committed lab captures,
one-pass and `-2 -Y`, numbers checked against the lab's truth files (and, where the truth file
has no number, against the raw segments of the receiver capture, read without the plugin)."""
from __future__ import annotations

import pytest

from pytshark_ext import tshark as ts

from conftest import inner_loop, sample, truth

HOL_FIELDS = (
    "frame.number", "frame.time_epoch", "tcp.seq_raw", "tcp.len",
    "tcpstall.hol.hold_ms", "tcpstall.hol.release_frame",
    "tcpstall.hol.released_bytes", "tcpstall.hol.released_segments", "tcpstall.hol.max_hold_ms",
    "tcpstall.hol.first_held_frame", "tcpstall.hol.filled_by", "tcpstall.hol.view",
    "tcpstall.retrans.trigger",
    "tcpstall.hol.released", "tcpstall.hol.blocked",
    "tcpstall.thin_stream", "_ws.expert.message", "_ws.expert.severity",
)


def run(capture, two_pass: bool, display_filter=None, prefs=None):
    """{frame: {field: first value or list for _ws.expert.message}} of the plugin's output."""
    out = {}
    for row in ts.iter_fields(str(capture), HOL_FIELDS, two_pass=two_pass, display_filter=display_filter,
                              prefs=prefs):
        rec = dict(zip(HOL_FIELDS, row))
        frame = int(rec["frame.number"][0])
        out[frame] = {k: (v if k.startswith("_ws.expert") else (v[0] if v else None)) for k, v in rec.items()}
    return out


NOTE, WARN = "4194304", "6291456"     # _ws.expert.severity


def thin_numbers(r):
    """(how long the loss evidence took, the send interval) in ms from the frame's thin-stream note."""
    import re
    [m] = [m for m in r["_ws.expert.message"] if m.startswith("Thin stream")]
    took = re.search(r"(?:waited|took|in) ([\d.]+) ms", m)
    every = re.search(r"one segment every ~([\d.]+) ms", m)
    assert took and every and "Helps:" in m, m
    return float(took.group(1)), float(every.group(1)), m


def severity(r, prefix):
    """Severity of the frame's expert whose text starts with `prefix`."""
    sev = [s for m, s in zip(r["_ws.expert.message"], r["_ws.expert.severity"]) if m.startswith(prefix)]
    assert len(sev) == 1, r["_ws.expert.message"]
    return sev[0]


@pytest.fixture(autouse=True, scope="module")
def _home(module_home):
    yield


# --- heartbeat-loss, receiver (server) capture ---------------------------------------------------

def test_heartbeat_receiver_release_one_pass():
    t = truth("heartbeat-loss")["faults"][0]
    held, filler = t["held_at_server"][0], t["arrived_at_server"][0]
    rows = run(sample("heartbeat-loss-server.pcapng"), two_pass=False, display_filter="tcpstall")
    rel = rows[filler["frame"]]
    assert int(rel["tcpstall.hol.released_bytes"]) == held["len"] == 21
    assert int(rel["tcpstall.hol.released_segments"]) == 1
    assert int(rel["tcpstall.hol.first_held_frame"]) == held["frame"]
    assert int(rel["tcpstall.hol.filled_by"]) == filler["frame"]
    assert rel["tcpstall.hol.view"] == "receiver"
    assert abs(float(rel["tcpstall.hol.max_hold_ms"]) - held["hold_ms"]) <= 1.0
    assert rel["tcpstall.hol.released"] is not None          # >= hol_warn_ms (20): a warning
    assert severity(rel, "HOL-blocked delivery: released") == WARN
    msg = [m for m in rel["_ws.expert.message"] if m.startswith("HOL-blocked delivery: released")]
    assert msg and (f"released 21 bytes in 1 segment held up to {float(rel['tcpstall.hol.max_hold_ms']):.1f} ms "
                    f"(first held frame {held['frame']})") in msg[0]
    # in one pass the held frame was printed before its release was seen: no hold yet (documented)
    assert rows.get(held["frame"], {}).get("tcpstall.hol.hold_ms") is None


def test_heartbeat_receiver_held_frame_two_pass():
    t = truth("heartbeat-loss")["faults"][0]
    held, filler = t["held_at_server"][0], t["arrived_at_server"][0]
    rows = run(sample("heartbeat-loss-server.pcapng"), two_pass=True, display_filter="tcpstall")
    h = rows[held["frame"]]
    assert abs(float(h["tcpstall.hol.hold_ms"]) - held["hold_ms"]) <= 1.0
    assert int(h["tcpstall.hol.release_frame"]) == filler["frame"]
    assert h["tcpstall.hol.blocked"] is not None
    # release numbers are the same in both passes
    assert abs(float(rows[filler["frame"]]["tcpstall.hol.max_hold_ms"]) - held["hold_ms"]) <= 1.0
    # exactly one episode, one held frame
    assert [f for f, r in rows.items() if r["tcpstall.hol.released_bytes"]] == [filler["frame"]]
    assert [f for f, r in rows.items() if r["tcpstall.hol.hold_ms"]] == [held["frame"]]


def test_heartbeat_receiver_trigger_and_thin_stream():
    filler = truth("heartbeat-loss")["faults"][0]["arrived_at_server"][0]
    rows = run(sample("heartbeat-loss-server.pcapng"), two_pass=True, display_filter="tcpstall")
    r = rows[filler["frame"]]
    # one dupACK with SACK, retransmitted one RTT later: RACK (kernel 6.18, tcp_recovery=1)
    assert r["tcpstall.retrans.trigger"] == "rack"
    assert r["tcpstall.thin_stream"] is not None
    # the receiver never saw the original: its send time is estimated one send interval before the
    # next heartbeat, the interval from the arrivals around the hole
    t = truth("heartbeat-loss")
    took, every, text = thin_numbers(r)
    assert "(est.)" in text
    assert abs(took - t["faults"][0]["retransmissions"][0]["after_ms"]) <= 3.0
    assert abs(every - t["app"]["interval_ms"]) <= 3.0


def test_warn_threshold_pref_turns_warning_into_note():
    filler = truth("heartbeat-loss")["faults"][0]["arrived_at_server"][0]
    rows = run(sample("heartbeat-loss-server.pcapng"), two_pass=True, display_filter="tcpstall",
               prefs={"hol_warn_ms": 50})
    r = rows[filler["frame"]]
    # the same filter name (tcpstall.hol.released finds it), a note instead of a warning
    assert r["tcpstall.hol.released"] is not None
    assert severity(r, "HOL-blocked delivery: released") == NOTE


def test_hol_analyzer_can_be_switched_off():
    rows = run(sample("heartbeat-loss-server.pcapng"), two_pass=True, display_filter="tcpstall",
               prefs={"hol_enabled": False})
    assert not any(r["tcpstall.hol.released_bytes"] or r["tcpstall.hol.hold_ms"] for r in rows.values())


# --- heartbeat-loss, sender (client) capture -----------------------------------------------------

def test_heartbeat_sender_view_two_pass():
    t = truth("heartbeat-loss")["faults"][0]
    rtx = t["retransmissions"][0]
    held_truth = t["held_at_server"][0]
    rows = run(sample("heartbeat-loss-client.pcapng"), two_pass=True, display_filter="tcpstall")
    # the retransmission and what triggered it
    assert rows[rtx["frame"]]["tcpstall.retrans.trigger"] == "rack"
    assert rows[rtx["frame"]]["tcpstall.thin_stream"] is not None
    took, every, text = thin_numbers(rows[rtx["frame"]])
    assert f"waited {rtx['after_ms']:.1f} ms for a later segment to be SACKed" in text
    assert abs(every - truth("heartbeat-loss")["app"]["interval_ms"]) <= 3.0
    # the release: the ACK that moved the cumulative ACK over the SACKed heartbeat
    rel_frames = [f for f, r in rows.items() if r["tcpstall.hol.released_bytes"]]
    assert len(rel_frames) == 1
    rel = rows[rel_frames[0]]
    assert rel["tcpstall.hol.view"] == "sender"
    assert int(rel["tcpstall.hol.released_bytes"]) == 21
    assert int(rel["tcpstall.hol.filled_by"]) == rtx["frame"]
    # the held heartbeat is the one sent right after the lost one (same seq as held at the server)
    first_held = int(rel["tcpstall.hol.first_held_frame"])
    assert int(rows[first_held]["tcp.seq_raw"]) == held_truth["seq_raw"]
    assert int(rows[first_held]["tcpstall.hol.release_frame"]) == rel_frames[0]
    # sender-side hold = from the first SACK to the releasing ACK, as seen in this capture
    sack_frame, ack_frame = first_held + 1, rel_frames[0]
    seg = {s.frame: s for s in ts.iter_segments(str(sample("heartbeat-loss-client.pcapng")))}
    assert seg[sack_frame].sack, "the frame after the held heartbeat is its SACK"
    expected = (seg[ack_frame].time - seg[sack_frame].time) * 1000
    assert abs(float(rel["tcpstall.hol.max_hold_ms"]) - expected) <= 0.01
    # and the send-time estimate in the text is the receiver's truth within 1 ms
    msg = [m for m in rel["_ws.expert.message"] if m.startswith("HOL-blocked delivery: released")][0]
    est = float(msg.split("~")[1].split(" ms by send times")[0])
    assert abs(est - held_truth["hold_ms"]) <= 1.0


def test_heartbeat_sender_view_one_pass():
    """One pass: the releasing ACK is printed after the SACKs, so it has the whole release."""
    rtx = truth("heartbeat-loss")["faults"][0]["retransmissions"][0]
    rows = run(sample("heartbeat-loss-client.pcapng"), two_pass=False, display_filter="tcpstall")
    rels = [r for r in rows.values() if r["tcpstall.hol.released_bytes"]]
    assert len(rels) == 1 and rels[0]["tcpstall.hol.view"] == "sender"
    assert int(rels[0]["tcpstall.hol.released_bytes"]) == 21
    assert int(rels[0]["tcpstall.hol.filled_by"]) == rtx["frame"]
    assert rows[rtx["frame"]]["tcpstall.retrans.trigger"] == "rack"


@pytest.mark.parametrize("two_pass", [False, True])
def test_heartbeat_receiver_without_handshake(tmp_path, two_pass):
    """The receiver capture without its first 10 frames (no handshake: a long-lived connection
    captured late): the same hold and release, frame numbers shifted by 10."""
    import subprocess
    t = truth("heartbeat-loss")["faults"][0]
    held, filler = t["held_at_server"][0], t["arrived_at_server"][0]
    cut = tmp_path / "hb-server-nohs.pcapng"
    subprocess.run(["editcap", str(sample("heartbeat-loss-server.pcapng")), str(cut), "1-10"], check=True,
                   capture_output=True)
    rows = run(cut, two_pass=two_pass, display_filter="tcpstall")
    rel = rows[filler["frame"] - 10]
    assert int(rel["tcpstall.hol.released_bytes"]) == 21
    assert int(rel["tcpstall.hol.first_held_frame"]) == held["frame"] - 10
    assert abs(float(rel["tcpstall.hol.max_hold_ms"]) - held["hold_ms"]) <= 1.0
    if two_pass:
        assert abs(float(rows[held["frame"] - 10]["tcpstall.hol.hold_ms"]) - held["hold_ms"]) <= 1.0
    assert [f for f, r in rows.items() if r["tcpstall.hol.released_bytes"]] == [filler["frame"] - 10]


# --- seq-wrap: client->server sequence numbers cross 2^32, a segment after the wrap is lost -----

def _receiver_hole_truth(capture, lost_seq, lost_len):
    """From the raw receiver capture (no plugin): the first arrival above the hole, the filler's
    arrival and the receiver's cumulative ACK right after it (all raw, mod 2^32)."""
    segs = list(ts.iter_segments(str(capture)))
    data = [s for s in segs if s.dport == 9000 and s.length > 0]
    first_above = next(s for s in data if s.seq_raw == (lost_seq + lost_len) % 2**32)
    filler = next(s for s in data if s.seq_raw == lost_seq)
    ack_after = next(s for s in segs if s.sport == 9000 and s.frame > filler.frame)
    released = (ack_after.ack_raw - (lost_seq + lost_len)) % 2**32
    return first_above, filler, released


def test_seq_wrap_receiver_release():
    t = truth("seq-wrap")
    lost = t["faults"][0]
    assert t["seq_wrap"]["data_segments_after_wrap"] > 0
    capture = sample("seq-wrap-server.pcapng")
    first_above, filler, released = _receiver_hole_truth(capture, lost["seq_raw"], lost["len"])
    for two_pass in (False, True):
        rows = run(capture, two_pass=two_pass, display_filter="tcpstall")
        rel = rows[filler.frame]
        assert int(rel["tcpstall.hol.released_bytes"]) == released
        assert int(rel["tcpstall.hol.first_held_frame"]) == first_above.frame
        assert abs(float(rel["tcpstall.hol.max_hold_ms"]) - (filler.time - first_above.time) * 1000) <= 1.0
        assert rel["tcpstall.retrans.trigger"] == "fast"
        episodes = [f for f, r in rows.items() if r["tcpstall.hol.released_bytes"]]
        assert episodes == [filler.frame]
        if two_pass:
            assert int(rows[first_above.frame]["tcpstall.hol.release_frame"]) == filler.frame


def test_seq_wrap_sender_trigger_and_release():
    lost = truth("seq-wrap")["faults"][0]
    rtx = lost["retransmissions"][0]
    rows = run(sample("seq-wrap-client.pcapng"), two_pass=True, display_filter="tcpstall")
    assert rows[rtx["frame"]]["tcpstall.retrans.trigger"] == "fast"
    rels = [r for r in rows.values() if r["tcpstall.hol.released_bytes"]]
    assert len(rels) == 1 and rels[0]["tcpstall.hol.view"] == "sender"
    assert int(rels[0]["tcpstall.hol.filled_by"]) == rtx["frame"]
    assert 0 < int(rels[0]["tcpstall.hol.released_bytes"]) < 1_000_000


# --- clean captures: no HOL warnings -------------------------------------------------------------

@pytest.mark.parametrize("capture", inner_loop([
    "clean-heartbeat-client.pcapng", "clean-heartbeat-server.pcapng",
    "clean-bulk-client.pcapng", "clean-bulk-server.pcapng",
    "clean-rpc-client.pcapng", "clean-rpc-server.pcapng",
], inner=["clean-heartbeat-server.pcapng", "clean-bulk-server.pcapng"]))
def test_clean_captures_have_no_hol_warnings(capture):
    rows = run(sample(capture), two_pass=True,
               display_filter="tcpstall.hol.released || tcpstall.hol.blocked || tcpstall.thin_stream")
    assert rows == {}


# --- heartbeat-loss-nosack: no SACK/RACK/TLP, the RTO repairs the hole (collapsed retransmission) -

def test_nosack_receiver_holds_and_release():
    """The retransmission partly overlaps held data (the sender collapsed the held heartbeats into it)."""
    t = truth("heartbeat-loss-nosack")["faults"][0]
    filler = t["arrived_at_server"][0]
    helds = t["held_at_server"]
    rows = run(sample("heartbeat-loss-nosack-server.pcapng"), two_pass=True, display_filter="tcpstall")
    for h in helds:
        r = rows[h["frame"]]
        assert abs(float(r["tcpstall.hol.hold_ms"]) - h["hold_ms"]) <= 1.0
        assert int(r["tcpstall.hol.release_frame"]) == filler["frame"]
    rel = rows[filler["frame"]]
    # the retransmission carries the lost heartbeat and (collapsed) the held ones: the held copies
    # still count as released
    assert int(rel["tcpstall.hol.released_bytes"]) == sum(h["len"] for h in helds)
    assert int(rel["tcpstall.hol.released_segments"]) == len(helds)
    assert abs(float(rel["tcpstall.hol.max_hold_ms"]) - max(h["hold_ms"] for h in helds)) <= 1.0
    assert rel["tcpstall.retrans.trigger"] == "rto"
    assert rel["tcpstall.thin_stream"] is not None
    took, every, text = thin_numbers(rel)       # (est.): the original was lost before this capture
    assert "(est.)" in text and abs(took - t["retransmissions"][0]["after_ms"]) <= 3.0
    assert abs(every - truth("heartbeat-loss-nosack")["app"]["interval_ms"]) <= 3.0


def test_nosack_sender_dupack_view():
    t = truth("heartbeat-loss-nosack")["faults"][0]
    rtx = t["retransmissions"][0]
    helds = t["held_at_server"]
    rows = run(sample("heartbeat-loss-nosack-client.pcapng"), two_pass=True, display_filter="tcpstall")
    assert rows[rtx["frame"]]["tcpstall.retrans.trigger"] == "rto"
    took, every, text = thin_numbers(rows[rtx["frame"]])
    assert f"in {rtx['after_ms']:.1f} ms, no fast retransmit: the timer fired" in text
    assert abs(every - truth("heartbeat-loss-nosack")["app"]["interval_ms"]) <= 3.0
    rels = [r for r in rows.values() if r["tcpstall.hol.released_bytes"]]
    assert len(rels) == 1 and rels[0]["tcpstall.hol.view"] == "sender"
    assert int(rels[0]["tcpstall.hol.released_bytes"]) == sum(h["len"] for h in helds)
    assert int(rels[0]["tcpstall.hol.filled_by"]) == rtx["frame"]
    # measured from the dupACKs at the sender: the return path adds its jitter (a few ms)
    assert abs(float(rels[0]["tcpstall.hol.max_hold_ms"]) - max(h["hold_ms"] for h in helds)) <= 5.0
    held_frames = sorted(f for f, r in rows.items() if r["tcpstall.hol.hold_ms"])
    assert [int(rows[f]["tcp.seq_raw"]) for f in held_frames] == [h["seq_raw"] for h in helds]


# --- reordering that is not loss, network duplicates (tests/data, made with lab/minilab) --

DATA = sample("heartbeat-loss-server.pcapng").parent.parent / "tests" / "data"


def _late_originals(capture):
    """From the raw receiver capture (no plugin): each data segment that arrives below data already
    seen, for the first time, with a TSval older than the highest segment's: a late original.
    Returns [(late segment, first arrival above the gap)]."""
    segs = [s for s in ts.iter_segments(str(capture)) if s.dport == 9000 and s.length > 0]
    seen, out, high, high_ts = set(), [], None, None
    for s in segs:
        key = (s.seq_raw, s.length)
        if high is not None and s.seq_raw < high and key not in seen and s.tsval is not None \
                and s.tsval < high_ts:
            above = next(x for x in segs if x.seq_raw == s.seq_raw + s.length)
            out.append((s, above))
        seen.add(key)
        if high is None or s.seq_raw + s.length > high:
            high, high_ts = s.seq_raw + s.length, s.tsval
    return out


def test_reordering_late_original_is_a_release():
    capture = DATA / "reorder-dup-receiver.pcapng"
    lates = _late_originals(capture)
    assert len(lates) == 2
    rows = run(capture, two_pass=True, display_filter="tcpstall")
    for late, above in lates:
        r = rows[late.frame]
        assert int(r["tcpstall.hol.first_held_frame"]) == above.frame
        assert abs(float(r["tcpstall.hol.max_hold_ms"]) - (late.time - above.time) * 1000) <= 1.0
        assert r["tcpstall.retrans.trigger"] is None          # not a retransmission
        assert any("late original" in m for m in r["_ws.expert.message"])
        assert r["tcpstall.hol.released"] is not None         # 5-8 ms < hol_warn_ms: a note
        assert severity(r, "HOL-blocked delivery: released") == NOTE
        assert int(rows[above.frame]["tcpstall.hol.release_frame"]) == late.frame
    # the spurious fast retransmissions that follow and the network duplicates release nothing
    rels = sorted(f for f, r in rows.items() if r["tcpstall.hol.released_bytes"])
    assert rels == sorted(l.frame for l, _ in lates)


def test_network_duplicates_are_not_retransmissions():
    capture = DATA / "reorder-dup-receiver.pcapng"
    segs = [s for s in ts.iter_segments(str(capture)) if s.dport == 9000 and s.length > 0]
    dups = [b for a, b in zip(segs, segs[1:]) if (a.seq_raw, a.length, a.tsval) == (b.seq_raw, b.length, b.tsval)]
    assert len(dups) == 2
    rows = run(capture, two_pass=True, display_filter="frame")
    for d in dups:
        assert rows[d.frame]["tcpstall.retrans.trigger"] is None


def test_reordering_sender_view_dsack_corrects_the_filler():
    rows = run(DATA / "reorder-dup-sender.pcapng", two_pass=True, display_filter="tcpstall")
    rels = [r for r in rows.values() if r["tcpstall.hol.released_bytes"]]
    assert len(rels) == 2
    for r in rels:
        assert r["tcpstall.hol.view"] == "sender"
        msg = [m for m in r["_ws.expert.message"] if m.startswith("HOL-blocked delivery: released")][0]
        assert "was spurious: D-SACK frame" in msg
    assert [r["tcpstall.retrans.trigger"] for r in rows.values() if r["tcpstall.retrans.trigger"]] == ["fast", "fast"]


# --- thin stream: only for thin streams, numbers that are fields (issue 14 item 7) ---------------

THIN = ("heartbeat-loss", "heartbeat-loss-nosack", "heartbeat-loss-nots")


@pytest.mark.parametrize("two_pass", [False, True])
@pytest.mark.parametrize("side", ["client", "server"])
@pytest.mark.parametrize("scenario", THIN)
def test_thin_stream_note_states_its_fields(scenario, side, two_pass):
    """Every number of the note is a field of the same frame, and the numbers are the truth's."""
    from plugin_rows import flag, rows
    t = truth(scenario)
    r = rows(sample(f"{scenario}-{side}.pcapng"), two_pass, display_filter="tcpstall.thin_stream")
    [x] = r.values()
    took, every, text = thin_numbers(x)
    assert took == float(x["tcpstall.thin_stream.wait_ms"])
    assert every == float(x["tcpstall.thin_stream.interval_ms"])
    assert f"(RTT {float(x['tcpstall.thin_stream.rtt_ms']):.1f} ms)" in text
    assert flag(x["tcpstall.thin_stream.wait_estimated"]) == (side == "server") == ("(est.)" in text)
    if "dupACK" in text:
        assert text.split("Thin stream: ")[1].startswith(f"{x['tcpstall.retrans.dupacks']} dupACK")
        assert int(x["tcpstall.retrans.dupacks"]) >= 1
    assert abs(took - t["faults"][0]["retransmissions"][0]["after_ms"]) <= 3.0
    assert abs(every - t["app"]["interval_ms"]) <= 3.0
    assert abs(float(x["tcpstall.thin_stream.rtt_ms"]) - t["handshake"]["rtt_ms"]) <= 2.0


@pytest.mark.parametrize("capture", inner_loop([
    "sample_captures/seq-wrap-client.pcapng", "sample_captures/seq-wrap-server.pcapng",
    "sample_captures/reorder-nots-client.pcapng", "sample_captures/reorder-nots-server.pcapng",
    "tests/data/bulk-loss-head-client.pcapng", "tests/data/bulk-loss-head-server.pcapng",
    "tests/data/reorder-dup-sender.pcapng", "tests/data/reorder-dup-receiver.pcapng",
], inner=["sample_captures/reorder-nots-server.pcapng", "tests/data/bulk-loss-head-client.pcapng"]))
def test_no_thin_stream_note_on_bulk_flows(capture):
    """Bulk transfers with fast retransmissions (many later segments reported the loss): no note."""
    path = DATA.parent.parent / capture
    rows = run(path, two_pass=True, display_filter="tcpstall.retrans.trigger || tcpstall.thin_stream")
    assert rows and not [f for f, r in rows.items() if r["tcpstall.thin_stream"]]
