#!/usr/bin/env python3
"""Rewrite real lab captures into the shapes the lab cannot make (stdlib + editcap); never to
hand-craft packets. Every derived file is labelled as rewritten in tests/data/README.md.

A sender that is not Linux (`windows`, `plateau`). Only another OS makes these shapes, and this lab
runs Linux only: the packets stay the lab's real
packets (peer-vanishes: one request into a blackhole), only the retransmission times change, the
TCP timestamp options are overwritten with NOPs (Windows sends none by default), and for a sender
that gives up with a RST, its last retransmission is copied into that RST (payload removed,
flags RST|ACK).

    python3 lab/rewrite.py windows  sample_captures/peer-vanishes-client.pcapng tests/data/nonlinux-windows-client.pcapng
    python3 lab/rewrite.py plateau  sample_captures/peer-vanishes-client.pcapng tests/data/nonlinux-plateau-client.pcapng

Each writes <dst stem>.truth.json next to the capture (what was rewritten, the frames and times).

What a capture point or a stack does to the frames (`edit`, any pcapng; frame numbers are those of
IN, 1-based as tshark shows them; prints one line per change):

    python3 lab/rewrite.py edit IN OUT --copy FRAME:US[,US] ...  byte-identical copies of FRAME, US
                           microseconds after it (in timestamp order): the same frame recorded twice,
                           as a capture on two interfaces does
    python3 lab/rewrite.py edit IN OUT --shift FRAME:MS ...  FRAME's timestamp moved by MS ms (negative:
                           earlier), the frame left where it is: a capture clock that is not monotonic
    python3 lab/rewrite.py edit IN OUT --zero-ip-id  IPv4 ID 0 in every Ethernet/IPv4 frame (checksum
                           fixed): a stack that sends ID 0 on unfragmentable packets (RFC 6864), or a
                           middlebox that rewrites IDs
    python3 lab/rewrite.py edit IN OUT --delay-acks PORT:MS  a receiver that delays its ACKs: every
                           pure ACK sent from TCP port PORT that acknowledges new data is MS ms later,
                           and so is every frame after it (the sender answers an ACK when it arrives):
                           the delayed-ACK timer of a receiver that does not ACK a lone segment at once
                           (Windows; Linux ACKs at once when its reader frees the window)
    python3 lab/rewrite.py edit IN OUT --merge-data N  offload super-segments: every Nth data segment
                           of each sender (counting the segments left after merging) absorbs the sender's
                           next data segment when it is the contiguous one (1: every pair), as GRO at
                           a receiver shows them to the capture: at the second segment's time and place,
                           with the first segment's headers (PSH of either), the IP length the sum, the
                           IPv4 checksum redone (the TCP checksum too when both payloads were captured)
"""
from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):           # run as a script: python3 lab/rewrite.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab import pcaptools as pt  # noqa: E402
from lab.netlab import CLIENT_IP  # noqa: E402

# The shapes. windows: TcpMaxDataRetransmissions = 5 (the default), RTO 300 ms (Windows' MinRto)
# doubling, and the connection reset one more doubled RTO after the 5th retransmission.
# plateau: an RTO that stops doubling at 2.4 s, far below Linux's rto_max of 120 s, no reset.
SHAPES = {
    "windows": {"intervals_s": [0.3, 0.6, 1.2, 2.4, 4.8], "rst_after_s": 9.6,
                "what": "Windows-like: 5 retransmissions (TcpMaxDataRetransmissions), RTO 300 ms doubling, "
                        "RST one doubled RTO (9.6 s) after the last; no TCP timestamps"},
    "plateau": {"intervals_s": [0.3, 0.6, 1.2, 2.4, 2.4, 2.4], "rst_after_s": None,
                "what": "an RTO that stops doubling at 2.4 s (far below Linux's 120 s cap), 6 retransmissions, "
                        "no reset; no TCP timestamps"},
}


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _fix_checksums(frame: bytearray) -> None:
    """Recompute the IPv4 header and TCP checksums of an Ethernet/IPv4/TCP frame (whole frame captured)."""
    ip = 14
    ihl = (frame[ip] & 0x0F) * 4
    total = struct.unpack("!H", frame[ip + 2:ip + 4])[0]
    frame[ip + 10:ip + 12] = b"\0\0"
    frame[ip + 10:ip + 12] = struct.pack("!H", _csum(bytes(frame[ip:ip + ihl])))
    tcp = ip + ihl
    seg = bytearray(frame[tcp:ip + total])
    seg[16:18] = b"\0\0"
    pseudo = bytes(frame[ip + 12:ip + 20]) + struct.pack("!BBH", 0, 6, len(seg))
    frame[tcp + 16:tcp + 18] = struct.pack("!H", _csum(pseudo + bytes(seg)))


def _strip_timestamps(frame: bytearray) -> None:
    """Overwrite the TCP timestamp option (kind 8) with NOPs: same lengths, no timestamps."""
    ip = 14
    tcp = ip + (frame[ip] & 0x0F) * 4
    end = tcp + (frame[tcp + 12] >> 4) * 4
    i = tcp + 20
    while i < end:
        kind = frame[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        length = frame[i + 1]
        if length < 2:
            break
        if kind == 8:
            frame[i:i + length] = b"\x01" * length
        i += length


def _to_rst(frame: bytearray) -> bytearray:
    """The copy of a data segment as the RST|ACK that gives up on it: no payload, seq after the data."""
    ip = 14
    ihl = (frame[ip] & 0x0F) * 4
    tcp = ip + ihl
    doff = (frame[tcp + 12] >> 4) * 4
    total = struct.unpack("!H", frame[ip + 2:ip + 4])[0]
    payload = total - ihl - doff
    seq = struct.unpack("!I", frame[tcp + 4:tcp + 8])[0]
    out = bytearray(frame[:tcp + doff])
    out[tcp + 4:tcp + 8] = struct.pack("!I", (seq + payload) % (1 << 32))
    out[tcp + 13] = 0x14                                  # RST | ACK
    out[ip + 2:ip + 4] = struct.pack("!H", ihl + doff)
    return out


def _read_pcap(path: Path):
    data = path.read_bytes()
    if data[:4] != b"\xd4\xc3\xb2\xa1":
        raise ValueError(f"{path}: not a little-endian microsecond pcap")
    hdr, recs, off = data[:24], [], 24
    while off + 16 <= len(data):
        sec, usec, incl, orig = struct.unpack("<IIII", data[off:off + 16])
        recs.append([sec + usec / 1e6, bytearray(data[off + 16:off + 16 + incl]), orig])
        off += 16 + incl
    return hdr, recs


def _write_pcap(path: Path, hdr: bytes, recs) -> None:
    out = [hdr]
    for t, frame, _orig in recs:
        sec = int(t)
        usec = int(round((t - sec) * 1e6))
        if usec >= 1_000_000:
            sec, usec = sec + 1, usec - 1_000_000
        out.append(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + bytes(frame))
    path.write_bytes(b"".join(out))


def rewrite(shape: str, src: Path, dst: Path) -> dict:
    """Write `dst` (pcapng) from the peer-vanishes capture `src` with `shape`'s backoff; returns its truth."""
    spec = SHAPES[shape]
    segs = pt.segments(src)
    data = [s for s in segs if s.src == CLIENT_IP and s.len > 0]
    tx = pt.transmissions(segs, CLIENT_IP, data[-1].seq)  # the request sent into the blackhole
    first_send = tx[0]
    if len(tx) - 1 < len(spec["intervals_s"]):
        raise ValueError(f"{src}: {len(tx) - 1} retransmissions, the {shape} shape needs {len(spec['intervals_s'])}")
    keep_rtx = tx[1:1 + len(spec["intervals_s"])]
    with tempfile.TemporaryDirectory() as tmp:
        classic = Path(tmp) / "in.pcap"
        subprocess.run(["editcap", "-F", "pcap", str(src), str(classic)], check=True, capture_output=True)
        hdr, recs = _read_pcap(classic)
        by_frame = {i + 1: r for i, r in enumerate(recs)}
        t0 = by_frame[first_send.frame][0]
        out, times, t = [], [], t0
        for i, r in enumerate(recs):
            frame_no = i + 1
            if frame_no > first_send.frame and frame_no not in {x.frame for x in keep_rtx}:
                continue                                  # the retransmissions the shape does not have
            out.append(r)
        for x, iv in zip(keep_rtx, spec["intervals_s"]):
            t += iv
            by_frame[x.frame][0] = t
            times.append(round(t - t0, 6))
        rst_at = None
        if spec["rst_after_s"] is not None:
            last = by_frame[keep_rtx[-1].frame]
            rst_at = t + spec["rst_after_s"]
            out.append([rst_at, _to_rst(last[1]), 0])
        for r in out:
            _strip_timestamps(r[1])
            _fix_checksums(r[1])
        classic_out = Path(tmp) / "out.pcap"
        _write_pcap(classic_out, hdr, out)
        subprocess.run(["editcap", "-F", "pcapng", str(classic_out), str(dst)], check=True, capture_output=True)
    truth = {
        "derived_from": src.name, "rewritten": True, "shape": shape, "what": spec["what"],
        "command": f"python3 lab/rewrite.py {shape} {src} {dst}",
        "first_send_frame": first_send.frame, "first_send": round(t0, 6), "data_len": first_send.len,
        "retransmission_frames": list(range(first_send.frame + 1, first_send.frame + 1 + len(keep_rtx))),
        "retransmissions_since_first_send_s": times, "intervals_s": spec["intervals_s"],
        "rst_frame": first_send.frame + len(keep_rtx) + 1 if rst_at is not None else None,
        "rst_since_first_send_s": round(rst_at - t0, 6) if rst_at is not None else None,
        "tcp_timestamps": False, "packets": len(out),
    }
    dst.with_name(dst.name.replace(".pcapng", ".truth.json")).write_text(json.dumps(truth, indent=2) + "\n")
    return truth


# --- edit: frames as a capture point or a stack changes them (pcapng blocks, any link type) ---

SHB, IDB, EPB = 0x0A0D0D0A, 0x00000001, 0x00000006


def blocks(data: bytes):
    """(type, body bytes, endian) of each block, in file order."""
    pos, endian = 0, "<"
    while pos < len(data):
        btype = struct.unpack_from("<I", data, pos)[0]
        if btype == SHB:
            endian = "<" if data[pos + 8:pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
        blen = struct.unpack_from(endian + "I", data, pos + 4)[0]
        if blen < 12 or pos + blen > len(data):
            raise ValueError(f"corrupt block at offset {pos}")
        yield btype, data[pos:pos + blen], endian
        pos += blen


def tsresol(idb: bytes, endian: str) -> float:
    """Seconds per timestamp unit of an interface (option if_tsresol, code 9; default microseconds)."""
    pos, end = 16, len(idb) - 4
    while pos + 4 <= end:
        code, olen = struct.unpack_from(endian + "HH", idb, pos)
        if code == 0:
            break
        if code == 9 and olen >= 1:
            v = idb[pos + 4]
            return 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -v
        pos += 4 + olen + (-olen % 4)
    return 1e-6


def epb_ts(b: bytes, endian: str) -> int:
    hi, lo = struct.unpack_from(endian + "II", b, 12)
    return (hi << 32) | lo


def with_ts(b: bytes, endian: str, ts: int) -> bytes:
    return b[:12] + struct.pack(endian + "II", ts >> 32, ts & 0xFFFFFFFF) + b[20:]


def zero_ip_id(b: bytes, endian: str) -> bytes:
    """EPB b with the IPv4 ID of its Ethernet/IPv4 frame set to 0 and the header checksum redone."""
    caplen = struct.unpack_from(endian + "I", b, 20)[0]
    pkt = bytearray(b[28:28 + caplen])
    if len(pkt) < 34 or pkt[12:14] != b"\x08\x00" or pkt[14] >> 4 != 4:
        return b
    ihl = (pkt[14] & 15) * 4
    if len(pkt) < 14 + ihl:
        return b
    pkt[18:20] = b"\0\0"
    pkt[24:26] = b"\0\0"
    pkt[24:26] = struct.pack("!H", _csum(bytes(pkt[14:14 + ihl])))
    return b[:28] + bytes(pkt) + b[28 + caplen:]


def _tcp_of(pkt: bytes):
    """(ip offset, ihl, tcp offset, doff, ip total length, direction key, seq, flags, payload length) of an
    Ethernet/IPv4/TCP frame whose headers were captured, else None."""
    if len(pkt) < 34 or pkt[12:14] != b"\x08\x00" or pkt[14] >> 4 != 4 or pkt[23] != 6:
        return None
    ip, ihl = 14, (pkt[14] & 15) * 4
    tcp = ip + ihl
    if len(pkt) < tcp + 20:
        return None
    doff = (pkt[tcp + 12] >> 4) * 4
    total = struct.unpack_from("!H", pkt, ip + 2)[0]
    key = bytes(pkt[ip + 12:ip + 20]) + bytes(pkt[tcp:tcp + 4])
    seq = struct.unpack_from("!I", pkt, tcp + 4)[0]
    return ip, ihl, tcp, doff, total, key, seq, pkt[tcp + 13], total - ihl - doff


def _epb(b: bytes, endian: str, pkt: bytes, orig: int) -> bytes:
    """EPB b with packet data `pkt` (original length `orig`), its options kept."""
    caplen = struct.unpack_from(endian + "I", b, 20)[0]
    opts = b[28 + caplen + (-caplen % 4):-4]
    body = b[8:20] + struct.pack(endian + "II", len(pkt), orig) + pkt + b"\0" * (-len(pkt) % 4) + opts
    n = len(body) + 12
    return struct.pack(endian + "II", EPB, n) + body + struct.pack(endian + "I", n)


def _absorb(b: bytes, nb: bytes, endian: str) -> bytes:
    """EPB b (a data segment) with the next contiguous segment nb merged into it: one super-segment."""
    caplen, orig = struct.unpack_from(endian + "II", b, 20)
    ncaplen, norig = struct.unpack_from(endian + "II", nb, 20)
    pkt, npkt = bytearray(b[28:28 + caplen]), nb[28:28 + ncaplen]
    ip, ihl, tcp, doff, total, _, _, _, plen = _tcp_of(pkt)
    nip, nihl, ntcp, ndoff, ntotal, _, _, nflags, nplen = _tcp_of(npkt)
    whole = caplen == orig and ncaplen == norig            # both payloads captured: keep them
    if whole:
        pkt += npkt[ntcp + ndoff:nip + ntotal]
    struct.pack_into("!H", pkt, ip + 2, total + nplen)
    pkt[tcp + 13] |= nflags & 0x08                          # PSH of either
    pkt[ip + 10:ip + 12] = b"\0\0"
    pkt[ip + 10:ip + 12] = struct.pack("!H", _csum(bytes(pkt[ip:ip + ihl])))
    if whole:
        seg = bytearray(pkt[tcp:ip + total + nplen])
        seg[16:18] = b"\0\0"
        pseudo = bytes(pkt[ip + 12:ip + 20]) + struct.pack("!BBH", 0, 6, len(seg))
        pkt[tcp + 16:tcp + 18] = struct.pack("!H", _csum(pseudo + bytes(seg)))
    return _epb(b, endian, bytes(pkt), orig + nplen)


def merge_data(blocks_: list, every: int, log: list[str]) -> list:
    """The EPBs of `blocks_` ((type, bytes, endian) in file order) with super-segments (see --merge-data)."""
    out: list = []
    count: dict[bytes, int] = {}                       # data segments per sender, after merging
    open_: dict[bytes, tuple[int, int, int]] = {}      # sender -> (index in out, next seq, frame) to absorb into
    frame = 0
    for btype, b, endian in blocks_:
        if btype != EPB:
            out.append((btype, b, endian))
            continue
        frame += 1
        caplen = struct.unpack_from(endian + "I", b, 20)[0]
        t = _tcp_of(b[28:28 + caplen])
        if t is None:
            out.append((btype, b, endian))
            continue
        key, seq, flags, plen = t[5], t[6], t[7], t[8]
        data = plen > 0 and not flags & 0x07              # no SYN/FIN/RST
        cand = open_.pop(key, None)
        if data and cand is not None and cand[1] == seq:
            # the super-segment is seen where and when its last part was (GRO hands it up then; a
            # super-segment at its first part's time would end beyond the window the sender knew then)
            i = cand[0]
            first = out[i][1]
            out[i] = None
            out.append((EPB, with_ts(_absorb(first, b, endian), endian, epb_ts(b, endian)), endian))
            log.append(f"frame {frame}: frame {cand[2]} merged into it")
            continue
        out.append((btype, b, endian))
        if data:
            n = count.get(key, 0) + 1
            count[key] = n
            if n % every == 0:
                open_[key] = (len(out) - 1, (seq + plen) % (1 << 32), frame)
    return [x for x in out if x is not None]


def _delayed_ack(b: bytes, endian: str, port: int, acked: dict) -> bool:
    """Is EPB b a pure ACK from `port` that acknowledges new data? (`acked`: the highest ACK number
    seen per direction, updated)"""
    caplen = struct.unpack_from(endian + "I", b, 20)[0]
    pkt = b[28:28 + caplen]
    t = _tcp_of(pkt)
    if t is None:
        return False
    tcp, key, flags, plen = t[2], t[5], t[7], t[8]
    if struct.unpack_from("!H", pkt, tcp)[0] != port or plen > 0 or flags & 0x07 or not flags & 0x10:
        return False
    ack = struct.unpack_from("!I", pkt, tcp + 8)[0]
    prev = acked.get(key)
    acked[key] = ack
    return prev is not None and 0 < (ack - prev) % (1 << 32) < (1 << 31)


def edit(src: Path, dst: Path, copies: dict[int, list[float]], shifts: dict[int, float],
            zero_ids: bool = False, merge_every: int = 0, delay_acks: tuple[int, float] | None = None) -> list[str]:
    data = src.read_bytes()
    out, log = [], []
    late, acked, n_late = 0.0, {}, 0                 # --delay-acks: seconds every later frame moves
    resol: list[float] = []
    if zero_ids:
        log.append("IPv4 ID set to 0 in every frame")
    frame = 0
    pending: list[tuple[int, bytes]] = []          # copies waiting for their place (timestamp order)
    for btype, b, endian in blocks(data):
        if btype == SHB:
            resol = []
        elif btype == IDB:
            resol.append(tsresol(b, endian))
        if btype != EPB:
            out.append(b)
            continue
        frame += 1
        if zero_ids:
            b = zero_ip_id(b, endian)
        unit = resol[struct.unpack_from(endian + "I", b, 8)[0]]
        ts = epb_ts(b, endian)
        if delay_acks is not None:
            if _delayed_ack(b, endian, delay_acks[0], acked):
                late += delay_acks[1] / 1000
                n_late += 1
            if late:
                ts += round(late / unit)
                b = with_ts(b, endian, ts)
        while pending and pending[0][0] <= ts:
            out.append(pending.pop(0)[1])
        if frame in shifts:
            new = ts + round(shifts[frame] / 1000 / unit)
            b = with_ts(b, endian, new)
            log.append(f"frame {frame}: timestamp moved by {shifts[frame]:+.3f} ms")
        out.append(b)
        for us in copies.get(frame, ()):
            cts = ts + round(us / 1e6 / unit)
            pending.append((cts, with_ts(b, endian, cts)))
            pending.sort(key=lambda x: x[0])
            log.append(f"frame {frame}: copy inserted {us:g} us later")
    out.extend(b for _, b in pending)
    if delay_acks is not None:
        log.append(f"{n_late} ACKs from port {delay_acks[0]} delayed by {delay_acks[1]:g} ms each "
                   f"(the capture {late:.3f} s longer)")
    missing = sorted((set(copies) | set(shifts)) - set(range(1, frame + 1)))
    if missing:
        raise ValueError(f"{src}: no frame {missing[0]} (the capture has {frame})")
    if merge_every > 0:
        # after the other edits (their frame numbers are IN's): a second walk over the result
        merged = merge_data(list(blocks(b"".join(out))), merge_every, log)
        out = [b for _, b, _ in merged]
    dst.write_bytes(b"".join(out))
    return log


def pairs(items: list[str], what: str) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for it in items:
        f, _, v = it.partition(":")
        try:
            out.setdefault(int(f), []).extend(float(x) for x in v.split(","))
        except ValueError:
            raise ValueError(f"{what} wants FRAME:NUMBER[,NUMBER], got {it!r}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    for shape in sorted(SHAPES):
        p = sub.add_parser(shape, help=SHAPES[shape]["what"])
        p.add_argument("src", type=Path)
        p.add_argument("dst", type=Path)
    p = sub.add_parser("edit", help="copies, timestamp shifts, IPv4 IDs of any pcapng")
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--copy", nargs="*", default=[], metavar="FRAME:US")
    p.add_argument("--shift", nargs="*", default=[], metavar="FRAME:MS")
    p.add_argument("--zero-ip-id", action="store_true")
    p.add_argument("--merge-data", type=int, default=0, metavar="N")
    p.add_argument("--delay-acks", default=None, metavar="PORT:MS")
    args = ap.parse_args(argv)
    try:
        if args.command in SHAPES:
            print(json.dumps(rewrite(args.command, args.src, args.dst), indent=2))
        else:
            shifts = {f: v[0] for f, v in pairs(args.shift, "--shift").items()}
            if args.merge_data < 0:
                raise ValueError("--merge-data wants N >= 1")
            delay = None
            if args.delay_acks is not None:
                ((port, (ms,)),) = pairs([args.delay_acks], "--delay-acks").items()
                if ms <= 0:
                    raise ValueError("--delay-acks wants PORT:MS with MS > 0")
                delay = (port, ms)
            for line in edit(args.src, args.dst, pairs(args.copy, "--copy"), shifts, args.zero_ip_id,
                             args.merge_data, delay):
                print(line)
    except (OSError, ValueError, subprocess.CalledProcessError) as e:
        print(f"lab/rewrite.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
