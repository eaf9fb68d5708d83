-- Reference for W2 (issue #10, item 7): the same deal as JSON by primary key,
-- with no context, no role switch and no function: what a request could cost.
\set i random(1, 1000)
SELECT app.deal_json(d)::text FROM crm.deals d
 WHERE d.organization_id = :org AND d.id = (SELECT id FROM public.bench_deals WHERE n = :i);
