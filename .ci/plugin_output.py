"""Dump everything the tcpstall plugin says about every committed capture, with the tshark on PATH,
so that two Wireshark versions can be compared line by line (issue 17: 4.0 vs 4.4).

    python .ci/plugin_output.py OUT.txt          # on the host (4.0)
    sh .ci/debian13.sh run python .ci/plugin_output.py OUT.txt    # in the Debian 13 root (4.4)
    diff host.txt debian13.txt

Per capture (sample_captures/*.pcapng, tests/data/*.pcapng): every registered tcpstall.* field and
every expert (message, severity, group) of every frame the plugin annotates, one pass (`-Y
tcpstall`) and two passes (`-2 -Y tcpstall`), then the `-z tcpstall,tsv` rows. tshark runs the
way tcpstall runs it (pytshark_ext.tshark: as root on 4.2+ unprivileged). The only rewriting:
booleans are printed as 1/0 (4.0) or True/False (4.2+): both become 1/0, and counted.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytshark_ext import tshark as ts  # noqa: E402

EXPERT = ["_ws.expert.message", "_ws.expert.severity", "_ws.expert.group"]


def plugin_fields(tshark: str) -> list:
    how = ts.launch([tshark, "-G", "fields", *ts.plugin_args(tshark)])
    out = subprocess.run(how.argv, capture_output=True, text=True, check=True, **how.popen_kwargs).stdout
    rows = [ln.split("\t") for ln in out.splitlines()]
    return sorted((r[2], r[3]) for r in rows if len(r) > 3 and r[0] == "F" and r[2].startswith("tcpstall."))


def main(out_path: str) -> None:
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
            for row in ts.iter_fields(str(cap), names, two_pass=two_pass, display_filter="tcpstall"):
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


if __name__ == "__main__":
    main(sys.argv[1])
