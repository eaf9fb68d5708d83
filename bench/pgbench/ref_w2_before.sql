-- Fixed-cost breakdown: the function path with app.act_as as it was before
-- issue #10 item 7 (bench.act_as_before in ref_setup.sql).
\set i random(1, 1000)
SELECT api.deals_get((SELECT id FROM public.bench_deals WHERE n = :i))::text FROM bench.act_as_before(:user, :org);
