"""Benchmark `tcpstall analyze --json` of one capture against the no-op postdissector.

    python -m bench analyze [--capture PATH] [--runs N] [--sizes 20000,100000,0]

The baseline is what getting tcpstall's data out of Wireshark costs at the least: `tshark -q` with
bench/plugin_overhead_noop.lua, a postdissector that reads every Field extractor tcpstall declares
on every TCP packet and does nothing with them. Against it, the whole default command: the CLI,
tshark with the plugin, the records, the findings and the JSON. Both run alternately, `--runs`
times per size, in the same run of this benchmark; the best CPU time (user+sys of the process and
its children) counts, wall times are printed too. Sizes are the first N packets of the capture
(cut with editcap; 0 = all of it), so the per-packet cost shows whether anything grows with the
capture. Then one in-process run of the full capture prints the peak memory (RSS) per packet of
the Python side and of its tshark.

Target (issue 19): analyze <= 1.4x the no-op on the full capture, in CPU. The verdict takes the
median of the per-round ratios (each round runs both, one after the other: a drift of the shared
machine's speed moves both); the ratio of the best times is printed beside it.
The data is the lab's bulk-loss pair: `make bench-data` (python3 lab/run.py bulk-loss --out bench/data).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.plugin_overhead import DEFAULT_CAPTURE, NOOP, packet_count, timed  # noqa: E402
from pytshark_ext.tshark import find_tshark  # noqa: E402

TARGET = 1.4
PY = sys.executable

# run in a child interpreter: its own peak RSS and its tshark's (the only child it waits for)
_PEAK = """
import json, resource, sys
from pytshark_ext.analyze import analyze_capture, to_json
json.dumps(to_json(analyze_capture(sys.argv[1])))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_rss(capture: Path) -> Tuple[int, int]:
    """(Python, tshark) peak RSS in KB of analyzing `capture` as `tcpstall analyze --json` does, in a
    fresh interpreter (bench/memory.py too)."""
    proc = subprocess.run([PY, "-c", _PEAK, str(capture)], capture_output=True, text=True, cwd=str(ROOT))
    if proc.returncode != 0:
        raise SystemExit(f"bench: the peak-memory run on {capture} failed:\n{proc.stderr[-2000:]}")
    py_kb, tshark_kb = (int(x) for x in proc.stdout.split()[-2:])
    return py_kb, tshark_kb


def cut(capture: Path, n: int, folder: Path) -> Path:
    out = folder / f"first-{n}.pcapng"
    subprocess.run(["editcap", "-r", str(capture), str(out), f"1-{n}"], check=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--capture", default=str(DEFAULT_CAPTURE), help="default: the lab bulk-loss receiver capture")
    ap.add_argument("--runs", type=int, default=3,
                    help="alternated rounds per size (each runs both); the median ratio of the rounds decides")
    ap.add_argument("--sizes", default="20000,100000,0", help="first-N-packet cuts to time (0: the whole capture)")
    args = ap.parse_args(argv)
    capture = Path(args.capture)
    if not capture.is_file():
        print(f"bench analyze: {capture} not found: run `make bench-data` first", file=sys.stderr)
        return 1
    tshark = find_tshark()
    total = packet_count(tshark, capture)
    sizes = [total if s in (0, total) or s > total else s for s in (int(x) for x in args.sizes.split(","))]
    print(f"capture: {capture} ({total} packets); best CPU of {args.runs} alternated runs, and the median of "
          "the rounds' ratios")
    print(f"{'packets':>8} {'noop cpu s':>11} {'analyze cpu s':>14} {'ratio':>6} {'median':>7} {'noop us/pkt':>12} "
          f"{'analyze us/pkt':>15} {'noop wall':>10} {'analyze wall':>13}")
    ratio = None
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            part = capture if n == total else cut(capture, n, Path(tmp))
            noop = [tshark, "-n", "-r", str(part), "-X", f"lua_script:{NOOP}", "-q"]
            analyze = [PY, "-m", "pytshark_ext.cli", "analyze", "--json", str(part)]
            cpu = {"noop": [], "analyze": []}
            wall = {"noop": [], "analyze": []}
            for _ in range(args.runs):
                for name, cmd in (("noop", noop), ("analyze", analyze)):
                    c, w = timed(cmd)
                    cpu[name].append(c)
                    wall[name].append(w)
            b_noop, b_an = min(cpu["noop"]), min(cpu["analyze"])
            ratio = statistics.median(a / b for a, b in zip(cpu["analyze"], cpu["noop"]))
            print(f"{n:8d} {b_noop:11.2f} {b_an:14.2f} {b_an / b_noop:6.2f} {ratio:7.2f} {b_noop / n * 1e6:12.1f} "
                  f"{b_an / n * 1e6:15.1f} {min(wall['noop']):10.2f} {min(wall['analyze']):13.2f}")
    py_kb, tshark_kb = peak_rss(capture)
    print(f"peak RSS on {total} packets: python {py_kb / 1024:.0f} MB ({py_kb * 1024 / total:.0f} B/packet), "
          f"tshark {tshark_kb / 1024:.0f} MB ({tshark_kb * 1024 / total:.0f} B/packet)")
    met = ratio is not None and ratio <= TARGET
    print(f"analyze / noop = {ratio:.2f}x on the whole capture, median of {args.runs} rounds "
          f"(target <= {TARGET:.2f}x: {'met' if met else 'NOT met'})")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
