-- The change feed (SPEC §13, sql/functions/61_feed.sql): api.events_list in
-- (tx, seq) order below the visibility horizon, its cursor positions, the
-- types filter and its bounded scan, and the notification trigger.
--
-- Events are inserted by the superuser with explicit, long-ended
-- transaction ids (the events engineer's triggers write them for real);
-- events of this test's own transaction are above the horizon, as any
-- running transaction's are.
BEGIN;
SELECT plan(44);
\ir pipeline_fixture.psql

-- api.events_list as p_user in p_org (the request role under RLS), back to
-- the superuser after.
CREATE FUNCTION pg_temp.feed(p_user uuid, p_org uuid, p_args text) RETURNS jsonb
  LANGUAGE plpgsql AS $$
DECLARE
  v jsonb;
BEGIN
  PERFORM app.act_as(p_user, p_org);
  EXECUTE 'SELECT api.events_list(' || p_args || ')' INTO v;
  PERFORM set_config('role', 'none', true);
  PERFORM set_config('app.user_id', '', true);
  PERFORM set_config('app.org_id', '', true);
  PERFORM set_config('app.role', '', true);
  RETURN v;
END
$$;
-- The resource ids of a page's items, in order.
CREATE FUNCTION pg_temp.ids(p_page jsonb) RETURNS text[] LANGUAGE sql AS $$
  SELECT coalesce(array_agg(i ->> 'resource_id' ORDER BY n), '{}')
    FROM jsonb_array_elements(p_page -> 'items') WITH ORDINALITY AS x (i, n)
$$;
-- The named arguments of the page after p_page.
CREATE FUNCTION pg_temp.after(p_page jsonb) RETURNS text LANGUAGE sql AS $$
  SELECT format('p_after_tx => %L, p_after_seq => %s', p_page -> 'next' ->> 0, p_page -> 'next' ->> 1)
$$;

-- Organization A: six events in three ended transactions, inserted out of
-- tx order (seq is the insertion order); B: one.
CREATE FUNCTION pg_temp.ev(p_org uuid, p_tx int, p_type text, p_n int) RETURNS void LANGUAGE sql AS $$
  INSERT INTO crm.events (organization_id, tx, type, resource_type, resource_id, data, occurred_at)
  VALUES (p_org, p_tx::text::xid8, p_type, split_part(p_type, '.', 1),
          ('00000000-0000-0000-0000-' || lpad(p_n::text, 12, '0'))::uuid, '{}', now() - interval '1 hour');
$$;
SELECT pg_temp.ev(:'org_a', 12, 'deal.updated', 3);
SELECT pg_temp.ev(:'org_a', 11, 'contact.created', 1);
SELECT pg_temp.ev(:'org_a', 11, 'deal.created', 2);
SELECT pg_temp.ev(:'org_b', 11, 'deal.created', 99);
SELECT pg_temp.ev(:'org_a', 12, 'task.created', 4);
SELECT pg_temp.ev(:'org_a', 13, 'member.added', 5);
SELECT pg_temp.ev(:'org_a', 13, 'deal.deleted', 6);
-- And one of this (running) transaction: above the horizon.
INSERT INTO crm.events (organization_id, type, resource_type, resource_id, data)
VALUES (:'org_a', 'deal.updated', 'deal', '00000000-0000-0000-0000-000000000007', '{}');

CREATE TEMP TABLE page AS SELECT pg_temp.feed(:'max', :'org_a', 'p_limit => 100') AS p;
SELECT is(pg_temp.ids(p),
          ARRAY['00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000002',
                '00000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-000000000004',
                '00000000-0000-0000-0000-000000000005', '00000000-0000-0000-0000-000000000006'],
          'a member reads the organization''s ended transactions'' events in (tx, seq) order, not B''s, not the running one''s')
  FROM page;
SELECT is(p -> 'items' -> 0, (SELECT app.event_json(e) FROM crm.events e WHERE e.resource_id = '00000000-0000-0000-0000-000000000001'),
          'items are app.event_json') FROM page;
SELECT is(p -> 'next' ->> 0, pg_snapshot_xmin(pg_current_snapshot())::text, 'a page short of its limit: next is the horizon')
  FROM page;
SELECT is((p -> 'next' ->> 1)::int, 0, '… at seq 0 (every event of the horizon''s transaction is after it)') FROM page;
SELECT ok(abs((p -> 'next' ->> 2)::bigint - app.epoch_ms(now())) < 1000, '… and its time is now') FROM page;
SELECT ok((p ->> 'held')::boolean, 'held: a committed-or-running event waits above the horizon (here: this transaction''s, visible to itself)') FROM page;
SELECT is(jsonb_array_length(p -> 'positions'), 6, 'one position per item') FROM page;
SELECT is(p -> 'positions' -> 0 ->> 0, '11', 'a position names its event''s transaction') FROM page;
SELECT is((p -> 'positions' -> 0 ->> 2)::bigint, app.epoch_ms(now() - interval '1 hour'),
          '… and its time is the event''s occurred_at') FROM page;

-- Pages: limit 2, following next.
CREATE TEMP TABLE p1 AS SELECT pg_temp.feed(:'olga', :'org_a', 'p_limit => 2') AS p;
SELECT is(pg_temp.ids(p), ARRAY['00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000002'], 'page 1')
  FROM p1;
SELECT is(p -> 'next', p -> 'positions' -> 1, 'a full page: next is after its last item') FROM p1;
CREATE TEMP TABLE p2 AS SELECT pg_temp.feed(:'olga', :'org_a', pg_temp.after(p) || ', p_limit => 2') AS p FROM p1;
SELECT is(pg_temp.ids(p), ARRAY['00000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-000000000004'],
          'page 2 continues within transaction 12 (seq)') FROM p2;
CREATE TEMP TABLE p3 AS SELECT pg_temp.feed(:'olga', :'org_a', pg_temp.after(p) || ', p_limit => 2') AS p FROM p2;
SELECT is(pg_temp.ids(p), ARRAY['00000000-0000-0000-0000-000000000005', '00000000-0000-0000-0000-000000000006'], 'page 3')
  FROM p3;
CREATE TEMP TABLE p4 AS SELECT pg_temp.feed(:'olga', :'org_a', pg_temp.after(p) || ', p_limit => 2') AS p FROM p3;
SELECT is(pg_temp.ids(p), '{}'::text[], 'then nothing') FROM p4;
SELECT is(p -> 'next' ->> 0, pg_snapshot_xmin(pg_current_snapshot())::text, '… and next is the horizon, for polling') FROM p4;
SELECT is(pg_temp.ids(pg_temp.feed(:'olga', :'org_a', pg_temp.after(p))), '{}'::text[], 'polling at the horizon: nothing') FROM p4;

-- Types: exact types and <resource>.* patterns.
SELECT is(pg_temp.ids(pg_temp.feed(:'mia', :'org_a', $$p_types => '{deal.*,task.created}'$$)),
          ARRAY['00000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000003',
                '00000000-0000-0000-0000-000000000004', '00000000-0000-0000-0000-000000000006'],
          'types: deal.* and task.created');
SELECT is(app.event_types_matching('{member.*}'), ARRAY['member.added', 'member.updated', 'member.removed'], 'a pattern is its types');
SELECT is(app.event_types_matching('{}'), NULL, 'no types: no filter');
SELECT throws_ok($$SELECT app.event_types_matching('{deal.*,deal.merged}')$$, 'MC400',
                 '"deal.merged" is not an event type or pattern: use a type such as deal.updated or a pattern such as deal.*',
                 'an unknown type: 400 event_type_unknown');
SELECT throws_ok($$SELECT app.event_types_matching('{bogus.*}')$$, 'MC400', NULL, 'a pattern of no resource');
SELECT throws_ok($$SELECT app.event_types_matching('{*}')$$, 'MC400', NULL, 'a bare *');
SELECT throws_ok(format('SELECT pg_temp.feed(%L, %L, %L)', :'max', :'org_a', 'p_limit => 501'), 'MC400',
                 'limit must be between 1 and 500', 'limit over 500');

-- A sparse type does not make a read walk the whole history: it stops after
-- app.feed_scan_limit() rows and its next moves past them.
INSERT INTO crm.events (organization_id, tx, type, resource_type, resource_id, data)
SELECT :'org_a', '14'::xid8, 'contact.updated', 'contact', gen_random_uuid(), '{}' FROM generate_series(1, app.feed_scan_limit() + 10);
CREATE TEMP TABLE sparse AS SELECT pg_temp.feed(:'max', :'org_a', pg_temp.after(p) || $$, p_types => '{pipeline.*}'$$) AS p FROM p3;
SELECT is(pg_temp.ids(p), '{}'::text[], 'a sparse type: no items in the rows looked at') FROM sparse;
SELECT is((p -> 'next' ->> 1)::bigint,
          (SELECT seq FROM crm.events WHERE tx = '14' ORDER BY seq OFFSET app.feed_scan_limit() - 1 LIMIT 1),
          '… and next is after the last row looked at, not at the cursor nor the horizon') FROM sparse;

-- The read is an index range scan of events_pkey under RLS, with the
-- context the server sets.
CREATE FUNCTION pg_temp.plan_as(p_sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  v text;
BEGIN
  PERFORM app.act_as('a0000000-0000-0000-0000-000000000004', 'a0000000-0000-0000-0000-000000000000');
  EXECUTE 'EXPLAIN (FORMAT JSON) ' || p_sql INTO v;
  PERFORM set_config('role', 'none', true);
  PERFORM set_config('app.user_id', '', true);
  PERFORM set_config('app.org_id', '', true);
  PERFORM set_config('app.role', '', true);
  RETURN v;
END
$$;
ANALYZE crm.events;
SELECT matches(pg_temp.plan_as($$SELECT * FROM crm.events ev WHERE ev.organization_id = (SELECT app.org_id())
                                  AND (ev.tx, ev.seq) > ('12'::xid8, 4::bigint) AND ev.tx < pg_snapshot_xmin(pg_current_snapshot())
                                ORDER BY ev.tx, ev.seq LIMIT 100$$),
               '"Index Name": "events_pkey".*"Index Cond": "\(\(organization_id = \$[0-9]+\) AND \(ROW\(tx, seq\) > ROW',
               'the feed reads a range of events_pkey under RLS (organization, then position)');

-- The same under the generic plan PL/pgSQL caches after a few calls (the
-- server's pooled connections run the function many times): both of the
-- function's reads stay index range scans. (EXISTS for "held" took a
-- sequential scan there and read the whole table on every call.)
SET LOCAL plan_cache_mode = force_generic_plan;
PREPARE feed_read(uuid, xid8, bigint, xid8) AS
  SELECT * FROM crm.events ev WHERE ev.organization_id = $1 AND (ev.tx, ev.seq) > ($2, $3) AND ev.tx < $4
   ORDER BY ev.tx, ev.seq LIMIT app.feed_scan_limit();
PREPARE feed_held(uuid, xid8) AS
  SELECT ev.tx FROM crm.events ev WHERE ev.organization_id = $1 AND ev.tx >= $2 ORDER BY ev.tx LIMIT 1;
SELECT matches(pg_temp.plan_as(format('EXECUTE feed_read(%L, %L, 0, pg_snapshot_xmin(pg_current_snapshot()))', :'org_a', '12')),
               '"Index Name": "events_pkey"', 'generic plan: the page read is a range of events_pkey');
SELECT matches(pg_temp.plan_as(format('EXECUTE feed_held(%L, pg_snapshot_xmin(pg_current_snapshot()))', :'org_a')),
               '"Index Name": "events_pkey"', 'generic plan: the held probe too');
SET LOCAL plan_cache_mode = auto;

-- p_from_now: the horizon, no events (where a stream without a cursor starts).
CREATE TEMP TABLE now_page AS SELECT pg_temp.feed(:'max', :'org_a', 'p_from_now => true') AS p;
SELECT is((pg_temp.ids(p), p -> 'next' ->> 0, (p -> 'next' ->> 1)::int),
          ('{}'::text[], pg_snapshot_xmin(pg_current_snapshot())::text, 0), 'p_from_now: no events, next is the horizon')
  FROM now_page;

-- The announcer (private.events_announce): what it notifies for, between
-- two rounds, is each (organization, resource) of the events of the
-- transactions from its position (private.events_announcer) up to the
-- horizon now (pgTAP cannot see the notifications themselves, sent at
-- commit: tests/api/events.rs and instances.rs receive them). Only A's and
-- B's pairs are compared: other test files may have committed events.
CREATE FUNCTION pg_temp.announced(p_from xid8) RETURNS text[] LANGUAGE sql AS $$
  UPDATE private.events_announcer SET position = p_from;
  SELECT ARRAY(SELECT a FROM unnest((SELECT announced FROM private.events_announce(p_first => false))) a
                WHERE a LIKE 'a0000000-0000-0000-0000-000000000000:%' OR a LIKE 'b0000000-0000-0000-0000-000000000000:%'
                ORDER BY a)
$$;
SELECT is(pg_temp.announced('11'),
          ARRAY[:'org_a' || ':contact', :'org_a' || ':deal', :'org_a' || ':member', :'org_a' || ':task', :'org_b' || ':deal'],
          'events_announce: one pair per organization and resource of the ended transactions, not the running one''s');
SELECT is((SELECT position FROM private.events_announcer), pg_snapshot_xmin(pg_current_snapshot()),
          '… and its position moves to the horizon, where the next round starts');
SELECT is(pg_temp.announced('12'), ARRAY[:'org_a' || ':contact', :'org_a' || ':deal', :'org_a' || ':member', :'org_a' || ':task'],
          '… from the position''s transaction on (inclusive)');
SELECT is(pg_temp.announced('14'), ARRAY[:'org_a' || ':contact'], '… up to the last ended one');
SELECT is(pg_temp.announced('15'), '{}'::text[], '… and none of a transaction not yet ended (this one''s, above the horizon)');
SELECT matches(pg_temp.explain($$SELECT DISTINCT organization_id FROM crm.events e WHERE e.tx >= '13' AND e.tx < '14' AND e.seq > 0$$),
               '"Index Name": "events_by_tx"', 'the announcer''s read is a range of events_by_tx');
SELECT is((SELECT (horizon, announced, delivered)::text FROM private.events_announce(p_first => false)),
          (pg_snapshot_xmin(pg_current_snapshot()), NULL::text[], 0)::text, 'called again at the horizon: nothing, same horizon');
-- A window without events (made so: the superuser deletes, for this
-- transaction only, those other test files may have committed there).
DELETE FROM crm.events WHERE tx >= '15' AND tx < pg_snapshot_xmin(pg_current_snapshot());
UPDATE private.events_announcer SET position = '15';
SELECT is((SELECT (horizon, announced, delivered)::text FROM private.events_announce(p_first => false)),
          (pg_snapshot_xmin(pg_current_snapshot()), NULL::text[], 0)::text, 'a window without events: nothing announced …');
SELECT is((SELECT position FROM private.events_announcer), '15'::xid8,
          '… and the position stays (a round with nothing to do writes nothing, so an idle database stays idle)');
SELECT is((SELECT (horizon, announced)::text FROM private.events_announce(p_first => true)),
          (pg_snapshot_xmin(pg_current_snapshot()), NULL::text[])::text,
          'a new announcer (p_first): the same round, and "anything may have changed" (*) besides');
-- A round takes about 10,000 events at most (all of one transaction's, if
-- it has more): 10,000 events in transaction 16 and one in 17 are two.
INSERT INTO crm.events (organization_id, tx, type, resource_type, resource_id, data)
SELECT :'org_a', '16', 'deal.updated', 'deal', gen_random_uuid(), '{}' FROM generate_series(1, 10000);
SELECT pg_temp.ev(:'org_b', 17, 'task.created', 98);
UPDATE private.events_announcer SET position = '16';
SELECT is((SELECT (horizon, announced)::text FROM private.events_announce(p_first => false)),
          ('17'::xid8, ARRAY[:'org_a' || ':deal'])::text, 'a round of 10,000 events or more ends at the next transaction …');
SELECT is(pg_temp.announced((SELECT position FROM private.events_announcer)), ARRAY[:'org_b' || ':task'],
          '… where the next round goes on');
SELECT ok(NOT has_function_privilege('minicrm_api', 'private.events_announce(boolean)', 'EXECUTE')
          AND NOT has_function_privilege('minicrm_api', 'private.webhooks_fan_out(xid8, xid8)', 'EXECUTE'),
          'the request role can call neither the announcer nor its fan-out');
-- The announcer's read policy is its owner's: a member with the setting
-- still reads only its own organization's events.
SELECT is(pg_temp.value_as_with(:'max', :'org_a', 'app.events_announce_after', '0',
                                format('SELECT count(*) FROM crm.events e WHERE e.organization_id = %L', :'org_b')), '0',
          'app.events_announce_after shows a member no other organization''s events');
-- No trigger notifies: a NOTIFY in a writing transaction serializes the
-- commits of all of them (61_feed.sql says why).
SELECT is((SELECT array_agg(t.tgrelid::regclass || '.' || t.tgname) FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
            WHERE NOT t.tgisinternal AND p.prosrc ~* 'pg_notify|\mnotify\M'),
          NULL, 'no trigger sends a notification');

SELECT * FROM finish();
ROLLBACK;
