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
    RETURNING pipeline_id, status, stage, currency, deals, amount
  )
  INSERT INTO crm.deal_totals AS t (organization_id, pipeline_id, status, stage, currency, deals, amount)
  SELECT p_org_id, pipeline_id, status, stage, currency, sum(deals), sum(amount)
    FROM moved GROUP BY pipeline_id, status, stage, currency
  ON CONFLICT (organization_id, pipeline_id, status, stage, currency)
  DO UPDATE SET deals = t.deals + excluded.deals, amount = t.amount + excluded.amount;
END
$$;

CREATE OR REPLACE FUNCTION private.deals_totals() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_org uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.organization_id ELSE NEW.organization_id END;
BEGIN
  IF TG_OP = 'UPDATE' AND (NEW.pipeline_id, NEW.status, NEW.stage, NEW.currency, NEW.amount)
                          IS NOT DISTINCT FROM (OLD.pipeline_id, OLD.status, OLD.stage, OLD.currency, OLD.amount) THEN
    RETURN NULL;
  END IF;
  IF TG_OP = 'DELETE' AND NOT app.organization_exists(v_org) THEN
    RETURN NULL;  -- the organization is being deleted, with its totals
  END IF;
  INSERT INTO crm.deal_totals_delta (organization_id, pipeline_id, status, stage, currency, deals, amount)
  SELECT * FROM (VALUES (OLD.organization_id, OLD.pipeline_id, OLD.status, OLD.stage, OLD.currency, -1::bigint, -OLD.amount),
                        (NEW.organization_id, NEW.pipeline_id, NEW.status, NEW.stage, NEW.currency, 1::bigint, NEW.amount))
                 AS d (o, pl, st, sg, c, n, a)
   WHERE o IS NOT NULL;
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
