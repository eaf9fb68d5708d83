-- Velocity and forecast (SPEC §10), from running totals: neither reads every
-- deal or every stay (46_stage_history.sql keeps the totals of velocity,
-- 45_deal_totals.sql those of the forecast).

-- A query parameter outside its range: 400, with the field.
CREATE OR REPLACE FUNCTION app.require_between(p_value int, p_min int, p_max int, p_field text) RETURNS void
  LANGUAGE plpgsql STABLE
  AS $$
BEGIN
  IF p_value IS NULL OR p_value NOT BETWEEN p_min AND p_max THEN
    PERFORM app.fail('MC400', 'invalid_query_parameter', format('%s must be between %s and %s', p_field, p_min, p_max),
                     p_field);
  END IF;
END
$$;

-- The p_q quantile (0.5: the median) of the durations counted in a
-- histogram (bucket numbers ascending, with the stays and the exact sum of
-- seconds of each), as percentile_cont would compute it from the exact
-- durations: the two stays around rank p_q × (n - 1), interpolated. Each
-- of the two stands for its bucket's value (app.bucket_seconds, within
-- 4.8 % of it), or for its own exact duration when it is alone in its
-- bucket; interpolating two values each within 4.8 % stays within 4.8 %.
CREATE OR REPLACE FUNCTION app.duration_quantile(p_buckets smallint[], p_stays numeric[], p_seconds numeric[], p_q numeric)
  RETURNS numeric LANGUAGE plpgsql IMMUTABLE
  AS $$
DECLARE
  v_total numeric := 0.0;
  v_rank numeric;
  v_k numeric;
  v_lo numeric;
  v_hi numeric;
  v_seen numeric := 0.0;
  v_value numeric;
BEGIN
  FOR i IN 1..coalesce(array_length(p_stays, 1), 0) LOOP
    v_total := v_total + p_stays[i];
  END LOOP;
  IF v_total <= 0 THEN
    RETURN NULL;
  END IF;
  v_rank := p_q * (v_total - 1);
  v_k := floor(v_rank);
  FOR i IN 1..array_length(p_buckets, 1) LOOP
    v_value := CASE WHEN p_stays[i] = 1 THEN p_seconds[i] ELSE app.bucket_seconds(p_buckets[i]) END;
    IF v_lo IS NULL AND v_seen + p_stays[i] > v_k THEN
      v_lo := v_value;
    END IF;
    IF v_seen + p_stays[i] > v_k + 1 THEN
      v_hi := v_value;
      EXIT;
    END IF;
    v_seen := v_seen + p_stays[i];
  END LOOP;
  RETURN v_lo + (v_rank - v_k) * (coalesce(v_hi, v_lo) - v_lo);
END
$$;

-- One pipeline's stages in position order (p_pipeline_id, default the first
-- pipeline), over the last p_days days (1-3650): stays finished in that
-- window, their average, median and p90 in seconds, and the deals of an open
-- status in each stage now (current) and, of those, in it for more than
-- p_stuck_after_days days (1-3650, stuck); won and lost deals closed in the
-- window, the win rate and the average cycle (created -> closed) of the won.
--
-- The window is exact, to the microsecond: its first, partial UTC day is
-- read from the rows (the history, the deals: an index range of one day),
-- its whole days up to the first whole month from the day totals, the whole
-- months from the month totals, plus the deltas not folded yet. `stuck`
-- alike: whole days of current stays from their totals, the partial day from
-- the history.
CREATE OR REPLACE FUNCTION api.analytics_velocity(p_pipeline_id uuid DEFAULT NULL, p_days int DEFAULT 90,
    p_stuck_after_days int DEFAULT 30) RETURNS jsonb
  LANGUAGE plpgsql STABLE
  AS $$
DECLARE
  v_org uuid := app.org_id();
  v_pipeline uuid;
  v_from timestamptz;     -- the window: stays and closes at or after it
  v_day date;             -- its first whole UTC day
  v_day_at timestamptz;
  v_month date;           -- its first whole UTC month
  v_stuck_at timestamptz; -- current stays entered before it are stuck
  v_stuck_day_at timestamptz;
BEGIN
  PERFORM app.require_between(p_days, 1, 3650, 'days');
  PERFORM app.require_between(p_stuck_after_days, 1, 3650, 'stuck_after_days');
  v_pipeline := app.pipeline_or_first(p_pipeline_id);
  v_from := now() - make_interval(days => p_days);
  v_day := app.utc_day(v_from) + CASE WHEN app.utc_start(app.utc_day(v_from)) = v_from THEN 0 ELSE 1 END;
  v_day_at := app.utc_start(v_day);
  v_month := CASE WHEN extract(day FROM v_day) = 1 THEN v_day
                  ELSE (date_trunc('month', v_day::timestamp) + interval '1 month')::date END;
  v_stuck_at := now() - make_interval(days => p_stuck_after_days);
  v_stuck_day_at := app.utc_start(app.utc_day(v_stuck_at));
  RETURN (
    WITH done_rows AS (
      SELECT s.stage, s.bucket, s.stays, s.seconds FROM crm.stage_stays_done s
       WHERE s.organization_id = v_org AND s.pipeline_id = v_pipeline AND s.grain = 'month' AND s.period >= v_month
      UNION ALL
      SELECT s.stage, s.bucket, s.stays, s.seconds FROM crm.stage_stays_done s
       WHERE s.organization_id = v_org AND s.pipeline_id = v_pipeline AND s.grain = 'day'
         AND s.period >= v_day AND s.period < v_month
      UNION ALL
      SELECT h.stage, app.duration_bucket(extract(epoch FROM h.left_at - h.entered_at)), 1,
             extract(epoch FROM h.left_at - h.entered_at)
        FROM crm.deal_stage_history h
       WHERE h.organization_id = v_org AND h.pipeline_id = v_pipeline AND h.left_at >= v_from AND h.left_at < v_day_at
         AND NOT h.deal_trashed
      UNION ALL
      SELECT d.stage, d.bucket, d.n, d.seconds FROM crm.velocity_delta d
       WHERE d.organization_id = v_org AND d.kind = 'done' AND d.pipeline_id = v_pipeline AND d.at >= v_day_at
    ), buckets AS (
      SELECT r.stage, r.bucket, sum(r.stays) AS stays, sum(r.seconds) AS seconds
        FROM done_rows r GROUP BY r.stage, r.bucket HAVING sum(r.stays) > 0
    ), done AS (
      SELECT b.stage, sum(b.stays) AS stays, sum(b.seconds) AS seconds,
             array_agg(b.bucket ORDER BY b.bucket) AS buckets, array_agg(b.stays ORDER BY b.bucket) AS bucket_stays,
             array_agg(b.seconds ORDER BY b.bucket) AS bucket_seconds
        FROM buckets b GROUP BY b.stage
    ), open AS (
      SELECT o.stage, sum(o.stays) AS stays, sum(o.stuck) AS stuck
        FROM (SELECT s.stage, s.stays, CASE WHEN s.entered_on < app.utc_day(v_stuck_at) THEN s.stays ELSE 0 END AS stuck
                FROM crm.stage_stays_open s
               WHERE s.organization_id = v_org AND s.pipeline_id = v_pipeline
              UNION ALL
              SELECT d.stage, d.n, CASE WHEN d.at < v_stuck_day_at THEN d.n ELSE 0 END FROM crm.velocity_delta d
               WHERE d.organization_id = v_org AND d.kind = 'open' AND d.pipeline_id = v_pipeline
              UNION ALL
              -- The stuck of the day stuck begins on (its stays are counted
              -- above, as current, by their day).
              SELECT h.stage, 0, 1 FROM crm.deal_stage_history h
               WHERE h.organization_id = v_org AND h.pipeline_id = v_pipeline AND h.left_at IS NULL
                 AND h.entered_at >= v_stuck_day_at AND h.entered_at < v_stuck_at AND h.deal_open
                 AND NOT h.deal_trashed) o
       GROUP BY o.stage
    ), closes AS (
      SELECT c.status, sum(c.deals) AS deals, sum(c.seconds) AS seconds
        FROM (SELECT k.status, k.deals, k.cycle_seconds AS seconds FROM crm.deal_closes k
               WHERE k.organization_id = v_org AND k.pipeline_id = v_pipeline AND k.closed_on >= v_day
              UNION ALL
              SELECT d.status, d.n, d.seconds FROM crm.velocity_delta d
               WHERE d.organization_id = v_org AND d.kind = 'closed' AND d.pipeline_id = v_pipeline AND d.at >= v_day_at
              UNION ALL
              SELECT d.status, 1, extract(epoch FROM d.closed_at - d.created_at) FROM crm.deals d
               WHERE d.organization_id = v_org AND d.pipeline_id = v_pipeline
                 AND d.closed_at >= v_from AND d.closed_at < v_day_at AND d.deleted_at IS NULL) c
       GROUP BY c.status
    ), outcome AS (
      SELECT coalesce(sum(c.deals) FILTER (WHERE c.status = 'won'), 0) AS won,
             coalesce(sum(c.deals) FILTER (WHERE c.status = 'lost'), 0) AS lost,
             sum(c.seconds) FILTER (WHERE c.status = 'won') AS won_seconds
        FROM closes c
    )
    SELECT jsonb_build_object(
      'pipeline_id', v_pipeline, 'days', p_days, 'stuck_after_days', p_stuck_after_days,
      'stages', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'stage', st.key,
                   'stays_completed', coalesce(dn.stays, 0),
                   'avg_seconds', round(dn.seconds / dn.stays)::bigint,
                   'median_seconds', round(app.duration_quantile(dn.buckets, dn.bucket_stays, dn.bucket_seconds, 0.5))::bigint,
                   'p90_seconds', round(app.duration_quantile(dn.buckets, dn.bucket_stays, dn.bucket_seconds, 0.9))::bigint,
                   'current', coalesce(op.stays, 0),
                   'stuck', coalesce(op.stuck, 0))
                 ORDER BY st.position), '[]')
                   FROM crm.pipeline_stages st
                   LEFT JOIN done dn ON dn.stage = st.key
                   LEFT JOIN open op ON op.stage = st.key
                  WHERE st.organization_id = v_org AND st.pipeline_id = v_pipeline),
      'won', o.won,
      'lost', o.lost,
      'win_rate_pct', CASE WHEN o.won + o.lost > 0 THEN round(o.won * 100.0 / (o.won + o.lost), 2) END,
      'avg_cycle_days', CASE WHEN o.won > 0 THEN round(o.won_seconds / o.won / 86400, 2) END)
      FROM outcome o);
END
$$;

-- Open deals (new, in_progress) of one pipeline (p_pipeline_id) or of all
-- (null), by the month of their expected_close_date: each of the p_months
-- months (1-24) from the current UTC month on, then `overdue` (months before
-- it) and `unscheduled` (no date); deals expected later than the last month
-- shown are in none. Per currency: total, and weighted = sum of amount ×
-- the probability of the deal's stage (as it is now) / 100. A currency with
-- no amount in a month is left out of it.
CREATE OR REPLACE FUNCTION api.analytics_forecast(p_pipeline_id uuid DEFAULT NULL, p_months int DEFAULT 6)
  RETURNS jsonb LANGUAGE plpgsql STABLE
  AS $$
DECLARE
  v_org uuid := app.org_id();
  v_first date := app.utc_month(now());
  v_end date;
BEGIN
  PERFORM app.require_between(p_months, 1, 24, 'months');
  IF p_pipeline_id IS NOT NULL THEN
    PERFORM app.pipeline_or_first(p_pipeline_id);
  END IF;
  v_end := (v_first + make_interval(months => p_months))::date;
  RETURN (
    WITH slots AS (
      SELECT CASE WHEN t.close_month IS NULL THEN 'unscheduled' WHEN t.close_month < v_first THEN 'overdue'
                  ELSE to_char(t.close_month, 'YYYY-MM') END AS slot,
             t.currency, sum(t.amount) AS total, sum(t.amount * s.probability / 100) AS weighted
        FROM app.deal_totals_by_month(p_pipeline_id) t
        JOIN crm.pipeline_stages s ON s.organization_id = v_org AND s.pipeline_id = t.pipeline_id AND s.key = t.stage
       WHERE t.status IN ('new', 'in_progress') AND (t.close_month IS NULL OR t.close_month < v_end)
       GROUP BY 1, 2
      HAVING sum(t.amount) <> 0
    ), amounts AS (
      SELECT sl.slot, jsonb_agg(jsonb_build_object('currency', sl.currency, 'total', app.money(sl.total),
                                                   'weighted', app.money(sl.weighted)) ORDER BY sl.currency) AS amounts
        FROM slots sl GROUP BY sl.slot
    )
    SELECT jsonb_build_object(
      'pipeline_id', p_pipeline_id,
      'months', (SELECT jsonb_agg(jsonb_build_object('month', to_char(m, 'YYYY-MM'), 'amounts', coalesce(a.amounts, '[]'))
                                  ORDER BY m)
                   FROM generate_series(v_first::timestamp, (v_end - 1)::timestamp, interval '1 month') m
                   LEFT JOIN amounts a ON a.slot = to_char(m, 'YYYY-MM')),
      'overdue', coalesce((SELECT a.amounts FROM amounts a WHERE a.slot = 'overdue'), '[]'),
      'unscheduled', coalesce((SELECT a.amounts FROM amounts a WHERE a.slot = 'unscheduled'), '[]')));
END
$$;
