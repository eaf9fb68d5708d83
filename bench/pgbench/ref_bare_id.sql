-- Fixed-cost breakdown: the bare primary-key lookup returning only the id,
-- not the JSON (what building the deal's JSON costs; both paths pay it).
\set i random(1, 1000)
SELECT d.id::text FROM crm.deals d
 WHERE d.organization_id = :org AND d.id = (SELECT id FROM public.bench_deals WHERE n = :i);
