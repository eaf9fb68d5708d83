-- A deal's timeline: newest first; only comments can be added (R9, enforced
-- by the activities_rules trigger).

CREATE OR REPLACE FUNCTION app.activity_json(a crm.activities) RETURNS jsonb
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$
    SELECT jsonb_build_object('id', a.id, 'organization_id', a.organization_id, 'deal_id', a.deal_id,
      'author_id', a.author_id, 'type', a.type, 'payload', a.payload, 'created_at', app.ts(a.created_at))
  $$;

CREATE OR REPLACE FUNCTION api.activities_list(p_deal_id uuid, p_page int, p_page_size int)
  RETURNS jsonb LANGUAGE plpgsql STABLE
  AS $$
DECLARE
  v_total bigint;
  v_items jsonb;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM crm.deals d WHERE d.organization_id = (SELECT app.org_id()) AND d.id = p_deal_id) THEN
    PERFORM app.not_found('deal');
  END IF;
  SELECT count(*) INTO v_total FROM crm.activities a
   WHERE a.organization_id = (SELECT app.org_id()) AND a.deal_id = p_deal_id;
  SELECT jsonb_agg(app.activity_json(a) ORDER BY a.created_at DESC, a.id DESC) INTO v_items
    FROM (SELECT * FROM crm.activities a
           WHERE a.organization_id = (SELECT app.org_id()) AND a.deal_id = p_deal_id
           ORDER BY a.created_at DESC, a.id DESC
           LIMIT p_page_size OFFSET (p_page - 1)::bigint * p_page_size) a;
  RETURN app.page_json(v_items, p_page, p_page_size, v_total);
END
$$;

CREATE OR REPLACE FUNCTION api.activities_create(p_deal_id uuid, p_type crm.activity_type, p_payload jsonb)
  RETURNS jsonb LANGUAGE sql
  AS $$
    INSERT INTO crm.activities (organization_id, deal_id, author_id, type, payload)
    VALUES (app.org_id(), p_deal_id, app.user_id(), p_type, p_payload)
    RETURNING app.activity_json(activities)
  $$;
