-- Versions (SPEC §11): contacts, deals, tasks and pipelines carry `version`,
-- 1 on creation and +1 on every change, kept by the trigger of
-- sql/functions/28_versions.sql; the ETag of a record is its version.
-- (Webhooks get theirs when issue #13 adds them.)
--
-- A column with a constant default is instant in PostgreSQL 11+: the default
-- is kept in the catalog and existing rows read it (version 1) without a
-- rewrite of the table or of its indexes.
ALTER TABLE crm.contacts ADD COLUMN version integer NOT NULL DEFAULT 1;
ALTER TABLE crm.deals ADD COLUMN version integer NOT NULL DEFAULT 1;
ALTER TABLE crm.tasks ADD COLUMN version integer NOT NULL DEFAULT 1;
ALTER TABLE crm.pipelines ADD COLUMN version integer NOT NULL DEFAULT 1;

-- The stage functions now take the pipeline's If-Match under its lock
-- (app.pipeline_lock(uuid, int[]) in 27_pipelines.sql); app is replaced in
-- place, so the old signature goes here or it would stay as an overload.
DROP FUNCTION IF EXISTS app.pipeline_lock(uuid);
