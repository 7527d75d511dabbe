"""Tiny classic-pcap rewriter: insert 802.1Q (VLAN) or 802.1ad+802.1Q (QinQ) tags into the real
Ethernet frames of a capture. Used only because this kernel cannot tag frames itself (no 8021q, no
bridge VLAN filtering, no tc vlan action); the packets are otherwise the lab's real packets.
Input must be classic pcap with LINKTYPE_ETHERNET (convert with `editcap -F pcap` first).
"""
from __future__ import annotations

import struct
from pathlib import Path

LINKTYPE_ETHERNET = 1


def _tag(tpid: int, vid: int, pcp: int = 0) -> bytes:
    return struct.pack("!HH", tpid, (pcp << 13) | (vid & 0x0FFF))


def insert_tags(src: Path, dst: Path, tags: list[tuple[int, int]]) -> int:
    """Copy `src` to `dst` with `tags` ([(tpid, vid)...], outermost first) after the MACs.
    Returns the number of frames rewritten."""
    data = Path(src).read_bytes()
    if len(data) < 24:
        raise ValueError(f"{src}: not a pcap file")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        raise ValueError(f"{src}: not a classic pcap file")
    hdr = bytearray(data[:24])
    linktype = struct.unpack(e + "I", hdr[20:24])[0]
    if linktype != LINKTYPE_ETHERNET:
        raise ValueError(f"{src}: link type {linktype}, expected Ethernet")
    snaplen = struct.unpack(e + "I", hdr[16:20])[0]
    hdr[16:20] = struct.pack(e + "I", snaplen + 4 * len(tags))
    ins = b"".join(_tag(tpid, vid) for tpid, vid in tags)
    out = [bytes(hdr)]
    off, n = 24, 0
    while off + 16 <= len(data):
        sec, usec, incl, orig = struct.unpack(e + "IIII", data[off:off + 16])
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if len(frame) >= 14:
            frame = frame[:12] + ins + frame[12:]
            incl, orig = len(frame), orig + len(ins)
            n += 1
        out.append(struct.pack(e + "IIII", sec, usec, incl, orig) + frame)
    Path(dst).write_bytes(b"".join(out))
    return n


VLAN = [(0x8100, 100)]
QINQ = [(0x88A8, 200), (0x8100, 100)]
