-- The list envelope (app.page_json, from the rows as an array) and its total
-- (app.list_total), which every list request builds: what they answer, and
-- that the total is inlined into the caller's expression instead of running
-- through the SQL function executor (an IMMUTABLE SQL function whose body
-- is only STABLE is never inlined; bench/regress-notes.md has the cost).
BEGIN;
SELECT plan(9);

-- The plan of p_sql with its output expressions (EXPLAIN VERBOSE).
CREATE FUNCTION pg_temp.explain_verbose(p_sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  v text;
BEGIN
  EXECUTE 'EXPLAIN (VERBOSE, FORMAT JSON) ' || p_sql INTO v;
  RETURN v;
END
$$;

SELECT is(app.list_total(5, NULL), '{"total": 5, "total_exact": true}'::jsonb, 'a count within the limit is exact');
SELECT is(app.list_total(1001, '[{"Plan": {"Plan Rows": 52000}}]'::json),
          '{"total": 52000, "total_exact": false}'::jsonb, 'beyond the limit: the estimate, not exact');
SELECT is(app.list_total(1001, '[{"Plan": {"Plan Rows": 12}}]'::json),
          '{"total": 1001, "total_exact": false}'::jsonb, 'an estimate never falls below the count');

SELECT unalike(pg_temp.explain_verbose('SELECT app.list_total(n, NULL) FROM generate_series(1::bigint, 2) n'),
              '%list_total%', 'app.list_total is inlined into the query that calls it');

SELECT is(app.page_json(ARRAY['{"id": 1, "k": "a"}', '{"id": 2, "k": "b"}', '{"id": 3, "k": "c"}']::jsonb[], 1, 2,
                        app.list_total(3, NULL), 'k'),
          '{"items": [{"id": 1, "k": "a"}, {"id": 2, "k": "b"}], "page": 1, "page_size": 2, "total": 3,
            "total_exact": true, "next_after": {"key": "b", "id": 2}}'::jsonb,
          'one row more than the page: dropped, and next_after names the last row shown');
SELECT is(app.page_json(ARRAY['{"id": 1, "k": "a"}', '{"id": 2, "k": "b"}']::jsonb[], 1, 2, app.list_total(2, NULL), 'k')
            -> 'next_after', 'null'::jsonb, 'a full page and no more: no next_after');
SELECT is(app.page_json(ARRAY['{"id": 1, "k": "a"}', '{"id": 2, "k": "b"}']::jsonb[], 1, 2, app.list_total(2, NULL), 'k')
            -> 'items', '[{"id": 1, "k": "a"}, {"id": 2, "k": "b"}]'::jsonb, 'a full page keeps its rows');
SELECT is(app.page_json(NULL, 4, 20, app.list_total(0, NULL), 'created_at') -> 'items', '[]'::jsonb,
          'no rows: an empty list');
SELECT is(app.page_json(NULL, NULL, 20, app.list_total(0, NULL), 'created_at') -> 'page', 'null'::jsonb,
          'a cursor page has no page number');

SELECT * FROM finish();
ROLLBACK;
