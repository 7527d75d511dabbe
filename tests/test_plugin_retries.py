"""Retries approaching tcp_retries2 (incident C): golden `-T fields` runs of the real plugin over the
committed lab captures, one-pass and `-2 -Y`, numbers checked against the lab's truth files (the
client's logged ETIMEDOUT time, every retransmission time from the client capture, the sysctls).

Preferences are set to match the lab's sender: peer-vanishes runs the client with tcp_retries2=6,
peer-vanishes-usertimeout sets TCP_USER_TIMEOUT=3000 ms (tcp_retries2 15). The budget oracle is
lab/linux_tcp.py (tests/test_linux_tcp.py checks it against the plugin's copy). FIN / SYN / probe
episodes, non-Linux senders and the predictions of issue 16 are in tests/test_plugin_retries_kinds.py."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from lab.linux_tcp import tcp_model_timeout
from pytshark_ext import tshark as ts
from pytshark_ext.analyze import z_tsv_record
from pytshark_ext.paths import plugin_script

from conftest import inner_loop, run_tshark, sample, truth

FIELDS = (
    "frame.number", "frame.time_epoch", "tcp.flags.reset",
    "tcpstall.retrans.trigger", "tcpstall.retrans.why",
    "tcpstall.retries.count", "tcpstall.retries.rto_count", "tcpstall.retries.elapsed_s",
    "tcpstall.retries.abort_at_s", "tcpstall.retries.budget_s", "tcpstall.retries.first_frame",
    "tcpstall.retries.outcome", "tcpstall.retries.kind", "tcpstall.retries.linux_like",
    "tcpstall.retries.assumed",
    "tcpstall.retries.approaching", "tcpstall.retries.final", "tcpstall.retries.ended",
    "tcpstall.retries.control",
    "_ws.expert.message",
)


@pytest.fixture(autouse=True, scope="module")
def _home(module_home):
    yield


def run(capture, two_pass: bool, prefs=None, display_filter="tcpstall"):
    """{frame: {field: first value, or the list for _ws.expert.message}}"""
    out = {}
    for row in ts.iter_fields(str(capture), FIELDS, two_pass=two_pass, display_filter=display_filter,
                              prefs=prefs):
        rec = dict(zip(FIELDS, row))
        frame = int(rec["frame.number"][0])
        out[frame] = {k: (v if k == "_ws.expert.message" else (v[0] if v else None)) for k, v in rec.items()}
    return out


def retrans_rows(rows):
    return {f: r for f, r in rows.items() if r["tcpstall.retries.count"] is not None}


def msgs(r, needle):
    return [m for m in r["_ws.expert.message"] if needle in m]


def z_tsv(capture, prefs=None) -> dict:
    cmd = [shutil.which("tshark"), "-n", "-r", str(capture), "-X", f"lua_script:{plugin_script()}",
           *ts.pref_args(prefs), "-q", "-z", "tcpstall,tsv"]
    proc = run_tshark(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    records = [r for r in map(z_tsv_record, proc.stdout.splitlines()) if r is not None]
    streams = {int(kv["stream"]): kv for kind, kv in records if kind == "TCPSTALL"}
    end = next((kv for kind, kv in records if kind == "TCPSTALL_END"), None)
    assert end is not None and end["errors"] == "0", proc.stdout
    return streams


# --- the budget through the prefs (the formula itself: tests/test_linux_tcp.py) ----------------------

@pytest.mark.parametrize("retries2", [6, 8, 15])
def test_budget_through_the_pref(retries2):
    rows = run(sample("peer-vanishes-client.pcapng"), two_pass=False, display_filter="frame.number == 9",
               prefs={"tcp_retries2": retries2, "rto_min_ms": 200, "rto_max_ms": 120000})
    assert float(rows[9]["tcpstall.retries.budget_s"]) == pytest.approx(tcp_model_timeout(retries2), abs=1e-9)


@pytest.mark.parametrize("prefs,budget", [
    ({"tcp_retries2": 15, "rto_max_ms": 60000}, 511 * 0.2 + 7 * 60),    # thresh = ilog2(300) = 8
    # the kernel counts the budget with the constant TCP_RTO_MIN (200 ms) whatever the sender's rto_min
    ({"tcp_retries2": 15, "rto_min_ms": 1000}, 924.6),
    ({"tcp_retries2": 5, "rto_min_ms": 50}, 12.6),
    ({"tcp_retries2": 15, "user_timeout_ms": 3000}, 3.0),               # TCP_USER_TIMEOUT replaces T
    ({"tcp_retries2": 0}, 0.2),
])
def test_budget_other_prefs(prefs, budget):
    rows = run(sample("peer-vanishes-client.pcapng"), two_pass=False, display_filter="frame.number == 9",
               prefs=prefs)
    assert float(rows[9]["tcpstall.retries.budget_s"]) == pytest.approx(budget, abs=1e-9)


# --- peer-vanishes: the kernel aborts after tcp_retries2=6 -----------------------------------------

@pytest.mark.parametrize("two_pass", [False, True], ids=["one-pass", "two-pass"])
def test_peer_vanishes_numbers_and_abort(two_pass):
    t = truth("peer-vanishes")
    tr = t["retries"]
    retries2 = int(t["sysctls"]["client"]["net.ipv4.tcp_retries2"])
    assert retries2 == 6
    rows = run(sample("peer-vanishes-client.pcapng"), two_pass=two_pass,
               prefs={"tcp_retries2": retries2, "tcp_retries1": 3})
    rr = retrans_rows(rows)
    # every retransmission of the request, numbered, with its age since the first send
    assert sorted(rr) == [x["frame"] for x in tr["retransmissions"]]
    for x in tr["retransmissions"]:
        r = rr[x["frame"]]
        assert int(r["tcpstall.retries.count"]) == x["n"]
        assert float(r["tcpstall.retries.elapsed_s"]) == pytest.approx(x["since_first_send_s"], abs=2e-6)
        assert int(r["tcpstall.retries.first_frame"]) == tr["first_send_frame"]
        assert float(r["tcpstall.retries.budget_s"]) == pytest.approx(25.4)
        assert r["tcpstall.retries.abort_at_s"] is not None             # on every retransmission
    # tcp_retries2 + 1 retransmissions: one tail loss probe, then tcp_retries2 RTOs
    frames = [x["frame"] for x in tr["retransmissions"]]
    assert len(frames) == retries2 + 1 == tr["retransmission_count"]
    assert [rr[f]["tcpstall.retrans.trigger"] for f in frames] == ["tlp"] + ["rto"] * retries2
    assert [int(rr[f]["tcpstall.retries.rto_count"]) for f in frames] == list(range(0, retries2 + 1))
    # ... as the kernel counted them: one loss probe, tcp_retries2 RTO firings + the one that aborted
    kc = t["kernel_counters"]["client"]
    assert kc["TCPLossProbes"] == 1 and kc["TCPTimeouts"] == retries2 + 1 and kc["TCPAbortOnTimeout"] == 1
    assert kc["TcpRetransSegs"] == retries2 + 1
    # the first two intervals are equal (probe, then first RTO): the plugin says why
    assert "same interval" in rr[frames[1]]["tcpstall.retrans.why"]
    # predicted abort on the last retransmission: within 1 % of the client's logged ETIMEDOUT
    logged = t["app"]["error_time"] - tr["first_send"]
    assert logged == pytest.approx(tr["etimedout_since_first_send_s"], abs=1e-5)
    pred = float(rr[frames[-1]]["tcpstall.retries.abort_at_s"])
    assert abs(pred - logged) / logged < 0.01, (pred, logged)
    # the same from the log line itself (ms precision)
    logged_log = t["app"]["error_time_from_log"] - tr["first_send"]
    assert abs(pred - logged_log) / logged_log < 0.01
    # the prediction sharpens as the backoff is observed: every one within 5 %, from RTO #4 on
    # within 1 % (earlier ones rest on short intervals whose timer slack is relatively large)
    for i, f in enumerate(frames):
        p = float(rr[f]["tcpstall.retries.abort_at_s"])
        assert abs(p - logged) / logged < (0.01 if i >= 4 else 0.05), (f, p, logged)
    # experts: approaching from RTO #3 (tcp_retries1) on, final exactly on the last retransmission
    appr = [f for f in frames if rr[f]["tcpstall.retries.approaching"] is not None]
    assert appr == frames[3:]                       # retransmission #4 = RTO #3
    assert [f for f in frames if rr[f]["tcpstall.retries.final"] is not None] == [frames[-1]]
    m = msgs(rr[frames[4]], "retries approaching tcp_retries2")
    x5 = tr["retransmissions"][4]
    assert m and f"retransmission #5, {x5['since_first_send_s']:.1f} s without ACK" in m[0]
    # the settings it rests on: tcp_retries2 given, the rest assumed (and said so, as a field too)
    assert "(tcp_retries2=6: 25.4 s; assumed rto_max_ms=120000,user_timeout_ms=0)" in m[0]
    assert all(rr[f]["tcpstall.retries.assumed"] == "rto_max_ms=120000,user_timeout_ms=0" for f in frames[1:])
    assert rr[frames[0]]["tcpstall.retries.assumed"] == "rto_min_ms=200,rto_max_ms=120000,user_timeout_ms=0"
    assert all(rr[f]["tcpstall.retries.kind"] == "data" and rr[f]["tcpstall.retries.linux_like"] in ("1", "True")
               for f in frames)
    fm = msgs(rr[frames[-1]], "last retransmission before the predicted abort")
    assert fm and "ETIMEDOUT" in fm[0] and "(tcp_retries2=6: 25.4 s from RTO #1)" in fm[0]
    # the capture ends before the abort (the abort sends nothing): on revisits the last retransmission
    # says so; one-pass tshark printed it before the end was known
    outcomes = {f: r["tcpstall.retries.outcome"] for f, r in rows.items() if r["tcpstall.retries.outcome"]}
    assert outcomes == ({frames[-1]: "capture_ends"} if two_pass else {})


def test_peer_vanishes_z_columns():
    s = z_tsv(sample("peer-vanishes-client.pcapng"), prefs={"tcp_retries2": 6})[0]
    tr = truth("peer-vanishes")["retries"]
    assert int(s["retries_max"]) == 7 and int(s["retries_rto_max"]) == 6
    assert s["retries_outcome"] == "capture_ends" and s["retries_linux_like"] == "true"
    assert float(s["retries_stall_s"]) == pytest.approx(tr["retransmissions"][-1]["since_first_send_s"], abs=1e-3)
    assert abs(float(s["retries_abort_at_s"]) - tr["etimedout_since_first_send_s"]) / tr["etimedout_since_first_send_s"] < 0.01


def test_peer_vanishes_with_default_retries2_predicts_the_15_minutes():
    """Same capture read with the default tcp_retries2=15: no final error, the abort is ~925 s+, and
    every assumption is stated (field and text)."""
    rows = retrans_rows(run(sample("peer-vanishes-client.pcapng"), two_pass=False))
    last = rows[max(rows)]
    assert last["tcpstall.retries.final"] is None
    assert 924.6 <= float(last["tcpstall.retries.abort_at_s"]) < 960
    assert float(last["tcpstall.retries.budget_s"]) == pytest.approx(924.6)
    assert last["tcpstall.retries.assumed"] == "tcp_retries2=15,rto_max_ms=120000,user_timeout_ms=0"
    m = msgs(last, "retries approaching tcp_retries2")
    assert m and "(budget 924.6 s; assumed tcp_retries2=15,rto_max_ms=120000,user_timeout_ms=0)" in m[0]


# --- TCP_USER_TIMEOUT: which instant the budget counts from -------------------------------------

@pytest.mark.parametrize("two_pass", [False, True], ids=["one-pass", "two-pass"])
def test_usertimeout_abort_and_reference_instant(two_pass):
    t = truth("peer-vanishes-usertimeout")
    tr = t["retries"]
    ut = tr["tcp_user_timeout_ms"]
    assert ut == 3000
    rows = run(sample("peer-vanishes-usertimeout-client.pcapng"), two_pass=two_pass,
               prefs={"user_timeout_ms": ut})
    rr = retrans_rows(rows)
    frames = [x["frame"] for x in tr["retransmissions"]]
    assert sorted(rr) == frames
    logged = t["app"]["error_time"] - tr["first_send"]
    pred = float(rr[frames[-1]]["tcpstall.retries.abort_at_s"])
    assert abs(pred - logged) / logged < 0.01, (pred, logged)
    assert [f for f in frames if rr[f]["tcpstall.retries.final"] is not None] == [frames[-1]]
    assert float(rr[frames[-1]]["tcpstall.retries.budget_s"]) == pytest.approx(3.0)
    m = msgs(rr[frames[-1]], "last retransmission before the predicted abort")
    assert m and "TCP_USER_TIMEOUT=3000 ms" in m[0]
    # a user timeout replaces tcp_retries2 and rto_max: nothing the prediction rests on is assumed (the
    # field is there, empty: -T fields prints nothing for it, a display filter finds it)
    assert sorted(run(sample("peer-vanishes-usertimeout-client.pcapng"), two_pass=two_pass, prefs={"user_timeout_ms": ut},
                      display_filter='tcpstall.retries.assumed == ""')) == frames[1:]


def test_usertimeout_truth_picks_the_first_rto_retransmission():
    """The kernel's reference instant (tp->retrans_stamp), from the truth alone: ETIMEDOUT came
    user_timeout after the first RTO retransmission, not after the original send nor the probe."""
    tr = truth("peer-vanishes-usertimeout")["retries"]
    ut = tr["tcp_user_timeout_ms"] / 1000
    err = tr["etimedout_time"]
    candidates = {
        "original send": tr["first_send"],
        "first retransmission (tail loss probe)": tr["retransmissions"][0]["time"],
        "first RTO retransmission": tr["first_rto_retransmission"],
    }
    errors = {k: abs(v + ut - err) / (err - tr["first_send"]) for k, v in candidates.items()}
    assert errors["first RTO retransmission"] < 0.01
    assert errors["first retransmission (tail loss probe)"] > 0.05
    assert errors["original send"] > 0.10


# --- cable-back: recovered, no final ---------------------------------------------------------------

@pytest.mark.parametrize("two_pass", [False, True], ids=["one-pass", "two-pass"])
def test_cable_back_recovered(two_pass):
    t = truth("cable-back")
    tr = t["retries"]
    rows = run(sample("cable-back-client.pcapng"), two_pass=two_pass, prefs={"tcp_retries2": 15})
    rr = {f: r for f, r in retrans_rows(rows).items() if r["tcpstall.retries.outcome"] is None}
    assert [round(float(r["frame.time_epoch"]), 6) for _, r in sorted(rr.items())] == \
        [round(x["time"], 6) for x in tr["retransmissions"]]
    for r, x in zip((r for _, r in sorted(rr.items())), tr["retransmissions"]):
        assert int(r["tcpstall.retries.count"]) == x["n"]
        assert float(r["tcpstall.retries.elapsed_s"]) == pytest.approx(x["since_first_send_s"], abs=2e-6)
    assert not [f for f, r in rows.items() if r["tcpstall.retries.final"] is not None]
    assert [f for f, r in rows.items() if r["tcpstall.retries.approaching"] is not None]   # RTO >= 3
    ends = [(f, r) for f, r in rows.items() if r["tcpstall.retries.outcome"]]
    assert len(ends) == 1
    f, r = ends[0]
    assert r["tcpstall.retries.outcome"] == "recovered"
    assert int(r["tcpstall.retries.count"]) == len(tr["retransmissions"]) == 8
    # the stall: first send -> the peer's ACK (the server got the 8th retransmission at recovered_after_s)
    assert float(r["tcpstall.retries.elapsed_s"]) == pytest.approx(tr["recovered_after_s"], abs=0.002)
    assert float(r["frame.time_epoch"]) >= tr["delivered_to_server_at"]
    m = msgs(r, "retries episode ended: recovered")
    assert m and "ACK after 8 retransmissions (7 RTO)" in m[0]
    # the outcome is on the frame that ended the episode, not on the last retransmission
    assert r["tcpstall.retries.kind"] == "data" and int(r["tcpstall.retries.rto_count"]) == 7
    s = z_tsv(sample("cable-back-client.pcapng"))[0]
    assert s["retries_outcome"] == "recovered" and int(s["retries_max"]) == 8


# --- peer-restarts: RST from the restarted peer -----------------------------------------------------

@pytest.mark.parametrize("two_pass", [False, True], ids=["one-pass", "two-pass"])
def test_peer_restarts_reset(two_pass):
    t = truth("peer-restarts")
    tr = t["retries"]
    rst = tr["rst_seen_by_client"][0]
    rows = run(sample("peer-restarts-client.pcapng"), two_pass=two_pass)
    ends = [(f, r) for f, r in rows.items() if r["tcpstall.retries.outcome"]]
    assert [f for f, _ in ends] == [rst["frame"]]
    r = ends[0][1]
    assert r["tcpstall.retries.outcome"] == "reset"
    assert int(r["tcpstall.retries.count"]) == len(tr["retransmissions"])
    assert not [f for f, r in rows.items() if r["tcpstall.retries.final"] is not None]
    m = msgs(r, "RST from the peer")
    assert m and f"after {len(tr['retransmissions'])} retransmissions" in m[0] and "no tcp_retries2 abort" in m[0]
    assert "gives up" not in m[0]
    rtx = [r for f, r in rows.items() if f < rst["frame"] and r["tcpstall.retries.count"] is not None]
    assert len(rtx) == len(tr["retransmissions"])
    if two_pass:
        # on revisits the RST is known: no Linux abort is predicted for this episode
        assert all(r["tcpstall.retries.abort_at_s"] is None for r in rtx)
        texts = [m for r in rtx for m in msgs(r, "retries approaching tcp_retries2")]
        assert texts and all("a RST ended the connection (outcome reset)" in m and "gives up" not in m for m in texts)
    else:
        assert all(r["tcpstall.retries.abort_at_s"] is not None for r in rtx)
    z = z_tsv(sample("peer-restarts-client.pcapng"))[0]
    assert z["retries_outcome"] == "reset" and z["retries_abort_at_s"] == "-"


# --- no warning where there is no stall ------------------------------------------------------------

@pytest.mark.parametrize("capture", inner_loop([
    "heartbeat-loss-client.pcapng", "heartbeat-loss-server.pcapng",
    "clean-heartbeat-client.pcapng", "clean-rpc-client.pcapng", "clean-bulk-client.pcapng",
], inner=["heartbeat-loss-client.pcapng", "clean-bulk-client.pcapng"]))
def test_no_approaching_warning(capture):
    rows = run(sample(capture), two_pass=True,
               display_filter="tcpstall.retries.approaching || tcpstall.retries.final || tcpstall.retries.ended"
                              " || tcpstall.retries.control")
    assert rows == {}


def test_single_fast_retransmit_is_numbered_but_quiet():
    t = truth("heartbeat-loss")["faults"][0]
    rows = retrans_rows(run(sample("heartbeat-loss-client.pcapng"), two_pass=False))
    assert list(rows) == [t["retransmissions"][0]["frame"]]
    r = next(iter(rows.values()))
    assert int(r["tcpstall.retries.first_frame"]) == t["client_frame"]
    assert float(r["tcpstall.retries.elapsed_s"]) == pytest.approx(t["retransmissions"][0]["after_ms"] / 1000, abs=2e-6)
    assert int(r["tcpstall.retries.count"]) == 1 and int(r["tcpstall.retries.rto_count"]) == 0
    assert r["tcpstall.retrans.trigger"] in ("fast", "rack")
    assert r["tcpstall.retries.approaching"] is None and r["tcpstall.retries.final"] is None


def test_clean_captures_have_no_retries_fields():
    for capture in ("clean-rpc-client.pcapng", "clean-heartbeat-client.pcapng"):
        assert run(sample(capture), two_pass=False, display_filter="tcpstall.retries.count || tcpstall.retries.outcome") == {}


# --- tcpstall analyze: one `retries` finding per episode, with its outcome -------------------------

@pytest.mark.parametrize("scenario,prefs,outcome", [
    ("peer-vanishes", {"tcp_retries2": 6}, "capture_ends"),
    ("peer-vanishes-usertimeout", {"user_timeout_ms": 3000}, "capture_ends"),
    ("cable-back", {}, "recovered"),
    ("peer-restarts", {}, "reset"),
])
def test_analyze_retries_finding(scenario, prefs, outcome):
    from pytshark_ext.analyze import analyze_capture, to_json

    t = truth(scenario)
    tr = t["retries"]
    res = analyze_capture(str(sample(f"{scenario}-client.pcapng")), prefs=prefs)
    found = [f for f in to_json(res)["findings"] if f["kind"] == "retries"]
    assert len(found) == 1, found
    f = found[0]
    n = f["numbers"]
    assert n["outcome"] == outcome
    assert f["start"] == pytest.approx(tr["first_send"], abs=2e-6)            # the data's first send
    assert n["count"] == len(tr["retransmissions"])
    assert n["first_frame"] == tr.get("first_send_frame", n["first_frame"])
    last = tr["retransmissions"][-1]
    if outcome == "capture_ends":
        logged = t["app"]["error_time"] - tr["first_send"]
        assert abs(n["abort_at_s"] - logged) / logged < 0.01
        assert n["final_frame"] == n["end_frame"] == last["frame"]
        assert f["end"] == pytest.approx(last["time"], abs=2e-6)
        assert "last retransmission before the predicted abort" in f["summary"]
    else:
        assert n["final_frame"] is None
        assert f["end"] > last["time"] and n["end_frame"] not in (None, n["first_frame"])
        assert n["stall_s"] == pytest.approx(f["end"] - tr["first_send"], abs=2e-6)
        assert outcome in f["summary"]


def test_first_retransmission_relabelled_tlp_from_equal_intervals(tmp_path):
    """Without any earlier exchange (no SRTT) the core calls the probe an RTO; the second interval,
    equal to the first, shows it was the tail loss probe. The cut is made with editcap from the
    committed capture (the packets are real)."""
    t = truth("peer-vanishes")
    tr = t["retries"]
    cut = tmp_path / "pv-cut.pcapng"
    first = tr["first_send_frame"]
    subprocess.run([shutil.which("editcap"), "-r", str(sample("peer-vanishes-client.pcapng")), str(cut),
                    f"{first}-1000"], check=True, capture_output=True, timeout=60)
    one = retrans_rows(run(cut, two_pass=False, prefs={"tcp_retries2": 6}))
    two = retrans_rows(run(cut, two_pass=True, prefs={"tcp_retries2": 6}))
    assert sorted(one) == sorted(two) == list(range(2, 2 + len(tr["retransmissions"])))
    assert one[2]["tcpstall.retrans.trigger"] == "rto"           # one pass: printed before the evidence
    assert two[2]["tcpstall.retrans.trigger"] == "tlp"
    assert "same interval" in two[2]["tcpstall.retrans.why"]
    assert int(two[2]["tcpstall.retries.rto_count"]) == 0
    assert [int(two[f]["tcpstall.retries.rto_count"]) for f in sorted(two)] == list(range(0, len(two)))
    logged = t["app"]["error_time"] - tr["first_send"]
    for rows in (one, two):
        pred = float(rows[max(rows)]["tcpstall.retries.abort_at_s"])
        assert abs(pred - logged) / logged < 0.01
        assert rows[max(rows)]["tcpstall.retries.final"] is not None
