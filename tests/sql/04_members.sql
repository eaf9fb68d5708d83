-- SPEC §3, organization settings, cell by cell, acting through app.act_as as
-- each role: rename, add / change / remove members, delete the organization;
-- the last-owner rule (409), the owned-records rule (409) and reassignment;
-- non-members get 404.
BEGIN;
SELECT plan(67);

-- Organization A and one user per role (psql variables keep the calls readable).
\set org_a   'a0000000-0000-0000-0000-000000000000'
\set org_b   'b0000000-0000-0000-0000-000000000000'
\set olga    'a0000000-0000-0000-0000-000000000001'
\set adam    'a0000000-0000-0000-0000-000000000002'
\set mia     'a0000000-0000-0000-0000-000000000003'
\set max     'a0000000-0000-0000-0000-000000000004'
\set rita    'a0000000-0000-0000-0000-000000000005'
\set tim     'a0000000-0000-0000-0000-000000000006'
\set xena    'a0000000-0000-0000-0000-000000000008'
\set zed     'b0000000-0000-0000-0000-000000000009'

INSERT INTO crm.users (id, email, hashed_password, name)
SELECT id::uuid, lower(name) || '@members.test', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', name
  FROM (VALUES (:'olga', 'Olga'), (:'adam', 'Adam'), (:'mia', 'Mia'), (:'max', 'Max'), (:'rita', 'Rita'),
               (:'tim', 'Tim'), (:'xena', 'Xena'), (:'zed', 'Zed')) v(id, name);
INSERT INTO crm.organizations (id, name) VALUES (:'org_a', 'A'), (:'org_b', 'B');
INSERT INTO crm.organization_members (organization_id, user_id, role) VALUES
  (:'org_a', :'olga', 'owner'),    -- the only owner of A
  (:'org_a', :'adam', 'admin'),
  (:'org_a', :'mia',  'manager'),
  (:'org_a', :'max',  'member'),
  (:'org_a', :'rita', 'member'),   -- owns a contact and a deal
  (:'org_a', :'tim',  'member'),   -- owns nothing: the removal target
  (:'org_b', :'zed',  'owner');    -- Xena is registered but in no organization
INSERT INTO crm.contacts (organization_id, id, owner_id, name) VALUES
  (:'org_a', 'a0000000-0000-0000-0000-000000000c01', :'rita', 'Rita''s contact');
INSERT INTO crm.deals (organization_id, id, contact_id, owner_id, title, amount, currency) VALUES
  (:'org_a', 'a0000000-0000-0000-0000-000000000d01', 'a0000000-0000-0000-0000-000000000c01', :'rita', 'Rita''s deal', 10, 'EUR');

-- Runs p_sql as p_user acting in p_org (app.act_as, so as minicrm_api), then
-- undoes everything it did (role, context and data), and answers 'ok' or
-- '<SQLSTATE> <machine code>' of the error. Every cell below thus starts from
-- the same fixture, and pgTAP runs as the superuser (minicrm_api may not
-- execute pgTAP's functions).
CREATE FUNCTION pg_temp.try_as(p_user uuid, p_org uuid, p_sql text) RETURNS text
  LANGUAGE plpgsql AS $$
DECLARE
  v_state text;
  v_code text;
BEGIN
  BEGIN
    PERFORM app.act_as(p_user, p_org);
    EXECUTE p_sql;
    RAISE EXCEPTION USING ERRCODE = 'TT000', MESSAGE = 'undo';  -- success: roll the subtransaction back
  EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_code = CONSTRAINT_NAME;
  END;
  RETURN CASE WHEN v_state = 'TT000' THEN 'ok' ELSE v_state || coalesce(' ' || nullif(v_code, ''), '') END;
END
$$;

-- Same, but keeps the effects (for checking them afterwards); errors propagate.
CREATE FUNCTION pg_temp.exec_as(p_user uuid, p_org uuid, p_sql text) RETURNS void
  LANGUAGE plpgsql AS $$
BEGIN
  PERFORM app.act_as(p_user, p_org);
  EXECUTE p_sql;
  PERFORM set_config('role', 'none', true);
  PERFORM set_config('app.user_id', '', true);
  PERFORM set_config('app.org_id', '', true);
  PERFORM set_config('app.role', '', true);
END
$$;

-- Rename the organization: owner, admin.
SELECT is(pg_temp.try_as(:'olga', :'org_a', $$SELECT api.organizations_rename('A2')$$), 'ok', 'rename: owner may');
SELECT is(pg_temp.try_as(:'adam', :'org_a', $$SELECT api.organizations_rename('A2')$$), 'ok', 'rename: admin may');
SELECT is(pg_temp.try_as(:'mia',  :'org_a', $$SELECT api.organizations_rename('A2')$$), 'MC403 role_forbidden', 'rename: manager 403');
SELECT is(pg_temp.try_as(:'max',  :'org_a', $$SELECT api.organizations_rename('A2')$$), 'MC403 role_forbidden', 'rename: member 403');
-- The rule lives in the database: a direct UPDATE under a context meets it too.
SELECT is(pg_temp.try_as(:'max', :'org_a', $$UPDATE crm.organizations SET name = 'A2'$$), 'MC403 role_forbidden',
  'rename: member 403 also by a direct UPDATE');
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, $q$SELECT api.organizations_rename('  A renamed ')$q$)$$, :'adam', :'org_a'),
  'rename: admin renames A');
SELECT is((SELECT name FROM crm.organizations WHERE id = :'org_a'), 'A renamed', 'rename: the name changed (trimmed)');

-- Add a member (Xena, registered, not yet in A): an invitation (owner, admin;
-- owner role needs owner) that Xena accepts. The invitation rules cell by
-- cell: 08_invitations.sql.
SELECT is(pg_temp.try_as(:'olga', :'org_a', $$SELECT api.invitations_create('xena@members.test', 'member', 3600)$$), 'ok', 'add member: owner may invite');
SELECT is(pg_temp.try_as(:'adam', :'org_a', $$SELECT api.invitations_create('xena@members.test', 'member', 3600)$$), 'ok', 'add member: admin may invite');
SELECT is(pg_temp.try_as(:'adam', :'org_a', $$SELECT api.invitations_create('xena@members.test', 'admin', 3600)$$), 'ok', 'add member: admin may invite an admin');
SELECT is(pg_temp.try_as(:'mia',  :'org_a', $$SELECT api.invitations_create('xena@members.test', 'member', 3600)$$), 'MC403 role_forbidden', 'add member: manager 403');
SELECT is(pg_temp.try_as(:'max',  :'org_a', $$SELECT api.invitations_create('xena@members.test', 'member', 3600)$$), 'MC403 role_forbidden', 'add member: member 403');
SELECT is(pg_temp.try_as(:'adam', :'org_a', $$SELECT api.invitations_create('xena@members.test', 'owner', 3600)$$), 'MC403 owner_required', 'add member: admin inviting an owner 403');
SELECT is(pg_temp.try_as(:'olga', :'org_a', $$SELECT api.invitations_create('xena@members.test', 'owner', 3600)$$), 'ok', 'add member: owner may invite an owner');
SELECT is(pg_temp.try_as(:'olga', :'org_a', $$SELECT api.invitations_create('XENA@Members.Test', 'member', 3600)$$), 'ok', 'add member: any case of the address');
SELECT is(pg_temp.try_as(:'adam', :'org_a', $$SELECT api.invitations_create('nobody@members.test', 'member', 3600)$$), 'ok',
  'add member: an unregistered address is invited just the same (nothing tells who is registered)');
SELECT is(pg_temp.try_as(:'max',  :'org_a', $$SELECT api.invitations_create('nobody@members.test', 'member', 3600)$$), 'MC403 role_forbidden',
  'add member: a member inviting an unknown address gets 403');
SELECT is(pg_temp.try_as(:'adam', :'org_a', $$SELECT api.invitations_create('max@members.test', 'admin', 3600)$$), 'MC409 already_member',
  'add member: someone already a member is a conflict');
-- The membership exists once Xena accepts, with the invited role.
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, $q$SELECT api.invitations_create('xena@members.test', 'manager', 3600)$q$)$$, :'adam', :'org_a'),
  'add member: admin invites Xena as manager');
SELECT lives_ok(format('SELECT pg_temp.exec_as(%L, NULL, %L)', :'xena',
                       format('SELECT api.invitations_accept(%L)', (SELECT id FROM crm.invitations WHERE email_key = 'xena@members.test'))),
  'add member: Xena accepts');
SELECT is((SELECT role::text FROM crm.organization_members WHERE organization_id = :'org_a' AND user_id = :'xena'), 'manager',
  'add member: Xena is now a manager of A');

-- Change a role (Max: member -> manager): owner, admin; owner role needs owner.
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.members_set_role(%L, ''manager'')', :'max')), 'ok', 'change role: owner may');
SELECT is(pg_temp.try_as(:'adam', :'org_a', format('SELECT api.members_set_role(%L, ''manager'')', :'max')), 'ok', 'change role: admin may');
SELECT is(pg_temp.try_as(:'mia',  :'org_a', format('SELECT api.members_set_role(%L, ''manager'')', :'max')), 'MC403 role_forbidden', 'change role: manager 403');
SELECT is(pg_temp.try_as(:'tim',  :'org_a', format('SELECT api.members_set_role(%L, ''manager'')', :'max')), 'MC403 role_forbidden', 'change role: member 403');
SELECT is(pg_temp.try_as(:'max',  :'org_a', format('SELECT api.members_set_role(%L, ''admin'')', :'max')), 'MC403 role_forbidden', 'change role: a member cannot promote themself');
SELECT is(pg_temp.try_as(:'adam', :'org_a', format('SELECT api.members_set_role(%L, ''owner'')', :'max')), 'MC403 owner_required', 'change role: admin cannot promote to owner');
SELECT is(pg_temp.try_as(:'adam', :'org_a', format('SELECT api.members_set_role(%L, ''owner'')', :'adam')), 'MC403 owner_required', 'change role: admin cannot promote themself to owner');
SELECT is(pg_temp.try_as(:'adam', :'org_a', format('SELECT api.members_set_role(%L, ''admin'')', :'olga')), 'MC403 owner_required', 'change role: admin cannot change an owner');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.members_set_role(%L, ''owner'')', :'max')), 'ok', 'change role: owner may make someone owner');
SELECT is(pg_temp.try_as(:'adam', :'org_a', format('SELECT api.members_set_role(%L, ''admin'')', :'zed')), 'MC404 member_not_found', 'change role: a non-member of A is 404');
-- The rule lives in the database: a direct UPDATE under a context meets it too.
SELECT is(pg_temp.try_as(:'adam', :'org_a', format('UPDATE crm.organization_members SET role = ''owner'' WHERE user_id = %L', :'adam')),
  'MC403 owner_required', 'change role: admin cannot self-promote by a direct UPDATE either');
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'adam', :'org_a', format('SELECT api.members_set_role(%L, ''manager'')', :'max')),
  'change role: admin makes Max a manager');
SELECT is((SELECT role::text FROM crm.organization_members WHERE organization_id = :'org_a' AND user_id = :'max'), 'manager',
  'change role: Max is now a manager');

-- Remove a member (Tim, owns nothing): owner, admin; removing an owner needs owner.
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.members_remove(%L)', :'tim')), 'ok', 'remove member: owner may');
SELECT is(pg_temp.try_as(:'adam', :'org_a', format('SELECT api.members_remove(%L)', :'tim')), 'ok', 'remove member: admin may');
SELECT is(pg_temp.try_as(:'mia',  :'org_a', format('SELECT api.members_remove(%L)', :'tim')), 'MC403 role_forbidden', 'remove member: manager 403');
SELECT is(pg_temp.try_as(:'rita', :'org_a', format('SELECT api.members_remove(%L)', :'tim')), 'MC403 role_forbidden', 'remove member: member 403');
SELECT is(pg_temp.try_as(:'adam', :'org_a', format('SELECT api.members_remove(%L)', :'olga')), 'MC403 owner_required', 'remove member: admin cannot remove an owner');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.members_set_role(%L, ''owner''); SELECT api.members_remove(%L)', :'max', :'max')),
  'ok', 'remove member: owner may remove another owner');
SELECT is(pg_temp.try_as(:'tim',  :'org_a', format('SELECT api.members_remove(%L)', :'tim')), 'ok', 'remove member: anyone may leave (README decision)');
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'adam', :'org_a', format('SELECT api.members_remove(%L)', :'tim')),
  'remove member: admin removes Tim');
SELECT is((SELECT count(*)::int FROM crm.organization_members WHERE organization_id = :'org_a' AND user_id = :'tim'), 0,
  'remove member: Tim is no longer a member of A');
SELECT is(pg_temp.try_as(:'tim', :'org_a', 'SELECT 1'), 'MC404 organization_not_found', 'remove member: Tim can no longer act in A');

-- The last owner can never be demoted or removed (409), by anyone.
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.members_set_role(%L, ''admin'')', :'olga')), 'MC409 last_owner', 'last owner cannot be demoted');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.members_remove(%L)', :'olga')), 'MC409 last_owner', 'last owner cannot be removed (leave)');
-- With a second owner, the first one may step down.
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.members_set_role(%L, ''owner''); SELECT api.members_set_role(%L, ''admin'')', :'adam', :'olga')),
  'ok', 'with a second owner, an owner may be demoted');
-- Without a context (a superuser in psql) the rule holds too.
SELECT throws_ok(format('DELETE FROM crm.organization_members WHERE user_id = %L', :'olga'), 'MC409',
  'the last owner of an organization cannot be removed or demoted', 'last owner cannot be removed even by a superuser without context');

-- A member who owns contacts or deals is not removed without a receiver (409).
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.members_remove(%L)', :'rita')), 'MC409 member_owns_records',
  'remove member: a member owning records cannot be removed without reassign_to');
SELECT is(pg_temp.try_as(:'rita', :'org_a', format('SELECT api.members_remove(%L)', :'rita')), 'MC409 member_owns_records',
  'remove member: ... nor leave without reassign_to');
-- Members may not hand their records to someone else (SPEC §3), so a member
-- who owns records leaves through an owner or admin naming reassign_to.
SELECT is(pg_temp.try_as(:'rita', :'org_a', format('SELECT api.members_remove(%L, %L)', :'rita', :'mia')), 'MC403 role_forbidden',
  'leave: a member who owns records cannot hand them to someone else');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.members_remove(%L, %L)', :'rita', :'zed')), 'MC404 reassign_to_not_found',
  'remove member: reassign_to must be a member of the organization');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.members_remove(%L, %L)', :'rita', :'rita')), 'MC400 reassign_to_invalid',
  'remove member: reassign_to cannot be the removed member');
SELECT is(pg_temp.try_as(:'mia', :'org_a', format('SELECT api.members_remove(%L, %L)', :'rita', :'mia')), 'MC403 role_forbidden',
  'remove member: a manager cannot remove (nor take the records) even with reassign_to');
-- With reassign_to, the records move and the member goes.
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'adam', :'org_a', format('SELECT api.members_remove(%L, %L)', :'rita', :'mia')),
  'remove member: admin removes Rita, reassigning to Mia');
SELECT is((SELECT owner_id FROM crm.contacts WHERE id = 'a0000000-0000-0000-0000-000000000c01'), :'mia'::uuid, 'reassign: Rita''s contact now belongs to Mia');
SELECT is((SELECT owner_id FROM crm.deals WHERE id = 'a0000000-0000-0000-0000-000000000d01'), :'mia'::uuid, 'reassign: Rita''s deal now belongs to Mia');
SELECT is((SELECT count(*)::int FROM crm.organization_members WHERE organization_id = :'org_a' AND user_id = :'rita'), 0, 'reassign: Rita is no longer a member');

-- Delete the organization: owner only.
SELECT is(pg_temp.try_as(:'adam', :'org_a', 'SELECT api.organizations_delete()'), 'MC403 owner_required', 'delete organization: admin 403');
SELECT is(pg_temp.try_as(:'mia',  :'org_a', 'SELECT api.organizations_delete()'), 'MC403 owner_required', 'delete organization: manager 403');
SELECT is(pg_temp.try_as(:'max',  :'org_a', 'SELECT api.organizations_delete()'), 'MC403 owner_required', 'delete organization: member 403');
-- The owner deletes A, with its members, contacts and deals.
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, 'SELECT api.organizations_delete()')$$, :'olga', :'org_a'),
  'delete organization: owner may');
SELECT is((SELECT count(*)::int FROM crm.organizations WHERE id = :'org_a')
          + (SELECT count(*)::int FROM crm.organization_members WHERE organization_id = :'org_a')
          + (SELECT count(*)::int FROM crm.contacts WHERE organization_id = :'org_a')
          + (SELECT count(*)::int FROM crm.deals WHERE organization_id = :'org_a'), 0,
  'delete organization: A and all its members and records are gone');
SELECT is((SELECT count(*)::int FROM crm.organization_members WHERE organization_id = :'org_b'), 1, 'delete organization: B is untouched');

-- Non-members: 404, the same as for an organization that does not exist.
SELECT is(pg_temp.try_as(:'zed', :'org_b', 'SELECT 1'), 'ok', 'control: Zed may act in his own organization B');
SELECT is(pg_temp.try_as(:'zed', :'org_a', 'SELECT 1'), 'MC404 organization_not_found', 'a non-member acting in an organization gets 404');
SELECT is(pg_temp.try_as(:'zed', 'c0000000-0000-0000-0000-000000000000', 'SELECT 1'), 'MC404 organization_not_found',
  '... exactly as for an organization that does not exist');

SELECT * FROM finish();
ROLLBACK;
