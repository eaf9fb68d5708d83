-- app.email_key: the one folding of email addresses (R10, the login lookup,
-- invitations, the server's per-email attempt limit). For each pair of
-- spellings: registering the second after the first is refused by the unique
-- index users_email_taken exactly when logging in by the second finds the
-- first's account and an invitation to the second reaches it, and both happen exactly when the keys
-- are equal. Calls run as the server makes them (app.act_as, minicrm_api).
BEGIN;
SELECT plan(36);
\ir pipeline_fixture.psql

-- (registered, tried, same account?, what the pair shows)
CREATE TEMP TABLE spellings (registered text, tried text, same boolean, why text);
INSERT INTO spellings VALUES
  ('victim@example.com', 'VICTIM@Example.COM', true, 'ASCII case'),
  ('victim@example.com', 'v' || U&'\0130' || 'ctim@example.com', true, 'İ (U+0130, Turkish capital dotted I) is i'),
  ('victim@example.com', 'V' || U&'\0130' || 'CTIM@EXAMPLE.COM', true, '... in an upper-case address too'),
  ('victim@example.com', 'v' || U&'\0131' || 'ctim@example.com', true, 'ı (U+0131, dotless i) is i'),
  ('victim@example.com', 'vi' || U&'\0307' || 'ctim@example.com', false, 'i + U+0307 (Rust''s lower case of İ) is not i'),
  ('victim@example.com', U&'\FF56\FF49\FF43\FF54\FF49\FF4D' || '@example.com', true, 'fullwidth ｖｉｃｔｉｍ is victim (NFKC)'),
  ('victim@example.com', U&'\FF36\FF29\FF23\FF34\FF29\FF2D' || '@example.com', true, 'fullwidth capitals ＶＩＣＴＩＭ too'),
  ('victim@example.com', 'vic' || U&'\200B' || 'tim@example.com', true, 'a zero-width space inside is ignored'),
  ('victim@example.com', 'vic' || U&'\00AD' || 'tim@example.com', true, 'a soft hyphen inside is ignored'),
  ('victim@example.com', U&'\3000' || 'victim@example.com' || U&'\00A0', true, 'U+3000 and NBSP around are trimmed'),
  ('victim@example.com', E'\t victim@example.com\n', true, 'tab, space and newline around are trimmed'),
  ('victim@example.com', 'victím@example.com', false, 'í is another letter than i'),
  ('victim@example.com', 'victim@example.co', false, 'another address'),
  ('émile@example.com', 'e' || U&'\0301' || 'mile@example.com', true, 'e + U+0301 is é (NFC)'),
  ('e' || U&'\0301' || 'mile@example.com', 'émile@example.com', true, '... and é is e + U+0301'),
  ('émile@example.com', 'ÉMILE@EXAMPLE.COM', true, 'É is é'),
  ('émile@example.com', 'E' || U&'\0301' || 'MILE@example.com', true, 'E + U+0301 is é'),
  ('émile@example.com', 'emile@example.com', false, 'é is not e: marks are kept'),
  ('straße@example.com', 'STRA' || U&'\1E9E' || 'E@example.com', true, 'capital ẞ is ß'),
  ('straße@example.com', 'strasse@example.com', false, 'ß is not ss (simple folding)'),
  ('σίσυφος@example.com', 'ΣΊΣΥΦΟΣ@example.com', true, 'Greek capitals fold'),
  ('σίσυφος@example.com', 'σίσυφοσ@example.com', true, 'final ς is σ'),
  ('σίσυφοσ@example.com', 'ςίσυφος@example.com', true, '... wherever it stands'),
  ('ﬁle@example.com', 'FILE@example.com', true, 'the ligature ﬁ is fi (NFKC)'),
  ('дмитрий@пример.рф', 'ДМИТРИЙ@ПРИМЕР.РФ', true, 'Cyrillic folds'),
  ('istanbul@example.com', U&'\0130' || 'STANBUL@example.com', true, 'İSTANBUL is istanbul');

-- A spelling as a test description shows it: invisible characters by code point.
CREATE FUNCTION pg_temp.show(p_text text) RETURNS text LANGUAGE sql AS $$
  SELECT string_agg(CASE WHEN c ~ '[\u0001-\u0020\u00A0\u00AD\u0300-\u036F\u200B\u3000]'
                         THEN format('<U+%s>', upper(lpad(to_hex(ascii(c)), 4, '0'))) ELSE c END, '' ORDER BY i)
    FROM unnest(regexp_split_to_array(p_text, '')) WITH ORDINALITY a(c, i)
$$;

-- What the tried spelling does when the registered one has an account
-- (everything undone afterwards): "refused|finds|finds" or "ok|none|none".
CREATE FUNCTION pg_temp.probe(p_registered text, p_tried text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  v_id uuid;
  v_register text;
  v_login text;
  v_member text;
BEGIN
  INSERT INTO crm.users (email, hashed_password, name)
  VALUES (p_registered, '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'Registered') RETURNING id INTO v_id;
  v_register := pg_temp.try_as(NULL, NULL, format(
    'SELECT api.auth_register(%L, %L, ''Tried'', ''Tried Co'', ''\xab''::bytea, now() + interval ''1 day'')',
    p_tried, '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA'));
  v_login := pg_temp.value_as(NULL, NULL, format('SELECT api.auth_login_credentials(%L) ->> ''user_id''', p_tried));
  -- zed, the owner of organization B (pipeline_fixture.psql), invites the
  -- tried spelling: does the registered user see the invitation? (Undone.)
  BEGIN
    PERFORM pg_temp.value_as('b0000000-0000-0000-0000-000000000001', 'b0000000-0000-0000-0000-000000000000',
                             format('SELECT api.invitations_create(%L, ''member'', 3600)', p_tried));
    v_member := pg_temp.value_as(v_id, NULL, $q$SELECT jsonb_array_length(api.invitations_mine() -> 'items')::text$q$);
    RAISE EXCEPTION USING ERRCODE = 'TT000', MESSAGE = 'undo';
  EXCEPTION WHEN SQLSTATE 'TT000' THEN
    NULL;
  END;
  DELETE FROM crm.users WHERE id = v_id;
  RETURN concat_ws('|',
    CASE v_register WHEN '23505 users_email_taken' THEN 'refused' WHEN 'ok' THEN 'ok' ELSE v_register END,
    CASE WHEN v_login IS NULL THEN 'none' WHEN v_login = v_id::text THEN 'finds' ELSE 'another user' END,
    CASE v_member WHEN '1' THEN 'finds' WHEN '0' THEN 'none' ELSE v_member END);
END
$$;

SELECT is(pg_temp.probe(registered, tried),
          CASE WHEN same THEN 'refused|finds|finds' ELSE 'ok|none|none' END,
          format('%s: registering %s after %s is %s; login and invitations %s', why, pg_temp.show(tried), pg_temp.show(registered),
                 CASE WHEN same THEN 'refused' ELSE 'fine' END, CASE WHEN same THEN 'find the account' ELSE 'find no one' END))
  FROM spellings ORDER BY registered, tried;

-- The keys agree with the index, and the key the login lookup answers with
-- (the server's rate-limit key) is the same for both spellings.
SELECT is((SELECT count(*)::int FROM spellings WHERE (app.email_key(registered) = app.email_key(tried)) IS DISTINCT FROM same),
  0, 'two spellings have one key exactly when they are one account');
-- (The per-email attempt limit counts by the same key: tests/sql/05_auth_attempts.sql.)
SELECT is(pg_temp.value_as(NULL, NULL, $$SELECT api.auth_login_credentials('nobody@example.com')::text$$),
  '{"user_id": null, "hashed_password": null}',
  'an unknown address has no user, and the same shape of answer');

-- The key itself.
SELECT is(app.email_key(U&'  V\0130CTIM@Ｅｘａｍｐｌｅ.COM\3000'), 'victim@example.com', 'a whole address folds to its key');
SELECT is(app.email_key(NULL), NULL, 'no address, no key');
SELECT is((SELECT count(*)::int FROM generate_series(1, 127) c
            WHERE app.email_key(chr(c) || 'é') <> app.email_key(chr(c)) || 'é'),
  0, 'the ASCII short way folds every ASCII character as the full way does');
SELECT is((SELECT count(*)::int FROM spellings
            WHERE app.email_key(tried COLLATE "C") <> app.email_key(tried)
               OR app.email_key(tried COLLATE "POSIX") <> app.email_key(tried)),
  0, 'the collation of the argument changes nothing');
SELECT is(app.email_key(app.email_key(tried)), app.email_key(tried), format('the key of a key is itself (%s)', tried))
  FROM (VALUES (U&'\0130\0131ΣςẞßＡ\212A\2126e\0301')) v(tried);
SET LOCAL search_path = pg_catalog;
CREATE TEMP TABLE no_path AS SELECT app.email_key(U&'Ｖ\0130CTIM@X') AS k;
RESET search_path;
SELECT is((SELECT k FROM no_path), 'victim@x', 'no search_path needed (pg_dump and pg_restore rebuild the index with none)');
SELECT is((SELECT provolatile::text FROM pg_proc WHERE oid = 'app.email_key(text)'::regprocedure), 'i', 'app.email_key is IMMUTABLE');
SELECT is(pg_get_indexdef('crm.users_email_taken'::regclass),
  'CREATE UNIQUE INDEX users_email_taken ON crm.users USING btree (app.email_key(email))',
  'users_email_taken is the unique index on app.email_key(email)');

SELECT * FROM finish();
ROLLBACK;
