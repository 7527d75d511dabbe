"""Linux TCP facts the lab and the tests' oracle need, written once (stdlib only).

The plugin has its own copy in plugins/tcpstall/retries.lua (`M.model_timeout`);
tests/test_linux_tcp.py checks the two agree through the plugin's `tcpstall.retries.budget_s`.
"""
from __future__ import annotations

# include/net/tcp.h (HZ = 1000: one jiffy is one millisecond)
TCP_RTO_MIN_MS = 200          # the constant tcp_model_timeout() uses for an established connection
TCP_RTO_MAX_MS = 120_000      # default of net.ipv4.tcp_rto_max_ms / TCP_RTO_MAX_MS (kernel >= 6.15)
TCP_TIMEOUT_INIT_MS = 1_000   # initial RTO of a SYN (tcp_timeout_init())


def _ilog2(n: int) -> int:
    return n.bit_length() - 1 if n > 0 else 0


def tcp_model_timeout(boundary: int, rto_base_ms: int = TCP_RTO_MIN_MS, rto_max_ms: int = TCP_RTO_MAX_MS) -> float:
    """tcp_model_timeout() of net/ipv4/tcp_timer.c, in seconds: the time `boundary` (tcp_retries2,
    tcp_retries1, orphan retries) backed-off retransmissions take from `rto_base_ms`, the RTO
    doubling up to `rto_max_ms` and then constant. The kernel compares it with the time since the
    first RTO retransmission (tp->retrans_stamp) when the retransmission timer fires.

    For an established connection rto_base is the constant TCP_RTO_MIN (200 ms) whatever the
    route's `rto_min` or net.ipv4.tcp_rto_min_us say; rto_max is the socket's tcp_rto_max()."""
    rto_base_ms = max(1, int(rto_base_ms))
    rto_max_ms = max(rto_base_ms, int(rto_max_ms))
    boundary = max(0, int(boundary))
    thresh = _ilog2(rto_max_ms // rto_base_ms)
    if boundary <= thresh:
        ms = ((2 << boundary) - 1) * rto_base_ms
    else:
        ms = ((2 << thresh) - 1) * rto_base_ms + (boundary - thresh) * rto_max_ms
    return ms / 1000.0
