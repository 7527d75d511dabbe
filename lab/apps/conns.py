#!/usr/bin/env python3
"""Many short RPC connections (stdlib only): the client of the `many-conns` lab scenario.

Opens `--connections` connections to the rpc.py servers given by `--ports` (in turn), `--parallel`
at a time; each sends one request of `--size` bytes in rpc.py's wire format
(b"REQ <id> <total_len>\\n" + padding), reads the one-line response and closes. Prints one JSON
object at the end: how many connections completed, failed, and the first error.
"""
import argparse
import json
import socket
import threading
import time

from rpc import recv_line       # (lab/apps: the script's own folder is on sys.path)


def one(host: str, port: int, n: int, size: int, timeout: float) -> None:
    head = f"REQ {n} {size}\n".encode()
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(head + b"x" * max(size - len(head), 0))
        buf = recv_line(s)
        if not buf.startswith(f"RSP {n} ok".encode()):
            raise ConnectionError(f"unexpected response {buf[:40]!r}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="198.18.2.2")
    ap.add_argument("--ports", default="9000", help="comma-separated server ports, used in turn")
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--parallel", type=int, default=20)
    ap.add_argument("--size", type=int, default=65536)
    ap.add_argument("--timeout-s", type=float, default=60.0)
    args = ap.parse_args()
    ports = [int(p) for p in args.ports.split(",")]
    lock = threading.Lock()
    state = {"next": 0, "done": 0, "failed": 0, "first_error": None}

    def worker() -> None:
        while True:
            with lock:
                n = state["next"]
                if n >= args.connections:
                    return
                state["next"] = n + 1
            try:
                one(args.host, ports[n % len(ports)], n, args.size, args.timeout_s)
                key = "done"
            except OSError as exc:
                key = "failed"
                with lock:
                    state["first_error"] = state["first_error"] or f"connection {n}: {exc}"
            with lock:
                state[key] += 1

    t0 = time.time()
    threads = [threading.Thread(target=worker) for _ in range(args.parallel)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    print(json.dumps({"event": "finished", "connections": args.connections, "done": state["done"],
                      "failed": state["failed"], "first_error": state["first_error"],
                      "seconds": round(time.time() - t0, 3)}), flush=True)


if __name__ == "__main__":
    main()
