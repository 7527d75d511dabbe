#!/usr/bin/env python3
"""Heartbeat pair that behaves like incident A and logs like a Go service (log.Lmicroseconds|Lshortfile).

sender:   every --interval-ms writes one 21-byte heartbeat b"HB%08d|heartbeat\\n" on one long-lived TCP
          connection, waits --timeout-ms for the 21-byte reply; logs send / ok / timeout.
receiver: reads exactly 21 bytes per heartbeat, logs Read Start / Read End / "... cost Nms", replies.

Log lines: `2019/08/14 15:18:45.703679 node.go:233: ...` (local time from $TZ, no zone).
"""
import argparse
import os
import socket
import sys
import threading
import time

HB_LEN = 21


def hb_payload(seq: int, kind: bytes = b"HB") -> bytes:
    p = kind + b"%08d|heartbeat\n" % seq
    assert len(p) == HB_LEN
    return p


class GoLog:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1)
        self.lock = threading.Lock()

    def __call__(self, where: str, msg: str, t: float | None = None):
        t = time.time() if t is None else t
        lt = time.localtime(t)
        us = int((t - int(t)) * 1e6)
        with self.lock:
            self.f.write(time.strftime("%Y/%m/%d %H:%M:%S", lt) + f".{us:06d} {where}: {msg}\n")


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return buf
        buf += chunk
    return buf


def receiver(args):
    log = GoLog(args.log)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((args.bind, args.port))
    ls.listen(4)
    log("server.go:41", f"listening on {args.bind}:{args.port}")
    conn, peer = ls.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    log("server.go:47", f"accepted heartbeat connection from {peer[0]}:{peer[1]}")
    while True:
        t0 = time.time()
        log("conn.go:88", "Read Start", t0)
        data = recv_exact(conn, HB_LEN)
        t1 = time.time()
        if len(data) < HB_LEN:
            log("conn.go:92", "Read End: EOF", t1)
            break
        seq = int(data[2:10])
        log("conn.go:95", f"Read End n={len(data)} seq={seq}", t1)
        log("conn.go:96", f"heartbeat seq={seq} read cost {round((t1 - t0) * 1000)}ms", t1)
        conn.sendall(hb_payload(seq, b"HA"))
    conn.close()


def sender(args):
    log = GoLog(args.log)
    s = socket.create_connection((args.host, args.port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(None)
    log("node.go:118", f"connected to {args.host}:{args.port} local {s.getsockname()[0]}:{s.getsockname()[1]}")
    pending = {}  # seq -> send time (until the reply arrives)
    timed_out = set()
    lock = threading.Lock()
    done = threading.Event()

    def reader():
        while not done.is_set():
            data = recv_exact(s, HB_LEN)
            t = time.time()
            if len(data) < HB_LEN:
                return
            seq = int(data[2:10])
            with lock:
                sent = pending.pop(seq, None)
                late = seq in timed_out
            if sent is None:
                continue
            if late:
                log("node.go:251", f"late heartbeat reply seq={seq} rtt={(t - sent) * 1000:.3f}ms", t)
            else:
                log("node.go:247", f"heartbeat ok seq={seq} rtt={(t - sent) * 1000:.3f}ms", t)

    def check_timeouts():
        now = time.time()
        with lock:
            expired = sorted(k for k, v in pending.items() if k not in timed_out and now - v >= timeout)
            timed_out.update(expired)
        for k in expired:
            if args.raft_log:       # like the incident's raft sender: the timeout value is not in the line
                log("raft.go:1021", f"AppendEntries timeout and retry seq={k}", now)
            else:
                log("node.go:239", f"heartbeat timeout seq={k} after {args.timeout_ms:g}ms", now)

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    interval = args.interval_ms / 1000.0
    timeout = args.timeout_ms / 1000.0
    start = time.monotonic()
    for seq in range(1, args.count + 1):
        due = start + (seq - 1) * interval
        # check timeouts while waiting for the next send
        while True:
            now = time.monotonic()
            check_timeouts()
            if now >= due:
                break
            time.sleep(min(0.002, due - now))
        payload = hb_payload(seq)
        t = time.time()
        with lock:
            pending[seq] = t
        s.sendall(payload)
        if args.raft_log:
            log("raft.go:1007", f"send AppendEntries to 92 seq={seq} len={len(payload)}", t)
        else:
            log("node.go:233", f"send heartbeat seq={seq} len={len(payload)}", t)
    end = time.monotonic() + max(0.5, 3 * timeout)
    while time.monotonic() < end:
        check_timeouts()
        time.sleep(0.002)
    done.set()
    s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rt", action="store_true", help="SCHED_FIFO: keep host-load jitter out of the 50 ms timeout")
    ap.add_argument("mode", choices=["sender", "receiver"])
    ap.add_argument("--host", default="198.18.2.2")
    ap.add_argument("--bind", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=7000)
    ap.add_argument("--count", type=int, default=60)
    ap.add_argument("--interval-ms", type=float, default=60)
    ap.add_argument("--timeout-ms", type=float, default=50)
    ap.add_argument("--log", required=True)
    ap.add_argument("--raft-log", action="store_true",
                    help="sender: log sends and timeouts as a raft leader does (send AppendEntries to 92 / "
                         "AppendEntries timeout and retry), without the timeout value")
    args = ap.parse_args()
    if args.rt:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(5))
        except (OSError, AttributeError) as e:
            print(f"hb.py: no SCHED_FIFO ({e})", file=sys.stderr)
    (sender if args.mode == "sender" else receiver)(args)


if __name__ == "__main__":
    sys.exit(main())
