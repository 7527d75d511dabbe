-- tcpstall/hol.lua: HOL-blocked delivery analyzer.
--
-- Receiver-side view (the capture shows arrivals): a data segment arriving above the in-order
-- point is *held* (the kernel cannot hand it to read()); the frame that fills the hole *releases*
-- the held bytes. Sender-side view (the capture shows what was sent and the receiver's ACKs):
-- data SACKed above the cumulative ACK is held at the receiver; the ACK that moves the cumulative
-- ACK over it marks the release, the hold counted from the first SACK that covered the data.
-- When the receiver view already reported a release (receiver-side capture, which also contains
-- the receiver's SACKs), the sender view stays silent for the same data.
--
-- Held frames learn their hold time only when the release is seen: in one-pass tshark the held
-- frames were already printed by then, so `tcpstall.hol.hold_ms` / `release_frame` /
-- `tcpstall.hol.blocked` appear only with `-2 -Y ...` or in the GUI.
--
-- See README.md for the analyzer contract. Side-effect free when loaded without `core`.
local core = ...
if type(core) ~= "table" then return {} end

local stream = core.load("stream")
local F, E = core.F, core.E

local M = { name = "hol", per_frame = true }

-- What a held frame shows, in five dense arrays indexed in frame order (array parts only: no
-- table and no hash entry per frame. A big lossy capture holds most of its data frames, and the
-- Lua collector re-walks everything tcpstall keeps on every cycle: per-frame tables, then
-- frame-keyed hash columns, were tcpstall's largest cost.)
--   frames[k]   the held frame (increasing)    bv[k]       bytes * 4 + view
--   hole[k]     the hole below it on arrival   hold_ms[k]  how long it waited (false: not yet)
--   release[k]  the frame that released it (false: not yet; known in two-pass and the GUI)
-- view: 0 receiver view (arrivals), 1 sender view (SACK), 2 sender view (dupACK)
local frames, bv, hole, hold_ms, release, n_held, cursor

function M.reset()
    frames, bv, hole, hold_ms, release, n_held, cursor = {}, {}, {}, {}, {}, 0, 1
end

local floor = math.floor

-- k of frame f, or nil. Revisits go in frame order (tshark -2, scrolling in the GUI): look next
-- to the previous answer first, binary search otherwise.
local function find(f)
    local n = n_held
    if n == 0 or frames[n] < f then
        cursor = n + 1
        return nil
    end
    local c = cursor
    if c > n then c = n end            -- (frames[n] >= f: c stops at n at the latest)
    if frames[c] < f then
        local stop = c + 8
        repeat c = c + 1 until frames[c] >= f or c >= stop
    end
    if frames[c] < f or (c > 1 and frames[c - 1] >= f) then
        local lo, hi = 1, n
        while lo < hi do
            local mid = floor((lo + hi) / 2)
            if frames[mid] < f then lo = mid + 1 else hi = mid end
        end
        c = lo
    end
    cursor = c
    if frames[c] == f then return c end
    return nil
end

-- k of frame f, a new one (kept in frame order) when f has none yet
local function add(f, bytes, view)
    local n = n_held
    local k = n + 1
    if n > 0 and frames[n] >= f then
        local found = find(f)
        if found ~= nil then
            bv[found] = bytes * 4 + view
            return found
        end
        -- an earlier frame than the last one stored (sender view next to receiver view): insert
        k = cursor
        table.insert(frames, k, f) table.insert(bv, k, 0) table.insert(hole, k, 0)
        table.insert(hold_ms, k, false) table.insert(release, k, false)
    end
    n_held = n + 1
    frames[k], bv[k], hole[k], hold_ms[k], release[k] = f, bytes * 4 + view, 0, false, false
    return k
end

local function agg(st)
    local a = st.a.hol
    if a == nil then
        a = { episodes = 0, total_ms = 0, worst_ms = 0, worst_frame = nil, bytes = 0 }
        st.a.hol = a
    end
    return a
end

local function fmt_ms(x) return string.format("%.1f", x) end
-- Wireshark cuts a tree label at 239 bytes, and an expert's starts "Expert Info (Warning/Sequence): "
-- (32 bytes): a longer text shows "[truncated]" (tests/test_plugin_core.py)
local EXPERT_TEXT_MAX = 207

-- how a receiver-side capture told what filled a hole (stream.lua fill_evidence), for the text
local EVIDENCE = { ip_id = "by IP ID order", timing = "by timing", delivered = "the receiver had the data" }

local function record_episode(st, dir, rel)
    local a = agg(st)
    a.episodes = a.episodes + 1
    a.total_ms = a.total_ms + rel.max_hold_ms
    a.bytes = a.bytes + rel.bytes
    if rel.max_hold_ms > a.worst_ms then
        a.worst_ms = rel.max_hold_ms
        a.worst_frame = rel.frame
    end
    local list = dir.a.hol_episodes
    if list == nil then list = {} dir.a.hol_episodes = list end
    list[#list + 1] = rel
end

-- Thin stream: a retransmission that had to wait for its loss evidence (dupACKs, SACKs) because the
-- sender sends rarely. Only when that is what happened: the first retransmission of the data,
-- triggered by later segments (fast / RACK, or an RTO after >= 1 dupACK), fewer than 4 of them sent
-- between the original and the retransmission (Linux's tcp_stream_is_thin: < 4 packets in flight;
-- a bulk flow has many), >= 3 path RTTs after the original, and the sender's new data goes out at
-- most every RTT/2. `held_t`, `held_n`: at a receiver-side capture (the original never seen) the
-- first held arrival and how many segments were held; the original's send is then estimated one
-- send interval before the first of them.
local function thin_check(pkt, fwd, held_t, held_n)
    local rtx = pkt.rtx
    if not rtx or rtx.n ~= 1 then return nil end
    local trig = rtx.trigger
    local dup, sacked = rtx.ta_dup or 0, rtx.ta_sacked_n or 0
    if trig ~= "fast" and trig ~= "rack" and not (trig == "rto" and dup >= 1) then return nil end
    if dup < 1 and sacked < 1 then return nil end
    local interval = stream.send_interval(fwd)
    if interval == nil or interval <= 0 then return nil end
    local orig_t, est, later = rtx.first_t, false, nil
    if orig_t == nil then
        if held_t == nil then return nil end
        orig_t, est, later = held_t - interval, true, held_n
    else
        later = stream.sent_after(fwd, rtx.s, orig_t, pkt.time, 4)
    end
    if later == nil or later < 1 or later > 3 then return nil end
    local wait = pkt.time - orig_t
    local rtt = stream.rtt_min(fwd)
    if rtt == nil or rtt <= 0 then return nil end
    -- a bulk sender on a sub-millisecond path also has interval >= RTT/2: only a recovery delay
    -- an application can notice (hol_warn_ms) and a sender idle for >= 1 ms between segments count
    if wait < 3 * rtt or interval < rtt / 2 or interval < 0.001
        or wait * 1000 < core.settings.hol_warn_ms then return nil end
    return {
        wait_ms = core.ms(wait), rtt_ms = core.ms(rtt), interval_ms = core.ms(interval),
        dupacks = dup, trigger = trig, estimated = est,
    }
end

---------------------------------------------------------------------------------------------------

function M.on_packet(pkt, fwd, rev, out, st)
    local t = pkt.time
    -- receiver view: this packet's data (direction fwd)
    if pkt.arrival == "held" then
        local k = add(pkt.number, pkt.de - pkt.ds, 0)
        hole[k] = pkt.hole
        pkt.held_entry[5] = k
    end
    if pkt.released then
        local ents = pkt.released
        local first_t, first_f = math.huge, nil
        local segs = pkt.released_segments or 0
        for i = 1, #ents do
            local h = ents[i]
            local ht, hf = h[3], h[4]          -- held entry { s, e, arrival time, frame, k }
            if ht < first_t or (ht == first_t and hf < first_f) then first_t, first_f = ht, hf end
            local k = h[5]
            if k and frames[k] ~= hf then k = find(hf) end   -- (an insert may have moved it)
            if k then hold_ms[k], release[k] = (t - ht) * 1000, pkt.number end
        end
        local rel = {
            view = "receiver", frame = pkt.number, time = t, bytes = pkt.released_bytes or 0,
            segments = segs, frames = #ents, max_hold_ms = (t - first_t) * 1000,
            first_held_frame = first_f, first_held_t = first_t,
            filler_len = pkt.len,
            trigger = pkt.rtx and pkt.rtx.trigger or nil,
            -- what filled the hole (stream.lua fill_evidence) and the evidence
            fill = pkt.rtx and "retransmission" or pkt.fill or "cannot_tell",
            fill_by = pkt.rtx and pkt.rtx.by or pkt.fill_by or nil,
        }
        out.hol = out.hol or {}
        out.hol.rel = rel
        fwd.a.hol_rv_upto = fwd.rcv_nxt
        record_episode(st, fwd, rel)
    end

    -- thin stream (on the retransmission itself, either capture side)
    if pkt.rtx then
        local held_t, held_n = nil, nil
        local r0 = out.hol and out.hol.rel
        if r0 and r0.view == "receiver" then held_t, held_n = r0.first_held_t, r0.frames end
        local thin = thin_check(pkt, fwd, held_t, held_n)
        if thin ~= nil then
            out.hol = out.hol or {}
            out.hol.thin = thin
        end
    end

    -- sender view: this packet's ACK moved the cumulative ACK over SACKed data of rev
    local sr = pkt.sack_released
    if sr and sr.bytes > 0 then
        local upto = rev.a.hol_rv_upto
        if upto == nil or upto < sr.to then
            local held = sr.segments or {}
            local first_f = held[1] and held[1].first_f or sr.first_f
            for i = 1, #held do
                local g = held[i]
                local k = add(g.first_f, g.e - g.s, sr.dupack_based and 2 or 1)
                hold_ms[k], release[k] = (t - g.sack_t) * 1000, pkt.number
            end
            -- what filled the hole (stream.lua): the capture saw it retransmitted (that frame and its
            -- trigger), the original arrived late, the filler is not in the capture, or cannot tell
            local by = nil
            if sr.fill == "retransmission" then
                local res = core.state.results[sr.fill_f]
                local rr = res and res.rtx
                by = { f = sr.fill_f, t = sr.fill_t, s = sr.fill_s, e = sr.fill_e, trigger = rr and rr.trigger or nil }
            end
            -- hold at the receiver estimated from send times (equal one-way delays assumed)
            local by_send = nil
            if by ~= nil and held[1] ~= nil then
                local first_send = math.huge
                for i = 1, #held do
                    local g = held[i]
                    local gt = g.send_t
                    if gt ~= nil and gt < first_send then first_send = gt end
                end
                if first_send < by.t then by_send = (by.t - first_send) * 1000 end
            end
            local rel = {
                view = "sender", frame = pkt.number, time = t, bytes = sr.bytes,
                segments = #held > 0 and #held or #sr.entries, frames = #held,
                max_hold_ms = (t - sr.first_t) * 1000,
                first_held_frame = first_f, first_held_t = sr.first_t, first_sack_frame = sr.first_f,
                dupack_based = sr.dupack_based,
                trigger = by and by.trigger or nil, filler_frame = by and by.f or nil,
                fill = sr.fill, by_send_ms = by_send,
            }
            out.hol = out.hol or {}
            out.hol.rel = rel
            record_episode(st, rev, rel)
            if by ~= nil then rev.a.hol_last_sender_rel = { rel = rel, s = by.s, e = by.e } end
        end
    end

    -- a D-SACK for the retransmission that seemed to fill the hole: it was spurious, the late
    -- original filled it (corrects the release already stored; shows in two-pass and the GUI)
    if pkt.dsack and pkt.dsack_l then
        local lr = rev.a.hol_last_sender_rel
        if lr ~= nil and pkt.dsack_l <= lr.s and pkt.dsack_r >= lr.e then
            lr.rel.spurious_frame = lr.rel.filler_frame
            lr.rel.dsack_frame = pkt.number
            lr.rel.fill = "late_original"
            lr.rel.by_send_ms = nil
            rev.a.hol_last_sender_rel = nil
        end
    end
end

---------------------------------------------------------------------------------------------------

-- the frame that released frame `number`, when `number` was held behind a hole and released
-- (what render shows of it is then only the held fields), else nil
function M.held_release(number)
    local k = find(number)
    return k ~= nil and hold_ms[k] ~= false and release[k] or nil
end

-- anything to show for frame `number`? `r`: its stored result (or nil). Held frames have
-- nothing to show before their release.
function M.visible(r, number)
    local k = find(number)
    return (k ~= nil and hold_ms[k] ~= false) or (r ~= nil and (r.rel ~= nil or r.thin ~= nil))
end

function M.render(tree, r, number)
    local warn_ms = core.settings.hol_warn_ms or 20
    local k = find(number)
    local held_ms = k and hold_ms[k]
    if held_ms then
        local release_frame, v = release[k], bv[k] % 4
        local bytes = floor(bv[k] / 4)
        tree:add(F.hol_hold_ms, held_ms)
        tree:add(F.hol_release_frame, release_frame)
        local warn = held_ms >= warn_ms
        tree:add(F.hol_severity, warn and "warn" or "note")
        local ei = warn and E.hol_blocked or E.hol_blocked_note
        local txt
        if v ~= 0 then
            tree:add(F.hol_reported_by, v == 2 and "dupack" or "sack")
        else
            tree:add(F.hol_hole_bytes, hole[k])
        end
        if core.texts_unread then            -- (-z tcpstall,records: every frame of a lossy bulk capture)
            txt = ""
        elseif v ~= 0 then
            txt = string.format("HOL-blocked delivery: %d bytes %s, held at the receiver %s ms until frame %d",
                bytes, v == 2 and "reported by a dupACK" or "SACKed", fmt_ms(held_ms), release_frame)
        else
            txt = string.format("HOL-blocked delivery: %d bytes held %s ms behind a %d-byte hole, released by frame %d",
                bytes, fmt_ms(held_ms), hole[k], release_frame)
        end
        tree:add_proto_expert_info(ei, txt)
    end
    if r == nil then return end
    local rel = r.rel
    if rel ~= nil then
        tree:add(F.hol_released_bytes, rel.bytes)
        tree:add(F.hol_released_segments, rel.segments)
        tree:add(F.hol_max_hold_ms, rel.max_hold_ms)
        if rel.first_held_frame ~= nil then tree:add(F.hol_first_held_frame, rel.first_held_frame) end
        local filled_by = rel.view == "receiver" and rel.frame or rel.filler_frame
        if filled_by ~= nil then tree:add(F.hol_filled_by, filled_by) end
        tree:add(F.hol_view, rel.view)
        local warn = rel.max_hold_ms >= warn_ms
        tree:add(F.hol_severity, warn and "warn" or "note")
        tree:add(F.hol_fill, rel.fill)
        if rel.view == "sender" then
            tree:add(F.hol_reported_by, rel.dupack_based and "dupack" or "sack")
            if rel.first_sack_frame ~= nil then tree:add(F.hol_report_frame, rel.first_sack_frame) end
            if rel.by_send_ms ~= nil then tree:add(F.hol_send_hold_ms, rel.by_send_ms) end
        elseif rel.fill_by ~= nil then
            tree:add(F.hol_fill_evidence, tostring(rel.fill_by))
        end
        if rel.spurious_frame ~= nil then
            tree:add(F.hol_spurious_frame, rel.spurious_frame)
            tree:add(F.hol_dsack_frame, rel.dsack_frame)
        end
        local what
        local fill, recv = rel.fill, rel.view == "receiver"
        local ev = recv and EVIDENCE[rel.fill_by]       -- (TSvals: the usual case, not said)
        if rel.spurious_frame ~= nil then
            what = string.format("the late original (retransmission frame %d was spurious: D-SACK frame %d)", rel.spurious_frame, rel.dsack_frame)
        elseif fill == "late_original" then
            what = recv and ("late original (reordering, not a retransmission" .. (ev and ("; " .. ev) or "") .. ")")
                or "ACK without a retransmission (reordering)"
        elseif fill == "retransmission" then
            what = (rel.trigger or "a") .. " retransmission" .. (rel.filler_frame and (" (frame " .. rel.filler_frame .. ")") or "")
                .. (ev and (" (" .. ev .. ")") or "")
        elseif fill == "not_captured" then
            what = "a segment not in the capture (the receiver's ACK covers it)"
        elseif recv then
            what = nil
        else
            what = "an ACK: a late original or a retransmission the capture missed, cannot tell"
        end
        local head = string.format("HOL-blocked delivery: released %d bytes in %d segment%s held up to %s ms",
            rel.bytes, rel.segments, rel.segments == 1 and "" or "s", fmt_ms(rel.max_hold_ms))
        local first = " (first held frame " .. tostring(rel.first_held_frame or "?") .. ")"
        local since, by_send = "", ""
        if rel.view == "sender" then
            since = (rel.dupack_based and " since dupACK frame " or " since SACK frame ") .. tostring(rel.first_sack_frame)
            if rel.by_send_ms ~= nil then by_send = string.format(" (~%s ms by send times)", fmt_ms(rel.by_send_ms)) end
        end
        local filled = ""
        if what ~= nil then
            filled = "; filled by " .. what
        elseif fill == "cannot_tell" then
            filled = "; filled by: cannot tell (" .. tostring(rel.fill_by) .. ")"
        end
        -- within a tree label: with large numbers the asides go first (the fields carry them)
        local txt = head .. first .. since .. by_send .. filled
        if #txt > EXPERT_TEXT_MAX then txt = head .. first .. since .. filled end
        if #txt > EXPERT_TEXT_MAX then txt = head .. since .. filled end
        local ei = warn and E.hol_released or E.hol_released_note
        tree:add_proto_expert_info(ei, txt)
    end
    local th = r.thin
    if th ~= nil then
        -- how long the loss evidence took to come ("est.": the capture never saw the original, its
        -- send time is estimated one send interval before the next segment)
        tree:add(F.thin_interval_ms, th.interval_ms)
        tree:add(F.thin_wait_ms, th.wait_ms)
        tree:add(F.thin_wait_estimated, th.estimated)
        tree:add(F.thin_rtt_ms, th.rtt_ms)
        local took = fmt_ms(th.wait_ms) .. " ms" .. (th.estimated and " (est.)" or "")
        local what
        if th.trigger == "fast" and th.dupacks >= 1 then
            what = string.format("%d dupACKs took %s", th.dupacks, took)
        elseif th.trigger == "fast" then
            what = string.format("the SACKs of later segments took %s", took)
        elseif th.trigger == "rto" then
            what = string.format("%d dupACK%s in %s, no fast retransmit: the timer fired", th.dupacks, th.dupacks == 1 and "" or "s", took)
        else
            what = string.format("the retransmission waited %s for a later segment to be SACKed", took)
        end
        -- within core.EXPERT_MAX bytes, so Wireshark shows it whole. What helps: more segments in
        -- flight (the evidence comes sooner), or an application timeout above what recovery takes
        -- (at least one RTT plus the minimum RTO, pref rto_min_ms, when the timer has to fire)
        tree:add_proto_expert_info(E.thin_stream, string.format(
            "Thin stream: %s (RTT %s ms): the sender sends one segment every ~%s ms. Helps: sending more often, an app timeout > RTT + %d ms",
            what, fmt_ms(th.rtt_ms), fmt_ms(th.interval_ms), core.settings.rto_min_ms))
    end
end

---------------------------------------------------------------------------------------------------
-- -z tcpstall columns

M.columns = {
    { key = "hol_episodes", title = "HOL episodes", get = function(st) local a = st.a.hol return a and a.episodes or 0 end },
    { key = "hol_total_ms", title = "HOL total ms", get = function(st) local a = st.a.hol return a and fmt_ms(a.total_ms) or "0.0" end },
    { key = "hol_worst_ms", title = "HOL worst ms", get = function(st) local a = st.a.hol return a and fmt_ms(a.worst_ms) or "0.0" end },
}

return M
