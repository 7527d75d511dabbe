"""`--html`: the self-contained page renders in headless Chromium (Debian's chromium) with a
ladder diagram whose texts neither overlap nor leave the viewport; it is well-formed, and log text is
escaped (a log line holding `<script>` stays text)."""
from __future__ import annotations

import json
import re
import struct
import subprocess
import zlib
from pathlib import Path

import lxml.html
import pytest
from click.testing import CliRunner
from lxml import etree

from conftest import sample, truth
from pytshark_ext.applog import parse_log_spec
from pytshark_ext.cli import main
from pytshark_ext.pipeline import read_pair
from pytshark_ext.render.html import render_html, write_html
from pytshark_ext.timeline import report_for_correlation

# these tests only read captures: a HOME of their own, shared (conftest.module_home)
pytestmark = pytest.mark.usefixtures("module_home")

CHROMIUM = "/usr/bin/chromium"
# wide characters first: the ladder cuts log lines to their column, measured with these at a full em
EVIL = '日本語の行 <script>document.title="pwned"</script> & <img src=x onerror=alert(1)> "q"'


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium) -- HTML not checked in a browser")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """heartbeat-loss with both logs; the receiver log gets a hostile line inside the stall."""
    tmp = tmp_path_factory.mktemp("html")
    t = truth("heartbeat-loss")
    slow = max(t["app"]["read_costs_over_100ms"], key=lambda x: x["cost_ms"])
    lines = sample(t["app"]["logs"]["receiver"]).read_text().splitlines()
    i = next(k for k, ln in enumerate(lines) if f"seq={slow['seq']} read cost" in ln)
    stamp = lines[i][:26]                       # "2026/11/21 22:02:33.374002"
    lines.insert(i + 1, f"{stamp} conn.go:99: {EVIL}")
    receiver = tmp / "receiver.log"
    receiver.write_text("\n".join(lines) + "\n")
    a, b = str(sample("heartbeat-loss-client.pcapng")), str(sample("heartbeat-loss-server.pcapng"))
    read = read_pair(a, b, packets=True)
    result = read.result
    report = report_for_correlation(result, read.packets, [
        parse_log_spec(f"{sample(t['app']['logs']['sender'])}@A"), parse_log_spec(f"{receiver}@B")])
    out = tmp / "page.html"
    write_html(str(out), render_html(report, title="tcpstall <test> & co", tcp_findings=result.findings))
    return tmp, out, report


def test_page_is_self_contained_and_escaped(page):
    _, out, _ = page
    text = out.read_text()
    assert "<script" not in text.lower()
    assert "&lt;script&gt;document.title" in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    # no external resource: no src/href attributes, no URL but the SVG namespace
    assert not re.findall(r"<[a-zA-Z][^<>]*\s(?:src|href)\s*=", text)
    assert set(re.findall(r"https?://[^\s\"'<>]+", text)) <= {"http://www.w3.org/2000/svg"}
    assert "tcpstall &lt;test&gt; &amp; co" in text


def test_page_has_a_ladder_with_the_loss_and_the_held_span(page):
    _, out, report = page
    text = out.read_text()
    assert text.count("<svg") >= 1
    assert "✕" in text                               # the lost segment ends in a cross
    assert 'fill="#f39c12"' in text                   # a held (HOL) span
    lost = report.facts.lost[0]
    assert f"seq={lost.seq_raw}" in text
    assert "B&#x27;s Read blocked" in text or "B's Read blocked" in text


def test_chromium_renders_the_page_and_keeps_log_text_as_text(page):
    tmp, out, _ = page
    res = chromium(tmp, "--dump-dom", out.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    assert "<svg" in dom and dom.count("<line") > 10
    assert "<script" not in dom.lower()                  # the log's script never became an element
    assert "&lt;script&gt;document.title" in dom
    title = re.search(r"<title>(.*?)</title>", dom, re.S).group(1)
    assert title == "tcpstall &lt;test&gt; &amp; co"      # no script ran to change it


def _png_ink(path: Path) -> float:
    """Share of non-white bytes in the PNG's (filtered) scanlines: 0 for a blank page."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(idat)
    return sum(1 for b in raw[::7] if b not in (0, 255)) / max(1, len(raw[::7]))


def test_chromium_screenshot_is_not_blank(page):
    tmp, out, _ = page
    png = tmp / "page.png"
    res = chromium(tmp, "--window-size=1150,1700", f"--screenshot={png}", out.as_uri())
    assert res.returncode == 0 and png.is_file(), res.stderr[-2000:]
    assert png.stat().st_size > 20_000
    assert _png_ink(png) > 0.01


def test_page_is_well_formed_and_hostile_text_round_trips(page):
    """The page parses as XML (it is built as a tree, not concatenated), and the hostile log line,
    the title and every capture string come back as the same text: escaped, never markup."""
    _, out, _ = page
    root = etree.fromstring(out.read_bytes())
    assert root.tag == "html" and root.find("head/title").text == "tcpstall <test> & co"
    texts = ["".join(el.itertext()) for el in root.iter("td", "{http://www.w3.org/2000/svg}title")]
    assert any(t.endswith(f"conn.go:99: {EVIL}") for t in texts)      # <, >, &, quotes all survive as text
    tags = {etree.QName(el).localname for el in root.iter() if isinstance(el.tag, str)}
    assert not tags & {"script", "img", "iframe", "object"}
    assert root.find("body/{http://www.w3.org/2000/svg}svg") is not None     # inline SVG, its namespace


# Measures every ladder text in the browser and writes what it finds into the DOM (the page itself
# has no script: the test adds this one to a copy).
LAYOUT_CHECK = """<script>
const shown = t => [...t.childNodes].filter(n => n.nodeType === 3).map(n => n.data).join("");
const texts = [...document.querySelectorAll("svg text")];
const boxes = texts.map(t => t.getBoundingClientRect());
const width = document.documentElement.clientWidth;
const cross = (a, b) => a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;
const overlaps = [];
for (let i = 0; i < texts.length; i++)
  for (let j = i + 1; j < texts.length; j++)
    if (cross(boxes[i], boxes[j])) overlaps.push([shown(texts[i]), shown(texts[j])]);
const pre = document.createElement("pre");
pre.id = "layout-check";
pre.textContent = JSON.stringify({texts: texts.length, width: width, overlaps: overlaps,
  outside: texts.filter((t, i) => boxes[i].left < 0 || boxes[i].right > width).map(shown),
  scroll_width: document.documentElement.scrollWidth});
document.body.append(pre);
</script>"""


def layout_in_chromium(tmp: Path, page_file: Path, width: int) -> dict:
    probe = tmp / f"probe-{page_file.name}"
    probe.write_text(page_file.read_text().replace("</body>", LAYOUT_CHECK + "</body>"))
    res = chromium(tmp, f"--window-size={width},1000", "--dump-dom", probe.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    found = lxml.html.fromstring(res.stdout).get_element_by_id("layout-check")
    return json.loads(found.text_content())


@pytest.fixture(scope="module")
def analyze_page(tmp_path_factory):
    """One capture (the receiver's) with its log: the one-capture ladder of `tcpstall analyze --html`."""
    tmp = tmp_path_factory.mktemp("html-analyze")
    t = truth("heartbeat-loss")
    out = tmp / "analyze.html"
    res = CliRunner().invoke(main, ["analyze", "--log", str(sample(t["app"]["logs"]["receiver"])),
                                    "--html", str(out), str(sample("heartbeat-loss-server.pcapng"))])
    assert res.exit_code == 0, res.output
    return tmp, out


@pytest.mark.slow
@pytest.mark.parametrize("width", [1280, 900])
@pytest.mark.parametrize("which", ["correlate", "analyze"])
def test_chromium_layout_no_ladder_text_overlaps_or_leaves_the_viewport(page, analyze_page, which, width):
    tmp, out = (page[0], page[1]) if which == "correlate" else analyze_page
    found = layout_in_chromium(tmp, out, width)
    drawn = etree.fromstring(out.read_bytes()).findall(".//{http://www.w3.org/2000/svg}text")
    assert found["texts"] == len(drawn) > 20                    # the check measured every ladder text
    assert found["overlaps"] == []
    assert found["outside"] == []
    assert found["scroll_width"] <= found["width"]              # nothing on the page scrolls sideways


def test_ladder_draws_what_correlate_matched_without_timestamps(tmp_path):
    """heartbeat-loss-nots (no TCP timestamps): the lost original (A frame 66, truth) and its
    retransmission carry the same sequence number, ACK and length; only the IP ID tells them apart.
    The ladder pairs packets with correlate's engine, so the original is drawn lost (✕, "LOST before
    B") and the retransmission reaches B — not the original paired with the retransmission's copy."""
    t = truth("heartbeat-loss-nots")
    fault = t["faults"][0]
    a, b = str(sample("heartbeat-loss-nots-client.pcapng")), str(sample("heartbeat-loss-nots-server.pcapng"))
    read = read_pair(a, b, packets=True)
    report = report_for_correlation(read.result, read.packets, [
        parse_log_spec(f"{sample(t['app']['sender_log'])}@A"), parse_log_spec(f"{sample(t['app']['receiver_log'])}@B")])
    out = tmp_path / "nots.html"
    write_html(str(out), render_html(report, title="nots", tcp_findings=read.result.findings))
    texts = [x.strip() for x in lxml.html.parse(str(out)).getroot().xpath("//svg//text/text()")]
    label = f"ACK,PSH seq={fault['seq_raw']} len={fault['len']}"
    assert f"{label} — LOST before B (lost-1)" in texts
    assert fault["client_frame"] == 66 and fault["retransmissions"][0]["frame"] == 69
