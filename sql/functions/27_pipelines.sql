-- Pipelines and their stages (SPEC §9; the tables are in
-- sql/migrations/V12__pipelines.sql). Managing them is organization
-- settings: owner or admin, enforced by the guard triggers so that a DBA
-- under a context meets the same rule; every member reads them.
--
-- Positions are 1..n: the API functions renumber on every insert, move and
-- delete, and a deferred constraint trigger checks at commit, for every
-- writer, that they are still 1..n (the unique constraints are deferred too,
-- so a renumbering may pass through duplicates).
--
-- Locks: every change to a pipeline's stages (and the pipeline's deletion)
-- first locks the pipeline's row FOR UPDATE; a deal entering a stage locks
-- it FOR KEY SHARE (private.deals_rules). So stage reorders, stage deletes
-- and deal moves into that pipeline take turns, and the rules read a settled
-- order. Changes to an organization's list of pipelines (insert, move,
-- delete) lock the organization's row FOR NO KEY UPDATE, as membership
-- changes do (it does not block the key-share locks of foreign-key checks).

-- The default pipeline of a new organization (SPEC §9): "Sales" with the
-- four stages that were fixed before.
CREATE OR REPLACE FUNCTION app.pipelines_create_default(p_org_id uuid) RETURNS uuid
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_id uuid;
BEGIN
  INSERT INTO crm.pipelines (organization_id, name, position) VALUES (p_org_id, 'Sales', 1)
  RETURNING id INTO v_id;
  INSERT INTO crm.pipeline_stages (organization_id, pipeline_id, key, name, position, probability)
  SELECT p_org_id, v_id, s.key, s.name, s.position, s.probability
    FROM (VALUES ('qualification', 'Qualification', 1, 10), ('proposal', 'Proposal', 2, 30),
                 ('negotiation', 'Negotiation', 3, 60), ('closed', 'Closed', 4, 100)) s (key, name, position, probability);
  RETURN v_id;
END
$$;

-- Every way of creating an organization (register, POST /organizations, an
-- INSERT in psql) gets it. Under the request role the new organization is
-- the context (its insert policy demands it), so the pipeline rows pass RLS.
CREATE OR REPLACE FUNCTION private.organizations_default_pipeline() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM app.pipelines_create_default(NEW.id);
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS organizations_default_pipeline ON crm.organizations;
CREATE TRIGGER organizations_default_pipeline AFTER INSERT ON crm.organizations
  FOR EACH ROW EXECUTE FUNCTION private.organizations_default_pipeline();

-- Rules ------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION private.pipelines_guard() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_org uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.organization_id ELSE NEW.organization_id END;
BEGIN
  IF TG_OP <> 'UPDATE' OR NEW.position IS DISTINCT FROM OLD.position THEN
    -- A missing organization is being deleted, and its pipelines with it.
    PERFORM 1 FROM crm.organizations o WHERE o.id = v_org FOR NO KEY UPDATE;
    IF NOT FOUND THEN
      IF TG_OP = 'DELETE' THEN
        RETURN OLD;
      END IF;
      PERFORM app.fail('MC404', 'organization_not_found', 'organization not found');
    END IF;
  END IF;
  PERFORM app.require_admin();
  IF TG_OP = 'UPDATE' THEN
    IF (NEW.organization_id, NEW.id) IS DISTINCT FROM (OLD.organization_id, OLD.id) THEN
      PERFORM app.fail('MC400', 'pipeline_immutable', 'a pipeline''s id and organization cannot change');
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
  END IF;
  IF TG_OP = 'DELETE' THEN
    IF NOT EXISTS (SELECT 1 FROM crm.pipelines p WHERE p.organization_id = OLD.organization_id AND p.id <> OLD.id) THEN
      PERFORM app.fail('MC409', 'last_pipeline', 'an organization keeps at least one pipeline');
    END IF;
    IF EXISTS (SELECT 1 FROM crm.deals d WHERE d.organization_id = OLD.organization_id AND d.pipeline_id = OLD.id) THEN
      PERFORM app.fail('MC409', 'pipeline_has_deals', 'the pipeline holds deals; move or delete them first');
    END IF;
    RETURN OLD;
  END IF;
  RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS pipelines_guard ON crm.pipelines;
CREATE TRIGGER pipelines_guard BEFORE INSERT OR UPDATE OR DELETE ON crm.pipelines
  FOR EACH ROW EXECUTE FUNCTION private.pipelines_guard();

CREATE OR REPLACE FUNCTION private.pipeline_stages_guard() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_org uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.organization_id ELSE NEW.organization_id END;
  v_pipeline uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.pipeline_id ELSE NEW.pipeline_id END;
BEGIN
  PERFORM 1 FROM crm.pipelines p WHERE p.organization_id = v_org AND p.id = v_pipeline FOR UPDATE;
  IF NOT FOUND THEN
    IF TG_OP = 'DELETE' THEN
      RETURN OLD;  -- the pipeline is being deleted, and its stages with it
    END IF;
    PERFORM app.fail('MC404', 'pipeline_not_found', 'pipeline not found', 'pipeline_id');
  END IF;
  PERFORM app.require_admin();
  IF TG_OP = 'UPDATE' THEN
    -- What deals, clients and stored activities refer to never changes.
    IF NEW.key IS DISTINCT FROM OLD.key THEN
      PERFORM app.fail('MC400', 'stage_key_immutable', 'a stage''s key cannot change', 'key');
    END IF;
    IF (NEW.organization_id, NEW.pipeline_id, NEW.id) IS DISTINCT FROM (OLD.organization_id, OLD.pipeline_id, OLD.id) THEN
      PERFORM app.fail('MC400', 'stage_immutable', 'a stage cannot move to another pipeline', 'pipeline_id');
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
  END IF;
  IF TG_OP = 'DELETE' THEN
    IF NOT EXISTS (SELECT 1 FROM crm.pipeline_stages s
                    WHERE s.organization_id = OLD.organization_id AND s.pipeline_id = OLD.pipeline_id AND s.id <> OLD.id) THEN
      PERFORM app.fail('MC409', 'last_stage', 'a pipeline keeps at least one stage');
    END IF;
    IF EXISTS (SELECT 1 FROM crm.deals d
                WHERE d.organization_id = OLD.organization_id AND d.pipeline_id = OLD.pipeline_id AND d.stage = OLD.key) THEN
      PERFORM app.fail('MC409', 'stage_has_deals', format('the stage %s holds deals; move them first', OLD.key));
    END IF;
    RETURN OLD;
  END IF;
  RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS pipeline_stages_guard ON crm.pipeline_stages;
CREATE TRIGGER pipeline_stages_guard BEFORE INSERT OR UPDATE OR DELETE ON crm.pipeline_stages
  FOR EACH ROW EXECUTE FUNCTION private.pipeline_stages_guard();

-- At commit: the positions of what changed are 1..n (they are unique by the
-- deferred constraints, so 1..n means the largest is the count).
CREATE OR REPLACE FUNCTION private.pipelines_positions() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_org uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.organization_id ELSE NEW.organization_id END;
  v_count bigint;
  v_last int;
BEGIN
  SELECT count(*), max(p.position) INTO v_count, v_last FROM crm.pipelines p WHERE p.organization_id = v_org;
  IF v_count > 0 AND v_last <> v_count THEN
    PERFORM app.fail('MC400', 'position_out_of_range',
      format('the pipelines of an organization have the positions 1 to %s', v_count), 'position');
  END IF;
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS pipelines_positions ON crm.pipelines;
CREATE CONSTRAINT TRIGGER pipelines_positions AFTER INSERT OR UPDATE OF position OR DELETE ON crm.pipelines
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION private.pipelines_positions();

CREATE OR REPLACE FUNCTION private.pipeline_stages_positions() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_org uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.organization_id ELSE NEW.organization_id END;
  v_pipeline uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.pipeline_id ELSE NEW.pipeline_id END;
  v_count bigint;
  v_last int;
BEGIN
  SELECT count(*), max(s.position) INTO v_count, v_last
    FROM crm.pipeline_stages s WHERE s.organization_id = v_org AND s.pipeline_id = v_pipeline;
  IF v_count > 0 AND v_last <> v_count THEN
    PERFORM app.fail('MC400', 'position_out_of_range',
      format('the stages of a pipeline have the positions 1 to %s', v_count), 'position');
  END IF;
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS pipeline_stages_positions ON crm.pipeline_stages;
CREATE CONSTRAINT TRIGGER pipeline_stages_positions AFTER INSERT OR UPDATE OF position OR DELETE ON crm.pipeline_stages
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION private.pipeline_stages_positions();

-- JSON ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION app.stage_json(s crm.pipeline_stages) RETURNS jsonb
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT jsonb_build_object('key', s.key, 'name', s.name, 'position', s.position, 'probability', s.probability) $$;

CREATE OR REPLACE FUNCTION app.pipeline_json(p crm.pipelines) RETURNS jsonb
  LANGUAGE sql STABLE
  AS $$
    SELECT jsonb_build_object('id', p.id, 'name', p.name, 'position', p.position,
      'stages', (SELECT coalesce(jsonb_agg(app.stage_json(s) ORDER BY s.position), '[]')
                   FROM crm.pipeline_stages s WHERE s.organization_id = p.organization_id AND s.pipeline_id = p.id),
      'created_at', app.ts(p.created_at), 'updated_at', app.ts(p.updated_at), 'version', p.version)
  $$;

-- The API -------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION api.pipelines_list() RETURNS jsonb
  LANGUAGE sql STABLE
  AS $$
    SELECT jsonb_build_object('items', coalesce(jsonb_agg(app.pipeline_json(p) ORDER BY p.position), '[]'))
      FROM crm.pipelines p WHERE p.organization_id = (SELECT app.org_id())
  $$;

CREATE OR REPLACE FUNCTION api.pipelines_get(p_id uuid) RETURNS jsonb
  LANGUAGE plpgsql STABLE
  AS $$
DECLARE
  v jsonb;
BEGIN
  SELECT app.pipeline_json(p) INTO v FROM crm.pipelines p WHERE p.organization_id = (SELECT app.org_id()) AND p.id = p_id;
  IF v IS NULL THEN
    PERFORM app.fail('MC404', 'pipeline_not_found', 'pipeline not found');
  END IF;
  RETURN v;
END
$$;

-- p_stages: [{key, name, probability}, ...], in order; the new pipeline comes
-- last. An error about one stage names it: field `stages[<index>].<field>`.
CREATE OR REPLACE FUNCTION api.pipelines_create(p_name text, p_stages jsonb) RETURNS jsonb
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_org uuid := app.org_id();
  v_pipeline crm.pipelines;
  v_stage jsonb;
  v_index int;
  v_state text;
  v_constraint text;
  v_column text;
  v_message text;
BEGIN
  PERFORM app.require_admin();
  IF jsonb_typeof(p_stages) IS DISTINCT FROM 'array' OR jsonb_array_length(p_stages) = 0 THEN
    PERFORM app.fail('MC400', 'stages_required', 'a pipeline needs at least one stage', 'stages');
  END IF;
  -- A key given twice is a mistake in the request (400), not a conflict with
  -- what is stored (409 pipeline_stages_key_taken): name the second one.
  SELECT (min(d.o) - 1)::int INTO v_index
    FROM (SELECT x.o, row_number() OVER (PARTITION BY x.e ->> 'key' ORDER BY x.o) AS nth
            FROM jsonb_array_elements(p_stages) WITH ORDINALITY AS x (e, o)) d
   WHERE d.nth > 1;
  IF v_index IS NOT NULL THEN
    PERFORM app.fail('MC400', 'stage_key_duplicate', 'each stage of a pipeline needs its own key',
      format('stages[%s].key', v_index));
  END IF;
  PERFORM 1 FROM crm.organizations o WHERE o.id = v_org FOR NO KEY UPDATE;
  INSERT INTO crm.pipelines (organization_id, name, position)
  VALUES (v_org, app.trim_space(p_name),
          (SELECT coalesce(max(p.position), 0) + 1 FROM crm.pipelines p WHERE p.organization_id = v_org))
  RETURNING * INTO v_pipeline;
  BEGIN
    FOR v_stage, v_index IN SELECT x.e, (x.o - 1)::int FROM jsonb_array_elements(p_stages) WITH ORDINALITY AS x (e, o) ORDER BY x.o LOOP
      INSERT INTO crm.pipeline_stages (organization_id, pipeline_id, key, name, position, probability)
      VALUES (v_org, v_pipeline.id, v_stage ->> 'key', app.trim_space(v_stage ->> 'name'), v_index + 1,
              (v_stage ->> 'probability')::int);
    END LOOP;
  EXCEPTION WHEN integrity_constraint_violation OR data_exception THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_constraint = CONSTRAINT_NAME,
                            v_column = COLUMN_NAME, v_message = MESSAGE_TEXT;
    RAISE EXCEPTION USING ERRCODE = v_state, MESSAGE = v_message, CONSTRAINT = v_constraint,
      COLUMN = format('stages[%s]', v_index) || coalesce('.' || coalesce(
        substring(v_constraint FROM '^pipeline_stages_(.+)_(invalid|taken)$'), nullif(v_column, '')), '');
  END;
  RETURN app.pipeline_json(v_pipeline);
END
$$;

-- PATCH: a new name and/or position (1..n; the pipelines in between shift).
-- p_if_match: If-Match's versions, checked under the pipeline's row lock
-- (28_versions.sql).
CREATE OR REPLACE FUNCTION api.pipelines_update(p_id uuid, p_name text DEFAULT NULL, p_position int DEFAULT NULL,
    p_if_match int[] DEFAULT NULL)
  RETURNS jsonb LANGUAGE plpgsql
  AS $$
DECLARE
  v_org uuid := app.org_id();
  v_old int;
  v_version int;
  v_count int;
  v_pipeline crm.pipelines;
BEGIN
  PERFORM app.require_admin();
  PERFORM 1 FROM crm.organizations o WHERE o.id = v_org FOR NO KEY UPDATE;
  SELECT p.position, p.version INTO v_old, v_version FROM crm.pipelines p
   WHERE p.organization_id = v_org AND p.id = p_id FOR UPDATE;
  IF NOT FOUND THEN
    PERFORM app.fail('MC404', 'pipeline_not_found', 'pipeline not found');
  END IF;
  PERFORM app.require_if_match('pipeline', v_version, p_if_match);
  IF p_position IS DISTINCT FROM v_old AND p_position IS NOT NULL THEN
    SELECT count(*)::int INTO v_count FROM crm.pipelines p WHERE p.organization_id = v_org;
    IF p_position NOT BETWEEN 1 AND v_count THEN
      PERFORM app.fail('MC400', 'position_out_of_range', format('position must be between 1 and %s', v_count), 'position');
    END IF;
    -- The new name in the same statement: one UPDATE of the row, one version.
    UPDATE crm.pipelines p
       SET position = CASE WHEN p.id = p_id THEN p_position
                           WHEN v_old < p_position THEN p.position - 1 ELSE p.position + 1 END,
           name = CASE WHEN p.id = p_id THEN coalesce(app.trim_space(p_name), p.name) ELSE p.name END
     WHERE p.organization_id = v_org AND p.position BETWEEN least(v_old, p_position) AND greatest(v_old, p_position);
    SELECT * INTO v_pipeline FROM crm.pipelines p WHERE p.organization_id = v_org AND p.id = p_id;
  ELSE
    UPDATE crm.pipelines p SET name = coalesce(app.trim_space(p_name), p.name)
     WHERE p.organization_id = v_org AND p.id = p_id
    RETURNING * INTO v_pipeline;
  END IF;
  RETURN app.pipeline_json(v_pipeline);
END
$$;

-- 409 last_pipeline and pipeline_has_deals come from the guard. The foreign
-- key from deals to their stages is the backstop: a violation here means a
-- deal entered the pipeline without the lock, and gets the same answer.
CREATE OR REPLACE FUNCTION api.pipelines_delete(p_id uuid, p_if_match int[] DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_org uuid := app.org_id();
  v_position int;
  v_version int;
BEGIN
  PERFORM app.require_admin();
  PERFORM 1 FROM crm.organizations o WHERE o.id = v_org FOR NO KEY UPDATE;
  SELECT p.position, p.version INTO v_position, v_version FROM crm.pipelines p
   WHERE p.organization_id = v_org AND p.id = p_id FOR UPDATE;
  IF NOT FOUND THEN
    PERFORM app.fail('MC404', 'pipeline_not_found', 'pipeline not found');
  END IF;
  PERFORM app.require_if_match('pipeline', v_version, p_if_match);
  BEGIN
    DELETE FROM crm.pipelines p WHERE p.organization_id = v_org AND p.id = p_id;
  EXCEPTION WHEN foreign_key_violation THEN
    PERFORM app.fail('MC409', 'pipeline_has_deals', 'the pipeline holds deals; move or delete them first');
  END;
  UPDATE crm.pipelines p SET position = p.position - 1 WHERE p.organization_id = v_org AND p.position > v_position;
END
$$;

-- Locks the pipeline for a change of its stages; 404 if it is not this
-- organization's, 412 if p_if_match (the pipeline's If-Match: a stage is
-- part of the pipeline resource) does not name its version.
CREATE OR REPLACE FUNCTION app.pipeline_lock(p_id uuid, p_if_match int[] DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_version int;
BEGIN
  SELECT p.version INTO v_version FROM crm.pipelines p
   WHERE p.organization_id = (SELECT app.org_id()) AND p.id = p_id FOR UPDATE;
  IF NOT FOUND THEN
    PERFORM app.fail('MC404', 'pipeline_not_found', 'pipeline not found');
  END IF;
  PERFORM app.require_if_match('pipeline', v_version, p_if_match);
END
$$;

-- The pipeline after a change of its stages. The stages' trigger
-- (28_versions.sql) has moved its updated_at and version, once; a PATCH that
-- changed nothing leaves both.
CREATE OR REPLACE FUNCTION app.pipeline_touched(p_id uuid) RETURNS jsonb
  LANGUAGE sql
  AS $$
    SELECT app.pipeline_json(p) FROM crm.pipelines p WHERE p.organization_id = (SELECT app.org_id()) AND p.id = p_id
  $$;

-- A new stage at p_position (1..n+1, default last); the later stages shift.
CREATE OR REPLACE FUNCTION api.pipeline_stages_create(p_pipeline_id uuid, p_key text, p_name text, p_probability int,
    p_position int DEFAULT NULL, p_if_match int[] DEFAULT NULL)
  RETURNS jsonb LANGUAGE plpgsql
  AS $$
DECLARE
  v_org uuid := app.org_id();
  v_count int;
  v_position int;
BEGIN
  PERFORM app.require_admin();
  PERFORM app.pipeline_lock(p_pipeline_id, p_if_match);
  SELECT count(*)::int INTO v_count FROM crm.pipeline_stages s WHERE s.organization_id = v_org AND s.pipeline_id = p_pipeline_id;
  v_position := coalesce(p_position, v_count + 1);
  IF v_position NOT BETWEEN 1 AND v_count + 1 THEN
    PERFORM app.fail('MC400', 'position_out_of_range', format('position must be between 1 and %s', v_count + 1), 'position');
  END IF;
  UPDATE crm.pipeline_stages s SET position = s.position + 1
   WHERE s.organization_id = v_org AND s.pipeline_id = p_pipeline_id AND s.position >= v_position;
  INSERT INTO crm.pipeline_stages (organization_id, pipeline_id, key, name, position, probability)
  VALUES (v_org, p_pipeline_id, p_key, app.trim_space(p_name), v_position, p_probability);
  RETURN app.pipeline_touched(p_pipeline_id);
END
$$;

-- PATCH a stage: name, probability and/or position (1..n; the stages in
-- between shift). Its key never changes.
CREATE OR REPLACE FUNCTION api.pipeline_stages_update(p_pipeline_id uuid, p_key text, p_name text DEFAULT NULL,
    p_probability int DEFAULT NULL, p_position int DEFAULT NULL, p_if_match int[] DEFAULT NULL)
  RETURNS jsonb LANGUAGE plpgsql
  AS $$
DECLARE
  v_org uuid := app.org_id();
  v_old int;
  v_count int;
BEGIN
  PERFORM app.require_admin();
  PERFORM app.pipeline_lock(p_pipeline_id, p_if_match);
  SELECT s.position INTO v_old FROM crm.pipeline_stages s
   WHERE s.organization_id = v_org AND s.pipeline_id = p_pipeline_id AND s.key = p_key;
  IF NOT FOUND THEN
    PERFORM app.fail('MC404', 'stage_not_found', 'the pipeline has no such stage', 'key');
  END IF;
  IF p_position IS DISTINCT FROM v_old AND p_position IS NOT NULL THEN
    SELECT count(*)::int INTO v_count FROM crm.pipeline_stages s WHERE s.organization_id = v_org AND s.pipeline_id = p_pipeline_id;
    IF p_position NOT BETWEEN 1 AND v_count THEN
      PERFORM app.fail('MC400', 'position_out_of_range', format('position must be between 1 and %s', v_count), 'position');
    END IF;
    UPDATE crm.pipeline_stages s
       SET position = CASE WHEN s.key = p_key THEN p_position
                           WHEN v_old < p_position THEN s.position - 1 ELSE s.position + 1 END
     WHERE s.organization_id = v_org AND s.pipeline_id = p_pipeline_id
       AND s.position BETWEEN least(v_old, p_position) AND greatest(v_old, p_position);
  END IF;
  IF p_name IS NOT NULL OR p_probability IS NOT NULL THEN
    UPDATE crm.pipeline_stages s
       SET name = coalesce(app.trim_space(p_name), s.name), probability = coalesce(p_probability, s.probability)
     WHERE s.organization_id = v_org AND s.pipeline_id = p_pipeline_id AND s.key = p_key;
  END IF;
  RETURN app.pipeline_touched(p_pipeline_id);
END
$$;

-- 409 last_stage and stage_has_deals come from the guard; the foreign key is
-- the backstop (see api.pipelines_delete).
CREATE OR REPLACE FUNCTION api.pipeline_stages_delete(p_pipeline_id uuid, p_key text, p_if_match int[] DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_org uuid := app.org_id();
  v_position int;
BEGIN
  PERFORM app.require_admin();
  PERFORM app.pipeline_lock(p_pipeline_id, p_if_match);
  SELECT s.position INTO v_position FROM crm.pipeline_stages s
   WHERE s.organization_id = v_org AND s.pipeline_id = p_pipeline_id AND s.key = p_key;
  IF NOT FOUND THEN
    PERFORM app.fail('MC404', 'stage_not_found', 'the pipeline has no such stage', 'key');
  END IF;
  BEGIN
    DELETE FROM crm.pipeline_stages s WHERE s.organization_id = v_org AND s.pipeline_id = p_pipeline_id AND s.key = p_key;
  EXCEPTION WHEN foreign_key_violation THEN
    PERFORM app.fail('MC409', 'stage_has_deals', format('the stage %s holds deals; move them first', p_key));
  END;
  UPDATE crm.pipeline_stages s SET position = s.position - 1
   WHERE s.organization_id = v_org AND s.pipeline_id = p_pipeline_id AND s.position > v_position;
END
$$;
