-- Tasks: list / create / get / update / delete.

CREATE OR REPLACE FUNCTION app.task_json(t crm.tasks) RETURNS jsonb
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$
    SELECT jsonb_build_object('id', t.id, 'organization_id', t.organization_id, 'deal_id', t.deal_id,
      'title', t.title, 'description', t.description, 'due_date', to_char(t.due_date, 'YYYY-MM-DD'),
      'is_done', t.is_done, 'created_at', app.ts(t.created_at), 'updated_at', app.ts(t.updated_at),
      'version', t.version)
  $$;

-- Soonest due first; due_before and due_after are inclusive. p_page (offset
-- pages) or the keyset p_after_due_date + p_after_id (a cursor page).
CREATE OR REPLACE FUNCTION api.tasks_list(p_page int, p_page_size int, p_deal_id uuid DEFAULT NULL,
    p_only_open boolean DEFAULT false, p_due_before date DEFAULT NULL, p_due_after date DEFAULT NULL,
    p_after_due_date date DEFAULT NULL, p_after_id uuid DEFAULT NULL)
  RETURNS jsonb LANGUAGE plpgsql -- volatile: EXPLAIN (the estimate) is not allowed in a stable function
  AS $$
DECLARE
  v_where text := 't.organization_id = (SELECT app.org_id()) AND t.deleted_at IS NULL'
    || CASE WHEN p_deal_id IS NOT NULL THEN ' AND t.deal_id = $1' ELSE '' END
    || CASE WHEN coalesce(p_only_open, false) THEN ' AND NOT t.is_done' ELSE '' END
    || CASE WHEN p_due_before IS NOT NULL THEN ' AND t.due_date <= $2' ELSE '' END
    || CASE WHEN p_due_after IS NOT NULL THEN ' AND t.due_date >= $3' ELSE '' END;
  v_counted bigint;
  v_plan json;
  v_items jsonb[];  -- the page's rows and the one after it (app.page_json)
BEGIN
  PERFORM app.check_paging(p_page, p_after_due_date IS NOT NULL, p_after_id);
  EXECUTE 'SELECT count(*) FROM (SELECT 1 FROM crm.tasks t WHERE ' || v_where || ' LIMIT $4) c'
    INTO v_counted USING p_deal_id, p_due_before, p_due_after, app.exact_count_limit() + 1;
  IF v_counted > app.exact_count_limit() THEN
    EXECUTE 'EXPLAIN (FORMAT JSON) SELECT 1 FROM crm.tasks t WHERE ' || v_where INTO v_plan USING p_deal_id, p_due_before, p_due_after;
  END IF;
  EXECUTE 'SELECT array_agg(app.task_json(t) ORDER BY t.due_date, t.id)
             FROM (SELECT * FROM crm.tasks t WHERE ' || v_where
          || CASE WHEN p_after_id IS NOT NULL THEN ' AND (t.due_date, t.id) > ($4, $5)' ELSE '' END
          || ' ORDER BY t.due_date, t.id LIMIT $6 OFFSET $7) t'
    INTO v_items USING p_deal_id, p_due_before, p_due_after, p_after_due_date, p_after_id,
                       p_page_size + 1, (coalesce(p_page, 1) - 1)::bigint * p_page_size;
  RETURN app.page_json(v_items, p_page, p_page_size, app.list_total(v_counted, v_plan), 'due_date');
END
$$;

CREATE OR REPLACE FUNCTION api.tasks_create(p_deal_id uuid, p_title text, p_description text, p_due_date date)
  RETURNS jsonb LANGUAGE plpgsql -- not sql: a session keeps the INSERT's plan (api.contacts_create says why)
  AS $$
DECLARE
  v jsonb;
BEGIN
  INSERT INTO crm.tasks (organization_id, deal_id, title, description, due_date)
  VALUES (app.org_id(), p_deal_id, app.trim_space(p_title), p_description, p_due_date)
  RETURNING app.task_json(tasks) INTO v;
  RETURN v;
END
$$;

CREATE OR REPLACE FUNCTION api.tasks_get(p_id uuid) RETURNS jsonb
  LANGUAGE plpgsql STABLE
  AS $$
DECLARE
  v jsonb;
BEGIN
  SELECT app.task_json(t) INTO v FROM crm.tasks t
   WHERE t.organization_id = (SELECT app.org_id()) AND t.id = p_id AND t.deleted_at IS NULL;
  IF v IS NULL THEN
    PERFORM app.not_found('task');
  END IF;
  RETURN v;
END
$$;

-- Partial update: p_fields names the fields present (description may be set to null).
-- p_if_match: If-Match's versions (28_versions.sql), checked by the UPDATE itself.
CREATE OR REPLACE FUNCTION api.tasks_update(p_id uuid, p_fields text[], p_title text, p_description text,
    p_due_date date, p_is_done boolean, p_if_match int[] DEFAULT NULL)
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
   WHERE t.organization_id = (SELECT app.org_id()) AND t.id = p_id AND t.deleted_at IS NULL
     AND (p_if_match IS NULL OR t.version = ANY (p_if_match))
  RETURNING app.task_json(t) INTO v;
  IF v IS NULL THEN
    PERFORM app.not_found_or_changed('task', p_if_match IS NOT NULL AND EXISTS (
      SELECT 1 FROM crm.tasks t WHERE t.organization_id = (SELECT app.org_id()) AND t.id = p_id AND t.deleted_at IS NULL));
  END IF;
  RETURN v;
END
$$;

-- To the trash (44_trash.sql); the rule trigger checks the role and sets deleted_by.
CREATE OR REPLACE FUNCTION api.tasks_delete(p_id uuid, p_if_match int[] DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql
  AS $$
BEGIN
  UPDATE crm.tasks t SET deleted_at = now()
   WHERE t.organization_id = (SELECT app.org_id()) AND t.id = p_id AND t.deleted_at IS NULL
     AND (p_if_match IS NULL OR t.version = ANY (p_if_match));
  IF NOT FOUND THEN
    PERFORM app.not_found_or_changed('task', p_if_match IS NOT NULL AND EXISTS (
      SELECT 1 FROM crm.tasks t WHERE t.organization_id = (SELECT app.org_id()) AND t.id = p_id AND t.deleted_at IS NULL));
  END IF;
END
$$;
