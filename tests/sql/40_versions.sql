-- Versions and If-Match (SPEC §11, sql/functions/28_versions.sql): 1 on
-- insert, +1 per UPDATE statement whatever it sets (a DBA cannot set it), a
-- change of a pipeline's stages is a change of the pipeline (once per
-- transaction), and the API functions' If-Match: a match writes, a mismatch
-- is MC412 precondition_failed and changes nothing, NULL (no header, or `*`)
-- is no condition, and a missing record is 404 whatever If-Match says.
BEGIN;
SELECT plan(40);
\ir pipeline_fixture.psql

SELECT id AS sales_a FROM crm.pipelines WHERE organization_id = :'org_a' \gset

-- A pipeline's stages as key:position:probability, in position order.
CREATE FUNCTION pg_temp.stages(p_pipeline uuid) RETURNS text LANGUAGE sql STABLE AS $$
  SELECT string_agg(key || ':' || position || ':' || probability, ' ' ORDER BY position)
    FROM crm.pipeline_stages WHERE pipeline_id = p_pipeline
$$;

-- psql variables do not reach into dollar-quoted text: the ids by name.
SELECT set_config('fx.' || n, v, false)
  FROM (VALUES ('olga', :'olga'), ('org_a', :'org_a'), ('sales_a', :'sales_a'), ('c_max', :'c_max'), ('f_max', :'f_max'),
               ('d_max', :'d_max'), ('t_max', :'t_max'), ('d_rita', :'d_rita'), ('d_zed', :'d_zed')) x (n, v);
CREATE FUNCTION pg_temp.fx(p_name text) RETURNS uuid LANGUAGE sql STABLE AS $$
  SELECT current_setting('fx.' || p_name)::uuid
$$;

-- p_sql as p_user in p_org (p_user NULL: as the superuser, without
-- act_as), then the version of p_table's row p_id, then undone (a
-- subtransaction): every call starts from the same data.
CREATE FUNCTION pg_temp.version_after(p_user uuid, p_org uuid, p_sql text, p_table text, p_id uuid) RETURNS int
  LANGUAGE plpgsql AS $$
DECLARE
  v int;
BEGIN
  BEGIN
    IF p_user IS NOT NULL THEN
      PERFORM app.act_as(p_user, p_org);
    END IF;
    EXECUTE p_sql;
    PERFORM set_config('role', 'none', true);
    EXECUTE format('SELECT version FROM crm.%I WHERE id = $1', p_table) INTO v USING p_id;
    RAISE EXCEPTION USING ERRCODE = 'TT000', MESSAGE = 'undo';
  EXCEPTION WHEN SQLSTATE 'TT000' THEN
    NULL;
  END;
  RETURN v;
END
$$;

-- 1 on insert ------------------------------------------------------------------------

SELECT is((SELECT array_agg(DISTINCT version) FROM crm.contacts), '{1}', 'every contact starts at version 1');
SELECT is((SELECT array_agg(DISTINCT version) FROM crm.deals), '{1}', 'every deal starts at version 1');
SELECT is((SELECT array_agg(DISTINCT version) FROM crm.tasks), '{1}', 'every task starts at version 1');
SELECT is((SELECT array_agg(DISTINCT version) FROM crm.pipelines), '{1}',
  'every pipeline starts at version 1 (its stages, inserted after it in the same transaction, do not count)');
SELECT is(pg_temp.value_as(:'max', :'org_a',
    format('SELECT api.deals_create(%L, ''New'', 5, ''EUR'') ->> ''version''', :'c_max')), '1',
  'api.deals_create answers version 1');
SELECT is(pg_temp.value_as(:'max', :'org_a',
    format('INSERT INTO crm.contacts (organization_id, owner_id, name, version) VALUES (%L, %L, ''Seven'', 7) RETURNING version',
           :'org_a', :'max')), '1',
  'an INSERT that names a version gets 1: the trigger owns the column');
SELECT is(pg_temp.value_as(:'olga', :'org_a',
    'SELECT api.pipelines_create(''Renewals'', ''[{"key": "a", "name": "A", "probability": 1}, {"key": "b", "name": "B", "probability": 2}]'') ->> ''version'''),
  '1', 'a new pipeline with two stages is at version 1');

-- +1 per UPDATE statement -----------------------------------------------------------

SELECT is(pg_temp.version_after(:'max', :'org_a',
    format('UPDATE crm.deals SET title = ''T'', amount = 9, currency = ''USD'' WHERE id = %L', :'d_max'), 'deals', :'d_max'), 2,
  'a deal UPDATE setting three columns is one step: 2');
SELECT is(pg_temp.version_after(:'max', :'org_a',
    format('UPDATE crm.deals SET title = ''T'' WHERE id = %1$L; UPDATE crm.deals SET amount = 9 WHERE id = %1$L', :'d_max'),
    'deals', :'d_max'), 3,
  'two UPDATE statements are two steps: 3');
SELECT is(pg_temp.version_after(:'max', :'org_a',
    format('UPDATE crm.contacts SET name = ''N'', phone = ''1'' WHERE id = %L', :'c_max'), 'contacts', :'c_max'), 2,
  'a contact UPDATE: 2');
SELECT is(pg_temp.version_after(:'max', :'org_a',
    format('UPDATE crm.tasks SET title = ''N'', is_done = true WHERE id = %L', :'t_max'), 'tasks', :'t_max'), 2,
  'a task UPDATE: 2');
SELECT is(pg_temp.version_after(:'olga', :'org_a',
    format('UPDATE crm.pipelines SET name = ''N'' WHERE id = %L', :'sales_a'), 'pipelines', :'sales_a'), 2,
  'a pipeline UPDATE: 2');
SELECT is(pg_temp.version_after(:'olga', :'org_a',
    format('SELECT api.deals_update(%L, NULL, ''proposal'', ''Moved'', 50, NULL, NULL, NULL)', :'d_max'), 'deals', :'d_max'), 2,
  'api.deals_update: one step');
SELECT pg_temp.exec_as(:'olga', :'org_a', 'SELECT api.pipelines_create(''Second'', ''[{"key": "a", "name": "A", "probability": 1}]'')');
SELECT id AS second_a FROM crm.pipelines WHERE organization_id = :'org_a' AND name = 'Second' \gset
SELECT is(pg_temp.version_after(:'olga', :'org_a',
    format('SELECT api.pipelines_update(%L, p_name => ''Moved'', p_position => 1)', :'second_a'), 'pipelines', :'second_a'), 2,
  'api.pipelines_update renaming and moving a pipeline: one step');
SELECT is(pg_temp.version_after(:'olga', :'org_a',
    format('SELECT api.pipelines_update(%L, p_position => 1)', :'second_a'), 'pipelines', :'sales_a'), 2,
  'the pipeline it moved past moves a step too (its position changed)');
SELECT is(pg_temp.version_after(:'olga', :'org_a',
    format('UPDATE crm.deals SET title = title WHERE id = %L', :'d_max'), 'deals', :'d_max'), 2,
  'an UPDATE that sets the same value is still one step (updated_at moves with it)');

-- A DBA cannot set it ------------------------------------------------------------------

SELECT pg_temp.exec_as(:'olga', :'org_a', format('UPDATE crm.deals SET title = ''a'' WHERE id = %1$L; UPDATE crm.deals SET title = ''b'' WHERE id = %1$L', :'d_olga'));
SELECT is((SELECT version FROM crm.deals WHERE id = :'d_olga'), 3, 'a deal at version 3 ...');
SELECT is(pg_temp.version_after(:'olga', :'org_a', format('UPDATE crm.deals SET version = 1 WHERE id = %L', :'d_olga'), 'deals', :'d_olga'), 4,
  '... that a DBA sets to version 1 is at 4: never backwards');
SELECT is(pg_temp.version_after(:'olga', :'org_a', format('UPDATE crm.deals SET version = 100 WHERE id = %L', :'d_olga'), 'deals', :'d_olga'), 4,
  'nor ahead: SET version = 100 gives 4');
SELECT is(pg_temp.version_after(NULL, NULL, format('UPDATE crm.deals SET version = 1 WHERE id = %L', :'d_olga'), 'deals', :'d_olga'), 4,
  'nor as the superuser without a context');

-- Stage changes are changes of the pipeline ------------------------------------------

-- This transaction created the fixture's pipelines, which counts as their
-- change (app.pipelines_changed lists them): from here on, as if the
-- fixture had been committed before, in a transaction of its own.
SELECT is(current_setting('app.pipelines_changed') LIKE '%' || :'sales_a' || '%', true,
  'a transaction that creates a pipeline lists it as changed');
SELECT set_config('app.pipelines_changed', '', true);
SELECT results_eq($$
  SELECT f.what, pg_temp.version_after(pg_temp.fx('olga'), pg_temp.fx('org_a'), f.sql, 'pipelines', pg_temp.fx('sales_a'))
    FROM (VALUES
      (1, 'add a stage (API)', format('SELECT api.pipeline_stages_create(%L, ''demo'', ''Demo'', 20, 2)', pg_temp.fx('sales_a'))),
      (2, 'move a stage (API)', format('SELECT api.pipeline_stages_update(%L, ''closed'', p_position => 1)', pg_temp.fx('sales_a'))),
      (3, 'rename a stage (API)', format('SELECT api.pipeline_stages_update(%L, ''proposal'', p_name => ''Offer'')', pg_temp.fx('sales_a'))),
      (4, 'delete a middle stage (API)', format('SELECT api.pipeline_stages_delete(%L, ''negotiation'')', pg_temp.fx('sales_a'))),
      (5, 'delete the last stage (API)', format('SELECT api.pipeline_stages_delete(%L, ''closed'')', pg_temp.fx('sales_a'))),
      (6, 'rename a stage (psql)', format('UPDATE crm.pipeline_stages SET name = ''x'' WHERE pipeline_id = %L AND key = ''closed''', pg_temp.fx('sales_a'))),
      (7, 'rename every stage (psql, one statement)', format('UPDATE crm.pipeline_stages SET name = name || ''!'' WHERE pipeline_id = %L', pg_temp.fx('sales_a'))),
      (8, 'two stage changes in one transaction', format('SELECT api.pipeline_stages_update(%1$L, ''proposal'', p_name => ''Offer''); SELECT api.pipeline_stages_create(%1$L, ''demo'', ''Demo'', 20)', pg_temp.fx('sales_a'))),
      (9, 'a stage PATCH that changes nothing', format('SELECT api.pipeline_stages_update(%L, ''proposal'')', pg_temp.fx('sales_a')))
    ) f (n, what, sql) ORDER BY f.n $$,
  $$ VALUES ('add a stage (API)', 2), ('move a stage (API)', 2), ('rename a stage (API)', 2),
            ('delete a middle stage (API)', 2), ('delete the last stage (API)', 2), ('rename a stage (psql)', 2),
            ('rename every stage (psql, one statement)', 2), ('two stage changes in one transaction', 2),
            ('a stage PATCH that changes nothing', 1) $$,
  'each change of a pipeline''s stages, through the API or in psql, moves the pipeline''s version once');
SELECT is(pg_temp.value_as(:'olga', :'org_a', format('SELECT api.pipeline_stages_update(%L, ''proposal'', p_name => ''Offer'') ->> ''version''', :'sales_a')),
  '2', 'and the stage routes answer the pipeline at its new version');
SELECT is(pg_temp.value_as(:'olga', :'org_a', format('SELECT api.pipeline_stages_update(%L, ''proposal'', p_probability => 31) ->> ''version''', :'sales_a')),
  '2', 'a second stage change in the same transaction: still 2');
SELECT set_config('app.pipelines_changed', '', true);

-- If-Match in the API functions ----------------------------------------------------


-- Every writing function with p_if_match: %1$s is the record, %2$s the
-- If-Match array. The fixture's records are at version 1 (the pipeline at 2).
CREATE TEMP TABLE fx_writes (n int, what text, sql text);
INSERT INTO fx_writes VALUES
  (1, 'contacts_update', 'SELECT api.contacts_update(%1$L, ''{name}'', ''N'', NULL, NULL, NULL, p_if_match => %2$L)'),
  (2, 'contacts_delete', 'SELECT api.contacts_delete(%1$L, p_if_match => %2$L)'),
  (3, 'deals_update', 'SELECT api.deals_update(%1$L, NULL, NULL, ''N'', NULL, NULL, NULL, NULL, p_if_match => %2$L)'),
  (4, 'deals_delete', 'SELECT api.deals_delete(%1$L, p_if_match => %2$L)'),
  (5, 'tasks_update', 'SELECT api.tasks_update(%1$L, ''{title}'', ''N'', NULL, NULL, NULL, p_if_match => %2$L)'),
  (6, 'tasks_delete', 'SELECT api.tasks_delete(%1$L, p_if_match => %2$L)'),
  (7, 'pipelines_update', 'SELECT api.pipelines_update(%1$L, ''N'', p_if_match => %2$L)'),
  (8, 'pipelines_delete', 'SELECT api.pipelines_delete(%1$L, p_if_match => %2$L)'),
  (9, 'pipeline_stages_create', 'SELECT api.pipeline_stages_create(%1$L, ''demo'', ''Demo'', 20, p_if_match => %2$L)'),
  (10, 'pipeline_stages_update', 'SELECT api.pipeline_stages_update(%1$L, ''proposal'', ''P'', p_if_match => %2$L)'),
  (11, 'pipeline_stages_delete', 'SELECT api.pipeline_stages_delete(%1$L, ''negotiation'', p_if_match => %2$L)');
-- The record each one writes (the contact without deals, so it may go; a
-- second pipeline, so the first may go).
SELECT pg_temp.exec_as(:'olga', :'org_a', 'SELECT api.pipelines_create(''Spare'', ''[{"key": "a", "name": "A", "probability": 1}]'')');
CREATE FUNCTION pg_temp.target(p_n int) RETURNS uuid LANGUAGE sql STABLE AS $$
  SELECT CASE WHEN p_n <= 2 THEN pg_temp.fx('f_max') WHEN p_n <= 4 THEN pg_temp.fx('d_max')
              WHEN p_n <= 6 THEN pg_temp.fx('t_max') ELSE pg_temp.fx('sales_a') END
$$;
CREATE FUNCTION pg_temp.current(p_n int) RETURNS text LANGUAGE sql STABLE AS $$
  SELECT CASE WHEN p_n <= 6 THEN '{1}' ELSE '{2}' END
$$;

SELECT results_eq($$
  SELECT w.what, pg_temp.try_as(pg_temp.fx('olga'), pg_temp.fx('org_a'), format(w.sql, pg_temp.target(w.n), pg_temp.current(w.n)))
    FROM fx_writes w ORDER BY w.n $$,
  $$ VALUES ('contacts_update', 'ok'), ('contacts_delete', 'ok'), ('deals_update', 'ok'), ('deals_delete', 'ok'),
            ('tasks_update', 'ok'), ('tasks_delete', 'ok'), ('pipelines_update', 'ok'), ('pipelines_delete', 'MC409 pipeline_has_deals'),
            ('pipeline_stages_create', 'ok'), ('pipeline_stages_update', 'ok'), ('pipeline_stages_delete', 'ok') $$,
  'If-Match naming the current version: the write happens (the pipeline delete gets past it to the 409 of its deals)');
SELECT results_eq($$
  SELECT w.what, pg_temp.try_as(pg_temp.fx('olga'), pg_temp.fx('org_a'), format(w.sql, pg_temp.target(w.n), '{3,7}'))
    FROM fx_writes w ORDER BY w.n $$,
  $$ SELECT w.what, 'MC412 precondition_failed' FROM fx_writes w ORDER BY w.n $$,
  'If-Match naming other versions: MC412 precondition_failed from every writing function');
SELECT results_eq($$
  SELECT w.what, pg_temp.try_as(pg_temp.fx('olga'), pg_temp.fx('org_a'), format(w.sql, pg_temp.target(w.n), '{}'))
    FROM fx_writes w ORDER BY w.n $$,
  $$ SELECT w.what, 'MC412 precondition_failed' FROM fx_writes w ORDER BY w.n $$,
  'an empty If-Match list (only weak or foreign tags) matches nothing: MC412');
SELECT results_eq($$
  SELECT w.what, pg_temp.try_as(pg_temp.fx('olga'), pg_temp.fx('org_a'), format(w.sql, pg_temp.target(w.n), NULL))
    FROM fx_writes w ORDER BY w.n $$,
  $$ VALUES ('contacts_update', 'ok'), ('contacts_delete', 'ok'), ('deals_update', 'ok'), ('deals_delete', 'ok'),
            ('tasks_update', 'ok'), ('tasks_delete', 'ok'), ('pipelines_update', 'ok'), ('pipelines_delete', 'MC409 pipeline_has_deals'),
            ('pipeline_stages_create', 'ok'), ('pipeline_stages_update', 'ok'), ('pipeline_stages_delete', 'ok') $$,
  'p_if_match NULL (no If-Match, or `*`): no condition');
SELECT results_eq($$
  SELECT w.what, pg_temp.try_as(pg_temp.fx('olga'), pg_temp.fx('org_a'),
                                format(w.sql, '00000000-0000-0000-0000-00000000dead', '{2}'))
    FROM fx_writes w ORDER BY w.n $$,
  $$ VALUES ('contacts_update', 'MC404 contact_not_found'), ('contacts_delete', 'MC404 contact_not_found'),
            ('deals_update', 'MC404 deal_not_found'), ('deals_delete', 'MC404 deal_not_found'),
            ('tasks_update', 'MC404 task_not_found'), ('tasks_delete', 'MC404 task_not_found'),
            ('pipelines_update', 'MC404 pipeline_not_found'), ('pipelines_delete', 'MC404 pipeline_not_found'),
            ('pipeline_stages_create', 'MC404 pipeline_not_found'), ('pipeline_stages_update', 'MC404 pipeline_not_found'),
            ('pipeline_stages_delete', 'MC404 pipeline_not_found') $$,
  'a missing record is 404 whatever If-Match says (404 wins over 412)');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.deals_update(%L, NULL, NULL, ''N'', NULL, NULL, NULL, NULL, p_if_match => ''{1}'')', :'d_zed')),
  'MC404 deal_not_found', 'another organization''s deal at the version named: 404, not 412');

-- Nothing changes on a mismatch (the error undoes the statement; checked anyway).
SELECT throws_ok(format('SELECT pg_temp.exec_as(%L, %L, %L)', :'olga', :'org_a',
    format('SELECT api.deals_update(%L, NULL, NULL, ''Stale'', NULL, NULL, NULL, NULL, p_if_match => ''{7}'')', :'d_max')),
  'MC412', 'the deal has changed: If-Match does not name its current version', 'a stale If-Match on a deal ...');
SELECT is((SELECT title || ' v' || version FROM crm.deals WHERE id = :'d_max'), 'Max''s deal v1', '... leaves it as it was');
SELECT throws_ok(format('SELECT pg_temp.exec_as(%L, %L, %L)', :'olga', :'org_a',
    format('SELECT api.deals_delete(%L, p_if_match => ''{7}'')', :'d_max')),
  'MC412', NULL, 'a stale If-Match on a delete ...');
SELECT is((SELECT count(*)::int FROM crm.deals WHERE id = :'d_max'), 1, '... deletes nothing');
SELECT throws_ok(format('SELECT pg_temp.exec_as(%L, %L, %L)', :'olga', :'org_a',
    format('SELECT api.pipeline_stages_delete(%L, ''negotiation'', p_if_match => ''{1}'')', :'sales_a')),
  'MC412', NULL, 'a stale pipeline If-Match on a stage delete ...');
SELECT is(pg_temp.stages(:'sales_a'), 'qualification:1:10 proposal:2:31 negotiation:3:60 closed:4:100', '... keeps the stages');

-- A match writes and moves the version: the old ETag no longer matches.
SELECT is(pg_temp.value_as(:'olga', :'org_a', format('SELECT api.deals_update(%L, NULL, NULL, ''Fresh'', NULL, NULL, NULL, NULL, p_if_match => ''{5,1}'') ->> ''version''', :'d_max')),
  '2', 'If-Match with a list that holds the current version writes: version 2');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.deals_update(%L, NULL, NULL, ''Again'', NULL, NULL, NULL, NULL, p_if_match => ''{1}'')', :'d_max')),
  'MC412 precondition_failed', 'and the ETag it replaced no longer matches');
SELECT is(pg_temp.try_as(:'max', :'org_a', format('SELECT api.deals_update(%L, NULL, NULL, ''N'', NULL, NULL, NULL, NULL, p_if_match => ''{2}'')', :'d_rita')),
  'MC412 precondition_failed', 'a member with a stale ETag on another member''s deal: 412 (the condition is part of the UPDATE, before the rules)');
SELECT is(pg_temp.try_as(:'max', :'org_a', format('SELECT api.deals_update(%L, NULL, NULL, ''N'', NULL, NULL, NULL, NULL, p_if_match => ''{1}'')', :'d_rita')),
  'MC403 role_forbidden', 'and with the current one: 403, as without If-Match');

SELECT * FROM finish();
ROLLBACK;
