#!/usr/bin/env python3
"""tcpstall incident lab: reproduce the incidents of DESIGN.md section 1 between network namespaces
and capture them at two points (client eth0, server eth0). Run as root:

    python3 lab/run.py --all                 # every committed capture -> sample_captures/
    python3 lab/run.py heartbeat-loss        # one scenario
    python3 lab/run.py bulk-loss --out bench/data   # benchmark data (not committed)

Each scenario writes <name>-client.pcapng, <name>-server.pcapng, its application logs and
<name>.truth.json (what the router did, the sysctls, what the apps measured). Stdlib only.
"""
from __future__ import annotations

import argparse
import calendar
import datetime as dt
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):           # run as a script: python3 lab/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab import netlab  # noqa: E402
from lab.netlab import CLIENT_IP, SERVER_IP, Lab, LabError  # noqa: E402
from lab import pcaptools as pt  # noqa: E402
from lab.linux_tcp import tcp_model_timeout  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parent / "sample_captures"
APP_TZ = "CST-8"           # POSIX TZ: UTC+8, no tzdata needed. Heartbeat logs have no zone: use this offset.
APP_UTC_OFFSET_S = 8 * 3600
HB_PORT = 7000
RPC_PORT = 9000
SYSCTLS = ["net.ipv4.tcp_retries1", "net.ipv4.tcp_retries2", "net.ipv4.tcp_sack", "net.ipv4.tcp_timestamps",
           "net.ipv4.tcp_window_scaling", "net.ipv4.tcp_early_retrans", "net.ipv4.tcp_recovery",
           "net.ipv4.tcp_thin_linear_timeouts", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem", "net.ipv4.tcp_congestion_control",
           "net.ipv4.tcp_rto_min_us", "net.ipv4.tcp_rto_max_ms", "net.ipv4.tcp_syn_retries", "net.core.rmem_max",
           "net.ipv4.tcp_min_tso_segs", "net.ipv4.tcp_no_metrics_save", "net.ipv4.tcp_syn_linear_timeouts",
           "net.ipv4.tcp_orphan_retries", "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_keepalive_intvl",
           "net.ipv4.tcp_keepalive_probes"]


def log(msg: str) -> None:
    print(f"[lab {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# log parsing (apps write local time in APP_TZ)
GO_RE = re.compile(r"^(\d{4})/(\d\d)/(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{6}) (\S+): (.*)$")
BR_RE = re.compile(r"^\[(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})([+-])(\d\d)(\d\d)\]\[([^\]]+)\] (.*)$")


def parse_go_log(path: Path) -> list[tuple[float, str, str]]:
    out = []
    for line in path.read_text().splitlines():
        m = GO_RE.match(line)
        if m:
            y, mo, d, h, mi, s, us = map(int, m.groups()[:7])
            t = calendar.timegm((y, mo, d, h, mi, s)) - APP_UTC_OFFSET_S + us / 1e6
            out.append((t, m.group(8), m.group(9)))
    return out


def parse_bracket_log(path: Path) -> list[tuple[float, str, str]]:
    out = []
    for line in path.read_text().splitlines():
        m = BR_RE.match(line)
        if m:
            y, mo, d, h, mi, s, ms = map(int, m.groups()[:7])
            off = (int(m.group(9)) * 3600 + int(m.group(10)) * 60) * (1 if m.group(8) == "+" else -1)
            out.append((calendar.timegm((y, mo, d, h, mi, s)) - off + ms / 1000, m.group(11), m.group(12)))
    return out


def read_events(proc: subprocess.Popen) -> list[dict]:
    out = []
    for line in (proc.stdout.read() if proc.stdout else "").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


# ---------------------------------------------------------------------------------------------
class Scenario:
    """Base: builds the lab, runs `body`, then writes the truth file."""
    name = ""
    description = ""
    mtu = 1500
    delay_ms = 0.0
    snaplen = 160
    client_sysctls: dict = {}
    server_sysctls: dict = {}
    fwd_args: list = []        # extra delayfwd.py options (needs delay_ms > 0)
    committed = True

    def __init__(self, out: Path):
        self.out = Path(out)
        self.truth: dict = {}
        self.logs: dict[str, str] = {}

    def logpath(self, role: str) -> Path:
        p = self.out / f"{self.name}-{role}.log"
        p.unlink(missing_ok=True)
        self.logs[role] = p.name
        return p

    def run(self) -> dict:
        t0 = time.time()
        log(f"{self.name}: building topology (mtu {self.mtu}, one-way delay {self.delay_ms} ms)")
        with Lab(self.name, self.out, mtu=self.mtu, delay_ms=self.delay_ms, client_sysctls=self.client_sysctls,
                 server_sysctls=self.server_sysctls, snaplen=self.snaplen, fwd_args=self.fwd_args) as lab:
            self.lab = lab
            ping = lab.measure_rtt()
            sysctls = {role: {k: lab.read_sysctl(role, k) for k in SYSCTLS
                              if lab.ns_exec(role, "sysctl", "-n", k, check=False).returncode == 0}
                       for role in ("client", "server")}
            self.prepare(lab)
            base = {role: lab.tcp_counters(role) for role in ("client", "server")}
            lab.start_captures()
            app = self.body(lab)
            caps = lab.stop_captures()
            # only what happened while capturing (setup probes and the seq-wrap ISN probe excluded)
            counters = {}
            for role in ("client", "server"):
                now = lab.tcp_counters(role)
                counters[role] = {k: v - base[role].get(k, 0) for k, v in now.items() if v - base[role].get(k, 0)}
            faults = lab.fault_report()
            fwd = lab.forwarder_stats()
        client_cap, server_cap = caps["client"], caps["server"]
        csegs = pt.segments(client_cap, payload=self.want_payload())
        ssegs = pt.segments(server_cap, payload=self.want_payload())
        hs = pt.handshake(csegs)
        self.truth = {
            "scenario": self.name,
            "description": self.description,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "lab_command": f"sudo python3 lab/run.py {self.name}",
            "run_seconds": round(time.time() - t0, 1),
            "kernel": platform.release(),
            "sysctls": sysctls,
            "topology": {
                "client": f"{CLIENT_IP}", "server": f"{SERVER_IP}", "router": "198.18.1.1 / 198.18.2.1 (r1, nftables)",
                "capture_points": {"client": "client ns eth0", "server": "server ns eth0"},
                "mtu": self.mtu, "mss": hs.get("client_mss"), "snaplen": self.snaplen,
                "one_way_delay_ms": {"configured": self.delay_ms,
                                     "measured_ping_rtt_ms": ping,
                                     "measured_handshake_rtt_ms": hs.get("rtt_ms")},
                "delay_mechanism": lab.delay_mechanism,
                "delay_forwarder": fwd,
                "clock": "both captures use the same host clock (namespaces share it): no offset between them",
            },
            "handshake": hs,
            "faults": [self.describe_fault(f) for f in faults],
            "dropped_segments": [s.to_json() for s in pt.missing(csegs, ssegs, CLIENT_IP)]
                                + [s.to_json() for s in pt.missing(ssegs, csegs, SERVER_IP)],
            "kernel_counters": counters,
            "app": dict(app, tz=APP_TZ, utc_offset_s=APP_UTC_OFFSET_S, logs=self.logs),
            "captures": {role: {"file": p.name, "packets": len(segs), "bytes": p.stat().st_size,
                                "dumpcap": lab.capture_stats.get(role, {})}
                         for role, p, segs in (("client", client_cap, csegs), ("server", server_cap, ssegs))},
            "notes": list(lab.notes),
        }
        self.analyse(csegs, ssegs)
        path = self.out / f"{self.name}.truth.json"
        try:
            for role, st in lab.capture_stats.items():
                expect(st.get("dropped") == 0, f"dumpcap on the {role} side: {st} (capture incomplete)")
            self.check(csegs, ssegs)
        except LabError:
            path.with_suffix(".failed.json").write_text(json.dumps(self.truth, indent=2) + "\n")
            raise
        path.write_text(json.dumps(self.truth, indent=2) + "\n")
        path.with_suffix(".failed.json").unlink(missing_ok=True)
        log(f"{self.name}: wrote {path.name} ({self.truth['captures']['client']['packets']} / "
            f"{self.truth['captures']['server']['packets']} packets client/server)")
        self.extra_outputs(client_cap, server_cap, csegs, ssegs)
        return self.truth

    # hooks
    def want_payload(self) -> bool:
        return False

    def prepare(self, lab: Lab) -> None:
        """Runs before the captures start."""

    def body(self, lab: Lab) -> dict:
        raise NotImplementedError

    def describe_fault(self, f: dict) -> dict:
        return {"type": f["label"], "nft_rule": f["rule"], "added_at": round(f["added_at"], 6),
                "removed_at": round(f["removed_at"], 6) if f["removed_at"] else None,
                "nft_counter": f.get("counter", {})}

    def analyse(self, csegs, ssegs) -> None:
        pass

    def check(self, csegs, ssegs) -> None:
        pass

    def extra_outputs(self, client_cap, server_cap, csegs, ssegs) -> None:
        pass

    def wait(self, p: subprocess.Popen, timeout: float, what: str) -> None:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise LabError(f"{self.name}: {what} did not finish within {timeout} s")


def expect(cond: bool, msg: str) -> None:
    if not cond:
        raise LabError(f"ground truth check failed: {msg}")


# ---------------------------------------------------------------------------------------------
class Heartbeat(Scenario):
    count = 60
    drop_seq: int | None = None
    payload_bit = 256          # TCP header with timestamps = 32 bytes (20 without: bit 160)
    raft_log = False           # the sender logs like a raft leader (no timeout value in the line)
    drops = 1                  # transmissions of drop_seq the router drops (2: the first retransmission too)
    description = "21-byte heartbeats every 60 ms with a 50 ms app timeout"

    def want_payload(self):
        return True

    def body(self, lab):
        rlog, slog = self.logpath("receiver"), self.logpath("sender")
        recv = lab.app("server", "hb.py", "receiver", "--port", HB_PORT, "--rt", log=rlog, tz=APP_TZ)
        time.sleep(0.5)
        if self.drop_seq is not None:
            pattern = b"HB%08d" % self.drop_seq
            # payload at bit payload_bit of the TCP header. The quota makes it drop the first
            # transmission only (73 bytes, 61 without timestamps, < 100); the retransmission (sum >= 100) passes
            # (drops = 2: 73 + 73 < 150, the second retransmission passes).
            lab.nft_add(f"drop heartbeat #{self.drop_seq}",
                        f"ip saddr {CLIENT_IP} ip daddr {SERVER_IP} tcp dport {HB_PORT} "
                        f"@th,{self.payload_bit},80 0x{pattern.hex()} quota until {50 + 50 * self.drops} bytes")
        snd = lab.app("client", "hb.py", "sender", "--host", SERVER_IP, "--port", HB_PORT, "--count", self.count, "--rt",
                      *(["--raft-log"] if self.raft_log else []), log=slog, tz=APP_TZ)
        self.wait(snd, 30 + self.count * 0.1, "heartbeat sender")
        self.wait(recv, 10, "heartbeat receiver")
        ev_s, ev_r = parse_go_log(slog), parse_go_log(rlog)
        timeouts = [{"seq": int(re.search(r"seq=(\d+)", m).group(1)), "time": round(t, 6)}
                    for t, _, m in ev_s if "heartbeat timeout" in m or "AppendEntries timeout" in m]
        oks = [float(re.search(r"rtt=([\d.]+)ms", m).group(1)) for t, _, m in ev_s if "heartbeat ok" in m]
        late = [{"seq": int(re.search(r"seq=(\d+)", m).group(1)), "time": round(t, 6),
                 "rtt_ms": float(re.search(r"rtt=([\d.]+)ms", m).group(1))} for t, _, m in ev_s if "late heartbeat" in m]
        costs = [{"seq": int(re.search(r"seq=(\d+)", m).group(1)), "time": round(t, 6),
                  "cost_ms": int(re.search(r"cost (\d+)ms", m).group(1))} for t, _, m in ev_r if "read cost" in m]
        sends = [t for t, _, m in ev_s if "send heartbeat" in m or "send AppendEntries" in m]
        return {"sender_log": slog.name, "receiver_log": rlog.name, "heartbeats_sent": len(sends),
                "interval_ms": 60, "timeout_ms": 50, "heartbeat_len": 21, "scheduling": "SCHED_FIFO 5 (both apps)",
                "timeouts": timeouts, "late_replies": late,
                "ok_count": len(oks), "ok_rtt_ms_median": sorted(oks)[len(oks) // 2] if oks else None,
                "read_cost_ms_max": max((c["cost_ms"] for c in costs), default=None),
                "read_costs_over_100ms": [c for c in costs if c["cost_ms"] > 100]}

    def analyse(self, csegs, ssegs):
        if self.drop_seq is None:
            return
        pattern = b"HB%08d" % self.drop_seq
        orig = next(s for s in csegs if s.src == CLIENT_IP and s.payload.startswith(pattern))
        tx = pt.transmissions(csegs, CLIENT_IP, orig.seq)
        rx = pt.transmissions(ssegs, CLIENT_IP, orig.seq)
        f = self.truth["faults"][0]
        f.update({"direction": "client->server", "heartbeat_seq": self.drop_seq, "seq_raw": orig.seq, "len": orig.len,
                  "tsval": orig.tsval, "sent_at": round(orig.t, 6), "client_frame": orig.frame,
                  "retransmissions": [dict(s.to_json(), after_ms=round((s.t - orig.t) * 1000, 3)) for s in tx[1:]],
                  "arrived_at_server": [dict(s.to_json(), after_ms=round((s.t - orig.t) * 1000, 3)) for s in rx]})
        # held segments: later heartbeats that reached the server before the hole was filled
        fill = rx[0].t if rx else None
        held = [s for s in ssegs if s.src == CLIENT_IP and s.len > 0 and pt.seq_after(s.seq, orig.seq)
                and fill is not None and s.t < fill]
        f["held_at_server"] = [dict(s.to_json(), hold_ms=round((fill - s.t) * 1000, 3),
                                    heartbeat_seq=int(s.payload[2:10]) if s.payload.startswith(b"HB") else None)
                               for s in held]
        # what kind of retransmission repaired the hole, by the sender's kernel counters (one loss per run)
        k = self.truth["kernel_counters"]["client"]
        kinds = {"tlp": k.get("TCPLossProbes", 0), "rto": k.get("TCPTimeouts", 0), "fast": k.get("TCPFastRetrans", 0)}
        f["retransmission_trigger"] = next(iter(n for n, v in kinds.items() if v)) if sum(kinds.values()) == 1 \
            else "unknown"

    def check(self, csegs, ssegs):
        held = {h.get("heartbeat_seq") for f in self.truth["faults"] for h in f.get("held_at_server", [])}
        # heartbeats that reached the server behind the hole time out too (HOL blocking): explained
        extra = [t["seq"] for t in self.truth["app"]["timeouts"] if t["seq"] != self.drop_seq and t["seq"] not in held]
        self.truth["app"]["timeouts_hol_blocked"] = sorted(t["seq"] for t in self.truth["app"]["timeouts"]
                                                           if t["seq"] in held)
        if extra:
            fwd = self.truth["topology"]["delay_forwarder"].get("directions", {})
            late = max((d.get("late_max_us", 0) for d in fwd.values()), default=None)
            self.truth["notes"].append(
                f"heartbeat timeouts not caused by a router drop: {extra} (host scheduling jitter on a shared machine; "
                f"delay forwarder late max {late} us); compare the sender/receiver log times with the captures")
            log(f"{self.name}: note: extra heartbeat timeouts {extra} (jitter)")
        if self.drop_seq is None:
            expect(not self.truth["dropped_segments"], "clean run lost packets")
            return
        expect(any(t["seq"] == self.drop_seq for t in self.truth["app"]["timeouts"]),
               f"the sender did not time out heartbeat #{self.drop_seq}")
        f = self.truth["faults"][0]
        expect(f["nft_counter"].get("packets") == self.drops,
               f"nft dropped {f['nft_counter']} (want exactly {self.drops} packet(s))")
        d = self.truth["dropped_segments"]
        expect(len(d) == self.drops and all(x["seq_raw"] == f["seq_raw"] for x in d) and d[0]["len"] == 21,
               f"capture diff {d} does not match the dropped heartbeat")
        expect(f["retransmissions"] and f["arrived_at_server"], "the dropped heartbeat was never retransmitted")


class HeartbeatLoss(Heartbeat):
    name = "heartbeat-loss"
    delay_ms = 10.0
    drop_seq = 30
    description = ("incident A: one 21-byte heartbeat (#30) dropped in the router; later heartbeats are SACKed "
                   "but held in the receiver's queue until the retransmission fills the hole")


class HeartbeatLossNoSack(HeartbeatLoss):
    name = "heartbeat-loss-nosack"
    client_sysctls = {"net.ipv4.tcp_sack": 0, "net.ipv4.tcp_recovery": 0, "net.ipv4.tcp_early_retrans": 0}
    description = ("incident A without SACK/RACK/TLP on the sender (tcp_sack=0, tcp_recovery=0, "
                   "tcp_early_retrans=0 in its namespace): same drop of heartbeat #30; the thin stream cannot "
                   "collect three duplicate ACKs before the RTO, so the hole is repaired by an RTO retransmission")


class HeartbeatLossRaftLog(HeartbeatLossNoSack):
    name = "heartbeat-loss-raftlog"
    raft_log = True
    description = ("heartbeat-loss-nosack with the sender logging like the incident's raft leader: "
                   "\"send AppendEntries to 92\", 50 ms later \"AppendEntries timeout and retry\" (no timeout value "
                   "in the line), several times while the one dropped segment waits for its RTO retransmission")


class HeartbeatLossTwice(HeartbeatLoss):
    name = "heartbeat-loss-twice"
    drops = 2
    description = ("incident A with the retransmission lost too: heartbeat #30 and its first retransmission "
                   "dropped in the router; the second retransmission fills the hole")


class HeartbeatLossNoTs(HeartbeatLoss):
    name = "heartbeat-loss-nots"
    client_sysctls = {"net.ipv4.tcp_timestamps": 0}
    payload_bit = 160
    description = ("incident A without TCP timestamps (tcp_timestamps=0 in the client's namespace, as on a Windows "
                   "host): same drop of heartbeat #30; SACK on. The receiver-side capture cannot tell the "
                   "retransmission from a late original by TSval: IP ID order and timing must")


class CleanHeartbeat(Heartbeat):
    name = "clean-heartbeat"
    delay_ms = 10.0
    count = 40
    description = "incident A programs, no fault (false-positive check)"


# ---------------------------------------------------------------------------------------------
class RpcScenario(Scenario):
    server_args: list = []
    client_args: list = []

    def start_pair(self, lab, *, stdin=True, server_extra=(), client_extra=()):
        self.slog_path, self.clog_path = self.logpath("server"), self.logpath("client")
        self.server = lab.app("server", "rpc.py", "server", "--port", RPC_PORT, *self.server_args, *server_extra,
                              log=self.slog_path, tz=APP_TZ)
        time.sleep(0.5)
        argv = [sys.executable, str(netlab.APPS / "rpc.py"), "client", "--host", SERVER_IP, "--port", str(RPC_PORT),
                *map(str, self.client_args), *map(str, client_extra), "--log", str(self.clog_path)]
        env = dict(os.environ, TZ=APP_TZ, PYTHONUNBUFFERED="1")
        self.client = subprocess.Popen(["ip", "netns", "exec", lab.ns["client"], *argv],
                                       stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                       start_new_session=True)
        lab.procs.append(self.client)

    def send(self, size=None):
        self.client.stdin.write(f"send {size or ''}\n")
        self.client.stdin.flush()

    def quit(self):
        try:
            self.client.stdin.write("quit\n")
            self.client.stdin.close()
        except (BrokenPipeError, OSError):
            pass

    def one_request(self, lab, size: int, timeout: float = 60) -> dict:
        """Start the pair, send one request of `size` bytes, wait for its answer, stop the client:
        the client's "done" event."""
        self.start_pair(lab)
        time.sleep(0.3)
        self.send(size)
        self.wait_event("done", 1, timeout=timeout)
        time.sleep(0.2)
        self.quit()
        return next(e for e in self.client_events() if e.get("event") == "done")

    def client_events(self, timeout=120):
        self.wait(self.client, timeout, "rpc client")
        return read_events(self.client)

    def wait_event(self, kind: str, n: int, timeout=30):
        """Wait until the client log has its n-th `kind` line (done/failed)."""
        deadline = time.time() + timeout
        word = {"done": "proc_time=", "failed": " failed "}[kind]
        while time.time() < deadline:
            if self.clog_path.exists():
                lines = [l for l in self.clog_path.read_text().splitlines() if word in l and "failed" not in l] \
                    if kind == "done" else [l for l in self.clog_path.read_text().splitlines() if word in l]
                if len(lines) >= n:
                    return
            time.sleep(0.02)
        raise LabError(f"{self.name}: client did not log {kind} #{n} within {timeout} s")


class SmallRcvbuf(RpcScenario):
    name = "small-rcvbuf"
    mtu = 614
    delay_ms = 0.7
    snaplen = 96
    message = 2_079_208
    rcvbuf = 1024
    description = ("incident B: the server's listening socket has SO_RCVBUF=1024 (set before listen), MSS 574; the "
                   "client sends one 2 079 208-byte message and waits for the reply (app timeout 3 s)")

    @property
    def server_args(self):
        return ["--rcvbuf", self.rcvbuf] if self.rcvbuf else []

    client_args = ["--timeout-ms", 3000]

    def body(self, lab):
        done = self.one_request(lab, self.message)
        listen = [l for l in self.slog_path.read_text().splitlines() if "SO_RCVBUF" in l]
        return {"client_log": self.clog_path.name, "server_log": self.slog_path.name,
                "message_bytes": self.message, "app_timeout_ms": self.client_args[1],
                "server_so_rcvbuf_requested": self.rcvbuf or None,
                "server_log_rcvbuf_lines": listen,
                "request_start": round(done["start"], 6), "request_sent": round(done["sent"], 6),
                "proc_time_ms": round(done["proc_ms"], 3), "status": done["status"]}

    def analyse(self, csegs, ssegs):
        hs = self.truth["handshake"]
        data = [s for s in csegs if s.src == CLIENT_IP and s.len > 0]
        acks = [s for s in csegs if s.src == SERVER_IP and not s.syn]
        shift = hs.get("server_wscale") or 0
        wins = sorted(s.win << shift for s in acks)
        self.truth["app"]["transfer"] = {
            "data_segments_client_capture": len(data),
            "first_data": round(data[0].t, 6), "last_data": round(data[-1].t, 6),
            "duration_ms": round((data[-1].t - data[0].t) * 1000, 3),
            "payload_bytes": sum(s.len for s in data),
            "server_window_scale": shift,
            "server_advertised_window_bytes": {"median": wins[len(wins) // 2], "max": wins[-1], "min": wins[0]},
            "max_segment_len": max(s.len for s in data),
        }

    def check(self, csegs, ssegs):
        expect(not self.truth["dropped_segments"], f"{self.name}: packets lost without a fault")

    def extra_outputs(self, client_cap, server_cap, csegs, ssegs):
        if self.rcvbuf:
            write_nohs(self, client_cap, server_cap, csegs, ssegs)


def write_nohs(scn: Scenario, client_cap, server_cap, csegs, ssegs, cut: int = 200) -> None:
    """The same capture without its first `cut` packets (no handshake): a long-lived connection
    captured late. Writes <name>-nohs-{client,server}.pcapng and <name>-nohs.truth.json."""
    name = f"{scn.name}-nohs"
    out = {}
    for role, cap, segs in (("client", client_cap, csegs), ("server", server_cap, ssegs)):
        dst = scn.out / f"{name}-{role}.pcapng"
        subprocess.run(["editcap", "-F", "pcapng", str(cap), str(dst), f"1-{cut}"], check=True,
                       capture_output=True)
        first = segs[cut] if len(segs) > cut else None
        out[role] = {"file": dst.name, "packets": pt.packet_count(dst), "bytes": dst.stat().st_size,
                     "cut_packets": cut, "source": cap.name,
                     "first_packet_time": round(first.t, 6) if first else None}
    t = dict(scn.truth)
    t.update({"scenario": name, "derived_from": scn.name,
              "description": scn.description + f"; copy without the first {cut} packets of each capture "
              "(handshake, and with it the window scale options, is missing)",
              "lab_command": f"sudo python3 lab/run.py {scn.name}  (editcap {{src}} {{dst}} 1-{cut})",
              "captures": out,
              "lost_handshake": {"client_wscale": scn.truth["handshake"].get("client_wscale"),
                                 "server_wscale": scn.truth["handshake"].get("server_wscale"),
                                 "mss": scn.truth["handshake"].get("client_mss")}})
    (scn.out / f"{name}.truth.json").write_text(json.dumps(t, indent=2) + "\n")
    log(f"{name}: wrote {name}.truth.json")


class SmallRcvbufNoTs(SmallRcvbuf):
    name = "small-rcvbuf-nots"
    client_sysctls = {"net.ipv4.tcp_timestamps": 0}
    description = ("incident B without TCP timestamps (tcp_timestamps=0 in the client's namespace, as on a Windows "
                   "host): the server's listening socket has SO_RCVBUF=1024, MSS 574; the client sends one "
                   "2 079 208-byte message and waits for the reply (app timeout 3 s)")


class SmallRcvbuf2048NoTs(SmallRcvbufNoTs):
    name = "small-rcvbuf-2048-nots"
    rcvbuf = 2048
    description = ("incident B's own shape without TCP timestamps (tcp_timestamps=0 in the client's namespace): the "
                   "server's listening socket has SO_RCVBUF=2048 (window 3×MSS = 1722 B on this kernel; the incident's was 2×MSS), MSS 574; the client sends one "
                   "2 079 208-byte message and waits for the reply (app timeout 3 s)")


class SmallRcvbufReset(SmallRcvbufNoTs):
    name = "small-rcvbuf-reset"
    kill_after_s = 1.5
    description = ("issue 15.2: small-rcvbuf-nots (SO_RCVBUF=1024, no TCP timestamps), but the server process is "
                   "killed 1.5 s into the 2 079 208-byte upload: its kernel resets the connection (RST, unread "
                   "data) while the transfer is still window-limited")

    def body(self, lab):
        self.start_pair(lab)
        time.sleep(0.3)
        self.send(self.message)
        time.sleep(self.kill_after_s)
        t_kill = time.time()
        lab.stop_proc(self.server, signal.SIGKILL)
        self.wait_event("failed", 1)
        self.quit()
        err = next(e for e in self.client_events() if e.get("event") == "error")
        return {"client_log": self.clog_path.name, "server_log": self.slog_path.name,
                "message_bytes": self.message, "app_timeout_ms": self.client_args[1],
                "server_so_rcvbuf_requested": self.rcvbuf, "server_killed_at": round(t_kill, 6),
                "request_start": round(err["start"], 6), "error": err["error"], "error_time": round(err["t"], 6)}

    def analyse(self, csegs, ssegs):
        super().analyse(csegs, ssegs)
        rst = [s for s in csegs if s.src == SERVER_IP and s.rst]
        self.truth["app"]["transfer"]["rst_client_capture"] = rst[0].to_json() if rst else None

    def check(self, csegs, ssegs):
        super().check(csegs, ssegs)
        expect(any(s.rst for s in csegs if s.src == SERVER_IP), f"{self.name}: no RST from the server")


class SmallRcvbuf16k(SmallRcvbuf):
    name = "small-rcvbuf-16k"
    mtu = 1500
    delay_ms = 5.0
    message = 3_000_000
    rcvbuf = 16384
    client_args = ["--timeout-ms", 10000]
    description = ("issue 15.3: a window of more than a dozen segments: the server's listening socket has "
                   "SO_RCVBUF=16384, MTU 1500, RTT 10 ms; the client uploads one 3 000 000-byte message")


class SmallRcvbuf64k(SmallRcvbuf16k):
    name = "small-rcvbuf-64k"
    rcvbuf = 65536
    description = ("issue 15.3: the server's listening socket has SO_RCVBUF=65536 (window scale 1), MTU 1500, "
                   "RTT 10 ms; the client uploads one 3 000 000-byte message")


class SmallRcvbufClamp(SmallRcvbuf16k):
    name = "small-rcvbuf-clamp"
    rcvbuf = 0
    server_args = ["--rcvbuf-after-accept", 16384]
    # Linux's default tcp_rmem (max 6 MB) gives a window shift of 7; this lab's kernel defaults to more
    server_sysctls = {"net.ipv4.tcp_rmem": "4096 131072 6291456"}
    description = ("issue 15.3: a small window with a large window shift: the server listens with default buffers "
                   "(tcp_rmem max 6 MB: window shift 7 in its SYN-ACK) and sets SO_RCVBUF=16384 on the accepted "
                   "socket, MTU 1500, RTT 10 ms; the client uploads one 3 000 000-byte message")

    def body(self, lab):
        res = super().body(lab)
        res["server_so_rcvbuf_after_accept"] = self.server_args[1]
        return res

    def extra_outputs(self, client_cap, server_cap, csegs, ssegs):
        write_nohs(self, client_cap, server_cap, csegs, ssegs)    # (shift 7 inferred without the handshake)


class SmallRcvbufClamp14(SmallRcvbufClamp):
    name = "small-rcvbuf-clamp14"
    # tcp_rmem max 1 GB: the largest window shift (14) in the SYN-ACK, so the 16 kB window after
    # the clamp is a raw value of 1 or 2 (units of 16 384 B)
    server_sysctls = {"net.ipv4.tcp_rmem": "4096 131072 1073741824"}
    description = ("issue 15.3: the largest window shift: the server listens with default buffers but tcp_rmem max 1 GB "
                   "(window shift 14 in its SYN-ACK) and sets SO_RCVBUF=16384 on the accepted socket (a window of one "
                   "or two units of 16 384 B), MTU 1500, RTT 10 ms; the client uploads one 3 000 000-byte message")

    def extra_outputs(self, client_cap, server_cap, csegs, ssegs):
        pass                                   # (size budget: the tests cut the handshake with editcap)


NO_TIMESTAMPS = {"net.ipv4.tcp_timestamps": 0}     # in the client's namespace: the SYN offers none (a Windows default)


class SmallRcvbuf16kNoTs(SmallRcvbuf16k):
    name = "small-rcvbuf-16k-nots"
    client_sysctls = NO_TIMESTAMPS
    description = ("issue 15.3 without TCP timestamps (tcp_timestamps=0 in the client's namespace): the server's "
                   "listening socket has SO_RCVBUF=16384, MTU 1500, RTT 10 ms; the client uploads one 3 000 000-byte message")

    def extra_outputs(self, client_cap, server_cap, csegs, ssegs):
        pass                                   # (size budget: the tests cut the handshake with editcap)


class SmallRcvbuf64kNoTs(SmallRcvbuf16kNoTs, SmallRcvbuf64k):
    name = "small-rcvbuf-64k-nots"
    description = ("issue 15.3 without TCP timestamps (tcp_timestamps=0 in the client's namespace): the server's "
                   "listening socket has SO_RCVBUF=65536 (window scale 1), MTU 1500, RTT 10 ms; the client uploads one "
                   "3 000 000-byte message")


class SmallRcvbufClamp20kNoTs(SmallRcvbuf16kNoTs, SmallRcvbufClamp):
    name = "small-rcvbuf-clamp20k-nots"
    server_args = ["--rcvbuf-after-accept", 20000]
    description = ("issue 15.3 without TCP timestamps: as small-rcvbuf-clamp-nots (shift 7) but SO_RCVBUF=20000 after "
                   "accept: a 25 344 B window, raw 198, and 198 x 2^4 = 3 168 B is within half a segment of the two "
                   "segments a receiver ACKs at once (what made an ACK of a pair look like one of a full window)")


class SmallRcvbufClampNoTs(SmallRcvbuf16kNoTs, SmallRcvbufClamp):
    name = "small-rcvbuf-clamp-nots"
    description = ("issue 15.3 without TCP timestamps (tcp_timestamps=0 in the client's namespace): the server listens "
                   "with default buffers (tcp_rmem max 6 MB: window shift 7) and sets SO_RCVBUF=16384 on the accepted "
                   "socket, MTU 1500, RTT 10 ms; the client uploads one 3 000 000-byte message")


def tbf_bottleneck(lab, rate: str, body):
    """Run `body()` behind a tbf bottleneck on the router's server-side interface (burst 16 kB,
    queue 50 ms); its result gains the qdisc's own counters ("tbf")."""
    lab.ns_exec("r1", "tc", "qdisc", "add", "dev", "r1s", "root", "tbf", "rate", rate, "burst", "16kb",
                "latency", "50ms")
    res = body()
    q = lab.ns_exec("r1", "tc", "-s", "qdisc", "show", "dev", "r1s").stdout
    m = re.search(r"Sent (\d+) bytes (\d+) pkt \(dropped (\d+), overlimits (\d+)", q)
    res["tbf"] = {"rate": rate, "burst": "16kb", "latency": "50ms", "dev": "r1 r1s (towards the server)",
                  "sent_bytes": int(m.group(1)), "sent_packets": int(m.group(2)),
                  "dropped": int(m.group(3)), "overlimits": int(m.group(4))} if m else {"raw": q}
    return res


class SmallRcvbuf64kTbf(SmallRcvbuf64k):
    name = "small-rcvbuf-64k-tbf"
    rate = "20mbit"
    # BBR would cap the flight at ~2 x BDP (50 kB) below the window: cubic grows its cwnd past it
    # (TCP_CONGESTION on the client socket: the namespace's default cannot be changed here)
    client_args = ["--timeout-ms", 10000, "--congestion", "cubic"]
    description = ("issue 15.5: small-rcvbuf-64k (SO_RCVBUF=65536, window 81 120 B, RTT 10 ms, cubic) behind a 20 Mbit/s tbf "
                   "(burst 16 kB, queue 50 ms) on the router's server-side interface: the window (> the 25 kB "
                   "path BDP) waits in the tbf queue, so each round lasts window / 20 Mbit/s ≈ 32 ms and the ACKs "
                   "come back paced by the link, not delayed by the receiver")

    def body(self, lab):
        run = super().body
        return tbf_bottleneck(lab, self.rate, lambda: run(lab))

    def check(self, csegs, ssegs):
        super().check(csegs, ssegs)
        expect(self.truth["app"]["tbf"].get("overlimits", 0) > 0, f"{self.name}: the tbf never queued")

    def extra_outputs(self, client_cap, server_cap, csegs, ssegs):
        pass                                   # no -nohs copy (size budget)


class AppNotReading(RpcScenario):
    name = "app-not-reading"
    delay_ms = 0.7
    snaplen = 96
    message = 1_000_000
    stall_ms = 2000
    description = ("incident B's other cause: the server application stops reading for 2 s after a request's "
                   "first line (busy), default buffers: its receive buffer fills and the advertised window "
                   "shrinks to zero; the client sends one 1 000 000-byte message")
    server_args = ["--stall-ms", stall_ms]
    client_args = ["--timeout-ms", 10000]

    def body(self, lab):
        done = self.one_request(lab, self.message)
        stalls = [l for l in self.slog_path.read_text().splitlines() if "not read for" in l]
        return {"client_log": self.clog_path.name, "server_log": self.slog_path.name,
                "message_bytes": self.message, "stall_ms": self.stall_ms, "server_log_stall_lines": stalls,
                "request_start": round(done["start"], 6), "request_sent": round(done["sent"], 6),
                "proc_time_ms": round(done["proc_ms"], 3), "status": done["status"]}

    def analyse(self, csegs, ssegs):
        hs = self.truth["handshake"]
        shift = hs.get("server_wscale") or 0
        acks = [s for s in ssegs if s.src == SERVER_IP and not s.syn]
        zero = [s for s in acks if s.win == 0]
        wins = [s.win << shift for s in acks]
        self.truth["app"]["window"] = {
            "server_window_scale": shift,
            "max_bytes": max(wins), "min_bytes": min(wins),
            "zero_window_frames_server_capture": [s.frame for s in zero][:20],
            "zero_window_count": len(zero),
            "first_zero_window_t": round(zero[0].t, 6) if zero else None,
        }

    def check(self, csegs, ssegs):
        expect(not self.truth["dropped_segments"], f"{self.name}: packets lost without a fault")
        expect(self.truth["app"]["window"]["zero_window_count"] > 0, f"{self.name}: the window never reached zero")


class CleanRpc(SmallRcvbuf):
    name = "clean-rpc"
    rcvbuf = 0
    description = ("incident B programs with the server's default SO_RCVBUF (false-positive check for window "
                   "throttling): same 2 079 208-byte message, MSS 574")


class CleanBulk(RpcScenario):
    name = "clean-bulk"
    mtu = 1500
    delay_ms = 0.0
    snaplen = 96
    size = 3_000_000
    description = "a healthy 3 MB bulk transfer, default buffers, no fault (false-positive check)"
    client_args = []

    def body(self, lab):
        self.start_pair(lab)
        time.sleep(0.3)
        self.send(self.size)
        self.wait_event("done", 1, timeout=120)
        self.quit()
        ev = self.client_events()
        done = next(e for e in ev if e.get("event") == "done")
        return {"client_log": self.clog_path.name, "server_log": self.slog_path.name, "message_bytes": self.size,
                "proc_time_ms": round(done["proc_ms"], 3), "status": done["status"]}

    def check(self, csegs, ssegs):
        expect(not self.truth["dropped_segments"], f"{self.name}: packets lost without a fault")


class BulkLoss(CleanBulk):
    name = "bulk-loss"
    committed = False
    size = 300_000_000
    loss_pct = 1
    rate = "400mbit"
    description = ("benchmark data (not committed): 300 MB bulk transfer client->server with 1 % random loss of "
                   "client->server packets (nft numgen random) and a 400 Mbit/s tbf on the router")

    def body(self, lab):
        lab.ns_exec("r1", "tc", "qdisc", "add", "dev", "r1s", "root", "tbf", "rate", self.rate, "burst", "64kb",
                    "latency", "50ms")
        lab.nft_add(f"random loss {self.loss_pct}%",
                    f"ip saddr {CLIENT_IP} ip daddr {SERVER_IP} tcp dport {RPC_PORT} "
                    f"numgen random mod 100 < {self.loss_pct}")
        self.start_pair(lab)
        time.sleep(0.3)
        self.send(self.size)
        self.wait_event("done", 1, timeout=600)
        self.quit()
        ev = self.client_events()
        done = next(e for e in ev if e.get("event") == "done")
        return {"client_log": self.clog_path.name, "server_log": self.slog_path.name, "message_bytes": self.size,
                "proc_time_ms": round(done["proc_ms"], 3), "status": done["status"], "tbf_rate": self.rate}

    def check(self, csegs, ssegs):
        f = self.truth["faults"][0]
        n = len([d for d in self.truth["dropped_segments"] if d["src"].startswith(CLIENT_IP)])
        self.truth["faults"][0]["capture_diff_packets"] = n
        # summary instead of a list of thousands of segments
        self.truth["dropped_segments_count"] = len(self.truth["dropped_segments"])
        self.truth["dropped_segments"] = self.truth["dropped_segments"][:50]
        self.truth["dropped_segments_truncated_to"] = 50
        expect(f["nft_counter"].get("packets", 0) == n,
               f"nft dropped {f['nft_counter']} but the captures differ by {n} client packets")


class ManyConns(Scenario):
    """Many short connections at once, a third of them lossy, a third window-limited: the shape of
    a busy RPC host's capture, for the memory benchmark (bench/memory.py)."""
    name = "many-conns"
    committed = False
    snaplen = 96
    connections = 3000
    parallel = 30
    size = 65536
    loss_pct = 1
    description = ("benchmark data (not committed): client->server RPCs of 64 KB, each on its own connection, "
                   "30 at a time over three servers: port 9000 with 1 % random loss of client->server "
                   "packets (nft numgen random), port 9001 with a 16 KB receive buffer, port 9002 clean")

    def body(self, lab):
        lossy, small, clean = RPC_PORT, RPC_PORT + 1, RPC_PORT + 2
        lab.nft_add(f"random loss {self.loss_pct}% on port {lossy}",
                    f"ip saddr {CLIENT_IP} ip daddr {SERVER_IP} tcp dport {lossy} "
                    f"numgen random mod 100 < {self.loss_pct}")
        for port, extra in ((lossy, ()), (small, ("--rcvbuf", 16384)), (clean, ())):
            lab.app("server", "rpc.py", "server", "--port", port, *extra, log=self.logpath(f"server-{port}"))
        time.sleep(0.5)
        client = lab.popen("client", [sys.executable, str(netlab.APPS / "conns.py"), "--host", SERVER_IP,
                                      "--ports", f"{lossy},{small},{clean}", "--connections", str(self.connections),
                                      "--parallel", str(self.parallel), "--size", str(self.size)],
                           stdout=subprocess.PIPE)
        self.wait(client, 900, "conns.py client")
        finished = next((e for e in read_events(client) if e.get("event") == "finished"), None)
        expect(finished is not None, f"{self.name}: the client printed no summary: {client.stderr.read()[-500:]}")
        return {"connections": finished, "ports": {"lossy": lossy, "small_rcvbuf_16k": small, "clean": clean},
                "request_bytes": self.size}

    def check(self, csegs, ssegs):
        done = self.truth["app"]["connections"]
        expect(done["done"] == self.connections, f"{self.name}: {done}")
        f = self.truth["faults"][0]
        n = len([d for d in self.truth["dropped_segments"] if d["src"].startswith(CLIENT_IP)])
        f["capture_diff_packets"] = n
        expect(f["nft_counter"].get("packets", 0) == n,
               f"nft dropped {f['nft_counter']} but the captures differ by {n} client packets")
        if n > 50:                    # (the benchmark's hundreds: a summary instead of the list)
            self.truth["dropped_segments_count"] = len(self.truth["dropped_segments"])
            self.truth["dropped_segments"] = self.truth["dropped_segments"][:50]
            self.truth["dropped_segments_truncated_to"] = 50


class ManyConnsSmall(ManyConns):
    """The same shape, small enough to commit, with a round trip a 16 KB window limits."""
    name = "many-conns-small"
    committed = True
    connections = 45
    parallel = 5
    size = 98304
    delay_ms = 20.0
    description = ("many connections at once: 45 client->server RPCs of 96 KB, each on its own connection, 5 at "
                   "a time, RTT 40 ms, in turn to three servers: port 9000 with 1 % random loss of client->server "
                   "packets, port 9001 with a 16 KB receive buffer, port 9002 clean")


class ManyConnsSmallNoTs(ManyConnsSmall):
    name = "many-conns-small-nots"
    client_sysctls = {"net.ipv4.tcp_timestamps": 0}
    description = ("many-conns-small without TCP timestamps (tcp_timestamps=0 in the client's namespace, as on a "
                   "Windows host)")


def window_headroom(csegs, shift: int) -> dict:
    """Ground truth for the window-limit negative controls, from the SENDER-side (client) capture,
    where the window the client knew is exactly the last server ACK seen before each segment: the
    client's bytes in flight (new data's end - that ACK) against that window (raw << shift)."""
    isn = next(s.seq for s in csegs if s.src == CLIENT_IP and s.syn)
    rel = lambda x: (x - isn) % (1 << 32)
    ack = win = None
    high, mss = 0, 0
    best = {"max_flight_bytes": 0, "window_at_max_flight_bytes": None, "max_flight_over_window": 0.0,
            "segments_within_one_mss_of_edge": 0, "new_data_segments": 0, "window_min_bytes": None}
    for s in csegs:
        if s.src == SERVER_IP and s.ackf and not s.syn:
            ack, win = rel(s.ack), s.win << shift
            best["window_min_bytes"] = win if best["window_min_bytes"] is None else min(best["window_min_bytes"], win)
        elif s.src == CLIENT_IP and s.len > 0 and ack is not None:
            end = rel(s.seq) + s.len
            if end <= high:
                continue                          # a retransmission: not new data
            high, mss = end, max(mss, s.len)
            flight = end - ack
            best["new_data_segments"] += 1
            if win and flight / win > best["max_flight_over_window"]:
                best["max_flight_over_window"] = round(flight / win, 4)
            if flight > best["max_flight_bytes"]:
                best["max_flight_bytes"], best["window_at_max_flight_bytes"] = flight, win
            if end >= ack + win - mss:
                best["segments_within_one_mss_of_edge"] += 1
    return best


class NegativeControl(CleanBulk):
    """Issue 15: a bulk upload that is NOT limited by the receiver's window (default, autotuned
    buffers: tcp_rmem max 32 MB): the receiver-window detector must stay quiet. The truth records
    the flight/window headroom measured at the sender-side capture."""
    committed = True
    nohs = True

    def analyse(self, csegs, ssegs):
        hs = self.truth["handshake"]
        self.truth["app"]["window_headroom"] = window_headroom(csegs, hs.get("server_wscale") or 0)
        data = [s for s in csegs if s.src == CLIENT_IP and s.len > 0]
        dur = data[-1].t - data[0].t
        self.truth["app"]["transfer"] = {"duration_ms": round(dur * 1000, 3),
                                         "goodput_mbps": round(self.size * 8 / dur / 1e6, 3) if dur > 0 else None}

    def check(self, csegs, ssegs):
        h = self.truth["app"]["window_headroom"]
        # the point of the control: the window never came within a segment of limiting the sender
        expect(h["segments_within_one_mss_of_edge"] == 0, f"{self.name}: the window limited the sender: {h}")

    def extra_outputs(self, client_cap, server_cap, csegs, ssegs):
        if self.nohs:
            write_nohs(self, client_cap, server_cap, csegs, ssegs)


class BulkTbf(NegativeControl):
    name = "bulk-tbf"
    size = 5_000_000
    rate = "20mbit"
    description = ("issue 15 negative control: a bottleneck-limited bulk upload: a 20 Mbit/s tbf (burst 16 kB, "
                   "queue 50 ms) on the router's server-side interface, default (large, autotuned) buffers, "
                   "BBR; the client uploads one 5 000 000-byte message (cwnd/pacing-limited, never "
                   "window-limited)")

    def body(self, lab):
        run = super().body
        return tbf_bottleneck(lab, self.rate, lambda: run(lab))

    def check(self, csegs, ssegs):
        super().check(csegs, ssegs)
        tbf = self.truth["app"]["tbf"]
        # the tbf queue is the only place packets can be lost here
        expect(tbf.get("dropped", 0) == len([d for d in self.truth["dropped_segments"]
                                              if d["src"].startswith(CLIENT_IP)]),
               f"{self.name}: tbf dropped {tbf} but the captures differ by {self.truth['dropped_segments']}")
        expect(tbf.get("overlimits", 0) > 0, f"{self.name}: the tbf never queued: not bottleneck-limited")


class BulkTbfNoTs(BulkTbf):
    name = "bulk-tbf-nots"
    client_sysctls = {"net.ipv4.tcp_timestamps": 0}
    nohs = False
    description = BulkTbf.description + "; no TCP timestamps (tcp_timestamps=0 in the client's namespace)"


class AppLimited(NegativeControl):
    name = "app-limited"
    delay_ms = 5.0
    size = 1_600_000
    chunk, pause_ms = 4096, 5
    client_args = ["--write-chunk", chunk, "--write-pause-ms", pause_ms]
    description = ("issue 15 negative control: an application-limited sender: the client writes its "
                   "1 600 000-byte message 4096 bytes at a time with a 5 ms sleep after each write (~6 Mbit/s); "
                   "default (large, autotuned) receive buffer, RTT 10 ms")

    def body(self, lab):
        res = super().body(lab)
        res.update({"write_chunk_bytes": self.chunk, "write_pause_ms": self.pause_ms})
        return res

    def check(self, csegs, ssegs):
        super().check(csegs, ssegs)
        expect(not self.truth["dropped_segments"], f"{self.name}: packets lost without a fault")


class AppLimitedNoTs(AppLimited):
    name = "app-limited-nots"
    client_sysctls = {"net.ipv4.tcp_timestamps": 0}
    nohs = False
    description = AppLimited.description + "; no TCP timestamps (tcp_timestamps=0 in the client's namespace)"


class SlowReader(RpcScenario):
    """In-order traffic, no fault: the server is slow to read, so its window closes and then opens in
    small steps: it sends window-update ACKs (same ACK number, new window) while client data is in
    flight. Those are not duplicate ACKs (RFC 5681 requires the same window): nothing here is HOL
    blocking or loss."""
    name = "slow-reader"
    delay_ms = 25.0
    snaplen = 96
    requests = 3
    message = 150_000
    rcvbuf = 32768
    stall_ms = 300
    read_chunk = 4096
    read_pause_ms = 2
    server_args = ["--rcvbuf", rcvbuf, "--stall-ms", stall_ms, "--read-chunk", read_chunk,
                   "--read-pause-ms", read_pause_ms, "--delayed-acks"]
    client_args = ["--timeout-ms", 10000]
    description = ("a slow reader, no fault: 3 requests of 150 000 bytes; the server (SO_RCVBUF 32768, delayed ACKs: "
                   "TCP_QUICKACK 0 after every read) waits 300 ms after each request's first line, then reads 4096 "
                   "bytes every 2 ms: its window closes, then opens in steps with window-update ACKs while client "
                   "data is in flight (false-positive check for HOL blocking and duplicate ACKs); RTT 50 ms")

    def body(self, lab):
        self.start_pair(lab)
        time.sleep(0.3)
        for i in range(self.requests):
            self.send(self.message)
            self.wait_event("done", i + 1, timeout=60)
        time.sleep(0.2)
        self.quit()
        done = [e for e in self.client_events() if e.get("event") == "done"]
        return {"client_log": self.clog_path.name, "server_log": self.slog_path.name,
                "message_bytes": self.message, "requests": len(done), "server_so_rcvbuf_requested": self.rcvbuf,
                "stall_ms": self.stall_ms, "read_chunk": self.read_chunk, "read_pause_ms": self.read_pause_ms,
                "proc_time_ms": [round(e["proc_ms"], 3) for e in done]}

    @staticmethod
    def window_updates(segs):
        """Server pure ACKs with the same ACK number as the server's previous ACK and a different window
        while client data beyond that ACK had been seen (outstanding): frames, in this capture."""
        high, prev, out = None, None, []
        for s in segs:
            if s.src == CLIENT_IP and (s.len or s.syn or s.fin):
                end = s.seq + s.len + (1 if s.syn or s.fin else 0)
                if high is None or pt.seq_after(end, high):
                    high = end
            elif s.src == SERVER_IP and s.ackf and not s.syn:
                if (prev is not None and s.len == 0 and not s.fin and s.ack == prev[0] and s.win != prev[1]
                        and high is not None and pt.seq_after(high, s.ack)):
                    out.append(s.frame)
                prev = (s.ack, s.win)
        return out

    def analyse(self, csegs, ssegs):
        self.truth["app"]["window_updates_with_data_outstanding"] = {
            "client_capture": self.window_updates(csegs), "server_capture": self.window_updates(ssegs)}

    def check(self, csegs, ssegs):
        expect(not self.truth["dropped_segments"], f"{self.name}: packets lost without a fault")
        expect(not any(s.src == CLIENT_IP and s.len and pt.transmissions(csegs, CLIENT_IP, s.seq)[0] is not s
                       for s in csegs), f"{self.name}: the client retransmitted data")
        expect(len(self.truth["app"]["window_updates_with_data_outstanding"]["client_capture"]) >= 3,
               f"{self.name}: fewer than 3 window updates with data outstanding in the client capture")


class SlowReaderNoTs(SlowReader):
    name = "slow-reader-nots"
    client_sysctls = {"net.ipv4.tcp_timestamps": 0}
    description = SlowReader.description.replace("; RTT 50 ms", "; RTT 50 ms; no TCP timestamps "
                                                 "(tcp_timestamps=0 in the client's namespace)")


class ReorderNoTs(RpcScenario):
    """Reordering and network duplicates without TCP timestamps: nothing is lost. The delay forwarder holds
    two client data frames 8 ms longer (later frames overtake them: the late original fills the hole)
    and sends two others twice. Without TSvals only IP ID order and timing tell a late original from a
    retransmission."""
    name = "reorder-nots"
    delay_ms = 10.0
    snaplen = 96
    message = 300_000
    late = (20, 101)
    dups = (50, 150)
    fwd_args = ["--late-nth", ",".join(map(str, late)), "--late-ms", 8, "--dup-nth", ",".join(map(str, dups))]
    client_sysctls = {"net.ipv4.tcp_timestamps": 0}
    description = ("reordering and network duplicates without TCP timestamps (tcp_timestamps=0 in the client's "
                   "namespace), nothing lost: the delay forwarder holds the 20th and 101st client data frames "
                   "8 ms longer (the late originals fill the holes) and sends the 50th and 150th twice; a "
                   "300 000-byte request")

    def body(self, lab):
        done = self.one_request(lab, self.message)
        return {"client_log": self.clog_path.name, "server_log": self.slog_path.name,
                "message_bytes": self.message, "request_start": round(done["start"], 6),
                "proc_time_ms": round(done["proc_ms"], 3), "status": done["status"]}

    def analyse(self, csegs, ssegs):
        done = self.truth["topology"]["delay_forwarder"].get("faults", {"late": [], "dup": []})
        data_s = [s for s in ssegs if s.src == CLIENT_IP and s.len > 0]
        late = []
        for f in done["late"]:
            arrivals = [s for s in data_s if s.seq == f["seq_raw"] and s.len == f["len"]]
            sends = pt.transmissions(csegs, CLIENT_IP, f["seq_raw"])
            # the late original at the server: the arrival with the forwarder's IP ID; the first
            # arrival above it came before it (the hole it filled)
            orig = next((s for s in arrivals if self.ip_id(s) == f["ip_id"]), None)
            above = next((s for s in data_s if s.seq == (f["seq_raw"] + f["len"]) % (1 << 32)), None)
            late.append(dict(f, client_frames=[s.frame for s in sends], server_frame=orig.frame if orig else None,
                             first_above_server_frame=above.frame if above else None,
                             hold_ms=round((orig.t - above.t) * 1000, 3) if orig and above else None,
                             retransmitted=len(sends) > 1))
        dups = []
        for f in done["dup"]:
            copies = [s for s in data_s if s.seq == f["seq_raw"] and s.len == f["len"] and self.ip_id(s) == f["ip_id"]]
            dups.append(dict(f, server_frames=[s.frame for s in copies]))
        self.truth["reordering"] = {"late": late, "duplicates": dups}

    def ip_id(self, seg):
        """IP ID of a server-capture segment (the lab's Seg does not carry it): read once with tshark."""
        if getattr(self, "_ip_ids", None) is None:
            path = self.out / f"{self.name}-server.pcapng"
            out = subprocess.run(["tshark", "-n", "-r", str(path), "-T", "fields", "-e", "frame.number",
                                  "-e", "ip.id"], capture_output=True, text=True, check=True).stdout
            self._ip_ids = {int(a): int(b, 16) for a, b in (ln.split("\t") for ln in out.splitlines()) if b}
        return self._ip_ids.get(seg.frame)

    def check(self, csegs, ssegs):
        r = self.truth["reordering"]
        expect(len(r["late"]) == len(self.late) and all(x["server_frame"] and x["first_above_server_frame"]
                                                        and x["first_above_server_frame"] < x["server_frame"]
                                                        for x in r["late"]),
               f"{self.name}: a late frame did not arrive after the frame above it: {r['late']}")
        expect(all(len(x["server_frames"]) == 2 for x in r["duplicates"]), f"{self.name}: duplicates {r['duplicates']}")
        expect(not [d for d in self.truth["dropped_segments"] if d["src"].startswith(CLIENT_IP)],
               f"{self.name}: client packets lost")


# ---------------------------------------------------------------------------------------------
BLACKHOLE = f"ip saddr {{ {CLIENT_IP}, {SERVER_IP} }} ip daddr {{ {CLIENT_IP}, {SERVER_IP} }}"


class Outage(RpcScenario):
    """Request 1 succeeds, then the router blackholes both directions, then request 2 is sent."""
    snaplen = 160
    delay_ms = 0.0

    def request_into_blackhole(self, lab):
        """The common opening: request 1 done, blackhole on, request 2 outstanding.
        Returns (nft rule handle, time the blackhole started)."""
        self.start_pair(lab)
        time.sleep(0.3)
        self.send(64)
        self.wait_event("done", 1)
        time.sleep(0.5)
        h = lab.nft_add("blackhole", BLACKHOLE)
        t_bh = time.time()
        time.sleep(0.5)
        self.send(64)
        return h, t_bh

    def outage_segments(self, csegs, req_start):
        """Transmissions of request 2's first byte in the client capture."""
        first = next(s for s in csegs if s.src == CLIENT_IP and s.len > 0 and s.t >= req_start - 0.001)
        return first, pt.transmissions(csegs, CLIENT_IP, first.seq)


class PeerVanishes(Outage):
    name = "peer-vanishes"
    retries2 = 6
    user_timeout_ms = 0
    client_sysctls = {"net.ipv4.tcp_retries2": 6}
    description = ("incident C: one request outstanding when the router starts to blackhole both directions for "
                   "good; the client (tcp_retries2=6 in its namespace) retransmits with exponential backoff until "
                   "the kernel aborts the connection with ETIMEDOUT")

    def body(self, lab):
        self.start_pair(lab, client_extra=["--user-timeout-ms", self.user_timeout_ms] if self.user_timeout_ms else [])
        time.sleep(0.3)
        self.send(64)
        self.wait_event("done", 1)
        time.sleep(0.5)
        lab.nft_add("blackhole", BLACKHOLE)
        time.sleep(0.5)
        self.send(64)
        limit = self.user_timeout_ms / 1000 if self.user_timeout_ms else tcp_model_timeout(self.retries2)
        self.wait_event("failed", 1, timeout=limit + 60)
        time.sleep(1.0)
        self.quit()
        ev = self.client_events()
        err = next(e for e in ev if e.get("event") == "error")
        return {"client_log": self.clog_path.name, "server_log": self.slog_path.name,
                "request_start": round(err["start"], 6), "error": err["error"], "errno": err["errno"],
                "error_time": round(err["t"], 6),
                "error_time_from_log": round(next(t for t, _, m in parse_bracket_log(self.clog_path)
                                                  if "failed" in m), 3)}

    def analyse(self, csegs, ssegs):
        app = self.truth["app"]
        first, tx = self.outage_segments(csegs, app["request_start"])
        t_err = app["error_time"]
        budget = tcp_model_timeout(self.retries2)
        rts = [s.t for s in tx[1:]]
        tlp = self.truth["kernel_counters"]["client"].get("TCPLossProbes", 0)
        self.truth["retries"] = {
            "tcp_retries2": self.retries2, "model_timeout_s": round(budget, 3),
            "tcp_user_timeout_ms": self.user_timeout_ms or None,
            "tail_loss_probes": tlp, "rto_retransmissions": len(rts) - tlp,
            "data": {"seq_raw": first.seq, "len": first.len},
            "first_send": round(first.t, 6), "first_send_frame": first.frame,
            "retransmissions": [{"n": i + 1, "time": round(s.t, 6), "frame": s.frame,
                                 "since_first_send_s": round(s.t - first.t, 6),
                                 "gap_s": round(s.t - (tx[i].t), 6)} for i, s in enumerate(tx[1:])],
            "retransmission_count": len(rts),
            "etimedout_time": t_err,
            "etimedout_since_first_send_s": round(t_err - first.t, 6),
            "etimedout_since_first_retransmission_s": round(t_err - rts[0], 6) if rts else None,
            "etimedout_since_last_retransmission_s": round(t_err - rts[-1], 6) if rts else None,
            # the TLP (if any) is the first retransmission; the RTO retransmissions follow it
            "first_rto_retransmission": round(rts[tlp], 6) if len(rts) > tlp else None,
            "etimedout_since_first_rto_retransmission_s": round(t_err - rts[tlp], 6) if len(rts) > tlp else None,
        }

    def check(self, csegs, ssegs):
        r = self.truth["retries"]
        expect(self.truth["app"]["error"] == "ETIMEDOUT", f"client error {self.truth['app']['error']}")
        cnt = self.truth["kernel_counters"]["client"]
        expect(cnt.get("TCPAbortOnTimeout") == 1, f"client TCPAbortOnTimeout {cnt.get('TCPAbortOnTimeout')}")
        if self.user_timeout_ms == 0:
            expect(r["rto_retransmissions"] == self.retries2,
                   f"{r['rto_retransmissions']} RTO retransmissions, want tcp_retries2={self.retries2}")


class PeerVanishesUserTimeout(PeerVanishes):
    name = "peer-vanishes-usertimeout"
    retries2 = 15
    client_sysctls = {}
    user_timeout_ms = 3000
    description = ("incident C with TCP_USER_TIMEOUT=3000 ms on the client socket (tcp_retries2 default 15): "
                   "the kernel clamps the RTO to the time left and aborts exactly user_timeout after its "
                   "reference instant, which shows whether that instant is the original send or the first "
                   "retransmission")

class CableBack(Outage):
    name = "cable-back"
    blackhole_s = 20.0
    description = ("incident C variant: one request outstanding when the router blackholes both directions for "
                   "~20 s, then the path comes back; the next retransmission is ACKed, the request completes and "
                   "the connection survives (a third request succeeds)")

    def body(self, lab):
        h, t_bh = self.request_into_blackhole(lab)
        time.sleep(max(0, t_bh + self.blackhole_s - time.time()))
        lab.nft_del(h)
        log(f"{self.name}: path restored after {time.time() - t_bh:.1f} s")
        self.wait_event("done", 2, timeout=150)
        time.sleep(0.3)
        self.send(64)
        self.wait_event("done", 3)
        time.sleep(0.3)
        self.quit()
        ev = self.client_events()
        done = [e for e in ev if e.get("event") == "done"]
        return {"client_log": self.clog_path.name, "server_log": self.slog_path.name,
                "requests": [{"id": e["id"], "start": round(e["start"], 6), "done": round(e["t"], 6),
                              "proc_time_ms": round(e["proc_ms"], 3)} for e in done]}

    def analyse(self, csegs, ssegs):
        req2 = self.truth["app"]["requests"][1]
        first, tx = self.outage_segments(csegs, req2["start"])
        bh = self.truth["faults"][0]
        delivered = next((s for s in ssegs if s.src == CLIENT_IP and pt.covers(s, first.seq)), None)
        self.truth["retries"] = {
            "data": {"seq_raw": first.seq, "len": first.len}, "first_send": round(first.t, 6),
            "retransmissions": [{"n": i + 1, "time": round(s.t, 6), "since_first_send_s": round(s.t - first.t, 6)}
                                for i, s in enumerate(tx[1:])],
            "blackhole_s": round(bh["removed_at"] - bh["added_at"], 3),
            "delivered_to_server_at": round(delivered.t, 6) if delivered else None,
            "recovered_after_s": round(delivered.t - first.t, 6) if delivered else None,
        }

    def check(self, csegs, ssegs):
        expect(len(self.truth["app"]["requests"]) == 3, "the connection did not survive")
        expect(self.truth["retries"]["delivered_to_server_at"] is not None, "request 2 never reached the server")


class PeerRestarts(Outage):
    name = "peer-restarts"
    server_args = ["--linger0"]
    description = ("incident C variant: one request outstanding when the router blackholes both directions; the "
                   "server process is killed (its sockets have SO_LINGER 0, so the connection state is discarded as "
                   "on a host restart; its RST is lost in the blackhole) and a new server listens on the same port; "
                   "when the path is restored the next retransmission is answered with RST")

    def body(self, lab):
        h, t_bh = self.request_into_blackhole(lab)
        time.sleep(2.0)
        t_kill = time.time()
        lab.stop_proc(self.server, signal.SIGKILL)
        slog2 = self.logpath("server2")
        self.server2 = lab.app("server", "rpc.py", "server", "--port", RPC_PORT, "--linger0", log=slog2, tz=APP_TZ)
        time.sleep(max(0, t_bh + 8.0 - time.time()))
        lab.nft_del(h)
        t_restore = time.time()
        self.wait_event("failed", 1, timeout=150)
        time.sleep(0.5)
        self.quit()
        ev = self.client_events()
        err = next(e for e in ev if e.get("event") == "error")
        return {"client_log": self.clog_path.name, "server_log": self.slog_path.name, "server2_log": slog2.name,
                "server_killed_at": round(t_kill, 6), "path_restored_at": round(t_restore, 6),
                "request_start": round(err["start"], 6), "error": err["error"], "errno": err["errno"],
                "error_time": round(err["t"], 6)}

    def analyse(self, csegs, ssegs):
        app = self.truth["app"]
        first, tx = self.outage_segments(csegs, app["request_start"])
        rst_c = [s for s in csegs if s.rst and s.src == SERVER_IP]
        rst_s = [s for s in ssegs if s.rst and s.src == SERVER_IP]
        self.truth["retries"] = {
            "data": {"seq_raw": first.seq, "len": first.len}, "first_send": round(first.t, 6),
            "retransmissions": [{"n": i + 1, "time": round(s.t, 6), "since_first_send_s": round(s.t - first.t, 6)}
                                for i, s in enumerate(tx[1:])],
            "rst_seen_by_client": [s.to_json() for s in rst_c],
            "rst_sent_by_server": [s.to_json() for s in rst_s],
        }

    def check(self, csegs, ssegs):
        r = self.truth["retries"]
        expect(self.truth["app"]["error"] == "ECONNRESET", f"client error {self.truth['app']['error']}")
        expect(len(r["rst_seen_by_client"]) >= 1, "client never saw a RST")
        expect(len(r["rst_sent_by_server"]) > len(r["rst_seen_by_client"]),
               "the killed server's RST should be in the server capture only (lost in the blackhole)")


class PeerVanishesRetries8(PeerVanishes):
    name = "peer-vanishes-retries8"
    retries2 = 8
    client_sysctls = {"net.ipv4.tcp_retries2": 8}
    description = ("incident C with tcp_retries2=8 in the client's namespace (budget tcp_model_timeout(8) = 102.2 s "
                   "from the first RTO retransmission): one request outstanding when the router blackholes both "
                   "directions; the kernel aborts with ETIMEDOUT after ~108 s (a long run: ~2 min)")


class PeerVanishesUserTimeout1500(PeerVanishesUserTimeout):
    name = "peer-vanishes-usertimeout1500"
    user_timeout_ms = 1500
    description = ("incident C with TCP_USER_TIMEOUT=1500 ms on the client socket (tcp_retries2 default 15): the "
                   "kernel aborts 1.5 s after the first RTO retransmission")


class PeerVanishesRtoMin(PeerVanishes):
    """The route's rto_min sets the RTO floor (the timer backs off from ~50 ms), but tcp_model_timeout()
    still counts the tcp_retries2 budget with the constant TCP_RTO_MIN (200 ms)."""
    name = "peer-vanishes-rtomin"
    retries2 = 5
    route_rto_min_ms = 50
    client_sysctls = {"net.ipv4.tcp_retries2": 5}
    description = ("incident C with a route `rto_min 50ms` (ip route change default ... rto_min 50ms in the client's "
                   "namespace) and tcp_retries2=5: the retransmission timer backs off from ~58 ms while the abort "
                   "budget (12.6 s from the first RTO retransmission) is still counted with TCP_RTO_MIN = 200 ms")

    def prepare(self, lab):
        lab.ns_exec("client", "ip", "route", "change", "default", "via", netlab.R1_CLIENT_IP, "dev", "eth0",
                    "rto_min", f"{self.route_rto_min_ms}ms")
        self.route = lab.ns_exec("client", "ip", "route", "show", "default").stdout.strip()

    def analyse(self, csegs, ssegs):
        super().analyse(csegs, ssegs)
        self.truth["retries"].update(route=self.route, route_rto_min_ms=self.route_rto_min_ms,
                                     budget_rto_min_ms=200)

    def check(self, csegs, ssegs):
        expect(self.truth["app"]["error"] == "ETIMEDOUT", f"client error {self.truth['app']['error']}")
        expect(f"rto_min {self.route_rto_min_ms}ms" in self.route.replace("rto_min lock", "rto_min"),
               f"route without rto_min: {self.route}")
        cnt = self.truth["kernel_counters"]["client"]
        expect(cnt.get("TCPAbortOnTimeout") == 1, f"client TCPAbortOnTimeout {cnt.get('TCPAbortOnTimeout')}")


def control_transmissions(segs, src: str, pick) -> list[dict]:
    """Segments from `src` chosen by `pick(seg)` (SYNs, FINs, probes): frame, time, interval since the previous."""
    out, prev = [], None
    for x in segs:
        if x.src == src and pick(x):
            out.append({"frame": x.frame, "time": round(x.t, 6), "seq_raw": x.seq, "len": x.len,
                        "flags": f"0x{x.flags:03x}", "gap_s": round(x.t - prev, 6) if prev is not None else None})
            prev = x.t
    return out


class OrphanFin(Outage):
    name = "orphan-fin"
    description = ("issue 14.2: after one request the router blackholes both directions and the client close()s "
                   "its socket and exits; the orphaned socket retransmits its FIN (no data outstanding) until the "
                   "kernel drops it (tcp_orphan_retries=0: 8 retries while the RTO is below rto_max, "
                   "tcp_model_timeout(8) = 102.2 s; a long run: ~2 min)")

    def body(self, lab):
        self.start_pair(lab)
        time.sleep(0.3)
        self.send(64)
        self.wait_event("done", 1)
        time.sleep(0.5)
        lab.nft_add("blackhole", BLACKHOLE)
        time.sleep(0.5)
        self.quit()                              # the client logs close() and exits: the socket is orphaned
        ev = self.client_events()
        closed = next(e for e in ev if e.get("event") == "close")
        # the orphan lives in FIN-WAIT-1 until the kernel gives up: poll it (no application is left to tell)
        states = []
        deadline = time.time() + tcp_model_timeout(8) + 60
        t_gone = None
        while time.time() < deadline:
            r = lab.ns_exec("client", "ss", "-tnoH", "state", "fin-wait-1", "dst", SERVER_IP, check=False)
            line = r.stdout.strip()
            if not line:
                t_gone = time.time()
                break
            # `ss -o` shows timer:(on,<left>,<retransmissions>): keep one sample per retransmission count
            timer = line.split("timer:")[-1].split(")")[0] + ")"
            if not states or states[-1]["ss_timer"].rsplit(",", 1)[-1] != timer.rsplit(",", 1)[-1]:
                states.append({"t": round(time.time(), 3), "ss_timer": timer})
            time.sleep(0.1)
        if t_gone is None:
            raise LabError(f"{self.name}: the orphaned socket was still in FIN-WAIT-1 after {deadline - closed['t']:.0f} s")
        return {"client_log": self.clog_path.name, "server_log": self.slog_path.name,
                "close_time": round(closed["t"], 6), "orphan_gone_by": round(t_gone, 3),
                "orphan_ss_timer_samples": states[:40]}

    def analyse(self, csegs, ssegs):
        fins = control_transmissions(csegs, CLIENT_IP, lambda x: x.fin)
        app = self.truth["app"]
        tlp = self.truth["kernel_counters"]["client"].get("TCPLossProbes", 0)
        first_rto = fins[1 + tlp]["time"] if len(fins) > 1 + tlp else None
        self.truth["control"] = {
            "kind": "fin", "fin_transmissions": fins, "retransmission_count": len(fins) - 1,
            "first_send": fins[0]["time"] if fins else None, "tail_loss_probes": tlp,
            "orphan_retries_effective": 8, "model_timeout_s": tcp_model_timeout(8),
            "orphan_gone_since_first_send_s": round(app["orphan_gone_by"] - fins[0]["time"], 3) if fins else None,
            "orphan_gone_since_first_rto_s": round(app["orphan_gone_by"] - first_rto, 3) if first_rto else None,
            "data_outstanding_at_close": False,
        }

    def check(self, csegs, ssegs):
        c = self.truth["control"]
        expect(c["retransmission_count"] >= 3, f"only {c['retransmission_count']} FIN retransmissions")
        expect(all(x["len"] == 0 for x in c["fin_transmissions"]), "a FIN carried data")
        cnt = self.truth["kernel_counters"]["client"]
        expect(cnt.get("TCPAbortOnTimeout") == 1, f"client TCPAbortOnTimeout {cnt.get('TCPAbortOnTimeout')}")


class SynBlackhole(RpcScenario):
    name = "syn-blackhole"
    snaplen = 160
    syn_retries = 2
    client_sysctls = {"net.ipv4.tcp_syn_retries": 2}
    client_args = ["--connect-timeout-s", 0]
    description = ("issue 14.2: the router drops everything the server sends (its SYN-ACKs never arrive) before the "
                   "client connects; connect() has no deadline of its own, so the client retransmits the SYN "
                   "(tcp_syn_retries=2 in its namespace; tcp_syn_linear_timeouts=4 keeps the RTO at 1 s for the first "
                   "retransmissions) until its time budget tcp_model_timeout(2, 1 s) = 7 s from the first SYN is spent "
                   "and connect() fails with ETIMEDOUT; the server retransmits its SYN-ACK meanwhile")

    def body(self, lab):
        # only the server's packets: its capture then shows the SYNs arriving and its SYN-ACK retransmissions
        lab.nft_add("blackhole server->client", f"ip saddr {SERVER_IP} ip daddr {CLIENT_IP}")
        self.start_pair(lab)
        self.wait_event("failed", 1, timeout=60)
        ev = self.client_events()
        err = next(e for e in ev if e.get("event") == "connect_error")
        return {"client_log": self.clog_path.name, "server_log": self.slog_path.name,
                "connect_start": round(err["start"], 6), "error": err["error"], "errno": err["errno"],
                "error_time": round(err["t"], 6)}

    def analyse(self, csegs, ssegs):
        syns = control_transmissions(csegs, CLIENT_IP, lambda x: x.syn and not x.ackf)
        synacks = control_transmissions(ssegs, SERVER_IP, lambda x: x.syn and x.ackf)
        app = self.truth["app"]
        lin = int(self.truth["sysctls"]["client"].get("net.ipv4.tcp_syn_linear_timeouts", 0))
        # tcp_write_timeout() in SYN_SENT: expired when icsk_retransmits >= tcp_syn_retries +
        # tcp_syn_linear_timeouts, or when retransmits_timed_out(tcp_syn_retries) finds the time since
        # retrans_stamp (set by tcp_connect() to the first SYN) past tcp_model_timeout(tcp_syn_retries,
        # tcp_timeout_init() = 1 s); both are checked only when the SYN timer fires
        self.truth["control"] = {
            "kind": "syn", "syn_transmissions": syns, "retransmission_count": len(syns) - 1,
            "server_synack_transmissions": synacks,
            "first_send": syns[0]["time"], "tcp_syn_retries": self.syn_retries, "tcp_syn_linear_timeouts": lin,
            "max_retransmissions_by_count": self.syn_retries + lin,
            "model_timeout_s": tcp_model_timeout(self.syn_retries, 1000),
            "etimedout_since_first_send_s": round(app["error_time"] - syns[0]["time"], 6),
            "etimedout_since_last_retransmission_s": round(app["error_time"] - syns[-1]["time"], 6),
        }

    def check(self, csegs, ssegs):
        c = self.truth["control"]
        expect(self.truth["app"]["error"] == "ETIMEDOUT", f"client error {self.truth['app']['error']}")
        gaps = [x["gap_s"] for x in c["syn_transmissions"][1:]]
        expect(c["etimedout_since_first_send_s"] >= c["model_timeout_s"],
               f"connect() failed {c['etimedout_since_first_send_s']} s after the first SYN, before the budget")
        # the abort is the first timer expiry past the budget: one (doubled) interval after the last SYN
        expect(c["etimedout_since_last_retransmission_s"] <= 2 * max(gaps) + 0.5,
               f"ETIMEDOUT {c['etimedout_since_last_retransmission_s']} s after the last SYN (intervals {gaps})")


class SynAckLost(SynBlackhole):
    name = "synack-lost"
    client_sysctls = {}
    blackhole_s = 2.5
    description = ("issue 16: the router drops what the server sends for the first 2.5 s of the handshake (its "
                   "SYN-ACKs), then lets it through: the client's SYN retransmissions and the server's SYN-ACK "
                   "retransmissions both end recovered — the client's when a SYN-ACK arrives, the server's when the "
                   "client's ACK completes the handshake; one request then completes")

    def body(self, lab):
        h = lab.nft_add("blackhole server->client", f"ip saddr {SERVER_IP} ip daddr {CLIENT_IP}")
        t0 = time.time()
        self.start_pair(lab)
        time.sleep(max(0.0, t0 + 0.5 + self.blackhole_s - time.time()))   # start_pair waits 0.5 s for the server
        lab.nft_del(h)
        self.send(64)
        self.wait_event("done", 1, timeout=30)
        time.sleep(0.2)
        self.quit()
        ev = self.client_events()
        conn = next(e for e in ev if e.get("event") == "connected")
        return {"client_log": self.clog_path.name, "server_log": self.slog_path.name, "connected": round(conn["t"], 6)}

    def analyse(self, csegs, ssegs):
        syns = control_transmissions(csegs, CLIENT_IP, lambda x: x.syn and not x.ackf)
        synacks = control_transmissions(ssegs, SERVER_IP, lambda x: x.syn and x.ackf)
        arrived = control_transmissions(csegs, SERVER_IP, lambda x: x.syn and x.ackf)
        # the client's ACK of the SYN-ACK: its first segment after the SYN-ACK arrived, seen at the server
        ack = next(x for x in ssegs if x.src == CLIENT_IP and not x.syn and x.t > synacks[0]["time"])
        self.truth["control"] = {
            "kind": "syn", "syn_transmissions": syns, "retransmission_count": len(syns) - 1,
            "server_synack_transmissions": synacks, "synack_arrived_at_client": arrived,
            "syn_arrived_at_server": control_transmissions(ssegs, CLIENT_IP, lambda x: x.syn and not x.ackf),
            "server_handshake_ack": {"frame": ack.frame, "time": round(ack.t, 6)},
        }

    def check(self, csegs, ssegs):
        c = self.truth["control"]
        expect(c["retransmission_count"] >= 1, "the client did not retransmit its SYN")
        expect(len(c["server_synack_transmissions"]) >= 2, "the server did not retransmit its SYN-ACK")
        expect(len(c["synack_arrived_at_client"]) >= 1, "no SYN-ACK reached the client")


class KeepalivePeerVanishes(Outage):
    name = "keepalive-peer-vanishes"
    keepalive = (1, 1, 3)
    client_args = ["--keepalive", "1:1:3"]
    description = ("issue 14.2: an idle connection with SO_KEEPALIVE (TCP_KEEPIDLE=1 s, TCP_KEEPINTVL=1 s, "
                   "TCP_KEEPCNT=3 on the client socket) whose peer vanishes (router blackholes both directions after "
                   "one request); the client waits in recv(); after 3 unanswered keepalive probes the kernel resets "
                   "the connection and recv() fails with ETIMEDOUT")

    def body(self, lab):
        self.start_pair(lab)
        time.sleep(0.3)
        self.send(64)
        self.wait_event("done", 1)
        lab.nft_add("blackhole", BLACKHOLE)
        self.client.stdin.write("wait\n")
        self.client.stdin.flush()
        self.wait_event("failed", 1, timeout=30)
        time.sleep(0.5)
        self.quit()
        ev = self.client_events()
        err = next(e for e in ev if e.get("event") == "error")
        done = next(e for e in ev if e.get("event") == "done")
        return {"client_log": self.clog_path.name, "server_log": self.slog_path.name,
                "keepalive": dict(zip(("TCP_KEEPIDLE_s", "TCP_KEEPINTVL_s", "TCP_KEEPCNT"), self.keepalive)),
                "request_done": round(done["t"], 6), "wait_start": round(err["start"], 6),
                "error": err["error"], "errno": err["errno"], "error_time": round(err["t"], 6)}

    def analyse(self, csegs, ssegs):
        done = self.truth["app"]["request_done"]
        # keepalive probes: pure ACKs from the client one below its next sequence number, after the request
        nxt = max((x.seq + x.len) % (1 << 32) for x in csegs if x.src == CLIENT_IP and x.len > 0)
        probes = control_transmissions(csegs, CLIENT_IP, lambda x: x.t > done and x.len == 0 and not x.rst
                                       and x.seq == (nxt - 1) % (1 << 32))
        rst = [x.to_json() for x in csegs if x.src == CLIENT_IP and x.rst]
        app = self.truth["app"]
        self.truth["control"] = {
            "kind": "probe", "probe": "keepalive", "probes": probes, "probe_count": len(probes),
            "rst_from_client": rst,
            "etimedout_since_first_probe_s": round(app["error_time"] - probes[0]["time"], 6) if probes else None,
        }

    def check(self, csegs, ssegs):
        c = self.truth["control"]
        expect(self.truth["app"]["error"] == "ETIMEDOUT", f"client error {self.truth['app']['error']}")
        expect(c["probe_count"] == self.keepalive[2], f"{c['probe_count']} keepalive probes, want {self.keepalive[2]}")
        expect(len(c["rst_from_client"]) == 1, f"client RSTs: {c['rst_from_client']}")


class ZeroWindowProbes(AppNotReading):
    name = "zero-window-probes"
    stall_ms = 8000
    server_args = ["--stall-ms", 8000]
    client_args = ["--timeout-ms", 30000]
    description = ("issue 14.2: the server application stops reading for 8 s after a request's first line; its "
                   "window closes and the client probes the zero window (no data outstanding: the probes carry "
                   "none) with a backed-off timer; every probe is answered with a zero window, then the app "
                   "reads and the 1 000 000-byte request completes")

    def analyse(self, csegs, ssegs):
        super().analyse(csegs, ssegs)
        zero_t = self.truth["app"]["window"]["first_zero_window_t"]
        probes = control_transmissions(csegs, CLIENT_IP, lambda x: zero_t is not None and x.t > zero_t
                                       and x.len == 0 and not (x.syn or x.fin or x.rst)
                                       and any(y.src == CLIENT_IP and y.len > 0 and (y.seq + y.len - 1 - x.seq)
                                               % (1 << 32) == 0 and y.t < x.t for y in csegs))
        self.truth["control"] = {"kind": "probe", "probe": "zero_window", "probes": probes,
                                 "probe_count": len(probes)}

    def check(self, csegs, ssegs):
        super().check(csegs, ssegs)
        expect(self.truth["control"]["probe_count"] >= 3, f"{self.truth['control']['probe_count']} zero-window probes")


class ZeroWindowPeerVanishes(RpcScenario):
    name = "zero-window-peer-vanishes"
    snaplen = 96
    message = 1_000_000
    retries2 = 5
    client_sysctls = {"net.ipv4.tcp_retries2": 5}
    server_args = ["--stall-ms", 600_000]
    description = ("the server application never reads (its window closes), then the router blackholes both "
                   "directions: the client's zero-window probes go unanswered and the kernel aborts after "
                   "tcp_retries2=5 unanswered probes (tcp_probe_timer), send() fails with ETIMEDOUT")

    def body(self, lab):
        self.start_pair(lab)
        time.sleep(0.3)
        self.send(self.message)
        time.sleep(2.0)                          # window closed, probes answered with a zero window
        lab.nft_add("blackhole", BLACKHOLE)
        self.wait_event("failed", 1, timeout=120)
        time.sleep(0.5)
        self.quit()
        ev = self.client_events()
        err = next(e for e in ev if e.get("event") == "error")
        return {"client_log": self.clog_path.name, "server_log": self.slog_path.name,
                "message_bytes": self.message, "request_start": round(err["start"], 6),
                "error": err["error"], "errno": err["errno"], "error_time": round(err["t"], 6)}

    def analyse(self, csegs, ssegs):
        bh = self.truth["faults"][0]["added_at"]
        highest = max(((x.seq + x.len) % (1 << 32), x.t) for x in csegs if x.src == CLIENT_IP and x.len > 0)
        probes = control_transmissions(csegs, CLIENT_IP, lambda x: x.len == 0 and not (x.syn or x.fin or x.rst)
                                       and x.seq == (highest[0] - 1) % (1 << 32) and x.t > highest[1])
        app = self.truth["app"]
        self.truth["control"] = {
            "kind": "probe", "probe": "zero_window", "probes": probes, "probe_count": len(probes),
            "unanswered_probes": [p for p in probes if p["time"] > bh], "tcp_retries2": self.retries2,
            "etimedout_since_last_probe_s": round(app["error_time"] - probes[-1]["time"], 6) if probes else None,
        }

    def check(self, csegs, ssegs):
        c = self.truth["control"]
        expect(self.truth["app"]["error"] == "ETIMEDOUT", f"client error {self.truth['app']['error']}")
        expect(len(c["unanswered_probes"]) == self.retries2,
               f"{len(c['unanswered_probes'])} unanswered probes, want tcp_retries2={self.retries2}")


class SeqWrap(RpcScenario):
    name = "seq-wrap"
    delay_ms = 1.0
    snaplen = 96
    size = 1_000_000
    bytes_before_wrap = 300_000
    description = ("client->server sequence numbers cross 2**32: the 4-tuple was chosen (ISN probe, see "
                   "apps/isnprobe.py) so the ISN is ~300 kB below 2**32; a 1 MB request; the first full-size data "
                   "segment after the wrap point (as planned) is dropped in the router")

    def prepare(self, lab):
        r = lab.ns_exec("client", sys.executable, str(netlab.APPS / "isnprobe.py"), "--host", SERVER_IP,
                        "--port", str(RPC_PORT), "--bytes-before-wrap", str(self.bytes_before_wrap), timeout=120)
        plan = json.loads(r.stdout)
        self.plan = plan
        p = plan["plan"]
        log(f"{self.name}: source port {p['sport']}, connecting in {p['wait_s']:.1f} s")
        # full-size data segment number whose first byte is just past the wrap (1-based; first byte = ISN+1)
        mss = 1448
        self.drop_n = self.bytes_before_wrap // mss + 2
        lab.nft_add(f"drop data segment #{self.drop_n}",
                    f"ip saddr {CLIENT_IP} ip daddr {SERVER_IP} tcp dport {RPC_PORT} ip length > 500 "
                    f"numgen inc mod 1000000000 == {self.drop_n - 1}")

    def body(self, lab):
        p = self.plan["plan"]
        self.start_pair(lab, client_extra=["--sport", p["sport"], "--connect-at", p["connect_at"]])
        self.send(self.size)
        self.wait_event("done", 1, timeout=p["wait_s"] + 60)
        time.sleep(0.2)
        self.quit()
        ev = self.client_events()
        done = next(e for e in ev if e.get("event") == "done")
        return {"client_log": self.clog_path.name, "server_log": self.slog_path.name, "message_bytes": self.size,
                "proc_time_ms": round(done["proc_ms"], 3), "isn_plan": self.plan}

    def analyse(self, csegs, ssegs):
        hs = self.truth["handshake"]
        isn = hs["client_isn"]
        data = [s for s in csegs if s.src == CLIENT_IP and s.len > 0]
        wrapped = [s for s in data if s.seq < isn]
        crossing = next((s for s in data if s.seq >= isn and s.seq + s.len > 1 << 32), None)
        d = [x for x in self.truth["dropped_segments"] if x["src"].startswith(CLIENT_IP)]
        self.truth["seq_wrap"] = {
            "client_isn": isn, "bytes_before_wrap": (1 << 32) - isn - 1,
            "predicted_isn": self.plan["plan"]["predicted_isn"],
            "isn_prediction_error": ((isn - self.plan["plan"]["predicted_isn"] + (1 << 31)) % (1 << 32)) - (1 << 31),
            "data_segments": len(data), "data_segments_after_wrap": len(wrapped),
            "segment_crossing_2_32": crossing.to_json() if crossing else None,
            "first_segment_after_wrap": wrapped[0].to_json() if wrapped else None,
        }
        f = self.truth["faults"][0]
        f["nth_data_segment"] = self.drop_n
        if d:
            seq = d[0]["seq_raw"]
            tx = pt.transmissions(csegs, CLIENT_IP, seq)
            f.update({"direction": "client->server", "seq_raw": seq, "len": d[0]["len"], "sent_at": d[0]["time"],
                      "client_frame": d[0]["frame"], "after_wrap": seq < isn,
                      "retransmissions": [dict(s.to_json(), after_ms=round((s.t - tx[0].t) * 1000, 3))
                                          for s in tx[1:]]})

    def check(self, csegs, ssegs):
        w = self.truth["seq_wrap"]
        f = self.truth["faults"][0]
        expect(w["data_segments_after_wrap"] > 0, "no data segment after 2**32")
        expect(f["nft_counter"].get("packets") == 1, f"nft dropped {f['nft_counter']}")
        expect(len(self.truth["dropped_segments"]) == 1, f"capture diff {self.truth['dropped_segments']}")


SCENARIOS = {c.name: c for c in (HeartbeatLoss, HeartbeatLossNoSack, HeartbeatLossRaftLog, HeartbeatLossTwice, HeartbeatLossNoTs, SlowReader, SlowReaderNoTs,
                                 ReorderNoTs, SmallRcvbuf, SmallRcvbufNoTs, SmallRcvbuf2048NoTs, SmallRcvbufReset,
                                 SmallRcvbuf16k, SmallRcvbuf64k, SmallRcvbufClamp, SmallRcvbufClamp14, SmallRcvbuf16kNoTs, SmallRcvbuf64kNoTs, SmallRcvbufClampNoTs, SmallRcvbufClamp20kNoTs,
                                 SmallRcvbuf64kTbf, AppNotReading, PeerVanishes, PeerVanishesUserTimeout, CableBack, PeerRestarts,
                                 CleanHeartbeat, CleanBulk, CleanRpc, SeqWrap, BulkLoss, ManyConns, ManyConnsSmall, ManyConnsSmallNoTs,
                                 BulkTbf, BulkTbfNoTs, AppLimited, AppLimitedNoTs,
                                 PeerVanishesRetries8, PeerVanishesUserTimeout1500, PeerVanishesRtoMin, OrphanFin,
                                 SynBlackhole, SynAckLost, KeepalivePeerVanishes, ZeroWindowProbes, ZeroWindowPeerVanishes)}


def truth_in_words(t: dict) -> str:
    """One sentence of ground truth per capture, from its truth file."""
    n, app, f = t["scenario"], t["app"], (t["faults"][0] if t["faults"] else {})
    if n.startswith("heartbeat-loss"):
        r = f["retransmissions"][0]
        return (f"router dropped heartbeat #{f['heartbeat_seq']} (seq_raw {f['seq_raw']}, len {f['len']}, client frame "
                f"{f['client_frame']}); retransmitted {r['after_ms']:.0f} ms later; sender logged timeout of "
                f"#{', #'.join(str(x['seq']) for x in app['timeouts'])}; receiver Read cost max {app['read_cost_ms_max']} ms")
    if n.startswith("small-rcvbuf"):
        tr = app["transfer"]
        after = app.get("server_so_rcvbuf_after_accept")
        rcvbuf = f"{after} set after accept" if after else app["server_so_rcvbuf_requested"]
        window = tr["server_advertised_window_bytes"]["median" if after else "max"]   # (before the clamp: more)
        s = (f"server SO_RCVBUF {rcvbuf} -> window {window} B "
             f"(wscale {tr['server_window_scale']}), MSS {t['handshake']['client_mss']}; "
             f"{tr['payload_bytes']} B in {tr['duration_ms'] / 1000:.2f} s; " + (
                 f"client proc_time {app['proc_time_ms']:.0f} ms ({app['status']}, timeout {app['app_timeout_ms']} ms)"
                 if "proc_time_ms" in app else
                 f"server killed after {app['server_killed_at'] - app['request_start']:.2f} s: RST (client frame "
                 f"{tr['rst_client_capture']['frame']}), client {app['error']}"))
        if n.endswith("nohs"):
            s += f"; first {t['captures']['client']['cut_packets']} packets cut (no SYN: window scales unknown)"
        return s
    if n.startswith("peer-vanishes"):
        r = t["retries"]
        how = (f"TCP_USER_TIMEOUT {r['tcp_user_timeout_ms']} ms" if r["tcp_user_timeout_ms"]
               else f"tcp_retries2={r['tcp_retries2']} (budget {r['model_timeout_s']} s)")
        return (f"blackhole starts {r['first_send'] - f['added_at']:.1f} s before the request; {how}; {r['retransmission_count']} "
                f"retransmissions ({r['tail_loss_probes']} TLP + {r['rto_retransmissions']} RTO); ETIMEDOUT "
                f"{r['etimedout_since_first_send_s']:.3f} s after the original send, "
                f"{r['etimedout_since_first_rto_retransmission_s']:.3f} s after the first RTO retransmission")
    if n == "orphan-fin":
        c = t["control"]
        return (f"client close()d with no data outstanding, peer blackholed: FIN retransmitted {c['retransmission_count']} "
                f"times ({c['tail_loss_probes']} TLP + {c['retransmission_count'] - c['tail_loss_probes']} RTO); the orphaned "
                f"socket was gone {c['orphan_gone_since_first_send_s']:.1f} s after the first FIN "
                f"({c['orphan_gone_since_first_rto_s']:.1f} s after the first RTO retransmission)")
    if n == "syn-blackhole":
        c = t["control"]
        gaps = ", ".join(f"{x['gap_s']:.2f}" for x in c["syn_transmissions"][1:])
        return (f"tcp_syn_retries={c['tcp_syn_retries']}, tcp_syn_linear_timeouts={c['tcp_syn_linear_timeouts']}: "
                f"{c['retransmission_count']} SYN retransmissions (intervals {gaps} s); connect() ETIMEDOUT "
                f"{c['etimedout_since_first_send_s']:.3f} s after the first SYN (budget tcp_model_timeout("
                f"{c['tcp_syn_retries']}, 1 s) = {c['model_timeout_s']} s)")
    if n == "keepalive-peer-vanishes":
        c = t["control"]
        return (f"{c['probe_count']} unanswered keepalive probes 1 s apart, then the client's RST; recv() ETIMEDOUT "
                f"{c['etimedout_since_first_probe_s']:.3f} s after the first probe")
    if n == "zero-window-probes":
        c = t["control"]
        gaps = ", ".join(f"{x['gap_s']:.2f}" for x in c["probes"][1:])
        return (f"server app did not read for {app['stall_ms']} ms; {c['probe_count']} zero-window probes (intervals "
                f"{gaps} s), each answered with a zero window; the request took {app['proc_time_ms']:.0f} ms")
    if n == "zero-window-peer-vanishes":
        c = t["control"]
        return (f"{c['probe_count']} zero-window probes, the last {len(c['unanswered_probes'])} unanswered "
                f"(tcp_retries2={c['tcp_retries2']}); send() ETIMEDOUT {c['etimedout_since_last_probe_s']:.3f} s after "
                f"the last probe")
    if n == "app-not-reading":
        w = app["window"]
        return (f"server app did not read for {app['stall_ms']} ms; its window went from up to {w['max_bytes']} B "
                f"to 0 ({w['zero_window_count']} zero-window ACKs); the request took {app['proc_time_ms']:.0f} ms")
    if n == "cable-back":
        r = t["retries"]
        return (f"blackhole {r['blackhole_s']:.1f} s; request 2 retransmitted {len(r['retransmissions'])} times, "
                f"delivered {r['recovered_after_s']:.2f} s after its first send; a 3rd request succeeds")
    if n == "peer-restarts":
        r = t["retries"]
        return (f"blackhole, server killed {app['server_killed_at'] - r['first_send']:.1f} s after the request "
                f"(its RST lost), new server, path restored at +{app['path_restored_at'] - r['first_send']:.1f} s; "
                f"retransmission #{len(r['retransmissions'])} answered by RST; client error {app['error']}")
    if n == "seq-wrap":
        w = t["seq_wrap"]
        return (f"client ISN {w['client_isn']} ({w['bytes_before_wrap']} B before 2^32); "
                f"{w['data_segments_after_wrap']} of {w['data_segments']} data segments after the wrap; "
                f"router dropped data segment #{f.get('nth_data_segment')} (seq_raw {f.get('seq_raw')}), "
                f"retransmitted {f['retransmissions'][0]['after_ms']:.1f} ms later" if f.get("retransmissions") else "")
    if n.startswith("slow-reader"):
        w = app["window_updates_with_data_outstanding"]
        return (f"no fault, no retransmission; {len(w['client_capture'])} window-update ACKs with client data "
                f"outstanding in the client capture ({len(w['server_capture'])} in the server capture); "
                f"proc_time {', '.join(f'{x:.0f}' for x in app['proc_time_ms'])} ms")
    if n == "reorder-nots":
        r = t["reordering"]
        late = "; ".join(f"client data seq_raw {x['seq_raw']} held 8 ms (server frame {x['server_frame']}, "
                         f"{x['hold_ms']:.1f} ms after frame {x['first_above_server_frame']})" for x in r["late"])
        dups = ", ".join(f"{x['server_frames']}" for x in r["duplicates"])
        return f"nothing lost; {late}; duplicated (server frames) {dups}"
    if n.startswith("many-conns"):
        c, ports = app["connections"], app["ports"]
        return (f"{c['done']} of {c['connections']} RPCs answered; nft dropped {f['nft_counter'].get('packets')} "
                f"client->server packets, all to port {ports['lossy']} (1 % random); port {ports['small_rcvbuf_16k']}: "
                f"SO_RCVBUF 16384; port {ports['clean']}: no fault")
    if n == "bulk-loss":
        return f"nft dropped {f['nft_counter'].get('packets')} client->server packets (1 % random)"
    if n.startswith(("bulk-tbf", "app-limited")):
        h, tr = app["window_headroom"], app["transfer"]
        s = (f"not window-limited: flight at most {h['max_flight_bytes']} B = {h['max_flight_over_window']:.0%} of "
             f"the window then ({h['window_at_max_flight_bytes']} B), 0 of {h['new_data_segments']} new-data segments "
             f"within one MSS of the right edge (client capture); {app['message_bytes']} B in "
             f"{tr['duration_ms'] / 1000:.2f} s ({tr['goodput_mbps']:.1f} Mbit/s)")
        if "tbf" in app:
            s += f"; tbf {app['tbf']['rate']}: {app['tbf']['dropped']} dropped, {app['tbf']['overlimits']} overlimits"
        if n.endswith("nohs"):
            s += f"; first {t['captures']['client']['cut_packets']} packets cut (no SYN: window scales unknown)"
        return s
    if n.startswith("clean"):
        extra = f", proc_time {app['proc_time_ms']:.0f} ms" if "proc_time_ms" in app else ""
        if "timeouts" in app:
            extra = f", {len(app['timeouts'])} heartbeat timeouts, max Read cost {app['read_cost_ms_max']} ms"
        return f"no fault, no packet lost between the capture points{extra}"
    return ""


def readme_table(out: Path) -> str:
    rows = ["| capture (`-client` / `-server.pcapng`) | what happened | packets c/s | size c/s (kB) | RTT ms | "
            "lab command | ground truth |", "|---|---|---|---|---|---|---|"]
    for p in sorted(Path(out).glob("*.truth.json")):
        t = json.loads(p.read_text())
        c, s = t["captures"]["client"], t["captures"]["server"]
        rtt = t["topology"]["one_way_delay_ms"]["measured_handshake_rtt_ms"]
        desc = t["description"].replace("|", "/")
        cmd = f"`run.py {t.get('derived_from', t['scenario'])}`"
        rows.append(f"| `{t['scenario']}` | {desc} | {c['packets']} / {s['packets']} | {c['bytes'] // 1000} / "
                    f"{s['bytes'] // 1000} | {rtt} | {cmd} | {truth_in_words(t).replace('|', '/')} |")
    return "\n".join(rows)


def update_readme(out: Path) -> bool:
    """Rewrite the generated table in <out>/README.md (between its markers), if there is one."""
    readme = Path(out) / "README.md"
    if not readme.exists():
        return False
    text = readme.read_text()
    m = re.search(r"(<!-- table:[^\n]*-->\n).*?(\n<!-- end table -->)", text, re.S)
    if not m:
        return False
    readme.write_text(text[:m.end(1)] + readme_table(out) + text[m.start(2):])
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=", ".join(SCENARIOS))
    ap.add_argument("--all", action="store_true", help="every committed scenario")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--table", action="store_true", help="print the README table from the truth files in --out")
    ap.add_argument("--write", action="store_true", help="with --table: rewrite it in <out>/README.md")
    args = ap.parse_args(argv)
    if args.list:
        for n, c in SCENARIOS.items():
            print(f"{n:16s} {'committed' if c.committed else 'on demand'}  {c.description}")
        return 0
    if args.table:
        if args.write:
            return 0 if update_readme(args.out) else 1
        print(readme_table(args.out))
        return 0
    names = [n for n, c in SCENARIOS.items() if c.committed] if args.all else args.scenarios
    unknown = [n for n in names if n not in SCENARIOS]
    if not names or unknown:
        ap.error(f"unknown scenario {unknown}" if unknown else "name a scenario or --all")
    ok, why = netlab.lab_available()
    if not ok:
        print(f"run.py: {why}", file=sys.stderr)
        return 2
    stale = netlab.cleanup_stale()
    if stale:
        log(f"removed stale namespaces {stale}")
    def interrupted(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)  # also when started in the background (SIGINT ignored there)
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    for n in names:
        try:
            SCENARIOS[n](args.out).run()
        except LabError as e:
            log(f"{n}: FAILED: {e}")
            failed.append(n)
        except KeyboardInterrupt:
            log(f"{n}: interrupted; namespaces removed")
            return 130
    if args.all and update_readme(args.out):
        log(f"updated the table in {args.out / 'README.md'}")
    if failed:
        log(f"failed: {' '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
