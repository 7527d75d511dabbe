"""Network-namespace topology for the tcpstall incident lab (stdlib only, run as root).

    client ns            r1 ns (kernel router, nft faults)      r2 ns (L2 "wire")          server ns
    eth0 198.18.1.2 <-> r1c 198.18.1.1 | r1s 198.18.2.1 <-> r2a ==[bridge|delay fwd]== r2b <-> eth0 198.18.2.2
      ^ capture                                                                                  ^ capture

All faults (nftables rules in r1's forward hook) and the one-way delay (userspace AF_PACKET
forwarder in r2, see delayfwd.py) sit between the two capture points, so the client capture
can hold packets that the server capture lacks.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

LAB_DIR = Path(__file__).resolve().parent
APPS = LAB_DIR / "apps"

CLIENT_IP = "198.18.1.2"
R1_CLIENT_IP = "198.18.1.1"
R1_SERVER_IP = "198.18.2.1"
SERVER_IP = "198.18.2.2"
NS_PREFIX = "tsl-"


class LabError(RuntimeError):
    pass


def sh(*args, check=True, capture=True, timeout=60, input=None):
    """Run a command (argv list, never a shell)."""
    res = subprocess.run(list(args), capture_output=capture, text=True, timeout=timeout, input=input)
    if check and res.returncode != 0:
        raise LabError(f"command failed ({res.returncode}): {' '.join(args)}\n{res.stderr}")
    return res


def lab_available() -> tuple[bool, str]:
    """(ok, reason) whether this process can build the lab."""
    if os.geteuid() != 0:
        return False, "the lab needs root (network namespaces, nftables, packet capture)"
    for tool in ("ip", "nft", "dumpcap", "ethtool", "tshark", "editcap"):
        if shutil.which(tool) is None:
            return False, f"the lab needs `{tool}` (apt-get install tshark tcpdump nftables ethtool iproute2)"
    name = f"{NS_PREFIX}probe-{os.getpid()}"
    res = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if res.returncode != 0:
        return False, f"cannot create a network namespace: {res.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return True, ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale() -> list[str]:
    """Delete tsl-<pid>-* namespaces whose creating process is gone."""
    removed = []
    res = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    for line in res.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(rf"{NS_PREFIX}(\d+)-", name)
        if m and not _pid_alive(int(m.group(1))):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            removed.append(name)
    return removed


class Lab:
    """One topology instance. Use as a context manager; everything is torn down on exit."""

    def __init__(self, name: str, outdir: Path, *, mtu: int = 1500, delay_ms: float = 0.0,
                 client_sysctls: dict | None = None, server_sysctls: dict | None = None,
                 snaplen: int = 160, capture_filter: str = "tcp", fwd_args: list | tuple = ()):
        self.name = name
        self.outdir = Path(outdir)
        self.mtu = mtu
        self.delay_ms = float(delay_ms)
        self.client_sysctls = dict(client_sysctls or {})
        self.server_sysctls = dict(server_sysctls or {})
        self.snaplen = snaplen
        self.capture_filter = capture_filter
        self.fwd_args = [str(a) for a in fwd_args]   # extra delayfwd.py options (reordering, duplicates)
        tag = f"{NS_PREFIX}{os.getpid()}"
        self.ns = {"client": f"{tag}-c", "r1": f"{tag}-r1", "r2": f"{tag}-r2", "server": f"{tag}-s"}
        self.procs: list[subprocess.Popen] = []
        self.captures: dict[str, tuple[subprocess.Popen, Path]] = {}
        self.capture_stats: dict[str, dict] = {}
        self.fwd: subprocess.Popen | None = None
        self.fwd_stats_path = self.outdir / f".{name}.fwd.json"
        self.delay_mechanism = "none"
        self.notes: list[str] = []
        self._created: list[str] = []
        self._fault_rules: list[dict] = []

    # ---- helpers -------------------------------------------------------------------------
    def ns_exec(self, role: str, *args, **kw):
        return sh("ip", "netns", "exec", self.ns[role], *args, **kw)

    def popen(self, role: str, args: list[str], *, stdout=None, env_extra: dict | None = None) -> subprocess.Popen:
        env = dict(os.environ)
        env.update(env_extra or {})
        p = subprocess.Popen(["ip", "netns", "exec", self.ns[role], *args], stdout=stdout or subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
        self.procs.append(p)
        return p

    def app(self, role: str, script: str, *args, log: Path | None = None, tz: str = "CST-8") -> subprocess.Popen:
        argv = [sys.executable, str(APPS / script), *map(str, args)]
        if log is not None:
            argv += ["--log", str(log)]
        return self.popen(role, argv, env_extra={"TZ": tz, "PYTHONUNBUFFERED": "1"})

    def sysctl(self, role: str, key: str, value) -> None:
        self.ns_exec(role, "sysctl", "-q", "-w", f"{key}={value}")

    def read_sysctl(self, role: str, key: str) -> str:
        return self.ns_exec(role, "sysctl", "-n", key).stdout.strip()

    # ---- topology ------------------------------------------------------------------------
    def __enter__(self):
        self.outdir.mkdir(parents=True, exist_ok=True)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _build(self):
        for ns in self.ns.values():
            sh("ip", "netns", "add", ns)
            self._created.append(ns)
        c, r1, r2, s = (self.ns[k] for k in ("client", "r1", "r2", "server"))
        sh("ip", "link", "add", "eth0", "netns", c, "type", "veth", "peer", "name", "r1c", "netns", r1)
        sh("ip", "link", "add", "r1s", "netns", r1, "type", "veth", "peer", "name", "r2a", "netns", r2)
        sh("ip", "link", "add", "r2b", "netns", r2, "type", "veth", "peer", "name", "eth0", "netns", s)
        links = {"client": ["eth0"], "r1": ["r1c", "r1s"], "r2": ["r2a", "r2b"], "server": ["eth0"]}
        for role, devs in links.items():
            self.sysctl(role, "net.ipv6.conf.all.disable_ipv6", 1)
            self.sysctl(role, "net.ipv6.conf.default.disable_ipv6", 1)
            self.ns_exec(role, "ip", "link", "set", "lo", "up")
            for dev in devs:
                self.ns_exec(role, "ip", "link", "set", dev, "mtu", str(self.mtu))
                # no TSO/GSO/GRO super-segments; software checksums (the r2 forwarder copies frames verbatim)
                self.ns_exec(role, "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off", "tx", "off",
                             check=False)
                self.ns_exec(role, "ip", "link", "set", dev, "up")
        self.ns_exec("client", "ip", "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0")
        self.ns_exec("client", "ip", "route", "add", "default", "via", R1_CLIENT_IP)
        self.ns_exec("r1", "ip", "addr", "add", f"{R1_CLIENT_IP}/24", "dev", "r1c")
        self.ns_exec("r1", "ip", "addr", "add", f"{R1_SERVER_IP}/24", "dev", "r1s")
        self.sysctl("r1", "net.ipv4.ip_forward", 1)
        self.ns_exec("server", "ip", "addr", "add", f"{SERVER_IP}/24", "dev", "eth0")
        self.ns_exec("server", "ip", "route", "add", "default", "via", R1_SERVER_IP)
        for k, v in self.client_sysctls.items():
            self.sysctl("client", k, v)
        for k, v in self.server_sysctls.items():
            self.sysctl("server", k, v)
        # r2: an L2 wire. Kernel bridge without delay, userspace delay forwarder otherwise.
        if self.delay_ms > 0:
            self.ns_exec("r2", "ip", "link", "set", "r2a", "promisc", "on")
            self.ns_exec("r2", "ip", "link", "set", "r2b", "promisc", "on")
            self.fwd = self.popen("r2", [sys.executable, str(LAB_DIR / "delayfwd.py"), "r2a", "r2b",
                                         "--delay-ms", str(self.delay_ms), "--stats", str(self.fwd_stats_path),
                                         *self.fwd_args])
            self.delay_mechanism = "userspace AF_PACKET forwarder in r2 (delayfwd.py), delay applied per direction"
        else:
            self.ns_exec("r2", "ip", "link", "add", "br0", "type", "bridge")
            self.ns_exec("r2", "ip", "link", "set", "r2a", "master", "br0")
            self.ns_exec("r2", "ip", "link", "set", "r2b", "master", "br0")
            self.ns_exec("r2", "ip", "link", "set", "br0", "up")
            self.delay_mechanism = "none (kernel bridge in r2)"
        # nftables in r1: one forward chain that faults are added to.
        self.ns_exec("r1", "nft", "-f", "-", input=(
            "table inet tsl {\n"
            "  chain faults { type filter hook forward priority 0; policy accept; }\n"
            "}\n"))
        # wait for the path (ARP through the forwarder etc.)
        deadline = time.time() + 10
        probe = ("import socket,sys\ns=socket.socket();s.settimeout(1)\n"
                 f"try: s.connect(('{SERVER_IP}', 9))\n"
                 "except ConnectionRefusedError: sys.exit(0)\nexcept OSError: sys.exit(1)\n")
        while True:  # a TCP SYN to a closed port answered by RST proves the path (no ping needed)
            r = self.ns_exec("client", sys.executable, "-c", probe, check=False)
            if r.returncode == 0:
                break
            if time.time() > deadline:
                raise LabError("no connectivity client -> server through the lab routers")

    def measure_rtt(self, count: int = 10) -> dict:
        """ICMP RTT client->server before the run (for the truth file)."""
        if shutil.which("ping") is None:
            self.notes.append("ping not installed: no ICMP RTT measurement (see measured_handshake_rtt_ms)")
            return {}
        r = self.ns_exec("client", "ping", "-q", "-i", "0.05", "-c", str(count), SERVER_IP, check=False, timeout=30)
        m = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", r.stdout)
        if not m:
            return {}
        return {"min": float(m.group(1)), "avg": float(m.group(2)), "max": float(m.group(3)), "mdev": float(m.group(4)),
                "count": count}

    def tcp_counters(self, role: str) -> dict:
        """Non-zero Tcp:/TcpExt: counters of a namespace (/proc/net/snmp, /proc/net/netstat are per netns)."""
        out = {}
        for f in ("/proc/net/snmp", "/proc/net/netstat"):
            lines = self.ns_exec(role, "cat", f).stdout.splitlines()
            for head, vals in zip(lines[::2], lines[1::2]):
                prefix, names = head.split(":", 1)
                if prefix not in ("Tcp", "TcpExt"):
                    continue
                for n, v in zip(names.split(), vals.split(":", 1)[1].split()):
                    if prefix == "Tcp" and n in ("RtoAlgorithm", "RtoMin", "RtoMax", "MaxConn", "CurrEstab"):
                        continue
                    if int(v):
                        out[f"{prefix}{n}" if prefix == "Tcp" else n] = int(v)
        return out

    # ---- captures ------------------------------------------------------------------------
    def start_captures(self, snaplen: int | None = None):
        snap = snaplen or self.snaplen
        for role in ("client", "server"):
            path = self.outdir / f"{self.name}-{role}.pcapng"
            if path.exists():
                path.unlink()
            p = subprocess.Popen(["ip", "netns", "exec", self.ns[role], "dumpcap", "-i", "eth0", "-s", str(snap), "-B", "64",
                                  "-f", self.capture_filter, "-w", str(path)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
            self.captures[role] = (p, path)
        deadline = time.time() + 15
        while not all(path.exists() and path.stat().st_size > 0 for _, path in self.captures.values()):
            for p, _ in self.captures.values():
                if p.poll() is not None:
                    raise LabError(f"dumpcap died: {p.stderr.read()}")
            if time.time() > deadline:
                raise LabError("dumpcap did not start")
            time.sleep(0.05)
        time.sleep(0.5)  # dumpcap writes the header before the BPF filter is live; give it a moment

    def stop_captures(self) -> dict:
        time.sleep(0.3)
        out = {}
        for role, (p, path) in self.captures.items():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            if path.exists():
                path.chmod(0o644)
            out[role] = path
            err = p.stderr.read() if p.stderr else ""
            m = re.search(r"Packets received/dropped on interface '[^']*': (\d+)/(\d+)", err)
            self.capture_stats[role] = ({"received": int(m.group(1)), "dropped": int(m.group(2))} if m
                                        else {"dumpcap_stderr": err.strip()[-300:]})
        self.captures = {}
        return out

    # ---- nftables faults -----------------------------------------------------------------
    def nft_add(self, label: str, expr: str) -> int:
        """Add a rule `expr counter drop` to r1's forward chain; returns its handle."""
        r = self.ns_exec("r1", "nft", "-e", "-a", "add", "rule", "inet", "tsl", "faults",
                         *expr.split(), "counter", "drop", "comment", f'"{label}"')
        m = re.search(r"# handle (\d+)", r.stdout)
        if not m:
            raise LabError(f"nft add rule gave no handle: {r.stdout!r}")
        handle = int(m.group(1))
        self._fault_rules.append({"label": label, "rule": f"{expr} counter drop", "handle": handle,
                                  "added_at": time.time(), "removed_at": None})
        return handle

    def nft_counters(self) -> dict[int, dict]:
        r = self.ns_exec("r1", "nft", "-j", "-a", "list", "chain", "inet", "tsl", "faults")
        out = {}
        for item in json.loads(r.stdout)["nftables"]:
            rule = item.get("rule")
            if not rule:
                continue
            for e in rule.get("expr", []):
                if "counter" in e:
                    out[rule["handle"]] = {"packets": e["counter"]["packets"], "bytes": e["counter"]["bytes"]}
        return out

    def nft_del(self, handle: int) -> dict:
        counters = self.nft_counters().get(handle, {})
        self.ns_exec("r1", "nft", "delete", "rule", "inet", "tsl", "faults", "handle", str(handle))
        for f in self._fault_rules:
            if f["handle"] == handle:
                f["removed_at"] = time.time()
                f["counter"] = counters
        return counters

    def fault_report(self) -> list[dict]:
        live = self.nft_counters() if self._created else {}
        out = []
        for f in self._fault_rules:
            d = dict(f)
            if d["removed_at"] is None:
                d["counter"] = live.get(d["handle"], d.get("counter", {}))
            out.append(d)
        return out

    # ---- teardown ------------------------------------------------------------------------
    def stop_proc(self, p: subprocess.Popen, sig=signal.SIGTERM, timeout=10):
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def forwarder_stats(self) -> dict:
        if self.fwd is None:
            return {}
        self.stop_proc(self.fwd, signal.SIGTERM)
        try:
            return json.loads(self.fwd_stats_path.read_text())
        except (OSError, ValueError):
            return {}
        finally:
            self.fwd_stats_path.unlink(missing_ok=True)

    def close(self):
        if self.captures:
            try:
                self.stop_captures()
            except Exception:
                pass
        for p in self.procs:
            try:
                self.stop_proc(p, signal.SIGKILL, timeout=5)
            except Exception:
                pass
        for ns in reversed(self._created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self._created = []
        self.fwd_stats_path.unlink(missing_ok=True)
