-- Blank names (SPEC §2, README "names non-blank"): a name or title made of
-- nothing but Unicode White_Space is blank, whatever the white space
-- (app.trim_space, not btrim's U+0020 only), on create and on rename, for
-- every table; names are stored trimmed of it; a comment's text likewise
-- (R9). Calls run as the server makes them (app.act_as, minicrm_api).
BEGIN;
SELECT plan(86);
\ir pipeline_fixture.psql

-- The white space of each case.
CREATE TEMP TABLE blanks (what text, blank text);
INSERT INTO blanks VALUES
  ('a tab', E'\t'),
  ('a newline', E'\n'),
  ('NBSP', U&'\00A0'),
  ('U+3000 (ideographic space)', U&'\3000'),
  ('U+2028 (line separator)', U&'\2028'),
  ('every White_Space character', E'\t\n\u000B\f\r \u0085\u00A0\u1680\u2000\u2001\u2002\u2003\u2004\u2005'
                                  '\u2006\u2007\u2008\u2009\u200A\u2028\u2029\u202F\u205F\u3000');

-- Each way a name or title is written through the API, as olga (owner of A):
-- (what, user, organization, statement with %L for the name, code when blank).
CREATE TEMP TABLE writes (what text, by_user uuid, in_org uuid, stmt text, code text, field text);
INSERT INTO writes VALUES
  ('register: user name', NULL, NULL,
   $$SELECT api.auth_register(gen_random_uuid() || '@example.com', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', %L, 'New Co', uuid_send(gen_random_uuid()), now() + interval '1 day') -> 'user'$$,
   '23514 users_name_invalid', 'name'),
  ('register: organization name', NULL, NULL,
   $$SELECT api.auth_register(gen_random_uuid() || '@example.com', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'New', %L, uuid_send(gen_random_uuid()), now() + interval '1 day') -> 'organization'$$,
   '23514 organizations_name_invalid', 'name'),
  ('organization create', :'olga', NULL, 'SELECT api.organizations_create(%L)', '23514 organizations_name_invalid', 'name'),
  ('organization rename', :'olga', :'org_a', 'SELECT api.organizations_rename(%L)', '23514 organizations_name_invalid', 'name'),
  ('contact create', :'olga', :'org_a', 'SELECT api.contacts_create(p_name => %L)', '23514 contacts_name_invalid', 'name'),
  ('contact rename', :'olga', :'org_a',
   format('SELECT api.contacts_update(%L, ARRAY[''name''], %%L, NULL, NULL, NULL)', :'c_olga'), '23514 contacts_name_invalid', 'name'),
  ('deal create', :'olga', :'org_a',
   format('SELECT api.deals_create(%L, %%L, 10, ''EUR'')', :'c_olga'), '23514 deals_title_invalid', 'title'),
  ('deal rename', :'olga', :'org_a',
   format('SELECT api.deals_update(%L, NULL, NULL, %%L, NULL, NULL, NULL, NULL)', :'d_olga'), '23514 deals_title_invalid', 'title'),
  ('task create', :'olga', :'org_a',
   format('SELECT api.tasks_create(%L, %%L, NULL, %L)', :'d_olga', :'tomorrow'), '23514 tasks_title_invalid', 'title'),
  ('task rename', :'olga', :'org_a',
   format('SELECT api.tasks_update(%L, ARRAY[''title''], %%L, NULL, NULL, NULL)', :'t_olga'), '23514 tasks_title_invalid', 'title'),
  ('comment', :'olga', :'org_a',
   format('SELECT api.activities_create(%L, ''comment'', jsonb_build_object(''text'', %%L))', :'d_olga'), 'MC400 comment_text_required', NULL);

-- Blank: refused with the constraint's code, for every kind of white space.
SELECT is(pg_temp.try_as(w.by_user, w.in_org, format(w.stmt, b.blank || b.blank)), w.code,
          format('%s of %s is blank: %s', w.what, b.what, w.code))
  FROM writes w CROSS JOIN blanks b ORDER BY w.what, b.what;

-- Not blank: stored trimmed of the white space around it (a comment's text as written).
SELECT is(pg_temp.value_as(w.by_user, w.in_org, format(w.stmt, E'\t\u00A0Ada Lovelace\u3000\n'))::jsonb ->> w.field,
          'Ada Lovelace', format('%s: "\tAda Lovelace\n" with NBSP and U+3000 is stored as "Ada Lovelace"', w.what))
  FROM writes w WHERE w.field IS NOT NULL ORDER BY w.what;
SELECT is(pg_temp.value_as(:'olga', :'org_a',
            format('SELECT api.activities_create(%L, ''comment'', jsonb_build_object(''text'', %L)) -> ''payload'' ->> ''text''',
                   :'d_olga', E'\tAda\n')),
          E'\tAda\n', 'a comment''s text is kept as written');

-- Every writer: the CHECKs refuse a blank name written directly, too.
SELECT throws_ok(format('INSERT INTO crm.%s', stmt), '23514', NULL, format('a direct INSERT of a blank %s is refused', what))
  FROM (VALUES
    ('organization name', format('organizations (name) VALUES (%L)', U&'\3000\00A0')),
    ('user name', format('users (email, hashed_password, name) VALUES (''d@example.com'', ''$argon2id$x'', %L)', E'\t\n')),
    ('contact name', format('contacts (organization_id, owner_id, name) VALUES (%L, %L, %L)', :'org_a', :'olga', U&'\2028')),
    ('deal title', format('deals (organization_id, contact_id, owner_id, title, amount, currency) VALUES (%L, %L, %L, %L, 1, ''EUR'')',
                          :'org_a', :'c_olga', :'olga', U&'\205F\202F')),
    ('task title', format('tasks (organization_id, deal_id, title, due_date) VALUES (%L, %L, %L, %L)',
                          :'org_a', :'d_olga', U&'\1680\0085', :'tomorrow'))) v(what, stmt);
SELECT is((SELECT string_agg(conname || ': ' || pg_get_constraintdef(oid), '; ' ORDER BY conname)
             FROM pg_constraint WHERE conname IN ('organizations_name_invalid', 'users_name_invalid', 'contacts_name_invalid',
                                                  'deals_title_invalid', 'tasks_title_invalid')),
  'contacts_name_invalid: CHECK (((length(app.trim_space(name)) >= 1) AND (length(app.trim_space(name)) <= 200))); '
  'deals_title_invalid: CHECK (((length(app.trim_space(title)) >= 1) AND (length(app.trim_space(title)) <= 200))); '
  'organizations_name_invalid: CHECK (((length(app.trim_space(name)) >= 1) AND (length(app.trim_space(name)) <= 200))); '
  'tasks_title_invalid: CHECK (((length(app.trim_space(title)) >= 1) AND (length(app.trim_space(title)) <= 200))); '
  'users_name_invalid: CHECK (((length(app.trim_space(name)) >= 1) AND (length(app.trim_space(name)) <= 200)))',
  'the five name and title CHECKs keep their names (the API codes) and use app.trim_space');

-- app.trim_space strips exactly the 25 White_Space code points, at both ends only.
SELECT is((SELECT string_agg(to_hex(c), ' ' ORDER BY c) FROM generate_series(1, 65535) c
            WHERE c NOT BETWEEN 55296 AND 57343 AND app.trim_space(chr(c)) = ''),
  '9 a b c d 20 85 a0 1680 2000 2001 2002 2003 2004 2005 2006 2007 2008 2009 200a 2028 2029 202f 205f 3000',
  'the characters app.trim_space strips are Unicode''s White_Space');
SELECT is(app.trim_space(E'\u3000 A \t B\u00A0'), E'A \t B', 'white space inside is kept');
-- Invisible characters that are not White_Space are content, not blank.
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.contacts_create(p_name => %L)', U&'\200B')), 'ok',
  'a name of U+200B (zero width space, a format character) is not blank');

SELECT * FROM finish();
ROLLBACK;
