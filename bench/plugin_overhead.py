"""Plugin overhead: plain `tshark -r` vs a no-op Lua postdissector reading the same Field
extractors vs tshark with tcpstall, on the lab's bulk-loss capture (>= 200 k packets).

    python bench/plugin_overhead.py [--capture PATH] [--runs N] [--two-pass] [--instructions N]
    (or `make bench-data` first to create bench/data/bulk-loss-*.pcapng)

Each variant runs `--runs` times, interleaved (plain, noop, tcpstall, plain, ...), and the best
CPU time (user+sys of the tshark process) counts: on a shared machine the minimum is the most
reproducible figure; wall-clock times are printed too. Both ratios come from the same run.
Targets (issue 18.4): tcpstall <= 1.25 x the no-op in CPU time, <= 1.10 x in instructions.

The no-op (bench/plugin_overhead_noop.lua) calls every Field extractor tcpstall declares on every
TCP packet and reads the value of every occurrence: it is what getting tcpstall's data out of
Wireshark costs, so the ratio is what tcpstall's analysis adds to that.

`--instructions N` adds a deterministic measurement for machines too noisy for CPU times:
instructions per packet under valgrind (callgrind) on the capture's first N packets (with the
handshake: a cut from the middle has none, and there the analyzers do less: 1.03x against 1.06x
for the analyze run on 20 k packets, 2026-12-04), a one-packet run of each variant subtracted
(startup); needs valgrind, takes a few minutes.
Instruction counts do not see cache misses (the Lua collector walking a large heap): the CPU
ratio is the target, the instruction ratio explains it.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytshark_ext.paths import plugin_script  # noqa: E402
from pytshark_ext.tshark import find_tshark  # noqa: E402

NOOP = Path(__file__).resolve().parent / "plugin_overhead_noop.lua"
DEFAULT_CAPTURE = ROOT / "bench" / "data" / "bulk-loss-server.pcapng"
CPU_TARGET = 1.25            # issue 18.4 (was 1.15 for both until 2026-12-04)
INSTRUCTIONS_TARGET = 1.10


def timed(cmd):
    """(cpu seconds user+sys, wall seconds) of one run of cmd, output discarded."""
    before = os.times()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    after = os.times()
    if proc.returncode != 0 or "Lua: Error" in proc.stderr:
        raise SystemExit(f"plugin_overhead: {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return cpu, wall


def packet_count(tshark, capture) -> int:
    capinfos = shutil.which("capinfos")
    if capinfos:
        out = subprocess.run([capinfos, "-M", "-c", str(capture)], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if "Number of packets" in line:
                return int(line.split(":")[1].strip())
    return -1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--capture", default=str(DEFAULT_CAPTURE),
                    help="capture to read (default: the lab bulk-loss receiver capture, `make bench-data`)")
    ap.add_argument("--runs", type=int, default=3, help="interleaved runs per variant; the best CPU time counts")
    ap.add_argument("--two-pass", action="store_true", help="-2 -Y frame for the two Lua variants")
    ap.add_argument("--instructions", type=int, metavar="N", default=0,
                    help="also count instructions per packet (valgrind) on N packets of the capture")
    args = ap.parse_args(argv)
    capture = Path(args.capture)
    if not capture.is_file():
        print(f"plugin_overhead: {capture} not found: run `make bench-data` "
              "(lab/run.py bulk-loss --out bench/data) first", file=sys.stderr)
        return 1
    tshark = find_tshark()
    base = [tshark, "-n", "-r", str(capture), "-q"]
    lua_extra = ["-2", "-Y", "frame"] if args.two_pass else []
    variants = {
        "plain": base,
        "noop": base[:1] + ["-X", f"lua_script:{NOOP}"] + base[1:] + lua_extra,
        "tcpstall": base[:1] + ["-X", f"lua_script:{plugin_script()}"] + base[1:] + lua_extra,
        # attribution only: the core and the HOL analyzer, rwnd and retries switched off
        "core+hol": base[:1] + ["-X", f"lua_script:{plugin_script()}", "-o", "tcpstall.rwnd_enabled:FALSE",
                                "-o", "tcpstall.retries_enabled:FALSE"] + base[1:] + lua_extra,
    }
    n = packet_count(tshark, capture)
    print(f"capture: {capture} ({n} packets){'  [two-pass]' if args.two_pass else ''}")
    cpu = {k: [] for k in variants}
    wall = {k: [] for k in variants}
    for _ in range(args.runs):
        for name, cmd in variants.items():
            c, w = timed(cmd)
            cpu[name].append(c)
            wall[name].append(w)
    best = {k: min(v) for k, v in cpu.items()}
    print(f"{'variant':10} {'cpu s (best)':>13} {'cpu s (all runs)':>28} {'wall s (best)':>14}")
    for k in variants:
        runs = " ".join(f"{x:.2f}" for x in cpu[k])
        print(f"{k:10} {best[k]:13.2f} {runs:>28} {min(wall[k]):14.2f}")
    r_noop = best["tcpstall"] / best["noop"]
    r_plain = best["tcpstall"] / best["plain"]
    print(f"tcpstall / noop  = {r_noop:.2f}x   (target <= {CPU_TARGET:.2f}x: {'met' if r_noop <= CPU_TARGET else 'NOT met'})")
    print(f"tcpstall / plain = {r_plain:.2f}x   (plain tshark -q builds no protocol tree at all)")
    print(f"core+hol / noop  = {best['core+hol'] / best['noop']:.2f}x   (rwnd and retries analyzers off)")
    if n > 0:
        per_pkt = (best["tcpstall"] - best["noop"]) / n * 1e6
        print(f"tcpstall cost over the no-op: {per_pkt:.1f} us/packet")
    if args.instructions > 0:
        return instructions(tshark, capture, args.instructions, {k: variants[k] for k in ("noop", "tcpstall")})
    return 0


def instructions(tshark, capture: Path, count: int, variants) -> int:
    """Instructions per packet of each variant on the first `count` packets of the capture."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("plugin_overhead: --instructions needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 1
    editcap = shutil.which("editcap") or "editcap"
    with tempfile.TemporaryDirectory() as tmp:
        part = Path(tmp) / "slice.pcapng"
        subprocess.run([editcap, "-r", str(capture), str(part), f"1-{count}"], check=True)
        got = {}
        for name, cmd in variants.items():
            cmd = [c if c != str(capture) else str(part) for c in cmd]
            full = callgrind(valgrind, cmd)
            start = callgrind(valgrind, cmd + ["-c", "1"])
            got[name] = (full - start) / count
        print(f"instructions per packet (valgrind, packets 1-{count}, startup subtracted):")
        for name, v in got.items():
            print(f"  {name:10} {v / 1000:8.1f} k")
        r = got["tcpstall"] / got["noop"]
        print(f"tcpstall / noop  = {r:.3f}x in instructions (target <= {INSTRUCTIONS_TARGET:.2f}x: "
              f"{'met' if r <= INSTRUCTIONS_TARGET else 'NOT met'})")
    return 0


def callgrind(valgrind: str, cmd) -> int:
    """Instructions executed by cmd under callgrind."""
    proc = subprocess.run([valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null"] + list(cmd),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    m = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or m is None:
        raise SystemExit(f"plugin_overhead: valgrind {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return int(m.group(1))


if __name__ == "__main__":
    sys.exit(main())
