"""`tcpstall scan`: discovery and pairing (fleet.py), the ranked table and JSON over a small fleet
of real captures (a pair, a single, a broken file), the local pool and a Dask LocalCluster."""
from __future__ import annotations

import gzip
import io
import json
import os

import pytest
from click.testing import CliRunner

from conftest import sample, truth
from pytshark_ext import fleet, scan
from pytshark_ext.cli import main
from pytshark_ext.records import Finding

pytestmark = pytest.mark.slow      # end-to-end: whole fleets, a Dask LocalCluster; the full suite (make test) runs it

BROKEN = b"this is not a capture file, only text that happens to be long enough\n" * 4


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory):
    """pair/heartbeat-loss-{client,server}.pcapng (symlinks), solo/cable-back-client.pcapng.gz
    (gzipped, which tshark reads; its server capture left out: scanned alone), broken.pcap (text)."""
    root = tmp_path_factory.mktemp("fleet")
    (root / "pair").mkdir()
    (root / "solo").mkdir()
    for side in ("client", "server"):
        os.symlink(sample(f"heartbeat-loss-{side}.pcapng"), root / "pair" / f"heartbeat-loss-{side}.pcapng")
    gzipped = gzip.compress(sample("cable-back-client.pcapng").read_bytes())
    (root / "solo" / "cable-back-client.pcapng.gz").write_bytes(gzipped)
    (root / "broken.pcap").write_bytes(BROKEN)
    return root


def run_scan(*args):
    return CliRunner().invoke(main, ["scan", *map(str, args)])


@pytest.fixture(scope="module")
def scanned(fleet_dir):
    r = run_scan(fleet_dir, "--json", "-j", "2")
    return r, json.loads(r.stdout)


def test_worst_stall_first_with_its_measured_duration(scanned, fleet_dir):
    r, doc = scanned
    stalls = doc["stalls"]
    assert [(os.path.basename(s["file"]), s["kind"]) for s in stalls] == [
        ("cable-back-client.pcapng.gz", "retries"),
        ("heartbeat-loss-client.pcapng", "hol_blocked"), ("heartbeat-loss-server.pcapng", "hol_blocked")]
    assert [s["rank"] for s in stalls] == [1, 2, 3] and doc["stalls_total"] == 3
    # the retries stall: first send to the ACK that ended it, which came after the lab saw the
    # retransmission delivered and before the client's request returned
    worst, cb = stalls[0], truth("cable-back")
    request = next(q for q in cb["app"]["requests"] if q["start"] <= cb["retries"]["first_send"] <= q["done"])
    assert cb["retries"]["recovered_after_s"] * 1000 < worst["duration_ms"] < request["proc_time_ms"]
    assert worst["severity"] == "warn" and worst["stream"] == 0
    assert worst["first_frame"] == truth("cable-back")["dropped_segments"][0]["frame"]
    # the HOL hold at the server, as the lab measured it
    held = truth("heartbeat-loss")["faults"][0]["held_at_server"][0]
    assert stalls[2]["duration_ms"] == pytest.approx(held["hold_ms"], abs=0.1)
    assert stalls[2]["first_frame"] == 92 and stalls[2]["severity"] == "warn"


def test_pair_by_name_is_correlated(scanned, fleet_dir):
    _, doc = scanned
    client, server = (str(fleet_dir / "pair" / f"heartbeat-loss-{s}.pcapng") for s in ("client", "server"))
    (pair,) = doc["pairs"]
    assert (pair["a"], pair["b"], pair["correlated"], pair["lost_total"]) == (client, server, True, 1)
    (lost,) = [f for f in pair["findings"] if f["kind"] == "lost"]
    assert lost["numbers"]["seq_raw"] == truth("heartbeat-loss")["dropped_segments"][0]["seq_raw"]
    hol = [s for s in doc["stalls"] if s["kind"] == "hol_blocked"]
    assert [s["caused_by"] for s in hol] == [[lost["id"]], [lost["id"]]]
    by_file = {c["file"]: c for c in doc["captures"]}
    assert (by_file[client]["side"], by_file[client]["pair_with"]) == ("A", server)
    assert (by_file[server]["side"], by_file[server]["pair_with"]) == ("B", client)
    solo = by_file[str(fleet_dir / "solo" / "cable-back-client.pcapng.gz")]
    assert solo["pair_with"] is None and solo["side"] is None
    # every file once: 4 found, each in one capture entry
    assert doc["files"] == 4 and len(by_file) == 4


def test_broken_file_is_listed_and_exits_1(scanned, fleet_dir):
    r, doc = scanned
    assert r.exit_code == 1
    broken = str(fleet_dir / "broken.pcap")
    (err,) = doc["errors"]
    assert err.startswith(f"{broken}: ") and "\n" not in err
    assert {c["file"]: c["error"] for c in doc["captures"]}[broken] == err
    assert "Traceback" not in r.output


def test_table_ranked_top_and_unreadable(fleet_dir):
    r = run_scan(fleet_dir, "--top", "2", "-j", "1")
    assert r.exit_code == 1, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == "4 capture file(s), 1 pair(s) correlated: 3 stall(s) in 3 file(s), 1 unreadable"
    header = next(i for i, ln in enumerate(lines) if ln.startswith("#"))
    assert lines[header].split() == ["#", "file", "stream", "kind", "severity", "duration", "first", "frame",
                                     "summary"]
    first, second = lines[header + 2], lines[header + 3]
    assert first.split()[:8] == ["1", str(fleet_dir / "solo" / "cable-back-client.pcapng.gz"), "0", "retries",
                                 "warn", "26.72", "s", "8"]
    assert second.split()[:8] == ["2", str(fleet_dir / "pair" / "heartbeat-loss-client.pcapng"), "0",
                                  "hol_blocked", "warn", "20.3", "ms", "93"]
    assert second.endswith("[1 segment lost between the captures]")
    assert "... 1 more (--top 0 lists all)" in lines
    assert lines[-1].startswith(f"unreadable: {fleet_dir / 'broken.pcap'}: ")


def test_manifest_pairs_files_the_naming_rule_would_not(tmp_path):
    for side, name in (("client", "sender.pcapng"), ("server", "receiver.pcapng")):
        os.symlink(sample(f"heartbeat-loss-{side}.pcapng"), tmp_path / name)
    manifest = tmp_path / "pairs.csv"
    manifest.write_text("# capture A, capture B\nsender.pcapng,receiver.pcapng\n\n")
    r = run_scan("--manifest", manifest, "--json", "-q")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    (pair,) = doc["pairs"]
    assert (pair["a"], pair["b"], pair["lost_total"]) == (str(tmp_path / "sender.pcapng"),
                                                          str(tmp_path / "receiver.pcapng"), 1)
    assert [s["caused_by"] for s in doc["stalls"]] == [["lost-1"], ["lost-1"]]
    # without the manifest the two are scanned alone
    assert [u.files for u in fleet.discover([str(tmp_path)])] == [(str(tmp_path / "receiver.pcapng"),),
                                                                   (str(tmp_path / "sender.pcapng"),)]


def test_named_pair_that_does_not_correlate_is_scanned_alone(tmp_path):
    os.symlink(sample("cable-back-client.pcapng"), tmp_path / "x-client.pcapng")
    os.symlink(sample("peer-vanishes-server.pcapng"), tmp_path / "x-server.pcapng")
    r = run_scan(tmp_path, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [(p["correlated"], p["findings"]) for p in doc["pairs"]] == [(False, [])]
    assert [(os.path.basename(s["file"]), s["kind"]) for s in doc["stalls"]] == [("x-client.pcapng", "retries")]
    (warning,) = doc["warnings"]
    assert warning.startswith(f"not correlated, scanned each alone: {tmp_path / 'x-client.pcapng'} and ")
    assert r.stderr == f"tcpstall: warning: {warning}\n"


def test_pair_with_a_broken_side_still_scans_the_other(tmp_path):
    (tmp_path / "y-client.pcapng").write_bytes(BROKEN)
    os.symlink(sample("heartbeat-loss-server.pcapng"), tmp_path / "y-server.pcapng")
    r = run_scan(tmp_path, "--json")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert [(p["a"], p["correlated"]) for p in doc["pairs"]] == [(str(tmp_path / "y-client.pcapng"), False)]
    assert [e.split(": ")[0] for e in doc["errors"]] == [str(tmp_path / "y-client.pcapng")]
    held = truth("heartbeat-loss")["faults"][0]["held_at_server"][0]
    assert [(os.path.basename(s["file"]), s["kind"], s["caused_by"]) for s in doc["stalls"]] == [
        ("y-server.pcapng", "hol_blocked", [])]
    assert doc["stalls"][0]["duration_ms"] == pytest.approx(held["hold_ms"], abs=0.1)


def test_dask_local_cluster_gives_the_local_result(scanned, fleet_dir):
    distributed = pytest.importorskip("distributed", reason="the [test] extra installs distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                                  dashboard_address=":0") as cluster:
        r = run_scan(fleet_dir, "--json", "--dask", cluster.scheduler_address)
    assert r.exit_code == 1
    assert json.loads(r.stdout) == scanned[1]


def test_dask_without_distributed_is_one_line(fleet_dir, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "distributed", None)       # import distributed -> ImportError
    r = run_scan(fleet_dir / "solo", "--dask", "tcp://127.0.0.1:8786")
    assert r.exit_code == 1
    assert r.stderr == "tcpstall: --dask needs the `distributed` package: pip install 'tcpstall[dask]'\n"


# --- discovery and pairing (no tshark) ---------------------------------------------------------

def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return str(path)


def test_discover_folders_globs_pairs_and_dedup(tmp_path):
    a = touch(tmp_path / "x" / "web1-client.pcapng")
    b = touch(tmp_path / "x" / "web1-server.pcapng")
    other_ext = touch(tmp_path / "x" / "web2-client.pcap")
    touch(tmp_path / "x" / "web2-server.pcapng")            # another extension: not web2-client's partner
    gz_a, gz_b = touch(tmp_path / "x" / "web3-client.pcap.gz"), touch(tmp_path / "x" / "web3-server.pcap.gz")
    gz = touch(tmp_path / "y" / "dump.cap.gz")
    touch(tmp_path / "y" / "notes.txt")
    touch(tmp_path / ".snapshots" / "old-client.pcapng")     # hidden folder: skipped
    units = fleet.discover([str(tmp_path), a, str(tmp_path / "y" / "*.gz")])
    assert [u.files for u in units] == [
        (a, b), (other_ext,), (str(tmp_path / "x" / "web2-server.pcapng"),), (gz_a, gz_b), (gz,)]
    # other suffixes, and none
    assert fleet.discover([str(tmp_path / "x")], suffixes=[("1-client", "1-server")])[0].files == (a, b)
    assert all(not u.is_pair for u in fleet.discover([str(tmp_path / "x")], suffixes=()))
    # a pattern that matches nothing is a unit with its problem (the scan lists it, exit 1)
    (nothing,) = fleet.discover([str(tmp_path / "z" / "*.pcap")])
    assert nothing.problem == f"{tmp_path / 'z' / '*.pcap'}: matches no file"


def test_manifest_format_errors(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("a.pcapng,b.pcapng\nsolo.pcap\n# note\na,b,c\n")
    with pytest.raises(fleet.ManifestError, match=r"m\.csv:4: expected `CAPTURE_A,CAPTURE_B` or one capture"):
        fleet.read_manifest(str(m))
    m.write_text("a.pcapng,b.pcapng\n\nb.pcapng\n")
    with pytest.raises(fleet.ManifestError, match=r"m\.csv:3: b\.pcapng is already listed on line 1"):
        fleet.read_manifest(str(m))
    m.write_text("a.pcapng, b.pcapng\nsolo.pcap\n")
    assert [u.files for u in fleet.read_manifest(str(m))] == [
        (str(tmp_path / "a.pcapng"), str(tmp_path / "b.pcapng")), (str(tmp_path / "solo.pcap"),)]
    # a manifest's files are not scanned again when a PATH reaches them
    touch(tmp_path / "a.pcapng")
    assert [u.files for u in fleet.discover([str(tmp_path / "a.pcapng")], manifest=str(m))] == [
        (str(tmp_path / "a.pcapng"), str(tmp_path / "b.pcapng")), (str(tmp_path / "solo.pcap"),)]
    r = run_scan("--manifest", tmp_path / "missing.csv")
    assert r.exit_code == 1 and r.stderr.startswith(f"tcpstall: {tmp_path / 'missing.csv'}: ")


def test_pair_suffixes_option_is_checked():
    r = run_scan(".", "--pair-suffixes", "-tx")
    assert r.exit_code == 2 and "expected two different suffixes" in r.output


# --- ranking (pure) ----------------------------------------------------------------------------

def _finding(kind, ms, **numbers):
    return Finding(kind=kind, summary=kind, start=0.0, end=ms / 1000.0, stream=0, id=f"{kind}-1", numbers=numbers)


def test_rank_by_severity_then_duration():
    results = [scan.UnitResult((scan.CaptureScan("a.pcapng", (
        _finding("hol_blocked", 15.0, severity="note"),
        _finding("retries", 900.0, severity="warn"),                # approaching
        _finding("lost", 5000.0),                                   # not a stall
    )),)), scan.UnitResult((scan.CaptureScan("b.pcapng", (
        _finding("retries", 300.0, severity="error"),               # the last one before the abort
        _finding("rwnd_throttling", 2000.0, severity="warn", start_frame=4),
    )),))]
    rows = scan.ranked(results)
    assert [(r.file, r.kind, r.severity, r.duration_ms) for r in rows] == [
        ("b.pcapng", "retries", "error", 300.0), ("b.pcapng", "rwnd_throttling", "warn", 2000.0),
        ("a.pcapng", "retries", "warn", 900.0), ("a.pcapng", "hol_blocked", "note", 15.0)]
    assert rows[1].first_frame == 4


def test_table_says_where_the_window_could_not_be_told():
    """A pure unit test of the text: "no stall" in a file whose analysis could not see a window limit
    (rwnd_cannot_tell, a note) is not a verdict, and the table says which files those are."""
    results = [scan.UnitResult((scan.CaptureScan("a.pcapng", (
        _finding("rwnd_cannot_tell", 0.0, severity="note", reason="scale_and_rtt_unknown"),)),)),
        scan.UnitResult((scan.CaptureScan("b.pcapng", (_finding("hol_blocked", 15.0, severity="warn"),)),))]
    lines = scan.render_table(results).splitlines()
    assert lines[0].endswith("1 stall(s) in 1 file(s)")
    assert lines[-1] == ("cannot tell whether the receiver window limited a transfer (no handshake, no TCP "
                         "timestamps at that capture point) in 1 file(s): a.pcapng")
    assert "cannot tell" not in scan.render_table(results[1:])


def test_progress_counts_files():
    out = io.StringIO()
    p = scan.Progress(3, out)
    p(fleet.Unit(("a-client.pcapng", "a-server.pcapng")))
    p(fleet.Unit(("b.pcap",)))
    p.close()
    assert out.getvalue() == ("\rtcpstall scan: 0/3 files\rtcpstall scan: 2/3 files\rtcpstall scan: 3/3 files"
                              "\r\x1b[K")
    silent = scan.Progress(1, None)
    silent(fleet.Unit(("b.pcap",)))
    silent.close()


def test_progress_only_on_a_terminal_and_not_quiet(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True
    monkeypatch.setattr("sys.stderr", Tty())
    assert scan.progress_stream(quiet=False) is not None and scan.progress_stream(quiet=True) is None
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert scan.progress_stream(quiet=False) is None
