-- bench/plugin_overhead_noop.lua: the baseline for bench/plugin_overhead.py. A postdissector that
-- reads exactly the Field extractors plugins/tcpstall.lua declares (core.X): on every TCP packet it
-- calls each of them and reads the value of every occurrence (what reading a field means: tcpstall
-- needs the values), and does nothing with them. tests/test_plugin_core.py checks that this list
-- matches tcpstall.lua.
local p = Proto("tcpstall_noop", "tcpstall benchmark baseline (no-op)")
local NAMES = {
    "tcp.stream", "tcp.seq_raw", "tcp.ack_raw", "tcp.ack", "tcp.len", "tcp.flags",
    "tcp.window_size_value", "tcp.window_size_scalefactor", "tcp.options.wscale.shift",
    "tcp.options.mss_val", "tcp.options.sack_perm", "tcp.options.sack_le", "tcp.options.sack_re",
    "tcp.options.timestamp.tsval", "tcp.options.timestamp.tsecr",
    "icmp", "icmpv6", "frame.time_epoch",
}
local X = {}
for i, n in ipairs(NAMES) do X[i] = Field.new(n) end
local n = #X
local stream = X[1]

-- the value of every FieldInfo passed (fi() is the value, as in tcpstall)
local function read_all(fi, ...)
    if fi == nil then return end
    local _ = fi()
    return read_all(...)
end

function p.dissector(tvb, pinfo, tree)
    local fi = stream()
    if fi == nil then return end
    local _ = fi()
    for i = 2, n do
        read_all(X[i]())
    end
end
register_postdissector(p)
