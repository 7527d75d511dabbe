"""Real captures for the encapsulations the committed samples lack, made in network namespaces.

Run as root (stdlib + ip, ethtool, nft, dumpcap, python3). Every capture here is a real kernel
capture of real TCP traffic between two namespaces joined by a veth pair:

    ipv6        IPv6 only, ~4 % random loss on B's input (nft numgen): retransmissions, SACK   A + B
    tso         IPv4 with TSO/GSO/GRO left ON: super-segments (tcp.len > MSS)                   A + B
    sll / sll2  `dumpcap -i any` in A with LINUX_SLL and LINUX_SLL2 link types                  A
    vxlan       TCP over a VXLAN tunnel; A's underlay veth (Eth/IP/UDP/VXLAN/Eth/IP/TCP)
                and B's tunnel device (inner frames only)                                       A + B
    non-tcp     ICMP echo and UDP datagrams only                                                A
    syn-only    B drops SYNs: the client's SYN and its retransmissions, nothing else            A

VLAN and QinQ cannot be made here: this kernel has neither 8021q, bridge VLAN filtering nor
tc vlan actions. bench/fuzz/pcaprw.py inserts 802.1Q / 802.1ad+802.1Q tags into the real
frames of these captures instead (labelled as derived in the corpus).

Usage: python -m lab.encaps OUTDIR      (skips scenarios whose files already exist)
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

A_IP, B_IP = "10.77.0.1", "10.77.0.2"
A_IP6, B_IP6 = "fd77::1", "fd77::2"
VX_A, VX_B = "10.78.0.1", "10.78.0.2"
PORT = 5000

SCENARIOS = ("ipv6", "tso", "sll", "vxlan", "non-tcp", "syn-only")

# Traffic: small request/response messages (~60 ms apart, like the heartbeat incident), then one
# 256 KB bulk write echoed back, then a clean close. Runs with `ip netns exec` in each namespace.
SERVER = r"""
import socket, sys
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); s.settimeout(20)
c, _ = s.accept(); c.settimeout(20)
while True:
    d = c.recv(65536)
    if not d: break
    c.sendall(d[:64])
c.close()
"""
CLIENT = r"""
import socket, sys, time
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
for i in range(30):
    c.sendall(b'heartbeat %05d ......' % i); c.recv(100); time.sleep(0.06)
c.sendall(b'x' * 262144)
time.sleep(0.5)
c.shutdown(socket.SHUT_WR)
while c.recv(65536): pass
c.close()
"""
SYN_CLIENT = r"""
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
except OSError as e:
    print('expected:', e)
"""
NONTCP = r"""
import socket, sys, time
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(40):
    u.sendto(b'udp datagram %d' % i, (sys.argv[1], 9999)); time.sleep(0.01)
"""


class LabUnavailable(RuntimeError):
    pass


def _run(*args, check=True, timeout=30, input=None):
    res = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, input=input)
    if check and res.returncode != 0:
        raise LabUnavailable(f"{' '.join(args)} failed: {res.stderr.strip()}")
    return res


def available() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "needs root (network namespaces)"
    for tool in ("ip", "ethtool", "nft", "dumpcap"):
        if shutil.which(tool) is None:
            return False, f"needs {tool}"
    return True, ""


class Pair:
    """Namespaces A and B joined by veth a0 <-> b0."""

    def __init__(self, tag: str, offload: bool = False, ipv6: bool = False):
        self.a, self.b = f"fz{os.getpid()}-{tag}-a", f"fz{os.getpid()}-{tag}-b"
        self.offload, self.ipv6 = offload, ipv6
        self.caps: list[subprocess.Popen] = []

    def ex(self, ns, *args, **kw):
        return _run("ip", "netns", "exec", ns, *args, **kw)

    def __enter__(self):
        _run("ip", "netns", "add", self.a)
        try:
            _run("ip", "netns", "add", self.b)
            _run("ip", "link", "add", "a0", "netns", self.a, "type", "veth", "peer", "name", "b0", "netns", self.b)
            for ns, dev, ip4, ip6 in ((self.a, "a0", A_IP, A_IP6), (self.b, "b0", B_IP, B_IP6)):
                self.ex(ns, "ip", "link", "set", "lo", "up")
                if not self.offload:
                    self.ex(ns, "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off", check=False)
                else:
                    self.ex(ns, "ethtool", "-K", dev, "tso", "on", "gso", "on", "gro", "on", check=False)
                if self.ipv6:
                    self.ex(ns, "ip", "-6", "addr", "add", f"{ip6}/64", "dev", dev, "nodad")
                else:
                    self.ex(ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1")
                self.ex(ns, "ip", "addr", "add", f"{ip4}/24", "dev", dev)
                self.ex(ns, "ip", "link", "set", dev, "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        for p in self.caps:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
        for ns in (self.a, self.b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def capture(self, ns, iface, out: Path, *, linktype=None, cfilter=None):
        args = ["ip", "netns", "exec", ns, "dumpcap", "-q", "-i", iface, "-w", str(out)]
        if linktype:
            args += ["-y", linktype]
        if cfilter:
            args += ["-f", cfilter]
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.caps.append(p)
        return p

    def stop_captures(self):
        time.sleep(0.3)
        for p in self.caps:
            p.terminate()
        for p in self.caps:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()

    def py(self, ns, code, *args, background=False):
        argv = ["ip", "netns", "exec", ns, sys.executable, "-c", code, *map(str, args)]
        if background:
            return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return _run(*argv, timeout=60, check=False)

    def traffic(self, server_ip, client_timeout=5):
        srv = self.py(self.b, SERVER, server_ip, PORT, background=True)
        time.sleep(0.4)
        self.py(self.a, CLIENT, server_ip, PORT, client_timeout)
        try:
            srv.wait(20)
        except subprocess.TimeoutExpired:
            srv.kill()


def _wait_started():
    time.sleep(1.0)     # dumpcap needs a moment before the first packet


def make(scenario: str, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    if scenario == "ipv6":
        with Pair("v6", ipv6=True) as p:
            p.ex(p.b, "nft", "-f", "-", input=(
                "table inet fz { chain in { type filter hook input priority 0; policy accept;\n"
                f"  tcp dport {PORT} numgen random mod 25 == 0 drop\n}}\n}}\n"))
            files = [out / "lab-ipv6-A.pcapng", out / "lab-ipv6-B.pcapng"]
            p.capture(p.a, "a0", files[0], cfilter="tcp")
            p.capture(p.b, "b0", files[1], cfilter="tcp")
            _wait_started()
            p.traffic(B_IP6)
            p.stop_captures()
    elif scenario == "tso":
        with Pair("tso", offload=True) as p:
            files = [out / "lab-tso-A.pcapng", out / "lab-tso-B.pcapng"]
            p.capture(p.a, "a0", files[0], cfilter="tcp")
            p.capture(p.b, "b0", files[1], cfilter="tcp")
            _wait_started()
            p.traffic(B_IP)
            p.stop_captures()
    elif scenario == "sll":
        with Pair("sll") as p:
            files = [out / "lab-sll-A.pcapng", out / "lab-sll2-A.pcapng"]
            p.capture(p.a, "any", files[0], linktype="LINUX_SLL", cfilter="tcp")
            p.capture(p.a, "any", files[1], linktype="LINUX_SLL2", cfilter="tcp")
            _wait_started()
            p.traffic(B_IP)
            p.stop_captures()
    elif scenario == "vxlan":
        with Pair("vx") as p:
            for ns, dev, local, remote, inner in ((p.a, "a0", A_IP, B_IP, VX_A), (p.b, "b0", B_IP, A_IP, VX_B)):
                p.ex(ns, "ip", "link", "add", "vx0", "type", "vxlan", "id", "42", "dstport", "4789",
                     "local", local, "remote", remote, "dev", dev)
                p.ex(ns, "ethtool", "-K", "vx0", "tso", "off", "gso", "off", "gro", "off", check=False)
                p.ex(ns, "ip", "addr", "add", f"{inner}/24", "dev", "vx0")
                p.ex(ns, "ip", "link", "set", "vx0", "up")
            files = [out / "lab-vxlan-A-underlay.pcapng", out / "lab-vxlan-B-inner.pcapng"]
            p.capture(p.a, "a0", files[0], cfilter="udp port 4789")
            p.capture(p.b, "vx0", files[1], cfilter="tcp")
            _wait_started()
            p.traffic(VX_B)
            p.stop_captures()
    elif scenario == "non-tcp":
        with Pair("udp") as p:
            files = [out / "lab-non-tcp-A.pcapng"]
            p.capture(p.a, "a0", files[0], cfilter="not tcp")
            _wait_started()
            p.ex(p.a, "ping", "-c", "5", "-i", "0.05", B_IP, check=False)
            p.py(p.a, NONTCP, B_IP)
            p.stop_captures()
    elif scenario == "syn-only":
        with Pair("syn") as p:
            p.ex(p.b, "nft", "-f", "-", input=(
                "table inet fz { chain in { type filter hook input priority 0; policy accept;\n"
                f"  tcp dport {PORT} drop\n}}\n}}\n"))
            files = [out / "lab-syn-only-A.pcapng"]
            p.capture(p.a, "a0", files[0], cfilter="tcp")
            _wait_started()
            p.py(p.a, SYN_CLIENT, B_IP, PORT, 3.5)
            p.stop_captures()
    else:
        raise ValueError(scenario)
    return [f for f in files if f.exists() and f.stat().st_size > 0]


def make_all(out: Path, log=print) -> list[Path]:
    """Every scenario whose files are not in `out` yet; returns all lab files present."""
    ok, why = available()
    if not ok:
        log(f"lab.encaps: skipped ({why}); VLAN/IPv6/TSO/SLL cases fall back to derived captures")
        return sorted(Path(out).glob("lab-*.pcapng"))
    for sc in SCENARIOS:
        prefix = "lab-sll-" if sc == "sll" else f"lab-{sc}-"
        if any(Path(out).glob(prefix + "*.pcapng")):
            continue
        try:
            made = make(sc, Path(out))
            log(f"lab.encaps: {sc}: " + (", ".join(f.name for f in made) or "NO FILES"))
        except (LabUnavailable, subprocess.TimeoutExpired, OSError) as exc:
            log(f"lab.encaps: {sc}: skipped: {str(exc).splitlines()[0]}")
    return sorted(Path(out).glob("lab-*.pcapng"))


if __name__ == "__main__":
    make_all(Path(sys.argv[1] if len(sys.argv) > 1 else "bench/data/fuzz-lab"))
