dofile("bench/wrk/common.lua")
wrk.method = "POST"
wrk.path = "/api/v1/contacts"
wrk.body = '{"name": "Bench contact", "email": "bench@example.com"}'
