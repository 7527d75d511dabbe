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

local M = {}

local huge = math.huge

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
        -- sender view (this direction's data as sent)
        high = nil,            -- highest sequence sent (absolute, exclusive end)
        first_t = nil,         -- time of the first packet of this direction
        last_t = nil,          -- time of the last packet of this direction
        last_send_t = nil,     -- last transmission carrying data/SYN/FIN (new or retransmitted)
        last_send_f = nil,
        last_new_t = nil,      -- last transmission of new data
        new_times = {},        -- ring of the last 8 new-data send times (send cadence)
        new_times_n = 0,
        segs = {},             -- outstanding segments, sorted by s: {s,e,t,f,tx,lt,lf}
        segs_head = 1,
        retrans = 0,           -- retransmissions seen in this direction
        -- what the peer told us about this direction's data (ACKs from the peer)
        snd_una = nil,         -- cumulative ACK (absolute)
        ack_t = nil, ack_f = nil,   -- time/frame of the last ACK from the peer (any, incl. dup)
        una_t = nil,           -- time the cumulative ACK last advanced
        dupacks = 0,           -- consecutive duplicate ACKs at snd_una
        dup_first_t = nil, dup_first_f = nil,
        sacked = {},           -- SACK scoreboard above snd_una: disjoint, sorted {s,e,t,f}
        sacked_bytes = 0,
        -- receiver view (this direction's data as it arrives at the capture point)
        rcv_nxt = nil,         -- in-order delivery point (absolute)
        ooo = {},              -- held (out-of-order) arrivals above rcv_nxt: {s,e,t,f}, sorted by s
        -- window advertised BY this direction (i.e. for the peer's data)
        win_raw = nil, win_scale = nil, win = nil,
        -- RTT: `turn` = round trip capture point <-> this host (see README)
        turn_min = nil, turn_s = nil, turn_n = 0,
        tsq = {}, tsq_head = 1, -- first-seen times of this side's TSvals {v, t}
        -- free slot for analyzers: d.a.hol, d.a.rwnd, d.a.retries ...
        ackhist = {}, ackhist_n = 0,  -- ring of the last 16 ACKs from the peer {t, f, dup, sacked, sacked_n}
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
        if e.t <= t - turn + 0.001 then return e, turn end
    end
    return nil, turn
end

function M.lookup(state, pkt)
    local st = state.streams[pkt.stream]
    local k = pkt.src .. ":" .. pkt.sport
    if st == nil then
        local d1 = new_dir(pkt.stream, pkt.src, pkt.sport, pkt.dst, pkt.dport)
        local d2 = new_dir(pkt.stream, pkt.dst, pkt.dport, pkt.src, pkt.sport)
        d1.peer, d2.peer = d2, d1
        st = { id = pkt.stream, first_t = pkt.time, first_f = pkt.number, dirs = { [d1.key] = d1, [d2.key] = d2 }, a = {} }
        st.client = d1  -- first direction seen (the SYN sender when the handshake is captured)
        state.streams[pkt.stream] = st
        state.stream_order[#state.stream_order + 1] = pkt.stream
    end
    local fwd = st.dirs[k]
    if fwd == nil then return nil end   -- tcp.stream reused by other endpoints: ignore
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

-- Minimum RTT of the connection (seconds, or nil).
function M.rtt_min(d)
    local a, b = d.turn_min, d.peer.turn_min
    if a == nil and b == nil then return nil end
    return (a or 0) + (b or 0)
end

---------------------------------------------------------------------------------------------------
-- segments (sender view)

-- first index i >= head with segs[i].e > x (binary search; segs sorted by s, disjoint)
local function seg_find(d, x)
    local segs = d.segs
    local lo, hi = d.segs_head, #segs + 1
    while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        if segs[mid].e <= x then lo = mid + 1 else hi = mid end
    end
    return lo
end

local function seg_insert(d, s, e, t, f)
    local segs = d.segs
    local n = #segs
    if n < d.segs_head or segs[n].e <= s then
        segs[n + 1] = { s = s, e = e, t = t, f = f, tx = 1, lt = t, lf = f }
        return
    end
    local i = seg_find(d, s)
    table.insert(segs, i, { s = s, e = e, t = t, f = f, tx = 1, lt = t, lf = f })
end

local function segs_compact(d)
    local h = d.segs_head
    if h > 256 and h > #d.segs / 2 then
        local n, segs = {}, d.segs
        for i = h, #segs do n[#n + 1] = segs[i] end
        d.segs, d.segs_head = n, 1
    end
end

-- Record a transmission [s, e) of direction d. Returns retransmission info or nil.
local function on_send(d, pkt, s, e)
    local t, f = pkt.time, pkt.number
    local high = d.high
    local info = nil
    if high == nil or s >= high then
        seg_insert(d, s, e, t, f)
    else
        -- (partly) below the highest sequence sent: walk overlapping known segments
        local segs = d.segs
        local i = seg_find(d, s)
        local covered_to = s
        local first_t, prev_t, prev_f, tx = nil, nil, nil, 0
        local gaps = {}
        local start_seen = segs[i] ~= nil and segs[i].s <= s
        while i <= #segs and segs[i].s < e do
            local g = segs[i]
            if g.s > covered_to then gaps[#gaps + 1] = { covered_to, g.s } end
            -- first send and previous transmission of the data at `s` (a collapsed retransmission
            -- also carries later, recently sent segments; when the capture never saw `s` sent,
            -- both stay unknown)
            if start_seen and first_t == nil then first_t, prev_t, prev_f = g.t, g.lt, g.lf end
            g.tx = g.tx + 1
            g.lt, g.lf = t, f
            if g.tx > tx then tx = g.tx end
            if g.e > covered_to then covered_to = g.e end
            i = i + 1
        end
        local top = e
        if high < top then top = high end
        if covered_to < top then gaps[#gaps + 1] = { covered_to, top } end
        for _, gp in ipairs(gaps) do
            if gp[2] > gp[1] and gp[1] >= (d.snd_una or -huge) then seg_insert(d, gp[1], gp[2], t, f) end
        end
        if tx > 0 then
            info = { first_t = first_t, prev_t = prev_t, prev_f = prev_f, n = tx - 1, unseen = not start_seen }
        end
        if e > high then seg_insert(d, high, e, t, f) end
    end
    if high == nil or e > high then
        d.high = e
    end
    return info
end

---------------------------------------------------------------------------------------------------
-- receiver view: in-order delivery point and held (out-of-order) arrivals

local function on_arrival(d, pkt, ds, de)
    if d.rcv_nxt == nil then
        d.rcv_nxt = ds
        if d.isn ~= nil and d.isn + 1 < ds then d.rcv_nxt = d.isn + 1 end
        if d.snd_una ~= nil and d.snd_una < d.rcv_nxt then d.rcv_nxt = d.snd_una end
    end
    local nxt = d.rcv_nxt
    if de <= nxt then
        pkt.arrival = "old"
        return
    end
    local ooo = d.ooo
    if ds <= nxt then
        pkt.arrival = "inorder"
        local new = de
        local rel = nil
        while ooo[1] ~= nil and ooo[1].s <= new do
            local h = table.remove(ooo, 1)
            if h.e > new then new = h.e end
            rel = rel or {}
            rel[#rel + 1] = h
        end
        d.rcv_nxt = new
        if rel ~= nil then
            -- held bytes delivered: the union of the held entries within [old rcv_nxt, new rcv_nxt).
            -- Normally that is everything above this packet's payload; when the sender collapsed the
            -- held data into the retransmission, the held copies still count (they waited).
            local cov, bytes, segs = nxt, 0, 0
            for i = 1, #rel do
                local h = rel[i]
                local s0 = h.s > cov and h.s or cov
                if h.e > s0 then
                    bytes = bytes + (h.e - s0)
                    segs = segs + 1
                    h.contrib = true
                end
                if h.e > cov then cov = h.e end
            end
            pkt.released = rel                 -- held entries delivered by this packet
            pkt.released_bytes = bytes
            pkt.released_segments = segs
        end
        return
    end
    -- above the in-order point: held
    pkt.arrival = "held"
    local missing, cov = 0, nxt
    for i = 1, #ooo do
        local g = ooo[i]
        if g.s >= ds then break end
        if g.s > cov then missing = missing + (g.s - cov) end
        if g.e > cov then cov = g.e end
    end
    if ds > cov then missing = missing + (ds - cov) end
    pkt.hole = missing
    local h = { s = ds, e = de, t = pkt.time, f = pkt.number }
    local n = #ooo
    if n == 0 or ooo[n].s <= ds then
        ooo[n + 1] = h
    else
        local i = n
        while i >= 1 and ooo[i].s > ds do i = i - 1 end
        table.insert(ooo, i + 1, h)
    end
    pkt.held_entry = h
end

-- the receiver's cumulative ACK says everything below `ack` was delivered (capture missed data)
local function rcv_catch_up(d, ack)
    if d.rcv_nxt == nil or ack <= d.rcv_nxt then return end
    d.rcv_nxt = ack
    local ooo = d.ooo
    while ooo[1] ~= nil and ooo[1].s < ack do
        local h = ooo[1]
        if h.e > ack then break end
        table.remove(ooo, 1)
        h.dropped = true
    end
end

---------------------------------------------------------------------------------------------------
-- ACK / SACK processing (pkt acknowledges the data of direction d)

-- first index i with sb[i].e > x
local function sb_find(sb, x)
    local lo, hi = 1, #sb + 1
    while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        if sb[mid].e <= x then lo = mid + 1 else hi = mid end
    end
    return lo
end

local function sack_add(d, l, r, t, f)
    local sb = d.sacked
    local i = sb_find(sb, l)
    local pos = l
    local added = 0
    while pos < r do
        local g = sb[i]
        if g == nil or g.s >= r then
            table.insert(sb, i, { s = pos, e = r, t = t, f = f })
            added = added + (r - pos)
            break
        end
        if g.s > pos then
            table.insert(sb, i, { s = pos, e = g.s, t = t, f = f })
            added = added + (g.s - pos)
            i = i + 1
        end
        if g.e > pos then pos = g.e end
        i = i + 1
    end
    d.sacked_bytes = d.sacked_bytes + added
    return added
end

local function on_ack(d, pkt, ack)
    local t, f = pkt.time, pkt.number
    local una = d.snd_una
    d.ack_t, d.ack_f = t, f
    if una == nil then
        d.snd_una = ack
        d.una_t = t
    elseif ack > una then
        d.snd_una = ack
        d.una_t = t
        d.dupacks = 0
        d.dup_first_t, d.dup_first_f = nil, nil
        pkt.acked_bytes = ack - una
        -- SACKed data now covered by the cumulative ACK: held at the receiver until now
        local sb = d.sacked
        if sb[1] ~= nil and sb[1].s < ack then
            local bytes, first_t, first_f, ents = 0, huge, nil, {}
            while sb[1] ~= nil and sb[1].s < ack do
                local g = sb[1]
                local top = g.e
                if top > ack then top = ack end
                bytes = bytes + (top - g.s)
                if g.t < first_t then first_t, first_f = g.t, g.f end
                ents[#ents + 1] = g
                if g.e > ack then
                    g.s = ack
                    break
                end
                table.remove(sb, 1)
            end
            d.sacked_bytes = d.sacked_bytes - bytes
            if d.sacked_bytes < 0 then d.sacked_bytes = 0 end
            pkt.sack_released = { bytes = bytes, first_t = first_t, first_f = first_f, entries = ents, from = una, to = ack }
        end
        local sr = pkt.sack_released
        if sr == nil and not d.sack_seen and d.dup_times ~= nil and d.dup_times[1] ~= nil then
            -- no SACK on this connection: each duplicate ACK reported one segment held above the
            -- hole; take the segments sent after the missing one, one per dupACK
            local segs, h = d.segs, d.segs_head
            local held, bytes, k = {}, 0, 1
            while segs[h] ~= nil and segs[h].s <= una do h = h + 1 end
            while segs[h] ~= nil and segs[h].e <= ack and d.dup_times[k] ~= nil do
                local g = segs[h]
                held[#held + 1] = { f = g.lf, first_f = g.f, s = g.s, e = g.e, send_t = g.t,
                                    sack_t = d.dup_times[k], sack_f = d.dup_frames[k] }
                bytes = bytes + (g.e - g.s)
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
        local segs = d.segs
        local h = d.segs_head
        local sample_seg = nil
        local held, j = nil, 1
        while segs[h] ~= nil and segs[h].e <= ack do
            local g = segs[h]
            if g.tx == 1 then sample_seg = g else sample_seg = nil end
            if sr ~= nil and not sr.dupack_based then
                -- segments that were SACKed (held at the receiver) before this ACK covered them
                local ents = sr.entries
                while ents[j] ~= nil and ents[j].e <= g.s do j = j + 1 end
                if ents[j] ~= nil and ents[j].s < g.e then
                    held = held or {}
                    held[#held + 1] = { f = g.lf, first_f = g.f, s = g.s, e = g.e, send_t = g.t, sack_t = ents[j].t, sack_f = ents[j].f }
                end
            end
            h = h + 1
        end
        if sr ~= nil and not sr.dupack_based then sr.segments = held or {} end
        d.segs_head = h
        segs_compact(d)
        if sample_seg ~= nil then turn_sample(d.peer, t - sample_seg.t, true) end
    elseif ack == una and pkt.len == 0 and not pkt.syn and not pkt.fin and not pkt.rst
        and d.high ~= nil and d.high > ack then
        d.dupacks = d.dupacks + 1
        if d.dupacks == 1 then
            d.dup_first_t, d.dup_first_f = t, f
            d.dup_times, d.dup_frames = {}, {}
        end
        if d.dup_times ~= nil and #d.dup_times < 256 then
            d.dup_times[#d.dup_times + 1] = t
            d.dup_frames[#d.dup_frames + 1] = f
        end
        pkt.dupack = d.dupacks
    end
    if d.high ~= nil and ack > d.high then d.high = ack end
    if d.ref == nil or ack > d.ref then d.ref = ack end
    rcv_catch_up(d, ack)
end

local function on_sack(d, pkt, blocks)
    d.sack_seen = true
    local una = d.snd_una or -huge
    local t, f = pkt.time, pkt.number
    local added = 0
    for i = 1, #blocks do
        local b = blocks[i]
        local l, r = b[1], b[2]
        if r <= una then
            pkt.dsack = true
        elseif i == 1 and #blocks > 1 and l >= blocks[2][1] and r <= blocks[2][2] then
            pkt.dsack = true
        else
            if l < una then l = una end
            if r > l then added = added + sack_add(d, l, r, t, f) end
        end
    end
    if added > 0 then pkt.sack_new = added end
end

---------------------------------------------------------------------------------------------------
-- timestamps: first-seen time of each TSval, echo gives a turn sample for the echoing side

local function ts_record(d, tsval, t)
    local q = d.tsq
    local n = #q
    if n >= d.tsq_head and q[n].v == tsval then return end
    q[n + 1] = { v = tsval, t = t }
    if n + 1 - d.tsq_head > 64 then
        q[d.tsq_head] = nil
        d.tsq_head = d.tsq_head + 1
    end
    if d.tsq_head > 512 then
        local nq = {}
        for i = d.tsq_head, #q do nq[#nq + 1] = q[i] end
        d.tsq, d.tsq_head = nq, 1
    end
end

-- `echoer` echoed tsecr = v of direction d
local function ts_echo(d, echoer, v, t)
    local q = d.tsq
    local h = d.tsq_head
    while q[h] ~= nil and seq.lt(q[h].v, v) do
        q[h] = nil
        h = h + 1
    end
    if q[h] ~= nil and q[h].v == v then
        turn_sample(echoer, t - q[h].t, false)
        q[h] = nil
        h = h + 1
    end
    d.tsq_head = h
end

---------------------------------------------------------------------------------------------------
-- retransmission trigger (rto / fast / tlp / rack / unknown)

local function classify(d, pkt, rtx, last_send_t)
    local s = core.settings
    local rto_min = s.rto_min_ms / 1000
    local t = pkt.time
    if pkt.syn then return "rto", "SYN retransmission timer" end
    local srtt = M.srtt(d)
    local ta, turn = M.trigger_ack(d, t)
    -- react: how long after the sender could have seen the triggering ACK it sent this
    local react = ta and (t - ta.t - turn) or huge
    if react < 0 then react = 0 end
    local tol = 0.004 + turn * 0.25
    local mss = d.mss or d.peer.mss or 1460
    if mss <= 0 then mss = 1460 end
    local sacked_b = ta and ta.sacked or 0
    local sacked_segs = math.max(ta and ta.sacked_n or 0, math.floor(sacked_b / mss))
    local dup = ta and ta.dup or 0
    pkt.trigger_ack_f = ta and ta.f or nil
    rtx.ta_t, rtx.ta_f, rtx.ta_dup, rtx.ta_sacked_n = ta and ta.t, ta and ta.f, dup, sacked_segs
    local loss = dup >= 3 or sacked_segs >= 3
    local gap_send = last_send_t and (t - last_send_t) or huge
    -- since the previous transmission of this data; unknown original (lost before a receiver-side
    -- capture point): since the first duplicate ACK, i.e. since the receiver noticed the hole
    local gap_prev = rtx.prev_t and (t - rtx.prev_t) or (d.dup_first_t and (t - d.dup_first_t)) or huge
    if rtx.n >= 2 then
        if loss and react <= tol and ta and rtx.prev_t and ta.t > rtx.prev_t then
            return "rack", "retransmitted again right after new loss evidence"
        end
        return "rto", string.format("retransmission #%d, %.1f ms after the previous one (timer backoff)", rtx.n, gap_prev * 1000)
    end
    if loss and react <= tol then
        return "fast", string.format("%d dupACKs / %d SACKed segments at the triggering ACK (frame %d), sent %.1f ms after it reached the sender", dup, sacked_segs, ta.f, react * 1000)
    end
    if (sacked_b > 0 or dup >= 1) and react <= tol + math.max((srtt or 0) * 0.5, 0.004) then
        return "rack", string.format("later data SACKed (%d dupACKs) at frame %d, sent %.1f ms after it reached the sender", dup, ta.f, react * 1000)
    end
    local is_tail = d.high ~= nil and pkt.nxt >= d.high
    if is_tail and d.sacked_bytes == 0 and dup == 0 then
        local limit
        if srtt ~= nil then limit = 2 * srtt + rto_min + 0.02 else limit = rto_min * 0.9 end
        if gap_send <= limit and (srtt == nil or gap_send >= 1.5 * srtt) then
            return "tlp", string.format("tail probe %.1f ms after the last send (SRTT %.1f ms)", gap_send * 1000, (srtt or 0) * 1000)
        end
    end
    if gap_send >= rto_min * 0.8 or gap_prev >= rto_min * 0.8 then
        if rtx.prev_t ~= nil then
            return "rto", string.format("%.1f ms after the previous transmission (retransmission timer)", gap_prev * 1000)
        end
        return "rto", string.format("%.1f ms after the first dupACK, no fast-retransmit evidence (retransmission timer)", gap_prev * 1000)
    end
    return "unknown", nil
end

---------------------------------------------------------------------------------------------------
-- main entry: one packet, first pass only

function M.ingest(pkt, fwd, rev)
    local t = pkt.time
    if fwd.first_t == nil then fwd.first_t = t end
    fwd.last_t = t

    -- sequence numbers (this direction's space)
    if fwd.ref == nil then fwd.ref = pkt.seq_raw end
    local s = unwrap(pkt.seq_raw, fwd.ref)
    pkt.seq = s
    local synlen = pkt.syn and 1 or 0
    local ds = s + synlen
    local de = ds + pkt.len
    local nxt = de + (pkt.fin and 1 or 0)
    pkt.ds, pkt.de, pkt.nxt = ds, de, nxt
    if nxt > fwd.ref then fwd.ref = nxt end

    if pkt.syn then
        fwd.isn = s
        if pkt.wscale_opt ~= nil then fwd.wscale = pkt.wscale_opt end
        if pkt.mss_opt ~= nil then fwd.mss = pkt.mss_opt end
    end

    -- acknowledgement (the peer's space)
    if pkt.ackf then
        if rev.ref == nil then rev.ref = pkt.ack_raw end
        pkt.ack = unwrap(pkt.ack_raw, rev.ref)
    end

    -- TS echo before anything else changes
    if pkt.tsval ~= nil then
        if pkt.tsecr ~= nil and pkt.tsecr ~= 0 then ts_echo(rev, fwd, pkt.tsecr, t) end
        ts_record(fwd, pkt.tsval, t)
    end

    -- sender view
    local last_send_t = fwd.last_send_t
    if nxt > s then
        local rtx = on_send(fwd, pkt, s, nxt)
        if rtx == nil and pkt.ws_retrans and pkt.len > 0 then
            -- the capture never saw the original (lost before this capture point)
            rtx = { first_t = nil, prev_t = nil, n = 1, unseen = true }
        end
        if rtx ~= nil then
            if rtx.n < 1 then rtx.n = 1 end
            fwd.retrans = fwd.retrans + 1
            pkt.rtx = rtx
            rtx.f, rtx.t, rtx.s, rtx.e = pkt.number, t, ds, de
            fwd.last_rtx = rtx
            rtx.trigger, rtx.why = classify(fwd, pkt, rtx, last_send_t)
        elseif pkt.len > 0 then
            local r = fwd.new_times
            local k = fwd.new_times_n % 8 + 1
            r[k] = t
            fwd.new_times_n = fwd.new_times_n + 1
            fwd.last_new_t = t
        end
        fwd.last_send_t, fwd.last_send_f = t, pkt.number
    end

    -- receiver view of this direction's data
    if pkt.len > 0 then on_arrival(fwd, pkt, ds, de) end

    -- ACK and SACK for the peer's data
    if pkt.ack ~= nil then
        on_ack(rev, pkt, pkt.ack)
        if pkt.sack ~= nil then
            local blocks = {}
            local off = rev.ref
            for i = 1, #pkt.sack do
                local b = pkt.sack[i]
                blocks[i] = { unwrap(b[1], off), unwrap(b[2], off) }
            end
            pkt.sack_abs = blocks
            on_sack(rev, pkt, blocks)
        end
        -- ACK history of rev's data (what the sender knew after each ACK), newest last
        local hist = rev.ackhist
        local k = rev.ackhist_n % 16 + 1
        local e = hist[k]
        if e == nil then e = {} hist[k] = e end
        e.t, e.f, e.dup, e.sacked, e.sacked_n = t, pkt.number, rev.dupacks, rev.sacked_bytes, #rev.sacked
        rev.ackhist_n = rev.ackhist_n + 1
    end

    -- window advertised by this side
    if pkt.win_raw ~= nil then
        fwd.win_raw = pkt.win_raw
        local sc = pkt.win_scale
        if pkt.syn then sc = 0 end            -- the window in SYNs is never scaled
        if sc ~= nil and sc >= 0 then
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

-- Average interval between new-data sends of direction d (seconds) over the last <= 8 sends.
function M.send_interval(d)
    local n = d.new_times_n
    if n < 2 then return nil end
    local m = n < 8 and n or 8
    local r = d.new_times
    local newest = r[(n - 1) % 8 + 1]
    local oldest = r[(n - m) % 8 + 1]
    return (newest - oldest) / (m - 1)
end

return M
