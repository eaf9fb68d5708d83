-- Stage history, closed_at, expected_close_date, and the running totals of
-- velocity and forecast (SPEC §10, issue #11). The triggers that keep them
-- are in sql/functions/46_stage_history.sql; the reports in
-- 51_velocity_forecast.sql.
--
-- Existing data, on the way in:
-- * every deal gets one open stay in its current stage, entered at the
--   deal's created_at (when it really entered that stage is not known), with
--   entered_by null (nor is who moved it there);
-- * won and lost deals get closed_at = their updated_at (the last change of a
--   closed deal is the best guess of when it was closed);
-- * neither deals' updated_at nor the timeline changes: no UPDATE runs on
--   deals (one rewrite of the table sets closed_at, as in V12).

-- The owner must see every row for these statements (RLS is forced), as in V4.
ALTER TABLE crm.deals NO FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.deal_totals NO FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.deal_totals_delta NO FORCE ROW LEVEL SECURITY;

-- Deals ---------------------------------------------------------------------
-- ALTER ... TYPE with USING rewrites the table once and sets closed_at from
-- each row's own columns, without firing a row trigger (the same type: it is
-- the USING expression that makes PostgreSQL rewrite).
ALTER TABLE crm.deals ADD COLUMN expected_close_date date, ADD COLUMN closed_at timestamptz;
ALTER TABLE crm.deals
  ALTER COLUMN closed_at TYPE timestamptz USING CASE WHEN status IN ('won', 'lost') THEN updated_at END;
-- A closed deal has its closing time, an open one none, whoever writes (the
-- trigger deals_closed_at sets it; this catches a writer without a context).
ALTER TABLE crm.deals ADD CONSTRAINT deals_closed_at_invalid
  CHECK ((closed_at IS NULL) = (status IN ('new', 'in_progress')));
-- The won/lost deals of the first day of a velocity window are read from
-- here (the whole days after it from crm.deal_closes).
CREATE INDEX deals_by_closed ON crm.deals (organization_id, pipeline_id, closed_at) WHERE closed_at IS NOT NULL;

-- Stage history ---------------------------------------------------------------
-- One row per stay of a deal in a stage, ordered by (entered_at, seq). Written only by the triggers on
-- deals (the request role may read it, not write it). deal_open mirrors, on
-- the current stay, whether the deal's status is open (new or in_progress):
-- it is what the `current` and `stuck` counts of velocity count, and keeping
-- it here makes every velocity total a function of history rows alone (on a
-- finished stay it keeps the value it had when the stay ended, and means
-- nothing). Keys, indexes and foreign keys come after the backfill.
CREATE TABLE crm.deal_stage_history (
  organization_id uuid NOT NULL,
  id              uuid NOT NULL DEFAULT gen_random_uuid(),
  deal_id         uuid NOT NULL,
  pipeline_id     uuid NOT NULL,
  stage           text NOT NULL,
  entered_at      timestamptz NOT NULL,
  left_at         timestamptz,
  entered_by      uuid,
  deal_open       boolean NOT NULL,
  -- The order stays were recorded in: several moves of a deal in one
  -- transaction share its now(), and this keeps them in order.
  seq             bigint GENERATED ALWAYS AS IDENTITY,
  CONSTRAINT deal_stage_history_left_at_invalid CHECK (left_at >= entered_at)
);

INSERT INTO crm.deal_stage_history (organization_id, deal_id, pipeline_id, stage, entered_at, deal_open)
SELECT d.organization_id, d.id, d.pipeline_id, d.stage, d.created_at, d.status IN ('new', 'in_progress')
  FROM crm.deals d;

ALTER TABLE crm.deal_stage_history
  ADD PRIMARY KEY (organization_id, id),
  ADD CONSTRAINT deal_stage_history_deal_id_not_found FOREIGN KEY (organization_id, deal_id)
    REFERENCES crm.deals (organization_id, id) ON DELETE CASCADE,
  -- A stage can be deleted only once no deal is in it (stage_has_deals); its
  -- past stays then go with it, so that a later stage of the same key does
  -- not inherit them.
  ADD CONSTRAINT deal_stage_history_stage_not_found FOREIGN KEY (organization_id, pipeline_id, stage)
    REFERENCES crm.pipeline_stages (organization_id, pipeline_id, key) ON DELETE CASCADE,
  ADD CONSTRAINT deal_stage_history_entered_by_not_found FOREIGN KEY (entered_by)
    REFERENCES crm.users (id) ON DELETE SET NULL;
-- One current stay per deal.
CREATE UNIQUE INDEX deal_stage_history_deal_id_taken ON crm.deal_stage_history (organization_id, deal_id)
  WHERE left_at IS NULL;
-- GET /deals/{id}/stage-history, and the cascade from deals.
CREATE INDEX deal_stage_history_by_deal ON crm.deal_stage_history (organization_id, deal_id, entered_at);
-- The first, partial day of a velocity window: stays that ended in it, and
-- current stays entered on the day `stuck` starts.
CREATE INDEX deal_stage_history_by_left ON crm.deal_stage_history (organization_id, pipeline_id, left_at)
  WHERE left_at IS NOT NULL;
CREATE INDEX deal_stage_history_open_by_entered ON crm.deal_stage_history (organization_id, pipeline_id, entered_at)
  WHERE left_at IS NULL;

-- Running totals of velocity ----------------------------------------------------
-- As deal_totals (V4): writers append signed rows to velocity_delta, never
-- update a total in place; now and then a writer folds an organization's
-- deltas into the three tables below (private.velocity_compact); readers
-- sum totals and pending deltas.

-- Finished stays: count and exact sum of seconds per UTC day (grain 'day')
-- and per UTC month (grain 'month', period = its first day) they ended in,
-- and per duration bucket (app.duration_bucket: log scale, factor 1.1),
-- which is what the median and p90 are estimated from.
CREATE TABLE crm.stage_stays_done (
  organization_id uuid NOT NULL REFERENCES crm.organizations (id) ON DELETE CASCADE,
  pipeline_id     uuid NOT NULL,
  grain           text NOT NULL CONSTRAINT stage_stays_done_grain_invalid CHECK (grain IN ('day', 'month')),
  period          date NOT NULL,
  stage           text NOT NULL,
  bucket          smallint NOT NULL,
  stays           bigint NOT NULL,
  seconds         numeric NOT NULL,
  PRIMARY KEY (organization_id, pipeline_id, grain, period, stage, bucket)
);

-- Current stays of deals with an open status, per UTC day they began.
CREATE TABLE crm.stage_stays_open (
  organization_id uuid NOT NULL REFERENCES crm.organizations (id) ON DELETE CASCADE,
  pipeline_id     uuid NOT NULL,
  entered_on      date NOT NULL,
  stage           text NOT NULL,
  stays           bigint NOT NULL,
  PRIMARY KEY (organization_id, pipeline_id, entered_on, stage)
);

-- Won and lost deals per UTC day of closed_at, with the sum of their cycle
-- (closed_at - created_at) in seconds.
CREATE TABLE crm.deal_closes (
  organization_id uuid NOT NULL REFERENCES crm.organizations (id) ON DELETE CASCADE,
  pipeline_id     uuid NOT NULL,
  closed_on       date NOT NULL,
  status          crm.deal_status NOT NULL,
  deals           bigint NOT NULL,
  cycle_seconds   numeric NOT NULL,
  PRIMARY KEY (organization_id, pipeline_id, closed_on, status)
);

-- kind 'done': a finished stay (at = left_at, bucket and seconds of the
-- stay); 'open': a current stay of an open deal (at = entered_at); 'closed':
-- a won or lost deal (at = closed_at, status, seconds = its cycle). n is +1
-- or -1. No foreign key, as deal_totals_delta (a key-share lock on the
-- organization per write would serialize them); organization deletion
-- removes the rows (trigger organizations_velocity).
CREATE TABLE crm.velocity_delta (
  organization_id uuid NOT NULL,
  id              bigint GENERATED ALWAYS AS IDENTITY,
  kind            text NOT NULL CONSTRAINT velocity_delta_kind_invalid CHECK (kind IN ('done', 'open', 'closed')),
  pipeline_id     uuid NOT NULL,
  stage           text,
  status          crm.deal_status,
  at              timestamptz NOT NULL,
  bucket          smallint,
  n               bigint NOT NULL,
  seconds         numeric,
  PRIMARY KEY (organization_id, id)
);

-- The backfilled stays are all current: open deals' stays by the day they
-- began (the deal's creation), and the closes of won and lost deals.
INSERT INTO crm.stage_stays_open (organization_id, pipeline_id, entered_on, stage, stays)
SELECT d.organization_id, d.pipeline_id, (d.created_at AT TIME ZONE 'UTC')::date, d.stage, count(*)
  FROM crm.deals d WHERE d.status IN ('new', 'in_progress')
 GROUP BY 1, 2, 3, 4;
INSERT INTO crm.deal_closes (organization_id, pipeline_id, closed_on, status, deals, cycle_seconds)
SELECT d.organization_id, d.pipeline_id, (d.closed_at AT TIME ZONE 'UTC')::date, d.status, count(*),
       sum(extract(epoch FROM d.closed_at - d.created_at))
  FROM crm.deals d WHERE d.closed_at IS NOT NULL
 GROUP BY 1, 2, 3, 4;

-- Forecast: the deal totals count per month of expected_close_date too
-- (close_month: its first day; null when unscheduled, and for won and lost
-- deals, which no report splits by month). Null is a value of the key, so
-- the primary key becomes a unique constraint with NULLS NOT DISTINCT (a
-- primary key cannot hold a null). No deal has a date yet: every existing
-- total and delta is close_month null.
ALTER TABLE crm.deal_totals ADD COLUMN close_month date;
ALTER TABLE crm.deal_totals DROP CONSTRAINT deal_totals_pkey,
  ADD CONSTRAINT deal_totals_key UNIQUE NULLS NOT DISTINCT (organization_id, pipeline_id, status, stage, currency, close_month);
ALTER TABLE crm.deal_totals_delta ADD COLUMN close_month date;

ALTER TABLE crm.deal_stage_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE crm.deal_stage_history FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.stage_stays_done ENABLE ROW LEVEL SECURITY;
ALTER TABLE crm.stage_stays_done FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.stage_stays_open ENABLE ROW LEVEL SECURITY;
ALTER TABLE crm.stage_stays_open FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.deal_closes ENABLE ROW LEVEL SECURITY;
ALTER TABLE crm.deal_closes FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.velocity_delta ENABLE ROW LEVEL SECURITY;
ALTER TABLE crm.velocity_delta FORCE ROW LEVEL SECURITY;
-- Read-only for the request role: the writers are SECURITY DEFINER triggers.
GRANT SELECT ON crm.deal_stage_history, crm.stage_stays_done, crm.stage_stays_open, crm.deal_closes,
  crm.velocity_delta TO minicrm_api;

ALTER TABLE crm.deals FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.deal_totals FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.deal_totals_delta FORCE ROW LEVEL SECURITY;
