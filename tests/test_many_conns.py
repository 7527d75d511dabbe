"""Many connections at once (sample_captures/many-conns-small, -nots: 45 RPCs of 96 KB, each on its
own connection, 5 at a time, in turn to a lossy server port, a 16 KB receive buffer and a clean
one; truth files): every verdict stays on the connections that had the fault, at both capture
points, with and without TCP timestamps; the clean port's connections are the negative control."""
from __future__ import annotations

from collections import defaultdict

import pytest

from pytshark_ext.analyze import analyze_capture

from conftest import inner_loop, sample, truth

pytestmark = pytest.mark.usefixtures("module_home")

CLIENT = "198.18.1.2"


# the full suite only (plain `pytest` runs the server capture through the internal-error sweep of
# tests/test_plugin_core.py; the inner loop is near its minute)
@pytest.mark.parametrize("side", ["server", "client"])
@pytest.mark.parametrize("name", inner_loop(["many-conns-small", "many-conns-small-nots"], inner=()))
def test_each_verdict_stays_on_the_connections_with_the_fault(name, side):
    t = truth(name)
    ports = t["app"]["ports"]
    # the client ports of the connections that lost a segment between the capture points (the lab's
    # nft rule drops only client -> server packets to the lossy port)
    lost = {int(d["src"].rsplit(":", 1)[1]) for d in t["dropped_segments"] if d["src"].startswith(CLIENT + ":")}
    assert lost and {int(d["dst"].rsplit(":", 1)[1]) for d in t["dropped_segments"]} == {ports["lossy"]}
    result = analyze_capture(sample(f"{name}-{side}.pcapng"))
    # stream -> (client port, server port)
    conn = {s.stream: (s.sport, s.dport) if s.dport in ports.values() else (s.dport, s.sport) for s in result.streams}
    assert len(conn) == t["app"]["connections"]["done"] == 45
    where = defaultdict(set)
    for f in result.findings:
        where[f.kind].add(conn[f.stream])
    # HOL-blocked delivery on exactly the connections that lost a segment (each had data behind it)
    assert {client for client, _ in where.pop("hol_blocked")} == lost
    # receiver-window throttling on every connection to the 16 KB buffer, and on no other
    assert where.pop("rwnd_throttling") == {c for c in conn.values() if c[1] == ports["small_rcvbuf_16k"]}
    # nothing else anywhere: the clean port's 15 connections have no finding at all
    assert not where, dict(where)
