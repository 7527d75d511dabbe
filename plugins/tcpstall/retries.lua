-- tcpstall/retries.lua: STUB (not implemented yet). Loaded by plugins/tcpstall.lua; does nothing.
-- The retries analyzer is written on top of the core; see README.md for the contract.
-- Side-effect free when loaded without `core` (Wireshark's recursive plugin-folder scan).
local core = ...
if type(core) ~= "table" then return {} end

local M = { name = "retries" }

function M.reset() end

-- first pass only: read pkt / fwd / rev, write out.retries = {...} when there is something to show
function M.on_packet(pkt, fwd, rev, out, st) end

-- every pass: render out.retries into the tcpstall subtree
function M.render(tree, r, res) end

-- -z tcpstall columns: { {key = "rwnd_x", title = "...", get = function(st) return value end}, ... }
-- (key: machine name used by `-z tcpstall,tsv` and tcpstall analyze; title: the text table)
M.columns = {}

return M
