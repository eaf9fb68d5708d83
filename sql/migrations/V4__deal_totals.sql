-- Analytics read running totals instead of scanning every deal.
-- deal_totals holds (count, amount) per organization × status × stage ×
-- currency; writers never update it in place (that would serialize every deal
-- write of an organization on a handful of rows): each change appends signed
-- rows to deal_totals_delta, and from time to time a writer folds an
-- organization's deltas into deal_totals (app.deal_totals_compact).
CREATE TABLE crm.deal_totals (
  organization_id uuid NOT NULL REFERENCES crm.organizations (id) ON DELETE CASCADE,
  status          crm.deal_status NOT NULL,
  stage           crm.deal_stage NOT NULL,
  currency        text NOT NULL,
  deals           bigint NOT NULL,
  amount          numeric NOT NULL,
  PRIMARY KEY (organization_id, status, stage, currency)
);

-- No foreign key: rows may be written while an organization's deals are
-- deleted with it; app.deal_totals_compact and the cascade clean up.
CREATE TABLE crm.deal_totals_delta (
  organization_id uuid NOT NULL,
  id              bigint GENERATED ALWAYS AS IDENTITY,
  status          crm.deal_status NOT NULL,
  stage           crm.deal_stage NOT NULL,
  currency        text NOT NULL,
  deals           bigint NOT NULL,
  amount          numeric NOT NULL,
  PRIMARY KEY (organization_id, id)
);

ALTER TABLE crm.deal_totals ENABLE ROW LEVEL SECURITY;
ALTER TABLE crm.deal_totals FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.deal_totals_delta ENABLE ROW LEVEL SECURITY;
ALTER TABLE crm.deal_totals_delta FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE ON crm.deal_totals TO minicrm_api;
GRANT SELECT, INSERT, DELETE ON crm.deal_totals_delta TO minicrm_api;

-- Existing deals (the owner reads them all for this one statement).
ALTER TABLE crm.deals NO FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.deal_totals NO FORCE ROW LEVEL SECURITY;
INSERT INTO crm.deal_totals (organization_id, status, stage, currency, deals, amount)
SELECT organization_id, status, stage, currency, count(*), sum(amount)
  FROM crm.deals GROUP BY 1, 2, 3, 4;
ALTER TABLE crm.deals FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.deal_totals FORCE ROW LEVEL SECURITY;
