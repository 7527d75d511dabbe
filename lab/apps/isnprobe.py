#!/usr/bin/env python3
"""Plan a connection whose initial sequence number lies just below 2**32 (for the seq-wrap capture).

Linux picks the ISN of an outgoing connection as siphash(4-tuple, boot secret) + (realtime_ns >> 6)
(net/core/secure_seq.c, seq_scale), so for a fixed 4-tuple the ISN advances 1 per 64 ns and wraps every
~275 s. Run in the client namespace while nothing listens on the server port: for each candidate source
port, connect() once (the server answers RST, no state remains anywhere), read the SYN's ISN with an
AF_PACKET socket, derive the port's hash, and choose the port whose ISN will be `--bytes-before-wrap`
below 2**32 soonest after `--min-wait` seconds. Prints the plan as JSON.
"""
import argparse
import json
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
MOD = 1 << 32


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--first-sport", type=int, default=41000)
    ap.add_argument("--ports", type=int, default=128)
    ap.add_argument("--bytes-before-wrap", type=int, default=300_000)
    ap.add_argument("--min-wait", type=float, default=4.0)
    ap.add_argument("--max-wait", type=float, default=60.0)
    args = ap.parse_args()
    sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sniff.bind(("eth0", 0))
    sniff.settimeout(1.0)
    dst = socket.inet_aton(args.host)
    probes = []
    for sport in range(args.first_sport, args.first_sport + args.ports):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", sport))
        t_before = time.time_ns()
        try:
            s.connect((args.host, args.port))
            s.close()
            raise SystemExit(f"isnprobe: something listens on {args.host}:{args.port}; probe needs a closed port")
        except ConnectionRefusedError:
            pass
        t_after = time.time_ns()
        s.close()
        isn = None
        while isn is None:
            frame = sniff.recv(2048)
            if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[23] != 6 or frame[30:34] != dst:
                continue
            ihl = (frame[14] & 0x0F) * 4
            tcp = frame[14 + ihl:]
            sp, dp, seq = struct.unpack("!HHI", tcp[:8])
            flags = tcp[13]
            if sp == sport and dp == args.port and flags & 0x02 and not flags & 0x10:
                isn = seq
        t_mid = (t_before + t_after) // 2
        h = (isn - (t_mid >> 6)) % MOD
        probes.append({"sport": sport, "isn": isn, "t_ns": t_mid, "uncertainty_ns": t_after - t_before, "hash": h})
    now = time.time_ns()
    target = MOD - args.bytes_before_wrap
    best = None
    for p in probes:
        # smallest t >= now + min_wait with (h + t/64) % 2**32 == target
        t_min = now + int(args.min_wait * 1e9)
        cur = (p["hash"] + (t_min >> 6)) % MOD
        ticks = (target - cur) % MOD
        t_conn = t_min + ticks * 64
        if best is None or t_conn < best["connect_at_ns"]:
            best = {"sport": p["sport"], "connect_at_ns": t_conn, "predicted_isn": target, "probe": p}
    wait = (best["connect_at_ns"] - now) / 1e9
    if wait > args.max_wait:
        raise SystemExit(f"isnprobe: best port needs {wait:.0f} s > --max-wait")
    print(json.dumps({"plan": {"sport": best["sport"], "connect_at": best["connect_at_ns"] / 1e9,
                               "predicted_isn": best["predicted_isn"],
                               "bytes_before_wrap": args.bytes_before_wrap, "wait_s": round(wait, 3)},
                      "probe": best["probe"], "ports_probed": len(probes),
                      "max_probe_uncertainty_us": max(p["uncertainty_ns"] for p in probes) / 1000}))


if __name__ == "__main__":
    sys.exit(main())
