-- Stage history, closed_at and the running totals of velocity (SPEC §10;
-- tables in sql/migrations/V13__stage_history.sql).
--
-- Who writes what, in the transaction of the deal's change:
-- * deals_closed_at (BEFORE, on deals): closed_at;
-- * deals_stage_history (AFTER, on deals): opens and closes stays, keeps the
--   current stay's deal_open, and appends the won/lost deltas ('closed');
-- * deal_stage_history_rollups (AFTER, on the history): the deltas of
--   finished stays ('done') and of current stays of open deals ('open'), as
--   a function of the history rows alone, so that a DBA who corrects a stay
--   in psql moves the totals with it.
-- The history and the totals are written by SECURITY DEFINER functions: the
-- request role may read them but not forge them.

-- Days and months are UTC, whatever the session's TimeZone.
CREATE OR REPLACE FUNCTION app.utc_day(p timestamptz) RETURNS date
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT (p AT TIME ZONE 'UTC')::date $$;

CREATE OR REPLACE FUNCTION app.utc_month(p timestamptz) RETURNS date
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT date_trunc('month', p AT TIME ZONE 'UTC')::date $$;

-- The instant a UTC day begins.
CREATE OR REPLACE FUNCTION app.utc_start(p date) RETURNS timestamptz
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT p::timestamp AT TIME ZONE 'UTC' $$;

-- Durations are counted in log-scale buckets: bucket b holds
-- [1.1^b, 1.1^(b+1)) seconds, bucket -1 everything under a second. 1.1 keeps
-- an estimate within 4.8 % (see app.bucket_seconds), in about 200 buckets
-- from a second to ten years.
CREATE OR REPLACE FUNCTION app.duration_bucket(p_seconds numeric) RETURNS smallint
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT CASE WHEN p_seconds < 1 THEN -1 ELSE floor(ln(p_seconds::float8) / ln(1.1::float8)) END::smallint $$;

-- The value that stands for a bucket's stays: 2 × 1.1^(b+1) / 2.1, the
-- point whose distance to either end of [1.1^b, 1.1^(b+1)) is the same
-- fraction, 0.1 / 2.1 < 4.8 %, of that end; 0 for the sub-second bucket.
CREATE OR REPLACE FUNCTION app.bucket_seconds(p_bucket smallint) RETURNS numeric
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT CASE WHEN p_bucket < 0 THEN 0 ELSE (2 * power(1.1::float8, p_bucket + 1) / 2.1)::numeric END $$;

-- closed_at ---------------------------------------------------------------------

-- With a context (the API, a DBA under app.act_as), closed_at is the
-- database's: now() when the status becomes won or lost (from any other
-- status, so won -> lost closes again), kept while it stays so, null when it
-- is open. Without a context (the owner role: imports, corrections, test
-- fixtures), a closed_at the writer gives to a won or lost deal is kept.
CREATE OR REPLACE FUNCTION private.deals_closed_at() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF NEW.status IN ('new', 'in_progress') THEN
    NEW.closed_at := NULL;
  ELSIF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status THEN
    IF app.role() IS NOT NULL OR NEW.closed_at IS NULL
       OR (TG_OP = 'UPDATE' AND NEW.closed_at IS NOT DISTINCT FROM OLD.closed_at) THEN
      NEW.closed_at := now();
    END IF;
  ELSIF app.role() IS NOT NULL OR NEW.closed_at IS NULL THEN
    NEW.closed_at := OLD.closed_at;
  END IF;
  RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS deals_closed_at ON crm.deals;
CREATE TRIGGER deals_closed_at BEFORE INSERT OR UPDATE ON crm.deals
  FOR EACH ROW EXECUTE FUNCTION private.deals_closed_at();

-- Folding ---------------------------------------------------------------------

-- Folds an organization's velocity deltas into its totals: finished stays
-- into their day and their month, current stays into their first day,
-- closes into their day. Only one transaction at a time does it per
-- organization; others skip (their deltas wait for the next). Rows that
-- reach zero stay (a handful; readers skip them), except the current stays',
-- which every stage change empties one of.
CREATE OR REPLACE FUNCTION private.velocity_compact(p_org_id uuid) RETURNS void
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF NOT pg_try_advisory_xact_lock(hashtext('minicrm.velocity'), hashtext(p_org_id::text)) THEN
    RETURN;
  END IF;
  WITH moved AS (
    DELETE FROM crm.velocity_delta WHERE organization_id = p_org_id
    RETURNING kind, pipeline_id, stage, status, at, bucket, n, seconds
  ), done AS (
    INSERT INTO crm.stage_stays_done AS t (organization_id, pipeline_id, grain, period, stage, bucket, stays, seconds)
    SELECT p_org_id, m.pipeline_id, g.grain, g.period, m.stage, m.bucket, sum(m.n), sum(m.seconds)
      FROM moved m
     CROSS JOIN LATERAL (VALUES ('day', app.utc_day(m.at)), ('month', app.utc_month(m.at))) g (grain, period)
     WHERE m.kind = 'done'
     GROUP BY m.pipeline_id, g.grain, g.period, m.stage, m.bucket
    ON CONFLICT (organization_id, pipeline_id, grain, period, stage, bucket)
    DO UPDATE SET stays = t.stays + excluded.stays, seconds = t.seconds + excluded.seconds
  ), open AS (
    INSERT INTO crm.stage_stays_open AS t (organization_id, pipeline_id, entered_on, stage, stays)
    SELECT p_org_id, m.pipeline_id, app.utc_day(m.at), m.stage, sum(m.n)
      FROM moved m WHERE m.kind = 'open'
     GROUP BY m.pipeline_id, app.utc_day(m.at), m.stage
    ON CONFLICT (organization_id, pipeline_id, entered_on, stage)
    DO UPDATE SET stays = t.stays + excluded.stays
  )
  INSERT INTO crm.deal_closes AS t (organization_id, pipeline_id, closed_on, status, deals, cycle_seconds)
  SELECT p_org_id, m.pipeline_id, app.utc_day(m.at), m.status, sum(m.n), sum(m.seconds)
    FROM moved m WHERE m.kind = 'closed'
   GROUP BY m.pipeline_id, app.utc_day(m.at), m.status
  ON CONFLICT (organization_id, pipeline_id, closed_on, status)
  DO UPDATE SET deals = t.deals + excluded.deals, cycle_seconds = t.cycle_seconds + excluded.cycle_seconds;
  DELETE FROM crm.stage_stays_open o WHERE o.organization_id = p_org_id AND o.stays = 0;
END
$$;

-- Stays -------------------------------------------------------------------------

-- A new deal opens its first stay, entered at its created_at (now(), unless
-- a DBA inserts an older deal) by the acting user. A change of stage or
-- pipeline closes the current stay (left_at = now()) and opens the next; a
-- change between an open and a closed status flips the current stay's
-- deal_open. Several moves in one transaction share its now(): the stays in
-- between last zero seconds (and seq keeps their order).
CREATE OR REPLACE FUNCTION private.deals_stage_history() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
DECLARE
  v_org uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.organization_id ELSE NEW.organization_id END;
BEGIN
  IF TG_OP = 'DELETE' THEN
    -- The stays go by cascade (and leave the totals through their trigger).
    -- A deal in the trash has left the totals already.
    IF OLD.closed_at IS NULL OR OLD.deleted_at IS NOT NULL OR NOT app.organization_exists(v_org) THEN
      RETURN NULL;
    END IF;
  ELSIF TG_OP = 'INSERT' THEN
    INSERT INTO crm.deal_stage_history (organization_id, deal_id, pipeline_id, stage, entered_at, entered_by, deal_open,
                                        deal_trashed)
    VALUES (NEW.organization_id, NEW.id, NEW.pipeline_id, NEW.stage, NEW.created_at, app.user_id(),
            NEW.status IN ('new', 'in_progress'), NEW.deleted_at IS NOT NULL);
  ELSE
    -- Trashed or restored: its stays leave or rejoin the totals (the rollups
    -- below count the stays of deals that are not in the trash).
    IF app.trash_flip(OLD.deleted_at, NEW.deleted_at) THEN
      UPDATE crm.deal_stage_history h SET deal_trashed = NEW.deleted_at IS NOT NULL
       WHERE h.organization_id = v_org AND h.deal_id = NEW.id;
    END IF;
    IF (NEW.pipeline_id, NEW.stage) IS DISTINCT FROM (OLD.pipeline_id, OLD.stage) THEN
      UPDATE crm.deal_stage_history h SET left_at = greatest(now(), h.entered_at)
       WHERE h.organization_id = v_org AND h.deal_id = NEW.id AND h.left_at IS NULL;
      INSERT INTO crm.deal_stage_history (organization_id, deal_id, pipeline_id, stage, entered_at, entered_by, deal_open,
                                          deal_trashed)
      VALUES (v_org, NEW.id, NEW.pipeline_id, NEW.stage, now(), app.user_id(), NEW.status IN ('new', 'in_progress'),
              NEW.deleted_at IS NOT NULL);
    ELSIF (NEW.status IN ('new', 'in_progress')) <> (OLD.status IN ('new', 'in_progress')) THEN
      UPDATE crm.deal_stage_history h SET deal_open = NEW.status IN ('new', 'in_progress')
       WHERE h.organization_id = v_org AND h.deal_id = NEW.id AND h.left_at IS NULL;
    END IF;
  END IF;
  -- Won and lost deals that are not in the trash, by the day they closed
  -- (closed_at is set only for them).
  IF (TG_OP = 'UPDATE' AND (NEW.pipeline_id, NEW.status, NEW.closed_at, NEW.created_at, NEW.deleted_at IS NULL)
                           IS NOT DISTINCT FROM (OLD.pipeline_id, OLD.status, OLD.closed_at, OLD.created_at,
                                                 OLD.deleted_at IS NULL))
     OR (OLD.closed_at IS NULL AND NEW.closed_at IS NULL) THEN
    RETURN NULL;
  END IF;
  INSERT INTO crm.velocity_delta (organization_id, kind, pipeline_id, status, at, n, seconds)
  SELECT v_org, 'closed', d.pipeline_id, d.status, d.closed_at, d.n, d.n * extract(epoch FROM d.closed_at - d.created_at)
    FROM (VALUES (OLD.pipeline_id, OLD.status, OLD.closed_at, OLD.created_at, -1, OLD.deleted_at IS NULL),
                 (NEW.pipeline_id, NEW.status, NEW.closed_at, NEW.created_at, 1, NEW.deleted_at IS NULL))
         AS d (pipeline_id, status, closed_at, created_at, n, live)
   WHERE d.closed_at IS NOT NULL AND d.live;
  IF random() < 0.01 THEN
    PERFORM private.velocity_compact(v_org);
  END IF;
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS deals_stage_history ON crm.deals;
CREATE TRIGGER deals_stage_history AFTER INSERT OR UPDATE OR DELETE ON crm.deals
  FOR EACH ROW EXECUTE FUNCTION private.deals_stage_history();

-- What a stay counts for: a finished one in its bucket on the day it ended,
-- a current one of an open deal on the day it began, a stay of a deal in the
-- trash nothing; the old row's share leaves, the new row's arrives.
CREATE OR REPLACE FUNCTION private.deal_stage_history_rollups() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
DECLARE
  v_org uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.organization_id ELSE NEW.organization_id END;
BEGIN
  IF TG_OP = 'UPDATE' AND (NEW.organization_id, NEW.pipeline_id, NEW.stage, NEW.entered_at, NEW.left_at, NEW.deal_open,
                           NEW.deal_trashed)
                          IS NOT DISTINCT FROM (OLD.organization_id, OLD.pipeline_id, OLD.stage, OLD.entered_at, OLD.left_at,
                                                OLD.deal_open, OLD.deal_trashed) THEN
    RETURN NULL;
  END IF;
  IF TG_OP = 'DELETE' AND NOT app.organization_exists(v_org) THEN
    RETURN NULL;  -- the organization is being deleted, with its totals
  END IF;
  INSERT INTO crm.velocity_delta (organization_id, kind, pipeline_id, stage, at, bucket, n, seconds)
  SELECT s.org, CASE WHEN s.left_at IS NULL THEN 'open' ELSE 'done' END, s.pipeline_id, s.stage,
         coalesce(s.left_at, s.entered_at),
         CASE WHEN s.left_at IS NOT NULL THEN app.duration_bucket(extract(epoch FROM s.left_at - s.entered_at)) END,
         s.n, CASE WHEN s.left_at IS NOT NULL THEN s.n * extract(epoch FROM s.left_at - s.entered_at) END
    FROM (VALUES (OLD.organization_id, OLD.pipeline_id, OLD.stage, OLD.entered_at, OLD.left_at, OLD.deal_open,
                  OLD.deal_trashed, -1),
                 (NEW.organization_id, NEW.pipeline_id, NEW.stage, NEW.entered_at, NEW.left_at, NEW.deal_open,
                  NEW.deal_trashed, 1))
         AS s (org, pipeline_id, stage, entered_at, left_at, deal_open, trashed, n)
   WHERE s.org IS NOT NULL AND NOT s.trashed AND (s.left_at IS NOT NULL OR s.deal_open);
  IF random() < 0.01 THEN
    PERFORM private.velocity_compact(v_org);
  END IF;
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS deal_stage_history_rollups ON crm.deal_stage_history;
CREATE TRIGGER deal_stage_history_rollups AFTER INSERT OR UPDATE OR DELETE ON crm.deal_stage_history
  FOR EACH ROW EXECUTE FUNCTION private.deal_stage_history_rollups();

-- velocity_delta has no foreign key to organizations (see V13): an
-- organization's deletion removes its rows.
CREATE OR REPLACE FUNCTION private.organizations_velocity() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
BEGIN
  DELETE FROM crm.velocity_delta WHERE organization_id = OLD.id;
  RETURN OLD;
END
$$;

DROP TRIGGER IF EXISTS organizations_velocity ON crm.organizations;
CREATE TRIGGER organizations_velocity BEFORE DELETE ON crm.organizations
  FOR EACH ROW EXECUTE FUNCTION private.organizations_velocity();

-- GET /deals/{id}/stage-history --------------------------------------------------

-- Oldest first (ties, the stays of one transaction, in the order they were
-- recorded); duration_seconds (whole seconds, rounded) runs to now() for the
-- current stay.
CREATE OR REPLACE FUNCTION api.deals_stage_history(p_id uuid) RETURNS jsonb
  LANGUAGE plpgsql STABLE
  AS $$
DECLARE
  v jsonb;
BEGIN
  PERFORM 1 FROM crm.deals d WHERE d.organization_id = (SELECT app.org_id()) AND d.id = p_id AND d.deleted_at IS NULL;
  IF NOT FOUND THEN
    PERFORM app.not_found('deal');
  END IF;
  SELECT jsonb_build_object('items', coalesce(jsonb_agg(jsonb_build_object(
           'pipeline_id', h.pipeline_id, 'stage', h.stage, 'entered_at', app.ts(h.entered_at),
           'left_at', app.ts(h.left_at),
           'duration_seconds', round(extract(epoch FROM coalesce(h.left_at, now()) - h.entered_at))::bigint,
           'entered_by', h.entered_by)
         ORDER BY h.entered_at, h.seq), '[]'))
    INTO v
    FROM crm.deal_stage_history h
   WHERE h.organization_id = (SELECT app.org_id()) AND h.deal_id = p_id;
  RETURN v;
END
$$;

-- Rebuilding -------------------------------------------------------------------

-- Recomputes an organization's velocity totals from its history and deals,
-- set-based: the seed fills them so, and a DBA can, should they ever be in
-- doubt. Takes the folding lock, waiting for a fold in progress.
CREATE OR REPLACE FUNCTION private.velocity_rebuild(p_org_id uuid) RETURNS void
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('minicrm.velocity'), hashtext(p_org_id::text));
  DELETE FROM crm.velocity_delta WHERE organization_id = p_org_id;
  DELETE FROM crm.stage_stays_done WHERE organization_id = p_org_id;
  DELETE FROM crm.stage_stays_open WHERE organization_id = p_org_id;
  DELETE FROM crm.deal_closes WHERE organization_id = p_org_id;
  INSERT INTO crm.stage_stays_done (organization_id, pipeline_id, grain, period, stage, bucket, stays, seconds)
  SELECT p_org_id, h.pipeline_id, 'day', app.utc_day(h.left_at), h.stage, app.duration_bucket(h.seconds), count(*), sum(h.seconds)
    FROM (SELECT h.pipeline_id, h.stage, h.left_at, extract(epoch FROM h.left_at - h.entered_at) AS seconds
            FROM crm.deal_stage_history h
           WHERE h.organization_id = p_org_id AND h.left_at IS NOT NULL AND NOT h.deal_trashed) h
   GROUP BY h.pipeline_id, app.utc_day(h.left_at), h.stage, app.duration_bucket(h.seconds);
  -- Months from the days (far fewer rows than stays).
  INSERT INTO crm.stage_stays_done (organization_id, pipeline_id, grain, period, stage, bucket, stays, seconds)
  SELECT p_org_id, s.pipeline_id, 'month', date_trunc('month', s.period::timestamp)::date, s.stage, s.bucket,
         sum(s.stays), sum(s.seconds)
    FROM crm.stage_stays_done s WHERE s.organization_id = p_org_id AND s.grain = 'day'
   GROUP BY s.pipeline_id, date_trunc('month', s.period::timestamp)::date, s.stage, s.bucket;
  INSERT INTO crm.stage_stays_open (organization_id, pipeline_id, entered_on, stage, stays)
  SELECT p_org_id, h.pipeline_id, app.utc_day(h.entered_at), h.stage, count(*)
    FROM crm.deal_stage_history h
   WHERE h.organization_id = p_org_id AND h.left_at IS NULL AND h.deal_open AND NOT h.deal_trashed
   GROUP BY h.pipeline_id, app.utc_day(h.entered_at), h.stage;
  INSERT INTO crm.deal_closes (organization_id, pipeline_id, closed_on, status, deals, cycle_seconds)
  SELECT p_org_id, d.pipeline_id, app.utc_day(d.closed_at), d.status, count(*), sum(extract(epoch FROM d.closed_at - d.created_at))
    FROM crm.deals d
   WHERE d.organization_id = p_org_id AND d.closed_at IS NOT NULL AND d.deleted_at IS NULL
   GROUP BY d.pipeline_id, app.utc_day(d.closed_at), d.status;
END
$$;
