-- tcpstall/seq.lua: wrap-safe 32-bit TCP sequence arithmetic for Lua 5.2 (numbers are doubles).
--
-- The core keeps every sequence number of a direction as an *unwrapped* absolute value: a double
-- that keeps growing past 2^32 (exact up to 2^53, i.e. 8 PB per direction). Raw 32-bit values from
-- the wire are unwrapped against a reference (the highest absolute value seen so far), so all
-- comparisons and differences in the analyzers are plain `<` and `-`.
--
-- Side-effect free: Wireshark may load this file on its own when the plugin folder is scanned
-- recursively; that only returns a table.
local M = {}

local TWO32 = 4294967296
local HALF = 2147483648
M.TWO32 = TWO32

-- (a - b) mod 2^32 mapped to [-2^31, 2^31): signed distance from raw b to raw a.
function M.diff(a, b)
    local d = (a - b) % TWO32
    if d >= HALF then d = d - TWO32 end
    return d
end

-- Unwrap raw 32-bit value `raw` to the absolute value closest to absolute reference `ref`.
function M.unwrap(raw, ref)
    return ref + M.diff(raw, ref % TWO32)
end

-- Raw 32-bit value of an absolute sequence number (for display / matching).
function M.wrap(abs)
    return abs % TWO32
end

-- Wrap-safe comparisons on raw values (RFC 1982 style): a < b, a <= b.
function M.lt(a, b) return M.diff(a, b) < 0 end
function M.le(a, b) return M.diff(a, b) <= 0 end

return M
