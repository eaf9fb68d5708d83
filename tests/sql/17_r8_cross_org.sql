-- R8: contact, deal, task and activity always share their organization. From
-- organization A, a reference to B's contact or deal (or to a user who is not
-- a member of A, as owner) fails with a foreign-key violation (23503, which
-- the API answers with 404); reading or changing B's records by id answers
-- MC404 — even for a user who is a member of both, acting in A. (The
-- superuser-level composite-key checks are in 03_cross_org_references.sql;
-- here every statement runs as the request role, through the API.)
BEGIN;
SELECT plan(42);
\ir pipeline_fixture.psql

-- Adam (admin of A) is also a member of B.
INSERT INTO crm.organization_members (organization_id, user_id, role) VALUES (:'org_b', :'adam', 'member');

CREATE TEMP TABLE b_before AS
SELECT 'contacts' AS tbl, count(*) AS n, md5(string_agg(t::text, ',' ORDER BY t.id)) AS fp FROM crm.contacts t WHERE organization_id = :'org_b'
UNION ALL SELECT 'deals', count(*), md5(string_agg(t::text, ',' ORDER BY t.id)) FROM crm.deals t WHERE organization_id = :'org_b'
UNION ALL SELECT 'tasks', count(*), md5(string_agg(t::text, ',' ORDER BY t.id)) FROM crm.tasks t WHERE organization_id = :'org_b'
UNION ALL SELECT 'activities', count(*), md5(string_agg(t::text, ',' ORDER BY t.id)) FROM crm.activities t WHERE organization_id = :'org_b';
SELECT count(*) AS a_rows FROM (SELECT id FROM crm.contacts WHERE organization_id = :'org_a' UNION ALL
  SELECT id FROM crm.deals WHERE organization_id = :'org_a' UNION ALL SELECT id FROM crm.tasks WHERE organization_id = :'org_a'
  UNION ALL SELECT id FROM crm.activities WHERE organization_id = :'org_a') x \gset

-- References from A's records to B's: 23503, through the API and directly.
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.deals_create(%L, ''Poach'', 10, ''EUR'')', :'c_zed')),
  '23503', 'insert or update on table "deals" violates foreign key constraint "deals_contact_id_not_found"',
  'a deal in A on B''s contact (api.deals_create)');
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.deals_update(%L, NULL, NULL, NULL, NULL, NULL, %L, NULL)', :'d_max', :'c_zed')),
  '23503', 'insert or update on table "deals" violates foreign key constraint "deals_contact_id_not_found"',
  'a deal of A re-pointed at B''s contact (api.deals_update)');
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'adam', :'org_a',
         format('INSERT INTO crm.deals (organization_id, contact_id, owner_id, title, amount, currency) VALUES (%L, %L, %L, ''Poach'', 1, ''EUR'')',
                :'org_a', :'c_zed', :'adam')),
  '23503', 'insert or update on table "deals" violates foreign key constraint "deals_contact_id_not_found"',
  'a deal in A on B''s contact by a member of both organizations (direct INSERT)');
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.tasks_create(%L, ''Spy'', NULL, %L)', :'d_zed', :'tomorrow')),
  '23503', 'insert or update on table "tasks" violates foreign key constraint "tasks_deal_id_not_found"',
  'a task in A on B''s deal (api.tasks_create, a member: not a 403, the deal is simply not found)');
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'adam', :'org_a',
         format('SELECT api.tasks_create(%L, ''Spy'', NULL, %L)', :'d_zed', :'tomorrow')),
  '23503', 'insert or update on table "tasks" violates foreign key constraint "tasks_deal_id_not_found"',
  'a task in A on B''s deal by a member of both organizations');
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('UPDATE crm.tasks SET deal_id = %L WHERE id = %L', :'d_zed', :'t_max')),
  '23503', 'insert or update on table "tasks" violates foreign key constraint "tasks_deal_id_not_found"',
  'a task of A moved onto B''s deal (direct UPDATE)');
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.activities_create(%L, ''comment'', ''{"text": "hello B"}'')', :'d_zed')),
  '23503', 'insert or update on table "activities" violates foreign key constraint "activities_deal_id_not_found"',
  'a comment in A on B''s deal (api.activities_create)');
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'adam', :'org_a',
         format('INSERT INTO crm.activities (organization_id, deal_id, type, payload) VALUES (%L, %L, ''comment'', ''{"text": "x"}'')',
                :'org_a', :'d_zed')),
  '23503', 'insert or update on table "activities" violates foreign key constraint "activities_deal_id_not_found"',
  'a comment in A on B''s deal by a member of both organizations (direct INSERT)');
-- Owners must be members of the record's organization.
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'adam', :'org_a',
         format('SELECT api.contacts_create(''For Zed'', NULL, NULL, %L)', :'zed')),
  '23503', 'insert or update on table "contacts" violates foreign key constraint "contacts_owner_id_not_member"',
  'a contact of A owned by a member of B only');
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'adam', :'org_a',
         format('SELECT api.deals_update(%L, NULL, NULL, NULL, NULL, NULL, NULL, %L)', :'d_adam', :'zed')),
  '23503', 'insert or update on table "deals" violates foreign key constraint "deals_owner_id_not_member"',
  'a deal of A handed to a member of B only');
SELECT is(pg_temp.try_as(:'olga', :'org_a',
         format('SELECT api.contacts_update(%L, ARRAY[''owner_id''], NULL, NULL, NULL, %L)', :'c_olga', :'zed')),
  '23503 contacts_owner_id_not_member', 'a contact of A handed to a member of B only');
-- Control: the same calls with A's own records are accepted.
SELECT is(pg_temp.try_as(:'max', :'org_a', format('SELECT api.deals_create(%L, ''Fine'', 10, ''EUR'')', :'c_max')),
  'ok', 'control: a deal in A on A''s contact');
SELECT is(pg_temp.try_as(:'max', :'org_a', format('SELECT api.tasks_create(%L, ''Fine'', NULL, %L)', :'d_max', :'tomorrow')),
  'ok', 'control: a task in A on A''s deal');
SELECT is(pg_temp.try_as(:'max', :'org_a', format('SELECT api.activities_create(%L, ''comment'', ''{"text": "fine"}'')', :'d_max')),
  'ok', 'control: a comment in A on A''s deal');

-- B's records by id, from A: 404 (MC404), for a member of A only and for a member of both.
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a', format('SELECT api.deals_get(%L)', :'d_zed')),
  'MC404', 'deal not found', 'api.deals_get of B''s deal from A');
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a', format('SELECT api.contacts_get(%L)', :'c_zed')),
  'MC404', 'contact not found', 'api.contacts_get of B''s contact from A');
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a', format('SELECT api.tasks_get(%L)', :'t_zed')),
  'MC404', 'task not found', 'api.tasks_get of B''s task from A');
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a', format('SELECT api.activities_list(%L, 1, 20)', :'d_zed')),
  'MC404', 'deal not found', 'api.activities_list of B''s deal from A');

CREATE TEMP TABLE b_calls (ord int, sql text, expected text);
INSERT INTO b_calls VALUES
  (1,  format('SELECT api.deals_get(%L)', :'d_zed'), 'MC404 deal_not_found'),
  (2,  format('SELECT api.deals_update(%L, ''won'', NULL, NULL, NULL, NULL, NULL, NULL)', :'d_zed'), 'MC404 deal_not_found'),
  (3,  format('SELECT api.deals_delete(%L)', :'d_zed'), 'MC404 deal_not_found'),
  (4,  format('SELECT api.contacts_get(%L)', :'c_zed'), 'MC404 contact_not_found'),
  (5,  format('SELECT api.contacts_update(%L, ARRAY[''name''], ''Mine now'', NULL, NULL, NULL)', :'c_zed'), 'MC404 contact_not_found'),
  (6,  format('SELECT api.contacts_delete(%L)', :'f_zed'), 'MC404 contact_not_found'),
  (7,  format('SELECT api.tasks_get(%L)', :'t_zed'), 'MC404 task_not_found'),
  (8,  format('SELECT api.tasks_update(%L, ARRAY[''is_done''], NULL, NULL, NULL, true)', :'t_zed'), 'MC404 task_not_found'),
  (9,  format('SELECT api.tasks_delete(%L)', :'t_zed'), 'MC404 task_not_found'),
  (10, format('SELECT api.activities_list(%L, 1, 20)', :'d_zed'), 'MC404 deal_not_found');
SELECT is(pg_temp.try_as(u.id, :'org_a', c.sql), c.expected, format('%s, acting in A: %s', u.who, c.sql))
  FROM b_calls c CROSS JOIN (VALUES (1, 'Max (member of A)', :'max'::uuid), (2, 'Adam (member of A and B)', :'adam'::uuid)) u(o, who, id)
 WHERE u.o = 1 OR c.ord IN (1, 2, 6, 10)
 ORDER BY u.o, c.ord;
-- Filters naming B's records find nothing in A.
SELECT is(pg_temp.value_as(:'adam', :'org_a', format('SELECT api.deals_list(1, 20, p_contact_id => %L) ->> ''total''', :'c_zed')),
  '0', 'api.deals_list filtered by B''s contact, acting in A: no deals');
SELECT is(pg_temp.value_as(:'adam', :'org_a', format('SELECT api.tasks_list(1, 20, %L) ->> ''total''', :'d_zed')),
  '0', 'api.tasks_list filtered by B''s deal, acting in A: no tasks');
-- Control: acting in B, Adam does see B's deal; Max cannot act in B at all.
SELECT is(pg_temp.value_as(:'adam', :'org_b', format('SELECT api.deals_get(%L) ->> ''title''', :'d_zed')),
  'Zed''s deal', 'control: acting in B, the member of both sees B''s deal');
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, 'SELECT 1')$$, :'max', :'org_b'),
  'MC404', 'organization not found', 'a member of A only cannot act in B (404)');

-- Nothing of B changed, nothing was added to A by the refused statements.
SELECT is(b.n || ':' || b.fp, n.n || ':' || n.fp, format('B''s %s are unchanged', b.tbl))
  FROM b_before b
  JOIN (SELECT 'contacts' AS tbl, count(*) AS n, md5(string_agg(t::text, ',' ORDER BY t.id)) AS fp FROM crm.contacts t WHERE organization_id = :'org_b'
        UNION ALL SELECT 'deals', count(*), md5(string_agg(t::text, ',' ORDER BY t.id)) FROM crm.deals t WHERE organization_id = :'org_b'
        UNION ALL SELECT 'tasks', count(*), md5(string_agg(t::text, ',' ORDER BY t.id)) FROM crm.tasks t WHERE organization_id = :'org_b'
        UNION ALL SELECT 'activities', count(*), md5(string_agg(t::text, ',' ORDER BY t.id)) FROM crm.activities t WHERE organization_id = :'org_b') n
    USING (tbl)
 ORDER BY b.tbl;
SELECT is((SELECT count(*) FROM (SELECT id FROM crm.contacts WHERE organization_id = :'org_a' UNION ALL
             SELECT id FROM crm.deals WHERE organization_id = :'org_a' UNION ALL SELECT id FROM crm.tasks WHERE organization_id = :'org_a'
             UNION ALL SELECT id FROM crm.activities WHERE organization_id = :'org_a') x),
  :'a_rows'::bigint, 'A has no new rows');
SELECT is((SELECT count(*)::int FROM crm.tasks t JOIN crm.deals d ON d.id = t.deal_id WHERE t.organization_id <> d.organization_id)
        + (SELECT count(*)::int FROM crm.activities a JOIN crm.deals d ON d.id = a.deal_id WHERE a.organization_id <> d.organization_id)
        + (SELECT count(*)::int FROM crm.deals d JOIN crm.contacts c ON c.id = d.contact_id WHERE d.organization_id <> c.organization_id),
  0, 'no task, activity or deal references a record of another organization');

SELECT * FROM finish();
ROLLBACK;
