-- Idempotency keys (SPEC §11): the first successful answer to a creating POST
-- that carried `Idempotency-Key`, stored in the same transaction as the write
-- it answers (app.idempotency_begin / app.idempotency_finish, in the one
-- statement of the request), so a retry gets that answer back instead of a
-- second record. Keys belong to one user in one organization; the rows of a
-- user-level request (no organization: creating an organization, accepting an
-- invitation) live in crm.user_idempotency_keys.
--
-- A row counts until expires_at; after that it is as if absent (the API
-- functions compare with now()), and private.run_maintenance() deletes it.

CREATE TABLE crm.idempotency_keys (
  organization_id uuid NOT NULL,
  user_id         uuid NOT NULL,
  key             text NOT NULL CONSTRAINT idempotency_keys_key_invalid
                    CHECK (length(key) BETWEEN 1 AND 255 AND key ~ '^[ -~]+$'),
  -- SHA-256 of the method, the path with its query and the raw body.
  fingerprint     bytea NOT NULL CONSTRAINT idempotency_keys_fingerprint_invalid CHECK (length(fingerprint) = 32),
  -- The answer: its status (2xx) and body as the client got it.
  status          integer NOT NULL CONSTRAINT idempotency_keys_status_invalid CHECK (status BETWEEN 200 AND 299),
  body            text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  expires_at      timestamptz NOT NULL,
  CONSTRAINT idempotency_keys_pkey PRIMARY KEY (organization_id, user_id, key),
  -- A member who leaves takes their keys along (and so does a deleted organization).
  CONSTRAINT idempotency_keys_user_id_not_member FOREIGN KEY (organization_id, user_id)
    REFERENCES crm.organization_members (organization_id, user_id) ON DELETE CASCADE,
  CONSTRAINT idempotency_keys_expires_at_invalid CHECK (expires_at > created_at)
);
-- The cleanup deletes expired rows of every organization at once: an index
-- leading with organization_id could not serve it (PostgreSQL 15 has no skip
-- scan). Lookups use the primary key.
CREATE INDEX idempotency_keys_by_expiry ON crm.idempotency_keys (expires_at);

ALTER TABLE crm.idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE crm.idempotency_keys FORCE ROW LEVEL SECURITY;

-- Keys of requests made without an organization. Global like crm.users (a
-- user is in no organization when they make them).
CREATE TABLE crm.user_idempotency_keys (
  user_id     uuid NOT NULL CONSTRAINT user_idempotency_keys_user_id_not_found
                REFERENCES crm.users (id) ON DELETE CASCADE,
  key         text NOT NULL CONSTRAINT user_idempotency_keys_key_invalid
                CHECK (length(key) BETWEEN 1 AND 255 AND key ~ '^[ -~]+$'),
  fingerprint bytea NOT NULL CONSTRAINT user_idempotency_keys_fingerprint_invalid CHECK (length(fingerprint) = 32),
  status      integer NOT NULL CONSTRAINT user_idempotency_keys_status_invalid CHECK (status BETWEEN 200 AND 299),
  body        text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL,
  CONSTRAINT user_idempotency_keys_pkey PRIMARY KEY (user_id, key),
  CONSTRAINT user_idempotency_keys_expires_at_invalid CHECK (expires_at > created_at)
);
CREATE INDEX user_idempotency_keys_by_expiry ON crm.user_idempotency_keys (expires_at);

ALTER TABLE crm.user_idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE crm.user_idempotency_keys FORCE ROW LEVEL SECURITY;

-- The request role reads its keys and stores answers; UPDATE replaces an
-- expired row of the same key (INSERT … ON CONFLICT DO UPDATE). Only the
-- maintenance function deletes.
GRANT SELECT, INSERT, UPDATE ON crm.idempotency_keys, crm.user_idempotency_keys TO minicrm_api;
