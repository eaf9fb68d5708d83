-- The change feed (SPEC §13): GET /events and the live stream read
-- crm.events in (tx, seq) order below the visibility horizon; every
-- instance's listener hears the notifications this file's trigger sends.

-- The event types of SPEC §13, the only ones a `types` filter (of the feed,
-- the stream or a webhook) may name.
CREATE OR REPLACE FUNCTION app.event_types() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$
    SELECT ARRAY['contact.created', 'contact.updated', 'contact.deleted', 'contact.restored',
                 'deal.created', 'deal.updated', 'deal.deleted', 'deal.restored',
                 'task.created', 'task.updated', 'task.deleted', 'task.restored',
                 'activity.created',
                 'pipeline.created', 'pipeline.updated', 'pipeline.deleted',
                 'member.added', 'member.updated', 'member.removed']
  $$;

-- A `types` filter as exact types: each item is a type of app.event_types()
-- or `<resource>.*` for a resource that has one; anything else is 400
-- event_type_unknown (naming the item). NULL or empty: no filter (NULL).
CREATE OR REPLACE FUNCTION app.event_types_matching(p_types text[]) RETURNS text[]
  LANGUAGE plpgsql IMMUTABLE
  AS $$
DECLARE
  v_item text;
  v_out text[] := '{}'::text[];
BEGIN
  IF p_types IS NULL OR cardinality(p_types) = 0 THEN
    RETURN NULL;
  END IF;
  FOREACH v_item IN ARRAY p_types LOOP
    IF v_item = ANY (app.event_types()) THEN
      v_out := v_out || v_item;
    ELSIF v_item LIKE '%.*' AND EXISTS (SELECT 1 FROM unnest(app.event_types()) t
                                          WHERE t LIKE left(v_item, -1) || '%') THEN
      v_out := v_out || ARRAY(SELECT t FROM unnest(app.event_types()) t WHERE t LIKE left(v_item, -1) || '%');
    ELSE
      PERFORM app.fail('MC400', 'event_type_unknown',
        format('%s is not an event type or pattern: use a type such as deal.updated or a pattern such as deal.*',
               coalesce(to_json(v_item)::text, 'null')), 'types');
    END IF;
  END LOOP;
  RETURN v_out;
END
$$;

-- Rows a filtered read looks at, at most, per call: with a sparse type the
-- read stops there and its cursor moves past what it looked at, so no call
-- walks the organization's whole history.
CREATE OR REPLACE FUNCTION app.feed_scan_limit() RETURNS int
  LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 5000 $$;

-- A time as Unix milliseconds (the time a cursor carries).
CREATE OR REPLACE FUNCTION app.epoch_ms(p_at timestamptz) RETURNS bigint
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT floor(extract(epoch FROM p_at) * 1000)::bigint $$;

-- One page of the feed after the position (p_after_tx, p_after_seq) (NULL:
-- from the oldest event kept; p_from_now: from the horizon, so no events and
-- the position of "now", where a live stream without a cursor starts), oldest
-- first, as
--   {"items": [app.event_json…],
--    "positions": [[tx, seq, at], …] (where each item ends: its cursor),
--    "next": [tx, seq, at] (the cursor of the next call),
--    "held": bool}
-- tx travels as text (xid8), at is Unix milliseconds: the time from which the
-- position must still be retained. The server signs positions into cursors.
--
-- Only transactions below the horizon, pg_snapshot_xmin(pg_current_snapshot()),
-- are read: every transaction below it has ended, so no event can appear
-- below it any more, and a position that only moves forward under it passes
-- every committed event exactly once.
--
-- next: after the last item of a full page; after the last row looked at
-- when app.feed_scan_limit() rows were looked at; else everything below the
-- horizon has been read and next is the horizon itself, (horizon, 0) (seq
-- starts at 1), at now(). An idle follower's cursor thus stays at the
-- horizon and fresh, however long nothing happens. The `at` of a position
-- inside the history is the occurred_at of the event it is after: the events
-- after it are about that old or younger, so the server refuses the cursor
-- (410 cursor_expired) once the retention may have deleted them.
--
-- held: committed events of the organization are waiting above the horizon
-- (an older transaction is still running); the stream reads again soon
-- rather than waiting for a notification that may never come.
CREATE OR REPLACE FUNCTION api.events_list(p_after_tx xid8 DEFAULT NULL, p_after_seq bigint DEFAULT NULL,
    p_types text[] DEFAULT NULL, p_limit int DEFAULT 100, p_from_now boolean DEFAULT false)
  RETURNS jsonb LANGUAGE plpgsql STABLE
  AS $$
DECLARE
  v_org uuid := app.org_id();
  v_horizon xid8 := pg_snapshot_xmin(pg_current_snapshot());
  v_types text[] := app.event_types_matching(p_types);
  v_tx xid8 := CASE WHEN p_from_now THEN v_horizon ELSE coalesce(p_after_tx, '0'::xid8) END;
  v_seq bigint := CASE WHEN p_from_now THEN 0 ELSE coalesce(p_after_seq, 0) END;
  v_at timestamptz;
  v_items jsonb[] := '{}'::jsonb[];
  v_positions jsonb[] := '{}'::jsonb[];
  v_scanned int := 0;
  e crm.events;
BEGIN
  IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 500 THEN
    PERFORM app.fail('MC400', 'limit_invalid', 'limit must be between 1 and 500', 'limit');
  END IF;
  FOR e IN SELECT * FROM crm.events ev
            WHERE ev.organization_id = v_org AND (ev.tx, ev.seq) > (v_tx, v_seq) AND ev.tx < v_horizon
            ORDER BY ev.tx, ev.seq
            LIMIT app.feed_scan_limit() LOOP
    v_scanned := v_scanned + 1;
    v_tx := e.tx;
    v_seq := e.seq;
    v_at := e.occurred_at;
    IF v_types IS NULL OR e.type = ANY (v_types) THEN
      v_items := v_items || app.event_json(e);
      v_positions := v_positions || jsonb_build_array(e.tx::text, e.seq, app.epoch_ms(e.occurred_at));
      EXIT WHEN cardinality(v_items) = p_limit;
    END IF;
  END LOOP;
  IF cardinality(v_items) < p_limit AND v_scanned < app.feed_scan_limit()
     AND (v_horizon, 0::bigint) > (v_tx, v_seq) THEN
    v_tx := v_horizon;
    v_seq := 0;
    v_at := now();
  END IF;
  RETURN jsonb_build_object(
    'items', to_jsonb(v_items),
    'positions', to_jsonb(v_positions),
    'next', jsonb_build_array(v_tx::text, v_seq, app.epoch_ms(coalesce(v_at, now()))),
    -- ORDER BY … LIMIT 1 rather than EXISTS: with a generic plan (PL/pgSQL
    -- caches one), EXISTS takes a sequential scan that expects to stop early,
    -- and reads the whole table when nothing is held.
    'held', (SELECT ev.tx FROM crm.events ev WHERE ev.organization_id = v_org AND ev.tx >= v_horizon
              ORDER BY ev.tx LIMIT 1) IS NOT NULL);
END
$$;

-- Notifications and deliveries: the announcer. Once every few tens of
-- milliseconds, one session of the database's servers (the one holding the
-- advisory lock of src/workers/announcer.rs, on its LISTEN connection) calls
-- this. For the events of the transactions that ended since the previous
-- round (tx from the position in private.events_announcer, inclusive, to the
-- horizon now, exclusive: every event exactly once across rounds) it
--   - notifies pg_notify('minicrm_events', '<organization_id>:<resource_type>')
--     once per distinct pair: every server instance's listener wakes its
--     live streams and drops its cached analytics on them;
--   - writes their webhook deliveries (private.webhooks_fan_out,
--     62_webhooks.sql) and, if it wrote any, notifies minicrm_deliveries,
--     which wakes the delivery workers;
--   - moves the position to the horizon, in the same transaction as the
--     deliveries: a round that fails or whose session dies leaves them all
--     to the next one.
-- Returns the horizon, what it announced (null: nothing) and how many
-- deliveries it wrote.
--
-- The position moves only when the window held events: a round with nothing
-- to do writes nothing (no transaction id, no WAL), so an idle database
-- stays idle, and the window's next read is one empty range of events_by_tx.
-- It moves to the greatest of its value and the horizon, so two rounds that
-- overlap (an announcer whose session is being replaced; a test calling this
-- beside the server's) cannot move it back, and a delivery both write is
-- written once (ON CONFLICT in the fan-out); they may notify twice, which
-- listeners allow (a notification only says "look").
--
-- A round takes at most about 10,000 events (all of one transaction's, if
-- it has more): an announcer that was away while a million events were
-- written catches up in rounds that each stay far under the listener's
-- statement timeout.
--
-- p_first (a session that just became the announcer: the one before may
-- have died between its round and its notifications' delivery, so what
-- listeners missed is unknown) notifies '*' on minicrm_events, "anything
-- may have changed", which every listener passes on as a reset, and
-- minicrm_deliveries.
--
-- Why not a NOTIFY from the writing transaction: PostgreSQL serializes the
-- commits of all transactions that have notified (a database-wide lock held
-- from before the commit through its WAL flush), so concurrent writers
-- stopped sharing WAL flushes (W3 44 % slower, docs/benchmarks.md). Here
-- only the announcer notifies, and a notification comes once the events are
-- below the horizon, i.e. readable in the feed, not before. Why not the
-- deliveries in the writing transaction: V27.
--
-- SECURITY DEFINER: it reads the events of every organization, under the
-- policy events_announcer_read (sql/policies/tenancy.sql), which matches the
-- events from the position set in app.events_announce_after. Not granted
-- to the request role: it runs as the server's login, its owner, like the
-- maintenance.
DROP FUNCTION IF EXISTS private.events_announce(xid8);
CREATE OR REPLACE FUNCTION private.events_announce(p_first boolean,
    OUT horizon xid8, OUT announced text[], OUT delivered bigint)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
DECLARE
  v_from xid8;
  v_until xid8;
  v_orgs uuid[];
BEGIN
  delivered := 0;
  IF p_first THEN
    PERFORM pg_notify('minicrm_events', '*');
    PERFORM pg_notify('minicrm_deliveries', '');
  END IF;
  SELECT a.position INTO STRICT v_from FROM private.events_announcer a;
  horizon := pg_snapshot_xmin(pg_current_snapshot());
  IF horizon <= v_from THEN
    horizon := v_from;
    RETURN;
  END IF;
  PERFORM set_config('app.events_announce_after', v_from::text, true);
  -- seq > 0: always true, the predicate of events_by_tx (V25 says why).
  v_until := (SELECT e.tx FROM crm.events e WHERE e.tx >= v_from AND e.tx < horizon AND e.seq > 0
               ORDER BY e.tx OFFSET 10000 LIMIT 1);
  IF v_until > v_from THEN
    horizon := v_until;
  END IF;
  SELECT array_agg(DISTINCT e.organization_id::text || ':' || e.resource_type), array_agg(DISTINCT e.organization_id)
    INTO announced, v_orgs
    FROM crm.events e
   WHERE e.tx >= v_from AND e.tx < horizon AND e.seq > 0;
  PERFORM set_config('app.events_announce_after', '', true);
  IF announced IS NULL THEN
    RETURN;
  END IF;
  PERFORM pg_notify('minicrm_events', a) FROM unnest(announced) a;
  IF EXISTS (SELECT 1 FROM crm.webhooks w WHERE w.organization_id = ANY (v_orgs) AND w.enabled) THEN
    delivered := private.webhooks_fan_out(p_from => v_from, p_to => horizon);
    IF delivered > 0 THEN
      PERFORM pg_notify('minicrm_deliveries', '');
    END IF;
  END IF;
  UPDATE private.events_announcer SET position = greatest(position, horizon);
END
$$;

-- The notifying trigger of the events' first version, replaced by the
-- announcer above.
DROP TRIGGER IF EXISTS events_notify ON crm.events;
DROP FUNCTION IF EXISTS private.events_notify();
