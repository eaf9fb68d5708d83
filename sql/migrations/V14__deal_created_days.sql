-- The summary's new_deals (deals created in the last `days` days, up to 3650)
-- counted every deal in the window: at a million deals, most of them. Deals
-- created per organization × pipeline × UTC day are kept as running counts,
-- like crm.deal_totals (V4): writers append signed rows to the delta table,
-- a writer folds them now and then. A window is then its whole days from
-- these counts plus the deals of its first, partial day from deals_by_created.
CREATE TABLE crm.deal_created_days (
  organization_id uuid NOT NULL REFERENCES crm.organizations (id) ON DELETE CASCADE,
  pipeline_id     uuid NOT NULL,
  day             date NOT NULL,
  deals           bigint NOT NULL,
  PRIMARY KEY (organization_id, pipeline_id, day)
);

-- No foreign key, as for deal_totals_delta: rows may be written while an
-- organization's deals are deleted with it; compaction and the cascade clean up.
CREATE TABLE crm.deal_created_days_delta (
  organization_id uuid NOT NULL,
  id              bigint GENERATED ALWAYS AS IDENTITY,
  pipeline_id     uuid NOT NULL,
  day             date NOT NULL,
  deals           bigint NOT NULL,
  PRIMARY KEY (organization_id, id)
);

ALTER TABLE crm.deal_created_days ENABLE ROW LEVEL SECURITY;
ALTER TABLE crm.deal_created_days FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.deal_created_days_delta ENABLE ROW LEVEL SECURITY;
ALTER TABLE crm.deal_created_days_delta FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE ON crm.deal_created_days TO minicrm_api;
GRANT SELECT, INSERT, DELETE ON crm.deal_created_days_delta TO minicrm_api;

-- Existing deals (the owner reads them all for this one statement).
ALTER TABLE crm.deals NO FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.deal_created_days NO FORCE ROW LEVEL SECURITY;
INSERT INTO crm.deal_created_days (organization_id, pipeline_id, day, deals)
SELECT organization_id, pipeline_id, (created_at AT TIME ZONE 'UTC')::date, count(*)
  FROM crm.deals GROUP BY 1, 2, 3;
ALTER TABLE crm.deals FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.deal_created_days FORCE ROW LEVEL SECURITY;
