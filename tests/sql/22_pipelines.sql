-- Pipelines with custom stages (SPEC §9): the default pipeline of every new
-- organization, who may manage pipelines, every 409 and 400 of the SQL API,
-- the positions (1..n after every insert, move and delete, checked at commit
-- for every writer), and the foreign key from deals to their stage as the
-- backstop of stage_has_deals / pipeline_has_deals.
BEGIN;
SELECT plan(61);
\ir pipeline_fixture.psql

-- What try_as does, returning the field (COLUMN) of the error instead.
CREATE FUNCTION pg_temp.field_as(p_user uuid, p_org uuid, p_sql text) RETURNS text
  LANGUAGE plpgsql AS $$
DECLARE
  v_field text;
BEGIN
  BEGIN
    PERFORM app.act_as(p_user, p_org);
    EXECUTE p_sql;
    RAISE EXCEPTION USING ERRCODE = 'TT000', MESSAGE = 'undo';
  EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_field = COLUMN_NAME;
  END;
  RETURN v_field;
END
$$;

-- What try_as does, and then what a commit would check (the deferred
-- constraints and constraint triggers).
CREATE FUNCTION pg_temp.try_commit_as(p_user uuid, p_org uuid, p_sql text) RETURNS text
  LANGUAGE plpgsql AS $$
DECLARE
  v_state text;
  v_code text;
BEGIN
  BEGIN
    PERFORM app.act_as(p_user, p_org);
    EXECUTE p_sql;
    SET CONSTRAINTS ALL IMMEDIATE;
    RAISE EXCEPTION USING ERRCODE = 'TT000', MESSAGE = 'undo';
  EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_code = CONSTRAINT_NAME;
  END;
  RETURN CASE WHEN v_state = 'TT000' THEN 'ok' ELSE v_state || coalesce(' ' || nullif(v_code, ''), '') END;
END
$$;

-- A pipeline's stages as key:position:probability, in position order.
CREATE FUNCTION pg_temp.stages(p_pipeline uuid) RETURNS text LANGUAGE sql STABLE AS $$
  SELECT string_agg(key || ':' || position || ':' || probability, ' ' ORDER BY position)
    FROM crm.pipeline_stages WHERE pipeline_id = p_pipeline
$$;

-- psql variables do not reach into dollar-quoted text: the ids the
-- table-driven checks below need, by name (pg_temp.fx('sales_a')).
CREATE FUNCTION pg_temp.fx(p_name text) RETURNS uuid LANGUAGE sql STABLE AS $$
  SELECT current_setting('fx.' || p_name)::uuid
$$;
SELECT set_config('fx.' || n, v, false)
  FROM (VALUES ('org_a', :'org_a'), ('org_b', :'org_b'), ('olga', :'olga'), ('zed', :'zed'),
               ('max', :'max'), ('c_max', :'c_max'), ('d_max', :'d_max')) x (n, v);

-- The default pipeline -------------------------------------------------------------

-- The fixture made A and B with a plain INSERT, as a DBA in psql would.
SELECT is((SELECT string_agg(name || '@' || position, ',') FROM crm.pipelines WHERE organization_id = :'org_a'), 'Sales@1',
  'an organization inserted in psql has one pipeline, "Sales", at position 1');
SELECT id AS sales_a FROM crm.pipelines WHERE organization_id = :'org_a' \gset
SELECT id AS sales_b FROM crm.pipelines WHERE organization_id = :'org_b' \gset
SELECT set_config('fx.sales_a', :'sales_a', false), set_config('fx.sales_b', :'sales_b', false);
SELECT is(pg_temp.stages(:'sales_a'), 'qualification:1:10 proposal:2:30 negotiation:3:60 closed:4:100',
  'with the four stages and their probabilities, in order');
SELECT is((SELECT string_agg(name, ',' ORDER BY position) FROM crm.pipeline_stages WHERE pipeline_id = :'sales_a'),
  'Qualification,Proposal,Negotiation,Closed', 'named for people');
SELECT is(pg_temp.stages(:'sales_b'), pg_temp.stages(:'sales_a'), 'B has its own, the same');
SELECT is((SELECT count(*)::int FROM crm.deals WHERE organization_id = :'org_a' AND pipeline_id = :'sales_a' AND stage = 'qualification'), 5,
  'a deal inserted without pipeline or stage lands in the first pipeline''s first stage');
-- POST /organizations (and register, which calls it): the same pipeline.
SELECT (pg_temp.value_as(:'olga', NULL, 'SELECT api.organizations_create(''Third'') ->> ''id''')) AS org_c \gset
SELECT is((SELECT string_agg(p.name, ',') || ' ' || pg_temp.stages(min(p.id::text)::uuid)
             FROM crm.pipelines p WHERE p.organization_id = :'org_c'),
  'Sales qualification:1:10 proposal:2:30 negotiation:3:60 closed:4:100',
  'api.organizations_create gives the new organization "Sales" too');
SELECT is(pg_temp.value_as(:'olga', :'org_c', 'SELECT jsonb_array_length(api.pipelines_list() -> ''items'')'), '1',
  '... which its owner lists');

-- Reading: every member; the list is in position order with the stages -------------

SELECT is(pg_temp.value_as(:'max', :'org_a', 'SELECT api.pipelines_list() #>> ''{items,0,stages,1,key}'''), 'proposal',
  'a member reads the pipelines, stages in order');
SELECT is(pg_temp.value_as(:'max', :'org_a', format('SELECT api.pipelines_get(%L) ->> ''name''', :'sales_a')), 'Sales',
  'and one pipeline');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.pipelines_get(%L)', :'sales_b')), 'MC404 pipeline_not_found',
  'another organization''s pipeline is not found');

-- Who manages: owner and admin; 403 role_forbidden for managers and members --------

SELECT results_eq($$
  SELECT f.what, pg_temp.try_as(p.user_id, pg_temp.fx('org_a'), f.sql)
    FROM fx_people p CROSS JOIN (VALUES
      (1, 'create a pipeline', 'SELECT api.pipelines_create(''Renewals'', ''[{"key": "due", "name": "Due", "probability": 50}]'')'),
      (2, 'rename a pipeline', format('SELECT api.pipelines_update(%L, p_name => ''Sales EMEA'')', pg_temp.fx('sales_a'))),
      (3, 'add a stage', format('SELECT api.pipeline_stages_create(%L, ''demo'', ''Demo'', 20, 2)', pg_temp.fx('sales_a'))),
      (4, 'change a stage', format('SELECT api.pipeline_stages_update(%L, ''proposal'', p_probability => 35)', pg_temp.fx('sales_a'))),
      (5, 'delete an empty stage', format('SELECT api.pipeline_stages_delete(%L, ''negotiation'')', pg_temp.fx('sales_a'))),
      (6, 'change a stage in psql', format('UPDATE crm.pipeline_stages SET name = ''x'' WHERE pipeline_id = %L', pg_temp.fx('sales_a')))
    ) f (n, what, sql)
   WHERE p.org = pg_temp.fx('org_a') AND p.name <> 'rita'
   ORDER BY p.n, f.n $$,
  $$ SELECT * FROM (VALUES
      ('create a pipeline', 'ok'), ('rename a pipeline', 'ok'), ('add a stage', 'ok'), ('change a stage', 'ok'),
      ('delete an empty stage', 'ok'), ('change a stage in psql', 'ok'),
      ('create a pipeline', 'ok'), ('rename a pipeline', 'ok'), ('add a stage', 'ok'), ('change a stage', 'ok'),
      ('delete an empty stage', 'ok'), ('change a stage in psql', 'ok'),
      ('create a pipeline', 'MC403 role_forbidden'), ('rename a pipeline', 'MC403 role_forbidden'),
      ('add a stage', 'MC403 role_forbidden'), ('change a stage', 'MC403 role_forbidden'),
      ('delete an empty stage', 'MC403 role_forbidden'), ('change a stage in psql', 'MC403 role_forbidden'),
      ('create a pipeline', 'MC403 role_forbidden'), ('rename a pipeline', 'MC403 role_forbidden'),
      ('add a stage', 'MC403 role_forbidden'), ('change a stage', 'MC403 role_forbidden'),
      ('delete an empty stage', 'MC403 role_forbidden'), ('change a stage in psql', 'MC403 role_forbidden')) v $$,
  'owner and admin manage pipelines and stages (API and psql); a manager and a member get 403 role_forbidden');

-- A second pipeline for the rest, made by the admin.
SELECT (pg_temp.value_as(:'adam', :'org_a', $$SELECT api.pipelines_create(' Renewals ', '[
    {"key": "due", "name": "Due", "probability": 40}, {"key": "quoted", "name": " Quoted ", "probability": 70},
    {"key": "renewed", "name": "Renewed", "probability": 100}]') ->> 'id'$$)) AS renewals \gset
SELECT set_config('fx.renewals', :'renewals', false);
SELECT is((SELECT name || '@' || position FROM crm.pipelines WHERE id = :'renewals'), 'Renewals@2',
  'a new pipeline comes last, its name trimmed');
SELECT is(pg_temp.stages(:'renewals'), 'due:1:40 quoted:2:70 renewed:3:100', 'its stages in the order given');
SELECT is((SELECT name FROM crm.pipeline_stages WHERE pipeline_id = :'renewals' AND key = 'quoted'), 'Quoted', 'stage names are trimmed');

-- 400: bad input, with the field ---------------------------------------------------

SELECT results_eq($$
  SELECT pg_temp.try_as(pg_temp.fx('olga'), pg_temp.fx('org_a'), sql), pg_temp.field_as(pg_temp.fx('olga'), pg_temp.fx('org_a'), sql)
    FROM (VALUES
      (1, 'SELECT api.pipelines_create(''Empty'', ''[]'')'),
      (2, 'SELECT api.pipelines_create(''Twice'', ''[{"key": "a", "name": "A", "probability": 1}, {"key": "b", "name": "B", "probability": 2}, {"key": "a", "name": "A2", "probability": 3}]'')'),
      (3, 'SELECT api.pipelines_create(''Bad key'', ''[{"key": "ok", "name": "A", "probability": 1}, {"key": "9lives", "name": "B", "probability": 2}]'')'),
      (4, 'SELECT api.pipelines_create(''Bad key'', ''[{"key": "Upper", "name": "A", "probability": 1}]'')'),
      (5, 'SELECT api.pipelines_create(''Long key'', ''[{"key": "a' || repeat('b', 40) || '", "name": "A", "probability": 1}]'')'),
      (6, 'SELECT api.pipelines_create(''Odds'', ''[{"key": "a", "name": "A", "probability": 101}]'')'),
      (7, 'SELECT api.pipelines_create(''Odds'', ''[{"key": "a", "name": "A", "probability": 1}, {"key": "b", "name": "B", "probability": -1}]'')'),
      (8, 'SELECT api.pipelines_create(''Blank'', ''[{"key": "a", "name": " ", "probability": 1}]'')'),
      (9, 'SELECT api.pipelines_create('' '', ''[{"key": "a", "name": "A", "probability": 1}]'')'),
      (10, format('SELECT api.pipeline_stages_create(%L, ''has-dash'', ''X'', 10)', pg_temp.fx('renewals'))),
      (11, format('SELECT api.pipeline_stages_create(%L, ''x'', ''X'', 200)', pg_temp.fx('renewals'))),
      (12, format('SELECT api.pipeline_stages_create(%L, ''x'', ''X'', 10, 5)', pg_temp.fx('renewals'))),
      (13, format('SELECT api.pipeline_stages_create(%L, ''x'', ''X'', 10, 0)', pg_temp.fx('renewals'))),
      (14, format('SELECT api.pipeline_stages_update(%L, ''due'', p_position => 4)', pg_temp.fx('renewals'))),
      (15, format('SELECT api.pipeline_stages_update(%L, ''due'', p_position => 0)', pg_temp.fx('renewals'))),
      (16, format('SELECT api.pipeline_stages_update(%L, ''due'', p_probability => 101)', pg_temp.fx('renewals'))),
      (17, format('SELECT api.pipelines_update(%L, p_position => 3)', pg_temp.fx('renewals'))),
      (18, format('SELECT api.pipelines_update(%L, p_position => -1)', pg_temp.fx('renewals'))),
      (19, format('UPDATE crm.pipeline_stages SET key = ''due_now'' WHERE pipeline_id = %L AND key = ''due''', pg_temp.fx('renewals')))
    ) c (n, sql) ORDER BY n $$,
  $$ VALUES ('MC400 stages_required', 'stages'), ('MC400 stage_key_duplicate', 'stages[2].key'),
            ('23514 pipeline_stages_key_invalid', 'stages[1].key'), ('23514 pipeline_stages_key_invalid', 'stages[0].key'),
            ('23514 pipeline_stages_key_invalid', 'stages[0].key'),
            ('23514 pipeline_stages_probability_invalid', 'stages[0].probability'),
            ('23514 pipeline_stages_probability_invalid', 'stages[1].probability'),
            ('23514 pipeline_stages_name_invalid', 'stages[0].name'),
            ('23514 pipelines_name_invalid', ''),
            ('23514 pipeline_stages_key_invalid', ''), ('23514 pipeline_stages_probability_invalid', ''),
            ('MC400 position_out_of_range', 'position'), ('MC400 position_out_of_range', 'position'),
            ('MC400 position_out_of_range', 'position'), ('MC400 position_out_of_range', 'position'),
            ('23514 pipeline_stages_probability_invalid', ''),
            ('MC400 position_out_of_range', 'position'), ('MC400 position_out_of_range', 'position'),
            ('MC400 stage_key_immutable', 'key') $$,
  'bad keys, probabilities outside 0–100, blank names, an empty stage list, a key twice in one body, positions out of range and a changed key are 400, each naming its field');
SELECT is(pg_temp.value_as(:'olga', :'org_a', 'SELECT count(*) FROM crm.pipelines'), '2', 'none of them made a pipeline');

-- 409: conflicts with what is stored ------------------------------------------------

SELECT results_eq($$
  SELECT pg_temp.try_as(u, o, sql) FROM (VALUES
      (1, pg_temp.fx('olga')::uuid, pg_temp.fx('org_a')::uuid, format('SELECT api.pipeline_stages_delete(%L, ''qualification'')', pg_temp.fx('sales_a'))),
      (2, pg_temp.fx('olga'), pg_temp.fx('org_a'), format('SELECT api.pipelines_delete(%L)', pg_temp.fx('sales_a'))),
      (3, pg_temp.fx('zed'), pg_temp.fx('org_b'), format('SELECT api.pipelines_delete(%L)', pg_temp.fx('sales_b'))),
      (4, pg_temp.fx('olga'), pg_temp.fx('org_a'), format('SELECT api.pipeline_stages_create(%L, ''quoted'', ''Again'', 10)', pg_temp.fx('renewals'))),
      (5, pg_temp.fx('olga'), pg_temp.fx('org_a'), 'SELECT api.pipelines_create(''SALES'', ''[{"key": "a", "name": "A", "probability": 1}]'')'),
      (6, pg_temp.fx('olga'), pg_temp.fx('org_a'), format('SELECT api.pipelines_update(%L, p_name => %L)', pg_temp.fx('renewals'), U&'\FF53ales')),
      (7, pg_temp.fx('olga'), pg_temp.fx('org_a'), format('DELETE FROM crm.pipeline_stages WHERE pipeline_id = %L AND key = ''qualification''', pg_temp.fx('sales_a'))),
      (8, pg_temp.fx('olga'), pg_temp.fx('org_a'), format('DELETE FROM crm.pipelines WHERE id = %L', pg_temp.fx('sales_a')))
    ) c (n, u, o, sql) ORDER BY n $$,
  $$ VALUES ('MC409 stage_has_deals'), ('MC409 pipeline_has_deals'), ('MC409 last_pipeline'),
            ('23505 pipeline_stages_key_taken'), ('23505 pipelines_name_taken'), ('23505 pipelines_name_taken'),
            ('MC409 stage_has_deals'), ('MC409 pipeline_has_deals') $$,
  'a stage or pipeline holding deals, the last pipeline, a taken key, a taken name (any case, fullwidth too): 409, through the API and in psql');
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'olga', :'org_a',
  $q$SELECT api.pipelines_create('Solo', '[{"key": "only", "name": "Only", "probability": 50}]')$q$),
  'a pipeline with one stage');
SELECT id AS solo FROM crm.pipelines WHERE name = 'Solo' \gset
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.pipeline_stages_delete(%L, ''only'')', :'solo')), 'MC409 last_stage',
  'its last stage cannot go: 409 last_stage');
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'olga', :'org_a', format('SELECT api.pipelines_delete(%L)', :'solo')),
  'but the pipeline without deals can go, stages and all');
SELECT is((SELECT count(*)::int FROM crm.pipeline_stages WHERE pipeline_id = :'solo'), 0, '... its stages with it');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.pipeline_stages_delete(%L, ''nope'')', :'renewals')), 'MC404 stage_not_found',
  'an unknown stage key is 404 stage_not_found');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.pipeline_stages_create(%L, ''x'', ''X'', 1)', :'sales_b')), 'MC404 pipeline_not_found',
  'stages of another organization''s pipeline are not found');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.pipelines_delete(%L)', :'sales_b')), 'MC404 pipeline_not_found',
  'nor is the pipeline, to delete');

-- The foreign key from deals to their stage is the backstop: with the guard's
-- check out of the way, the API still answers 409 (never a 500). (ALTER
-- TABLE needs the deferred checks done first.)
SET CONSTRAINTS ALL IMMEDIATE;
ALTER TABLE crm.pipeline_stages DISABLE TRIGGER pipeline_stages_guard;
SET CONSTRAINTS ALL DEFERRED;
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.pipeline_stages_delete(%L, ''qualification'')', :'sales_a')),
  'MC409 stage_has_deals', 'without the guard, the foreign key refuses the stage delete: still 409 stage_has_deals');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('DELETE FROM crm.pipeline_stages WHERE pipeline_id = %L AND key = ''qualification''', :'sales_a')),
  '23503 deals_stage_not_in_pipeline', '... and a plain DELETE meets the foreign key');
SET CONSTRAINTS ALL IMMEDIATE;
ALTER TABLE crm.pipeline_stages ENABLE TRIGGER pipeline_stages_guard;
ALTER TABLE crm.pipelines DISABLE TRIGGER pipelines_guard;
SET CONSTRAINTS ALL DEFERRED;
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.pipelines_delete(%L)', :'sales_a')),
  'MC409 pipeline_has_deals', 'without the guard, the foreign key refuses the pipeline delete: still 409 pipeline_has_deals');
SET CONSTRAINTS ALL IMMEDIATE;
ALTER TABLE crm.pipelines ENABLE TRIGGER pipelines_guard;
SET CONSTRAINTS ALL DEFERRED;

-- Positions: 1..n after every insert, move and delete ---------------------------------

SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'olga', :'org_a',
  format('SELECT api.pipeline_stages_create(%L, ''call'', ''Call'', 20, 1)', :'renewals')), 'a stage inserted first');
SELECT is(pg_temp.stages(:'renewals'), 'call:1:20 due:2:40 quoted:3:70 renewed:4:100', 'the others shift down');
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'olga', :'org_a',
  format('SELECT api.pipeline_stages_create(%L, ''lost_cause'', ''Lost cause'', 0)', :'renewals')), 'a stage appended (no position)');
SELECT is(pg_temp.stages(:'renewals'), 'call:1:20 due:2:40 quoted:3:70 renewed:4:100 lost_cause:5:0', 'it comes last');
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'olga', :'org_a',
  format('SELECT api.pipeline_stages_update(%L, ''call'', p_position => 4, p_name => ''First call'')', :'renewals')),
  'a stage moved down, and renamed');
SELECT is(pg_temp.stages(:'renewals'), 'due:1:40 quoted:2:70 renewed:3:100 call:4:20 lost_cause:5:0', 'the ones in between move up');
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'olga', :'org_a',
  format('SELECT api.pipeline_stages_update(%L, ''lost_cause'', p_position => 2, p_probability => 5)', :'renewals')),
  'a stage moved up, its probability changed');
SELECT is(pg_temp.stages(:'renewals'), 'due:1:40 lost_cause:2:5 quoted:3:70 renewed:4:100 call:5:20', 'the ones in between move down');
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'olga', :'org_a',
  format('SELECT api.pipeline_stages_delete(%L, ''quoted'')', :'renewals')), 'a stage in the middle deleted');
SELECT is(pg_temp.stages(:'renewals'), 'due:1:40 lost_cause:2:5 renewed:3:100 call:4:20', 'the later ones close the gap');
SELECT is(pg_temp.value_as(:'olga', :'org_a', format('SELECT api.pipelines_get(%L) #>> ''{stages,3,name}''', :'renewals')),
  'First call', 'the pipeline reads its stages in the new order');
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'olga', :'org_a',
  format('SELECT api.pipelines_update(%L, p_position => 1)', :'renewals')), 'a pipeline moved first');
SELECT is((SELECT string_agg(name || '@' || position, ',' ORDER BY position) FROM crm.pipelines WHERE organization_id = :'org_a'),
  'Renewals@1,Sales@2', 'the other moves down');
SELECT is(pg_temp.try_commit_as(:'olga', :'org_a', format('SELECT api.pipelines_update(%L, p_position => 2)', :'renewals')), 'ok',
  'the moves pass the commit-time checks');
SELECT is(pg_temp.try_commit_as(:'olga', :'org_a', format('SELECT api.pipeline_stages_update(%L, ''call'', p_position => 1)', :'renewals')), 'ok',
  '... stage moves too');
SELECT is(pg_temp.try_commit_as(:'olga', :'org_a', format('SELECT api.pipeline_stages_delete(%L, ''due'')', :'renewals')), 'ok',
  '... and stage deletes');

-- In psql, positions may pass through anything inside a transaction, but must
-- be 1..n and distinct when it commits.
SELECT is(pg_temp.try_commit_as(:'olga', :'org_a', format(
    'UPDATE crm.pipeline_stages SET position = 5 - position WHERE pipeline_id = %L', :'renewals')), 'ok',
  'a DBA reverses the stages in one statement (the unique positions are deferred)');
SELECT is(pg_temp.try_commit_as(:'olga', :'org_a', format(
    'UPDATE crm.pipeline_stages SET position = 9 WHERE pipeline_id = %L AND key = ''call''', :'renewals')),
  'MC400 position_out_of_range', 'a gap in the positions is refused at commit');
SELECT is(pg_temp.try_commit_as(:'olga', :'org_a', format(
    'UPDATE crm.pipeline_stages SET position = 1 WHERE pipeline_id = %L AND key = ''renewed''', :'renewals')),
  '23505 pipeline_stages_position_taken', 'two stages at one position are refused at commit');
SELECT is(pg_temp.try_commit_as(:'olga', :'org_a', format(
    'DELETE FROM crm.pipeline_stages WHERE pipeline_id = %L AND key = ''lost_cause''', :'renewals')),
  'MC400 position_out_of_range', 'a plain DELETE that leaves a gap is refused at commit');
SELECT is(pg_temp.try_commit_as(:'olga', :'org_a', format(
    'UPDATE crm.pipelines SET position = 3 WHERE id = %L', :'renewals')),
  'MC400 position_out_of_range', 'so is a gap in the pipelines');
SELECT is(pg_temp.try_commit_as(:'olga', :'org_a', format(
    'DELETE FROM crm.pipeline_stages WHERE pipeline_id = %L AND key = ''lost_cause''; UPDATE crm.pipeline_stages SET position = position - 1 WHERE pipeline_id = %L AND position > 2',
    :'renewals', :'renewals')), 'ok', 'a DELETE with its renumbering commits');

-- Deals and pipelines ---------------------------------------------------------------

SELECT is(pg_temp.try_as(:'max', :'org_a', format('SELECT api.deals_create(%L, ''New'', 10, ''EUR'', p_pipeline_id => %L)', :'c_max', :'renewals')),
  'ok', 'a member creates a deal in another pipeline');
SELECT is(pg_temp.value_as(:'max', :'org_a', format('SELECT api.deals_create(%L, ''New'', 10, ''EUR'', p_pipeline_id => %L) ->> ''stage''', :'c_max', :'renewals')),
  (SELECT key FROM crm.pipeline_stages WHERE pipeline_id = :'renewals' AND position = 1), '... in its first stage by default');
SELECT is(pg_temp.value_as(:'max', :'org_a', format('SELECT api.deals_create(%L, ''New'', 10, ''EUR'', p_pipeline_id => %L, p_stage => ''renewed'') ->> ''stage''', :'c_max', :'renewals')),
  'renewed', '... or in the stage asked for');
SELECT results_eq($$
  SELECT pg_temp.try_as(pg_temp.fx('max'), pg_temp.fx('org_a'), sql) FROM (VALUES
      (1, format('SELECT api.deals_create(%L, ''New'', 10, ''EUR'', p_stage => ''nope'')', pg_temp.fx('c_max'))),
      (2, format('SELECT api.deals_create(%L, ''New'', 10, ''EUR'', p_pipeline_id => %L)', pg_temp.fx('c_max'), pg_temp.fx('sales_b'))),
      (3, format('SELECT api.deals_create(%L, ''New'', 10, ''EUR'', p_pipeline_id => %L)', pg_temp.fx('c_max'), gen_random_uuid())),
      (4, format('SELECT api.deals_update(%L, NULL, ''renewed'', NULL, NULL, NULL, NULL, NULL)', pg_temp.fx('d_max'))),
      (5, format('SELECT api.deals_update(%L, NULL, NULL, NULL, NULL, NULL, NULL, NULL, %L)', pg_temp.fx('d_max'), pg_temp.fx('sales_b'))),
      (6, format('UPDATE crm.deals SET pipeline_id = %L WHERE id = %L', pg_temp.fx('renewals'), pg_temp.fx('d_max'))),
      (7, format('INSERT INTO crm.deals (organization_id, contact_id, owner_id, title, amount, currency, pipeline_id, stage) VALUES (%L, %L, %L, ''X'', 1, ''EUR'', %L, ''nope'')', pg_temp.fx('org_a'), pg_temp.fx('c_max'), pg_temp.fx('max'), pg_temp.fx('sales_a')))
    ) c (n, sql) ORDER BY n $$,
  $$ VALUES ('MC400 stage_not_in_pipeline'), ('MC404 pipeline_not_found'), ('MC404 pipeline_not_found'),
            ('MC400 stage_not_in_pipeline'), ('MC404 pipeline_not_found'), ('MC400 stage_not_in_pipeline'),
            ('MC400 stage_not_in_pipeline') $$,
  'a stage the pipeline lacks is 400 stage_not_in_pipeline; another organization''s or an unknown pipeline is 404');
SELECT is(pg_temp.field_as(:'max', :'org_a', format('SELECT api.deals_update(%L, NULL, ''renewed'', NULL, NULL, NULL, NULL, NULL)', :'d_max')),
  'stage', '... naming the field stage');
SELECT is(pg_temp.field_as(:'max', :'org_a', format('SELECT api.deals_create(%L, ''New'', 10, ''EUR'', p_pipeline_id => %L)', :'c_max', :'sales_b')),
  'pipeline_id', '... and pipeline_id');

-- The list filters pipeline_id and stage together; an unknown stage key is 400.
SELECT is(pg_temp.value_as(:'max', :'org_a', format('SELECT api.deals_list(1, 20, p_pipeline_id => %L) ->> ''total''', :'sales_a')), '5',
  'the list filtered by pipeline');
SELECT is(pg_temp.value_as(:'max', :'org_a', format('SELECT api.deals_list(1, 20, p_pipeline_id => %L, p_stages => ''{qualification,proposal}'') ->> ''total''', :'sales_a')), '5',
  'by pipeline and stages');
SELECT is(pg_temp.value_as(:'max', :'org_a', format('SELECT api.deals_list(1, 20, p_pipeline_id => %L, p_stages => ''{proposal}'') ->> ''total''', :'sales_a')), '0',
  'by pipeline and a stage without deals');
SELECT is(pg_temp.try_as(:'max', :'org_a', format('SELECT api.deals_list(1, 20, p_pipeline_id => %L, p_stages => ''{renewed}'')', :'sales_a')),
  'MC400 stage_not_in_pipeline', 'a key the filtered pipeline lacks is 400');
SELECT is(pg_temp.try_as(:'max', :'org_a', 'SELECT api.deals_list(1, 20, p_stages => ''{nope}'')'),
  'MC400 stage_not_in_pipeline', 'a key no pipeline of the organization has is 400');
SELECT is(pg_temp.value_as(:'max', :'org_a', format('SELECT api.deals_list(1, 20, p_pipeline_id => %L) ->> ''total''', :'sales_b')), '0',
  'another organization''s pipeline filters to nothing');

SELECT * FROM finish();
ROLLBACK;
