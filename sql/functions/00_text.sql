-- Text helpers that CHECK constraints and indexes use: IMMUTABLE, independent
-- of search_path, collation and locale. A versioned migration creates each
-- one before it is used (V5), with exactly this text (tests/api/migrations.rs
-- compares them): changing one changes what existing rows were checked or
-- indexed with, so it needs a versioned migration that rechecks them.

-- p_text without leading and trailing Unicode White_Space: U+0009–000D,
-- U+0020, U+0085, U+00A0, U+1680, U+2000–200A, U+2028, U+2029, U+202F,
-- U+205F, U+3000 (btrim's default strips only U+0020; [[:space:]] depends on
-- the locale). Format characters such as U+200B or U+FEFF are not
-- White_Space and stay. Names and titles are stored trimmed by it, and are
-- blank when it leaves nothing.
CREATE OR REPLACE FUNCTION app.trim_space(p_text text) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$
    SELECT pg_catalog.btrim(p_text,
      E'\u0009\u000A\u000B\u000C\u000D\u0020\u0085\u00A0\u1680'
      '\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200A'
      '\u2028\u2029\u202F\u205F\u3000')
  $$;
