-- The event triggers (SPEC §13; the table is in sql/migrations/V20__events.sql;
-- README "Events and record history"): every committed change to a contact,
-- deal, task, activity, pipeline or member writes exactly one row of
-- crm.events, in the same transaction as the change, whoever makes it (the
-- API, a DBA in psql under app.act_as or with no context at all).
--
-- data.object is the record as the API shows it (the same JSON builders as
-- the responses) after the change, before it for a deletion; data.previous
-- is, for an *.updated, the old values of the fields whose value changed
-- (private.event_previous), null otherwise.
--
-- Statement-level AFTER triggers with transition tables, not row triggers:
-- one INSERT … SELECT per statement whatever its size, so a 100-item batch
-- or the CSV import's one INSERT and one UPDATE of 50,000 contacts write
-- their events in one statement each, and the JSON is built in the
-- executor rather than one PL/pgSQL call per row (docs/benchmarks.md,
-- "The cost of the event triggers"). PostgreSQL allows transition tables
-- only on a trigger of a single event, hence one trigger (and, for
-- plpgsql_check, one function) per table and command. AFTER triggers see
-- only the rows written: a write a rule trigger refused (they are BEFORE
-- triggers and raise) writes no event, and a rolled-back statement or
-- transaction takes its events with it.
--
-- SECURITY DEFINER (the request role has no INSERT on crm.events, so no
-- client can forge an event); the definer inserts under the policy
-- events_definer_insert (sql/policies/tenancy.sql), so a superuser's
-- change in psql with no context writes its event too. actor_id is
-- app.user_id(): null with no user (the maintenance, a DBA without
-- app.act_as).
--
-- Deletions: DELETE of a record in the trash (DELETE /trash/…, the
-- retention's purge) writes nothing: it was *.deleted when it went to the
-- trash, and its history ends there. DELETE of a live record (an owner in
-- psql; a live task erased along with its deal) is a *.deleted. When an
-- organization is deleted, nothing is written: its events go with it
-- (organizations_events_delete below), and an event written for its
-- cascaded rows would point at an organization that no longer exists.

-- The old values of the fields that changed between two JSON shapes of one
-- record, key by key. updated_at and version are left out: they change on
-- every update, so they say nothing about what changed (the old version is
-- always the object's version − 1, the old updated_at the occurred_at of the
-- record's previous event). An UPDATE that changed nothing else still
-- writes its event, with previous {}: its version moved, so its ETag did.
--
-- One text, two uses (both made in the DO block of the contacts', deals'
-- and tasks' triggers below): the function private.event_previous, which
-- the pipelines' and members' events call, and a subquery inlined into
-- those three UPDATE triggers. They do not call the function: a SQL
-- function that aggregates cannot be inlined, and PostgreSQL parses and
-- plans such a function's body anew in every run of a statement that calls
-- it (the parsed body lives in that run's executor state), which was a
-- third of the cost of W4's deal.updated (bench/w4events-notes.md).
-- Inlined, the diff is planned once per session with the trigger's
-- statement.

-- The organizations being deleted in this transaction (a transaction-local
-- list, kept by organizations_events_off below): their cascaded rows write
-- no event.
CREATE OR REPLACE FUNCTION private.events_off(p_org uuid) RETURNS boolean
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT position(p_org::text IN coalesce(current_setting('app.organizations_deleted', true), '')) > 0 $$;

CREATE OR REPLACE FUNCTION private.organizations_events_off() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM set_config('app.organizations_deleted',
                     concat_ws(',', nullif(current_setting('app.organizations_deleted', true), ''), OLD.id), true);
  RETURN OLD;
END
$$;

DROP TRIGGER IF EXISTS organizations_events_off ON crm.organizations;
CREATE TRIGGER organizations_events_off BEFORE DELETE ON crm.organizations
  FOR EACH ROW EXECUTE FUNCTION private.organizations_events_off();

-- And its events go with it: crm.events has no foreign key to the
-- organization (V26 says why), so this deletes them, under the policy
-- events_organization_deleted (sql/policies/tenancy.sql), which admits the
-- events of the organizations in the list above whatever the context (an
-- owner's DELETE through the API, a DBA's in psql with none).
CREATE OR REPLACE FUNCTION private.organizations_events_delete() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
BEGIN
  DELETE FROM crm.events e WHERE e.organization_id = OLD.id;
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS organizations_events_delete ON crm.organizations;
CREATE TRIGGER organizations_events_delete AFTER DELETE ON crm.organizations
  FOR EACH ROW EXECUTE FUNCTION private.organizations_events_delete();

-- Contacts, deals and tasks: the same three functions each, made from one
-- text (%1$s the table, %2$s the resource type, %3$s its JSON builder).
--
-- The UPDATE's function pairs each new row with its old one. The API's
-- writes change one row per statement: then the two transition tables hold
-- one row each, necessarily the same record, and the function takes the
-- pair as it is (a cross join of one row by one row), in a statement that
-- PL/pgSQL plans once per session. A statement that changed several rows (a
-- batch, the CSV import's 50,000-row UPDATE, a deal's tasks going to the
-- trash with it) joins them on the key in a statement run by EXECUTE, so
-- that it is planned for its own row counts: PL/pgSQL keeps the plan of a
-- static statement's first run for the session, and a join planned for the
-- one-row updates of the API would take the 50,000 rows of an import by a
-- nested loop (2.5 billion comparisons). A statement that changed nothing
-- writes nothing and plans nothing. The count is one small query more per
-- call; the one-row statement needs no join and no planner setting. (The
-- version before joined the two tables for every size under SET
-- enable_nestloop = off: a configuration change per call and a hash table
-- built for one row, bench/w4events-notes.md.)
--
-- The JSON of both rows is built once each (OFFSET 0 keeps the planner from
-- copying the builders into every place that reads j.old and j.new), and
-- the diff runs for an *.updated only.
--
-- An UPDATE that sets deleted_at is a *.deleted (object: the record
-- before), one that clears it a *.restored, any other an *.updated; a task
-- trashed or restored along with its deal is a task.deleted /
-- task.restored of its own (every change is an event).
DO $do$
DECLARE
  r record;
  -- private.event_previous's body: %1$s the old JSON, %2$s the new.
  v_diff text := $d$SELECT coalesce(jsonb_object_agg(f.key, f.value), '{}') FROM jsonb_each(%1$s) f
     WHERE f.key NOT IN ('updated_at', 'version') AND (%2$s -> f.key) IS DISTINCT FROM f.value$d$;
  -- The UPDATE's INSERT; %%s is the FROM clause that pairs n (new) with o (old).
  v_update text;
BEGIN
  EXECUTE format($f$
    CREATE OR REPLACE FUNCTION private.event_previous(p_old jsonb, p_new jsonb) RETURNS jsonb
      LANGUAGE sql IMMUTABLE PARALLEL SAFE
      AS $$ %s $$
  $f$, format(v_diff, 'p_old', 'p_new'));
  FOR r IN SELECT * FROM (VALUES ('contacts', 'contact', 'app.contact_json'), ('deals', 'deal', 'app.deal_json'),
                                 ('tasks', 'task', 'app.task_json')) AS t (tab, res, json) LOOP
    v_update := format($u$
        INSERT INTO crm.events (organization_id, type, actor_id, resource_type, resource_id, data)
        SELECT n.organization_id, '%1$s.' || k.kind, app.user_id(), '%1$s', n.id,
               jsonb_build_object('object', CASE k.kind WHEN 'deleted' THEN j.old ELSE j.new END,
                                  'previous', CASE k.kind WHEN 'updated' THEN (%3$s) END)
          %%s
         CROSS JOIN LATERAL (SELECT CASE WHEN o.deleted_at IS NULL AND n.deleted_at IS NOT NULL THEN 'deleted'
                                         WHEN o.deleted_at IS NOT NULL AND n.deleted_at IS NULL THEN 'restored'
                                         ELSE 'updated' END AS kind) k
         CROSS JOIN LATERAL (SELECT %2$s(o) AS old, %2$s(n) AS new OFFSET 0) j$u$,
      r.res, r.json, format(v_diff, 'j.old', 'j.new'));
    EXECUTE format($f$
      CREATE OR REPLACE FUNCTION private.%1$s_events_insert() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
        AS $$
      BEGIN
        INSERT INTO crm.events (organization_id, type, actor_id, resource_type, resource_id, data)
        SELECT n.organization_id, '%2$s.created', app.user_id(), '%2$s', n.id,
               jsonb_build_object('object', %3$s(n), 'previous', NULL)
          FROM new_rows n;
        RETURN NULL;
      END
      $$;

      CREATE OR REPLACE FUNCTION private.%1$s_events_update() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
        AS $$
      DECLARE
        v_rows bigint := (SELECT count(*) FROM new_rows);
      BEGIN
        IF v_rows = 1 THEN
          %4$s;
        ELSIF v_rows > 1 THEN
          EXECUTE %5$L;
        END IF;
        RETURN NULL;
      END
      $$;

      CREATE OR REPLACE FUNCTION private.%1$s_events_delete() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
        AS $$
      BEGIN
        INSERT INTO crm.events (organization_id, type, actor_id, resource_type, resource_id, data)
        SELECT o.organization_id, '%2$s.deleted', app.user_id(), '%2$s', o.id,
               jsonb_build_object('object', %3$s(o), 'previous', NULL)
          FROM old_rows o
         WHERE o.deleted_at IS NULL AND NOT private.events_off(o.organization_id);
        RETURN NULL;
      END
      $$;
    $f$, r.tab, r.res, r.json,
      format(v_update, 'FROM new_rows n CROSS JOIN old_rows o'),
      format(v_update, 'FROM new_rows n JOIN old_rows o ON o.organization_id = n.organization_id AND o.id = n.id'));
  END LOOP;
END
$do$;

-- Activities are never updated or deleted through the API (they go with
-- their deal): activity.created only, for comments and the automatic
-- timeline rows alike.
CREATE OR REPLACE FUNCTION private.activities_events_insert() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
BEGIN
  INSERT INTO crm.events (organization_id, type, actor_id, resource_type, resource_id, data)
  SELECT n.organization_id, 'activity.created', app.user_id(), 'activity', n.id,
         jsonb_build_object('object', app.activity_json(n), 'previous', NULL)
    FROM new_rows n;
  RETURN NULL;
END
$$;

-- Members, as GET /organizations/me/members shows them (with the user's
-- email and name, read as the definer: crm.users' RLS is not forced). A
-- member is named by its user: resource_id is user_id.
CREATE OR REPLACE FUNCTION private.organization_members_events_insert() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
BEGIN
  INSERT INTO crm.events (organization_id, type, actor_id, resource_type, resource_id, data)
  SELECT n.organization_id, 'member.added', app.user_id(), 'member', n.user_id,
         jsonb_build_object('object', app.member_json(n, u.email, u.name), 'previous', NULL)
    FROM new_rows n JOIN crm.users u ON u.id = n.user_id;
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION private.organization_members_events_update() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
BEGIN
  INSERT INTO crm.events (organization_id, type, actor_id, resource_type, resource_id, data)
  SELECT n.organization_id, 'member.updated', app.user_id(), 'member', n.user_id,
         jsonb_build_object('object', j.new, 'previous', private.event_previous(j.old, j.new))
    FROM new_rows n
    JOIN old_rows o ON o.organization_id = n.organization_id AND o.user_id = n.user_id
    JOIN crm.users u ON u.id = n.user_id
   CROSS JOIN LATERAL (SELECT app.member_json(o, u.email, u.name) AS old, app.member_json(n, u.email, u.name) AS new) j;
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION private.organization_members_events_delete() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
BEGIN
  INSERT INTO crm.events (organization_id, type, actor_id, resource_type, resource_id, data)
  SELECT o.organization_id, 'member.removed', app.user_id(), 'member', o.user_id,
         jsonb_build_object('object', app.member_json(o, u.email, u.name), 'previous', NULL)
    FROM old_rows o JOIN crm.users u ON u.id = o.user_id
   WHERE NOT private.events_off(o.organization_id);
  RETURN NULL;
END
$$;

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['contacts', 'deals', 'tasks', 'activities', 'organization_members'] LOOP
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON crm.%I', t || '_events_insert', t);
    EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON crm.%I REFERENCING NEW TABLE AS new_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION private.%I()', t || '_events_insert', t, t || '_events_insert');
    CONTINUE WHEN t = 'activities';
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON crm.%I', t || '_events_update', t);
    EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON crm.%I REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION private.%I()', t || '_events_update', t, t || '_events_update');
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON crm.%I', t || '_events_delete', t);
    EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON crm.%I REFERENCING OLD TABLE AS old_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION private.%I()', t || '_events_delete', t, t || '_events_delete');
  END LOOP;
END
$$;

-- Pipelines ------------------------------------------------------------------
--
-- A pipeline's JSON holds its stages (GET /pipelines/{id}), so a stage added,
-- changed or removed is a change of its pipeline, and one API call changes a
-- pipeline in several statements (a stage insert renumbers the others). So
-- a pipeline writes one event per transaction, at commit, from its final
-- state: pipeline.created (it did not exist when the transaction began),
-- pipeline.updated (previous: the fields that changed since the
-- transaction began, stages whole), pipeline.deleted (object: the pipeline
-- as it was when the transaction began). One created and deleted in the same
-- transaction writes nothing: no committed state ever showed it.
--
-- How: before a pipeline's first change in the transaction (a BEFORE row
-- trigger on pipelines and on pipeline_stages), its JSON as it then is (null
-- for an insert) is noted in the transaction-local setting
-- app.pipeline_events (a JSON object keyed by pipeline id), with the
-- acting user (the event's actor: the user who first changed it in the
-- transaction, whatever the context is by commit time). It goes with
-- the transaction, and with a subtransaction that rolls back, as the rows
-- do (as app.pipelines_changed in 28_versions.sql). Every change of a
-- pipeline writes its row (the stage triggers touch it,
-- private.pipeline_stages_touch), so a deferred constraint trigger on
-- pipelines runs for it at commit; the first run takes the note and writes
-- the event, the others find no note. (SET CONSTRAINTS … IMMEDIATE runs it
-- at the end of the statement instead: a later change in the transaction is
-- then an event of its own.)

-- The pipeline as GET shows it, null if it does not exist; read in its own
-- organization (the owner obeys the forced RLS too, and a DBA may be
-- working without a context or in another organization by commit time).
CREATE OR REPLACE FUNCTION private.pipeline_json_of(p_org uuid, p_id uuid) RETURNS jsonb
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
DECLARE
  v_saved text := current_setting('app.org_id', true);
  v jsonb;
BEGIN
  IF v_saved IS DISTINCT FROM p_org::text THEN
    PERFORM set_config('app.org_id', p_org::text, true);
  END IF;
  SELECT app.pipeline_json(p) INTO v FROM crm.pipelines p WHERE p.organization_id = p_org AND p.id = p_id;
  IF v_saved IS DISTINCT FROM p_org::text THEN
    PERFORM set_config('app.org_id', coalesce(v_saved, ''), true);
  END IF;
  RETURN v;
END
$$;

-- Notes the pipeline's state before its first change in the transaction.
CREATE OR REPLACE FUNCTION private.pipeline_event_note(p_org uuid, p_id uuid, p_created boolean) RETURNS void
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_notes jsonb := coalesce(nullif(current_setting('app.pipeline_events', true), ''), '{}')::jsonb;
  v_before jsonb;
BEGIN
  IF v_notes ? p_id::text OR private.events_off(p_org) THEN
    RETURN;
  END IF;
  IF NOT p_created THEN
    v_before := private.pipeline_json_of(p_org, p_id);
    IF v_before IS NULL THEN
      RETURN; -- a stage of a pipeline being deleted: the pipeline's own note has it
    END IF;
  END IF;
  PERFORM set_config('app.pipeline_events',
                     (v_notes || jsonb_build_object(p_id::text, jsonb_build_object('before', v_before, 'actor', app.user_id())))::text,
                     true);
END
$$;

CREATE OR REPLACE FUNCTION private.pipelines_event_note() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM private.pipeline_event_note(NEW.organization_id, NEW.id, true);
    RETURN NEW;
  END IF;
  PERFORM private.pipeline_event_note(OLD.organization_id, OLD.id, false);
  RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;

CREATE OR REPLACE FUNCTION private.pipeline_stages_event_note() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    PERFORM private.pipeline_event_note(OLD.organization_id, OLD.pipeline_id, false);
    RETURN OLD;
  END IF;
  PERFORM private.pipeline_event_note(NEW.organization_id, NEW.pipeline_id, false);
  IF TG_OP = 'UPDATE' AND NEW.pipeline_id <> OLD.pipeline_id THEN
    PERFORM private.pipeline_event_note(OLD.organization_id, OLD.pipeline_id, false);
  END IF;
  RETURN NEW;
END
$$;

-- Named to run before the guards: the note must see the state before the
-- row changes (a guard that raises takes the note back with the statement).
-- SECURITY DEFINER: the note reads the pipeline as the owner, in its own
-- organization (private.pipeline_json_of), which the request role may not
-- call.
DROP TRIGGER IF EXISTS pipelines_event_note ON crm.pipelines;
CREATE TRIGGER pipelines_event_note BEFORE INSERT OR UPDATE OR DELETE ON crm.pipelines
  FOR EACH ROW EXECUTE FUNCTION private.pipelines_event_note();
DROP TRIGGER IF EXISTS pipeline_stages_event_note ON crm.pipeline_stages;
CREATE TRIGGER pipeline_stages_event_note BEFORE INSERT OR UPDATE OR DELETE ON crm.pipeline_stages
  FOR EACH ROW EXECUTE FUNCTION private.pipeline_stages_event_note();

-- At commit: the pipeline's one event of the transaction.
CREATE OR REPLACE FUNCTION private.pipelines_event() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
DECLARE
  v_org uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.organization_id ELSE NEW.organization_id END;
  v_id uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END;
  v_notes jsonb := coalesce(nullif(current_setting('app.pipeline_events', true), ''), '{}')::jsonb;
  v_before jsonb;
  v_actor uuid;
  v_now jsonb;
BEGIN
  IF NOT v_notes ? v_id::text THEN
    RETURN NULL;
  END IF;
  v_before := nullif(v_notes -> v_id::text -> 'before', 'null'::jsonb);
  v_actor := (v_notes -> v_id::text ->> 'actor')::uuid;
  PERFORM set_config('app.pipeline_events', (v_notes - v_id::text)::text, true);
  IF private.events_off(v_org) THEN
    RETURN NULL;
  END IF;
  v_now := private.pipeline_json_of(v_org, v_id);
  IF v_now IS NULL AND v_before IS NULL THEN
    RETURN NULL;
  END IF;
  INSERT INTO crm.events (organization_id, type, actor_id, resource_type, resource_id, data)
  VALUES (v_org,
          CASE WHEN v_now IS NULL THEN 'pipeline.deleted' WHEN v_before IS NULL THEN 'pipeline.created' ELSE 'pipeline.updated' END,
          v_actor, 'pipeline', v_id,
          jsonb_build_object('object', coalesce(v_now, v_before),
                             'previous', CASE WHEN v_now IS NOT NULL AND v_before IS NOT NULL
                                              THEN private.event_previous(v_before, v_now) END));
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS pipelines_event ON crm.pipelines;
CREATE CONSTRAINT TRIGGER pipelines_event AFTER INSERT OR UPDATE OR DELETE ON crm.pipelines
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION private.pipelines_event();

-- Record history (SPEC §13): GET /contacts/{id}/history, /deals/{id}/history,
-- /tasks/{id}/history -----------------------------------------------------------
--
-- The record's events, newest first: in (tx, seq) order, backwards, read
-- through events_by_resource. (tx is the order in which transactions began
-- writing: two transactions that change one record take turns on its row
-- lock, and the second can hold the smaller tx only if it wrote something
-- else before it waited. The feed's README section says the same of the
-- feed.) A record in the trash still exists, so its history is readable;
-- one that does not exist (erased, of another organization, never) is 404
-- with its *_not_found code. Every role reads it, as every role reads the
-- record. p_page (offset pages) or the keyset p_after_tx + p_after_seq of
-- the last event shown (a cursor page: its key is "<tx>:<seq>", its id the
-- event's id); the envelope is app.page_json's.
CREATE OR REPLACE FUNCTION app.record_history(p_resource text, p_exists boolean, p_id uuid, p_page int,
    p_page_size int, p_after_tx bigint, p_after_seq bigint)
  RETURNS jsonb LANGUAGE plpgsql -- volatile: EXPLAIN (the estimate) is not allowed in a stable function
  AS $$
DECLARE
  v_counted bigint;
  v_plan json;
  v_items jsonb;
  v_more boolean;
  v_key text;
  v_last uuid;
  v_skip bigint := (coalesce(p_page, 1) - 1)::bigint * p_page_size;
BEGIN
  IF NOT p_exists THEN
    PERFORM app.not_found(p_resource);
  END IF;
  IF (p_after_tx IS NULL) <> (p_after_seq IS NULL) THEN
    PERFORM app.fail('MC400', 'invalid_cursor', 'a keyset needs both the transaction and the sequence number', 'cursor');
  END IF;
  IF p_after_tx IS NOT NULL AND p_page IS NOT NULL THEN
    PERFORM app.fail('MC400', 'cursor_with_page', 'cursor and page cannot be used together', 'cursor');
  END IF;
  SELECT count(*) INTO v_counted FROM (SELECT 1 FROM crm.events e
   WHERE e.organization_id = (SELECT app.org_id()) AND e.resource_id = p_id AND e.resource_type = p_resource
   LIMIT app.exact_count_limit() + 1) c;
  IF v_counted > app.exact_count_limit() THEN
    EXECUTE 'EXPLAIN (FORMAT JSON) SELECT 1 FROM crm.events e'
            ' WHERE e.organization_id = (SELECT app.org_id()) AND e.resource_id = $1 AND e.resource_type = $2'
      INTO v_plan USING p_id, p_resource;
  END IF;
  -- n: the row's place on this page (row_number counts the skipped rows too).
  SELECT coalesce(jsonb_agg(app.event_json(x.e) ORDER BY x.n) FILTER (WHERE x.n <= p_page_size), '[]'),
         coalesce(bool_or(x.n > p_page_size), false),
         min(CASE WHEN x.n = p_page_size THEN (x.e).tx::text || ':' || (x.e).seq END),
         min(CASE WHEN x.n = p_page_size THEN (x.e).id::text END)::uuid
    INTO v_items, v_more, v_key, v_last
    FROM (SELECT e, row_number() OVER (ORDER BY e.tx DESC, e.seq DESC) - v_skip AS n
            FROM crm.events e
           WHERE e.organization_id = (SELECT app.org_id()) AND e.resource_id = p_id
             AND e.resource_type = p_resource
             AND (p_after_tx IS NULL OR (e.tx, e.seq) < (p_after_tx::text::xid8, p_after_seq))
           ORDER BY e.tx DESC, e.seq DESC
           LIMIT p_page_size + 1 OFFSET v_skip) x;
  RETURN jsonb_build_object('items', v_items, 'page', p_page, 'page_size', p_page_size,
    'total', app.list_total(v_counted, v_plan) -> 'total', 'total_exact', app.list_total(v_counted, v_plan) -> 'total_exact',
    'next_after', CASE WHEN v_more THEN jsonb_build_object('key', v_key, 'id', v_last) END);
END
$$;

CREATE OR REPLACE FUNCTION api.contacts_history(p_id uuid, p_page int, p_page_size int,
    p_after_tx bigint DEFAULT NULL, p_after_seq bigint DEFAULT NULL)
  RETURNS jsonb LANGUAGE sql
  AS $$
    SELECT app.record_history('contact',
      EXISTS (SELECT 1 FROM crm.contacts c WHERE c.organization_id = (SELECT app.org_id()) AND c.id = p_id),
      p_id, p_page, p_page_size, p_after_tx, p_after_seq)
  $$;

CREATE OR REPLACE FUNCTION api.deals_history(p_id uuid, p_page int, p_page_size int,
    p_after_tx bigint DEFAULT NULL, p_after_seq bigint DEFAULT NULL)
  RETURNS jsonb LANGUAGE sql
  AS $$
    SELECT app.record_history('deal',
      EXISTS (SELECT 1 FROM crm.deals d WHERE d.organization_id = (SELECT app.org_id()) AND d.id = p_id),
      p_id, p_page, p_page_size, p_after_tx, p_after_seq)
  $$;

CREATE OR REPLACE FUNCTION api.tasks_history(p_id uuid, p_page int, p_page_size int,
    p_after_tx bigint DEFAULT NULL, p_after_seq bigint DEFAULT NULL)
  RETURNS jsonb LANGUAGE sql
  AS $$
    SELECT app.record_history('task',
      EXISTS (SELECT 1 FROM crm.tasks t WHERE t.organization_id = (SELECT app.org_id()) AND t.id = p_id),
      p_id, p_page, p_page_size, p_after_tx, p_after_seq)
  $$;

-- Retention (EVENT_RETENTION_DAYS) ---------------------------------------------
--
-- Deletes at most p_batch events that occurred more than p_retention ago, of
-- every organization at once, with no context: the policies
-- events_expired_read and events_expired_delete (sql/policies/tenancy.sql)
-- let the owner see exactly the events before the instant set in
-- app.events_expire_before, and the BRIN index on occurred_at finds them
-- (rows are appended in about occurred_at order). Bounded so that a round
-- never holds many locks or writes much WAL at once; the maintenance worker
-- runs another round while a round deleted anything. Returns the rows
-- deleted. Called by private.run_maintenance (95_maintenance.sql).
CREATE OR REPLACE FUNCTION private.purge_expired_events(p_retention interval, p_batch int) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
DECLARE
  v_before timestamptz := now() - p_retention;
  v_saved text := current_setting('app.events_expire_before', true);
  v_n bigint;
BEGIN
  PERFORM set_config('app.events_expire_before', app.ts(v_before), true);
  DELETE FROM crm.events e
   WHERE (e.organization_id, e.id) IN (SELECT x.organization_id, x.id FROM crm.events x
                                        WHERE x.occurred_at < v_before LIMIT p_batch);
  GET DIAGNOSTICS v_n = ROW_COUNT;
  PERFORM set_config('app.events_expire_before', coalesce(v_saved, ''), true);
  RETURN v_n;
END
$$;
