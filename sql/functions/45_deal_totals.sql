-- Running totals of deals for analytics (see sql/migrations/V4__deal_totals.sql).

-- Folds an organization's deltas into its totals. Only one transaction at a
-- time does it per organization; others skip (their deltas wait for the next).
CREATE OR REPLACE FUNCTION app.deal_totals_compact(p_org_id uuid) RETURNS void
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF NOT pg_try_advisory_xact_lock(hashtext('minicrm.deal_totals'), hashtext(p_org_id::text)) THEN
    RETURN;
  END IF;
  WITH moved AS (
    DELETE FROM crm.deal_totals_delta WHERE organization_id = p_org_id
    RETURNING pipeline_id, status, stage, currency, close_month, deals, amount
  )
  INSERT INTO crm.deal_totals AS t (organization_id, pipeline_id, status, stage, currency, close_month, deals, amount)
  SELECT p_org_id, pipeline_id, status, stage, currency, close_month, sum(deals), sum(amount)
    FROM moved GROUP BY pipeline_id, status, stage, currency, close_month
  ON CONFLICT (organization_id, pipeline_id, status, stage, currency, close_month)
  DO UPDATE SET deals = t.deals + excluded.deals, amount = t.amount + excluded.amount;
END
$$;

-- The month a deal counts under: its expected_close_date's, for open deals
-- only (the forecast's; won and lost deals count under null, so that the
-- totals do not grow with their dates).
CREATE OR REPLACE FUNCTION app.close_month(p_status crm.deal_status, p_expected_close_date date) RETURNS date
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT CASE WHEN p_status IN ('new', 'in_progress') THEN date_trunc('month', p_expected_close_date::timestamp)::date END $$;

CREATE OR REPLACE FUNCTION private.deals_totals() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_org uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.organization_id ELSE NEW.organization_id END;
BEGIN
  -- A deal in the trash counts as erased: trashing it subtracts it, restoring adds it back.
  IF TG_OP = 'UPDATE' AND (NEW.pipeline_id, NEW.status, NEW.stage, NEW.currency, NEW.amount,
                           app.close_month(NEW.status, NEW.expected_close_date), NEW.deleted_at IS NULL)
                          IS NOT DISTINCT FROM (OLD.pipeline_id, OLD.status, OLD.stage, OLD.currency, OLD.amount,
                                                app.close_month(OLD.status, OLD.expected_close_date), OLD.deleted_at IS NULL) THEN
    RETURN NULL;
  END IF;
  IF TG_OP = 'DELETE' AND NOT app.organization_exists(v_org) THEN
    RETURN NULL;  -- the organization is being deleted, with its totals
  END IF;
  INSERT INTO crm.deal_totals_delta (organization_id, pipeline_id, status, stage, currency, close_month, deals, amount)
  SELECT d.o, d.pl, d.st, d.sg, d.c, d.m, d.n, d.a
    FROM (VALUES (OLD.organization_id, OLD.pipeline_id, OLD.status, OLD.stage, OLD.currency,
                  app.close_month(OLD.status, OLD.expected_close_date), -1::bigint, -OLD.amount, OLD.deleted_at IS NULL),
                 (NEW.organization_id, NEW.pipeline_id, NEW.status, NEW.stage, NEW.currency,
                  app.close_month(NEW.status, NEW.expected_close_date), 1::bigint, NEW.amount, NEW.deleted_at IS NULL))
         AS d (o, pl, st, sg, c, m, n, a, live)
   WHERE d.o IS NOT NULL AND d.live;
  IF random() < 0.01 THEN
    PERFORM app.deal_totals_compact(v_org);
  END IF;
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS deals_totals ON crm.deals;
CREATE TRIGGER deals_totals AFTER INSERT OR UPDATE OR DELETE ON crm.deals
  FOR EACH ROW EXECUTE FUNCTION private.deals_totals();

-- Totals plus not-yet-folded deltas: the current counts and amounts per
-- pipeline × status × stage × currency of the context's organization, of one
-- pipeline or (p_pipeline_id null) of all.
CREATE OR REPLACE FUNCTION app.deal_totals(p_pipeline_id uuid DEFAULT NULL) RETURNS TABLE (pipeline_id uuid,
    status crm.deal_status, stage text, currency text, deals bigint, amount numeric)
  LANGUAGE sql STABLE
  AS $$
    SELECT x.pipeline_id, x.status, x.stage, x.currency, sum(x.deals)::bigint, sum(x.amount)
      FROM (SELECT t.pipeline_id, t.status, t.stage, t.currency, t.deals, t.amount FROM crm.deal_totals t
             WHERE t.organization_id = (SELECT app.org_id())
               AND (t.pipeline_id = p_pipeline_id OR p_pipeline_id IS NULL)
            UNION ALL
            SELECT d.pipeline_id, d.status, d.stage, d.currency, d.deals, d.amount FROM crm.deal_totals_delta d
             WHERE d.organization_id = (SELECT app.org_id())
               AND (d.pipeline_id = p_pipeline_id OR p_pipeline_id IS NULL)) x
     GROUP BY x.pipeline_id, x.status, x.stage, x.currency
    HAVING sum(x.deals) <> 0
  $$;

-- The same per month of expected_close_date as well (app.close_month), for
-- the forecast.
CREATE OR REPLACE FUNCTION app.deal_totals_by_month(p_pipeline_id uuid DEFAULT NULL) RETURNS TABLE (pipeline_id uuid,
    status crm.deal_status, stage text, currency text, close_month date, deals bigint, amount numeric)
  LANGUAGE sql STABLE
  AS $$
    SELECT x.pipeline_id, x.status, x.stage, x.currency, x.close_month, sum(x.deals)::bigint, sum(x.amount)
      FROM (SELECT t.pipeline_id, t.status, t.stage, t.currency, t.close_month, t.deals, t.amount FROM crm.deal_totals t
             WHERE t.organization_id = (SELECT app.org_id())
               AND (t.pipeline_id = p_pipeline_id OR p_pipeline_id IS NULL)
            UNION ALL
            SELECT d.pipeline_id, d.status, d.stage, d.currency, d.close_month, d.deals, d.amount FROM crm.deal_totals_delta d
             WHERE d.organization_id = (SELECT app.org_id())
               AND (d.pipeline_id = p_pipeline_id OR p_pipeline_id IS NULL)) x
     GROUP BY x.pipeline_id, x.status, x.stage, x.currency, x.close_month
    HAVING sum(x.deals) <> 0
  $$;
