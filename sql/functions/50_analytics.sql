-- Pipeline analytics for the current organization (SPEC §6). Amounts are
-- never added across currencies. Counts and amounts come from the running
-- totals (45_deal_totals.sql), so they cost the same at a million deals as at
-- ten; new_deals comes from the deals created per day (47_deal_created_days.sql).

CREATE OR REPLACE FUNCTION app.money(p numeric) RETURNS text
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT to_char(round(p, 2), 'FM99999999999999990.00') $$;

-- The organization's pipeline p_id, or its first one (by position) when
-- p_id is null; 404 for an id that is not one of its pipelines.
CREATE OR REPLACE FUNCTION app.pipeline_or_first(p_id uuid) RETURNS uuid
  LANGUAGE plpgsql STABLE
  AS $$
DECLARE
  v uuid;
BEGIN
  SELECT p.id INTO v FROM crm.pipelines p
   WHERE p.organization_id = (SELECT app.org_id()) AND (p.id = p_id OR p_id IS NULL)
   ORDER BY p.position LIMIT 1;
  IF v IS NULL THEN
    PERFORM app.fail('MC404', 'pipeline_not_found', 'pipeline not found', 'pipeline_id');
  END IF;
  RETURN v;
END
$$;

-- p_pipeline_id: one pipeline's deals; null: every pipeline's.
CREATE OR REPLACE FUNCTION api.analytics_summary(p_days int DEFAULT 30, p_pipeline_id uuid DEFAULT NULL) RETURNS jsonb
  LANGUAGE plpgsql STABLE
  AS $$
DECLARE
  v_new bigint;
BEGIN
  IF p_pipeline_id IS NOT NULL THEN
    PERFORM app.pipeline_or_first(p_pipeline_id);
  END IF;
  -- From the per-day counts (47_deal_created_days.sql), not a range of
  -- deals: with days=3650 the range would be every deal.
  v_new := app.deals_created_since(now() - make_interval(days => p_days), p_pipeline_id);
  RETURN (
    WITH g AS (
      SELECT t.status, t.currency, sum(t.deals) AS n, sum(t.amount) AS total
        FROM app.deal_totals(p_pipeline_id) t
       GROUP BY t.status, t.currency
    ), by_status AS (
      SELECT s.status, coalesce(sum(g.n), 0) AS n,
             coalesce(jsonb_agg(jsonb_build_object('currency', g.currency, 'total', app.money(g.total))
                                ORDER BY g.currency) FILTER (WHERE g.currency IS NOT NULL), '[]') AS amounts
        FROM unnest(enum_range(NULL::crm.deal_status)) AS s (status)
        LEFT JOIN g ON g.status = s.status
       GROUP BY s.status
    )
    SELECT jsonb_build_object(
      'days', p_days,
      'pipeline_id', p_pipeline_id,
      'by_status', (SELECT jsonb_agg(jsonb_build_object('status', b.status, 'count', b.n, 'amounts', b.amounts)
                                     ORDER BY b.status) FROM by_status b),
      'won_average', (SELECT coalesce(jsonb_agg(jsonb_build_object('currency', g.currency, 'average', app.money(g.total / g.n))
                                                ORDER BY g.currency), '[]')
                        FROM g WHERE g.status = 'won'),
      'new_deals', v_new));
END
$$;

-- One pipeline's stages in position order (p_pipeline_id, default the first
-- pipeline). reached(stage) = deals whose current stage is that stage or a
-- later one (by position); conversion = reached(stage) / reached(previous)
-- × 100, null for the first stage and when the previous stage was reached by
-- none.
CREATE OR REPLACE FUNCTION api.analytics_funnel(p_pipeline_id uuid DEFAULT NULL) RETURNS jsonb
  LANGUAGE plpgsql STABLE
  AS $$
DECLARE
  v_pipeline uuid := app.pipeline_or_first(p_pipeline_id);
BEGIN
  RETURN (
    WITH g AS (
      SELECT t.stage, t.status, sum(t.deals) AS n
        FROM app.deal_totals(v_pipeline) t
       GROUP BY t.stage, t.status
    ), stages AS (
      SELECT s.key AS stage, s.position,
             coalesce(sum(g.n), 0) AS n,
             jsonb_build_object(
               'new', coalesce(sum(g.n) FILTER (WHERE g.status = 'new'), 0),
               'in_progress', coalesce(sum(g.n) FILTER (WHERE g.status = 'in_progress'), 0),
               'won', coalesce(sum(g.n) FILTER (WHERE g.status = 'won'), 0),
               'lost', coalesce(sum(g.n) FILTER (WHERE g.status = 'lost'), 0)) AS by_status
        FROM crm.pipeline_stages s
        LEFT JOIN g ON g.stage = s.key
       WHERE s.organization_id = (SELECT app.org_id()) AND s.pipeline_id = v_pipeline
       GROUP BY s.key, s.position
    ), reached AS (
      SELECT st.*, sum(st.n) OVER (ORDER BY st.position DESC) AS reached
        FROM stages st
    ), conversion AS (
      SELECT r.*, lag(r.reached) OVER (ORDER BY r.position) AS reached_before
        FROM reached r
    )
    SELECT jsonb_build_object('pipeline_id', v_pipeline, 'stages', jsonb_agg(jsonb_build_object(
             'stage', c.stage, 'count', c.n, 'by_status', c.by_status,
             'conversion_pct', CASE WHEN coalesce(c.reached_before, 0) = 0 THEN NULL
                                    ELSE round(c.reached * 100.0 / c.reached_before, 2) END)
           ORDER BY c.position))
      FROM conversion c);
END
$$;
