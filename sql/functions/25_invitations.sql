-- Invitations (SPEC §16). Adding a member creates an invitation; only the
-- person with the invited address (app.email_key) makes it a membership, by
-- accepting. The rules live in the trigger below, so a DBA working under a
-- context meets them too:
--   * inviting is "add members" (owner/admin; granting owner needs owner);
--   * a current member cannot be invited (409 already_member); nothing else
--     about the address is looked at, so the answer is the same whether or
--     not it belongs to a registered user;
--   * inviting an address again replaces its pending invitation (revoked);
--   * at most 50 invitations per organization per rolling hour (429);
--   * only a pending, unexpired invitation can be accepted or declined, only
--     by its invitee; only a pending one revoked, only by owner/admin (410
--     invitation_gone otherwise).
-- The invitee is not a member, so their side (list, accept, decline) goes
-- through SECURITY DEFINER helpers in `private`.

-- The acting user's address as invitations key it (null without a user).
CREATE OR REPLACE FUNCTION app.user_email_key() RETURNS text
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT app.email_key(u.email) FROM crm.users u WHERE u.id = app.user_id() $$;

CREATE OR REPLACE FUNCTION private.invitations_guard() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_actor crm.member_role := app.role();
  v_oldest timestamptz;
  v_recent int;
BEGIN
  IF TG_OP = 'INSERT' THEN
    -- Serialize invitations per organization (as organization_members_guard
    -- does for memberships): the rate limit counts exactly, and two
    -- concurrent invitations of one address cannot both replace the old one.
    PERFORM 1 FROM crm.organizations o WHERE o.id = NEW.organization_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
      PERFORM app.fail('MC404', 'organization_not_found', 'organization not found');
    END IF;
    IF v_actor IS NOT NULL THEN
      PERFORM app.require_admin();
      IF NEW.role = 'owner' AND v_actor <> 'owner' THEN
        PERFORM app.fail('MC403', 'owner_required', 'only an owner may grant, change or remove the owner role');
      END IF;
      -- What the request says, not what it claims.
      NEW.invited_by := app.user_id();
      NEW.created_at := now();
      SELECT count(*)::int, min(i.created_at) INTO v_recent, v_oldest
        FROM crm.invitations i
       WHERE i.organization_id = NEW.organization_id AND i.created_at > now() - interval '1 hour';
      IF v_recent >= 50 THEN
        RAISE EXCEPTION USING ERRCODE = 'MC429', CONSTRAINT = 'rate_limited',
          MESSAGE = 'at most 50 invitations per organization per hour; try again later',
          HINT = 'retry_after=' || greatest(1, ceil(extract(epoch FROM v_oldest + interval '1 hour' - now())))::bigint;
      END IF;
    END IF;
    NEW.email := app.trim_space(NEW.email);
    NEW.email_key := app.email_key(NEW.email);
    IF EXISTS (SELECT 1 FROM crm.organization_members m JOIN crm.users u ON u.id = m.user_id
                WHERE m.organization_id = NEW.organization_id AND app.email_key(u.email) = NEW.email_key) THEN
      PERFORM app.fail('MC409', 'already_member', 'this address belongs to a member of the organization already', 'email');
    END IF;
    -- The new invitation replaces a pending one (expired or not) for the same address.
    UPDATE crm.invitations i SET status = 'revoked'
     WHERE i.organization_id = NEW.organization_id AND i.email_key = NEW.email_key AND i.status = 'pending';
    RETURN NEW;
  END IF;

  -- UPDATE: what was offered never changes; only the outcome, once.
  IF (NEW.organization_id, NEW.id, NEW.email, NEW.email_key, NEW.role, NEW.invited_by, NEW.created_at)
     IS DISTINCT FROM (OLD.organization_id, OLD.id, OLD.email, OLD.email_key, OLD.role, OLD.invited_by, OLD.created_at) THEN
    PERFORM app.fail('MC400', 'invitation_immutable', 'an invitation''s organization, address, role and author cannot change');
  END IF;
  IF NEW.status = OLD.status THEN
    RETURN NEW;
  END IF;
  IF OLD.status <> 'pending' OR NEW.status = 'pending' THEN
    PERFORM app.fail('MC410', 'invitation_gone', 'this invitation was already accepted, declined or revoked');
  END IF;
  IF NEW.status = 'revoked' THEN
    IF app.user_id() IS NOT NULL THEN
      IF v_actor IS NULL THEN
        -- The invitee (who acts in no organization) declines; they do not revoke.
        PERFORM app.fail('MC403', 'role_forbidden', 'only an owner or admin of the organization may revoke an invitation');
      END IF;
      PERFORM app.require_admin();
      IF OLD.role = 'owner' AND v_actor <> 'owner' THEN
        PERFORM app.fail('MC403', 'owner_required', 'only an owner may grant, change or remove the owner role');
      END IF;
    END IF;
  ELSE
    -- accepted, declined: by the invitee only, and only in time.
    IF app.user_id() IS NOT NULL AND app.user_email_key() IS DISTINCT FROM OLD.email_key THEN
      PERFORM app.fail('MC404', 'invitation_not_found', 'no such invitation for you');
    END IF;
    IF OLD.expires_at <= now() THEN
      PERFORM app.fail('MC410', 'invitation_gone', 'this invitation has expired');
    END IF;
  END IF;
  NEW.decided_at := now();
  NEW.decided_by := app.user_id();
  RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS invitations_guard ON crm.invitations;
CREATE TRIGGER invitations_guard BEFORE INSERT OR UPDATE ON crm.invitations
  FOR EACH ROW EXECUTE FUNCTION private.invitations_guard();

-- Shapes ----------------------------------------------------------------------

-- As the organization sees it. `status` is `expired` for a pending invitation
-- past its expires_at.
CREATE OR REPLACE FUNCTION app.invitation_json(i crm.invitations) RETURNS jsonb
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT jsonb_build_object('id', i.id, 'email', i.email, 'role', i.role,
                                  'status', CASE WHEN i.status = 'pending' AND i.expires_at <= now() THEN 'expired'
                                                 ELSE i.status::text END,
                                  'expires_at', app.ts(i.expires_at), 'created_at', app.ts(i.created_at),
                                  'invited_by', i.invited_by) $$;

-- The invitee's side (SECURITY DEFINER: the invitee is no member) -------------

-- The acting user's pending, unexpired invitations, newest first, with the
-- organization's name and the inviter's.
CREATE OR REPLACE FUNCTION private.invitations_mine() RETURNS jsonb
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    SELECT jsonb_build_object('items', coalesce(jsonb_agg(jsonb_build_object(
             'id', i.id,
             'organization', jsonb_build_object('id', o.id, 'name', o.name),
             'role', i.role,
             'invited_by', CASE WHEN u.id IS NULL THEN NULL ELSE jsonb_build_object('name', u.name) END,
             'expires_at', app.ts(i.expires_at)) ORDER BY i.created_at DESC, i.id), '[]'::jsonb))
      FROM crm.invitations i
      JOIN crm.organizations o ON o.id = i.organization_id
      LEFT JOIN crm.users u ON u.id = i.invited_by
     WHERE i.email_key = app.user_email_key()
       AND i.status = 'pending' AND i.expires_at > now()
  $$;

-- Accepts (p_accept) or declines the acting user's invitation p_id. Someone
-- else's (or no) invitation: 404; no longer pending, or expired: 410.
-- Accepting inserts the membership with the invited role; the membership
-- guard sees no acting role then (the invitation, checked when it was made,
-- is the authority), and the context is put back afterwards. Returns the
-- membership (as members_list shows it), or null for a decline.
CREATE OR REPLACE FUNCTION private.invitation_answer(p_id uuid, p_accept boolean) RETURNS jsonb
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
DECLARE
  v_inv crm.invitations;
  v_member crm.organization_members;
  v_user crm.users;
  v_org text := current_setting('app.org_id', true);
  v_role text := current_setting('app.role', true);
BEGIN
  SELECT * INTO v_inv FROM crm.invitations i
   WHERE i.id = p_id AND i.email_key = app.user_email_key()
     FOR UPDATE;
  IF NOT FOUND THEN
    PERFORM app.fail('MC404', 'invitation_not_found', 'no such invitation for you');
  END IF;
  IF v_inv.status <> 'pending' THEN
    PERFORM app.fail('MC410', 'invitation_gone', 'this invitation was already accepted, declined or revoked');
  END IF;
  IF v_inv.expires_at <= now() THEN
    PERFORM app.fail('MC410', 'invitation_gone', 'this invitation has expired');
  END IF;
  IF NOT p_accept THEN
    UPDATE crm.invitations i SET status = 'declined'
     WHERE i.organization_id = v_inv.organization_id AND i.id = v_inv.id;
    RETURN NULL;
  END IF;

  PERFORM set_config('app.org_id', v_inv.organization_id::text, true);
  PERFORM set_config('app.role', '', true);
  IF EXISTS (SELECT 1 FROM crm.organization_members m
              WHERE m.organization_id = v_inv.organization_id AND m.user_id = app.user_id()) THEN
    PERFORM app.fail('MC409', 'already_member', 'you are a member of this organization already');
  END IF;
  INSERT INTO crm.organization_members (organization_id, user_id, role)
  VALUES (v_inv.organization_id, app.user_id(), v_inv.role)
  RETURNING * INTO v_member;
  UPDATE crm.invitations i SET status = 'accepted'
   WHERE i.organization_id = v_inv.organization_id AND i.id = v_inv.id;
  PERFORM set_config('app.org_id', coalesce(v_org, ''), true);
  PERFORM set_config('app.role', coalesce(v_role, ''), true);
  SELECT * INTO v_user FROM crm.users u WHERE u.id = v_member.user_id;
  RETURN app.member_json(v_member, v_user.email, v_user.name);
END
$$;

GRANT EXECUTE ON FUNCTION private.invitations_mine(), private.invitation_answer(uuid, boolean) TO minicrm_api;

-- The API surface ---------------------------------------------------------------

-- POST /organizations/{org_id}/members. p_ttl_secs: INVITATION_TTL_SECS.
CREATE OR REPLACE FUNCTION api.invitations_create(p_email text, p_role crm.member_role, p_ttl_secs integer) RETURNS jsonb
  LANGUAGE plpgsql
  AS $$
DECLARE
  v crm.invitations;
BEGIN
  IF p_ttl_secs IS NULL OR p_ttl_secs < 1 THEN
    PERFORM app.fail('MC400', 'invitation_ttl_invalid', 'the invitation lifetime must be at least one second');
  END IF;
  INSERT INTO crm.invitations (organization_id, email, role, expires_at)
  VALUES (app.org_id(), p_email, p_role, now() + make_interval(secs => p_ttl_secs))
  RETURNING * INTO v;
  RETURN app.invitation_json(v);
END
$$;

-- GET /organizations/{org_id}/invitations: every invitation, newest first
-- (owner/admin). p_page (offset pages) or the keyset p_after_created_at +
-- p_after_id (a cursor page), as every list (40_contacts.sql).
CREATE OR REPLACE FUNCTION api.invitations_list(p_page int, p_page_size int,
    p_after_created_at timestamptz DEFAULT NULL, p_after_id uuid DEFAULT NULL) RETURNS jsonb
  LANGUAGE plpgsql -- volatile: EXPLAIN (the estimate) is not allowed in a stable function
  AS $$
DECLARE
  v_items jsonb[];  -- the page's rows and the one after it (app.page_json)
  v_counted bigint;
  v_plan json;
BEGIN
  PERFORM app.require_admin();
  PERFORM app.check_paging(p_page, p_after_created_at IS NOT NULL, p_after_id);
  SELECT count(*) INTO v_counted FROM (SELECT 1 FROM crm.invitations i
   WHERE i.organization_id = (SELECT app.org_id()) LIMIT app.exact_count_limit() + 1) c;
  IF v_counted > app.exact_count_limit() THEN
    EXECUTE 'EXPLAIN (FORMAT JSON) SELECT 1 FROM crm.invitations i WHERE i.organization_id = (SELECT app.org_id())' INTO v_plan;
  END IF;
  SELECT array_agg(app.invitation_json(i) ORDER BY i.created_at DESC, i.id DESC) INTO v_items
    FROM (SELECT * FROM crm.invitations i
           WHERE i.organization_id = (SELECT app.org_id())
             AND (p_after_id IS NULL OR (i.created_at, i.id) < (p_after_created_at, p_after_id))
           ORDER BY i.created_at DESC, i.id DESC
           LIMIT p_page_size + 1 OFFSET (coalesce(p_page, 1) - 1)::bigint * p_page_size) i;
  RETURN app.page_json(v_items, p_page, p_page_size, app.list_total(v_counted, v_plan), 'created_at');
END
$$;

-- GET /organizations/{org_id}/invitations/{id} (owner/admin).
CREATE OR REPLACE FUNCTION api.invitations_get(p_id uuid) RETURNS jsonb
  LANGUAGE plpgsql STABLE
  AS $$
DECLARE
  v jsonb;
BEGIN
  PERFORM app.require_admin();
  SELECT app.invitation_json(i) INTO v FROM crm.invitations i
   WHERE i.organization_id = (SELECT app.org_id()) AND i.id = p_id;
  IF v IS NULL THEN
    PERFORM app.fail('MC404', 'invitation_not_found', 'no such invitation in this organization');
  END IF;
  RETURN v;
END
$$;

-- DELETE /organizations/{org_id}/invitations/{id} (owner/admin; an owner
-- invitation: owner). A pending one, expired or not, is revoked; one that was
-- already accepted, declined or revoked is 410.
CREATE OR REPLACE FUNCTION api.invitations_revoke(p_id uuid) RETURNS void
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_status crm.invitation_status;
BEGIN
  -- The role check comes first, so nobody below admin learns which ids exist.
  PERFORM app.require_admin();
  SELECT i.status INTO v_status FROM crm.invitations i
   WHERE i.organization_id = (SELECT app.org_id()) AND i.id = p_id
     FOR UPDATE;
  IF NOT FOUND THEN
    PERFORM app.fail('MC404', 'invitation_not_found', 'no such invitation in this organization');
  END IF;
  IF v_status <> 'pending' THEN
    PERFORM app.fail('MC410', 'invitation_gone', 'this invitation was already accepted, declined or revoked');
  END IF;
  UPDATE crm.invitations i SET status = 'revoked'
   WHERE i.organization_id = (SELECT app.org_id()) AND i.id = p_id;
END
$$;

-- GET /invitations: the caller's pending invitations.
CREATE OR REPLACE FUNCTION api.invitations_mine() RETURNS jsonb
  LANGUAGE sql STABLE
  AS $$ SELECT private.invitations_mine() $$;

-- POST /invitations/{id}/accept: the new membership.
CREATE OR REPLACE FUNCTION api.invitations_accept(p_id uuid) RETURNS jsonb
  LANGUAGE sql
  AS $$ SELECT private.invitation_answer(p_id, true) $$;

-- POST /invitations/{id}/decline.
CREATE OR REPLACE FUNCTION api.invitations_decline(p_id uuid) RETURNS void
  LANGUAGE sql
  AS $$ SELECT private.invitation_answer(p_id, false) $$;
