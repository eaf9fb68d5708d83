-- CSV export and import (SPEC §12; README, "Export" and "Import").

-- Export ----------------------------------------------------------------------
-- An export is one `COPY (query) TO STDOUT (FORMAT csv, HEADER)` in a
-- REPEATABLE READ READ ONLY transaction: one snapshot, streamed as
-- PostgreSQL produces it, so neither the server nor the backend holds the
-- file. COPY takes no parameters: api.<resource>_export checks the filters
-- as the list does (so a bad value is a 400 before anything is streamed) and
-- returns the COPY statement with the filter values as quoted literals
-- (format's %L); the server runs it next, in the same transaction, as the
-- request role under RLS.
--
-- The rows come from app.<resource>_export_rows, the one place that says
-- which records an export shows: a SQL function the planner inlines, so the
-- literals become constants, the filters not given fold away and the list's
-- indexes serve the order (no tuplestore: plpgsql's RETURN QUERY would build
-- the whole result in the backend first). The columns are the record's JSON
-- fields in the JSON's order, formatted as the JSON formats them.

-- The contacts of the list's filters (api.contacts_list): owner, external id, and search
-- with the list's meaning (every term the beginning of a word of the name or
-- email, from crm.contact_search_words).
CREATE OR REPLACE FUNCTION app.contacts_export_rows(p_search text DEFAULT NULL, p_owner_id uuid DEFAULT NULL,
    p_external_id text DEFAULT NULL)
  RETURNS SETOF crm.contacts LANGUAGE sql STABLE
  AS $$
    SELECT c.* FROM crm.contacts c
     WHERE c.organization_id = (SELECT app.org_id()) AND c.deleted_at IS NULL
       AND (p_owner_id IS NULL OR c.owner_id = p_owner_id)
       AND (p_external_id IS NULL OR c.external_id = p_external_id)
       AND NOT EXISTS (SELECT FROM unnest(app.search_terms(p_search)) t (term)
                        WHERE NOT EXISTS (SELECT FROM crm.contact_search_words w
                                           WHERE w.organization_id = c.organization_id AND w.created_at = c.created_at
                                             AND w.contact_id = c.id
                                             AND w.word >= t.term AND w.word < app.prefix_next(t.term)))
  $$;

-- The COPY of a contacts export, newest first like the list. After the JSON
-- fields, owner_email: the owner's address, which an import into another
-- organization maps to a member there (owner_id means nothing in another
-- organization, and the import ignores it).
CREATE OR REPLACE FUNCTION api.contacts_export(p_search text DEFAULT NULL, p_owner_id uuid DEFAULT NULL,
    p_external_id text DEFAULT NULL)
  RETURNS text LANGUAGE plpgsql STABLE
  AS $$
BEGIN
  PERFORM app.require_owner_filter(p_owner_id);
  -- More than 16 words: the list's 400, now rather than in the middle of the file.
  PERFORM app.search_terms(p_search);
  RETURN format('COPY (SELECT c.id, c.organization_id, c.owner_id, c.name, c.email, c.phone, c.external_id,'
                ' app.ts(c.created_at) AS created_at, app.ts(c.updated_at) AS updated_at, c.version,'
                ' (SELECT u.email FROM crm.users u WHERE u.id = c.owner_id) AS owner_email'
                ' FROM app.contacts_export_rows(p_search => %L, p_owner_id => %L, p_external_id => %L) c'
                ' ORDER BY c.created_at DESC, c.id DESC) TO STDOUT (FORMAT csv, HEADER)',
                p_search, p_owner_id, p_external_id);
END
$$;

-- The deals of the list's filters (api.deals_list), amounts compared in cents
-- as the list does.
CREATE OR REPLACE FUNCTION app.deals_export_rows(p_statuses crm.deal_status[] DEFAULT NULL, p_stages text[] DEFAULT NULL,
    p_min_amount numeric DEFAULT NULL, p_max_amount numeric DEFAULT NULL, p_owner_id uuid DEFAULT NULL,
    p_contact_id uuid DEFAULT NULL, p_pipeline_id uuid DEFAULT NULL, p_external_id text DEFAULT NULL)
  RETURNS SETOF crm.deals LANGUAGE sql STABLE
  AS $$
    SELECT d.* FROM crm.deals d
     WHERE d.organization_id = (SELECT app.org_id()) AND d.deleted_at IS NULL
       AND (p_statuses IS NULL OR d.status = ANY (p_statuses))
       AND (p_pipeline_id IS NULL OR d.pipeline_id = p_pipeline_id)
       AND (p_stages IS NULL OR d.stage = ANY (p_stages))
       AND (p_min_amount IS NULL OR d.amount_cents >= ceil(p_min_amount * 100)::bigint)
       AND (p_max_amount IS NULL OR d.amount_cents <= floor(p_max_amount * 100)::bigint)
       AND (p_owner_id IS NULL OR d.owner_id = p_owner_id)
       AND (p_contact_id IS NULL OR d.contact_id = p_contact_id)
       AND (p_external_id IS NULL OR d.external_id = p_external_id)
  $$;

-- The COPY of a deals export, in the list's order (p_order_by, p_order, ties
-- by id), checked by the list's own checks before they become SQL.
CREATE OR REPLACE FUNCTION api.deals_export(p_statuses crm.deal_status[] DEFAULT NULL, p_stages text[] DEFAULT NULL,
    p_min_amount numeric DEFAULT NULL, p_max_amount numeric DEFAULT NULL, p_owner_id uuid DEFAULT NULL,
    p_contact_id uuid DEFAULT NULL, p_pipeline_id uuid DEFAULT NULL,
    p_order_by text DEFAULT 'created_at', p_order text DEFAULT 'desc', p_external_id text DEFAULT NULL)
  RETURNS text LANGUAGE plpgsql STABLE
  AS $$
BEGIN
  PERFORM app.deals_list_check(p_stages, p_pipeline_id, p_order_by, p_order, p_owner_id);
  RETURN format('COPY (SELECT d.id, d.organization_id, d.contact_id, d.owner_id, d.title,'
                ' to_char(d.amount, %L) AS amount, d.currency, d.status, d.pipeline_id, d.stage,'
                ' to_char(d.expected_close_date, %L) AS expected_close_date, app.ts(d.closed_at) AS closed_at, d.external_id,'
                ' app.ts(d.created_at) AS created_at, app.ts(d.updated_at) AS updated_at, d.version'
                ' FROM app.deals_export_rows(p_statuses => %L, p_stages => %L, p_min_amount => %L,'
                ' p_max_amount => %L, p_owner_id => %L, p_contact_id => %L, p_pipeline_id => %L, p_external_id => %L) d'
                ' ORDER BY d.%I %s, d.id %s) TO STDOUT (FORMAT csv, HEADER)',
                'FM999999999990.00', 'YYYY-MM-DD',
                p_statuses, p_stages, p_min_amount, p_max_amount, p_owner_id, p_contact_id, p_pipeline_id, p_external_id,
                CASE p_order_by WHEN 'amount' THEN 'amount_cents' ELSE p_order_by END, p_order, p_order);
END
$$;

-- Import ----------------------------------------------------------------------
-- The server checks the file's shape (RFC 4180 quoting, UTF-8, the header's
-- names, field counts, the row and byte limits), then, in one transaction:
-- api.contacts_import_begin creates the staging table, COPY ... FROM STDIN
-- fills it (one row per data row, empty fields as NULL), and
-- api.contacts_import validates and writes every row, or nothing.

-- The staging table: temporary, dropped at the end of the transaction.
CREATE OR REPLACE FUNCTION api.contacts_import_begin() RETURNS jsonb
  LANGUAGE plpgsql
  AS $$
BEGIN
  CREATE TEMP TABLE contacts_import OF app.contact_import_row (PRIMARY KEY (row_no)) ON COMMIT DROP;
  RETURN NULL;
END
$$;

-- Writes rows of an import, as the API writes contacts (so every CHECK,
-- key and rule trigger of crm.contacts applies, with the caller's role). A
-- row whose external_id a contact of the organization has updates that
-- contact: the columns in p_columns, owner_email only when given (an owner
-- cannot be null). Every other row creates a contact owned by the member
-- whose address is owner_email (by the email key, as logins compare
-- addresses), or by the caller; rows are created as if one microsecond
-- apart, the first row of the file the newest, so the list (newest first)
-- and an export show them in the file's order. Returns {created, updated}.
CREATE OR REPLACE FUNCTION app.contacts_import_apply(p_rows app.contact_import_row[], p_columns text[])
  RETURNS bigint[] LANGUAGE plpgsql
  AS $$
DECLARE
  v_created bigint;
  v_updated bigint;
  v_missing int;
  v_trashed int;
BEGIN
  -- The members by email key, computed once and hashed (under RLS an
  -- expression index on users could not serve the lookup).
  SELECT min(r.row_no) INTO v_missing
    FROM unnest(p_rows) r
    LEFT JOIN (SELECT app.email_key(u.email) AS key FROM crm.organization_members m JOIN crm.users u ON u.id = m.user_id
                WHERE m.organization_id = (SELECT app.org_id())) mb ON mb.key = app.email_key(r.owner_email)
   WHERE r.owner_email IS NOT NULL AND mb.key IS NULL;
  IF v_missing IS NOT NULL THEN
    PERFORM app.fail('MC404', 'owner_email_not_member', 'no member of the organization has this email address', 'owner_email');
  END IF;
  -- A contact in the trash keeps its external_id (README, "Trash"): a row
  -- naming it neither updates nor revives it.
  SELECT min(r.row_no) INTO v_trashed
    FROM unnest(p_rows) r
    JOIN crm.contacts c ON c.organization_id = (SELECT app.org_id()) AND c.external_id = r.external_id
   WHERE c.deleted_at IS NOT NULL;
  IF v_trashed IS NOT NULL THEN
    PERFORM app.fail('MC409', 'contacts_external_id_taken',
      'a contact in the trash holds this external_id: restore it or erase it first', 'external_id');
  END IF;
  WITH src AS (
    SELECT r.*, mb.user_id AS owner_id, c.id AS existing
      FROM unnest(p_rows) r
      LEFT JOIN (SELECT app.email_key(u.email) AS key, m.user_id FROM crm.organization_members m JOIN crm.users u ON u.id = m.user_id
                  WHERE m.organization_id = (SELECT app.org_id())) mb ON mb.key = app.email_key(r.owner_email)
      LEFT JOIN crm.contacts c ON c.organization_id = (SELECT app.org_id()) AND c.external_id = r.external_id),
  upd AS (
    UPDATE crm.contacts c SET
      name     = CASE WHEN 'name' = ANY (p_columns) THEN app.trim_space(s.name) ELSE c.name END,
      email    = CASE WHEN 'email' = ANY (p_columns) THEN app.trim_space(s.email) ELSE c.email END,
      phone    = CASE WHEN 'phone' = ANY (p_columns) THEN app.trim_space(s.phone) ELSE c.phone END,
      owner_id = coalesce(s.owner_id, c.owner_id)
      FROM src s
     WHERE c.organization_id = (SELECT app.org_id()) AND c.id = s.existing
    RETURNING 1),
  ins AS (
    INSERT INTO crm.contacts (organization_id, owner_id, name, email, phone, external_id, created_at, updated_at)
    SELECT (SELECT app.org_id()), coalesce(s.owner_id, app.user_id()),
           app.trim_space(s.name), app.trim_space(s.email), app.trim_space(s.phone), s.external_id,
           now() - (s.row_no - 2) * interval '1 microsecond', now() - (s.row_no - 2) * interval '1 microsecond'
      FROM src s
     WHERE s.existing IS NULL
    RETURNING 1)
  SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM upd) INTO v_created, v_updated;
  RETURN ARRAY[v_created, v_updated];
END
$$;

-- One row's error, as the problem's errors[] shows it: field `row <n>:
-- <column of the file>` (the column the error names, or the columns of the
-- constraint; owner_id is the file's owner_email), message `<code>:
-- <text>` with the codes the API gives for the same error alone
-- (src/http/problem.rs). "row" is kept for sorting and removed at the end.
CREATE OR REPLACE FUNCTION app.import_row_error(p_row int, p_state text, p_constraint text, p_column text, p_message text)
  RETURNS jsonb LANGUAGE sql STABLE
  AS $$
    SELECT jsonb_build_object('row', p_row,
      'field', format('row %s: %s', p_row, coalesce(
        (SELECT string_agg(CASE a.attname WHEN 'owner_id' THEN 'owner_email' ELSE a.attname::text END, ', ' ORDER BY a.attnum)
           FROM pg_catalog.pg_attribute a
          WHERE a.attrelid = 'crm.contacts'::regclass AND a.attname::text <> 'organization_id'
            AND (a.attname::text = nullif(p_column, '')
                 OR (nullif(p_column, '') IS NULL
                     AND EXISTS (SELECT FROM pg_catalog.pg_constraint k
                                  WHERE k.conrelid = 'crm.contacts'::regclass AND k.conname = p_constraint
                                    AND a.attnum = ANY (k.conkey))))),
        CASE WHEN p_column = 'owner_email' THEN 'owner_email' END,
        'row')),
      'message', CASE
        WHEN p_state LIKE 'MC%' THEN p_constraint || ': ' || p_message
        WHEN p_state = '23502' THEN 'value_required: a required value is missing'
        WHEN p_state = '23505' THEN coalesce(nullif(p_constraint, ''), 'constraint_violation') || ': the value is already taken'
        WHEN p_state = '23503' THEN coalesce(nullif(p_constraint, ''), 'constraint_violation') || ': a referenced record does not exist'
        WHEN p_state = '23514' THEN coalesce(nullif(p_constraint, ''), 'constraint_violation') || ': a value is not valid'
        WHEN p_state = '42501' THEN 'not_found: not found'
        ELSE 'invalid_value: a value is not valid' END)
  $$;

-- Imports the staged file: all rows or none. The rules are the table's own
-- (its CHECKs, keys and triggers, through app.contacts_import_apply): none
-- is written again here. The rows are written together (the usual case, a
-- valid file, costs one statement); if that fails, each half is tried in a
-- subtransaction, a half that passes stays written and one that fails is
-- halved again, down to single rows, whose errors are the file's: a bad row
-- among 50,000 is found in about 32 subtransactions rather than 50,000,
-- and every row that passes was written in a set. Up to 100 bad rows are
-- named, and the error then undoes everything. p_columns: the file's
-- columns that the import reads.
CREATE OR REPLACE FUNCTION api.contacts_import(p_columns text[]) RETURNS jsonb
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_rows app.contact_import_row[];
  v_todo app.contact_import_row[];
  v_errors jsonb := '[]'::jsonb;
  v_done bigint[];
  v_created bigint := 0::bigint;
  v_updated bigint := 0::bigint;
  v_dup int[];
  v_lo int[];
  v_hi int[];
  v_from int;
  v_to int;
  v_state text;
  v_constraint text;
  v_column text;
  v_message text;
  c_max_errors constant int := 100;
  c_staging constant text := 'pg_temp.contacts_import';
BEGIN
  -- The staging table exists only while an import runs: a dynamic statement.
  EXECUTE format('SELECT array_agg(ROW(s.row_no, s.name, s.email, s.phone, s.external_id, s.owner_email)::app.contact_import_row
                                   ORDER BY s.row_no)
                    FROM %s s', c_staging) INTO v_rows;
  IF v_rows IS NULL THEN
    PERFORM app.fail('MC400', 'csv_no_rows', 'the file has a header but no rows');
  END IF;
  -- The same external_id twice: the second row could only update what the
  -- first one wrote.
  SELECT coalesce(jsonb_agg(jsonb_build_object('row', d.row_no, 'field', format('row %s: external_id', d.row_no),
                    'message', format('external_id_duplicate: row %s has the same external_id', d.first))), '[]'),
         coalesce(array_agg(d.row_no), '{}')
    INTO v_errors, v_dup
    FROM (SELECT r.row_no, min(r.row_no) OVER (PARTITION BY r.external_id) AS first
            FROM unnest(v_rows) r WHERE r.external_id IS NOT NULL) d
   WHERE d.row_no <> d.first;
  v_todo := ARRAY(SELECT r FROM unnest(v_rows) r WHERE r.row_no <> ALL (v_dup) ORDER BY r.row_no);
  -- The ranges of v_todo still to write, a stack: the top is the leftmost,
  -- so rows are written, and errors found, in the file's order.
  v_lo := ARRAY[1];
  v_hi := ARRAY[cardinality(v_todo)];
  WHILE cardinality(v_lo) > 0 AND jsonb_array_length(v_errors) < c_max_errors LOOP
    v_from := v_lo[cardinality(v_lo)];
    v_to := v_hi[cardinality(v_hi)];
    v_lo := v_lo[1:cardinality(v_lo) - 1];
    v_hi := v_hi[1:cardinality(v_hi) - 1];
    CONTINUE WHEN v_from > v_to;
    BEGIN
      v_done := app.contacts_import_apply(v_todo[v_from:v_to], p_columns);
      v_created := v_created + v_done[1];
      v_updated := v_updated + v_done[2];
    EXCEPTION WHEN integrity_constraint_violation OR data_exception OR insufficient_privilege
                OR SQLSTATE 'MC400' OR SQLSTATE 'MC403' OR SQLSTATE 'MC404' OR SQLSTATE 'MC409' THEN
      IF v_from = v_to THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_constraint = CONSTRAINT_NAME,
                                v_column = COLUMN_NAME, v_message = MESSAGE_TEXT;
        v_errors := v_errors || app.import_row_error(v_todo[v_from].row_no, v_state, v_constraint, v_column, v_message);
      ELSE
        -- The right half below the left one: the left is tried first.
        v_lo := v_lo || ARRAY[(v_from + v_to) / 2 + 1, v_from];
        v_hi := v_hi || ARRAY[v_to, (v_from + v_to) / 2];
      END IF;
    END;
  END LOOP;
  IF jsonb_array_length(v_errors) = 0 THEN
    RETURN jsonb_build_object('created', v_created, 'updated', v_updated);
  END IF;
  RAISE EXCEPTION USING ERRCODE = 'MC400', CONSTRAINT = 'import_invalid',
    MESSAGE = CASE WHEN jsonb_array_length(v_errors) >= c_max_errors
                   THEN format('at least %s rows are not valid (the first %s are listed); nothing was imported', c_max_errors, c_max_errors)
                   ELSE format('%s of %s rows are not valid; nothing was imported', jsonb_array_length(v_errors), cardinality(v_rows)) END,
    -- The rows' errors, for the problem's errors[] (src/http/problem.rs).
    DETAIL = (SELECT jsonb_agg(e - 'row' ORDER BY (e ->> 'row')::int)
                FROM (SELECT e FROM jsonb_array_elements(v_errors) e ORDER BY (e ->> 'row')::int LIMIT c_max_errors) x)::text;
END
$$;
