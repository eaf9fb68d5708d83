dofile("bench/wrk/common.lua")
request = function()
  return wrk.format("GET", "/api/v1/deals/" .. random_deal())
end
