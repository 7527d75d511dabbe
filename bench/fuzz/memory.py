"""Memory with huge inputs: a 10 M-line application log (and, when present, a big capture pair).

    python -m bench.fuzz.memory [--lines 10000000] [--pair A.pcapng B.pcapng]

The log is the real heartbeat-loss receiver log with its lines placed in the middle of 10 M
synthetic lines of the same Go `log` format (zone-less local time, +08:00), spread over 24 h
around the capture: what a day-long production log next to a seconds-long capture looks like.
Measured in fresh child processes (peak RSS of the Python process itself, and of its tshark
children for context):

  * `tcpstall analyze CAPTURE --log BIG.log:+08:00`            (the CLI path: only events near
                                                               the capture are kept)
  * `applog.iter_log_events(BIG.log)` consumed and dropped       (the streaming reader alone)
  * with --pair: `tcpstall correlate A B` (plugin on) and `--no-plugin`

Prints one table; the log is written to bench/data/ (gitignored) and reused.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .corpus import ROOT, SAMPLES

DATA = ROOT / "bench" / "data"
CAPTURE = SAMPLES / "heartbeat-loss-server.pcapng"
REAL_LOG = SAMPLES / "heartbeat-loss-receiver.log"
TZ = dt.timezone(dt.timedelta(hours=8))

CHILD = r"""
import json, resource, sys, time
t0 = time.time()
mode = sys.argv[1]
if mode == "cli":
    from pytshark_ext.cli import main
    try:
        main(sys.argv[2:], standalone_mode=False)
        rc = 0
    except SystemExit as e:
        rc = e.code
elif mode == "iter":
    from pytshark_ext import applog
    n = 0
    for _ in applog.iter_log_events(sys.argv[2]):
        n += 1
    rc = 0
    print("events", n, file=sys.stderr)
ru_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
ru_kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print("MEMJSON " + json.dumps({"rc": rc, "seconds": round(time.time() - t0, 1), "self_rss": ru_self,
                               "children_rss": ru_kids}), file=sys.stderr)
"""


def make_big_log(path: Path, lines: int, center_epoch: float, span_s: float = 86400.0) -> Path:
    """`lines` Go-format lines over `span_s` around `center_epoch`, the real log's lines in place."""
    if path.exists() and path.stat().st_size > 0:
        return path
    real = REAL_LOG.read_text().splitlines()
    start = center_epoch - span_s / 2
    step = span_s / lines
    tmp = path.with_name(path.name + ".tmp")
    inserted = False
    with open(tmp, "w", buffering=1 << 20) as f:
        chunk = []
        for i in range(lines):
            t = start + i * step
            if not inserted and t >= center_epoch - 5:
                chunk.extend(real)
                inserted = True
            stamp = dt.datetime.fromtimestamp(t, TZ).strftime("%Y/%m/%d %H:%M:%S.%f")
            chunk.append(f"{stamp} worker.go:{100 + i % 50}: handled request id={i} bytes={i % 4096} "
                         f"took={(i % 97) / 10:.1f}ms")
            if len(chunk) >= 50_000:
                f.write("\n".join(chunk) + "\n")
                chunk = []
        if chunk:
            f.write("\n".join(chunk) + "\n")
    os.replace(tmp, path)
    return path


def _capture_start(capture: Path) -> float:
    out = subprocess.run(["capinfos", "-a", "-S", "-M", "-T", "-r", str(capture)], capture_output=True,
                         text=True).stdout.split()
    return float(out[-1])


def measure(args: list, env=None) -> dict:
    env = dict(env or os.environ)
    env["PYTHONPATH"] = str(ROOT)
    r = subprocess.run([sys.executable, "-c", CHILD] + args, capture_output=True, text=True, env=env,
                       cwd=str(DATA))
    m = next((json.loads(ln[8:]) for ln in r.stderr.splitlines() if ln.startswith("MEMJSON ")), None)
    if m is None:
        return {"rc": r.returncode, "error": (r.stderr.strip().splitlines() or ["?"])[-1]}
    m["stderr"] = " ".join(ln for ln in r.stderr.splitlines() if not ln.startswith("MEMJSON"))[:200]
    return m


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fuzz.memory", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=10_000_000)
    ap.add_argument("--pair", nargs=2, type=Path, default=None)
    ap.add_argument("--no-iter", action="store_true", help="skip the reader-alone measurement")
    ap.add_argument("--no-log", action="store_true", help="skip the log measurements (only --pair)")
    a = ap.parse_args(argv)
    DATA.mkdir(parents=True, exist_ok=True)
    rows = []
    mib = lambda b: f"{b / 2**20:.0f} MiB"      # noqa: E731
    if not a.no_log:
        t0 = time.time()
        log = make_big_log(DATA / f"fuzz-big-{a.lines}.log", a.lines, _capture_start(CAPTURE))
        made = time.time() - t0
        rows += [("log", f"{log.name}: {a.lines:,} lines, {log.stat().st_size / 2**20:.0f} MiB (made in {made:.0f} s)")]
        m = measure(["cli", "analyze", "--log", f"{log}:+08:00", "--json", str(CAPTURE)])
        rows.append(("analyze CAPTURE --log BIG", json.dumps(m) if "error" in m else
                     f"rc {m['rc']}, {m['seconds']} s, Python peak RSS {mib(m['self_rss'])}, "
                     f"tshark {mib(m['children_rss'])}"))
        m = measure(["iter", str(log)]) if not a.no_iter else {"error": "skipped (--no-iter)", "rc": None}
        rows.append(("applog.iter_log_events", json.dumps(m) if "error" in m else
                     f"{m['stderr']}, {m['seconds']} s, peak RSS {mib(m['self_rss'])}"))
    if a.pair:
        for extra in ([], ["--no-plugin"]):
            m = measure(["cli", "correlate", *extra, "--json", str(a.pair[0].resolve()), str(a.pair[1].resolve())])
            rows.append((f"correlate {' '.join(extra)} PAIR", json.dumps(m) if "error" in m else
                         f"rc {m['rc']}, {m['seconds']} s, Python peak RSS {mib(m['self_rss'])}, "
                         f"largest tshark {mib(m['children_rss'])}"))
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:{w}}  {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
