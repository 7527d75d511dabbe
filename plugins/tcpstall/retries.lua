-- tcpstall/retries.lua: "retries approaching tcp_retries2" analyzer, with the kernel's abort timing.
--
-- Incident C (DESIGN.md §1): the peer vanishes, Linux retransmits the unacknowledged data with
-- exponential backoff and aborts the connection (ETIMEDOUT) once the tcp_retries2 budget is spent.
--
-- Per direction, an *episode* is a run of retransmissions of one thing (`tcpstall.retries.kind`):
--   data   request data the peer does not acknowledge: the only kind that warns and predicts;
--   fin    a FIN-only retransmission (the application already closed: tcp_orphan_retries);
--   syn    SYN / SYN-ACK retransmissions (tcp_syn_retries / tcp_synack_retries);
--   probe  keepalive or zero-window probes (nothing in flight; Linux sends them as pure ACKs one
--          below the next sequence number).
-- The last three get one `tcpstall.retries.control` note per episode and never the retries warning.
-- An episode ends when the peer ACKs past it (recovered), a RST is seen (reset by the peer; the
-- sender's own RST when its next retransmission was due is `aborted`: it gave up on its timer), or
-- with the capture (`capture_ends` / `aborted`, shown on the last retransmission on revisits).
--
-- Data episodes: the *head* is the data at the cumulative ACK; its retransmissions are numbered
-- (`tcpstall.retries.count`, the tail loss probe included), the RTO ones separately
-- (`tcpstall.retries.rto_count` = the kernel's icsk_retransmits).
--
-- Abort prediction = what tcp_write_timeout() decides (net/ipv4/tcp_timer.c, kernel 6.18), only
-- while the observed backoff is Linux's (`tcpstall.retries.linux_like`):
--   * budget T = tcp_model_timeout(tcp_retries2, TCP_RTO_MIN, rto_max) (DESIGN.md §2): the kernel
--     counts it with the constant TCP_RTO_MIN = 200 ms whatever the route's rto_min or
--     net.ipv4.tcp_rto_min_us say, and with the socket's tcp_rto_max(); or TCP_USER_TIMEOUT when set
--     (and then the RTO timer is clamped to fire when T runs out);
--   * T is counted from tp->retrans_stamp = the time of the first retransmission that went through
--     tcp_retransmit_skb(): the first RTO (or fast/RACK) retransmission. A tail loss probe does NOT
--     set it. Verified on the lab captures (README.md "Which instant the abort budget counts from");
--   * the budget is checked only when the RTO timer fires (and only once icsk_retransmits >= 1):
--     the abort is the first RTO expiry at or after retrans_stamp + T. Future expiries are simulated
--     from the RTO intervals observed in the capture (they include the timer slack and the route's
--     rto_min): base RTO = median of interval_k / 2^(k-1) over the last three RTOs seen, doubling,
--     capped at rto_max (or at the median capped interval observed).
-- Settings the user did not give (`-o tcpstall.tcp_retries2:6` ...) are assumed at Linux's defaults
-- and listed in `tcpstall.retries.assumed` and the texts.
--
-- The first retransmission of a lone segment is usually a tail loss probe: PTO = min(2·SRTT +
-- 200 ms, RTO) ≈ RTO on a short path, and the probe does not back off the RTO timer, so the first
-- RTO follows one plain RTO later: two equal intervals, then doubling. When the second interval
-- equals the first, the first retransmission is relabelled `tlp`; when it doubles, `rto`.
--
-- See README.md for the analyzer contract. Side-effect free when loaded without `core`.
local core = ...
if type(core) ~= "table" then return {} end

local F, E = core.F, core.E

local M = { name = "retries" }

-- include/net/tcp.h: the rto_base of tcp_model_timeout() for an established connection (HZ / 5)
M.TCP_RTO_MIN_MS = 200

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

-- tcp_model_timeout(): seconds. rto_base_ms / rto_max_ms integers (ms), retries2 >= 0.
function M.model_timeout(retries2, rto_base_ms, rto_max_ms)
    if rto_base_ms == nil or rto_base_ms < 1 then rto_base_ms = 1 end
    if rto_max_ms == nil or rto_max_ms < rto_base_ms then rto_max_ms = rto_base_ms end
    retries2 = math.floor(retries2 or 15)
    if retries2 < 0 then retries2 = 0 end
    if retries2 > 255 then retries2 = 255 end
    local thresh = ilog2(math.floor(rto_max_ms / rto_base_ms))
    local ms
    if retries2 <= thresh then
        ms = (2 ^ (retries2 + 1) - 1) * rto_base_ms
    else
        ms = (2 ^ (thresh + 1) - 1) * rto_base_ms + (retries2 - thresh) * rto_max_ms
    end
    return ms / 1000
end

-- budget T (s) and whether it is TCP_USER_TIMEOUT
local function budget()
    local s = core.settings
    local ut = s.user_timeout_ms or 0
    if ut > 0 then return ut / 1000, true end
    return M.model_timeout(s.tcp_retries2 or 15, M.TCP_RTO_MIN_MS, s.rto_max_ms or 120000), false
end

-- The settings the prediction rests on that the user did not give (`tcpstall.retries.assumed`):
-- TCP_USER_TIMEOUT unset; tcp_retries2 and rto_max when no user timeout replaces the budget;
-- rto_min while no RTO interval has been observed (it then sets the estimated RTO).
local function assumed_list(observed)
    local s = core.settings
    local g = s.given or {}
    local parts = {}
    local ut = (s.user_timeout_ms or 0) > 0
    if not ut and not g.tcp_retries2 then parts[#parts + 1] = string.format("tcp_retries2=%d", s.tcp_retries2 or 15) end
    if not observed and not g.rto_min_ms then parts[#parts + 1] = string.format("rto_min_ms=%d", s.rto_min_ms or 200) end
    if not ut and not g.rto_max_ms then parts[#parts + 1] = string.format("rto_max_ms=%d", s.rto_max_ms or 120000) end
    if not g.user_timeout_ms then parts[#parts + 1] = "user_timeout_ms=0" end
    return table.concat(parts, ",")
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
        a = { max_count = 0, max_rto = 0, control = 0, worst = nil }
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
-- data episodes: the kernel's view from the head's transmissions

-- RTO count, retrans_stamp, RTO intervals.
local function derive(ep)
    local s = core.settings
    local rto_max = (s.rto_max_ms or 120000) / 1000
    local rto_n, stamp_t = 0, nil
    local ratios, capped = {}, {}
    local tx = ep.tx
    for i = 1, #tx do
        local x = tx[i]
        local trig = x.rtx.trigger
        if trig ~= "tlp" and stamp_t == nil then stamp_t = x.t end
        if trig == "rto" then
            rto_n = rto_n + 1
            local g = x.gap
            if g ~= nil and g > 0.001 then
                if g >= rto_max * 0.95 then
                    capped[#capped + 1] = g
                else
                    ratios[#ratios + 1] = g / (2 ^ (rto_n - 1))
                end
            end
        end
    end
    ep.rto_n, ep.stamp_t = rto_n, stamp_t
    ep.ratios, ep.capped = ratios, capped
end

-- Is the head's backoff Linux's? Consecutive RTO intervals (with nothing else retransmitted in
-- between) double until rto_max and never exceed it. Returns false and the reason when not.
local function backoff_is_linux(ep)
    local rto_max = (core.settings.rto_max_ms or 120000) / 1000
    local prev = nil
    local tx = ep.tx
    for i = 1, #tx do
        local x = tx[i]
        if x.rtx.trigger == "rto" and x.gap ~= nil and x.gap > 0.001 then
            if x.gap > rto_max * 1.1 + 0.05 then return false, "over_rto_max" end
            if prev ~= nil and x.clean and prev.gap * 2 < rto_max * 0.9 then
                local ratio = x.gap / prev.gap
                if ratio < 1.6 then return false, "not_doubling" end
                if ratio > 2.6 then return false, "faster_than_doubling" end
            end
            prev = x
        else
            prev = nil
        end
    end
    return true, nil
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
    local out1 = res1 and res1.retries and res1.retries.tx
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
-- Returns also whether the base was observed (false: estimated from rto_min and the SRTT).
local function rto_model(ep, fwd)
    local s = core.settings
    local rto_max = (s.rto_max_ms or 120000) / 1000
    -- the RTOs observed so far, latest first: median of the last three interval_k / 2^(k-1). The
    -- timer wheel rounds every expiry up to its level's granularity, so each interval carries
    -- slack; the latest (longest) intervals run on the coarsest level, as the next ones will, and
    -- the median drops a stray one (this kernel: 212, 436, 828, 1668, 3328, 6656 ms -> 13312 ms).
    -- The intervals also carry the sender's real RTO floor (a route's rto_min, tcp_rto_min_us):
    -- with `rto_min 50ms` they start at ~58 ms.
    local last3 = {}
    for i = #ep.ratios, 1, -1 do
        last3[#last3 + 1] = ep.ratios[i]
        if #last3 == 3 then break end
    end
    local base = median(last3)
    local observed = base ~= nil
    if base == nil then
        -- nothing observed yet: Linux RTO = SRTT + max(4·mdev, rto_min) ≈ SRTT + rto_min, rounded up
        -- to the timer tick, plus the timer wheel's slack (this kernel: 208 ms for 200 ms)
        local srtt = core.stream.srtt(fwd) or 0
        base = ((s.rto_min_ms or 200) / 1000 + srtt) * 1.02 + 0.004
    end
    if base < 0.001 then base = 0.001 end
    local cap = median(ep.capped) or rto_max
    if cap < rto_max then cap = rto_max end
    if cap < 0.001 then cap = 0.001 end
    return base, cap, rto_max, observed
end

-- Simulate the RTO timer from the last head transmission. Returns abort time (absolute), the
-- number of RTO retransmissions before it, the retrans_stamp used (absolute), T, is_ut, and
-- whether the backoff base was observed.
local function predict(ep, fwd)
    local T, is_ut = budget()
    local base, cap, rto_max, observed = rto_model(ep, fwd)
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
            return nxt, k, start, T, is_ut, observed
        end
        if start == nil then start = nxt end               -- this RTO sets retrans_stamp
        k = k + 1
        fire = nxt
    end
    return nil, k, start, T, is_ut, observed
end

---------------------------------------------------------------------------------------------------
-- episodes of every kind

-- The interval the next transmission of the episode is due after: the last one times the last
-- growth seen (doubling backoff: 2x; keepalive probes: 1x), 2x when only one interval is known.
local function next_gap(ep)
    local g1, g2 = ep.gap_last, ep.gap_prev
    if g1 == nil or g1 <= 0 then return nil end
    local growth = 2
    if g2 ~= nil and g2 > 0 then
        growth = g1 / g2
        if growth < 0.5 then growth = 0.5 end
        if growth > 3 then growth = 3 end
    end
    return g1 * growth
end

-- Did the sender's own RST at time t come when its next transmission was due (its timer gave
-- up), rather than at some other moment (an application's reset)?
local function rst_when_due(ep, t)
    local ng = next_gap(ep)
    if ng == nil or ep.count < 2 then return false end
    local due = ep.last_t + ng
    return math.abs(t - due) <= ng * 0.25 + 0.02
end

-- A keepalive or zero-window probe: a pure ACK (or 1 byte) one below the next sequence number,
-- nothing in flight (Linux's tcp_xmit_probe_skb; Windows/BSD send one byte there). The sequence
-- number of a pure ACK is read only after its direction was idle (tcpstall.lua first_pass).
local function probe_shape(pkt, fwd, rev)
    if pkt.syn or pkt.fin or pkt.rst or pkt.len > 1 or not pkt.seq_raw then return nil end
    local high = fwd.high
    if high == nil or pkt.seq ~= high - 1 then return nil end
    if fwd.snd_una ~= nil and fwd.snd_una < high then return nil end
    if rev.win_raw == 0 then return "zero_window" end
    return "keepalive"
end

local function new_episode(pkt, fwd, rtx, kind, probe)
    local ep = {
        kind = kind, probe = probe,
        tx = {}, count = 0, rto_n = 0,
        stamp_t = nil, ratios = {}, capped = {},
        abort_t = nil, linux_like = true, why_not = nil,
        outcome = nil, last_t = pkt.time, last_f = pkt.number,
        gap_last = nil, gap_prev = nil,
    }
    if kind == "probe" and not rtx then
        -- the probes themselves are the episode, counted from the first one; an ACK past the next
        -- sequence number (one below which the probe sits) means a probe's byte was accepted
        ep.s, ep.first_t, ep.first_f, ep.orig_seen, ep.arm_t = pkt.seq + 1, pkt.time, pkt.number, true, pkt.time
        return ep
    end
    -- the head: the data at the cumulative ACK (snd_una) when known, else this retransmission
    local s = rtx.s
    local first_t, first_f = rtx.first_t, nil
    local una = fwd.snd_una
    if kind == "data" and una ~= nil and una < s then
        local seg = fwd.segs[fwd.segs_head]
        if seg ~= nil and seg[1] <= una and seg[2] > una then   -- { s, e, first send t, f, ... }
            s, first_t, first_f = una, seg[3], seg[4]
        else
            s = una
        end
    elseif rtx.n == 1 and rtx.first_t ~= nil then
        first_f = rtx.prev_f
    end
    if kind == "syn" then s = pkt.seq end                       -- the ISN: the SYN-ACK / ACK acknowledges isn + 1
    ep.s, ep.first_t, ep.first_f, ep.orig_seen = s, first_t or pkt.time, first_f, first_t ~= nil
    ep.arm_t = rtx.prev_t or rtx.t
    return ep
end

-- The outcome of an episode that nothing ended while the capture ran: `aborted` when the capture
-- goes on past the predicted Linux abort (or, without a prediction, well past the next transmission
-- due) with nothing sent, else `capture_ends`.
local function outcome_of(ep)
    if ep == nil then return nil end
    if ep.outcome ~= nil then return ep.outcome end
    if last_time ~= nil then
        if ep.kind == "data" and ep.linux_like and ep.abort_t ~= nil then
            if last_time >= ep.abort_t + 0.001 then return "aborted" end
        else
            local ng = next_gap(ep)
            if ng ~= nil and last_time > ep.last_t + 1.5 * ng + 0.05 then return "aborted" end
        end
    end
    return "capture_ends"
end

-- the record of the frame that ends an episode (rendered there on every pass)
local function end_record(ep, t)
    return {
        outcome = ep.outcome, who = ep.reset_by, kind = ep.kind, probe = ep.probe, synack = ep.synack, count = ep.count,
        rto_n = ep.rto_n, elapsed = r6(t - ep.first_t), first_f = ep.first_f, linux_like = ep.linux_like,
        abort_at = ep.linux_like and ep.abort_t and ep.outcome == "recovered" and r6(ep.abort_t - ep.first_t) or nil,
    }
end

-- is the end worth showing? data: after an RTO; SYN/FIN: always; probes: once one went unanswered
local function end_shown(ep)
    if ep.kind == "data" then return ep.rto_n >= 1 end
    if ep.kind == "probe" then return ep.count >= 2 or ep.outcome ~= "recovered" end
    return ep.count >= 1
end

local function close_episode(ep, outcome, pkt, who, out)
    ep.outcome, ep.end_t, ep.reset_by = outcome, pkt.time, who
    if end_shown(ep) then
        local r = out.retries
        if r == nil then r = {} out.retries = r end
        -- one frame can end two episodes, one per direction (the ACK that completes a handshake ends
        -- the client's SYN and the server's SYN-ACK retransmissions): a record for each
        r.ended = r.ended or {}
        r.ended[#r.ended + 1] = end_record(ep, pkt.time)
    end
    -- the episode is over: its per-transmission records (one table per head transmission) only
    -- served derive / backoff_is_linux / relabel_first while it ran. The results that keep the
    -- episode (render, -z tcpstall) read its summary fields, never these.
    ep.tx, ep.ratios, ep.capped = false, false, false
end

-- Does this packet (from the peer of `ep`'s sender) end the episode? outcome, who
local function answer(ep, pkt)
    if pkt.rst then return "reset", "peer" end
    -- a SYN-ACK answering a SYN: at a server-side capture it may never reach the client; the
    -- client's own next packet (its ACK) ends the SYN episode (on_packet)
    if pkt.syn and ep.kind == "syn" then return nil, nil end
    local acked = pkt.ack and pkt.ack > ep.s
    if ep.kind == "probe" then
        -- any answer shows the peer is alive; a zero-window probe ends when the window opens
        if ep.probe == "keepalive" or acked or (pkt.win_raw and pkt.win_raw > 0) then return "recovered", nil end
        return nil, nil
    end
    if acked then return "recovered", nil end
    return nil, nil
end

---------------------------------------------------------------------------------------------------
-- first pass

-- what this packet retransmits or probes: kind, probe (nil: nothing for this analyzer)
local function classify(pkt, fwd, rev, rtx, ep)
    if rtx then
        if pkt.syn then return "syn", nil end
        if ep ~= nil and ep.kind == "data" then return "data", nil end   -- a FIN behind unacknowledged data
        if rev.win_raw == 0 then return "probe", "zero_window" end      -- 1-byte probes, a shrunk window
        if pkt.fin and pkt.len == 0 then return "fin", nil end
        return "data", nil
    end
    local probe = probe_shape(pkt, fwd, rev)
    if probe ~= nil then return "probe", probe end
    return nil, nil
end

-- The budget and the settings a head transmission's result shows (render reads .budget, .is_ut,
-- .retries2, .retries2_given), one table shared by every result made under the same settings: with
-- them in each result it had 17 keys, a 32-node hash part (1.3 KB) kept for every head
-- retransmission of a capture; with 14 keys it has 16 nodes.
local cfg_cache = nil

local function budget_cfg(T, is_ut, s)
    local g = s.given or {}
    local c = cfg_cache
    if c ~= nil and c.budget == T and c.is_ut == is_ut and c.retries2 == s.tcp_retries2
        and c.retries2_given == g.tcp_retries2 then
        return c
    end
    c = { budget = T, is_ut = is_ut, retries2 = s.tcp_retries2, retries2_given = g.tcp_retries2 }
    cfg_cache = c
    return c
end

-- a transmission of the data episode's head: numbers, prediction, warnings
local function data_head(ep, pkt, fwd, rtx, st)
    local t = pkt.time
    local x = ep.tx[#ep.tx]
    if ep.count == 2 then relabel_first(ep, x) end
    derive(ep)
    local ok, why = backoff_is_linux(ep)
    if not ok and ep.linux_like then ep.linux_like, ep.why_not = false, why end
    local s = core.settings
    local abort_t, abort_k, _, T, is_ut, observed = predict(ep, fwd)
    if not ep.linux_like then abort_t, abort_k = nil, nil end
    ep.abort_t = abort_t
    local spent = (ep.stamp_t ~= nil) and (t - ep.stamp_t) or 0
    local approaching = ep.rto_n >= 1 and rtx.trigger == "rto"
        and (ep.rto_n >= (s.tcp_retries1 or 3) or spent >= T / 2)
    local final = abort_t ~= nil and abort_k == ep.rto_n and ep.rto_n >= 1
    local a = agg(st)
    if ep.count > a.max_count then a.max_count = ep.count end
    if ep.rto_n > a.max_rto then a.max_rto = ep.rto_n end
    if ep.rto_n >= 1 then
        local w = a.worst
        if w == nil or w == ep or ep.rto_n >= w.rto_n then a.worst = ep end
    end
    return {
        ep = ep, kind = "data", count = ep.count, rto_n = ep.rto_n, elapsed = r6(t - ep.first_t),
        abort_at = abort_t and r6(abort_t - ep.first_t), cfg = budget_cfg(T, is_ut, s),
        first_f = ep.first_f, orig_seen = ep.orig_seen,
        approaching = approaching, final = final,
        linux_like = ep.linux_like, why_not = ep.why_not,
        assumed = ep.linux_like and assumed_list(observed) or nil,
    }
end

function M.on_packet(pkt, fwd, rev, out, st)
    local t = pkt.time
    if last_time == nil or t > last_time then last_time = t end

    -- 1. this packet answers or ends the reverse direction's episode (ACK past the head, RST, ...)
    local ra = rev.a.retries
    local rep = ra and ra.ep
    if rep ~= nil then
        local outcome, who = answer(rep, pkt)
        if outcome ~= nil then
            close_episode(rep, outcome, pkt, who, out)
            ra.ep = nil
        end
    end
    local ds = fwd.a.retries
    local ep = ds and ds.ep
    -- 2. our own RST ends our episode: the sender gave up on its timer (aborted) or reset it
    if pkt.rst then
        if ep ~= nil then
            local outcome = rst_when_due(ep, t) and "aborted" or "reset"
            -- Linux never resets a connection when tcp_retries2 runs out (tcp_write_err() sends nothing)
            if outcome == "aborted" and ep.kind == "data" and ep.linux_like then
                ep.linux_like, ep.why_not = false, "reset_on_timer"
            end
            close_episode(ep, outcome, pkt, "sender", out)
            ds.ep = nil
        end
        return
    end

    -- 3. a retransmission or a probe of this direction
    local rtx = pkt.rtx
    -- (fast path, most packets: without a retransmission only a probe can be something, and a
    -- probe carries at most one byte and has its sequence number read: probe_shape)
    local kind, probe = nil, nil
    if rtx or (pkt.len <= 1 and pkt.seq_raw) then kind, probe = classify(pkt, fwd, rev, rtx, ep) end
    if kind == nil then
        if ep ~= nil then
            if ep.kind == "syn" and not pkt.syn then
                -- the SYN's sender moved on (its ACK of the SYN-ACK): the handshake completed
                close_episode(ep, "recovered", pkt, nil, out)
                ds.ep = nil
            elseif ep.kind == "probe" and pkt.len > 1 then
                ds.ep = nil                                -- new data: the window opened or the app sent again
            end
        end
        return
    end
    ds = dstate(fwd)
    if ep ~= nil and (ep.kind ~= kind or ep.probe ~= probe) then
        ep = nil                                           -- something else is retried now: a new episode
    end
    if ep == nil then
        ep = new_episode(pkt, fwd, rtx, kind, probe)
        ds.ep = ep
        if kind ~= "data" then local a = agg(st) a.control = a.control + 1 end
    end
    local is_head
    if kind == "data" then
        is_head = rtx.s <= ep.s and (rtx.e > ep.s or rtx.e == rtx.s)
    else
        is_head = true
    end
    if not is_head then
        -- other data retransmitted during the episode: its own number and age, the episode's abort
        ep.arm_t, ep.arm_head = t, false
        local first_t = rtx.first_t or t
        out.retries = out.retries or {}
        out.retries.tx = {
            ep = ep, kind = kind, count = rtx.n, elapsed = r6(t - first_t), orig_seen = rtx.first_t ~= nil,
            abort_at = ep.abort_t and r6(ep.abort_t - first_t), linux_like = ep.linux_like, other = true,
        }
        return
    end
    local gap = t - ep.arm_t
    if kind == "probe" and not rtx and ep.count == 0 then gap = nil end  -- the first probe: nothing before it
    local x = { t = t, f = pkt.number, rtx = rtx or false, gap = gap, clean = ep.arm_head ~= false }
    ep.tx[#ep.tx + 1] = x
    ep.count = #ep.tx
    if gap ~= nil then ep.gap_prev, ep.gap_last = ep.gap_last, gap end
    ep.arm_t, ep.arm_head = t, true
    ep.last_t, ep.last_f = t, pkt.number
    local res
    if kind == "data" then
        res = data_head(ep, pkt, fwd, rtx, st)
    else
        -- a SYN episode is the client's SYNs or the server's SYN-ACKs, never both: the end record says which
        ep.synack = kind == "syn" and pkt.ackf
        res = {
            ep = ep, kind = kind, probe = probe, count = ep.count, elapsed = r6(t - ep.first_t),
            first_f = ep.first_f, orig_seen = ep.orig_seen, synack = ep.synack,
            -- one note per episode: on its first retransmission, or on the second probe (the first
            -- went unanswered, or the window stayed shut through a probe round)
            control = (kind == "probe" and ep.count == 2) or (kind ~= "probe" and ep.count == 1),
        }
    end
    out.retries = out.retries or {}
    out.retries.tx = res
end

---------------------------------------------------------------------------------------------------
-- every pass

local function fmt_s(x)
    if x == nil then return "?" end
    if x >= 100 then return string.format("%.0f", x) end
    return string.format("%.1f", x)
end

local function plural(n, word)
    return string.format("%d %s%s", n, word, n == 1 and "" or "s")
end

-- the settings behind a prediction, in words: "tcp_retries2=6: 25.4 s", "TCP_USER_TIMEOUT=3000 ms";
-- `mark`: say "assumed" when the user did not give tcp_retries2
local function budget_text(r, mark)
    if r.is_ut then
        return string.format("TCP_USER_TIMEOUT=%d ms", math.floor(r.budget * 1000 + 0.5))
    end
    return string.format("%stcp_retries2=%d: %.1f s", (mark and not r.retries2_given) and "assumed " or "",
        r.retries2 or 15, r.budget)
end

local WHY_NOT = {
    over_rto_max = "its RTO grew past rto_max_ms",
    not_doubling = "its RTO stopped doubling below rto_max_ms",
    faster_than_doubling = "its RTO grew faster than doubling",
    reset_on_timer = "it reset the connection itself when its next retransmission was due",
}

local CONTROL_TEXT = {
    fin = "retransmitted FIN, no data outstanding: the application already closed the connection; an orphaned socket is retried per tcp_orphan_retries (0 means 8), not tcp_retries2; no request waits on it",
    syn = "SYN retransmission: the peer does not answer the connection request; connect() waits, no request data is outstanding; governed by tcp_syn_retries (Linux: 1 s initial RTO), not tcp_retries2",
    synack = "SYN-ACK retransmission: the client does not complete the handshake; governed by tcp_synack_retries, not tcp_retries2; no request data is outstanding",
    keepalive = "keepalive probe unanswered: the connection is idle (no data outstanding) and the peer does not answer; SO_KEEPALIVE gives up after tcp_keepalive_probes / TCP_KEEPCNT probes (Linux sends a RST)",
    zero_window = "zero-window probe: the receiver's window is zero and the sender probes it, nothing in flight; answered probes never abort, only unanswered ones count (tcp_retries2, tcp_probe_timer)",
}

local WHAT = { fin = "FIN retransmission", syn = "SYN retransmission", keepalive = "keepalive probe",
               zero_window = "zero-window probe" }

local function what(r)
    if r.kind == "syn" and r.synack then return "SYN-ACK retransmission" end
    return WHAT[r.probe or r.kind] or "retransmission"
end

local function render_end(tree, r)
    tree:add(F.retries_outcome, r.outcome)
    tree:add(F.retries_kind, r.kind)
    tree:add(F.retries_count, r.count)
    tree:add(F.retries_elapsed_s, r.elapsed)
    if r.first_f ~= nil then tree:add(F.retries_first_frame, r.first_f) end
    if r.who ~= nil and r.outcome ~= "recovered" then tree:add(F.retries_reset_by, r.who) end
    if r.probe ~= nil then tree:add(F.retries_probe, r.probe) end
    if r.kind == "syn" then tree:add(F.retries_synack, r.synack and true or false) end
    local txt
    if r.kind == "data" then
        tree:add(F.retries_rto_count, r.rto_n)
        tree:add(F.retries_linux_like, r.linux_like)
        if r.abort_at ~= nil then tree:add(F.retries_abort_at_s, r.abort_at) end
        local n = plural(r.count, "retransmission")
        if r.outcome == "recovered" then
            txt = string.format("retries episode ended: recovered — ACK after %s (%d RTO), stall %s s since the first send%s",
                n, r.rto_n, fmt_s(r.elapsed),
                r.abort_at and string.format(" (the kernel would have aborted at ≈%s s)", fmt_s(r.abort_at)) or "")
        elseif r.outcome == "aborted" then
            txt = string.format("retries episode ended: aborted — the sender reset the connection itself after %s (%d RTO), %s s since the first send, when its next retransmission was due: not Linux (it aborts silently)",
                n, r.rto_n, fmt_s(r.elapsed))
        else
            txt = string.format("retries episode ended: reset — RST from the %s after %s (%d RTO), %s s since the first send: the connection is gone, no tcp_retries2 abort",
                r.who == "sender" and "sender itself" or "peer (e.g. it restarted)", n, r.rto_n, fmt_s(r.elapsed))
        end
    else
        local n = plural(r.count, what(r))
        if r.outcome == "recovered" then
            local how = { fin = "the peer ACKed the FIN", syn = "the handshake went on",
                          keepalive = "the peer answered", zero_window = "the receiver opened its window" }
            txt = string.format("retries episode ended: recovered — %s after %s, %s s after the first",
                how[r.probe or r.kind] or "answered", n, fmt_s(r.elapsed))
        elseif r.outcome == "aborted" then
            txt = string.format("retries episode ended: aborted — the sender reset the connection after %s (none answered), %s s after the first: it gave up",
                n, fmt_s(r.elapsed))
        else
            txt = string.format("retries episode ended: reset — RST from the %s after %s, %s s after the first",
                r.who == "sender" and "sender itself" or "peer", n, fmt_s(r.elapsed))
        end
    end
    tree:add_proto_expert_info(E.retries_ended, txt)
end

-- a control retransmission or probe (FIN, SYN, keepalive, zero-window): numbers and one note
local function render_control(tree, r, ep, last)
    tree:add(F.retries_kind, r.kind)
    tree:add(F.retries_count, r.count)
    tree:add(F.retries_elapsed_s, r.elapsed)
    if r.first_f ~= nil then tree:add(F.retries_first_frame, r.first_f) end
    if r.probe ~= nil then tree:add(F.retries_probe, r.probe) end
    if r.kind == "syn" then tree:add(F.retries_synack, r.synack and true or false) end
    if last then tree:add(F.retries_outcome, outcome_of(ep)) end
    if r.control then
        local key = r.probe or r.kind
        if r.kind == "syn" and r.synack then key = "synack" end
        tree:add_proto_expert_info(E.retries_control, CONTROL_TEXT[key])
    end
end

local function render_data(tree, r, ep, revisit, last)
    -- on revisits (tshark -2, the GUI) the episode's final verdict: the evidence that the sender is
    -- not Linux (a reset on its own timer) may come after this frame
    local linux_like = r.linux_like
    local outcome = ep.outcome
    if revisit then linux_like = ep.linux_like else outcome = nil end
    tree:add(F.retries_kind, "data")
    tree:add(F.retries_count, r.count)
    local it = tree:add(F.retries_elapsed_s, r.elapsed)
    if r.orig_seen == false then
        -- e.g. a receiver-side capture: the lost original never reached this capture point
        it:append_text(" (the original is not in this capture: counted from the first transmission seen)")
    end
    -- a prediction only for a Linux-like sender, and not once a RST ended the connection
    local predicted = linux_like and r.abort_at ~= nil and outcome ~= "reset"
    if predicted then tree:add(F.retries_abort_at_s, r.abort_at) end
    if r.other then return end
    tree:add(F.retries_rto_count, r.rto_n)
    local c = r.cfg                           -- budget and settings (budget_cfg)
    tree:add(F.retries_budget_s, c.budget)
    tree:add(F.retries_budget_from, c.is_ut and "user_timeout" or "tcp_retries2")
    if r.first_f ~= nil then tree:add(F.retries_first_frame, r.first_f) end
    tree:add(F.retries_linux_like, linux_like)
    if not linux_like then tree:add(F.retries_not_linux, ep.why_not or r.why_not or "") end
    if linux_like and r.assumed ~= nil then tree:add(F.retries_assumed, r.assumed) end
    if last then tree:add(F.retries_outcome, outcome_of(ep)) end
    if r.approaching then
        local head = string.format("retries approaching tcp_retries2: retransmission #%d, %s s without ACK; ", r.count, fmt_s(r.elapsed))
        local txt
        if not linux_like then
            txt = head .. string.format("the sender does not behave like Linux (%s): no Linux abort prediction",
                WHY_NOT[ep.why_not or r.why_not] or "its backoff")
        elseif outcome == "reset" then
            txt = head .. "then a RST ended the connection (outcome reset): no tcp_retries2 abort"
        else
            -- the budget and the settings it rests on; an assumed tcp_retries2 is in the assumed list
            local settings = (c.is_ut or c.retries2_given) and budget_text(c, false)
                or string.format("budget %.1f s", c.budget)
            if r.assumed ~= nil and r.assumed ~= "" then settings = settings .. "; assumed " .. r.assumed end
            txt = head .. string.format("Linux gives up at ≈%s s (%s)", fmt_s(r.abort_at), settings)
            local advice = c.is_ut and "; an RPC deadline fails faster" or "; a deadline or TCP_USER_TIMEOUT fails faster"
            -- expert texts stay within core.EXPERT_MAX bytes
            if #txt + #advice <= core.EXPERT_MAX then txt = txt .. advice end
        end
        tree:add_proto_expert_info(E.retries_approaching, txt)
    end
    if r.final and linux_like and (outcome == nil or outcome == "aborted") then
        tree:add_proto_expert_info(E.retries_final, string.format(
            "retries: last retransmission before the predicted abort: #%d (RTO #%d), %s s without ACK; next RTO ≈%s s is past the budget (%s from RTO #1): ETIMEDOUT",
            r.count, r.rto_n, fmt_s(r.elapsed), fmt_s(r.abort_at), budget_text(c, true)))
    end
end

function M.render(tree, r, number)
    for _, e in ipairs(r.ended or {}) do render_end(tree, e) end
    local x = r.tx
    if x == nil then return end
    local ep = x.ep
    local revisit = not core.first_visit
    -- an episode nothing ended: its outcome (capture_ends / aborted) on its last transmission, once
    -- the whole capture has been seen (revisits)
    local last = revisit and ep.outcome == nil and ep.last_f == number and not x.other
    if x.kind == "data" then
        render_data(tree, x, ep, revisit, last)
    else
        render_control(tree, x, ep, last)
    end
end

---------------------------------------------------------------------------------------------------
-- -z tcpstall columns (data episodes: the one with the most RTO retransmissions)

local function worst(st)
    local a = st.a.retries
    return a and a.worst
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
        if ep == nil or ep.abort_t == nil or not ep.linux_like or ep.outcome == "reset" then return "-" end
        return string.format("%.3f", ep.abort_t - ep.first_t)
    end },
    { key = "retries_outcome", title = "Retries outcome", get = function(st) return outcome_of(worst(st)) or "-" end },
    { key = "retries_linux_like", title = "Linux-like", get = function(st)
        local ep = worst(st)
        if ep == nil then return "-" end
        return tostring(ep.linux_like)
    end },
    { key = "retries_control", title = "Control retries", get = function(st) local a = st.a.retries return a and a.control or 0 end },
}

return M
