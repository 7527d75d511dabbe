"""The plugin core: loading (script path and personal plugin folder), sequence arithmetic,
`-z tcpstall`, robustness on odd input, passes, retransmission triggers."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from pytshark_ext import tshark as ts
from pytshark_ext.analyze import z_tsv_record
from pytshark_ext.paths import plugin_dir, plugin_script

from conftest import SAMPLES, inner_loop, run_tshark, sample, truth


@pytest.fixture(autouse=True, scope="module")
def _home(module_home):
    """A HOME of the tests' own; the tests that install the plugin ask for isolated_home."""
    yield module_home


def tshark_out(args, *, plugin=True, check=True, home=None) -> subprocess.CompletedProcess:
    cmd = [shutil.which("tshark")] + ([] if args and args[0] == "-G" else ["-n"])
    if plugin:
        cmd += ["-X", f"lua_script:{plugin_script()}"]
    proc = run_tshark(cmd + list(args), home=home, capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    assert "Lua: Error" not in proc.stderr and "Lua Error:" not in proc.stdout, proc.stderr + proc.stdout[-2000:]
    return proc


def z_tsv(capture, *extra) -> dict:
    out = tshark_out(["-r", str(capture), "-q", "-z", "tcpstall,tsv", *extra]).stdout
    records = [r for r in map(z_tsv_record, out.splitlines()) if r is not None]
    streams = {int(kv["stream"]): kv for kind, kv in records if kind == "TCPSTALL"}
    end = next((kv for kind, kv in records if kind == "TCPSTALL_END"), None)
    assert end is not None, out
    return {"streams": streams, "end": end}


def test_fields_experts_prefs_are_registered():
    g = ["-X", f"lua_script:{plugin_script()}"]
    out = tshark_out(["-G", "fields", *g], plugin=False).stdout
    names = {ln.split("\t")[2] for ln in out.splitlines() if ln.startswith("F\t") or ln.startswith("P\t")}
    for f in ("tcpstall", "tcpstall.hol.hold_ms", "tcpstall.hol.released_bytes", "tcpstall.hol.max_hold_ms",
              "tcpstall.hol.release_frame", "tcpstall.hol.first_held_frame", "tcpstall.rwnd.window",
              "tcpstall.rwnd.scale", "tcpstall.rwnd.scale_inferred", "tcpstall.rwnd.cap_mbps",
              "tcpstall.rwnd.limited_ms", "tcpstall.retries.count", "tcpstall.retries.elapsed_s",
              "tcpstall.retries.abort_at_s", "tcpstall.retrans.trigger", "tcpstall.retries.assumed",
              "tcpstall.retries.linux_like", "tcpstall.retries.kind", "tcpstall.retries.control",
              # expert infos are registered as fields too (Lua experts are not listed by -G expert)
              "tcpstall.hol.blocked", "tcpstall.hol.released", "tcpstall.rwnd.throttling",
              "tcpstall.retries.approaching", "tcpstall.retries.final", "tcpstall.thin_stream",
              # issue 14 (CONTRACT.md)
              "tcpstall.hol.severity", "tcpstall.hol.fill", "tcpstall.thin_stream.interval_ms",
              "tcpstall.thin_stream.wait_ms", "tcpstall.thin_stream.wait_estimated", "tcpstall.thin_stream.rtt_ms",
              "tcpstall.retrans.number", "tcpstall.retrans.dupacks", "tcpstall.retrans.since_first_ms",
              "tcpstall.retrans.since_prev_ms", "tcpstall.capture.duplicate", "tcpstall.capture.time_backwards_ms"):
        assert f in names, f
    prefs = tshark_out(["-G", "defaultprefs", *g], plugin=False).stdout
    # the sender's settings are empty until given: the prediction then assumes Linux's defaults and
    # says so (tcpstall.retries.assumed)
    for p, v in (("hol_enabled", "TRUE"), ("rwnd_enabled", "TRUE"), ("retries_enabled", "TRUE"),
                 ("hol_warn_ms", "20"), ("tcp_retries1", "3"), ("tcp_retries2", ""), ("rto_min_ms", ""),
                 ("rto_max_ms", ""), ("user_timeout_ms", ""), ("rwnd_min_episode_ms", None)):
        assert f"#tcpstall.{p}:" in prefs, p
        if v is not None:
            assert f"#tcpstall.{p}: {v}\n" in prefs, p


def test_expert_severities_on_a_real_release():
    rows = list(ts.iter_fields(str(sample("heartbeat-loss-server.pcapng")),
                               ["tcpstall.hol.released", "tcpstall.thin_stream", "_ws.expert.message",
                                "_ws.expert.severity"], two_pass=True, display_filter="tcpstall.hol.released"))
    assert len(rows) == 1
    sev = dict(zip(rows[0][2], rows[0][3]))
    hol = [m for m in sev if m.startswith("HOL-blocked delivery: released")][0]
    thin = [m for m in sev if m.startswith("Thin stream")][0]
    # tshark prints the severity as its numeric value: warn 0x00600000, note 0x00400000
    assert int(sev[hol], 0) == 0x00600000 and int(sev[thin], 0) == 0x00400000


def test_loads_from_personal_plugin_folder(isolated_home):
    """Copied into the personal folder, Wireshark also runs the module files on their own while
    scanning recursively: they must be harmless, and the entry must find them next to itself."""
    folder = isolated_home / ".local" / "lib" / "wireshark" / "plugins" / "tcpstall"   # install-plugins' layout
    folder.mkdir(parents=True)
    shutil.copy(plugin_script(), folder)
    shutil.copytree(plugin_dir() / "tcpstall", folder / "tcpstall")
    proc = tshark_out(["-r", str(sample("heartbeat-loss-server.pcapng")), "-q", "-z", "tcpstall"], plugin=False,
                      home=isolated_home)
    assert "tcpstall: TCP stall diagnostics" in proc.stdout
    assert "Lua" not in proc.stderr


def test_loads_via_relative_script_path(tmp_path):
    """`-X lua_script:plugins/tcpstall.lua` from the repository root (relative path)."""
    root = plugin_dir().parent
    proc = run_tshark([shutil.which("tshark"), "-X", "lua_script:plugins/tcpstall.lua", "-r",
                           str(sample("heartbeat-loss-server.pcapng")), "-q", "-z", "tcpstall"],
                          capture_output=True, text=True, cwd=root, timeout=60)
    assert proc.returncode == 0 and "HOL episodes" in proc.stdout, proc.stderr


def test_seq_arithmetic_wraps(tmp_path):
    script = tmp_path / "seqtest.lua"
    seq_path = plugin_dir() / "tcpstall" / "seq.lua"
    script.write_text(f"""
local seq = loadfile({str(seq_path)!r})()
local T = 4294967296
local checks = {{
  seq.diff(5, T - 5) == 10, seq.diff(T - 5, 5) == -10, seq.diff(7, 7) == 0,
  seq.unwrap(100, T - 1000) == T + 100, seq.unwrap(T - 10, T + 50) == T - 10,
  seq.unwrap(3, 2 * T + 1) == 2 * T + 3, seq.wrap(T + 17) == 17,
  seq.lt(T - 1, 0), seq.le(0, 0), not seq.lt(0, T - 1),
}}
for i, ok in ipairs(checks) do print("SEQCHECK " .. i .. " " .. tostring(ok)) end
""")
    proc = tshark_out(["-X", f"lua_script:{script}", "-r", str(sample("heartbeat-loss-server.pcapng")),
                       "-c", "1", "-q"], plugin=False)
    results = [ln for ln in proc.stdout.splitlines() if ln.startswith("SEQCHECK")]
    assert len(results) == 10 and all(ln.endswith("true") for ln in results), results


def z_memory(capture) -> dict:
    out = tshark_out(["-r", str(capture), "-q", "-z", "tcpstall,memory"]).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("TCPSTALL_MEMORY\t"))
    return {k: int(v) for k, v in (kv.split("=") for kv in line.split("\t")[1:])}


# capture -> its unacknowledged segments at the end
OUTSTANDING = {"heartbeat-loss-server": 0, "small-rcvbuf-client": 0, "peer-vanishes-client": 1}


@pytest.mark.parametrize("name", inner_loop(list(OUTSTANDING)))
def test_acknowledged_data_keeps_no_segment_records(name):
    """Once a direction's data is all acknowledged its segment records go (to a shared, bounded
    pool): kept to the capture end, 124 of them stayed on the heartbeat connection, and a short
    connection kept all of its own (~50 KB per 64 KB request on the lab's many-conns capture).
    What was never acknowledged (the vanished peer's last request) stays."""
    m = z_memory(sample(f"{name}.pcapng"))
    assert m["streams"] == 1 and m["segment_records"] == m["outstanding_segments"] == OUTSTANDING[name], m
    assert 0 < m["heap_kb"] < 8192 and m["pooled_records"] <= 2 * 4096


def test_z_tcpstall_text_and_tsv():
    text = tshark_out(["-r", str(sample("heartbeat-loss-server.pcapng")), "-q", "-z", "tcpstall"]).stdout
    assert "HOL episodes" in text and "HOL worst ms" in text
    z = z_tsv(sample("heartbeat-loss-server.pcapng"))
    held = truth("heartbeat-loss")["faults"][0]["held_at_server"][0]
    s = z["streams"][0]
    assert s["hol_episodes"] == "1"
    assert abs(float(s["hol_worst_ms"]) - held["hold_ms"]) <= 1.0
    assert z["end"]["errors"] == "0"


def test_one_pass_and_two_pass_agree():
    """Results are computed once (first pass) and only rendered afterwards: no double counting."""
    one = z_tsv(sample("seq-wrap-server.pcapng"))
    two = z_tsv(sample("seq-wrap-server.pcapng"), "-2", "-Y", "frame")
    assert one["streams"] == two["streams"]


# -z tcpstall,tsv values are plain (issue 16): a number, true/false, "-" (nothing to report) or, for the
# outcome, one word of its documented set; never a number with words ("10 inferred" was rwnd_scale's)
PLAIN = re.compile(r"-?\d+(\.\d+)?|true|false|-")
WORDS = {"retries_outcome": {"recovered", "reset", "aborted", "capture_ends"}}


def lab_capture_params():
    """Every committed capture. The inner loop (plain `pytest`) checks the server side of each
    scenario as the lab made it; the client side and the variants without timestamps (-nots) or cut
    after the handshake (-nohs) are `slow`: the full suite (`make test`, CI) checks them too."""
    def inner(name):
        return name.endswith("-server.pcapng") and "-nohs" not in name and "-nots" not in name
    return [name if inner(name) else pytest.param(name, marks=pytest.mark.slow)
            for name in sorted(p.name for p in SAMPLES.glob("*.pcapng"))]


@pytest.mark.parametrize("capture", lab_capture_params())
def test_no_internal_errors_on_lab_captures(capture):
    z = z_tsv(sample(capture))
    assert z["end"]["errors"] == "0", z["end"]
    assert z["streams"], "every lab capture has a TCP stream"
    for s in z["streams"].values():
        for k, v in s.items():
            if k not in ("src", "dst"):                 # the addresses
                assert PLAIN.fullmatch(v) or v in WORDS.get(k, ()), (k, v)


def test_truncated_frames_do_not_break_the_plugin(tmp_path):
    """editcap -s cuts a real capture to 54 bytes per frame (TCP options and payload gone)."""
    cut = tmp_path / "cut.pcapng"
    subprocess.run([shutil.which("editcap"), "-s", "54", str(sample("heartbeat-loss-server.pcapng")), str(cut)],
                   check=True, capture_output=True)
    proc = tshark_out(["-r", str(cut), "-2", "-Y", "frame", "-V", "-z", "tcpstall,tsv"])
    assert "TCPSTALL_END" in proc.stdout and "errors=0" in proc.stdout


def test_retransmission_triggers_peer_vanishes():
    """Peer gone: the first retransmission of the tail is a loss probe, then RTO with backoff."""
    rows = list(ts.iter_fields(str(sample("peer-vanishes-client.pcapng")),
                               ["frame.number", "frame.time_epoch", "tcpstall.retrans.trigger"],
                               two_pass=True, display_filter="tcpstall.retrans.trigger"))
    triggers = [r[2][0] for r in rows]
    assert triggers[0] == "tlp"
    assert triggers[1:] and all(t == "rto" for t in triggers[1:])
    times = [float(r[1][0]) for r in rows]
    gaps = [b - a for a, b in zip(times[1:], times[2:])]
    assert all(g2 > 1.5 * g1 for g1, g2 in zip(gaps, gaps[1:])), "RTO backoff doubles"


@pytest.mark.parametrize("name, capture, field", [
    ("hol", "heartbeat-loss-server", "tcpstall.hol.released_bytes"),
    pytest.param("rwnd", "small-rcvbuf-server", "tcpstall.rwnd.window", marks=pytest.mark.slow),  # 2 MB
    ("retries", "peer-vanishes-client", "tcpstall.retries.count"),
])
def test_analyzers_can_be_switched_off(name, capture, field):
    """Each analyzer's pref: on (default) it reports on its incident's capture; off, nothing of it
    is left (fields, experts, -z columns) and the other analyzers still run."""
    def frames_with(*prefs):
        out = tshark_out(["-r", str(sample(f"{capture}.pcapng")), "-2", "-Y", field, "-T", "fields",
                          "-e", "frame.number", *prefs]).stdout
        return out.split()
    assert frames_with()
    off = ("-o", f"tcpstall.{name}_enabled:FALSE")
    assert frames_with(*off) == []
    z = z_tsv(sample(f"{capture}.pcapng"), *off)
    assert z["end"]["errors"] == "0"
    cols = z["streams"][0]
    assert not any(k.startswith(name + "_") for k in cols)
    assert all(any(k.startswith(other + "_") for k in cols) for other in {"hol", "rwnd", "retries"} - {name})


def test_plugin_never_writes_files_or_runs_programs():
    for path in [plugin_script(), *sorted((plugin_dir() / "tcpstall").glob("*.lua"))]:
        text = path.read_text()
        for bad in ("os.execute", "io.popen", "io.write", "os.remove", "os.rename", "io.output"):
            assert bad not in text, (path.name, bad)
        assert 'io.open(path, "w' not in text and "register_postdissector(proto, true)" not in text


def test_bench_noop_reads_the_same_extractors():
    """bench/plugin_overhead's baseline must read exactly the plugin's Field extractors."""
    import re
    root = plugin_dir().parent
    plugin = set(re.findall(r'Field\.new\("([^"]+)"\)', plugin_script().read_text()))
    noop_text = (root / "bench" / "plugin_overhead_noop.lua").read_text()
    names = set(re.findall(r'"([a-z0-9_.]+)"', noop_text.split("local NAMES = {", 1)[1].split("}", 1)[0]))
    assert names == plugin


def test_packet_reset_list_matches_the_straight_line_reset():
    import re
    text = plugin_script().read_text()
    listed = re.findall(r'"([a-z_]+)"', text.split("local PKT_RESET = {", 1)[1].split("}", 1)[0])
    body = text.split("local function build_packet(pinfo, number)", 1)[1].split("p.number = number", 1)[0]
    reset = re.findall(r"p\.([a-z_]+) = false", body)
    assert sorted(listed) == sorted(reset)


@pytest.mark.slow      # every capture, two passes
def test_expert_texts_fit_in_a_wireshark_tree_label():
    # Wireshark cuts a label at 239 bytes and prefixes experts with "Expert Info (Warning/Sequence): "
    # (32 bytes): longer texts show as "[truncated]" in the GUI.
    seen = 0
    for cap in sorted(SAMPLES.glob("*.pcapng")):
        out = tshark_out(["-r", str(cap), "-2", "-Y", "tcpstall", "-T", "fields", "-E", "occurrence=a",
                          "-E", "aggregator=\x1e", "-e", "_ws.expert.message"]).stdout
        for msg in (m for line in out.splitlines() for m in line.split("\x1e") if m):
            seen += 1
            assert len(msg.encode()) <= 207, (cap.name, msg)
    assert seen > 50


def test_loaded_twice_is_not_a_lua_error(isolated_home):
    # installed in the personal folder (GUI) and given with -X lua_script: as well
    from click.testing import CliRunner
    from pytshark_ext.cli import main
    assert CliRunner().invoke(main, ["install-plugins"]).exit_code == 0
    held = truth("heartbeat-loss")["faults"][0]["arrived_at_server"][0]["frame"]
    out = tshark_out(["-r", str(sample("heartbeat-loss-server.pcapng")), "-Y", "tcpstall.hol.released",
                      "-T", "fields", "-e", "frame.number"], home=isolated_home).stdout
    assert out.split() == [str(held)]
