-- W3 with an Idempotency-Key, a new one on every request (README,
-- "Idempotency keys"): what storing the answer costs. The key is the wrk
-- thread, the start time and a counter, so no two requests of a run, or of
-- two runs, share one. Building each request in Lua costs wrk a little more
-- CPU than W3's fixed request (both share the machine with the server).
dofile("bench/wrk/common.lua")
wrk.method = "POST"
wrk.path = "/api/v1/contacts"
wrk.body = '{"name": "Bench contact", "email": "bench@example.com"}'

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local counter = 0
local prefix = nil
function request()
  if prefix == nil then
    prefix = string.format("bench-%d-%d-%d-", tid or 0, os.time(), math.random(1, 1000000000))
  end
  counter = counter + 1
  wrk.headers["Idempotency-Key"] = prefix .. counter
  return wrk.format()
end
