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
--
-- It runs once per request, so its shape is chosen for cost (measured in
-- docs/benchmarks.md, "The fixed cost of a request"):
-- * set_config is called in assignments, not PERFORM: a PERFORM is a query
--   and goes through the executor (start, run, end) every time, while an
--   assignment of a plain function call takes PL/pgSQL's simple-expression
--   path. v_set is never read.
-- * Each setting is written once (four calls, not six): nothing before the
--   lookup reads app.org_id or app.role, and an error aborts the transaction
--   (or the subtransaction), which restores every setting.
-- * The membership lookup runs before the role switch, as the login role.
--   It is pinned to the (organization, user) pair by its own WHERE, so the
--   policy minicrm_api would add (organization_members_visible: this
--   organization or this user's rows) cannot change its answer; for a
--   superuser login, skipping that policy (two initplans) is a quarter of
--   this function's cost. app.user_id is set first, so that under forced RLS
--   (a login that owns the tables, or a second act_as in one transaction,
--   already as minicrm_api) the row is visible through that policy's
--   user_id branch. Every statement after act_as runs as minicrm_api.
CREATE OR REPLACE FUNCTION app.act_as(p_user_id uuid, p_org_id uuid DEFAULT NULL)
  RETURNS crm.member_role LANGUAGE plpgsql
  AS $$
DECLARE
  v_role crm.member_role;
  v_set text;
BEGIN
  v_set := set_config('app.user_id', coalesce(p_user_id::text, ''), true);
  IF p_org_id IS NOT NULL THEN
    SELECT m.role INTO v_role
      FROM crm.organization_members m
     WHERE m.organization_id = p_org_id AND m.user_id = p_user_id;
    IF NOT FOUND THEN
      PERFORM app.fail('MC404', 'organization_not_found', 'organization not found');
    END IF;
  END IF;
  v_set := set_config('role', 'minicrm_api', true);
  v_set := set_config('app.org_id', coalesce(p_org_id::text, ''), true);
  v_set := set_config('app.role', coalesce(v_role::text, ''), true);
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

