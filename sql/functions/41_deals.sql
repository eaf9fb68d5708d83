-- Deals: list / create / get / update / delete.

CREATE OR REPLACE FUNCTION app.deal_json(d crm.deals) RETURNS jsonb
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$
    SELECT jsonb_build_object('id', d.id, 'organization_id', d.organization_id, 'contact_id', d.contact_id,
      'owner_id', d.owner_id, 'title', d.title, 'amount', to_char(d.amount, 'FM999999999990.00'),
      'currency', d.currency, 'status', d.status, 'pipeline_id', d.pipeline_id, 'stage', d.stage,
      'expected_close_date', d.expected_close_date, 'closed_at', app.ts(d.closed_at),
      'external_id', d.external_id,
      'created_at', app.ts(d.created_at), 'updated_at', app.ts(d.updated_at), 'version', d.version)
  $$;

-- The checks of the deal list's filters and sort, shared by the list and the
-- export (api.deals_export): a stage key that no stage of the organization
-- (of that pipeline, if it is one of the organization's) has, an unknown
-- order_by or order, and a member filtering by another owner.
CREATE OR REPLACE FUNCTION app.deals_list_check(p_stages text[], p_pipeline_id uuid, p_order_by text, p_order text,
    p_owner_id uuid)
  RETURNS void LANGUAGE plpgsql STABLE
  AS $$
DECLARE
  v_unknown text;
BEGIN
  IF p_stages IS NOT NULL THEN
    SELECT k INTO v_unknown FROM unnest(p_stages) k
     WHERE NOT EXISTS (SELECT 1 FROM crm.pipeline_stages s
                        WHERE s.organization_id = (SELECT app.org_id()) AND s.key = k
                          AND (s.pipeline_id = p_pipeline_id OR p_pipeline_id IS NULL
                               OR NOT EXISTS (SELECT 1 FROM crm.pipelines p
                                               WHERE p.organization_id = (SELECT app.org_id()) AND p.id = p_pipeline_id)))
     LIMIT 1;
    IF v_unknown IS NOT NULL THEN
      PERFORM app.fail('MC400', 'stage_not_in_pipeline', format('no pipeline of the filter has a stage %s', v_unknown), 'stage');
    END IF;
  END IF;
  IF p_order_by IS NULL OR p_order_by NOT IN ('created_at', 'updated_at', 'amount', 'title') THEN
    PERFORM app.fail('MC400', 'invalid_order_by', 'order_by must be one of created_at, updated_at, amount, title', 'order_by');
  END IF;
  IF p_order IS NULL OR p_order NOT IN ('asc', 'desc') THEN
    PERFORM app.fail('MC400', 'invalid_order', 'order must be asc or desc', 'order');
  END IF;
  PERFORM app.require_owner_filter(p_owner_id);
END
$$;

-- p_order_by: created_at | updated_at | amount | title; p_order: asc | desc.
-- Both are checked against these lists before they become SQL identifiers.
-- p_page (offset pages) or a keyset: p_after_id and the p_after_<order_by>
-- of the last row seen (a cursor page: the rows after it in this order).
-- p_stages (keys) and p_pipeline_id filter together; a key that no stage of
-- the organization (of that pipeline, if it is one of the organization's)
-- has is 400, like any unknown query value.
--
-- Each request plans its statements anew (dynamic SQL), so their cost is
-- part of every list (bench/fixedcost.py, W1):
-- * The organization is a parameter ($16, read once), not (SELECT
--   app.org_id()) in each statement: the planner inlines that function per
--   statement, and with the value it also estimates one tenant's rows. The
--   policy still applies; the predicate keeps a caller without a context
--   (app.org_id() null) from reading any row.
-- * The statuses are compared as their codes (V29), so that the count of up
--   to 1,001 matches of a status and amount filter reads them from
--   deals_by_status_amount alone (11.1 M instructions per W1 request before,
--   9.2 M after, bench/fixedcost.py at 50,000 deals).
CREATE OR REPLACE FUNCTION api.deals_list(p_page int, p_page_size int,
    p_statuses crm.deal_status[] DEFAULT NULL, p_stages text[] DEFAULT NULL,
    p_min_amount numeric DEFAULT NULL, p_max_amount numeric DEFAULT NULL,
    p_owner_id uuid DEFAULT NULL, p_contact_id uuid DEFAULT NULL,
    p_order_by text DEFAULT 'created_at', p_order text DEFAULT 'desc',
    p_after_created_at timestamptz DEFAULT NULL, p_after_updated_at timestamptz DEFAULT NULL,
    p_after_amount numeric DEFAULT NULL, p_after_title text DEFAULT NULL, p_after_id uuid DEFAULT NULL,
    p_pipeline_id uuid DEFAULT NULL, p_external_id text DEFAULT NULL)
  RETURNS jsonb LANGUAGE plpgsql -- volatile: EXPLAIN (the estimate) is not allowed in a stable function
  AS $$
DECLARE
  v_where text := 'd.organization_id = $16 AND d.deleted_at IS NULL'
    -- As codes (V29): a smallint comparison is leakproof, so an index serves it under RLS.
    || CASE WHEN p_statuses IS NOT NULL THEN ' AND d.status_code = ANY ($1)' ELSE '' END
    || CASE WHEN p_pipeline_id IS NOT NULL THEN ' AND d.pipeline_id = $14' ELSE '' END
    || CASE WHEN p_stages IS NOT NULL THEN ' AND d.stage = ANY ($2)' ELSE '' END
    -- In cents (V10): bigint comparisons are leakproof, so an index serves them under RLS.
    || CASE WHEN p_min_amount IS NOT NULL THEN ' AND d.amount_cents >= ceil($3 * 100)::bigint' ELSE '' END
    || CASE WHEN p_max_amount IS NOT NULL THEN ' AND d.amount_cents <= floor($4 * 100)::bigint' ELSE '' END
    || CASE WHEN p_owner_id IS NOT NULL THEN ' AND d.owner_id = $5' ELSE '' END
    || CASE WHEN p_contact_id IS NOT NULL THEN ' AND d.contact_id = $6' ELSE '' END
    -- At most one deal (deals_external_id_taken, whose index serves it).
    || CASE WHEN p_external_id IS NOT NULL THEN ' AND d.external_id = $15' ELSE '' END;
  v_order text;
  v_keyset text := '';
  v_counted bigint;
  v_plan json;
  v_items jsonb[];  -- the page's rows and the one after it (app.page_json)
  v_org uuid := app.org_id();
  v_status_codes smallint[] := CASE WHEN p_statuses IS NOT NULL THEN
    (SELECT array_agg(app.deal_status_code(s)) FROM unnest(p_statuses) s) END;
BEGIN
  PERFORM app.deals_list_check(p_stages, p_pipeline_id, p_order_by, p_order, p_owner_id);
  IF p_external_id IS NOT NULL THEN
    PERFORM app.check_external_id(p_external_id);
  END IF;
  -- Only the key of the sort in use may be given (a cursor of another sort
  -- never reaches here: the server checks the cursor's query fingerprint).
  PERFORM app.check_paging(p_page, CASE p_order_by
      WHEN 'created_at' THEN p_after_created_at IS NOT NULL WHEN 'updated_at' THEN p_after_updated_at IS NOT NULL
      WHEN 'amount' THEN p_after_amount IS NOT NULL ELSE p_after_title IS NOT NULL END, p_after_id);
  -- The amount sorts by its cents (the same order; see the filters above).
  v_order := format('d.%I %s, d.id %s', CASE p_order_by WHEN 'amount' THEN 'amount_cents' ELSE p_order_by END,
                    p_order, p_order);
  IF p_after_id IS NOT NULL THEN
    -- A row comparison in the index's order: (organization_id, <key>, id).
    v_keyset := format(' AND (d.%I, d.id) %s (%s, $13)', CASE p_order_by WHEN 'amount' THEN 'amount_cents' ELSE p_order_by END,
                       CASE p_order WHEN 'asc' THEN '>' ELSE '<' END,
                       CASE p_order_by WHEN 'created_at' THEN '$9' WHEN 'updated_at' THEN '$10'
                                       WHEN 'amount' THEN '($11 * 100)::bigint' ELSE '$12' END);
  END IF;
  EXECUTE 'SELECT count(*) FROM (SELECT 1 FROM crm.deals d WHERE ' || v_where || ' LIMIT $7) c'
    INTO v_counted USING v_status_codes, p_stages, p_min_amount, p_max_amount, p_owner_id, p_contact_id,
                         app.exact_count_limit() + 1, NULL::bigint, NULL::timestamptz, NULL::timestamptz,
                         NULL::numeric, NULL::text, NULL::uuid, p_pipeline_id, p_external_id, v_org;
  IF v_counted > app.exact_count_limit() THEN
    EXECUTE 'EXPLAIN (FORMAT JSON) SELECT 1 FROM crm.deals d WHERE ' || v_where
      INTO v_plan USING v_status_codes, p_stages, p_min_amount, p_max_amount, p_owner_id, p_contact_id,
                        NULL::bigint, NULL::bigint, NULL::timestamptz, NULL::timestamptz,
                        NULL::numeric, NULL::text, NULL::uuid, p_pipeline_id, p_external_id, v_org;
  END IF;
  EXECUTE format('SELECT array_agg(app.deal_json(d) ORDER BY %s) FROM (SELECT * FROM crm.deals d WHERE %s%s ORDER BY %s LIMIT $7 OFFSET $8) d',
                 v_order, v_where, v_keyset, v_order)
    INTO v_items USING v_status_codes, p_stages, p_min_amount, p_max_amount, p_owner_id, p_contact_id,
                       p_page_size + 1, (coalesce(p_page, 1) - 1)::bigint * p_page_size,
                       p_after_created_at, p_after_updated_at, p_after_amount, p_after_title, p_after_id,
                       p_pipeline_id, p_external_id, v_org;
  RETURN app.page_json(v_items, p_page, p_page_size, app.list_total(v_counted, v_plan), p_order_by);
END
$$;

-- New deals start `new`, in p_pipeline_id (default: the organization's
-- first pipeline) at p_stage (default: that pipeline's first stage); the
-- rule trigger fills in the defaults and checks the stage.
CREATE OR REPLACE FUNCTION api.deals_create(p_contact_id uuid, p_title text, p_amount numeric, p_currency text,
    p_owner_id uuid DEFAULT NULL, p_pipeline_id uuid DEFAULT NULL, p_stage text DEFAULT NULL,
    p_expected_close_date date DEFAULT NULL, p_external_id text DEFAULT NULL)
  RETURNS jsonb LANGUAGE plpgsql -- not sql: a session keeps the INSERT's plan (api.contacts_create says why)
  AS $$
DECLARE
  v jsonb;
BEGIN
  INSERT INTO crm.deals (organization_id, contact_id, owner_id, title, amount, currency, pipeline_id, stage,
                         expected_close_date, external_id)
  VALUES (app.org_id(), p_contact_id, coalesce(p_owner_id, app.user_id()), app.trim_space(p_title), p_amount, p_currency,
          p_pipeline_id, p_stage, p_expected_close_date, p_external_id)
  RETURNING app.deal_json(deals) INTO v;
  RETURN v;
END
$$;

CREATE OR REPLACE FUNCTION api.deals_get(p_id uuid) RETURNS jsonb
  LANGUAGE plpgsql STABLE
  AS $$
DECLARE
  v jsonb;
BEGIN
  SELECT app.deal_json(d) INTO v FROM crm.deals d
   WHERE d.organization_id = (SELECT app.org_id()) AND d.id = p_id AND d.deleted_at IS NULL;
  IF v IS NULL THEN
    PERFORM app.not_found('deal');
  END IF;
  RETURN v;
END
$$;

-- Partial update; null means "not given", except for the one nullable
-- fields, expected_close_date and external_id: each changes (null clearing
-- it) only when p_fields names it. A new p_pipeline_id without
-- p_stage goes to that pipeline's first stage (the rule trigger resolves a
-- null stage). p_if_match: If-Match's versions (28_versions.sql), checked by
-- the UPDATE itself.
CREATE OR REPLACE FUNCTION api.deals_update(p_id uuid, p_status crm.deal_status, p_stage text,
    p_title text, p_amount numeric, p_currency text, p_contact_id uuid, p_owner_id uuid,
    p_pipeline_id uuid DEFAULT NULL, p_expected_close_date date DEFAULT NULL, p_fields text[] DEFAULT '{}',
    p_external_id text DEFAULT NULL, p_if_match int[] DEFAULT NULL)
  RETURNS jsonb LANGUAGE plpgsql
  AS $$
DECLARE
  v jsonb;
BEGIN
  UPDATE crm.deals d SET
    status      = coalesce(p_status, d.status),
    pipeline_id = coalesce(p_pipeline_id, d.pipeline_id),
    stage       = CASE WHEN p_stage IS NOT NULL THEN p_stage
                       WHEN p_pipeline_id IS DISTINCT FROM d.pipeline_id AND p_pipeline_id IS NOT NULL THEN NULL
                       ELSE d.stage END,
    title       = coalesce(app.trim_space(p_title), d.title),
    amount      = coalesce(p_amount, d.amount),
    currency    = coalesce(p_currency, d.currency),
    contact_id  = coalesce(p_contact_id, d.contact_id),
    owner_id    = coalesce(p_owner_id, d.owner_id),
    expected_close_date = CASE WHEN 'expected_close_date' = ANY (p_fields) THEN p_expected_close_date
                               ELSE d.expected_close_date END,
    external_id = CASE WHEN 'external_id' = ANY (p_fields) THEN p_external_id ELSE d.external_id END
   WHERE d.organization_id = (SELECT app.org_id()) AND d.id = p_id AND d.deleted_at IS NULL
     AND (p_if_match IS NULL OR d.version = ANY (p_if_match))
  RETURNING app.deal_json(d) INTO v;
  IF v IS NULL THEN
    PERFORM app.not_found_or_changed('deal', p_if_match IS NOT NULL AND EXISTS (
      SELECT 1 FROM crm.deals d WHERE d.organization_id = (SELECT app.org_id()) AND d.id = p_id AND d.deleted_at IS NULL));
  END IF;
  RETURN v;
END
$$;

-- To the trash with its tasks (44_trash.sql); the rule trigger checks the role and sets deleted_by.
CREATE OR REPLACE FUNCTION api.deals_delete(p_id uuid, p_if_match int[] DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql
  AS $$
BEGIN
  UPDATE crm.deals d SET deleted_at = now()
   WHERE d.organization_id = (SELECT app.org_id()) AND d.id = p_id AND d.deleted_at IS NULL
     AND (p_if_match IS NULL OR d.version = ANY (p_if_match));
  IF NOT FOUND THEN
    PERFORM app.not_found_or_changed('deal', p_if_match IS NOT NULL AND EXISTS (
      SELECT 1 FROM crm.deals d WHERE d.organization_id = (SELECT app.org_id()) AND d.id = p_id AND d.deleted_at IS NULL));
  END IF;
END
$$;
