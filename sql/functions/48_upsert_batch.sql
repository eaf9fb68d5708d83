-- Upsert by external id and batches (SPEC §12). Both go through the single
-- create and update functions (40_contacts.sql, 41_deals.sql, 42_tasks.sql),
-- so every rule trigger and timeline row applies as it does for POST and
-- PATCH: nothing here restates a rule.

-- An external id in a path: 1 to 255 characters (the *_external_id_invalid
-- checks say the same for a stored one; this answers before any write).
CREATE OR REPLACE FUNCTION app.check_external_id(p_external_id text) RETURNS void
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF p_external_id IS NULL OR length(p_external_id) NOT BETWEEN 1 AND 255 THEN
    PERFORM app.fail('MC400', 'external_id_invalid', 'external_id must be 1 to 255 characters', 'external_id');
  END IF;
END
$$;

-- A field that creating needs and the upsert's body left out.
CREATE OR REPLACE FUNCTION app.require_for_create(p_present boolean, p_field text) RETURNS void
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF NOT p_present THEN
    PERFORM app.fail('MC400', 'validation_failed',
      format('%s is required when the external id is new (the upsert creates the record)', p_field), p_field);
  END IF;
END
$$;

-- Why not INSERT … ON CONFLICT DO UPDATE: it runs the BEFORE INSERT rule
-- trigger on the proposed row and checks its NOT NULL columns even when it
-- then updates, so an update would need the create body (a deal's
-- contact_id), meet the create rules and then the update rules; and its SET
-- would restate the PATCH function. Instead: lock the record with that
-- external id and update it (the PATCH function), or create it (the POST
-- function); if a concurrent upsert created it in between, the insert meets
-- the unique constraint, its subtransaction (the exception block) undoes
-- whatever the triggers wrote, and the next round finds and updates it. Two
-- racing upserts of a new id therefore make one record, the other updates
-- it. A round fails only because of a concurrent create, so a third failure
-- means the id is held by a record this request cannot see: 409.
-- The answer is {created, record}; the server turns `created` into 201 or 200.
CREATE OR REPLACE FUNCTION api.contacts_upsert(p_external_id text, p_fields text[], p_name text DEFAULT NULL,
    p_email text DEFAULT NULL, p_phone text DEFAULT NULL, p_owner_id uuid DEFAULT NULL)
  RETURNS jsonb LANGUAGE plpgsql
  AS $$
DECLARE
  v_id uuid;
  v_constraint text;
BEGIN
  PERFORM app.check_external_id(p_external_id);
  FOR v_round IN 1..3 LOOP
    SELECT c.id INTO v_id FROM crm.contacts c
     WHERE c.organization_id = (SELECT app.org_id()) AND c.external_id = p_external_id
       FOR UPDATE;
    IF FOUND THEN
      RETURN jsonb_build_object('created', false, 'record',
        api.contacts_update(p_id => v_id, p_fields => p_fields, p_name => p_name, p_email => p_email,
                            p_phone => p_phone, p_owner_id => p_owner_id));
    END IF;
    PERFORM app.require_for_create('name' = ANY (p_fields), 'name');
    BEGIN
      RETURN jsonb_build_object('created', true, 'record',
        api.contacts_create(p_name => p_name, p_email => p_email, p_phone => p_phone, p_owner_id => p_owner_id,
                            p_external_id => p_external_id));
    EXCEPTION WHEN unique_violation THEN
      GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME;
      IF v_constraint IS DISTINCT FROM 'contacts_external_id_taken' THEN
        RAISE;
      END IF;
    END;
  END LOOP;
  PERFORM app.fail('MC409', 'contacts_external_id_taken', 'another contact holds this external_id', 'external_id');
  RETURN NULL;
END
$$;

-- The body is PATCH's: on update, only the fields present change (null means
-- "not given" except for expected_close_date, p_fields names it); creating
-- needs contact_id, title, amount and currency. Creating with a `status`
-- other than new is a create followed by that change, as POST then PATCH
-- would do it: the timeline shows deal_created, then status_changed, and R1
-- applies.
CREATE OR REPLACE FUNCTION api.deals_upsert(p_external_id text, p_fields text[] DEFAULT '{}',
    p_status crm.deal_status DEFAULT NULL, p_stage text DEFAULT NULL, p_title text DEFAULT NULL,
    p_amount numeric DEFAULT NULL, p_currency text DEFAULT NULL, p_contact_id uuid DEFAULT NULL,
    p_owner_id uuid DEFAULT NULL, p_pipeline_id uuid DEFAULT NULL, p_expected_close_date date DEFAULT NULL)
  RETURNS jsonb LANGUAGE plpgsql
  AS $$
DECLARE
  v_id uuid;
  v_deal jsonb;
  v_constraint text;
BEGIN
  PERFORM app.check_external_id(p_external_id);
  FOR v_round IN 1..3 LOOP
    SELECT d.id INTO v_id FROM crm.deals d
     WHERE d.organization_id = (SELECT app.org_id()) AND d.external_id = p_external_id
       FOR UPDATE;
    IF FOUND THEN
      RETURN jsonb_build_object('created', false, 'record',
        api.deals_update(p_id => v_id, p_status => p_status, p_stage => p_stage, p_title => p_title,
                         p_amount => p_amount, p_currency => p_currency, p_contact_id => p_contact_id,
                         p_owner_id => p_owner_id, p_pipeline_id => p_pipeline_id,
                         p_expected_close_date => p_expected_close_date, p_fields => p_fields));
    END IF;
    PERFORM app.require_for_create(p_contact_id IS NOT NULL, 'contact_id');
    PERFORM app.require_for_create(p_title IS NOT NULL, 'title');
    PERFORM app.require_for_create(p_amount IS NOT NULL, 'amount');
    PERFORM app.require_for_create(p_currency IS NOT NULL, 'currency');
    BEGIN
      v_deal := api.deals_create(p_contact_id => p_contact_id, p_title => p_title, p_amount => p_amount,
                                 p_currency => p_currency, p_owner_id => p_owner_id, p_pipeline_id => p_pipeline_id,
                                 p_stage => p_stage, p_expected_close_date => p_expected_close_date,
                                 p_external_id => p_external_id);
      IF p_status IS DISTINCT FROM (v_deal ->> 'status')::crm.deal_status AND p_status IS NOT NULL THEN
        v_deal := api.deals_update(p_id => (v_deal ->> 'id')::uuid, p_status => p_status, p_stage => NULL,
                                   p_title => NULL, p_amount => NULL, p_currency => NULL, p_contact_id => NULL,
                                   p_owner_id => NULL);
      END IF;
      RETURN jsonb_build_object('created', true, 'record', v_deal);
    EXCEPTION WHEN unique_violation THEN
      GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME;
      IF v_constraint IS DISTINCT FROM 'deals_external_id_taken' THEN
        RAISE;
      END IF;
    END;
  END LOOP;
  PERFORM app.fail('MC409', 'deals_external_id_taken', 'another deal holds this external_id', 'external_id');
  RETURN NULL;
END
$$;

-- Batches ------------------------------------------------------------------------

-- 1 to 100 items, a JSON array.
CREATE OR REPLACE FUNCTION app.check_batch(p_items jsonb) RETURNS void
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF jsonb_typeof(p_items) IS DISTINCT FROM 'array' OR jsonb_array_length(p_items) NOT BETWEEN 1 AND 100 THEN
    PERFORM app.fail('MC400', 'batch_size_invalid', 'items must hold 1 to 100 records', 'items');
  END IF;
END
$$;

-- Raises again, unchanged (SQLSTATE, message, constraint, column, table,
-- detail), the error that item p_index of a batch met, with HINT
-- `field_prefix=items[<p_index>]`: the server prefixes the problem's
-- errors[].field with it (`items[3].email`, or `items[3]` when the error
-- names no field) and its detail with `items[3]: `, whatever the error, our
-- own (app.fail) or a constraint's. Nothing else marks a batch error.
CREATE OR REPLACE FUNCTION app.reraise_for_item(p_index int, p_sqlstate text, p_message text, p_constraint text,
    p_column text, p_table text, p_schema text, p_detail text)
  RETURNS void LANGUAGE plpgsql
  AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = p_sqlstate, MESSAGE = p_message, CONSTRAINT = coalesce(p_constraint, ''),
    COLUMN = coalesce(p_column, ''), TABLE = coalesce(p_table, ''), SCHEMA = coalesce(p_schema, ''),
    DETAIL = coalesce(p_detail, ''), HINT = format('field_prefix=items[%s]', p_index);
END
$$;

-- Each batch function creates its items in order through the single create
-- function, in one exception block (one subtransaction for the batch, not
-- one per item): the first item that fails aborts the whole statement, so
-- nothing of the batch stays, and its error is raised again with its index.
-- Items are the create bodies, as the server parsed them (money as a
-- decimal string).
CREATE OR REPLACE FUNCTION api.contacts_batch(p_items jsonb) RETURNS jsonb
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_out jsonb := '[]'::jsonb;
  v_item jsonb;
  v_i int;
  e_state text; e_message text; e_constraint text; e_column text; e_table text; e_schema text; e_detail text;
BEGIN
  PERFORM app.check_batch(p_items);
  BEGIN
    FOR v_item, v_i IN SELECT e.value, (e.n - 1)::int FROM jsonb_array_elements(p_items) WITH ORDINALITY e (value, n) LOOP
      v_out := v_out || jsonb_build_array(
        api.contacts_create(p_name => v_item ->> 'name', p_email => v_item ->> 'email', p_phone => v_item ->> 'phone',
                            p_owner_id => (v_item ->> 'owner_id')::uuid, p_external_id => v_item ->> 'external_id'));
    END LOOP;
  EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_message = MESSAGE_TEXT, e_constraint = CONSTRAINT_NAME,
      e_column = COLUMN_NAME, e_table = TABLE_NAME, e_schema = SCHEMA_NAME, e_detail = PG_EXCEPTION_DETAIL;
    PERFORM app.reraise_for_item(v_i, e_state, e_message, e_constraint, e_column, e_table, e_schema, e_detail);
  END;
  RETURN jsonb_build_object('items', v_out);
END
$$;

CREATE OR REPLACE FUNCTION api.deals_batch(p_items jsonb) RETURNS jsonb
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_out jsonb := '[]'::jsonb;
  v_item jsonb;
  v_i int;
  e_state text; e_message text; e_constraint text; e_column text; e_table text; e_schema text; e_detail text;
BEGIN
  PERFORM app.check_batch(p_items);
  BEGIN
    FOR v_item, v_i IN SELECT e.value, (e.n - 1)::int FROM jsonb_array_elements(p_items) WITH ORDINALITY e (value, n) LOOP
      v_out := v_out || jsonb_build_array(
        api.deals_create(p_contact_id => (v_item ->> 'contact_id')::uuid, p_title => v_item ->> 'title',
                         p_amount => (v_item ->> 'amount')::numeric, p_currency => v_item ->> 'currency',
                         p_owner_id => (v_item ->> 'owner_id')::uuid, p_pipeline_id => (v_item ->> 'pipeline_id')::uuid,
                         p_stage => v_item ->> 'stage', p_expected_close_date => (v_item ->> 'expected_close_date')::date,
                         p_external_id => v_item ->> 'external_id'));
    END LOOP;
  EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_message = MESSAGE_TEXT, e_constraint = CONSTRAINT_NAME,
      e_column = COLUMN_NAME, e_table = TABLE_NAME, e_schema = SCHEMA_NAME, e_detail = PG_EXCEPTION_DETAIL;
    PERFORM app.reraise_for_item(v_i, e_state, e_message, e_constraint, e_column, e_table, e_schema, e_detail);
  END;
  RETURN jsonb_build_object('items', v_out);
END
$$;

CREATE OR REPLACE FUNCTION api.tasks_batch(p_items jsonb) RETURNS jsonb
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_out jsonb := '[]'::jsonb;
  v_item jsonb;
  v_i int;
  e_state text; e_message text; e_constraint text; e_column text; e_table text; e_schema text; e_detail text;
BEGIN
  PERFORM app.check_batch(p_items);
  BEGIN
    FOR v_item, v_i IN SELECT e.value, (e.n - 1)::int FROM jsonb_array_elements(p_items) WITH ORDINALITY e (value, n) LOOP
      v_out := v_out || jsonb_build_array(
        api.tasks_create(p_deal_id => (v_item ->> 'deal_id')::uuid, p_title => v_item ->> 'title',
                         p_description => v_item ->> 'description', p_due_date => (v_item ->> 'due_date')::date));
    END LOOP;
  EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_message = MESSAGE_TEXT, e_constraint = CONSTRAINT_NAME,
      e_column = COLUMN_NAME, e_table = TABLE_NAME, e_schema = SCHEMA_NAME, e_detail = PG_EXCEPTION_DETAIL;
    PERFORM app.reraise_for_item(v_i, e_state, e_message, e_constraint, e_column, e_table, e_schema, e_detail);
  END;
  RETURN jsonb_build_object('items', v_out);
END
$$;
