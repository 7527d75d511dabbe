-- bench/plugin_overhead_noop.lua: the baseline for bench/plugin_overhead.py. A postdissector that
-- reads exactly the Field extractors plugins/tcpstall.lua declares (core.X), each once per TCP
-- packet (all occurrences, like the plugin's SACK reads), and does nothing with them.
-- tests/test_plugin_core.py checks that this list matches tcpstall.lua.
local p = Proto("tcpstall_noop", "tcpstall benchmark baseline (no-op)")
local NAMES = {
    "tcp.stream", "tcp.seq_raw", "tcp.ack_raw", "tcp.ack", "tcp.len", "tcp.flags",
    "tcp.window_size_value", "tcp.window_size_scalefactor", "tcp.options.wscale.shift",
    "tcp.options.mss_val", "tcp.options.sack_le", "tcp.options.sack_re",
    "tcp.options.timestamp.tsval", "tcp.options.timestamp.tsecr",
    "tcp.analysis.retransmission", "tcp.analysis.fast_retransmission",
    "tcp.analysis.spurious_retransmission", "tcp.analysis.out_of_order", "tcp.analysis.lost_segment",
    "tcp.analysis.duplicate_ack_num", "tcp.analysis.zero_window", "tcp.analysis.window_full",
    "tcp.analysis.keep_alive", "tcp.analysis.flags", "icmp", "icmpv6",
}
local X = {}
for i, n in ipairs(NAMES) do X[i] = Field.new(n) end
local n = #X
local stream = X[1]
function p.dissector(tvb, pinfo, tree)
    if stream() == nil then return end
    for i = 2, n do
        local a, b, c, d = X[i]()
    end
end
register_postdissector(p)
