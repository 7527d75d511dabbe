#!/usr/bin/env python3
"""Rewrite a real pcapng capture for the shapes the lab cannot make (stdlib only). Used to make the
rewritten captures in tests/data (their README rows say so); never to hand-craft packets.

    rewrite_pcapng.py IN OUT --copy FRAME:US[,US] ...  insert byte-identical copies of FRAME, US
                                                   microseconds after it (placed in timestamp order): the
                                                   same frame recorded twice, as a capture on two
                                                   interfaces does
    rewrite_pcapng.py IN OUT --shift FRAME:MS ...  move FRAME's timestamp by MS milliseconds (negative:
                                                   earlier) and leave it where it is in the file: a
                                                   capture clock that is not monotonic
    rewrite_pcapng.py IN OUT --zero-ip-id          IPv4 ID 0 in every Ethernet/IPv4 frame (checksum
                                                   fixed): a stack that sends ID 0 on unfragmentable
                                                   packets (RFC 6864), or a middlebox that rewrites IDs

Frame numbers are those of IN (1-based, as tshark shows them). Prints what it did, one line per change.
"""
from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

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
    total = sum(struct.unpack("!%dH" % (ihl // 2), bytes(pkt[14:14 + ihl])))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    pkt[24:26] = struct.pack("!H", ~total & 0xFFFF)
    return b[:28] + bytes(pkt) + b[28 + caplen:]


def rewrite(src: Path, dst: Path, copies: dict[int, list[float]], shifts: dict[int, float],
            zero_ids: bool = False) -> list[str]:
    data = src.read_bytes()
    out, log = [], []
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
    missing = sorted((set(copies) | set(shifts)) - set(range(1, frame + 1)))
    if missing:
        raise ValueError(f"{src}: no frame {missing[0]} (the capture has {frame})")
    dst.write_bytes(b"".join(out))
    return log


def pairs(items: list[str], what: str) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for it in items:
        f, _, v = it.partition(":")
        try:
            out.setdefault(int(f), []).extend(float(x) for x in v.split(","))
        except ValueError:
            raise SystemExit(f"rewrite_pcapng.py: {what} wants FRAME:NUMBER[,NUMBER], got {it!r}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--copy", nargs="*", default=[], metavar="FRAME:US")
    ap.add_argument("--shift", nargs="*", default=[], metavar="FRAME:MS")
    ap.add_argument("--zero-ip-id", action="store_true")
    args = ap.parse_args(argv)
    try:
        shifts = {f: v[0] for f, v in pairs(args.shift, "--shift").items()}
        for line in rewrite(args.src, args.dst, pairs(args.copy, "--copy"), shifts, args.zero_ip_id):
            print(line)
    except (OSError, ValueError) as e:
        print(f"rewrite_pcapng.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
