dofile("bench/wrk/common.lua")
wrk.path = "/api/v1/analytics/deals/summary?days=30"
