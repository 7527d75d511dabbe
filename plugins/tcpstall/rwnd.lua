-- tcpstall/rwnd.lua: receiver window throttling analyzer (DESIGN.md section 1 B).
--
-- Per data direction S (the sender) and its receiver R = S.peer:
--
-- * R's window in bytes. The shift comes from the handshake when it is in the capture, else from
--   Wireshark's `tcp.default_window_scaling` pref when the user set it (tcp.window_size_scalefactor
--   is then known without a handshake), else it is INFERRED: the bytes S has in flight can never
--   exceed the window S knows, so flight <= raw * 2^k for every sample gives a lower bound k_min,
--   and a plateau of the flight AT raw * 2^k_min (within one segment, at least one full segment in
--   flight, at least 4 times, on at least 2 different ACKs, never above) fixes k = k_min. Samples
--   count only once S's turn is measured (TS echo / data->ACK), so that a receiver-side capture
--   does not count ACKs S had not seen yet. Until then the scale is reported as unknown
--   (`tcpstall.rwnd.scale` = -1), never guessed; a later sample above the bound revises it.
--
-- * "The window S knew" when it sent a segment: R's ACKs are kept in a small ring
--   {time, ack, raw window, frame}; a data segment seen at time t was sent knowing the ACKs seen
--   up to t - turn(S) (turn = capture point -> S -> capture point, ~0 at a sender-side capture,
--   ~RTT at a receiver-side capture), so the same code works at both capture points.
--
-- * Window-limited sending: a new-data segment whose end reaches the known right edge
--   (ack + window) minus one segment is a "hit" (S has filled the window). When an ACK moves the
--   edge at least one segment beyond what S has sent, the window is "open"; S then either fills it
--   again promptly (waiting for ACKs: window-limited) or leaves it open (congestion window,
--   application, idle). An episode is a run of hits in which no open period lasted longer than
--   max(2 x RTT, 2 ms) (at a receiver-side capture max(8 x RTT, 25 ms): an ACK delayed on its way
--   to the sender cannot be told from a sender pause there) and in which S spent at most half the
--   time with an open window. It ends at the ACK that opened the window S then did not fill
--   (`tcpstall.rwnd.end_frame`), reported on the first frame that shows this (any later packet of
--   the connection), or never if the capture ends first.
--
-- * RTT: per round, the sender's turn (opening ACK seen -> data filling the window seen) plus the
--   receiver's turn (that data seen -> its ACK seen), averaged over the episode; this is the
--   data->ACK RTT at a sender-side capture and the ACK->data (TS-echo) turn at a receiver-side one.
--   Before an episode has both, the core's turns (data->ACK pairs, TS echo).
--
-- * Reported (expert `tcpstall.rwnd.throttling`, warn) once when the episode has lasted
--   `rwnd_min_episode_ms` (and >= 3 refills, scale known or inferred), on that frame, and once on
--   the frame that ends it, with window, shift, RTT, cap = window / RTT, duration, bytes, the rule of thumb "time ~ bytes / window x RTT", and the likely
--   cause (steady small window + prompt ACKs: small receive buffer; shrinking window: application
--   not reading; rounds much longer than the RTT: slow/delayed ACKs).
--
-- Per-frame fields: window-limited data frames of an episode carry window / scale / inferred /
-- cap / limited_ms so far; R's frames carry window and scale when the window or the scale changes.
--
-- See README.md for the analyzer contract. Side-effect free when loaded without `core`.
local core = ...
if type(core) ~= "table" then return {} end

local stream = core.load("stream")
local F, E = core.F, core.E

-- per_frame: an episode's final report is shown on the frame that ended it when frames are
-- revisited (two-pass, the GUI); see M.render
local M = { name = "rwnd", per_frame = true }

local RING = 256               -- R's ACKs remembered per direction (only those not yet known to S)
local MAX_SHIFT = 14
local huge = math.huge
local floor = math.floor
local format = string.format

local ends                     -- end frame -> the episode's final report
local live                     -- direction state -> {S = sender, st = stream} while a confirmed episode runs
local closed                   -- live episodes closed as "capture_end" (first revisit)
local senders                  -- {A, S} of every direction seen sending (see cannot_tell)
local untold                   -- frame -> {why, A}: where the capture could not tell (first revisit)

function M.reset() ends, live, closed, senders, untold = {}, {}, false, {}, {} end

---------------------------------------------------------------------------------------------------
-- formatting

local function fmt_int(n)
    local s = tostring(floor(n + 0.5))
    local neg = s:sub(1, 1) == "-"
    if neg then s = s:sub(2) end
    local out = s:reverse():gsub("(%d%d%d)", "%1 "):reverse()
    if out:sub(1, 1) == " " then out = out:sub(2) end
    return (neg and "-" or "") .. out
end

local function fmt_ms(sec)
    if sec == nil then return "?" end
    local ms = sec * 1000
    if ms >= 100 then return format("%.0f", ms) end
    if ms >= 10 then return format("%.1f", ms) end
    return format("%.2f", ms)
end

local function fmt_dur(sec)
    if sec >= 1 then return format("%.2f s", sec) end
    return format("%.1f ms", sec * 1000)
end

-- an estimate, in the precision it deserves: "3.0 s", "12 s", "450 ms"
local function fmt_approx(sec)
    if sec >= 10 then return format("%.0f s", sec) end
    if sec >= 1 then return format("%.1f s", sec) end
    return format("%.0f ms", sec * 1000)
end

-- "2 079 208 B at 1148 B per 1.67 ms ≈ 3.0 s": the rule of thumb bytes / window x RTT in words
local function fmt_predicted(bytes, w, rtt)
    return format("%s B at %s B per %s ms ≈ %s", fmt_int(bytes), fmt_int(w), fmt_ms(rtt),
        fmt_approx(bytes / w * rtt))
end

local function round3(x) return floor(x * 1000 + 0.5) / 1000 end

---------------------------------------------------------------------------------------------------
-- the MSS of the "N×MSS" wording (issue 14.8). The largest segment seen is not it when the
-- capture has offload super-segments (GRO at the receiver, TSO/GSO at the sender: one 2896-byte
-- "segment" where the handshake said 1460), so:
-- * handshake in the capture: the MSS R announced in its SYN (what S may send), or S's own when it
--   is smaller (S's MTU), less the 12 bytes of the timestamp option when S sends timestamps
--   (TCPOLEN_TSTAMP_ALIGNED: Linux's mss_cache; 1460 -> 1448 on every lab capture);
-- * else the most common length among the large ones (the full-size segments of a bulk transfer;
--   super-segments of merged pairs, tails and small writes are rarer).
-- The largest length (A.mss) still sets the "within one segment" tolerances of the detection.

local LENS_MAX = 16            -- distinct lengths counted per direction (a small table, no GC load)

-- one new-data segment without a handshake: count its length when it is at least half the largest
-- seen (the candidates for full size); per packet one table read and write
local function count_len(A, len)
    if 2 * len < A.mss then return end
    local lens = A.lens
    if lens == nil then
        lens = {}
        A.lens, A.nlens = lens, 0
    end
    local c = lens[len]
    if c ~= nil then lens[len] = c + 1 return end
    if A.nlens >= LENS_MAX then
        -- full: drop the lengths that are no longer candidates (below half the largest, which
        -- has grown since), at most once per new largest length
        if A.lens_pruned == A.mss then return end
        A.lens_pruned = A.mss
        local n = 0
        for l in pairs(lens) do
            if 2 * l < A.mss then lens[l] = nil else n = n + 1 end
        end
        A.nlens = n
        if n >= LENS_MAX then return end
    end
    lens[len] = 1
    A.nlens = A.nlens + 1
end

local function seg_size(A, S)
    local m = S.peer.mss
    if m ~= nil and m > 0 then
        if S.mss ~= nil and S.mss > 0 and S.mss < m then m = S.mss end
        if not S.no_ts and m > 12 then m = m - 12 end
        return m
    end
    local best, best_n = A.mss, 0
    if A.lens ~= nil then
        for l, c in pairs(A.lens) do
            if 2 * l >= A.mss and (c > best_n or (c == best_n and l > best)) then best, best_n = l, c end
        end
    end
    return best
end

---------------------------------------------------------------------------------------------------
-- per sender-direction state: S.a.rwnd

local function state(S)
    local A = S.a.rwnd
    if A == nil then
        A = {
            -- ring of R's window advertisements (for S's data), newest at index n
            qt = {}, qa = {}, qr = {}, qu = {}, qf = {},
            n = 0, ptr = 0,           -- entries 1..n pushed; 1..ptr known to S
            last_ack = nil, last_raw = nil,
            -- what S knew at the last data segment: ack, raw window, unscaled (SYN) flag
            kack = nil, kraw = nil, kuns = false, kedge = nil, kf = nil,
            -- scale of R's window: k (shift), src = "handshake" / "pref" / "inferred" / nil
            k = nil, src = nil, kmin = 0, touches = 0, touch_acks = 0, touch_last_ack = nil,
            unknown_noted = false, shown_w = nil, shown_k = nil,
            -- S's sending
            high = nil, mss = 0, bytes = 0,
            full_t = nil, gap_min = nil, gap_max = nil, gap_n = 0, -- ACK of all S sent -> S's next data (s_turn)
            rel_t = nil, rel_n = 0, rel_quick = 0, rel_min = nil, -- ACK with data in flight -> S's next data (s_turn)
            blind_n = 0, blind_t0 = nil, blind_t1 = nil, blind_f = nil, -- new data sent while S's turn was unknown
            open_since = nil, open_t = nil, open_f = nil,
            ep = nil, tol = 0.002,
            reported = false,        -- an episode of S was reported (and ended)
        }
        S.a.rwnd = A
        senders[#senders + 1] = { A = A, S = S }
    end
    return A
end

-- S's turn (capture point -> S -> capture point). The core measures it from TS echoes or the
-- handshake. Without either (no TCP timestamps, handshake not captured) it is estimated here from
-- data->ACK pairing alone: an ACK of everything S has sent, then S's next new data. At a
-- sender-side capture S answers at once (gap << R's data->ACK turn); at a receiver-side capture
-- of a stop-and-wait transfer S's data comes back a whole path round trip later (gap >> R's
-- turn). A gap in between (a stream still in flight at the receiver, an idle sender) tells
-- neither: the turn stays unknown and nothing is inferred.
--
-- A window of many segments is never ACKed in full while S streams. There a sender-side capture
-- shows S's reaction instead: nearly every ACK that advances while data is in flight is followed
-- by S's new data within a fifth of R's turn (ACK clocking: small-rcvbuf-16k-nots-nohs-client,
-- 2-4 us after ACKs 1.5 ms apart, R's turn 10 ms). At a receiver-side capture R ACKs what arrived
-- and the next data comes at the pace of the arrivals: no such reaction, and there, without TCP
-- timestamps or the handshake, nothing in the capture measures S's turn (a smooth window-limited
-- stream looks the same for a window W at RTT T as for 2W at 2T): it stays unknown.
--
-- The stop-and-wait reading (g >= 5 x R's turn) also needs the pauses after the full ACKs to be
-- alike (the longest within 3 x the shortest): each is a whole round trip there. A stream's ACK of
-- a pair of segments can look like the ACK of a full window when raw x 2^j is about two segments
-- for a j below the real shift (small-rcvbuf-clamp20k-nots at the receiver, raw 198 at shift 7:
-- 198 x 2^4 = 3 168 B), and then the pauses are the 0.3 ms between pairs and, once per round, the
-- rest of the round: the shift was inferred as 4.
local function s_turn(A, S)
    if S.turn_min ~= nil then return S.turn_min end
    local g, r = A.gap_min, S.peer.turn_min
    if r == nil then return nil end
    if g ~= nil and A.gap_n >= 4 and (g <= 0.2 * r or (g >= 5 * r and A.gap_max <= 3 * g)) then return g end
    if A.rel_n >= 16 and A.rel_quick >= 0.9 * A.rel_n then return A.rel_min end
    return nil
end

local function mult(A)
    return 2 ^ (A.k or A.kmin)
end

-- R's last raw window in bytes as a window that holds `flight`: at the known shift, else at the
-- smallest shift from the lower bound up that holds it (see on_advert)
local function full_window(A, flight)
    local w = A.last_raw * mult(A)
    if A.k == nil and A.last_raw > 0 then
        local k = A.kmin
        while w < flight and k < MAX_SHIFT do k = k + 1 w = w * 2 end
    end
    return w
end

-- The steady window: the one at least 80 % of the window-limited sends saw — the current window
-- when they saw it since it last changed, else the largest of the episode (a small buffer dips
-- below its size now and then as the application reads: small-rcvbuf-2048-nots, 1 722 B with 33
-- of 1 449 ACKs at 1 148 B; whether the last dip came late decided the cause at one capture point
-- and not at the other). nil when the window moved more than that.
local function steady_w(ep)
    if ep.same >= 0.8 * ep.hits then return ep.w_last end
    if ep.at_max >= 0.8 * ep.hits then return ep.w_max end
    return nil
end

-- RTT of the window-limited rounds: the sender's turn (opening ACK seen -> the data filling the
-- window seen) plus the receiver's turn (that data seen -> its ACK seen), each averaged over the
-- rounds of the episode, whatever the capture point (so window / RTT is the throughput the
-- episode could reach, and bytes / window x RTT predicts its duration); before the episode has
-- both, the core's estimate (data->ACK pairs, TS echo).
local function rtt_of(S, ep)
    local A = S.a.rwnd
    if ep == nil then ep = A and A.ep end
    local w = ep and steady_w(ep)
    if w ~= nil and w > 0 and ep.dur > 0 then
        -- a steady window: one window per round, so the round is what the rounds took (the
        -- per-round turn samples of the party next to the capture point include its pauses, e.g.
        -- a burst still being sent, and overstate it with windows of dozens of segments). While
        -- the episode runs, its first window was sent before its clock started.
        local rounds = ep.bytes_now / w - (ep.end_f == nil and 1 or 0)
        if rounds >= 4 then return ep.dur / rounds end
    end
    local R = S.peer
    local s, r
    if ep ~= nil and ep.s_n > 0 then s = ep.s_sum / ep.s_n else s = s_turn(A, S) end
    if ep ~= nil and ep.r_n > 0 then r = ep.r_sum / ep.r_n else r = R.turn_s or R.turn_min end
    if s == nil or r == nil then return nil end     -- one half unknown: no RTT rather than half of it
    local rtt = s + r
    if rtt <= 0 then return nil end
    return rtt
end

-- shift of R's advertisement in this packet: shift, source (nil when unknown)
local function pkt_shift(pkt, R)
    local sc = pkt.win_scale
    if not sc then return nil, nil end
    local hs = R.isn ~= nil or R.peer.isn ~= nil
    if sc == -2 then return 0, "handshake" end
    if sc >= 0 then return sc, hs and "handshake" or "pref" end
    return nil, nil
end

-- Move S's knowledge forward: R's ACKs seen up to now - turn(S) (+ a small margin: including an
-- ACK too early only makes the known edge higher, which is the safe side for the inference).
local function advance(A, S, now)
    local n = A.n
    local p = A.ptr
    if p >= n then return end
    local turn = s_turn(A, S) or 0
    local lim = now - turn + 0.0002
    if n - p > RING then p = n - RING end          -- overwritten: skip to the oldest kept
    local qt, qa, qr, qu, qf = A.qt, A.qa, A.qr, A.qu, A.qf
    local m = mult(A)
    if A.ep == nil then
        -- no episode: only the newest known ACK matters (no open-window bookkeeping). Scan
        -- forward from the last known one, like the episode branch below: each ACK is passed
        -- once (scanning back from the newest re-read every ACK still in flight to S, i.e. a
        -- whole RTT's worth per packet at a receiver-side capture)
        local j = p
        while j < n and qt[j % RING + 1] <= lim do j = j + 1 end
        if j > p then
            local i = (j - 1) % RING + 1
            local ack, raw = qa[i], qr[i]
            local edge = ack + (qu[i] and raw or raw * m)
            A.kack, A.kraw, A.kuns, A.kf = ack, raw, qu[i], qf[i]
            if A.kedge == nil or edge > A.kedge then A.kedge = edge end
            A.ptr = j
        end
        return
    end
    local high, mss = A.high, A.mss
    while p < n do
        local i = p % RING + 1                       -- slot of entry p + 1
        local t = qt[i]
        if t > lim then break end
        p = p + 1
        local ack, raw = qa[i], qr[i]
        local edge = ack + (qu[i] and raw or raw * m)
        A.kack, A.kraw, A.kuns, A.kf = ack, raw, qu[i], qf[i]
        if A.kedge == nil or edge > A.kedge then A.kedge = edge end
        if A.open_since == nil and high ~= nil and mss > 0 and A.kedge - high >= mss then
            A.open_since = t + turn
            A.open_t, A.open_f, A.open_ack = t, qf[i], true
        end
    end
    A.ptr = p
end

---------------------------------------------------------------------------------------------------
-- episodes

local function result(out)
    local r = out.rwnd
    if r == nil then
        r = {}
        out.rwnd = r
    end
    return r
end


local function typical_w(ep)
    local w = steady_w(ep)
    if w ~= nil then return w end
    if ep.decreases >= 2 then return ep.w_last end
    return ep.hits > 0 and floor(ep.w_sum / ep.hits + 0.5) or ep.w_last
end

-- likely cause: code, short phrase (for the expert), advice (for the cause item)
-- `rtt`: mean round of the episode; `path`: minimum RTT of the connection
local function slow_rounds(rtt, path)
    return rtt ~= nil and path ~= nil and rtt > 2 * path + 0.005
end

-- A delayed ACK holds back the ACK of a lone segment (two full segments are ACKed at once: Linux,
-- Windows), for at least 40 ms on Linux (TCP_DELACK_MIN) and 200 ms by default on Windows: rounds
-- of a window below two segments that last 10 ms or more may be the receiver's timer. Whether they
-- are needs the path RTT apart from the receiver's answer time, i.e. the handshake (a SYN is
-- answered at once): every later turn, TS echo included, has the delay in it, and a capture of
-- data -> ACK 40 ms -> data 1.6 ms looks the same at the receiver (its ACKs delayed by 40 ms) as
-- at the sender (a 40 ms path). (rewritten captures: lab/rewrite.py edit --delay-acks)
local DELACK_ROUND_S = 0.010

-- `closed`: the window stayed closed long enough that the reader set the pace (reader_stalled);
-- `handshake`: the connection's handshake is in the capture (the path RTT is known)
local function cause_of(ep, rtt, path, mss, closed, handshake)
    local w = typical_w(ep)
    local rounds = w > 0 and ep.bytes_now / w or 0
    local per_round = rounds >= 1 and ep.dur / rounds or nil
    if closed then
        return "app_not_reading", "likely: app not reading",
            "the window closed (zero window) as the receive buffer filled: the receiving application did not read for a while (busy, blocked, or reading too slowly); Wireshark flags the zero windows and probes"
    end
    local steady = steady_w(ep)
    if steady == nil and ep.decreases >= 2 and ep.w_last <= 0.5 * ep.w_max then
        return "app_not_reading", "likely: app not reading",
            format("window shrank from %s B to %s B as the receive buffer filled: the receiving application reads slower than the data arrives (zero window itself: Wireshark's zero-window flags)",
                fmt_int(ep.w_max), fmt_int(ep.w_last))
    end
    if slow_rounds(rtt, path) then
        if ep.ack_g1 > 0 and ep.ack_g2 / ep.ack_g1 < 0.25 * rtt then
            -- long rounds, but R's ACKs came back spread over each round (the time-weighted mean
            -- silence between them is a small part of a round), not in a lump after a delay: the
            -- window drains through a slower link and waits in its queue (issue 15.5)
            return "window_limited", "likely: a slower link (queue)",
                format("each window took %s ms to be acknowledged while the path RTT is %s ms, but its ACKs came back spread over the round (not delayed): the window waits in the queue of a slower link (about %.1f Mbit/s), which sets the pace; a larger window would only fill the queue",
                    fmt_ms(rtt), fmt_ms(path), w * 8 / rtt / 1e6)
        end
        return "delayed_ack", "likely: slow ACKs",
            format("each window took %s ms to be acknowledged while the path RTT is %s ms: delayed ACKs or a busy receiver",
                fmt_ms(rtt), fmt_ms(path))
    end
    if not handshake and w < 2 * mss and (per_round or rtt or 0) >= DELACK_ROUND_S then
        return "window_limited", nil,
            format("the receiver's window (%s B, under two segments) limits the sender, a window per %s ms: a small receive buffer on a slow path, or the receiver's delayed ACKs; without the handshake the path RTT is unknown, so the capture cannot tell",
                fmt_int(w), fmt_ms(per_round or rtt))
    end
    if steady ~= nil then
        return "small_rcvbuf", "likely: small SO_RCVBUF",
            format("window steady at %s B, receiver ACKs promptly (a window per %s ms): small receive buffer; check the receiver's SO_RCVBUF (disables autotuning), net.ipv4.tcp_rmem, net.core.rmem_max",
                fmt_int(steady), fmt_ms(per_round or rtt))
    end
    return "window_limited", nil,
        format("the receiver's window (%s..%s B) limits the sender", fmt_int(ep.w_min), fmt_int(ep.w_max))
end

-- Did the receiving application stop reading? A zero window that lasted rwnd_min_episode_ms, or a
-- tenth of the episode. A tiny buffer also closes its window for a moment now and then as it
-- fills (small-rcvbuf-2048-nots: 0.1 ms of zero window in a 2 s window-limited transfer, the app
-- reading all along): then window / RTT, not the reader, set the pace.
local function reader_stalled(ep, zero_s)
    if not ep.zero then return false end
    return zero_s >= (core.settings.rwnd_min_episode_ms or 100) / 1000 or (ep.dur > 0 and zero_s >= 0.1 * ep.dur)
end

-- snapshot of an episode for rendering (start report or end report)
local function report(A, S, ep, final)
    local rtt = rtt_of(S, ep)
    local w = final and typical_w(ep) or ep.w_last
    local mss = seg_size(A, S)
    local path = stream.rtt_min(S)
    if path ~= nil and path <= 0 then path = nil end
    local zero_s = ep.zero_s + ((not final and A.zero_t ~= nil) and ep.last_t - A.zero_t or 0)
    local closed = reader_stalled(ep, zero_s)
    local cause, cause_short, cause_txt = cause_of(ep, rtt, path, mss, closed, S.isn ~= nil and S.peer.isn ~= nil)
    return {
        final = final,
        w = w, w_min = ep.w_min, w_max = ep.w_max, k = A.k, inf = A.src == "inferred", src = A.src,
        mss = mss, rtt = rtt, path = path, cap = rtt and (w * 8 / rtt / 1e6) or nil,
        dur = ep.dur, bytes = ep.bytes_now, start_f = ep.start_f, start_t = ep.start_t,
        end_f = final and ep.end_f or nil, hits = ep.hits,
        open_frac = ep.dur > 0 and ep.open_total / ep.dur or 0,
        cause = cause, cause_short = cause_short, cause_txt = cause_txt, zero = closed,
        -- at one window per round trip these bytes take bytes / window x RTT
        -- (not when the window stayed closed: then the reader, not window / RTT, set the pace)
        predicted = (rtt ~= nil and w > 0 and not closed) and ep.bytes_now / w * rtt or nil,
        zero_s = zero_s, ended_by = final and (ep.ended_by or "window_opened") or nil,
        ongoing = ep.ended_by == "reset" or ep.ended_by == "capture_end" or not final,
    }
end

local function agg(st)
    local a = st.a.rwnd
    if a == nil then
        a = { episodes = 0, limited_s = 0, min_w = nil }
        st.a.rwnd = a
    end
    return a
end

-- `how`: nil (the window opened and S left it unused: the episode ended at that ACK), "reset"
-- (a RST at `now`, frame `f`) or "capture_end" (still window-limited at the last frame)
local function end_episode(A, S, st, out, now, how, f)
    local ep = A.ep
    A.ep = nil
    if ep == nil then return end
    live[A] = nil
    if not ep.confirmed then return end
    if how == nil then
        ep.end_t = A.open_t or ep.last_t
        ep.end_f = A.open_f or ep.last_f
    else
        ep.end_t, ep.end_f, ep.ended_by = now, f, how
    end
    if ep.end_t < ep.last_t then ep.end_t = ep.last_t end
    if A.zero_t ~= nil then
        ep.zero_s = ep.zero_s + (ep.end_t - A.zero_t)
        A.zero_t = nil
    end
    ep.dur = ep.end_t - ep.start_t
    ep.bytes_now = ep.high - ep.una0
    local rep = report(A, S, ep, true)
    if out ~= nil then result(out).fin = rep end
    ends[rep.end_f] = rep
    A.reported = true
    local a = agg(st)
    a.episodes = a.episodes + 1
    a.limited_s = a.limited_s + ep.dur
    if a.min_w == nil or rep.w < a.min_w then a.min_w = rep.w end   -- the episode's (typical) window
end

-- every packet of the stream: has S left an open window unused for too long?
local function tick(A, S, st, out, now)
    if A.n > A.ptr then advance(A, S, now) end
    local ep = A.ep
    if ep ~= nil and A.zero_t ~= nil then
        -- a closed window lasts while S waits (probes, unanswered ones too)
        ep.last_t, ep.last_f, ep.dur = now, st.last_f, now - ep.start_t
    end
    if ep ~= nil and A.open_since ~= nil and now - A.open_since > A.tol then
        end_episode(A, S, st, out, now)
    end
end

-- scale inference from one new-data segment (flight = de - known ack, raw = known raw window)
local function infer(A, S, st, pkt, flight, raw, out)
    if raw <= 0 or A.kuns then return end
    local k = A.kmin
    local changed = false
    while k < MAX_SHIFT and flight > raw * 2 ^ k do
        k = k + 1
        changed = true
    end
    if changed then
        A.kmin = k
        A.touches, A.touch_acks, A.touch_last_ack = 0, 0, nil
        if A.ep ~= nil and A.ep.confirmed then end_episode(A, S, st, out, pkt.time) end
        A.ep, A.open_since = nil, nil              -- episodes under a smaller shift were not real
        A.kedge = nil
        -- and so were the full windows S's turn was taken from (see on_advert): at a smaller shift
        -- an ACK of a pair of segments can look like one of a full window (raw 198 x 2^4 = 3 168 B
        -- for 2 920 B: the 0.1 ms between pairs became S's turn; a receiver-side capture without
        -- timestamps and handshake, SO_RCVBUF 20 000 after accept)
        A.gap_min, A.gap_max, A.gap_n = nil, nil, 0
        if A.src == "inferred" then
            A.src, A.k = nil, nil                  -- revise: infer again at the new lower bound
            result(out).note = format("window scale revised: %s B in flight exceeds raw window %d x 2^%d; shift is at least %d",
                fmt_int(flight), raw, k - 1, k)
        end
    end
    local w = raw * 2 ^ k
    local tol = A.mss
    if tol > w / 4 then tol = w / 4 end
    -- a touch: the flight reaches raw * 2^k (within a segment) with at least one full segment in
    -- flight (tiny flights next to a tiny raw value prove nothing: at a receiver-side capture the
    -- flight is underestimated by the ACKs the sender had not seen yet)
    if flight >= w - tol and flight > raw * 2 ^ (k - 1) and flight >= A.mss then
        A.touches = A.touches + 1
        if A.touch_last_ack ~= A.kack then
            A.touch_acks = A.touch_acks + 1
            A.touch_last_ack = A.kack
        end
        if A.src == nil and A.touches >= 4 and A.touch_acks >= 2 then
            A.src, A.k = "inferred", k
            A.kedge = nil
            local r = result(out)
            r.infer_note = format(
                "window scale inferred: shift %d (x%d): bytes in flight reach raw window %d x %d = %s B (%d times, on %d ACKs) and never exceed it",
                k, 2 ^ k, raw, 2 ^ k, fmt_int(w), A.touches, A.touch_acks)
            r.w, r.k, r.inf = w, k, true
        end
    end
end

local function on_data(A, S, pkt, out, st)
    local t = pkt.time
    advance(A, S, t)
    local de = pkt.de
    local len = pkt.len
    if len > A.mss then A.mss = len end
    if S.peer.mss == nil then count_len(A, len) end     -- no handshake: the MSS from the lengths
    if A.first == nil then A.first, A.first_t = pkt.ds, t end
    A.last_t = t
    if s_turn(A, S) == nil then
        -- sent while S's turn was unknown: nothing about the window can be inferred from it (a turn
        -- measured later, e.g. from the reply after an upload, comes too late; see cannot_tell)
        A.blind_n = A.blind_n + 1
        if A.blind_t0 == nil then A.blind_t0, A.blind_f = t, pkt.number end
        A.blind_t1 = t
    end
    if A.high == nil or de > A.high then A.high = de end
    if A.kack == nil then return end                -- no ACK from R known yet
    local ack, raw = A.kack, A.kraw
    local flight = de - ack
    if A.full_t ~= nil then
        -- the first new data after an ACK of everything S had sent (see s_turn)
        local g = t - A.full_t
        A.full_t = nil
        if A.gap_min == nil or g < A.gap_min then A.gap_min = g end
        if A.gap_max == nil or g > A.gap_max then A.gap_max = g end
        A.gap_n = A.gap_n + 1
    end
    if A.rel_t ~= nil then
        -- the first new data after an ACK that advanced with data in flight (see s_turn): quick
        -- when within a fifth of R's turn; the quickest is S's turn (a few of the others waited
        -- for more room: an ACK that opened less than a segment)
        -- (not counted before R's turn is measured)
        local g, r = t - A.rel_t, S.peer.turn_min
        A.rel_t = nil
        if r ~= nil then
            A.rel_n = A.rel_n + 1
            if g <= 0.2 * r then
                A.rel_quick = A.rel_quick + 1
                if A.rel_min == nil or g < A.rel_min then A.rel_min = g end
            end
        end
    end
    if A.src ~= "handshake" and A.src ~= "pref" and not A.kuns and s_turn(A, S) ~= nil then
        -- (only once S's turn is measured: without it a receiver-side capture would count ACKs
        -- the sender had not seen yet and see tiny flights)
        infer(A, S, st, pkt, flight, raw, out)
    end
    local m = A.kuns and 1 or mult(A)
    local w = raw * m
    local edge = ack + w
    if A.kedge ~= nil and A.kedge > edge then edge = A.kedge end
    A.kedge = edge
    local mss = A.mss
    -- window-limited: it ends within a segment of the right edge, not beyond it (flight <= window:
    -- a segment past the edge is a window we do not know exactly, not one the sender waited on)
    local hit = de >= edge - mss and de <= edge
    local ep = A.ep
    if hit then
        local gap = 0
        if A.open_since ~= nil then
            gap = t - A.open_since
            if gap < 0 then gap = 0 end
        end
        if ep ~= nil and gap > A.tol then
            end_episode(A, S, st, out, t)
            ep = nil
        end
        if A.open_ack and ep ~= nil then
            local smp = t - A.open_t
            ep.s_sum, ep.s_n = ep.s_sum + smp, ep.s_n + 1
        end
        A.open_since, A.open_t, A.open_f, A.open_ack = nil, nil, nil, false
        A.hit_t, A.hit_de = t, de
        local rtt = rtt_of(S)
        local tol = rtt and 2 * rtt or 0
        if tol < 0.002 then tol = 0.002 end
        if (s_turn(A, S) or 0) > (S.peer.turn_min or 0) then
            -- receiver-side capture: an ACK delayed on its way to the sender looks like a pause
            -- of the sender; allow for path jitter
            local jt = rtt and 8 * rtt or 0
            if jt < 0.025 then jt = 0.025 end
            if jt > tol then tol = jt end
        end
        A.tol = tol
        if ep == nil then
            ep = {
                start_t = t, start_f = pkt.number, una0 = ack, high = de,
                hits = 0, refills = 0, open_total = 0, last_t = t, last_f = pkt.number,
                w_min = w, w_max = w, w_first = w, w_last = w, w_sum = 0, same = 0, at_max = 0, decreases = 0,
                confirmed = false, dur = 0, bytes_now = 0, s_sum = 0, s_n = 0, r_sum = 0, r_n = 0,
                zero_s = 0, ack_g1 = 0, ack_g2 = 0,
            }
            A.ep = ep
            result(out)         -- the start frame always gets a (possibly empty) tcpstall tree
        else
            ep.refills = ep.refills + 1
            ep.open_total = ep.open_total + gap
        end
        ep.hits = ep.hits + 1
        ep.w_sum = ep.w_sum + w
        if w == ep.w_last then ep.same = ep.same + 1
        else
            if w < ep.w_last then ep.decreases = ep.decreases + 1 end
            ep.same = 1
        end
        if w < ep.w_min then ep.w_min = w end
        if w > ep.w_max then ep.w_max, ep.at_max = w, 1 elseif w == ep.w_max then ep.at_max = ep.at_max + 1 end
        ep.w_last = w
        if de > ep.high then ep.high = de end
        ep.last_t, ep.last_f = t, pkt.number
        ep.dur = t - ep.start_t
        ep.bytes_now = ep.high - ep.una0
        if A.src ~= nil then
            local r = result(out)
            r.w, r.k, r.inf = w, A.k, A.src == "inferred"
            r.ms = ep.dur * 1000
            r.bytes = ep.bytes_now
            r.cap = rtt and (w * 8 / rtt / 1e6) or nil
            if not ep.confirmed then
                local min_s = (core.settings.rwnd_min_episode_ms or 100) / 1000
                if ep.dur >= min_s and ep.refills >= 3 and ep.open_total <= 0.5 * ep.dur then
                    ep.confirmed = true
                    live[A] = { S = S, st = st }
                    r.start = report(A, S, ep, false)
                end
            end
        end
    else
        if A.open_since == nil and edge - de >= mss then
            A.open_since, A.open_t, A.open_f, A.open_ack = t, t, pkt.number, false
        end
        if ep ~= nil and A.open_since ~= nil and t - A.open_since > A.tol then
            end_episode(A, S, st, out, t)
        end
    end
end

-- R (= fwd) advertises a window for S (= rev)
local function on_advert(A, R, pkt, out, st)
    local raw = pkt.win_raw
    local ack = pkt.ack
    if not raw or not ack then return end
    local uns = pkt.syn
    if uns then
        -- SYN-ACK after the peer's SYN: the shift is known from the handshake now
        if R.peer.isn ~= nil and A.src == nil then
            A.src = "handshake"
            A.k = (R.wscale ~= nil and R.peer.wscale ~= nil) and R.wscale or 0
        end
    elseif A.src ~= "handshake" then
        local k, src = pkt_shift(pkt, R)
        if src ~= nil and A.src ~= src and A.src ~= "handshake" then
            A.src, A.k = src, k
            A.kedge = nil
        elseif src == nil and A.src == nil and not A.unknown_noted then
            A.unknown_noted = true
            local r = result(out)
            r.unknown_note = true
        end
    end
    -- an ACK of everything S sent, when the ACK before it allowed S no more (S had filled that
    -- window): S's next data answers this ACK, and the time to it is S's turn. When the window still
    -- allowed more, that data may have been in flight already (at a receiver-side capture it
    -- arrives right after, or even before the ACK in the file: small-rcvbuf-2048-nots-nohs-server,
    -- where it made S's turn 0 and the window-limited rounds look like idle gaps). While the shift
    -- is unknown "that window" is the smallest one the shift allows that holds what S had sent:
    -- the lower bound alone (2^0 before any flight raised it) makes a tiny raw value look full
    -- (small-rcvbuf-clamp-nots-nohs-server, raw 162 in units of 128 B: every ACK of a pair of
    -- segments looked like one of a full window, and the 0.8 ms between pairs like S's turn)
    if R.peer.turn_min == nil and A.high ~= nil and ack >= A.high
        and (A.last_ack == nil or A.high >= A.last_ack + full_window(A, A.high - A.last_ack) - A.mss / 2) then
        A.full_t = pkt.time
    end
    if not uns and (A.adv_ack == nil or ack > A.adv_ack) then
        -- R's ACK advanced: sum the silences between its ACK advances during an episode, plain
        -- and squared (their ratio, the silence a random instant falls into, tells ACKs spread
        -- over the round from ACKs held back: see cause_of)
        local ep = A.ep
        if ep ~= nil and A.adv_t ~= nil and A.adv_t >= ep.start_t then
            local g = pkt.time - A.adv_t
            ep.ack_g1, ep.ack_g2 = ep.ack_g1 + g, ep.ack_g2 + g * g
        end
        A.adv_t, A.adv_ack = pkt.time, ack
        if R.peer.turn_min == nil and A.high ~= nil and ack < A.high then A.rel_t = pkt.time end
    end
    if A.hit_t ~= nil and ack >= A.hit_de then
        local smp = pkt.time - A.hit_t
        local ep = A.ep
        if ep ~= nil then ep.r_sum, ep.r_n = ep.r_sum + smp, ep.r_n + 1 end
        A.hit_t = nil
    end
    -- a zero window during an episode: R's receive buffer was full, its application did not read
    -- (the sender then sends only window probes, so the window-limited sends never see it)
    if raw == 0 and not uns and A.ep ~= nil then A.ep.zero = true end
    if raw == 0 and not uns then
        if A.zero_t == nil then A.zero_t = pkt.time end
    elseif A.zero_t ~= nil then
        if A.ep ~= nil then A.ep.zero_s = A.ep.zero_s + (pkt.time - A.zero_t) end
        A.zero_t = nil
    end
    local ep = A.ep
    if A.zero_t ~= nil and ep ~= nil then
        -- the window stays closed: S sends nothing but probes, so there are no refills to count.
        -- The episode lasts as long as the zero window, and a zero window that has lasted
        -- rwnd_min_episode_ms is reported (the app stopped reading; it may never resume)
        ep.last_t, ep.last_f = pkt.time, pkt.number
        ep.dur = pkt.time - ep.start_t
        if not ep.confirmed and pkt.time - A.zero_t >= (core.settings.rwnd_min_episode_ms or 100) / 1000
            and A.src ~= nil then
            ep.confirmed = true
            live[A] = { S = R.peer, st = st }
            result(out).start = report(A, R.peer, ep, false)
        end
    end
    if ack ~= A.last_ack or raw ~= A.last_raw then
        local n = A.n + 1
        local i = (n - 1) % RING + 1
        A.qt[i], A.qa[i], A.qr[i], A.qu[i], A.qf[i] = pkt.time, ack, raw, uns, pkt.number
        A.n = n
        A.last_ack, A.last_raw = ack, raw
    end
    -- show R's window when it (or what we know of the scale) changes
    if not uns then
        local k = A.src ~= nil and A.k or nil
        local w = k and raw * 2 ^ k or nil
        if w ~= A.shown_w or k ~= A.shown_k then
            A.shown_w, A.shown_k = w, k
            if k ~= nil then
                local r = result(out)
                r.aw, r.ak, r.ainf = w, k, A.src == "inferred"
            end
        end
    end
end

---------------------------------------------------------------------------------------------------

function M.on_packet(pkt, fwd, rev, out, st)
    local t = pkt.time
    local Af = fwd.a.rwnd
    if pkt.rst then
        -- a reset ends a running episode in either direction where it is
        for _, d in pairs(st.dirs) do
            local A = d.a.rwnd
            if A ~= nil and A.ep ~= nil then end_episode(A, d, st, out, t, "reset", pkt.number) end
        end
        return
    end
    -- fwd as the data sender, on what is not a retransmission by the core's own classification
    -- (Wireshark's tcp.analysis flags are not read: the verdict is the same with its sequence
    -- analysis off, as batch runs have it); a late original or a copy lies below what was sent
    -- and only ticks
    if pkt.len > 0 and not pkt.rtx then
        if Af == nil then Af = state(fwd) end
        if Af.high == nil or pkt.de > Af.high then
            on_data(Af, fwd, pkt, out, st)
        else
            tick(Af, fwd, st, out, t)
        end
    elseif Af ~= nil and Af.ep ~= nil then
        tick(Af, fwd, st, out, t)
    end
    -- fwd as the receiver of rev's data: its window advertisement
    if pkt.ackf and pkt.win_raw then
        local Ar = rev.a.rwnd
        if Ar == nil then Ar = state(rev) end
        on_advert(Ar, fwd, pkt, out, st)
        if Ar.ep ~= nil then tick(Ar, rev, st, out, t) end
    end
end

---------------------------------------------------------------------------------------------------

local function add(tree, f, v)
    return tree:add(f, v)
end

-- how an episode that did not end by the window opening ended, as the expert says it
local ENDED = { reset = " until the RST", capture_end = " until the capture ended" }

local function render_report(tree, rep)
    add(tree, F.rwnd_window, rep.w)
    add(tree, F.rwnd_scale, rep.k or -1)
    add(tree, F.rwnd_scale_inferred, rep.inf and true or false)
    if rep.cap ~= nil then add(tree, F.rwnd_cap_mbps, round3(rep.cap)) end
    if rep.rtt ~= nil then add(tree, F.rwnd_rtt_ms, round3(rep.rtt * 1000)) end
    add(tree, F.rwnd_limited_ms, core.ms(rep.dur))
    local b = rep.bytes > 0 and rep.bytes or 0
    add(tree, F.rwnd_bytes, UInt64.new(floor(b % 4294967296), floor(b / 4294967296)))
    add(tree, F.rwnd_start_frame, rep.start_f)
    if rep.end_f ~= nil then add(tree, F.rwnd_end_frame, rep.end_f) end
    add(tree, F.rwnd_cause, rep.cause)
    add(tree, F.rwnd_cause_text, rep.cause_txt)
    add(tree, F.rwnd_ongoing, rep.ongoing and true or false)
    if rep.ended_by ~= nil then add(tree, F.rwnd_ended_by, rep.ended_by) end
    if rep.predicted ~= nil then add(tree, F.rwnd_predicted_ms, round3(rep.predicted * 1000)) end
    if rep.zero_s > 0 then add(tree, F.rwnd_zero_window_ms, core.ms(rep.zero_s)) end
    -- the expert text (at most core.EXPERT_MAX bytes): the numbers that matter
    local segtxt = ""
    if rep.mss > 0 then
        local segs = rep.w / rep.mss
        segtxt = format(" (%s×MSS %d%s)", (segs == floor(segs)) and tostring(floor(segs)) or format("%.1f", segs), rep.mss,
            rep.inf and format(", shift %d inferred", rep.k or -1) or "")
    elseif rep.inf then
        segtxt = format(" (shift %d inferred)", rep.k or -1)
    end
    local captxt
    if rep.cap == nil then
        captxt = "(RTT not measured)"
    elseif slow_rounds(rep.rtt, rep.path) then
        captxt = format("caps throughput at %.1f Mbit/s at %s ms per round (path RTT %s ms)", rep.cap,
            fmt_ms(rep.rtt), fmt_ms(rep.path))
    else
        captxt = format("caps throughput at %.1f Mbit/s at RTT %s ms", rep.cap, fmt_ms(rep.rtt))
    end
    local txt
    if rep.zero then
        -- the window closed: not a window/RTT limit (no cap, no rule of thumb), the receiving
        -- application stopped reading
        txt = rep.final
            and format("receiver window throttling: the receiver's window closed (zero window) for %s; window-limited for %s, %s B sent%s",
                fmt_dur(rep.zero_s), fmt_dur(rep.dur), fmt_int(rep.bytes), ENDED[rep.ended_by] or "")
            or format("receiver window throttling: the receiver's window closed (zero window) for %s so far; window-limited since frame %d (%s)",
                fmt_dur(rep.zero_s), rep.start_f, fmt_dur(rep.dur))
    elseif rep.final then
        local sent = rep.predicted ~= nil and fmt_predicted(rep.bytes, rep.w, rep.rtt)
            or (fmt_int(rep.bytes) .. " B sent")
        txt = format("receiver window throttling: rwnd %s B%s %s; window-limited for %s%s: %s",
            fmt_int(rep.w), segtxt, captxt, fmt_dur(rep.dur), ENDED[rep.ended_by] or "", sent)
    else
        local thumb = ""
        if rep.rtt ~= nil and rep.w > 0 then thumb = "; 1 MB takes ≈ " .. fmt_approx(1e6 / rep.w * rep.rtt) end
        txt = format("receiver window throttling: rwnd %s B%s %s; window-limited since frame %d (%s)%s",
            fmt_int(rep.w), segtxt, captxt, rep.start_f, fmt_dur(rep.dur), thumb)
    end
    if rep.cause_short ~= nil and #txt + #rep.cause_short + 2 <= core.EXPERT_MAX then txt = txt .. "; " .. rep.cause_short end
    tree:add_proto_expert_info(E.rwnd_throttling, txt)
end

-- Could the capture not tell whether R's window limited S? When S streamed while its turn was not
-- measured (no TCP timestamps, no handshake, and a capture point that does not show S answering
-- ACKs, e.g. at the receiver: small-rcvbuf-16k-nots cut after its handshake, where only the reply
-- after the upload measures S's turn) and no episode was found: a window W at RTT T and 2W at 2T
-- look the same there, and silence would read as "not limited". "scale_and_rtt_unknown" when the
-- shift stayed unknown too, "rtt_unknown" when it was known (the user's tcp.default_window_scaling).
-- Only for a direction that streamed so: at least 64 new-data segments over at least
-- rwnd_min_episode_ms, its most common length at least 536 B (the smallest IPv4 MSS; a thin stream
-- of small writes is not window-limited) and seen at least 64 times. Returns the reason or nil.
local function cannot_tell(A, S)
    if A.blind_n < 64 or A.reported or (A.ep ~= nil and A.ep.confirmed) then return nil end
    if A.blind_t1 - A.blind_t0 < (core.settings.rwnd_min_episode_ms or 100) / 1000 then return nil end
    local len = seg_size(A, S)
    if len < 536 or A.lens == nil or (A.lens[len] or 0) < 64 then return nil end
    return A.src == nil and "scale_and_rtt_unknown" or "rtt_unknown"
end

-- "cannot tell" on the first frame S sent while its turn was unknown (revisits only: in one pass
-- the end of the capture is not known yet; -z tcpstall has the rwnd_cannot_tell column)
local function render_untold(tree, u)
    local A = u.A
    add(tree, F.rwnd_cannot_tell_reason, u.why)
    local window = A.k == nil and format("raw window %d", A.last_raw or 0)
        or format("window %s B", fmt_int((A.last_raw or 0) * 2 ^ A.k))
    -- (at most core.EXPERT_MAX bytes; the advice is in README "Receiver window analyzer")
    tree:add_proto_expert_info(E.rwnd_cannot_tell, format(
        "receiver window: cannot tell if it limited the sender: no handshake%s, no TCP timestamps (the sender's round trip not seen here); %s B in %s, %s",
        A.k == nil and " (shift unknown)" or "", fmt_int(A.high - A.first), fmt_dur(A.last_t - A.first_t), window))
end

-- The first revisit (tshark -2 pass 2, the GUI) comes after the whole capture was read: an
-- episode still running then was window-limited up to its last window-limited frame, and its final
-- report (ended_by capture_end, ongoing) goes there. In one pass there is no later frame to show it
-- on: the window-limited frames carry limited_ms and bytes so far, and -z tcpstall counts it.
local function close_live()
    closed = true
    for A, l in pairs(live) do
        local ep = A.ep
        end_episode(A, l.S, l.st, nil, ep.last_t, "capture_end", ep.last_f)
    end
    -- and say where the capture could not tell
    for _, d in ipairs(senders) do
        local why = cannot_tell(d.A, d.S)
        if why ~= nil then untold[d.A.blind_f] = { why = why, A = d.A } end
    end
end

function M.visible(r, number)
    if core.first_visit then return r ~= nil end
    if not closed then close_live() end
    if ends[number] ~= nil or untold[number] ~= nil then return true end
    -- a frame whose only news was the end of an episode: on revisits that is shown on the end frame
    if r ~= nil and r.fin ~= nil and r.fin.end_f ~= number and r.start == nil and r.w == nil
        and r.aw == nil and not r.unknown_note and r.note == nil then
        return false
    end
    return r ~= nil
end

function M.render(tree, r, number)
    -- The end of an episode is known a few frames after the frame that ended it (the ACK whose
    -- window the sender then left unused). In one pass that frame is already printed: the final
    -- report goes on the frame where the end was seen. On revisits (two-pass, the GUI) it goes on
    -- the frame that ended the episode.
    local fin = r and r.fin
    if not core.first_visit then
        if fin ~= nil and fin.end_f ~= number then fin = nil end
        fin = fin or ends[number]
    end
    if fin ~= nil then render_report(tree, fin) end
    local u = not core.first_visit and untold[number]
    if u then render_untold(tree, u) end
    if r == nil then return end
    if r.start ~= nil then render_report(tree, r.start) end
    if fin == nil and r.start == nil then
        if r.w ~= nil then
            add(tree, F.rwnd_window, r.w)
            local it = add(tree, F.rwnd_scale, r.k or -1)
            if r.infer_note ~= nil then it:append_text(" — " .. r.infer_note) end
            add(tree, F.rwnd_scale_inferred, r.inf and true or false)
            if r.cap ~= nil then add(tree, F.rwnd_cap_mbps, round3(r.cap)) end
            if r.ms ~= nil then add(tree, F.rwnd_limited_ms, core.ms(r.ms / 1000)) end
            if r.bytes ~= nil then
                add(tree, F.rwnd_bytes, UInt64.new(floor(r.bytes % 4294967296), floor(r.bytes / 4294967296)))
            end
        elseif r.aw ~= nil then
            add(tree, F.rwnd_window, r.aw)
            add(tree, F.rwnd_scale, r.ak)
            add(tree, F.rwnd_scale_inferred, r.ainf and true or false)
        end
    end
    if r.unknown_note then
        local it = add(tree, F.rwnd_scale, -1)
        it:append_text(" — window scale unknown: the handshake is not in the capture (inferring it from the bytes in flight)")
    end
    if r.note ~= nil then
        local it = add(tree, F.rwnd_scale, -1)
        it:append_text(" — " .. r.note)
    end
end

---------------------------------------------------------------------------------------------------
-- -z tcpstall columns

-- the direction of the stream that sent the most data
local function bulk_dir(st)
    local best, bytes = nil, -1
    for _, d in pairs(st.dirs) do
        local A = d.a.rwnd
        if A ~= nil and A.high ~= nil then
            local b = A.high - (A.first or A.high)
            if b > bytes then best, bytes = d, b end
        end
    end
    return best
end

local function episodes_of(st)
    local a = st.a.rwnd
    local n, s, w = 0, 0, nil
    if a ~= nil then n, s, w = a.episodes, a.limited_s, a.min_w end
    -- a confirmed episode still running when the capture ended
    for _, d in pairs(st.dirs) do
        local A = d.a.rwnd
        local ep = A and A.ep
        if ep ~= nil and ep.confirmed then
            n, s = n + 1, s + ep.dur
            local tw = typical_w(ep)
            if w == nil or tw < w then w = tw end
        end
    end
    return n, s, w
end

M.columns = {
    { key = "rwnd_episodes", title = "RWND episodes", get = function(st) local n = episodes_of(st) return n end },
    { key = "rwnd_limited_ms", title = "RWND limited ms", get = function(st)
        local _, s = episodes_of(st) return format("%.1f", s * 1000) end },
    { key = "rwnd_window", title = "RWND window", get = function(st)
        local _, _, w = episodes_of(st) return w and tostring(floor(w)) or "-" end },
    -- the text table shows "10", "10 inferred" or "unknown"; -z tcpstall,tsv two plain values:
    -- rwnd_scale=10 (- when unknown or no data) and rwnd_scale_inferred=true|false
    { keys = { "rwnd_scale", "rwnd_scale_inferred" }, title = "RWND scale", get = function(st)
        local d = bulk_dir(st)
        local A = d and d.a.rwnd
        if A == nil then return "-" end
        if A.src == nil then return "unknown" end
        if A.src == "inferred" then return tostring(A.k) .. " inferred" end
        return tostring(A.k)
    end, tsv = function(st)
        local d = bulk_dir(st)
        local A = d and d.a.rwnd
        if A == nil or A.src == nil then return "-", false end
        return A.k, A.src == "inferred"
    end },
    -- "-", or why the capture could not tell whether the receiver window limited the direction
    -- that sent the most data (see cannot_tell)
    { key = "rwnd_cannot_tell", title = "RWND cannot tell", get = function(st)
        local d = bulk_dir(st)
        local A = d and d.a.rwnd
        return A and cannot_tell(A, d) or "-"
    end },
}

return M
