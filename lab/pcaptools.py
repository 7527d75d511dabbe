"""Read lab captures with tshark (-T fields) and compare the two capture points. Stdlib only.

Used by the lab to write truth files and by tests/test_captures.py to check them.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass

FIELDS = ["frame.number", "frame.time_epoch", "ip.src", "ip.dst", "tcp.srcport", "tcp.dstport", "tcp.seq_raw",
          "tcp.ack_raw", "tcp.len", "tcp.flags", "tcp.options.timestamp.tsval", "tcp.window_size_value",
          "tcp.options.mss_val", "tcp.options.wscale.shift", "frame.len"]


@dataclass(frozen=True)
class Seg:
    frame: int
    t: float
    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    ack: int
    len: int
    flags: int
    tsval: int | None
    win: int
    mss: int | None
    wscale: int | None
    frame_len: int
    payload: bytes = b""

    @property
    def syn(self): return bool(self.flags & 0x02)

    @property
    def fin(self): return bool(self.flags & 0x01)

    @property
    def rst(self): return bool(self.flags & 0x04)

    @property
    def ackf(self): return bool(self.flags & 0x10)

    def key(self):
        """Identity of a packet across capture points (TCP content, never frame numbers)."""
        return (self.src, self.dst, self.sport, self.dport, self.seq, self.ack, self.len, self.flags, self.tsval)

    def to_json(self):
        return {"frame": self.frame, "time": round(self.t, 6), "src": f"{self.src}:{self.sport}",
                "dst": f"{self.dst}:{self.dport}", "seq_raw": self.seq, "ack_raw": self.ack, "len": self.len,
                "flags": f"0x{self.flags:03x}", "tsval": self.tsval}


def _int(v, base=10):
    v = v.split(",")[0] if v else v
    return int(v, base) if v else None


def read_capture(path, payload: bool = False) -> tuple[int, list[Seg]]:
    """Read every frame of a capture once: (frame count, TCP segments). Raises CalledProcessError."""
    args = ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "separator=\t", "-E", "occurrence=f"]
    fields = FIELDS + (["tcp.payload"] if payload else [])
    for f in fields:
        args += ["-e", f]
    res = subprocess.run(args, capture_output=True, text=True, check=True)
    out = []
    lines = res.stdout.splitlines()
    for line in lines:
        c = line.split("\t")
        c += [""] * (len(fields) - len(c))
        if not c[6]:  # not TCP
            continue
        out.append(Seg(frame=int(c[0]), t=float(c[1]), src=c[2], dst=c[3], sport=int(c[4]), dport=int(c[5]),
                       seq=int(c[6]), ack=int(c[7] or 0), len=int(c[8] or 0), flags=int(c[9], 16),
                       tsval=_int(c[10]), win=int(c[11] or 0), mss=_int(c[12]), wscale=_int(c[13]),
                       frame_len=int(c[14]), payload=bytes.fromhex(c[15].replace(":", "")) if payload and c[15] else b""))
    return len(lines), out


def segments(path, payload: bool = False) -> list[Seg]:
    """TCP segments of a capture, in frame order."""
    return read_capture(path, payload)[1]


def packet_count(path) -> int:
    res = subprocess.run(["tshark", "-n", "-r", str(path), "-T", "fields", "-e", "frame.number"],
                         capture_output=True, text=True, check=True)
    return len(res.stdout.split())


def missing(sent: list[Seg], received: list[Seg], src: str) -> list[Seg]:
    """Packets from `src` in the sender-side capture that never showed up in the receiver-side capture.

    Packets are matched on TCP content (Seg.key). Two packets can share a key (a retransmission in the same
    millisecond as the original has the same TSval and ACK); each received copy is then matched to the
    latest not yet matched sent copy that left no later than it arrived (same clock at both points).
    """
    by_key: dict = {}
    for s in sent:
        if s.src == src:
            by_key.setdefault(s.key(), []).append(s)
    matched: set = set()
    for r in received:
        if r.src != src:
            continue
        cands = [s for s in by_key.get(r.key(), []) if s.frame not in matched]
        if not cands:
            continue
        early = [s for s in cands if s.t <= r.t + 1e-3]
        pick = early[-1] if early else cands[0]
        matched.add(pick.frame)
    return [s for s in sent if s.src == src and s.frame not in matched]


def seq_after(a: int, b: int) -> bool:
    return ((a - b) & 0xFFFFFFFF) < 0x80000000 and a != b


def covers(s: Seg, seq: int) -> bool:
    """Does segment s carry the byte at raw sequence number `seq` (wrap-safe)?"""
    return s.len > 0 and ((seq - s.seq) & 0xFFFFFFFF) < s.len


def transmissions(segs: list[Seg], src: str, seq: int) -> list[Seg]:
    """Every data segment from src that carries byte `seq` (original first, then retransmissions)."""
    return [s for s in segs if s.src == src and covers(s, seq)]


def handshake(segs: list[Seg]) -> dict:
    syn = next((s for s in segs if s.syn and not s.ackf), None)
    if syn is None:
        return {}
    synack = next((s for s in segs if s.syn and s.ackf and s.src == syn.dst and s.dport == syn.sport), None)
    d = {"syn_time": round(syn.t, 6), "client_isn": syn.seq, "client_mss": syn.mss, "client_wscale": syn.wscale}
    if synack:
        d.update({"rtt_ms": round((synack.t - syn.t) * 1000, 3), "server_isn": synack.seq, "server_mss": synack.mss,
                  "server_wscale": synack.wscale, "server_syn_window": synack.win})
    return d
