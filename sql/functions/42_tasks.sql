-- Tasks: list / create / get / update / delete.

CREATE OR REPLACE FUNCTION app.task_json(t crm.tasks) RETURNS jsonb
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$
    SELECT jsonb_build_object('id', t.id, 'organization_id', t.organization_id, 'deal_id', t.deal_id,
      'title', t.title, 'description', t.description, 'due_date', to_char(t.due_date, 'YYYY-MM-DD'),
      'is_done', t.is_done, 'created_at', app.ts(t.created_at), 'updated_at', app.ts(t.updated_at))
  $$;

-- Soonest due first; due_before and due_after are inclusive.
CREATE OR REPLACE FUNCTION api.tasks_list(p_page int, p_page_size int, p_deal_id uuid DEFAULT NULL,
    p_only_open boolean DEFAULT false, p_due_before date DEFAULT NULL, p_due_after date DEFAULT NULL)
  RETURNS jsonb LANGUAGE plpgsql STABLE
  AS $$
DECLARE
  v_total bigint;
  v_items jsonb;
BEGIN
  SELECT count(*) INTO v_total
    FROM crm.tasks t
   WHERE t.organization_id = (SELECT app.org_id())
     AND (p_deal_id IS NULL OR t.deal_id = p_deal_id)
     AND (NOT coalesce(p_only_open, false) OR NOT t.is_done)
     AND (p_due_before IS NULL OR t.due_date <= p_due_before)
     AND (p_due_after IS NULL OR t.due_date >= p_due_after);
  SELECT jsonb_agg(app.task_json(t) ORDER BY t.due_date, t.id) INTO v_items
    FROM (SELECT * FROM crm.tasks t
           WHERE t.organization_id = (SELECT app.org_id())
             AND (p_deal_id IS NULL OR t.deal_id = p_deal_id)
             AND (NOT coalesce(p_only_open, false) OR NOT t.is_done)
             AND (p_due_before IS NULL OR t.due_date <= p_due_before)
             AND (p_due_after IS NULL OR t.due_date >= p_due_after)
           ORDER BY t.due_date, t.id
           LIMIT p_page_size OFFSET (p_page - 1)::bigint * p_page_size) t;
  RETURN app.page_json(v_items, p_page, p_page_size, v_total);
END
$$;

CREATE OR REPLACE FUNCTION api.tasks_create(p_deal_id uuid, p_title text, p_description text, p_due_date date)
  RETURNS jsonb LANGUAGE sql
  AS $$
    INSERT INTO crm.tasks (organization_id, deal_id, title, description, due_date)
    VALUES (app.org_id(), p_deal_id, app.trim_space(p_title), p_description, p_due_date)
    RETURNING app.task_json(tasks)
  $$;

CREATE OR REPLACE FUNCTION api.tasks_get(p_id uuid) RETURNS jsonb
  LANGUAGE plpgsql STABLE
  AS $$
DECLARE
  v jsonb;
BEGIN
  SELECT app.task_json(t) INTO v FROM crm.tasks t WHERE t.organization_id = (SELECT app.org_id()) AND t.id = p_id;
  IF v IS NULL THEN
    PERFORM app.not_found('task');
  END IF;
  RETURN v;
END
$$;

-- Partial update: p_fields names the fields present (description may be set to null).
CREATE OR REPLACE FUNCTION api.tasks_update(p_id uuid, p_fields text[], p_title text, p_description text,
    p_due_date date, p_is_done boolean)
  RETURNS jsonb LANGUAGE plpgsql
  AS $$
DECLARE
  v jsonb;
BEGIN
  UPDATE crm.tasks t SET
    title       = CASE WHEN 'title' = ANY (p_fields) THEN app.trim_space(p_title) ELSE t.title END,
    description = CASE WHEN 'description' = ANY (p_fields) THEN p_description ELSE t.description END,
    due_date    = CASE WHEN 'due_date' = ANY (p_fields) THEN p_due_date ELSE t.due_date END,
    is_done     = CASE WHEN 'is_done' = ANY (p_fields) THEN p_is_done ELSE t.is_done END
   WHERE t.organization_id = (SELECT app.org_id()) AND t.id = p_id
  RETURNING app.task_json(t) INTO v;
  IF v IS NULL THEN
    PERFORM app.not_found('task');
  END IF;
  RETURN v;
END
$$;

CREATE OR REPLACE FUNCTION api.tasks_delete(p_id uuid) RETURNS void
  LANGUAGE plpgsql
  AS $$
BEGIN
  DELETE FROM crm.tasks t WHERE t.organization_id = (SELECT app.org_id()) AND t.id = p_id;
  IF NOT FOUND THEN
    PERFORM app.not_found('task');
  END IF;
END
$$;
