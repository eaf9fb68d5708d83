-- Webhooks (SPEC §13; tables in sql/migrations/V21__webhooks.sql): the
-- management API, the fan-out of events to deliveries (the announcer's),
-- and the delivery worker's claim and settlement. Only owners and admins
-- manage or read webhooks (their deliveries show event payloads and
-- endpoint URLs, which are configuration). The server seals secrets and
-- checks URLs against SSRF (a network fact) before it calls these; every
-- other rule is here.

CREATE OR REPLACE FUNCTION app.webhook_json(w crm.webhooks) RETURNS jsonb
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$
    SELECT jsonb_build_object('id', w.id, 'url', w.url, 'events', to_jsonb(w.events),
      'description', w.description, 'enabled', w.enabled, 'disabled_reason', w.disabled_reason,
      'disabled_at', app.ts(w.disabled_at), 'created_at', app.ts(w.created_at),
      'updated_at', app.ts(w.updated_at), 'version', w.version)
  $$;

-- The answer of a create and a rotation: the webhook with its sealed
-- secret, which the server opens and shows as `secret` (and drops from the
-- answer). This is the text an idempotent create stores and replays, so
-- crm.idempotency_keys never holds a secret in clear either.
CREATE OR REPLACE FUNCTION app.webhook_json_sealed(w crm.webhooks) RETURNS jsonb
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT app.webhook_json(w) || jsonb_build_object('secret_sealed', encode(w.secret_sealed, 'base64')) $$;

-- BEFORE INSERT, UPDATE or DELETE on crm.webhooks: owners and admins only
-- (a DBA acting as a member in psql meets the same rule); the event patterns
-- against the known types; updated_at; and the disabled reason, which goes
-- with enabled (disabling through an UPDATE that does not say why is a
-- user's; enabling again clears it).
CREATE OR REPLACE FUNCTION private.webhooks_guard() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_bad text;
BEGIN
  PERFORM app.require_admin();
  IF TG_OP = 'DELETE' THEN
    RETURN OLD;
  END IF;
  SELECT p INTO v_bad FROM unnest(NEW.events) p
   WHERE p IS NULL OR NOT (p = ANY (app.event_types())
                           OR p IN (SELECT split_part(t, '.', 1) || '.*' FROM unnest(app.event_types()) t))
   LIMIT 1;
  IF FOUND THEN
    PERFORM app.fail('MC400', 'webhook_events_invalid',
                     format('%s is not an event type nor <resource>.* (SPEC §13)', coalesce(quote_literal(v_bad), 'null')),
                     'events');
  END IF;
  NEW.events := ARRAY(SELECT DISTINCT p FROM unnest(NEW.events) p ORDER BY p);
  IF TG_OP = 'UPDATE' THEN
    NEW.updated_at := now();
    NEW.created_at := OLD.created_at;
    IF NEW.enabled AND NOT OLD.enabled THEN
      NEW.disabled_reason := NULL;
      NEW.disabled_at := NULL;
    ELSIF OLD.enabled AND NOT NEW.enabled THEN
      NEW.disabled_reason := coalesce(NEW.disabled_reason, 'disabled_by_user');
      NEW.disabled_at := now();
    END IF;
  END IF;
  RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS webhooks_guard ON crm.webhooks;
CREATE TRIGGER webhooks_guard BEFORE INSERT OR UPDATE OR DELETE ON crm.webhooks
  FOR EACH ROW EXECUTE FUNCTION private.webhooks_guard();
DROP TRIGGER IF EXISTS webhooks_version ON crm.webhooks;
CREATE TRIGGER webhooks_version BEFORE INSERT OR UPDATE ON crm.webhooks
  FOR EACH ROW EXECUTE FUNCTION private.version_keep();

-- Fan-out: the deliveries of the events of the transactions in [p_from,
-- p_to), one per event and enabled webhook of its organization whose
-- patterns name the type or `<resource>.*` and that existed when the
-- change began (the event's occurred_at, its transaction's start, is not
-- before the webhook's created_at: a new webhook gets the changes made
-- after it, not those that were waiting for the announcer's round).
-- Returns how many it wrote.
--
-- Called by the announcer (private.events_announce, 61_feed.sql) for the
-- window of its round, in the round's transaction, which also moves its
-- position: every committed event is fanned out once, after its commit,
-- off the writing transaction (V27 says what the trigger that did this in
-- the writing transaction cost every write). ON CONFLICT: a delivery the
-- trigger of the version before already wrote, during a rolling upgrade,
-- is not written twice. The planner joins from the enabled webhooks to
-- their organization's events in the window (a range of events_pkey each)
-- while webhooks are few, or from the window's events (a range of
-- events_by_tx, whose predicate seq > 0 states) to their organization's
-- webhooks once there are many. SECURITY DEFINER, as the worker: the
-- request role may not write deliveries; it reads the events under
-- events_announcer_read, from p_from.
CREATE OR REPLACE FUNCTION private.webhooks_fan_out(p_from xid8, p_to xid8) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
DECLARE
  v_written bigint;
BEGIN
  PERFORM set_config('app.events_announce_after', p_from::text, true);
  INSERT INTO crm.webhook_deliveries (organization_id, webhook_id, event_id, event_type, body)
  SELECT e.organization_id, w.id, e.id, e.type, app.event_json(e)
    FROM crm.webhooks w
    JOIN crm.events e ON e.organization_id = w.organization_id AND e.tx >= p_from AND e.tx < p_to AND e.seq > 0
   WHERE w.enabled AND w.events && ARRAY[e.type, e.resource_type || '.*'] AND e.occurred_at >= w.created_at
  ON CONFLICT ON CONSTRAINT webhook_deliveries_event_taken DO NOTHING;
  GET DIAGNOSTICS v_written = ROW_COUNT;
  PERFORM set_config('app.events_announce_after', '', true);
  RETURN v_written;
END
$$;

-- The fan-out trigger of the version before (V27 says why it went).
DROP TRIGGER IF EXISTS events_webhooks_fan_out ON crm.events;
DROP FUNCTION IF EXISTS private.webhooks_fan_out();

-- The organization's webhooks, oldest first (created_at, id), paginated like
-- every list.
CREATE OR REPLACE FUNCTION api.webhooks_list(p_page int, p_page_size int,
    p_after_created_at timestamptz DEFAULT NULL, p_after_id uuid DEFAULT NULL)
  RETURNS jsonb LANGUAGE plpgsql STABLE
  AS $$
DECLARE
  v_counted bigint;
  v_items jsonb[];  -- the page's rows and the one after it (app.page_json)
BEGIN
  PERFORM app.require_admin();
  PERFORM app.check_paging(p_page, p_after_created_at IS NOT NULL, p_after_id);
  SELECT count(*) INTO v_counted
    FROM (SELECT 1 FROM crm.webhooks w WHERE w.organization_id = (SELECT app.org_id())
          LIMIT app.exact_count_limit() + 1) c;
  SELECT array_agg(app.webhook_json(w) ORDER BY w.created_at, w.id) INTO v_items
    FROM (SELECT * FROM crm.webhooks w
           WHERE w.organization_id = (SELECT app.org_id())
             AND (p_after_id IS NULL OR (w.created_at, w.id) > (p_after_created_at, p_after_id))
           ORDER BY w.created_at, w.id
           LIMIT p_page_size + 1 OFFSET (coalesce(p_page, 1) - 1)::bigint * p_page_size) w;
  RETURN app.page_json(v_items, p_page, p_page_size, app.list_total(v_counted, NULL), 'created_at');
END
$$;

-- p_id and p_secret_sealed come from the server, which sealed the secret
-- with that id and the organization as associated data.
CREATE OR REPLACE FUNCTION api.webhooks_create(p_id uuid, p_url text, p_events text[], p_description text,
    p_secret_sealed bytea)
  RETURNS jsonb LANGUAGE sql
  AS $$
    INSERT INTO crm.webhooks (organization_id, id, url, events, description, secret_sealed)
    VALUES (app.org_id(), p_id, p_url, p_events, p_description, p_secret_sealed)
    RETURNING app.webhook_json_sealed(webhooks)
  $$;

CREATE OR REPLACE FUNCTION api.webhooks_get(p_id uuid) RETURNS jsonb
  LANGUAGE plpgsql STABLE
  AS $$
DECLARE
  v jsonb;
BEGIN
  PERFORM app.require_admin();
  SELECT app.webhook_json(w) INTO v FROM crm.webhooks w
   WHERE w.organization_id = (SELECT app.org_id()) AND w.id = p_id;
  IF v IS NULL THEN
    PERFORM app.not_found('webhook');
  END IF;
  RETURN v;
END
$$;

-- Partial update: p_fields names the fields present (description may be
-- set to null; url, events and enabled may not). If-Match as in 28_versions.sql.
CREATE OR REPLACE FUNCTION api.webhooks_update(p_id uuid, p_fields text[], p_url text, p_events text[],
    p_description text, p_enabled boolean, p_if_match int[] DEFAULT NULL)
  RETURNS jsonb LANGUAGE plpgsql
  AS $$
DECLARE
  v jsonb;
BEGIN
  PERFORM app.require_admin();
  UPDATE crm.webhooks w SET
    url         = CASE WHEN 'url' = ANY (p_fields) THEN p_url ELSE w.url END,
    events      = CASE WHEN 'events' = ANY (p_fields) THEN p_events ELSE w.events END,
    description = CASE WHEN 'description' = ANY (p_fields) THEN p_description ELSE w.description END,
    enabled     = CASE WHEN 'enabled' = ANY (p_fields) THEN p_enabled ELSE w.enabled END
   WHERE w.organization_id = (SELECT app.org_id()) AND w.id = p_id
     AND (p_if_match IS NULL OR w.version = ANY (p_if_match))
  RETURNING app.webhook_json(w) INTO v;
  IF v IS NULL THEN
    PERFORM app.not_found_or_changed('webhook', p_if_match IS NOT NULL AND EXISTS (
      SELECT 1 FROM crm.webhooks w WHERE w.organization_id = (SELECT app.org_id()) AND w.id = p_id));
  END IF;
  RETURN v;
END
$$;

-- Its deliveries and attempts go with it (ON DELETE CASCADE): a delivery
-- being sent when it goes is settled into nothing.
CREATE OR REPLACE FUNCTION api.webhooks_delete(p_id uuid, p_if_match int[] DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM app.require_admin();
  DELETE FROM crm.webhooks w
   WHERE w.organization_id = (SELECT app.org_id()) AND w.id = p_id
     AND (p_if_match IS NULL OR w.version = ANY (p_if_match));
  IF NOT FOUND THEN
    PERFORM app.not_found_or_changed('webhook', p_if_match IS NOT NULL AND EXISTS (
      SELECT 1 FROM crm.webhooks w WHERE w.organization_id = (SELECT app.org_id()) AND w.id = p_id));
  END IF;
END
$$;

-- A new secret: every attempt from now on is signed with it only (the
-- worker reads the secret when it claims a delivery; an attempt already on
-- its way keeps the old one).
CREATE OR REPLACE FUNCTION api.webhooks_rotate_secret(p_id uuid, p_secret_sealed bytea) RETURNS jsonb
  LANGUAGE plpgsql
  AS $$
DECLARE
  v jsonb;
BEGIN
  PERFORM app.require_admin();
  UPDATE crm.webhooks w SET secret_sealed = p_secret_sealed
   WHERE w.organization_id = (SELECT app.org_id()) AND w.id = p_id
  RETURNING app.webhook_json_sealed(w) INTO v;
  IF v IS NULL THEN
    PERFORM app.not_found('webhook');
  END IF;
  RETURN v;
END
$$;

CREATE OR REPLACE FUNCTION app.webhook_delivery_json(d crm.webhook_deliveries) RETURNS jsonb
  LANGUAGE sql STABLE
  AS $$
    SELECT jsonb_build_object('id', d.id, 'event_id', d.event_id, 'type', d.event_type, 'status', d.status,
      'attempt', d.attempts, 'status_code', d.last_status_code, 'error', d.last_error,
      'duration_ms', d.last_duration_ms, 'delivered_at', app.ts(d.delivered_at),
      'next_attempt_at', CASE WHEN d.status = 'pending' THEN app.ts(d.next_attempt_at) END,
      'created_at', app.ts(d.created_at),
      'attempts', coalesce((SELECT jsonb_agg(jsonb_build_object('attempt', a.attempt, 'status_code', a.status_code,
                                'error', a.error, 'duration_ms', a.duration_ms, 'attempted_at', app.ts(a.attempted_at))
                              ORDER BY a.attempt DESC)
                              FROM crm.webhook_attempts a
                             WHERE a.organization_id = d.organization_id AND a.delivery_id = d.id), '[]'::jsonb))
  $$;

-- A webhook's deliveries, newest first (created_at, id descending), each
-- with its last attempt's outcome and every attempt, newest first.
CREATE OR REPLACE FUNCTION api.webhooks_deliveries(p_id uuid, p_page int, p_page_size int,
    p_after_created_at timestamptz DEFAULT NULL, p_after_id uuid DEFAULT NULL)
  RETURNS jsonb LANGUAGE plpgsql STABLE
  AS $$
DECLARE
  v_counted bigint;
  v_items jsonb[];  -- the page's rows and the one after it (app.page_json)
BEGIN
  PERFORM app.require_admin();
  PERFORM app.check_paging(p_page, p_after_created_at IS NOT NULL, p_after_id);
  IF NOT EXISTS (SELECT 1 FROM crm.webhooks w WHERE w.organization_id = (SELECT app.org_id()) AND w.id = p_id) THEN
    PERFORM app.not_found('webhook');
  END IF;
  SELECT count(*) INTO v_counted
    FROM (SELECT 1 FROM crm.webhook_deliveries d
           WHERE d.organization_id = (SELECT app.org_id()) AND d.webhook_id = p_id
           LIMIT app.exact_count_limit() + 1) c;
  SELECT array_agg(app.webhook_delivery_json(d) ORDER BY d.created_at DESC, d.id DESC) INTO v_items
    FROM (SELECT * FROM crm.webhook_deliveries d
           WHERE d.organization_id = (SELECT app.org_id()) AND d.webhook_id = p_id
             AND (p_after_id IS NULL OR (d.created_at, d.id) < (p_after_created_at, p_after_id))
           ORDER BY d.created_at DESC, d.id DESC
           LIMIT p_page_size + 1 OFFSET (coalesce(p_page, 1) - 1)::bigint * p_page_size) d;
  RETURN app.page_json(v_items, p_page, p_page_size, app.list_total(v_counted, NULL), 'created_at');
END
$$;

-- POST /webhooks/{id}/test: a webhook.test event for this endpoint only,
-- not in the feed (no row in crm.events), delivered like any other. The
-- request role may not write deliveries, hence SECURITY DEFINER; the
-- organization is the caller's and the role rule is checked here.
CREATE OR REPLACE FUNCTION private.webhook_test(p_id uuid) RETURNS jsonb
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
DECLARE
  w crm.webhooks;
  v_event uuid := gen_random_uuid();
  v jsonb;
BEGIN
  PERFORM app.require_admin();
  SELECT * INTO w FROM crm.webhooks x WHERE x.organization_id = app.org_id() AND x.id = p_id;
  IF NOT FOUND OR app.org_id() IS NULL THEN
    PERFORM app.not_found('webhook');
  END IF;
  IF NOT w.enabled THEN
    PERFORM app.fail('MC409', 'webhook_disabled', 'the webhook is disabled: enable it first (PATCH enabled=true)');
  END IF;
  INSERT INTO crm.webhook_deliveries AS d (organization_id, webhook_id, event_id, event_type, body)
  VALUES (w.organization_id, w.id, v_event, 'webhook.test',
          jsonb_build_object('id', v_event, 'type', 'webhook.test', 'occurred_at', app.ts(now()),
                             'actor_id', app.user_id(), 'resource_id', w.id,
                             'data', jsonb_build_object('object', app.webhook_json(w), 'previous', NULL)))
  RETURNING app.webhook_delivery_json(d) INTO v;
  PERFORM pg_notify('minicrm_deliveries', '');
  RETURN v;
END
$$;

CREATE OR REPLACE FUNCTION api.webhooks_test(p_id uuid) RETURNS jsonb
  LANGUAGE sql
  AS $$ SELECT private.webhook_test(p_id) $$;

GRANT EXECUTE ON FUNCTION private.webhook_test(uuid) TO minicrm_api;

-- The retry schedule of SPEC §13, in one place: the pause after the n-th
-- failed attempt (5 s, 30 s, 2 min, 10 min, 30 min, 1 h, then every 2 h),
-- times p_scale (WEBHOOK_BACKOFF_SCALE: 1 in production, small in tests).
CREATE OR REPLACE FUNCTION app.webhook_backoff(p_attempt int, p_scale float8 DEFAULT 1) RETURNS interval
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$
    SELECT (CASE greatest(p_attempt, 1)
              WHEN 1 THEN interval '5 seconds' WHEN 2 THEN interval '30 seconds'
              WHEN 3 THEN interval '2 minutes' WHEN 4 THEN interval '10 minutes'
              WHEN 5 THEN interval '30 minutes' WHEN 6 THEN interval '1 hour'
              ELSE interval '2 hours' END) * p_scale
  $$;

-- The worker's claim (src/workers/webhooks.rs), across organizations: up
-- to p_limit due deliveries of enabled webhooks, at most p_per_endpoint in
-- flight per webhook counting every instance's live claims, locked with
-- SKIP LOCKED so that concurrent claimers take different rows. Each claim
-- gets a fresh claim_id and moves next_attempt_at to the end of its lease:
-- if the claimer dies, the delivery comes due again then, and its late
-- settlement (wrong claim_id) is ignored. Not granted to anyone: the
-- server's login role owns it.
--
-- Its cost does not grow with the backlog (V28): each endpoint's due
-- deliveries are a range of webhook_deliveries_pending in next_attempt_at
-- order, read up to the endpoint's free slots; the UPDATE finds each
-- claimed row by its key, and the endpoint's url and secret come along
-- from the first read. (The version before read all of an endpoint's
-- pending deliveries and sorted them, then joined the claimed rows through
-- an index on (organization_id, webhook_id) alone: 176,000 buffer reads,
-- 40 to 70 ms, per claim of 32 among 6,000 pending.)
CREATE OR REPLACE FUNCTION private.webhook_deliveries_claim(p_limit int, p_per_endpoint int, p_lease_ms int)
  RETURNS TABLE (organization_id uuid, delivery_id uuid, claim_id uuid, webhook_id uuid, url text,
                 secret_sealed bytea, event_id uuid, body text, attempt int)
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    WITH in_flight AS (
      SELECT d.organization_id, d.webhook_id, count(*) AS n
        FROM crm.webhook_deliveries d
       WHERE d.status = 'pending' AND d.claim_id IS NOT NULL AND d.next_attempt_at > now()
       GROUP BY 1, 2
    ), due AS (
      -- Per endpoint, so that one endpoint's backlog cannot fill the claim.
      SELECT c.organization_id, c.id, c.next_attempt_at, w.url, w.secret_sealed
        FROM crm.webhooks w
        LEFT JOIN in_flight f ON f.organization_id = w.organization_id AND f.webhook_id = w.id
        CROSS JOIN LATERAL (
          SELECT d.organization_id, d.id, d.next_attempt_at
            FROM crm.webhook_deliveries d
           WHERE d.organization_id = w.organization_id AND d.webhook_id = w.id
             AND d.status = 'pending' AND d.next_attempt_at <= now()
           ORDER BY d.next_attempt_at
           LIMIT greatest(p_per_endpoint - coalesce(f.n, 0), 0)
             FOR UPDATE SKIP LOCKED) c
       WHERE w.enabled
       ORDER BY c.next_attempt_at
       LIMIT p_limit
    )
    UPDATE crm.webhook_deliveries d
       SET claim_id = gen_random_uuid(), next_attempt_at = now() + p_lease_ms * interval '1 millisecond'
      FROM due
     WHERE d.organization_id = due.organization_id AND d.id = due.id
    RETURNING d.organization_id, d.id, d.claim_id, d.webhook_id, due.url, due.secret_sealed, d.event_id,
              d.body::text, d.attempts + 1
  $$;

-- Settles one attempt of a claimed delivery: records it, then 2xx →
-- delivered; 410 → the webhook is disabled at once (endpoint_gone) and the
-- delivery failed (the others stay pending, and go out if it is enabled
-- again); anything else → retried after app.webhook_backoff, or failed after
-- p_max_attempts. p_status_code is null when no answer came. Returns the
-- delivery's new status, or null when the claim is no longer this one's
-- (the lease ran out and another instance took it, or the webhook is gone).
CREATE OR REPLACE FUNCTION private.webhook_delivery_settle(p_organization_id uuid, p_delivery_id uuid,
    p_claim_id uuid, p_status_code int, p_error text, p_duration_ms int,
    p_max_attempts int, p_backoff_scale float8)
  RETURNS text
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
DECLARE
  d crm.webhook_deliveries;
  v_ok boolean := p_status_code BETWEEN 200 AND 299;
  v_gone boolean := p_status_code = 410;
  v_status text;
BEGIN
  SELECT * INTO d FROM crm.webhook_deliveries x
   WHERE x.organization_id = p_organization_id AND x.id = p_delivery_id
     AND x.claim_id = p_claim_id AND x.status = 'pending'
     FOR UPDATE;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  v_status := CASE WHEN v_ok THEN 'delivered'
                   WHEN v_gone OR d.attempts + 1 >= p_max_attempts THEN 'failed'
                   ELSE 'pending' END;
  INSERT INTO crm.webhook_attempts (organization_id, delivery_id, attempt, status_code, error, duration_ms)
  VALUES (d.organization_id, d.id, d.attempts + 1, p_status_code, left(p_error, 1000), p_duration_ms);
  UPDATE crm.webhook_deliveries x SET
    attempts = d.attempts + 1, status = v_status, claim_id = NULL,
    next_attempt_at = CASE WHEN v_status = 'pending'
                           THEN now() + app.webhook_backoff(d.attempts + 1, p_backoff_scale)
                           ELSE x.next_attempt_at END,
    last_status_code = p_status_code, last_error = left(p_error, 1000), last_duration_ms = p_duration_ms,
    delivered_at = CASE WHEN v_ok THEN now() END
   WHERE x.organization_id = d.organization_id AND x.id = d.id;
  IF v_gone THEN
    UPDATE crm.webhooks w SET enabled = false, disabled_reason = 'endpoint_gone'
     WHERE w.organization_id = d.organization_id AND w.id = d.webhook_id AND w.enabled;
  END IF;
  RETURN v_status;
END
$$;

-- Gives back a claim the worker could not attempt (it is shutting down):
-- due again at once, no attempt counted.
CREATE OR REPLACE FUNCTION private.webhook_delivery_release(p_organization_id uuid, p_delivery_id uuid, p_claim_id uuid)
  RETURNS void
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    UPDATE crm.webhook_deliveries d SET claim_id = NULL, next_attempt_at = now()
     WHERE d.organization_id = p_organization_id AND d.id = p_delivery_id AND d.claim_id = p_claim_id
       AND d.status = 'pending'
  $$;
