\set i random(1, 1000)
\set s random(0, 1)
SELECT api.deals_update((SELECT id FROM public.bench_deals WHERE n = :i), (CASE WHEN :s = 0 THEN 'new' ELSE 'in_progress' END)::crm.deal_status, NULL, NULL, NULL, NULL, NULL, NULL)::text FROM app.act_as(:user, :org);
