-- Test-only probe (tests/test_boundary.py): loaded before the tcpstall plugin with
-- `-X lua_script:`, it rewords every expert text any dissector adds (reversed, behind a marker),
-- so a Python reader of expert prose would break while one of fields would not notice.
local mt = debug.getregistry().TreeItem
local index = mt.__index
local function reworded(self, ei, text)
    return index(self, "add_proto_expert_info")(self, ei, "REWORDED: " .. string.reverse(tostring(text or "")))
end
rawset(mt, "__index", function(self, key)
    if key == "add_proto_expert_info" then return reworded end
    return index(self, key)
end)
