-- The cost of writing a contact (issue #10, W3; bench/writecost-notes.md).
--
-- app.search_tokens becomes PL/pgSQL, with the same query as V11's SQL
-- function: a SQL function that cannot be inlined (it has a FROM) is parsed
-- and planned again on every call from a trigger, which was a fifth of a
-- contact insert's database time; PL/pgSQL keeps the plan for the session.
-- The tokens are the same, so the stored words stay as they are
-- (tests/sql/34_contact_search.sql compares the two on a corpus).

-- From sql/functions/02_search_tokens.sql:
CREATE OR REPLACE FUNCTION app.search_tokens(p_text text) RETURNS text[]
  LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
  AS $fn$
BEGIN
  RETURN (SELECT pg_catalog.array_agg(DISTINCT m.t[1])
      FROM pg_catalog.regexp_matches(app.email_key(p_text) COLLATE "C",
        '[^\u0001-\u002F\u003A-\u0040\u005B-\u0060\u007B-\u00BF\u00D7\u00F7\u1680\u2000-\u206F\u20A0-\u20CF\u2E00-\u2E7F\u3000-\u3004\u3008-\u3020\u3030\u303D\uFE10-\uFE1F\uFE30-\uFE6F]+'
        || '|[\u0021-\u002F\u003A-\u0040\u005B-\u0060\u007B-\u007E\u00A1-\u00BF\u00D7\u00F7\u2010-\u2027\u2030-\u205E\u20A0-\u20CF\u2E00-\u2E7F\u3001-\u3004\u3008-\u3020\u3030\u303D\uFE10-\uFE1F\uFE30-\uFE6F]',
        'g') AS m (t));
END
$fn$;
