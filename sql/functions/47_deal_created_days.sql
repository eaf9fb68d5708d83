-- Deals created per day, for the summary's new_deals (see
-- sql/migrations/V14__deal_created_days.sql).

CREATE OR REPLACE FUNCTION app.created_day(p_at timestamptz) RETURNS date
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT (p_at AT TIME ZONE 'UTC')::date $$;

-- Folds an organization's deltas into its counts; one transaction at a time
-- per organization, the others skip (as app.deal_totals_compact).
CREATE OR REPLACE FUNCTION app.deal_created_days_compact(p_org_id uuid) RETURNS void
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF NOT pg_try_advisory_xact_lock(hashtext('minicrm.deal_created_days'), hashtext(p_org_id::text)) THEN
    RETURN;
  END IF;
  WITH moved AS (
    DELETE FROM crm.deal_created_days_delta WHERE organization_id = p_org_id
    RETURNING pipeline_id, day, deals
  )
  INSERT INTO crm.deal_created_days AS t (organization_id, pipeline_id, day, deals)
  SELECT p_org_id, pipeline_id, day, sum(deals) FROM moved GROUP BY pipeline_id, day
  ON CONFLICT (organization_id, pipeline_id, day) DO UPDATE SET deals = t.deals + excluded.deals;
END
$$;

CREATE OR REPLACE FUNCTION private.deals_created_days() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_org uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.organization_id ELSE NEW.organization_id END;
BEGIN
  -- A deal in the trash counts as erased: trashing it subtracts it, restoring adds it back.
  IF TG_OP = 'UPDATE' AND (NEW.organization_id, NEW.pipeline_id, app.created_day(NEW.created_at), NEW.deleted_at IS NULL)
                          IS NOT DISTINCT FROM (OLD.organization_id, OLD.pipeline_id, app.created_day(OLD.created_at),
                                                OLD.deleted_at IS NULL) THEN
    RETURN NULL;
  END IF;
  IF TG_OP = 'DELETE' AND NOT app.organization_exists(v_org) THEN
    RETURN NULL;  -- the organization is being deleted, with its counts
  END IF;
  INSERT INTO crm.deal_created_days_delta (organization_id, pipeline_id, day, deals)
  SELECT d.o, d.p, d.dy, d.n
    FROM (VALUES (OLD.organization_id, OLD.pipeline_id, app.created_day(OLD.created_at), -1::bigint, OLD.deleted_at IS NULL),
                 (NEW.organization_id, NEW.pipeline_id, app.created_day(NEW.created_at), 1::bigint, NEW.deleted_at IS NULL))
         AS d (o, p, dy, n, live)
   WHERE d.o IS NOT NULL AND d.live;
  IF random() < 0.01 THEN
    PERFORM app.deal_created_days_compact(v_org);
  END IF;
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS deals_created_days ON crm.deals;
CREATE TRIGGER deals_created_days AFTER INSERT OR DELETE OR UPDATE OF organization_id, pipeline_id, created_at, deleted_at ON crm.deals
  FOR EACH ROW EXECUTE FUNCTION private.deals_created_days();

-- Deals of the context's organization created at or after p_since (in
-- pipeline p_pipeline_id, or in any when null): the whole UTC days after
-- p_since's from the counts and their deltas, and p_since's own day from
-- an index range of deals_by_created (a day's deals, not the window's).
CREATE OR REPLACE FUNCTION app.deals_created_since(p_since timestamptz, p_pipeline_id uuid) RETURNS bigint
  LANGUAGE sql STABLE
  AS $$
    SELECT coalesce((SELECT sum(x.deals)
                       FROM (SELECT t.deals FROM crm.deal_created_days t
                              WHERE t.organization_id = (SELECT app.org_id()) AND t.day > app.created_day(p_since)
                                AND (p_pipeline_id IS NULL OR t.pipeline_id = p_pipeline_id)
                             UNION ALL
                             SELECT d.deals FROM crm.deal_created_days_delta d
                              WHERE d.organization_id = (SELECT app.org_id()) AND d.day > app.created_day(p_since)
                                AND (p_pipeline_id IS NULL OR d.pipeline_id = p_pipeline_id)) x), 0)::bigint
         + (SELECT count(*) FROM crm.deals d
             WHERE d.organization_id = (SELECT app.org_id())
               AND d.created_at >= p_since
               AND d.created_at < (app.created_day(p_since) + 1)::timestamp AT TIME ZONE 'UTC'
               AND d.deleted_at IS NULL
               AND (p_pipeline_id IS NULL OR d.pipeline_id = p_pipeline_id))
  $$;
