-- SPEC §3, the role table, cell by cell, for contacts, deals and tasks: every
-- row is tried by each role (owner Olga, admin Adam, manager Mia, member Max),
-- acting through app.act_as as the request role, mostly through the api
-- functions (some through direct statements, as a DBA in psql would). The
-- "other member" is Rita, a member. Every attempt is rolled back (try_as), so
-- each starts from the same fixture; the answer is 'ok' or
-- '<SQLSTATE> <machine code>'. A trailing `SELECT 1 WHERE <check>` in a cell
-- makes it answer 'no rows' when the call succeeded but did the wrong thing;
-- a direct UPDATE / DELETE that touches nothing answers 'no rows' too.
BEGIN;
SELECT plan(214);
\ir pipeline_fixture.psql

-- Deals start in negotiation, so that they can move both ways.
UPDATE crm.deals SET stage = 'negotiation' WHERE organization_id = :'org_a';

CREATE TEMP TABLE actors (ord int, role text, uid uuid, c uuid, f uuid, d uuid, t uuid);
INSERT INTO actors VALUES
  (1, 'owner',   :'olga', :'c_olga', :'f_olga', :'d_olga', :'t_olga'),
  (2, 'admin',   :'adam', :'c_adam', :'f_adam', :'d_adam', :'t_adam'),
  (3, 'manager', :'mia',  :'c_mia',  :'f_mia',  :'d_mia',  :'t_mia'),
  (4, 'member',  :'max',  :'c_max',  :'f_max',  :'d_max',  :'t_max');

-- A cell's statement is a format() template; its arguments:
--   %1$L the actor   %2$L own contact (with a deal)   %3$L own contact without deals
--   %4$L own deal    %5$L own task (on the own deal)
--   %6$L Rita (another member)  %7$L her contact  %8$L her contact without deals
--   %9$L her deal    %10$L her task    %11$L tomorrow    %12$L organization A
--   %13$L the owner's deal
-- Expected answers per role: owner, admin, manager, member.
CREATE TEMP TABLE cells (ord serial, label text, tmpl text, e_owner text, e_admin text, e_manager text, e_member text);
\set F403 'MC403 role_forbidden'
\set S403 'MC403 stage_rollback_forbidden'
INSERT INTO cells (label, tmpl, e_owner, e_admin, e_manager, e_member) VALUES
  -- read every contact, deal, task, activity of the organization
  ('read another member''s contact', 'SELECT api.contacts_get(%7$L)', 'ok', 'ok', 'ok', 'ok'),
  ('read another member''s deal', 'SELECT api.deals_get(%9$L)', 'ok', 'ok', 'ok', 'ok'),
  ('read another member''s task', 'SELECT api.tasks_get(%10$L)', 'ok', 'ok', 'ok', 'ok'),
  ('read another member''s deal''s timeline', $$SELECT 1 WHERE (api.activities_list(%9$L, 1, 20) ->> 'total')::int = 3$$, 'ok', 'ok', 'ok', 'ok'),
  ('list every contact (10)', $$SELECT 1 WHERE (api.contacts_list(1, 100) ->> 'total')::int = 10$$, 'ok', 'ok', 'ok', 'ok'),
  ('list every deal (5)', $$SELECT 1 WHERE (api.deals_list(1, 100) ->> 'total')::int = 5$$, 'ok', 'ok', 'ok', 'ok'),
  ('list every task (5)', $$SELECT 1 WHERE (api.tasks_list(1, 100) ->> 'total')::int = 5$$, 'ok', 'ok', 'ok', 'ok'),
  -- create contacts, deals (owned by self), tasks on own deals, comments on any deal
  ('create a contact (owner defaults to self)', $$SELECT 1 WHERE api.contacts_create('New') ->> 'owner_id' = %1$L$$, 'ok', 'ok', 'ok', 'ok'),
  ('create a contact owned by self, explicitly', $$SELECT api.contacts_create('New', 'new@example.com', '+1 555', %1$L)$$, 'ok', 'ok', 'ok', 'ok'),
  ('create a deal (owner defaults to self)',
     $$SELECT 1 WHERE (SELECT j ->> 'owner_id' = %1$L AND j ->> 'status' = 'new' AND j ->> 'stage' = 'qualification'
                         FROM api.deals_create(%2$L, 'New', 10, 'EUR') j)$$, 'ok', 'ok', 'ok', 'ok'),
  ('create a deal owned by self, explicitly', $$SELECT api.deals_create(%2$L, 'New', 10, 'EUR', %1$L)$$, 'ok', 'ok', 'ok', 'ok'),
  ('create a task on an own deal', $$SELECT api.tasks_create(%4$L, 'New', NULL, %11$L)$$, 'ok', 'ok', 'ok', 'ok'),
  ('comment on another member''s deal', $$SELECT api.activities_create(%9$L, 'comment', '{"text": "hi"}')$$, 'ok', 'ok', 'ok', 'ok'),
  -- create or reassign records owned by another member
  ('create a contact owned by another member', $$SELECT 1 WHERE api.contacts_create('New', NULL, NULL, %6$L) ->> 'owner_id' = %6$L$$, 'ok', 'ok', 'ok', :'F403'),
  ('create a contact owned by another member (direct INSERT)',
     $$INSERT INTO crm.contacts (organization_id, owner_id, name) VALUES (%12$L, %6$L, 'New')$$, 'ok', 'ok', 'ok', :'F403'),
  ('create a deal owned by another member', $$SELECT 1 WHERE api.deals_create(%2$L, 'New', 10, 'EUR', %6$L) ->> 'owner_id' = %6$L$$, 'ok', 'ok', 'ok', :'F403'),
  ('create a task on another member''s deal', $$SELECT api.tasks_create(%9$L, 'New', NULL, %11$L)$$, 'ok', 'ok', 'ok', 'MC403 deal_not_owned'),
  ('reassign an own contact to another member', $$SELECT api.contacts_update(%2$L, ARRAY['owner_id'], NULL, NULL, NULL, %6$L)$$, 'ok', 'ok', 'ok', :'F403'),
  ('reassign an own deal to another member', $$SELECT api.deals_update(%4$L, NULL, NULL, NULL, NULL, NULL, NULL, %6$L)$$, 'ok', 'ok', 'ok', :'F403'),
  ('take over another member''s contact', $$SELECT api.contacts_update(%7$L, ARRAY['owner_id'], NULL, NULL, NULL, %1$L)$$, 'ok', 'ok', 'ok', :'F403'),
  ('take over another member''s deal', $$SELECT api.deals_update(%9$L, NULL, NULL, NULL, NULL, NULL, NULL, %1$L)$$, 'ok', 'ok', 'ok', :'F403'),
  ('reassign an own deal to another member (direct UPDATE)', $$UPDATE crm.deals SET owner_id = %6$L WHERE id = %4$L$$, 'ok', 'ok', 'ok', :'F403'),
  -- update / delete own contacts, deals, tasks
  ('update an own contact', $$SELECT api.contacts_update(%2$L, ARRAY['name', 'phone'], 'Renamed', NULL, '+1 555', NULL)$$, 'ok', 'ok', 'ok', 'ok'),
  ('delete an own contact', $$SELECT api.contacts_delete(%3$L)$$, 'ok', 'ok', 'ok', 'ok'),
  ('update an own deal', $$SELECT api.deals_update(%4$L, 'in_progress', NULL, 'Renamed', 999, 'USD', NULL, NULL)$$, 'ok', 'ok', 'ok', 'ok'),
  ('update an own deal (direct UPDATE)', $$UPDATE crm.deals SET title = 'Renamed', status = 'lost' WHERE id = %4$L$$, 'ok', 'ok', 'ok', 'ok'),
  ('delete an own deal (with its tasks)', $$SELECT api.deals_delete(%4$L)$$, 'ok', 'ok', 'ok', 'ok'),
  ('update an own task', $$SELECT api.tasks_update(%5$L, ARRAY['title', 'is_done'], 'Renamed', NULL, NULL, true)$$, 'ok', 'ok', 'ok', 'ok'),
  ('delete an own task', $$SELECT api.tasks_delete(%5$L)$$, 'ok', 'ok', 'ok', 'ok'),
  ('trash an own task (direct UPDATE)', $$UPDATE crm.tasks SET deleted_at = now() WHERE id = %5$L$$, 'ok', 'ok', 'ok', 'ok'),
  -- erasing for good (a DELETE) is for owners and admins
  ('erase an own task (direct DELETE)', $$DELETE FROM crm.tasks WHERE id = %5$L$$, 'ok', 'ok', :'F403', :'F403'),
  -- update / delete other members' contacts, deals, tasks
  ('update another member''s contact', $$SELECT api.contacts_update(%7$L, ARRAY['name'], 'Renamed', NULL, NULL, NULL)$$, 'ok', 'ok', 'ok', :'F403'),
  ('update another member''s contact (direct UPDATE)', $$UPDATE crm.contacts SET name = 'Renamed' WHERE id = %7$L$$, 'ok', 'ok', 'ok', :'F403'),
  ('delete another member''s contact', $$SELECT api.contacts_delete(%8$L)$$, 'ok', 'ok', 'ok', :'F403'),
  ('update another member''s deal', $$SELECT api.deals_update(%9$L, NULL, NULL, 'Renamed', NULL, NULL, NULL, NULL)$$, 'ok', 'ok', 'ok', :'F403'),
  ('change the status of another member''s deal', $$SELECT api.deals_update(%9$L, 'in_progress', NULL, NULL, NULL, NULL, NULL, NULL)$$, 'ok', 'ok', 'ok', :'F403'),
  ('move another member''s deal forward', $$SELECT api.deals_update(%9$L, NULL, 'closed', NULL, NULL, NULL, NULL, NULL)$$, 'ok', 'ok', 'ok', :'F403'),
  ('update the owner''s deal', $$SELECT api.deals_update(%13$L, NULL, NULL, 'Renamed', NULL, NULL, NULL, NULL)$$, 'ok', 'ok', 'ok', :'F403'),
  ('delete another member''s deal', $$SELECT api.deals_delete(%9$L)$$, 'ok', 'ok', 'ok', :'F403'),
  ('trash another member''s deal (direct UPDATE)', $$UPDATE crm.deals SET deleted_at = now() WHERE id = %9$L$$, 'ok', 'ok', 'ok', :'F403'),
  ('erase another member''s deal (direct DELETE)', $$DELETE FROM crm.deals WHERE id = %9$L$$, 'ok', 'ok', :'F403', :'F403'),
  ('update another member''s task', $$SELECT api.tasks_update(%10$L, ARRAY['is_done'], NULL, NULL, NULL, true)$$, 'ok', 'ok', 'ok', :'F403'),
  ('delete another member''s task', $$SELECT api.tasks_delete(%10$L)$$, 'ok', 'ok', 'ok', :'F403'),
  ('erase another member''s task (direct DELETE)', $$DELETE FROM crm.tasks WHERE id = %10$L$$, 'ok', 'ok', :'F403', :'F403'),
  -- move a deal's stage backwards (forward is free)
  ('move an own deal back (negotiation → proposal)', $$SELECT api.deals_update(%4$L, NULL, 'proposal', NULL, NULL, NULL, NULL, NULL)$$, 'ok', 'ok', :'S403', :'S403'),
  ('move an own deal back (direct UPDATE, → qualification)', $$UPDATE crm.deals SET stage = 'qualification' WHERE id = %4$L$$, 'ok', 'ok', :'S403', :'S403'),
  -- (a member may not change another's deal at all: the ownership rule answers first)
  ('move another member''s deal back', $$SELECT api.deals_update(%9$L, NULL, 'qualification', NULL, NULL, NULL, NULL, NULL)$$, 'ok', 'ok', :'S403', :'F403'),
  ('move an own deal forward, skipping none', $$SELECT api.deals_update(%4$L, NULL, 'closed', NULL, NULL, NULL, NULL, NULL)$$, 'ok', 'ok', 'ok', 'ok'),
  -- filter lists by another member's owner_id
  ('filter contacts by another member', $$SELECT 1 WHERE (api.contacts_list(1, 20, NULL, %6$L) ->> 'total')::int = 2$$, 'ok', 'ok', 'ok', :'F403'),
  ('filter deals by another member', $$SELECT 1 WHERE (api.deals_list(1, 20, p_owner_id => %6$L) -> 'items' -> 0 ->> 'id') = %9$L$$, 'ok', 'ok', 'ok', :'F403'),
  ('filter contacts by oneself', $$SELECT 1 WHERE (api.contacts_list(1, 20, NULL, %1$L) ->> 'total')::int = 2$$, 'ok', 'ok', 'ok', 'ok'),
  ('filter deals by oneself', $$SELECT 1 WHERE (api.deals_list(1, 20, p_owner_id => %1$L) -> 'items' -> 0 ->> 'id') = %4$L$$, 'ok', 'ok', 'ok', 'ok');

-- Control: the actors act with the expected roles, as minicrm_api.
SELECT is(pg_temp.value_as(a.uid, :'org_a', $$SELECT current_user || ' ' || app.role()$$), 'minicrm_api ' || a.role,
          format('%s acts as minicrm_api with role %s', a.uid, a.role))
  FROM actors a ORDER BY a.ord;

SELECT is(pg_temp.try_as(a.uid, :'org_a',
            format(c.tmpl, a.uid, a.c, a.f, a.d, a.t, :'rita', :'c_rita', :'f_rita', :'d_rita', :'t_rita', :'tomorrow', :'org_a', :'d_olga')),
          CASE a.role WHEN 'owner' THEN c.e_owner WHEN 'admin' THEN c.e_admin WHEN 'manager' THEN c.e_manager ELSE c.e_member END,
          format('%s: %s', c.label, a.role))
  FROM cells c CROSS JOIN actors a
 ORDER BY c.ord, a.ord;

-- Every attempt was undone: the fixture is intact.
SELECT is((SELECT count(*)::int FROM crm.contacts WHERE organization_id = :'org_a') || '/' ||
          (SELECT count(*)::int FROM crm.deals WHERE organization_id = :'org_a' AND stage = 'negotiation') || '/' ||
          (SELECT count(*)::int FROM crm.tasks WHERE organization_id = :'org_a' AND NOT is_done),
  '10/5/5', 'the attempts left the fixture as it was');
SELECT is(current_user::text, session_user::text, 'back to the superuser');

SELECT * FROM finish();
ROLLBACK;
