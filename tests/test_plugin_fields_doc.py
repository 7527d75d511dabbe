"""plugins/tcpstall/README.md lists every field the plugin registers, with its type, and every
expert: checked against what Wireshark itself reports (`tshark -G fields`)."""
from __future__ import annotations

import re

from conftest import ROOT, run_tshark
from pytshark_ext.privileges import plugin_script_for

README = ROOT / "plugins" / "tcpstall" / "README.md"
ROW = re.compile(r"^\| `(tcpstall\.[\w.]+)` \| (FT_\w+) \|", re.M)


def registered(tshark_path):
    out = run_tshark([tshark_path, "-G", "fields", "-X", f"lua_script:{plugin_script_for()}"],
                     capture_output=True, text=True, timeout=120).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    return {r[2]: r[3] for r in rows if r[0] == "F" and r[2].startswith("tcpstall.")}


def test_readme_field_table_matches_tshark(tshark_path):
    fields = registered(tshark_path)
    text = README.read_text()
    table = dict(ROW.findall(text))
    assert len(ROW.findall(text)) == len(table), "a field is listed twice"
    real = {k: v for k, v in fields.items() if v != "FT_NONE"}
    assert len(real) > 40
    assert table == real
    # the expert infos (FT_NONE to Wireshark) are named in the Experts paragraph
    experts = text[text.index("\nExperts: "):]
    experts = experts[:experts.index("\n\n")]
    named = set(re.findall(r"`(tcpstall\.[\w.]+)`", experts))
    assert named == {k for k, v in fields.items() if v == "FT_NONE"}
