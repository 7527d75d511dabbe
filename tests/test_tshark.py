"""The tshark runner against the real tshark, plus fake tshark binaries for failure paths."""
from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from pytshark_ext import tshark as ts

from conftest import inner_loop, sample

WRAPPED_V40 = """TShark (Wireshark) 4.0.17 (Git v4.0.17 packaged as 4.0.17-0+deb12u3).

Compiled (64-bit) using GCC 12.2.0, with GLib 2.74.6, with PCRE2, with zlib
1.2.13, with libpcap, with POSIX capabilities (Linux), with libnl 3, with Lua
5.2.4, with GnuTLS 3.7.9 and PKCS #11 support
"""


def fake_tshark(tmp_path: Path, script: str, name: str = "tshark") -> Path:
    """An executable standing in for tshark (labelled fake: for failure paths only)."""
    path = tmp_path / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_version_parse_survives_line_wrapping():
    assert ts.parse_version_output(WRAPPED_V40) == ((4, 0, 17), "5.2.4")


def test_version_parse_without_lua():
    text = WRAPPED_V40.replace("with Lua\n5.2.4", "without Lua")
    assert ts.parse_version_output(text) == ((4, 0, 17), None)


def test_real_tshark_info(tshark_path):
    info = ts.tshark_info()
    assert info.path == tshark_path
    assert info.version >= (3, 6, 0)
    assert info.lua and info.lua.startswith("5.")


def test_missing_tshark_on_empty_path(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("TSHARK", raising=False)
    with pytest.raises(ts.TsharkNotFound, match="tshark not found on PATH"):
        ts.find_tshark()


def test_explicit_and_env_order(tmp_path, monkeypatch, tshark_path):
    fake = fake_tshark(tmp_path, "exit 0\n")
    monkeypatch.setenv("TSHARK", str(fake))
    assert ts.find_tshark() == str(fake)
    assert ts.find_tshark(tshark_path) == tshark_path          # --tshark beats TSHARK
    monkeypatch.setenv("TSHARK", str(tmp_path / "nope"))
    with pytest.raises(ts.TsharkNotFound, match="TSHARK names"):
        ts.find_tshark()


def test_too_old_names_the_version(tmp_path, monkeypatch):
    fake = fake_tshark(tmp_path, "echo 'TShark (Wireshark) 3.4.16 (Git v3.4.16)'\necho 'with Lua 5.2.4'\n")
    with pytest.raises(ts.TsharkTooOld, match=r"3\.4\.16 .* too old.*3\.6\.0"):
        ts.tshark_info(str(fake))


def test_failing_tshark_keeps_stderr_tail(tmp_path):
    fake = fake_tshark(tmp_path, "echo 'line one' >&2\necho 'tshark: something broke' >&2\nexit 3\n")
    cap = sample("heartbeat-loss-client.pcapng")
    with pytest.raises(ts.TsharkFailed) as err:
        list(ts.iter_fields(str(cap), ["frame.number"], tshark=str(fake), with_plugin=False))
    assert "something broke" in err.value.stderr_tail
    assert err.value.returncode == 3


def test_not_a_capture_is_one_line_naming_the_file(tmp_path):
    bogus = tmp_path / "notes.pcap"
    bogus.write_text("this is not a capture\n")
    with pytest.raises(ts.CaptureError) as err:
        list(ts.iter_segments(str(bogus)))
    msg = str(err.value)
    assert str(bogus) in msg and "\n" not in msg


def test_missing_capture(tmp_path):
    with pytest.raises(ts.CaptureError, match="no such file"):
        list(ts.iter_segments(str(tmp_path / "absent.pcapng")))


@pytest.mark.parametrize("name", inner_loop(["with space.pcapng", "quote'\"s.pcapng", "semi;colon.pcapng",
                                             "-leading-dash.pcapng"], inner=["quote'\"s.pcapng", "-leading-dash.pcapng"]))
def test_awkward_file_names(tmp_path, monkeypatch, name):
    src = sample("heartbeat-loss-client.pcapng")
    weird = tmp_path / name
    shutil.copyfile(src, weird)
    monkeypatch.chdir(tmp_path)       # relative name: "-leading-dash..." really starts with '-'
    plain = [s.frame for s in ts.iter_segments(str(src))]
    assert plain, "sample capture has TCP segments"
    assert [s.frame for s in ts.iter_segments(name)] == plain


def test_segments_are_raw_and_typed():
    segs = list(ts.iter_segments(str(sample("heartbeat-loss-client.pcapng"))))
    data = [s for s in segs if s.length > 0]
    assert data and all(s.seq_raw > 0 and s.tsval is not None for s in data)
    # raw numbers: consecutive data segments in one direction continue each other exactly
    first = data[0]
    same_dir = [s for s in data if (s.src, s.sport) == (first.src, first.sport)]
    assert any(b.seq_raw == (a.seq_raw + a.length) % 2**32 for a, b in zip(same_dir, same_dir[1:]))


def test_separators_survive_commas_and_tabs_in_values():
    # The plugin's expert texts contain commas; _ws.col.Info holds commas and spaces in every
    # TCP row ("[ACK] Seq=1 Ack=1 Win=..., Len=0"). The row must still split into 2 columns.
    rows = list(ts.iter_fields(str(sample("heartbeat-loss-client.pcapng")),
                               ["frame.number", "_ws.col.Info"], with_plugin=False))
    assert rows and all(len(r) == 2 for r in rows)
    assert any("," in r[1][0] for r in rows)


def test_two_pass_always_has_a_filter():
    cmd = ts.build_command("tshark", "x.pcapng", two_pass=True, with_plugin=False)
    assert cmd[cmd.index("-2") + 1: cmd.index("-2") + 3] == ["-Y", ts.DEFAULT_TWO_PASS_FILTER]


def test_prefs_get_the_protocol_prefix():
    assert ts.pref_args({"tcp_retries2": 6, "tcp.analyze_sequence_numbers": False}) == \
        ["-o", "tcpstall.tcp_retries2:6", "-o", "tcp.analyze_sequence_numbers:FALSE"]


@pytest.mark.parametrize("data", [
    b"", b"\n", b"\n\n", b"a\x1fb\nc", b"a\nb\n", b"a\r\nb\r\nc\r\n", b"\nabc\n",
    b"x" * 300000 + b"\r\n" + b"y\n", "\u00e9".encode() * 200001 + b"\n\xff\xfe\n",
    b"".join(b"%d\x1f%d\n" % (i, i * 7) for i in range(100000)),
], ids=["empty", "newline", "two-newlines", "no-final-newline", "final-newline", "crlf", "leading-newline",
        "long-line", "utf8-and-invalid", "many-lines"])
def test_blocks_hold_the_same_lines_as_iteration(tmp_path, data):
    """TsharkRun.blocks() (large reads of the pipe, blocks of whole lines) against the line by
    line iteration of the same output: same lines, same decoding, same newline handling."""
    out = tmp_path / "out.bin"
    out.write_bytes(data)
    cmd = ["cat", str(out)]
    lines = list(ts.TsharkRun(cmd, "x"))
    blocks = list(ts.TsharkRun(cmd, "x").blocks(size=1 << 16))
    assert [line for b in blocks for line in b.split("\n")] == lines
    assert all(len(b) < 2 * (1 << 16) + 300000 for b in blocks)
