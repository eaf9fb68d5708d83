dofile("bench/wrk/common.lua")
local statuses = { "new", "in_progress" }
request = function()
  local body = '{"status": "' .. statuses[math.random(2)] .. '"}'
  return wrk.format("PATCH", "/api/v1/deals/" .. random_deal(), nil, body)
end
