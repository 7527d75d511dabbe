-- placeholder: replaced by the real postdissector (issue 4)
local p = Proto("tcpstall", "TCP stall diagnostics")
register_postdissector(p)
