-- The pipeline's rules (SPEC §3 role table, §4 R1–R9, §9), as triggers, so they
-- hold for every writer: the API, and a DBA in psql acting under app.act_as.
-- Role checks apply when there is an acting role; the timeline rows are
-- written here, in the same transaction as the change, authored by the actor.

-- A member may only touch records they own, and may not give records to others.
CREATE OR REPLACE FUNCTION app.require_record_owner(p_owner_id uuid, p_what text) RETURNS void
  LANGUAGE plpgsql STABLE
  AS $$
BEGIN
  IF app.role() = 'member' AND p_owner_id IS DISTINCT FROM app.user_id() THEN
    PERFORM app.fail('MC403', 'role_forbidden', format('members may only %s their own records', p_what), 'owner_id');
  END IF;
END
$$;

-- Is the organization still there? (Not, while it is being deleted: its rows
-- then go by cascade and the per-row rules do not apply.)
CREATE OR REPLACE FUNCTION app.organization_exists(p_org_id uuid) RETURNS boolean
  LANGUAGE sql STABLE
  AS $$ SELECT EXISTS (SELECT 1 FROM crm.organizations WHERE id = p_org_id) $$;

-- Erasing for good (a DELETE: DELETE /trash/..., or a DBA's) is for owners
-- and admins; without an acting role (the owner's maintenance, the purge)
-- the rule does not apply.
CREATE OR REPLACE FUNCTION app.require_eraser() RETURNS void
  LANGUAGE plpgsql STABLE
  AS $$
BEGIN
  IF app.role() IS NOT NULL AND app.role() NOT IN ('owner', 'admin') THEN
    PERFORM app.fail('MC403', 'role_forbidden', 'only an owner or admin may erase records for good');
  END IF;
END
$$;

-- Is the parent in the trash? Read under a share lock: trashing it is an
-- UPDATE, whose row lock does not conflict with the key-share lock of the
-- child's foreign key, so without it a task could be created (or restored)
-- on a deal that a concurrent transaction is trashing, and stay out of the
-- trash with a trashed deal. The share lock makes the two wait for each
-- other: the later one's rule then sees the earlier one's row (a statement
-- of a trigger function takes a fresh snapshot). Missing: false (the
-- foreign key answers).
CREATE OR REPLACE FUNCTION app.contact_in_trash(p_org_id uuid, p_id uuid) RETURNS boolean
  LANGUAGE plpgsql
  AS $$
DECLARE
  v timestamptz;
BEGIN
  SELECT c.deleted_at INTO v FROM crm.contacts c WHERE c.organization_id = p_org_id AND c.id = p_id FOR SHARE;
  RETURN v IS NOT NULL;
END
$$;

CREATE OR REPLACE FUNCTION app.deal_in_trash(p_org_id uuid, p_id uuid) RETURNS boolean
  LANGUAGE plpgsql
  AS $$
DECLARE
  v timestamptz;
BEGIN
  SELECT d.deleted_at INTO v FROM crm.deals d WHERE d.organization_id = p_org_id AND d.id = p_id FOR SHARE;
  RETURN v IS NOT NULL;
END
$$;

-- Trashing or restoring (deleted_at set or cleared), rather than a change:
-- the delete rules of SPEC §3 apply, and deleted_by is the actor's.
CREATE OR REPLACE FUNCTION app.trash_flip(p_old timestamptz, p_new timestamptz) RETURNS boolean
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT (p_old IS NULL) <> (p_new IS NULL) $$;

-- contacts ---------------------------------------------------------------------

CREATE OR REPLACE FUNCTION private.contacts_rules() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    IF NOT app.organization_exists(OLD.organization_id) THEN
      RETURN OLD;
    END IF;
    PERFORM app.require_eraser();
    -- Erasing: deals in the trash count too (they still reference it; they
    -- are erased first, or restored elsewhere).
    IF EXISTS (SELECT 1 FROM crm.deals d WHERE d.organization_id = OLD.organization_id AND d.contact_id = OLD.id) THEN
      PERFORM app.fail('MC409', 'contact_has_deals', 'the contact has deals and cannot be deleted');
    END IF;
    RETURN OLD;
  END IF;
  IF TG_OP = 'UPDATE' AND app.trash_flip(OLD.deleted_at, NEW.deleted_at) THEN
    PERFORM app.require_record_owner(OLD.owner_id, CASE WHEN NEW.deleted_at IS NULL THEN 'restore' ELSE 'delete' END);
    -- R2: deals that are not in the trash.
    IF NEW.deleted_at IS NOT NULL AND EXISTS (SELECT 1 FROM crm.deals d
         WHERE d.organization_id = OLD.organization_id AND d.contact_id = OLD.id AND d.deleted_at IS NULL) THEN
      PERFORM app.fail('MC409', 'contact_has_deals', 'the contact has deals and cannot be deleted');
    END IF;
    NEW.deleted_by := CASE WHEN NEW.deleted_at IS NOT NULL THEN coalesce(app.user_id(), NEW.deleted_by) END;
  ELSIF TG_OP = 'UPDATE' THEN
    PERFORM app.require_record_owner(OLD.owner_id, 'change');
    NEW.updated_at := now();
  END IF;
  PERFORM app.require_record_owner(NEW.owner_id, 'create or hold');
  RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS contacts_rules ON crm.contacts;
CREATE TRIGGER contacts_rules BEFORE INSERT OR UPDATE OR DELETE ON crm.contacts
  FOR EACH ROW EXECUTE FUNCTION private.contacts_rules();

-- deals --------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION private.deals_rules() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_to int;
  v_from int;
BEGIN
  IF TG_OP = 'DELETE' THEN
    IF app.organization_exists(OLD.organization_id) THEN
      PERFORM app.require_eraser();
    END IF;
    RETURN OLD;
  END IF;
  -- The order of the refusals: a member touching another's deal, creating
  -- for someone else; then the deal's place (R5 among it); then handing an
  -- existing deal to someone else.
  IF TG_OP = 'UPDATE' AND app.trash_flip(OLD.deleted_at, NEW.deleted_at) THEN
    PERFORM app.require_record_owner(OLD.owner_id, CASE WHEN NEW.deleted_at IS NULL THEN 'restore' ELSE 'delete' END);
    IF NEW.deleted_at IS NULL AND app.contact_in_trash(NEW.organization_id, NEW.contact_id) THEN
      PERFORM app.fail('MC409', 'parent_in_trash', 'the deal''s contact is in the trash: restore it first', 'contact_id');
    END IF;
    NEW.deleted_by := CASE WHEN NEW.deleted_at IS NOT NULL THEN coalesce(app.user_id(), NEW.deleted_by) END;
  ELSIF TG_OP = 'UPDATE' THEN
    PERFORM app.require_record_owner(OLD.owner_id, 'change');
    NEW.updated_at := now();
  ELSE
    PERFORM app.require_record_owner(NEW.owner_id, 'create or hold');
  END IF;
  -- A contact in the trash is not found, as a missing one (its foreign key).
  IF NEW.deleted_at IS NULL AND (TG_OP = 'INSERT' OR NEW.contact_id IS DISTINCT FROM OLD.contact_id)
     AND app.contact_in_trash(NEW.organization_id, NEW.contact_id) THEN
    PERFORM app.fail('MC404', 'deals_contact_id_not_found', 'a referenced record does not exist', 'contact_id');
  END IF;
  -- The deal's place (SPEC §9), when it is new or moves. Without a pipeline
  -- a new deal goes to the organization's first; without a stage (also on a
  -- move to another pipeline: the API sends none), to the pipeline's first.
  -- The key-share lock on the pipeline waits for a reorder or a stage delete
  -- in progress (they lock it FOR UPDATE), so the positions read here are
  -- settled, and a stage cannot vanish between this check and the commit.
  IF TG_OP = 'INSERT' OR NEW.pipeline_id IS DISTINCT FROM OLD.pipeline_id OR NEW.stage IS DISTINCT FROM OLD.stage THEN
    IF NEW.pipeline_id IS NULL AND TG_OP = 'INSERT' THEN
      SELECT p.id INTO NEW.pipeline_id FROM crm.pipelines p
       WHERE p.organization_id = NEW.organization_id ORDER BY p.position LIMIT 1;
    END IF;
    PERFORM 1 FROM crm.pipelines p WHERE p.organization_id = NEW.organization_id AND p.id = NEW.pipeline_id FOR KEY SHARE;
    IF NOT FOUND THEN
      PERFORM app.fail('MC404', 'pipeline_not_found', 'pipeline not found', 'pipeline_id');
    END IF;
    IF NEW.stage IS NULL THEN
      SELECT s.key INTO NEW.stage FROM crm.pipeline_stages s
       WHERE s.organization_id = NEW.organization_id AND s.pipeline_id = NEW.pipeline_id ORDER BY s.position LIMIT 1;
    END IF;
    SELECT s.position INTO v_to FROM crm.pipeline_stages s
     WHERE s.organization_id = NEW.organization_id AND s.pipeline_id = NEW.pipeline_id AND s.key = NEW.stage;
    IF NOT FOUND THEN
      PERFORM app.fail('MC400', 'stage_not_in_pipeline', format('the pipeline has no stage %s', NEW.stage), 'stage');
    END IF;
    -- R5: within a pipeline, forward moves (skipping allowed) are free;
    -- backwards (a lower position) only for owner/admin. Moving to another
    -- pipeline is no step back.
    IF TG_OP = 'UPDATE' AND NEW.pipeline_id = OLD.pipeline_id AND app.role() IS NOT NULL
       AND app.role() NOT IN ('owner', 'admin') THEN
      SELECT s.position INTO v_from FROM crm.pipeline_stages s
       WHERE s.organization_id = OLD.organization_id AND s.pipeline_id = OLD.pipeline_id AND s.key = OLD.stage;
      IF v_to < v_from THEN
        PERFORM app.fail('MC403', 'stage_rollback_forbidden',
          format('only an owner or admin may move a deal back from %s to %s', OLD.stage, NEW.stage), 'stage');
      END IF;
    END IF;
  END IF;
  IF TG_OP = 'UPDATE' THEN
    PERFORM app.require_record_owner(NEW.owner_id, 'create or hold');
  END IF;
  -- Store money with two decimals (400 → 400.00); more decimals are left for
  -- the deals_amount_invalid check to refuse.
  IF NEW.amount = round(NEW.amount, 2) THEN
    NEW.amount := round(NEW.amount, 2);
  END IF;
  -- R1
  IF NEW.status = 'won' AND NEW.amount <= 0 THEN
    PERFORM app.fail('MC400', 'deal_won_requires_amount', 'a won deal needs an amount greater than 0',
      CASE WHEN TG_OP = 'UPDATE' AND OLD.status = 'won' THEN 'amount' ELSE 'status' END);
  END IF;
  RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS deals_rules ON crm.deals;
CREATE TRIGGER deals_rules BEFORE INSERT OR UPDATE OR DELETE ON crm.deals
  FOR EACH ROW EXECUTE FUNCTION private.deals_rules();

-- R6 and the creation event: the deal's timeline.
CREATE OR REPLACE FUNCTION private.deals_timeline() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO crm.activities (organization_id, deal_id, author_id, type, payload)
    VALUES (NEW.organization_id, NEW.id, app.user_id(), 'system',
            jsonb_build_object('event', 'deal_created', 'status', NEW.status, 'pipeline_id', NEW.pipeline_id,
                               'stage', NEW.stage));
    RETURN NULL;
  END IF;
  IF NEW.status IS DISTINCT FROM OLD.status THEN
    INSERT INTO crm.activities (organization_id, deal_id, author_id, type, payload)
    VALUES (NEW.organization_id, NEW.id, app.user_id(), 'status_changed',
            jsonb_build_object('from', OLD.status, 'to', NEW.status));
  END IF;
  -- A move to another pipeline is one event, whatever the stage keys (SPEC §9).
  IF NEW.pipeline_id IS DISTINCT FROM OLD.pipeline_id THEN
    INSERT INTO crm.activities (organization_id, deal_id, author_id, type, payload)
    VALUES (NEW.organization_id, NEW.id, app.user_id(), 'pipeline_changed',
            jsonb_build_object('from', jsonb_build_object('pipeline_id', OLD.pipeline_id, 'stage', OLD.stage),
                               'to', jsonb_build_object('pipeline_id', NEW.pipeline_id, 'stage', NEW.stage)));
  ELSIF NEW.stage IS DISTINCT FROM OLD.stage THEN
    INSERT INTO crm.activities (organization_id, deal_id, author_id, type, payload)
    VALUES (NEW.organization_id, NEW.id, app.user_id(), 'stage_changed',
            jsonb_build_object('from', OLD.stage, 'to', NEW.stage));
  END IF;
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS deals_timeline ON crm.deals;
CREATE TRIGGER deals_timeline AFTER INSERT OR UPDATE OF status, stage, pipeline_id ON crm.deals
  FOR EACH ROW EXECUTE FUNCTION private.deals_timeline();

-- tasks (a task belongs to its deal's owner) -------------------------------------

CREATE OR REPLACE FUNCTION app.deal_owner(p_org_id uuid, p_deal_id uuid) RETURNS uuid
  LANGUAGE sql STABLE
  AS $$ SELECT owner_id FROM crm.deals WHERE organization_id = p_org_id AND id = p_deal_id $$;

CREATE OR REPLACE FUNCTION private.tasks_rules() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    -- A missing deal means the deal is being erased and takes its tasks
    -- along (its own erase was checked).
    IF app.deal_owner(OLD.organization_id, OLD.deal_id) IS NOT NULL THEN
      PERFORM app.require_eraser();
    END IF;
    RETURN OLD;
  END IF;
  IF TG_OP = 'UPDATE' AND app.trash_flip(OLD.deleted_at, NEW.deleted_at) THEN
    PERFORM app.require_record_owner(app.deal_owner(OLD.organization_id, OLD.deal_id),
                                     CASE WHEN NEW.deleted_at IS NULL THEN 'restore tasks of' ELSE 'delete tasks of' END);
    IF NEW.deleted_at IS NULL AND app.deal_in_trash(NEW.organization_id, NEW.deal_id) THEN
      PERFORM app.fail('MC409', 'parent_in_trash', 'the task''s deal is in the trash: restore it first', 'deal_id');
    END IF;
    NEW.deleted_by := CASE WHEN NEW.deleted_at IS NOT NULL THEN coalesce(app.user_id(), NEW.deleted_by) END;
    NEW.deleted_with_deal := NEW.deleted_at IS NOT NULL AND NEW.deleted_with_deal;
    RETURN NEW;
  END IF;
  IF TG_OP = 'UPDATE' THEN
    PERFORM app.require_record_owner(app.deal_owner(OLD.organization_id, OLD.deal_id), 'change tasks of');
    NEW.updated_at := now();
  END IF;
  -- A deal in the trash is not found, as a missing one (its foreign key).
  IF NEW.deleted_at IS NULL AND (TG_OP = 'INSERT' OR NEW.deal_id IS DISTINCT FROM OLD.deal_id)
     AND app.deal_in_trash(NEW.organization_id, NEW.deal_id) THEN
    PERFORM app.fail('MC404', 'tasks_deal_id_not_found', 'a referenced record does not exist', 'deal_id');
  END IF;
  -- R3 (a deal of another organization is not found here; its foreign key answers).
  IF app.role() = 'member' AND app.deal_owner(NEW.organization_id, NEW.deal_id) IS DISTINCT FROM app.user_id()
     AND app.deal_owner(NEW.organization_id, NEW.deal_id) IS NOT NULL THEN
    PERFORM app.fail('MC403', 'deal_not_owned', 'members may only add tasks to their own deals', 'deal_id');
  END IF;
  -- R4: not in the past (today, UTC, is allowed), on create and when changed.
  IF (TG_OP = 'INSERT' OR NEW.due_date IS DISTINCT FROM OLD.due_date)
     AND NEW.due_date < (now() AT TIME ZONE 'UTC')::date THEN
    PERFORM app.fail('MC400', 'tasks_due_date_past', 'due_date cannot be in the past', 'due_date');
  END IF;
  RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS tasks_rules ON crm.tasks;
CREATE TRIGGER tasks_rules BEFORE INSERT OR UPDATE OR DELETE ON crm.tasks
  FOR EACH ROW EXECUTE FUNCTION private.tasks_rules();

-- R7
CREATE OR REPLACE FUNCTION private.tasks_timeline() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  INSERT INTO crm.activities (organization_id, deal_id, author_id, type, payload)
  VALUES (NEW.organization_id, NEW.deal_id, app.user_id(), 'task_created',
          jsonb_build_object('task_id', NEW.id, 'title', NEW.title, 'due_date', NEW.due_date));
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS tasks_timeline ON crm.tasks;
CREATE TRIGGER tasks_timeline AFTER INSERT ON crm.tasks
  FOR EACH ROW EXECUTE FUNCTION private.tasks_timeline();

-- activities -------------------------------------------------------------------------

-- R9: written directly (trigger depth 1, not by the timeline triggers above),
-- an activity can only be a comment with a non-empty text, by the actor. A
-- text of nothing but Unicode White_Space (app.trim_space) is empty. The
-- text itself is kept as written.
CREATE OR REPLACE FUNCTION private.activities_rules() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF pg_trigger_depth() = 1 THEN
    IF NEW.type <> 'comment' THEN
      PERFORM app.fail('MC400', 'activity_type_forbidden', 'only comment activities can be created', 'type');
    END IF;
    IF jsonb_typeof(NEW.payload -> 'text') IS DISTINCT FROM 'string' OR app.trim_space(NEW.payload ->> 'text') = '' THEN
      PERFORM app.fail('MC400', 'comment_text_required', 'a comment needs a non-empty text', 'payload.text');
    END IF;
    IF app.user_id() IS NOT NULL THEN
      NEW.author_id := app.user_id();
    END IF;
    -- A deal in the trash is not found, as a missing one (its foreign key).
    IF EXISTS (SELECT 1 FROM crm.deals d WHERE d.organization_id = NEW.organization_id
                  AND d.id = NEW.deal_id AND d.deleted_at IS NOT NULL) THEN
      PERFORM app.fail('MC404', 'activities_deal_id_not_found', 'a referenced record does not exist', 'deal_id');
    END IF;
  END IF;
  RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS activities_rules ON crm.activities;
CREATE TRIGGER activities_rules BEFORE INSERT ON crm.activities
  FOR EACH ROW EXECUTE FUNCTION private.activities_rules();
