"""The fuzz runner: python -m bench.fuzz --cases 1000 --seed 1 [--jobs 2] [--targets plugin,analyze,...]

Makes the corpus (bench/fuzz/corpus.py) from the real captures, feeds every case to the targets
(bench/fuzz/targets.py), prints counts per category and target and the failures with a
reproducer, writes bench/out/fuzz-seed<SEED>-n<N>.json, and keeps the inputs of failing cases in
bench/out/fuzz-failures/. Exit status 0 when nothing failed (skipped targets do not fail the run,
but are reported as skipped, never as passed), 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from lab import encaps

from . import corpus
from .corpus import ROOT, Case
from .targets import TARGETS, Context, Outcome

DEFAULT_LAB = ROOT / "bench" / "data" / "fuzz-lab"
DEFAULT_OUT = ROOT / "bench" / "out"


def run_fuzz(cases: int = 1000, seed: int = 1, jobs: int = 1, targets: Sequence[str] = tuple(TARGETS),
             lab_dir: Optional[Path] = DEFAULT_LAB, make_lab: bool = True, only_cheap: bool = False,
             one_target_per_case: bool = False, work: Optional[Path] = None, keep: bool = False,
             failures_dir: Optional[Path] = None, categories: Optional[Sequence[str]] = None,
             log=print, slice_: Optional[tuple] = None) -> dict:
    """Make and run the corpus; returns the report (also what the CI sample test asserts on)."""
    t0 = time.monotonic()
    if lab_dir is not None and make_lab:
        encaps.make_all(Path(lab_dir), log=log)
    src = corpus.find_sources(lab_dir)
    plan = corpus.plan(src, cases, seed, only_cheap=only_cheap, categories=categories)
    if slice_ is not None:      # the same corpus, run in parts (e.g. 100 cases at a time)
        plan = plan[slice_[0]:slice_[1]]
    own_work = work is None
    work = Path(work or tempfile.mkdtemp(prefix="tcpstall-fuzz-"))
    cdir = work / "cases"
    cdir.mkdir(parents=True, exist_ok=True)
    ctx = Context(work)
    ctx.light = one_target_per_case
    skip = {name: TARGETS[name].skip_reason(ctx) for name in targets}

    def one(case: Case) -> List[Outcome]:
        corpus.make_case(case, src, cdir)
        if case.error:
            return []
        todo = [t for t in targets if TARGETS[t].applies(case)]
        if one_target_per_case and todo:
            runnable = [t for t in todo if not skip[t]] or todo
            todo = [runnable[int(case.id[:4]) % len(runnable)]]
        out = []
        for name in todo:
            if skip[name]:
                out.append(Outcome(name, case.id, case.category, "skip", detail=skip[name]))
            else:
                out.append(TARGETS[name].run(case, ctx, cdir / case.id))
        return out

    outcomes: List[Outcome] = []
    done = 0
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for res in pool.map(one, plan):
            outcomes += res
            done += 1
            if done % 100 == 0:
                log(f"  {done}/{len(plan)} cases ({time.monotonic() - t0:.0f} s)")

    failed_cases = sorted({o.case for o in outcomes if o.status == "fail"})
    if failures_dir is not None and failed_cases:
        failures_dir.mkdir(parents=True, exist_ok=True)
        for cid in failed_cases:
            dst = failures_dir / cid
            if dst.exists():
                shutil.rmtree(dst)
            shutil.copytree(cdir / cid, dst, ignore=shutil.ignore_patterns("cwd"))
    report = summarize(plan, outcomes, skip, seed, cases, time.monotonic() - t0, work, failures_dir)
    if own_work and not keep:
        shutil.rmtree(work, ignore_errors=True)
    return report


def summarize(plan: List[Case], outcomes: List[Outcome], skip: Dict[str, Optional[str]], seed: int,
              n: int, seconds: float, work: Path, failures_dir: Optional[Path]) -> dict:
    by_cat = Counter(c.category for c in plan)
    not_made = [c for c in plan if c.error]
    per_target: Dict[str, Dict[str, int]] = defaultdict(Counter)
    problems: Dict[str, Counter] = defaultdict(Counter)
    rcs: Dict[str, Counter] = defaultdict(Counter)
    for o in outcomes:
        per_target[o.target][o.status] += 1
        rcs[o.target][str(o.rc)] += 1
        for p in o.problems:
            problems[o.target][p.split("(")[0]] += 1
    totals = {
        "cases": len(plan),
        "cases_made": len(plan) - len(not_made),
        "runs": len(outcomes),
        "tracebacks": sum(o.tracebacks for o in outcomes),
        "lua_error_frames": sum(o.lua_error_frames for o in outcomes),
        "lua_errors_on_stderr": sum(1 for o in outcomes if "lua-error-on-stderr" in o.problems),
        "plugin_internal_errors": sum(o.plugin_internal_errors for o in outcomes),
        "leftover_files": sum(len(o.leftovers) for o in outcomes),
        "exit_code_mismatches": sum(1 for o in outcomes if any(p.startswith(("exit-", "stderr-", "file-not"))
                                                             for p in o.problems)),
        "timeouts": sum(1 for o in outcomes if "timeout" in o.problems),
        "failed_runs": sum(1 for o in outcomes if o.status == "fail"),
        "skipped_runs": sum(1 for o in outcomes if o.status == "skip"),
    }
    return {
        "seed": seed, "requested": n, "seconds": round(seconds, 1), "work": str(work),
        "failures_dir": str(failures_dir) if failures_dir else None,
        "categories": dict(sorted(by_cat.items())),
        "labels": {name: c.label for name, c in corpus.CATEGORIES.items()},
        "not_made": [{"case": c.id, "error": c.error, "params": c.params} for c in not_made],
        "targets": {t: dict(v) for t, v in per_target.items()},
        "skipped_targets": {t: r for t, r in skip.items() if r},
        "problems": {t: dict(v) for t, v in problems.items()},
        "exit_codes": {t: dict(v) for t, v in rcs.items()},
        "totals": totals,
        "failures": [dict(o.to_json(), note=next((c.note for c in plan if c.id == o.case), ""),
                          params=next((c.params for c in plan if c.id == o.case), {}))
                     for o in outcomes if o.status == "fail"],
        "cases": [{"id": c.id, "category": c.category, "kind": c.kind, "expect": c.expect, "error": c.error,
                   "note": c.note, "params": c.params} for c in plan],
        "outcomes": [{k: v for k, v in o.to_json().items() if k != "stderr_tail"} for o in outcomes],
    }


def merge_reports(reports: Sequence[dict]) -> dict:
    """One report from the reports of slices of the same corpus (same --cases and --seed)."""
    plan = [Case(id=c["id"], category=c["category"], kind=c["kind"], params=c["params"], expect=c["expect"],
                 note=c.get("note", ""), error=c.get("error")) for r in reports for c in r["cases"]]
    outcomes = []
    tails = {(f["case"], f["target"]): f.get("stderr_tail", "") for r in reports for f in r["failures"]}
    for r in reports:
        for o in r["outcomes"]:
            oc = Outcome(**o)
            oc.stderr_tail = tails.get((oc.case, oc.target), "")
            outcomes.append(oc)
    skip: Dict[str, Optional[str]] = {}
    for r in reports:
        skip.update(r.get("skipped_targets", {}))
    merged = summarize(plan, outcomes, skip, reports[0]["seed"], reports[0]["requested"],
                       sum(r["seconds"] for r in reports), Path(reports[0]["work"]),
                       Path(reports[0]["failures_dir"]) if reports[0].get("failures_dir") else None)
    merged["merged_from"] = len(reports)
    return merged


def print_report(r: dict, out=sys.stdout) -> None:
    p = lambda *a: print(*a, file=out)      # noqa: E731
    p(f"tcpstall fuzz: seed {r['seed']}, {r['totals']['cases']} cases "
      f"({r['totals']['cases_made']} made), {r['totals']['runs']} runs, {r['seconds']} s")
    p("\ncases per category:")
    for cat, n in r["categories"].items():
        p(f"  {cat:15} {n:5}   {r['labels'].get(cat, '')}")
    if r["not_made"]:
        p(f"\n{len(r['not_made'])} case(s) not made (a tool refused the recipe): "
          + "; ".join(f"{x['case']}: {x['error']}" for x in r["not_made"][:5]))
    p("\nper target:            pass   fail   skip")
    for t, c in r["targets"].items():
        p(f"  {t:18} {c.get('pass', 0):6} {c.get('fail', 0):6} {c.get('skip', 0):6}"
          + (f"   skipped: {r['skipped_targets'][t]}" if t in r["skipped_targets"] else "")
          + (f"   exit codes: {r['exit_codes'][t]}" if t != "applog" else ""))
    for t, c in r["problems"].items():
        p(f"  {t} problems: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    t = r["totals"]
    p(f"\ntotals: {t['tracebacks']} tracebacks, {t['lua_error_frames']} Lua-error frames "
      f"(_ws.lua.error), {t['lua_errors_on_stderr']} Lua errors on stderr, "
      f"{t['plugin_internal_errors']} plugin-internal errors, {t['leftover_files']} leftover files, "
      f"{t['exit_code_mismatches']} exit-code/one-line violations, {t['timeouts']} timeouts; "
      f"{t['failed_runs']} failed runs, {t['skipped_runs']} skipped runs (not passed)")
    if r["failures"]:
        p("\nfailures (first 40):")
        for f in r["failures"][:40]:
            p(f"  {f['case']} [{f['target']}] {','.join(f['problems'])} rc={f['rc']} :: {f['detail'][:160]}")
            p(f"      {f['command']}")


def _write_json(path: Path, data: dict) -> None:
    """Through a temporary file and a rename: never a half-written report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", "-j", type=int, default=2)
    ap.add_argument("--targets", default=",".join(TARGETS),
                    help=f"comma list of {', '.join(TARGETS)} (default all)")
    ap.add_argument("--lab-dir", type=Path, default=DEFAULT_LAB,
                    help="extra real captures (IPv6, TSO, SLL, VXLAN, ...); made there when root")
    ap.add_argument("--no-lab", action="store_true", help="do not make lab captures (use what is there)")
    ap.add_argument("--categories", default="", help="comma list of corpus categories (default all)")
    ap.add_argument("--cheap", action="store_true", help="only small inputs (the CI sample)")
    ap.add_argument("--one-target", action="store_true", help="one target per case (CI: one tshark per case)")
    ap.add_argument("--work", type=Path, default=None, help="corpus directory (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the corpus directory")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--nice", type=int, default=0, help="os.nice() increment for this run")
    ap.add_argument("--slice", default=None, metavar="START:END",
                    help="run only cases START..END-1 of the planned corpus (run a big corpus in parts)")
    ap.add_argument("--merge", nargs="+", type=Path, default=None, metavar="REPORT",
                    help="print one report from the JSON reports of --slice runs, and exit")
    a = ap.parse_args(argv)
    if a.merge:
        report = merge_reports([json.loads(p.read_text()) for p in a.merge])
        path = a.out / f"fuzz-seed{report['seed']}-n{report['requested']}.json"
        _write_json(path, report)
        print_report(report)
        print(f"\nreport: {path}")
        return 1 if report["totals"]["failed_runs"] else 0
    if a.nice:
        os.nice(a.nice)
    targets = [t.strip() for t in a.targets.split(",") if t.strip()]
    bad = [t for t in targets if t not in TARGETS]
    if bad:
        ap.error(f"unknown target(s): {', '.join(bad)}")
    a.out.mkdir(parents=True, exist_ok=True)
    sl = tuple(int(x) for x in a.slice.split(":")) if a.slice else None
    report = run_fuzz(a.cases, a.seed, a.jobs, targets, a.lab_dir, not a.no_lab, a.cheap, a.one_target,
                      a.work, a.keep, a.out / f"fuzz-failures-seed{a.seed}-n{a.cases}",
                      [c for c in a.categories.split(",") if c] or None, log=lambda m: print(m, flush=True),
                      slice_=sl)
    suffix = f"-s{sl[0]}-{sl[1]}" if sl else ""
    path = a.out / f"fuzz-seed{a.seed}-n{a.cases}{suffix}.json"
    _write_json(path, report)
    print_report(report)
    print(f"\nreport: {path}")
    return 1 if report["totals"]["failed_runs"] else 0


if __name__ == "__main__":
    sys.exit(main())
