-- Fixed-cost breakdown: api.deals_get after the settings alone (no role
-- switch, no membership lookup; as the superuser, so no RLS either): the
-- plpgsql call of act_as and the plpgsql wrapper of the lookup. Not a valid
-- way to serve a request.
\set i random(1, 1000)
SELECT api.deals_get((SELECT id FROM public.bench_deals WHERE n = :i))::text FROM bench.act_as_settings_only(:user, :org);
