-- tcpstall/stream.lua: per-stream, per-direction TCP state shared by all analyzers.
--
-- One record per TCP stream (`tcp.stream`), holding two direction records (see README.md for the
-- full field list). `M.ingest(core, pkt)` updates them from one packet record on the FIRST pass
-- only and annotates the packet record with derived facts (absolute seq/ack, arrival
-- classification, released out-of-order data, SACK-released data, retransmission info and trigger)
-- that analyzers read.
--
-- Loaded by plugins/tcpstall.lua with `core` as the chunk argument. Wireshark may also run this
-- file on its own while scanning the plugin folder recursively: then `...` is nil and the file
-- returns an empty table without touching anything.
local core = ...
if type(core) ~= "table" then return {} end

local seq = core.load("seq")
local unwrap = seq.unwrap
local TWO32, HALF = 4294967296, 2147483648
local sack_abs_scratch = {}

local M = {}

local huge = math.huge

-- Records that left a direction's arrays (segment records: segs_compact; held entries:
-- ooo_compact), reused by any direction: a per-direction pool kept every record a short connection
-- ever had until the capture ended (~50 KB per 64 KB request). Bounded, so that a burst of
-- compactions leaves garbage rather than a pool the size of the largest window seen.
local POOL_MAX = 4096
local seg_pool, ooo_pool = {}, {}

---------------------------------------------------------------------------------------------------
-- direction / stream records

local function new_dir(stream, src, sport, dst, dport)
    return {
        stream = stream, src = src, sport = sport, dst = dst, dport = dport,
        key = src .. ":" .. sport,
        peer = nil,            -- the reverse direction record
        ref = nil,             -- absolute reference for unwrapping this direction's seq space
        isn = nil,             -- absolute ISN if the SYN was seen
        wscale = nil,          -- window shift from this side's SYN option (nil: not seen)
        mss = nil,             -- MSS option from this side's SYN
        sack_ok = nil,
        data_seen = false,     -- this direction sent payload or a FIN (in the capture)
        no_ts = false,         -- it sends no TCP timestamps: its packets' IP IDs are read instead (tcpstall.lua)
        sf_shift = nil, sack_off = nil, -- Wireshark's window shift / SACK edge offset for this direction (tcpstall.lua)
        -- sender view (this direction's data as sent)
        high = nil,            -- highest sequence sent (absolute, exclusive end)
        first_t = nil,         -- time of the first packet of this direction
        last_t = nil,          -- time of the last packet of this direction
        last_send_t = nil,     -- last transmission carrying data/SYN/FIN (new or retransmitted)
        last_send_f = nil,
        last_new_t = nil,      -- last transmission of new data
        new_times = {},        -- ring of the last 8 new-data send times (send cadence)
        new_times_n = 0,
        segs = {},             -- outstanding segments, sorted by s: arrays {s, e, t, f, tx, last t, last f, last TSval}
        rec_s = {}, rec_e = {}, rec_ts = {}, rec_t = {}, rec_id = {}, rec_n = 0, -- last 4 transmissions (duplicate detection)
        segs_head = 1,
        retrans = 0,           -- retransmissions seen in this direction
        -- what the peer told us about this direction's data (ACKs from the peer)
        snd_una = nil,         -- cumulative ACK (absolute)
        ack_t = nil, ack_f = nil,   -- time/frame of the last ACK from the peer (any, incl. dup)
        una_t = nil,           -- time the cumulative ACK last advanced
        dupacks = 0,           -- consecutive duplicate ACKs at snd_una
        dup_first_t = nil, dup_first_f = nil,
        sack_cov = {},         -- SACKed ranges merged {{s, e}, ...}
        psack = {}, psack_n = 0, -- the blocks of the previous SACK option (absolute edges)
        sacked = {}, sacked_head = 1, -- SACK scoreboard above snd_una: disjoint, sorted arrays {s, e, t, f}, live from sacked_head
        sacked_bytes = 0,
        -- receiver view (this direction's data as it arrives at the capture point)
        rcv_nxt = nil,         -- in-order delivery point (absolute)
        ooo = {}, ooo_head = 1, -- held (out-of-order) arrivals above rcv_nxt: arrays {s, e, t, f}, sorted by s, live from ooo_head
        ooo_union = 0, ooo_maxe = nil,
        -- window advertised BY this direction (i.e. for the peer's data)
        win_raw = nil, win_scale = nil, win = nil,
        -- RTT: `turn` = round trip capture point <-> this host (see README)
        turn_min = nil, turn_s = nil, turn_n = 0,
        tsq_v = {}, tsq_t = {}, tsq_lo = 0, tsq_hi = 0, -- first-seen times of this side's TSvals (ring)
        -- free slot for analyzers: d.a.hol, d.a.rwnd, d.a.retries ...
        ackhist = {}, ackhist_n = 0,  -- ring of the last 16 ACKs from the peer: arrays {t, f, dupacks, sacked bytes, sacked blocks}
        a = {},
    }
end

-- The ACK from the peer that most plausibly triggered a transmission of d at time t: the newest
-- ACK seen at least d.turn_min (capture point -> sender -> capture point) before t.
function M.trigger_ack(d, t)
    local turn = d.turn_min or 0
    local n = d.ackhist_n
    local m = n < 16 and n or 16
    for i = 0, m - 1 do
        local e = d.ackhist[(n - 1 - i) % 16 + 1]
        if e[1] <= t - turn + 0.001 then return e, turn end
    end
    return nil, turn
end

-- Stream and direction records of this packet; `pinfo` gives the addresses (and the destination
-- port) when a stream is new. A tcp.stream index is one address/port pair, so the source port
-- tells the directions apart (the source address too when both ports are equal).
function M.lookup(state, pkt, pinfo)
    local sport = pkt.sport
    local st = state.streams[pkt.stream]
    if st == nil then
        local src, dst, dport = tostring(pinfo.src), tostring(pinfo.dst), pinfo.dst_port
        local d1 = new_dir(pkt.stream, src, sport, dst, dport)
        local d2 = new_dir(pkt.stream, dst, dport, src, sport)
        d1.peer, d2.peer = d2, d1
        st = { id = pkt.stream, first_t = pkt.time, first_f = pkt.number, a = {},
               same_ports = sport == dport, d1 = d1, d2 = d2, dirs = { [d1.key] = d1, [d2.key] = d2 } }
        st.client = d1  -- first direction seen (the SYN sender when the handshake is captured)
        state.streams[pkt.stream] = st
        state.stream_order[#state.stream_order + 1] = pkt.stream
    end
    local fwd
    if not st.same_ports then
        local d1 = st.d1
        if sport == d1.sport then fwd = d1
        elseif sport == d1.dport then fwd = st.d2 end
    else
        fwd = st.dirs[tostring(pinfo.src) .. ":" .. sport]
    end
    if fwd == nil then return nil end
    st.last_t = pkt.time
    st.last_f = pkt.number
    return st, fwd, fwd.peer
end

---------------------------------------------------------------------------------------------------
-- RTT: turn samples

-- `smooth`: the sample is a direct response (data -> ACK, handshake) and feeds the smoothed
-- estimate; TS-echo samples may include the echoing host's idle time (a data packet sent much
-- later echoes the same TSval), so they only feed the minimum.
local function turn_sample(d, s, smooth)
    if s < 0 then return end
    d.turn_n = d.turn_n + 1
    if d.turn_min == nil or s < d.turn_min then d.turn_min = s end
    if smooth then
        if d.turn_s == nil then d.turn_s = s else d.turn_s = d.turn_s + (s - d.turn_s) / 8 end
    end
end

local function turn_est(d)
    return d.turn_s or d.turn_min
end

-- Smoothed RTT as the sender `d` measures it (data out -> ACK back, delayed ACKs included):
-- the peer's smoothed turn plus d's own minimum turn (seconds, or nil).
function M.srtt(d)
    local a, b = d.turn_min, turn_est(d.peer)
    if a == nil and b == nil then return nil end
    return (a or 0) + (b or 0)
end

-- Minimum RTT of the connection (seconds, or nil). A turn not measured yet counts as 0 (at a
-- sender-side capture the sender's own turn is ~0 anyway).
function M.rtt_min(d)
    local a, b = d.turn_min, d.peer.turn_min
    if a == nil and b == nil then return nil end
    return (a or 0) + (b or 0)
end

-- Minimum RTT of the connection when BOTH turns were measured (seconds), else nil. A receiver-side
-- capture without the handshake and without TCP timestamps never measures the sender's turn (the
-- larger one there): rtt_min would be the receiver's ~0 ms, and judging by it would be wrong.
function M.path_rtt(d)
    local a, b = d.turn_min, d.peer.turn_min
    if a == nil or b == nil then return nil end
    return a + b
end

---------------------------------------------------------------------------------------------------
-- segments (sender view)

-- first index i >= head with segs[i].e > x (binary search; segs sorted by s, disjoint)
local function seg_find(d, x)
    local segs = d.segs
    local lo, hi = d.segs_head, #segs + 1
    while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        if segs[mid][2] <= x then lo = mid + 1 else hi = mid end
    end
    return lo
end

local function seg_insert(d, s, e, t, f, ts, id)
    local segs = d.segs
    local n = #segs
    -- a record dropped by segs_compact when there is one (seg_pool), else a new one: nine
    -- array slots either way, so a recycled record never grows a hash part ([9]: false or nil
    -- with timestamps, read only as a truth value)
    local g
    local pn = #seg_pool
    if pn > 0 then
        g = seg_pool[pn]
        seg_pool[pn] = nil
        g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9] = s, e, t, f, 1, t, f, ts, id
    else
        g = { s, e, t, f, 1, t, f, ts, id or false }
    end
    if n < d.segs_head or segs[n][2] <= s then
        segs[n + 1] = g
        return
    end
    table.insert(segs, seg_find(d, s), g)
end

-- Drop the consumed entries t[1 .. head - 1] of a head-indexed array in place: the live entries
-- move down to 1.., the tail is cleared. No new table (copying into a fresh one made garbage and
-- regrew its array part, a large share of what the collector had to do on a bulk capture).
local function shift_down(t, head)
    local n = #t
    local j = 0
    for i = head, n do
        j = j + 1
        t[j] = t[i]
    end
    for i = j + 1, n do t[i] = nil end
end

-- records t[1 .. head - 1] (consumed) into `pool`, up to POOL_MAX records in it
local function pool_put(pool, t, head)
    local pn = #pool
    local n = head - 1
    if pn + n > POOL_MAX then n = POOL_MAX - pn end
    for i = 1, n do pool[pn + i] = t[i] end
end

-- Called by on_ack before it consumes more entries, and after an ACK of everything (compact_next)
-- by the next packet's ingest: the previous ACK's lazy pkt.sack_released.segments (see SR_LAZY)
-- read the entries below the head during its own packet.
local compact_next = {}
local function segs_compact(d)
    local h = d.segs_head
    local segs = d.segs
    -- (everything acknowledged: all of them, whatever their number, or a short connection would
    -- keep the records of all its data to the end of the capture)
    if h > 1 and (h > #segs or (h > 256 and h > #segs / 2)) then
        -- the dropped records go to seg_pool for seg_insert: nothing else keeps a segment
        -- record (readers copy its values), and a new table per data segment was one of the
        -- two largest sources of garbage on a bulk capture
        pool_put(seg_pool, segs, h)
        shift_down(segs, h)
        d.segs_head = 1
    end
end

local function compact_pending()
    for i = #compact_next, 1, -1 do
        segs_compact(compact_next[i])
        compact_next[i] = nil
    end
end

-- Is a copy of d's transmission at t0 seen at t too soon to be a retransmission of it? A TCP resends
-- on an ACK from its peer or on a timer. The ACK that reports a loss is caused by data sent after the
-- lost segment: it comes one round trip after it at the earliest (half the minimum RTT measured is
-- kept as the bound: an estimate from a few delayed ACKs can be high). The shortest timer, the tail
-- loss probe, waits two round trips, and >= 2 ms on Linux: nothing from the peer since t0 and less
-- than 1 ms also means no reason to resend. Network and capture duplicates (the same frame recorded
-- twice) are microseconds apart.
local function too_soon(d, t, t0)
    if t0 == nil then return false end
    local gap = t - t0
    local rtt = M.rtt_min(d)
    if rtt ~= nil and gap < 0.5 * rtt then return true end
    if gap < 0.001 then
        local pl = d.peer.last_t
        return pl == nil or pl <= t0
    end
    return false
end

-- Is a transmission of exactly the range and TSval (or no TSval) of an earlier one, seen at t0 with
-- IP ID id0, a copy of it? Without timestamps both IP IDs are known (tcpstall.lua reads them for such
-- directions): a copy has the same one, a resend a new one (a stack that sends IP ID 0 on every
-- packet tells nothing: then, and with timestamps, by time).
local function is_copy(d, t, t0, id, id0)
    if id and id0 and (id ~= 0 or id0 ~= 0) then return id == id0 end
    return too_soon(d, t, t0)
end

-- Record a transmission [s, e) of direction d, TSval `tv` (nil without timestamps). Returns
-- retransmission info or nil.
local function on_send(d, pkt, s, e, tv)
    local t, f = pkt.time, pkt.number
    local id = pkt.ip_id                     -- (false with timestamps: not read)
    local high = d.high
    local info = nil
    if high == nil or s >= high then
        seg_insert(d, s, e, t, f, tv, id)
    else
        -- a copy of the last transmission of exactly [s, e) with the same TSval (or none on
        -- either): duplicated by the network or the capture (the same frame recorded twice), not
        -- sent again (a retransmission in the same TSval clock tick is not a copy)
        local g0 = d.segs[seg_find(d, s)]
        if g0 ~= nil and g0[1] == s and g0[2] == e and g0[8] == tv and is_copy(d, t, g0[6], id, g0[9]) then
            pkt.duplicate = true
            return nil
        end
        -- (also when the original was already acknowledged: the last few transmissions)
        local rs, re, rt, rtm, rid = d.rec_s, d.rec_e, d.rec_ts, d.rec_t, d.rec_id
        for k = 1, 4 do
            if rs[k] == s and re[k] == e and rt[k] == tv and is_copy(d, t, rtm[k], id, rid[k]) then
                pkt.duplicate = true
                return nil
            end
        end
        -- (partly) below the highest sequence sent: walk overlapping known segments
        local segs = d.segs
        local i = seg_find(d, s)
        local covered_to = s
        local first_t, prev_t, prev_f, tx = nil, nil, nil, 0
        local gaps = {}
        local start_seen = segs[i] ~= nil and segs[i][1] <= s
        while i <= #segs and segs[i][1] < e do
            local g = segs[i]
            if g[1] > covered_to then gaps[#gaps + 1] = { covered_to, g[1] } end
            -- first send and previous transmission of the data at `s` (a collapsed retransmission
            -- also carries later, recently sent segments; when the capture never saw `s` sent,
            -- both stay unknown)
            if start_seen and first_t == nil then first_t, prev_t, prev_f = g[3], g[6], g[7] end
            g[5] = g[5] + 1
            g[6], g[7], g[8], g[9] = t, f, tv, id
            if g[5] > tx then tx = g[5] end
            if g[2] > covered_to then covered_to = g[2] end
            i = i + 1
        end
        local top = e
        if high < top then top = high end
        if covered_to < top then gaps[#gaps + 1] = { covered_to, top } end
        for _, gp in ipairs(gaps) do
            if gp[2] > gp[1] and gp[1] >= (d.snd_una or -huge) then seg_insert(d, gp[1], gp[2], t, f, tv, id) end
        end
        if tx > 0 then
            info = { first_t = first_t, prev_t = prev_t, prev_f = prev_f, n = tx - 1, unseen = not start_seen }
        end
        if e > high then seg_insert(d, high, e, t, f, tv, id) end
    end
    if high == nil or e > high then
        d.high = e
    end
    local k = d.rec_n % 4 + 1
    d.rec_s[k], d.rec_e[k], d.rec_ts[k], d.rec_t[k], d.rec_id[k] = s, e, tv, t, id
    d.rec_n = d.rec_n + 1
    return info
end

---------------------------------------------------------------------------------------------------
-- receiver view: in-order delivery point and held (out-of-order) arrivals

-- d.ooo is a sorted array used from d.ooo_head on (consumed entries stay until compaction, so the
-- array never has holes); d.ooo_union = bytes covered by the live entries, d.ooo_maxe = their
-- highest end. Appends at the top (the common case) are O(1).

-- The dropped entries go to ooo_pool for on_arrival: a held entry is kept by nothing else
-- (pkt.released and pkt.held_entry are read during their own packet, and a pooled entry is only
-- rewritten by a later packet's held arrival), and a new table per held arrival was one of the two
-- largest sources of garbage on a lossy bulk capture.

local function ooo_compact(d)
    local h = d.ooo_head
    local ooo = d.ooo
    if h > #ooo then
        pool_put(ooo_pool, ooo, h)
        shift_down(ooo, h)
        d.ooo_head, d.ooo_union, d.ooo_maxe = 1, 0, nil
    elseif h > 64 and h > #ooo / 2 then
        pool_put(ooo_pool, ooo, h)
        shift_down(ooo, h)
        d.ooo_head = 1
    end
end

-- recompute union and max end of the live held entries (slow path: overlaps, middle inserts)
local function ooo_recount(d)
    local ooo = d.ooo
    local union, cov = 0, nil
    for i = d.ooo_head, #ooo do
        local g = ooo[i]
        if cov == nil or g[1] >= cov then
            union = union + (g[2] - g[1])
            cov = g[2]
        elseif g[2] > cov then
            union = union + (g[2] - cov)
            cov = g[2]
        end
    end
    d.ooo_union, d.ooo_maxe = union, cov
end

local function on_arrival(d, pkt, ds, de)
    if d.rcv_nxt == nil then
        d.rcv_nxt = ds
        if d.isn ~= nil and d.isn + 1 < ds then d.rcv_nxt = d.isn + 1 end
        if d.snd_una ~= nil and d.snd_una < d.rcv_nxt then d.rcv_nxt = d.snd_una end
        d.ooo, d.ooo_head, d.ooo_union, d.ooo_maxe = {}, 1, 0, nil
    end
    local nxt = d.rcv_nxt
    if de <= nxt then
        pkt.arrival = "old"
        return
    end
    local ooo = d.ooo
    local head = d.ooo_head
    if ds <= nxt then
        pkt.arrival = "inorder"
        local new = de
        local g = ooo[head]
        if g == nil or g[1] > new then
            d.rcv_nxt = new
            return
        end
        local rel = {}
        while g ~= nil and g[1] <= new do
            if g[2] > new then new = g[2] end
            rel[#rel + 1] = g
            head = head + 1
            g = ooo[head]
        end
        d.rcv_nxt = new
        d.ooo_head = head
        -- the released entries all lie below `new`, the remaining ones above it: subtract the
        -- released coverage from the running union instead of recounting what remains
        local runion, rcov = 0, nil
        for i = 1, #rel do
            local g2 = rel[i]
            if rcov == nil or g2[1] >= rcov then
                runion, rcov = runion + (g2[2] - g2[1]), g2[2]
            elseif g2[2] > rcov then
                runion, rcov = runion + (g2[2] - rcov), g2[2]
            end
        end
        d.ooo_union = d.ooo_union - runion
        ooo_compact(d)
        if d.ooo_head <= #d.ooo and d.ooo_union < 0 then ooo_recount(d) end
        -- held bytes delivered: the union of the held entries within [old rcv_nxt, new rcv_nxt).
        -- Normally that is everything above this packet's payload; when the sender collapsed the
        -- held data into the retransmission, the held copies still count (they waited).
        local cov, bytes, segs = nxt, 0, 0
        for i = 1, #rel do
            local h = rel[i]
            local s0 = h[1] > cov and h[1] or cov
            if h[2] > s0 then
                bytes = bytes + (h[2] - s0)
                segs = segs + 1
            end
            if h[2] > cov then cov = h[2] end
        end
        pkt.released = rel                 -- held entries delivered by this packet
        pkt.released_bytes = bytes
        pkt.released_segments = segs
        return
    end
    -- above the in-order point: held
    pkt.arrival = "held"
    local n = #ooo
    local maxe = d.ooo_maxe
    -- an entry from ooo_pool (ooo_compact) or a new one, eight array slots either way
    local pool = ooo_pool
    local pn = #pool
    local h
    if pn > 0 then
        h = pool[pn]
        pool[pn] = nil
        h[1], h[2], h[3], h[4], h[5] = ds, de, pkt.time, pkt.number, false   -- [5]: HOL's column index
    else
        h = { ds, de, pkt.time, pkt.number, false, nil, nil, nil }
    end
    if n < head or maxe == nil or ds > maxe then
        -- the first arrival above a new hole: what fills the hole is judged against it
        -- (fill_evidence): [6] its IP ID, [7] when the new data before it was sent, [8] its TSval
        local r, k = d.new_times, d.new_times_n
        h[6], h[7], h[8] = core.read_ip_id(pkt, d), k >= 2 and r[(k - 2) % 8 + 1] or false, pkt.tsval or false
    else
        h[6], h[7], h[8] = nil, nil, nil
    end
    if n < head or maxe == nil or ds >= maxe then
        -- common case: above everything held so far
        pkt.hole = (ds - nxt) - d.ooo_union
        ooo[n + 1] = h
        d.ooo_union = d.ooo_union + (de - ds)
        d.ooo_maxe = de
    else
        local missing, cov = 0, nxt
        for i = head, n do
            local g = ooo[i]
            if g[1] >= ds then break end
            if g[1] > cov then missing = missing + (g[1] - cov) end
            if g[2] > cov then cov = g[2] end
        end
        if ds > cov then missing = missing + (ds - cov) end
        pkt.hole = missing
        local i = n
        while i >= head and ooo[i][1] > ds do i = i - 1 end
        table.insert(ooo, i + 1, h)
        ooo_recount(d)
    end
    pkt.held_entry = h                 -- (HOL keeps its column index in h[5])
end

-- the receiver's cumulative ACK says everything below `ack` was delivered (capture missed data)
local function rcv_catch_up(d, ack)
    if d.rcv_nxt == nil or ack <= d.rcv_nxt then return end
    d.rcv_nxt = ack
    local ooo, head = d.ooo, d.ooo_head
    local g = ooo[head]
    if g == nil then return end
    while g ~= nil and g[1] < ack and g[2] <= ack do
        head = head + 1
        g = ooo[head]
    end
    d.ooo_head = head
    ooo_compact(d)
    ooo_recount(d)
end

---------------------------------------------------------------------------------------------------
-- ACK / SACK processing (pkt acknowledges the data of direction d)

-- d.sacked is sorted and disjoint, live from d.sacked_head (consumed entries stay until
-- compaction: the array never has holes, so table.insert stays valid).

-- first index i >= lo with sb[i].e > x
local function sb_find(sb, x, lo)
    local hi = #sb + 1
    while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        if sb[mid][2] <= x then lo = mid + 1 else hi = mid end
    end
    return lo
end

-- d.sack_cov: the SACKed ranges merged, {{s, e}, ...} sorted (few: one per hole). New SACK
-- coverage is found against it (a dupACK's block usually grows by one segment at the top), so a
-- growing block costs O(holes), not O(entries); each newly covered gap becomes one scoreboard
-- entry with the time it was first SACKed.
local function sb_insert(d, s, e, t, f)
    local sb = d.sacked
    local n = #sb
    local g = { s, e, t, f }
    if n < d.sacked_head or sb[n][1] < s then
        sb[n + 1] = g
    else
        table.insert(sb, sb_find(sb, s, d.sacked_head), g)
    end
end

local function sack_add(d, l, r, t, f)
    local cov = d.sack_cov
    local n = #cov
    local added = 0
    local pos = l
    local i = 1
    while i <= n and cov[i][2] < pos do i = i + 1 end
    local first = i
    while pos < r do
        local c = cov[i]
        if c == nil or c[1] >= r then
            sb_insert(d, pos, r, t, f)
            added = added + (r - pos)
            break
        end
        if c[1] > pos then
            sb_insert(d, pos, c[1], t, f)
            added = added + (c[1] - pos)
        end
        if c[2] > pos then pos = c[2] end
        i = i + 1
    end
    -- merge [l, r) into cov: intervals first .. last touch it (adjacent ones merge too)
    local last = first - 1
    while cov[last + 1] ~= nil and cov[last + 1][1] <= r do last = last + 1 end
    if last < first then
        table.insert(cov, first, { l, r })
    else
        local c = cov[first]
        if l < c[1] then c[1] = l end
        local e = cov[last][2]
        if r > e then e = r end
        c[2] = e
        for _ = first + 1, last do table.remove(cov, first + 1) end
    end
    d.sacked_bytes = d.sacked_bytes + added
    return added
end

-- the cumulative ACK moved to `ack`: drop merged coverage below it
local function sack_cov_trim(d, ack)
    local cov = d.sack_cov
    while cov[1] ~= nil and cov[1][2] <= ack do table.remove(cov, 1) end
    if cov[1] ~= nil and cov[1][1] < ack then cov[1][1] = ack end
end

-- pkt.sack_released.segments on demand (see on_ack): the segments segs[_h0 .. _h1 - 1] just
-- covered by the cumulative ACK that were SACKed (held at the receiver) before it covered them.
-- Read in the same packet: those entries lie below segs_head, nothing changes them any more
-- (segs_compact moves them, but only at the next ACK that advances).
local SR_LAZY = {}
function SR_LAZY.__index(sr, k)
    if k ~= "segments" then return nil end
    local segs, ents = sr._segs, sr.entries
    local held, j = {}, 1
    if segs ~= nil then
        for i = sr._h0, sr._h1 - 1 do
            local g = segs[i]
            while ents[j] ~= nil and ents[j][2] <= g[1] do j = j + 1 end
            local en = ents[j]
            if en ~= nil and en[1] < g[2] then
                held[#held + 1] = { f = g[7], first_f = g[4], s = g[1], e = g[2], send_t = g[3], sack_t = en[3], sack_f = en[4] }
            end
        end
    end
    rawset(sr, "segments", held)
    return held
end

-- Is pkt (an ACK at snd_una, no payload, no SYN/FIN/RST, data outstanding) a duplicate ACK for d's
-- data? RFC 5681: it also advertises the same window as the peer's previous packet (a window update
-- of a slow reader is not a report of loss), unless it carries SACK blocks (RFC 6675 counts those).
-- And causality: the k-th duplicate ACK reports the k-th segment above the hole, which must have
-- been seen at least half the receiver's minimum turn before it (an ACK sent before the segment it
-- would report was sent reports something else).
--
-- On a connection that SACKs (both SYNs offered it, or SACK blocks were seen) only an ACK with SACK
-- blocks that say more than the previous ACK's is one (RFC 6675's DupAck; RFC 2018: a SACK receiver
-- puts SACK blocks in every ACK while out-of-order data is held): an ACK without them, or with the
-- same ones, reports no new segment above a hole. A capture copy of an ACK is such an ACK: with
-- TCP timestamps its IP ID is not read (see ack_copy), and copies of ACKs 3 us later made
-- small-rcvbuf-16k-client report 15 holes. `news`: its blocks differ from the previous ACK's.
local function is_dupack(d, pkt, ack, t, news)
    local acker = d.peer
    if (d.sack_seen or (d.sack_perm and acker.sack_perm)) and not news then return false end
    local w = pkt.win_raw
    if w and acker.win_raw ~= nil and w ~= acker.win_raw and not pkt.sack then return false end
    local segs = d.segs
    -- the segment at the hole, or (never seen) the first above it: ack is snd_una, and segs_head
    -- is the first segment ending above it (what seg_find(d, ack) would find, without the search)
    local i = d.segs_head
    local g = segs[i]
    if g ~= nil and g[1] <= ack then i = i + 1 end
    g = segs[i + d.dupacks]
    if g == nil then return false end
    return g[3] <= t - (acker.turn_min or 0) * 0.5
end

-- Is pkt (a pure ACK of d's data) the previous pure ACK of d's data recorded twice (a network or
-- capture duplicate)? The same ACK number, window, TSval, SACK blocks (their number and the first
-- one, see sack_news) and IP ID: a
-- resent ACK has a new one (a frame copied a few microseconds later looked like a duplicate ACK,
-- i.e. a hole: small-rcvbuf-clamp-nots-client with copies, lab/rewrite.py edit --copy). Only where
-- the IP IDs are read, the directions without TCP timestamps (tcpstall.lua); elsewhere, with IP ID
-- 0 and in IPv6 nothing tells a copy from a resent ACK, and it counts as sent.
local function ack_copy(d, pkt, ack, news)
    local id, id0 = pkt.ip_id, d.pa_id
    if not id or id ~= id0 or id == 0 or d.pa_ack ~= ack or d.pa_win ~= pkt.win_raw or d.pa_tsv ~= pkt.tsval then
        return false
    end
    if pkt.sack then return not news end
    return d.pa_sn == 0
end

-- do pkt's SACK blocks differ from the previous pure ACK's (of d's data)? (false without blocks)
-- The first block holds the segment that arrived last (RFC 2018), so a new one changes it, or the
-- number of blocks; a D-SACK is a new first block.
local function sack_news(d, pkt)
    local sack = pkt.sack
    if not sack then return false end
    return #sack ~= d.pa_sn or sack[1] ~= d.pa_s1 or sack[2] ~= d.pa_sl
end

local function remember_ack(d, pkt, ack)
    local sack = pkt.sack
    local n = sack and #sack or 0
    d.pa_ack, d.pa_win, d.pa_tsv, d.pa_id, d.pa_sn = ack, pkt.win_raw, pkt.tsval, pkt.ip_id, n
    d.pa_s1, d.pa_sl = n > 0 and sack[1], n > 0 and sack[2]       -- the first block
end

local function on_ack(d, pkt, ack)
    local t, f = pkt.time, pkt.number
    local news = false
    if pkt.len == 0 and not pkt.syn and not pkt.fin and not pkt.rst then
        news = sack_news(d, pkt)
        if ack_copy(d, pkt, ack, news) then
            pkt.duplicate = true               -- (neither a duplicate ACK nor news)
            return
        end
        remember_ack(d, pkt, ack)
    end
    local una = d.snd_una
    d.ack_t, d.ack_f = t, f
    if una == nil then
        -- the first ACK: when it covers this side's SYN (the handshake), a turn sample of the ACKing
        -- host; the minimum only (the smoothed estimate stays the data -> ACK one). Without TCP
        -- timestamps this is the only sample of the sender's turn at a receiver-side capture.
        local g = d.segs[d.segs_head]
        if g ~= nil and g[1] == d.isn and g[2] <= ack and g[5] == 1 then turn_sample(d.peer, t - g[3], false) end
        d.snd_una = ack
        d.una_t = t
    elseif ack > una then
        d.snd_una = ack
        d.una_t = t
        d.dupacks = 0
        d.dup_first_t, d.dup_first_f = nil, nil
        -- SACKed data now covered by the cumulative ACK: held at the receiver until now
        if d.sack_cov[1] ~= nil then sack_cov_trim(d, ack) end
        local sb, sh = d.sacked, d.sacked_head
        if sb[sh] ~= nil and sb[sh][1] < ack then
            local bytes, first_t, first_f, ents = 0, huge, nil, {}
            while sb[sh] ~= nil and sb[sh][1] < ack do
                local g = sb[sh]
                local top = g[2]
                if top > ack then top = ack end
                bytes = bytes + (top - g[1])
                if g[3] < first_t then first_t, first_f = g[3], g[4] end
                if g[2] > ack then
                    ents[#ents + 1] = { g[1], top, g[3], g[4] }
                    g[1] = ack
                    break
                end
                -- wholly covered: the entry itself is the record (below sacked_head nothing
                -- reads or changes it any more), no copy
                ents[#ents + 1] = g
                sh = sh + 1
            end
            if sb[sh] == nil or (sh > 64 and sh > #sb / 2) then
                shift_down(sb, sh)
                d.sacked_head = 1
            else
                d.sacked_head = sh
            end
            d.sacked_bytes = d.sacked_bytes - bytes
            if d.sacked_bytes < 0 then d.sacked_bytes = 0 end
            pkt.sack_released = { bytes = bytes, first_t = first_t, first_f = first_f, entries = ents, from = una, to = ack }
        end
        local sr = pkt.sack_released
        if not sr and not d.sack_seen and d.dup_times ~= nil and d.dup_times[1] ~= nil then
            -- no SACK on this connection: each duplicate ACK reported one segment held above the
            -- hole; take the segments sent after the missing one, one per dupACK
            local segs, h = d.segs, d.segs_head
            local held, bytes, k = {}, 0, 1
            while segs[h] ~= nil and segs[h][1] <= una do h = h + 1 end
            while segs[h] ~= nil and segs[h][2] <= ack and d.dup_times[k] ~= nil do
                local g = segs[h]
                held[#held + 1] = { f = g[7], first_f = g[4], s = g[1], e = g[2], send_t = g[3],
                                    sack_t = d.dup_times[k], sack_f = d.dup_frames[k] }
                bytes = bytes + (g[2] - g[1])
                k = k + 1
                h = h + 1
            end
            if held[1] ~= nil then
                sr = { bytes = bytes, first_t = d.dup_times[1], first_f = d.dup_frames[1], entries = {},
                       segments = held, from = una, to = ack, dupack_based = true }
                pkt.sack_released = sr
            end
        end
        d.dup_times, d.dup_frames = nil, nil
        -- RTT sample (Karn: only segments sent once), then drop acknowledged segments
        segs_compact(d)
        local segs = d.segs
        local h0 = d.segs_head
        local h = h0
        local sample_seg = nil
        while segs[h] ~= nil and segs[h][2] <= ack do
            local g = segs[h]
            if g[5] == 1 then sample_seg = g else sample_seg = nil end
            h = h + 1
        end
        if sr then
            -- what filled the hole at the old cumulative ACK: the segment that carried it, when the
            -- capture saw it sent (again)
            local g = segs[h0]
            if g == nil or g[1] > una then
                sr.fill = "not_captured"
            elseif g[5] >= 2 then
                sr.fill, sr.fill_f, sr.fill_t, sr.fill_s, sr.fill_e = "retransmission", g[7], g[6], g[1], g[2]
            else
                -- sent once: it arrived late, or the capture missed its retransmission. A
                -- retransmission sent on the first SACK/dupACK of the hole is ACKed one round trip
                -- later at the earliest.
                local rtt = M.rtt_min(d)
                sr.fill = (rtt ~= nil and t - sr.first_t < 0.9 * rtt) and "late_original" or "cannot_tell"
            end
        end
        if sr and not sr.dupack_based then
            -- sr.segments (the acked segments that were SACKed before) is built on first read:
            -- a receiver-side capture never reads it (the receiver view already has the release)
            sr._segs, sr._h0, sr._h1 = segs, h0, h
            setmetatable(sr, SR_LAZY)
        end
        d.segs_head = h
        -- everything acknowledged: drop the records at the next packet (this one may still read
        -- them: SR_LAZY), also when this ACK is the connection's last
        if h > #segs and h > 1 then compact_next[#compact_next + 1] = d end
        if sample_seg ~= nil then turn_sample(d.peer, t - sample_seg[3], true) end
    elseif ack == una and pkt.len == 0 and not pkt.syn and not pkt.fin and not pkt.rst
        and d.high ~= nil and d.high > ack and is_dupack(d, pkt, ack, t, news) then
        d.dupacks = d.dupacks + 1
        if d.dupacks == 1 then
            d.dup_first_t, d.dup_first_f = t, f
            d.dup_times, d.dup_frames = {}, {}
        end
        if d.dup_times ~= nil and #d.dup_times < 256 then
            d.dup_times[#d.dup_times + 1] = t
            d.dup_frames[#d.dup_frames + 1] = f
        end
    end
    if d.high ~= nil and ack > d.high then d.high = ack end
    if d.ref == nil or ack > d.ref then d.ref = ack end
    rcv_catch_up(d, ack)
end

-- blocks: flat absolute edges { l1, r1, l2, r2, ... }
local function on_sack(d, pkt, blocks)
    d.sack_seen = true
    local prev, pn = d.psack, d.psack_n   -- the previous SACK option's blocks
    local una = d.snd_una or -huge
    local t, f = pkt.time, pkt.number
    local n = #blocks
    for i = 1, n - 1, 2 do
        local l, r = blocks[i], blocks[i + 1]
        if r <= una then
            pkt.dsack, pkt.dsack_l, pkt.dsack_r = true, l, r
        elseif i == 1 and n >= 4 and l >= blocks[3] and r <= blocks[4] then
            pkt.dsack, pkt.dsack_l, pkt.dsack_r = true, l, r
        else
            -- a receiver repeats its older blocks in every SACK option: a block the previous
            -- option already had is covered (coverage and scoreboard keep it until the cumulative
            -- ACK passes it), adding it again would add nothing
            local seen = false
            for j = 1, pn - 1, 2 do
                if prev[j] == l and prev[j + 1] == r then seen = true break end
            end
            if not seen then
                if l < una then l = una end
                if r > l then sack_add(d, l, r, t, f) end
            end
        end
    end
    for i = 1, n do prev[i] = blocks[i] end
    d.psack_n = n
end

---------------------------------------------------------------------------------------------------
-- timestamps: first-seen time of each TSval, echo gives a turn sample for the echoing side

-- ring of the last 64 distinct TSvals of d with their first-seen times: tsq_v / tsq_t indexed by
-- counter % 64 + 1, live counters [tsq_lo, tsq_hi)
local function ts_record(d, tsval, t)
    local hi = d.tsq_hi
    local qv = d.tsq_v
    if hi > d.tsq_lo and qv[(hi - 1) % 64 + 1] == tsval then return end
    local k = hi % 64 + 1
    qv[k], d.tsq_t[k] = tsval, t
    hi = hi + 1
    d.tsq_hi = hi
    if hi - d.tsq_lo > 64 then d.tsq_lo = hi - 64 end
end

-- `echoer` echoed tsecr = v of direction d: the first echo of a TSval gives a turn sample
local function ts_echo(d, echoer, v, t)
    local lo, hi = d.tsq_lo, d.tsq_hi
    local qv = d.tsq_v
    while lo < hi do
        local x = qv[lo % 64 + 1]
        if x == v then
            turn_sample(echoer, t - d.tsq_t[lo % 64 + 1], false)
            lo = lo + 1
            break
        end
        local dv = (x - v) % TWO32
        if dv < HALF then break end        -- x is after v: stop
        lo = lo + 1
    end
    d.tsq_lo = lo
end

---------------------------------------------------------------------------------------------------
-- what the first copy of data below the highest sequence number seen is

-- the held entry that opened the hole [ds, ...) sits in: the first live held entry ending above ds,
-- or the nearest one above it that opened a hole (has [6]); nil when nothing is held above ds
local function hole_opener(d, ds)
    local ooo = d.ooo
    local lo = sb_find(ooo, ds, d.ooo_head)      -- (the same sorted {s, e, ...} arrays as the scoreboard)
    local first = ooo[lo]
    if first == nil then return nil, nil end
    for i = lo, lo + 8 do
        local g = ooo[i]
        if g == nil then break end
        if g[6] ~= nil then return g, (i > d.ooo_head and ooo[i - 1][2]) or d.rcv_nxt end
    end
    return first, (lo > d.ooo_head and ooo[lo - 1][2]) or d.rcv_nxt
end

-- The first copy this capture sees of data [ds, de) below the highest sequence number already seen
-- (a receiver-side capture: the original was lost before the capture point, or it arrives late):
-- "retransmission", "late_original" or "cannot_tell", and the evidence (a word, or for cannot_tell
-- what was missing, in words). In order:
--   data the receiver already has (below the in-order point): sent again;
--   TSvals against the held arrival that opened the hole: a retransmission is sent after it (the
--     loss evidence needs it to arrive), a late original before it. (Not against the highest
--     segment seen: a reordered path can deliver a much later segment first.) A TSval newer than
--     the highest segment's is resent too;
--   IP IDs (Linux: one counter per socket, +1 per packet; Windows: one per host), against the same
--     held arrival, when the difference is small enough to be such a counter;
--   timing: one round trip or more after the hole opened, the sender could react to the receiver's
--     dupACKs/SACKs (a retransmission); sooner than that, and sooner than its retransmission timer
--     (rto_min after the data sent before the hole) could fire, it was not sent again.
local function fill_evidence(d, pkt, ds, de, tv)
    local nxt = d.rcv_nxt
    if nxt ~= nil and ds < nxt then return "retransmission", "delivered" end
    local ent, below = hole_opener(d, ds)
    if tv ~= nil then
        local ref = ent and ent[8]
        if ref and tv ~= ref then
            if (tv - ref) % TWO32 < HALF then return "retransmission", "tsval" end
            return "late_original", "tsval"
        end
        local hv = d.high_tsval
        if hv ~= nil and tv ~= hv and (tv - hv) % TWO32 < HALF then return "retransmission", "tsval" end
    end
    local why = tv == nil and "no timestamps" or "same TSval tick"
    if ent == nil then return "cannot_tell", why end
    local idh = ent[6]
    if idh then
        local idf = core.read_ip_id(pkt, d)
        if idf then
            local seg = pkt.len > 0 and pkt.len or 1
            local hole_segs = math.ceil((ent[1] - (below or ds)) / seg)
            if hole_segs < 1 then hole_segs = 1 end
            local after, before = (idf - idh) % 65536, (idh - idf) % 65536
            if after >= 1 and after <= (pkt.number - ent[4]) + hole_segs + 8 then return "retransmission", "ip_id" end
            if before >= 1 and before <= hole_segs + 8 then return "late_original", "ip_id" end
        end
        why = why .. ", IP IDs inconclusive"
    else
        why = why .. ", no IP IDs"
    end
    local rtt = M.path_rtt(d)
    if rtt == nil then return "cannot_tell", why .. ", RTT unknown" end
    local since = pkt.time - ent[3]
    if since >= rtt then return "retransmission", "timing" end
    local prev_t = ent[7]
    if since < 0.9 * rtt and prev_t and pkt.time - prev_t + rtt < core.settings.rto_min_ms / 1000 then
        return "late_original", "timing"
    end
    return "cannot_tell", why .. ", within one RTT: a timer cannot be ruled out"
end

---------------------------------------------------------------------------------------------------
-- retransmission trigger (rto / fast / tlp / rack / unknown)

local function classify(d, pkt, rtx, last_send_t)
    local s = core.settings
    local rto_min = s.rto_min_ms / 1000
    local t = pkt.time
    if pkt.syn then
        -- a SYN-ACK resent right after the peer's retransmitted SYN answers that SYN; only an
        -- interval the SYN timer can make (>= 0.8 x rto_min) is the timer
        if rtx.prev_t ~= nil and t - rtx.prev_t < rto_min * 0.8 then
            return "unknown", "resent soon after the previous one: an answer to the peer's retransmitted SYN, not a timer"
        end
        return "rto", "SYN retransmission timer"
    end
    local srtt = M.srtt(d)
    local ta, turn = M.trigger_ack(d, t)
    -- react: how long after the sender could have seen the triggering ACK it sent this
    local react = ta and (t - ta[1] - turn) or huge
    if react < 0 then react = 0 end
    local tol = 0.004 + turn * 0.25
    local mss = d.mss or d.peer.mss or 1460
    if mss <= 0 then mss = 1460 end
    local sacked_b = ta and ta[4] or 0
    local sacked_segs = math.max(ta and ta[5] or 0, math.floor(sacked_b / mss))
    local dup = ta and ta[3] or 0
    rtx.ta_t, rtx.ta_f, rtx.ta_dup, rtx.ta_sacked_n = ta and ta[1], ta and ta[2], dup, sacked_segs
    rtx.dupacks = dup
    local loss = dup >= 3 or sacked_segs >= 3
    local gap_send = last_send_t and (t - last_send_t) or nil
    -- A timer: most of rto_min since the previous transmission of this data or, when the capture
    -- never saw it (lost before a receiver-side capture point), since the first duplicate ACK (the
    -- receiver noticed the hole) or since the sender's last send. Only intervals the capture shows
    -- count: without the receiver's ACKs in the capture a few ms between transmissions is no timer.
    local min_timer = rto_min * 0.8
    local timer
    if rtx.prev_t ~= nil then
        timer = t - rtx.prev_t >= min_timer
    else
        timer = (d.dup_first_t ~= nil and t - d.dup_first_t >= min_timer)
            or (gap_send ~= nil and gap_send >= min_timer)
    end
    if rtx.n >= 2 then
        if loss and react <= tol and ta and rtx.prev_t and ta[1] > rtx.prev_t then
            return "rack", "retransmitted again right after new loss evidence"
        end
        if timer then
            if rtx.since_prev_ms ~= nil then
                return "rto", string.format("retransmission #%d, %.1f ms after the previous one (timer backoff)", rtx.n, rtx.since_prev_ms)
            end
            return "rto", string.format("retransmission #%d (timer backoff)", rtx.n)
        end
        return "unknown", nil
    end
    if loss and react <= tol then
        if dup > 0 then
            return "fast", string.format("%d dupACKs at the ACK that triggered it", dup)
        end
        return "fast", "later data SACKed at the ACK that triggered it"
    end
    if (sacked_b > 0 or dup >= 1) and react <= tol + math.max((srtt or 0) * 0.5, 0.004) then
        return "rack", string.format("later data SACKed (%d dupACKs), sent right after that ACK reached the sender", dup)
    end
    local is_tail = d.high ~= nil and pkt.nxt >= d.high
    if is_tail and d.sacked_bytes == 0 and dup == 0 and srtt ~= nil and gap_send ~= nil then
        if gap_send <= 2 * srtt + rto_min + 0.02 and gap_send >= 1.5 * srtt then
            return "tlp", "tail probe: the last data sent was not ACKed within about 2 SRTT"
        end
    end
    if timer then
        if rtx.since_prev_ms ~= nil then
            return "rto", string.format("%.1f ms after the previous transmission (retransmission timer)", rtx.since_prev_ms)
        end
        return "rto", "retransmission timer: no fast-retransmit evidence (the original is not in the capture)"
    end
    return "unknown", nil
end

---------------------------------------------------------------------------------------------------
-- main entry: one packet, first pass only

function M.ingest(pkt, fwd, rev)
    local t = pkt.time
    if compact_next[1] ~= nil then compact_pending() end
    if fwd.first_t == nil then fwd.first_t = t end
    fwd.last_t = t

    -- sequence numbers (this direction's space)
    local syn, len, tsval = pkt.syn, pkt.len, pkt.tsval or nil
    local seq_raw = pkt.seq_raw
    local s, ds, de, nxt
    if seq_raw then
        local ref = fwd.ref
        if ref == nil then ref = seq_raw fwd.ref = ref end
        -- unwrap (inline seq.unwrap): absolute value closest to ref
        local dd = (seq_raw - ref) % TWO32
        if dd >= HALF then dd = dd - TWO32 end
        s = ref + dd
        ds = syn and s + 1 or s
        de = ds + len
        nxt = pkt.fin and de + 1 or de
        if nxt > fwd.ref then fwd.ref = nxt end
    else
        -- a pure ACK (build_packet does not read its sequence number): occupies no sequence space
        s = fwd.ref or 0
        ds, de, nxt = s, s, s
    end
    pkt.seq, pkt.ds, pkt.de, pkt.nxt = s, ds, de, nxt

    if syn then
        fwd.isn = s
        if pkt.wscale_opt then fwd.wscale = pkt.wscale_opt end
        if pkt.mss_opt then fwd.mss = pkt.mss_opt end
        fwd.sack_perm = pkt.sack_perm_opt
    end

    -- acknowledgement (the peer's space)
    if pkt.ackf then
        local rref = rev.ref
        if rref == nil then rref = pkt.ack_raw rev.ref = rref end
        local da = (pkt.ack_raw - rref) % TWO32
        if da >= HALF then da = da - TWO32 end
        pkt.ack = rref + da
    end

    -- TS echo before anything else changes
    if tsval ~= nil then
        local tsecr = pkt.tsecr
        if tsecr and tsecr ~= 0 then ts_echo(rev, fwd, tsecr, t) end
        ts_record(fwd, tsval, t)
    end

    -- sender view
    local last_send_t = fwd.last_send_t
    if nxt > s then
        local high_before = fwd.high
        -- payload at or below the highest sequence number already sent
        local old_payload = len > 0 and high_before ~= nil and ds < high_before
        local rtx = on_send(fwd, pkt, s, nxt, tsval)
        if rtx == nil and old_payload and not pkt.duplicate then
            -- first time this capture sees these bytes, but data above them was seen before:
            -- a retransmission whose original was lost before this capture point, or a late
            -- original (reordering). (Wireshark's own flag is not used: it calls a segment
            -- out-of-order when it comes within the handshake RTT, or 3 ms, of the highest one,
            -- which a filler in a bulk flow always does.)
            local kind, by = fill_evidence(fwd, pkt, ds, de, tsval)
            if kind == "retransmission" then
                rtx = { first_t = nil, prev_t = nil, n = 1, unseen = true, by = by }
            else
                pkt.fill, pkt.fill_by = kind, by     -- HOL names what filled the hole
            end
        end
        if high_before == nil or nxt > high_before then fwd.high_tsval = tsval end
        if rtx ~= nil then
            if rtx.n < 1 then rtx.n = 1 end
            fwd.retrans = fwd.retrans + 1
            pkt.rtx = rtx
            rtx.f, rtx.t, rtx.s, rtx.e = pkt.number, t, ds, de
            fwd.last_rtx = rtx
            if rtx.first_t then rtx.since_first_ms = core.ms(t - rtx.first_t) end
            if rtx.prev_t then rtx.since_prev_ms = core.ms(t - rtx.prev_t) end
            rtx.trigger, rtx.why = classify(fwd, pkt, rtx, last_send_t)
        elseif len > 0 then
            local r = fwd.new_times
            local k = fwd.new_times_n % 8 + 1
            r[k] = t
            fwd.new_times_n = fwd.new_times_n + 1
            fwd.last_new_t = t
        end
        fwd.last_send_t, fwd.last_send_f = t, pkt.number
    end

    -- receiver view of this direction's data (a duplicate is not data: its original arrived)
    if len > 0 then
        fwd.data_seen = true
        if not pkt.duplicate then on_arrival(fwd, pkt, ds, de) end
    elseif pkt.fin then
        fwd.data_seen = true
    end

    -- ACK and SACK for the peer's data
    local ack = pkt.ack
    if ack then
        on_ack(rev, pkt, ack)
        local sack = pkt.sack
        if sack and not pkt.duplicate then
            local blocks = sack_abs_scratch   -- valid during this packet only, like pkt
            local off = rev.ref
            local n = #sack
            for i = 1, n do
                local dv = (sack[i] - off) % TWO32
                if dv >= HALF then dv = dv - TWO32 end
                blocks[i] = off + dv
            end
            for i = n + 1, #blocks do blocks[i] = nil end
            on_sack(rev, pkt, blocks)
        end
        -- ACK history of rev's data (what the sender knew after each ACK), newest last
        local hist = rev.ackhist
        local k = rev.ackhist_n % 16 + 1
        local e = hist[k]
        if e == nil then e = { false, false, false, false, false } hist[k] = e end
        e[1], e[2], e[3], e[4], e[5] = t, pkt.number, rev.dupacks, rev.sacked_bytes, #rev.sacked - rev.sacked_head + 1
        rev.ackhist_n = rev.ackhist_n + 1
    end

    -- window advertised by this side
    if pkt.win_raw then
        fwd.win_raw = pkt.win_raw
        local sc = pkt.win_scale
        if pkt.syn then sc = 0 end            -- the window in SYNs is never scaled
        if sc and sc >= 0 then
            fwd.win_scale = sc
            fwd.win = pkt.win_raw * (2 ^ sc)
        elseif sc == -2 then
            fwd.win_scale = 0
            fwd.win = pkt.win_raw
        else
            fwd.win = nil                     -- scale unknown (no handshake): rwnd infers it
        end
    end
end

-- How many segments of d starting above `x` were first sent after t0 and before t1 (counted up to
-- `max`): the later segments that could report the loss of the data at x sent at t0. Called rarely
-- (on retransmissions).
function M.sent_after(d, x, t0, t1, max)
    local segs = d.segs
    local n = 0
    for i = seg_find(d, x), #segs do
        local g = segs[i]
        if g[3] >= t1 then break end
        if g[1] > x and g[3] > t0 then
            n = n + 1
            if n >= max then break end
        end
    end
    return n
end

-- Typical interval between new-data sends of direction d (seconds): the median of the last <= 7
-- gaps between new-data packets. (Not the average: at a receiver-side capture the lost segment is
-- missing, and the one doubled gap would stretch the average by a seventh.) Called rarely (on
-- retransmissions).
function M.send_interval(d)
    local n = d.new_times_n
    if n < 2 then return nil end
    local m = n < 8 and n or 8
    local r = d.new_times
    local gaps = {}
    for i = n - m + 1, n - 1 do
        gaps[#gaps + 1] = r[i % 8 + 1] - r[(i - 1) % 8 + 1]
    end
    table.sort(gaps)
    local k = #gaps
    if k % 2 == 1 then return gaps[(k + 1) / 2] end
    return (gaps[k / 2] + gaps[k / 2 + 1]) / 2
end

-- What the stream records hold (`-z tcpstall,memory`): over the directions of `state`, the segment
-- records kept (`segments`) and those still unacknowledged (`outstanding`), the held entries kept,
-- and the records waiting in the shared pools.
function M.memory(state)
    compact_pending()                    -- (the capture has ended: no packet reads them any more)
    local m = { streams = 0, segments = 0, outstanding = 0, held = 0, pooled = #seg_pool + #ooo_pool }
    for _, st in pairs(state.streams) do
        m.streams = m.streams + 1
        for _, d in pairs(st.dirs) do
            m.segments = m.segments + #d.segs
            m.outstanding = m.outstanding + (#d.segs - d.segs_head + 1)
            m.held = m.held + #d.ooo
        end
    end
    return m
end

return M
