"""Issue 14 item 4: what filled a hole (tcpstall.hol.fill: retransmission / late_original /
not_captured / cannot_tell), with and without TCP timestamps, at both capture points.

Truth comes from the lab (truth files) or from the other capture point read without the plugin:
Linux gives every packet of a socket a new IP ID, so the sender-side capture tells for each
receiver-side filler whether it was the data's first transmission (a late original) or a resend.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from pytshark_ext import tshark as ts

from plugin_rows import (BOTH_PASSES, DATA, ROOT, drop_frames, flag, hol_text, keep_frames, releases,
                         retransmissions, rows, sample, truth)

REWRITE = ROOT / "lab" / "rewrite.py"


@pytest.fixture(autouse=True, scope="module")
def _home(module_home):
    yield


def zero_ip_ids(src, dst):
    """The capture with every IPv4 ID 0 (lab/rewrite.py edit): what a stack that sends ID 0
    on unfragmentable packets (RFC 6864) or an ID-rewriting middlebox leaves. A rewritten capture."""
    subprocess.run([sys.executable, str(REWRITE), "edit", str(src), str(dst), "--zero-ip-id"], check=True,
                   capture_output=True)
    return dst


# --- heartbeat-loss-nots: a lost heartbeat, no TCP timestamps, repaired by a RACK retransmission ---

@pytest.mark.parametrize("two_pass", BOTH_PASSES)
def test_no_timestamps_receiver_filler_is_a_retransmission(two_pass):
    """Was "late original (reordering, not a retransmission)": the filler came one RTT after the
    hole opened and its IP ID is newer than the held heartbeat's."""
    f = truth("heartbeat-loss-nots")["faults"][0]
    held, filler = f["held_at_server"][0], f["arrived_at_server"][0]
    r = rows(sample("heartbeat-loss-nots-server.pcapng"), two_pass)
    assert list(releases(r)) == [filler["frame"]]
    rel = r[filler["frame"]]
    assert rel["tcpstall.hol.fill"] == "retransmission"
    assert rel["tcpstall.retrans.trigger"] == "rack"
    assert int(rel["tcpstall.hol.first_held_frame"]) == held["frame"]
    assert abs(float(rel["tcpstall.hol.max_hold_ms"]) - held["hold_ms"]) <= 1.0
    assert rel["tcpstall.hol.severity"] == "warn"                # 20.5 ms >= hol_warn_ms 20
    assert "late original" not in hol_text(rel)
    if two_pass:
        assert r[held["frame"]]["tcpstall.hol.severity"] == "warn"


@pytest.mark.parametrize("two_pass", BOTH_PASSES)
def test_no_timestamps_sender_view(two_pass):
    f = truth("heartbeat-loss-nots")["faults"][0]
    rtx = f["retransmissions"][0]
    r = rows(sample("heartbeat-loss-nots-client.pcapng"), two_pass)
    [rel] = releases(r).values()
    assert rel["tcpstall.hol.view"] == "sender" and rel["tcpstall.hol.fill"] == "retransmission"
    assert int(rel["tcpstall.hol.filled_by"]) == rtx["frame"]


@pytest.mark.parametrize("two_pass", BOTH_PASSES)
def test_no_timestamps_without_handshake(tmp_path, two_pass):
    """Captured late (no handshake): the sender's turn is never measured at the receiver without
    timestamps, so timing cannot help; IP ID order still does."""
    f = truth("heartbeat-loss-nots")["faults"][0]
    cut = keep_frames(sample("heartbeat-loss-nots-server.pcapng"), tmp_path / "nohs.pcapng", 11)
    r = rows(cut, two_pass)
    assert list(releases(r)) == [f["arrived_at_server"][0]["frame"] - 10]
    assert r[f["arrived_at_server"][0]["frame"] - 10]["tcpstall.hol.fill"] == "retransmission"


@pytest.mark.parametrize("two_pass", BOTH_PASSES)
def test_no_timestamps_cut_mid_episode(tmp_path, two_pass):
    """The capture ends between the held heartbeat and its filler: no release, no verdict."""
    f = truth("heartbeat-loss-nots")["faults"][0]
    cut = keep_frames(sample("heartbeat-loss-nots-server.pcapng"), tmp_path / "mid.pcapng", 1,
                      f["arrived_at_server"][0]["frame"] - 1)
    r = rows(cut, two_pass)
    assert releases(r) == {} and retransmissions(r) == {}


@pytest.mark.parametrize("two_pass", BOTH_PASSES)
def test_timing_decides_when_ip_ids_do_not(tmp_path, two_pass):
    """IP IDs all 0 (rewritten): with the handshake the RTT is known and the filler came one RTT
    after the hole (a retransmission). Without it the RTT is only known from the client's ACKs of
    the server's replies (delayed a little), the filler came within that: nothing tells, and the
    plugin says so."""
    f = truth("heartbeat-loss-nots")["faults"][0]
    zeroed = zero_ip_ids(sample("heartbeat-loss-nots-server.pcapng"), tmp_path / "zero.pcapng")
    r = rows(zeroed, two_pass)
    assert r[f["arrived_at_server"][0]["frame"]]["tcpstall.hol.fill"] == "retransmission"
    r = rows(keep_frames(zeroed, tmp_path / "zero-nohs.pcapng", 11), two_pass)
    [(fr, rel)] = releases(r).items()
    assert fr == f["arrived_at_server"][0]["frame"] - 10
    assert rel["tcpstall.hol.fill"] == "cannot_tell"
    assert rel["tcpstall.retrans.trigger"] is None              # not called a retransmission either
    assert "filled by: cannot tell (no timestamps, IP IDs inconclusive, " in hol_text(rel)


# --- reorder-nots: late originals and network duplicates without timestamps -----------------------

@pytest.mark.parametrize("two_pass", BOTH_PASSES)
def test_late_originals_without_timestamps(two_pass):
    t = truth("reorder-nots")["reordering"]
    r = rows(sample("reorder-nots-server.pcapng"), two_pass)
    assert sorted(releases(r)) == sorted(x["server_frame"] for x in t["late"])
    for x in t["late"]:
        rel = r[x["server_frame"]]
        assert rel["tcpstall.hol.fill"] == "late_original", hol_text(rel)
        assert rel["tcpstall.retrans.trigger"] is None
        assert int(rel["tcpstall.hol.first_held_frame"]) == x["first_above_server_frame"]
        assert abs(float(rel["tcpstall.hol.max_hold_ms"]) - x["hold_ms"]) <= 0.5
        assert rel["tcpstall.hol.severity"] == "note"            # 3.8 / 6.5 ms < hol_warn_ms
        assert "late original (reordering, not a retransmission; by IP ID order)" in hol_text(rel)
    # the forwarder's duplicates are copies, not retransmissions
    for x in t["duplicates"]:
        orig, copy = x["server_frames"]
        assert flag(r[copy]["tcpstall.capture.duplicate"]) and r[copy]["tcpstall.retrans.trigger"] is None
        assert r.get(orig, {}).get("tcpstall.capture.duplicate") is None


@pytest.mark.parametrize("two_pass", BOTH_PASSES)
def test_late_originals_by_timing_and_cannot_tell(tmp_path, two_pass):
    """IP IDs all 0 (rewritten): the holes filled 4-7 ms after they opened, sooner than one RTT
    (20 ms) and than a retransmission timer: late originals by timing; without the handshake the
    RTT is unknown: cannot tell."""
    t = truth("reorder-nots")["reordering"]
    zeroed = zero_ip_ids(sample("reorder-nots-server.pcapng"), tmp_path / "zero.pcapng")
    r = rows(zeroed, two_pass)
    for x in t["late"]:
        assert r[x["server_frame"]]["tcpstall.hol.fill"] == "late_original"
        assert "by timing" in hol_text(r[x["server_frame"]])
    r = rows(keep_frames(zeroed, tmp_path / "zero-nohs.pcapng", 11), two_pass)
    assert sorted(releases(r)) == sorted(x["server_frame"] - 10 for x in t["late"])
    assert {x["tcpstall.hol.fill"] for x in releases(r).values()} == {"cannot_tell"}


@pytest.mark.parametrize("two_pass", BOTH_PASSES)
def test_late_originals_sender_view(two_pass):
    """At the client the spurious fast retransmissions are D-SACKed: the late original filled it."""
    t = truth("reorder-nots")["reordering"]
    r = rows(sample("reorder-nots-client.pcapng"), two_pass)
    rels = releases(r)
    assert len(rels) == len(t["late"])
    for rel in rels.values():
        assert rel["tcpstall.hol.view"] == "sender"
        if two_pass:                                     # the D-SACK comes after the release
            assert rel["tcpstall.hol.fill"] == "late_original"
            assert "was spurious: D-SACK frame" in hol_text(rel)
    assert sorted(int(x["tcpstall.retrans.dupacks"]) >= 3 for x in retransmissions(r).values()) == [True, True]


@pytest.mark.parametrize("two_pass", BOTH_PASSES)
def test_late_originals_with_timestamps_keep_their_verdict(two_pass):
    """tests/data/reorder-dup (TSvals): the late originals stay late originals."""
    r = rows(DATA / "reorder-dup-receiver.pcapng", two_pass)
    rels = releases(r)
    assert len(rels) == 2 and {x["tcpstall.hol.fill"] for x in rels.values()} == {"late_original"}


# --- bulk-loss-head: 1 % random loss, a bulk flow, timestamps, some reordering ---------------------

def _filler_truth():
    """{IP ID: True when that client transmission was the data's first one} from the client capture."""
    first, out = {}, {}
    for s in ts.iter_segments(str(DATA / "bulk-loss-head-client.pcapng")):
        if s.length > 0 and s.dport == 9000:
            out[s.ip_id] = first.setdefault((s.seq_raw, s.length), s.frame) == s.frame
    return out


@pytest.mark.parametrize("two_pass", BOTH_PASSES)
def test_bulk_receiver_fillers_match_the_sender_capture(two_pass):
    """Was: 5 retransmissions called late originals (Wireshark's "out-of-order" on a same-tick
    TSval, or a TSval older than a reordered later segment's)."""
    is_original = _filler_truth()
    r = rows(DATA / "bulk-loss-head-server.pcapng", two_pass)
    checked = {"retransmission": 0, "late_original": 0}
    for f, rel in releases(r).items():
        if rel["tcpstall.hol.view"] != "receiver":
            continue
        ipid = int(rel["ip.id"], 16)
        if ipid not in is_original:          # sent after the client capture's cut
            continue
        want = "late_original" if is_original[ipid] else "retransmission"
        assert rel["tcpstall.hol.fill"] == want, (f, hol_text(rel))
        checked[want] += 1
    assert checked["retransmission"] >= 30 and checked["late_original"] >= 1, checked
    # and no first transmission is called a retransmission (4 were, behind a reordered segment)
    for f, x in retransmissions(r).items():
        ipid = int(x["ip.id"], 16)
        assert not is_original.get(ipid, False), (f, x["tcpstall.retrans.trigger"])


@pytest.mark.parametrize("two_pass", BOTH_PASSES)
def test_bulk_sender_view_names_the_retransmission(two_pass):
    """Was: 11 releases "filled by ACK without a retransmission (reordering)" although the capture
    holds the fast retransmission (sent in the same TSval tick as its original, once taken for a
    copy; or not the last retransmission before the ACK)."""
    r = rows(DATA / "bulk-loss-head-client.pcapng", two_pass)
    rels = [x for x in releases(r).values() if x["tcpstall.hol.view"] == "sender"]
    assert len(rels) >= 20
    for rel in rels:
        assert rel["tcpstall.hol.fill"] in ("retransmission", "late_original"), hol_text(rel)
        if rel["tcpstall.hol.fill"] == "retransmission":
            filler = r[int(rel["tcpstall.hol.filled_by"])]
            assert filler["tcpstall.retrans.trigger"] is not None
        elif two_pass:          # the lab's router reordered a few: the D-SACK says so
            assert "was spurious: D-SACK frame" in hol_text(rel)
    assert sum(x["tcpstall.hol.fill"] == "retransmission" for x in rels) >= len(rels) - 2


# --- the filler is not in the capture -------------------------------------------------------------

@pytest.mark.parametrize("two_pass", BOTH_PASSES)
@pytest.mark.parametrize("scenario", ("heartbeat-loss", "heartbeat-loss-nots"))
def test_filler_not_captured(tmp_path, scenario, two_pass):
    """The receiver-side capture lost the filler (editcap): the receiver's ACK covers the hole
    (Wireshark: "ACKed segment that wasn't captured"). Was "filled by ACK without a retransmission
    (reordering)"."""
    f = truth(scenario)["faults"][0]
    filler = f["arrived_at_server"][0]["frame"]
    cap = drop_frames(sample(f"{scenario}-server.pcapng"), tmp_path / "nofill.pcapng", filler)
    r = rows(cap, two_pass)
    [(fr, rel)] = releases(r).items()
    assert fr == filler                         # the receiver's ACK, now at the filler's number
    assert rel["tcpstall.hol.fill"] == "not_captured"
    assert int(rel["tcpstall.hol.released_bytes"]) == 21
    assert "a segment not in the capture" in hol_text(rel)


@pytest.mark.parametrize("two_pass", BOTH_PASSES)
def test_sender_capture_missed_the_retransmission(tmp_path, two_pass):
    """The sender-side capture lost the retransmission: the ACK came one RTT after the SACK, so a
    late original and an unrecorded retransmission both fit: cannot tell."""
    rtx = truth("heartbeat-loss")["faults"][0]["retransmissions"][0]["frame"]
    r = rows(drop_frames(sample("heartbeat-loss-client.pcapng"), tmp_path / "norx.pcapng", rtx), two_pass)
    [rel] = releases(r).values()
    assert rel["tcpstall.hol.fill"] == "cannot_tell"
    assert "a late original or a retransmission the capture missed" in hol_text(rel)
