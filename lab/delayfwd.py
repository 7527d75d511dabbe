#!/usr/bin/env python3
"""Userspace one-way delay "wire" between two interfaces (the kernel here has no netem).

Reads every frame arriving on interface A (or B) with an AF_PACKET raw socket, holds it in a
timer heap for --delay-ms, and sends it unchanged out of B (or A). Run it in a namespace whose
kernel does not forward between A and B (no bridge, no addresses), so this process is the only
path. Frames are never dropped on purpose; kernel socket drops are counted (PACKET_STATISTICS)
and written with the delay actually applied to --stats as JSON on SIGTERM.

Optional faults on the frames arriving on A (client side), counted over IPv4 TCP frames with payload
(1-based): --late-nth N,M holds those frames --late-ms longer (reordering: later frames overtake
them), --dup-nth N,M sends those frames twice, back to back (a network duplicate). What was done is
listed in the stats (seq, len, IP ID of each frame) for the truth file.
"""
import argparse
import heapq
import os
import json
import select
import signal
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_STATISTICS = 6


def open_if(name: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    s.bind((name, 0))
    s.setblocking(False)
    return s


def tcp_data(frame: bytes):
    """{seq, len, ip_id} of an Ethernet/IPv4/TCP frame with payload, else None."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
        return None
    ihl = (frame[14] & 15) * 4
    tcp = 14 + ihl
    if len(frame) < tcp + 20:
        return None
    total, ip_id = struct.unpack("!HH", frame[16:20])
    doff = (frame[tcp + 12] >> 4) * 4
    plen = total - ihl - doff
    if plen <= 0:
        return None
    return {"seq_raw": struct.unpack("!I", frame[tcp + 4:tcp + 8])[0], "len": plen, "ip_id": ip_id}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--delay-ms", type=float, required=True)
    ap.add_argument("--stats", required=True)
    ap.add_argument("--late-nth", default="", help="comma list: n-th data frames from A to hold longer")
    ap.add_argument("--late-ms", type=float, default=8.0, help="extra delay of the --late-nth frames")
    ap.add_argument("--dup-nth", default="", help="comma list: n-th data frames from A to send twice")
    args = ap.parse_args()
    delay = args.delay_ms / 1000.0
    late_nth = {int(x) for x in args.late_nth.split(",") if x}
    dup_nth = {int(x) for x in args.dup_nth.split(",") if x}
    data_n = 0
    done = {"late": [], "dup": []}
    try:  # a wire should not jitter with the host's load: run the forwarder as a real-time task
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        policy = "SCHED_FIFO 10"
    except (OSError, AttributeError):
        policy = "SCHED_OTHER"
    sa, sb = open_if(args.a), open_if(args.b)
    other = {sa: sb, sb: sa}
    name = {sa: f"{args.a}->{args.b}", sb: f"{args.b}->{args.a}"}
    heap: list = []
    n = 0
    stats = {d: {"frames": 0, "bytes": 0, "late_sum_us": 0.0, "late_max_us": 0.0} for d in name.values()}
    running = True

    def stop(*_):
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while running:
        timeout = None
        if heap:
            timeout = max(0.0, heap[0][0] - time.monotonic())
        try:
            ready, _, _ = select.select([sa, sb], [], [], 0.2 if timeout is None else min(timeout, 0.2))
        except InterruptedError:
            continue
        now = time.monotonic()
        for s in ready:
            while True:
                try:
                    frame, addr = s.recvfrom(65536)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue
                n += 1
                due = now + delay
                if s is sa and (late_nth or dup_nth):
                    info = tcp_data(frame)
                    if info is not None:
                        data_n += 1
                        if data_n in late_nth:
                            due += args.late_ms / 1000.0
                            done["late"].append(dict(info, nth=data_n))
                        if data_n in dup_nth:
                            heapq.heappush(heap, (due, n, s, frame))
                            n += 1
                            done["dup"].append(dict(info, nth=data_n))
                heapq.heappush(heap, (due, n, s, frame))
        now = time.monotonic()
        while heap and heap[0][0] <= now:
            due, _, s, frame = heapq.heappop(heap)
            try:
                other[s].send(frame)
            except OSError as e:
                print(f"send failed: {e}", file=sys.stderr)
                continue
            st = stats[name[s]]
            late = (now - due) * 1e6
            st["frames"] += 1
            st["bytes"] += len(frame)
            st["late_sum_us"] += late
            st["late_max_us"] = max(st["late_max_us"], late)
            now = time.monotonic()
    drops = {}
    for s in (sa, sb):
        raw = s.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        packets, dropped = struct.unpack("II", raw)
        drops[name[s].split("->")[0]] = {"received": packets, "kernel_drops": dropped}
    for st in stats.values():
        st["late_mean_us"] = round(st.pop("late_sum_us") / st["frames"], 1) if st["frames"] else 0.0
        st["late_max_us"] = round(st["late_max_us"], 1)
    with open(args.stats, "w") as f:
        json.dump({"delay_ms": args.delay_ms, "scheduling": policy, "directions": stats, "sockets": drops,
                   "left_in_queue": len(heap), **({"faults": done} if late_nth or dup_nth else {})}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
