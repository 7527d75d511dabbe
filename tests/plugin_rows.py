"""Helpers for the black-box plugin tests of issue 14 (test_plugin_dupacks, test_plugin_fill,
test_plugin_capture_quirks): run the real plugin over a capture and index its `-T fields` output by
frame; derive captures with the standard tools (editcap cuts, tshark -w filters)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from pytshark_ext import tshark as ts

from conftest import ROOT, sample, truth  # noqa: F401  (re-exported for the tests)

DATA = ROOT / "tests" / "data"
SAMPLES = ROOT / "sample_captures"

FIELDS = (
    "frame.number", "frame.time_epoch", "ip.src", "ip.id", "tcp.seq_raw", "tcp.len",
    "tcpstall.hol.hold_ms", "tcpstall.hol.release_frame", "tcpstall.hol.released_bytes",
    "tcpstall.hol.released_segments", "tcpstall.hol.max_hold_ms", "tcpstall.hol.first_held_frame",
    "tcpstall.hol.filled_by", "tcpstall.hol.view", "tcpstall.hol.severity", "tcpstall.hol.fill",
    "tcpstall.retrans.trigger", "tcpstall.retrans.why", "tcpstall.retrans.number", "tcpstall.retrans.dupacks",
    "tcpstall.retrans.since_first_ms", "tcpstall.retrans.since_prev_ms",
    "tcpstall.thin_stream.interval_ms", "tcpstall.thin_stream.wait_ms", "tcpstall.thin_stream.wait_estimated",
    "tcpstall.thin_stream.rtt_ms",
    "tcpstall.capture.duplicate", "tcpstall.capture.time_backwards_ms",
    "tcpstall.retries.count", "tcpstall.hol.released", "tcpstall.hol.blocked", "tcpstall.thin_stream",
    "_ws.expert.message",
)

BOTH_PASSES = (False, True)


def rows(capture, two_pass: bool, display_filter: str = "tcpstall", prefs=None) -> dict[int, dict]:
    """{frame: {field: first value (None when absent), "_ws.expert.message": [all]}}."""
    out = {}
    for row in ts.iter_fields(str(capture), FIELDS, two_pass=two_pass, display_filter=display_filter,
                              prefs=prefs):
        rec = dict(zip(FIELDS, row))
        out[int(rec["frame.number"][0])] = {k: (v if k.startswith("_ws.expert") else (v[0] if v else None))
                                            for k, v in rec.items()}
    return out


def flag(value) -> bool:
    """A FT_BOOLEAN as tshark prints it (4.0: 1/0, 4.4: True/False)."""
    return value in ("1", "True")


def releases(r: dict[int, dict]) -> dict[int, dict]:
    return {f: x for f, x in r.items() if x["tcpstall.hol.released_bytes"] is not None}


def retransmissions(r: dict[int, dict]) -> dict[int, dict]:
    return {f: x for f, x in r.items() if x["tcpstall.retrans.trigger"] is not None}


def hol_text(x: dict) -> str:
    [m] = [m for m in x["_ws.expert.message"] if m.startswith("HOL-blocked delivery: released")]
    return m


def drop_frames(src: Path, dst: Path, *frames: int) -> Path:
    """A copy without these frames (editcap): what a capture that dropped them would hold."""
    subprocess.run([shutil.which("editcap"), str(src), str(dst), *map(str, frames)], check=True,
                   capture_output=True)
    return dst


def keep_frames(src: Path, dst: Path, first: int, last: int | None = None) -> Path:
    """A copy with only frames first..last (a capture started late or cut mid-episode)."""
    subprocess.run([shutil.which("editcap"), "-r", str(src), str(dst), f"{first}-{last or 999999999}"], check=True,
                   capture_output=True)
    return dst


def filtered(src: Path, dst: Path, display_filter: str) -> Path:
    """A copy with only the frames matching a display filter (tshark -w), e.g. one direction."""
    subprocess.run([shutil.which("tshark"), "-n", "-r", str(src), "-Y", display_filter, "-w", str(dst)],
                   check=True, capture_output=True)
    return dst
