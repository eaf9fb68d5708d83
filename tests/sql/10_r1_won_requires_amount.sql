-- R1: a deal cannot have status `won` unless amount > 0 — neither by setting
-- won nor by lowering the amount of a won deal. 400 (MC400
-- deal_won_requires_amount), through the API and for a direct statement alike.
BEGIN;
SELECT plan(28);
\ir pipeline_fixture.psql

-- Max (a member) owns a deal worth nothing and one worth 400 (d_max).
\set d_zero 'a0000000-0000-0000-0000-000000000e04'
INSERT INTO crm.deals (organization_id, id, contact_id, owner_id, title, amount, currency)
VALUES (:'org_a', :'d_zero', :'c_max', :'max', 'Free trial', 0, 'EUR');

-- The statements below really run as the request role, with the context set.
SELECT is(pg_temp.value_as(:'max', :'org_a', $$SELECT current_user || ' ' || app.role()$$), 'minicrm_api member',
  'exec_as / try_as run as minicrm_api with the member''s context');

-- Setting won with amount 0: refused, through the API and directly.
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.deals_update(%L, ''won'', NULL, NULL, NULL, NULL, NULL, NULL)', :'d_zero')),
  'MC400', 'a won deal needs an amount greater than 0', 'api.deals_update: won with amount 0 is refused');
SELECT is(pg_temp.try_as(:'max', :'org_a',
         format('SELECT api.deals_update(%L, ''won'', NULL, NULL, NULL, NULL, NULL, NULL)', :'d_zero')),
  'MC400 deal_won_requires_amount', '... with the machine code deal_won_requires_amount');
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('UPDATE crm.deals SET status = ''won'' WHERE id = %L', :'d_zero')),
  'MC400', 'a won deal needs an amount greater than 0', 'a direct UPDATE to won with amount 0 is refused');
-- Rank does not help: the owner is refused as well.
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'olga', :'org_a',
         format('UPDATE crm.deals SET status = ''won'' WHERE id = %L', :'d_zero')),
  'MC400', 'a won deal needs an amount greater than 0', 'the owner of the organization is refused too');
-- Setting won and zeroing the amount in one statement: refused.
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.deals_update(%L, ''won'', NULL, NULL, 0, NULL, NULL, NULL)', :'d_max')),
  'MC400', 'a won deal needs an amount greater than 0', 'won together with amount 0 in one update is refused');
-- A deal cannot be created won with amount 0 either (direct INSERT).
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format($q$INSERT INTO crm.deals (organization_id, contact_id, owner_id, title, amount, currency, status)
                   VALUES (%L, %L, %L, 'Won at zero', 0, 'EUR', 'won')$q$, :'org_a', :'c_max', :'max')),
  'MC400', 'a won deal needs an amount greater than 0', 'a direct INSERT of a won deal with amount 0 is refused');

-- The refused statements changed nothing and wrote no timeline row.
SELECT is((SELECT status::text || ' ' || amount FROM crm.deals WHERE id = :'d_zero'), 'new 0.00',
  'the zero deal is still new with amount 0');
SELECT is((SELECT status::text || ' ' || amount FROM crm.deals WHERE id = :'d_max'), 'new 400.00',
  'd_max is still new with amount 400');
SELECT is(pg_temp.n_activities(:'d_zero', 'status_changed') + pg_temp.n_activities(:'d_max', 'status_changed'), 0,
  'no status_changed activity was written by the refused updates');
SELECT is((SELECT count(*)::int FROM crm.deals WHERE title = 'Won at zero'), 0, 'no won deal at zero was created');

-- Allowed: won with amount > 0, through the API and directly.
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.deals_update(%L, ''won'', NULL, NULL, NULL, NULL, NULL, NULL)', :'d_max')),
  'api.deals_update: won with amount 400 is allowed');
SELECT is((SELECT status::text FROM crm.deals WHERE id = :'d_max'), 'won', 'd_max is won');
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.deals_update(%L, ''won'', NULL, NULL, 0.01, NULL, NULL, NULL)', :'d_zero')),
  'won together with a positive amount (0.01) in one update is allowed');
SELECT is((SELECT status::text || ' ' || amount FROM crm.deals WHERE id = :'d_zero'), 'won 0.01',
  'the former zero deal is won with amount 0.01');
SELECT is(pg_temp.exec_as(:'max', :'org_a',
         format($q$INSERT INTO crm.deals (organization_id, contact_id, owner_id, title, amount, currency, status)
                   VALUES (%L, %L, %L, 'Won at once', 5, 'EUR', 'won')$q$, :'org_a', :'c_max', :'max')),
  1::bigint, 'a direct INSERT of a won deal with amount 5 is allowed');
SELECT is(pg_temp.exec_as(:'mia', :'org_a', format('UPDATE crm.deals SET status = ''won'' WHERE id = %L', :'d_mia')),
  1::bigint, 'a direct UPDATE to won of a deal with amount 300 is allowed');

-- Lowering the amount of a won deal to 0: refused, through the API and directly.
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.deals_update(%L, NULL, NULL, NULL, 0, NULL, NULL, NULL)', :'d_max')),
  'MC400', 'a won deal needs an amount greater than 0', 'api.deals_update: lowering a won deal''s amount to 0 is refused');
SELECT is(pg_temp.try_as(:'max', :'org_a',
         format('SELECT api.deals_update(%L, NULL, NULL, NULL, 0, NULL, NULL, NULL)', :'d_max')),
  'MC400 deal_won_requires_amount', '... with the machine code deal_won_requires_amount');
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'mia', :'org_a',
         format('UPDATE crm.deals SET amount = 0 WHERE id = %L', :'d_mia')),
  'MC400', 'a won deal needs an amount greater than 0', 'a direct UPDATE lowering a won deal''s amount to 0 is refused');
-- ... even by the owner, and even without any context (the rule holds for every writer).
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'olga', :'org_a',
         format('UPDATE crm.deals SET amount = 0 WHERE id = %L', :'d_max')),
  'MC400', 'a won deal needs an amount greater than 0', 'the owner may not lower a won deal''s amount to 0 either');
SELECT throws_ok(format('UPDATE crm.deals SET amount = 0 WHERE id = %L', :'d_max'),
  'MC400', 'a won deal needs an amount greater than 0', 'nor may the superuser, with no context');
SELECT is((SELECT amount FROM crm.deals WHERE id = :'d_max'), 400.00, 'the won deal still has amount 400');
SELECT is((SELECT amount FROM crm.deals WHERE id = :'d_mia'), 300.00, 'the other won deal still has amount 300');

-- Allowed: lowering a won deal's amount while keeping it positive, and
-- zeroing the amount of a deal that is no longer won.
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.deals_update(%L, NULL, NULL, NULL, 1, NULL, NULL, NULL)', :'d_max')),
  'lowering a won deal''s amount to 1 is allowed');
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.deals_update(%L, ''lost'', NULL, NULL, 0, NULL, NULL, NULL)', :'d_max')),
  'leaving won (to lost) and zeroing the amount in one update is allowed');
SELECT is((SELECT status::text || ' ' || amount FROM crm.deals WHERE id = :'d_max'), 'lost 0.00',
  'd_max is lost with amount 0');
SELECT is(pg_temp.exec_as(:'olga', :'org_a', format('UPDATE crm.deals SET amount = 0 WHERE id = %L', :'d_olga')),
  1::bigint, 'a deal that is not won can have amount 0');

SELECT * FROM finish();
ROLLBACK;
