-- Test-only probe for tests/test_gui.py (not part of the plugin): loaded into the Wireshark GUI with
-- -X lua_script:, it writes one line per tap draw to $TCPSTALL_PROBE_OUT: how many frames the
-- current file has had dissected and tcpstall's HOL releases in it ("frame=bytes,..."). Taps are
-- reset when a file is (re)opened, so each file gets its own lines.
local out = assert(os.getenv("TCPSTALL_PROBE_OUT"), "TCPSTALL_PROBE_OUT not set")
local released = Field.new("tcpstall.hol.released_bytes")
local n, rel = 0, {}
local tap = Listener.new("frame")
function tap.reset() n, rel = 0, {} end
function tap.packet(pinfo)
    n = n + 1
    local fi = released()
    if fi ~= nil then rel[#rel + 1] = tostring(pinfo.number) .. "=" .. tostring(fi.value) end
end
function tap.draw()
    local f = assert(io.open(out, "a"))
    f:write(string.format("%d frames, releases %s\n", n, table.concat(rel, ",")))
    f:close()
end
