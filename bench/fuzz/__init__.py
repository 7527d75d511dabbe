"""Robustness fuzzing of the tcpstall plugin and CLI: `python -m bench.fuzz --cases 1000 --seed 1`.

corpus.py   the cases, derived from real captures (sample_captures/, labcaps.py) with editcap,
            mergecap, randpkt; logs re-encoded/damaged
labcaps.py  extra real captures from network namespaces (IPv6, TSO, SLL/SLL2, VXLAN, non-TCP, SYN-only)
targets.py  plugin (tshark -2 -Y _ws.lua.error), analyze, correlate, logs (--log), applog (library)
"""
from .runner import run_fuzz, print_report  # noqa: F401
