-- Organizations and their members. The role table of SPEC §3 is enforced by
-- the triggers below, so a DBA working under a context meets the same rules.

CREATE OR REPLACE FUNCTION private.organizations_guard() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND NEW.id <> OLD.id THEN
    PERFORM app.fail('MC400', 'organization_id_immutable', 'an organization''s id cannot change', 'id');
  END IF;
  IF app.role() IS NOT NULL THEN
    IF TG_OP = 'DELETE' AND app.role() <> 'owner' THEN
      PERFORM app.fail('MC403', 'owner_required', 'only an owner may delete the organization');
    END IF;
    PERFORM app.require_admin();
  END IF;
  IF TG_OP = 'DELETE' THEN
    -- The tenant tables without a foreign key to organizations.
    DELETE FROM crm.deal_totals_delta WHERE organization_id = OLD.id;
    DELETE FROM crm.deal_created_days_delta WHERE organization_id = OLD.id;
  END IF;
  RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;

DROP TRIGGER IF EXISTS organizations_guard ON crm.organizations;
CREATE TRIGGER organizations_guard BEFORE UPDATE OR DELETE ON crm.organizations
  FOR EACH ROW EXECUTE FUNCTION private.organizations_guard();

CREATE OR REPLACE FUNCTION private.organization_members_guard() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_org uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.organization_id ELSE NEW.organization_id END;
  v_actor crm.member_role := app.role();
BEGIN
  -- Serialize membership changes per organization, so two concurrent
  -- demotions cannot both see "another owner remains". A missing row means the
  -- organization itself is being deleted and its members go with it.
  -- NO KEY UPDATE: it does not conflict with the key-share locks that
  -- concurrent inserts' foreign-key checks take on the organization row.
  PERFORM 1 FROM crm.organizations o WHERE o.id = v_org FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    IF TG_OP = 'DELETE' THEN
      RETURN OLD;
    END IF;
    PERFORM app.fail('MC404', 'organization_not_found', 'organization not found');
  END IF;

  IF TG_OP = 'UPDATE' AND (NEW.organization_id, NEW.user_id) IS DISTINCT FROM (OLD.organization_id, OLD.user_id) THEN
    PERFORM app.fail('MC400', 'member_immutable', 'a membership''s organization and user cannot change');
  END IF;

  IF v_actor IS NOT NULL AND NOT (TG_OP = 'DELETE' AND OLD.user_id = app.user_id()) THEN
    PERFORM app.require_admin();
    IF v_actor <> 'owner'
       AND ((TG_OP <> 'INSERT' AND OLD.role = 'owner') OR (TG_OP <> 'DELETE' AND NEW.role = 'owner')) THEN
      PERFORM app.fail('MC403', 'owner_required', 'only an owner may grant, change or remove the owner role');
    END IF;
  END IF;

  IF TG_OP <> 'INSERT' AND OLD.role = 'owner' AND (TG_OP = 'DELETE' OR NEW.role <> 'owner')
     AND NOT EXISTS (SELECT 1 FROM crm.organization_members m
                      WHERE m.organization_id = v_org AND m.role = 'owner' AND m.id <> OLD.id) THEN
    PERFORM app.fail('MC409', 'last_owner', 'the last owner of an organization cannot be removed or demoted');
  END IF;

  IF TG_OP = 'DELETE'
     AND (EXISTS (SELECT 1 FROM crm.contacts c WHERE c.organization_id = v_org AND c.owner_id = OLD.user_id)
       OR EXISTS (SELECT 1 FROM crm.deals d WHERE d.organization_id = v_org AND d.owner_id = OLD.user_id)) THEN
    PERFORM app.fail('MC409', 'member_owns_records',
      'the member still owns contacts or deals; name another member in reassign_to to receive them');
  END IF;

  RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;

DROP TRIGGER IF EXISTS organization_members_guard ON crm.organization_members;
CREATE TRIGGER organization_members_guard BEFORE INSERT OR UPDATE OR DELETE ON crm.organization_members
  FOR EACH ROW EXECUTE FUNCTION private.organization_members_guard();

-- Organizations --------------------------------------------------------------

CREATE OR REPLACE FUNCTION api.organizations_mine() RETURNS jsonb
  LANGUAGE sql STABLE
  AS $$
    SELECT jsonb_build_object('items', coalesce(jsonb_agg(app.organization_json(o, m.role) ORDER BY o.created_at, o.id), '[]'))
      FROM crm.organization_members m
      JOIN crm.organizations o ON o.id = m.organization_id
     WHERE m.user_id = app.user_id()
  $$;

-- The new organization becomes the transaction's context, with the caller as owner.
CREATE OR REPLACE FUNCTION api.organizations_create(p_name text) RETURNS jsonb
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_org crm.organizations;
BEGIN
  IF app.user_id() IS NULL THEN
    PERFORM app.fail('MC401', 'unauthenticated', 'no acting user');
  END IF;
  PERFORM set_config('app.org_id', gen_random_uuid()::text, true);
  PERFORM set_config('app.role', 'owner', true);
  INSERT INTO crm.organizations (id, name) VALUES (app.org_id(), app.trim_space(p_name)) RETURNING * INTO v_org;
  INSERT INTO crm.organization_members (organization_id, user_id, role) VALUES (v_org.id, app.user_id(), 'owner');
  RETURN app.organization_json(v_org, 'owner');
END
$$;

CREATE OR REPLACE FUNCTION api.organizations_get() RETURNS jsonb
  LANGUAGE sql STABLE
  AS $$ SELECT app.organization_json(o, app.role()) FROM crm.organizations o WHERE o.id = (SELECT app.org_id()) $$;

CREATE OR REPLACE FUNCTION api.organizations_rename(p_name text) RETURNS jsonb
  LANGUAGE sql
  AS $$
    UPDATE crm.organizations o SET name = app.trim_space(p_name) WHERE o.id = (SELECT app.org_id())
    RETURNING app.organization_json(o, app.role())
  $$;

CREATE OR REPLACE FUNCTION api.organizations_delete() RETURNS void
  LANGUAGE sql
  AS $$ DELETE FROM crm.organizations WHERE id = (SELECT app.org_id()) $$;

-- Members --------------------------------------------------------------------

CREATE OR REPLACE FUNCTION app.member_json(m crm.organization_members, u_email text, u_name text) RETURNS jsonb
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT jsonb_build_object('user_id', m.user_id, 'email', u_email, 'name', u_name,
                                  'role', m.role, 'created_at', app.ts(m.created_at)) $$;

CREATE OR REPLACE FUNCTION api.members_list() RETURNS jsonb
  LANGUAGE sql STABLE
  AS $$
    SELECT jsonb_build_object('items', coalesce(jsonb_agg(app.member_json(m, u.email, u.name) ORDER BY m.created_at, m.user_id), '[]'))
      FROM crm.organization_members m
      JOIN crm.users u ON u.id = m.user_id
     WHERE m.organization_id = (SELECT app.org_id())
  $$;

-- Adding a member is an invitation: api.invitations_create (25_invitations.sql).

CREATE OR REPLACE FUNCTION api.members_set_role(p_user_id uuid, p_role crm.member_role) RETURNS jsonb
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_member crm.organization_members;
BEGIN
  UPDATE crm.organization_members m SET role = p_role
   WHERE m.organization_id = (SELECT app.org_id()) AND m.user_id = p_user_id
  RETURNING * INTO v_member;
  IF NOT FOUND THEN
    PERFORM app.fail('MC404', 'member_not_found', 'no such member in this organization');
  END IF;
  RETURN (SELECT app.member_json(v_member, u.email, u.name) FROM crm.users u WHERE u.id = p_user_id);
END
$$;

-- Removing a member hands their contacts and deals (and so the deals' tasks)
-- to p_reassign_to; without it, a member who owns records stays (409).
CREATE OR REPLACE FUNCTION api.members_remove(p_user_id uuid, p_reassign_to uuid DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql
  AS $$
BEGIN
  -- Lock the membership first: records the member creates meanwhile wait
  -- (their owner foreign key) and then fail, instead of appearing between the
  -- reassignment and the delete.
  PERFORM 1 FROM crm.organization_members m
   WHERE m.organization_id = (SELECT app.org_id()) AND m.user_id = p_user_id
     FOR UPDATE;
  IF NOT FOUND THEN
    PERFORM app.fail('MC404', 'member_not_found', 'no such member in this organization');
  END IF;
  IF p_reassign_to IS NOT NULL THEN
    IF p_reassign_to = p_user_id THEN
      PERFORM app.fail('MC400', 'reassign_to_invalid', 'reassign_to must name another member', 'reassign_to');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM crm.organization_members m
                    WHERE m.organization_id = (SELECT app.org_id()) AND m.user_id = p_reassign_to) THEN
      PERFORM app.fail('MC404', 'reassign_to_not_found', 'reassign_to is not a member of this organization', 'reassign_to');
    END IF;
    -- The role check comes first, so nothing is reassigned by someone who may not remove.
    IF p_user_id <> app.user_id() THEN
      PERFORM app.require_admin();
    END IF;
    UPDATE crm.contacts SET owner_id = p_reassign_to WHERE organization_id = (SELECT app.org_id()) AND owner_id = p_user_id;
    UPDATE crm.deals SET owner_id = p_reassign_to WHERE organization_id = (SELECT app.org_id()) AND owner_id = p_user_id;
  END IF;
  DELETE FROM crm.organization_members m WHERE m.organization_id = (SELECT app.org_id()) AND m.user_id = p_user_id;
END
$$;
