dofile("bench/wrk/common.lua")
wrk.path = "/api/v1/deals?status=new&status=in_progress&min_amount=100&order_by=amount&order=desc&page=3&page_size=20"
