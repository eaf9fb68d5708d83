-- Authentication. Passwords are hashed and verified in the server (argon2id);
-- refresh tokens arrive here already hashed (SHA-256) and are stored only so.
-- Users and refresh tokens are global, so the few operations that must see
-- across organizations are SECURITY DEFINER helpers in `private`, each with a
-- pinned search_path; the api functions wrap them.

CREATE OR REPLACE FUNCTION private.user_register(p_email text, p_hashed_password text, p_name text)
  RETURNS crm.users LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    INSERT INTO crm.users (email, hashed_password, name)
    VALUES (app.trim_space(p_email), p_hashed_password, app.trim_space(p_name))
    RETURNING *
  $$;

-- Both look a user up as the unique index users_email_taken sees the
-- address: by app.email_key (sql/functions/01_email_key.sql), so a spelling
-- finds an account exactly when registering it would be refused.
CREATE OR REPLACE FUNCTION private.user_credentials(p_email text)
  RETURNS TABLE (user_id uuid, hashed_password text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$ SELECT u.id, u.hashed_password FROM crm.users u WHERE app.email_key(u.email) = app.email_key(p_email) $$;

CREATE OR REPLACE FUNCTION private.refresh_token_issue(p_user_id uuid, p_token_hash bytea, p_family_id uuid, p_expires_at timestamptz)
  RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    INSERT INTO private.refresh_tokens (token_hash, family_id, user_id, expires_at)
    VALUES (p_token_hash, p_family_id, p_user_id, p_expires_at)
  $$;

-- Rotation: the presented token is spent and a new one joins its family.
-- Presenting a spent token again means it was stolen (or replayed): the whole
-- family is revoked. Outcomes are returned, not raised, so the revocation commits.
CREATE OR REPLACE FUNCTION private.refresh_token_rotate(p_token_hash bytea, p_new_token_hash bytea, p_expires_at timestamptz)
  RETURNS TABLE (outcome text, user_id uuid)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
DECLARE
  t private.refresh_tokens;
BEGIN
  SELECT * INTO t FROM private.refresh_tokens r WHERE r.token_hash = p_token_hash FOR UPDATE;
  IF NOT FOUND OR t.revoked_at IS NOT NULL OR t.expires_at <= now() THEN
    RETURN QUERY SELECT 'invalid'::text, NULL::uuid;
  ELSIF t.used_at IS NOT NULL THEN
    UPDATE private.refresh_tokens r SET revoked_at = now()
     WHERE r.family_id = t.family_id AND r.revoked_at IS NULL;
    RETURN QUERY SELECT 'reused'::text, t.user_id;
  ELSE
    UPDATE private.refresh_tokens r SET used_at = now() WHERE r.token_hash = p_token_hash;
    INSERT INTO private.refresh_tokens (token_hash, family_id, user_id, expires_at)
    VALUES (p_new_token_hash, t.family_id, t.user_id, p_expires_at);
    RETURN QUERY SELECT 'ok'::text, t.user_id;
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION private.refresh_token_revoke_family(p_token_hash bytea) RETURNS void
  LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    UPDATE private.refresh_tokens SET revoked_at = now()
     WHERE revoked_at IS NULL
       AND family_id = (SELECT family_id FROM private.refresh_tokens WHERE token_hash = p_token_hash)
  $$;

GRANT USAGE ON SCHEMA private TO minicrm_api;
GRANT EXECUTE ON FUNCTION private.user_register(text, text, text), private.user_credentials(text),
  private.refresh_token_issue(uuid, bytea, uuid, timestamptz),
  private.refresh_token_rotate(bytea, bytea, timestamptz), private.refresh_token_revoke_family(bytea)
  TO minicrm_api;

-- The API surface.

CREATE OR REPLACE FUNCTION api.auth_register(p_email text, p_hashed_password text, p_name text,
    p_organization_name text, p_refresh_hash bytea, p_refresh_expires_at timestamptz)
  RETURNS jsonb LANGUAGE plpgsql
  AS $$
DECLARE
  v_user crm.users;
  v_org jsonb;
BEGIN
  v_user := private.user_register(p_email, p_hashed_password, p_name);
  PERFORM set_config('app.user_id', v_user.id::text, true);
  v_org := api.organizations_create(p_organization_name);
  PERFORM private.refresh_token_issue(v_user.id, p_refresh_hash, gen_random_uuid(), p_refresh_expires_at);
  RETURN jsonb_build_object('user', app.user_json(v_user.id, v_user.email, v_user.name, v_user.created_at),
                            'organization', v_org);
END
$$;

-- For the server's password check: the address's key (the server counts
-- login attempts per key, before it verifies a password) and the user's id
-- and password hash, both null when no user has that key.
CREATE OR REPLACE FUNCTION api.auth_login_credentials(p_email text) RETURNS jsonb
  LANGUAGE sql STABLE
  AS $$
    SELECT jsonb_build_object('user_id', c.user_id, 'hashed_password', c.hashed_password)
      FROM (SELECT) one LEFT JOIN private.user_credentials(p_email) c ON true
  $$;

CREATE OR REPLACE FUNCTION api.auth_session_start(p_user_id uuid, p_refresh_hash bytea, p_refresh_expires_at timestamptz)
  RETURNS void LANGUAGE sql
  AS $$ SELECT private.refresh_token_issue(p_user_id, p_refresh_hash, gen_random_uuid(), p_refresh_expires_at) $$;

CREATE OR REPLACE FUNCTION api.auth_refresh(p_refresh_hash bytea, p_new_refresh_hash bytea, p_refresh_expires_at timestamptz)
  RETURNS jsonb LANGUAGE sql
  AS $$
    SELECT jsonb_build_object('outcome', r.outcome, 'user_id', r.user_id)
      FROM private.refresh_token_rotate(p_refresh_hash, p_new_refresh_hash, p_refresh_expires_at) r
  $$;

CREATE OR REPLACE FUNCTION api.auth_logout(p_refresh_hash bytea) RETURNS void
  LANGUAGE sql
  AS $$ SELECT private.refresh_token_revoke_family(p_refresh_hash) $$;

CREATE OR REPLACE FUNCTION api.users_me() RETURNS jsonb
  LANGUAGE plpgsql STABLE
  AS $$
DECLARE
  v jsonb;
BEGIN
  SELECT app.user_json(u.id, u.email, u.name, u.created_at) INTO v FROM crm.users u WHERE u.id = app.user_id();
  IF v IS NULL THEN
    PERFORM app.fail('MC401', 'invalid_token', 'the user of this token no longer exists');
  END IF;
  RETURN v;
END
$$;
