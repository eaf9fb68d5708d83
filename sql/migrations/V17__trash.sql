-- The trash (SPEC §11, README "Trash"): DELETE on a contact, deal or task
-- sets deleted_at/deleted_by instead of erasing the row; restoring clears
-- them; DELETE /trash/... or the retention erases for good. The rules are
-- the triggers of sql/functions (30_pipeline_rules.sql, 44_trash.sql); the
-- running totals leave trashed deals out (45, 46, 47).
--
-- Nullable columns without a default: adding them rewrites nothing.
ALTER TABLE crm.contacts
  ADD COLUMN deleted_at timestamptz,
  ADD COLUMN deleted_by uuid CONSTRAINT contacts_deleted_by_not_found REFERENCES crm.users (id) ON DELETE SET NULL;
ALTER TABLE crm.deals
  ADD COLUMN deleted_at timestamptz,
  ADD COLUMN deleted_by uuid CONSTRAINT deals_deleted_by_not_found REFERENCES crm.users (id) ON DELETE SET NULL;
-- deleted_with_deal: the task went to the trash because its deal did, so
-- restoring the deal restores exactly these tasks (a task trashed on its
-- own before stays in the trash; a timestamp match would confuse the two
-- when both happen in one transaction). A constant default: no rewrite.
ALTER TABLE crm.tasks
  ADD COLUMN deleted_at timestamptz,
  ADD COLUMN deleted_by uuid CONSTRAINT tasks_deleted_by_not_found REFERENCES crm.users (id) ON DELETE SET NULL,
  ADD COLUMN deleted_with_deal boolean NOT NULL DEFAULT false;
-- The stays of a trashed deal leave the velocity totals: the rollups are a
-- function of the history rows alone (46_stage_history.sql), so the row
-- carries the deal's state.
ALTER TABLE crm.deal_stage_history ADD COLUMN deal_trashed boolean NOT NULL DEFAULT false;

-- The list indexes hold live rows only (partial), so a list, its count
-- (an index-only scan) and its keyset read no trashed row. The indexes that
-- also serve a foreign key's checks stay whole (a partial index cannot
-- serve them). Three of them serve a filter whose count reads up to 1,001
-- rows: they carry deleted_at (INCLUDE), so that count stays an index-only
-- scan (without it, the planner reads the table: 0.5 -> 1.7 ms for an
-- owner's contacts at 1,000,000, and a plan that depends on the owner's
-- share). The others count few rows (a contact's deals, a deal's tasks) or
-- read them in order anyway (contacts_by_created, the words' key).
DROP INDEX crm.deals_by_owner;
CREATE INDEX deals_by_owner ON crm.deals (organization_id, owner_id) INCLUDE (deleted_at);
DROP INDEX crm.deals_by_stage;
CREATE INDEX deals_by_stage ON crm.deals (organization_id, pipeline_id, stage, created_at, id) INCLUDE (deleted_at);
DROP INDEX crm.contacts_by_owner;
CREATE INDEX contacts_by_owner ON crm.contacts (organization_id, owner_id, created_at, id) INCLUDE (deleted_at);
DROP INDEX crm.deals_by_created;
CREATE INDEX deals_by_created ON crm.deals (organization_id, created_at, id) WHERE deleted_at IS NULL;
DROP INDEX crm.deals_by_updated;
CREATE INDEX deals_by_updated ON crm.deals (organization_id, updated_at, id) WHERE deleted_at IS NULL;
DROP INDEX crm.deals_by_amount;
CREATE INDEX deals_by_amount ON crm.deals (organization_id, amount_cents, id) WHERE deleted_at IS NULL;
DROP INDEX crm.deals_by_title;
CREATE INDEX deals_by_title ON crm.deals (organization_id, title, id) WHERE deleted_at IS NULL;
DROP INDEX crm.deals_by_status_amount;
CREATE INDEX deals_by_status_amount ON crm.deals (organization_id, status, amount, id) WHERE deleted_at IS NULL;
DROP INDEX crm.tasks_by_due;
CREATE INDEX tasks_by_due ON crm.tasks (organization_id, due_date, id) WHERE deleted_at IS NULL;
DROP INDEX crm.tasks_open_by_due;
CREATE INDEX tasks_open_by_due ON crm.tasks (organization_id, due_date, id) WHERE NOT is_done AND deleted_at IS NULL;

-- GET /trash, newest first, and the retention: trashed rows only (small).
CREATE INDEX contacts_trash ON crm.contacts (organization_id, deleted_at, id) WHERE deleted_at IS NOT NULL;
CREATE INDEX deals_trash ON crm.deals (organization_id, deleted_at, id) WHERE deleted_at IS NOT NULL;
CREATE INDEX tasks_trash ON crm.tasks (organization_id, deleted_at, id) WHERE deleted_at IS NOT NULL;

-- The organizations that have something in the trash, and since when (the
-- oldest deleted_at, or earlier), so that app.purge_expired_trash finds
-- them: the tables are under forced RLS, and the owner running the purge
-- sees an organization's rows only while acting in it. Not a tenant table:
-- like private.refresh_tokens, the request role cannot reach it; a
-- SECURITY DEFINER trigger (44_trash.sql) writes it.
CREATE TABLE private.trash_organizations (
  organization_id uuid PRIMARY KEY REFERENCES crm.organizations (id) ON DELETE CASCADE,
  oldest_deleted_at timestamptz NOT NULL
);

-- Statistics for the new columns. Without them the planner takes
-- `deleted_at IS NULL` to match 0.5 % of the rows, and the estimated total
-- of every list past 1,000 matches (SPEC §14) would be 200 times too small
-- until autovacuum happened to analyze the table (adding a column does not
-- count as a change). Only these columns: a sample, a second or so.
ANALYZE crm.contacts (deleted_at);
ANALYZE crm.deals (deleted_at);
ANALYZE crm.tasks (deleted_at, deleted_with_deal);
ANALYZE crm.deal_stage_history (deal_trashed);
