-- Idempotency keys (SPEC §11; README "Idempotency keys"). A request that
-- carries a key is still one statement, so the stored answer and the write it
-- answers commit or roll back together:
--
--   SELECT b.replayed, b.status,
--          CASE WHEN b.replayed THEN b.body
--               ELSE app.idempotency_finish(..., p_body => (api.<fn>(...))::text) END
--     FROM app.act_as($1, $2) AS a(role),
--          LATERAL app.idempotency_begin(p_after => a.role, ...) AS b
--
-- (src/db/mod.rs). begin runs after act_as (LATERAL on its result), so it
-- acts in the request's context; the API call runs only when there is no
-- answer to replay. A failed write raises, and nothing is stored.

-- The advisory lock of a key: a 64-bit hash of the organization (none: a
-- user-level key), the user and the key.
CREATE OR REPLACE FUNCTION app.idempotency_lock(p_org uuid, p_user uuid, p_key text) RETURNS bigint
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$
    SELECT pg_catalog.hashtextextended(
      'minicrm.idempotency/' || coalesce(p_org::text, '-') || '/' || p_user::text || '/' || p_key, 0)
  $$;

-- Claims the key for this transaction and says whether an answer exists:
-- * another transaction holds the key (the first request is still running):
--   409 idempotency_key_in_progress. The lock is tried, not waited for, so a
--   retry storm costs no connection time;
-- * a live row with the same fingerprint: replayed, with its status and body;
--   scope is the organization it was looked up in (NULL: a user-level key);
-- * a live row with another fingerprint: 422 idempotency_key_reused;
-- * no row, or an expired one (expires_at < now()): not replayed; the caller
--   writes and app.idempotency_finish stores the answer.
-- The lock is an advisory transaction lock on a 64-bit hash of the
-- organization, user and key (a collision between two keys only makes one
-- wait for the other's 409). VOLATILE, so the lookup takes its own snapshot
-- after the lock is held: a first request that committed and released the
-- lock is seen (its commit is visible before its locks are released).
-- p_after is the result of app.act_as (the caller's role), taken to order
-- the two.
CREATE OR REPLACE FUNCTION app.idempotency_begin(p_after crm.member_role, p_key text, p_fingerprint bytea,
    OUT replayed boolean, OUT status int, OUT body text, OUT scope uuid)
  LANGUAGE plpgsql VOLATILE
  AS $$
DECLARE
  v_org uuid := app.org_id();
  v_user uuid := app.user_id();
  v_fingerprint bytea;
BEGIN
  scope := v_org;
  -- act_as ran first: it resolved a role for any organization it acts in.
  IF v_user IS NULL OR (v_org IS NOT NULL AND p_after IS NULL) THEN
    RAISE EXCEPTION 'idempotency keys need a user context: call app.act_as first';
  END IF;
  IF NOT pg_try_advisory_xact_lock(app.idempotency_lock(v_org, v_user, p_key)) THEN
    PERFORM app.fail('MC409', 'idempotency_key_in_progress',
      'a request with this Idempotency-Key is still being processed; retry it later');
  END IF;
  IF v_org IS NULL THEN
    SELECT k.fingerprint, k.status, k.body INTO v_fingerprint, status, body
      FROM crm.user_idempotency_keys k
     WHERE k.user_id = v_user AND k.key = p_key AND k.expires_at >= now();
  ELSE
    SELECT k.fingerprint, k.status, k.body INTO v_fingerprint, status, body
      FROM crm.idempotency_keys k
     WHERE k.organization_id = v_org AND k.user_id = v_user AND k.key = p_key AND k.expires_at >= now();
  END IF;
  IF NOT FOUND THEN
    replayed := false;
    RETURN;
  END IF;
  IF v_fingerprint <> p_fingerprint THEN
    PERFORM app.fail('MC422', 'idempotency_key_reused',
      'this Idempotency-Key was used for another request (method, path or body differ); use a new key');
  END IF;
  replayed := true;
END
$$;

-- Stores the answer p_status/p_body under the key that app.idempotency_begin
-- claimed in this transaction, for p_ttl_secs, and returns p_body. An expired
-- row of the same key is replaced. p_scope is begin's scope (the
-- organization the request acts in, or NULL): the API call in between may
-- change app.org_id (organizations_create acts in the organization it makes),
-- and the answer must be stored where begin looked for it.
CREATE OR REPLACE FUNCTION app.idempotency_finish(p_scope uuid, p_key text, p_fingerprint bytea,
    p_status int, p_ttl_secs int, p_body text)
  RETURNS text LANGUAGE plpgsql VOLATILE
  AS $$
DECLARE
  v_org uuid := p_scope;
  v_expires timestamptz := now() + make_interval(secs => p_ttl_secs);
BEGIN
  IF v_org IS NULL THEN
    INSERT INTO crm.user_idempotency_keys AS k (user_id, key, fingerprint, status, body, expires_at)
    VALUES (app.user_id(), p_key, p_fingerprint, p_status, p_body, v_expires)
    ON CONFLICT (user_id, key) DO UPDATE
      SET fingerprint = excluded.fingerprint, status = excluded.status, body = excluded.body,
          created_at = excluded.created_at, expires_at = excluded.expires_at;
  ELSE
    INSERT INTO crm.idempotency_keys AS k (organization_id, user_id, key, fingerprint, status, body, expires_at)
    VALUES (v_org, app.user_id(), p_key, p_fingerprint, p_status, p_body, v_expires)
    ON CONFLICT (organization_id, user_id, key) DO UPDATE
      SET fingerprint = excluded.fingerprint, status = excluded.status, body = excluded.body,
          created_at = excluded.created_at, expires_at = excluded.expires_at;
  END IF;
  RETURN p_body;
END
$$;
