"""Which captures `tcpstall scan` reads, and which of them are two views of the same connections.

PATHs are capture files, folders (searched recursively for CAPTURE_SUFFIXES, hidden folders
skipped) or glob patterns (`**` included), expanded here so that a quoted pattern works as well
as one the shell expanded. Pairs come from a naming rule — `DIR/X<a>.EXT` and `DIR/X<b>.EXT`
for a suffix pair (<a>, <b>), by default ("-client", "-server") — or from a manifest (one pair a
line, see `read_manifest`). Every file is in exactly one unit: a file of a pair is not scanned
alone as well, and a file reached twice (a folder and a file in it) is scanned once.
"""
from __future__ import annotations

import csv
import glob
import os
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

CAPTURE_SUFFIXES = tuple(ext + gz for ext in (".pcapng", ".pcap", ".cap") for gz in ("", ".gz"))
DEFAULT_PAIR_SUFFIXES = ("-client", "-server")
_GLOB_CHARS = "*?["


class ManifestError(ValueError):
    """A manifest line that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Unit:
    """What one task scans: a single capture, or a pair (a, b) correlated as capture A and B."""
    files: Tuple[str, ...]          # as the user named them (1 or 2)
    problem: Optional[str] = None   # known before reading it (a glob that matched nothing)

    @property
    def is_pair(self) -> bool:
        return len(self.files) == 2

    def size(self) -> int:
        """Bytes to read: the largest units go first, so the pool does not end on one big file."""
        return sum(os.path.getsize(f) for f in self.files if os.path.isfile(f))


def is_capture_name(name: str) -> bool:
    return name.lower().endswith(CAPTURE_SUFFIXES)


def _walk(folder: str) -> List[str]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(root, f) for f in sorted(files) if is_capture_name(f)]
    return found


def expand(paths: Iterable[str]) -> Tuple[List[str], List[Unit]]:
    """(capture files in the order found, units for patterns that matched nothing). A file named
    explicitly is taken whatever its name; one that does not exist is kept (its scan says so)."""
    files: List[str] = []
    empty: List[Unit] = []
    for p in paths:
        if os.path.isdir(p):
            files += _walk(p)
        elif any(c in p for c in _GLOB_CHARS) and not os.path.exists(p):
            hits = sorted(glob.glob(p, recursive=True))
            for h in hits:
                files += _walk(h) if os.path.isdir(h) else [h]
            if not hits:
                empty.append(Unit((p,), problem=f"{p}: matches no file"))
        else:
            files.append(p)
    return files, empty


def _split_suffix(path: str, suffix: str) -> Optional[Tuple[str, str]]:
    """("DIR/X", ".EXT") when the file is named DIR/X<suffix>.EXT, else None."""
    name = os.path.basename(path)
    low = name.lower()
    ext = next((e for e in CAPTURE_SUFFIXES if low.endswith(e)), os.path.splitext(name)[1])
    stem = name[:len(name) - len(ext)] if ext else name
    if not stem.endswith(suffix) or stem == suffix:
        return None
    return os.path.join(os.path.dirname(path), stem[:-len(suffix)]), ext.lower()


def pair_by_name(files: Sequence[str], suffixes: Sequence[Tuple[str, str]]) -> List[Unit]:
    """Units for `files`: X<a>.EXT + X<b>.EXT in the same folder become a pair (A = the <a> file);
    the rest are single. The first suffix pair that matches a file wins. Order: as found."""
    index: Dict[Tuple[str, str, int, int], str] = {}
    for f in files:
        for n, (a, b) in enumerate(suffixes):
            for side, suffix in ((0, a), (1, b)):
                key = _split_suffix(f, suffix)
                if key:
                    index.setdefault((key[0], key[1], n, side), f)
    partner: Dict[str, Tuple[str, str]] = {}
    for (stem, ext, n, side), f in index.items():
        other = index.get((stem, ext, n, 1 - side))
        if other and f not in partner and other not in partner:
            pair = (f, other) if side == 0 else (other, f)
            partner[f] = partner[other] = pair
    units, done = [], set()
    for f in files:
        if f in done:
            continue
        pair = partner.get(f)
        units.append(Unit(pair) if pair else Unit((f,)))
        done.update(pair or (f,))
    return units


def read_manifest(path: str) -> List[Unit]:
    """A manifest is CSV: one unit a line, `A,B` for a pair (A is capture A of `tcpstall
    correlate`), a single path for a capture scanned alone. Paths are relative to the manifest's
    folder; blank lines and lines starting with `#` are skipped; no header line."""
    base = os.path.dirname(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            lines = list(enumerate(csv.reader(fh), 1))
    except OSError as exc:
        raise ManifestError(f"{path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ManifestError(f"{path}: not a text CSV manifest ({exc})") from None
    units, listed = [], {}
    for n, row in lines:
        cells = [c.strip() for c in row]
        while cells and not cells[-1]:
            cells.pop()
        if not cells or cells[0].startswith("#"):
            continue
        if len(cells) > 2 or not all(cells):
            raise ManifestError(f"{path}:{n}: expected `CAPTURE_A,CAPTURE_B` or one capture, got {len(cells)} "
                                "fields")
        files = tuple(os.path.join(base, c) for c in cells)
        for cell, f in zip(cells, files):
            seen = listed.setdefault(os.path.realpath(f), n)
            if seen != n or (len(files) == 2 and files[0] == files[1]):
                raise ManifestError(f"{path}:{n}: {cell} is already listed on line {seen} (each file is scanned once)")
        units.append(Unit(files))
    return units


def parse_suffix_pair(text: str) -> Tuple[str, str]:
    """"-client,-server" -> ("-client", "-server"); ValueError when it is not two different suffixes."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise ValueError(f"{text!r}: expected two different suffixes, A_SUFFIX,B_SUFFIX (e.g. -sender,-receiver)")
    return parts[0], parts[1]


def discover(paths: Sequence[str], *, manifest: Optional[str] = None,
             suffixes: Sequence[Tuple[str, str]] = (DEFAULT_PAIR_SUFFIXES,)) -> List[Unit]:
    """Every unit to scan: the manifest's, then those of `paths` (paired by `suffixes`; none: no
    pairing). A file already in an earlier unit is not scanned again."""
    units = read_manifest(manifest) if manifest else []
    files, empty = expand(paths)
    seen = {os.path.realpath(f) for u in units for f in u.files}
    fresh = []
    for f in files:
        key = os.path.realpath(f)
        if key not in seen:
            seen.add(key)
            fresh.append(f)
    return units + pair_by_name(fresh, suffixes) + empty
