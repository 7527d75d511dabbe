"""Robustness fuzzing of the tcpstall plugin and CLI: `python -m bench.fuzz --cases 1000 --seed 1`.

corpus.py   the cases, derived from real captures (sample_captures/, lab/encaps.py) with editcap,
            mergecap, randpkt; logs re-encoded/damaged
targets.py  plugin (tshark -2 -Y _ws.lua.error), analyze, correlate, logs (--log), applog (library)
"""
from .runner import run_fuzz, print_report  # noqa: F401
