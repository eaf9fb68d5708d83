-- Contacts: list / create / get / update / delete. The rules are the triggers
-- in 30_pipeline_rules.sql; these functions shape requests and responses.

CREATE OR REPLACE FUNCTION app.contact_json(c crm.contacts) RETURNS jsonb
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$
    SELECT jsonb_build_object('id', c.id, 'organization_id', c.organization_id, 'owner_id', c.owner_id,
      'name', c.name, 'email', c.email, 'phone', c.phone,
      'created_at', app.ts(c.created_at), 'updated_at', app.ts(c.updated_at))
  $$;

-- The list envelope of SPEC §5 and §14. p_items holds up to p_page_size + 1
-- rows (the list reads one more than it shows): when the extra row is there,
-- it is dropped and next_after names the keyset of the last row shown (its
-- p_key field and its id). The server turns next_after into the signed,
-- opaque next_cursor (src/http/cursor.rs); a page reached through a cursor
-- has p_page null.
CREATE OR REPLACE FUNCTION app.page_json(p_items jsonb, p_page int, p_page_size int, p_total jsonb, p_key text)
  RETURNS jsonb LANGUAGE sql STABLE PARALLEL SAFE
  AS $$
    SELECT jsonb_build_object(
      'items', CASE WHEN s.more THEN s.items - p_page_size ELSE s.items END,
      'page', p_page, 'page_size', p_page_size,
      'total', p_total -> 'total', 'total_exact', p_total -> 'total_exact',
      'next_after', CASE WHEN s.more THEN jsonb_build_object(
        'key', s.items -> (p_page_size - 1) ->> p_key, 'id', s.items -> (p_page_size - 1) -> 'id') END)
      FROM (SELECT coalesce(p_items, '[]'::jsonb) AS items,
                   jsonb_array_length(coalesce(p_items, '[]'::jsonb)) > p_page_size AS more) s
  $$;

-- Totals of every list (SPEC §14): exact up to app.exact_count_limit()
-- matches; beyond, counting costs as much as reading them all, so the total
-- is the planner's estimate (p_plan: EXPLAIN (FORMAT JSON) of the list's
-- query without keyset or LIMIT), never less than the limit + 1, and
-- total_exact is false. p_counted is a count capped at the limit + 1.
CREATE OR REPLACE FUNCTION app.exact_count_limit() RETURNS int
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT 1000 $$;

CREATE OR REPLACE FUNCTION app.list_total(p_counted bigint, p_plan json) RETURNS jsonb
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$
    SELECT CASE WHEN p_counted <= app.exact_count_limit() OR p_plan IS NULL
                THEN jsonb_build_object('total', p_counted, 'total_exact', p_counted <= app.exact_count_limit())
                ELSE jsonb_build_object('total', greatest(p_counted, (p_plan -> 0 -> 'Plan' ->> 'Plan Rows')::numeric::bigint),
                                        'total_exact', false) END
  $$;

-- The paging arguments of every list: either an offset page (p_page, the
-- server bounds it) or a keyset (the sort key(s) of the last row seen and its
-- id, decoded by the server from a verified cursor), never both.
CREATE OR REPLACE FUNCTION app.check_paging(p_page int, p_has_key boolean, p_after_id uuid) RETURNS void
  LANGUAGE plpgsql STABLE
  AS $$
BEGIN
  IF p_has_key <> (p_after_id IS NOT NULL) THEN
    PERFORM app.fail('MC400', 'invalid_cursor', 'a keyset needs both the sort key and the id of the last row', 'cursor');
  END IF;
  IF p_after_id IS NOT NULL AND p_page IS NOT NULL THEN
    PERFORM app.fail('MC400', 'cursor_with_page', 'cursor and page cannot be used together', 'cursor');
  END IF;
END
$$;

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

-- Newest first. p_page (offset pages, default 1) or the keyset
-- p_after_created_at + p_after_id (the rows after that one: a cursor page).
CREATE OR REPLACE FUNCTION api.contacts_list(p_page int, p_page_size int, p_search text DEFAULT NULL, p_owner_id uuid DEFAULT NULL,
    p_after_created_at timestamptz DEFAULT NULL, p_after_id uuid DEFAULT NULL)
  RETURNS jsonb LANGUAGE plpgsql -- volatile: EXPLAIN (the estimate) is not allowed in a stable function
  AS $$
DECLARE
  v_pattern text := app.contains_pattern(p_search);
  v_where text := 'c.organization_id = (SELECT app.org_id())'
    || CASE WHEN p_owner_id IS NOT NULL THEN ' AND c.owner_id = $2' ELSE '' END
    || CASE WHEN v_pattern IS NOT NULL THEN ' AND (c.name ILIKE $1 OR c.email ILIKE $1)' ELSE '' END;
  v_counted bigint;
  v_plan json;
  v_items jsonb;
BEGIN
  PERFORM app.require_owner_filter(p_owner_id);
  PERFORM app.check_paging(p_page, p_after_created_at IS NOT NULL, p_after_id);
  EXECUTE 'SELECT count(*) FROM (SELECT 1 FROM crm.contacts c WHERE ' || v_where || ' LIMIT $3) c'
    INTO v_counted USING v_pattern, p_owner_id, app.exact_count_limit() + 1;
  IF v_counted > app.exact_count_limit() THEN
    EXECUTE 'EXPLAIN (FORMAT JSON) SELECT 1 FROM crm.contacts c WHERE ' || v_where INTO v_plan USING v_pattern, p_owner_id;
  END IF;
  EXECUTE 'SELECT jsonb_agg(app.contact_json(c) ORDER BY c.created_at DESC, c.id DESC)
             FROM (SELECT * FROM crm.contacts c WHERE ' || v_where
          || CASE WHEN p_after_id IS NOT NULL THEN ' AND (c.created_at, c.id) < ($3, $4)' ELSE '' END
          || ' ORDER BY c.created_at DESC, c.id DESC LIMIT $5 OFFSET $6) c'
    INTO v_items USING v_pattern, p_owner_id, p_after_created_at, p_after_id,
                       p_page_size + 1, (coalesce(p_page, 1) - 1)::bigint * p_page_size;
  RETURN app.page_json(v_items, p_page, p_page_size, app.list_total(v_counted, v_plan), 'created_at');
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
