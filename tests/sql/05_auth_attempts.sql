-- Attempt limits counted in the database (api.auth_attempt), shared by every
-- server instance: per address first, then per email by app.email_key.
-- Each attempt runs as the server makes it (anonymous, as minicrm_api) and
-- switches back, so pgTAP (not executable by minicrm_api) can assert.
BEGIN;
SELECT plan(10);

CREATE FUNCTION pg_temp.attempt(p_address text, p_email text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v jsonb;
BEGIN
  PERFORM app.act_as(NULL, NULL);
  v := api.auth_attempt(p_address => p_address, p_email => p_email, p_address_limit => 5, p_email_limit => 3);
  PERFORM set_config('role', 'none', true);
  PERFORM set_config('app.user_id', '', true);
  RETURN v;
END
$$;

-- As the request role, with anything but the function.
CREATE FUNCTION pg_temp.as_request_role(p_sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  PERFORM app.act_as(NULL, NULL);
  BEGIN
    EXECUTE p_sql;
  EXCEPTION WHEN insufficient_privilege THEN
    PERFORM set_config('role', 'none', true);
    RETURN 'refused';
  END;
  PERFORM set_config('role', 'none', true);
  RETURN 'allowed';
END
$$;

SELECT is(pg_temp.attempt('10.0.0.1', 'victim@example.com') - 'reset',
          '{"allowed": true, "limit": 3, "remaining": 2}'::jsonb, 'the first attempt: the tighter quota is the email''s');
SELECT ok((pg_temp.attempt('10.0.0.1', 'victim@example.com') ->> 'reset')::int BETWEEN 1 AND 60, 'reset is the window''s seconds left');
SELECT is(pg_temp.attempt('10.0.0.2', 'VİCTİM@example.com') -> 'remaining', '0'::jsonb, 'a variant spelling counts on the same key');
SELECT is(pg_temp.attempt('10.0.0.3', 'victim@example.com') -> 'allowed', 'false'::jsonb, 'past the email limit: refused');
-- The address limit: five attempts from one address, whatever the emails.
SELECT count(pg_temp.attempt('10.9.9.9', 'a' || n || '@example.com')) FROM generate_series(1, 5) n;
SELECT is(pg_temp.attempt('10.9.9.9', 'fresh@example.com') - 'reset',
          '{"allowed": false, "limit": 5, "remaining": 0}'::jsonb, 'past the address limit: refused');
SELECT is((SELECT count(*)::int FROM private.auth_attempts
            WHERE key = sha256(convert_to('email:' || app.email_key('fresh@example.com'), 'UTF8'))), 0,
          'an attempt refused by its address does not count against the email');
SELECT is((SELECT count(*)::int FROM private.auth_attempts
            WHERE key = sha256(convert_to('email:' || app.email_key('victim@example.com'), 'UTF8'))), 1,
          'keys are stored as hashes of the address''s key');
-- An ended window starts afresh.
UPDATE private.auth_attempts SET window_start = now() - interval '61 seconds';
SELECT is(pg_temp.attempt('10.0.0.1', 'victim@example.com') -> 'remaining', '2'::jsonb, 'after the window, the count starts again');
-- The request role reaches the counters only through the function.
SELECT is(pg_temp.as_request_role('SELECT count(*) FROM private.auth_attempts'), 'refused', 'the request role cannot read the counters');
SELECT is(pg_temp.as_request_role('DELETE FROM private.auth_attempts'), 'refused', 'the request role cannot reset the counters');

SELECT * FROM finish();
ROLLBACK;
