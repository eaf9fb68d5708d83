-- Authentication in the database: R10 (one account per email, whatever its
-- case) and refresh-token rotation with theft detection (SPEC §5): a spent
-- refresh token presented again revokes the whole login (its token family).
-- Every API call runs as the server makes it: as minicrm_api, through
-- app.act_as with no user (auth endpoints are anonymous).
BEGIN;
SELECT plan(30);

-- Anonymous API calls, as the server makes them; each switches to minicrm_api
-- and back, so pgTAP (not executable by minicrm_api) can assert. Refresh
-- tokens are named by a word; the database only ever sees their SHA-256.
-- act_as(NULL, NULL) leaves app.org_id and app.role empty; api.auth_register
-- sets them, which is why app.user_id, org_id and role are cleared after.
CREATE FUNCTION pg_temp.h(p_token text) RETURNS bytea LANGUAGE sql IMMUTABLE
  AS $$ SELECT sha256(convert_to(p_token, 'UTF8')) $$;

-- (Hashes are computed before the switch: minicrm_api may not call pg_temp.h.)
CREATE FUNCTION pg_temp.register(p_email text, p_refresh text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_hash bytea := pg_temp.h(p_refresh);
  v jsonb;
BEGIN
  PERFORM app.act_as(NULL, NULL);                   -- anonymous request: minicrm_api, no context
  v := api.auth_register(p_email, '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'Ann', 'Ann''s company',
                         v_hash, now() + interval '30 days');
  PERFORM set_config('role', 'none', true);         -- back to the superuser (minicrm_api may not
  PERFORM set_config('app.user_id', '', true);      -- call pg_temp functions either, so inline)
  PERFORM set_config('app.org_id', '', true);
  PERFORM set_config('app.role', '', true);
  RETURN v;
END
$$;
-- A login: a new token family; p_expires_at lets a test issue an expired token.
CREATE FUNCTION pg_temp.login(p_user uuid, p_refresh text, p_expires_at timestamptz DEFAULT now() + interval '30 days')
  RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  v_hash bytea := pg_temp.h(p_refresh);
BEGIN
  PERFORM app.act_as(NULL, NULL);                   -- anonymous request: minicrm_api, no context
  PERFORM api.auth_session_start(p_user, v_hash, p_expires_at);
  PERFORM set_config('role', 'none', true);         -- back to the superuser (minicrm_api may not
  PERFORM set_config('app.user_id', '', true);      -- call pg_temp functions either, so inline)
  PERFORM set_config('app.org_id', '', true);
  PERFORM set_config('app.role', '', true);
END
$$;
-- Present p_old, asking for p_new in exchange: {outcome, user_id}.
CREATE FUNCTION pg_temp.refresh_full(p_old text, p_new text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_old bytea := pg_temp.h(p_old);
  v_new bytea := pg_temp.h(p_new);
  v jsonb;
BEGIN
  PERFORM app.act_as(NULL, NULL);                   -- anonymous request: minicrm_api, no context
  v := api.auth_refresh(v_old, v_new, now() + interval '30 days');
  PERFORM set_config('role', 'none', true);         -- back to the superuser (minicrm_api may not
  PERFORM set_config('app.user_id', '', true);      -- call pg_temp functions either, so inline)
  PERFORM set_config('app.org_id', '', true);
  PERFORM set_config('app.role', '', true);
  RETURN v;
END
$$;
CREATE FUNCTION pg_temp.refresh(p_old text, p_new text) RETURNS text LANGUAGE sql
  AS $$ SELECT pg_temp.refresh_full(p_old, p_new)->>'outcome' $$;
CREATE FUNCTION pg_temp.logout(p_refresh text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  v_hash bytea := pg_temp.h(p_refresh);
BEGIN
  PERFORM app.act_as(NULL, NULL);                   -- anonymous request: minicrm_api, no context
  PERFORM api.auth_logout(v_hash);
  PERFORM set_config('role', 'none', true);         -- back to the superuser (minicrm_api may not
  PERFORM set_config('app.user_id', '', true);      -- call pg_temp functions either, so inline)
  PERFORM set_config('app.org_id', '', true);
  PERFORM set_config('app.role', '', true);
END
$$;

-- R10: email addresses are unique regardless of case -----------------------

SELECT is(pg_temp.register('Ann@X.io', 'reg-1')->'user'->>'email', 'Ann@X.io', 'registering Ann@X.io succeeds (case kept as typed)');
SELECT is(current_user::text, session_user::text, 'the helpers return to the superuser');
SELECT throws_ok($$ SELECT pg_temp.register('ann@x.io', 'reg-2') $$,
  '23505', 'duplicate key value violates unique constraint "users_email_taken"',
  'registering ann@x.io afterwards fails: the address is taken, whatever its case');
SELECT throws_ok($$ SELECT pg_temp.register('  ANN@X.IO ', 'reg-3') $$,
  '23505', 'duplicate key value violates unique constraint "users_email_taken"',
  '... also in upper case with surrounding spaces (emails are trimmed)');
SELECT throws_ok($$ INSERT INTO crm.users (email, hashed_password, name)
                    VALUES ('aNN@x.IO', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'Ann') $$,
  '23505', 'duplicate key value violates unique constraint "users_email_taken"',
  '... and for a direct INSERT by a superuser: the rule is the database''s');
SELECT is((SELECT count(*)::int FROM crm.users WHERE lower(email) = 'ann@x.io'), 1, 'exactly one account for the address');
-- Non-ASCII letters fold too, by app.email_key's own table, whatever the
-- database's locale (tests/sql/07_email_key.sql has the tricky ones).
SELECT lives_ok($$ SELECT pg_temp.register('Élodie@X.io', 'reg-4') $$, 'registering Élodie@X.io succeeds');
SELECT throws_ok($$ SELECT pg_temp.register('élodie@x.io', 'reg-5') $$,
  '23505', 'duplicate key value violates unique constraint "users_email_taken"',
  'registering élodie@x.io afterwards fails: case-insensitive beyond ASCII');
-- Registration made Ann the owner of a new organization and started a login.
SELECT is((SELECT m.role::text FROM crm.organization_members m JOIN crm.users u ON u.id = m.user_id WHERE u.email = 'Ann@X.io'),
  'owner', 'the registered user owns the organization created with the account');
SELECT is((SELECT count(*)::int FROM private.refresh_tokens t JOIN crm.users u ON u.id = t.user_id
            WHERE u.email = 'Ann@X.io' AND t.token_hash = pg_temp.h('reg-1')), 1,
  'registration stored the refresh token (by its hash)');
SELECT is(pg_temp.refresh('reg-1', 'reg-1b'), 'ok', 'the registration''s refresh token works');

-- Refresh rotation ----------------------------------------------------------

-- (DO blocks: setup steps that print nothing into the TAP stream.)
CREATE TEMP TABLE ann AS SELECT id FROM crm.users WHERE email = 'Ann@X.io';
-- Login 1: tokens a1 -> a2 -> (a3 never issued). Login 2 (another device): b1.
DO $$ BEGIN PERFORM pg_temp.login((SELECT id FROM ann), 'a1'); PERFORM pg_temp.login((SELECT id FROM ann), 'b1'); END $$;

SELECT is(pg_temp.refresh('a1', 'a2'), 'ok', 'first use of a refresh token: ok');
SELECT is((SELECT (used_at IS NOT NULL)::text || ',' || (SELECT count(*) FROM private.refresh_tokens n
                                                         WHERE n.token_hash = pg_temp.h('a2') AND n.family_id = t.family_id)
             FROM private.refresh_tokens t WHERE t.token_hash = pg_temp.h('a1')), 'true,1',
  'a1 is spent and its replacement a2 joined the same family');
SELECT is(pg_temp.refresh('a1', 'a3'), 'reused', 'second use of the same token: reused');
SELECT is((SELECT count(*)::int FROM private.refresh_tokens WHERE token_hash = pg_temp.h('a3')), 0,
  'a reused token mints nothing');
SELECT is(pg_temp.refresh('a2', 'a4'), 'invalid', 'after the reuse, the rotated (newer) token a2 is invalid too');
SELECT is((SELECT count(*)::int FROM private.refresh_tokens
            WHERE family_id = (SELECT family_id FROM private.refresh_tokens WHERE token_hash = pg_temp.h('a1'))
              AND revoked_at IS NULL), 0, 'the whole family is revoked');
SELECT is(pg_temp.refresh('a1', 'a5'), 'invalid', 'and a third use of the stolen token is just invalid');
-- The revocation is per login: Ann's other device keeps working.
SELECT is(pg_temp.refresh('b1', 'b2'), 'ok', 'another login (family) of the same user is unaffected');

-- The outcome names the user, so the server can issue the new access token.
DO $$ BEGIN PERFORM pg_temp.login((SELECT id FROM ann), 'c1'); END $$;
SELECT is(pg_temp.refresh_full('c1', 'c2')->>'user_id', (SELECT id::text FROM ann), 'an ok refresh names the token''s user');

-- Expired and unknown tokens are invalid.
DO $$ BEGIN PERFORM pg_temp.login((SELECT id FROM ann), 'e1', now() - interval '1 second'); END $$;
SELECT is(pg_temp.refresh('e1', 'e2'), 'invalid', 'an expired refresh token is invalid');
DO $$ BEGIN PERFORM pg_temp.login((SELECT id FROM ann), 'e3', now()); END $$;
SELECT is(pg_temp.refresh('e3', 'e4'), 'invalid', 'a token expiring right now is invalid');
SELECT is((SELECT count(*)::int FROM private.refresh_tokens WHERE token_hash IN (pg_temp.h('e2'), pg_temp.h('e4'))), 0,
  'refreshing an expired token mints nothing');
SELECT is(pg_temp.refresh('never-issued', 'n2'), 'invalid', 'an unknown refresh token is invalid');

-- Logout revokes the family: the current token and every earlier one.
DO $$ BEGIN PERFORM pg_temp.login((SELECT id FROM ann), 'd1'); END $$;
SELECT is(pg_temp.refresh('d1', 'd2'), 'ok', 'control: a fresh login rotates d1 -> d2');
SELECT lives_ok($$ SELECT pg_temp.logout('d2') $$, 'logout with the current token');
SELECT is(pg_temp.refresh('d2', 'd3'), 'invalid', 'after logout the current token is invalid');
SELECT is((SELECT count(*)::int FROM private.refresh_tokens
            WHERE family_id = (SELECT family_id FROM private.refresh_tokens WHERE token_hash = pg_temp.h('d1'))
              AND revoked_at IS NULL), 0, 'logout revoked every token of the login');
SELECT is(pg_temp.refresh('b2', 'b3'), 'ok', 'logout leaves the user''s other logins alone');
SELECT lives_ok($$ SELECT pg_temp.logout('never-issued') $$, 'logout with an unknown token is harmless');

SELECT * FROM finish();
ROLLBACK;
