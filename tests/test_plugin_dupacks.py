"""Issue 14 item 1: duplicate ACKs by RFC 5681 (same ACK, no payload, no SYN/FIN, same window unless
it carries SACK blocks, data outstanding) and causality (an ACK seen before the segment it would
report could have reached the receiver reports nothing about it).

The shape: `slow-reader` (lab, no fault, no retransmission): the server's window closes, then opens
in steps; its window-update ACKs (same ACK number, new window) come while client data is in flight.
Counted as duplicate ACKs they made the sender view report "HOL-blocked delivery ... filled by ACK
without a retransmission (reordering)" three times per client capture (48 ms "holds")."""
from __future__ import annotations

import pytest

from plugin_rows import BOTH_PASSES, keep_frames, releases, retransmissions, rows, sample, truth

SLOW = ("slow-reader", "slow-reader-nots")


@pytest.fixture(autouse=True, scope="module")
def _home(module_home):
    yield


def _quiet(r: dict) -> None:
    """Nothing of HOL blocking, loss or thin streams on in-order traffic."""
    assert releases(r) == {}
    assert [f for f, x in r.items() if x["tcpstall.hol.hold_ms"] is not None] == []
    assert retransmissions(r) == {}
    assert [f for f, x in r.items() if x["tcpstall.thin_stream"] is not None] == []


@pytest.mark.parametrize("scenario", SLOW)
def test_the_shape_is_in_the_capture(scenario):
    """The truth: window updates with client data outstanding, no retransmission, no loss."""
    t = truth(scenario)
    assert len(t["app"]["window_updates_with_data_outstanding"]["client_capture"]) >= 3
    assert t["dropped_segments"] == []
    assert t["app"]["requests"] == 3


@pytest.mark.parametrize("two_pass", BOTH_PASSES)
@pytest.mark.parametrize("side", ("client", "server"))
@pytest.mark.parametrize("scenario", SLOW)
def test_window_updates_are_not_duplicate_acks(scenario, side, two_pass):
    r = rows(sample(f"{scenario}-{side}.pcapng"), two_pass)
    _quiet(r)
    if side == "client":
        # the window updates are in this capture and the plugin rendered its window facts on them
        wu = truth(scenario)["app"]["window_updates_with_data_outstanding"]["client_capture"]
        assert all(f in r for f in wu), (wu, sorted(r)[:20])


@pytest.mark.parametrize("two_pass", BOTH_PASSES)
@pytest.mark.parametrize("scenario", SLOW)
def test_without_handshake_and_cut_mid_episode(tmp_path, scenario, two_pass):
    """A long-lived connection captured late (no handshake, no window scale), and a capture that
    starts right after the first window update of an episode: still quiet."""
    src = sample(f"{scenario}-client.pcapng")
    first_update = truth(scenario)["app"]["window_updates_with_data_outstanding"]["client_capture"][0]
    for start in (11, first_update + 1):
        _quiet(rows(keep_frames(src, tmp_path / f"cut{start}.pcapng", start), two_pass))


@pytest.mark.parametrize("two_pass", BOTH_PASSES)
@pytest.mark.parametrize("side", ("client", "server"))
def test_real_duplicate_acks_still_count(side, two_pass):
    """Positive control: heartbeat-loss-nosack's three duplicate ACKs (no SACK, same window) before
    the RTO retransmission; the dupACK-based sender view still releases the three held heartbeats."""
    t = truth("heartbeat-loss-nosack")["faults"][0]
    r = rows(sample(f"heartbeat-loss-nosack-{side}.pcapng"), two_pass)
    [(f, x)] = retransmissions(r).items()
    assert x["tcpstall.retrans.trigger"] == "rto"
    assert int(x["tcpstall.retrans.dupacks"]) == len(t["held_at_server"]) == 3
    rel = releases(r)
    assert len(rel) == 1
    assert int(next(iter(rel.values()))["tcpstall.hol.released_bytes"]) == sum(h["len"] for h in t["held_at_server"])
