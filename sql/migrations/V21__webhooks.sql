-- Webhooks (SPEC §13): an organization's subscriptions, one delivery per
-- (subscription, event) written in the event's own transaction by the
-- fan-out trigger (sql/functions/62_webhooks.sql), and every attempt to
-- deliver one. Pending deliveries live here, so a crash or a restart of any
-- server loses none (at least once); the delivery worker
-- (src/workers/webhooks.rs) claims them with FOR UPDATE SKIP LOCKED.

CREATE TABLE crm.webhooks (
  organization_id uuid NOT NULL CONSTRAINT webhooks_organization_id_not_found
                    REFERENCES crm.organizations (id) ON DELETE CASCADE,
  -- Chosen by the server: the secret is sealed with the id as associated
  -- data before the row exists.
  id              uuid NOT NULL,
  -- https only unless WEBHOOK_ALLOW_PRIVATE_NETWORKS, a network rule the
  -- server checks (it resolves the name); here only the shape.
  url             text NOT NULL CONSTRAINT webhooks_url_invalid
                    CHECK (length(url) BETWEEN 10 AND 2000 AND url ~ '^https?://[^/?#\s]+[^\s]*$'),
  -- Exact event types or `<resource>.*`; each is checked against the known
  -- types by the guard trigger (webhook_events_invalid).
  events          text[] NOT NULL CONSTRAINT webhooks_events_invalid
                    CHECK (cardinality(events) BETWEEN 1 AND 50 AND array_ndims(events) = 1),
  description     text CONSTRAINT webhooks_description_invalid CHECK (length(description) <= 500),
  enabled         boolean NOT NULL DEFAULT true,
  -- Why and when it was disabled: disabled_by_user (PATCH enabled=false) or
  -- endpoint_gone (it answered 410). Cleared when enabled again.
  disabled_reason text CONSTRAINT webhooks_disabled_reason_invalid
                    CHECK (disabled_reason IN ('disabled_by_user', 'endpoint_gone')),
  disabled_at     timestamptz,
  -- The signing secret, AES-256-GCM under WEBHOOK_SECRETS_KEY, which only
  -- the server holds: nonce (12 bytes) || ciphertext || tag, with the
  -- organization and the webhook id as associated data (src/webhooks/secrets.rs).
  -- A dump of the database cannot sign, and a sealed secret copied to
  -- another webhook does not open.
  secret_sealed   bytea NOT NULL CONSTRAINT webhooks_secret_sealed_invalid
                    CHECK (octet_length(secret_sealed) BETWEEN 29 AND 512),
  -- The ETag (private.version_keep, as V15's tables).
  version         integer NOT NULL DEFAULT 1,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT webhooks_pkey PRIMARY KEY (organization_id, id),
  CONSTRAINT webhooks_disabled_consistent CHECK ((disabled_reason IS NULL) = enabled
                                                 AND (disabled_at IS NULL) = enabled)
);

-- The list (created_at, id); the fan-out reads an organization's enabled ones.
CREATE INDEX webhooks_by_created ON crm.webhooks (organization_id, created_at, id);

CREATE TABLE crm.webhook_deliveries (
  organization_id uuid NOT NULL,
  id              uuid NOT NULL DEFAULT gen_random_uuid(),
  webhook_id      uuid NOT NULL,
  -- The event's id (webhook-id, the same on every attempt) and type. No
  -- foreign key to crm.events: the events' retention deletes them on its
  -- own schedule, and a webhook.test event is in no feed.
  event_id        uuid NOT NULL,
  event_type      text NOT NULL,
  -- app.event_json of the event, written at fan-out: the bytes signed and
  -- sent on every attempt are the same.
  body            jsonb NOT NULL,
  status          text NOT NULL DEFAULT 'pending' CONSTRAINT webhook_deliveries_status_invalid
                    CHECK (status IN ('pending', 'delivered', 'failed')),
  attempts        integer NOT NULL DEFAULT 0,
  -- When the next attempt is due. A claim moves it to the end of its lease
  -- (claim_id set), so a claim that is never settled (the instance died)
  -- comes due again by itself.
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  claim_id        uuid,
  -- The last attempt (every attempt is in crm.webhook_attempts).
  last_status_code integer,
  last_error      text,
  last_duration_ms integer,
  delivered_at    timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT webhook_deliveries_pkey PRIMARY KEY (organization_id, id),
  -- One delivery per (webhook, event).
  CONSTRAINT webhook_deliveries_event_taken UNIQUE (organization_id, webhook_id, event_id),
  CONSTRAINT webhook_deliveries_webhook_id_not_found FOREIGN KEY (organization_id, webhook_id)
    REFERENCES crm.webhooks (organization_id, id) ON DELETE CASCADE
);

-- GET /webhooks/{id}/deliveries, newest first.
CREATE INDEX webhook_deliveries_by_webhook ON crm.webhook_deliveries (organization_id, webhook_id, created_at, id);
-- The worker's claim: due deliveries of every organization, soonest first.
-- It does not lead with organization_id: the worker serves all tenants at
-- once (as crm.idempotency_keys' expiry index), and a per-organization
-- index would mean one scan per organization every poll. Partial: only
-- pending rows, so finished deliveries cost it nothing.
CREATE INDEX webhook_deliveries_due ON crm.webhook_deliveries (next_attempt_at) WHERE status = 'pending';
-- The retention (private.run_maintenance): finished deliveries of every
-- organization, oldest first (spans organizations like the claim index).
CREATE INDEX webhook_deliveries_finished ON crm.webhook_deliveries (created_at) WHERE status <> 'pending';
-- The claims in flight per endpoint (the per-endpoint concurrency bound).
CREATE INDEX webhook_deliveries_claimed ON crm.webhook_deliveries (organization_id, webhook_id)
  WHERE status = 'pending' AND claim_id IS NOT NULL;

CREATE TABLE crm.webhook_attempts (
  organization_id uuid NOT NULL,
  id              uuid NOT NULL DEFAULT gen_random_uuid(),
  delivery_id     uuid NOT NULL,
  attempt         integer NOT NULL,
  -- The HTTP status, null when no answer came (refused, timeout, SSRF).
  status_code     integer,
  -- What went wrong, never a secret (src/workers/webhooks.rs).
  error           text,
  duration_ms     integer NOT NULL,
  attempted_at    timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT webhook_attempts_pkey PRIMARY KEY (organization_id, id),
  CONSTRAINT webhook_attempts_attempt_taken UNIQUE (organization_id, delivery_id, attempt),
  CONSTRAINT webhook_attempts_delivery_id_not_found FOREIGN KEY (organization_id, delivery_id)
    REFERENCES crm.webhook_deliveries (organization_id, id) ON DELETE CASCADE
);

ALTER TABLE crm.webhooks ENABLE ROW LEVEL SECURITY;
ALTER TABLE crm.webhooks FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.webhook_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE crm.webhook_deliveries FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.webhook_attempts ENABLE ROW LEVEL SECURITY;
ALTER TABLE crm.webhook_attempts FORCE ROW LEVEL SECURITY;

-- The request role manages webhooks (the guard trigger: owner/admin) and
-- reads deliveries; only SECURITY DEFINER functions write deliveries and
-- attempts (the fan-out, the test delivery, the worker).
GRANT SELECT, INSERT, UPDATE, DELETE ON crm.webhooks TO minicrm_api;
GRANT SELECT ON crm.webhook_deliveries, crm.webhook_attempts TO minicrm_api;
