-- tcpstall/retries.lua: "retries approaching tcp_retries2" analyzer, with the kernel's abort timing.
--
-- Incident C (DESIGN.md §1): the peer vanishes, Linux retransmits the unacknowledged data with
-- exponential backoff and aborts the connection (ETIMEDOUT) once the tcp_retries2 budget is spent.
--
-- Per direction, an *episode* starts with the first retransmission while the cumulative ACK stays
-- below the data and ends when the peer ACKs past it (recovered), a RST is seen (reset), or the
-- capture ends (the kernel aborts at the predicted time). The *head* is the data at the cumulative
-- ACK; its retransmissions are numbered (`tcpstall.retries.count`, the tail loss probe included),
-- the RTO ones separately (`tcpstall.retries.rto_count` = the kernel's icsk_retransmits).
--
-- Abort prediction = what tcp_write_timeout() decides (net/ipv4/tcp_timer.c, kernel 6.18):
--   * budget T = tcp_model_timeout(tcp_retries2, rto_min, rto_max) (DESIGN.md §2), or
--     TCP_USER_TIMEOUT when set (and then the RTO timer is clamped to fire when T runs out);
--   * T is counted from tp->retrans_stamp = the time of the first retransmission that went through
--     tcp_retransmit_skb(): the first RTO (or fast/RACK) retransmission. A tail loss probe does NOT
--     set it (tcp_send_loss_probe calls __tcp_retransmit_skb directly). Verified on the lab
--     captures (README.md "Which instant the abort budget counts from");
--   * the budget is checked only when the RTO timer fires (and only once icsk_retransmits >= 1):
--     the abort is the first RTO expiry at or after retrans_stamp + T. Future expiries are simulated
--     from the RTO intervals observed in the capture (they include the timer slack): base RTO =
--     median of interval_k / 2^(k-1) over the last three RTOs seen, doubling, capped at rto_max
--     (or at the median capped interval observed).
--
-- The first retransmission of a lone segment is usually a tail loss probe: PTO = min(2·SRTT +
-- 200 ms, RTO) ≈ RTO on a short path, and the probe does not back off the RTO timer, so the first
-- RTO follows one plain RTO later: two equal intervals, then doubling. When the second interval
-- equals the first, the first retransmission is relabelled `tlp`; when it doubles, `rto`.
--
-- Zero-window probes are not handled (see README.md): they carry no data (seq = snd_una - 1), so
-- they are not retransmissions here and are not counted against tcp_retries2.
--
-- See README.md for the analyzer contract. Side-effect free when loaded without `core`.
local core = ...
if type(core) ~= "table" then return {} end

local F, E = core.F, core.E

local M = { name = "retries" }

local last_time = nil      -- newest packet time seen in the first pass (is the capture past an abort?)

function M.reset()
    last_time = nil
end

---------------------------------------------------------------------------------------------------
-- the kernel's budget (tcp_model_timeout) in seconds

local function ilog2(n)
    local r = 0
    while n >= 2 do n = n / 2 r = r + 1 end
    return r
end

-- tcp_model_timeout(): seconds. rto_min_ms / rto_max_ms integers (ms), retries2 >= 0.
function M.model_timeout(retries2, rto_min_ms, rto_max_ms)
    if rto_min_ms == nil or rto_min_ms < 1 then rto_min_ms = 1 end
    if rto_max_ms == nil or rto_max_ms < rto_min_ms then rto_max_ms = rto_min_ms end
    retries2 = math.floor(retries2 or 15)
    if retries2 < 0 then retries2 = 0 end
    if retries2 > 255 then retries2 = 255 end
    local thresh = ilog2(math.floor(rto_max_ms / rto_min_ms))
    local ms
    if retries2 <= thresh then
        ms = (2 ^ (retries2 + 1) - 1) * rto_min_ms
    else
        ms = (2 ^ (thresh + 1) - 1) * rto_min_ms + (retries2 - thresh) * rto_max_ms
    end
    return ms / 1000
end

-- budget T (s) and whether it is TCP_USER_TIMEOUT
local function budget()
    local s = core.settings
    local ut = s.user_timeout_ms or 0
    if ut > 0 then return ut / 1000, true end
    return M.model_timeout(s.tcp_retries2 or 15, s.rto_min_ms or 200, s.rto_max_ms or 120000), false
end

---------------------------------------------------------------------------------------------------
-- helpers

local function median(list)
    local n = #list
    if n == 0 then return nil end
    local c = {}
    for i = 1, n do c[i] = list[i] end
    table.sort(c)
    if n % 2 == 1 then return c[(n + 1) / 2] end
    return (c[n / 2] + c[n / 2 + 1]) / 2
end

local function r6(x)
    if x == nil then return nil end
    return math.floor(x * 1e6 + 0.5) / 1e6
end

local function agg(st)
    local a = st.a.retries
    if a == nil then
        a = { max_count = 0, max_rto = 0, episodes = 0, worst = nil }
        st.a.retries = a
    end
    return a
end

local function dstate(d)
    local a = d.a.retries
    if a == nil then
        a = { ep = nil }
        d.a.retries = a
    end
    return a
end

---------------------------------------------------------------------------------------------------
-- episode bookkeeping

-- Derive the kernel's view from the head's transmissions: RTO count, retrans_stamp, RTO intervals.
local function derive(ep)
    local s = core.settings
    local rto_max = (s.rto_max_ms or 120000) / 1000
    local rto_n, stamp_t, stamp_f = 0, nil, nil
    local ratios, capped = {}, {}
    local tx = ep.tx
    for i = 1, #tx do
        local x = tx[i]
        local trig = x.rtx.trigger
        if trig ~= "tlp" and stamp_t == nil then stamp_t, stamp_f = x.t, x.f end
        if trig == "rto" then
            rto_n = rto_n + 1
            local g = x.gap
            if g ~= nil and g > 0 then
                if g >= rto_max * 0.95 then
                    capped[#capped + 1] = g
                else
                    ratios[#ratios + 1] = g / (2 ^ (rto_n - 1))
                end
            end
        end
    end
    ep.rto_n, ep.stamp_t, ep.stamp_f = rto_n, stamp_t, stamp_f
    ep.ratios, ep.capped = ratios, capped
end

-- Relabel the first retransmission from the second interval: equal => tail loss probe, doubled => RTO.
local function relabel_first(ep, x2)
    local x1 = ep.tx[1]
    if x1 == nil or x1.gap == nil or x1.gap <= 0 or x2.gap == nil then return end
    local r1 = x1.rtx
    local trig = r1.trigger
    if trig ~= "rto" and trig ~= "tlp" and trig ~= "unknown" then return end
    local ratio = x2.gap / x1.gap
    local g1, g2 = x1.gap * 1000, x2.gap * 1000
    -- the first frame's stored result (rendered again with -2 / in the GUI) follows the new label
    local res1 = core.state.results[x1.f]
    local out1 = res1 and res1.retries
    if ratio >= 0.75 and ratio <= 1.3 then
        if out1 ~= nil then out1.rto_n = 0 end
        if trig ~= "tlp" then
            r1.trigger = "tlp"
            r1.why = string.format("tail loss probe: the next retransmission came %.1f ms later, the same interval as this one (%.1f ms) — a probe does not back off the RTO timer", g2, g1)
        end
        if x2.rtx.trigger == "rto" then
            x2.rtx.why = string.format("first RTO: %.1f ms after the tail loss probe, the same interval as the probe (%.1f ms): the timer had not backed off yet", g2, g1)
        end
    elseif ratio >= 1.6 and ratio <= 2.6 and trig ~= "rto" then
        if out1 ~= nil then out1.rto_n = 1 end
        r1.trigger = "rto"
        r1.why = string.format("retransmission timer: the next retransmission came after twice the interval (%.1f ms vs %.1f ms, backoff)", g2, g1)
    end
end

-- Estimated un-backed-off RTO (with timer slack) and the interval of an RTO capped at rto_max.
local function rto_model(ep, fwd)
    local s = core.settings
    local rto_min = (s.rto_min_ms or 200) / 1000
    local rto_max = (s.rto_max_ms or 120000) / 1000
    -- the RTOs observed so far, latest first: median of the last three interval_k / 2^(k-1). The
    -- timer wheel rounds every expiry up to its level's granularity, so each interval carries
    -- slack; the latest (longest) intervals run on the coarsest level, as the next ones will, and
    -- the median drops a stray one (this kernel: 212, 436, 828, 1668, 3328, 6656 ms -> 13312 ms)
    local last3 = {}
    for i = #ep.ratios, 1, -1 do
        local x = ep.ratios[i]
        if x >= rto_min * 0.9 then last3[#last3 + 1] = x end
        if #last3 == 3 then break end
    end
    local base = median(last3)
    if base == nil then
        -- nothing observed yet: Linux RTO = SRTT + max(4·mdev, rto_min) ≈ SRTT + rto_min, rounded up
        -- to the timer tick, plus the timer wheel's slack (this kernel: 208 ms for 200 ms)
        local srtt = core.stream.srtt(fwd) or 0
        base = (rto_min + srtt) * 1.02 + 0.004
    end
    if base < 0.001 then base = 0.001 end
    local cap = median(ep.capped) or rto_max
    if cap < rto_max then cap = rto_max end
    if cap < 0.001 then cap = 0.001 end
    return base, cap, rto_max
end

-- Simulate the RTO timer from the last head transmission. Returns abort time (absolute), the
-- number of RTO retransmissions before it, and the retrans_stamp used (absolute).
local function predict(ep, fwd)
    local T, is_ut = budget()
    local base, cap, rto_max = rto_model(ep, fwd)
    local start = ep.stamp_t
    local fire = ep.arm_t
    local k = ep.rto_n
    for _ = 1, 600 do
        local iv = base * (2 ^ k)
        if iv >= rto_max then iv = cap end
        local nxt = fire + iv
        if is_ut and start ~= nil and nxt > start + T then
            nxt = start + T                                 -- tcp_clamp_rto_to_user_timeout()
            if nxt < fire then nxt = fire end
        end
        -- the timer fires at nxt: tcp_write_timeout() checks the budget once icsk_retransmits >= 1
        if k >= 1 and start ~= nil and nxt - start >= T - 0.001 then
            return nxt, k, start, T, is_ut
        end
        if start == nil then start = nxt end               -- this RTO sets retrans_stamp
        k = k + 1
        fire = nxt
    end
    return nil, k, start, T, is_ut
end

local function new_episode(pkt, fwd, rtx)
    -- the head: the data at the cumulative ACK (snd_una) when known, else this retransmission
    local s = rtx.s
    local first_t, first_f = rtx.first_t, nil
    local una = fwd.snd_una
    if una ~= nil and una < s then
        local seg = fwd.segs[fwd.segs_head]
        if seg ~= nil and seg[1] <= una and seg[2] > una then   -- { s, e, first send t, f, ... }
            s, first_t, first_f = una, seg[3], seg[4]
        else
            s = una
        end
    elseif rtx.n == 1 and rtx.first_t ~= nil then
        first_f = rtx.prev_f
    end
    local ep = {
        s = s, bytes = 0,
        first_t = first_t, first_f = first_f, orig_seen = first_t ~= nil,
        tx = {}, count = 0, rto_n = 0,
        arm_t = rtx.prev_t or rtx.t,
        stamp_t = nil, stamp_f = nil, ratios = {}, capped = {},
        abort_t = nil, abort_k = nil, final_f = nil,
        outcome = nil, start_f = pkt.number, start_t = pkt.time, last_t = pkt.time, last_f = pkt.number,
        max_count = 0,
    }
    if ep.first_t == nil then ep.first_t = pkt.time end
    return ep
end

local function close_episode(ep, st, outcome, pkt, who)
    ep.outcome, ep.end_t, ep.end_f, ep.reset_by = outcome, pkt.time, pkt.number, who
    local a = agg(st)
    if ep.rto_n >= 1 then
        local w = a.worst
        if w == nil or ep.rto_n >= w.rto_n then a.worst = ep end
    end
end

---------------------------------------------------------------------------------------------------
-- first pass

function M.on_packet(pkt, fwd, rev, out, st)
    local t = pkt.time
    if last_time == nil or t > last_time then last_time = t end

    -- 1. this packet ends the reverse direction's episode (ACK past the head, or RST)
    local ra = rev.a.retries
    local rep = ra and ra.ep
    if rep ~= nil and rep.outcome == nil then
        local outcome, who = nil, nil
        if pkt.rst then
            outcome, who = "reset", "peer"
        elseif pkt.ack and pkt.ack > rep.s then
            outcome = "recovered"
        end
        if outcome ~= nil then
            close_episode(rep, st, outcome, pkt, who)
            ra.ep = nil
            if rep.rto_n >= 1 then
                out.retries = {
                    outcome = outcome, who = who, count = rep.count, rto_n = rep.rto_n,
                    elapsed = r6(t - rep.first_t), first_f = rep.first_f, bytes = rep.bytes,
                    orig_seen = rep.orig_seen, abort_at = rep.abort_t and r6(rep.abort_t - rep.first_t),
                    stall_from_f = rep.start_f,
                }
            end
        end
    end
    -- our own RST ends our episode too
    local fa = fwd.a.retries
    if pkt.rst and fa ~= nil and fa.ep ~= nil and fa.ep.outcome == nil then
        local ep = fa.ep
        close_episode(ep, st, "reset", pkt, "sender")
        fa.ep = nil
        if ep.rto_n >= 1 then
            out.retries = {
                outcome = "reset", who = "sender", count = ep.count, rto_n = ep.rto_n,
                elapsed = r6(t - ep.first_t), first_f = ep.first_f, bytes = ep.bytes, orig_seen = ep.orig_seen,
            }
        end
    end

    -- 2. a retransmission of this direction's data
    local rtx = pkt.rtx
    if not rtx or pkt.syn then return end
    local ds = dstate(fwd)
    local ep = ds.ep
    if ep == nil then
        ep = new_episode(pkt, fwd, rtx)
        ds.ep = ep
        local a = agg(st)
        a.episodes = a.episodes + 1
    end
    local is_head = rtx.s <= ep.s and (rtx.e > ep.s or rtx.e == rtx.s)
    local res
    if is_head then
        local x = { t = t, f = pkt.number, rtx = rtx, gap = t - ep.arm_t }
        ep.tx[#ep.tx + 1] = x
        ep.count = #ep.tx
        ep.bytes = (rtx.e or ep.s) - ep.s
        if ep.count == 2 then relabel_first(ep, x) end
        derive(ep)
        ep.arm_t = t
        ep.last_t, ep.last_f = t, pkt.number
        local abort_t, abort_k, start, T, is_ut = predict(ep, fwd)
        ep.abort_t, ep.abort_k, ep.budget, ep.is_ut = abort_t, abort_k, T, is_ut
        ep.start_used = start
        local s = core.settings
        local spent = (ep.stamp_t ~= nil) and (t - ep.stamp_t) or 0
        local approaching = ep.rto_n >= 1 and rtx.trigger == "rto"
            and (ep.rto_n >= (s.tcp_retries1 or 3) or spent >= T / 2)
        local final = abort_t ~= nil and abort_k == ep.rto_n and ep.rto_n >= 1
        if final then ep.final_f = pkt.number end
        res = {
            count = ep.count, rto_n = ep.rto_n, elapsed = r6(t - ep.first_t),
            abort_at = abort_t and r6(abort_t - ep.first_t), budget = T, is_ut = is_ut,
            stamp_at = start and r6(start - ep.first_t), first_f = ep.first_f, orig_seen = ep.orig_seen,
            bytes = ep.bytes, approaching = approaching, final = final, trigger = rtx.trigger,
            retries2 = s.tcp_retries2, spent = r6(spent),
        }
        local a = agg(st)
        if ep.count > a.max_count then a.max_count = ep.count end
        if ep.rto_n > a.max_rto then a.max_rto = ep.rto_n end
        if ep.rto_n >= 1 then
            local w = a.worst
            if w == nil or w == ep or ep.rto_n >= w.rto_n then a.worst = ep end
        end
    else
        -- other data retransmitted during the episode: its own number and age, the episode's abort
        ep.arm_t = t
        local first_t = rtx.first_t or t
        res = {
            count = rtx.n, elapsed = r6(t - first_t), orig_seen = rtx.first_t ~= nil,
            abort_at = ep.abort_t and r6(ep.abort_t - first_t), budget = ep.budget,
            other = true,
        }
    end
    out.retries = res
end

---------------------------------------------------------------------------------------------------
-- every pass

local function fmt_s(x)
    if x == nil then return "?" end
    if x >= 100 then return string.format("%.0f", x) end
    return string.format("%.1f", x)
end

local function budget_text(r)
    if r.is_ut then
        return string.format("TCP_USER_TIMEOUT=%d ms", math.floor(r.budget * 1000 + 0.5))
    end
    return string.format("tcp_retries2=%d: %s s", r.retries2 or 15, r.budget >= 100 and string.format("%.1f", r.budget) or fmt_s(r.budget))
end

function M.render(tree, r)
    if r.outcome ~= nil then
        tree:add(F.retries_outcome, r.outcome)
        tree:add(F.retries_count, r.count)
        tree:add(F.retries_elapsed_s, r.elapsed)
        if r.first_f ~= nil then tree:add(F.retries_first_frame, r.first_f) end
        local txt
        if r.outcome == "recovered" then
            txt = string.format("retries episode ended: recovered — ACK after %d retransmission%s (%d RTO) of %d B, stall %s s since the first send%s",
                r.count, r.count == 1 and "" or "s", r.rto_n, r.bytes or 0, fmt_s(r.elapsed),
                r.abort_at and string.format(" (the kernel would have aborted at ≈%s s)", fmt_s(r.abort_at)) or "")
        else
            txt = string.format("retries episode ended: reset — RST from the %s after %d retransmission%s (%d RTO) of %d B, %s s since the first send",
                r.who == "sender" and "sender itself" or "peer (e.g. it restarted)",
                r.count, r.count == 1 and "" or "s", r.rto_n, r.bytes or 0, fmt_s(r.elapsed))
        end
        tree:add_proto_expert_info(E.retries_ended, txt)
        return
    end
    tree:add(F.retries_count, r.count)
    local it = tree:add(F.retries_elapsed_s, r.elapsed)
    if r.orig_seen == false then
        -- e.g. a receiver-side capture: the lost original never reached this capture point
        it:append_text(" (the original is not in this capture: counted from the first transmission seen)")
    end
    if r.abort_at ~= nil then tree:add(F.retries_abort_at_s, r.abort_at) end
    if r.other then return end
    tree:add(F.retries_rto_count, r.rto_n)
    tree:add(F.retries_budget_s, r.budget)
    if r.first_f ~= nil then tree:add(F.retries_first_frame, r.first_f) end
    if r.approaching then
        local deadline = r.is_ut and "an RPC deadline fails faster" or
            "a deadline or TCP_USER_TIMEOUT fails faster"
        -- expert texts stay within core.EXPERT_MAX bytes
        tree:add_proto_expert_info(E.retries_approaching, string.format(
            "retries approaching tcp_retries2: retransmission #%d of %d B, %s s without ACK; Linux gives up at ≈%s s or later (%s from RTO #1) — %s",
            r.count, r.bytes or 0, fmt_s(r.elapsed), fmt_s(r.abort_at), budget_text(r), deadline))
    end
    if r.final then
        tree:add_proto_expert_info(E.retries_final, string.format(
            "retries: last retransmission before the predicted abort: #%d (RTO #%d) of %d B, %s s without ACK; next RTO ≈%s s is past the budget (%s from RTO #1 at %s s): ETIMEDOUT",
            r.count, r.rto_n, r.bytes or 0, fmt_s(r.elapsed), fmt_s(r.abort_at), budget_text(r), fmt_s(r.stamp_at)))
    end
end

---------------------------------------------------------------------------------------------------
-- -z tcpstall columns

local function worst(st)
    local a = st.a.retries
    return a and a.worst
end

local function outcome_of(ep)
    if ep == nil then return nil end
    if ep.outcome ~= nil then return ep.outcome end
    if ep.abort_t ~= nil and last_time ~= nil and last_time >= ep.abort_t + 0.001 then return "aborted" end
    return "capture-ends"
end

M.columns = {
    { key = "retries_max", title = "Retries max", get = function(st) local a = st.a.retries return a and a.max_count or 0 end },
    { key = "retries_rto_max", title = "RTO max", get = function(st) local a = st.a.retries return a and a.max_rto or 0 end },
    { key = "retries_stall_s", title = "Retries stall s", get = function(st)
        local ep = worst(st)
        if ep == nil then return "-" end
        local te = ep.end_t or ep.last_t
        return string.format("%.3f", te - ep.first_t)
    end },
    { key = "retries_abort_at_s", title = "Retries abort at s", get = function(st)
        local ep = worst(st)
        if ep == nil or ep.abort_t == nil then return "-" end
        return string.format("%.3f", ep.abort_t - ep.first_t)
    end },
    { key = "retries_outcome", title = "Retries outcome", get = function(st) return outcome_of(worst(st)) or "-" end },
}

return M
