"""tshark's own error, in one line, from its real stderr on 4.0 and 4.4 (tests/data/tshark-stderr,
recorded by collect.py there), and never a summary that is not that error."""
from __future__ import annotations

from pathlib import Path

import pytest

from pytshark_ext import tshark as ts

from conftest import sample

STDERR = Path(__file__).resolve().parent / "data" / "tshark-stderr"
VERSIONS = sorted(p.name for p in STDERR.iterdir() if p.is_dir())

# case -> the line tcpstall must show (after "CAPTURE: "), per version when they differ
EXPECTED = {
    "not-a-capture": 'tshark: The file "/tmp/WORK/notes.txt" isn\'t a capture file in a format TShark understands.',
    "cut-short": 'tshark: The file "/tmp/WORK/cut.pcapng" appears to have been cut short in the middle of a packet.',
    "corrupt": 'tshark: The file "/tmp/WORK/corrupt.pcapng" appears to be damaged or corrupt. '
               "(pcapng: total block lengths (first 20 and second 262148) don't match)",
    "z-unknown": 'tshark: Invalid -z argument "tcpstall"; it must be one of: '
                 "-- tshark did not load the tcpstall plugin (`tcpstall doctor` says why)",
    "o-unknown": 'tshark: -o flag "tcpstall.tcp_retries2:6" specifies unknown preference '
                 "-- a misspelt name, or tshark did not load the tcpstall plugin (`tcpstall doctor`)",
    "filter-unknown-field": {
        "4.0": "tshark: tcpstall.hol.nope is neither a field nor a protocol name. "
               "-- a misspelt name, or tshark did not load the tcpstall plugin (`tcpstall doctor`)",
        "4.4": 'tshark: "tcpstall.hol.nope" is not a valid protocol or protocol field. '
               "-- a misspelt name, or tshark did not load the tcpstall plugin (`tcpstall doctor`)"},
    "e-unknown-field": "tshark: Some fields aren't valid: tcpstall.hol.nope "
                       "-- a misspelt name, or tshark did not load the tcpstall plugin (`tcpstall doctor`)",
    "lua-error": "tshark: Lua: Error during loading: /tmp/WORK/broken/tcpstall/seq.lua:2: deliberately broken module",
    "two-pass-stdin": "tshark: The standard input could not be opened: The standard input cannot be opened "
                      "for random access.",
}


def test_both_versions_are_recorded():
    assert {"4.0", "4.4"} <= set(VERSIONS)
    for v in VERSIONS:
        assert {p.stem for p in (STDERR / v).glob("*.txt")} == set(EXPECTED), v


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_the_error_line_is_tsharks_own(version, case):
    want = EXPECTED[case]
    want = want[version] if isinstance(want, dict) else want
    got = ts._one_line_problem("CAP", (STDERR / version / f"{case}.txt").read_text())
    assert got == f"CAP: {want}"


def test_a_long_help_list_after_the_error_is_not_the_summary(tmp_path):
    """Issue 17: `-z tcpstall` unknown to tshark printed its 180-line list of -z arguments, and
    the summary was two of them ("rpc,programs rpc,srt"). A tshark that prints the real 4.4 stderr."""
    recorded = tmp_path / "stderr.txt"
    recorded.write_text((STDERR / "4.4" / "z-unknown.txt").read_text())
    fake = tmp_path / "tshark"
    fake.write_text(f"#!/bin/sh\ncat '{recorded}' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(ts.TsharkError) as err:
        list(ts.TsharkRun([str(fake)], "cap.pcapng"))
    msg = str(err.value)
    assert msg.startswith('cap.pcapng: tshark: Invalid -z argument "tcpstall"') and "did not load" in msg
    assert "srt" not in msg and "\n" not in msg


def test_a_real_not_a_capture_names_the_file_once(tmp_path):
    bogus = tmp_path / "notes.pcapng"
    bogus.write_text("not a capture\n" * 10)
    with pytest.raises(ts.CaptureError) as err:       # 4.0 exits 2, 4.4 exits 3: both are about the file
        list(ts.iter_fields(str(bogus), ["frame.number"], with_plugin=False))
    assert str(err.value) == (f'{bogus}: tshark: The file "{bogus}" isn\'t a capture file in a format '
                              "TShark understands.")


def test_a_real_unknown_preference_says_what_it_may_mean():
    with pytest.raises(ts.TsharkError, match=r'"tcpstall\.no_such_pref:1" specifies unknown preference -- a '
                                             r"misspelt name"):
        list(ts.iter_fields(str(sample("heartbeat-loss-server.pcapng")), ["frame.number"],
                            prefs={"no_such_pref": 1}))


def test_a_lua_error_is_reported_with_its_message(tmp_path, monkeypatch):
    """The plugin failing to load: the message says where and why, not only "Error during loading:"."""
    from pytshark_ext.paths import plugin_dir
    import shutil
    broken = tmp_path / "plugins"
    shutil.copytree(plugin_dir(), broken)
    (broken / "tcpstall" / "seq.lua").write_text("local core = ...\nerror('deliberately broken module')\n")
    monkeypatch.setenv("TCPSTALL_PLUGINS", str(broken))
    monkeypatch.setattr(ts, "_plugin_args_cache", {})
    with pytest.raises(ts.TsharkFailed) as err:
        list(ts.iter_fields(str(sample("heartbeat-loss-server.pcapng")), ["frame.number"]))
    assert "Lua: Error during loading:" in str(err.value) and "seq.lua:2: deliberately broken module" in str(err.value)
