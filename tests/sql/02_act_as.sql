-- app.act_as, the gate of every request (sql/functions/00_context.sql): the
-- context it leaves, the 404 for a non-member, and the two orders its cheap
-- shape relies on. It looks the membership up as the login role, before the
-- role switch, so the lookup must give the same answer (a) for a login that
-- RLS applies to (a non-superuser, like an owner login under FORCE RLS),
-- which sees the row only through app.user_id, set before the lookup, and
-- (b) when act_as is called again in one transaction, already as
-- minicrm_api with the previous organization still in app.org_id.
BEGIN;
SELECT plan(12);

INSERT INTO crm.users (id, email, hashed_password, name) VALUES
  ('a0000000-0000-0000-0000-000000000001', 'ann@act-as.test', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'Ann'),
  ('a0000000-0000-0000-0000-000000000002', 'bob@act-as.test', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'Bob'),
  ('a0000000-0000-0000-0000-000000000003', 'cy@act-as.test', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'Cy');
INSERT INTO crm.organizations (id, name) VALUES
  ('a0000000-0000-0000-0000-00000000000a', 'A'), ('a0000000-0000-0000-0000-00000000000b', 'B');
-- Ann: admin of A. Bob: member of B only. Cy: of no organization.
INSERT INTO crm.organization_members (organization_id, user_id, role) VALUES
  ('a0000000-0000-0000-0000-00000000000a', 'a0000000-0000-0000-0000-000000000001', 'admin'),
  ('a0000000-0000-0000-0000-00000000000b', 'a0000000-0000-0000-0000-000000000002', 'member');

-- A login that is neither superuser nor owner: RLS applies to it as to the
-- owner under FORCE. It may become minicrm_api and has its privileges.
CREATE ROLE act_as_test_login NOSUPERUSER INHERIT;
GRANT minicrm_api TO act_as_test_login;

-- Calls act_as once, or twice in a row (p_user2 given), optionally as
-- p_login, and answers with what is in force afterwards: role|user|org|member
-- role. Then back to the superuser (pgTAP is not executable by minicrm_api).
CREATE FUNCTION pg_temp.acting(p_user uuid, p_org uuid, p_user2 uuid DEFAULT NULL, p_org2 uuid DEFAULT NULL,
                               p_login text DEFAULT NULL) RETURNS text
  LANGUAGE plpgsql AS $$
DECLARE
  v text;
BEGIN
  IF p_login IS NOT NULL THEN
    PERFORM set_config('role', p_login, true);
  END IF;
  PERFORM app.act_as(p_user, p_org);
  IF p_user2 IS NOT NULL THEN
    PERFORM app.act_as(p_user2, p_org2);
  END IF;
  v := concat_ws('|', current_user, current_setting('app.user_id'), current_setting('app.org_id'),
                 current_setting('app.role'));
  PERFORM set_config('role', 'none', true);
  PERFORM set_config('app.user_id', '', true);
  PERFORM set_config('app.org_id', '', true);
  PERFORM set_config('app.role', '', true);
  RETURN v;
END
$$;

-- Rows of crm.organization_members p_login sees with no context at all.
CREATE FUNCTION pg_temp.members_seen_by(p_login text) RETURNS bigint
  LANGUAGE plpgsql AS $$
DECLARE
  n bigint;
BEGIN
  PERFORM set_config('role', p_login, true);
  SELECT count(*) INTO n FROM crm.organization_members;
  PERFORM set_config('role', 'none', true);
  RETURN n;
END
$$;

-- As the superuser login (the server's on a laptop, and this test's).
SELECT is(pg_temp.acting('a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-00000000000a'),
          'minicrm_api|a0000000-0000-0000-0000-000000000001|a0000000-0000-0000-0000-00000000000a|admin',
          'a member: minicrm_api, the user, the organization and the member''s role');
SELECT is(pg_temp.acting('a0000000-0000-0000-0000-000000000003', NULL),
          'minicrm_api|a0000000-0000-0000-0000-000000000003||',
          'no organization: minicrm_api and the user, no organization, no role');
SELECT is(pg_temp.acting(NULL, NULL), 'minicrm_api|||', 'no user (the auth endpoints): minicrm_api only');
SELECT throws_ok($$ SELECT pg_temp.acting('a0000000-0000-0000-0000-000000000003', 'a0000000-0000-0000-0000-00000000000a') $$,
                 'MC404', 'organization not found', 'not a member: 404 organization_not_found');
SELECT throws_ok($$ SELECT pg_temp.acting(NULL, 'a0000000-0000-0000-0000-00000000000a') $$,
                 'MC404', 'organization not found', 'an organization without a user: 404');

-- (a) A login RLS applies to: it sees no membership without a context, and
-- act_as still finds the caller's (app.user_id is set before the lookup).
SELECT is(pg_temp.members_seen_by('act_as_test_login'), 0::bigint,
          'the non-superuser login sees no membership row without a context (RLS applies to it)');
SELECT is(pg_temp.acting('a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-00000000000a',
                         p_login => 'act_as_test_login'),
          'minicrm_api|a0000000-0000-0000-0000-000000000001|a0000000-0000-0000-0000-00000000000a|admin',
          'through a non-superuser login: the membership is found under RLS');
SELECT throws_ok($$ SELECT pg_temp.acting('a0000000-0000-0000-0000-000000000002', 'a0000000-0000-0000-0000-00000000000a',
                                          p_login => 'act_as_test_login') $$,
                 'MC404', 'organization not found', 'through a non-superuser login: a non-member gets 404');

-- (b) A second act_as in the same transaction, already as minicrm_api.
SELECT is(pg_temp.acting('a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-00000000000a',
                         'a0000000-0000-0000-0000-000000000002', 'a0000000-0000-0000-0000-00000000000b'),
          'minicrm_api|a0000000-0000-0000-0000-000000000002|a0000000-0000-0000-0000-00000000000b|member',
          'acting again as another member of another organization replaces the whole context');
SELECT throws_ok($$ SELECT pg_temp.acting('a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-00000000000a',
                                          'a0000000-0000-0000-0000-000000000002', 'a0000000-0000-0000-0000-00000000000a') $$,
                 'MC404', 'organization not found',
                 'acting again: the previous organization still in app.org_id does not let a non-member in');
SELECT is(pg_temp.acting('a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-00000000000a',
                         'a0000000-0000-0000-0000-000000000001', NULL),
          'minicrm_api|a0000000-0000-0000-0000-000000000001||',
          'acting again without an organization clears the organization and the role');
SELECT is(pg_temp.acting('a0000000-0000-0000-0000-000000000002', 'a0000000-0000-0000-0000-00000000000b',
                         'a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-00000000000a',
                         p_login => 'act_as_test_login'),
          'minicrm_api|a0000000-0000-0000-0000-000000000001|a0000000-0000-0000-0000-00000000000a|admin',
          'acting again through a non-superuser login finds the new membership');

SELECT * FROM finish();
ROLLBACK;
