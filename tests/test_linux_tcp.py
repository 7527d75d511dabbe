"""One tcp_model_timeout: lab/linux_tcp.py (the lab and the tests' oracle) against the kernel's own
numbers, and the plugin's copy (plugins/tcpstall/retries.lua) against it, directly and through the
`tcpstall.retries.budget_s` field with `-o` prefs."""
from __future__ import annotations

import shutil

import pytest

from lab.linux_tcp import TCP_RTO_MIN_MS, tcp_model_timeout
from pytshark_ext import tshark as ts
from pytshark_ext.paths import plugin_script

from conftest import inner_loop, run_tshark, sample

# tcp_model_timeout() at rto_min 200 ms, rto_max 120 s: the values Documentation/networking/ip-sysctl.rst
# and DESIGN.md §2 give (15 => 924.6 s "between 13 and 30 minutes" depending on the RTO)
KERNEL_TABLE = {1: 0.6, 2: 1.4, 3: 3.0, 4: 6.2, 5: 12.6, 6: 25.4, 7: 51.0, 8: 102.2, 9: 204.6,
                10: 324.6, 11: 444.6, 12: 564.6, 13: 684.6, 14: 804.6, 15: 924.6}


@pytest.fixture(autouse=True, scope="module")
def _home(module_home):
    yield


def test_python_matches_the_kernel_table():
    for n, want in KERNEL_TABLE.items():
        assert tcp_model_timeout(n) == pytest.approx(want, abs=1e-9), n
    assert tcp_model_timeout(0) == pytest.approx(0.2)
    assert tcp_model_timeout(20) == pytest.approx(924.6 + 5 * 120)      # linear past thresh: + rto_max each
    # a SYN's budget runs on tcp_timeout_init() = 1 s: tcp_syn_retries 6 => 127 s (ip-sysctl.rst)
    assert tcp_model_timeout(6, 1000) == pytest.approx(127.0)
    assert tcp_model_timeout(15, 200, 60000) == pytest.approx(511 * 0.2 + 7 * 60)  # thresh = ilog2(300) = 8


GRID = [(n, base, rmax) for n in (0, 1, 2, 5, 6, 8, 9, 10, 15, 20) for base in (50, 200, 1000)
        for rmax in (1000, 60000, 120000)]

LUA_HARNESS = """
local m = assert(loadfile(MODULE))({ settings = {}, F = {}, E = {} })
for _, c in ipairs(CASES) do
    print(string.format("BUDGET %d %d %d %.6f", c[1], c[2], c[3], m.model_timeout(c[1], c[2], c[3])))
end
"""


def test_lua_module_matches_python_on_a_grid(tmp_path):
    """retries.lua's model_timeout, loaded by tshark's own Lua with a stub core, for retries2 x
    rto_base x rto_max in one tshark start."""
    module = plugin_script().parent / "tcpstall" / "retries.lua"
    cases = ", ".join(f"{{{n}, {b}, {m}}}" for n, b, m in GRID)
    script = tmp_path / "budget_harness.lua"
    script.write_text(f"local MODULE = {str(module)!r}\nlocal CASES = {{ {cases} }}\n" + LUA_HARNESS)
    proc = run_tshark([shutil.which("tshark"), "-n", "-X", f"lua_script:{script}", "-r",
                           str(sample("peer-vanishes-client.pcapng")), "-c", "1", "-q"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = {(int(n), int(b), int(m)): float(v) for _, n, b, m, v in
           (ln.split() for ln in proc.stdout.splitlines() if ln.startswith("BUDGET "))}
    assert len(got) == len(GRID)
    for (n, b, m), v in got.items():
        assert v == pytest.approx(tcp_model_timeout(n, b, m), abs=1e-6), (n, b, m)


@pytest.mark.parametrize("prefs", inner_loop([
    {},
    {"tcp_retries2": 6},
    {"tcp_retries2": 8},
    {"tcp_retries2": 0},
    {"tcp_retries2": 15, "rto_max_ms": 60000},
    {"tcp_retries2": 5, "rto_min_ms": 50},          # the route's rto_min does not change the budget
    {"tcp_retries2": 15, "rto_min_ms": 1000},
    {"tcp_retries2": 8, "rto_max_ms": 1000},
    {"user_timeout_ms": 1500},                      # TCP_USER_TIMEOUT replaces the budget
], inner=[{}, {"tcp_retries2": 6}, {"user_timeout_ms": 1500}]),
    ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()) or "defaults")
def test_plugin_budget_field_matches_python(prefs):
    """The number the plugin states (tcpstall.retries.budget_s on the first retransmission of
    peer-vanishes) is the Python model's for the same settings: rto_base is always TCP_RTO_MIN."""
    rows = list(ts.iter_fields(str(sample("peer-vanishes-client.pcapng")), ("tcpstall.retries.budget_s",),
                               two_pass=False, display_filter="frame.number == 9", prefs=prefs))
    assert len(rows) == 1
    got = float(rows[0][0][0])
    ut = prefs.get("user_timeout_ms", 0)
    want = ut / 1000 if ut else tcp_model_timeout(prefs.get("tcp_retries2", 15), TCP_RTO_MIN_MS,
                                                  prefs.get("rto_max_ms", 120000))
    assert got == pytest.approx(want, abs=1e-9)
