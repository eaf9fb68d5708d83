-- Fixed-cost breakdown: the bare lookup (ref_bare_get) in a statement that
-- also calls app.act_as; planned as the login (superuser), so without RLS
-- and without api.deals_get's plpgsql wrapper.
\set i random(1, 1000)
SELECT app.deal_json(d)::text FROM app.act_as(:user, :org) a, crm.deals d
 WHERE d.organization_id = :org AND d.id = (SELECT id FROM public.bench_deals WHERE n = :i);
