-- Velocity and forecast (SPEC §10) on a small fixed data set whose numbers
-- are worked out by hand below: the deals and their stays are written as the
-- table owner with explicit times (N = now(), fixed for the transaction), then
-- read as the request role under a context. The same answers must come from
-- unfolded deltas and from folded totals, and follow later API writes.
BEGIN;
SELECT plan(36);
\ir pipeline_fixture.psql
SELECT setseed(0.36);

\set org_v   'c0000000-0000-0000-0000-000000000000'
\set vera    'c0000000-0000-0000-0000-000000000001'
\set contact 'c0000000-0000-0000-0000-000000000c01'
INSERT INTO crm.users (id, email, hashed_password, name) VALUES (:'vera', 'vera@velocity.test', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'Vera');
INSERT INTO crm.organizations (id, name) VALUES (:'org_v', 'V');
INSERT INTO crm.organization_members (organization_id, user_id, role) VALUES (:'org_v', :'vera', 'owner');
INSERT INTO crm.contacts (organization_id, id, owner_id, name) VALUES (:'org_v', :'contact', :'vera', 'Client');
SELECT id AS sales FROM crm.pipelines WHERE organization_id = :'org_v' \gset

-- Velocity data -----------------------------------------------------------------
-- Sales: qualification, proposal, negotiation, closed. Deals (status, current
-- stage, created, closed; d = days, s = seconds before or after N) and their
-- stays [entered, left):
--   E in_progress negotiation, N-5d:  qualification [N-5d, N-5d+1h] 3600 s; proposal [N-5d+1h, N-1d] 342000 s; negotiation [N-1d, -)
--   F in_progress proposal, N-20d:    qualification [N-20d, N-20d+2h] 7200 s; proposal [N-20d+2h, -)
--   G lost proposal, N-31d, closed N-1d: qualification [N-31d, N-30d+1s] 86401 s; proposal [N-30d+1s, -)
--   H won closed, N-40d, closed N-30d-1s: qualification [N-40d, N-30d-1s] 863999 s; closed [.., -)
--   I won closed, N-20d, closed N-10d:   qualification [N-20d, N-12d] 691200 s; closed [N-12d, -)
--   J won closed, N-35d, closed N-30d+1s: qualification [N-35d, N-30d] 432000 s; closed [N-30d, -)
--   K won closed, N-100d, closed N-60d:  qualification [N-100d, N-60d] 3456000 s; closed [N-60d, -)
--   A new qualification, N-15d; B new qualification, N-5d; C new qualification, N-10d-1s;
--   D in_progress qualification, N-10d+1s: one current stay each, from creation
--   L in_progress proposal, N-3d:  negotiation [N-3d, N-3d+1000s] 1000 s; proposal [.., -)
--   M new proposal, N-2d:          negotiation [N-2d, N-2d+1010s] 1010 s; proposal [.., -)
-- All but the won ones have amount 0 and no date, so the forecast below
-- leaves them out (even when reopened).
CREATE TEMP TABLE v_deals (name text, status crm.deal_status, stage text, created interval, closed interval);
INSERT INTO v_deals VALUES
  ('E', 'in_progress', 'negotiation', '5 days', NULL), ('F', 'in_progress', 'proposal', '20 days', NULL),
  ('G', 'lost', 'proposal', '31 days', '1 day'), ('H', 'won', 'closed', '40 days', '30 days 1 second'),
  ('I', 'won', 'closed', '20 days', '10 days'), ('J', 'won', 'closed', '35 days', '29 days 23:59:59'),
  ('K', 'won', 'closed', '100 days', '60 days'), ('A', 'new', 'qualification', '15 days', NULL),
  ('B', 'new', 'qualification', '5 days', NULL), ('C', 'new', 'qualification', '10 days 1 second', NULL),
  ('D', 'in_progress', 'qualification', '9 days 23:59:59', NULL), ('L', 'in_progress', 'proposal', '3 days', NULL),
  ('M', 'new', 'proposal', '2 days', NULL);
INSERT INTO crm.deals (organization_id, contact_id, owner_id, title, amount, currency, status, pipeline_id, stage,
                       created_at, closed_at)
SELECT :'org_v', :'contact', :'vera', 'V' || name, CASE WHEN status = 'won' THEN 1 ELSE 0 END, 'EUR', status, :'sales', stage,
       now() - created, now() - closed
  FROM v_deals;
CREATE FUNCTION pg_temp.v(p_name text) RETURNS uuid LANGUAGE sql STABLE AS $$
  SELECT id FROM crm.deals WHERE title = 'V' || p_name $$;
-- The stays, as a DBA would correct them: the triggers' own stays go, the
-- fixed ones come (their totals follow through the history's trigger).
DELETE FROM crm.deal_stage_history WHERE organization_id = :'org_v';
INSERT INTO crm.deal_stage_history (organization_id, deal_id, pipeline_id, stage, entered_at, left_at, deal_open)
SELECT :'org_v', pg_temp.v(s.deal), :'sales', s.stage, now() - s.entered, now() - s.left_, s.left_ IS NOT NULL OR d.status IN ('new', 'in_progress')
  FROM (VALUES ('E', 'qualification', interval '5 days', interval '4 days 23:00'), ('E', 'proposal', '4 days 23:00', '1 day'),
               ('E', 'negotiation', '1 day', NULL),
               ('F', 'qualification', '20 days', '19 days 22:00'), ('F', 'proposal', '19 days 22:00', NULL),
               ('G', 'qualification', '31 days', '29 days 23:59:59'), ('G', 'proposal', '29 days 23:59:59', NULL),
               ('H', 'qualification', '40 days', '30 days 1 second'), ('H', 'closed', '30 days 1 second', NULL),
               ('I', 'qualification', '20 days', '12 days'), ('I', 'closed', '12 days', NULL),
               ('J', 'qualification', '35 days', '30 days'), ('J', 'closed', '30 days', NULL),
               ('K', 'qualification', '100 days', '60 days'), ('K', 'closed', '60 days', NULL),
               ('A', 'qualification', '15 days', NULL), ('B', 'qualification', '5 days', NULL),
               ('C', 'qualification', '10 days 1 second', NULL), ('D', 'qualification', '9 days 23:59:59', NULL),
               ('L', 'negotiation', '3 days', '2 days 23:43:20'), ('L', 'proposal', '2 days 23:43:20', NULL),
               ('M', 'negotiation', '2 days', '1 day 23:43:10'), ('M', 'proposal', '1 day 23:43:10', NULL))
       AS s (deal, stage, entered, left_)
  JOIN v_deals d ON d.name = s.deal;

CREATE FUNCTION pg_temp.velocity(p_args text) RETURNS jsonb LANGUAGE sql AS $$
  SELECT pg_temp.value_as('c0000000-0000-0000-0000-000000000001', 'c0000000-0000-0000-0000-000000000000',
                          'SELECT api.analytics_velocity(' || p_args || ')')::jsonb $$;
-- One stage as "stays_completed avg median p90 current stuck" (null as -).
CREATE FUNCTION pg_temp.stage(p_report jsonb, p_stage text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT concat_ws(' ', s ->> 'stays_completed', coalesce(s ->> 'avg_seconds', '-'), coalesce(s ->> 'median_seconds', '-'),
                   coalesce(s ->> 'p90_seconds', '-'), s ->> 'current', s ->> 'stuck')
    FROM jsonb_array_elements(p_report -> 'stages') s WHERE s ->> 'stage' = p_stage $$;
-- "won lost win_rate_pct avg_cycle_days".
CREATE FUNCTION pg_temp.outcome(p_report jsonb) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT concat_ws(' ', p_report ->> 'won', p_report ->> 'lost', coalesce(p_report ->> 'win_rate_pct', '-'),
                   coalesce(p_report ->> 'avg_cycle_days', '-')) $$;

-- days = 30: the window is [N-30d, N].
-- qualification, ended in it: E 3600, F 7200, G 86401 (the window's first,
-- partial day), I 691200, J 432000 (ends at N-30d exactly: in); H ended one
-- second before, K long before. n = 5, sum 1220401, avg 244080.2 -> 244080.
-- Each stay is alone in its duration bucket, so the estimates are exact:
-- median = the 3rd of 3600, 7200, 86401, 432000, 691200 = 86401; p90 = rank
-- 0.9 × 4 = 3.6: 432000 + 0.6 × (691200 - 432000) = 587520.
-- current (open deals, stuck_after_days = 10: entered before N-10d): A, B, C,
-- D = 4; stuck A (N-15d) and C (N-10d-1s, the partial day) = 2, not D (N-10d+1s).
-- proposal: E's 342000 alone; current F, L, M (G is lost) = 3, stuck F = 1.
-- negotiation: L 1000 and M 1010 share bucket 72, [1.1^72, 1.1^73) =
-- [955.6, 1051.2), which stands for 2 × 1.1^73 / 2.1 = 1001.1: median and p90
-- = 1001 (exact: 1005 and 1009, within 0.4 %); avg 1005 (exact); current E = 1.
-- closed: no stay ended; its current deals are all won, so 0.
-- won I (cycle 10d = 864000 s) and J (5d + 1s = 432001 s), lost G: win rate
-- 2/3 = 66.67; avg cycle (864000 + 432001) / 2 / 86400 = 7.5000058 -> 7.50.
SELECT pg_temp.velocity('p_days => 30, p_stuck_after_days => 10') AS v30 \gset
SELECT is(pg_temp.stage(:'v30', 'qualification'), '5 244080 86401 587520 4 2', 'days=30: qualification (unfolded deltas)');
SELECT is(pg_temp.stage(:'v30', 'proposal'), '1 342000 342000 342000 3 1', 'days=30: proposal');
SELECT is(pg_temp.stage(:'v30', 'negotiation'), '2 1005 1001 1001 1 0', 'days=30: negotiation (two stays in one bucket: estimated)');
SELECT is(pg_temp.stage(:'v30', 'closed'), '0 - - - 0 0', 'days=30: closed, nothing ended, no open deal');
SELECT is(pg_temp.outcome(:'v30'), '2 1 66.67 7.50', 'days=30: won, lost, win rate, average cycle');
SELECT is((SELECT string_agg(s ->> 'stage', ' ') FROM jsonb_array_elements(:'v30'::jsonb -> 'stages') s),
  'qualification proposal negotiation closed', 'the pipeline''s stages in position order');
SELECT is(:'v30'::jsonb - 'stages' - 'won' - 'lost' - 'win_rate_pct' - 'avg_cycle_days',
  jsonb_build_object('pipeline_id', :'sales'::uuid, 'days', 30, 'stuck_after_days', 10), 'with the parameters it used');

-- Everything folded: the same answer from the day and month totals.
SELECT private.velocity_compact(:'org_v');
SELECT is((SELECT count(*)::int FROM crm.velocity_delta WHERE organization_id = :'org_v'), 0, 'folding empties the deltas');
SELECT is(pg_temp.velocity('p_days => 30, p_stuck_after_days => 10'), :'v30'::jsonb, 'and gives the same answer from the totals');

-- days = 90: H (863999) and K (3456000) join qualification: n = 7, sum
-- 5540400, avg 791485.7 -> 791486; sorted 3600, 7200, 86401, 432000, 691200,
-- 863999, 3456000: median 432000, p90 = rank 5.4: 863999 + 0.4 × 2592001 =
-- 1900799.4 -> 1900799. Won H (863999 s), I, J, K (3456000 s), lost G: win
-- rate 80.00, avg cycle 5616000 / 4 / 86400 = 16.25. stuck_after_days = 30
-- (the default): nothing current began before N-30d.
SELECT pg_temp.velocity('p_days => 90') AS v90 \gset
SELECT is(pg_temp.stage(:'v90', 'qualification'), '7 791486 432000 1900799 4 0', 'days=90: qualification');
SELECT is(pg_temp.stage(:'v90', 'proposal'), '1 342000 342000 342000 3 0', 'days=90: proposal, nothing stuck for 30 days');
SELECT is(pg_temp.outcome(:'v90'), '4 1 80.00 16.25', 'days=90: won, lost, win rate, average cycle');
-- days = 1: [N-1d, N]: E's proposal stay ended at N-1d exactly (in), G was
-- lost at N-1d (in); M's negotiation ended at N-1d-23h43m10s (out).
SELECT pg_temp.velocity('p_days => 1') AS v1 \gset
SELECT is(concat_ws(' | ', pg_temp.stage(:'v1', 'qualification'), pg_temp.stage(:'v1', 'proposal'), pg_temp.stage(:'v1', 'negotiation')),
  '0 - - - 4 0 | 1 342000 342000 342000 3 0 | 0 - - - 1 0', 'days=1: only what ended in the last day');
SELECT is(pg_temp.outcome(:'v1'), '0 1 0.00 -', 'days=1: one lost, no won: win rate 0, no cycle');

-- Later writes through the API (deltas on top of the folded totals), at N:
-- A moves on to proposal: qualification gets a 15-day stay (n = 6) and loses
-- a current, stuck deal (3, 1); proposal gets a current one, not stuck (4, 1).
-- G is reopened: no longer lost (win rate 100), current and stuck in proposal
-- again (5, 2, entered N-30d+1s).
SELECT pg_temp.exec_as(:'vera', :'org_v', format('SELECT api.deals_update(%L, NULL, %L, NULL, NULL, NULL, NULL, NULL)', pg_temp.v('A'), 'proposal'));
SELECT pg_temp.exec_as(:'vera', :'org_v', format('SELECT api.deals_update(%L, %L, NULL, NULL, NULL, NULL, NULL, NULL)', pg_temp.v('G'), 'in_progress'));
SELECT pg_temp.velocity('p_days => 30, p_stuck_after_days => 10') AS v30b \gset
SELECT is(split_part(pg_temp.stage(:'v30b', 'qualification'), ' ', 1) || ' ' || split_part(pg_temp.stage(:'v30b', 'qualification'), ' ', 5)
          || ' ' || split_part(pg_temp.stage(:'v30b', 'qualification'), ' ', 6), '6 3 1', 'a stage change moves a stay to finished and a deal on');
SELECT is(split_part(pg_temp.stage(:'v30b', 'proposal'), ' ', 5) || ' ' || split_part(pg_temp.stage(:'v30b', 'proposal'), ' ', 6), '5 2',
  'the next stage and a reopened deal count as current');
SELECT is(pg_temp.outcome(:'v30b'), '2 0 100.00 7.50', 'a reopened deal is no longer closed');
SELECT private.velocity_compact(:'org_v');
SELECT is(pg_temp.velocity('p_days => 30, p_stuck_after_days => 10'), :'v30b'::jsonb, 'folded again: the same');

-- Parameters and tenancy.
CREATE FUNCTION pg_temp.problem(p_sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  v_code text;
  v_field text;
BEGIN
  BEGIN
    PERFORM pg_temp.value_as('c0000000-0000-0000-0000-000000000001', 'c0000000-0000-0000-0000-000000000000', p_sql);
    RETURN 'ok';
  EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_code = CONSTRAINT_NAME, v_field = COLUMN_NAME;
    RETURN v_code || ' ' || v_field;
  END;
END
$$;
SELECT is(pg_temp.problem('SELECT api.analytics_velocity(p_days => 0)'), 'invalid_query_parameter days', 'days below 1: 400 with the field');
SELECT is(pg_temp.problem('SELECT api.analytics_velocity(p_days => 3651)'), 'invalid_query_parameter days', 'days above 3650');
SELECT is(pg_temp.problem('SELECT api.analytics_velocity(p_stuck_after_days => 0)'), 'invalid_query_parameter stuck_after_days', 'stuck_after_days below 1');
SELECT is(pg_temp.problem(format('SELECT api.analytics_velocity(p_pipeline_id => %L)', (SELECT id FROM crm.pipelines WHERE organization_id = :'org_b'))),
  'pipeline_not_found pipeline_id', 'another organization''s pipeline: 404');

-- Forecast ----------------------------------------------------------------------
-- M0 = the current UTC month. Open deals (and a few that must not count):
--   F1 EUR 1000.00 new qualification (10 %), expected on M0's first day
--   F2 EUR  500.50 in_progress proposal (30 %), M0 + 14 days
--   F3 USD  200.00 in_progress negotiation (60 %), M1's last day
--   F4 EUR  333.33 new, Renewals' "due" (50 %), M2's first day
--   F5 EUR  100.00 new qualification, the day before M0: overdue
--   F6 GBP   50.00 in_progress closed (100 %), no date: unscheduled
--   F7 EUR  999.99 new qualification, M3 (beyond months = 3)
--   F8 EUR 10000 won, M0; F10 USD 70 lost, no date: not open
--   F9 EUR    0.00 new qualification, M1: a zero, left out
-- months=3, every pipeline:
--   M0: EUR 1500.50, weighted 1000 × 0.10 + 500.50 × 0.30 = 100 + 150.15 = 250.15
--   M1: USD 200.00, weighted 120.00 (F9's EUR 0 is left out)
--   M2: EUR 333.33, weighted 166.665 -> 166.67
--   overdue EUR 100.00 / 10.00; unscheduled GBP 50.00 / 50.00 (the velocity
--   deals' EUR 0 is left out)
SELECT (pg_temp.value_as(:'vera', :'org_v', $$SELECT api.pipelines_create('Renewals',
  '[{"key": "due", "name": "Due", "probability": 50}]') ->> 'id'$$)) AS renewals \gset
SELECT app.utc_month(now()) AS m0 \gset
INSERT INTO crm.deals (organization_id, contact_id, owner_id, title, amount, currency, status, pipeline_id, stage, expected_close_date)
VALUES (:'org_v', :'contact', :'vera', 'F1', 1000.00, 'EUR', 'new', :'sales', 'qualification', :'m0'::date),
       (:'org_v', :'contact', :'vera', 'F2', 500.50, 'EUR', 'in_progress', :'sales', 'proposal', :'m0'::date + 14),
       (:'org_v', :'contact', :'vera', 'F3', 200.00, 'USD', 'in_progress', :'sales', 'negotiation', (:'m0'::date + interval '2 months')::date - 1),
       (:'org_v', :'contact', :'vera', 'F4', 333.33, 'EUR', 'new', :'renewals', 'due', (:'m0'::date + interval '2 months')::date),
       (:'org_v', :'contact', :'vera', 'F5', 100.00, 'EUR', 'new', :'sales', 'qualification', :'m0'::date - 1),
       (:'org_v', :'contact', :'vera', 'F6', 50.00, 'GBP', 'in_progress', :'sales', 'closed', NULL),
       (:'org_v', :'contact', :'vera', 'F7', 999.99, 'EUR', 'new', :'sales', 'qualification', (:'m0'::date + interval '3 months')::date),
       (:'org_v', :'contact', :'vera', 'F8', 10000, 'EUR', 'won', :'sales', 'closed', :'m0'::date),
       (:'org_v', :'contact', :'vera', 'F9', 0.00, 'EUR', 'new', :'sales', 'qualification', (:'m0'::date + interval '1 month')::date),
       (:'org_v', :'contact', :'vera', 'F10', 70, 'USD', 'lost', :'sales', 'closed', NULL);

CREATE FUNCTION pg_temp.forecast(p_args text) RETURNS jsonb LANGUAGE sql AS $$
  SELECT pg_temp.value_as('c0000000-0000-0000-0000-000000000001', 'c0000000-0000-0000-0000-000000000000',
                          'SELECT api.analytics_forecast(' || p_args || ')')::jsonb $$;
-- A list of amounts as "CUR total/weighted, ...".
CREATE FUNCTION pg_temp.amounts(p jsonb) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT coalesce(string_agg(a ->> 'currency' || ' ' || (a ->> 'total') || '/' || (a ->> 'weighted'), ', ' ORDER BY n), '')
    FROM jsonb_array_elements(p) WITH ORDINALITY x (a, n) $$;
-- The months as "YYYY-MM: amounts; ...".
CREATE FUNCTION pg_temp.months(p jsonb) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT string_agg((m ->> 'month') || ': ' || pg_temp.amounts(m -> 'amounts'), '; ' ORDER BY n)
    FROM jsonb_array_elements(p -> 'months') WITH ORDINALITY x (m, n) $$;
SELECT to_char(:'m0'::date, 'YYYY-MM') AS m0s, to_char(:'m0'::date + interval '1 month', 'YYYY-MM') AS m1s,
       to_char(:'m0'::date + interval '2 months', 'YYYY-MM') AS m2s, to_char(:'m0'::date + interval '3 months', 'YYYY-MM') AS m3s \gset

SELECT pg_temp.forecast('p_months => 3') AS f3 \gset
SELECT is(pg_temp.months(:'f3'), format('%s: EUR 1500.50/250.15; %s: USD 200.00/120.00; %s: EUR 333.33/166.67', :'m0s', :'m1s', :'m2s'),
  'months=3: each month from the current one, per currency, total and weighted');
SELECT is(pg_temp.amounts(:'f3'::jsonb -> 'overdue'), 'EUR 100.00/10.00', 'overdue: expected before the current month');
SELECT is(pg_temp.amounts(:'f3'::jsonb -> 'unscheduled'), 'GBP 50.00/50.00', 'unscheduled: no date (zeros left out)');
SELECT is(:'f3'::jsonb -> 'pipeline_id', 'null'::jsonb, 'every pipeline when none is asked for');
SELECT is(pg_temp.months(pg_temp.forecast('p_months => 4')),
  format('%s: EUR 1500.50/250.15; %s: USD 200.00/120.00; %s: EUR 333.33/166.67; %s: EUR 999.99/100.00', :'m0s', :'m1s', :'m2s', :'m3s'),
  'months=4: one more month (999.99 × 10 % = 99.999 -> 100.00)');
SELECT is(pg_temp.months(pg_temp.forecast('p_months => 1')), format('%s: EUR 1500.50/250.15', :'m0s'), 'months=1: the current month only');
SELECT is(pg_temp.months(pg_temp.forecast(format('p_months => 3, p_pipeline_id => %L', :'sales'))),
  format('%s: EUR 1500.50/250.15; %s: USD 200.00/120.00; %s: ', :'m0s', :'m1s', :'m2s'), 'one pipeline: Sales (an empty month stays listed)');
SELECT is(pg_temp.months(pg_temp.forecast(format('p_months => 3, p_pipeline_id => %L', :'renewals'))),
  format('%s: ; %s: ; %s: EUR 333.33/166.67', :'m0s', :'m1s', :'m2s'), 'one pipeline: Renewals');
-- Qualification's probability 10 -> 20: M0 weighted 200 + 150.15 = 350.15,
-- overdue 20.00. F3's date cleared: USD moves to unscheduled. F1 won: M0
-- keeps F2 only.
SELECT pg_temp.exec_as(:'vera', :'org_v', format('SELECT api.pipeline_stages_update(%L, %L, p_probability => 20)', :'sales', 'qualification'));
SELECT is(pg_temp.months(pg_temp.forecast('p_months => 1')) || ' | ' || pg_temp.amounts(pg_temp.forecast('p_months => 1') -> 'overdue'),
  format('%s: EUR 1500.50/350.15 | EUR 100.00/20.00', :'m0s'), 'weighted by the stage''s probability as it is now');
SELECT pg_temp.exec_as(:'vera', :'org_v', format('SELECT api.deals_update(%L, NULL, NULL, NULL, NULL, NULL, NULL, NULL, p_fields => %L)',
  (SELECT id FROM crm.deals WHERE title = 'F3'), '{expected_close_date}'));
SELECT pg_temp.exec_as(:'vera', :'org_v', format('SELECT api.deals_update(%L, %L, NULL, NULL, NULL, NULL, NULL, NULL)',
  (SELECT id FROM crm.deals WHERE title = 'F1'), 'won'));
SELECT pg_temp.forecast('p_months => 2') AS f2 \gset
SELECT is(pg_temp.months(:'f2') || ' | ' || pg_temp.amounts(:'f2'::jsonb -> 'unscheduled'),
  format('%s: EUR 500.50/150.15; %s:  | GBP 50.00/50.00, USD 200.00/120.00', :'m0s', :'m1s'),
  'a cleared date moves a deal to unscheduled; a won deal leaves the forecast');
SELECT app.deal_totals_compact(:'org_v');
SELECT is(pg_temp.forecast('p_months => 2'), :'f2'::jsonb, 'folded totals: the same');
SELECT is(pg_temp.problem('SELECT api.analytics_forecast(p_months => 0)'), 'invalid_query_parameter months', 'months below 1: 400 with the field');
SELECT is(pg_temp.problem('SELECT api.analytics_forecast(p_months => 25)'), 'invalid_query_parameter months', 'months above 24');
SELECT is(pg_temp.problem(format('SELECT api.analytics_forecast(p_pipeline_id => %L)', (SELECT id FROM crm.pipelines WHERE organization_id = :'org_b'))),
  'pipeline_not_found pipeline_id', 'another organization''s pipeline: 404');

SELECT * FROM finish();
ROLLBACK;
