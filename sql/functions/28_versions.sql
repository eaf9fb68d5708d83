-- Versions and If-Match (SPEC §11; the columns are in
-- sql/migrations/V15__versions.sql). A record's `version` is its ETag: 1 on
-- creation, +1 on every UPDATE of the row, for every writer (the API, a DBA
-- in psql). The trigger owns the column: whatever an INSERT or UPDATE says
-- about `version` is overwritten, so it can never go backwards and an old
-- ETag can never match a newer state.

-- BEFORE INSERT OR UPDATE, FOR EACH ROW: one step per statement that updates
-- the row, however many columns it sets. Every UPDATE is a change: the rule
-- triggers move updated_at on each (part of the JSON, so a new
-- representation). Not compared column by column: in a BEFORE trigger a
-- generated column (deals.amount_cents) is not computed yet, and the
-- comparison would cost every write for the rare UPDATE that sets nothing new.
CREATE OR REPLACE FUNCTION private.version_keep() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    NEW.version := 1;
  ELSE
    NEW.version := OLD.version + 1;
  END IF;
  RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS contacts_version ON crm.contacts;
CREATE TRIGGER contacts_version BEFORE INSERT OR UPDATE ON crm.contacts
  FOR EACH ROW EXECUTE FUNCTION private.version_keep();
DROP TRIGGER IF EXISTS deals_version ON crm.deals;
CREATE TRIGGER deals_version BEFORE INSERT OR UPDATE ON crm.deals
  FOR EACH ROW EXECUTE FUNCTION private.version_keep();
DROP TRIGGER IF EXISTS tasks_version ON crm.tasks;
CREATE TRIGGER tasks_version BEFORE INSERT OR UPDATE ON crm.tasks
  FOR EACH ROW EXECUTE FUNCTION private.version_keep();
-- A pipeline's JSON holds its stages, so a change of its stages (insert,
-- move, rename, delete) is a change of the pipeline too, counted once per
-- transaction: an API stage change renumbers several stages in several
-- statements and is one change. The transaction-local setting
-- app.pipelines_changed lists the pipelines whose version this transaction
-- has already moved (or set to 1); it goes with the transaction, and with a
-- subtransaction that rolls back, as the rows do. (A DBA who sets it by hand
-- can keep a stage change from counting, as one who disables the trigger
-- could.) Not "updated_at = now()": two transactions may start in the same
-- microsecond.
CREATE OR REPLACE FUNCTION private.pipelines_version() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    NEW.version := 1;
  ELSE
    NEW.version := OLD.version + 1;
  END IF;
  IF position(NEW.id::text IN coalesce(current_setting('app.pipelines_changed', true), '')) = 0 THEN
    PERFORM set_config('app.pipelines_changed',
                       concat_ws(',', nullif(current_setting('app.pipelines_changed', true), ''), NEW.id), true);
  END IF;
  RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS pipelines_version ON crm.pipelines;
CREATE TRIGGER pipelines_version BEFORE INSERT OR UPDATE ON crm.pipelines
  FOR EACH ROW EXECUTE FUNCTION private.pipelines_version();

-- AFTER each stage row written: touch the pipeline (its triggers move
-- updated_at and version) unless this transaction already did. Runs after
-- the guard, which has locked the pipeline FOR UPDATE and checked the role.
-- A pipeline being deleted (a cascade) is not found and not touched.
CREATE OR REPLACE FUNCTION private.pipeline_stages_touch() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_org uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.organization_id ELSE NEW.organization_id END;
  v_pipeline uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.pipeline_id ELSE NEW.pipeline_id END;
BEGIN
  IF position(v_pipeline::text IN coalesce(current_setting('app.pipelines_changed', true), '')) = 0 THEN
    UPDATE crm.pipelines p SET updated_at = now() WHERE p.organization_id = v_org AND p.id = v_pipeline;
  END IF;
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS pipeline_stages_touch ON crm.pipeline_stages;
CREATE TRIGGER pipeline_stages_touch AFTER INSERT OR UPDATE OR DELETE ON crm.pipeline_stages
  FOR EACH ROW EXECUTE FUNCTION private.pipeline_stages_touch();

-- If-Match. p_if_match holds the versions of the header's strong entity
-- tags (the server parses it); NULL means no header, or `*`, which matches
-- any existing record, so it is no condition at all (a missing record is
-- still 404). An empty array matches nothing. The writes of contacts, deals
-- and tasks carry `version = ANY (p_if_match)` in their own UPDATE or
-- DELETE, so the check and the write are one statement: of two writers with
-- the same ETag, the second waits for the first's row lock, re-reads the row
-- and no longer matches. Pipelines check under the row lock they take first.
CREATE OR REPLACE FUNCTION app.precondition_failed(p_what text) RETURNS void
  LANGUAGE sql
  AS $$
    SELECT app.fail('MC412', 'precondition_failed',
                    format('the %s has changed: If-Match does not name its current version', p_what))
  $$;

-- A write with If-Match that touched nothing: the record is missing (404,
-- which wins) or has another version (412).
CREATE OR REPLACE FUNCTION app.not_found_or_changed(p_what text, p_exists boolean) RETURNS void
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF p_exists THEN
    PERFORM app.precondition_failed(p_what);
  END IF;
  PERFORM app.not_found(p_what);
END
$$;

-- The check for a record locked FOR UPDATE by the caller.
CREATE OR REPLACE FUNCTION app.require_if_match(p_what text, p_version int, p_if_match int[]) RETURNS void
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF p_if_match IS NOT NULL AND NOT (p_version = ANY (p_if_match)) THEN
    PERFORM app.precondition_failed(p_what);
  END IF;
END
$$;
