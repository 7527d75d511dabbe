"""A progress line on stderr while tshark reads a capture, so that a user waiting 20 s on a big
capture sees it moving: "tcpstall: reading big.pcapng 45 % of 512.0 MB (pass 2)".

tshark says nothing about its progress when it reads a file; the kernel does: the read position
of tshark's file descriptor on the capture (/proc/PID/fdinfo, Linux). That costs nothing in
tshark and works for every run the same way (one pass, two passes, the capture passed on stdin).
Off unless the CLI enables it (stderr is a terminal and no --quiet); a run that ends within
`delay` seconds prints nothing; the line is erased when the last run ends.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, TextIO


@dataclass
class _Watch:
    pid: int
    path: str                   # the capture's real path (what /proc/PID/fd/N links to)
    name: str
    size: int
    started: float
    fd: Optional[str] = None
    pos: int = 0
    passes: int = 1


_lock = threading.Lock()
_watches: Dict[int, _Watch] = {}
_stream: Optional[TextIO] = None
_delay = 1.0
_interval = 0.5
_thread: Optional[threading.Thread] = None
_shown = False


def enable(stream: Optional[TextIO], delay: float = 1.0, interval: float = 0.5) -> None:
    """Report on `stream` (None: off). The CLI passes sys.stderr when it is a terminal."""
    global _stream, _delay, _interval
    _stream, _delay, _interval = stream, delay, interval


def watch(pid: int, capture: str) -> Optional[int]:
    """Follow process `pid` reading `capture`; returns a token for done(), None when off."""
    global _thread
    if _stream is None:
        return None
    try:
        path = os.path.realpath(capture)
        size = os.stat(path).st_size
    except OSError:
        return None
    with _lock:
        _watches[pid] = _Watch(pid, path, Path(capture).name, size, time.monotonic())
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_report, daemon=True)
            _thread.start()
    return pid


def done(token: Optional[int]) -> None:
    if token is None:
        return
    with _lock:
        _watches.pop(token, None)
        if not _watches:
            _erase()


def read_position(w: _Watch) -> Optional[int]:
    """Where `w`'s process is in its capture file: the fd's `pos` in /proc/PID/fdinfo."""
    for _ in range(2):
        if w.fd is None:
            w.fd = _find_fd(w.pid, w.path)
            if w.fd is None:
                return None
        try:
            with open(f"/proc/{w.pid}/fdinfo/{w.fd}") as f:
                for line in f:
                    if line.startswith("pos:"):
                        return int(line.split()[1])
        except (OSError, ValueError):
            pass
        w.fd = None             # closed, or reopened (the second pass may use another fd)
    return None


def _find_fd(pid: int, path: str) -> Optional[str]:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                return fd
        except OSError:
            continue
    return None


def _line(watches) -> str:
    parts = []
    for w in watches:
        pct = min(100, 100 * w.pos // w.size) if w.size else 100
        passes = f" (pass {w.passes})" if w.passes > 1 else ""
        parts.append(f"{w.name} {pct} % of {w.size / 1e6:.1f} MB{passes}")
    return "tcpstall: reading " + ", ".join(parts)


def _erase() -> None:
    global _shown
    if _shown and _stream is not None:
        _stream.write("\r\x1b[K")
        _stream.flush()
    _shown = False


def _report() -> None:
    global _shown
    while True:
        time.sleep(_interval)
        with _lock:
            if not _watches:
                return
            now = time.monotonic()
            due = [w for w in list(_watches.values()) if now - w.started >= _delay]
            for w in due:
                pos = read_position(w)
                if pos is None:
                    if not os.path.exists(f"/proc/{w.pid}"):
                        _watches.pop(w.pid, None)       # ended without done() (never read)
                    continue
                if pos < w.pos // 2:            # back at the start: tshark's second pass (-2)
                    w.passes += 1
                w.pos = pos
            due = [w for w in due if w.pid in _watches]
            if not _watches:
                _erase()
                return
            if due and _stream is not None:
                _stream.write("\r\x1b[K" + _line(due))
                _stream.flush()
                _shown = True
