-- External ids, upsert by external id, batches (SPEC §12): uniqueness per
-- organization and type, length bounds, the upsert creating or updating with
-- every rule and timeline row of POST and PATCH, batches all or nothing with
-- the failing item's index on the error.
BEGIN;
SELECT plan(63);
\ir pipeline_fixture.psql

-- The error of p_sql run as p_user in p_org, undone like try_as:
-- '<SQLSTATE> <code> <field> <hint>' (empty parts left out), or 'ok'.
CREATE FUNCTION pg_temp.error_as(p_user uuid, p_org uuid, p_sql text) RETURNS text
  LANGUAGE plpgsql AS $$
DECLARE
  v_state text; v_code text; v_column text; v_hint text;
BEGIN
  BEGIN
    PERFORM app.act_as(p_user, p_org);
    EXECUTE p_sql;
    RAISE EXCEPTION USING ERRCODE = 'TT000', MESSAGE = 'undo';
  EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_code = CONSTRAINT_NAME, v_column = COLUMN_NAME,
      v_hint = PG_EXCEPTION_HINT;
  END;
  RETURN CASE WHEN v_state = 'TT000' THEN 'ok'
              ELSE concat_ws(' ', v_state, nullif(v_code, ''), nullif(v_column, ''), nullif(v_hint, '')) END;
END
$$;

-- Uniqueness: per organization and type -------------------------------------------

SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, 'SELECT api.contacts_create(p_name => ''Ext'', p_external_id => ''crm-1'')')$$,
         :'olga', :'org_a'), 'a contact with external id crm-1 in A');
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, 'SELECT api.contacts_create(p_name => ''Ext'', p_external_id => ''crm-1'')')$$,
         :'zed', :'org_b'), 'a contact with the same external id in B');
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'olga', :'org_a',
         format('SELECT api.deals_create(p_contact_id => %L, p_title => ''Ext'', p_amount => 10, p_currency => ''EUR'', p_external_id => ''crm-1'')', :'c_olga')),
  'a deal with the same external id as a contact of A');
SELECT is(pg_temp.try_as(:'mia', :'org_a', 'SELECT api.contacts_create(p_name => ''Twin'', p_external_id => ''crm-1'')'),
  '23505 contacts_external_id_taken', 'a second contact of A with crm-1: contacts_external_id_taken');
SELECT is(pg_temp.try_as(:'mia', :'org_a',
         format('SELECT api.deals_create(p_contact_id => %L, p_title => ''Twin'', p_amount => 10, p_currency => ''EUR'', p_external_id => ''crm-1'')', :'c_mia')),
  '23505 deals_external_id_taken', 'a second deal of A with crm-1: deals_external_id_taken');
SELECT is(pg_temp.try_as(:'olga', :'org_a',
         format('SELECT api.contacts_update(%L, ''{external_id}'', NULL, NULL, NULL, NULL, p_external_id => ''crm-1'')', :'f_olga')),
  '23505 contacts_external_id_taken', 'PATCH to a taken external id: contacts_external_id_taken');
SELECT is(pg_temp.try_as(:'olga', :'org_a', 'SELECT api.contacts_create(p_name => ''Plain'')'), 'ok',
  'contacts without an external id are many');
SELECT is((SELECT count(*)::int FROM crm.contacts WHERE external_id = 'crm-1'), 2, 'crm-1: one contact in A, one in B');
-- Exactly as given: case and white space matter.
SELECT is(pg_temp.try_as(:'olga', :'org_a', 'SELECT api.contacts_create(p_name => ''Case'', p_external_id => ''CRM-1'')'), 'ok',
  'CRM-1 is another external id than crm-1');
SELECT is(pg_temp.try_as(:'olga', :'org_a', 'SELECT api.contacts_create(p_name => ''Space'', p_external_id => '' crm-1'')'), 'ok',
  'an external id is not trimmed');

-- Length bounds ------------------------------------------------------------------------

SELECT is(pg_temp.try_as(:'olga', :'org_a', 'SELECT api.contacts_create(p_name => ''E'', p_external_id => '''')'),
  '23514 contacts_external_id_invalid', 'an empty external id: contacts_external_id_invalid');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.contacts_create(p_name => ''E'', p_external_id => %L)', repeat('é', 255))),
  'ok', '255 characters (510 bytes) are allowed');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.contacts_create(p_name => ''E'', p_external_id => %L)', repeat('x', 256))),
  '23514 contacts_external_id_invalid', '256 characters are not');
SELECT is(pg_temp.try_as(:'olga', :'org_a',
         format('SELECT api.deals_create(p_contact_id => %L, p_title => ''E'', p_amount => 1, p_currency => ''EUR'', p_external_id => %L)', :'c_olga', repeat('x', 256))),
  '23514 deals_external_id_invalid', 'a deal: 256 characters are not allowed either');
SELECT is(pg_temp.try_as(:'olga', :'org_a',
         format('SELECT api.deals_update(%L, NULL, NULL, NULL, NULL, NULL, NULL, NULL, p_fields => ''{external_id}'', p_external_id => '''')', :'d_olga')),
  '23514 deals_external_id_invalid', 'a deal PATCH to an empty external id');
SELECT is(pg_temp.error_as(:'olga', :'org_a', format('SELECT api.contacts_upsert(%L, ''{name}'', ''N'')', repeat('x', 256))),
  'MC400 external_id_invalid external_id', 'an upsert with 256 characters: 400 external_id_invalid');
SELECT is(pg_temp.error_as(:'olga', :'org_a', 'SELECT api.deals_upsert('''', ''{}'')'),
  'MC400 external_id_invalid external_id', 'a deal upsert with an empty external id');

-- PATCH sets and clears -----------------------------------------------------------------

SELECT is(pg_temp.value_as(:'olga', :'org_a',
         format('SELECT api.contacts_update(%L, ''{external_id}'', NULL, NULL, NULL, NULL, p_external_id => ''lead-7'') ->> ''external_id''', :'f_olga')),
  'lead-7', 'PATCH sets a contact''s external id');
SELECT is(pg_temp.value_as(:'olga', :'org_a',
         format('SELECT api.contacts_update(%L, ''{name}'', ''Renamed'', NULL, NULL, NULL) ->> ''external_id''', :'f_olga')),
  'lead-7', 'a PATCH without it keeps it');
SELECT is(pg_temp.value_as(:'olga', :'org_a',
         format('SELECT (api.contacts_update(%L, ''{external_id}'', NULL, NULL, NULL, NULL, p_external_id => NULL) -> ''external_id'')::text', :'f_olga')),
  'null', 'PATCH with null clears it');
SELECT is(pg_temp.value_as(:'olga', :'org_a',
         format('SELECT api.deals_update(%L, NULL, NULL, NULL, NULL, NULL, NULL, NULL, p_fields => ''{external_id}'', p_external_id => ''opp-1'') ->> ''external_id''', :'d_olga')),
  'opp-1', 'deal PATCH sets it');
SELECT is(pg_temp.value_as(:'olga', :'org_a',
         format('SELECT api.deals_update(%L, ''in_progress'', NULL, NULL, NULL, NULL, NULL, NULL) ->> ''external_id''', :'d_olga')),
  'opp-1', 'a deal PATCH without it keeps it');

-- The list filters --------------------------------------------------------------------

SELECT is(pg_temp.value_as(:'max', :'org_a', 'SELECT api.contacts_list(1, 20, p_external_id => ''crm-1'') -> ''items'' -> 0 ->> ''name'''),
  'Ext', 'the contacts list finds the contact by external id');
SELECT is(pg_temp.value_as(:'max', :'org_a', 'SELECT api.contacts_list(1, 20, p_external_id => ''crm-1'') ->> ''total'''),
  '1', 'exactly one');
SELECT is(pg_temp.value_as(:'max', :'org_a', 'SELECT api.contacts_list(1, 20, p_search => ''ext'', p_external_id => ''crm-1'') ->> ''total'''),
  '1', 'with a search that matches it');
SELECT is(pg_temp.value_as(:'max', :'org_a', 'SELECT api.contacts_list(1, 20, p_search => ''zzz'', p_external_id => ''crm-1'') ->> ''total'''),
  '0', 'with a search that does not: none');
SELECT is(pg_temp.value_as(:'max', :'org_a', format('SELECT api.contacts_list(1, 20, p_owner_id => %L, p_external_id => ''crm-1'') ->> ''total''', :'max')),
  '0', 'with another owner: none');
SELECT is(pg_temp.value_as(:'max', :'org_a', 'SELECT api.deals_list(1, 20, p_external_id => ''opp-1'') -> ''items'' -> 0 ->> ''id'''),
  :'d_olga', 'the deals list finds the deal by external id');
SELECT is(pg_temp.value_as(:'max', :'org_a', 'SELECT api.deals_list(1, 20, p_statuses => ''{won}'', p_external_id => ''opp-1'') ->> ''total'''),
  '0', 'with a status filter it does not meet: none');
SELECT is(pg_temp.value_as(:'zed', :'org_b', 'SELECT api.deals_list(1, 20, p_external_id => ''opp-1'') ->> ''total'''),
  '0', 'B does not see A''s deal by its external id');

-- Upsert: contacts ------------------------------------------------------------------------

SELECT pg_temp.value_as(:'max', :'org_a', 'SELECT api.contacts_upsert(''hub-9'', ''{name,email}'', ''Hub Nine'', ''nine@hub.test'')::text')::jsonb AS up1 \gset
SELECT is((:'up1'::jsonb) -> 'created', 'true'::jsonb, 'a new external id: created');
SELECT is((:'up1'::jsonb) #>> '{record,owner_id}', :'max', 'owned by the caller, as POST');
SELECT is((:'up1'::jsonb) #>> '{record,external_id}', 'hub-9', 'with the external id of the path');
SELECT pg_temp.value_as(:'max', :'org_a', 'SELECT api.contacts_upsert(''hub-9'', ''{phone}'', p_phone => ''+1 555'')::text')::jsonb AS up2 \gset
SELECT is((:'up2'::jsonb) -> 'created', 'false'::jsonb, 'the same external id again: updated');
SELECT is((:'up2'::jsonb) #>> '{record,id}', (:'up1'::jsonb) #>> '{record,id}', 'the same contact');
SELECT is((:'up2'::jsonb) -> 'record' ->> 'name' || ' / ' || ((:'up2'::jsonb) -> 'record' ->> 'email') || ' / ' || ((:'up2'::jsonb) -> 'record' ->> 'phone'),
  'Hub Nine / nine@hub.test / +1 555', 'only the fields present changed');
SELECT is(pg_temp.error_as(:'max', :'org_a', 'SELECT api.contacts_upsert(''hub-10'', ''{email}'', p_email => ''x@hub.test'')'),
  'MC400 validation_failed name', 'creating needs a name');
SELECT is(pg_temp.error_as(:'max', :'org_a', format('SELECT api.contacts_upsert(''hub-11'', ''{name,owner_id}'', ''N'', p_owner_id => %L)', :'rita')),
  'MC403 role_forbidden owner_id', 'a member creating for another member: 403, as POST');
SELECT is(pg_temp.error_as(:'max', :'org_a', 'SELECT api.contacts_upsert(''crm-1'', ''{name}'', ''Mine now'')'),
  'MC403 role_forbidden owner_id', 'a member updating the contact of another member: 403, as PATCH');
SELECT is(pg_temp.value_as(:'zed', :'org_b', 'SELECT api.contacts_upsert(''hub-9'', ''{name}'', ''B''''s nine'') ->> ''created'''),
  'true', 'B upserting A''s external id creates B''s own contact');
SELECT is((SELECT name FROM crm.contacts WHERE organization_id = :'org_a' AND external_id = 'hub-9'), 'Hub Nine', 'A''s is unchanged');

-- Upsert: deals (rules and timeline as POST / PATCH) -------------------------------------

SELECT pg_temp.value_as(:'max', :'org_a',
  format('SELECT api.deals_upsert(''opp-9'', ''{}'', p_contact_id => %L, p_title => ''Nine'', p_amount => 900, p_currency => ''EUR'')::text', :'c_max'))::jsonb AS dup1 \gset
SELECT is((:'dup1'::jsonb) -> 'created', 'true'::jsonb, 'a deal upsert of a new external id creates');
SELECT is((:'dup1'::jsonb) #>> '{record,status}', 'new', 'new, as POST');
SELECT is((SELECT array_agg(payload ->> 'event') FROM crm.activities WHERE deal_id = ((:'dup1'::jsonb) #>> '{record,id}')::uuid),
  '{deal_created}', 'and its timeline has deal_created');
SELECT pg_temp.value_as(:'max', :'org_a', 'SELECT api.deals_upsert(''opp-9'', ''{}'', p_status => ''in_progress'', p_stage => ''proposal'')::text')::jsonb AS dup2 \gset
SELECT is((:'dup2'::jsonb) -> 'created', 'false'::jsonb, 'again: updated (no contact_id needed)');
SELECT is((SELECT jsonb_agg(jsonb_build_object('type', type, 'payload', payload, 'by', author_id) ORDER BY type)
             FROM crm.activities WHERE deal_id = ((:'dup1'::jsonb) #>> '{record,id}')::uuid AND type IN ('status_changed', 'stage_changed')),
  jsonb_build_array(
    jsonb_build_object('type', 'status_changed', 'payload', jsonb_build_object('from', 'new', 'to', 'in_progress'), 'by', :'max'::uuid),
    jsonb_build_object('type', 'stage_changed', 'payload', jsonb_build_object('from', 'qualification', 'to', 'proposal'), 'by', :'max'::uuid)),
  'the update wrote status_changed and stage_changed, by the caller (R6)');
SELECT is((:'dup2'::jsonb) #>> '{record,title}', 'Nine', 'fields not given are kept');
SELECT is(pg_temp.error_as(:'max', :'org_a', 'SELECT api.deals_upsert(''opp-9'', ''{}'', p_stage => ''qualification'')'),
  'MC403 stage_rollback_forbidden stage', 'R5: a member moving it back through the upsert: 403');
SELECT is(pg_temp.error_as(:'max', :'org_a', 'SELECT api.deals_upsert(''opp-9'', ''{}'', p_status => ''won'', p_amount => 0)'),
  'MC400 deal_won_requires_amount status', 'R1 through the upsert''s update');
SELECT is(pg_temp.error_as(:'max', :'org_a', 'SELECT api.deals_upsert(''opp-10'', ''{}'', p_title => ''T'', p_amount => 1, p_currency => ''EUR'')'),
  'MC400 validation_failed contact_id', 'creating needs contact_id');
SELECT is(pg_temp.error_as(:'max', :'org_a',
         format('SELECT api.deals_upsert(''opp-10'', ''{}'', p_contact_id => %L, p_title => ''T'', p_amount => 0, p_currency => ''EUR'', p_status => ''won'')', :'c_max')),
  'MC400 deal_won_requires_amount status', 'creating as won without an amount: R1');
SELECT is((SELECT count(*)::int FROM crm.deals WHERE external_id = 'opp-10'), 0, 'and nothing was created');
SELECT pg_temp.value_as(:'max', :'org_a',
  format('SELECT api.deals_upsert(''opp-11'', ''{}'', p_contact_id => %L, p_title => ''Won'', p_amount => 5, p_currency => ''EUR'', p_status => ''won'')::text', :'c_max'))::jsonb AS dup3 \gset
SELECT is((SELECT jsonb_agg(coalesce(payload ->> 'event', type::text) ORDER BY created_at, type DESC) FROM crm.activities
            WHERE deal_id = ((:'dup3'::jsonb) #>> '{record,id}')::uuid),
  '["deal_created", "status_changed"]'::jsonb, 'creating as won: deal_created, then status_changed, as POST then PATCH');
SELECT is(pg_temp.error_as(:'max', :'org_a',
         format('SELECT api.deals_upsert(''opp-12'', ''{}'', p_contact_id => %L, p_title => ''T'', p_amount => 1, p_currency => ''EUR'')', :'c_zed')),
  '23503 deals_contact_id_not_found', 'a contact of B: not found (R8)');

-- Batches -------------------------------------------------------------------------------

SELECT count(*) AS contacts_before FROM crm.contacts \gset
SELECT is(pg_temp.error_as(:'max', :'org_a', $$SELECT api.contacts_batch('[{"name": "B0"}, {"name": "B1"}, {"name": "B2"}, {"name": "B3", "email": "no-at-sign"}, {"name": "B4"}]')$$),
  '23514 contacts_email_invalid field_prefix=items[3]', 'a contact batch whose item 3 is invalid: its error, with the index');
SELECT is((SELECT count(*) FROM crm.contacts), :'contacts_before'::bigint, 'nothing of items 0-2 remains');
SELECT is(pg_temp.error_as(:'max', :'org_a', format($$SELECT api.deals_batch(%L)$$, jsonb_build_array(
           jsonb_build_object('contact_id', :'c_max', 'title', 'D0', 'amount', '1.00', 'currency', 'EUR'),
           jsonb_build_object('contact_id', :'c_max', 'title', 'D1', 'amount', '1.00', 'currency', 'EUR'),
           jsonb_build_object('contact_id', :'c_max', 'title', 'D2', 'amount', '1.00', 'currency', 'EUR'),
           jsonb_build_object('contact_id', :'c_zed', 'title', 'D3', 'amount', '1.00', 'currency', 'EUR')))),
  '23503 deals_contact_id_not_found field_prefix=items[3]', 'a deal batch whose item 3 names B''s contact');
SELECT is((SELECT count(*)::int FROM crm.deals WHERE title IN ('D0', 'D1', 'D2')), 0, 'no deal of items 0-2 remains');
SELECT is(pg_temp.error_as(:'max', :'org_a', format($$SELECT api.tasks_batch(%L)$$, jsonb_build_array(
           jsonb_build_object('deal_id', :'d_max', 'title', 'T0', 'due_date', :'tomorrow'),
           jsonb_build_object('deal_id', :'d_max', 'title', 'T1', 'due_date', :'yesterday')))),
  'MC400 tasks_due_date_past due_date field_prefix=items[1]', 'a task batch: R4 on item 1, with the field and index');
SELECT is(pg_temp.error_as(:'max', :'org_a', 'SELECT api.contacts_batch(''[]'')'), 'MC400 batch_size_invalid items',
  'an empty batch: 400');
SELECT is(pg_temp.error_as(:'max', :'org_a', format('SELECT api.contacts_batch(%L)',
           (SELECT jsonb_agg(jsonb_build_object('name', 'N' || n)) FROM generate_series(1, 101) n))),
  'MC400 batch_size_invalid items', '101 items: 400');
SELECT pg_temp.value_as(:'max', :'org_a', format($$SELECT api.deals_batch(%L)::text$$, jsonb_build_array(
           jsonb_build_object('contact_id', :'c_max', 'title', 'E0', 'amount', '1.00', 'currency', 'EUR', 'external_id', 'e-0'),
           jsonb_build_object('contact_id', :'c_max', 'title', 'E1', 'amount', '2.50', 'currency', 'USD', 'stage', 'proposal'))))::jsonb AS batch \gset
SELECT is(jsonb_path_query_array(:'batch'::jsonb, '$.items[*].title'), '["E0", "E1"]'::jsonb, 'a valid batch answers its records in order');
SELECT is((SELECT count(*)::int FROM crm.activities a JOIN crm.deals d ON d.id = a.deal_id
            WHERE d.title IN ('E0', 'E1') AND a.payload ->> 'event' = 'deal_created' AND a.author_id = :'max'),
  2, 'each with its deal_created row');

SELECT * FROM finish();
ROLLBACK;
