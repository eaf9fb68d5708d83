-- A deal's timeline: newest first; only comments can be added (R9, enforced
-- by the activities_rules trigger).

CREATE OR REPLACE FUNCTION app.activity_json(a crm.activities) RETURNS jsonb
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$
    SELECT jsonb_build_object('id', a.id, 'organization_id', a.organization_id, 'deal_id', a.deal_id,
      'author_id', a.author_id, 'type', a.type, 'payload', a.payload, 'created_at', app.ts(a.created_at))
  $$;

-- Newest first. p_page (offset pages) or the keyset p_after_created_at +
-- p_after_id (a cursor page).
CREATE OR REPLACE FUNCTION api.activities_list(p_deal_id uuid, p_page int, p_page_size int,
    p_after_created_at timestamptz DEFAULT NULL, p_after_id uuid DEFAULT NULL)
  RETURNS jsonb LANGUAGE plpgsql -- volatile: EXPLAIN (the estimate) is not allowed in a stable function
  AS $$
DECLARE
  v_counted bigint;
  v_plan json;
  v_items jsonb[];  -- the page's rows and the one after it (app.page_json)
BEGIN
  IF NOT EXISTS (SELECT 1 FROM crm.deals d
                  WHERE d.organization_id = (SELECT app.org_id()) AND d.id = p_deal_id AND d.deleted_at IS NULL) THEN
    PERFORM app.not_found('deal');
  END IF;
  PERFORM app.check_paging(p_page, p_after_created_at IS NOT NULL, p_after_id);
  SELECT count(*) INTO v_counted FROM (SELECT 1 FROM crm.activities a
   WHERE a.organization_id = (SELECT app.org_id()) AND a.deal_id = p_deal_id LIMIT app.exact_count_limit() + 1) c;
  IF v_counted > app.exact_count_limit() THEN
    EXECUTE 'EXPLAIN (FORMAT JSON) SELECT 1 FROM crm.activities a WHERE a.organization_id = (SELECT app.org_id()) AND a.deal_id = $1'
      INTO v_plan USING p_deal_id;
  END IF;
  IF p_after_id IS NULL THEN
    SELECT array_agg(app.activity_json(a) ORDER BY a.created_at DESC, a.id DESC) INTO v_items
      FROM (SELECT * FROM crm.activities a
             WHERE a.organization_id = (SELECT app.org_id()) AND a.deal_id = p_deal_id
             ORDER BY a.created_at DESC, a.id DESC
             LIMIT p_page_size + 1 OFFSET (coalesce(p_page, 1) - 1)::bigint * p_page_size) a;
  ELSE
    SELECT array_agg(app.activity_json(a) ORDER BY a.created_at DESC, a.id DESC) INTO v_items
      FROM (SELECT * FROM crm.activities a
             WHERE a.organization_id = (SELECT app.org_id()) AND a.deal_id = p_deal_id
               AND (a.created_at, a.id) < (p_after_created_at, p_after_id)
             ORDER BY a.created_at DESC, a.id DESC
             LIMIT p_page_size + 1) a;
  END IF;
  RETURN app.page_json(v_items, p_page, p_page_size, app.list_total(v_counted, v_plan), 'created_at');
END
$$;

CREATE OR REPLACE FUNCTION api.activities_create(p_deal_id uuid, p_type crm.activity_type, p_payload jsonb)
  RETURNS jsonb LANGUAGE plpgsql -- not sql: a session keeps the INSERT's plan (api.contacts_create says why)
  AS $$
DECLARE
  v jsonb;
BEGIN
  INSERT INTO crm.activities (organization_id, deal_id, author_id, type, payload)
  VALUES (app.org_id(), p_deal_id, app.user_id(), p_type, p_payload)
  RETURNING app.activity_json(activities) INTO v;
  RETURN v;
END
$$;
