-- Contacts: list / create / get / update / delete. The rules are the triggers
-- in 30_pipeline_rules.sql; these functions shape requests and responses.

CREATE OR REPLACE FUNCTION app.contact_json(c crm.contacts) RETURNS jsonb
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$
    SELECT jsonb_build_object('id', c.id, 'organization_id', c.organization_id, 'owner_id', c.owner_id,
      'name', c.name, 'email', c.email, 'phone', c.phone, 'external_id', c.external_id,
      'created_at', app.ts(c.created_at), 'updated_at', app.ts(c.updated_at), 'version', c.version)
  $$;

-- The list envelope of SPEC §5 and §14. p_items holds up to p_page_size + 1
-- rows (the list reads one more than it shows): when the extra row is there,
-- it is dropped and next_after names the keyset of the last row shown (its
-- p_key field and its id). The server turns next_after into the signed,
-- opaque next_cursor (src/http/cursor.rs); a page reached through a cursor
-- has p_page null. PL/pgSQL, not SQL: a SQL function with a FROM cannot be
-- inlined, and PostgreSQL 15 plans such a function again on every call
-- (0.33 M instructions more per W1 request than this; bench/regress-notes.md).
-- The rows come as an array (array_agg), not a JSON array: a jsonb value
-- placed into another is taken apart and written again, so jsonb_agg, then
-- dropping the extra row, then the envelope wrote the page three times;
-- from the array it is written once (W1: 0.63 M instructions fewer).
DROP FUNCTION IF EXISTS app.page_json(jsonb, int, int, jsonb, text);
CREATE OR REPLACE FUNCTION app.page_json(p_items jsonb[], p_page int, p_page_size int, p_total jsonb, p_key text)
  RETURNS jsonb LANGUAGE plpgsql STABLE PARALLEL SAFE
  AS $$
DECLARE
  v_more boolean := coalesce(cardinality(p_items), 0) > p_page_size;
BEGIN
  RETURN jsonb_build_object(
      'items', coalesce(to_jsonb(CASE WHEN v_more THEN p_items[1:p_page_size] ELSE p_items END), '[]'),
      'page', p_page, 'page_size', p_page_size,
      'total', p_total -> 'total', 'total_exact', p_total -> 'total_exact',
      'next_after', CASE WHEN v_more THEN jsonb_build_object(
        'key', p_items[p_page_size] ->> p_key, 'id', p_items[p_page_size] -> 'id') END);
END
$$;

-- Totals of every list (SPEC §14): exact up to app.exact_count_limit()
-- matches; beyond, counting costs as much as reading them all, so the total
-- is the planner's estimate (p_plan: EXPLAIN (FORMAT JSON) of the list's
-- query without keyset or LIMIT), never less than the limit + 1, and
-- total_exact is false. p_counted is a count capped at the limit + 1.
CREATE OR REPLACE FUNCTION app.exact_count_limit() RETURNS int
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT 1000 $$;

-- STABLE, as jsonb_build_object is: PostgreSQL does not inline an IMMUTABLE
-- SQL function whose body is not, and runs it through the SQL function
-- executor instead (0.25 M instructions more per W1 request; pgTAP 48 checks
-- that it is inlined).
CREATE OR REPLACE FUNCTION app.list_total(p_counted bigint, p_plan json) RETURNS jsonb
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$
    SELECT CASE WHEN p_counted <= app.exact_count_limit() OR p_plan IS NULL
                THEN jsonb_build_object('total', p_counted, 'total_exact', p_counted <= app.exact_count_limit())
                ELSE jsonb_build_object('total', greatest(p_counted, (p_plan -> 0 -> 'Plan' ->> 'Plan Rows')::numeric::bigint),
                                        'total_exact', false) END
  $$;

-- The paging arguments of every list: either an offset page (p_page, the
-- server bounds it) or a keyset (the sort key(s) of the last row seen and its
-- id, decoded by the server from a verified cursor), never both.
CREATE OR REPLACE FUNCTION app.check_paging(p_page int, p_has_key boolean, p_after_id uuid) RETURNS void
  LANGUAGE plpgsql STABLE
  AS $$
BEGIN
  IF p_has_key <> (p_after_id IS NOT NULL) THEN
    PERFORM app.fail('MC400', 'invalid_cursor', 'a keyset needs both the sort key and the id of the last row', 'cursor');
  END IF;
  IF p_after_id IS NOT NULL AND p_page IS NOT NULL THEN
    PERFORM app.fail('MC400', 'cursor_with_page', 'cursor and page cannot be used together', 'cursor');
  END IF;
END
$$;

-- Filtering by another member's records is for managers and up.
CREATE OR REPLACE FUNCTION app.require_owner_filter(p_owner_id uuid) RETURNS void
  LANGUAGE plpgsql STABLE
  AS $$
BEGIN
  IF p_owner_id IS NOT NULL AND app.role() = 'member' AND p_owner_id <> app.user_id() THEN
    PERFORM app.fail('MC403', 'role_forbidden', 'members may only filter by their own owner_id', 'owner_id');
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION app.not_found(p_what text) RETURNS void
  LANGUAGE sql
  AS $$ SELECT app.fail('MC404', p_what || '_not_found', p_what || ' not found') $$;

-- The planner's estimates (under RLS, as the caller): the rows of the words
-- with a prefix (a range of one column: the histogram knows it well), and
-- the contacts of an organization.
CREATE OR REPLACE FUNCTION app.search_words_estimate(p_org_id uuid, p_prefix text, p_next text) RETURNS bigint
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_plan json;
BEGIN
  EXECUTE 'EXPLAIN (FORMAT JSON) SELECT FROM crm.contact_search_words s WHERE s.organization_id = $1 AND s.word >= $2 AND s.word < $3'
    INTO v_plan USING p_org_id, p_prefix, p_next;
  RETURN (v_plan -> 0 -> 'Plan' ->> 'Plan Rows')::numeric::bigint;
END
$$;

CREATE OR REPLACE FUNCTION app.contacts_estimate(p_org_id uuid) RETURNS bigint
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_plan json;
BEGIN
  EXECUTE 'EXPLAIN (FORMAT JSON) SELECT FROM crm.contacts c WHERE c.organization_id = $1 AND c.deleted_at IS NULL'
    INTO v_plan USING p_org_id;
  RETURN (v_plan -> 0 -> 'Plan' ->> 'Plan Rows')::numeric::bigint;
END
$$;

-- The matches of a search, as distinct (created_at, contact_id) rows: the
-- contacts with a word starting with each of the terms (app.search_terms).
-- In the query, $1 is the organization, $2 the terms, $3 their
-- app.prefix_next bounds, $4 the owner filter, $5 and $6 the keyset, and $9
-- the distinct words of the driving term when there are few of them. A
-- prefix is a range of crm.contact_search_words, `word >= $2[i] AND word <
-- $3[i]`: both comparisons are leakproof, so they are index conditions under
-- RLS, and EXECUTE plans with the values, so the planner knows the range.
--
-- The driving term p_driver is read one of three ways (api.contacts_list
-- picks): with p_words its few distinct words, each an equality in
-- contact_search_words_by_word whose rows come in list order, merged (any
-- density, any page costs the page); otherwise its range, either read whole
-- (sparse) or met while walking the primary key in list order (dense). The
-- other terms are checked per candidate (an index probe, or a hash of their
-- own range: the planner decides). With an owner filter the owner's contacts
-- drive instead, and every term is such a check.
-- PL/pgSQL, not SQL: a SQL function with subqueries cannot be inlined, and
-- PostgreSQL 15 plans such a function again on every call (0.47 ms a call,
-- against 0.26 ms now; two calls per search); PL/pgSQL keeps the plan.
CREATE OR REPLACE FUNCTION app.contacts_match_sql(p_terms int, p_driver int, p_words int, p_owner boolean, p_keyset boolean)
  RETURNS text LANGUAGE plpgsql STABLE PARALLEL SAFE
  AS $$
BEGIN
  RETURN CASE
      WHEN p_owner THEN
        'SELECT c.created_at, c.id AS contact_id FROM crm.contacts c WHERE c.organization_id = $1 AND c.owner_id = $4'
        || ' AND c.deleted_at IS NULL'
        || CASE WHEN p_keyset THEN ' AND (c.created_at, c.id) < ($5, $6)' ELSE '' END
      WHEN p_words IS NOT NULL THEN
        'SELECT DISTINCT s.created_at, s.contact_id FROM ('
        || (SELECT string_agg(format('(SELECT w.created_at, w.contact_id FROM crm.contact_search_words w'
                                     ' WHERE w.organization_id = $1 AND w.word = $9[%s]%s'
                                     ' ORDER BY w.created_at DESC, w.contact_id DESC)',
                                     n, CASE WHEN p_keyset THEN ' AND (w.created_at, w.contact_id) < ($5, $6)' ELSE '' END),
                              ' UNION ALL ' ORDER BY n)
              FROM generate_series(1, p_words) n)
        || ') s WHERE true'
      ELSE
        format('SELECT DISTINCT s.created_at, s.contact_id FROM crm.contact_search_words s'
               ' WHERE s.organization_id = $1 AND s.word >= $2[%1$s] AND s.word < $3[%1$s]', p_driver)
        || CASE WHEN p_keyset THEN ' AND (s.created_at, s.contact_id) < ($5, $6)' ELSE '' END
      END
      || coalesce((SELECT string_agg(format(' AND EXISTS (SELECT FROM crm.contact_search_words w%1$s'
                                             ' WHERE w%1$s.organization_id = $1 AND w%1$s.created_at = %2$s.created_at'
                                             ' AND w%1$s.contact_id = %2$s.%3$s AND w%1$s.word >= $2[%1$s] AND w%1$s.word < $3[%1$s])',
                                             n, CASE WHEN p_owner THEN 'c' ELSE 's' END,
                                             CASE WHEN p_owner THEN 'id' ELSE 'contact_id' END), '' ORDER BY n)
                     FROM generate_series(1, p_terms) n WHERE p_owner OR n <> p_driver), '');
END
  $$;

-- Newest first. p_page (offset pages, default 1) or the keyset
-- p_after_created_at + p_after_id (the rows after that one: a cursor page).
-- p_search: the contacts with, for each word of the term, a word of their
-- name or email that starts with it (README, "Search").
-- p_external_id: at most one contact has it (contacts_external_id_taken), so
-- it drives, through that constraint's index, and the other filters
-- (search terms included) are checks on that one row.
CREATE OR REPLACE FUNCTION api.contacts_list(p_page int, p_page_size int, p_search text DEFAULT NULL, p_owner_id uuid DEFAULT NULL,
    p_after_created_at timestamptz DEFAULT NULL, p_after_id uuid DEFAULT NULL, p_external_id text DEFAULT NULL)
  RETURNS jsonb LANGUAGE plpgsql -- volatile: EXPLAIN (the estimate) is not allowed in a stable function
  AS $$
DECLARE
  v_org uuid := app.org_id();
  v_terms text[] := app.search_terms(p_search);
  v_k int := cardinality(v_terms);
  v_next text[];
  v_where text;
  v_entries bigint[];
  v_driver int := 1;
  v_words text[];
  v_walk boolean := false;
  v_read bigint;
  v_counted bigint;
  v_estimate bigint;
  v_plan json;
  v_items jsonb[];  -- the page's rows and the one after it (app.page_json)
  v_ordered boolean;
  v_sort text;
  v_hashagg text;
  v_set text;
  -- A driving term with at most this many distinct words is read as their merge.
  c_words constant int := 32;
  -- Entries of a term's range read to count it. Past that, a term has more
  -- than 1,000 contacts unless they average five words each with the prefix,
  -- and its contacts are dense enough that walking the list finds a page
  -- sooner than reading and sorting the whole range (README, "Search").
  c_sample constant int := 5005;
BEGIN
  PERFORM app.require_owner_filter(p_owner_id);
  PERFORM app.check_paging(p_page, p_after_created_at IS NOT NULL, p_after_id);
  IF p_external_id IS NOT NULL THEN
    PERFORM app.check_external_id(p_external_id);
  END IF;

  v_next := ARRAY(SELECT app.prefix_next(t) FROM unnest(v_terms) WITH ORDINALITY u (t, n) ORDER BY n);
  IF v_k = 0 OR p_external_id IS NOT NULL THEN
    v_where := 'c.organization_id = $1 AND c.deleted_at IS NULL' || CASE WHEN p_owner_id IS NOT NULL THEN ' AND c.owner_id = $4' ELSE '' END
      || CASE WHEN p_external_id IS NOT NULL THEN ' AND c.external_id = $9' ELSE '' END
      || coalesce((SELECT string_agg(format(' AND EXISTS (SELECT FROM crm.contact_search_words w%1$s'
                                             ' WHERE w%1$s.organization_id = $1 AND w%1$s.created_at = c.created_at'
                                             ' AND w%1$s.contact_id = c.id AND w%1$s.word >= $2[%1$s] AND w%1$s.word < $3[%1$s])', n), '' ORDER BY n)
                     FROM generate_series(1, v_k) n), '');
    EXECUTE 'SELECT count(*) FROM (SELECT 1 FROM crm.contacts c WHERE ' || v_where || ' LIMIT $7) c'
      INTO v_counted USING v_org, v_terms, v_next, p_owner_id, NULL::timestamptz, NULL::uuid, app.exact_count_limit() + 1,
                           NULL::bigint, p_external_id;
    IF v_counted > app.exact_count_limit() THEN
      EXECUTE 'EXPLAIN (FORMAT JSON) SELECT 1 FROM crm.contacts c WHERE ' || v_where INTO v_plan
        USING v_org, v_terms, v_next, p_owner_id, NULL::timestamptz, NULL::uuid, NULL::int, NULL::bigint, p_external_id;
    END IF;
    EXECUTE 'SELECT array_agg(app.contact_json(c) ORDER BY c.created_at DESC, c.id DESC)
               FROM (SELECT * FROM crm.contacts c WHERE ' || v_where
            || CASE WHEN p_after_id IS NOT NULL THEN ' AND (c.created_at, c.id) < ($5, $6)' ELSE '' END
            || ' ORDER BY c.created_at DESC, c.id DESC LIMIT $7 OFFSET $8) c'
      INTO v_items USING v_org, v_terms, v_next, p_owner_id, p_after_created_at, p_after_id,
                         p_page_size + 1, (coalesce(p_page, 1) - 1)::bigint * p_page_size, p_external_id;
    RETURN app.page_json(v_items, p_page, p_page_size, app.list_total(v_counted, v_plan), 'created_at');
  END IF;

  IF p_owner_id IS NULL THEN
    IF v_k > 1 THEN
      -- The term with the fewest entries drives; those with more than
      -- c_sample compare by the planner's estimate (ties: the longest term,
      -- the order of app.search_terms).
      SELECT array_agg((SELECT count(*) FROM (SELECT FROM crm.contact_search_words s
                                                WHERE s.organization_id = v_org AND s.word >= t.lo AND s.word < t.hi
                                                LIMIT c_sample) s) ORDER BY t.n)
        INTO v_entries FROM unnest(v_terms, v_next) WITH ORDINALITY t (lo, hi, n);
      IF (SELECT count(*) FROM unnest(v_entries) e WHERE e = c_sample) > 1 THEN
        v_entries := ARRAY(SELECT CASE WHEN e.c = c_sample THEN greatest(c_sample, app.search_words_estimate(v_org, e.lo, e.hi)) ELSE e.c END
                             FROM unnest(v_entries, v_terms, v_next) WITH ORDINALITY e (c, lo, hi, n) ORDER BY e.n);
      END IF;
      SELECT e.n::int INTO v_driver FROM unnest(v_entries) WITH ORDINALITY e (c, n) ORDER BY e.c, e.n LIMIT 1;
    END IF;
    -- The driving term's distinct words, if there are few: one index
    -- descent each (a loose index scan).
    EXECUTE 'WITH RECURSIVE w (word) AS (
               (SELECT s.word FROM crm.contact_search_words s
                 WHERE s.organization_id = $1 AND s.word >= $2[$4] AND s.word < $3[$4] ORDER BY s.word LIMIT 1)
               UNION ALL
               SELECT (SELECT s.word FROM crm.contact_search_words s
                        WHERE s.organization_id = $1 AND s.word > w.word AND s.word < $3[$4] ORDER BY s.word LIMIT 1)
                 FROM w WHERE w.word IS NOT NULL)
             SELECT array_agg(w.word) FROM (SELECT w.word FROM w WHERE w.word IS NOT NULL LIMIT $5) w'
      INTO v_words USING v_org, v_terms, v_next, v_driver, c_words + 1;
    IF cardinality(v_words) > c_words THEN
      v_words := NULL;
      IF v_k = 1 THEN
        -- One term of many words: count its contacts from the first entries
        -- of its range (a contact may have several words with the prefix).
        EXECUTE 'SELECT sum(g.n)::bigint, count(*)
                   FROM (SELECT s.contact_id, count(*) AS n
                           FROM (SELECT s.contact_id FROM crm.contact_search_words s
                                  WHERE s.organization_id = $1 AND s.word >= $2[1] AND s.word < $3[1] LIMIT $4) s
                          GROUP BY s.contact_id) g'
          INTO v_read, v_counted USING v_org, v_terms, v_next, c_sample;
        v_walk := v_read = c_sample;
        IF NOT v_walk THEN
          v_estimate := v_counted;  -- read to the end: exact
        ELSIF v_counted <= app.exact_count_limit() THEN
          v_counted := NULL;  -- not read to the end, and too few to know: counted below
        END IF;
      END IF;
    END IF;
  END IF;

  -- Read in list order, the merge of few words and the walk of a dense
  -- term need neither a sort nor a hash, and stop when they have enough; the
  -- planner would rather sort the lot (it expects fewer rows and does not
  -- know the index is in memory). Put back as it was after.
  -- (set_config in assignments: the simple-expression path, see app.act_as.)
  v_ordered := v_words IS NOT NULL OR v_walk;
  v_sort := current_setting('enable_sort');
  v_hashagg := current_setting('enable_hashagg');
  IF v_ordered THEN
    v_set := set_config('enable_sort', 'off', true);
    v_set := set_config('enable_hashagg', 'off', true);
  END IF;
  IF v_counted IS NULL THEN
    EXECUTE 'SELECT count(*) FROM (' || app.contacts_match_sql(v_k, v_driver, cardinality(v_words), p_owner_id IS NOT NULL, false)
         || ' ORDER BY 1 DESC, 2 DESC LIMIT $7) m'
      INTO v_counted USING v_org, v_terms, v_next, p_owner_id, NULL::timestamptz, NULL::uuid,
                           app.exact_count_limit() + 1, 0, v_words;
  END IF;
  IF v_ordered THEN
    v_set := set_config('enable_sort', v_sort, true);
    v_set := set_config('enable_hashagg', v_hashagg, true);
  END IF;
  v_counted := least(v_counted, app.exact_count_limit() + 1);
  IF v_estimate IS NULL AND (v_counted > app.exact_count_limit() OR (v_walk AND p_page > 1)) THEN
    IF v_k = 1 AND p_owner_id IS NULL THEN
      -- One term: its words' rows as the planner estimates them (which is
      -- what it knows best: a range of one column), at most one per contact.
      v_estimate := least(app.search_words_estimate(v_org, v_terms[1], v_next[1]), app.contacts_estimate(v_org));
    ELSE
      EXECUTE 'EXPLAIN (FORMAT JSON) ' || app.contacts_match_sql(v_k, v_driver, cardinality(v_words), p_owner_id IS NOT NULL, false)
        INTO v_plan USING v_org, v_terms, v_next, p_owner_id, NULL::timestamptz, NULL::uuid, NULL::int, NULL::bigint, v_words;
      v_estimate := (v_plan -> 0 -> 'Plan' ->> 'Plan Rows')::numeric::bigint;
    END IF;
  END IF;
  IF v_walk AND p_page > 1 THEN
    -- An offset page walks past every match before it, and past a point
    -- reading and sorting the whole range costs less. With m matches among
    -- n contacts, reaching match o walks about o * n / m contacts; reading
    -- and sorting an entry of the range costs about as much as walking one
    -- contact (its seven or so entries): the walk wins while m^2 > o * n.
    -- (c_sample is that point for the first page of 1,000,000 contacts.)
    v_walk := v_estimate::numeric ^ 2 > ((p_page - 1)::numeric * p_page_size + p_page_size + 1) * app.contacts_estimate(v_org);
  END IF;

  v_ordered := v_words IS NOT NULL OR v_walk;
  IF v_ordered THEN
    v_set := set_config('enable_sort', 'off', true);
    v_set := set_config('enable_hashagg', 'off', true);
  END IF;
  EXECUTE 'SELECT array_agg(app.contact_json(c) ORDER BY c.created_at DESC, c.id DESC)
             FROM (' || app.contacts_match_sql(v_k, v_driver, cardinality(v_words), p_owner_id IS NOT NULL, p_after_id IS NOT NULL)
          || ' ORDER BY 1 DESC, 2 DESC LIMIT $7 OFFSET $8) m
             JOIN crm.contacts c ON c.organization_id = $1 AND c.id = m.contact_id'
    INTO v_items USING v_org, v_terms, v_next, p_owner_id, p_after_created_at, p_after_id,
                       p_page_size + 1, (coalesce(p_page, 1) - 1)::bigint * p_page_size, v_words;
  IF v_ordered THEN
    v_set := set_config('enable_sort', v_sort, true);
    v_set := set_config('enable_hashagg', v_hashagg, true);
  END IF;
  -- list_total reads an estimate where EXPLAIN (FORMAT JSON) has it.
  RETURN app.page_json(v_items, p_page, p_page_size,
                       app.list_total(v_counted, json_build_array(json_build_object('Plan', json_build_object('Plan Rows', v_estimate)))),
                       'created_at');
END
$$;

-- p_external_id is kept as given (V18). PL/pgSQL, not SQL: a SQL function
-- that cannot be inlined (an INSERT) is parsed, rewritten (RLS) and planned
-- again on every call, while PL/pgSQL keeps the INSERT's plan for the
-- session (bench/writecost-notes.md: about a fifth of W3's database time).
CREATE OR REPLACE FUNCTION api.contacts_create(p_name text, p_email text DEFAULT NULL, p_phone text DEFAULT NULL, p_owner_id uuid DEFAULT NULL,
    p_external_id text DEFAULT NULL)
  RETURNS jsonb LANGUAGE plpgsql
  AS $$
DECLARE
  v jsonb;
BEGIN
  INSERT INTO crm.contacts (organization_id, owner_id, name, email, phone, external_id)
  VALUES (app.org_id(), coalesce(p_owner_id, app.user_id()), app.trim_space(p_name), app.trim_space(p_email), app.trim_space(p_phone),
          p_external_id)
  RETURNING app.contact_json(contacts) INTO v;
  RETURN v;
END
$$;

CREATE OR REPLACE FUNCTION api.contacts_get(p_id uuid) RETURNS jsonb
  LANGUAGE plpgsql STABLE
  AS $$
DECLARE
  v jsonb;
BEGIN
  SELECT app.contact_json(c) INTO v FROM crm.contacts c
   WHERE c.organization_id = (SELECT app.org_id()) AND c.id = p_id AND c.deleted_at IS NULL;
  IF v IS NULL THEN
    PERFORM app.not_found('contact');
  END IF;
  RETURN v;
END
$$;

-- Partial update: p_fields names the fields present in the request; the
-- others keep their values (so email, phone and external_id can be set to null).
-- p_if_match: If-Match's versions (28_versions.sql), checked by the UPDATE itself.
CREATE OR REPLACE FUNCTION api.contacts_update(p_id uuid, p_fields text[], p_name text, p_email text, p_phone text, p_owner_id uuid,
    p_external_id text DEFAULT NULL, p_if_match int[] DEFAULT NULL)
  RETURNS jsonb LANGUAGE plpgsql
  AS $$
DECLARE
  v jsonb;
BEGIN
  UPDATE crm.contacts c SET
    name     = CASE WHEN 'name' = ANY (p_fields) THEN app.trim_space(p_name) ELSE c.name END,
    email    = CASE WHEN 'email' = ANY (p_fields) THEN app.trim_space(p_email) ELSE c.email END,
    phone    = CASE WHEN 'phone' = ANY (p_fields) THEN app.trim_space(p_phone) ELSE c.phone END,
    owner_id = CASE WHEN 'owner_id' = ANY (p_fields) THEN p_owner_id ELSE c.owner_id END,
    external_id = CASE WHEN 'external_id' = ANY (p_fields) THEN p_external_id ELSE c.external_id END
   WHERE c.organization_id = (SELECT app.org_id()) AND c.id = p_id AND c.deleted_at IS NULL
     AND (p_if_match IS NULL OR c.version = ANY (p_if_match))
  RETURNING app.contact_json(c) INTO v;
  IF v IS NULL THEN
    PERFORM app.not_found_or_changed('contact', p_if_match IS NOT NULL AND EXISTS (
      SELECT 1 FROM crm.contacts c WHERE c.organization_id = (SELECT app.org_id()) AND c.id = p_id AND c.deleted_at IS NULL));
  END IF;
  RETURN v;
END
$$;

-- To the trash (44_trash.sql); the rule trigger checks the role, R2 and sets deleted_by.
CREATE OR REPLACE FUNCTION api.contacts_delete(p_id uuid, p_if_match int[] DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql
  AS $$
BEGIN
  UPDATE crm.contacts c SET deleted_at = now()
   WHERE c.organization_id = (SELECT app.org_id()) AND c.id = p_id AND c.deleted_at IS NULL
     AND (p_if_match IS NULL OR c.version = ANY (p_if_match));
  IF NOT FOUND THEN
    PERFORM app.not_found_or_changed('contact', p_if_match IS NOT NULL AND EXISTS (
      SELECT 1 FROM crm.contacts c WHERE c.organization_id = (SELECT app.org_id()) AND c.id = p_id AND c.deleted_at IS NULL));
  END IF;
END
$$;
