-- The request role and the privileges around it (SPEC §1): whatever login the
-- server uses, requests run as minicrm_api, which must be unable to step
-- around row-level security or read secrets.
BEGIN;
SELECT plan(31);

-- Runs p_sql as minicrm_api (optionally with a user/organization context) and
-- comes back to the superuser, so that pgTAP (whose functions minicrm_api may
-- not execute: EXECUTE is revoked from PUBLIC by default) does the asserting.
-- An error propagates; the subtransaction of throws_ok undoes the role switch.
CREATE FUNCTION pg_temp.exec_as(p_user uuid, p_org uuid, p_sql text) RETURNS bigint
  LANGUAGE plpgsql AS $$
DECLARE
  n bigint;
BEGIN
  IF p_user IS NULL THEN
    PERFORM set_config('role', 'minicrm_api', true);
  ELSE
    PERFORM app.act_as(p_user, p_org);
  END IF;
  EXECUTE p_sql;
  GET DIAGNOSTICS n = ROW_COUNT;
  PERFORM set_config('role', 'none', true);
  PERFORM set_config('app.user_id', '', true);
  PERFORM set_config('app.org_id', '', true);
  PERFORM set_config('app.role', '', true);
  RETURN n;
END
$$;

-- Someone to act as, for the privilege checks under a full context.
INSERT INTO crm.users (id, email, hashed_password, name) VALUES
  ('a0000000-0000-0000-0000-000000000001', 'ann@roles.test', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'Ann');
INSERT INTO crm.organizations (id, name) VALUES ('a0000000-0000-0000-0000-000000000000', 'A');
INSERT INTO crm.organization_members (organization_id, user_id, role) VALUES
  ('a0000000-0000-0000-0000-000000000000', 'a0000000-0000-0000-0000-000000000001', 'owner');

-- 1. The role itself: no superuser, no BYPASSRLS, no login, no inherited power.
SELECT is((SELECT rolsuper FROM pg_roles WHERE rolname = 'minicrm_api'), false, 'minicrm_api is not a superuser');
SELECT is((SELECT rolbypassrls FROM pg_roles WHERE rolname = 'minicrm_api'), false, 'minicrm_api does not bypass RLS');
SELECT is((SELECT rolcanlogin FROM pg_roles WHERE rolname = 'minicrm_api'), false, 'minicrm_api cannot log in');
SELECT is_empty($$ SELECT roleid::regrole::text FROM pg_auth_members WHERE member = 'minicrm_api'::regrole $$,
  'minicrm_api is a member of no other role');

-- 2. It owns nothing: an owner escapes non-forced RLS and may ALTER or GRANT.
SELECT is_empty($$ SELECT relname FROM pg_class WHERE relowner = 'minicrm_api'::regrole $$,
  'minicrm_api owns no table, view, sequence or index');
SELECT is_empty($$ SELECT proname FROM pg_proc WHERE proowner = 'minicrm_api'::regrole $$,
  'minicrm_api owns no function');
SELECT is_empty($$ SELECT nspname FROM pg_namespace WHERE nspowner = 'minicrm_api'::regrole $$,
  'minicrm_api owns no schema');
-- ... and cannot create objects (a planted function could hijack an unpinned search_path).
SELECT is_empty($$ SELECT nspname FROM pg_namespace
                    WHERE nspname IN ('crm', 'app', 'api', 'private', 'public')
                      AND has_schema_privilege('minicrm_api', oid, 'CREATE') $$,
  'minicrm_api may create nothing in crm, app, api, private or public');

-- 3. Every tenant table has RLS enabled and forced (forced: the table owner obeys it too).
SELECT ok(relrowsecurity AND relforcerowsecurity, format('%s: RLS enabled and forced', oid::regclass))
  FROM pg_class
 WHERE oid IN ('crm.organizations'::regclass, 'crm.organization_members'::regclass, 'crm.contacts'::regclass,
               'crm.deals'::regclass, 'crm.tasks'::regclass, 'crm.activities'::regclass,
               'crm.invitations'::regclass)
 ORDER BY relname;
-- Catches a tenant table added later without RLS: any crm table with organization_id.
SELECT is_empty($$
  SELECT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
   WHERE c.relnamespace = 'crm'::regnamespace AND c.relkind IN ('r', 'p')
     AND a.attname = 'organization_id' AND NOT a.attisdropped
     AND NOT (c.relrowsecurity AND c.relforcerowsecurity) $$,
  'every crm table with an organization_id column has RLS enabled and forced');
SELECT ok((SELECT relrowsecurity FROM pg_class WHERE oid = 'crm.users'::regclass), 'crm.users has RLS enabled');

-- 4. Secrets: the password hash and the refresh tokens are out of reach, with or without a context.
SELECT throws_ok($$ SELECT pg_temp.exec_as(NULL, NULL, 'SELECT hashed_password FROM crm.users') $$,
  '42501', 'permission denied for table users', 'minicrm_api cannot read crm.users.hashed_password');
SELECT throws_ok($$ SELECT pg_temp.exec_as('a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000000',
                   'SELECT hashed_password FROM crm.users') $$,
  '42501', 'permission denied for table users', '... not even for its own user under a context');
SELECT throws_ok($$ SELECT pg_temp.exec_as('a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000000',
                   'SELECT * FROM crm.users') $$,
  '42501', 'permission denied for table users', '... nor through SELECT *');
-- Control: the other user columns are readable, so the failures above are about the hash.
SELECT is(pg_temp.exec_as('a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000000',
            'SELECT id, email, name, created_at FROM crm.users'), 1::bigint,
  'minicrm_api can read the public user columns (and sees its own user)');
SELECT throws_ok($$ SELECT pg_temp.exec_as(NULL, NULL, 'SELECT * FROM private.refresh_tokens') $$,
  '42501', 'permission denied for table refresh_tokens', 'minicrm_api cannot read private.refresh_tokens');
SELECT throws_ok($$ SELECT pg_temp.exec_as('a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000000',
                   'SELECT token_hash FROM private.refresh_tokens') $$,
  '42501', 'permission denied for table refresh_tokens', '... not even under a context');
SELECT ok(NOT has_table_privilege('minicrm_api', 'private.refresh_tokens', 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE'),
  'minicrm_api has no privilege at all on private.refresh_tokens');
SELECT ok(NOT has_column_privilege('minicrm_api', 'crm.users', 'hashed_password', 'SELECT, INSERT, UPDATE'),
  'minicrm_api has no privilege on crm.users.hashed_password');
-- The activity timeline is append-only for requests.
SELECT ok(NOT has_table_privilege('minicrm_api', 'crm.activities', 'UPDATE, DELETE, TRUNCATE'),
  'minicrm_api cannot update, delete or truncate activities');
-- Invitations: never deleted (revoking is a status), and what was offered never rewritten.
SELECT ok(NOT has_table_privilege('minicrm_api', 'crm.invitations', 'UPDATE, DELETE, TRUNCATE')
          AND NOT has_column_privilege('minicrm_api', 'crm.invitations', 'role', 'UPDATE')
          AND has_column_privilege('minicrm_api', 'crm.invitations', 'status', 'UPDATE'),
  'minicrm_api may only change an invitation''s outcome, never delete one');

-- 5. SECURITY DEFINER functions: each pins its search_path (or a caller could
-- shadow the objects it uses), and none is directly in the api surface.
SELECT isnt_empty($$ SELECT 1 FROM pg_proc WHERE prosecdef AND pronamespace = 'private'::regnamespace $$,
  'there are SECURITY DEFINER helpers to check (the checks below are not vacuous)');
SELECT is_empty($$
  SELECT p.oid::regprocedure::text FROM pg_proc p
   WHERE p.prosecdef
     AND p.pronamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
     AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%') $$,
  'every SECURITY DEFINER function has a pinned search_path');
SELECT is_empty($$ SELECT oid::regprocedure::text FROM pg_proc WHERE prosecdef AND pronamespace = 'api'::regnamespace $$,
  'no SECURITY DEFINER function lives in schema api');
SELECT is_empty($$ SELECT oid::regprocedure::text FROM pg_proc WHERE prosecdef AND pronamespace IN ('crm'::regnamespace, 'app'::regnamespace) $$,
  'no SECURITY DEFINER function lives in schema crm or app either (they belong in private)');

SELECT * FROM finish();
ROLLBACK;
