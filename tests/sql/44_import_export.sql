-- CSV export and import (README, "Export" and "Import"): the export's COPY
-- shows only the organization's rows, with the list's filters and order,
-- from a function the planner inlines; the import validates every row with
-- the table's own rules and writes all rows or none.
BEGIN;
SELECT plan(33);

SELECT (api.auth_register('ann@example.com', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'Ann', 'Ann Inc',
        '\x7711'::bytea, now() + interval '1 day') -> 'organization' ->> 'id') AS org,
       app.user_id() AS ann
  FROM app.act_as(NULL) \gset
RESET ROLE;
SELECT (api.auth_register('bob@example.com', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'Bob', 'Bob Inc',
        '\x7712'::bytea, now() + interval '1 day') -> 'organization' ->> 'id') AS bob_org,
       app.user_id() AS bob
  FROM app.act_as(NULL) \gset
RESET ROLE;
SELECT (api.auth_register('other@example.com', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'Other', 'Other Inc',
        '\x7713'::bytea, now() + interval '1 day') -> 'organization' ->> 'id') AS other_org,
       app.user_id() AS other
  FROM app.act_as(NULL) \gset
RESET ROLE;
-- Bob is a plain member of Ann's organization.
INSERT INTO crm.organization_members (organization_id, user_id, role) VALUES (:'org', :'bob', 'member');

-- Runs p_sql as the request role, acting as test.user in test.org, and
-- comes back to the superuser (pgTAP's functions are not the request role's).
CREATE FUNCTION pg_temp.as_api(p_sql text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v jsonb;
BEGIN
  PERFORM app.act_as(current_setting('test.user')::uuid, current_setting('test.org')::uuid);
  EXECUTE p_sql INTO v;
  PERFORM set_config('role', 'none', true);
  RETURN v;
END
$$;
CREATE FUNCTION pg_temp.acting(p_user uuid, p_org uuid) RETURNS void LANGUAGE sql AS $$
  SELECT set_config('test.user', p_user::text, true), set_config('test.org', p_org::text, true)
$$;
-- The rows an export's COPY writes, as JSON: its query run (as the request
-- role) without COPY around it. p_call returns the COPY text.
CREATE FUNCTION pg_temp.exported(p_call text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_copy text;
  v jsonb;
BEGIN
  PERFORM app.act_as(current_setting('test.user')::uuid, current_setting('test.org')::uuid);
  EXECUTE 'SELECT ' || p_call INTO v_copy;
  v_copy := substring(v_copy FROM '^COPY \((.*)\) TO STDOUT \(FORMAT csv, HEADER\)$');
  EXECUTE format('SELECT coalesce(jsonb_agg(to_jsonb(x)), ''[]'') FROM (%s) x', v_copy) INTO v;
  PERFORM set_config('role', 'none', true);
  RETURN v;
END
$$;
CREATE FUNCTION pg_temp.names(p_rows jsonb, p_field text DEFAULT 'name') RETURNS text[] LANGUAGE sql AS $$
  SELECT coalesce(array_agg(e ->> p_field ORDER BY n), '{}') FROM jsonb_array_elements(p_rows) WITH ORDINALITY r (e, n)
$$;
-- An import of p_rows (app.contact_import_row values) with the columns
-- p_columns, as the request role: {created, updated}, or the error as
-- {code, message, errors}.
CREATE FUNCTION pg_temp.import(p_rows text, p_columns text[]) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v jsonb;
  v_code text;
  v_message text;
  v_detail text;
BEGIN
  IF to_regclass('pg_temp.contacts_import') IS NOT NULL THEN
    DROP TABLE pg_temp.contacts_import;
  END IF;
  PERFORM app.act_as(current_setting('test.user')::uuid, current_setting('test.org')::uuid);
  PERFORM api.contacts_import_begin();
  EXECUTE 'INSERT INTO pg_temp.contacts_import VALUES ' || p_rows;
  BEGIN
    v := api.contacts_import(p_columns);
  EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_code = CONSTRAINT_NAME, v_message = MESSAGE_TEXT, v_detail = PG_EXCEPTION_DETAIL;
    v := jsonb_build_object('code', v_code, 'message', v_message, 'errors', v_detail::jsonb);
  END;
  PERFORM set_config('role', 'none', true);
  RETURN v;
END
$$;

-- Contacts: three of Ann's organization (one Bob's), one of another.
SELECT pg_temp.acting(:'ann', :'org');
SELECT pg_temp.as_api($$SELECT api.contacts_create('Ada Lovelace', 'ada@example.com', NULL)$$);
SELECT pg_temp.as_api($$SELECT api.contacts_create('Grace O''Brien', NULL, '+1 555')$$);
SELECT pg_temp.acting(:'bob', :'org');
SELECT pg_temp.as_api($$SELECT api.contacts_create('Bob''s friend', NULL, NULL)$$);
SELECT pg_temp.acting(:'other', :'other_org');
SELECT pg_temp.as_api($$SELECT api.contacts_create('Not Ann''s', NULL, NULL)$$);
-- Distinct creation times, so the order is the creation order.
UPDATE crm.contacts SET created_at = now() - interval '1 hour' WHERE name = 'Ada Lovelace';
UPDATE crm.contacts SET created_at = now() - interval '2 hours' WHERE name = 'Grace O''Brien';

-- Export --------------------------------------------------------------------
SELECT pg_temp.acting(:'ann', :'org');
SELECT is(pg_temp.names(pg_temp.exported('api.contacts_export()')),
          ARRAY['Bob''s friend', 'Ada Lovelace', 'Grace O''Brien'],
          'a contacts export: the organization''s contacts only, newest first (the list''s order)');
SELECT is(pg_temp.names(pg_temp.exported('api.contacts_export()')),
          pg_temp.names(pg_temp.as_api('SELECT api.contacts_list(1, 100) -> ''items''')),
          'the same rows as the list');
SELECT is(pg_temp.names(pg_temp.exported('api.contacts_export()'), 'owner_email'),
          ARRAY['bob@example.com', 'ann@example.com', 'ann@example.com'], 'owner_email is the owner''s address');
SELECT is((pg_temp.exported('api.contacts_export()') -> 1) - 'owner_email',
          (SELECT app.contact_json(c) FROM crm.contacts c WHERE c.name = 'Ada Lovelace'),
          'each row holds the JSON''s fields, formatted as the JSON formats them');
SELECT is(pg_temp.names(pg_temp.exported($$api.contacts_export(p_search => 'o''b')$$)), ARRAY['Grace O''Brien'],
          'search, with the list''s meaning (a word beginning), a quote in the term quoted');
SELECT is(pg_temp.names(pg_temp.exported(format('api.contacts_export(p_owner_id => %L)', :'bob'))), ARRAY['Bob''s friend'],
          'the owner filter');
SELECT is(pg_temp.names(pg_temp.exported($$api.contacts_export(p_search => 'nobody')$$)), '{}',
          'no match: no rows');
SELECT pg_temp.acting(:'bob', :'org');
SELECT throws_ok(format('SELECT pg_temp.exported(%L)', format('api.contacts_export(p_owner_id => %L)', :'ann')),
                 'MC403', NULL, 'a member may not filter by another owner');
SELECT throws_ok($$SELECT pg_temp.exported('api.contacts_export(p_search => ''a b c d e f g h i j k l m n o p q'')')$$,
                 'MC400', NULL, 'more than 16 words: refused before the COPY');
SELECT pg_temp.acting(:'other', :'other_org');
SELECT is(pg_temp.names(pg_temp.exported('api.contacts_export()')), ARRAY['Not Ann''s'],
          'the other organization sees its own only');
SELECT pg_temp.acting(:'ann', :'org');
-- The function is inlined: the plan reads crm.contacts, not a function's result.
SELECT app.act_as(:'ann', :'org');
SELECT substring(api.contacts_export() FROM '^COPY \((.*)\) TO STDOUT') AS export_query \gset
RESET ROLE;
CREATE FUNCTION pg_temp.plan(p_sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  v text := '';
  r record;
BEGIN
  PERFORM app.act_as(current_setting('test.user')::uuid, current_setting('test.org')::uuid);
  FOR r IN EXECUTE 'EXPLAIN ' || p_sql LOOP
    v := v || r."QUERY PLAN" || E'\n';
  END LOOP;
  PERFORM set_config('role', 'none', true);
  RETURN v;
END
$$;
SELECT unalike(pg_temp.plan(:'export_query'), '%Function Scan on contacts_export_rows%',
              'app.contacts_export_rows is inlined (no tuplestore of every row)');
SELECT app.act_as(:'ann', :'org');
SELECT substring(api.deals_export(p_order_by => 'amount', p_order => 'asc') FROM '^COPY \((.*)\) TO STDOUT') AS deals_query \gset
RESET ROLE;
SELECT unalike(pg_temp.plan(:'deals_query'), '%Function Scan%', 'app.deals_export_rows is inlined');

-- Deals.
SELECT id AS ada_id FROM crm.contacts WHERE name = 'Ada Lovelace' \gset
SELECT pg_temp.as_api(format($$SELECT api.deals_create(%L, 'Small', 10, 'EUR')$$, :'ada_id'));
SELECT pg_temp.as_api(format($$SELECT api.deals_create(%L, 'Big', 5000, 'EUR')$$, :'ada_id'));
SELECT pg_temp.as_api(format($$SELECT api.deals_create(%L, 'Mid', 300, 'USD')$$, :'ada_id'));
SELECT pg_temp.as_api(format($$SELECT api.deals_update(%L, 'won', 'closed', NULL, NULL, NULL, NULL, NULL)$$,
                             (SELECT id FROM crm.deals WHERE title = 'Big')));
SELECT is(pg_temp.names(pg_temp.exported($$api.deals_export(p_order_by => 'amount', p_order => 'asc')$$), 'title'),
          ARRAY['Small', 'Mid', 'Big'], 'a deals export in the requested order');
SELECT is(pg_temp.names(pg_temp.exported($$api.deals_export(p_order_by => 'amount', p_order => 'asc')$$), 'amount'),
          ARRAY['10.00', '300.00', '5000.00'], 'amounts as the JSON writes them');
SELECT is(pg_temp.names(pg_temp.exported($$api.deals_export(p_statuses => '{new}', p_min_amount => 100, p_order_by => 'title')$$), 'title'),
          ARRAY['Mid'], 'status and amount filters, as the list''s');
SELECT is(pg_temp.names(pg_temp.exported($$api.deals_export(p_order_by => 'title')$$), 'title'),
          pg_temp.names(pg_temp.as_api($$SELECT api.deals_list(1, 100, p_order_by => 'title') -> 'items'$$), 'title'),
          'the list''s order by title');
SELECT throws_ok($$SELECT pg_temp.exported('api.deals_export(p_order_by => ''owner'')')$$, 'MC400', NULL,
                 'an unknown order_by is refused before it becomes SQL');
SELECT throws_ok($$SELECT pg_temp.exported('api.deals_export(p_stages => ''{nowhere}'')')$$, 'MC400', NULL,
                 'a stage no pipeline has: stage_not_in_pipeline');
SELECT pg_temp.acting(:'other', :'other_org');
SELECT is(pg_temp.names(pg_temp.exported('api.deals_export()'), 'title'), '{}', 'another organization sees none of them');

-- Import --------------------------------------------------------------------
SELECT pg_temp.acting(:'ann', :'org');
SELECT count(*) AS before FROM crm.contacts WHERE organization_id = :'org' \gset
SELECT is(pg_temp.import($$(2, 'Zed', 'zed@example.com', NULL, 'k-1', 'BOB@Example.com'), (3, ' Yan ', NULL, '+1', 'k-2', NULL)$$,
                         '{name,email,phone,external_id,owner_email}'),
          '{"created": 2, "updated": 0}', 'valid rows are created');
SELECT is((SELECT owner_id FROM crm.contacts WHERE name = 'Zed'), :'bob'::uuid, 'owner_email names the member (by the email key)');
SELECT is((SELECT owner_id FROM crm.contacts WHERE name = 'Yan'), :'ann'::uuid, 'no owner_email: the caller; the name trimmed');
SELECT ok((SELECT created_at FROM crm.contacts WHERE name = 'Zed') > (SELECT created_at FROM crm.contacts WHERE name = 'Yan'),
          'the first row is the newest: the list shows the file''s order');
SELECT is(pg_temp.import($$(2, NULL, NULL, '+49', 'k-1', NULL)$$, '{phone,external_id}'),
          '{"created": 0, "updated": 1}', 'a known external_id updates its contact');
SELECT is((SELECT array[name, email, phone] FROM crm.contacts WHERE external_id = 'k-1'),
          ARRAY['Zed', 'zed@example.com', '+49'], 'only the columns of the file change');

SELECT pg_temp.import($$(2, 'Fine', NULL, NULL, NULL, NULL), (3, 'Bad', 'nope', NULL, NULL, NULL),
                        (4, NULL, NULL, NULL, NULL, NULL), (5, 'Ghost', NULL, NULL, NULL, 'other@example.com'),
                        (6, 'Dup', NULL, NULL, 'k-9', NULL), (7, 'Dup', NULL, NULL, 'k-9', NULL)$$,
                      '{name,email,phone,external_id,owner_email}') AS bad \gset
SELECT is(:'bad'::jsonb -> 'code', '"import_invalid"', 'an invalid row rejects the file');
SELECT is(:'bad'::jsonb -> 'errors',
          '[{"field": "row 3: email", "message": "contacts_email_invalid: a value is not valid"},
            {"field": "row 4: name", "message": "value_required: a required value is missing"},
            {"field": "row 5: owner_email", "message": "owner_email_not_member: no member of the organization has this email address"},
            {"field": "row 7: external_id", "message": "external_id_duplicate: row 6 has the same external_id"}]',
          'one error per bad row, by the table''s own checks, in row order (another organization''s user is no member)');
SELECT is((SELECT count(*) FROM crm.contacts WHERE organization_id = :'org'), :before + 2::bigint,
          'nothing of the rejected file was written (not even its valid rows)');
SELECT pg_temp.acting(:'bob', :'org');
SELECT is(pg_temp.import($$(2, 'Mine', NULL, NULL, NULL, 'bob@example.com'), (3, 'Ann''s', NULL, NULL, NULL, 'ann@example.com')$$,
                         '{name,owner_email}') -> 'errors',
          '[{"field": "row 3: owner_email", "message": "role_forbidden: members may only create or hold their own records"}]',
          'a member may not create contacts for another member (SPEC §3)');
SELECT is(pg_temp.import($$(2, NULL, NULL, '+1', 'k-2', NULL)$$, '{phone,external_id}') -> 'errors',
          '[{"field": "row 2: owner_email", "message": "role_forbidden: members may only change their own records"}]',
          'nor change another member''s contact through its external_id');
SELECT is(pg_temp.import($$(2, NULL, NULL, '+1', 'k-1', NULL)$$, '{phone,external_id}'), '{"created": 0, "updated": 1}',
          'a member updates their own contact through its external_id');
SELECT pg_temp.acting(:'other', :'other_org');
SELECT is(pg_temp.import($$(2, 'Theirs', NULL, NULL, 'k-1', NULL)$$, '{name,external_id}'), '{"created": 1, "updated": 0}',
          'another organization''s external_id is not this one''s: a new contact');
SELECT is((SELECT name FROM crm.contacts WHERE organization_id = :'org' AND external_id = 'k-1'), 'Zed',
          'and Ann''s contact is untouched');

SELECT * FROM finish();
ROLLBACK;
