"""The incident lab itself (lab/).

Unit tests run anywhere. Tests marked `lab` build network namespaces and need root; they skip with the
reason when that is not possible. The `slow` ones take 10-40 s each.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "lab"

from lab import netlab  # noqa: E402
from lab import pcaptools as pt  # noqa: E402
from lab import run as labrun  # noqa: E402


def _lab_reason() -> str:
    if os.geteuid() != 0:
        return "lab needs root (network namespaces, nftables, dumpcap)"
    ok, why = netlab.lab_available()
    return "" if ok else why


LAB_SKIP = _lab_reason()
needs_lab = pytest.mark.skipif(bool(LAB_SKIP), reason=LAB_SKIP or "lab available")


# ---- units (no root) ---------------------------------------------------------------------------
@pytest.mark.parametrize("retries2,seconds", [(15, 924.6), (8, 102.2), (6, 25.4), (3, 3.0)])
def test_abort_budget_matches_design(retries2, seconds):
    assert labrun.tcp_model_timeout(retries2) == pytest.approx(seconds)


def test_go_log_parser(tmp_path):
    p = tmp_path / "x.log"
    p.write_text("2019/08/14 15:18:45.703679 node.go:233: send heartbeat seq=1 len=21\nnoise\n")
    (t, where, msg), = labrun.parse_go_log(p)
    # APP_TZ is UTC+8: 15:18:45.703679 local = 07:18:45.703679 UTC
    assert t == pytest.approx(1565767125.703679, abs=1e-6)
    assert where == "node.go:233" and msg == "send heartbeat seq=1 len=21"


def test_bracket_log_parser(tmp_path):
    p = tmp_path / "x.log"
    p.write_text("[2024-02-20T16:45:47.750+0800][worker-1] proc_time=3012ms request id=1\n")
    (t, thread, msg), = labrun.parse_bracket_log(p)
    assert t == pytest.approx(1708418747.750, abs=1e-6)
    assert thread == "worker-1" and msg.startswith("proc_time=3012ms")


def test_app_log_formats(tmp_path):
    """The apps' own loggers write the formats the parsers (and pytshark_ext.applog) read."""
    code = (f"import sys,time; sys.path.insert(0, {str(LAB / 'apps')!r}); import hb, rpc;"
            f"hb.GoLog({str(tmp_path / 'go.log')!r})('node.go:233', 'send heartbeat seq=7 len=21', 1565767125.703679);"
            f"rpc.BracketLog({str(tmp_path / 'br.log')!r})('proc_time=3012ms', 1708418747.750)")
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ, TZ="CST-8"))
    assert (tmp_path / "go.log").read_text() == "2019/08/14 15:18:45.703679 node.go:233: send heartbeat seq=7 len=21\n"
    assert (tmp_path / "br.log").read_text() == "[2024-02-20T16:45:47.750+0800][worker-1] proc_time=3012ms\n"


def test_heartbeat_payload_is_21_bytes():
    sys.path.insert(0, str(LAB / "apps"))
    import hb
    assert len(hb.hb_payload(30)) == 21 and hb.hb_payload(30).startswith(b"HB00000030")


def test_seq_helpers_wrap_safe():
    s = pt.Seg(1, 0.0, "a", "b", 1, 2, 2**32 - 10, 0, 100, 0x18, None, 0, None, None, 166)
    assert pt.covers(s, 2**32 - 10) and pt.covers(s, 5) and not pt.covers(s, 90)
    assert pt.seq_after(5, 2**32 - 10) and not pt.seq_after(2**32 - 10, 5)


def test_run_lists_scenarios():
    res = subprocess.run([sys.executable, str(LAB / "run.py"), "--list"], capture_output=True, text=True)
    assert res.returncode == 0
    for name in ("heartbeat-loss", "small-rcvbuf", "app-not-reading", "peer-vanishes", "cable-back", "peer-restarts", "clean-bulk",
                 "seq-wrap", "bulk-loss"):
        assert name in res.stdout


def test_run_refuses_without_root_with_one_line():
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("setpriv not available to drop root")
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable]
    else:
        cmd = [sys.executable]
    res = subprocess.run(cmd + [str(LAB / "run.py"), "heartbeat-loss", "--out", "/nonexistent"],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "root" in res.stderr


# ---- lab runs (root + netns) -------------------------------------------------------------------
@pytest.mark.lab
@needs_lab
def test_lab_heartbeat_loss_regenerates_same_truth(tmp_path):
    """~10 s: a fresh heartbeat-loss run drops exactly heartbeat #30 and agrees with the committed truth."""
    truth = labrun.HeartbeatLoss(tmp_path).run()
    f = truth["faults"][0]
    assert f["nft_counter"]["packets"] == 1 and f["len"] == 21 and f["heartbeat_seq"] == 30
    c = pt.segments(tmp_path / "heartbeat-loss-client.pcapng")
    s = pt.segments(tmp_path / "heartbeat-loss-server.pcapng")
    assert [x.seq for x in pt.missing(c, s, netlab.CLIENT_IP)] == [f["seq_raw"]]
    # heartbeat #30 timed out; any other timeout is host jitter, and then the truth file says so
    extra = [t["seq"] for t in truth["app"]["timeouts"] if t["seq"] != 30]
    assert 30 in [t["seq"] for t in truth["app"]["timeouts"]]
    assert not extra or any("not caused by a router drop" in n for n in truth["notes"])
    committed = json.loads((ROOT / "sample_captures" / "heartbeat-loss.truth.json").read_text())
    # same truth up to timing: same fault, same sizes, same app outcome
    assert committed["faults"][0]["heartbeat_seq"] == f["heartbeat_seq"]
    assert committed["faults"][0]["nft_counter"] == f["nft_counter"]
    assert [t["seq"] for t in committed["app"]["timeouts"]] == [30]
    # packet totals vary with delayed-ACK timing; the data segments do not: 60 heartbeats + 1 retransmission
    committed_c = pt.segments(ROOT / "sample_captures" / "heartbeat-loss-client.pcapng")
    for segs_ in (c, committed_c):
        assert len([x for x in segs_ if x.src == netlab.CLIENT_IP and x.len > 0]) == 61
    assert not [n for n in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
                if n.startswith(f"tsl-{os.getpid()}-")], "namespaces left behind"


@pytest.mark.lab
@pytest.mark.slow
@needs_lab
def test_lab_peer_vanishes_usertimeout(tmp_path):
    """~10 s: TCP_USER_TIMEOUT=3000 aborts 3 s after the first RTO retransmission."""
    truth = labrun.PeerVanishesUserTimeout(tmp_path).run()
    r = truth["retries"]
    assert truth["app"]["error"] == "ETIMEDOUT"
    assert r["etimedout_since_first_rto_retransmission_s"] == pytest.approx(3.0, abs=0.05)


@pytest.mark.lab
@pytest.mark.slow
@needs_lab
def test_lab_small_rcvbuf(tmp_path):
    """~15 s: the 2 079 208-byte message crawls through a 1024-byte SO_RCVBUF."""
    truth = labrun.SmallRcvbuf(tmp_path).run()
    assert truth["handshake"]["client_mss"] == 574 and truth["handshake"]["server_wscale"] == 0
    assert truth["app"]["transfer"]["payload_bytes"] == 2_079_208
    assert truth["app"]["transfer"]["server_advertised_window_bytes"]["max"] <= 1148
    assert (tmp_path / "small-rcvbuf-nohs-client.pcapng").exists()


@pytest.mark.lab
@pytest.mark.slow
@needs_lab
def test_lab_app_not_reading(tmp_path):
    """~6 s: the server app stops reading for 2 s; its window closes, then the request completes."""
    truth = labrun.AppNotReading(tmp_path).run()
    w = truth["app"]["window"]
    assert w["min_bytes"] == 0 and w["zero_window_count"] >= 1 and w["max_bytes"] > 65_000
    assert truth["app"]["status"] == "ok" and truth["app"]["proc_time_ms"] >= 2000
    assert len(truth["app"]["server_log_stall_lines"]) == 1
    assert not truth["dropped_segments"]


@pytest.mark.lab
@pytest.mark.slow
@needs_lab
def test_lab_control_retries(tmp_path):
    """~30 s: SYN retries until connect() fails, keepalive probes until the kernel resets, and
    TCP_USER_TIMEOUT=1500 (the long ones, tcp_retries2=8 and the orphaned FIN, take ~2 min each:
    `lab/run.py peer-vanishes-retries8 orphan-fin`)."""
    syn = labrun.SynBlackhole(tmp_path).run()
    c = syn["control"]
    assert syn["app"]["error"] == "ETIMEDOUT" and c["etimedout_since_first_send_s"] >= c["model_timeout_s"]
    ka = labrun.KeepalivePeerVanishes(tmp_path).run()
    assert ka["app"]["error"] == "ETIMEDOUT" and ka["control"]["probe_count"] == 3
    assert len(ka["control"]["rst_from_client"]) == 1
    ut = labrun.PeerVanishesUserTimeout1500(tmp_path).run()
    assert ut["retries"]["etimedout_since_first_rto_retransmission_s"] == pytest.approx(1.5, abs=0.06)


def test_stale_namespace_cleanup_ignores_others():
    """cleanup_stale only removes tsl-<dead pid>-* names (never other people's namespaces)."""
    import re
    assert re.match(rf"{netlab.NS_PREFIX}(\d+)-", "tsl-123-c")
    assert not re.match(rf"{netlab.NS_PREFIX}(\d+)-", "tsh-a")
