-- Helpers of the fixed-cost breakdown (bench/run.py, "The fixed cost of a
-- request"), created in the benchmark database only, in a schema of their
-- own: never part of the product. Each takes one piece out of, or puts one
-- piece back into, the function path, so that a piece's cost is the
-- difference of two measured variants.
CREATE SCHEMA IF NOT EXISTS bench;

-- app.act_as as it was before issue #10 item 7: PERFORM for every setting
-- (each one an executor run), six set_config calls, and the membership
-- lookup after the role switch, under the request role's RLS policy.
CREATE OR REPLACE FUNCTION bench.act_as_before(p_user_id uuid, p_org_id uuid DEFAULT NULL)
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

-- Today's app.act_as without the role switch. NOT a valid way to serve a
-- request (the login role stays, and for a superuser RLS is off): it exists
-- to measure what the switch and the RLS it brings cost.
CREATE OR REPLACE FUNCTION bench.act_as_no_switch(p_user_id uuid, p_org_id uuid DEFAULT NULL)
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
  v_set := set_config('app.org_id', coalesce(p_org_id::text, ''), true);
  v_set := set_config('app.role', coalesce(v_role::text, ''), true);
  RETURN v_role;
END
$$;

-- The same without the membership lookup either: the settings alone.
CREATE OR REPLACE FUNCTION bench.act_as_settings_only(p_user_id uuid, p_org_id uuid DEFAULT NULL)
  RETURNS crm.member_role LANGUAGE plpgsql
  AS $$
DECLARE
  v_set text;
BEGIN
  v_set := set_config('app.user_id', coalesce(p_user_id::text, ''), true);
  v_set := set_config('app.org_id', coalesce(p_org_id::text, ''), true);
  v_set := set_config('app.role', 'owner', true);
  RETURN 'owner';
END
$$;
