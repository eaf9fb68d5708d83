dofile("bench/wrk/common.lua")
wrk.headers["Authorization"] = nil
wrk.headers["X-Organization-Id"] = nil
wrk.method = "POST"
wrk.path = "/api/v1/auth/login"
wrk.body = '{"email": "' .. owner_email() .. '", "password": "demo-password"}'
