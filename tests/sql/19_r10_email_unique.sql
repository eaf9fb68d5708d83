-- R10: email addresses are unique across users regardless of case: 409
-- (23505 on the unique index users_email_taken). Registration runs as the
-- server runs it: anonymously, as minicrm_api (app.act_as(NULL)).
BEGIN;
SELECT plan(16);
\ir pipeline_fixture.psql

-- api.auth_register as an anonymous request, with refresh-token hash p_hash.
CREATE FUNCTION pg_temp.register_sql(p_email text, p_org_name text, p_hash text) RETURNS text LANGUAGE sql AS $$
  SELECT format('SELECT api.auth_register(%L, %L, %L, %L, %L::bytea, now() + interval ''1 day'')',
                p_email, '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'Ann', p_org_name, p_hash)
$$;

SELECT lives_ok(format($$SELECT pg_temp.exec_as(NULL, NULL, %L)$$, pg_temp.register_sql('Ann.Lee@Example.com', 'Lee Co', '\x01')),
  'registering Ann.Lee@Example.com works');
SELECT is((SELECT email FROM crm.users WHERE lower(email) = 'ann.lee@example.com'), 'Ann.Lee@Example.com',
  'the address is stored as given');

-- The same address in another case: refused, with nothing left behind.
SELECT throws_ok(format($$SELECT pg_temp.exec_as(NULL, NULL, %L)$$, pg_temp.register_sql(e, 'Dup Co', h)),
  '23505', 'duplicate key value violates unique constraint "users_email_taken"',
  format('registering %s again is refused (23505)', e))
  FROM (VALUES ('ann.lee@example.com', '\x02'), ('ANN.LEE@EXAMPLE.COM', '\x03'), ('aNN.lEE@eXAMPLE.cOM', '\x04'),
               ('  ann.lee@example.COM ', '\x05')) v(e, h);
SELECT is(pg_temp.try_as(NULL, NULL, pg_temp.register_sql('ANN.lee@example.com', 'Dup Co', '\x06')),
  '23505 users_email_taken', '... with the machine code users_email_taken');
SELECT is((SELECT count(*)::int FROM crm.users WHERE lower(btrim(email)) = 'ann.lee@example.com'), 1,
  'there is still exactly one user with that address');
SELECT is((SELECT count(*)::int FROM crm.organizations WHERE name = 'Dup Co'), 0, 'the refused registrations created no organization');
SELECT is((SELECT count(*)::int FROM private.refresh_tokens WHERE token_hash IN ('\x02', '\x03', '\x04', '\x05', '\x06')), 0,
  '... and no refresh token');

-- A different address is fine.
SELECT lives_ok(format($$SELECT pg_temp.exec_as(NULL, NULL, %L)$$, pg_temp.register_sql('ann.lee+crm@example.com', 'Lee Two', '\x07')),
  'a different address registers');

-- The rule holds for every writer: the superuser inserting or renaming directly.
SELECT throws_ok($$INSERT INTO crm.users (email, hashed_password, name)
                   VALUES ('ANN.LEE@example.com', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'Imposter')$$,
  '23505', 'duplicate key value violates unique constraint "users_email_taken"', 'a direct INSERT of the address in upper case is refused');
SELECT throws_ok($$UPDATE crm.users SET email = 'MAX@Pipeline.Test' WHERE email = 'rita@pipeline.test'$$,
  '23505', 'duplicate key value violates unique constraint "users_email_taken"',
  'renaming a user to another''s address in another case is refused');
SELECT is((SELECT email FROM crm.users WHERE id = :'rita'), 'rita@pipeline.test', 'Rita''s address is unchanged');

-- One address, one user, whatever the case: login and an invitation find the same person.
SELECT is(pg_temp.value_as(NULL, NULL, $$SELECT api.auth_login_credentials('ANN.LEE@EXAMPLE.COM') ->> 'user_id'$$),
  (SELECT id::text FROM crm.users WHERE email = 'Ann.Lee@Example.com'), 'the login lookup ignores case');
SELECT pg_temp.value_as(:'zed', :'org_b', $$SELECT api.invitations_create('MAX@PIPELINE.TEST', 'member', 3600) ->> 'id'$$) AS max_inv \gset
SELECT is(pg_temp.value_as(:'max', NULL, format('SELECT api.invitations_accept(%L) ->> %L', :'max_inv', 'user_id')),
  :'max', 'an invitation to the address in another case is the user''s to accept');

SELECT * FROM finish();
ROLLBACK;
