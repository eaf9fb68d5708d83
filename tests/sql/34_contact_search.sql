-- Contact search (README, "Search"): the words of every contact, kept by the
-- contacts_search_words trigger for every writer; a contact matches when
-- each word of the term begins one of its words; the lookup is an index
-- range under RLS; every access path gives the answer the rule gives.
BEGIN;
SELECT plan(59);

SELECT (api.auth_register('search@example.com', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'S', 'Search',
        '\x7703'::bytea, now() + interval '1 day') -> 'organization' ->> 'id') AS org,
       app.user_id() AS owner
  FROM app.act_as(NULL) \gset
RESET ROLE;
SELECT (api.auth_register('other@example.com', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'O', 'Other',
        '\x7704'::bytea, now() + interval '1 day') -> 'organization' ->> 'id') AS other_org,
       app.user_id() AS other_owner
  FROM app.act_as(NULL) \gset
RESET ROLE;

-- Runs p_sql as the request role, acting as the user and organization in
-- test.user and test.org, and comes back to the superuser, so that pgTAP
-- (whose functions minicrm_api may not execute) does the asserting.
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
-- The words of a contact, as stored.
CREATE FUNCTION pg_temp.words(p_id uuid) RETURNS text[] LANGUAGE sql AS $$
  SELECT array_agg(word::text ORDER BY word) FROM crm.contact_search_words WHERE contact_id = p_id
$$;
-- The names a search finds (up to 100), sorted.
CREATE FUNCTION pg_temp.found(p_search text) RETURNS text[] LANGUAGE sql AS $$
  SELECT coalesce(array_agg(e ->> 'name' ORDER BY e ->> 'name' COLLATE "C"), '{}')
    FROM jsonb_array_elements(pg_temp.as_api(format('SELECT api.contacts_list(1, 100, %L)', p_search)) -> 'items') e
$$;
SELECT pg_temp.acting(:'owner', :'org');

-- A DBA's plain INSERT and UPDATE, under a context: the trigger keeps the words.
SELECT app.act_as(:'owner', :'org');
INSERT INTO crm.contacts (organization_id, owner_id, name, email)
VALUES (:'org', :'owner', 'Ada Lovelace', 'ada.lovelace@analytical-engines.co.uk')
RETURNING id AS ada \gset
RESET ROLE;
SELECT is(pg_temp.words(:'ada'),
          ARRAY['-', '.', '@', 'ada', 'analytical', 'co', 'engines', 'lovelace', 'uk'],
          'an INSERT stores the distinct lower-case words of name and email, and each punctuation mark');
SELECT is((SELECT count(*)::int FROM crm.contact_search_words s JOIN crm.contacts c ON c.id = s.contact_id
            WHERE s.contact_id = :'ada' AND s.created_at = c.created_at AND s.organization_id = c.organization_id),
          9, 'each word carries the contact''s organization and created_at');

SELECT app.act_as(:'owner', :'org');
UPDATE crm.contacts SET name = 'Ada King', email = 'ada@example.com' WHERE id = :'ada';
RESET ROLE;
SELECT is(pg_temp.words(:'ada'), ARRAY['.', '@', 'ada', 'com', 'example', 'king'],
          'an UPDATE of name and email replaces the words: the old ones are gone');
SELECT app.act_as(:'owner', :'org');
UPDATE crm.contacts SET email = NULL WHERE id = :'ada';
RESET ROLE;
SELECT is(pg_temp.words(:'ada'), ARRAY['ada', 'king'], 'an email set to null takes its words along');
SELECT (SELECT array_agg(ctid::text ORDER BY ctid) FROM crm.contact_search_words WHERE contact_id = :'ada') AS ctids \gset
SELECT app.act_as(:'owner', :'org');
UPDATE crm.contacts SET phone = '+1 555 0100', name = 'Ada King' WHERE id = :'ada';
RESET ROLE;
SELECT is((SELECT array_agg(ctid::text ORDER BY ctid) FROM crm.contact_search_words WHERE contact_id = :'ada'),
          :'ctids'::text[], 'an update that leaves name and email as they were rewrites no word');
UPDATE crm.contacts SET created_at = created_at - interval '1 day' WHERE id = :'ada';
SELECT is((SELECT count(*)::int FROM crm.contact_search_words s JOIN crm.contacts c ON c.id = s.contact_id
            WHERE s.contact_id = :'ada' AND s.created_at = c.created_at), 2,
          'a changed created_at moves the words (the trigger: they have no foreign key)');
SELECT is((SELECT count(*)::int FROM crm.contact_search_words s WHERE s.contact_id = :'ada'), 2,
          'and leaves none under the old one');
-- A DBA changing a contact's id, then erasing it (owner under a context).
SELECT app.act_as(:'owner', :'org');
INSERT INTO crm.contacts (organization_id, owner_id, name) VALUES (:'org', :'owner', 'Short Lived') RETURNING id AS short_lived \gset
UPDATE crm.contacts SET id = gen_random_uuid() WHERE id = :'short_lived' RETURNING id AS moved \gset
RESET ROLE;
SELECT is(pg_temp.words(:'moved'), ARRAY['lived', 'short'], 'a changed id moves the words');
SELECT is(pg_temp.words(:'short_lived'), NULL, 'none stay under the old id');
SELECT app.act_as(:'owner', :'org');
DELETE FROM crm.contacts WHERE id = :'moved';
RESET ROLE;
SELECT is(pg_temp.words(:'moved'), NULL, 'an erased contact takes its words along (not in the trash first)');
SELECT throws_ok(format('SELECT pg_temp.as_api(%L)',
                        format($$INSERT INTO crm.contact_search_words VALUES (%L, %L, 'ghost', now()) RETURNING 1$$, :'org', :'ada')),
                 '42501', NULL, 'only the trigger writes words: the request role may not, even for its own contacts');
SELECT throws_ok(format('SELECT pg_temp.as_api(%L)',
                        format($$DELETE FROM crm.contact_search_words WHERE contact_id = %L RETURNING 1$$, :'ada')),
                 '42501', NULL, 'nor delete them');

SELECT app.act_as(:'owner', :'org');
SELECT count(*) FROM (SELECT api.contacts_create(n, e) FROM (VALUES
  ('Ada Lovelace', 'ada.lovelace@analytical-engines.co.uk'), ('Charles Babbage', 'charles@difference.engine'),
  ('Grace Hopper', 'grace@navy.mil'), ('Alan Turing', 'alan@bletchley.park'), ('Émile Zola', 'emile@écrivains.fr'),
  ('100% Cotton Ltd', NULL), ('a_b', NULL), ('axb', NULL), ('Back\slash', NULL), ('Zoë 山田', NULL),
  ('O''Brien & Sons', 'info@obrien.ie')) v (n, e)) x;
SELECT (api.contacts_create('Temporary') ->> 'id') AS temporary \gset
RESET ROLE;
SELECT is((SELECT count(*)::int FROM crm.contact_search_words WHERE contact_id = :'temporary'), 1, 'an API create stores words too');
SELECT app.act_as(:'owner', :'org');
SELECT api.contacts_delete(:'temporary');
RESET ROLE;
SELECT is((SELECT count(*)::int FROM crm.contact_search_words WHERE contact_id = :'temporary'), 0,
          'a contact in the trash takes its words along');

-- What matches.
SELECT is(pg_temp.found('ada'), ARRAY['Ada King', 'Ada Lovelace'], 'a word of the name');
SELECT is(pg_temp.found('ADA'), ARRAY['Ada King', 'Ada Lovelace'], 'in any case');
SELECT is(pg_temp.found('a'), ARRAY['Ada King', 'Ada Lovelace', 'Alan Turing', 'a_b', 'axb'],
          'one character: the contacts with a word that starts with it');
SELECT is(pg_temp.found('gr'), ARRAY['Grace Hopper'], 'two characters');
SELECT is(pg_temp.found('engine'), ARRAY['Ada Lovelace', 'Charles Babbage'], 'a word of the email (engines, engine)');
SELECT is(pg_temp.found('velace'), '{}'::text[], 'the middle of a word is not a match');
SELECT is(pg_temp.found('lov ada'), ARRAY['Ada Lovelace'], 'several words: each begins a word, in any order');
SELECT is(pg_temp.found('ada   lovelace analytical'), ARRAY['Ada Lovelace'], 'three words');
SELECT is(pg_temp.found('ada zola'), '{}'::text[], 'several words: all of them');
SELECT is(pg_temp.found('ada.lovelace@analytical-engines.co.uk'), ARRAY['Ada Lovelace'], 'a whole email address');
SELECT is(pg_temp.found('émile'), ARRAY['Émile Zola'], 'non-ASCII letters fold too (Émile, émile)');
SELECT is(pg_temp.found('ECRIV'), '{}'::text[], 'accents are kept: ecriv is not écriv');
SELECT is(pg_temp.found('ÉCRIV'), ARRAY['Émile Zola'], 'accents are kept: ÉCRIV is écriv');
SELECT is(pg_temp.found('山'), ARRAY['Zoë 山田'], 'any script');
-- LIKE's metacharacters are plain characters, searchable like words.
SELECT is(pg_temp.found('%'), ARRAY['100% Cotton Ltd'], '% is literal: a contact with a %');
SELECT is(pg_temp.found('_'), ARRAY['a_b'], '_ is literal: not axb');
SELECT is(pg_temp.found('\'), ARRAY['Back\slash'], '\ is literal');
SELECT is(pg_temp.found('100%'), ARRAY['100% Cotton Ltd'], 'a word and a mark');
SELECT is(pg_temp.found('o''brien'), ARRAY['O''Brien & Sons'], 'a quote');
SELECT is(pg_temp.found('   '), (SELECT array_agg(name ORDER BY name COLLATE "C") FROM crm.contacts WHERE organization_id = :'org' AND deleted_at IS NULL),
          'white space only is no search');
SELECT is(pg_temp.as_api($$SELECT api.contacts_list(1, 100, 'ada')$$) - 'items' - 'next_after',
          '{"page": 1, "page_size": 100, "total": 2, "total_exact": true}'::jsonb, 'the total counts the matches');
SELECT is(jsonb_array_length(pg_temp.as_api(format($$SELECT api.contacts_list(1, 100, 'ada', p_owner_id => %L)$$, :'owner')) -> 'items'),
          2, 'search and owner filter combine');
SELECT is(jsonb_array_length(pg_temp.as_api(format($$SELECT api.contacts_list(1, 100, 'ada', p_owner_id => %L)$$, :'other_owner')) -> 'items'),
          0, 'search and another owner: nothing');
SELECT throws_ok($$SELECT pg_temp.as_api('SELECT api.contacts_list(1, 20, ''a b c d e f g h i j k l m n o p q'')')$$,
                 'MC400', 'a search may have at most 16 words', 'more than 16 words are refused');
SELECT lives_ok($$SELECT pg_temp.as_api('SELECT api.contacts_list(1, 20, ''a b c d e f g h i j k l m n o p a b'')')$$,
                'repeated words count once');

-- Tenancy: another organization's contacts and words stay out of sight.
SELECT pg_temp.acting(:'other_owner', :'other_org');
SELECT is(pg_temp.found('ada'), '{}'::text[], 'another organization''s contacts are never found');
SELECT pg_temp.as_api($$SELECT api.contacts_create('Ada Byron', 'ada@byron.example')$$) IS NOT NULL AS created;
SELECT is(pg_temp.found('ada'), ARRAY['Ada Byron'], 'each organization finds its own');
SELECT is(pg_temp.as_api(format($$SELECT to_jsonb(count(*)) FROM crm.contact_search_words WHERE organization_id = %L$$, :'org')),
          '0'::jsonb, 'the words of another organization are not visible');
SELECT throws_ok(format('SELECT pg_temp.as_api(%L)',
                        format($$INSERT INTO crm.contact_search_words VALUES (%L, %L, 'x', now()) RETURNING 1$$, :'org', :'ada')),
                 '42501', NULL, 'nor can words be written into it');
SELECT pg_temp.acting(:'owner', :'org');

-- Every access path (the merge of few words, the range, the walk of dense
-- terms, several words) answers exactly what the rule says, cursor page
-- after cursor page through ties of created_at, and on an offset page.
SELECT app.act_as(:'owner', :'org');
INSERT INTO crm.contacts (organization_id, owner_id, name, email, created_at)
SELECT :'org', :'owner', 'Person ' || n, format('p%s@d%s.test', n, n % 7), now() - (n % 100) * interval '1 minute'
  FROM generate_series(1, 6000) n;
-- Eight words with q each: 8,000 entries for 1,000 contacts.
INSERT INTO crm.contacts (organization_id, owner_id, name, email)
SELECT :'org', :'owner', 'Qa Qb Qc Qd Qe Qf', format('q%s@q.test', n) FROM generate_series(1, 1000) n;
RESET ROLE;
ANALYZE crm.contacts, crm.contact_search_words;
-- The matches by the definition, newest first.
CREATE FUNCTION pg_temp.rule(p_search text) RETURNS uuid[] LANGUAGE sql AS $$
  SELECT coalesce(array_agg(c.id ORDER BY c.created_at DESC, c.id DESC), '{}') FROM crm.contacts c
   WHERE c.organization_id = current_setting('test.org')::uuid
     AND (SELECT bool_and(EXISTS (SELECT 1 FROM unnest(app.search_tokens(c.name || ' ' || coalesce(c.email, ''))) w
                                   WHERE starts_with(w, t)))
            FROM unnest(app.search_tokens(p_search)) t)
$$;
-- What the list answers, following cursors of 500; and whether every total
-- is exact up to 1,000 and at least 1,001 beyond.
CREATE FUNCTION pg_temp.walked(p_search text, OUT ids uuid[], OUT totals_ok boolean) LANGUAGE plpgsql AS $$
DECLARE
  p jsonb := pg_temp.as_api(format('SELECT api.contacts_list(1, 500, %L)', p_search));
  n int := cardinality(pg_temp.rule(p_search));
BEGIN
  ids := '{}';
  totals_ok := true;
  LOOP
    ids := ids || ARRAY(SELECT (e ->> 'id')::uuid FROM jsonb_array_elements(p -> 'items') e);
    totals_ok := totals_ok AND CASE WHEN n <= 1000 THEN p -> 'total' = to_jsonb(n) AND (p ->> 'total_exact')::boolean
                                    ELSE (p ->> 'total')::int > 1000 AND NOT (p ->> 'total_exact')::boolean END;
    EXIT WHEN p -> 'next_after' IS NULL OR p -> 'next_after' = 'null'::jsonb;
    p := pg_temp.as_api(format('SELECT api.contacts_list(NULL, 500, %L, p_after_created_at => %L, p_after_id => %L)',
                               p_search, p -> 'next_after' ->> 'key', p -> 'next_after' ->> 'id'));
  END LOOP;
END
$$;
-- An offset page: the third of 100.
CREATE FUNCTION pg_temp.third_page(p_search text) RETURNS uuid[] LANGUAGE sql AS $$
  SELECT coalesce(array_agg((e ->> 'id')::uuid ORDER BY n), '{}')
    FROM jsonb_array_elements(pg_temp.as_api(format('SELECT api.contacts_list(3, 100, %L)', p_search)) -> 'items')
         WITH ORDINALITY x (e, n)
$$;
CREATE TEMP TABLE paths AS
SELECT t, d, w.ids = pg_temp.rule(t) AND pg_temp.third_page(t) = coalesce((pg_temp.rule(t))[201:300], '{}') AS same,
       w.totals_ok, cardinality(w.ids) AS found
  FROM (VALUES (1, 'person', 'one word, every contact: the merge'),
               (2, 'd3', 'one word, one contact in seven: the merge'),
               (3, 'p1', '1,111 words, 1,111 contacts: the range'),
               (4, 'p', '6,001 words, every contact: the walk'),
               (5, '12', '111 words of the names: the range'),
               (6, 'person 12', 'two words, a dense one'),
               (7, 'd3 p1', 'two words, each of many contacts'),
               (8, 'person 12 d5', 'three words'),
               (9, 'q', '1,000 contacts of eight words each: counted to the end')) v (n, t, d),
       LATERAL pg_temp.walked(t) w
 ORDER BY n;
SELECT ok(same, format('%s (%s found): %s', t, found, d)) FROM paths;
SELECT ok(bool_and(totals_ok), 'every page''s total is exact up to 1,000, and estimated beyond') FROM paths;

-- The plan, as the request role under RLS: a sparse term is a range of the
-- words index (an index condition, not a filter behind the policy).
CREATE FUNCTION pg_temp.plan(p_search text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_terms text[] := app.search_terms(p_search);
  v_plan json;
  v_user text;
BEGIN
  PERFORM app.act_as(current_setting('test.user')::uuid, current_setting('test.org')::uuid);
  EXECUTE 'EXPLAIN (FORMAT JSON) ' || app.contacts_match_sql(1, 1, NULL, false, false) INTO v_plan
    USING app.org_id(), v_terms, ARRAY(SELECT app.prefix_next(t) FROM unnest(v_terms) t);
  v_user := current_user;
  PERFORM set_config('role', 'none', true);
  RETURN jsonb_build_object('user', v_user, 'plan', v_plan::text);
END
$$;
SELECT pg_temp.plan('p12') AS plan \gset
SELECT is(:'plan'::jsonb ->> 'user', 'minicrm_api', 'the plan is the request role''s');
SELECT matches(:'plan'::jsonb ->> 'plan', '"Index Name": "contact_search_words_by_word"', 'a sparse term reads the words index');
SELECT matches(:'plan'::jsonb ->> 'plan', $re$"Index Cond": "[^"]*\(word >= 'p12'::text\) AND \(word < 'p13'::text\)$re$,
               'its prefix is the index condition, under RLS');

-- V24 made app.search_tokens PL/pgSQL; the words stored before were cut by
-- V11's SQL function. The same tokens, on a corpus of every kind of
-- character the rule names (the query below is V11's, verbatim).
SELECT is((SELECT count(*)::int FROM (VALUES ('Ada Lovelace ada.lovelace@analytical-engines.co.uk'), ('100% Cotton Ltd'),
             ('a_b Back\slash O''Brien & Sons'), ('Zoë 山田 Émile Zola emile@écrivains.fr'), ('ＡＢＣ　ｄｅｆ ﬁ'),
             ('«guillemets» — dash – €5 ¥ 、。「かぎ」'), (E'tab\tnew\nline\u00A0nbsp\u200Bzwsp\u00ADshy'),
             ('×÷±§¶ ¿¡'), (''), ('   '), (NULL), ('ΣΊΣΥΦΟΣ straße İstanbul'), ('emoji 😀 ok')) v (x)
            WHERE app.search_tokens(x) IS DISTINCT FROM (
              SELECT pg_catalog.array_agg(DISTINCT m.t[1])
                FROM pg_catalog.regexp_matches(app.email_key(x) COLLATE "C",
                  '[^\u0001-\u002F\u003A-\u0040\u005B-\u0060\u007B-\u00BF\u00D7\u00F7\u1680\u2000-\u206F\u20A0-\u20CF\u2E00-\u2E7F\u3000-\u3004\u3008-\u3020\u3030\u303D\uFE10-\uFE1F\uFE30-\uFE6F]+'
                  || '|[\u0021-\u002F\u003A-\u0040\u005B-\u0060\u007B-\u007E\u00A1-\u00BF\u00D7\u00F7\u2010-\u2027\u2030-\u205E\u20A0-\u20CF\u2E00-\u2E7F\u3001-\u3004\u3008-\u3020\u3030\u303D\uFE10-\uFE1F\uFE30-\uFE6F]',
                  'g') AS m (t))), 0,
          'app.search_tokens cuts every text as V11''s SQL function did');

-- Deleting an organization takes its words along (its contacts go by cascade).
SELECT cmp_ok((SELECT count(*)::int FROM crm.contact_search_words WHERE organization_id = :'other_org'), '>', 0,
              'the other organization has words');
SELECT pg_temp.acting(:'other_owner', :'other_org');
SELECT pg_temp.as_api('SELECT ''true''::jsonb FROM (SELECT api.organizations_delete()) d') AS deleted;
SELECT is((SELECT count(*)::int FROM crm.contact_search_words WHERE organization_id = :'other_org'), 0,
          'a deleted organization leaves no words');

SELECT * FROM finish();
ROLLBACK;
