-- tcpstall/records.lua: `-z tcpstall,records` — the rows `tshark -2 -Y tcpstall -T fields` prints
-- for the plugin's fields, from ONE pass.
--
-- A second pass costs as much as the first and prints through tshark's field machinery; all it
-- adds is the render of each frame's stored results, which the render contract (README.md) makes a
-- pure function of first-pass state. So after the last frame this module renders every frame once
-- more, as a revisit would, into a sink that writes the values as text instead of building a tree.
--
-- Output (stdout, after tshark's own output for the capture):
--   TCPSTALL_RECORDS<TAB>fields=<field>,...,<expert>,...,tcpstall.hol.held_frames   every
--       registered field and expert, in registration order (tcpstall.lua; an expert registered
--       twice, warn/note, is one name), then the one column that only records have (below)
--   one line per frame `-Y tcpstall` shows on a revisit, fields separated by \x1f:
--       frame number, frame.time_epoch, tcp.stream, then K=VALUE for each value the frame carries,
--       K the 1-based position of its field in the header list, in the order they were added (a
--       field added twice appears twice); VALUE as `-T fields` prints it (4.0): numbers, booleans
--       1/0, an expert 1. Sparse, because a frame carries a few of the ~70 fields.
--   except the frames that are only *held* (HOL: hold, release frame, severity, hole or report,
--       the blocked expert, nothing else): most frames of a lossy bulk capture, whose row says
--       only "released by frame N". They are listed on their release frame's row instead, as
--       K=F1,F2,... of tcpstall.hol.held_frames (their hold times stay in the two-pass output and
--       the GUI). A release frame that has no row of its own gets one with only that list.
--   TCPSTALL_RECORDS_END<TAB>rows=N
local core = ...
if type(core) ~= "table" then return {} end

local M = { enabled = false }
local drawn = false

local FIELD_SEP = "\31"
local floor, format, concat = math.floor, string.format, table.concat

-- frame -> ns since the first frame's second (exact in a double for 104 days), frame -> tcp.stream;
-- kept only when records were asked for
local times, streams, base_secs = {}, {}, nil

function M.reset()
    times, streams, base_secs, drawn = {}, {}, nil, false
end

-- called by the first pass for each TCP frame of a stream (only when M.enabled), `t` its
-- frame.time_epoch (an NSTime) or nil
function M.note_frame(number, stream_id, t)
    if t == nil then return end
    local secs = t.secs
    if base_secs == nil then base_secs = secs end
    times[number] = (secs - base_secs) * 1e9 + t.nsecs
    streams[number] = stream_id
end

local function time_text(number)
    local ns = times[number]
    if ns == nil then return "" end
    local s = floor(ns / 1e9)
    return format("%d.%09d", base_secs + s, floor(ns - s * 1e9))
end

-- how `tshark -T fields` prints a value of each kind (4.0: "%.15g" doubles, 1/0 booleans)
local TEXT = {
    double = function(v) return format("%.15g", v) end,
    int = function(v)   -- (a uint64 field is given a UInt64: its tostring is the decimal)
        if type(v) ~= "number" then return tostring(v) end
        return format("%d", floor(v))
    end,
    bool = function(v) return v and "1" or "0" end,
    string = function(v) return (tostring(v):gsub("%c", " ")) end,
    expert = function() return "1" end,   -- (an expert's value slot is unused)
}

local HELD_FRAMES = "tcpstall.hol.held_frames"

-- header names; field or expert -> "K=" (K its position in the names); that prefix -> text function
local function columns()
    local names, prefix_of, text_of, by_name = {}, {}, {}, {}
    local function add(f)
        local name = core.field_abbr[f]
        local prefix = by_name[name]
        if prefix == nil then
            names[#names + 1] = name
            prefix = #names .. "="
            by_name[name] = prefix
        end
        prefix_of[f], text_of[f] = prefix, TEXT[core.field_kind[f]]
    end
    for _, f in ipairs(core.fields) do add(f) end
    for _, ei in ipairs(core.experts) do add(ei) end
    names[#names + 1] = HELD_FRAMES
    return names, prefix_of, text_of, #names .. "="
end

-- what a held-only frame carries (hol.lua's render of a held frame)
local function held_set()
    local F, E = core.F, core.E
    return { [F.hol_hold_ms] = true, [F.hol_release_frame] = true, [F.hol_severity] = true,
             [F.hol_hole_bytes] = true, [F.hol_reported_by] = true,
             [E.hol_blocked] = true, [E.hol_blocked_note] = true }
end

-- On a frame without a stored result only the analyzers that keep facts by frame (per_frame) can
-- show something, as render asks them. When none but HOL would, the frame needs no render: it
-- shows nothing (false), or it is held-only (its release frame): most frames of a lossy bulk
-- capture: a third of the records' cost. nil: it must be rendered.
local function unrendered_test()
    local held_release, others = nil, {}
    for _, a in ipairs(core.shown) do
        if a.name == "hol" then held_release = a.held_release
        elseif a.per_frame then others[#others + 1] = a end
    end
    return function(number)
        for i = 1, #others do
            local a = others[i]
            if a.visible == nil or a.visible(nil, number) then return nil end
        end
        return held_release ~= nil and held_release(number) or false
    end
end

-- print the records once, after the last frame (a no-op unless they were asked for)
function M.draw()
    if not M.enabled or drawn then return end
    drawn = true
    local names, prefix_of, text_of, held_prefix = columns()
    local HELD = held_set()
    local F_RELEASE = core.F.hol_release_frame
    local line, n, shown, other, release = {}, 3, false, false, nil
    local added, values = {}, {}   -- field/expert and value of each add, turned into text only for a row
    local held_of = {}           -- release frame -> held-only frames waiting for its row
    -- the tree and subtree stand-in: the analyzers' render calls only these
    local item = { append_text = function() end }   -- an item's text is for people
    local sink = {}
    function sink.add(self, f, v)
        if f == core.proto then
            shown = true
            return self
        end
        if not HELD[f] then other = true elseif f == F_RELEASE then release = v end
        n = n + 1
        added[n], values[n] = f, v
        return item
    end
    function sink.add_proto_expert_info(self, ei)
        if not HELD[ei] then other = true end
        n = n + 1
        added[n] = ei
    end

    local state, render = core.state, core.render
    local results = state.results
    local out = { "TCPSTALL_RECORDS\tfields=" .. concat(names, ",") }
    local rows = 0
    local function emit(number)
        line[1], line[2], line[3] = number, time_text(number), streams[number] or ""
        for i = 4, n do
            local f = added[i]
            line[i] = prefix_of[f] .. text_of[f](values[i])
        end
        local held = held_of[number]
        if held ~= nil then
            n = n + 1
            line[n] = held_prefix .. concat(held, ",")
            held_of[number] = nil
        end
        out[#out + 1] = concat(line, FIELD_SEP, 1, n)
        rows = rows + 1
        if rows % 2048 == 0 then
            print(concat(out, "\n"))        -- (print, as every tcpstall output: never io.*)
            out = {}
        end
    end
    core.first_visit = false
    core.texts_unread = true             -- analyzers may skip composing expert texts (hol: held frames)
    local unrendered = unrendered_test()
    for number = 1, state.last_frame do
        shown, other, release = false, false, nil
        local res = results[number]
        local rendered = true
        if res == nil then
            local ok, r = pcall(unrendered, number)
            if ok and r == false then rendered = false
            elseif ok and r ~= nil and r > number then rendered, shown, release = false, true, r end
        end
        if rendered then
            local ok, err = pcall(render, sink, res, number)
            if not ok then
                state.errors = state.errors + 1
                if state.first_error == nil then state.first_error = "frame " .. number .. ": " .. tostring(err) end
            end
        end
        if shown then
            if not other and release ~= nil and release > number then
                local held = held_of[release]
                if held == nil then held = {} held_of[release] = held end
                held[#held + 1] = number
            else
                emit(number)
            end
        end
        n = 3
    end
    local left = {}
    for number in pairs(held_of) do left[#left + 1] = number end
    table.sort(left)
    for _, number in ipairs(left) do
        n = 3
        emit(number)
    end
    core.texts_unread = false
    out[#out + 1] = "TCPSTALL_RECORDS_END\trows=" .. rows
    print(concat(out, "\n"))
end

return M
