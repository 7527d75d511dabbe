"""Benchmark the peak memory of `tcpstall analyze` against what a capture holds: packets or streams.

    python -m bench memory [--captures bulk-loss-server,many-conns-server] [--parts 4]

For each lab capture (`make bench-data`: `bulk-loss`, one long lossy transfer; `many-conns`, 3000
short connections, a third lossy, a third window-limited) and for its first 1/N, 2/N, ... N/N
packets (cut with editcap), one `tcpstall analyze --json` in a child interpreter: the peak RSS of
the Python process and of its tshark, per packet; then the plugin's own account of what it holds
at the end (`-z tcpstall,memory`, in the analyze run's tshark command: its Lua heap after a full
collection, per stream). Memory that grows with packets shows as a constant B/packet down the
cuts of one capture; memory per open stream as heap/stream on many-conns.

Target (issue 18.1): peak RSS of `tcpstall analyze` <= 300 B per packet on a >= 1 M-packet
capture, growing with the streams open at once, not with the packets. tshark's start-up (~160 MiB
here, a one-packet capture's peak) is printed apart and not counted per packet.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.analyze import cut, peak_rss  # noqa: E402
from bench.plugin_overhead import packet_count  # noqa: E402
from pytshark_ext.analyze import RECORDS_ARG, STAT_ARG  # noqa: E402
from pytshark_ext.tshark import BATCH_DECODE, BATCH_PREFS, build_command, find_tshark  # noqa: E402

DATA = ROOT / "bench" / "data"
TARGET_B_PER_PACKET = 300

def plugin_memory(tshark: str, capture: Path) -> dict:
    """`-z tcpstall,memory` of the analyze run's tshark command."""
    cmd = build_command(tshark, str(capture), prefs=BATCH_PREFS,
                        extra=["-q", "-z", RECORDS_ARG, "-z", STAT_ARG, "-z", "tcpstall,memory", *BATCH_DECODE])
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("TCPSTALL_MEMORY\t")), None)
    if line is None:
        raise SystemExit(f"bench memory: no TCPSTALL_MEMORY line from {' '.join(cmd[:4])} ...")
    return {k: int(v) for k, v in (kv.split("=") for kv in line.split("\t")[1:])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench memory", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--captures", default="bulk-loss-server,many-conns-server",
                    help="names in bench/data (without .pcapng), or paths")
    ap.add_argument("--parts", type=int, default=4, help="cuts per capture: the first 1/N, 2/N, ... of it")
    args = ap.parse_args(argv)
    tshark = find_tshark()
    paths = [Path(c) if c.endswith((".pcap", ".pcapng")) else DATA / f"{c}.pcapng" for c in args.captures.split(",")]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"bench memory: {', '.join(missing)} not found: run `make bench-data` first", file=sys.stderr)
        return 1
    verdicts = []
    with tempfile.TemporaryDirectory() as tmp:
        first = cut(paths[0], 1, Path(tmp))
        base_kb = peak_rss(first)[1]
        print(f"tshark start-up (a one-packet capture's analyze): {base_kb / 1024:.0f} MiB peak, not counted below")
        print(f"{'capture':<22} {'packets':>8} {'streams':>7} {'tshark MiB':>10} {'B/pkt':>6} {'python MiB':>10} "
              f"{'B/pkt':>6} {'Lua heap MB':>11} {'KB/stream':>9}")
        for path in paths:
            total = packet_count(tshark, path)
            for k in range(1, args.parts + 1):
                n = total if k == args.parts else total * k // args.parts
                part = path if n == total else cut(path, n, Path(tmp))
                (py_kb, tshark_kb), m = peak_rss(part), plugin_memory(tshark, part)
                grown = max(tshark_kb - base_kb, 0) * 1024
                print(f"{path.stem:<22} {n:8d} {m['streams']:7d} {tshark_kb / 1024:10.0f} {grown / n:6.0f} "
                      f"{py_kb / 1024:10.0f} {py_kb * 1024 / n:6.0f} {m['heap_kb'] / 1024:11.1f} "
                      f"{m['heap_kb'] / max(m['streams'], 1):9.1f}")
            verdicts.append((path.stem, total, (grown + py_kb * 1024) / total))
    for name, total, per_packet in verdicts:
        met = per_packet <= TARGET_B_PER_PACKET and total >= 1_000_000
        print(f"{name}: analyze keeps {per_packet:.0f} B/packet above tshark's start-up (tshark + Python) on "
              f"{total} packets (target <= {TARGET_B_PER_PACKET} on >= 1 M packets: {'met' if met else 'NOT met'})")
    return 0 if all(v <= TARGET_B_PER_PACKET and t >= 1_000_000 for _, t, v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
