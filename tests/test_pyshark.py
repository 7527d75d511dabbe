"""pyshark convenience path: `open_capture` loads the plugin so pkt.tcpstall.* works."""
from __future__ import annotations

import pytest

import pytshark_ext

from conftest import sample, truth

# these tests only read captures: a HOME of their own, shared (conftest.module_home)
pytestmark = pytest.mark.usefixtures("module_home")


def test_open_capture_exposes_tcpstall_fields():
    fault = truth("heartbeat-loss")["faults"][0]
    held = {h["frame"]: h["hold_ms"] for h in fault["held_at_server"]}
    release_frame = fault["arrived_at_server"][0]["frame"]
    cap = pytshark_ext.open_capture(sample("heartbeat-loss-server.pcapng"),
                                    display_filter="tcpstall.hol.released or tcpstall.hol.blocked")
    try:
        pkts = {int(p.number): p.tcpstall for p in cap}
    finally:
        cap.close()
    assert set(pkts) == set(held) | {release_frame}
    for frame, hold_ms in held.items():          # two-pass: held frames know their hold
        assert float(pkts[frame].get_field_value("hol_hold_ms")) == pytest.approx(hold_ms, abs=1.0)
        assert int(pkts[frame].get_field_value("hol_release_frame")) == release_frame
    assert int(pkts[release_frame].get_field_value("hol_released_bytes")) == 21 * len(held)
