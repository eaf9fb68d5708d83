-- The event triggers (sql/functions/60_events.sql, README "Events and record
-- history"): one event per change of a contact, deal, task, activity,
-- pipeline or member, in the same transaction, whoever writes (the API, a
-- DBA under app.act_as, the superuser with no context); object and previous;
-- nothing for a refused or rolled-back write, an erase from the trash or an
-- organization's deletion; one pipeline.updated per transaction; batches and
-- the import; the request role cannot write events nor read another
-- organization's; the history functions; the retention.
--
-- Everything runs in one transaction, so the pipelines' deferred event
-- (written at commit) is brought forward with SET CONSTRAINTS … IMMEDIATE,
-- which runs what is pending as a commit would.
BEGIN;
SELECT plan(74);
\ir pipeline_fixture.psql

SET CONSTRAINTS crm.pipelines_event IMMEDIATE;
SET CONSTRAINTS crm.pipelines_event DEFERRED;

-- The events of one record, oldest first, as "type" strings.
CREATE FUNCTION pg_temp.types_of(p_id uuid) RETURNS text[] LANGUAGE sql AS $$
  SELECT coalesce(array_agg(type ORDER BY tx, seq), '{}') FROM crm.events WHERE resource_id = p_id
$$;
-- The newest event of a record.
CREATE FUNCTION pg_temp.last_of(p_id uuid) RETURNS crm.events LANGUAGE sql AS $$
  SELECT e FROM crm.events e WHERE e.resource_id = p_id ORDER BY e.tx DESC, e.seq DESC LIMIT 1
$$;
CREATE FUNCTION pg_temp.n_events() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM crm.events $$;

-- The fixture's writes (the superuser, no context) ----------------------------------
SELECT is((SELECT count(*) FROM crm.events WHERE organization_id = :'org_a' AND type = 'contact.created'), 10::bigint,
          'the superuser''s inserts with no context wrote their events: a contact.created per contact');
SELECT is((SELECT array_agg(DISTINCT type ORDER BY type) FROM crm.events WHERE organization_id = :'org_a'),
          ARRAY['activity.created', 'contact.created', 'deal.created', 'member.added', 'pipeline.created', 'task.created'],
          'and a deal.created, task.created, activity.created (the automatic timeline rows), member.added and pipeline.created');
SELECT is((SELECT count(*) FROM crm.events WHERE organization_id = :'org_a' AND type = 'activity.created'),
          (SELECT count(*) FROM crm.activities WHERE organization_id = :'org_a'), 'one activity.created per timeline row');
SELECT ok((SELECT bool_and(actor_id IS NULL) FROM crm.events), 'no user context: actor_id is null');
SELECT is((SELECT data FROM crm.events WHERE resource_id = :'c_olga'),
          jsonb_build_object('object', (SELECT app.contact_json(c) FROM crm.contacts c WHERE c.id = :'c_olga'), 'previous', NULL),
          'contact.created: object is the contact as the API shows it, previous null');
SELECT is((SELECT data -> 'object' FROM crm.events WHERE resource_id = :'max' AND type = 'member.added'),
          (SELECT app.member_json(m, u.email, u.name) FROM crm.organization_members m JOIN crm.users u ON u.id = m.user_id
            WHERE m.user_id = :'max'), 'member.added: the member with the user''s email and name; resource_id is the user');
SELECT is(app.event_json(pg_temp.last_of(:'c_olga')) - 'data',
          (SELECT jsonb_build_object('id', e.id, 'type', 'contact.created', 'occurred_at', app.ts(e.occurred_at),
                                     'actor_id', NULL, 'resource_id', e.resource_id) FROM crm.events e WHERE e.resource_id = :'c_olga'),
          'app.event_json shows id, type, occurred_at, actor_id, resource_id and data');

-- Updates through the API ------------------------------------------------------------
SELECT pg_temp.n_events() AS before \gset
SELECT pg_temp.exec_as(:'max', :'org_a', format('SELECT api.contacts_update(%L, %L, %L, NULL, NULL, NULL)',
                                                :'c_max', '{name}', 'Max''s best client'));
SELECT is(pg_temp.n_events(), :'before'::bigint + 1, 'a PATCH of a contact writes exactly one event');
SELECT is((pg_temp.last_of(:'c_max')).type || ' ' || (pg_temp.last_of(:'c_max')).actor_id, 'contact.updated ' || :'max',
          'contact.updated, by the acting user');
SELECT is((pg_temp.last_of(:'c_max')).data -> 'previous', '{"name": "Max''s client"}',
          'previous: the old value of the one field that changed (not updated_at, not version)');
SELECT is((pg_temp.last_of(:'c_max')).data -> 'object',
          pg_temp.value_as(:'max', :'org_a', format('SELECT api.contacts_get(%L)', :'c_max'))::jsonb,
          'object: the contact as GET shows it after the change');
SELECT ok((pg_temp.last_of(:'c_max')).tx = pg_current_xact_id(), 'written by the transaction that made the change');

UPDATE crm.contacts SET name = name WHERE id = :'c_max';
SELECT is((pg_temp.last_of(:'c_max')).type || ' ' || ((pg_temp.last_of(:'c_max')).data ->> 'previous'), 'contact.updated {}',
          'an UPDATE that changes no field still moves the version: contact.updated with previous {}');

-- A DBA in psql under app.act_as (as the request role) --------------------------------
SELECT app.act_as(:'mia', :'org_a') AS dba_role \gset
UPDATE crm.deals SET stage = 'proposal', title = 'Rita''s big deal' WHERE id = :'d_rita';
RESET ROLE;
SELECT is((pg_temp.last_of(:'d_rita')).type || ' ' || (pg_temp.last_of(:'d_rita')).actor_id, 'deal.updated ' || :'mia',
          'a DBA''s UPDATE under app.act_as writes deal.updated, by the acting user');
SELECT is((pg_temp.last_of(:'d_rita')).data -> 'previous', '{"stage": "qualification", "title": "Rita''s deal"}',
          '... previous: the old stage and title');
SELECT is((SELECT e.type || ' ' || e.actor_id FROM crm.events e JOIN crm.activities a ON a.id = e.resource_id
            WHERE a.deal_id = :'d_rita' AND a.type = 'stage_changed'), 'activity.created ' || :'mia',
          'its automatic stage_changed timeline row is an activity.created too');

-- The superuser under app.act_as (no role switch: RLS does not apply to it) -------
SELECT set_config('app.user_id', :'adam', true), set_config('app.org_id', :'org_a', true), set_config('app.role', 'admin', true);
UPDATE crm.tasks SET is_done = true WHERE id = :'t_adam';
SELECT set_config('app.user_id', '', true), set_config('app.org_id', '', true), set_config('app.role', '', true);
SELECT is((pg_temp.last_of(:'t_adam')).type || ' ' || (pg_temp.last_of(:'t_adam')).actor_id
            || ' ' || ((pg_temp.last_of(:'t_adam')).data -> 'previous'), 'task.updated ' || :'adam' || ' {"is_done": false}',
          'the superuser''s UPDATE with a context writes task.updated, by that user');

-- Refused and rolled-back writes ------------------------------------------------------
SELECT pg_temp.n_events() AS before \gset
SELECT throws_ok(format('SELECT pg_temp.exec_as(%L, %L, %L)', :'max', :'org_a',
                        format('UPDATE crm.deals SET title = %L WHERE id = %L', 'Mine now', :'d_olga')),
                 'MC403', NULL, 'a member may not change another member''s deal (refused by the rule trigger)');
SELECT throws_ok(format('SELECT pg_temp.exec_as(%L, %L, %L)', :'olga', :'org_a',
                        format('SELECT api.contacts_delete(%L)', :'c_olga')),
                 'MC409', NULL, 'a contact with deals cannot be deleted');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.tasks_update(%L, %L, %L, NULL, NULL, NULL, p_if_match => %L)',
                                                    :'t_olga', '{title}', 'Stale', '{99}')), 'MC412 precondition_failed',
          'an update with a stale If-Match matches no row');
SAVEPOINT undo;
UPDATE crm.contacts SET phone = '+1 555' WHERE id = :'c_olga';
ROLLBACK TO undo;
SELECT is(pg_temp.n_events(), :'before'::bigint, 'refused, unmatched and rolled-back writes wrote no event');

-- Trash, restore, erase -------------------------------------------------------------
SELECT (pg_temp.value_as(:'olga', :'org_a', format('SELECT api.deals_get(%L)', :'d_max')))::jsonb AS max_deal \gset
SELECT (pg_temp.value_as(:'olga', :'org_a', format('SELECT api.tasks_get(%L)', :'t_max')))::jsonb AS max_task \gset
SELECT pg_temp.n_events() AS before \gset
SELECT pg_temp.exec_as(:'olga', :'org_a', format('SELECT api.deals_delete(%L)', :'d_max'));
SELECT is(pg_temp.n_events(), :'before'::bigint + 2, 'trashing a deal with one task writes two events');
SELECT is((pg_temp.last_of(:'d_max')).type || ' ' || (pg_temp.last_of(:'d_max')).actor_id, 'deal.deleted ' || :'olga',
          'deal.deleted (moved to the trash), by the acting user');
SELECT is((pg_temp.last_of(:'d_max')).data, jsonb_build_object('object', :'max_deal'::jsonb, 'previous', NULL),
          '... object: the deal as it was before, previous null');
SELECT is((pg_temp.last_of(:'t_max')).type, 'task.deleted', 'the task trashed along with it: a task.deleted of its own');
SELECT is((pg_temp.last_of(:'t_max')).data -> 'object', :'max_task'::jsonb, '... object: the task before');

SELECT pg_temp.exec_as(:'olga', :'org_a', format('SELECT api.trash_restore(%L, %L)', 'deal', :'d_max'));
SELECT is((pg_temp.last_of(:'d_max')).type || ' ' || (pg_temp.last_of(:'t_max')).type, 'deal.restored task.restored',
          'restoring the deal: deal.restored, and task.restored for the task that comes back with it');
SELECT is((pg_temp.last_of(:'d_max')).data -> 'object',
          pg_temp.value_as(:'olga', :'org_a', format('SELECT api.deals_get(%L)', :'d_max'))::jsonb,
          '... object: the deal after (as GET shows it again)');

SELECT pg_temp.exec_as(:'olga', :'org_a', format('SELECT api.contacts_delete(%L)', :'f_olga'));
SELECT pg_temp.exec_as(:'olga', :'org_a', format('SELECT api.trash_restore(%L, %L)', 'contact', :'f_olga'));
SELECT pg_temp.exec_as(:'olga', :'org_a', format('SELECT api.tasks_delete(%L)', :'t_olga'));
SELECT is(pg_temp.types_of(:'f_olga') || pg_temp.types_of(:'t_olga'),
          ARRAY['contact.created', 'contact.deleted', 'contact.restored', 'task.created', 'task.deleted'],
          'contact.deleted / contact.restored, task.deleted');

SELECT pg_temp.n_events() AS before \gset
SELECT pg_temp.exec_as(:'olga', :'org_a', format('SELECT api.trash_erase(%L, %L)', 'task', :'t_olga'));
SELECT pg_temp.exec_as(:'olga', :'org_a', format('SELECT api.deals_delete(%L)', :'d_max'));
SELECT pg_temp.n_events() AS trashed \gset
SELECT pg_temp.exec_as(:'olga', :'org_a', format('SELECT api.trash_erase(%L, %L)', 'deal', :'d_max'));
SELECT is(pg_temp.n_events(), :'trashed'::bigint, 'erasing from the trash (a deal with its task and timeline) writes nothing');
SELECT is(:'trashed'::bigint, :'before'::bigint + 2, '... (and erasing the trashed task wrote nothing either)');

DELETE FROM crm.tasks WHERE id = :'t_mia';
SELECT is((pg_temp.last_of(:'t_mia')).type || coalesce(' ' || (pg_temp.last_of(:'t_mia')).actor_id, ' (no actor)'),
          'task.deleted (no actor)', 'the superuser''s DELETE of a live task in psql is a task.deleted');

-- Creations through the API ----------------------------------------------------------
SELECT (pg_temp.value_as(:'rita', :'org_a', format('SELECT api.tasks_create(%L, %L, NULL, %L)', :'d_rita', 'Call', :'next_week')))::jsonb AS new_task \gset
SELECT is((pg_temp.last_of((:'new_task'::jsonb ->> 'id')::uuid)).data -> 'object', :'new_task'::jsonb,
          'task.created: object is what POST answered');
SELECT is((SELECT count(*) FROM crm.events e JOIN crm.activities a ON a.id = e.resource_id
            WHERE a.type = 'task_created' AND a.payload ->> 'task_id' = :'new_task'::jsonb ->> 'id'), 1::bigint,
          'its task_created timeline row: an activity.created');
SELECT (pg_temp.value_as(:'rita', :'org_a', format('SELECT api.activities_create(%L, %L, %L)', :'d_rita', 'comment', '{"text": "hi"}')))::jsonb AS comment \gset
SELECT is((pg_temp.last_of((:'comment'::jsonb ->> 'id')::uuid)).type || ' ' || (pg_temp.last_of((:'comment'::jsonb ->> 'id')::uuid)).actor_id,
          'activity.created ' || :'rita', 'a comment: activity.created, by its author');

-- Members ----------------------------------------------------------------------------
SELECT pg_temp.exec_as(:'olga', :'org_a', format('SELECT api.members_set_role(%L, %L)', :'rita', 'manager'));
SELECT is((pg_temp.last_of(:'rita')).type || ' ' || ((pg_temp.last_of(:'rita')).data -> 'previous'),
          'member.updated {"role": "member"}', 'a role change: member.updated, previous the old role');
SELECT is((pg_temp.last_of(:'rita')).data -> 'object' ->> 'email', 'rita@pipeline.test', '... object with the user''s email');
SELECT pg_temp.exec_as(:'olga', :'org_a', format('SELECT api.members_remove(%L, %L)', :'rita', :'olga'));
SELECT is((pg_temp.last_of(:'rita')).type, 'member.removed', 'removing a member: member.removed');
SELECT ok((SELECT count(*) FROM crm.events WHERE type = 'contact.updated' AND data -> 'previous' ->> 'owner_id' = :'rita') >= 2,
          '... and her contacts, handed to another member, are contact.updated');

-- Pipelines: one event per transaction, at commit --------------------------------------
SELECT id AS p_sales FROM crm.pipelines WHERE organization_id = :'org_a' \gset
SELECT app.pipeline_json(p) AS sales_before FROM crm.pipelines p WHERE p.id = :'p_sales' \gset
SELECT pg_temp.n_events() AS before \gset
SELECT pg_temp.exec_as(:'adam', :'org_a', format('SELECT api.pipeline_stages_create(%L, %L, %L, 50, 2)', :'p_sales', 'demo', 'Demo'));
SELECT pg_temp.exec_as(:'adam', :'org_a', format('SELECT api.pipelines_update(%L, %L)', :'p_sales', 'Sales EU'));
SELECT pg_temp.exec_as(:'adam', :'org_a', format('SELECT api.pipeline_stages_update(%L, %L, %L)', :'p_sales', 'closed', 'Done'));
SELECT is(pg_temp.n_events(), :'before'::bigint, 'pipeline changes write nothing before commit');
SET CONSTRAINTS crm.pipelines_event IMMEDIATE;
SET CONSTRAINTS crm.pipelines_event DEFERRED;
SELECT is(pg_temp.n_events(), :'before'::bigint + 1,
          'a stage added (renumbering three), a rename and a stage renamed in one transaction: one event');
SELECT is((pg_temp.last_of(:'p_sales')).type, 'pipeline.updated', '... pipeline.updated');
SELECT is((pg_temp.last_of(:'p_sales')).data -> 'object',
          pg_temp.value_as(:'adam', :'org_a', format('SELECT api.pipelines_get(%L)', :'p_sales'))::jsonb,
          '... object: the pipeline as GET shows it at commit, stages included');
SELECT is((pg_temp.last_of(:'p_sales')).data -> 'previous',
          jsonb_build_object('name', 'Sales', 'stages', :'sales_before'::jsonb -> 'stages'),
          '... previous: the name and the stages as they were when the transaction began');
SELECT is((pg_temp.last_of(:'p_sales')).actor_id, :'adam'::uuid, '... by the user who made the first change (the context is gone by commit here)');

SELECT pg_temp.exec_as(:'adam', :'org_a', format('SELECT api.pipelines_create(%L, %L)', 'Short-lived', '[{"key": "a", "name": "A", "probability": 10}]'));
SELECT id AS p_short FROM crm.pipelines WHERE name = 'Short-lived' \gset
SELECT pg_temp.exec_as(:'adam', :'org_a', format('SELECT api.pipelines_delete(%L)', :'p_short'));
SELECT pg_temp.exec_as(:'adam', :'org_a', format('SELECT api.pipelines_create(%L, %L)', 'Partners', '[{"key": "a", "name": "A", "probability": 10}]'));
SELECT id AS p_partners FROM crm.pipelines WHERE name = 'Partners' \gset
SET CONSTRAINTS crm.pipelines_event IMMEDIATE;
SET CONSTRAINTS crm.pipelines_event DEFERRED;
SELECT is(pg_temp.types_of(:'p_short'), '{}', 'a pipeline created and deleted in one transaction writes nothing');
SELECT is(pg_temp.types_of(:'p_partners'), '{pipeline.created}', 'a new pipeline: pipeline.created (with its stages)');
SELECT is(jsonb_array_length((pg_temp.last_of(:'p_partners')).data -> 'object' -> 'stages'), 1, '... its one stage');
SELECT app.pipeline_json(p) AS partners FROM crm.pipelines p WHERE p.id = :'p_partners' \gset
SELECT pg_temp.exec_as(:'adam', :'org_a', format('SELECT api.pipelines_delete(%L)', :'p_partners'));
SET CONSTRAINTS crm.pipelines_event IMMEDIATE;
SET CONSTRAINTS crm.pipelines_event DEFERRED;
SELECT is((pg_temp.last_of(:'p_partners')).type || ' ' || ((pg_temp.last_of(:'p_partners')).data -> 'object' = :'partners'::jsonb),
          'pipeline.deleted true', 'deleting it: pipeline.deleted, object the pipeline before (stages included)');
SELECT pg_temp.n_events() AS before \gset
SELECT is(pg_temp.try_as(:'max', :'org_a', format('SELECT api.pipeline_stages_update(%L, %L, %L)', :'p_sales', 'closed', 'Mine')),
          'MC403 role_forbidden', 'a member may not change stages');
SET CONSTRAINTS crm.pipelines_event IMMEDIATE;
SET CONSTRAINTS crm.pipelines_event DEFERRED;
SELECT is(pg_temp.n_events(), :'before'::bigint, '... and the refused change left no pipeline event behind');

-- Batches and the import: one INSERT (and one UPDATE) for many rows -------------------
SELECT pg_temp.n_events() AS before \gset
SELECT pg_temp.exec_as(:'mia', :'org_a', format('SELECT api.contacts_batch(%L)',
         (SELECT jsonb_agg(jsonb_build_object('name', 'Batch ' || i)) FROM generate_series(1, 100) i)));
SELECT is(pg_temp.n_events(), :'before'::bigint + 100, 'a batch of 100 contacts: 100 contact.created');
SELECT pg_temp.n_events() AS before \gset
SELECT pg_temp.exec_as(:'mia', :'org_a', format('SELECT app.contacts_import_apply(%L, %L)',
         (SELECT array_agg(ROW(i + 1, 'Imported ' || i, NULL, NULL, 'imp-' || i, NULL)::app.contact_import_row) FROM generate_series(1, 2000) i),
         '{name,external_id}'));
SELECT pg_temp.exec_as(:'mia', :'org_a', format('SELECT app.contacts_import_apply(%L, %L)',
         (SELECT array_agg(ROW(i + 1, NULL, NULL, '+' || i, 'imp-' || i, NULL)::app.contact_import_row) FROM generate_series(1, 2000) i),
         '{phone,external_id}'));
SELECT is((SELECT array_agg(n ORDER BY type) FROM (SELECT type, count(*) AS n FROM crm.events e
            WHERE e.seq > (SELECT max(seq) FROM crm.events) - 4000 GROUP BY type) c), ARRAY[2000, 2000]::bigint[],
          'an import of 2,000 new contacts, then one updating them: 2,000 contact.created and 2,000 contact.updated');
SELECT is(pg_temp.n_events(), :'before'::bigint + 4000, '... and nothing else');
SELECT is((SELECT data -> 'previous' FROM crm.events WHERE type = 'contact.updated' ORDER BY seq DESC LIMIT 1), '{"phone": null}',
          '... each update with its previous value');
-- One UPDATE of several rows (the session has made one-row UPDATEs before, the
-- single-row path): each event pairs its record's old and new rows, and its
-- previous is private.event_previous of the two (the triggers inline it).
CREATE TEMP TABLE several_before AS
  SELECT d.id, app.deal_json(d) AS old FROM crm.deals d WHERE d.id IN (:'d_olga', :'d_adam', :'d_mia');
SELECT pg_temp.n_events() AS before \gset
UPDATE crm.deals SET title = title || ' (renamed)', amount = amount + 1 WHERE id IN (:'d_olga', :'d_adam', :'d_mia');
SELECT is(pg_temp.n_events(), :'before'::bigint + 3, 'an UPDATE of three deals: three events');
SELECT is((SELECT count(*) FROM crm.events e JOIN several_before b ON b.id = e.resource_id
            WHERE e.seq > (SELECT max(seq) FROM crm.events) - 3 AND e.type = 'deal.updated'
              AND e.data -> 'object' ->> 'id' = b.id::text
              AND e.data -> 'previous' = jsonb_build_object('title', b.old -> 'title', 'amount', b.old -> 'amount')
              AND e.data -> 'previous' = private.event_previous(b.old, e.data -> 'object')), 3::bigint,
          '... each a deal.updated of its own deal, previous its own old title and amount (= private.event_previous)');
SELECT is((SELECT array_agg(p.proname::text ORDER BY p.proname) FROM pg_proc p
            WHERE p.pronamespace = 'private'::regnamespace AND p.proname LIKE '%\_events\_update'
              AND p.prosrc LIKE '%CROSS JOIN old_rows o%' AND p.prosrc LIKE '%EXECUTE %JOIN old_rows o ON o.organization_id = n.organization_id AND o.id = n.id%'),
          ARRAY['contacts_events_update', 'deals_events_update', 'tasks_events_update'],
          'the UPDATE functions pair one row without a join, several by a join planned for their own row counts (EXECUTE), '
          'whatever plan the first, small UPDATE of the session made');

-- The request role and the events ------------------------------------------------------
SELECT is(pg_temp.try_as(:'olga', :'org_a', format(
            'INSERT INTO crm.events (organization_id, type, resource_type, resource_id, data) VALUES (%L, %L, %L, %L, %L)',
            :'org_a', 'deal.won', 'deal', :'d_olga', '{}')), '42501', 'the request role cannot insert an event (no privilege)');
SELECT is(pg_temp.try_as(:'olga', :'org_a', 'UPDATE crm.events SET type = ''deal.won'''), '42501', '... nor update one');
SELECT is(pg_temp.try_as(:'olga', :'org_a', 'DELETE FROM crm.events'), '42501', '... nor delete one');
SELECT is(pg_temp.value_as(:'zed', :'org_b', format('SELECT count(*) FROM crm.events WHERE organization_id = %L', :'org_a')), '0',
          'another organization''s events are invisible');
SELECT is(pg_temp.value_as(:'zed', :'org_b', 'SELECT count(*) FROM crm.events'),
          (SELECT count(*)::text FROM crm.events WHERE organization_id = :'org_b'), '... its own are all there');

-- Record history --------------------------------------------------------------------------
SELECT pg_temp.value_as(:'max', :'org_a', format('SELECT api.deals_history(%L, 1, 3)', :'d_rita'))::jsonb AS h1 \gset
SELECT is((SELECT array_agg(e ->> 'type') FROM jsonb_array_elements(:'h1'::jsonb -> 'items') e),
          ARRAY['deal.updated', 'deal.updated', 'deal.created'],
          'a deal''s history, newest first (the owner handed over, the DBA''s update, the creation), read by a member');
SELECT is(:'h1'::jsonb -> 'items' -> 0, app.event_json(pg_temp.last_of(:'d_rita')), '... items as app.event_json');
SELECT pg_temp.exec_as(:'olga', :'org_a', format('SELECT api.contacts_delete(%L)', :'f_max'));
SELECT is(pg_temp.value_as(:'max', :'org_a', format('SELECT api.contacts_history(%L, 1, 1)', :'f_max'))::jsonb - 'next_after',
          jsonb_build_object('items', jsonb_build_array(app.event_json(pg_temp.last_of(:'f_max'))), 'page', 1, 'page_size', 1,
                             'total', 2, 'total_exact', true),
          'a contact in the trash still has its history (page 1 of 2 here, with its total)');
SELECT pg_temp.value_as(:'max', :'org_a', format('SELECT api.contacts_history(%L, 1, 1) -> %L', :'f_max', 'next_after'))::jsonb AS next \gset
SELECT is(pg_temp.value_as(:'max', :'org_a', format('SELECT api.contacts_history(%L, NULL, 1, %s, %s) -> %L', :'f_max',
            split_part(:'next'::jsonb ->> 'key', ':', 1), split_part(:'next'::jsonb ->> 'key', ':', 2), 'items'))::jsonb,
          jsonb_build_array(app.event_json((SELECT e FROM crm.events e WHERE e.resource_id = :'f_max' AND e.type = 'contact.created'))),
          'the keyset after the last event shown gives the older one');
SELECT is(pg_temp.try_as(:'zed', :'org_b', format('SELECT api.tasks_history(%L, 1, 20)', :'t_rita')), 'MC404 task_not_found',
          'another organization''s task: 404 task_not_found');

-- An organization's deletion ------------------------------------------------------------
-- The policy that lets its trigger delete the events (events_off: the
-- organizations being deleted in this transaction) is its owner's: a member
-- who names another organization in the list sees nothing more.
SELECT is(pg_temp.value_as_with(:'max', :'org_a', 'app.organizations_deleted', :'org_b',
                                format('SELECT count(*) FROM crm.events e WHERE e.organization_id = %L', :'org_b')), '0', 'app.organizations_deleted shows a member no other organization''s events');
SELECT ok((SELECT count(*) FROM crm.events WHERE organization_id = :'org_b') > 0, 'B has events before its deletion');
DELETE FROM crm.organizations WHERE id = :'org_b';
SELECT is((SELECT count(*) FROM crm.events WHERE organization_id = :'org_b'), 0::bigint,
          'deleting an organization writes no event for its rows, and its events go with it');

-- Retention -------------------------------------------------------------------------------
UPDATE crm.events SET occurred_at = now() - interval '31 days' WHERE resource_id IN (:'c_olga', :'c_adam');
SELECT is(private.purge_expired_events(interval '30 days', 1), 1::bigint, 'the retention deletes at most one batch');
SELECT is((SELECT deleted FROM private.run_maintenance(30, 30) WHERE step = 'events'), 1::bigint,
          'run_maintenance''s events step deletes the rest of what is older than EVENT_RETENTION_DAYS');
SELECT is((SELECT count(*) FROM crm.events WHERE resource_id IN (:'c_olga', :'c_adam')), 0::bigint, '... and only that');

SELECT * FROM finish();
ROLLBACK;
