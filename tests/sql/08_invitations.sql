-- SPEC §16, invitations, acting through app.act_as (as the request role):
-- who may invite (and grant owner), the same answer for registered and
-- unregistered addresses, replacement on re-invitation, already_member,
-- the invitee's list, accept and decline, revoke, 404 for someone else's
-- invitation, 410 once it is gone or expired, the rate limit, and tenancy.
BEGIN;
SELECT plan(66);

\set org_a  'a0000000-0000-0000-0000-000000000000'
\set org_b  'b0000000-0000-0000-0000-000000000000'
\set olga   'a0000000-0000-0000-0000-000000000001'
\set adam   'a0000000-0000-0000-0000-000000000002'
\set mia    'a0000000-0000-0000-0000-000000000003'
\set max    'a0000000-0000-0000-0000-000000000004'
\set xena   'a0000000-0000-0000-0000-000000000008'
\set yuri   'a0000000-0000-0000-0000-000000000009'
\set vera   'a0000000-0000-0000-0000-00000000000a'
\set zed    'b0000000-0000-0000-0000-000000000001'
\set ttl    604800

INSERT INTO crm.users (id, email, hashed_password, name)
SELECT id::uuid, email, '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', name
  FROM (VALUES (:'olga', 'olga@inv.test', 'Olga'), (:'adam', 'adam@inv.test', 'Adam'),
               (:'mia', 'mia@inv.test', 'Mia'), (:'max', 'Max@Inv.Test', 'Max'),
               (:'xena', 'Xena@Inv.Test', 'Xena'), (:'yuri', 'yuri@inv.test', 'Yuri'),
               (:'vera', 'vera@inv.test', 'Vera'), (:'zed', 'zed@inv.test', 'Zed')) v(id, email, name);
INSERT INTO crm.organizations (id, name) VALUES (:'org_a', 'A'), (:'org_b', 'B');
INSERT INTO crm.organization_members (organization_id, user_id, role) VALUES
  (:'org_a', :'olga', 'owner'), (:'org_a', :'adam', 'admin'), (:'org_a', :'mia', 'manager'),
  (:'org_a', :'max', 'member'), (:'org_b', :'zed', 'owner');
-- Xena, Yuri and Vera are registered and in no organization.

-- As in 04_members.sql: try_as undoes what p_sql did and answers 'ok' or
-- '<SQLSTATE> <code>'; exec_as keeps the effects; value_as returns the first
-- column of the first row as text. All come back to the superuser.
CREATE FUNCTION pg_temp.try_as(p_user uuid, p_org uuid, p_sql text) RETURNS text
  LANGUAGE plpgsql AS $$
DECLARE
  v_state text;
  v_code text;
BEGIN
  BEGIN
    PERFORM app.act_as(p_user, p_org);
    EXECUTE p_sql;
    RAISE EXCEPTION USING ERRCODE = 'TT000', MESSAGE = 'undo';
  EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_code = CONSTRAINT_NAME;
  END;
  RETURN CASE WHEN v_state = 'TT000' THEN 'ok' ELSE v_state || coalesce(' ' || nullif(v_code, ''), '') END;
END
$$;
CREATE FUNCTION pg_temp.value_as(p_user uuid, p_org uuid, p_sql text) RETURNS text
  LANGUAGE plpgsql AS $$
DECLARE
  v text;
BEGIN
  PERFORM app.act_as(p_user, p_org);
  EXECUTE p_sql INTO v;
  PERFORM set_config('role', 'none', true);
  PERFORM set_config('app.user_id', '', true);
  PERFORM set_config('app.org_id', '', true);
  PERFORM set_config('app.role', '', true);
  RETURN v;
END
$$;
CREATE FUNCTION pg_temp.invite(p_user uuid, p_org uuid, p_email text, p_role text) RETURNS text
  LANGUAGE sql AS $$
    SELECT pg_temp.try_as(p_user, p_org, format('SELECT api.invitations_create(%L, %L, 604800)', p_email, p_role))
  $$;
-- The keys of a JSON object, sorted.
CREATE FUNCTION pg_temp.keys(p jsonb) RETURNS text LANGUAGE sql IMMUTABLE
  AS $$ SELECT string_agg(k, ' ' ORDER BY k) FROM jsonb_object_keys(p) k $$;

-- 1. Who may invite: inviting is "add members" (SPEC §3).
SELECT is(pg_temp.invite(:'olga', :'org_a', 'xena@inv.test', 'member'),  'ok', 'invite: owner may');
SELECT is(pg_temp.invite(:'adam', :'org_a', 'xena@inv.test', 'member'),  'ok', 'invite: admin may');
SELECT is(pg_temp.invite(:'adam', :'org_a', 'xena@inv.test', 'admin'),   'ok', 'invite: admin may invite an admin');
SELECT is(pg_temp.invite(:'mia',  :'org_a', 'xena@inv.test', 'member'),  'MC403 role_forbidden', 'invite: manager 403');
SELECT is(pg_temp.invite(:'max',  :'org_a', 'xena@inv.test', 'member'),  'MC403 role_forbidden', 'invite: member 403');
SELECT is(pg_temp.invite(:'adam', :'org_a', 'xena@inv.test', 'owner'),   'MC403 owner_required', 'invite: admin granting owner 403');
SELECT is(pg_temp.invite(:'olga', :'org_a', 'xena@inv.test', 'owner'),   'ok', 'invite: owner may grant owner');
SELECT is(pg_temp.invite(:'max',  :'org_a', 'nobody@inv.test', 'member'), 'MC403 role_forbidden',
  'invite: a member gets 403 for an unregistered address too');
SELECT is(pg_temp.try_as(:'adam', :'org_a', $$INSERT INTO crm.invitations (organization_id, email, role) VALUES (app.org_id(), 'q@inv.test', 'owner')$$),
  'MC403 owner_required', 'invite: the rule holds for a direct INSERT under a context');
SELECT is(pg_temp.invite(:'adam', :'org_a', 'not an address', 'member'), '23514 invitations_email_invalid', 'invite: a malformed address is 400');

-- 2. The same answer whether or not the address is registered: no name, no user id.
SELECT pg_temp.value_as(:'adam', :'org_a', $$SELECT api.invitations_create('Xena@INV.test ', 'member', 604800)$$) AS xena_inv \gset
SELECT pg_temp.value_as(:'adam', :'org_a', $$SELECT api.invitations_create('nobody@inv.test', 'member', 604800)$$) AS nobody_inv \gset
SELECT is(pg_temp.keys(:'xena_inv'), 'created_at email expires_at id invited_by role status', 'invite: the answer''s fields (registered)');
SELECT is(pg_temp.keys(:'nobody_inv'), pg_temp.keys(:'xena_inv'), 'invite: ... the same for an unregistered address');
SELECT is((:'xena_inv'::jsonb - '{id,email,created_at,expires_at}'::text[]),
          (:'nobody_inv'::jsonb - '{id,email,created_at,expires_at}'::text[]), 'invite: ... with the same values');
SELECT is((:'xena_inv'::jsonb) ->> 'status', 'pending', 'invite: status pending');
SELECT is((:'xena_inv'::jsonb) ->> 'email', 'Xena@INV.test', 'invite: the address as given, trimmed');
SELECT is((:'xena_inv'::jsonb) ->> 'invited_by', :'adam', 'invite: invited_by is the inviter');
SELECT is(((:'xena_inv'::jsonb) ->> 'expires_at')::timestamptz, now() + interval '7 days', 'invite: expires after the TTL');
SELECT is((SELECT count(*)::int FROM crm.organization_members WHERE user_id = :'xena'), 0,
  'invite: the invitee is not a member (nobody becomes one without saying yes)');

-- 3. Inviting again replaces the pending invitation.
SELECT (:'xena_inv'::jsonb) ->> 'id' AS xena_old \gset
SELECT pg_temp.value_as(:'olga', :'org_a', $$SELECT api.invitations_create('xena@inv.test', 'admin', 604800) ->> 'id'$$) AS xena_id \gset
SELECT is((SELECT status::text FROM crm.invitations WHERE id = :'xena_old'), 'revoked', 're-invite: the old invitation is revoked');
SELECT is((SELECT count(*)::int FROM crm.invitations WHERE organization_id = :'org_a' AND email_key = 'xena@inv.test' AND status = 'pending'), 1,
  're-invite: one pending invitation per address');
SELECT is((SELECT role::text FROM crm.invitations WHERE id = :'xena_id'), 'admin', 're-invite: the new one carries the new role');
SELECT is(pg_temp.try_as(:'adam', :'org_a',
            $$INSERT INTO crm.invitations (organization_id, email, role) VALUES (app.org_id(), 'xena@inv.test', 'member')$$),
  'ok', 're-invite: a direct INSERT replaces too');
SELECT pg_temp.value_as(:'adam', :'org_a', $$SELECT api.invitations_create('yuri@inv.test', 'member', 604800) ->> 'id'$$) AS yuri_id \gset

-- 4. A current member cannot be invited, whatever the case of the address.
SELECT is(pg_temp.invite(:'adam', :'org_a', 'max@inv.test', 'admin'), 'MC409 already_member', 'invite: a member is 409 already_member');
SELECT is(pg_temp.invite(:'olga', :'org_a', ' MAX@INV.TEST', 'owner'), 'MC409 already_member', 'invite: ... matched case-insensitively');

-- 5. The invitee's list: pending and unexpired, matched by address, any case.
SELECT pg_temp.value_as(:'xena', NULL, 'SELECT api.invitations_mine()') AS xena_mine \gset
SELECT is(jsonb_array_length((:'xena_mine'::jsonb) -> 'items'), 1, 'mine: Xena sees her one pending invitation');
SELECT is((:'xena_mine'::jsonb) -> 'items' -> 0,
          jsonb_build_object('id', :'xena_id', 'organization', jsonb_build_object('id', :'org_a', 'name', 'A'),
                             'role', 'admin', 'invited_by', jsonb_build_object('name', 'Olga'),
                             'expires_at', app.ts(now() + interval '7 days')),
  'mine: id, organization {id, name}, role, invited_by {name}, expires_at');
SELECT is(pg_temp.value_as(:'yuri', NULL, $$SELECT api.invitations_mine() -> 'items' -> 0 ->> 'role'$$), 'member', 'mine: Yuri sees his');
SELECT is(pg_temp.value_as(:'vera', NULL, $$SELECT jsonb_array_length(api.invitations_mine() -> 'items')::text$$), '0', 'mine: Vera has none');

-- 6. Accept: only the invitee; the membership appears with the invited role.
SELECT is(pg_temp.try_as(:'vera', NULL, format('SELECT api.invitations_accept(%L)', :'xena_id')), 'MC404 invitation_not_found',
  'accept: another user''s invitation is 404');
SELECT is(pg_temp.try_as(:'adam', :'org_a', format('SELECT api.invitations_accept(%L)', :'xena_id')), 'MC404 invitation_not_found',
  'accept: ... even for an admin of the inviting organization');
SELECT is(pg_temp.try_as(:'adam', :'org_a', format($$UPDATE crm.invitations SET status = 'accepted' WHERE id = %L$$, :'xena_id')),
  'MC404 invitation_not_found', 'accept: an admin cannot accept for the invitee by a direct UPDATE');
SELECT is(pg_temp.try_as(:'xena', NULL, format($$UPDATE crm.invitations SET role = 'owner' WHERE id = %L$$, :'xena_id')),
  '42501', 'accept: the invitee cannot change the offered role');
SELECT is(pg_temp.try_as(:'xena', NULL, format('SELECT api.invitations_accept(%L)', gen_random_uuid())), 'MC404 invitation_not_found',
  'accept: an unknown id is 404');
SELECT pg_temp.value_as(:'xena', NULL, format('SELECT api.invitations_accept(%L)', :'xena_id')) AS xena_member \gset
SELECT is(pg_temp.keys(:'xena_member'), 'created_at email name role user_id', 'accept: answers the membership, as members_list shows it');
SELECT is((:'xena_member'::jsonb) ->> 'role', 'admin', 'accept: with the invited role');
SELECT is((SELECT role::text FROM crm.organization_members WHERE organization_id = :'org_a' AND user_id = :'xena'), 'admin',
  'accept: Xena is an admin of A now');
SELECT is((SELECT status::text || ' ' || (decided_by = :'xena')::text FROM crm.invitations WHERE id = :'xena_id'), 'accepted true',
  'accept: the invitation is accepted, by Xena');
SELECT is(pg_temp.try_as(:'xena', :'org_a', 'SELECT 1'), 'ok', 'accept: Xena acts in A');
SELECT is(pg_temp.try_as(:'xena', NULL, format('SELECT api.invitations_accept(%L)', :'xena_id')), 'MC410 invitation_gone',
  'accept: a second accept is 410');
SELECT is(pg_temp.try_as(:'xena', NULL, format('SELECT api.invitations_decline(%L)', :'xena_id')), 'MC410 invitation_gone',
  'decline: an accepted invitation is 410');

-- 7. Decline: the invitation is declined and nobody joins.
SELECT is(pg_temp.try_as(:'vera', NULL, format('SELECT api.invitations_decline(%L)', :'yuri_id')), 'MC404 invitation_not_found',
  'decline: another user''s invitation is 404');
SELECT lives_ok(format('SELECT pg_temp.value_as(%L, NULL, %L)', :'yuri', format('SELECT api.invitations_decline(%L)', :'yuri_id')),
  'decline: Yuri declines');
SELECT is((SELECT status::text FROM crm.invitations WHERE id = :'yuri_id'), 'declined', 'decline: the invitation is declined');
SELECT is((SELECT count(*)::int FROM crm.organization_members WHERE user_id = :'yuri'), 0, 'decline: Yuri joined nothing');
SELECT is(pg_temp.try_as(:'yuri', NULL, format('SELECT api.invitations_accept(%L)', :'yuri_id')), 'MC410 invitation_gone',
  'accept: a declined invitation is 410');

-- 8. Revoke (owner/admin; an owner invitation needs owner).
SELECT pg_temp.value_as(:'adam', :'org_a', $$SELECT api.invitations_create('vera@inv.test', 'member', 604800) ->> 'id'$$) AS vera_id \gset
SELECT pg_temp.value_as(:'olga', :'org_a', $$SELECT api.invitations_create('boss@inv.test', 'owner', 604800) ->> 'id'$$) AS boss_id \gset
SELECT is(pg_temp.try_as(:'mia', :'org_a', format('SELECT api.invitations_revoke(%L)', :'vera_id')), 'MC403 role_forbidden', 'revoke: manager 403');
SELECT is(pg_temp.try_as(:'adam', :'org_a', format('SELECT api.invitations_revoke(%L)', :'boss_id')), 'MC403 owner_required',
  'revoke: an admin cannot revoke an owner invitation');
SELECT is(pg_temp.try_as(:'zed', :'org_b', format('SELECT api.invitations_revoke(%L)', :'vera_id')), 'MC404 invitation_not_found',
  'revoke: another organization''s invitation is 404');
SELECT is(pg_temp.try_as(:'vera', NULL, format($$UPDATE crm.invitations SET status = 'revoked' WHERE id = %L$$, :'vera_id')),
  'MC403 role_forbidden', 'revoke: the invitee cannot revoke (she declines)');
SELECT lives_ok(format('SELECT pg_temp.value_as(%L, %L, %L)', :'adam', :'org_a', format('SELECT api.invitations_revoke(%L)', :'vera_id')),
  'revoke: admin revokes Vera''s invitation');
SELECT is(pg_temp.try_as(:'adam', :'org_a', format('SELECT api.invitations_revoke(%L)', :'vera_id')), 'MC410 invitation_gone',
  'revoke: a revoked invitation is 410');
SELECT is(pg_temp.try_as(:'vera', NULL, format('SELECT api.invitations_accept(%L)', :'vera_id')), 'MC410 invitation_gone',
  'accept: a revoked invitation is 410');

-- 9. Expiry: an expired invitation is gone (410) and out of the invitee's list.
INSERT INTO crm.invitations (organization_id, id, email, email_key, role, invited_by, created_at, expires_at) VALUES
  (:'org_b', 'b0000000-0000-0000-0000-0000000000e1', 'vera@inv.test', '', 'member', :'zed', now() - interval '8 days', now() - interval '1 day');
SELECT is(pg_temp.value_as(:'vera', NULL, $$SELECT jsonb_array_length(api.invitations_mine() -> 'items')::text$$), '0',
  'expiry: an expired invitation is not listed for the invitee');
SELECT is(pg_temp.try_as(:'vera', NULL, $$SELECT api.invitations_accept('b0000000-0000-0000-0000-0000000000e1')$$), 'MC410 invitation_gone',
  'expiry: accepting it is 410');
SELECT is(pg_temp.try_as(:'vera', NULL, $$SELECT api.invitations_decline('b0000000-0000-0000-0000-0000000000e1')$$), 'MC410 invitation_gone',
  'expiry: declining it is 410');
SELECT is(pg_temp.value_as(:'zed', :'org_b', $$SELECT api.invitations_get('b0000000-0000-0000-0000-0000000000e1') ->> 'status'$$), 'expired',
  'expiry: the organization sees it as expired');

-- 10. Someone who registers later sees the invitation too.
SELECT is(pg_temp.value_as(NULL, NULL, $$SELECT api.auth_register('Nobody@Inv.Test', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'Newcomer', 'N', '\x01', now() + interval '1 day') -> 'user' ->> 'id'$$)
  IS NOT NULL, true, 'late: nobody@inv.test registers');
SELECT is(pg_temp.value_as((SELECT id FROM crm.users WHERE email = 'Nobody@Inv.Test'), NULL,
                           $$SELECT api.invitations_mine() -> 'items' -> 0 -> 'organization' ->> 'name'$$), 'A',
  'late: ... and sees the invitation of A');

-- 11. Tenancy: another organization's invitations are invisible, even directly.
SELECT is(pg_temp.value_as(:'zed', :'org_b', format('SELECT count(*)::text FROM crm.invitations WHERE organization_id = %L', :'org_a')), '0',
  'tenancy: B sees none of A''s invitations');
SELECT is(pg_temp.value_as(:'zed', :'org_b', $$SELECT api.invitations_list(1, 100) ->> 'total'$$), '1', 'tenancy: B''s list has only B''s');
SELECT is(pg_temp.value_as(:'mia', NULL, 'SELECT count(*)::text FROM crm.invitations'), '0',
  'tenancy: without an organization, a user sees only invitations addressed to them');
SELECT is(pg_temp.try_as(:'mia', :'org_a', 'SELECT api.invitations_list(1, 20)'), 'MC403 role_forbidden', 'list: manager 403');

-- 12. The rate limit: 50 per organization per rolling hour; the 51st is 429.
SELECT is(pg_temp.value_as(:'zed', :'org_b',
            $$SELECT count(api.invitations_create('r' || g || '@inv.test', 'member', 604800))::text FROM generate_series(1, 49) g$$),
  '49', 'rate limit: 49 invitations in the hour (the expired one was made 8 days ago and does not count)');
SELECT is(pg_temp.invite(:'zed', :'org_b', 'r50@inv.test', 'member'), 'ok', 'rate limit: the 50th within the hour is fine');
SELECT is(pg_temp.value_as(:'zed', :'org_b', $$SELECT api.invitations_create('r50@inv.test', 'member', 604800) ->> 'status'$$), 'pending',
  'rate limit: the 50th is made');
SELECT is(pg_temp.invite(:'zed', :'org_b', 'r51@inv.test', 'member'), 'MC429 rate_limited', 'rate limit: the 51st within an hour is 429');

SELECT * FROM finish();
ROLLBACK;
