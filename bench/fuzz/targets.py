"""What each case is fed to, and what counts as a failure.

Targets:
  plugin    tshark -n -r F -X lua_script:plugins/tcpstall.lua -2 -Y _ws.lua.error -T fields -e frame.number
            -z tcpstall,tsv      -> frames with a Lua error in the tree (must be 0), the plugin's own
            internal-error count (TCPSTALL_END errors=N, errors it caught with pcall: must be 0)
  analyze   tcpstall analyze F [--json]
  correlate tcpstall correlate A B [--annotate OUT]     (skipped while not implemented)
  logs      tcpstall analyze CAPTURE --log LOG          (skipped while --log does not exist)
  applog    pytshark_ext.applog.read_log(LOG) in a child process (the library under the future --log)

Rules for the CLI targets: no Python traceback; exit 0, or 1 with exactly one stderr line that names
the input; the exit code the case expects (ok -> 0, fail -> 1, any -> either); no file left behind in
the working directory or next to the inputs, and an output file only on success.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from pytshark_ext.tshark import launch

from .corpus import ROOT, Case

PLUGIN = ROOT / "plugins" / "tcpstall.lua"
VENV_BIN = Path(sys.executable).parent     # the venv running us (the checkout's, or a test root's)
TIMEOUT = 180
LUA_STDERR = re.compile(r"Lua: Error|lua_script.*(error|failed)|\[string \"[^\"]*\"\]:\d+:|"
                        r"tcpstall[^\n]*\.lua:\d+:", re.I)


def tcpstall_cmd() -> List[str]:
    exe = VENV_BIN / "tcpstall"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "pytshark_ext.cli"]


@dataclass
class Outcome:
    target: str
    case: str
    category: str
    status: str                         # pass | fail | skip
    problems: List[str] = field(default_factory=list)
    rc: Optional[int] = None
    seconds: float = 0.0
    detail: str = ""
    command: str = ""
    lua_error_frames: int = 0
    plugin_internal_errors: int = 0
    tracebacks: int = 0
    leftovers: List[str] = field(default_factory=list)
    stderr_tail: str = ""

    def to_json(self) -> dict:
        return dict(self.__dict__)


def _snapshot(d: Path) -> set:
    return {str(p.relative_to(d)) for p in d.rglob("*")} if d.exists() else set()


class Context:
    def __init__(self, work: Path):
        self.work = work
        self.home = work / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ)
        # a fresh HOME: no personal plugin copy or profile of whoever runs the bench interferes
        self.env.update({"HOME": str(self.home), "PYTHONDONTWRITEBYTECODE": "1", "LC_ALL": "C.UTF-8",
                         "PYTHONFAULTHANDLER": "1"})
        self.env.pop("XDG_CONFIG_HOME", None)
        self.help: Dict[str, str] = {}
        self.light = False      # CI sample: fewest tshark runs per case (correlate --no-plugin)

    def help_text(self, *sub: str) -> str:
        key = " ".join(sub)
        if key not in self.help:
            try:
                r = subprocess.run(tcpstall_cmd() + list(sub) + ["--help"], capture_output=True, text=True,
                                   env=self.env, timeout=60, cwd=str(self.work))
                self.help[key] = r.stdout + r.stderr if r.returncode == 0 else ""
            except (OSError, subprocess.TimeoutExpired):
                self.help[key] = ""
        return self.help[key]

    def implemented(self, cmd: str) -> bool:
        h = self.help_text(cmd)
        return bool(h) and "not implemented" not in h.lower()


def _run(cmd: List[str], cwd: Path, env: dict, **popen) -> tuple:
    """(rc or None on timeout, stdout, stderr, seconds). On a timeout the process gets SIGABRT first:
    with PYTHONFAULTHANDLER=1 (set in Context.env) Python prints every thread's stack, which
    lands in stderr and so in the report; then its whole process group (tshark too) is killed."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=str(cwd), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True, **popen)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        try:
            proc.send_signal(signal.SIGABRT)
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            out, err = b"", b""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if proc.poll() is None:
            proc.kill()
            o2, e2 = proc.communicate()
            out, err = out + o2, err + e2
        rc = None
    return rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), time.monotonic() - t0


def _first(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("Running as user")]
    return lines[0][:300] if lines else ""


class Target:
    name = "?"
    kinds: tuple = ()

    def applies(self, case: Case) -> bool:
        return case.kind in self.kinds and case.error is None

    def skip_reason(self, ctx: Context) -> Optional[str]:
        return None

    def run(self, case: Case, ctx: Context, case_dir: Path) -> Outcome:
        raise NotImplementedError


class PluginTarget(Target):
    name = "plugin"
    kinds = ("capture",)

    def run(self, case, ctx, case_dir):
        f = case.argnames[0]
        cmd = ["tshark", "-n", "-r", f, "-X", f"lua_script:{PLUGIN}", "-2", "-Y", "_ws.lua.error",
               "-T", "fields", "-e", "frame.number", "-z", "tcpstall,tsv"]
        before = _snapshot(case_dir)
        how = launch(cmd)       # as tcpstall runs tshark (as root on 4.2+ unprivileged, or no plugin)
        popen = dict(how.popen_kwargs)
        try:
            rc, out, err, secs = _run(how.argv, case_dir, popen.pop("env", ctx.env), **popen)
        finally:
            how.started()
        o = Outcome(self.name, case.id, case.category, "pass", rc=rc, seconds=round(secs, 3),
                    command=f"cd {shlex.quote(str(case_dir))} && " + shlex.join(cmd))
        o.lua_error_frames = sum(1 for ln in out.splitlines() if ln.strip().isdigit())
        m = re.search(r"^TCPSTALL_END\t.*errors=(\d+)(?:\tfirst_error=(.*))?", out, re.M)
        if m:
            o.plugin_internal_errors = int(m.group(1))
            if o.plugin_internal_errors:
                o.detail = (m.group(2) or "")[:300]
        if rc is None:
            o.problems.append("timeout")
        elif rc < 0 or rc >= 128:
            o.problems.append(f"tshark-crash(rc={rc})")
        if o.lua_error_frames:
            o.problems.append("lua-error-in-tree")
        if LUA_STDERR.search(err):
            o.problems.append("lua-error-on-stderr")
            o.detail = o.detail or _first([ln for ln in err.splitlines() if LUA_STDERR.search(ln)][0])
        if o.plugin_internal_errors:
            o.problems.append("plugin-internal-error")
        if rc == 0 and not m and case.expect == "ok":
            o.problems.append("no-tcpstall-summary")    # the plugin did not run to the end
        left = sorted(_snapshot(case_dir) - before)
        if left:
            o.leftovers = left
            o.problems.append("leftover-files")
        if not o.detail:
            o.detail = _first(err)
        o.status = "fail" if o.problems else "pass"
        if o.problems:
            o.stderr_tail = err[-3000:]
        return o


def _check_cli(o: Outcome, case: Case, rc, out: str, err: str, names: List[str]) -> None:
    if "Traceback (most recent call last)" in out + err:
        o.tracebacks = 1
        o.problems.append("traceback")
        tb = [ln for ln in err.splitlines() if ln.strip()]
        o.detail = (tb[-1] if tb else "")[:300]
    if rc is None:
        o.problems.append("timeout")
        stack = [ln.strip() for ln in err.splitlines() if ln.strip().startswith("File ")]
        o.detail = ("stuck in: " + " <- ".join(stack[:4]))[:600] if stack else "timeout"
        return
    if rc not in (0, 1):
        o.problems.append(f"exit-{rc}")
    if rc == 1:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        if len(lines) != 1:
            o.problems.append(f"stderr-{len(lines)}-lines")
        elif not any(n in lines[0] or Path(n).name in lines[0] for n in names):
            o.problems.append("file-not-named")
    if case.expect == "ok" and rc != 0:
        o.problems.append("exit-mismatch(expected 0)")
    if case.expect == "fail" and rc == 0:
        o.problems.append("exit-mismatch(expected 1)")
    if m := re.search(r"warning: the plugin hit (\d+) internal error", out):
        o.plugin_internal_errors = int(m.group(1))
        o.problems.append("plugin-internal-error")
    if not o.detail:
        o.detail = _first(err) or _first(out)


def _cli_outcome(target: str, case: Case, ctx: Context, case_dir: Path, args: List[str],
                 names: List[str], outfile: Optional[str] = None) -> Outcome:
    cwd = case_dir / "cwd"
    cwd.mkdir(exist_ok=True)
    before = _snapshot(case_dir)
    cmd = tcpstall_cmd() + args
    rc, out, err, secs = _run(cmd, cwd, ctx.env)
    o = Outcome(target, case.id, case.category, "pass", rc=rc, seconds=round(secs, 3),
                command=f"cd {shlex.quote(str(cwd))} && " + shlex.join(["tcpstall"] + args))
    if rc == 2 and "not implemented" in err.lower():
        o.status, o.detail = "skip", "not implemented"
        return o
    _check_cli(o, case, rc, out, err, names)
    if target == "analyze" and rc == 0 and "--json" in args:
        try:
            data = json.loads(out)
            if data.get("plugin_errors"):
                o.plugin_internal_errors = int(data["plugin_errors"])
                o.problems.append("plugin-internal-error")
        except ValueError:
            o.problems.append("bad-json")
    after = _snapshot(case_dir)
    new = sorted(after - before)
    if outfile:
        rel_out = str(Path("cwd") / outfile)
        if rc == 0 and rel_out not in after:
            o.problems.append("output-missing")
        new = [n for n in new if not (rc == 0 and n == rel_out)]
    if new:
        o.leftovers = new
        o.problems.append("leftover-files" if rc == 0 else "partial-output-left")
    for n in new:       # keep the next target's snapshot clean
        p = case_dir / n
        if p.is_file():
            p.unlink()
    o.status = "fail" if o.problems else "pass"
    if o.problems:
        o.stderr_tail = err[-3000:]
    return o


def _arg_names(case: Case, case_dir: Path) -> List[str]:
    """Inputs as passed: absolute paths, except awkward names, given relative to cwd (../name)."""
    if case.category == "awkward-name":
        return [str(Path("..") / n) for n in case.argnames]
    return [str(case_dir / n) for n in case.argnames]


class AnalyzeTarget(Target):
    name = "analyze"
    kinds = ("capture",)

    def skip_reason(self, ctx):
        return None if ctx.implemented("analyze") else "not implemented"

    def run(self, case, ctx, case_dir):
        names = _arg_names(case, case_dir)
        args = ["analyze"] + (["--json"] if int(case.id[:4]) % 3 == 0 else []) + ["--"] + names[:1]
        return _cli_outcome(self.name, case, ctx, case_dir, args, names)


class CorrelateTarget(Target):
    name = "correlate"
    kinds = ("pair",)

    def skip_reason(self, ctx):
        return None if ctx.implemented("correlate") else "not implemented"

    def run(self, case, ctx, case_dir):
        names = _arg_names(case, case_dir)
        args = ["correlate"]
        outfile = None
        h = ctx.help_text("correlate")
        if "--annotate" in h and int(case.id[:4]) % 2 == 0:
            outfile = "annotated.pcapng"
            args += ["--annotate", outfile]
        if "--json" in h and int(case.id[:4]) % 3 == 0:
            args += ["--json"]
        if "--no-plugin" in h and (ctx.light or int(case.id[:4]) % 4 == 3):
            args += ["--no-plugin"]
        args += ["--"] + names[:2]
        return _cli_outcome(self.name, case, ctx, case_dir, args, names, outfile)


class LogsTarget(Target):
    """`--log` on analyze (or correlate) once it exists."""
    name = "logs"
    kinds = ("log",)

    def skip_reason(self, ctx):
        for cmd in ("analyze", "correlate"):
            if ctx.implemented(cmd) and re.search(r"--log\b", ctx.help_text(cmd)):
                return None
        return "not implemented (no --log option yet)"

    def run(self, case, ctx, case_dir):
        names = _arg_names(case, case_dir)
        cap, log = names[0], names[1]
        cmd = "analyze" if re.search(r"--log\b", ctx.help_text("analyze")) else "correlate"
        args = [cmd, "--log", log]
        outfile = None
        if "--html" in ctx.help_text(cmd) and int(case.id[:4]) % 2 == 0:
            outfile = "report.html"
            args += ["--html", outfile]
        args += ["--", cap] if cmd == "analyze" else ["--", cap, cap]
        o = _cli_outcome(self.name, case, ctx, case_dir, args, names, outfile)
        html_file = case_dir / "cwd" / "report.html"
        if outfile and html_file.exists():
            text = html_file.read_text("utf-8", "replace")
            if re.search(r"<script|<img", text, re.I):   # escaped text reads &lt;script
                o.problems.append("html-not-escaped")
                o.status = "fail"
            html_file.unlink()
        return o


APPLOG_CHILD = r"""
import sys, json, time
t0 = time.time()
from pytshark_ext import applog
try:
    r = applog.read_log(sys.argv[1])
    print(json.dumps({"ok": True, "events": len(r.events), "warnings": len(getattr(r, "warnings", []) or []),
                      "s": round(time.time() - t0, 3)}))
except (applog.LogError, ValueError) as exc:
    print(json.dumps({"ok": False, "error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}))
"""


class ApplogTarget(Target):
    """The log reader library directly (what `--log` will call): exceptions other than its own
    documented ones (LogError, ValueError) are failures."""
    name = "applog"
    kinds = ("log",)

    def skip_reason(self, ctx):
        try:
            import importlib
            mod = importlib.import_module("pytshark_ext.applog")
            return None if hasattr(mod, "read_log") else "pytshark_ext.applog.read_log missing"
        except Exception as exc:    # noqa: BLE001 - reported, not raised
            return f"pytshark_ext.applog does not import: {exc}"

    def run(self, case, ctx, case_dir):
        log = str(case_dir / case.argnames[1])
        cmd = [sys.executable, "-c", APPLOG_CHILD, log]
        env = dict(ctx.env)
        env["PYTHONPATH"] = str(ROOT)
        before = _snapshot(case_dir)
        rc, out, err, secs = _run(cmd, case_dir, env)
        o = Outcome(self.name, case.id, case.category, "pass", rc=rc, seconds=round(secs, 3),
                    command=shlex.join(["python", "-c", "from pytshark_ext import applog; "
                                        "applog.read_log(__import__('sys').argv[1])", log]))
        if "Traceback (most recent call last)" in err:
            o.tracebacks = 1
            o.problems.append("traceback")
            o.detail = [ln for ln in err.splitlines() if ln.strip()][-1][:300]
        elif rc is None:
            o.problems.append("timeout")
        elif rc != 0:
            o.problems.append(f"exit-{rc}")
            o.detail = _first(err)
        else:
            o.detail = _first(out)
        left = sorted(_snapshot(case_dir) - before)
        if left:
            o.leftovers = left
            o.problems.append("leftover-files")
        o.status = "fail" if o.problems else "pass"
        return o


TARGETS = {t.name: t for t in (PluginTarget(), AnalyzeTarget(), CorrelateTarget(), LogsTarget(), ApplogTarget())}
