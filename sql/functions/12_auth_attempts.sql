-- Attempt limits for login and registration, counted in the database so that
-- every server instance shares them (N instances must not allow N times the
-- attempts). A fixed window per key starts at its first attempt.

-- Counts one attempt for p_key; its count in the current window and the
-- seconds until that window ends.
CREATE OR REPLACE FUNCTION private.count_attempt(p_key text, p_window_secs int,
    OUT attempts int, OUT reset_secs int)
  LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    INSERT INTO private.auth_attempts AS a (key, window_start, attempts)
    VALUES (pg_catalog.sha256(pg_catalog.convert_to(p_key, 'UTF8')), pg_catalog.now(), 1)
    ON CONFLICT (key) DO UPDATE SET
      window_start = CASE WHEN a.window_start + pg_catalog.make_interval(secs => p_window_secs) <= pg_catalog.now()
                          THEN pg_catalog.now() ELSE a.window_start END,
      attempts = CASE WHEN a.window_start + pg_catalog.make_interval(secs => p_window_secs) <= pg_catalog.now()
                      THEN 1 ELSE LEAST(a.attempts + 1, 1000000000) END
    RETURNING a.attempts,
              GREATEST(1, pg_catalog.ceil(pg_catalog.date_part('epoch',
                a.window_start + pg_catalog.make_interval(secs => p_window_secs) - pg_catalog.now())))::int
  $$;

-- Drops windows that ended; called now and then by the writers.
CREATE OR REPLACE FUNCTION private.forget_attempts(p_window_secs int) RETURNS void
  LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    DELETE FROM private.auth_attempts
     WHERE window_start + pg_catalog.make_interval(secs => p_window_secs) <= pg_catalog.now()
  $$;

GRANT EXECUTE ON FUNCTION private.count_attempt(text, int), private.forget_attempts(int) TO minicrm_api;

-- One login or registration attempt from p_address for p_email: counted per
-- client address first (a refused address does not count against the email),
-- then per email by the database's key (every spelling of one address shares
-- one budget). The answer is the tighter quota:
-- {allowed, limit, remaining, reset} (reset in seconds).
CREATE OR REPLACE FUNCTION api.auth_attempt(p_address text, p_email text,
    p_address_limit int, p_email_limit int, p_window_secs int DEFAULT 60)
  RETURNS jsonb LANGUAGE plpgsql
  AS $$
DECLARE
  v_address record;
  v_email record;
BEGIN
  IF random() < 0.01 THEN
    PERFORM private.forget_attempts(p_window_secs);
  END IF;
  SELECT * INTO v_address FROM private.count_attempt('address:' || coalesce(p_address, ''), p_window_secs);
  IF v_address.attempts > p_address_limit THEN
    RETURN jsonb_build_object('allowed', false, 'limit', p_address_limit, 'remaining', 0,
                              'reset', v_address.reset_secs);
  END IF;
  SELECT * INTO v_email FROM private.count_attempt('email:' || app.email_key(p_email), p_window_secs);
  IF v_email.attempts > p_email_limit THEN
    RETURN jsonb_build_object('allowed', false, 'limit', p_email_limit, 'remaining', 0,
                              'reset', v_email.reset_secs);
  END IF;
  IF p_email_limit - v_email.attempts < p_address_limit - v_address.attempts THEN
    RETURN jsonb_build_object('allowed', true, 'limit', p_email_limit,
                              'remaining', p_email_limit - v_email.attempts, 'reset', v_email.reset_secs);
  END IF;
  RETURN jsonb_build_object('allowed', true, 'limit', p_address_limit,
                            'remaining', p_address_limit - v_address.attempts, 'reset', v_address.reset_secs);
END
$$;
