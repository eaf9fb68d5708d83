-- Fixed-cost breakdown: ref_select plus app.act_as (switch, settings,
-- membership lookup), no deal.
\set i random(1, 1000)
SELECT (SELECT id FROM public.bench_deals WHERE n = :i)::text FROM app.act_as(:user, :org);
