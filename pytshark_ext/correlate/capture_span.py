"""When was a capture running? The span of the capture process itself, from the pcapng
Interface Statistics Blocks dumpcap writes at the end of the file (`capture_span`): beyond its
first and last packets, so that packets due while it saw nothing count as losses.
"""
from __future__ import annotations

import struct
from typing import List, Optional, Tuple


def capture_span(path: str) -> Optional[Tuple[Optional[float], Optional[float]]]:
    """(start, end) epoch seconds of the capture process itself, from the Interface Statistics
    Blocks dumpcap writes at the end of a pcapng file (isb_starttime / isb_endtime), or None
    (pcap files, files rewritten by editcap, damaged files). A capture that saw nothing for a
    while (a peer that vanished behind a blackhole) was still running: packets due in that time
    and never seen there are losses, not "outside the capture"."""
    try:
        with open(path, "rb") as f:
            head = f.read(28)
            if len(head) < 28 or head[:4] != b"\x0a\x0d\x0d\x0a":
                return None
            bo = "<" if head[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
            # interface timestamp resolutions, from the IDBs right after the SHB
            (shb_len,) = struct.unpack(bo + "I", head[4:8])
            f.seek(shb_len)
            res: List[float] = []
            t0 = None                                   # first packet, to sanity-check ISB units
            while True:
                hdr = f.read(8)
                if len(hdr) < 8:
                    break
                btype, blen = struct.unpack(bo + "II", hdr)
                if btype == 6 and res:
                    iface, hi, lo = struct.unpack(bo + "III", f.read(12))
                    t0 = ((hi << 32) | lo) * (res[iface] if iface < len(res) else 1e-6)
                    break
                if btype != 1 or blen < 20:
                    break
                body = f.read(blen - 8)[8:-4]          # skip linktype/reserved/snaplen
                r = 1e-6
                for code, val in _options(body, bo):
                    if code == 9 and val:
                        v = val[0]
                        r = 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -v
                res.append(r)
            # ISBs sit at the end: walk back over trailing blocks
            f.seek(0, 2)
            pos = f.tell()
            start = end = None
            for _ in range(64):
                if pos < 12:
                    break
                f.seek(pos - 4)
                (blen,) = struct.unpack(bo + "I", f.read(4))
                if blen < 12 or blen > pos:
                    break
                f.seek(pos - blen)
                blk = f.read(blen)
                (btype,) = struct.unpack(bo + "I", blk[:4])
                if btype != 5:
                    break
                iface, hi, lo = struct.unpack(bo + "III", blk[8:20])
                raw = {0: (hi << 32) | lo}
                for code, val in _options(blk[20:-4], bo):
                    if code in (2, 3) and len(val) == 8:
                        h, l_ = struct.unpack(bo + "II", val)
                        raw[code] = (h << 32) | l_
                # dumpcap writes ISB times in microseconds whatever if_tsresol says: take the unit
                # that puts the ISB nearest the first packet
                r = res[iface] if iface < len(res) else 1e-6
                if t0 is not None:
                    r = min((r, 1e-6, 1e-9), key=lambda u: abs(raw[0] * u - t0))
                ts = {k: v * r for k, v in raw.items()}
                s_, e_ = ts.get(2), ts.get(3, ts[0])
                start = s_ if start is None or (s_ is not None and s_ < start) else start
                end = e_ if end is None or e_ > end else end
                pos -= blen
            return (start, end) if end is not None else None
    except (OSError, struct.error, IndexError):
        return None


def _options(body: bytes, bo: str):
    i = 0
    while i + 4 <= len(body):
        code, ln = struct.unpack(bo + "HH", body[i:i + 4])
        if code == 0:
            break
        yield code, body[i + 4:i + 4 + ln]
        i += 4 + ((ln + 3) & ~3)
