-- Webhooks (SPEC §13, README "Webhooks"): the role rule, the validation of
-- event patterns, the fan-out of events to the deliveries of matching
-- enabled webhooks (none without one), the worker's claim (SKIP LOCKED,
-- per-endpoint bound, lease), the settlement (backoff schedule, retries up to
-- the maximum, 410 disables), the test delivery and tenancy. Events are
-- inserted directly as the superuser, as only the event triggers write them,
-- and fanned out as the announcer does.
BEGIN;
SELECT plan(60);
\ir pipeline_fixture.psql

\set w_deal 'a0000000-0000-0000-0000-0000000000e1'
\set w_task 'a0000000-0000-0000-0000-0000000000e2'
\set w_off  'a0000000-0000-0000-0000-0000000000e3'
\set w_zed  'b0000000-0000-0000-0000-0000000000e1'
\set sealed '\\x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f'

-- The sql of a create; try_as runs it and rolls it back, exec_as keeps it.
CREATE FUNCTION pg_temp.create_sql(p_id uuid, p_events text[]) RETURNS text
  LANGUAGE sql AS $$
    SELECT format('SELECT api.webhooks_create(%L, %L, %L, NULL, %L)',
                          p_id, 'https://hooks.example.com/' || p_id, p_events, '\x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f'::bytea)
  $$;
CREATE FUNCTION pg_temp.create_as(p_user uuid, p_org uuid, p_id uuid, p_events text[]) RETURNS text
  LANGUAGE sql AS $$ SELECT pg_temp.try_as(p_user, p_org, pg_temp.create_sql(p_id, p_events)) $$;
CREATE FUNCTION pg_temp.keep_as(p_user uuid, p_org uuid, p_id uuid, p_events text[]) RETURNS bigint
  LANGUAGE sql AS $$ SELECT pg_temp.exec_as(p_user, p_org, pg_temp.create_sql(p_id, p_events)) $$;
-- The test's events are the superuser's, of one long-ended transaction
-- (tx 21; the fixture's, written by the triggers, are this transaction's),
-- and their fan-out is the window of that transaction alone (what the
-- announcer does for the transactions that ended since its last round,
-- 61_feed.sql).
CREATE FUNCTION pg_temp.fan_out() RETURNS bigint
  LANGUAGE sql AS $$ SELECT private.webhooks_fan_out('21', '22') $$;
-- An event, fanned out with the rest of its transaction's.
CREATE FUNCTION pg_temp.event(p_org uuid, p_type text, p_fan_out boolean DEFAULT true) RETURNS uuid
  LANGUAGE plpgsql AS $$
DECLARE
  v uuid;
BEGIN
  INSERT INTO crm.events (organization_id, tx, type, resource_type, resource_id, data)
  VALUES (p_org, '21', p_type, split_part(p_type, '.', 1), gen_random_uuid(), '{"object": {}, "previous": null}')
  RETURNING id INTO v;
  IF p_fan_out THEN
    PERFORM pg_temp.fan_out();
  END IF;
  RETURN v;
END
$$;
CREATE FUNCTION pg_temp.deliveries(p_webhook uuid) RETURNS bigint
  LANGUAGE sql AS $$ SELECT count(*) FROM crm.webhook_deliveries WHERE webhook_id = p_webhook $$;

-- Roles ----------------------------------------------------------------------------
SELECT is(pg_temp.create_as(:'mia', :'org_a', :'w_deal', '{deal.*}'), 'MC403 role_forbidden', 'a manager may not create a webhook');
SELECT is(pg_temp.create_as(:'max', :'org_a', :'w_deal', '{deal.*}'), 'MC403 role_forbidden', 'nor a member');
SELECT is(pg_temp.try_as(:'max', :'org_a', 'SELECT api.webhooks_list(1, 20)'), 'MC403 role_forbidden', 'a member may not read them either');
SELECT is(pg_temp.create_as(:'adam', :'org_a', gen_random_uuid(), '{deal.*}'), 'ok', 'an admin may create one');

-- Validation -----------------------------------------------------------------------
SELECT is(pg_temp.create_as(:'olga', :'org_a', gen_random_uuid(), '{deal.exploded}'), 'MC400 webhook_events_invalid', 'an unknown type is refused');
SELECT is(pg_temp.create_as(:'olga', :'org_a', gen_random_uuid(), '{invoice.*}'), 'MC400 webhook_events_invalid', 'an unknown resource too');
SELECT is(pg_temp.create_as(:'olga', :'org_a', gen_random_uuid(), '{*}'), 'MC400 webhook_events_invalid', 'and a bare *');
SELECT is(pg_temp.create_as(:'olga', :'org_a', gen_random_uuid(), '{}'), '23514 webhooks_events_invalid', 'and no event at all');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.webhooks_create(%L, %L, %L, %L, %L)', gen_random_uuid(),
          'https://hooks.example.com/', '{deal.*}', repeat('x', 501), :'sealed'::bytea)), '23514 webhooks_description_invalid', 'a description over 500 characters');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.webhooks_create(%L, %L, %L, NULL, %L)', gen_random_uuid(),
          'ftp://hooks.example.com/', '{deal.*}', :'sealed'::bytea)), '23514 webhooks_url_invalid', 'a url that is not http(s)');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.webhooks_create(%L, %L, %L, NULL, %L)', gen_random_uuid(),
          'https://hooks.example.com/' || repeat('x', 2000), '{deal.*}', :'sealed'::bytea)), '23514 webhooks_url_invalid', 'a url over 2000 characters');

SELECT is(pg_temp.keep_as(:'olga', :'org_a', :'w_deal', '{deal.*,contact.created,deal.*}'), 1::bigint, 'Olga subscribes to deal.* and contact.created');
SELECT is((SELECT events FROM crm.webhooks WHERE id = :'w_deal'), '{contact.created,deal.*}'::text[], 'patterns are kept sorted, each once');
SELECT is(pg_temp.keep_as(:'olga', :'org_a', :'w_task', '{task.created}'), 1::bigint, 'and to task.created');
SELECT is(pg_temp.keep_as(:'olga', :'org_a', :'w_off', '{deal.*}'), 1::bigint, 'and one she will disable');
SELECT is(pg_temp.exec_as(:'olga', :'org_a', format('SELECT api.webhooks_update(%L, %L, NULL, NULL, NULL, false)', :'w_off', '{enabled}')), 1::bigint, 'disabled');
SELECT is((SELECT disabled_reason || ' ' || (disabled_at IS NOT NULL) FROM crm.webhooks WHERE id = :'w_off'), 'disabled_by_user true',
          'a user''s disabling says so, with when');
SELECT is(pg_temp.keep_as(:'zed', :'org_b', :'w_zed', '{deal.*}'), 1::bigint, 'Zed subscribes in B');

-- Fan-out ---------------------------------------------------------------------------
-- Writing an event writes no delivery: the announcer writes them after the
-- commit (V27 says why).
SELECT pg_temp.event(:'org_a', 'deal.updated', false) AS e0 \gset
SELECT is((SELECT count(*) FROM crm.webhook_deliveries WHERE event_id = :'e0'), 0::bigint,
          'an event''s write writes no delivery');
SELECT is(pg_temp.fan_out(), 1::bigint, 'its fan-out writes one to the deal.* webhook');
SELECT is(pg_temp.fan_out(), 0::bigint, 'and a second fan-out of the same window none again (at most once per event and webhook)');
DELETE FROM crm.webhook_deliveries WHERE event_id = :'e0';
DELETE FROM crm.events WHERE id = :'e0';
SELECT pg_temp.event(:'org_a', 'deal.updated') AS e1 \gset
SELECT is(pg_temp.deliveries(:'w_deal'), 1::bigint, 'deal.updated → one delivery to the deal.* webhook');
SELECT is(pg_temp.deliveries(:'w_task') + pg_temp.deliveries(:'w_off') + pg_temp.deliveries(:'w_zed'), 0::bigint,
          'none to the task webhook, the disabled one or another organization''s');
SELECT is((SELECT body FROM crm.webhook_deliveries WHERE event_id = :'e1'),
          (SELECT app.event_json(e) FROM crm.events e WHERE e.id = :'e1'), 'the body is the event''s JSON (app.event_json)');
SELECT pg_temp.event(:'org_a', 'contact.created') AS e2 \gset
SELECT pg_temp.event(:'org_a', 'contact.updated') AS e3 \gset
SELECT is(pg_temp.deliveries(:'w_deal'), 2::bigint, 'contact.created is named exactly; contact.updated is not');
INSERT INTO crm.events (organization_id, tx, type, resource_type, resource_id, data)
SELECT :'org_a', '21', 'task.created', 'task', gen_random_uuid(), '{}' FROM generate_series(1, 3);
SELECT is(pg_temp.fan_out(), 3::bigint, 'three task.created: three deliveries');
SELECT is(pg_temp.deliveries(:'w_task'), 3::bigint, '… to the task webhook');
-- A change that began before the webhook existed (occurred_at is its
-- transaction's start) is not sent to it.
INSERT INTO crm.events (organization_id, tx, type, resource_type, resource_id, data, occurred_at)
VALUES (:'org_a', '21', 'task.created', 'task', gen_random_uuid(), '{}', now() - interval '1 second');
SELECT is(pg_temp.fan_out(), 0::bigint, 'a change that began before the webhook was created gets no delivery');
SELECT pg_temp.event(:'org_b', 'member.added') AS e4 \gset
SELECT is((SELECT count(*) FROM crm.webhook_deliveries WHERE event_id = :'e4'), 0::bigint,
          'an organization whose webhooks do not match gets none');
SELECT is(pg_temp.try_as(:'olga', :'org_a', 'INSERT INTO crm.webhook_deliveries (organization_id, webhook_id, event_id, event_type, body)
          VALUES (app.org_id(), ''a0000000-0000-0000-0000-0000000000e1'', gen_random_uuid(), ''deal.updated'', ''{}'')'),
          '42501', 'the request role may not write deliveries itself');

-- Tenancy -----------------------------------------------------------------------------
SELECT is(pg_temp.value_as(:'zed', :'org_b', 'SELECT count(*) FROM crm.webhooks')::int, 1, 'Zed sees only B''s webhook');
SELECT is(pg_temp.value_as(:'zed', :'org_b', 'SELECT count(*) FROM crm.webhook_deliveries')::int, 0, 'and none of A''s deliveries');
SELECT is(pg_temp.try_as(:'zed', :'org_b', format('SELECT api.webhooks_get(%L)', :'w_deal')), 'MC404 webhook_not_found', 'A''s webhook is 404 in B');
SELECT is(pg_temp.try_as(:'zed', :'org_b', format('SELECT api.webhooks_test(%L)', :'w_deal')), 'MC404 webhook_not_found', 'and cannot be tested from B');
SELECT ok(pg_temp.value_as(:'olga', :'org_a', 'SELECT api.webhooks_get(''a0000000-0000-0000-0000-0000000000e1'')::text') NOT LIKE '%secret%',
          'GET shows no secret, sealed or not');

-- Claims --------------------------------------------------------------------------------
-- Only what is due: everything so far. Per endpoint at most 2 in flight.
SELECT is((SELECT count(*) FROM private.webhook_deliveries_claim(10, 2, 60000)), 4::bigint,
          'a claim takes at most 2 per endpoint (2 of deal.*, 2 of the 3 task.created)');
SELECT is((SELECT count(*) FROM private.webhook_deliveries_claim(10, 2, 60000)), 0::bigint,
          'the endpoints are full: the next claim takes nothing');
SELECT is((SELECT count(*) FROM private.webhook_deliveries_claim(10, 3, 60000)), 1::bigint,
          'with room for 3 it takes the last task delivery');
-- A lease that ran out: the claim comes due again, and the old claimer's
-- settlement no longer counts.
SELECT claim_id AS old_claim, id AS d1 FROM crm.webhook_deliveries WHERE event_id = :'e1' \gset
UPDATE crm.webhook_deliveries SET next_attempt_at = now() - interval '1 second' WHERE event_id = :'e1';
SELECT is((SELECT count(*) FROM private.webhook_deliveries_claim(10, 2, 60000) WHERE event_id = :'e1'), 1::bigint,
          'an expired lease is claimed again');
SELECT is(private.webhook_delivery_settle(:'org_a', :'d1', :'old_claim', 200, NULL, 5, 12, 1), NULL,
          'the first claimer''s late settlement is ignored');
SELECT claim_id AS claim FROM crm.webhook_deliveries WHERE id = :'d1' \gset

-- The claim's read of an endpoint is a range of webhook_deliveries_pending
-- in next_attempt_at order, so its cost does not grow with the endpoint's
-- backlog (V28; sequential scans off: this test's tables are small).
SET LOCAL enable_seqscan = off;
SELECT matches(pg_temp.explain(format($$SELECT d.id FROM crm.webhook_deliveries d
                 WHERE d.organization_id = %L AND d.webhook_id = %L AND d.status = 'pending' AND d.next_attempt_at <= now()
                 ORDER BY d.next_attempt_at LIMIT 8 FOR UPDATE SKIP LOCKED$$, :'org_a', :'w_task')),
               '"Index Name": "webhook_deliveries_pending"', 'the claim reads an endpoint''s due deliveries from webhook_deliveries_pending');
SELECT ok(pg_temp.explain(format($$SELECT d.id FROM crm.webhook_deliveries d
                 WHERE d.organization_id = %L AND d.webhook_id = %L AND d.status = 'pending' AND d.next_attempt_at <= now()
                 ORDER BY d.next_attempt_at LIMIT 8 FOR UPDATE SKIP LOCKED$$, :'org_a', :'w_task')) NOT LIKE '%"Node Type": "Sort"%',
          '… in order, without a sort');
SET LOCAL enable_seqscan = on;

-- Settlement and the backoff ------------------------------------------------------------
SELECT is(private.webhook_delivery_settle(:'org_a', :'d1', :'claim', 500, 'HTTP 500', 12, 12, 1), 'pending', 'a 500 is retried');
SELECT ok((SELECT next_attempt_at BETWEEN now() + interval '4.9 seconds' AND now() + interval '5.1 seconds' AND claim_id IS NULL
             AND attempts = 1 AND last_status_code = 500 FROM crm.webhook_deliveries WHERE id = :'d1'),
          'after the first failure: due in 5 s, unclaimed, attempt 1 recorded');
SELECT is(ARRAY(SELECT app.webhook_backoff(n) FROM generate_series(1, 9) n),
          ARRAY[interval '5 s', '30 s', '2 min', '10 min', '30 min', '1 h', '2 h', '2 h', '2 h'], 'the schedule of SPEC §13');
SELECT is(app.webhook_backoff(2, 0.01), interval '0.3 s', 'scaled for tests');
-- The last allowed attempt fails: failed, not retried.
UPDATE crm.webhook_deliveries SET attempts = 11, next_attempt_at = now() WHERE id = :'d1';
SELECT claim_id AS claim FROM private.webhook_deliveries_claim(10, 2, 60000) WHERE delivery_id = :'d1' \gset
SELECT is(private.webhook_delivery_settle(:'org_a', :'d1', :'claim', NULL, 'timed out', 10000, 12, 1), 'failed', 'the 12th failure gives up');
SELECT is((SELECT count(*) FROM crm.webhook_attempts WHERE delivery_id = :'d1'), 2::bigint, 'every attempt is recorded');

-- 410 disables the endpoint at once; its other deliveries wait.
SELECT d.id AS d2, d.claim_id AS claim FROM crm.webhook_deliveries d WHERE event_id = :'e2' \gset
SELECT is(private.webhook_delivery_settle(:'org_a', :'d2', :'claim', 410, 'HTTP 410 Gone', 3, 12, 1), 'failed', 'a 410 fails the delivery');
SELECT is((SELECT enabled::text || ' ' || disabled_reason FROM crm.webhooks WHERE id = :'w_deal'), 'false endpoint_gone', 'and disables the endpoint');
SELECT pg_temp.event(:'org_a', 'deal.created') AS e5 \gset
SELECT is((SELECT count(*) FROM crm.webhook_deliveries WHERE event_id = :'e5'), 0::bigint, 'a disabled endpoint gets no new delivery');
SELECT is(pg_temp.exec_as(:'olga', :'org_a', format('SELECT api.webhooks_update(%L, %L, NULL, NULL, NULL, true)', :'w_deal', '{enabled}')), 1::bigint, 'enabled again');
SELECT is((SELECT disabled_reason FROM crm.webhooks WHERE id = :'w_deal'), NULL, 're-enabling clears the reason');

-- The announcer's round fans out its window: an event of an ended
-- transaction (tx 30) after the position.
INSERT INTO crm.events (organization_id, tx, type, resource_type, resource_id, data)
VALUES (:'org_a', '30', 'deal.created', 'deal', gen_random_uuid(), '{}') RETURNING id AS e6 \gset
UPDATE private.events_announcer SET position = '30';
SELECT cmp_ok((SELECT delivered FROM private.events_announce(p_first => false)), '>=', 1::bigint,
              'the announcer''s round writes the deliveries of its window …');
SELECT is((SELECT count(*) FROM crm.webhook_deliveries WHERE event_id = :'e6' AND webhook_id = :'w_deal'), 1::bigint,
          '… here the deal.* webhook''s');
SELECT is((SELECT position FROM private.events_announcer), pg_snapshot_xmin(pg_current_snapshot()),
          '… and moves its position past them');

-- The test delivery: to this endpoint only, in no feed.
SELECT is(pg_temp.value_as(:'olga', :'org_a', format('SELECT api.webhooks_test(%L) ->> %L', :'w_task', 'type')), 'webhook.test', 'a test delivery is queued');
SELECT is((SELECT count(*) FROM crm.events WHERE type = 'webhook.test'), 0::bigint, 'it is no event of the feed');

-- The retention: finished deliveries older than EVENT_RETENTION_DAYS go
-- (their attempts with them); pending ones stay whatever their age.
UPDATE crm.webhook_deliveries SET created_at = now() - interval '31 days' WHERE organization_id = :'org_a';
SELECT count(*) AS finished FROM crm.webhook_deliveries WHERE organization_id = :'org_a' AND status <> 'pending' \gset
SELECT is((SELECT deleted FROM private.run_maintenance(30, 30) WHERE step = 'webhook_deliveries'),
          :'finished'::bigint, 'the maintenance deletes the finished deliveries older than the retention');
SELECT ok((SELECT count(*) FROM crm.webhook_deliveries WHERE organization_id = :'org_a') > 0
          AND NOT EXISTS (SELECT FROM crm.webhook_deliveries WHERE organization_id = :'org_a' AND status <> 'pending')
          AND NOT EXISTS (SELECT FROM crm.webhook_attempts a WHERE a.delivery_id = :'d1'),
          'pending deliveries stay; the attempts of deleted ones go with them');

SELECT * FROM finish();
ROLLBACK;
