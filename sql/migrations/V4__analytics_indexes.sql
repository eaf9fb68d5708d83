-- Covering indexes so analytics read only the index (index-only scans).
CREATE INDEX deals_summary ON crm.deals (organization_id, status, currency) INCLUDE (amount, created_at);
CREATE INDEX deals_funnel ON crm.deals (organization_id, stage, status);
