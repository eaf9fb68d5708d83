-- Fixed-cost breakdown: the function path without the role switch (so, as
-- the superuser, without RLS): what the switch costs. Not a valid way to
-- serve a request.
\set i random(1, 1000)
SELECT api.deals_get((SELECT id FROM public.bench_deals WHERE n = :i))::text FROM bench.act_as_no_switch(:user, :org);
