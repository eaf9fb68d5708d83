-- The trash (SPEC §11, README "Trash"): DELETE moves a contact, deal or task
-- to the trash; trashed records vanish from every list, get, search, the
-- tasks and timeline of a trashed deal and the running totals; references to
-- them are 404 for a DBA too; restore (parent_in_trash, the deal's tasks,
-- roles), erase (owner/admin, contact_has_deals) and the retention's purge.
BEGIN;
SELECT plan(86);
\ir pipeline_fixture.psql

-- Totals against a recomputation from the deals that are not in the trash
-- (the number of keys on which they differ: 0 is equal).
CREATE FUNCTION pg_temp.totals_mismatches(p_org uuid) RETURNS bigint LANGUAGE sql AS $$
  SELECT set_config('app.org_id', p_org::text, true);
  SELECT count(*) FROM (
    (SELECT pipeline_id, status, stage, currency, close_month, deals, amount FROM app.deal_totals_by_month()
     EXCEPT SELECT pipeline_id, status, stage, currency, app.close_month(status, expected_close_date), count(*), sum(amount)
              FROM crm.deals WHERE organization_id = p_org AND deleted_at IS NULL GROUP BY 1, 2, 3, 4, 5)
    UNION ALL
    (SELECT pipeline_id, status, stage, currency, app.close_month(status, expected_close_date), count(*), sum(amount)
       FROM crm.deals WHERE organization_id = p_org AND deleted_at IS NULL GROUP BY 1, 2, 3, 4, 5
     EXCEPT SELECT pipeline_id, status, stage, currency, close_month, deals, amount FROM app.deal_totals_by_month())) x
$$;
-- The created-day counts: deals created since each of a few instants.
CREATE FUNCTION pg_temp.created_mismatches(p_org uuid) RETURNS bigint LANGUAGE sql AS $$
  SELECT set_config('app.org_id', p_org::text, true);
  SELECT count(*) FROM (VALUES (interval '1 hour'), (interval '3 days'), (interval '400 days')) w (back)
   WHERE app.deals_created_since(now() - w.back, NULL)
         <> (SELECT count(*) FROM crm.deals d WHERE d.organization_id = p_org AND d.deleted_at IS NULL
                AND d.created_at >= now() - w.back)
$$;
-- Velocity: current and won per stage (totals) against the live deals.
CREATE FUNCTION pg_temp.velocity_mismatches(p_user uuid, p_org uuid) RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM jsonb_array_elements(pg_temp.value_as(p_user, p_org, 'SELECT api.analytics_velocity()')::jsonb -> 'stages') s
   WHERE (s ->> 'current')::int <> (SELECT count(*) FROM crm.deals d
                                     WHERE d.organization_id = p_org AND d.deleted_at IS NULL AND d.stage = s ->> 'stage'
                                       AND d.status IN ('new', 'in_progress')
                                       AND d.pipeline_id = (SELECT id FROM crm.pipelines p WHERE p.organization_id = p_org
                                                             ORDER BY p.position LIMIT 1))
$$;
CREATE FUNCTION pg_temp.in_list(p_user uuid, p_sql text, p_id uuid) RETURNS boolean LANGUAGE sql AS $$
  SELECT EXISTS (SELECT 1 FROM jsonb_array_elements(pg_temp.value_as(p_user, 'a0000000-0000-0000-0000-000000000000', p_sql)::jsonb -> 'items') e
                  WHERE (e ->> 'id')::uuid = p_id)
$$;

-- Some history for the totals: Mia's deal won, Olga's deal moves on, a created-days spread.
UPDATE crm.deals SET status = 'won', stage = 'closed' WHERE id = :'d_mia';
SELECT pg_temp.exec_as(:'olga', :'org_a', format('SELECT api.deals_update(%L, %L, %L, NULL, NULL, NULL, NULL, NULL, p_expected_close_date => current_date + 40, p_fields => %L)',
                                                 :'d_olga', 'in_progress', 'proposal', '{expected_close_date}'));
UPDATE crm.deals SET created_at = now() - interval '2 days' WHERE id = :'d_max';
SELECT is(pg_temp.totals_mismatches(:'org_a') + pg_temp.created_mismatches(:'org_a') + pg_temp.velocity_mismatches(:'olga', :'org_a'),
          0::bigint, 'control: the totals match before anything is trashed');

-- Trashing a deal ------------------------------------------------------------------
SELECT is(pg_temp.exec_as(:'max', :'org_a', format('SELECT api.deals_delete(%L)', :'d_max')), 1::bigint, 'Max trashes his deal');
SELECT ok((SELECT deleted_at = now() AND deleted_by = :'max' FROM crm.deals WHERE id = :'d_max'), 'the row stays, with deleted_at and deleted_by');
SELECT ok((SELECT deleted_at = now() AND deleted_by = :'max' AND deleted_with_deal FROM crm.tasks WHERE id = :'t_max'),
          'its task went to the trash with it (deleted_with_deal)');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.deals_get(%L)', :'d_max')), 'MC404 deal_not_found', 'get: 404');
SELECT ok(NOT pg_temp.in_list(:'olga', 'SELECT api.deals_list(1, 100)', :'d_max'), 'not in the deals list');
SELECT is(pg_temp.value_as(:'olga', :'org_a', format('SELECT api.deals_list(1, 100, p_contact_id => %L) ->> %L', :'c_max', 'total')), '0',
          'nor in the contact''s deals');
SELECT is(pg_temp.value_as(:'olga', :'org_a', format('SELECT api.deals_list(1, 100, p_owner_id => %L) ->> %L', :'max', 'total')), '0',
          'nor in the owner''s deals');
SELECT is(pg_temp.value_as(:'olga', :'org_a', format('SELECT api.deals_list(1, 100, p_order_by => %L) ->> %L', 'amount', 'total')), '4',
          'every sort counts the 4 deals left');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.deals_update(%L, NULL, NULL, %L, NULL, NULL, NULL, NULL)', :'d_max', 'X')),
          'MC404 deal_not_found', 'PATCH: 404');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.deals_delete(%L)', :'d_max')), 'MC404 deal_not_found', 'DELETE again: 404');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.tasks_get(%L)', :'t_max')), 'MC404 task_not_found', 'its task: get 404');
SELECT ok(NOT pg_temp.in_list(:'olga', 'SELECT api.tasks_list(1, 100)', :'t_max'), 'its task is not in the tasks list');
SELECT ok(NOT pg_temp.in_list(:'olga', 'SELECT api.tasks_list(1, 100, p_only_open => true)', :'t_max'), 'nor in the open tasks');
SELECT is(pg_temp.value_as(:'olga', :'org_a', format('SELECT api.tasks_list(1, 100, p_deal_id => %L) ->> %L', :'d_max', 'total')), '0',
          'nor in the deal''s tasks');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.tasks_update(%L, %L, NULL, NULL, NULL, true)', :'t_max', '{is_done}')),
          'MC404 task_not_found', 'its task: PATCH 404');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.activities_list(%L, 1, 20)', :'d_max')), 'MC404 deal_not_found',
          'its timeline: 404');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.deals_stage_history(%L)', :'d_max')), 'MC404 deal_not_found',
          'its stage history: 404');
SELECT cmp_ok(pg_temp.n_activities(:'d_max'), '>', 0, 'its timeline is kept with it');
-- References to it are refused as to a missing deal, through the API and directly.
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.tasks_create(%L, %L, NULL, %L)', :'d_max', 'T', :'tomorrow')),
          'MC404 tasks_deal_id_not_found', 'no task on a trashed deal (API)');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('INSERT INTO crm.tasks (organization_id, deal_id, title, due_date) VALUES (%L, %L, %L, %L)',
                                                    :'org_a', :'d_max', 'T', :'tomorrow')),
          'MC404 tasks_deal_id_not_found', 'nor for a DBA in psql under app.act_as');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.activities_create(%L, %L, %L)', :'d_max', 'comment', '{"text": "hi"}')),
          'MC404 activities_deal_id_not_found', 'no comment on a trashed deal');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('INSERT INTO crm.activities (organization_id, deal_id, type, payload) VALUES (%L, %L, %L, %L)',
                                                    :'org_a', :'d_max', 'comment', '{"text": "hi"}')),
          'MC404 activities_deal_id_not_found', 'nor directly');
SELECT is(pg_temp.totals_mismatches(:'org_a') + pg_temp.created_mismatches(:'org_a') + pg_temp.velocity_mismatches(:'olga', :'org_a'),
          0::bigint, 'the totals (summary, forecast, created days, velocity) subtract the trashed deal');
SELECT is((SELECT count(*)::int FROM crm.deal_stage_history WHERE deal_id = :'d_max' AND NOT deal_trashed), 0,
          'its stays are marked, and count for nothing');

-- R2 counts only deals that are not in the trash; a trashed contact vanishes.
SELECT is(pg_temp.exec_as(:'max', :'org_a', format('SELECT api.contacts_delete(%L)', :'c_max')), 1::bigint,
          'R2: a contact whose only deal is in the trash can be deleted');
SELECT is(pg_temp.try_as(:'mia', :'org_a', format('SELECT api.contacts_delete(%L)', :'c_mia')), 'MC409 contact_has_deals',
          'R2: a contact with a deal that is not in the trash cannot');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.contacts_get(%L)', :'c_max')), 'MC404 contact_not_found', 'contact get: 404');
SELECT ok(NOT pg_temp.in_list(:'olga', 'SELECT api.contacts_list(1, 100)', :'c_max'), 'not in the contacts list');
SELECT ok(NOT pg_temp.in_list(:'olga', 'SELECT api.contacts_list(1, 100, p_search => ''max'')', :'c_max'), 'not found by search');
SELECT ok(NOT pg_temp.in_list(:'olga', format('SELECT api.contacts_list(1, 100, p_search => ''max'', p_owner_id => %L)', :'max'), :'c_max'),
          'nor by search with an owner filter');
SELECT is(pg_temp.value_as(:'olga', :'org_a', format('SELECT api.contacts_list(1, 100, p_owner_id => %L) ->> %L', :'max', 'total')), '1',
          'the owner filter counts his one other contact');
SELECT is((SELECT count(*)::int FROM crm.contact_search_words WHERE contact_id = :'c_max'), 0, 'its search words are gone');
SELECT is(pg_temp.try_as(:'max', :'org_a', format('SELECT api.deals_create(%L, %L, 10, %L)', :'c_max', 'New', 'EUR')),
          'MC404 deals_contact_id_not_found', 'no deal on a trashed contact');
SELECT is(pg_temp.try_as(:'mia', :'org_a', format('SELECT api.deals_update(%L, NULL, NULL, NULL, NULL, NULL, %L, NULL)', :'d_mia', :'c_max')),
          'MC404 deals_contact_id_not_found', 'no PATCH of contact_id to a trashed contact');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('UPDATE crm.deals SET contact_id = %L WHERE id = %L', :'c_max', :'d_olga')),
          'MC404 deals_contact_id_not_found', 'nor a direct UPDATE by a DBA');

-- The trash list ------------------------------------------------------------------
UPDATE crm.contacts SET deleted_at = now() - interval '1 minute' WHERE id = :'c_max';   -- an order to see
UPDATE crm.deals SET deleted_at = now() - interval '2 minutes' WHERE id = :'d_max';
UPDATE crm.tasks SET deleted_at = now() - interval '2 minutes' WHERE id = :'t_max';
SELECT pg_temp.value_as(:'max', :'org_a', 'SELECT api.trash_list(1, 20)') AS trash \gset
SELECT is(ARRAY(SELECT e ->> 'type' || ' ' || (e ->> 'id') FROM jsonb_array_elements(:'trash'::jsonb -> 'items') e),
          ARRAY['contact ' || :'c_max', CASE WHEN :'d_max' > :'t_max' THEN 'deal ' || :'d_max' ELSE 'task ' || :'t_max' END,
                CASE WHEN :'d_max' > :'t_max' THEN 'task ' || :'t_max' ELSE 'deal ' || :'d_max' END],
          'a member reads the trash: all three types, newest first (ties by id)');
SELECT is((:'trash'::jsonb -> 'items' -> 0) - 'deleted_at',
          jsonb_build_object('type', 'contact', 'id', :'c_max', 'name_or_title', 'Max''s client', 'deleted_by', :'max'),
          'an item: type, id, name_or_title, deleted_at, deleted_by');
SELECT is((:'trash'::jsonb ->> 'total')::int || ' ' || (:'trash'::jsonb ->> 'total_exact'), '3 true', 'with an exact total');
SELECT is(pg_temp.value_as(:'olga', :'org_a', 'SELECT api.trash_list(1, 20, p_type => ''deal'') -> ''items'' -> 0 ->> ''id'''), :'d_max',
          'type=deal: the deals only');
SELECT pg_temp.value_as(:'olga', :'org_a', 'SELECT api.trash_list(1, 1)') AS t1 \gset
SELECT is(pg_temp.value_as(:'olga', :'org_a', format('SELECT jsonb_array_length(api.trash_list(NULL, 10, p_after_deleted_at => %L, p_after_id => %L) -> ''items'')',
                                                      :'t1'::jsonb -> 'next_after' ->> 'key', :'t1'::jsonb -> 'next_after' ->> 'id')), '2',
          'a keyset page goes on after the key');
SELECT is(pg_temp.try_as(:'olga', :'org_a', 'SELECT api.trash_list(1, 20, p_type => ''pipeline'')'), 'MC400 invalid_query_parameter',
          'an unknown type is 400');
SELECT is(pg_temp.value_as(:'zed', :'org_b', 'SELECT api.trash_list(1, 20) ->> ''total'''), '0', 'another organization sees none of it');

-- Restoring ------------------------------------------------------------------------
SELECT is(pg_temp.try_as(:'max', :'org_a', format('SELECT api.trash_restore(%L, %L)', 'deal', :'d_max')), 'MC409 parent_in_trash',
          'a deal whose contact is in the trash: 409 parent_in_trash');
SELECT is(pg_temp.try_as(:'max', :'org_a', format('SELECT api.trash_restore(%L, %L)', 'task', :'t_max')), 'MC409 parent_in_trash',
          'a task whose deal is in the trash: 409 parent_in_trash');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('UPDATE crm.tasks SET deleted_at = NULL WHERE id = %L', :'t_max')), 'MC409 parent_in_trash',
          'for a DBA too');
SELECT is(pg_temp.try_as(:'rita', :'org_a', format('SELECT api.trash_restore(%L, %L)', 'contact', :'c_max')), 'MC403 role_forbidden',
          'a member restores only her own records (the delete rules)');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.trash_restore(%L, %L)', 'contact', :'c_olga')), 'MC404 contact_not_found',
          'a record not in the trash: 404');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.trash_restore(%L, %L)', 'widget', :'c_max')), 'MC400 invalid_query_parameter',
          'an unknown type: 400');
SELECT is(pg_temp.value_as(:'max', :'org_a', format('SELECT api.trash_restore(%L, %L) ->> %L', 'contact', :'c_max', 'id')), :'c_max',
          'Max restores his contact: the answer is the record');
SELECT ok((SELECT deleted_at IS NULL AND deleted_by IS NULL FROM crm.contacts WHERE id = :'c_max'), 'out of the trash');
SELECT cmp_ok((SELECT count(*)::int FROM crm.contact_search_words WHERE contact_id = :'c_max'), '>', 0, 'with its search words again');
SELECT is(pg_temp.value_as(:'mia', :'org_a', format('SELECT api.trash_restore(%L, %L) ->> %L', 'deal', :'d_max', 'title')), 'Max''s deal',
          'a manager restores Max''s deal');
SELECT ok((SELECT deleted_at IS NULL AND NOT deleted_with_deal FROM crm.tasks WHERE id = :'t_max'), 'its task came back with it');
SELECT is(pg_temp.totals_mismatches(:'org_a') + pg_temp.created_mismatches(:'org_a') + pg_temp.velocity_mismatches(:'olga', :'org_a'),
          0::bigint, 'the totals add the restored deal back');
SELECT is((SELECT count(*)::int FROM crm.deal_stage_history WHERE deal_id = :'d_max' AND deal_trashed), 0, 'its stays count again');
-- A task trashed on its own before its deal stays in the trash when the deal comes back.
SELECT pg_temp.exec_as(:'olga', :'org_a', format('SELECT api.tasks_create(%L, %L, NULL, %L)', :'d_olga', 'Second', :'tomorrow'));
SELECT id AS t_second FROM crm.tasks WHERE title = 'Second' \gset
SELECT pg_temp.exec_as(:'olga', :'org_a', format('SELECT api.tasks_delete(%L)', :'t_second'));
SELECT pg_temp.exec_as(:'olga', :'org_a', format('SELECT api.deals_delete(%L)', :'d_olga'));
SELECT ok((SELECT NOT deleted_with_deal FROM crm.tasks WHERE id = :'t_second') AND (SELECT deleted_with_deal FROM crm.tasks WHERE id = :'t_olga'),
          'trashing a deal marks only the tasks it took along');
SELECT pg_temp.exec_as(:'olga', :'org_a', format('SELECT api.trash_restore(%L, %L)', 'deal', :'d_olga'));
SELECT is((SELECT array_agg(title ORDER BY title) FROM crm.tasks WHERE deal_id = :'d_olga' AND deleted_at IS NOT NULL), ARRAY['Second'],
          'restoring the deal restores exactly those: the task trashed before stays in the trash');

-- Erasing --------------------------------------------------------------------------
SELECT pg_temp.exec_as(:'rita', :'org_a', format('SELECT api.deals_delete(%L)', :'d_rita'));
SELECT pg_temp.exec_as(:'rita', :'org_a', format('SELECT api.contacts_delete(%L)', :'c_rita'));
SELECT is(pg_temp.try_as(:'mia', :'org_a', format('SELECT api.trash_erase(%L, %L)', 'deal', :'d_rita')), 'MC403 role_forbidden',
          'a manager may not erase');
SELECT is(pg_temp.try_as(:'rita', :'org_a', format('SELECT api.trash_erase(%L, %L)', 'deal', :'d_rita')), 'MC403 role_forbidden',
          'nor a member, her own deal');
SELECT is(pg_temp.try_as(:'rita', :'org_a', format('DELETE FROM crm.deals WHERE id = %L', :'d_rita')), 'MC403 role_forbidden',
          'nor with a direct DELETE');
SELECT is(pg_temp.try_as(:'adam', :'org_a', format('SELECT api.trash_erase(%L, %L)', 'contact', :'c_rita')), 'MC409 contact_has_deals',
          'a contact whose deals are in the trash cannot be erased (they are erased first)');
SELECT is(pg_temp.try_as(:'adam', :'org_a', format('SELECT api.trash_erase(%L, %L)', 'deal', :'d_olga')), 'MC404 deal_not_found',
          'a record not in the trash: 404');
SELECT is(pg_temp.exec_as(:'adam', :'org_a', format('SELECT api.trash_erase(%L, %L)', 'deal', :'d_rita')), 1::bigint, 'an admin erases the deal');
SELECT is((SELECT count(*)::int FROM crm.deals WHERE id = :'d_rita') + (SELECT count(*)::int FROM crm.tasks WHERE deal_id = :'d_rita')
          + pg_temp.n_activities(:'d_rita') + (SELECT count(*)::int FROM crm.deal_stage_history WHERE deal_id = :'d_rita'), 0,
          'for good, with its tasks, timeline and stays');
SELECT is(pg_temp.exec_as(:'olga', :'org_a', format('SELECT api.trash_erase(%L, %L)', 'contact', :'c_rita')), 1::bigint,
          'then the owner erases the contact');
SELECT is(pg_temp.totals_mismatches(:'org_a') + pg_temp.created_mismatches(:'org_a'), 0::bigint, 'the totals still match');
-- Another organization's trash is not found.
SELECT pg_temp.exec_as(:'zed', :'org_b', format('SELECT api.deals_delete(%L)', :'d_zed'));
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.trash_restore(%L, %L)', 'deal', :'d_zed')), 'MC404 deal_not_found',
          'B''s trashed deal cannot be restored from A');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.trash_erase(%L, %L)', 'deal', :'d_zed')), 'MC404 deal_not_found',
          'nor erased');

-- Plans: the lists read the partial indexes under RLS, as the request role
-- with the context the server sets.
CREATE FUNCTION pg_temp.plan_as(p_sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  v text;
BEGIN
  PERFORM app.act_as('a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000000');
  PERFORM set_config('enable_seqscan', 'off', true);
  EXECUTE 'EXPLAIN (FORMAT JSON) ' || p_sql INTO v;
  PERFORM set_config('enable_seqscan', 'on', true);
  PERFORM set_config('role', 'none', true);
  PERFORM set_config('app.user_id', '', true);
  PERFORM set_config('app.org_id', '', true);
  PERFORM set_config('app.role', '', true);
  RETURN v;
END
$$;
SELECT matches(pg_temp.plan_as('SELECT 1 FROM crm.deals d WHERE d.organization_id = (SELECT app.org_id()) AND d.deleted_at IS NULL'
                               || ' AND (d.created_at, d.id) < (now(), ''ffffffff-ffff-ffff-ffff-ffffffffffff''::uuid) ORDER BY d.created_at DESC, d.id DESC LIMIT 21'),
               '"deals_by_(created|updated|amount|title|status_amount)"',
               'the deals list (a cursor page) reads a partial list index under RLS (the predicate is proven from the query)');
SELECT matches(pg_temp.plan_as('SELECT 1 FROM crm.tasks t WHERE t.organization_id = (SELECT app.org_id()) AND t.deleted_at IS NULL ORDER BY t.due_date, t.id LIMIT 21'),
               'tasks_by_due', 'the tasks list reads the partial tasks_by_due');
SELECT matches(pg_temp.plan_as('SELECT 1 FROM crm.deals d WHERE d.organization_id = (SELECT app.org_id()) AND d.deleted_at IS NOT NULL ORDER BY d.deleted_at DESC, d.id DESC LIMIT 21'),
               'deals_trash', 'the trash list reads deals_trash');

-- The retention --------------------------------------------------------------------
SELECT pg_temp.exec_as(:'adam', :'org_a', format('SELECT api.deals_delete(%L)', :'d_adam'));
SELECT pg_temp.exec_as(:'adam', :'org_a', format('SELECT api.contacts_delete(%L)', :'c_adam'));
SELECT pg_temp.exec_as(:'adam', :'org_a', format('SELECT api.contacts_delete(%L)', :'f_adam'));
SELECT pg_temp.exec_as(:'mia', :'org_a', format('SELECT api.tasks_delete(%L)', :'t_mia'));
-- Adam's contact, deal and task a second past 30 days; his lead and Mia's task a second short of it.
UPDATE crm.contacts SET deleted_at = now() - interval '30 days 1 second' WHERE id = :'c_adam';
UPDATE crm.deals SET deleted_at = now() - interval '30 days 1 second' WHERE id = :'d_adam';
UPDATE crm.tasks SET deleted_at = now() - interval '30 days 1 second' WHERE id = :'t_adam';
UPDATE crm.contacts SET deleted_at = now() - interval '29 days 23:59:59' WHERE id = :'f_adam';
UPDATE crm.tasks SET deleted_at = now() - interval '29 days 23:59:59' WHERE id = :'t_mia';
SELECT ok(NOT has_function_privilege('minicrm_api', 'private.purge_expired_trash(interval, int)', 'EXECUTE'),
          'the request role cannot run the purge');
SELECT is(app.purge_expired_trash(interval '30 days', 1), 1::bigint, 'a call erases at most its batch');
SELECT is((SELECT count(*)::int FROM crm.tasks WHERE id = :'t_adam'), 0, 'tasks first');
SELECT is(app.purge_expired_trash(interval '30 days'), 2::bigint, 'the next call erases the rest that is due');
SELECT is((SELECT count(*)::int FROM crm.deals WHERE id = :'d_adam') + (SELECT count(*)::int FROM crm.contacts WHERE id = :'c_adam'), 0,
          'the deal, then its contact (the foreign keys'' order)');
SELECT is((SELECT count(*)::int FROM crm.contacts WHERE id = :'f_adam') + (SELECT count(*)::int FROM crm.tasks WHERE id = :'t_mia'), 2,
          'what is in the trash for less than the retention stays');
SELECT is((SELECT count(*)::int FROM crm.deals WHERE id = :'d_zed'), 1, 'and B''s fresh trash too');
SELECT is(app.purge_expired_trash(interval '30 days'), 0::bigint, 'nothing more is due');
UPDATE crm.deals SET deleted_at = now() - interval '40 days' WHERE id = :'d_zed';
UPDATE crm.tasks SET deleted_at = now() - interval '40 days' WHERE id = :'t_zed';
SELECT is(app.purge_expired_trash(interval '30 days'), 2::bigint, 'across organizations: B''s deal and task once due');
SELECT is(app.purge_expired_trash(interval '29 days 23:59:58'), 2::bigint, 'a retention a second shorter: Adam''s lead and Mia''s task');
SELECT is((SELECT array_agg(organization_id) FROM private.trash_organizations), ARRAY[:'org_a'::uuid],
          'the organizations with an empty trash are forgotten (A still has a task in it)');
SELECT is(pg_temp.totals_mismatches(:'org_a') + pg_temp.created_mismatches(:'org_a') + pg_temp.totals_mismatches(:'org_b'), 0::bigint,
          'the totals still match after the purge');

-- The note's trigger leaves out what is not in the trash (its WHEN), but not
-- a row written into the trash (a DBA's INSERT).
DELETE FROM private.trash_organizations WHERE organization_id = :'org_b';
SELECT pg_temp.exec_as(:'zed', :'org_b', $$SELECT api.contacts_create('Fresh')$$);
SELECT is((SELECT count(*)::int FROM private.trash_organizations WHERE organization_id = :'org_b'), 0,
          'a new contact outside the trash notes nothing');
SELECT pg_temp.exec_as(:'zed', :'org_b', format($$INSERT INTO crm.contacts (organization_id, owner_id, name, deleted_at)
                                                 VALUES (%L, %L, 'Born in the trash', now() - interval '2 days')$$, :'org_b', :'zed'));
SELECT is((SELECT oldest_deleted_at FROM private.trash_organizations WHERE organization_id = :'org_b'), now() - interval '2 days',
          'a contact inserted into the trash notes its organization');

SELECT * FROM finish();
ROLLBACK;
