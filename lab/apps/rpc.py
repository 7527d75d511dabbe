#!/usr/bin/env python3
"""Tiny request/response RPC pair for incidents B and C (stdlib only).

Wire format: request  = b"REQ <id> <total_len>\\n" + padding, total_len bytes in all (header included)
             response = b"RSP <id> ok <bytes_received>\\n"
server: `--rcvbuf N` sets SO_RCVBUF on the listening socket *before listen()* (inherited by accepted
        sockets, incident B); `--linger0` makes every accepted socket SO_LINGER{1,0}, so killing the
        process discards the connection state at once (a host that restarts, incident C variant);
        `--stall-ms N` makes the handler stop reading for N ms after a request's first line (a busy
        application: its receive buffer fills and the advertised window shrinks to zero);
        `--read-chunk B --read-pause-ms M` makes it read the body B bytes at a time with an M ms pause
        after each read (a slow reader: the window opens in small steps, window-update ACKs);
        `--delayed-acks` sets TCP_QUICKACK to 0 after every read (Linux then leaves quick-ACK mode and
        delays its ACKs, one per two segments or 40 ms, as Windows receivers always do).
client: one long-lived connection; sends one request per line read on stdin ("send [bytes]"), or
        --auto N requests; blocks for the response without deadline (like a gRPC call without one)
        (`--write-chunk B --write-pause-ms M`: the request is written B bytes at a time with an M ms
        pause after each write, an application-limited sender that never fills the window)
        and logs like a Java-ish RPC client: `[2024-02-20T16:45:47.750+0800][worker-1] proc_time=...`.
        Each event is also printed to stdout as one JSON object with the full-precision epoch time.
        `--connect-timeout-s 0` leaves connect() to the kernel's SYN retries (tcp_syn_retries) and
        logs the error it ends with; `--keepalive IDLE:INTVL:CNT` sets SO_KEEPALIVE with
        TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT (seconds, seconds, probes); the stdin command `wait`
        blocks in recv() until the peer sends something or the connection fails (an idle
        connection kept by keepalive); `quit` logs the close() before it closes the socket.
"""
import argparse
import errno
import json
import os
import socket
import struct
import sys
import threading
import time


def iso(t: float) -> str:
    lt = time.localtime(t)
    ms = int((t - int(t)) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", lt) + f".{ms:03d}" + time.strftime("%z", lt)


class BracketLog:
    def __init__(self, path, thread="worker-1"):
        self.f = open(path, "a", buffering=1)
        self.thread = thread
        self.lock = threading.Lock()

    def __call__(self, msg, t=None, thread=None, **event):
        t = time.time() if t is None else t
        with self.lock:
            self.f.write(f"[{iso(t)}][{thread or self.thread}] {msg}\n")
            if event:
                print(json.dumps(dict(event, t=t)), flush=True)


def recv_line(sock):
    buf = b""
    while not buf.endswith(b"\n"):
        c = sock.recv(1)
        if not c:
            raise ConnectionError("EOF")
        buf += c
    return buf


def server(args):
    log = BracketLog(args.log, "acceptor")
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if args.rcvbuf:
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
    ls.bind((args.bind, args.port))
    ls.listen(16)
    log(f"listening on {args.bind}:{args.port} SO_RCVBUF={ls.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)} "
        f"(requested {args.rcvbuf or 'default'}) pid={os.getpid()}", event="listen", pid=os.getpid(),
        rcvbuf=ls.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    n = 0
    while True:
        conn, peer = ls.accept()
        n += 1
        if args.linger0:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if args.rcvbuf_after_accept:
            # the window scale was settled in the handshake from the default buffer: a buffer made
            # small now keeps that shift with a small window (coarse window units)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf_after_accept)
        threading.Thread(target=serve_conn, args=(conn, peer, log, f"handler-{n}", args.stall_ms,
                                                  args.read_chunk, args.read_pause_ms, args.delayed_acks),
                         daemon=True).start()


def serve_conn(conn, peer, log, thread, stall_ms=0, read_chunk=0, read_pause_ms=0, delayed_acks=False):
    log(f"accepted {peer[0]}:{peer[1]} SO_RCVBUF={conn.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)}",
        thread=thread)
    try:
        while True:
            t0 = None
            head = recv_line(conn)
            t0 = time.time()
            _, rid, total = head.split()
            total = int(total)
            got = len(head)
            if stall_ms:
                t_stall = time.time()
                time.sleep(stall_ms / 1000)
                log(f"request id={int(rid)} not read for {stall_ms} ms (busy) since {t_stall:.6f}", thread=thread)
            while got < total:
                chunk = conn.recv(min(read_chunk or 1 << 20, total - got))
                if not chunk:
                    raise ConnectionError("EOF in body")
                got += len(chunk)
                if delayed_acks:
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 0)
                if read_pause_ms:
                    time.sleep(read_pause_ms / 1000)
            t1 = time.time()
            log(f"request id={int(rid)} bytes={got} read_time={round((t1 - t0) * 1000)}ms", t1, thread=thread)
            conn.sendall(b"RSP %d ok %d\n" % (int(rid), got))
    except (ConnectionError, OSError) as e:
        log(f"connection {peer[0]}:{peer[1]} closed: {e}", thread=thread)
    conn.close()


def client(args):
    log = BracketLog(args.log, "worker-1")
    if args.connect_at:
        while time.time() < args.connect_at - 0.002:
            time.sleep(min(0.5, max(0.0, args.connect_at - time.time() - 0.002)))
        while time.time() < args.connect_at:
            pass
    t_conn = time.time()
    try:
        if args.sport:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", args.sport))
            s.connect((args.host, args.port))
        elif args.connect_timeout_s > 0:
            s = socket.create_connection((args.host, args.port), timeout=args.connect_timeout_s)
        else:
            # no deadline of our own: the kernel's SYN retransmissions decide when connect() fails
            log(f"connecting to {args.host}:{args.port} (no connect timeout)", t_conn, event="connecting")
            s = socket.socket()
            s.connect((args.host, args.port))
    except OSError as e:
        t1 = time.time()
        code = errno.errorcode.get(e.errno, str(e.errno)) if e.errno else type(e).__name__
        log(f"connect to {args.host}:{args.port} failed after {round((t1 - t_conn) * 1000)}ms error={code} "
            f"errno={e.errno} ({e.strerror or e})", t1, event="connect_error", error=code, errno=e.errno,
            start=t_conn)
        return 1
    s.settimeout(None)
    if args.keepalive:
        idle, intvl, cnt = (int(x) for x in args.keepalive.split(":"))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, intvl)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, cnt)
        log(f"SO_KEEPALIVE on: TCP_KEEPIDLE={idle}s TCP_KEEPINTVL={intvl}s TCP_KEEPCNT={cnt}", event="keepalive",
            idle=idle, intvl=intvl, cnt=cnt)
    if args.linger0:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if args.congestion:
        # before any data: the algorithm of this socket only (the namespace's default stays)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, args.congestion.encode())
    if args.user_timeout_ms:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, args.user_timeout_ms)
    local = s.getsockname()
    log(f"connected to {args.host}:{args.port} local {local[0]}:{local[1]}", event="connected",
        local_port=local[1])
    rid = 0

    def one(size):
        nonlocal rid
        rid += 1
        size = max(size, 32)
        head = b"REQ %d %d\n" % (rid, size)
        body = head + b"x" * (size - len(head))
        t0 = time.time()
        log(f"request id={rid} start bytes={size}", t0, event="start", id=rid, bytes=size)
        try:
            if args.write_chunk:
                for i in range(0, len(body), args.write_chunk):
                    s.sendall(body[i:i + args.write_chunk])
                    time.sleep(args.write_pause_ms / 1000)
            else:
                s.sendall(body)
            t_sent = time.time()
            resp = recv_line(s)
            t1 = time.time()
        except OSError as e:  # includes ConnectionError("EOF") from recv_line (errno None)
            t1 = time.time()
            code = errno.errorcode.get(e.errno, str(e.errno)) if e.errno else "EOF"
            log(f"request id={rid} failed proc_time={round((t1 - t0) * 1000)}ms error={code} errno={e.errno} "
                f"({e.strerror or e})", t1, event="error", id=rid, error=code, errno=e.errno, start=t0)
            return False
        ms = (t1 - t0) * 1000
        status = "TIMEOUT" if args.timeout_ms and ms > args.timeout_ms else "ok"
        log(f"proc_time={round(ms)}ms request id={rid} bytes={size} send_time={round((t_sent - t0) * 1000)}ms "
            f"status={status}" + (f" (timeout {args.timeout_ms}ms)" if status == "TIMEOUT" else ""), t1,
            event="done", id=rid, bytes=size, start=t0, sent=t_sent, proc_ms=ms, status=status,
            response=resp.decode().strip())
        return True

    def wait():
        """Block in recv() on the idle connection until the peer sends something or it fails."""
        t0 = time.time()
        log("waiting for the peer (recv)", t0, event="wait", start=t0)
        try:
            data = s.recv(1)
        except OSError as e:
            t1 = time.time()
            code = errno.errorcode.get(e.errno, str(e.errno)) if e.errno else "EOF"
            log(f"recv failed after {round((t1 - t0) * 1000)}ms error={code} errno={e.errno} ({e.strerror or e})",
                t1, event="error", id=0, error=code, errno=e.errno, start=t0)
            return False
        log(f"recv returned {len(data)} byte(s) after {round((time.time() - t0) * 1000)}ms", event="wait_done")
        return bool(data)

    ok = True
    if args.auto:
        for _ in range(args.auto):
            ok = one(args.size) and ok
    else:
        for line in sys.stdin:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "quit":
                break
            if parts[0] == "wait":
                if not wait():
                    ok = False
                    break
                continue
            if parts[0] == "send":
                if not one(int(parts[1]) if len(parts) > 1 else args.size):
                    ok = False
                    break
    log("close() the socket", event="close")
    s.close()
    log("client exit", event="exit")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["server", "client"])
    ap.add_argument("--host", default="198.18.2.2")
    ap.add_argument("--bind", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--sport", type=int, default=0)
    ap.add_argument("--connect-at", type=float, default=0.0, help="epoch time to connect at (seq-wrap)")
    ap.add_argument("--rcvbuf", type=int, default=0)
    ap.add_argument("--rcvbuf-after-accept", type=int, default=0,
                    help="server: SO_RCVBUF on each accepted socket (after the handshake)")
    ap.add_argument("--user-timeout-ms", type=int, default=0, help="TCP_USER_TIMEOUT on the client socket")
    ap.add_argument("--connect-timeout-s", type=float, default=10.0,
                    help="client: connect() deadline; 0 = none (the kernel's SYN retries decide)")
    ap.add_argument("--keepalive", default="", metavar="IDLE:INTVL:CNT",
                    help="client: SO_KEEPALIVE with TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT")
    ap.add_argument("--linger0", action="store_true")
    ap.add_argument("--stall-ms", type=int, default=0, help="server: stop reading for N ms after a request's header")
    ap.add_argument("--read-chunk", type=int, default=0, help="server: read the body this many bytes at a time")
    ap.add_argument("--read-pause-ms", type=int, default=0, help="server: pause after each body read (slow reader)")
    ap.add_argument("--delayed-acks", action="store_true", help="server: TCP_QUICKACK 0 after every read")
    ap.add_argument("--write-chunk", type=int, default=0, help="client: write requests this many bytes at a time")
    ap.add_argument("--write-pause-ms", type=float, default=0, help="client: pause after each write (app-limited)")
    ap.add_argument("--congestion", default="", help="client: TCP_CONGESTION of the socket (e.g. cubic)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--auto", type=int, default=0)
    ap.add_argument("--timeout-ms", type=int, default=0)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()
    return server(args) if args.mode == "server" else client(args)


if __name__ == "__main__":
    sys.exit(main())
