-- Tenancy (SPEC §1): under organization A's context, organization B's rows
-- cannot be seen, created, changed or deleted, in every tenant table; and a
-- transaction without any context sees nothing at all.
BEGIN;
SELECT plan(51);

-- Runs p_sql as minicrm_api (with a context when p_user is given) and comes
-- back to the superuser, so that pgTAP (whose functions minicrm_api may not
-- execute) does the asserting. Returns the number of rows the statement
-- processed. An error propagates; throws_ok's subtransaction undoes the switch.
CREATE FUNCTION pg_temp.exec_as(p_user uuid, p_org uuid, p_sql text) RETURNS bigint
  LANGUAGE plpgsql AS $$
DECLARE
  n bigint;
BEGIN
  IF p_user IS NULL THEN
    PERFORM set_config('role', 'minicrm_api', true);  -- the bare role, no app.* settings
  ELSE
    PERFORM app.act_as(p_user, p_org);
  END IF;
  EXECUTE p_sql;
  GET DIAGNOSTICS n = ROW_COUNT;
  PERFORM set_config('role', 'none', true);  -- RESET ROLE: back to the session (super)user
  PERFORM set_config('app.user_id', '', true);
  PERFORM set_config('app.org_id', '', true);
  PERFORM set_config('app.role', '', true);
  RETURN n;
END
$$;

-- Same, returning the first column of the first row as text.
CREATE FUNCTION pg_temp.value_as(p_user uuid, p_org uuid, p_sql text) RETURNS text
  LANGUAGE plpgsql AS $$
DECLARE
  v text;
BEGIN
  IF p_user IS NULL THEN
    PERFORM set_config('role', 'minicrm_api', true);
  ELSE
    PERFORM app.act_as(p_user, p_org);
  END IF;
  EXECUTE p_sql INTO v;
  PERFORM set_config('role', 'none', true);
  PERFORM set_config('app.user_id', '', true);
  PERFORM set_config('app.org_id', '', true);
  PERFORM set_config('app.role', '', true);
  RETURN v;
END
$$;

-- Fixture, inserted as the superuser. Ids: first digit = organization (a/b);
-- suffix 000 organization, 001 user, c01 contact, d01 deal, 701 task, ac1 activity.
-- Carol (a...002) belongs to both organizations.
INSERT INTO crm.users (id, email, hashed_password, name) VALUES
  ('a0000000-0000-0000-0000-000000000001', 'ann@tenancy.test',   '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'Ann'),
  ('a0000000-0000-0000-0000-000000000002', 'carol@tenancy.test', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'Carol'),
  ('b0000000-0000-0000-0000-000000000001', 'bob@tenancy.test',   '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'Bob');
INSERT INTO crm.organizations (id, name) VALUES
  ('a0000000-0000-0000-0000-000000000000', 'A'),
  ('b0000000-0000-0000-0000-000000000000', 'B');
INSERT INTO crm.organization_members (organization_id, user_id, role) VALUES
  ('a0000000-0000-0000-0000-000000000000', 'a0000000-0000-0000-0000-000000000001', 'owner'),
  ('a0000000-0000-0000-0000-000000000000', 'a0000000-0000-0000-0000-000000000002', 'member'),
  ('b0000000-0000-0000-0000-000000000000', 'b0000000-0000-0000-0000-000000000001', 'owner'),
  ('b0000000-0000-0000-0000-000000000000', 'a0000000-0000-0000-0000-000000000002', 'member');
INSERT INTO crm.contacts (organization_id, id, owner_id, name) VALUES
  ('a0000000-0000-0000-0000-000000000000', 'a0000000-0000-0000-0000-000000000c01', 'a0000000-0000-0000-0000-000000000001', 'Contact A'),
  ('b0000000-0000-0000-0000-000000000000', 'b0000000-0000-0000-0000-000000000c01', 'b0000000-0000-0000-0000-000000000001', 'Contact B');
INSERT INTO crm.deals (organization_id, id, contact_id, owner_id, title, amount, currency) VALUES
  ('a0000000-0000-0000-0000-000000000000', 'a0000000-0000-0000-0000-000000000d01', 'a0000000-0000-0000-0000-000000000c01',
   'a0000000-0000-0000-0000-000000000001', 'Deal A', 100, 'EUR'),
  ('b0000000-0000-0000-0000-000000000000', 'b0000000-0000-0000-0000-000000000d01', 'b0000000-0000-0000-0000-000000000c01',
   'b0000000-0000-0000-0000-000000000001', 'Deal B', 200, 'USD');
INSERT INTO crm.tasks (organization_id, id, deal_id, title, due_date) VALUES
  ('a0000000-0000-0000-0000-000000000000', 'a0000000-0000-0000-0000-000000000701', 'a0000000-0000-0000-0000-000000000d01', 'Task A', current_date + 7),
  ('b0000000-0000-0000-0000-000000000000', 'b0000000-0000-0000-0000-000000000701', 'b0000000-0000-0000-0000-000000000d01', 'Task B', current_date + 7);
INSERT INTO crm.activities (organization_id, id, deal_id, author_id, type, payload) VALUES
  ('a0000000-0000-0000-0000-000000000000', 'a0000000-0000-0000-0000-000000000ac1', 'a0000000-0000-0000-0000-000000000d01',
   'a0000000-0000-0000-0000-000000000001', 'comment', '{"text": "A"}'),
  ('b0000000-0000-0000-0000-000000000000', 'b0000000-0000-0000-0000-000000000ac1', 'b0000000-0000-0000-0000-000000000d01',
   'b0000000-0000-0000-0000-000000000001', 'comment', '{"text": "B"}');

-- The tenant tables, each with the column that names its organization.
CREATE TEMP TABLE tenant_tables (tbl text, org_col text);
INSERT INTO tenant_tables VALUES ('organizations', 'id'), ('organization_members', 'organization_id'),
  ('contacts', 'organization_id'), ('deals', 'organization_id'), ('tasks', 'organization_id'),
  ('activities', 'organization_id');

-- A fingerprint of B's rows (as the superuser), to prove afterwards that nothing changed.
CREATE FUNCTION pg_temp.fingerprint_b(p_tbl text, p_org_col text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  v text;
BEGIN
  EXECUTE format('SELECT count(*) || '':'' || coalesce(md5(string_agg(t::text, '','' ORDER BY t::text)), '''')
                    FROM crm.%I t WHERE %I = %L', p_tbl, p_org_col, 'b0000000-0000-0000-0000-000000000000') INTO v;
  RETURN v;
END
$$;
CREATE TEMP TABLE b_before AS SELECT tbl, pg_temp.fingerprint_b(tbl, org_col) AS fp FROM tenant_tables;

-- 1. Control: in A's context, A's own rows are visible in every table (so a
-- zero below means "hidden", not "query broken").
SELECT cmp_ok(pg_temp.value_as('a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000000',
         format('SELECT count(*) FROM crm.%I WHERE %I = %L', tbl, org_col, 'a0000000-0000-0000-0000-000000000000'))::int,
       '>', 0, format('A sees its own %s', tbl))
  FROM tenant_tables ORDER BY tbl;

-- 2. SELECT: none of B's rows is visible from A, in any tenant table.
SELECT is(pg_temp.value_as('a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000000',
         format('SELECT count(*) FROM crm.%I WHERE %I = %L', tbl, org_col, 'b0000000-0000-0000-0000-000000000000')),
       '0', format('A cannot see B''s %s', tbl))
  FROM tenant_tables ORDER BY tbl;
-- The context's organization matters, not only membership: Carol is in both,
-- and acting in A she still sees nothing of B's records.
SELECT is(pg_temp.value_as('a0000000-0000-0000-0000-000000000002', 'a0000000-0000-0000-0000-000000000000',
         $$SELECT count(*) FROM crm.deals WHERE organization_id = 'b0000000-0000-0000-0000-000000000000'$$),
       '0', 'a member of both organizations, acting in A, cannot see B''s deals');
SELECT is(pg_temp.value_as('a0000000-0000-0000-0000-000000000002', 'b0000000-0000-0000-0000-000000000000',
         $$SELECT count(*) FROM crm.deals WHERE organization_id = 'b0000000-0000-0000-0000-000000000000'$$),
       '1', '... and acting in B she does see them');
-- Users: only the people one shares the current organization with.
SELECT is(pg_temp.value_as('a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000000',
         $$SELECT string_agg(name, ',' ORDER BY name) FROM crm.users$$),
       'Ann,Carol', 'A sees only the users of A (not Bob of B)');

-- 3. INSERT into B: rejected by the RLS WITH CHECK (42501).
SELECT throws_ok($$ SELECT pg_temp.exec_as('a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000000',
  $q$INSERT INTO crm.organizations (id, name) VALUES ('c0000000-0000-0000-0000-000000000000', 'C')$q$) $$,
  '42501', 'new row violates row-level security policy for table "organizations"',
  'A''s context cannot create a row for another organization in organizations');
-- For memberships the guard trigger runs first and cannot see B: 404, as for
-- any record of another organization (Ann tries to make herself owner of B).
SELECT throws_ok($$ SELECT pg_temp.exec_as('a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000000',
  $q$INSERT INTO crm.organization_members (organization_id, user_id, role)
     VALUES ('b0000000-0000-0000-0000-000000000000', 'a0000000-0000-0000-0000-000000000001', 'owner')$q$) $$,
  'MC404', 'organization not found', 'A''s context cannot insert a membership into B');
SELECT throws_ok($$ SELECT pg_temp.exec_as('a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000000',
  $q$INSERT INTO crm.contacts (organization_id, owner_id, name)
     VALUES ('b0000000-0000-0000-0000-000000000000', 'b0000000-0000-0000-0000-000000000001', 'x')$q$) $$,
  '42501', 'new row violates row-level security policy for table "contacts"', 'A''s context cannot insert a contact into B');
SELECT throws_ok($$ SELECT pg_temp.exec_as('a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000000',
  $q$INSERT INTO crm.deals (organization_id, contact_id, owner_id, title, amount, currency)
     VALUES ('b0000000-0000-0000-0000-000000000000', 'b0000000-0000-0000-0000-000000000c01',
             'b0000000-0000-0000-0000-000000000001', 'x', 1, 'EUR')$q$) $$,
  'MC404', 'pipeline not found', 'A''s context cannot insert a deal into B (B''s pipelines are not found, before RLS refuses the row)');
SELECT throws_ok($$ SELECT pg_temp.exec_as('a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000000',
  $q$INSERT INTO crm.tasks (organization_id, deal_id, title, due_date)
     VALUES ('b0000000-0000-0000-0000-000000000000', 'b0000000-0000-0000-0000-000000000d01', 'x', current_date + 1)$q$) $$,
  '42501', 'new row violates row-level security policy for table "tasks"', 'A''s context cannot insert a task into B');
SELECT throws_ok($$ SELECT pg_temp.exec_as('a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000000',
  $q$INSERT INTO crm.activities (organization_id, deal_id, type, payload)
     VALUES ('b0000000-0000-0000-0000-000000000000', 'b0000000-0000-0000-0000-000000000d01', 'comment', '{"text": "x"}')$q$) $$,
  '42501', 'new row violates row-level security policy for table "activities"', 'A''s context cannot insert an activity into B');

-- 4. Moving one of A's rows into B is rejected as well (UPDATE WITH CHECK).
SELECT throws_ok(format($$ SELECT pg_temp.exec_as('a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000000',
  %L) $$, format('UPDATE crm.%I SET organization_id = %L WHERE organization_id = %L', tbl,
                 'b0000000-0000-0000-0000-000000000000', 'a0000000-0000-0000-0000-000000000000')),
  '42501', format('new row violates row-level security policy for table "%s"', tbl),
  format('A''s context cannot move its %s into B', tbl))
  FROM unnest(ARRAY['contacts', 'deals', 'tasks']) tbl;

-- 5. UPDATE and DELETE of B's rows touch nothing (the rows are invisible).
-- (Each update really changes the row, so the fingerprints below would notice.)
SELECT is(pg_temp.exec_as('a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000000',
         format('UPDATE crm.%I SET %s WHERE %I = %L', tbl, set_clause, org_col, 'b0000000-0000-0000-0000-000000000000')),
       0::bigint, format('A''s context updates 0 of B''s %s', tbl))
  FROM (VALUES ('organizations', 'id', $$name = 'hacked'$$),
               ('organization_members', 'organization_id', $$created_at = created_at - interval '1 day'$$),
               ('contacts', 'organization_id', $$name = 'hacked'$$),
               ('deals', 'organization_id', $$title = 'hacked'$$),
               ('tasks', 'organization_id', $$title = 'hacked'$$)) v(tbl, org_col, set_clause)
 ORDER BY tbl;
SELECT is(pg_temp.exec_as('a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000000',
         format('DELETE FROM crm.%I WHERE %I = %L', tbl, org_col, 'b0000000-0000-0000-0000-000000000000')),
       0::bigint, format('A''s context deletes 0 of B''s %s', tbl))
  FROM tenant_tables WHERE tbl <> 'activities' ORDER BY tbl;
-- The timeline is append-only: changing B's (or any) activity is refused outright.
SELECT throws_ok($$ SELECT pg_temp.exec_as('a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000000',
  $q$UPDATE crm.activities SET payload = '{}' WHERE organization_id = 'b0000000-0000-0000-0000-000000000000'$q$) $$,
  '42501', 'permission denied for table activities', 'activities cannot be updated by the request role');
SELECT throws_ok($$ SELECT pg_temp.exec_as('a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000000',
  $q$DELETE FROM crm.activities WHERE organization_id = 'b0000000-0000-0000-0000-000000000000'$q$) $$,
  '42501', 'permission denied for table activities', 'activities cannot be deleted by the request role');

-- 6. Back as the superuser: B's data is exactly as before, in every table.
SELECT is(pg_temp.fingerprint_b(t.tbl, t.org_col), b.fp, format('B''s %s are unchanged', t.tbl))
  FROM tenant_tables t JOIN b_before b USING (tbl) ORDER BY t.tbl;
SELECT is(current_user::text, session_user::text, 'the helper really returned to the superuser');

-- 7. No context at all (SET LOCAL ROLE minicrm_api, no app.* settings):
-- nothing is visible, in any tenant table, and nothing can be written.
SELECT is(pg_temp.value_as(NULL, NULL, format('SELECT count(*) FROM crm.%I', tbl)), '0',
          format('without a context no %s are visible', tbl))
  FROM tenant_tables ORDER BY tbl;
SELECT is(pg_temp.value_as(NULL, NULL, 'SELECT count(*) FROM crm.users'), '0', 'without a context no users are visible');
SELECT throws_ok($$ SELECT pg_temp.exec_as(NULL, NULL,
  $q$INSERT INTO crm.contacts (organization_id, owner_id, name)
     VALUES ('a0000000-0000-0000-0000-000000000000', 'a0000000-0000-0000-0000-000000000001', 'x')$q$) $$,
  '42501', 'new row violates row-level security policy for table "contacts"', 'without a context nothing can be inserted');

SELECT * FROM finish();
ROLLBACK;
