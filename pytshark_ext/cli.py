"""`tcpstall` command line: maps options to library calls, prints, sets the exit code.

Exit codes: 0 ok, 1 a problem with the environment or the input (one line on stderr naming it),
2 usage errors (click's own) and commands that are not implemented yet.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from . import __version__
from . import install as installer
from .installed import installed_state
from .paths import plugin_dir
from .applog import LogError
from .tshark import TsharkError, tshark_info

EXIT_PROBLEM = 1


def fail(message: str, code: int = EXIT_PROBLEM) -> None:
    click.echo(f"tcpstall: {message}", err=True)
    sys.exit(code)


def friendly_errors(fn):
    """Library exceptions become one line on stderr and exit 1 — never a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (TsharkError, OSError, ValueError, LogError) as exc:
            fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return wrapper


def progress_option(fn):
    """--quiet, and the progress line on a terminal (pytshark_ext.progress) unless it is given."""
    @click.option("--quiet", "-q", "quiet", is_flag=True,
                  help="No progress line on stderr (shown on a terminal while tshark reads a capture for "
                       "more than a second).")
    @functools.wraps(fn)
    def wrapper(*args, quiet=False, **kwargs):
        from . import progress
        progress.enable(None if quiet or not sys.stderr.isatty() else sys.stderr)
        return fn(*args, **kwargs)
    return wrapper


tshark_option = click.option(
    "--tshark", "tshark", metavar="PATH", default=None,
    help="tshark to use (default: $TSHARK, then tshark on PATH).")


# The sender's settings are string prefs (empty = not given; the plugin then assumes Linux's default
# and says so): a value the plugin cannot read would silently count as not given.
_SENDER_SETTINGS = ("tcp_retries2", "rto_min_ms", "rto_max_ms", "user_timeout_ms")


def _prefs(ctx, param, values):
    from .tshark import parse_pref_option
    out = {}
    for text in values:
        try:
            name, value = parse_pref_option(text)
        except ValueError as exc:
            fail(str(exc))
        if name.split("tcpstall.", 1)[-1] in _SENDER_SETTINGS and value.strip() and not value.strip().isdigit():
            fail(f"-o {text}: {name} takes a whole number >= 0 (e.g. {name}:8), or nothing for Linux's default", 2)
        out[name] = value
    return out


def _log_spec(ctx, param, values):
    from .applog import LogSpecError, parse_log_spec
    try:
        return tuple(parse_log_spec(v) for v in values)
    except LogSpecError as exc:
        raise click.BadParameter(str(exc)) from None


def _log_tz(ctx, param, value):
    from .applog import LogSpecError, parse_tz
    try:
        return None if value is None else parse_tz(value)
    except LogSpecError as exc:
        raise click.BadParameter(str(exc)) from None


def _log_format(ctx, param, value):
    import re
    if value is None:
        return None
    try:
        rx = re.compile(value)
    except re.error as exc:
        raise click.BadParameter(f"not a regex: {exc}") from None
    if "ts" not in rx.groupindex:
        raise click.BadParameter("needs a named group (?P<ts>...) for the timestamp")
    return value


def _check_inputs(logs, outputs) -> None:
    """Before any tshark run: the logs can be opened, the output directories exist."""
    import os
    for spec in logs:
        try:
            with open(spec.path, "rb"):
                pass
        except OSError as exc:
            raise LogError(spec.path, exc.strerror or str(exc)) from None
    for out in outputs:
        if out:
            folder = os.path.dirname(out) or "."
            if not os.path.isdir(folder):
                raise OSError(f"{out}: directory {folder} does not exist")


def log_options(two_captures: bool):
    """--log / --log-tz / --log-format / --html, shared by analyze and correlate."""
    where = ("FILE@A|FILE@B[:±HH:MM]", "Application log written on the host of capture A or B (its clock); "
             "repeatable. `:±HH:MM` gives a zone-less log's UTC offset.") if two_captures else \
        ("FILE[:±HH:MM]", "Application log written on the capture's host; repeatable.")
    opts = [
        click.option("--log", "logs", metavar=where[0], multiple=True, callback=_log_spec, help=where[1]
                     + " App stalls and timeouts in it are explained by what TCP did (app_stall / "
                       "app_timeout findings) and its lines join the packets on one timeline."),
        click.option("--log-tz", "log_tz", metavar="±HH:MM", default=None, callback=_log_tz,
                     help="UTC offset of zone-less log timestamps (default: inferred from packet activity "
                          "when the log lies hours away from the capture, with a warning)."),
        click.option("--log-format", "log_format", metavar="REGEX", default=None, callback=_log_format,
                     help="Regex for other log formats: named group `ts` (timestamp), optional `msg`, "
                          "`duration`."),
        click.option("--html", "html_out", metavar="OUT.html", type=click.Path(dir_okay=False, path_type=str),
                     default=None, help="Write a self-contained HTML page: ladder diagram(s) and the findings."),
    ]

    def deco(fn):
        for o in reversed(opts):
            fn = o(fn)
        return fn
    return deco


def _warn(lines) -> None:
    for w in lines:
        click.echo(f"tcpstall: warning: {w}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tcpstall")
def main():
    """Explain why an RPC stalled at the TCP layer.

    \b
    Three incident classes, found in ordinary captures:
      HOL-blocked delivery         one lost segment holds later data back from read()
      receiver window throttling   a tiny receive buffer caps throughput at window/RTT
      retries approaching tcp_retries2   the peer vanished; Linux retries for up to ~15 min

    \b
    Start here:
      tcpstall doctor                       is tshark ready, is the plugin installed?
      tcpstall analyze CAPTURE              what stalled in one capture
      tcpstall correlate SENDER RECEIVER    lay two captures of the same connections side by side
      tcpstall scan FOLDER…                 many captures (pairs too): one ranked table of the worst stalls
      tcpstall install-plugins              make the Wireshark GUI show the same diagnostics
    """


@main.command()
@tshark_option
def doctor(tshark):
    """Check tshark, its Lua, that it really loads the plugin the way tcpstall runs it (which
    copy, the fields it registers, as which user), and the copy installed for the GUI; print the
    fix for what is wrong.

    Exit status 0 when tcpstall can run (a plugin not installed for the GUI is only a hint),
    1 when something it needs is missing or broken, or a stale plugin copy would be loaded instead of ours.
    """
    from . import doctor as checks
    from .privileges import describe

    problems = []
    try:
        info = tshark_info(tshark, require_lua=False)
    except TsharkError as exc:
        fail(str(exc))
    click.echo(f"tshark:         {info.path}")
    click.echo(f"version:        {info.version_str}")
    click.echo(f"Lua:            {info.lua or 'NO (built without Lua: the plugin cannot run)'}")
    try:
        click.echo(f"runs tshark:    {describe()}")
        click.echo(f"plugin source:  {plugin_dir()}")
        if info.lua is not None:
            check = checks.check_plugin_loads(info.path)
            if check.ok:
                click.echo(f"loaded:         yes, via {check.via}: {', '.join(check.loaded_from)} "
                           f"({check.fields} tcpstall fields)")
            else:
                click.echo(f"loaded:         NO (via {check.via}; tcpstall.lua listed: "
                           f"{', '.join(check.loaded_from) or 'none'}; {check.fields} tcpstall fields)")
        if info.lua is None or not check.ok:
            problems.append(checks.why_not_loaded(check if info.lua else None, info.lua))
    except TsharkError as exc:          # e.g. a different installed copy, or no user to run tshark as
        problems.append(str(exc))
    folder = installer.personal_lua_folder(info.path)
    if folder is None:
        click.echo("plugin folder:  (tshark -G folders names no personal Lua plugin folder)")
        problems.append("run the GUI once or set --dir for install-plugins")
    else:
        state = installed_state(folder)
        click.echo(f"plugin folder:  {folder}")
        if not state.present:
            click.echo("installed:      no (tcpstall passes -X lua_script to tshark itself; for the GUI "
                       "run `tcpstall install-plugins`)")
        elif state.same:
            click.echo(f"installed:      yes, identical to this package's copy ({state.entry})")
        else:
            click.echo("installed:      yes, but a DIFFERENT copy (" + ", ".join(state.differing) + " differ)")
            problems.append("run `tcpstall install-plugins` to update the installed copy")
        note = checks.gui_note(info.version)
        if note:
            click.echo(f"note:           {note}")
    if problems:
        for p in dict.fromkeys(problems):
            click.echo(f"fix: {p}", err=True)
        sys.exit(EXIT_PROBLEM)
    click.echo("ok")


@main.command("install-plugins")
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Install here instead of Wireshark's personal Lua plugin folder.")
@click.option("--global", "global_", is_flag=True,
              help="Install into the global Lua plugin folder (as root: loaded for every user, root included).")
@click.option("--uninstall", is_flag=True, help="Remove tcpstall's files from that folder.")
@tshark_option
@friendly_errors
def install_plugins(folder, global_, uninstall, tshark):
    """Copy the tcpstall Lua plugin into Wireshark's personal Lua plugin folder.

    The folder is the one `tshark -G folders` calls "Personal Lua Plugins" (Wireshark GUI:
    Help → About Wireshark → Folders); the files go into its `tcpstall/` subfolder. Running it
    again only reports "up to date". Restart Wireshark (or Analyze → Reload Lua Plugins) to load
    the new copy. As root, Wireshark 4.2+ skips the personal folder: use --global (INSTALL.md).
    """
    if folder is None:
        path = tshark_info(tshark, require_lua=False).path
        folder = installer.global_lua_folder(path) if global_ else installer.personal_lua_folder(path)
        if folder is None:
            fail(f"tshark -G folders names no {'global' if global_ else 'personal'} Lua plugin folder: "
                 "give one with --dir")
    elif global_:
        raise click.UsageError("--dir and --global name two different folders: give one")
    for line in (installer.uninstall(folder) if uninstall else installer.install(folder)):
        click.echo(line)


@main.command()
@click.argument("capture", type=click.Path(dir_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True,
              help="JSON instead of tables: `streams` (the per-stream columns, null where there is nothing "
                   "to report) and `findings` (kind, summary, stream, frames, start, end, duration_ms and the "
                   "analyzer's numbers, e.g. a HOL episode's severity, rwnd's cause and cause_text).")
@click.option("-o", "prefs", metavar="PREF:VALUE", multiple=True, callback=_prefs,
              help="tcpstall preference, repeatable (e.g. -o tcp_retries2:6 -o hol_warn_ms:50). The sender's "
                   "settings tcp_retries2, rto_min_ms, rto_max_ms, user_timeout_ms take whole numbers.")
@log_options(two_captures=False)
@tshark_option
@progress_option
@friendly_errors
def analyze(capture, as_json, prefs, logs, log_tz, log_format, html_out, tshark):
    """What stalled in one capture: per stream HOL episodes (and the other analyzers' columns),
    then one line per finding. Runs tshark once, one pass, with the tcpstall plugin, without
    Wireshark's own sequence analysis (the plugin tells retransmissions apart itself; -o
    tcp.analyze_sequence_numbers:TRUE turns it back on, with the same verdicts).

    With --log, the app's stalls and timeouts are explained by the capture's findings."""
    import json as _json

    from .analyze import analyze_capture, render_table, to_json
    _check_inputs(logs, [html_out])
    if logs or html_out:                 # the timeline's packets from the same (one) tshark run
        from .pipeline import read_capture
        result, packets = read_capture(capture, tshark=tshark, prefs=prefs)
    else:
        result = analyze_capture(capture, tshark=tshark, prefs=prefs)
    _warn(result.warnings)
    if not (logs or html_out):
        click.echo(_json.dumps(to_json(result), indent=2) if as_json else render_table(result))
        return
    from .render.timeline import diagnosis_text, timeline_table, with_logs_json
    from .timeline import report_for_analysis

    report = report_for_analysis(result, packets, logs, default_tz=log_tz, fmt=log_format)
    _warn(report.warnings)
    if html_out:
        from .render.html import render_html, write_html
        write_html(html_out, render_html(report, title=f"tcpstall analyze {capture}",
                                         tcp_findings=result.findings))
        click.echo(f"tcpstall: wrote {html_out}", err=True)
    if as_json:
        click.echo(_json.dumps(with_logs_json(to_json(result), report), indent=2))
    else:
        click.echo("\n\n".join([render_table(result), diagnosis_text(report.diagnosis),
                                 timeline_table(report.rows, report.zone, two_captures=False)]))


@main.command()
@click.argument("capture_a", type=click.Path(dir_okay=False, path_type=str))
@click.argument("capture_b", type=click.Path(dir_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="JSON (clock offset, delays, flows, lost, findings).")
@click.option("--annotate", "annotate", metavar="OUT.pcapng", type=click.Path(dir_okay=False, path_type=str),
              default=None, help="Write capture A with frame comments saying what happened to each packet.")
@click.option("--filter", "display_filter", metavar="DISPLAY_FILTER", default=None,
              help="Wireshark display filter applied to both captures (mind NAT: addresses may differ).")
@click.option("--plugin/--no-plugin", "plugin", default=True, show_default=True,
              help="Also run the tcpstall plugin over each capture and link its HOL/rwnd/retries findings "
                   "to the losses.")
@click.option("-o", "prefs", metavar="PREF:VALUE", multiple=True, callback=_prefs,
              help="tcpstall plugin preference, repeatable (with --plugin).")
@log_options(two_captures=True)
@tshark_option
@progress_option
@friendly_errors
def correlate(capture_a, capture_b, as_json, annotate, display_filter, plugin, prefs, logs, log_tz, log_format,
              html_out, tshark):
    """Lay two captures of the same connections side by side (e.g. sender and receiver).

    Pairs connections by TCP content (sequence numbers, lengths, TCP timestamps; NAT may change
    addresses and ports), matches every transmission, measures the clock offset between the
    capture hosts and the one-way delays, and lists the segments lost between the two capture
    points with the retransmission that finally delivered them (a lost spurious retransmission,
    whose earlier copy got through, is listed as a loss that delayed nothing). A packet missing
    downstream that the receiver acknowledged anyway is a capture drop, not a loss. Exit status 1
    when the captures share no TCP segment.
    """
    import json as _json

    from .pipeline import read_pair
    from .render.json import correlate_json

    for spec in logs:
        if spec.side is None:
            raise click.BadParameter(f"{spec.path}: say which capture's host wrote it: {spec.path}@A or "
                                     f"{spec.path}@B", param_hint="--log")
    _check_inputs(logs, [html_out, annotate])
    # one tshark per capture: the rows to match, the plugin's findings, the timeline's packets
    read = read_pair(capture_a, capture_b, tshark=tshark, display_filter=display_filter, prefs=prefs,
                     plugin=plugin, packets=bool(logs or html_out))
    result = read.result
    report = None
    if logs or html_out:
        from .timeline import report_for_correlation
        report = report_for_correlation(result, read.packets, logs, default_tz=log_tz, fmt=log_format)
        _warn(report.warnings)
    if annotate:
        from .render.pcapng import correlate_comments, write_annotated
        comments = correlate_comments(result)
        if report is not None:
            from .timeline import log_comments
            for frame, text in log_comments(report.logs, report.packets["A"], "A").items():
                comments[frame] = f"{comments[frame]}; {text}" if frame in comments else text
        n = write_annotated(capture_a, annotate, comments)
        click.echo(f"tcpstall: wrote {annotate} ({n} frame comments)", err=True)
    if html_out:
        from .render.html import render_html, write_html
        write_html(html_out, render_html(report, title=f"tcpstall correlate {capture_a} {capture_b}",
                                         tcp_findings=result.findings, notes=result.notes))
        click.echo(f"tcpstall: wrote {html_out}", err=True)
    if report is None or not logs:
        if as_json:
            click.echo(_json.dumps(correlate_json(result), indent=2))
        else:
            from .render.table import correlate_table      # (tabulate: only for tables)
            click.echo(correlate_table(result))
        return
    from .render.table import correlate_table
    from .render.timeline import diagnosis_text, timeline_table, with_logs_json
    if as_json:
        click.echo(_json.dumps(with_logs_json(correlate_json(result), report), indent=2))
    else:
        click.echo("\n\n".join([correlate_table(result), diagnosis_text(report.diagnosis),
                                 timeline_table(report.rows, report.zone, two_captures=True)]))


def _pair_suffixes(ctx, param, values):
    from .fleet import parse_suffix_pair
    try:
        return tuple(parse_suffix_pair(v) for v in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@main.command(epilog="""\b
Examples:
  tcpstall scan sample_captures                     every capture below the folder, pairs correlated
  tcpstall scan 'fleet/**/*.pcapng' --top 10        a glob (quoted: tcpstall expands it, ** too)
  tcpstall scan dumps/ --pair-suffixes=-tx,-rx      pairs named X-tx.pcap + X-rx.pcap
  tcpstall scan --manifest pairs.csv                pairs listed in a CSV file
  tcpstall scan dumps/ --json > stalls.json         every finding, machine-readable
  tcpstall scan dumps/ --dask tcp://sched:8786      the same tasks on an existing Dask cluster
""")
@click.argument("paths", nargs=-1, metavar="PATH...")
@click.option("--manifest", metavar="FILE.csv", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="CSV, one unit a line: `A,B` for a pair (A = capture A of `tcpstall correlate`), or one "
                   "path for a capture scanned alone; paths relative to the manifest's folder, `#` comments, "
                   "no header. Its files are not paired again by name.")
@click.option("--pair-suffixes", "pair_suffixes", metavar="A_SUFFIX,B_SUFFIX", multiple=True,
              callback=_pair_suffixes,
              help="Naming rule for pairs, repeatable: DIR/X<A_SUFFIX>.EXT and DIR/X<B_SUFFIX>.EXT (same "
                   "folder, X and extension) are correlated as captures A and B. Default: -client,-server.")
@click.option("--no-pairs", is_flag=True, help="Scan every file alone (no naming rule).")
@click.option("--top", type=click.IntRange(min=0), default=None, metavar="N",
              help="Rows of the ranked table (default 20; 0: all). With --json it limits `stalls` "
                   "(default: all).")
@click.option("--json", "as_json", is_flag=True,
              help="JSON: `stalls` (ranked: file, stream, kind, severity, duration_ms, first_frame, summary, "
                   "id, caused_by), `captures` (every file: error, all findings with severity), `pairs` "
                   "(clock_offset_ms, matched, lost_total, the losses between the captures), `errors`, "
                   "`warnings`.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, metavar="N",
              help="Local worker processes (default: the cores this process may use; not with --dask).")
@click.option("--dask", "dask_address", metavar="ADDRESS", default=None,
              help="Run the tasks on an existing Dask distributed cluster (e.g. tcp://host:8786); its "
                   "workers need tcpstall and tshark installed and the files at the same paths. Needs "
                   "`pip install 'tcpstall[dask]'`.")
@click.option("--quiet", "-q", is_flag=True, help="No progress line on stderr.")
@click.option("-o", "prefs", metavar="PREF:VALUE", multiple=True,
              help="tcpstall preference for every capture, repeatable (e.g. -o tcp_retries2:6).")
@tshark_option
@friendly_errors
def scan(paths, manifest, pair_suffixes, no_pairs, top, as_json, jobs, dask_address, quiet, prefs, tshark):
    """Scan many captures: one ranked table of the worst stalls across all of them.

    PATH is a capture file, a folder (searched recursively for *.pcapng, *.pcap, *.cap, also
    gzipped; hidden folders skipped) or a glob. Files named X-client.EXT and X-server.EXT in the
    same folder are a pair: correlated like `tcpstall correlate` (capture A = -client), so a
    stall is linked to the segment lost between the two capture points. Every file is analysed
    once. Stalls (HOL-blocked delivery, receiver window throttling, retries) are ranked by
    severity, then by their duration measured from the packets.

    A file that cannot be read is listed with its error and the others are still scanned;
    the exit status is then 1.
    """
    import json as _json

    from . import fleet
    from . import scan as scanner
    from .tshark import parse_pref_option

    if not paths and not manifest:
        raise click.UsageError("give a PATH (file, folder, glob) or --manifest FILE")
    if dask_address and jobs:
        raise click.UsageError("--jobs is for the local pool; a Dask cluster has its own workers")
    units = fleet.discover(paths, manifest=manifest,
                           suffixes=() if no_pairs else (pair_suffixes or (fleet.DEFAULT_PAIR_SUFFIXES,)))
    if not units:
        fail(f"no capture files (*.pcapng, *.pcap, *.cap, gzipped too) in {', '.join(paths)}")
    if not dask_address:
        tshark_info(tshark)             # no tshark here: one line now, not one per file
    task = scanner.make_task(tshark, dict(parse_pref_option(p) for p in prefs))
    progress = scanner.Progress(sum(len(u.files) for u in units), scanner.progress_stream(quiet))
    try:
        if dask_address:
            results = scanner.run_dask(units, task, dask_address, on_done=progress)
        else:
            results = scanner.run_local(units, task, jobs or scanner.default_jobs(), on_done=progress)
    except scanner.ScanError as exc:
        fail(str(exc))
    finally:
        progress.close()
    _warn(w for r in results for w in r.warnings)
    if as_json:
        click.echo(_json.dumps(scanner.to_json(results, top), indent=2))
    else:
        click.echo(scanner.render_table(results, 20 if top is None else top))
    if any(r.errors for r in results):
        sys.exit(EXIT_PROBLEM)

if __name__ == "__main__":
    main()
