-- Pipeline analytics for the current organization (SPEC §6). Amounts are
-- never added across currencies. Counts and amounts come from the running
-- totals (45_deal_totals.sql), so they cost the same at a million deals as at
-- ten; only new_deals reads deals, as an index range on created_at.

CREATE OR REPLACE FUNCTION app.money(p numeric) RETURNS text
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT to_char(round(p, 2), 'FM99999999999999990.00') $$;

CREATE OR REPLACE FUNCTION api.analytics_summary(p_days int DEFAULT 30) RETURNS jsonb
  LANGUAGE sql STABLE
  AS $$
    WITH g AS (
      SELECT t.status, t.currency, sum(t.deals) AS n, sum(t.amount) AS total
        FROM app.deal_totals() t
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
      'by_status', (SELECT jsonb_agg(jsonb_build_object('status', b.status, 'count', b.n, 'amounts', b.amounts)
                                     ORDER BY b.status) FROM by_status b),
      'won_average', (SELECT coalesce(jsonb_agg(jsonb_build_object('currency', g.currency, 'average', app.money(g.total / g.n))
                                                ORDER BY g.currency), '[]')
                        FROM g WHERE g.status = 'won'),
      'new_deals', (SELECT count(*) FROM crm.deals d
                     WHERE d.organization_id = (SELECT app.org_id())
                       AND d.created_at >= now() - make_interval(days => p_days)))
  $$;

-- reached(stage) = deals whose current stage is that stage or a later one;
-- conversion = reached(stage) / reached(previous) × 100, null for the first
-- stage and when the previous stage was reached by none.
CREATE OR REPLACE FUNCTION api.analytics_funnel() RETURNS jsonb
  LANGUAGE sql STABLE
  AS $$
    WITH g AS (
      SELECT t.stage, t.status, sum(t.deals) AS n
        FROM app.deal_totals() t
       GROUP BY t.stage, t.status
    ), stages AS (
      SELECT s.stage,
             coalesce(sum(g.n), 0) AS n,
             jsonb_build_object(
               'new', coalesce(sum(g.n) FILTER (WHERE g.status = 'new'), 0),
               'in_progress', coalesce(sum(g.n) FILTER (WHERE g.status = 'in_progress'), 0),
               'won', coalesce(sum(g.n) FILTER (WHERE g.status = 'won'), 0),
               'lost', coalesce(sum(g.n) FILTER (WHERE g.status = 'lost'), 0)) AS by_status
        FROM unnest(enum_range(NULL::crm.deal_stage)) AS s (stage)
        LEFT JOIN g ON g.stage = s.stage
       GROUP BY s.stage
    ), reached AS (
      SELECT st.*, sum(st.n) OVER (ORDER BY st.stage DESC) AS reached
        FROM stages st
    ), conversion AS (
      SELECT r.*, lag(r.reached) OVER (ORDER BY r.stage) AS reached_before
        FROM reached r
    )
    SELECT jsonb_build_object('stages', jsonb_agg(jsonb_build_object(
             'stage', c.stage, 'count', c.n, 'by_status', c.by_status,
             'conversion_pct', CASE WHEN coalesce(c.reached_before, 0) = 0 THEN NULL
                                    ELSE round(c.reached * 100.0 / c.reached_before, 2) END)
           ORDER BY c.stage))
      FROM conversion c
  $$;
