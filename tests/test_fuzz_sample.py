"""The CI-sized sample of the robustness fuzz (issue 9): ~100 cases derived from the committed
captures and logs, one target per case (plugin, analyze, correlate, --log, the log reader), so
tshark runs at most once per case. The full run is `python -m bench.fuzz --cases 1000 --seed 1`.

Every case must end without a Python traceback, without a Lua error in the tree
(`_ws.lua.error`) or caught by the plugin, with exit 0 (analysable) or 1 and one line naming the
file, and without leaving a file behind.
"""
from __future__ import annotations

import io
import sys

import pytest

from conftest import ROOT

if str(ROOT) not in sys.path:       # bench/ is not an installed package
    sys.path.insert(0, str(ROOT))

from bench.fuzz import corpus  # noqa: E402
from bench.fuzz.runner import print_report, run_fuzz  # noqa: E402

SEED = 20261121
CASES = 100
# randpkt seeds itself from the clock: kept out of the CI sample so that it is deterministic
CI_CATEGORIES = [c for c in corpus.CATEGORIES if c != "randpkt"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    work = tmp_path_factory.mktemp("fuzz")
    return run_fuzz(cases=CASES, seed=SEED, jobs=2, lab_dir=None, make_lab=False, only_cheap=True,
                    one_target_per_case=True, work=work / "corpus", keep=True, failures_dir=None,
                    categories=CI_CATEGORIES, log=lambda m: None)


def _text(report) -> str:
    buf = io.StringIO()
    print_report(report, buf)
    return buf.getvalue()


@pytest.mark.slow          # the fuzz sample: ~100 tshark runs
def test_sample_is_about_a_hundred_cases_over_every_category(report):
    assert report["totals"]["cases"] == CASES
    assert report["totals"]["cases_made"] >= CASES - 3, report["not_made"]
    assert set(report["categories"]) == set(CI_CATEGORIES)


@pytest.mark.slow          # the fuzz sample: ~100 tshark runs
def test_no_tracebacks_lua_errors_or_leftovers(report):
    t = report["totals"]
    assert (t["tracebacks"], t["lua_error_frames"], t["lua_errors_on_stderr"], t["plugin_internal_errors"],
            t["leftover_files"]) == (0, 0, 0, 0, 0), _text(report)


@pytest.mark.slow          # the fuzz sample: ~100 tshark runs
def test_exit_codes_are_zero_or_one_line_naming_the_file(report):
    t = report["totals"]
    assert t["exit_code_mismatches"] == 0 and t["timeouts"] == 0, _text(report)
    assert t["failed_runs"] == 0, _text(report)


@pytest.mark.slow          # the fuzz sample: ~100 tshark runs
def test_targets_really_ran(report):
    """Skipped is not passed: the plugin and analyze always run; the others once implemented."""
    ran = {t: c.get("pass", 0) + c.get("fail", 0) for t, c in report["targets"].items()}
    assert ran.get("plugin", 0) >= 20 and ran.get("analyze", 0) >= 20, report["targets"]


def test_a_failing_tshark_is_never_lost_when_its_output_ends_first(tmp_path):
    """Regression (found by the fuzz: `notes.pcap` read as "no segments" under load): tshark
    closes stdout, then exits 2 a moment later. Reading to the end must still raise."""
    from pytshark_ext import tshark as ts

    fake = tmp_path / "fake-tshark"
    fake.write_text("#!/bin/sh\necho 1\nexec 1>&-\nsleep 0.7\n"
                    "echo 'tshark: The file \"x\" isn'\"'\"'t a capture file in a format TShark understands.' >&2\n"
                    "exit 2\n")
    fake.chmod(0o755)
    run = ts.TsharkRun([str(fake)], "x.pcapng")
    with pytest.raises(ts.CaptureError, match="x.pcapng: tshark: The file"):
        list(run)


def test_truncated_capture_delivers_its_packets_then_raises_capture_truncated(tmp_path):
    """A capture cut by a full disk: every packet before the cut is delivered, then
    CaptureTruncated (a CaptureError) says so, so callers can keep the analysis and warn."""
    from conftest import sample
    from pytshark_ext import tshark as ts

    data = sample("heartbeat-loss-server.pcapng").read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(data[: len(data) // 2 + 7])
    got = []
    with pytest.raises(ts.CaptureTruncated, match="cut.pcapng: .*cut short"):
        for seg in ts.iter_segments(str(cut)):
            got.append(seg)
    assert len(got) > 20 and issubclass(ts.CaptureTruncated, ts.CaptureError)


@pytest.mark.parametrize("content,problem", [
    (b"", "empty file (0 bytes)"),                       # tshark: an empty ERF capture, exit 0
    (b"\x0a\x0d\x0d\x0a", "only 4 bytes"),               # tshark: a one-record JSON file, exit 0
    (b"\x7fELF\x02\x01\x01" + bytes(200), "an ELF executable"),   # tshark: "MIME File Format"
    (b'  {"streams": [], "findings": [], "capture": "x.pcapng"}\n', "JSON text"),
    (b"\x0a\x0d\x0d\x0a" + bytes(100), "corrupt pcapng file"),  # tshark: a one-record JSON file, exit 0
])
def test_files_tshark_accepts_but_are_not_captures_are_rejected_in_one_line(tmp_path, content, problem):
    """Found by the fuzz: tshark exits 0 on these, and analyze reported "0 TCP stream(s)"."""
    from pytshark_ext import tshark as ts

    f = tmp_path / "not a capture.pcapng"
    f.write_bytes(content)
    with pytest.raises(ts.CaptureError) as err:
        ts.check_capture_path(str(f))
    assert str(err.value).startswith(f"{f}: {problem}") and "\n" not in str(err.value)


@pytest.mark.parametrize("fmt", ["pcap", "nsecpcap", "modpcap", "snoop", "netmon2", "5views"])
def test_real_captures_in_other_formats_pass_the_early_checks(tmp_path, fmt):
    import subprocess

    from conftest import sample
    from pytshark_ext import tshark as ts

    out = tmp_path / f"cap.{fmt}"
    subprocess.run(["editcap", "-F", fmt, str(sample("heartbeat-loss-server.pcapng")), str(out)], check=True)
    ts.check_capture_path(str(out))


def test_correlate_survives_one_side_cut_at_snaplen_54(tmp_path, isolated_home):
    """Found by the fuzz (pair-damaged/snaplen): with one side cut at snaplen 54 its TCP options,
    hence TSvals, are gone; matching must fall back to IP ID and still name the dropped segment."""
    import json
    import subprocess

    from click.testing import CliRunner

    from conftest import sample, truth
    from pytshark_ext.cli import main

    cut = tmp_path / "client-54.pcapng"
    subprocess.run(["editcap", "-s", "54", str(sample("heartbeat-loss-client.pcapng")), str(cut)], check=True)
    res = CliRunner().invoke(main, ["correlate", "--no-plugin", "--json", str(cut),
                                    str(sample("heartbeat-loss-server.pcapng"))])
    assert res.exit_code == 0, res.output
    dropped = truth("heartbeat-loss")["faults"][0]
    lost = json.loads(res.output)["lost"]
    assert [(x["seq_raw"], x["len"], x["frame"]) for x in lost] == \
        [(dropped["seq_raw"], dropped["len"], dropped["client_frame"])]


def test_analyze_and_correlate_keep_the_packets_before_a_cut(tmp_path):
    """A capture cut short by a full disk still holds the incident: exit 0, one warning line
    naming the file, and the finding from the packets before the cut."""
    import json

    from click.testing import CliRunner

    from conftest import sample
    from pytshark_ext.cli import main

    src = sample("heartbeat-loss-server.pcapng")
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(src.read_bytes()[:-300])          # mid-way through one of the last packets
    res = CliRunner().invoke(main, ["analyze", "--json", str(cut)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [f["kind"] for f in out["findings"]] == ["hol_blocked"]
    assert len(out["warnings"]) == 1 and str(cut) in out["warnings"][0] and "cut short" in out["warnings"][0]
    assert f"tcpstall: warning: {cut}" in res.stderr
    res = CliRunner().invoke(main, ["correlate", "--no-plugin", "--json",
                                    str(sample("heartbeat-loss-client.pcapng")), str(cut)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert len(out["lost"]) == 1 and any("cut short" in n for n in out["notes"])
