-- app.search_tokens: the words contact search knows a text by (README,
-- "Search"). crm.contact_search_words stores them for every contact's name
-- and email, and a search term is cut into the same tokens.
--
--   * the text is folded by app.email_key (NFKC, invisible characters
--     removed, simple case folding by a fixed table): case and compatibility
--     forms never matter, and no locale or collation is involved;
--   * a word is a run of characters that are not separators; separators are
--     ASCII's non-alphanumerics, Latin-1's punctuation and signs, × and ÷,
--     Unicode's spaces, General and Supplemental Punctuation, currency signs
--     and CJK punctuation. Letters and digits of every script (and anything
--     else, emoji included) are word characters;
--   * a separator that is not white space or a control character (%, _, \,
--     ', @, ., -, «, —, €, 、, ...) is a token of its own, so that punctuation
--     is searchable, literally, like any word.
--
-- 'Contact 12345 contact12345@customer345.example' ->
-- {., 12345, @, contact, contact12345, customer345, example} (distinct, in
-- no particular order).
--
-- IMMUTABLE for real, like app.email_key. The stored words were cut by this
-- text: it must stay exactly as V24__write_cost.sql created it
-- (tests/api/migrations.rs compares them; V24 wrapped V11's SQL function, the
-- same query, in PL/pgSQL, whose plan a session keeps: a SQL function with a
-- FROM is planned again on every call); changing what it returns needs a
-- versioned migration that replaces it and rebuilds crm.contact_search_words
-- (and so does a change of app.email_key).
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
