"""The fuzz corpus: odd captures, capture pairs and logs derived from real captures.

Every case is made from a real capture (the committed lab samples in sample_captures/, or the
extra lab captures of lab/encaps.py) with Wireshark's own tools (editcap, mergecap,
randpkt) or by cutting/concatenating/re-encoding files. Exceptions are labelled in the
category table: `vlan`/`qinq` (tags inserted into real frames, pcaprw.py) and the few
non-capture files (`not-capture`: text, random bytes, an ELF binary ...).

A case is made on demand in its own directory; `plan()` only decides what to make, from a seed.
"""
from __future__ import annotations

import gzip
import random
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from . import pcaprw

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_captures"

# ---------------------------------------------------------------------------------------------
# what a case is


@dataclass
class Case:
    id: str
    category: str
    kind: str                       # capture | pair | log
    params: dict                    # recipe parameters (JSON-able): enough to remake it
    expect: str = "ok"              # ok (exit 0) | fail (exit 1, one line) | any (0, or 1 with one line)
    files: List[str] = field(default_factory=list)   # inputs, relative to the case dir
    argnames: List[str] = field(default_factory=list)  # names as passed on the command line
    note: str = ""
    cheap: bool = True              # small inputs: eligible for the CI sample
    error: Optional[str] = None     # making the case failed (tool refused): not run


@dataclass
class Sources:
    samples: List[Path]             # committed captures
    lab: List[Path]                 # lab/encaps.py captures (may be empty)
    logs: List[Path]
    pairs: List[Tuple[Path, Path]]  # (client/A, server/B)

    @property
    def captures(self) -> List[Path]:
        return self.samples + self.lab

    def small(self, limit: int = 200_000) -> List[Path]:
        return [p for p in self.captures if p.stat().st_size <= limit]


def find_sources(lab_dir: Optional[Path]) -> Sources:
    samples = sorted(SAMPLES.glob("*.pcapng"))
    lab = sorted(Path(lab_dir).glob("lab-*.pcapng")) if lab_dir and Path(lab_dir).is_dir() else []
    logs = sorted(SAMPLES.glob("*.log"))
    pairs = []
    for c in samples:
        if c.name.endswith("-client.pcapng"):
            s = c.with_name(c.name.replace("-client.pcapng", "-server.pcapng"))
            if s.exists():
                pairs.append((c, s))
    for a in lab:
        if "-A" in a.name:
            bs = [b for b in lab if b.name.startswith(a.name.split("-A")[0] + "-B")]
            if bs:
                pairs.append((a, bs[0]))
    return Sources(samples, lab, logs, pairs)


def _scenario(p: Path) -> str:
    return re.sub(r"-(client|server|sender|receiver|server2|A|B)(-[a-z]+)?$", "", p.stem)


def logs_for(src: Sources, capture: Path) -> List[Path]:
    sc = _scenario(capture)
    return [lg for lg in src.logs if _scenario(lg) == sc]


# ---------------------------------------------------------------------------------------------
# tools


class MakeError(Exception):
    pass


def tool(*args: str, timeout: int = 120) -> None:
    res = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                         stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        raise MakeError(f"{Path(args[0]).name} failed ({res.returncode}): "
                        + " ".join(res.stderr.split())[:200])


def editcap(*args) -> None:
    tool("editcap", *args)


def rel(p: Path) -> str:
    try:
        return str(Path(p).relative_to(ROOT))
    except ValueError:
        return str(p)


# ---------------------------------------------------------------------------------------------
# categories: name -> (kind, expect, weight, fixed(src) -> [params], random(src, rng) -> params, make)

Recipe = Tuple[str, dict]


class Category:
    def __init__(self, name, kind, expect, weight, make, fixed=None, rand=None, label=""):
        self.name, self.kind, self.expect, self.weight = name, kind, expect, weight
        self.make: Callable[[Sources, dict, Path], Tuple[List[str], str]] = make
        self.fixed: Callable[[Sources], List[dict]] = fixed or (lambda src: [])
        self.rand: Optional[Callable[[Sources, random.Random], dict]] = rand
        self.label = label


CATEGORIES: Dict[str, Category] = {}


def category(name, kind, expect, weight, fixed=None, rand=None, label=""):
    def deco(make):
        CATEGORIES[name] = Category(name, kind, expect, weight, make, fixed, rand, label)
        return make
    return deco


def _pick(rng: random.Random, paths: Sequence[Path], small_bias: float = 0.75) -> Path:
    """A capture, biased towards small ones (cheap to run, and just as odd when damaged)."""
    small = [p for p in paths if p.stat().st_size <= 200_000]
    if small and rng.random() < small_bias:
        return rng.choice(small)
    return rng.choice(list(paths))


def _copy(src: Path, d: Path, name: Optional[str] = None) -> str:
    name = name or src.name
    shutil.copyfile(src, d / name)
    return name


# --- single captures ---------------------------------------------------------------------------

@category("baseline", "capture", "ok", 0, fixed=lambda s: [{"src": rel(p)} for p in s.captures],
          label="every sample and lab capture as is")
def _baseline(src, p, d):
    return [_copy(ROOT / p["src"], d)], "as committed / as captured"


def _corrupt_rand(src, rng):
    return {"src": rel(_pick(rng, src.captures)), "p": rng.choice([0.0005, 0.002, 0.01, 0.05, 0.2]),
            "seed": rng.randrange(1, 1 << 30), "offset": rng.choice([0, 0, 14, 34, 54])}


@category("corrupt", "capture", "any", 26, rand=_corrupt_rand,
          label="editcap -E byte corruption (prob, seed, -o header offset)")
def _corrupt(src, p, d):
    args = ["-E", str(p["p"]), "--seed", str(p["seed"])]
    if p["offset"]:
        args += ["-o", str(p["offset"])]
    editcap(*args, ROOT / p["src"], d / "corrupt.pcapng")
    return ["corrupt.pcapng"], f"editcap {' '.join(args)} {Path(p['src']).name}"


def _trunc_rand(src, rng):
    cap = _pick(rng, src.captures)
    fmt = rng.choice(["pcapng", "pcapng", "pcap"])
    return {"src": rel(cap), "fmt": fmt, "frac": round(rng.random(), 6),
            "tiny": rng.random() < 0.1}


@category("truncate", "capture", "any", 12, rand=_trunc_rand,
          label="file cut at a random offset (full disk), pcapng and pcap")
def _truncate(src, p, d):
    name = f"cut.{p['fmt']}"
    full = d / ("full." + p["fmt"])
    if p["fmt"] == "pcap":
        editcap("-F", "pcap", ROOT / p["src"], full)
    else:
        shutil.copyfile(ROOT / p["src"], full)
    data = full.read_bytes()
    full.unlink()
    cut = int(p["frac"] * (64 if p["tiny"] else len(data)))
    (d / name).write_bytes(data[:cut])
    return [name], f"first {cut} of {len(data)} bytes"


def _snap_fixed(src):
    return [{"src": rel(c), "s": s} for c in src.captures for s in (54, 64)]


@category("snaplen", "capture", "ok", 6, fixed=_snap_fixed,
          rand=lambda s, r: {"src": rel(_pick(r, s.captures)), "s": r.choice([14, 20, 34, 40, 54, 60, 64, 66, 78])},
          label="editcap -s 54/64 (and other snaplens)")
def _snaplen(src, p, d):
    editcap("-s", str(p["s"]), ROOT / p["src"], d / "snap.pcapng")
    return ["snap.pcapng"], f"editcap -s {p['s']}"


@category("chop", "capture", "any", 3,
          rand=lambda s, r: {"src": rel(_pick(r, s.captures)), "c": r.choice([-1, -4, -20, 4, 14, 20, 40]),
                             "L": r.random() < 0.5},
          label="editcap -C (chop bytes off every packet), with/without -L")
def _chop(src, p, d):
    args = ["-C", str(p["c"])] + (["-L"] if p["L"] else [])
    editcap(*args, ROOT / p["src"], d / "chop.pcapng")
    return ["chop.pcapng"], "editcap " + " ".join(args)


@category("format", "capture", "ok", 4,
          fixed=lambda s: [{"src": rel(c), "F": "pcap"} for c in s.captures],
          rand=lambda s, r: {"src": rel(_pick(r, s.captures)),
                             "F": r.choice(["nsecpcap", "modpcap", "snoop", "netmon2", "5views",
                                            "ngsniffer", "nokiapcap", "rh6_1pcap", "visual"])},
          label="editcap -F pcap for every capture; other OSes' formats (snoop, netmon2, 5views ...)")
def _format(src, p, d):
    name = f"conv.{p['F']}"
    editcap("-F", p["F"], ROOT / p["src"], d / name)
    return [name], f"editcap -F {p['F']}"


@category("gzip", "capture", "ok", 1,
          rand=lambda s, r: {"src": rel(_pick(r, s.captures))}, label="gzip-compressed capture")
def _gzip(src, p, d):
    data = (ROOT / p["src"]).read_bytes()
    (d / "cap.pcapng.gz").write_bytes(gzip.compress(data, 6))
    return ["cap.pcapng.gz"], "gzip"


def _multi_rand(src, rng):
    n = rng.choice([2, 2, 3])
    return {"srcs": [rel(_pick(rng, src.captures, 0.9)) for _ in range(n)], "append": rng.random() < 0.3}


@category("multi-if", "capture", "ok", 3, rand=_multi_rand,
          label="mergecap of unrelated captures: several interfaces (or -a concatenation)")
def _multi(src, p, d):
    tool("mergecap", *(["-a"] if p["append"] else []), "-w", d / "merged.pcapng", *(ROOT / s for s in p["srcs"]))
    return ["merged.pcapng"], "mergecap " + ("-a " if p["append"] else "") + " ".join(Path(s).name for s in p["srcs"])


def _dup_fixed(src):
    out = [{"srcs": [rel(a), rel(b)]} for a, b in src.pairs]
    out += [{"srcs": [rel(c), rel(c)]} for c in src.small(50_000)]
    return out


@category("dup-2if", "capture", "ok", 3, fixed=_dup_fixed,
          label="duplicated packets: both capture points merged (2 interfaces), or a capture merged with itself")
def _dup(src, p, d):
    tool("mergecap", "-w", d / "dup.pcapng", *(ROOT / s for s in p["srcs"]))
    return ["dup.pcapng"], "mergecap " + " ".join(Path(s).name for s in p["srcs"])


def _ooo_rand(src, rng):
    return {"src": rel(_pick(rng, src.captures)), "frac": round(rng.uniform(0.1, 0.9), 4),
            "mode": rng.choice(["swap-halves", "shift-back"]), "shift": rng.choice([-0.5, -3, -3600])}


@category("ooo-time", "capture", "ok", 3, rand=_ooo_rand,
          label="out-of-order timestamps: halves swapped (mergecap -a) or the second half shifted back")
def _ooo(src, p, d):
    cap = ROOT / p["src"]
    n = int(subprocess.run(["capinfos", "-M", "-c", "-T", "-r", str(cap)], capture_output=True,
                           text=True).stdout.split()[-1] or 0)
    k = max(1, int(n * p["frac"]))
    editcap("-r", cap, d / "a.pcapng", f"1-{k}")
    editcap("-r", cap, d / "b.pcapng", f"{k + 1}-{max(n, k + 1)}")
    if p["mode"] == "swap-halves":
        tool("mergecap", "-a", "-w", d / "ooo.pcapng", d / "b.pcapng", d / "a.pcapng")
    else:
        editcap("-t", str(p["shift"]), d / "b.pcapng", d / "b2.pcapng")
        tool("mergecap", "-a", "-w", d / "ooo.pcapng", d / "a.pcapng", d / "b2.pcapng")
        (d / "b2.pcapng").unlink()
    (d / "a.pcapng").unlink()
    (d / "b.pcapng").unlink()
    return ["ooo.pcapng"], f"{p['mode']} at frame {k}/{n}"


@category("time-shift", "capture", "ok", 2,
          rand=lambda s, r: {"src": rel(_pick(r, s.captures)),
                             "t": r.choice(["28800", "-28800", "946080000", "-1700000000", "0.000001"])},
          label="editcap -t (8 h, years, before 1970)")
def _tshift(src, p, d):
    editcap("-t", str(p["t"]), ROOT / p["src"], d / "shifted.pcapng")
    return ["shifted.pcapng"], f"editcap -t {p['t']}"


def _window_rand(src, rng):
    cap = _pick(rng, src.captures)
    a = rng.randint(2, 60)
    return {"src": rel(cap), "first": a, "last": a + rng.choice([0, 1, 5, 50, 1000])}


@category("mid-stream", "capture", "ok", 3, rand=_window_rand,
          label="editcap -r frame range: no handshake, starts and ends mid-connection")
def _window(src, p, d):
    editcap("-r", ROOT / p["src"], d / "range.pcapng", f"{p['first']}-{p['last']}")
    return ["range.pcapng"], f"frames {p['first']}-{p['last']}"


@category("wrong-encap", "capture", "any", 2,
          rand=lambda s, r: {"src": rel(_pick(r, s.captures)),
                             "T": r.choice(["rawip", "rawip6", "linux-sll", "linux-sll2", "ieee-802-11",
                                            "juniper-ether", "rawip4"])},
          label="editcap -T: Ethernet frames labelled with another link type")
def _wrong_encap(src, p, d):
    editcap("-T", p["T"], ROOT / p["src"], d / "encap.pcapng")
    return ["encap.pcapng"], f"editcap -T {p['T']}"


@category("randpkt", "capture", "any", 3,
          rand=lambda s, r: {"t": r.choice(["tcp", "tcp", "ip", "ipv6", "eth", "udp", "icmp", None]),
                             "c": r.choice([1, 50, 500]), "b": r.choice([200, 1500]),   # -b >= randpkt's sample packets
                             "seed": r.randrange(1 << 30)},
          label="randpkt random packets (tcp, ip, ipv6, eth ...)")
def _randpkt(src, p, d):
    # randpkt seeds itself from the clock: record the parameters, keep the file on failure
    args = ["-b", str(p["b"]), "-c", str(p["c"])] + (["-t", p["t"]] if p["t"] else ["-r"])
    tool("randpkt", *args, d / "rand.pcapng")
    return ["rand.pcapng"], "randpkt " + " ".join(args)


def _vlan_fixed(src):
    bases = [c for c in src.captures if c.stat().st_size < 1_000_000 and "sll" not in c.name
             and "vxlan" not in c.name]
    return [{"src": rel(c), "tags": t} for c in bases for t in ("vlan", "qinq")]


@category("vlan", "capture", "ok", 3, fixed=_vlan_fixed,
          label="802.1Q / QinQ tags inserted into real frames (derived: kernel cannot tag)")
def _vlan(src, p, d):
    editcap("-F", "pcap", ROOT / p["src"], d / "plain.pcap")
    tags = pcaprw.VLAN if p["tags"] == "vlan" else pcaprw.QINQ
    name = f"{p['tags']}.pcap"
    pcaprw.insert_tags(d / "plain.pcap", d / name, tags)
    (d / "plain.pcap").unlink()
    return [name], f"{p['tags']} tags inserted"


def _syn_fixed(src):
    out = [{"src": rel(c), "range": "1"} for c in src.samples if c.stat().st_size < 100_000][:8]
    out += [{"src": rel(c), "range": None} for c in src.lab if "syn-only" in c.name]
    return out


@category("syn-only", "capture", "ok", 1, fixed=_syn_fixed,
          label="SYN only: the lab's dropped-SYN capture, and the first frame of samples")
def _syn(src, p, d):
    if p["range"]:
        editcap("-r", ROOT / p["src"], d / "syn.pcapng", p["range"])
        return ["syn.pcapng"], "first frame only"
    return [_copy(ROOT / p["src"], d)], "lab: SYNs dropped by the peer"


def _empty_fixed(src):
    return [{"what": w} for w in ("zero-pcapng", "zero-pcap", "zero-noext")]


@category("empty", "capture", "fail", 1, fixed=_empty_fixed, label="0-byte files")
def _empty(src, p, d):
    name = {"zero-pcapng": "empty.pcapng", "zero-pcap": "empty.pcap", "zero-noext": "empty"}[p["what"]]
    (d / name).write_bytes(b"")
    return [name], "0 bytes"


@category("no-packets", "capture", "ok", 1,
          fixed=lambda s: [{"src": rel(s.samples[0]), "F": f} for f in ("pcapng", "pcap")],
          label="valid header, no packets (editcap -r with an empty range)")
def _nopackets(src, p, d):
    name = f"nopackets.{p['F']}"
    editcap("-F", p["F"], "-r", ROOT / p["src"], d / name, "0")
    return [name], "header only"


def _notcap_fixed(src):
    # tshark reads JSON as a capture (file type "JavaScript Object Notation"): 0 TCP streams is a
    # truthful answer there, so either exit code is accepted for it
    return [{"what": w} for w in ("text", "log", "random", "html", "gzip-text", "elf",
                                  "pcapng-magic-only", "pcap-magic-only", "nul")] + [{"what": "json", "expect": "any"}]


@category("not-capture", "capture", "fail", 1, fixed=_notcap_fixed,
          label="not a capture: text, a log, random bytes, JSON, HTML, gzip of text, ELF, magic only")
def _notcap(src, p, d):
    w = p["what"]
    rng = random.Random(w)
    data = {
        "text": (ROOT / "README.md").read_bytes(),
        "log": src.logs[0].read_bytes() if src.logs else b"2026/01/01 00:00:00 x\n",
        "random": bytes(rng.randrange(256) for _ in range(65536)),
        "json": b'{"streams": [], "findings": []}\n',
        "html": b"<html><body><script>alert(1)</script></body></html>\n",
        "gzip-text": gzip.compress((ROOT / "README.md").read_bytes()),
        "elf": Path(shutil.which("true") or "/bin/true").read_bytes(),
        "pcapng-magic-only": b"\x0a\x0d\x0d\x0a",
        "pcap-magic-only": b"\xd4\xc3\xb2\xa1",
        "nul": b"\0" * 4096,
    }[w]
    name = f"not-a-capture-{w}.pcapng"
    (d / name).write_bytes(data)
    return [name], w


AWKWARD = ["with space.pcapng", "quote'single.pcapng", 'quote"double.pcapng', "semi;colon.pcapng",
           "-leading-dash.pcapng", "$(touch PWNED).pcapng", "back`touch PWNED`tick.pcapng",
           "ünïcødé ☃.pcapng", "<i>html<b>&amp;.pcapng", "star*?[x].pcapng", "--", "-r",
           "percent%s%n.pcapng", "pipe|gt>lt<.pcapng"]


@category("awkward-name", "capture", "ok", 2,
          fixed=lambda s: [{"name": n, "src": rel(min(s.captures, key=lambda c: c.stat().st_size))}
                           for n in AWKWARD]
          + [{"name": n, "src": None, "expect": "fail"} for n in ("missing file.pcapng", "-missing;.pcapng")],
          label="names with spaces, quotes, ;, leading -, shell syntax, unicode, HTML (missing ones: expect 1)")
def _awkward(src, p, d):
    if p["src"] is None:
        return [p["name"]], "does not exist"       # never created: expect exit 1 naming it
    return [_copy(ROOT / p["src"], d, p["name"])], "copy of a small capture"


# --- pairs -------------------------------------------------------------------------------------

@category("pair-real", "pair", "ok", 0,
          fixed=lambda s: [{"a": rel(a), "b": rel(b)} for a, b in s.pairs]
          + [{"a": rel(b), "b": rel(a)} for a, b in s.pairs],
          label="the real sender/receiver pairs, both orders")
def _pair_real(src, p, d):
    return [_copy(ROOT / p["a"], d, "A-" + Path(p["a"]).name),
            _copy(ROOT / p["b"], d, "B-" + Path(p["b"]).name)], "real pair"


def _pair_damaged_rand(src, rng):
    a, b = rng.choice(src.pairs)
    side = rng.choice("ab")
    how = rng.choice(["corrupt", "corrupt", "truncate", "snaplen", "mid-stream", "dup", "pcap",
                      "shift-8h", "shift-back"])
    p = {"a": rel(a), "b": rel(b), "side": side, "how": how,
         "seed": rng.randrange(1 << 30), "frac": round(rng.random(), 5)}
    # still the same connections: correlate must find them (snaplen 54 keeps IPv4+TCP headers;
    # IPv6 and VXLAN lose the (inner) TCP header at 54 bytes: that side has no TCP at all)
    if how in ("mid-stream", "dup", "pcap", "shift-8h", "shift-back") or \
            (how == "snaplen" and not any(k in a.name for k in ("ipv6", "vxlan"))):
        p["expect"] = "ok"
    return p


@category("pair-damaged", "pair", "any", 8, rand=_pair_damaged_rand,
          label="a real pair, one side damaged/changed (corrupt, cut, snaplen 54, no handshake, dups, pcap, 8 h)")
def _pair_damaged(src, p, d):
    a, b = ROOT / p["a"], ROOT / p["b"]
    damaged = a if p["side"] == "a" else b
    out = d / ("X-" + damaged.name)
    how = p["how"]
    if how == "corrupt":
        editcap("-E", "0.01", "--seed", str(p["seed"]), damaged, out)
    elif how == "truncate":
        data = damaged.read_bytes()
        out.write_bytes(data[:int(len(data) * p["frac"])])
    elif how == "snaplen":
        editcap("-s", "54", damaged, out)
    elif how == "mid-stream":
        editcap("-r", damaged, out, "5-100000")
    elif how == "dup":
        tool("mergecap", "-w", out, damaged, damaged)
    elif how == "pcap":
        out = out.with_suffix(".pcap")
        editcap("-F", "pcap", damaged, out)
    elif how == "shift-8h":
        editcap("-t", "28800", damaged, out)
    elif how == "shift-back":
        editcap("-t", "-3.5", damaged, out)
    other = _copy(b if p["side"] == "a" else a, d)
    names = [out.name, other] if p["side"] == "a" else [other, out.name]
    return names, f"{how} on side {p['side'].upper()}"


def _unrelated_rand(src, rng):
    a, b = rng.sample(src.captures, 2)
    return {"a": rel(a), "b": rel(b)}


@category("pair-unrelated", "pair", "any", 3, rand=_unrelated_rand,
          label="two unrelated captures: nothing in common")
def _unrelated(src, p, d):
    if p["a"] == p["b"]:
        return [_copy(ROOT / p["a"], d, "A.pcapng"), _copy(ROOT / p["b"], d, "B.pcapng")], "same twice"
    return [_copy(ROOT / p["a"], d, "A-" + Path(p["a"]).name),
            _copy(ROOT / p["b"], d, "B-" + Path(p["b"]).name)], "unrelated"


def _pair_bad_fixed(src):
    a, b = src.pairs[0]
    return [{"a": rel(a), "bad": w, "side": s} for w in ("empty", "text", "missing", "random")
            for s in ("a", "b")]


@category("pair-bad", "pair", "fail", 1, fixed=_pair_bad_fixed,
          label="one side empty / not a capture / missing")
def _pair_bad(src, p, d):
    good = _copy(ROOT / p["a"], d)
    bad = f"bad-{p['bad']}.pcapng"
    if p["bad"] == "empty":
        (d / bad).write_bytes(b"")
    elif p["bad"] == "text":
        (d / bad).write_bytes(b"hello\n" * 100)
    elif p["bad"] == "random":
        (d / bad).write_bytes(random.Random(7).randbytes(4096))
    names = [bad, good] if p["side"] == "a" else [good, bad]
    return names, f"{p['bad']} as side {p['side'].upper()}"


# --- logs --------------------------------------------------------------------------------------

_GO_TS = re.compile(rb"^(\d{4})/(\d{2})/(\d{2}) (\d{2}):(\d{2}):(\d{2})", re.M)
_ISO_TS = re.compile(rb"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})")


def shift_log(data: bytes, hours: int) -> bytes:
    import datetime as dt

    def sub(fmt):
        def f(m):
            t = dt.datetime(*map(int, m.groups())) + dt.timedelta(hours=hours)
            return t.strftime(fmt).encode()
        return f
    data = _GO_TS.sub(sub("%Y/%m/%d %H:%M:%S"), data)
    return _ISO_TS.sub(sub("%Y-%m-%dT%H:%M:%S"), data)


LOG_KINDS = ("real", "binary", "non-utf8", "latin1-words", "1mb-line", "1mb-line-stamped", "garbage",
             "8h-ahead", "8h-behind", "empty", "nul", "crlf", "utf16", "gzip", "gzip-cut", "cut-mid-line",
             "bom", "only-newlines", "huge-continuation", "future-year", "month-13", "mixed-formats",
             "html-injection")


def _log_fixed(src):
    return [{"log": rel(lg), "kind": k} for lg in src.logs[:2] for k in LOG_KINDS]


def _log_rand(src, rng):
    return {"log": rel(rng.choice(src.logs)), "kind": rng.choice(LOG_KINDS), "seed": rng.randrange(1 << 30)}


@category("log", "log", "any", 8, fixed=_log_fixed, rand=_log_rand,
          label="app logs: real, binary, non-UTF-8, 1 MB single line, garbage, 8 h off, UTF-16, gzip ...")
def _log(src, p, d):
    lg = ROOT / p["log"]
    data = lg.read_bytes()
    rng = random.Random(p.get("seed", 0))
    k = p["kind"]
    if k == "binary":
        out = rng.randbytes(200_000)
    elif k == "non-utf8":
        out = data.replace(b"e", b"\xe9").replace(b"o", b"\xff\xfe")
    elif k == "latin1-words":
        out = data.decode("utf-8", "replace").replace("connected", "connecté").encode("latin-1", "replace")
    elif k == "1mb-line":
        out = b"x" * (1 << 20)
    elif k == "1mb-line-stamped":
        first = data.split(b"\n", 1)[0]
        out = first + b" " + b"A" * (1 << 20) + b"\n" + data
    elif k == "garbage":
        out = b"\n".join(bytes(rng.randrange(32, 127) for _ in range(rng.randrange(0, 200)))
                         for _ in range(2000))
    elif k == "8h-ahead":
        out = shift_log(data, 8)
    elif k == "8h-behind":
        out = shift_log(data, -8)
    elif k == "empty":
        out = b""
    elif k == "nul":
        out = data[: len(data) // 2] + b"\0" * 1000 + data[len(data) // 2:]
    elif k == "crlf":
        out = data.replace(b"\n", b"\r\n")
    elif k == "utf16":
        out = data.decode("utf-8", "replace").encode("utf-16")
    elif k == "gzip":
        out = gzip.compress(data)
    elif k == "gzip-cut":
        z = gzip.compress(data * 20)
        out = z[: len(z) // 2]
    elif k == "cut-mid-line":
        out = data[: max(1, len(data) // 2 + 7)]
    elif k == "bom":
        out = b"\xef\xbb\xbf" + data
    elif k == "only-newlines":
        out = b"\n" * 100_000
    elif k == "huge-continuation":
        first = data.split(b"\n", 1)[0]
        out = first + b"\n" + b"\tat frame\n" * 200_000 + data
    elif k == "future-year":
        out = data.replace(b"2026", b"9999")
    elif k == "month-13":
        out = re.sub(rb"(\d{4})([/-])\d{2}\2", rb"\1\g<2>13\2", data)
    elif k == "html-injection":
        lines = data.split(b"\n")
        out = b"\n".join(ln + (b" <script>alert(1)</script> & \"q\" 'a' <img src=x onerror=alert(2)>"
                               if ln else ln) for ln in lines)
    elif k == "mixed-formats":
        out = data + b"Nov 21 22:02:31 host app[1]: syslog line\n1763733751.5 epoch line\n<html>\n"
    else:
        out = data
    name = f"{lg.stem}.{k}.log"
    (d / name).write_bytes(out)
    # the capture it belongs to (same scenario), for targets that take a capture + log
    caps = [c for c in src.samples if _scenario(c) == _scenario(lg)]
    cap = min(caps, key=lambda c: c.stat().st_size) if caps else min(src.samples, key=lambda c: c.stat().st_size)
    return [_copy(cap, d), name], f"{k} ({lg.name}) with {cap.name}"


# ---------------------------------------------------------------------------------------------
# planning


def plan(src: Sources, n: int, seed: int, only_cheap: bool = False,
         categories: Optional[Sequence[str]] = None) -> List[Case]:
    """`n` cases from `seed`: every category gets a share by weight; fixed recipes first, random
    ones fill up. Deterministic for (sources, n, seed)."""
    rng = random.Random(seed)
    cats = [CATEGORIES[c] for c in (categories or CATEGORIES)]
    if only_cheap:
        src = Sources([p for p in src.samples if p.stat().st_size <= 200_000],
                      [p for p in src.lab if p.stat().st_size <= 200_000],
                      src.logs, [(a, b) for a, b in src.pairs
                                 if a.stat().st_size <= 200_000 and b.stat().st_size <= 200_000])
    fixed = {c.name: c.fixed(src) for c in cats}
    total_w = sum(c.weight for c in cats) or 1
    # fixed recipes of zero-weight categories (baseline, real pairs) always run when n allows
    quota: Dict[str, int] = {}
    for c in cats:
        share = round(n * c.weight / total_w)
        quota[c.name] = max(share, len(fixed[c.name])) if n >= 500 else max(1, share)
        if c.weight == 0:
            quota[c.name] = len(fixed[c.name]) if n >= 500 else max(1, min(len(fixed[c.name]), n // 25))
        if c.rand is None:          # only fixed recipes: each at most once
            quota[c.name] = min(quota[c.name], len(fixed[c.name]))
    # trim or grow to exactly n, adjusting the random-capable categories with the largest quotas
    growable = [c.name for c in cats if c.rand is not None] or [cats[0].name]
    while sum(quota.values()) > n:
        k = max(quota, key=lambda name: quota[name])
        quota[k] -= 1
    i = 0
    while sum(quota.values()) < n:
        quota[growable[i % len(growable)]] += 1
        i += 1
    recipes: List[Tuple[Category, dict]] = []
    for c in cats:
        fx = list(fixed[c.name])
        q = quota[c.name]
        if len(fx) > q:
            fx = rng.sample(fx, q)
        recipes += [(c, p) for p in fx]
        for _ in range(q - len(fx)):
            if c.rand is not None:
                recipes.append((c, c.rand(src, rng)))
            elif fixed[c.name]:
                recipes.append((c, rng.choice(fixed[c.name])))
    cases = []
    for i, (c, p) in enumerate(recipes):
        cases.append(Case(id=f"{i:04d}-{c.name}", category=c.name, kind=c.kind, params=p,
                          expect=p.get("expect", c.expect)))
    return cases


def make_case(case: Case, src: Sources, root: Path) -> Case:
    """Create the case's files under root/<id>/; sets files/argnames/note or error."""
    d = root / case.id
    d.mkdir(parents=True, exist_ok=True)
    try:
        names, note = CATEGORIES[case.category].make(src, case.params, d)
    except (MakeError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
        case.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return case
    case.files = names
    case.note = note
    case.argnames = names
    case.cheap = all((d / n).stat().st_size <= 1_200_000 for n in names if (d / n).exists())
    return case
