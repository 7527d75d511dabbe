-- tcpstall/rows.lua: `-z tcpstall,rows` — one line per TCP segment, printed during the (first and
-- only) pass, with what correlate's matching engine reads of it (pytshark_ext/pipeline.py);
-- `-z tcpstall,segments`: the same with the timeline's window and SACK columns (M.add).
--
-- Why not `-T fields`: that output makes tshark build the *visible* protocol tree of every packet
-- (every item and its label text, for all protocols), which cost ~2.3 s per 245 k packets more than
-- the `-q` pass the plugin needs anyway (with the plugin loaded, 9.0 s instead of 4.7 s: two thirds
-- of `tcpstall correlate`). The plugin already holds most of these values; the rest it reads here.
--
-- Output (stdout, as the frames are dissected, before the records and the summary):
--   frame \x1f time_epoch \x1f seq_raw \x1f ack_raw \x1f len \x1f flags \x1f tsval \x1f tsecr
--         \x1f ip_id \x1f direction \x1f tcp.stream
-- for every frame tshark's `tcp && !icmp && !icmpv6` keeps, in frame order. The values are the
-- texts `-T fields -E occurrence=l` prints for frame.number, frame.time_epoch, tcp.seq_raw,
-- tcp.ack_raw, tcp.len, tcp.options.timestamp.tsval/.tsecr, ip.id, tcp.stream, except: tcp.flags
-- in decimal, and `direction` = "src sport dst dport" (the addresses as `-n` prints them; one
-- column that Python maps to its direction key); absent values are empty. tests/test_rows.py
-- checks these rows against the `-T fields` rows on every committed capture.
-- Where the two can differ (a tunnel whose inner and outer network layers are different IP
-- versions, or TCP inside TCP): the rows name the innermost addresses, as tshark's pinfo does.
local core = ...
if type(core) ~= "table" then return {} end

local M = { enabled = false, segments = false }

local format, concat, tostring = string.format, table.concat, tostring
local BATCH = 1024                 -- lines per print
local out, n = {}, 0

function M.reset()
    out, n = {}, 0
end

-- print what is buffered (every tap draw does this first: the rows end before the records)
function M.flush()
    if n > 0 then
        print(concat(out, "\n", 1, n))     -- (print, as every tcpstall output: never io.*)
        n = 0
    end
end

-- "src sport dst dport\31tcp.stream": the last two columns, the same for all rows of a direction
local function direction_text(d)
    local text = d.row_direction
    if text == nil then
        text = d.src .. " " .. d.sport .. " " .. d.dst .. " " .. d.dport .. "\31" .. d.stream
        d.row_direction = text
    end
    return text
end

-- Number -> text costs a sprintf (and, through %s, a new string) per value; values with few
-- distinct texts (lengths, flags, IP IDs) are turned into text once each
local function texts(fmt)
    return setmetatable({}, { __index = function(made, v)
        local text = format(fmt, v)
        made[v] = text
        return text
    end })
end
local DECIMAL, HEX = texts("%d"), texts("0x%04x")

-- the formats of a row by what it carries: [ack flag][TS option] (absent values are empty)
local ROW = {
    [true] = { [true] = "%d\31%d.%09d\31%d\31%d\31%s\31%s\31%d\31%d\31%s\31%s",
               [false] = "%d\31%d.%09d\31%d\31%d\31%s\31%s\31\31\31%s\31%s" },
    [false] = { [true] = "%d\31%d.%09d\31%d\31\31%s\31%s\31%d\31%d\31%s\31%s",
                [false] = "%d\31%d.%09d\31%d\31\31%s\31%s\31\31\31%s\31%s" },
}

local function put(line)
    n = n + 1
    out[n] = line
    if n >= BATCH then M.flush() end
end

local function value(fi)
    if fi == nil then return "" end
    return fi()
end

-- The packet's TCP header (its first `n` bytes) in `tvb` as (bytes, index of its first byte), or
-- nil where the frame does not show it (a reassembled or truncated frame), and the IP ID (false:
-- none: IPv6, or not in this frame) — one wslua call instead of an extractor read per value (~2 k instructions each). The
-- header's offset is found once per direction from tcp.flags' and kept while the ports found there
-- are the packet's; the IPv4 header is the one core.read_ip_id found (d.ip_off, d.ip_vb), read in
-- the same call once known.
local function header(tvb, pkt, d, n)
    local ip_off, tcp_off = d.ip_off, d.row_tcp_off
    if tcp_off ~= nil and ip_off and ip_off < tcp_off then
        local ok, bytes = pcall(tvb.raw, tvb, ip_off, tcp_off - ip_off + n)
        if ok then
            local at = tcp_off - ip_off + 1
            local vb, _, _, _, i1, i2 = bytes:byte(1, 6)
            local s1, s2, d1, d2 = bytes:byte(at, at + 3)
            if vb == d.ip_vb and s1 ~= nil and s1 * 256 + s2 == pkt.sport and d1 * 256 + d2 == d.dport then
                return bytes, at, i1 * 256 + i2
            end
        end
    end
    local ip_id = pkt.ip_id
    if ip_id == false then ip_id = core.read_ip_id(pkt, d) end   -- (finds d.ip_off)
    local off, fresh = tcp_off, false
    while true do
        if off == nil then
            local fi = core.X.flags()
            if fi == nil then return nil, 1, ip_id end
            off, fresh = fi.offset - 12, true
        end
        local ok, bytes = pcall(tvb.raw, tvb, off, n)
        if ok then
            local s1, s2, d1, d2 = bytes:byte(1, 4)
            if s1 * 256 + s2 == pkt.sport and d1 * 256 + d2 == d.dport then
                d.row_tcp_off = off
                return bytes, 1, ip_id
            end
        end
        if fresh then return nil, 1, ip_id end   -- (found for this packet: not in this frame)
        off = nil                                -- (the direction's offset is not this packet's)
    end
end

-- `-z tcpstall,segments`: two more columns, what the timeline reads too: tcp.window_size_value and
-- the SACK blocks as raw edges "left:right,left:right" (empty without)
local sack_scratch = {}
local function sack_text(edges)
    if not edges then return "" end
    local parts = {}
    for k = 1, #edges, 2 do parts[#parts + 1] = format("%d:%d", edges[k], edges[k + 1]) end
    return concat(parts, ",")
end

-- a segment the core analyzes: `pkt` (build_packet and first_pass: number, len, flags, stream,
-- sport, tsval, and ip_id and sack when it read them), `d` its direction record, `rev` the other,
-- `t` its NSTime, `tvb` its frame
function M.add(pkt, d, rev, t, tvb)
    local tsv, tse = pkt.tsval, false
    -- seq and ack: header bytes 5-12, the window 15-16; the TS echo where Linux and most stacks
    -- put the option (NOP, NOP, kind 8, length 10 first: bytes 21-32), taken when its TSval is
    -- the packet's
    local h, at, ip_id = header(tvb, pkt, d, tsv and 32 or 16)
    local seq, ack, win
    if h ~= nil then
        local q1, q2, q3, q4, a1, a2, a3, a4, _, _, w1, w2 = h:byte(at + 4, at + 15)
        seq, ack = ((q1 * 256 + q2) * 256 + q3) * 256 + q4, ((a1 * 256 + a2) * 256 + a3) * 256 + a4
        win = w2 and w1 * 256 + w2
        if tsv then
            local n1, n2, k, l, v1, v2, v3, v4, e1, e2, e3, e4 = h:byte(at + 20, at + 31)
            if n1 == 1 and n2 == 1 and k == 8 and l == 10 and e4 ~= nil
                    and ((v1 * 256 + v2) * 256 + v3) * 256 + v4 == tsv then
                tse = ((e1 * 256 + e2) * 256 + e3) * 256 + e4
            end
        end
    else
        local fs, fa = core.X.seq_raw(), core.X.ack_raw()
        if fs == nil then return end          -- (a truncated header: correlate skips its row)
        seq, ack = fs(), fa and fa() or 0
    end
    if tsv and not tse then
        local fe = core.X.tsecr()
        if fe ~= nil then tse = fe() else tsv = false end   -- (tshark would show neither)
    end
    local has_ack, has_ts = pkt.flags % 32 >= 16, tsv ~= false
    local fmt = ROW[has_ack][has_ts]
    local len, flags, id, dir = DECIMAL[pkt.len], DECIMAL[pkt.flags], ip_id and HEX[ip_id] or "", direction_text(d)
    local line
    if has_ack then
        if has_ts then line = format(fmt, pkt.number, t.secs, t.nsecs, seq, ack, len, flags, tsv, tse, id, dir)
        else line = format(fmt, pkt.number, t.secs, t.nsecs, seq, ack, len, flags, id, dir) end
    elseif has_ts then line = format(fmt, pkt.number, t.secs, t.nsecs, seq, len, flags, tsv, tse, id, dir)
    else line = format(fmt, pkt.number, t.secs, t.nsecs, seq, len, flags, id, dir) end
    if M.segments then
        if win == nil then
            local fw = core.X.win()
            win = fw and fw() or nil
        end
        -- the SACK blocks the core read; on the packets whose ACK it skips (the sender of a
        -- one-way transfer) read here
        local sack = pkt.sack
        if not sack and has_ack and not pkt.ackf then sack = core.sack_edges(ack, rev, sack_scratch) end
        line = line .. "\31" .. (win and DECIMAL[win] or "") .. "\31" .. sack_text(sack)
    end
    put(line)
end

-- a TCP frame the core does not analyze (a truncated header; a segment of a direction it cannot
-- place): its row from the extractors alone, when tshark's filter would keep it
function M.add_other(pinfo, number, t)
    local X = core.X
    local fi_stream = X.stream()
    if fi_stream == nil or X.icmp() ~= nil or X.icmpv6() ~= nil or t == nil then return end
    local flags, tsv = X.flags(), X.tsval()
    local sport, dport = pinfo.src_port, pinfo.dst_port
    local ip_id = core.read_ip_id({ ip_id = false, sport = sport }, {})
    local ack = value(X.ack_raw())
    local line = format("%d\31%d.%09d\31%s\31%s\31%s\31%s\31%s\31%s\31%s\31%s %d %s %d\31%d", number, t.secs,
        t.nsecs, value(X.seq_raw()), ack, value(X.len()), value(flags), value(tsv),
        tsv and value(X.tsecr()) or "", ip_id and HEX[ip_id] or "", tostring(pinfo.src), sport,
        tostring(pinfo.dst), dport, fi_stream())
    if M.segments then
        local sack = ack ~= "" and core.sack_edges(ack, {}, sack_scratch) or nil
        line = line .. "\31" .. value(X.win()) .. "\31" .. sack_text(sack)
    end
    put(line)
end

return M
