-- Request context: transaction-local settings, read through tiny STABLE
-- functions that policies wrap as (select ...) so they run once per query.

CREATE OR REPLACE FUNCTION app.user_id() RETURNS uuid
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT nullif(current_setting('app.user_id', true), '')::uuid $$;

CREATE OR REPLACE FUNCTION app.org_id() RETURNS uuid
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT nullif(current_setting('app.org_id', true), '')::uuid $$;

CREATE OR REPLACE FUNCTION app.role() RETURNS crm.member_role
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT nullif(current_setting('app.role', true), '')::crm.member_role $$;

-- Raise an API error. errcode MC4xx carries the HTTP status; the constraint
-- field carries the stable machine-readable code; column names the field.
CREATE OR REPLACE FUNCTION app.fail(p_errcode text, p_code text, p_message text, p_field text DEFAULT NULL)
  RETURNS void LANGUAGE plpgsql
  AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = p_errcode, MESSAGE = p_message,
    CONSTRAINT = p_code, COLUMN = coalesce(p_field, '');
END
$$;

-- Begin acting as a user (and, optionally, inside one organization) for the
-- rest of the transaction: switch to the request role, set the context and
-- resolve the user's role from the membership table. The server calls it at
-- the start of every request; a DBA calls it before working in psql.
-- Not a member of the organization: 404, indistinguishable from "no such
-- organization".
CREATE OR REPLACE FUNCTION app.act_as(p_user_id uuid, p_org_id uuid DEFAULT NULL)
  RETURNS crm.member_role LANGUAGE plpgsql
  AS $$
DECLARE
  v_role crm.member_role;
BEGIN
  PERFORM set_config('role', 'minicrm_api', true);
  PERFORM set_config('app.user_id', coalesce(p_user_id::text, ''), true);
  PERFORM set_config('app.org_id', '', true);
  PERFORM set_config('app.role', '', true);
  IF p_org_id IS NOT NULL THEN
    SELECT m.role INTO v_role
      FROM crm.organization_members m
     WHERE m.organization_id = p_org_id AND m.user_id = p_user_id;
    IF NOT FOUND THEN
      PERFORM app.fail('MC404', 'organization_not_found', 'organization not found');
    END IF;
    PERFORM set_config('app.org_id', p_org_id::text, true);
    PERFORM set_config('app.role', v_role::text, true);
  END IF;
  RETURN v_role;
END
$$;

-- Owner or admin of the current organization, or 403.
CREATE OR REPLACE FUNCTION app.require_admin() RETURNS void
  LANGUAGE plpgsql STABLE
  AS $$
BEGIN
  IF app.role() IS NOT NULL AND app.role() NOT IN ('owner', 'admin') THEN
    PERFORM app.fail('MC403', 'role_forbidden', 'your role in this organization may not do this');
  END IF;
END
$$;

