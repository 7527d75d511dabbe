"""Issue 16: facts cross from Lua to Python only as fields. With every expert text reworded (a probe
Lua script loaded before the plugin reverses them), `analyze --json` and `correlate --json` come out
the same: Python reads no expert prose."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from conftest import ROOT, run_tshark, sample
from pytshark_ext import tshark as ts
from pytshark_ext.cli import main

pytestmark = pytest.mark.slow      # end-to-end: every analyze/correlate JSON run twice (reworded experts); the full suite (make test) runs it

PROBE = ROOT / "tests" / "data" / "lua" / "reword_experts.lua"


@pytest.fixture(autouse=True, scope="module")
def _home(module_home):
    yield


def _json(args):
    res = CliRunner().invoke(main, args + ["--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


def _reworded(monkeypatch):
    plain = ts.plugin_args
    monkeypatch.setattr(ts, "plugin_args", lambda tshark: ["-X", f"lua_script:{PROBE}"] + plain(tshark))


def test_probe_rewords_the_plugins_expert_texts(tshark_path):
    """The probe works: without it the release's expert says "HOL-blocked delivery", with it not."""
    cap = str(sample("heartbeat-loss-server.pcapng"))
    args = [tshark_path, "-r", cap, "-X", f"lua_script:{PROBE}", "-X", f"lua_script:{ts.privileges.plugin_script_for()}",
            "-2", "-Y", "tcpstall.hol.released", "-T", "fields", "-e", "_ws.expert.message"]
    out = run_tshark(args, capture_output=True, text=True, timeout=120).stdout
    assert out.strip() and "REWORDED: " in out and "HOL-blocked delivery" not in out


@pytest.mark.parametrize("args", [
    ["analyze", "heartbeat-loss-server.pcapng"],                       # HOL, thin stream
    ["analyze", "heartbeat-loss-client.pcapng", "--log", "heartbeat-loss-sender.log"],
    ["analyze", "peer-vanishes-retries8-client.pcapng", "-o", "tcp_retries2:8",
     "--log", "peer-vanishes-retries8-client.log"],                     # retries, final
    ["analyze", "peer-restarts-client.pcapng"],                         # reset
    ["analyze", "keepalive-peer-vanishes-client.pcapng"],               # probes, aborted
    ["analyze", "small-rcvbuf-client.pcapng"],                          # receiver window
    ["correlate", "heartbeat-loss-client.pcapng", "heartbeat-loss-server.pcapng",
     "--log", "heartbeat-loss-sender.log@A", "--log", "heartbeat-loss-receiver.log@B"],
], ids=lambda a: "-".join(x for x in a if x.endswith(".pcapng"))[:60] + ("+log" if "--log" in a else ""))
def test_json_does_not_depend_on_expert_texts(args, monkeypatch):
    args = [str(sample(a)) if a.endswith((".pcapng", ".log")) else
            (str(sample(a[:-2])) + a[-2:] if a.endswith(("@A", "@B")) else a) for a in args]
    plain = _json(args)
    _reworded(monkeypatch)
    reworded = _json(args)
    assert plain == reworded
    assert plain["findings"]
