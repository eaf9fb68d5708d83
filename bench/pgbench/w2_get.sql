\set i random(1, 1000)
SELECT api.deals_get((SELECT id FROM public.bench_deals WHERE n = :i))::text FROM app.act_as(:user, :org);
