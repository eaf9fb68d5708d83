-- Contacts: list / create / get / update / delete. The rules are the triggers
-- in 30_pipeline_rules.sql; these functions shape requests and responses.

CREATE OR REPLACE FUNCTION app.contact_json(c crm.contacts) RETURNS jsonb
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$
    SELECT jsonb_build_object('id', c.id, 'organization_id', c.organization_id, 'owner_id', c.owner_id,
      'name', c.name, 'email', c.email, 'phone', c.phone,
      'created_at', app.ts(c.created_at), 'updated_at', app.ts(c.updated_at))
  $$;

-- The list envelope of SPEC §5, plus total_exact (false when total is the
-- planner's estimate of a very large result, see api.deals_list).
CREATE OR REPLACE FUNCTION app.page_json(p_items jsonb, p_page int, p_page_size int, p_total bigint, p_exact boolean DEFAULT true)
  RETURNS jsonb LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT jsonb_build_object('items', coalesce(p_items, '[]'::jsonb), 'page', p_page, 'page_size', p_page_size,
                                  'total', p_total, 'total_exact', p_exact) $$;

-- A LIKE pattern that matches p_text literally anywhere.
CREATE OR REPLACE FUNCTION app.contains_pattern(p_text text) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT '%' || replace(replace(replace(p_text, '\', '\\'), '%', '\%'), '_', '\_') || '%' $$;

-- Filtering by another member's records is for managers and up.
CREATE OR REPLACE FUNCTION app.require_owner_filter(p_owner_id uuid) RETURNS void
  LANGUAGE plpgsql STABLE
  AS $$
BEGIN
  IF p_owner_id IS NOT NULL AND app.role() = 'member' AND p_owner_id <> app.user_id() THEN
    PERFORM app.fail('MC403', 'role_forbidden', 'members may only filter by their own owner_id', 'owner_id');
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION app.not_found(p_what text) RETURNS void
  LANGUAGE sql
  AS $$ SELECT app.fail('MC404', p_what || '_not_found', p_what || ' not found') $$;

CREATE OR REPLACE FUNCTION api.contacts_list(p_page int, p_page_size int, p_search text DEFAULT NULL, p_owner_id uuid DEFAULT NULL)
  RETURNS jsonb LANGUAGE plpgsql STABLE
  AS $$
DECLARE
  v_pattern text := app.contains_pattern(p_search);
  v_total bigint;
  v_items jsonb;
BEGIN
  PERFORM app.require_owner_filter(p_owner_id);
  SELECT count(*) INTO v_total
    FROM crm.contacts c
   WHERE c.organization_id = (SELECT app.org_id())
     AND (p_owner_id IS NULL OR c.owner_id = p_owner_id)
     AND (v_pattern IS NULL OR c.name ILIKE v_pattern OR c.email ILIKE v_pattern);
  SELECT jsonb_agg(app.contact_json(c) ORDER BY c.created_at DESC, c.id DESC) INTO v_items
    FROM (SELECT * FROM crm.contacts c
           WHERE c.organization_id = (SELECT app.org_id())
             AND (p_owner_id IS NULL OR c.owner_id = p_owner_id)
             AND (v_pattern IS NULL OR c.name ILIKE v_pattern OR c.email ILIKE v_pattern)
           ORDER BY c.created_at DESC, c.id DESC
           LIMIT p_page_size OFFSET (p_page - 1)::bigint * p_page_size) c;
  RETURN app.page_json(v_items, p_page, p_page_size, v_total);
END
$$;

CREATE OR REPLACE FUNCTION api.contacts_create(p_name text, p_email text DEFAULT NULL, p_phone text DEFAULT NULL, p_owner_id uuid DEFAULT NULL)
  RETURNS jsonb LANGUAGE sql
  AS $$
    INSERT INTO crm.contacts (organization_id, owner_id, name, email, phone)
    VALUES (app.org_id(), coalesce(p_owner_id, app.user_id()), app.trim_space(p_name), app.trim_space(p_email), app.trim_space(p_phone))
    RETURNING app.contact_json(contacts)
  $$;

CREATE OR REPLACE FUNCTION api.contacts_get(p_id uuid) RETURNS jsonb
  LANGUAGE plpgsql STABLE
  AS $$
DECLARE
  v jsonb;
BEGIN
  SELECT app.contact_json(c) INTO v FROM crm.contacts c WHERE c.organization_id = (SELECT app.org_id()) AND c.id = p_id;
  IF v IS NULL THEN
    PERFORM app.not_found('contact');
  END IF;
  RETURN v;
END
$$;

-- Partial update: p_fields names the fields present in the request; the
-- others keep their values (so email and phone can be set to null).
CREATE OR REPLACE FUNCTION api.contacts_update(p_id uuid, p_fields text[], p_name text, p_email text, p_phone text, p_owner_id uuid)
  RETURNS jsonb LANGUAGE plpgsql
  AS $$
DECLARE
  v jsonb;
BEGIN
  UPDATE crm.contacts c SET
    name     = CASE WHEN 'name' = ANY (p_fields) THEN app.trim_space(p_name) ELSE c.name END,
    email    = CASE WHEN 'email' = ANY (p_fields) THEN app.trim_space(p_email) ELSE c.email END,
    phone    = CASE WHEN 'phone' = ANY (p_fields) THEN app.trim_space(p_phone) ELSE c.phone END,
    owner_id = CASE WHEN 'owner_id' = ANY (p_fields) THEN p_owner_id ELSE c.owner_id END
   WHERE c.organization_id = (SELECT app.org_id()) AND c.id = p_id
  RETURNING app.contact_json(c) INTO v;
  IF v IS NULL THEN
    PERFORM app.not_found('contact');
  END IF;
  RETURN v;
END
$$;

CREATE OR REPLACE FUNCTION api.contacts_delete(p_id uuid) RETURNS void
  LANGUAGE plpgsql
  AS $$
BEGIN
  DELETE FROM crm.contacts c WHERE c.organization_id = (SELECT app.org_id()) AND c.id = p_id;
  IF NOT FOUND THEN
    PERFORM app.not_found('contact');
  END IF;
END
$$;
