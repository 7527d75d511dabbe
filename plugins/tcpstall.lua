-- tcpstall.lua: TCP stall diagnostics (Wireshark/tshark Lua postdissector).
--
-- Explains why an RPC stalled at the TCP layer: HOL-blocked delivery, receiver window throttling,
-- retries approaching tcp_retries2. This file is the entry point: protocol, fields, experts,
-- prefs, init, the dissector and the module loader. The per-direction stream state lives in
-- tcpstall/stream.lua, the analyzers in tcpstall/<name>.lua (contract: tcpstall/README.md).
--
-- Use:  tshark -X lua_script:/path/to/plugins/tcpstall.lua -r cap.pcapng -2 -Y tcpstall ...
--       or copy tcpstall.lua and the tcpstall/ folder into the personal Lua plugins folder
--       (`tshark -G folders`).
-- Two-pass (`-2`) needs a read filter (`-Y frame` or any -Y) or pass 1 sees no fields.
--
-- Never writes files, never runs programs.

local VERSION = "0.1.0"

-- Loaded twice (installed in the personal plugin folder AND given with -X lua_script:): the
-- first copy is already registered; a second Proto("tcpstall") would be a "Lua Error".
if rawget(_G, "tcpstall_loaded_from") ~= nil then
    if warn ~= nil then warn("tcpstall: already loaded from " .. tostring(rawget(_G, "tcpstall_loaded_from"))) end
    return
end

---------------------------------------------------------------------------------------------------
-- module loader: paths relative to this script's own location

local function script_dir()
    local info = debug and debug.getinfo and debug.getinfo(1, "S")
    local src = info and info.source or ""
    if src:sub(1, 1) == "@" then src = src:sub(2) end
    return src:match("^(.*)[/\\][^/\\]*$")
end

local core = { version = VERSION, modules = {} }
rawset(_G, "tcpstall_loaded_from", script_dir() or "?")
local search_dirs = {}
do
    local d = script_dir()
    if d ~= nil and d ~= "" then search_dirs[#search_dirs + 1] = d .. "/tcpstall" end
    if d == nil then search_dirs[#search_dirs + 1] = "tcpstall" end
    for _, fn in ipairs({ "personal_plugins_path", "global_plugins_path" }) do
        local ok, p = pcall(function() return Dir[fn]() end)
        if ok and type(p) == "string" then search_dirs[#search_dirs + 1] = p .. "/tcpstall" end
    end
end

local function file_exists(path)
    local f = io.open(path, "r")
    if f ~= nil then f:close() return true end
    return false
end

-- core.load(name): load tcpstall/<name>.lua once, passing `core` as the chunk argument.
function core.load(name)
    local m = core.modules[name]
    if m ~= nil then return m end
    local errs = {}
    for _, dir in ipairs(search_dirs) do
        local path = dir .. "/" .. name .. ".lua"
        if file_exists(path) then
            local chunk, err = loadfile(path)
            if chunk == nil then error("tcpstall: cannot load " .. path .. ": " .. tostring(err)) end
            m = chunk(core)
            if type(m) ~= "table" then error("tcpstall: module " .. path .. " did not return a table") end
            core.modules[name] = m
            return m
        end
        errs[#errs + 1] = path
    end
    error("tcpstall: module '" .. name .. "' not found (looked in: " .. table.concat(errs, ", ") .. ")")
end

---------------------------------------------------------------------------------------------------
-- protocol, fields, experts (DESIGN.md section 3: stable names)

local proto = Proto("tcpstall", "TCP stall diagnostics")
core.proto = proto

-- Every field and expert is registered through these two, which note its filter name and how
-- `tshark -T fields` prints its values: `-z tcpstall,records` (tcpstall/records.lua) prints the
-- rows of `-2 -Y tcpstall -T fields` from one pass, so it must know both.
local FIELD_TEXT_KIND = {
    [ProtoField.double] = "double", [ProtoField.uint32] = "int", [ProtoField.int32] = "int",
    [ProtoField.uint64] = "int", [ProtoField.framenum] = "int", [ProtoField.bool] = "bool",
    [ProtoField.string] = "string",
}
core.field_abbr, core.field_kind = {}, {}
local function field(ctor, abbr, ...)
    local f = ctor(abbr, ...)
    core.field_abbr[f], core.field_kind[f] = abbr, FIELD_TEXT_KIND[ctor]
    return f
end
local function expert_info(abbr, ...)
    local ei = ProtoExpert.new(abbr, ...)
    core.field_abbr[ei], core.field_kind[ei] = abbr, "expert"
    return ei
end

local F = {
    hol_hold_ms          = field(ProtoField.double, "tcpstall.hol.hold_ms", "HOL hold (ms)", "How long this held segment waited behind the hole"),
    hol_released_bytes   = field(ProtoField.uint32, "tcpstall.hol.released_bytes", "HOL released bytes", base.DEC, nil, nil, "Held bytes this frame released to the application (not counting its own payload)"),
    hol_released_segments = field(ProtoField.uint32, "tcpstall.hol.released_segments", "HOL released segments", base.DEC, nil, nil, "Held segments (frames) released by this frame"),
    hol_max_hold_ms      = field(ProtoField.double, "tcpstall.hol.max_hold_ms", "HOL longest hold (ms)", "Longest hold among the released segments"),
    hol_release_frame    = field(ProtoField.framenum, "tcpstall.hol.release_frame", "HOL released by frame"),
    hol_first_held_frame = field(ProtoField.framenum, "tcpstall.hol.first_held_frame", "HOL first held frame"),
    hol_filled_by        = field(ProtoField.framenum, "tcpstall.hol.filled_by", "HOL hole filled by frame"),
    hol_view             = field(ProtoField.string, "tcpstall.hol.view", "HOL view", base.ASCII, "receiver: from arrivals; sender: from SACK/ACK"),
    hol_severity         = field(ProtoField.string, "tcpstall.hol.severity", "HOL severity", base.ASCII, "warn / note: the hold against hol_warn_ms"),
    hol_hole_bytes       = field(ProtoField.uint32, "tcpstall.hol.hole_bytes", "HOL hole (bytes)", base.DEC, nil, nil, "Receiver view, on a held frame: bytes missing below it"),
    hol_reported_by      = field(ProtoField.string, "tcpstall.hol.reported_by", "HOL held data reported by", base.ASCII, "Sender view: sack / dupack (the receiver's report of the held data)"),
    hol_report_frame     = field(ProtoField.framenum, "tcpstall.hol.report_frame", "HOL first SACK / dupACK frame", base.NONE, nil, nil, "Sender view, on the release: the receiver's first report of held data"),
    hol_send_hold_ms     = field(ProtoField.double, "tcpstall.hol.send_hold_ms", "HOL hold by send times (ms)", "Sender view: filler send - held send (equals the receiver's hold when both one-way delays are equal)"),
    hol_spurious_frame   = field(ProtoField.framenum, "tcpstall.hol.spurious_frame", "HOL spurious retransmission frame", base.NONE, nil, nil, "Sender view: the retransmission a D-SACK showed spurious (the late original filled the hole)"),
    hol_dsack_frame      = field(ProtoField.framenum, "tcpstall.hol.dsack_frame", "HOL D-SACK frame"),
    hol_fill_evidence    = field(ProtoField.string, "tcpstall.hol.fill_evidence", "HOL fill evidence", base.ASCII, "Receiver view: tsval / ip_id / timing / delivered, or what was missing (fill cannot_tell)"),
    hol_fill             = field(ProtoField.string, "tcpstall.hol.fill", "HOL hole filled by", base.ASCII, "retransmission / late_original / not_captured / cannot_tell"),
    thin_interval_ms     = field(ProtoField.double, "tcpstall.thin_stream.interval_ms", "Thin stream: send interval (ms)", "The sender's new-data send interval (median of the last gaps)"),
    thin_wait_ms         = field(ProtoField.double, "tcpstall.thin_stream.wait_ms", "Thin stream: loss evidence took (ms)", "Original send -> retransmission"),
    thin_wait_estimated  = field(ProtoField.bool, "tcpstall.thin_stream.wait_estimated", "Thin stream: original send time estimated", base.NONE, nil, nil, "The original is not in the capture: its send time is estimated one send interval before the next segment"),
    thin_rtt_ms          = field(ProtoField.double, "tcpstall.thin_stream.rtt_ms", "Thin stream: path RTT (ms)"),
    rwnd_window          = field(ProtoField.uint32, "tcpstall.rwnd.window", "Receiver window (bytes)", base.DEC, nil, nil, "Advertised receive window, scaled"),
    rwnd_scale           = field(ProtoField.int32, "tcpstall.rwnd.scale", "Window shift", base.DEC, nil, nil, "Window scale shift used"),
    rwnd_scale_inferred  = field(ProtoField.bool, "tcpstall.rwnd.scale_inferred", "Window shift inferred"),
    rwnd_cap_mbps        = field(ProtoField.double, "tcpstall.rwnd.cap_mbps", "Window/RTT cap (Mbit/s)"),
    rwnd_limited_ms      = field(ProtoField.double, "tcpstall.rwnd.limited_ms", "Window-limited (ms)"),
    rwnd_rtt_ms          = field(ProtoField.double, "tcpstall.rwnd.rtt_ms", "RTT used for the cap (ms)"),
    rwnd_bytes           = field(ProtoField.uint64, "tcpstall.rwnd.bytes", "Bytes sent in the window-limited episode"),
    rwnd_start_frame     = field(ProtoField.framenum, "tcpstall.rwnd.start_frame", "Window-limited episode starts at frame"),
    rwnd_end_frame       = field(ProtoField.framenum, "tcpstall.rwnd.end_frame", "Window-limited episode ends at frame"),
    rwnd_cause           = field(ProtoField.string, "tcpstall.rwnd.cause", "Likely cause", base.ASCII, "small_rcvbuf / app_not_reading / delayed_ack / window_limited"),
    rwnd_cause_text      = field(ProtoField.string, "tcpstall.rwnd.cause_text", "Likely cause, in words", base.ASCII, "what the window did and what to check"),
    rwnd_ongoing         = field(ProtoField.bool, "tcpstall.rwnd.ongoing", "Episode still window-limited", base.NONE, nil, nil, "The episode had not ended when the capture ended or the connection was reset (see ended_by)"),
    rwnd_ended_by        = field(ProtoField.string, "tcpstall.rwnd.ended_by", "Episode ended by", base.ASCII, "window_opened (the sender left an opened window unused) / reset (RST) / capture_end (on revisits, on the episode's last window-limited frame)"),
    rwnd_predicted_ms    = field(ProtoField.double, "tcpstall.rwnd.predicted_ms", "Predicted time at this window (ms)", "bytes / window x RTT: how long these bytes take at one window per round trip"),
    rwnd_zero_window_ms  = field(ProtoField.double, "tcpstall.rwnd.zero_window_ms", "Zero window (ms)", "How long the receiver advertised a zero window during the episode"),
    rwnd_cannot_tell_reason = field(ProtoField.string, "tcpstall.rwnd.cannot_tell_reason", "Why the capture cannot tell whether the window limited the sender", base.ASCII, "scale_and_rtt_unknown: no handshake (window scale unknown) and the sender's round trip not measurable at this capture point (no TCP timestamps); rtt_unknown: the same with the shift known (tcp.default_window_scaling)"),
    retries_count        = field(ProtoField.uint32, "tcpstall.retries.count", "Retransmission number", base.DEC, nil, nil, "Retransmission number of this data (1, 2, ...)"),
    retries_elapsed_s    = field(ProtoField.double, "tcpstall.retries.elapsed_s", "Since first send (s)"),
    retries_abort_at_s   = field(ProtoField.double, "tcpstall.retries.abort_at_s", "Predicted abort (s after first send)"),
    retries_rto_count    = field(ProtoField.uint32, "tcpstall.retries.rto_count", "RTO retransmissions", base.DEC, nil, nil, "Retransmission-timer retransmissions of this data so far (the kernel's icsk_retransmits)"),
    retries_budget_s     = field(ProtoField.double, "tcpstall.retries.budget_s", "Abort budget (s)", "tcp_model_timeout(tcp_retries2, TCP_RTO_MIN = 200 ms, rto_max) or TCP_USER_TIMEOUT, counted from the first RTO retransmission"),
    retries_first_frame  = field(ProtoField.framenum, "tcpstall.retries.first_frame", "Data first sent in frame"),
    retries_outcome      = field(ProtoField.string, "tcpstall.retries.outcome", "Retries episode outcome", base.ASCII, "recovered / reset / aborted / capture_ends (the last two on the episode's last retransmission, on revisits)"),
    retries_assumed      = field(ProtoField.string, "tcpstall.retries.assumed", "Settings assumed by the abort prediction", base.ASCII, "comma-separated settings the user did not give (-o tcpstall.NAME:VALUE), at Linux's defaults; empty: all given"),
    retries_linux_like   = field(ProtoField.bool, "tcpstall.retries.linux_like", "Backoff is Linux's", base.NONE, nil, nil, "false: the sender does not behave like Linux; no Linux abort prediction"),
    retries_kind         = field(ProtoField.string, "tcpstall.retries.kind", "What is retried", base.ASCII, "data / fin (FIN only: tcp_orphan_retries) / syn (tcp_syn_retries) / probe (keepalive or zero-window, nothing in flight)"),
    retries_budget_from  = field(ProtoField.string, "tcpstall.retries.budget_from", "Abort budget from", base.ASCII, "tcp_retries2 (tcp_model_timeout) / user_timeout (TCP_USER_TIMEOUT replaces it)"),
    retries_reset_by     = field(ProtoField.string, "tcpstall.retries.reset_by", "Reset by", base.ASCII, "peer / sender: who sent the RST that ended the episode (outcome reset / aborted)"),
    retries_not_linux    = field(ProtoField.string, "tcpstall.retries.not_linux", "Why not Linux-like", base.ASCII, "not_doubling / faster_than_doubling / over_rto_max / reset_on_timer (with linux_like false)"),
    retries_probe        = field(ProtoField.string, "tcpstall.retries.probe", "Probe", base.ASCII, "keepalive / zero_window (kind probe)"),
    retries_synack       = field(ProtoField.bool, "tcpstall.retries.synack", "SYN-ACK retransmission", base.NONE, nil, nil, "kind syn: the server's SYN-ACK (tcp_synack_retries), not the client's SYN"),
    retrans_trigger      = field(ProtoField.string, "tcpstall.retrans.trigger", "Retransmission trigger", base.ASCII, "rto / fast / tlp / rack / unknown"),
    retrans_why          = field(ProtoField.string, "tcpstall.retrans.why", "Trigger evidence", base.ASCII),
    retrans_number       = field(ProtoField.uint32, "tcpstall.retrans.number", "Retransmission of this data", base.DEC, nil, nil, "1 = first retransmission of this data, 2 = second, ..."),
    retrans_dupacks      = field(ProtoField.uint32, "tcpstall.retrans.dupacks", "Duplicate ACKs before it", base.DEC, nil, nil, "RFC 5681 duplicate ACKs at the ACK that triggered it (same ACK, no payload, no SYN/FIN, same window, data outstanding, sent after the segment they report)"),
    retrans_since_first_ms = field(ProtoField.double, "tcpstall.retrans.since_first_ms", "Since the data was first sent (ms)"),
    retrans_since_prev_ms = field(ProtoField.double, "tcpstall.retrans.since_prev_ms", "Since the previous transmission of the data (ms)"),
    capture_duplicate    = field(ProtoField.bool, "tcpstall.capture.duplicate", "Copy of an earlier frame", base.NONE, nil, nil, "The same segment recorded twice (capture or network duplicate): not a retransmission"),
    capture_time_backwards_ms = field(ProtoField.double, "tcpstall.capture.time_backwards_ms", "Timestamp earlier than the previous frame's (ms)", "The capture clock is not monotonic: a duration spanning this frame may be off by up to this much"),
}
core.F = F
core.fields = {
    F.hol_hold_ms, F.hol_released_bytes, F.hol_released_segments, F.hol_max_hold_ms,
    F.hol_release_frame, F.hol_first_held_frame, F.hol_filled_by, F.hol_view,
    F.hol_severity, F.hol_fill, F.hol_hole_bytes, F.hol_reported_by, F.hol_report_frame, F.hol_send_hold_ms,
    F.hol_spurious_frame, F.hol_dsack_frame, F.hol_fill_evidence,
    F.thin_interval_ms, F.thin_wait_ms, F.thin_wait_estimated, F.thin_rtt_ms,
    F.rwnd_window, F.rwnd_scale, F.rwnd_scale_inferred, F.rwnd_cap_mbps, F.rwnd_limited_ms,
    F.rwnd_rtt_ms, F.rwnd_bytes, F.rwnd_start_frame, F.rwnd_end_frame, F.rwnd_cause, F.rwnd_cause_text,
    F.rwnd_ongoing, F.rwnd_ended_by, F.rwnd_predicted_ms, F.rwnd_zero_window_ms, F.rwnd_cannot_tell_reason,
    F.retries_count, F.retries_elapsed_s, F.retries_abort_at_s,
    F.retries_rto_count, F.retries_budget_s, F.retries_first_frame, F.retries_outcome,
    F.retries_assumed, F.retries_linux_like, F.retries_kind,
    F.retries_budget_from, F.retries_reset_by, F.retries_not_linux, F.retries_probe, F.retries_synack,
    F.retrans_trigger, F.retrans_why,
    F.retrans_number, F.retrans_dupacks, F.retrans_since_first_ms, F.retrans_since_prev_ms,
    F.capture_duplicate, F.capture_time_backwards_ms,
}
proto.fields = core.fields

local SEQ = expert.group.SEQUENCE
local E = {
    hol_blocked       = expert_info("tcpstall.hol.blocked", "HOL-blocked delivery: segment held behind a hole", SEQ, expert.severity.WARN),
    -- an expert's severity is fixed when it is registered: a hold below hol_warn_ms is a note, so each
    -- of these two is registered twice under the same filter name (as Wireshark's own
    -- _ws.type_length.mismatch is, as an error and as a warning): `tcpstall.hol.released` finds both
    hol_blocked_note  = expert_info("tcpstall.hol.blocked", "HOL-blocked delivery: segment held behind a hole (short hold, below hol_warn_ms)", SEQ, expert.severity.NOTE),
    hol_released      = expert_info("tcpstall.hol.released", "HOL-blocked delivery: held data released", SEQ, expert.severity.WARN),
    hol_released_note = expert_info("tcpstall.hol.released", "HOL-blocked delivery: held data released (short hold, below hol_warn_ms)", SEQ, expert.severity.NOTE),
    rwnd_throttling   = expert_info("tcpstall.rwnd.throttling", "Receiver window throttling", SEQ, expert.severity.WARN),
    rwnd_cannot_tell  = expert_info("tcpstall.rwnd.cannot_tell", "Receiver window: cannot tell whether it limited the sender", SEQ, expert.severity.NOTE),
    retries_approaching = expert_info("tcpstall.retries.approaching", "Retries approaching tcp_retries2", SEQ, expert.severity.WARN),
    retries_final     = expert_info("tcpstall.retries.final", "Last retransmission before the predicted abort (tcp_retries2)", SEQ, expert.severity.ERROR),
    retries_ended     = expert_info("tcpstall.retries.ended", "Retries episode ended (recovered / reset / aborted)", SEQ, expert.severity.NOTE),
    retries_control   = expert_info("tcpstall.retries.control", "FIN / SYN retransmissions or probes: not a request waiting (tcp_orphan_retries, tcp_syn_retries, keepalive)", SEQ, expert.severity.NOTE),
    thin_stream       = expert_info("tcpstall.thin_stream", "Thin stream: fast retransmit waited for duplicate ACKs", SEQ, expert.severity.NOTE),
    retrans           = expert_info("tcpstall.retrans", "Retransmission trigger", SEQ, expert.severity.CHAT),
}
core.E = E
core.experts = {
    E.hol_blocked, E.hol_blocked_note, E.hol_released, E.hol_released_note, E.rwnd_throttling, E.rwnd_cannot_tell,
    E.retries_approaching, E.retries_final, E.retries_ended, E.retries_control, E.thin_stream, E.retrans,
}
proto.experts = core.experts

---------------------------------------------------------------------------------------------------
-- Field extractors: every field the core and the analyzers need, each called once per packet.

local X = {
    stream   = Field.new("tcp.stream"),
    seq_raw  = Field.new("tcp.seq_raw"),
    ack_raw  = Field.new("tcp.ack_raw"),
    ack      = Field.new("tcp.ack"),          -- relative ACK: only to convert SACK edges to raw
    len      = Field.new("tcp.len"),
    flags    = Field.new("tcp.flags"),
    win      = Field.new("tcp.window_size_value"),
    win_scale = Field.new("tcp.window_size_scalefactor"),
    wscale   = Field.new("tcp.options.wscale.shift"),
    mss      = Field.new("tcp.options.mss_val"),
    sack_perm = Field.new("tcp.options.sack_perm"),   -- read on SYNs only: does the connection SACK?
    sack_le  = Field.new("tcp.options.sack_le"),
    sack_re  = Field.new("tcp.options.sack_re"),
    tsval    = Field.new("tcp.options.timestamp.tsval"),
    tsecr    = Field.new("tcp.options.timestamp.tsecr"),
    -- (no tcp.analysis.*: the verdicts do not depend on Wireshark's sequence analysis, which batch
    -- runs turn off: stream.lua classifies retransmissions itself)
    icmp     = Field.new("icmp"),
    icmpv6   = Field.new("icmpv6"),
    -- the frame's exact time (an NSTime), read only for `-z tcpstall,records` (tcpstall/records.lua):
    -- pinfo.abs_ts is a double, ~0.24 us coarse at today's epoch, and records must print the
    -- time `-T fields` prints
    time_epoch = Field.new("frame.time_epoch"),
    -- (no ip.id: declaring an extractor makes Wireshark build that field for every packet, 3.3 k
    -- instructions per packet on clean-bulk under callgrind; core.read_ip_id reads the frame's bytes)
}
core.X = X

---------------------------------------------------------------------------------------------------
-- prefs

local P = proto.prefs
P.hol_enabled     = Pref.bool("HOL-blocked delivery analyzer", true, "Detect data held behind a hole (HOL-blocked delivery)")
P.rwnd_enabled    = Pref.bool("Receiver window analyzer", true, "Detect receiver window throttling")
P.retries_enabled = Pref.bool("Retries analyzer", true, "Detect retransmissions approaching tcp_retries2")
P.hol_warn_ms     = Pref.uint("HOL warn threshold (ms)", 20, "A hold at least this long is a warning, shorter ones a note")
P.rwnd_min_episode_ms = Pref.uint("Minimum window-limited episode (ms)", 100, "Report receiver window throttling only for episodes at least this long")
P.tcp_retries1    = Pref.uint("tcp_retries1", 3, "net.ipv4.tcp_retries1 of the sender")
-- The settings of the sender's abort are strings: empty means "not given", and the prediction then
-- assumes Linux's default and says so (tcpstall.retries.assumed); a uint pref cannot tell a value the
-- user gave from its default.
P.tcp_retries2    = Pref.string("tcp_retries2", "", "net.ipv4.tcp_retries2 of the sender; empty: assume 15 (Linux's default) and say so")
P.rto_min_ms      = Pref.string("RTO min (ms)", "", "The sender's minimum RTO (Linux: the route's rto_min, net.ipv4.tcp_rto_min_us): only the RTO estimate before the capture shows one and the retransmission triggers use it; the abort budget always counts with the kernel's TCP_RTO_MIN (200 ms). Empty: assume 200")
P.rto_max_ms      = Pref.string("RTO max (ms)", "", "The sender's maximum RTO (Linux: net.ipv4.tcp_rto_max_ms, TCP_RTO_MAX_MS): caps the backoff and enters the abort budget. Empty: assume 120000")
P.user_timeout_ms = Pref.string("TCP_USER_TIMEOUT (ms)", "", "Socket option TCP_USER_TIMEOUT of the sender, 0 = unset. Empty: assume unset")

local settings = {}
core.settings = settings
local SENDER_DEFAULTS = { tcp_retries2 = 15, rto_min_ms = 200, rto_max_ms = 120000, user_timeout_ms = 0 }
local function read_prefs()
    settings.hol_enabled = P.hol_enabled
    settings.rwnd_enabled = P.rwnd_enabled
    settings.retries_enabled = P.retries_enabled
    settings.hol_warn_ms = P.hol_warn_ms
    settings.rwnd_min_episode_ms = P.rwnd_min_episode_ms
    settings.tcp_retries1 = P.tcp_retries1
    -- the sender's settings: a whole number the user gave, else Linux's default (given[name] false)
    local given = {}
    for name, default in pairs(SENDER_DEFAULTS) do
        local v = tonumber(P[name] or "")
        if v ~= nil and v >= 0 and v == math.floor(v) then
            settings[name], given[name] = v, true
        else
            settings[name], given[name] = default, false
        end
    end
    settings.given = given
    if core.refresh_active then core.refresh_active() end
end
read_prefs()
function proto.prefs_changed() read_prefs() end

---------------------------------------------------------------------------------------------------
-- modules

local seqm = core.load("seq")
local stream = core.load("stream")
local records = core.load("records")
local rows = core.load("rows")
core.seq, core.stream = seqm, stream

-- analyzers, in the order they run; each has a bool pref `<name>_enabled`
local ANALYZERS = { "hol", "rwnd", "retries" }
local analyzers = {}
for _, name in ipairs(ANALYZERS) do
    local m = core.load(name)
    m.name = m.name or name
    analyzers[#analyzers + 1] = m
end
core.analyzers = analyzers

-- enabled analyzers with an on_packet, in order; enabled analyzers with a render (recomputed when
-- prefs change)
core.active = {}
core.shown = {}
-- the first three active on_packet functions (first_pass calls them directly: no table reads per
-- packet), and whether there are more
local on1, on2, on3, on_more = nil, nil, nil, false
function core.refresh_active()
    local act, shown = {}, {}
    for i = 1, #analyzers do
        local a = analyzers[i]
        if settings[a.name .. "_enabled"] ~= false then
            if a.on_packet then act[#act + 1] = a end
            if a.render then shown[#shown + 1] = a end
        end
    end
    core.active, core.shown = act, shown
    on1, on2, on3 = act[1] and act[1].on_packet, act[2] and act[2].on_packet, act[3] and act[3].on_packet
    on_more = #act > 3
end
core.refresh_active()

---------------------------------------------------------------------------------------------------
-- state (reset in init)

local state
-- the capture clock (first_pass): previous TCP frame's timestamp, offset added to later ones
local clock_prev, clock_off = -math.huge, 0
local function reset()
    clock_prev, clock_off = -math.huge, 0
    state = {
        streams = {},        -- tcp.stream -> stream record (two direction records)
        stream_order = {},
        results = {},        -- frame number -> { rtx = ..., hol = ..., rwnd = ..., retries = ... }
        errors = 0, first_error = nil,
        last_frame = 0,      -- highest frame number seen (first pass)
    }
    core.state = state
    records.reset()
    rows.reset()
    for _, a in ipairs(analyzers) do
        if a.reset then a.reset() end
    end
end
reset()
function proto.init() reset() end

---------------------------------------------------------------------------------------------------
-- helpers for analyzers

-- add an expert with a formatted text
function core.expert(tree, ei, text)
    tree:add_proto_expert_info(ei, text)
end

-- ms with one decimal
-- Longest expert text: Wireshark cuts a tree label at 239 bytes, and the expert's label adds
-- "Expert Info (Warning/Sequence): " (32 bytes) in front of the text.
core.EXPERT_MAX = 207

function core.ms(sec)
    return math.floor(sec * 10000 + 0.5) / 10
end

---------------------------------------------------------------------------------------------------
-- per packet

-- flag bits by arithmetic (bit32 is Lua 5.2 only, Wireshark 4.4 may run Lua 5.4), inlined in
-- build_packet: bit b of v is set when v % (2b) >= b (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10)

-- tcp.window_size_scalefactor holds the multiplier (1, 2, ... 16384), or -1 (unknown: no
-- handshake) / -2 (no scaling); pkt.win_scale is the shift (README), so convert.
local function sf_shift(v)
    if v == nil or v < 1 then return v end
    local s, m = 0, v
    while m > 1 and s < 14 do m = m / 2 s = s + 1 end
    return s
end

local TWO32 = 4294967296

-- The packet record is ONE table reused for every packet (allocating ~30 keys per packet was the
-- largest single cost): analyzers must not keep a reference to it, nor add keys to it. Keys that
-- are not written on every packet are reset here. An absent value is `false`, never nil: Lua 5.2
-- drops nil-valued keys when a table's hash part is rebuilt, and storing nil into a dropped key
-- creates it again, so resetting keys to nil rebuilt this table's hash part (a 1.3 KB
-- reallocation) about once per packet.
local pkt = {}
local PKT_RESET = {
    "wscale_opt", "mss_opt", "sack_perm_opt", "sack",
    -- set by stream.ingest
    "ack", "arrival", "hole", "held_entry", "released", "released_bytes", "released_segments",
    "dsack", "dsack_l", "dsack_r", "sack_released", "rtx", "duplicate", "fill", "fill_by", "ip_id",
}
core.PKT_RESET = PKT_RESET

local sack_scratch = {}
local cur_tvb = nil                         -- this packet's frame (core.read_ip_id)

-- One packet's fields (first pass only), or nil when it is not a TCP segment to analyze.
-- Every Field extractor call and every value read goes through wslua (~2 k instructions each),
-- so fields that are often absent or rarely needed are only read when something says they are
-- there or needed (first_pass, read_sack).
local function build_packet(pinfo, number)
    local fi_stream = X.stream()
    if fi_stream == nil then return nil end
    local fi_flags, fi_len = X.flags(), X.len()
    if fi_flags == nil then return nil end
    -- Wireshark adds tcp.len to every TCP header except one quoted by an ICMP error (and IP
    -- fragments / short segments): only then look for the ICMP layer
    if fi_len == nil and (X.icmp() ~= nil or X.icmpv6() ~= nil) then return nil end
    -- fi() is FieldInfo's __call: the same value as fi.value (whose getter calls it), without the
    -- generic attribute lookup (__index dispatch cost ~1 k instructions per read)
    local flags = fi_flags()
    local len = fi_len and fi_len() or 0
    -- the sequence number of a pure ACK (no payload, SYN, FIN, RST) is never used: not read
    local seq_raw = false
    if len > 0 or flags % 8 ~= 0 then
        local fi_seq = X.seq_raw()
        if fi_seq == nil then return nil end
        seq_raw = fi_seq()
    end
    local ackf = flags % 32 >= 16          -- has_bit(flags, ACK), inlined (hot path)
    local p = pkt
    -- reset the optional keys (straight-line: a loop over PKT_RESET cost more than all the rest
    -- of this function; tests/test_plugin_core.py checks both lists agree)
    p.wscale_opt = false p.mss_opt = false p.sack_perm_opt = false
    p.sack = false
    p.ack = false p.arrival = false p.hole = false p.held_entry = false p.released = false
    p.released_bytes = false p.released_segments = false p.dsack = false p.dsack_l = false
    p.dsack_r = false p.sack_released = false p.rtx = false p.duplicate = false
    p.fill = false p.fill_by = false p.ip_id = false
    p.number = number
    p.time = pinfo.abs_ts
    p.stream = fi_stream()
    p.sport = pinfo.src_port
    p.seq_raw = seq_raw
    p.len = len
    local syn = flags % 4 >= 2             -- has_bit(flags, SYN), ... inlined
    p.syn = syn
    p.fin = flags % 2 >= 1
    p.rst = flags % 8 >= 4
    p.ackf = ackf
    p.flags = flags
    local fi = X.tsval()
    p.tsval = fi and fi() or false
    p.tsecr = false                          -- read by first_pass when it can matter
    if syn then
        fi = X.wscale()
        if fi ~= nil then p.wscale_opt = fi() end
        fi = X.mss()
        if fi ~= nil then p.mss_opt = fi() end
        p.sack_perm_opt = X.sack_perm() ~= nil
    end
    return p
end

-- IP ID of this packet, from the frame's bytes: the IPv4 header right before the TCP header (the
-- innermost one in a tunnel), found once per direction from tcp.flags' offset (a second read of
-- that extractor, once per direction) and checked by its version/length byte and the source port;
-- kept as d.ip_off / d.ip_vb and re-found when the byte there changes. False for IPv6 (no IP ID)
-- or when the frame does not show it (a reassembled segment lives in another buffer). Packets of
-- a direction without TCP timestamps have it read already (pkt.ip_id, see first_pass); otherwise
-- it is read only where it decides something (stream.lua: the first held arrival above a hole,
-- its filler).
local function find_ip_off(d, sport)
    local tvb, fi = cur_tvb, X.flags()
    if tvb == nil or fi == nil then return false end
    local tcp = fi.offset - 12
    if tcp + 2 > tvb:len() then return false end   -- (tcp.flags in another buffer: reassembled)
    for ihl = 5, 15 do
        local o = tcp - 4 * ihl
        if o < 0 then return false end
        local vb = tvb:raw(o, 1):byte()
        if vb == 64 + ihl then
            local hi, lo = tvb:raw(tcp, 2):byte(1, 2)
            if hi * 256 + lo ~= sport then return false end
            d.ip_off, d.ip_vb = o, vb
            return true
        end
    end
    return false                             -- (IPv6: no IP ID)
end

function core.read_ip_id(p, d)
    if p.ip_id then return p.ip_id end
    local o = d.ip_off
    if o == nil or o == false then
        if o == false or not find_ip_off(d, p.sport) then d.ip_off = false return false end
        o = d.ip_off
    end
    local vb, _, _, _, hi, lo = cur_tvb:raw(o, 6):byte(1, 6)
    if vb ~= d.ip_vb or lo == nil then
        if not find_ip_off(d, p.sport) then return false end
        vb, _, _, _, hi, lo = cur_tvb:raw(d.ip_off, 6):byte(1, 6)
    end
    return hi * 256 + lo
end

-- The SACK blocks of this packet as raw edges { le1, re1, le2, re2, ... } in `dst` (the entries
-- after the last edge cleared), or nil without any; `ack_raw`: its ACK number, `rev`: the direction
-- whose data they acknowledge.
local function sack_edges(ack_raw, rev, dst)
    local l1, l2, l3, l4 = X.sack_le()
    if l1 == nil then return nil end
    local r1, r2, r3, r4 = X.sack_re()
    if r1 == nil then return nil end
    -- SACK edges are shown relative like tcp.ack: raw = relative + (ack_raw - tcp.ack). That
    -- offset is Wireshark's base sequence number of rev, which only changes with a SYN, so
    -- tcp.ack is read once per direction (first_pass forgets it on SYNs).
    local off = rev.sack_off
    if off == nil then
        local fa = X.ack()
        off = fa and (ack_raw - fa()) or 0
        rev.sack_off = off
    end
    dst[1], dst[2] = (l1() + off) % TWO32, (r1() + off) % TWO32
    local n = 2
    if l2 and r2 then dst[3], dst[4], n = (l2() + off) % TWO32, (r2() + off) % TWO32, 4 end
    if n == 4 and l3 and r3 then dst[5], dst[6], n = (l3() + off) % TWO32, (r3() + off) % TWO32, 6 end
    if n == 6 and l4 and r4 then dst[7], dst[8], n = (l4() + off) % TWO32, (r4() + off) % TWO32, 8 end
    for k = n + 1, 8 do dst[k] = nil end
    return dst
end
core.sack_edges = sack_edges

-- pkt.sack: the packet's SACK blocks (a scratch table reused like pkt itself, valid during this
-- packet only)
local function read_sack(p, rev)
    local sack = sack_edges(p.ack_raw, rev, sack_scratch)
    if sack ~= nil then p.sack = sack end
end

-- The window scale Wireshark applies to a direction's window only changes when a SYN of the
-- connection is seen, so tcp.window_size_scalefactor is read once per direction (first_pass
-- forgets it on SYNs) instead of on every packet.
local function window_scale(fwd)
    local sc = fwd.sf_shift
    if sc == nil then
        local fi = X.win_scale()
        sc = fi and sf_shift(fi()) or false
        fwd.sf_shift = sc
    end
    return sc                              -- (false: Wireshark shows no scale factor)
end

local out_spare = {}   -- the per-frame result table, reused until something is stored in it

-- the frame's exact time (frame.time_epoch, an NSTime) or nil: only records and rows read it
local function frame_time()
    local fi = X.time_epoch()
    if fi == nil then return nil end
    return fi()
end

-- returns the frame's result table when one was stored
local function first_pass(pinfo, number, tvb)
    cur_tvb = tvb
    local pkt = build_packet(pinfo, number)
    local st, fwd, rev
    if pkt ~= nil then st, fwd, rev = stream.lookup(state, pkt, pinfo) end  -- (first/last time: as captured)
    if st == nil then
        if rows.enabled then rows.add_other(pinfo, number, frame_time()) end
        return nil
    end
    local t = (records.enabled or rows.enabled) and frame_time() or nil
    if records.enabled then records.note_frame(number, pkt.stream, t) end
    -- The capture clock may step back (captures merged from several interfaces or queues, a clock
    -- step, a rewritten file). No duration may come out negative, so the analysis uses the frame's
    -- timestamp plus an offset that grows by every backwards step: its times never decrease, and
    -- durations that do not span a backwards frame stay exact. `back`: how far (ms) this frame's
    -- timestamp is earlier than the previous TCP frame's. (Inline: every packet passes here.)
    local raw, back = pkt.time, false
    if raw < clock_prev then
        back = (clock_prev - raw) * 1000
        clock_off = clock_off + (clock_prev - raw)
    end
    clock_prev = raw
    if clock_off ~= 0 then pkt.time = raw + clock_off end
    -- a direction that sends no TCP timestamps (a non-SYN, non-RST packet of it came without: the
    -- connection did not negotiate them): its IP IDs tell a capture duplicate from a resend and a
    -- late original from a retransmission instead (stream.lua), read on each of its packets
    if not pkt.tsval then
        if fwd.no_ts then pkt.ip_id = core.read_ip_id(pkt, fwd)
        elseif pkt.flags % 8 < 2 then fwd.no_ts = true end
    end
    if pkt.syn then fwd.sf_shift, rev.sf_shift, fwd.sack_off, rev.sack_off = nil, nil, nil, nil end
    -- The ACK number, window and SACK blocks of a packet are about the peer's data. The sender of
    -- a one-way transfer (it sent data, its peer never did) acknowledges nothing and advertises a
    -- window for data that does not exist: those fields are not read on its packets (SYN, FIN
    -- and RST always are), which are half of a bulk transfer.
    if rev.data_seen or not fwd.data_seen or pkt.flags % 8 ~= 0 then
        local fi = X.win()
        pkt.win_raw = fi and fi() or false
        if pkt.ackf then
            fi = X.ack_raw()
            pkt.ack_raw = fi and fi() or 0
            read_sack(pkt, rev)
        end
    else
        pkt.win_raw, pkt.ackf, pkt.ack_raw = false, false, 0
    end
    if rows.enabled and t ~= nil then rows.add(pkt, fwd, rev, t, tvb) end
    pkt.win_scale = pkt.win_raw and window_scale(fwd)
    -- keepalive and zero-window probes are pure ACKs one below the next sequence number, sent after
    -- their direction was idle (>= 200 ms on Linux, seconds for keepalive): only then is the
    -- sequence number of a pure ACK read (retries.lua tells probes from other ACKs by it)
    if not pkt.seq_raw and fwd.high ~= nil and pkt.time - fwd.last_t >= 0.1 then
        local fs = X.seq_raw()
        if fs ~= nil then pkt.seq_raw = fs() end
    end
    -- the TS echo only tells something when it can echo a TSval of the peer not echoed yet
    if pkt.tsval and rev.tsq_lo < rev.tsq_hi then
        local fe = X.tsecr()
        if fe ~= nil then pkt.tsecr = fe() end
    end
    stream.ingest(pkt, fwd, rev)
    local out = out_spare
    local rtx = pkt.rtx
    if rtx then out.rtx = rtx end
    if back or pkt.duplicate then out.capture = { dup = pkt.duplicate, dup_ack = pkt.duplicate and pkt.len == 0, back_ms = back } end
    if on1 then
        on1(pkt, fwd, rev, out, st)
        if on2 then
            on2(pkt, fwd, rev, out, st)
            if on3 then
                on3(pkt, fwd, rev, out, st)
                if on_more then
                    local active = core.active
                    for i = 4, #active do active[i].on_packet(pkt, fwd, rev, out, st) end
                end
            end
        end
    end
    if next(out) ~= nil then
        state.results[number] = out
        out_spare = {}
        return out
    end
    return nil
end

-- Render what is known about frame `number`: `res` is its stored result (or nil); analyzers with
-- `per_frame` keep facts of their own by frame number and are asked even without a result.
local function render(tree, res, number)
    -- add the tcpstall subtree only when something will be shown (analyzers may say `visible`)
    local rtx = res and res.rtx
    local cap = res and res.capture
    local show = (rtx ~= nil and rtx.trigger ~= nil) or cap ~= nil
    local shown = core.shown              -- enabled analyzers with a render, in order
    if not show then
        for i = 1, #shown do
            local a = shown[i]
            local r = res and res[a.name]
            if (r ~= nil or a.per_frame) and (a.visible == nil or a.visible(r, number)) then
                show = true
                break
            end
        end
    end
    if not show then return end
    local sub = tree:add(proto)
    if cap ~= nil then
        if cap.dup then
            sub:add(F.capture_duplicate, true):append_text(cap.dup_ack
                and " (a network or capture duplicate of an ACK: not a duplicate ACK)"
                or " (a network or capture duplicate: not a retransmission)")
        end
        if cap.back_ms then
            sub:add(F.capture_time_backwards_ms, cap.back_ms):append_text(" (the capture clock is not monotonic: a duration spanning this frame may be off by up to this much)")
        end
    end
    if rtx ~= nil and rtx.trigger ~= nil then
        sub:add(F.retrans_trigger, rtx.trigger)
        if rtx.why ~= nil then sub:add(F.retrans_why, rtx.why) end
        sub:add(F.retrans_number, rtx.n)
        if rtx.dupacks ~= nil then sub:add(F.retrans_dupacks, rtx.dupacks) end
        if rtx.since_first_ms ~= nil then sub:add(F.retrans_since_first_ms, rtx.since_first_ms) end
        if rtx.since_prev_ms ~= nil then sub:add(F.retrans_since_prev_ms, rtx.since_prev_ms) end
        sub:add_proto_expert_info(E.retrans, "Retransmission trigger: " .. rtx.trigger .. (rtx.why and (" (" .. rtx.why .. ")") or ""))
    end
    for i = 1, #shown do
        local a = shown[i]
        local r = res and res[a.name]
        if r ~= nil or a.per_frame then
            a.render(sub, r, number)
        end
    end
end

core.render = render

local function dissect(tvb, pinfo, tree)
    -- The first pass dissects frames in increasing order (after init: tshark, tshark -2 pass 1,
    -- the GUI loading or redissecting a file), later passes revisit frames already seen: a frame
    -- number above the highest seen is a first visit (same as pinfo.visited, one wslua read less)
    local number = pinfo.number
    local res
    if number > state.last_frame then
        state.last_frame = number
        res = first_pass(pinfo, number, tvb)
        if res == nil then return end      -- (per_frame facts of a frame come from later frames)
        core.first_visit = true
    else
        res = state.results[number]
        core.first_visit = false
    end
    render(tree, res, number)
end

function proto.dissector(tvb, pinfo, tree)
    local ok, err = pcall(dissect, tvb, pinfo, tree)
    if not ok then
        -- never a "Lua Error" in the tree: count it, show it in the -z summary
        state.errors = state.errors + 1
        if state.first_error == nil then
            state.first_error = "frame " .. tostring(pinfo.number) .. ": " .. tostring(err)
        end
    end
end

register_postdissector(proto)

---------------------------------------------------------------------------------------------------
-- -z tcpstall: one row per stream

local function stat_rows()
    local cols = { "stream", "endpoints" }
    for _, a in ipairs(analyzers) do
        if a.columns and settings[a.name .. "_enabled"] ~= false then
            for _, c in ipairs(a.columns) do cols[#cols + 1] = c.title end
        end
    end
    local rows = {}
    for _, id in ipairs(state.stream_order) do
        local st = state.streams[id]
        local c = st.client
        local row = { tostring(id), c.src .. ":" .. c.sport .. " <-> " .. c.dst .. ":" .. c.dport }
        for _, a in ipairs(analyzers) do
            if a.columns and settings[a.name .. "_enabled"] ~= false then
                for _, col in ipairs(a.columns) do
                    local ok, v = pcall(col.get, st)
                    row[#row + 1] = ok and tostring(v == nil and "-" or v) or "?"
                end
            end
        end
        rows[#rows + 1] = row
    end
    return cols, rows
end

function core.stat_text()
    local cols, rows = stat_rows()
    local w = {}
    for i, c in ipairs(cols) do w[i] = #c end
    for _, r in ipairs(rows) do
        for i, v in ipairs(r) do if #v > w[i] then w[i] = #v end end
    end
    local lines = {}
    local bar = string.rep("=", 80)
    lines[#lines + 1] = bar
    lines[#lines + 1] = "tcpstall: TCP stall diagnostics " .. VERSION .. " (" .. #rows .. " TCP streams)"
    local function fmt(r)
        local parts = {}
        for i, v in ipairs(r) do
            if i <= 2 then parts[i] = v .. string.rep(" ", w[i] - #v)
            else parts[i] = string.rep(" ", w[i] - #v) .. v end
        end
        return table.concat(parts, "  ")
    end
    lines[#lines + 1] = fmt(cols)
    for _, r in ipairs(rows) do lines[#lines + 1] = fmt(r) end
    if state.errors > 0 then
        lines[#lines + 1] = "internal errors: " .. state.errors .. " (first: " .. tostring(state.first_error) .. ")"
    end
    lines[#lines + 1] = bar
    return table.concat(lines, "\n")
end

-- machine-readable form (`-z tcpstall,tsv`): one line per stream,
-- "TCPSTALL<TAB>stream=N<TAB>src=...<TAB>key=value..." (values never contain tabs)
function core.stat_tsv()
    local lines = {}
    for _, id in ipairs(state.stream_order) do
        local st = state.streams[id]
        local c = st.client
        local parts = { "TCPSTALL", "stream=" .. id, "src=" .. c.src, "sport=" .. c.sport,
            "dst=" .. c.dst, "dport=" .. c.dport,
            string.format("first_t=%.6f", st.first_t), string.format("last_t=%.6f", st.last_t or st.first_t),
            "first_frame=" .. st.first_f, "last_frame=" .. (st.last_f or st.first_f) }
        for _, a in ipairs(analyzers) do
            if a.columns and settings[a.name .. "_enabled"] ~= false then
                for _, col in ipairs(a.columns) do
                    -- `keys` + `tsv`: one column of the text table, several plain values here
                    local keys = col.keys or (col.key ~= nil and { col.key }) or nil
                    if keys ~= nil then
                        local r = { pcall(col.tsv or col.get, st) }
                        for i = 1, r[1] and #keys or 0 do
                            local v = r[i + 1]
                            if v ~= nil then parts[#parts + 1] = keys[i] .. "=" .. tostring(v):gsub("[\t\n]", " ") end
                        end
                    end
                end
            end
        end
        lines[#lines + 1] = table.concat(parts, "\t")
    end
    lines[#lines + 1] = "TCPSTALL_END\tstreams=" .. #state.stream_order .. "\terrors=" .. state.errors ..
        (state.first_error and ("\tfirst_error=" .. tostring(state.first_error):gsub("[\t\n]", " ")) or "")
    return table.concat(lines, "\n")
end

local function register_stat()
    local function on_z(arg)
        local mode = type(arg) == "string" and arg:match("^tcpstall,(%w+)") or nil
        local tap = Listener.new("frame", nil)
        -- records first (whichever tap draws first): their render is the revisit that closes
        -- episodes still open at the capture end, as pass 2 of -2 does before its summary, and
        -- errors it meets are counted in the summary
        -- (and the rows before all: they are the frames' lines, and some may still be buffered)
        if mode == "tsv" then
            function tap.draw() rows.flush() records.draw() print(core.stat_tsv()) end
        elseif mode == "records" then
            records.enabled = true
            function tap.draw() rows.flush() records.draw() end
        elseif mode == "memory" then
            -- what the plugin holds at the capture end (its Lua heap after a full collection, and
            -- the stream records' contents): for bench/memory.py and tests, never the GUI
            function tap.draw()
                rows.flush()
                local m = stream.memory(state)
                collectgarbage("collect")
                local heap_kb = math.floor(collectgarbage("count"))   -- (a float in Lua 5.3+)
                print(string.format("TCPSTALL_MEMORY\theap_kb=%d\tstreams=%d\tsegment_records=%d\t" ..
                    "outstanding_segments=%d\theld_entries=%d\tpooled_records=%d", heap_kb,
                    m.streams, m.segments, m.outstanding, m.held, m.pooled))
            end
        elseif mode == "rows" or mode == "segments" then
            rows.enabled, rows.segments = true, mode == "segments"
            tap.draw = rows.flush
        else
            function tap.draw() rows.flush() records.draw() print(core.stat_text()) end
        end
        function tap.reset() end
    end
    if register_stat_cmd_arg ~= nil then
        register_stat_cmd_arg("tcpstall", on_z)
    end
end
register_stat()
