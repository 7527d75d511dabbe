"""`tcpstall scan`: many captures -> one ranked table of the worst stalls across all of them.

One task per unit (fleet.Unit: a capture, or a pair): `scan_unit` runs `analyze.analyze_capture`
on a capture and, for a pair, `pipeline.read_pair` (one tshark per capture, as `tcpstall correlate`
does): both sides' findings linked to the segments lost between the capture points; a pair that
cannot be correlated (or a bad file in it) is scanned file by file instead. The same task
function runs in a local process pool (`run_local`) or on an existing Dask distributed cluster
(`run_dask`: the scheduler and workers are the user's; workers need tcpstall, tshark and the
files at the same paths). A file that cannot be read is a result with its one-line error, so the
other files are still scanned.

Ranking: severity (the plugin's expert severity), then the stall's duration as measured from the
packets (HOL: the longest hold; rwnd: the window-limited time; retries: first send to the end of
the episode or the last retransmission the capture holds).
"""
from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, TextIO, Tuple

from .fleet import Unit
from .records import Finding

STALL_KINDS = ("hol_blocked", "rwnd_throttling", "retries")
SEVERITY_ORDER = ("error", "warn", "note", "chat")
SCHEMA = "tcpstall.scan/1"


class ScanError(Exception):
    """The scan as a whole cannot run (e.g. the Dask cluster is unreachable); one line."""


@dataclass(frozen=True)
class CaptureScan:
    """One file's part of a result: the plugin's findings in it, or why it could not be read."""
    path: str
    findings: Tuple[Finding, ...] = ()
    error: Optional[str] = None


@dataclass(frozen=True)
class UnitResult:
    captures: Tuple[CaptureScan, ...]
    between: Tuple[Finding, ...] = ()            # a correlated pair's own: lost, capture_gap, delay_spike, ...
    correlation: Optional[Mapping[str, object]] = None   # a correlated pair: clock offset, matched, lost_total
    warnings: Tuple[str, ...] = ()

    @property
    def errors(self) -> List[str]:
        return [c.error for c in self.captures if c.error]


# --- the task ----------------------------------------------------------------------------------

def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0] or type(exc).__name__


def _problem_line(path: str, exc: BaseException) -> str:
    from .tshark import TsharkError

    text = _first_line(exc)
    if not isinstance(exc, (TsharkError, OSError, ValueError)):
        text = f"internal error {type(exc).__name__}: {text} (a tcpstall bug: please report it)"
    return text if path in text else f"{path}: {text}"


def _analyze(path: str, tshark: Optional[str], prefs: Optional[Mapping[str, object]]):
    """(AnalysisResult, None) or (None, one-line problem): a bad file must not stop the scan."""
    from .analyze import analyze_capture

    try:
        return analyze_capture(path, tshark=tshark, prefs=prefs), None
    except Exception as exc:        # noqa: BLE001 — reported as that file's one line (see _problem_line)
        return None, _problem_line(path, exc)


def _warnings_of(result) -> Tuple[str, ...]:
    extra = (f"{result.capture}: the plugin hit {result.plugin_errors} internal error(s); first: "
             f"{result.first_plugin_error}",) if result.plugin_errors else ()
    return tuple(result.warnings) + extra


def scan_unit(unit: Unit, tshark: Optional[str] = None,
              prefs: Optional[Mapping[str, object]] = None) -> UnitResult:
    """Scan one unit. Never raises for a bad file: its error is in the result."""
    if unit.problem:
        return UnitResult((CaptureScan(unit.files[0], error=unit.problem),))
    if not unit.is_pair:
        result, problem = _analyze(unit.files[0], tshark, prefs)
        if problem:
            return UnitResult((CaptureScan(unit.files[0], error=problem),))
        return UnitResult((CaptureScan(unit.files[0], tuple(result.findings)),), warnings=_warnings_of(result))
    from .pipeline import read_pair
    from .tshark import on_both

    a, b = unit.files
    try:        # one tshark per capture: both analyses and the correlation
        read = read_pair(a, b, tshark=tshark, prefs=prefs)
        corr, (res_a, res_b) = read.result, read.analyses
        warnings = sum((_warnings_of(r) for r in (res_a, res_b)), ())
    except Exception as exc:        # noqa: BLE001 — a bad file or no shared segment: scan each alone
        (res_a, err_a), (res_b, err_b) = on_both(lambda p: _analyze(p, tshark, prefs), a, b)
        warnings = sum((_warnings_of(r) for r in (res_a, res_b) if r), ())
        plain = UnitResult(tuple(CaptureScan(p, tuple(r.findings) if r else (), e)
                                 for p, r, e in ((a, res_a, err_a), (b, res_b, err_b))), warnings=warnings)
        if err_a or err_b:
            return plain
        return UnitResult(plain.captures, warnings=warnings + (
            f"not correlated, scanned each alone: {_problem_line(a, exc)}",))
    side = {s: tuple(f for f in corr.findings if (f.numbers or {}).get("side") == s) for s in ("A", "B")}
    return UnitResult(
        (CaptureScan(a, side["A"]), CaptureScan(b, side["B"])),
        between=tuple(f for f in corr.findings if "side" not in (f.numbers or {})),
        correlation={"clock_offset_ms": corr.clock_offset_ms, "matched": corr.matched,
                     "lost_total": corr.lost_total},
        warnings=warnings + tuple(f"{a} + {b}: {n}" for n in corr.notes))


# --- running the tasks -------------------------------------------------------------------------

Task = Callable[[Unit], UnitResult]


def make_task(tshark: Optional[str] = None, prefs: Optional[Mapping[str, object]] = None) -> Task:
    """scan_unit with the options bound (a partial of a module function: picklable by reference)."""
    return functools.partial(scan_unit, tshark=tshark, prefs=dict(prefs or {}) or None)


def _largest_first(units: Sequence[Unit]) -> List[int]:
    return sorted(range(len(units)), key=lambda i: -units[i].size())


def _ignore_sigint() -> None:
    """Pool workers leave Ctrl-C to the parent (no traceback from every worker)."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_local(units: Sequence[Unit], task: Task, jobs: int,
              on_done: Callable[[Unit], None] = lambda u: None) -> List[UnitResult]:
    """Results in the order of `units`; `jobs` processes (1: in this process)."""
    results: Dict[int, UnitResult] = {}
    order = _largest_first(units)
    if jobs <= 1 or len(units) <= 1:
        for i in order:
            results[i] = task(units[i])
            on_done(units[i])
        return [results[i] for i in range(len(units))]
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=min(jobs, len(units)), initializer=_ignore_sigint) as pool:
        futures = {pool.submit(task, units[i]): i for i in order}
        try:
            for fut in as_completed(futures):
                i = futures[fut]
                results[i] = fut.result()
                on_done(units[i])
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return [results[i] for i in range(len(units))]


def run_dask(units: Sequence[Unit], task: Task, address: str,
             on_done: Callable[[Unit], None] = lambda u: None) -> List[UnitResult]:
    """The same tasks on the Dask distributed scheduler at `address` (not started by us)."""
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise ScanError("--dask needs the `distributed` package: pip install 'tcpstall[dask]'") from None
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ScanError(f"cannot reach the Dask scheduler at {address}: {_first_line(exc)}") from None
    results: Dict[int, UnitResult] = {}
    with client:
        order = _largest_first(units)
        futures = client.map(task, [units[i] for i in order], pure=False)
        index = {fut.key: i for fut, i in zip(futures, order)}
        for fut in as_completed(futures):
            i = index[fut.key]
            try:
                results[i] = fut.result()
            except Exception as exc:    # noqa: BLE001 — e.g. a worker without tcpstall installed
                raise ScanError(f"the Dask cluster at {address} could not run the scan of {units[i].files[0]}: "
                                f"{type(exc).__name__}: {_first_line(exc)}") from None
            on_done(units[i])
    return [results[i] for i in range(len(units))]


class Progress:
    """`tcpstall scan: 12/300 files` rewritten in place on a terminal's stderr."""

    def __init__(self, total_files: int, stream: Optional[TextIO]):
        self.total, self.done, self.stream = total_files, 0, stream
        self._show()

    def __call__(self, unit: Unit) -> None:
        self.done += len(unit.files)
        self._show()

    def _show(self) -> None:
        if self.stream:
            self.stream.write(f"\rtcpstall scan: {self.done}/{self.total} files")
            self.stream.flush()

    def close(self) -> None:
        if self.stream:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


# --- ranking and rendering ---------------------------------------------------------------------

def severity(f: Finding) -> Optional[str]:
    """The plugin's severity for a stall finding, as analyze states it from the fields (HOL: the
    release expert's, warn or note by hol_warn_ms; retries: error once the last retransmission
    before the predicted abort was sent; rwnd throttling: its expert's, warn)."""
    return (f.numbers or {}).get("severity")


def first_frame(f: Finding) -> Optional[int]:
    """Where the stall begins in its capture: the first held segment, the frame the window-limited
    episode starts at, the first send of the data being retried."""
    n = f.numbers or {}
    for key in ("first_held_frame", "start_frame", "first_frame"):
        if n.get(key) is not None:
            return n[key]
    return min((x for x in f.frames if x is not None), default=None)


@dataclass(frozen=True)
class StallRow:
    file: str
    stream: Optional[int]
    kind: str
    severity: Optional[str]
    duration_ms: float
    first_frame: Optional[int]
    summary: str
    id: str
    caused_by: Tuple[str, ...] = ()


def ranked(results: Sequence[UnitResult]) -> List[StallRow]:
    """Every stall of every capture, worst first. In a correlated pair a stall's `caused_by` are
    the ids of the segments lost between the capture points (correlate.link_side_findings)."""
    rows = [StallRow(c.path, f.stream, f.kind, severity(f), f.duration_ms, first_frame(f), f.summary, f.id,
                     tuple(f.caused_by))
            for r in results for c in r.captures for f in c.findings if f.kind in STALL_KINDS]
    rank = {s: i for i, s in enumerate(SEVERITY_ORDER)}
    rows.sort(key=lambda s: (rank.get(s.severity, len(rank)), -s.duration_ms, s.file,
                             s.stream if s.stream is not None else -1, s.first_frame or 0))
    return rows


def _duration_text(ms: float) -> str:
    return f"{ms:.1f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def _losses_text(n: int) -> str:
    """A pair's stall linked to segments lost between its two capture points (ids in --json)."""
    return "" if not n else f" [{n} segment{'s' if n > 1 else ''} lost between the captures]"


def _counts(results: Sequence[UnitResult]) -> str:
    files = sum(len(r.captures) for r in results)
    pairs = sum(1 for r in results if r.correlation is not None)
    return f"{files} capture file(s), {pairs} pair(s) correlated"


def render_table(results: Sequence[UnitResult], top: Optional[int] = 20) -> str:
    from tabulate import tabulate

    rows = ranked(results)
    shown = rows if not top else rows[:top]
    with_stalls = len({s.file for s in rows})
    errors = [e for r in results for e in r.errors]
    parts = [f"{_counts(results)}: {len(rows)} stall(s) in {with_stalls} file(s)"
             + (f", {len(errors)} unreadable" if errors else "")]
    if shown:
        table = [[i, s.file, s.stream, s.kind, s.severity or "", _duration_text(s.duration_ms), s.first_frame,
                  s.summary + _losses_text(len(s.caused_by))]
                 for i, s in enumerate(shown, 1)]
        parts += ["", tabulate(table, headers=["#", "file", "stream", "kind", "severity", "duration",
                                                "first frame", "summary"],
                               tablefmt="simple", disable_numparse=True)]
        if len(rows) > len(shown):
            parts.append(f"... {len(rows) - len(shown)} more (--top 0 lists all)")
    else:
        parts += ["", "no stalls found"]
    # where "no stall" is not a verdict: the capture could not see a window limit (analyze's note)
    untold = sorted({c.path for r in results for c in r.captures for f in c.findings if f.kind == "rwnd_cannot_tell"})
    if untold:
        parts += ["", f"cannot tell whether the receiver window limited a transfer (no handshake, no TCP timestamps "
                      f"at that capture point) in {len(untold)} file(s): " + ", ".join(untold)]
    if errors:
        parts += [""] + [f"unreadable: {e}" for e in errors]
    return "\n".join(parts)


def to_json(results: Sequence[UnitResult], top: Optional[int] = None) -> dict:
    from .render.json import finding_dict

    rows = ranked(results)
    captures, pairs = [], []
    for r in results:
        partner = {c.path: o.path for c, o in zip(r.captures, reversed(r.captures))} if len(r.captures) == 2 else {}
        for side, c in zip("AB", r.captures):
            captures.append({"file": c.path, "pair_with": partner.get(c.path),
                             "side": side if partner else None, "error": c.error,
                             "findings": [dict(finding_dict(f), severity=severity(f)) for f in c.findings]})
        if partner:
            pairs.append({"a": r.captures[0].path, "b": r.captures[1].path,
                          "correlated": r.correlation is not None, **(r.correlation or {}),
                          "findings": [finding_dict(f) for f in r.between]})
    return {
        "schema": SCHEMA,
        "files": len(captures),
        "stalls_total": len(rows),
        "stalls": [{"rank": i, "file": s.file, "stream": s.stream, "kind": s.kind, "severity": s.severity,
                    "duration_ms": round(s.duration_ms, 3), "first_frame": s.first_frame, "summary": s.summary,
                    "id": s.id, "caused_by": list(s.caused_by)}
                   for i, s in enumerate(rows if not top else rows[:top], 1)],
        "captures": captures,
        "pairs": pairs,
        "errors": [e for r in results for e in r.errors],
        "warnings": [w for r in results for w in r.warnings],
    }


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:          # (not on macOS)
        return os.cpu_count() or 1


def progress_stream(quiet: bool) -> Optional[TextIO]:
    return sys.stderr if not quiet and sys.stderr.isatty() else None
