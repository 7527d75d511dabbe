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
from .paths import plugin_dir
from .tshark import TsharkError, tshark_info

EXIT_PROBLEM = 1
EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_PROBLEM) -> None:
    click.echo(f"tcpstall: {message}", err=True)
    sys.exit(code)


def friendly_errors(fn):
    """Library exceptions become one line on stderr and exit 1 — never a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (TsharkError, OSError, ValueError) as exc:
            fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return wrapper


tshark_option = click.option(
    "--tshark", "tshark", metavar="PATH", default=None,
    help="tshark to use (default: $TSHARK, then tshark on PATH).")


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
      tcpstall install-plugins              make the Wireshark GUI show the same diagnostics
    """


@main.command()
@tshark_option
def doctor(tshark):
    """Check tshark, its Lua support and the plugin installation; print the fix for what is missing.

    Exit status 0 when tcpstall can run (a plugin not installed for the GUI is only a hint),
    1 when something it needs is missing or a stale plugin copy would be loaded instead of ours.
    """
    problems = []
    try:
        info = tshark_info(tshark, require_lua=False)
    except TsharkError as exc:
        fail(str(exc))
    click.echo(f"tshark:         {info.path}")
    click.echo(f"version:        {info.version_str}")
    click.echo(f"Lua:            {info.lua or 'NO (built without Lua: the plugin cannot run)'}")
    if info.lua is None:
        problems.append("install a tshark built with Lua (Debian/Ubuntu: apt-get install tshark)")
    click.echo(f"plugin source:  {plugin_dir()}")
    folder = installer.personal_lua_folder(info.path)
    if folder is None:
        click.echo("plugin folder:  (tshark -G folders names no personal Lua plugin folder)")
        problems.append("run the GUI once or set --dir for install-plugins")
    else:
        state = installer.installed_state(folder)
        click.echo(f"plugin folder:  {folder}")
        if not state.present:
            click.echo("installed:      no (tcpstall passes -X lua_script to tshark itself; for the GUI "
                       "run `tcpstall install-plugins`)")
        elif state.same:
            click.echo("installed:      yes, identical to this package's copy")
        else:
            click.echo("installed:      yes, but a DIFFERENT copy (" + ", ".join(state.differing) + " differ)")
            problems.append("run `tcpstall install-plugins` to update the installed copy")
    if problems:
        for p in problems:
            click.echo(f"fix: {p}", err=True)
        sys.exit(EXIT_PROBLEM)
    click.echo("ok")


@main.command("install-plugins")
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Install here instead of Wireshark's personal Lua plugin folder.")
@click.option("--uninstall", is_flag=True, help="Remove tcpstall's files from that folder.")
@tshark_option
@friendly_errors
def install_plugins(folder, uninstall, tshark):
    """Copy the tcpstall Lua plugin into Wireshark's personal Lua plugin folder.

    The folder is the one `tshark -G folders` calls "Personal Lua Plugins" (Wireshark GUI:
    Help → About Wireshark → Folders). Running it again only reports "up to date". Restart
    Wireshark (or Analyze → Reload Lua Plugins) to load the new copy.
    """
    if folder is None:
        folder = installer.personal_lua_folder(tshark_info(tshark, require_lua=False).path)
        if folder is None:
            fail("tshark -G folders names no personal Lua plugin folder: give one with --dir")
    for line in (installer.uninstall(folder) if uninstall else installer.install(folder)):
        click.echo(line)


def _not_implemented(name: str) -> None:
    fail(f"`{name}` is not implemented yet", EXIT_USAGE)


@main.command()
@click.argument("capture", type=click.Path(dir_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="JSON with `streams` and `findings` instead of tables.")
@click.option("-o", "prefs", metavar="PREF:VALUE", multiple=True,
              help="tcpstall preference, repeatable (e.g. -o tcp_retries2:6 -o hol_warn_ms:50).")
@tshark_option
@friendly_errors
def analyze(capture, as_json, prefs, tshark):
    """What stalled in one capture: per stream HOL episodes (and the other analyzers' columns),
    then one line per finding. Runs tshark two-pass with the tcpstall plugin."""
    import json as _json

    from .analyze import analyze_capture, render_table, to_json
    from .tshark import parse_pref_option

    result = analyze_capture(capture, tshark=tshark, prefs=dict(parse_pref_option(p) for p in prefs))
    click.echo(_json.dumps(to_json(result), indent=2) if as_json else render_table(result))


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
@click.option("-o", "prefs", metavar="PREF:VALUE", multiple=True,
              help="tcpstall plugin preference, repeatable (with --plugin).")
@tshark_option
@friendly_errors
def correlate(capture_a, capture_b, as_json, annotate, display_filter, plugin, prefs, tshark):
    """Lay two captures of the same connections side by side (e.g. sender and receiver).

    Pairs connections by TCP content (sequence numbers, lengths, TCP timestamps; NAT may change
    addresses and ports), matches every transmission, measures the clock offset between the
    capture hosts and the one-way delays, and lists the segments lost between the two capture
    points with the retransmission that finally delivered them. Exit status 1 when the captures
    share no TCP segment.
    """
    import json as _json

    from .correlate import analyze_both, correlate_captures, with_plugin_findings
    from .render.json import correlate_json
    from .render.table import correlate_table
    from .tshark import parse_pref_option

    plugin_prefs = dict(parse_pref_option(p) for p in prefs)
    result = correlate_captures(capture_a, capture_b, tshark=tshark, display_filter=display_filter)
    if plugin:
        result = with_plugin_findings(result, *analyze_both(capture_a, capture_b, tshark=tshark, prefs=plugin_prefs))
    if annotate:
        from .render.pcapng import correlate_comments, write_annotated
        n = write_annotated(capture_a, annotate, correlate_comments(result))
        click.echo(f"tcpstall: wrote {annotate} ({n} frame comments)", err=True)
    click.echo(_json.dumps(correlate_json(result), indent=2) if as_json else correlate_table(result))


if __name__ == "__main__":
    main()
