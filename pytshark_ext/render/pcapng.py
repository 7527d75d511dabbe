"""`--annotate OUT.pcapng`: capture A with pcapng frame comments (editcap -a) that tell what
correlate found, so the result can be opened in Wireshark (filter: `frame.comment`).

`correlate_comments` is pure (result -> {frame: text}); `write_annotated` runs editcap into a
temporary file next to OUT and renames it on success: OUT is never left half-written.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, List, Mapping, Optional

from ..tshark import CaptureError, TsharkFailed, TsharkNotFound

# comments per editcap run (the command line must stay well below ARG_MAX); more take several passes
PER_PASS = 4000


def correlate_comments(result) -> Dict[int, str]:
    """Frame comments for capture A (frame number -> text)."""
    notes: Dict[int, List[str]] = {}

    def add(frame: Optional[int], text: str) -> None:
        if frame:
            notes.setdefault(frame, []).append(text)

    for r in result.lost:
        dv = r.delivered_by
        if r.upstream == "A":             # A saw the original; B never did
            if dv:
                add(r.frame, f"tcpstall: lost before reaching B; retransmitted in frame {dv.up_frame}, "
                             f"arrived at B +{dv.after_ms:.1f} ms")
                add(dv.up_frame, f"tcpstall: retransmission of frame {r.frame} (lost before B); "
                                 f"arrived at B +{dv.after_ms:.1f} ms after the original")
            elif r.redundant:
                add(r.frame, "tcpstall: lost before reaching B; a spurious retransmission (an earlier copy "
                             "had got through): delayed nothing")
            else:
                add(r.frame, "tcpstall: lost before reaching B; not delivered within the captures")
        elif dv:                          # lost between B and A: A only sees the retransmission arrive
            add(dv.down_frame, f"tcpstall: delivers data lost between B and A (B frame {r.frame}, "
                               f"seq {r.seq_rel}); +{dv.after_ms:.1f} ms after the original send at B")
    for r in result.unseen_upstream:
        if r.seen_at == "A":
            add(r.frame, "tcpstall: never seen at B, which is nearer the sender (capture drop at B or another path)")
    for s in result.spikes:
        add(s.frame_a, f"tcpstall: one-way delay {s.peak_ms:.1f} ms between the capture points "
                       f"(median {s.baseline_ms:.1f} ms)")
    for f in result.findings:
        if (f.numbers or {}).get("side") == "A" and f.frames:
            cause = f" (caused by {', '.join(f.caused_by)})" if f.caused_by else ""
            add(f.frames[-1], f"tcpstall: {f.summary}{cause}")
    return {k: "; ".join(v) for k, v in notes.items()}


def write_annotated(capture: str, out: str, comments: Mapping[int, str], *, editcap: Optional[str] = None) -> int:
    """Copy `capture` to `out` (pcapng) with `comments`; returns how many frames were annotated."""
    tool = editcap or shutil.which("editcap")
    if tool is None:
        raise TsharkNotFound("editcap not found on PATH (it comes with tshark: apt-get install tshark)")
    out_path = Path(out)
    folder = out_path.parent if str(out_path.parent) else Path(".")
    if not folder.is_dir():
        raise CaptureError(f"{out}: directory {folder} does not exist")
    items = sorted(comments.items())
    passes = [items[i:i + PER_PASS] for i in range(0, len(items), PER_PASS)] or [[]]
    temps: List[str] = []
    try:
        src = str(capture)
        for chunk in passes:
            fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=str(folder))
            os.close(fd)
            temps.append(tmp)
            args = [tool, "-F", "pcapng"]
            for frame, text in chunk:
                args += ["-a", f"{int(frame)}:{text}"]
            proc = subprocess.run(args + [src, tmp], capture_output=True, text=True)
            if proc.returncode != 0:
                detail = " ".join(proc.stderr.split())[:300] or f"exit status {proc.returncode}"
                raise TsharkFailed(f"{out}: editcap failed: {detail}", proc.stderr, proc.returncode)
            src = tmp
        os.replace(src, out_path)
        temps.remove(src)
    finally:
        for tmp in temps:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
    return len(items)
