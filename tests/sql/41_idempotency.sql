-- Idempotency keys (SPEC §11; sql/functions/15_idempotency.sql): the one
-- statement the server sends for a POST with a key, run here as it is sent:
-- the first request writes and stores its answer, the same request again
-- replays it and writes nothing, another request with the key is refused,
-- a failed write stores nothing, keys are private to a user in an
-- organization (RLS), an expired key is absent and the cleanup deletes it.
-- A key held by a running request (another session, through dblink) is 409.
BEGIN;
SELECT plan(36);

\set org_a 'a0000000-0000-0000-0000-0000000000a1'
\set org_b 'b0000000-0000-0000-0000-0000000000b1'
\set ann   'a0000000-0000-0000-0000-000000000001'
\set bob   'a0000000-0000-0000-0000-000000000002'
\set zed   'b0000000-0000-0000-0000-000000000001'

INSERT INTO crm.users (id, email, hashed_password, name) VALUES
  (:'ann', 'ann@idem.test', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'Ann'),
  (:'bob', 'bob@idem.test', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'Bob'),
  (:'zed', 'zed@idem.test', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'Zed');
INSERT INTO crm.organizations (id, name) VALUES (:'org_a', 'A'), (:'org_b', 'B');
INSERT INTO crm.organization_members (organization_id, user_id, role) VALUES
  (:'org_a', :'ann', 'admin'), (:'org_a', :'bob', 'admin'), (:'org_b', :'zed', 'owner');

-- POST /contacts {"name": p_name} with Idempotency-Key p_key, as src/db/mod.rs
-- (idempotent_call_sql) writes it: 'fresh|201|<name>' or 'replayed|201|<name>',
-- or '<SQLSTATE> <code>' when it fails (its effects undone, as a failed
-- statement's are). p_fp stands for the request's fingerprint. Comes back
-- to the superuser.
CREATE FUNCTION pg_temp.post_contact(p_user uuid, p_org uuid, p_key text, p_fp text, p_name text)
  RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  v_replayed boolean;
  v_status int;
  v_body text;
  v_state text;
  v_code text;
BEGIN
  BEGIN
    EXECUTE $sql$
      SELECT b.replayed, b.status, CASE WHEN b.replayed THEN b.body
             ELSE app.idempotency_finish(p_scope => b.scope, p_key => $3, p_fingerprint => $4,
                  p_status => $5, p_ttl_secs => $6, p_body => (api.contacts_create(p_name => $7))::text) END
        FROM app.act_as($1, $2) AS a(role),
             LATERAL app.idempotency_begin(p_after => a.role, p_key => $3, p_fingerprint => $4) AS b
    $sql$ INTO v_replayed, v_status, v_body
    USING p_user, p_org, p_key, sha256(convert_to(p_fp, 'UTF8')), 201, 86400, p_name;
  EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_code = CONSTRAINT_NAME;
    RETURN v_state || coalesce(' ' || nullif(v_code, ''), '');
  END;
  PERFORM set_config('role', 'none', true);
  PERFORM set_config('app.user_id', '', true);
  PERFORM set_config('app.org_id', '', true);
  PERFORM set_config('app.role', '', true);
  RETURN concat_ws('|', CASE WHEN v_replayed THEN 'replayed' ELSE 'fresh' END,
                   coalesce(v_status, 201), v_body::jsonb ->> 'name');
END
$$;
-- The first column of p_sql's first row, run as p_user in p_org (minicrm_api).
CREATE FUNCTION pg_temp.value_as(p_user uuid, p_org uuid, p_sql text) RETURNS text
  LANGUAGE plpgsql AS $$
DECLARE
  v text;
  v_state text;
BEGIN
  BEGIN
    PERFORM app.act_as(p_user, p_org);
    EXECUTE p_sql INTO v;
    RAISE EXCEPTION USING ERRCODE = 'TT000', MESSAGE = coalesce(v, '<null>');
  EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v = MESSAGE_TEXT;
  END;
  RETURN CASE WHEN v_state = 'TT000' THEN v ELSE v_state END;
END
$$;
-- The same, keeping the effects.
CREATE FUNCTION pg_temp.keep_as(p_user uuid, p_org uuid, p_sql text) RETURNS text
  LANGUAGE plpgsql AS $$
DECLARE
  v text;
BEGIN
  PERFORM app.act_as(p_user, p_org);
  EXECUTE p_sql INTO v;
  PERFORM set_config('role', 'none', true);
  PERFORM set_config('app.user_id', '', true);
  PERFORM set_config('app.org_id', '', true);
  PERFORM set_config('app.role', '', true);
  RETURN v;
END
$$;
CREATE FUNCTION pg_temp.contacts(p_org uuid, p_name text) RETURNS bigint
  LANGUAGE sql AS $$ SELECT count(*) FROM crm.contacts WHERE organization_id = p_org AND name = p_name $$;

-- 1. The first request writes and stores its answer; the same again replays it.
SELECT is(pg_temp.post_contact(:'ann', :'org_a', 'k1', 'POST /contacts {Ada}', 'Ada'), 'fresh|201|Ada',
  'first request: written');
SELECT is(pg_temp.contacts(:'org_a', 'Ada'), 1::bigint, 'first request: one contact');
SELECT is((SELECT status::int FROM crm.idempotency_keys WHERE user_id = :'ann' AND key = 'k1'), 201,
  'the answer is stored with its status');
SELECT is((SELECT body::jsonb ->> 'id' FROM crm.idempotency_keys WHERE user_id = :'ann' AND key = 'k1'),
          (SELECT id::text FROM crm.contacts WHERE name = 'Ada'), 'and its body, the created record');
SELECT ok((SELECT expires_at BETWEEN now() + interval '86399 s' AND now() + interval '86401 s'
             FROM crm.idempotency_keys WHERE user_id = :'ann' AND key = 'k1'), 'it expires after the TTL');
SELECT is(pg_temp.post_contact(:'ann', :'org_a', 'k1', 'POST /contacts {Ada}', 'Ada'), 'replayed|201|Ada',
  'the same request again: replayed');
SELECT is(pg_temp.contacts(:'org_a', 'Ada'), 1::bigint, 'the replay wrote nothing');

-- 2. The key with another request (fingerprint): 422, nothing written.
SELECT is(pg_temp.post_contact(:'ann', :'org_a', 'k1', 'POST /contacts {Bea}', 'Bea'), 'MC422 idempotency_key_reused',
  'another request with the key: idempotency_key_reused');
SELECT is(pg_temp.contacts(:'org_a', 'Bea'), 0::bigint, 'the reused key wrote nothing');

-- 3. Scope: another user of the organization, or the user in another
-- organization, has keys of their own.
SELECT is(pg_temp.post_contact(:'bob', :'org_a', 'k1', 'POST /contacts {Bea}', 'Bea'), 'fresh|201|Bea',
  'another member, same key: a key of his own');
SELECT is(pg_temp.post_contact(:'zed', :'org_b', 'k1', 'POST /contacts {Ada}', 'Ada'), 'fresh|201|Ada',
  'another organization, same key: a key of its own');
SELECT is(pg_temp.post_contact(:'bob', :'org_a', 'k1', 'POST /contacts {Bea}', 'Bea'), 'replayed|201|Bea',
  'his key replays his answer');

-- 4. RLS: each sees only their own keys, and cannot write anyone else's.
SELECT is(pg_temp.value_as(:'ann', :'org_a', 'SELECT string_agg(body::jsonb ->> ''name'', '','') FROM crm.idempotency_keys'),
  'Ada', 'Ann sees her key only');
SELECT is(pg_temp.value_as(:'bob', :'org_a', 'SELECT string_agg(body::jsonb ->> ''name'', '','') FROM crm.idempotency_keys'),
  'Bea', 'Bob sees his key only');
SELECT is(pg_temp.value_as(:'zed', :'org_a', 'SELECT count(*) FROM crm.idempotency_keys'),
  'MC404', 'Zed cannot act in organization A at all');
SELECT is(pg_temp.value_as(:'ann', NULL, 'SELECT count(*) FROM crm.idempotency_keys'),
  '0', 'without an organization, no organization''s keys');
SELECT is(pg_temp.value_as(:'bob', :'org_a', format(
  'INSERT INTO crm.idempotency_keys (organization_id, user_id, key, fingerprint, status, body, expires_at) '
  'VALUES (%L, %L, ''k9'', sha256(''x''), 201, ''{}'', now() + interval ''1 h'') RETURNING key', :'org_a', :'ann')),
  '42501', 'Bob cannot store an answer under Ann''s name');
SELECT is(pg_temp.value_as(:'ann', :'org_a', 'DELETE FROM crm.idempotency_keys RETURNING key'),
  '42501', 'the request role cannot delete keys');

-- 5. A failed write stores nothing; the key stays free for the retry.
SELECT is(pg_temp.post_contact(:'ann', :'org_a', 'k2', 'POST /contacts {blank}', ' '), '23514 contacts_name_invalid',
  'a failed write fails');
SELECT is((SELECT count(*) FROM crm.idempotency_keys WHERE key = 'k2'), 0::bigint, 'and stores nothing');
SELECT is(pg_temp.post_contact(:'ann', :'org_a', 'k2', 'POST /contacts {Cy}', 'Cy'), 'fresh|201|Cy',
  'a retry with the key (and a good body) is a first request');

-- 6. Expiry: a row whose expires_at has passed is absent, and is replaced.
UPDATE crm.idempotency_keys SET created_at = now() - interval '2 days', expires_at = now() - interval '1 s'
 WHERE user_id = :'ann' AND key = 'k1';
SELECT is(pg_temp.post_contact(:'ann', :'org_a', 'k1', 'POST /contacts {Dee}', 'Dee'), 'fresh|201|Dee',
  'an expired key is absent: another request with it writes');
SELECT is((SELECT body::jsonb ->> 'name' FROM crm.idempotency_keys WHERE user_id = :'ann' AND key = 'k1'), 'Dee',
  'and its answer replaces the expired one');

-- 7. User-level keys (no organization): POST /organizations.
SELECT is(pg_temp.keep_as(:'ann', NULL, $$
  SELECT b.replayed::text || '|' || ((CASE WHEN b.replayed THEN b.body
         ELSE app.idempotency_finish(p_scope => b.scope, p_key => 'o1', p_fingerprint => sha256('org'),
              p_status => 201, p_ttl_secs => 60, p_body => (api.organizations_create(p_name => 'Ann Co'))::text) END)::jsonb ->> 'name')
    FROM app.act_as(app.user_id(), NULL) AS a(role),
         LATERAL app.idempotency_begin(p_after => a.role, p_key => 'o1', p_fingerprint => sha256('org')) AS b$$),
  'false|Ann Co', 'an organization created with a key');
SELECT is((SELECT count(*) FROM crm.user_idempotency_keys WHERE user_id = :'ann' AND key = 'o1'), 1::bigint,
  'its answer is stored as the user''s (the organization it made is not the key''s scope)');
SELECT is(pg_temp.value_as(:'bob', NULL, 'SELECT count(*) FROM crm.user_idempotency_keys'), '0',
  'another user does not see it');

-- 8. A key whose lock another transaction holds (its first request is still
-- running): 409 at once, nothing written; free again once it is released.
CREATE EXTENSION dblink;
-- Another session takes (p_hold) or releases the advisory lock p_lock.
CREATE FUNCTION pg_temp.other_session(p_lock bigint, p_hold boolean) RETURNS boolean
  LANGUAGE plpgsql AS $$
DECLARE
  v boolean;
BEGIN
  IF p_hold THEN
    PERFORM dblink_connect('holder', format('host=127.0.0.1 port=%s dbname=%s user=postgres',
                                            current_setting('port'), current_database()));
    SELECT t.ok INTO v FROM dblink('holder', format('SELECT pg_try_advisory_lock(%s)', p_lock)) AS t(ok boolean);
  ELSE
    SELECT t.ok INTO v FROM dblink('holder', format('SELECT pg_advisory_unlock(%s)', p_lock)) AS t(ok boolean);
    PERFORM dblink_disconnect('holder');
  END IF;
  RETURN v;
END
$$;
SELECT ok(pg_temp.other_session(app.idempotency_lock(:'org_a', :'ann', 'k3'), true),
  'another session holds Ann''s key k3 (its first request is running)');
SELECT is(pg_temp.post_contact(:'ann', :'org_a', 'k3', 'POST /contacts {Eve}', 'Eve'), 'MC409 idempotency_key_in_progress',
  'a key held by a running request: idempotency_key_in_progress');
SELECT is(pg_temp.contacts(:'org_a', 'Eve'), 0::bigint, 'and nothing written');
SELECT ok(pg_temp.other_session(app.idempotency_lock(:'org_a', :'ann', 'k3'), false), 'the other session ends');
SELECT is(pg_temp.post_contact(:'ann', :'org_a', 'k3', 'POST /contacts {Eve}', 'Eve'), 'fresh|201|Eve',
  'released: the request goes through');

-- 9. The cleanup: expired rows of every organization go, live ones stay.
INSERT INTO crm.idempotency_keys (organization_id, user_id, key, fingerprint, status, body, created_at, expires_at)
VALUES (:'org_b', :'zed', 'old', sha256('x'), 201, '{}', now() - interval '2 days', now() - interval '1 day');
INSERT INTO crm.user_idempotency_keys (user_id, key, fingerprint, status, body, created_at, expires_at)
VALUES (:'bob', 'old', sha256('x'), 201, '{}', now() - interval '2 days', now() - interval '1 day');
SELECT is((SELECT string_agg(step || '=' || deleted, ' ' ORDER BY step) FROM private.run_maintenance()),
  'events=0 idempotency_keys=1 trash=0 user_idempotency_keys=1 webhook_deliveries=0', 'run_maintenance deletes the expired keys, and counts them');
SELECT is((SELECT count(*) FROM crm.idempotency_keys WHERE key = 'old')
        + (SELECT count(*) FROM crm.user_idempotency_keys WHERE key = 'old'), 0::bigint, 'they are gone');
SELECT is((SELECT count(*) FROM crm.idempotency_keys), 5::bigint, 'the live keys stay');
SELECT ok(NOT has_function_privilege('minicrm_api', 'private.run_maintenance(int,int)', 'EXECUTE'),
  'the request role may not run the maintenance');
SELECT ok((SELECT prosecdef AND proconfig = ARRAY['search_path=pg_catalog, pg_temp'] FROM pg_proc
            WHERE oid = 'private.run_maintenance(int,int)'::regprocedure),
  'run_maintenance is SECURITY DEFINER with a pinned search_path');

SELECT * FROM finish();
ROLLBACK;
