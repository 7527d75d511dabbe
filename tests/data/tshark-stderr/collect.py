"""Record tshark's real stderr for the failures tcpstall must summarise in one line.

    python3 tests/data/tshark-stderr/collect.py        # as root, with the tshark on PATH

Writes tests/data/tshark-stderr/<major.minor>/<case>.txt (the exact stderr, "Running as user"
line included). Run it on each Wireshark version the tests cover (Debian 12: 4.0, the Debian 13
root: `sh .ci/debian13.sh run python3 tests/data/tshark-stderr/collect.py`). Each case is a real
tshark run on a real (or really damaged) file; nothing is edited by hand.
"""
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
SAMPLE = ROOT / "sample_captures" / "heartbeat-loss-server.pcapng"
PLUGIN = ROOT / "plugins" / "tcpstall.lua"


def main() -> None:
    tshark = shutil.which("tshark")
    version = re.search(r"(\d+\.\d+)\.\d+", subprocess.run([tshark, "-v"], capture_output=True,
                                                          text=True).stdout).group(1)
    out = HERE / version
    out.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp())
    text = work / "notes.txt"
    text.write_text("not a capture\n" * 10)
    cut = work / "cut.pcapng"
    cut.write_bytes(SAMPLE.read_bytes()[:5000])
    corrupt = work / "corrupt.pcapng"
    data = bytearray(SAMPLE.read_bytes())
    second = int.from_bytes(data[4:8], "little")     # the block after the section header
    data[second + 4:second + 8] = (19).to_bytes(4, "little")   # a length pcapng forbids
    corrupt.write_bytes(bytes(data))
    broken = work / "broken"
    shutil.copytree(PLUGIN.parent, broken)
    (broken / "tcpstall" / "seq.lua").write_text("local core = ...\nerror('deliberately broken module')\n")
    cases = {
        "not-a-capture": ["-r", str(text)],
        "cut-short": ["-r", str(cut)],
        "corrupt": ["-r", str(corrupt)],
        "z-unknown": ["-r", str(SAMPLE), "-q", "-z", "tcpstall"],
        "o-unknown": ["-r", str(SAMPLE), "-o", "tcpstall.tcp_retries2:6"],
        "filter-unknown-field": ["-r", str(SAMPLE), "-Y", "tcpstall.hol.nope"],
        "e-unknown-field": ["-r", str(SAMPLE), "-T", "fields", "-e", "tcpstall.hol.nope"],
        "lua-error": ["-r", str(SAMPLE), "-X", f"lua_script:{broken / 'tcpstall.lua'}", "-q"],
        "two-pass-stdin": ["-r", "-", "-2", "-Y", "frame"],
    }
    sys.path.insert(0, str(ROOT))
    from pytshark_ext import privileges
    for name, args in cases.items():
        # the Lua error only happens where the plugin loads: as tcpstall runs tshark (as root on
        # 4.2+, unprivileged); the other cases as tshark runs for whoever calls it
        launch = privileges.prepare([tshark, "-n"] + args) if name == "lua-error" else None
        with open(SAMPLE, "rb") as stdin:
            proc = subprocess.run(launch.argv if launch else [tshark, "-n"] + args, stdin=stdin,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                  **(launch.popen_kwargs if launch else {}))
        body = proc.stderr.replace(str(work), "/tmp/WORK").replace(str(ROOT), "/SRC")
        (out / f"{name}.txt").write_text(body)
        print(f"{version} {name}: rc={proc.returncode}, {len(body.splitlines())} lines")
    shutil.rmtree(work)


if __name__ == "__main__":
    sys.exit(main())
