-- Shared by the workload scripts: auth headers and the benchmark deal ids
-- (bench/out/ids.lua, written by bench/run.py).
local ids = dofile(os.getenv("BENCH_IDS") or "bench/out/ids.lua")
wrk.headers["Authorization"] = "Bearer " .. ids.token
wrk.headers["X-Organization-Id"] = ids.org
wrk.headers["Content-Type"] = "application/json"
math.randomseed(os.time())

function random_deal()
  return ids.deals[math.random(#ids.deals)]
end

function owner_email()
  return ids.email
end
