"""Dump everything the tcpstall plugin says about every committed capture, with the tshark on PATH,
so that two Wireshark versions can be compared line by line (issue 17: 4.0 vs 4.4).

    python .ci/plugin_output.py dump OUT.txt                          # on the host (4.0)
    sh .ci/debian13.sh run python .ci/plugin_output.py dump OUT.txt   # in the Debian 13 root (4.4)
    python .ci/plugin_output.py compare HOST.txt DEBIAN13.txt         # exit 1 unless only KNOWN differ

Per capture (sample_captures/*.pcapng, tests/data/*.pcapng): every registered tcpstall.* field and
the plugin's experts (message, severity, group) of every frame the plugin annotates, one pass
(`-Y tcpstall`) and two passes (`-2 -Y tcpstall`), then the `-z tcpstall,tsv` rows. tshark runs the
way tcpstall runs it (pytshark_ext.tshark: as root on 4.2+ unprivileged). The plugin's experts are
the frame's experts minus those of the same run without the plugin (Wireshark's own TCP experts
differ between versions: 4.4 calls some of 4.0's out-of-order segments retransmissions). The only
rewriting: booleans print as 1/0 (4.0) or True/False (4.2+): both become 1/0, and are counted.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytshark_ext import tshark as ts  # noqa: E402

EXPERT = ["_ws.expert.message", "_ws.expert.severity", "_ws.expert.group"]

# Frames where the plugin's output may differ between 4.0.17 and 4.4.19, as (capture, frame), each
# with its reason. None today: the 23 frames of bulk-loss-head-server where the two versions'
# tcp.analysis.retransmission differ (same-tick TSval, receiver side) stopped mattering when
# stream.lua decided retransmission vs late original from IP ID order and timing instead of
# Wireshark's flag (issue 14, item 4); measured equal on 60 captures, 56 292 rows.
KNOWN: set = set()


def plugin_fields(tshark: str) -> list:
    how = ts.launch([tshark, "-G", "fields", *ts.plugin_args(tshark)])
    out = subprocess.run(how.argv, capture_output=True, text=True, check=True, **how.popen_kwargs).stdout
    rows = [ln.split("\t") for ln in out.splitlines()]
    return sorted((r[2], r[3]) for r in rows if len(r) > 3 and r[0] == "F" and r[2].startswith("tcpstall."))


def dump(out_path: str) -> None:
    tshark = ts.find_tshark()
    fields = plugin_fields(tshark)
    booleans = {name for name, ftype in fields if ftype == "FT_BOOLEAN"}
    names = ["frame.number"] + [name for name, _ in fields] + EXPERT
    captures = sorted((ROOT / "sample_captures").glob("*.pcapng")) + sorted((ROOT / "tests" / "data").glob("*.pcapng"))
    rewritten = 0
    lines = ["fields " + " ".join(f"{n}:{t}" for n, t in fields)]
    for cap in captures:
        rel = cap.relative_to(ROOT)
        for two_pass in (False, True):
            theirs = {row[0][0]: list(zip(*row[1:])) for row in
                      ts.iter_fields(str(cap), ["frame.number"] + EXPERT, two_pass=two_pass, with_plugin=False)}
            for row in ts.iter_fields(str(cap), names, two_pass=two_pass, display_filter="tcpstall"):
                ours = list(zip(*row[-len(EXPERT):]))
                for item in theirs.get(row[0][0], []):
                    if item in ours:
                        ours.remove(item)
                row[-len(EXPERT):] = [list(col) for col in zip(*ours)] if ours else [[] for _ in EXPERT]
                cells = []
                for name, values in zip(names, row):
                    if name in booleans:
                        new = [{"True": "1", "False": "0"}.get(v, v) for v in values]
                        rewritten += new != values
                        values = new
                    if values:
                        cells.append(f"{name}={'|'.join(values)}")
                lines.append(f"{rel} {'2' if two_pass else '1'}-pass " + " ".join(cells))
        for line in ts.run_lines(str(cap), extra=["-q", "-z", "tcpstall,tsv"]):
            if line.startswith("TCPSTALL"):
                lines.append(f"{rel} tsv {line}")
    Path(out_path).write_text("\n".join(lines) + "\n")
    print(f"{ts.tshark_info().version_str}: {len(captures)} captures, {len(lines)} lines, "
          f"{rewritten} rows with True/False booleans rewritten as 1/0 -> {out_path}")


def keyed(path: str) -> dict:
    """{(capture, what, frame or tsv row kind): line}: frame rows by frame number, tsv rows by
    their first two columns (TCPSTALL + stream=N, TCPSTALL_END)."""
    out = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split(" ", 3)
        if parts[0] == "fields":
            out[("fields", "", "")] = line
        elif parts[1] == "tsv":
            out[(parts[0], "tsv", " ".join(line.split(" ", 2)[2].split("\t")[:2]))] = line
        else:
            out[(parts[0], parts[1], int(parts[2].split("=")[1]))] = line
    return out


def compare(a_path: str, b_path: str) -> int:
    a, b = keyed(a_path), keyed(b_path)
    differ = sorted((k for k in a.keys() | b.keys() if a.get(k) != b.get(k)), key=str)
    unexpected = [k for k in differ if (k[0], k[2]) not in KNOWN]
    missing = KNOWN - {(k[0], k[2]) for k in differ}
    captures = {k[0] for k in a if k[0] != "fields"}
    print(f"plugin output, {len(captures)} captures, one and two passes + -z tcpstall,tsv: {len(a)} vs {len(b)} rows, "
          f"{len(differ)} differ ({len(differ) - len(unexpected)} of {len(KNOWN)} known)")
    for k in unexpected[:20]:
        print(f"UNEXPECTED {k}:\n  {a_path}: {a.get(k)}\n  {b_path}: {b.get(k)}")
    if missing:
        print(f"known differences no longer seen (update KNOWN in {__file__}): {sorted(missing)}")
    return 1 if unexpected or missing else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["dump"] and len(sys.argv) == 3:
        dump(sys.argv[2])
    elif sys.argv[1:2] == ["compare"] and len(sys.argv) == 4:
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    else:
        sys.exit("usage: plugin_output.py dump OUT.txt | compare A.txt B.txt")
