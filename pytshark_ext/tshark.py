"""Find tshark, check it, and run it with the tcpstall plugin, streaming `-T fields` rows.

Everything that starts a tshark process goes through this module, so the rules live in one
place: an argument list (never a shell), the capture name passed verbatim after `-r`, `-2`
always paired with a `-Y` filter (in pass 1 Lua Field extractors are empty without one), and
field separators that cannot occur in the data we read.
"""
from __future__ import annotations

import codecs
import io
import os
import re
import shutil
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, TypeVar

from . import folders_cache, privileges, progress
from .installed import installed_state
from .records import Segment

T = TypeVar("T")
MIN_VERSION = (3, 6, 0)

# ASCII unit/record separators: tshark copies field text verbatim, and expert messages may hold
# commas, tabs and quotes, but never these control characters.
FIELD_SEP = "\x1f"
OCCURRENCE_SEP = "\x1e"

# Two-pass runs need a display filter so Lua Field extractors are primed in pass 1.
DEFAULT_TWO_PASS_FILTER = "frame"
# Batch runs of the plugin need no application layer: without this, TCP tries ~83 heuristic
# dissectors on every payload (~45 k of ~200 k instructions per packet); the plugin's output is the
# same (tests/test_records.py compares it on every sample capture)
BATCH_DECODE = ("-d", "tcp.port==1-65535,data")
# ... nor Wireshark's own sequence analysis: the plugin classifies retransmissions itself and reads
# no tcp.analysis.* field, so its output is the same with it off (tests/test_records.py compares
# both on every committed capture), and tshark keeps ~430 bytes less per packet (bulk-loss-server,
# 235 k packets: 418 MB peak RSS against 315 MB). A --pref of the user's comes after and wins.
BATCH_PREFS = {"tcp.analyze_sequence_numbers": False}


class TsharkError(Exception):
    """Base of the errors this module raises; str() is one line meant for the user."""


class TsharkNotFound(TsharkError):
    pass


class TsharkTooOld(TsharkError):
    pass


class TsharkFailed(TsharkError):
    """tshark exited non-zero, or printed a Lua error. `stderr_tail` holds its last lines."""

    def __init__(self, message: str, stderr_tail: str = "", returncode: Optional[int] = None):
        super().__init__(message)
        self.stderr_tail = stderr_tail
        self.returncode = returncode


class CaptureError(TsharkError):
    """The capture file itself is the problem (missing, unreadable, not a capture)."""


class CaptureTruncated(CaptureError):
    """tshark read the capture up to a cut (a full disk, a killed dumpcap) and then failed with
    "appears to have been cut short in the middle of a packet". Every line before the cut was
    already delivered to the consumer: a caller may keep them and report this as a warning."""


@dataclass(frozen=True)
class TsharkInfo:
    path: str
    version: Tuple[int, int, int]
    version_text: str
    lua: Optional[str]          # e.g. "5.2.4"; None when built without Lua

    @property
    def version_str(self) -> str:
        return ".".join(map(str, self.version))


def find_tshark(explicit: Optional[str] = None) -> str:
    """`--tshark` option, then the TSHARK environment variable, then PATH."""
    for origin, candidate in (("--tshark", explicit), ("TSHARK", os.environ.get("TSHARK"))):
        if candidate:
            resolved = shutil.which(candidate)
            if resolved is None:
                raise TsharkNotFound(f"tshark not found: {origin} names {candidate!r}, which is not an executable")
            return resolved
    resolved = shutil.which("tshark")
    if resolved is None:
        raise TsharkNotFound(
            "tshark not found on PATH: install it (Debian/Ubuntu: apt-get install tshark) "
            "or point --tshark / TSHARK at it")
    return resolved


_VERSION_RE = re.compile(r"TShark \(Wireshark\) (\d+)\.(\d+)\.(\d+)")
_LUA_RE = re.compile(r"with Lua (\d+(?:\.\d+)*)")  # 4.x; "without Lua" never matches


def parse_version_output(text: str) -> Tuple[Tuple[int, int, int], Optional[str]]:
    """(version, lua version or None) from `tshark -v` output (which wraps lines anywhere)."""
    text = re.sub(r"\s+", " ", text)
    m = _VERSION_RE.search(text)
    if not m:
        raise TsharkFailed("could not read the version from `tshark -v` output: "
                           + (text.strip().splitlines() or ["(empty)"])[0])
    lua = _LUA_RE.search(text)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))), (lua.group(1) if lua else None)


def tshark_info(explicit: Optional[str] = None, require_lua: bool = True) -> TsharkInfo:
    """Locate tshark and check it can run our plugin; raises TsharkNotFound / TsharkTooOld."""
    path = find_tshark(explicit)
    try:
        proc = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=60)
    except OSError as exc:
        raise TsharkNotFound(f"tshark at {path} cannot be run: {exc.strerror or exc}") from None
    version, lua = parse_version_output(proc.stdout + proc.stderr)
    info = TsharkInfo(path, version, (proc.stdout.splitlines() or [""])[0].strip(), lua)
    if version < MIN_VERSION:
        raise TsharkTooOld(f"tshark {info.version_str} at {path} is too old: tcpstall needs "
                           f"{'.'.join(map(str, MIN_VERSION))} or newer")
    if require_lua and lua is None:
        raise TsharkTooOld(f"tshark {info.version_str} at {path} was built without Lua: the tcpstall "
                           "plugin cannot load (install a tshark built with Lua)")
    return info


def launch(cmd: List[str]) -> privileges.Launch:
    """How to start this tshark command so that Lua plugins load (as root on Wireshark 4.2+:
    unprivileged, see privileges.py); a PrivilegeError becomes a one-line TsharkFailed."""
    try:
        return privileges.prepare(cmd)
    except privileges.PrivilegeError as exc:
        raise TsharkFailed(str(exc)) from None


def tshark_folders(tshark: str, *, as_tcpstall_runs_it: bool = True, cached: bool = False) -> Dict[str, str]:
    """`tshark -G folders` as {name: path}; names as tshark prints them ("Personal Lua Plugins").
    Paths as tshark sees them when tcpstall runs it (as root: an unprivileged user's, with no
    personal folders), or with as_tcpstall_runs_it=False as they are for whoever runs tcpstall (the
    GUI's folders). `cached`: the answer an earlier tcpstall got from this tshark, started the same
    way, when there is one (folders_cache.py)."""
    how = launch([tshark, "-G", "folders"]) if as_tcpstall_runs_it else privileges.Launch([tshark, "-G", "folders"])
    cache_key = folders_cache.key(tshark, how.argv, how.popen_kwargs) if cached else None
    folders = folders_cache.get(cache_key)
    if folders is not None:
        return folders
    proc = subprocess.run(how.argv, capture_output=True, text=True, timeout=60, **how.popen_kwargs)
    folders = {}
    for line in proc.stdout.splitlines():
        name, sep, value = line.partition(":")
        if sep and value.strip():
            folders.setdefault(name.strip(), value.strip())
    if proc.returncode == 0:
        folders_cache.put(cache_key, folders)
    return folders


PERSONAL_LUA_FOLDER = "Personal Lua Plugins"
GLOBAL_LUA_FOLDER = "Global Lua Plugins"


def lua_plugin_folders(tshark: str, as_tcpstall_runs_it: bool = True, cached: bool = False) -> Dict[str, Path]:
    """{"Personal Lua Plugins": path, "Global Lua Plugins": path} as tshark reports them (see
    tshark_folders)."""
    folders = tshark_folders(tshark, as_tcpstall_runs_it=as_tcpstall_runs_it, cached=cached)
    return {name: Path(folders[name]) for name in (PERSONAL_LUA_FOLDER, GLOBAL_LUA_FOLDER) if folders.get(name)}


def pref_args(prefs: Optional[Mapping[str, object]]) -> List[str]:
    """`-o name:value` pairs; bare names get the `tcpstall.` prefix, booleans become TRUE/FALSE."""
    args: List[str] = []
    for name, value in (prefs or {}).items():
        if "." not in name:
            name = "tcpstall." + name
        if isinstance(value, bool):
            value = "TRUE" if value else "FALSE"
        args += ["-o", f"{name}:{value}"]
    return args


def parse_pref_option(text: str) -> Tuple[str, str]:
    """`NAME:VALUE` as given to `-o` on our CLI; raises ValueError with a readable message."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise ValueError(f"preference {text!r} is not NAME:VALUE (e.g. tcp_retries2:6)")
    return name.strip(), value


_plugin_args_cache: Dict[str, List[str]] = {}


def plugin_args(tshark: str) -> List[str]:
    """`-X lua_script:...` for our plugin, unless Wireshark already loads it from its personal or
    global Lua plugin folder (`tcpstall install-plugins [--global]`), as this tshark sees them when
    tcpstall runs it: loading it twice would register the protocol twice, and a *different*
    installed copy would silently win, so that is an error with the fix."""
    if tshark not in _plugin_args_cache:
        folders = lua_plugin_folders(tshark, cached=True)   # (raises first when tshark cannot be run so)
        args = ["-X", f"lua_script:{privileges.plugin_script_for()}"]
        for name, folder in folders.items():
            state = installed_state(folder)
            if state.present and not state.same:
                raise TsharkFailed(f"a different tcpstall plugin is installed in {folder} ({name}): run "
                                   "`tcpstall install-plugins` to update it (or `--uninstall` to remove it)")
            if state.present:
                args = []
        _plugin_args_cache[tshark] = args
    return list(_plugin_args_cache[tshark])


def build_command(tshark: str, capture: str, *, fields: Sequence[str] = (), display_filter: Optional[str] = None,
                  two_pass: bool = False, prefs: Optional[Mapping[str, object]] = None,
                  with_plugin: bool = True, extra: Sequence[str] = (), occurrence: str = "a") -> List[str]:
    """The argument list for one tshark run. The capture goes verbatim after `-r`, so names with
    spaces, quotes, semicolons or a leading dash are passed as given (getopt takes the next
    argument as -r's value whatever it starts with). `occurrence`: tshark's `-E occurrence=`
    (a: all occurrences joined by OCCURRENCE_SEP; l: the last one only, the innermost header)."""
    cmd = [tshark, "-n", "-r", str(capture)]
    if with_plugin:
        cmd += plugin_args(tshark)
    cmd += pref_args(prefs)
    if two_pass:
        cmd += ["-2", "-Y", display_filter or DEFAULT_TWO_PASS_FILTER]
    elif display_filter:
        cmd += ["-Y", display_filter]
    if fields:
        cmd += ["-T", "fields", "-E", f"separator={FIELD_SEP}", "-E", f"aggregator={OCCURRENCE_SEP}",
                "-E", f"occurrence={occurrence}", "-E", "quote=n", "-E", "header=n"]
        for name in fields:
            cmd += ["-e", name]
    cmd += list(extra)
    return cmd


# A capture tshark cannot read: 4.0 exits 1 or 2 for every error; 4.2+ (wsutil/exit_codes.h) exits
# 3 (WS_EXIT_INVALID_FILE) when the file is not a capture or is damaged, and says so.
_FILE_PROBLEM_RE = re.compile(r'^tshark: (The file ".*"|You don\'t have permission to read the file)')
_CUT_SHORT_RE = re.compile(r"appears to have been cut short in the middle of a packet")
_LUA_ERROR_RE = re.compile(r"Lua: Error|\[string \".*\"\]:\d+:|lua_script.*error", re.I)


_CONTINUED_RE = re.compile(r"^\(.*\)$")          # "(pcapng: total block lengths ... don't match)"
_PLUGIN_UNKNOWN_RE = re.compile(r'Invalid -z argument "tcpstall')
_OUR_NAME_UNKNOWN_RE = re.compile(r'"tcpstall[.\w]*:.*unknown preference|tcpstall[.\w]*"? is (neither|not a valid)|'
                                  r"fields aren't valid: tcpstall")


def tshark_error_line(stderr: str) -> str:
    """tshark's own error in one line, from its stderr: the first line it starts with "tshark:"
    (its own messages; later lines are help lists, filter echoes, Lua tracebacks), joined with
    the detail line that completes it (a parenthesised reason, a Lua error's message, the few
    items of "Some fields aren't valid:"). Without such a line, the first line that says anything."""
    lines = [ln.rstrip() for ln in stderr.splitlines()
             if ln.strip() and not ln.startswith("Running as user")]
    if not lines:
        return "tshark failed without a message"
    at = next((i for i, ln in enumerate(lines) if ln.startswith("tshark: ")), 0)
    line, rest = lines[at].strip(), lines[at + 1:]
    if rest and _CONTINUED_RE.match(rest[0].strip()):
        line += " " + rest[0].strip()
    elif line.endswith(":") and rest:
        if line.startswith("tshark: Lua:"):                # the message, not the traceback
            line += " " + rest[0].strip()
        else:
            items = []
            for ln in rest:
                if not ln[:1].isspace():
                    break
                items.append(ln.strip())
            if 0 < len(items) <= 5:                       # not a help list ("it must be one of:")
                line += " " + ", ".join(items)
    return re.sub(r"\s+", " ", line)


def _one_line_problem(capture: str, stderr: str) -> str:
    """tshark's own complaint about a capture, reduced to one line naming the file; when that
    complaint says a tcpstall name is unknown, also what it means."""
    detail = tshark_error_line(stderr)
    if _PLUGIN_UNKNOWN_RE.search(detail):
        detail += " -- tshark did not load the tcpstall plugin (`tcpstall doctor` says why)"
    elif _OUR_NAME_UNKNOWN_RE.search(detail):
        detail += " -- a misspelt name, or tshark did not load the tcpstall plugin (`tcpstall doctor`)"
    return f"{capture}: {detail}"


MIN_CAPTURE_BYTES = 24       # pcap's file header; pcapng's smallest section header is 28


def check_capture_path(capture: str) -> None:
    """Fail early, in one line, for the common mistakes tshark reports less clearly."""
    p = Path(capture)
    if not p.exists():
        raise CaptureError(f"{capture}: no such file")
    if p.is_dir():
        raise CaptureError(f"{capture}: is a directory, not a capture file")
    if not os.access(p, os.R_OK):
        raise CaptureError(f"{capture}: permission denied")
    size = p.stat().st_size if p.is_file() else None
    if size == 0:
        # tshark reads a 0-byte file as an empty ERF capture and exits 0: say what it is
        raise CaptureError(f"{capture}: empty file (0 bytes), not a capture")
    if size is not None and size < MIN_CAPTURE_BYTES:
        # no capture format is this short (pcap's file header alone is 24 bytes); tshark would
        # read e.g. a bare pcapng magic "\n\r\r\n" as a one-record JSON file and exit 0
        raise CaptureError(f"{capture}: only {size} bytes, too short to be a capture")
    if size:
        what = _not_a_capture(p)
        if what:
            raise CaptureError(f"{capture}: {what}, not a packet capture")
        if _corrupt_pcapng_header(p):
            raise CaptureError(f"{capture}: corrupt pcapng file (its section header has no byte-order magic)")


# Files tshark opens without complaint although they hold no packets: its "MIME File Format"
# reader takes images and executables, its JSON reader any JSON text (1 "packet", 0 TCP streams).
_NON_CAPTURE_MAGIC = (
    (b"\x7fELF", "an ELF executable"), (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"GIF87a", "a GIF image"), (b"GIF89a", "a GIF image"),
    (b"%PDF-", "a PDF document"),
)


def _not_a_capture(path: Path) -> Optional[str]:
    """What the file is, when its first bytes say it is certainly not a capture; else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return None         # let tshark report it
    for magic, what in _NON_CAPTURE_MAGIC:
        if head.startswith(magic):
            return what
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    # JSON: text from the first byte on (binary formats such as ERF may start with any byte, but
    # not with 64 printable ones)
    if text[:1] in (b"{", b"[") and all(32 <= b < 127 or b in (9, 10, 13) for b in text):
        return "JSON text"
    return None


def _corrupt_pcapng_header(path: Path) -> bool:
    """A file that starts like pcapng (section header block type) without the byte-order magic
    that must follow: tshark's pcapng reader rejects it and its JSON reader then takes it as one
    record and exits 0 (a bare magic plus zeros, seen in a truncated download)."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return head[:4] == b"\n\r\r\n" and head[8:12] not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d")


PIPE_BYTES = 1 << 20          # Linux's default /proc/sys/fs/pipe-max-size
READ_PAUSE = 0.01             # s: tshark writes at most a few MB/s, far from filling PIPE_BYTES


class TsharkRun:
    """A running tshark whose stdout is consumed line by line (or in blocks of lines: `blocks()`).

    Iterate it for the raw lines; stderr is drained in a thread (a full pipe would stall tshark)
    and kept as a short tail for error messages. After iteration, a non-zero exit or a Lua error
    on stderr raises TsharkFailed/CaptureError.
    """

    def __init__(self, cmd: List[str], capture: str, stderr_lines: int = 20,
                 tolerate_truncation: bool = False):
        self.cmd = cmd
        self.capture = capture
        # A capture cut short mid-packet (full disk, killed dumpcap) still holds every packet
        # before the cut: callers that can use them get the problem here instead of an exception.
        self.tolerate_truncation = tolerate_truncation
        self.truncated: Optional[str] = None
        # stderr: its first lines (where tshark states its error) and its last ones
        self._head: List[str] = []
        self._tail: deque = deque(maxlen=stderr_lines)
        self._stderr_count = 0
        self._lua_error: Optional[str] = None
        how = launch(cmd)
        self._real_names = how.real_names
        try:
            self._proc = subprocess.Popen(how.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          stdin=subprocess.DEVNULL, text=True, encoding="utf-8",
                                          errors="replace", bufsize=1 << 16, **how.popen_kwargs)
        except OSError as exc:
            raise TsharkNotFound(f"cannot start {cmd[0]}: {exc.strerror or exc}") from None
        finally:
            how.started()
        self._progress = progress.watch(self._proc.pid, capture)
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_thread.start()

    def _drain_stderr(self) -> None:
        for line in self._proc.stderr:
            line = self._real_names(line.rstrip("\n"))
            if self._stderr_count < self._tail.maxlen:
                self._head.append(line)
            self._tail.append(line)
            self._stderr_count += 1
            if self._lua_error is None and _LUA_ERROR_RE.search(line):
                self._lua_error = line.strip()

    @property
    def stderr_tail(self) -> str:
        return "\n".join(self._tail)

    @property
    def stderr_text(self) -> str:
        """The first and the last lines of stderr (all of it when short)."""
        in_both = len(self._head) + len(self._tail) - self._stderr_count
        return "\n".join(self._head + list(self._tail)[max(in_both, 0):])

    def __iter__(self) -> Iterator[str]:
        return self._consume(line.rstrip("\n") for line in self._proc.stdout)

    def blocks(self, size: int = 1 << 18) -> Iterator[str]:
        """The same lines in blocks of whole lines joined by newlines (about `size` characters
        each; `block.split("\\n")` gives the lines): the bulk path, with no Python work per line."""
        return self._consume(self._blocks(size))

    def _blocks(self, size: int) -> Iterator[str]:
        # Large reads of the pipe (one raw read each, under the buffer's lock, so a close() from
        # another thread waits for it): each read takes the GIL from whichever thread is working
        # (a reader thread next to a busy main thread), and tshark writes 4 KB at a time. With a
        # pipe larger than the default 64 KB (Linux), wait a little after a short read so that
        # the next one finds more; tshark keeps writing meanwhile.
        stdout = self._proc.stdout
        try:
            import fcntl
            pipe = fcntl.fcntl(stdout.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        except (ImportError, AttributeError, OSError):
            pipe = 0
        pause = READ_PAUSE if pipe >= PIPE_BYTES else 0.0
        read = stdout.buffer.read1
        # as the text stream would decode it (UTF-8, errors replaced, universal newlines)
        decode = io.IncrementalNewlineDecoder(codecs.getincrementaldecoder("utf-8")("replace"), True).decode
        parts: List[str] = []
        have = 0
        while True:
            data = read(size)
            text = decode(data, not data)
            if text:
                parts.append(text)
                have += len(text)
            if not data:
                break
            if have >= size:
                text = "".join(parts)
                cut = text.rfind("\n")
                if cut >= 0:
                    yield text[:cut]
                    text = text[cut + 1:]
                parts, have = [text], len(text)
            if pause and len(data) < size // 4:
                time.sleep(pause)
        text = "".join(parts)
        if text:            # whole lines; a last newline ends the last line, it adds no empty one
            yield text[:-1] if text.endswith("\n") else text

    def _consume(self, items: Iterator[T]) -> Iterator[T]:
        exhausted = False
        try:
            yield from items
            exhausted = True
        finally:
            progress.done(self._progress)
            if exhausted:
                self._finish()
            else:
                self.close()

    def _finish(self) -> None:
        """stdout reached EOF: tshark is exiting. Wait for it (its exit status and stderr decide
        whether the run failed) rather than treat it as a consumer that stopped early: closing
        stdout before tshark exits used to lose a non-zero exit, e.g. "isn't a capture file"."""
        try:
            self._proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
            self._stderr_thread.join(timeout=5)
            raise TsharkFailed(f"{self.capture}: tshark did not exit after its output ended",
                               self.stderr_tail, None) from None
        self._stderr_thread.join(timeout=5)
        self._check()

    def close(self) -> None:
        if self._proc.poll() is None:
            # Consumer stopped early (or raised): do not leave tshark running.
            if not self._proc.stdout.closed:
                self._proc.stdout.close()
            try:
                self._proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._stderr_thread.join(timeout=5)
            return
        self._proc.wait()
        self._stderr_thread.join(timeout=5)
        self._check()

    def _check(self) -> None:
        rc = self._proc.returncode
        if self._lua_error is not None:
            said = tshark_error_line(self.stderr_text)      # the Lua message, not just "Error during loading:"
            raise TsharkFailed(f"{self.capture}: the tcpstall Lua plugin failed: "
                               f"{said if 'Lua' in said else self._lua_error}", self.stderr_tail, rc)
        if rc != 0:
            problem = _one_line_problem(self.capture, self.stderr_text)
            about_the_file = rc in (1, 2) or _FILE_PROBLEM_RE.search(tshark_error_line(self.stderr_text))
            if about_the_file and _CUT_SHORT_RE.search(self.stderr_text):
                if self.tolerate_truncation:
                    self.truncated = problem
                    return
                raise CaptureTruncated(problem)
            raise CaptureError(problem) if about_the_file else TsharkFailed(problem, self.stderr_tail, rc)


def on_both(job: Callable[[str], T], a: str, b: str) -> Tuple[T, T]:
    """(job(a), job(b)) run in two threads — for the two captures of a pair, each job mostly
    waiting on its own tshark; an exception in either is re-raised in the caller's thread."""
    results: Dict[int, object] = {}

    def run(i: int, path: str) -> None:
        try:
            results[i] = job(path)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, p)) for i, p in enumerate((a, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in (0, 1):
        if isinstance(results[i], BaseException):
            raise results[i]
    return results[0], results[1]


def run_lines(capture: str, *, tshark: Optional[str] = None, tolerate_truncation: bool = False,
              **kwargs) -> TsharkRun:
    """Start tshark on `capture` (see build_command for kwargs); iterate the result for lines.
    With tolerate_truncation, a capture cut short sets `.truncated` (after the last line)
    instead of raising CaptureTruncated."""
    capture = str(capture)
    check_capture_path(capture)
    path = find_tshark(tshark)
    return TsharkRun(build_command(path, capture, **kwargs), capture, tolerate_truncation=tolerate_truncation)


def iter_fields(capture: str, fields: Sequence[str], *, tshark: Optional[str] = None,
                display_filter: Optional[str] = None, two_pass: bool = False,
                prefs: Optional[Mapping[str, object]] = None, with_plugin: bool = True,
                extra: Sequence[str] = ()) -> Iterator[List[List[str]]]:
    """Stream `-T fields` rows: one list per packet, one list of occurrences per field
    (empty list when the field is absent)."""
    run = run_lines(capture, tshark=tshark, fields=fields, display_filter=display_filter,
                    two_pass=two_pass, prefs=prefs, with_plugin=with_plugin, extra=extra)
    n = len(fields)
    for line in run:
        cols = line.split(FIELD_SEP)
        if len(cols) != n:      # cannot happen with our separators; never misalign silently
            raise TsharkFailed(f"{capture}: tshark printed a row with {len(cols)} columns, expected {n}")
        yield [c.split(OCCURRENCE_SEP) if c else [] for c in cols]


# --- TCP segments as records -------------------------------------------------------------------

SEGMENT_FIELDS = (
    "frame.number", "frame.time_epoch", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
    "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.ack_raw", "tcp.len", "tcp.flags",
    "tcp.window_size_value", "tcp.options.timestamp.tsval", "tcp.options.timestamp.tsecr",
    "ip.id", "tcp.options.sack_le", "tcp.options.sack_re", "tcp.stream",
)
# ICMP errors quote a TCP header: those are not segments of the connection.
SEGMENT_FILTER = "tcp && !icmp && !icmpv6"
# Raw sequence numbers everywhere (SACK edges included), whatever the user's tshark profile says;
# no sequence analysis (nothing here reads it).
SEGMENT_PREFS = {"tcp.relative_sequence_numbers": False, **BATCH_PREFS}


def _last(values: List[str]) -> str:
    # Tunnels: the innermost header is the last occurrence.
    return values[-1] if values else ""


def _int(text: str, default: Optional[int] = 0) -> Optional[int]:
    if not text:
        return default
    return int(text, 16) if text.startswith("0x") else int(text)


def segment_from_row(row: List[List[str]]) -> Optional[Segment]:
    """A Segment from one SEGMENT_FIELDS row; None for rows that lack the basic TCP fields
    (truncated frames)."""
    (frame, t, ip_src, ip_dst, ip6_src, ip6_dst, sport, dport, seq, ack, tlen, flags, win,
     tsval, tsecr, ip_id, sack_le, sack_re, stream) = row
    return segment_from_texts(
        _last(frame), _last(t), _last(ip_src) or _last(ip6_src), _last(ip_dst) or _last(ip6_dst),
        _last(sport), _last(dport), _last(seq), _last(ack), _last(tlen), _last(flags), _last(win),
        _last(tsval), _last(tsecr), _last(ip_id), _last(stream), tuple(zip(sack_le, sack_re)))


def segment_from_texts(frame: str, time: str, src: str, dst: str, sport: str, dport: str, seq: str, ack: str,
                       tlen: str, flags: str, window: str, tsval: str, tsecr: str, ip_id: str, stream: str,
                       sack: Sequence[Tuple[object, object]] = ()) -> Optional[Segment]:
    """A Segment from the text of each field as tshark prints it (one occurrence; SACK blocks as
    (left, right) pairs); None for a frame that lacks the basic TCP fields (truncated)."""
    if not (frame and time and src and sport and seq):
        return None
    try:
        return Segment(
            frame=int(frame), time=float(time), src=src, dst=dst, sport=int(sport), dport=int(dport),
            seq_raw=int(seq), ack_raw=_int(ack), length=_int(tlen), flags=_int(flags), window=_int(window),
            tsval=_int(tsval, None), tsecr=_int(tsecr, None), ip_id=_int(ip_id, None),
            sack=tuple((int(left), int(right)) for left, right in sack), stream=_int(stream, None),
        )
    except ValueError:
        return None


def iter_segments(capture: str, *, tshark: Optional[str] = None, display_filter: Optional[str] = None,
                  extra_prefs: Optional[Mapping[str, object]] = None) -> Iterator[Segment]:
    """Every TCP segment of a capture as a Segment record, streamed (no plugin loaded: this is
    the bulk path, as cheap as tshark itself)."""
    flt = SEGMENT_FILTER if not display_filter else f"({SEGMENT_FILTER}) && ({display_filter})"
    prefs = dict(SEGMENT_PREFS)
    prefs.update(extra_prefs or {})
    for row in iter_fields(capture, SEGMENT_FIELDS, tshark=tshark, display_filter=flt, prefs=prefs,
                           with_plugin=False):
        seg = segment_from_row(row)
        if seg is not None:
            yield seg

