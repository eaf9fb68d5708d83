-- Login and registration attempt counters, shared by every server instance
-- (issue #10, item 4): one fixed window per key. Unlogged: counters are cheap
-- to lose in a crash (a window starts afresh) and not worth WAL.
CREATE UNLOGGED TABLE private.auth_attempts (
  -- sha256 of 'address:<ip>' or 'email:<app.email_key(email)>': bounded size,
  -- and no addresses at rest.
  key          bytea PRIMARY KEY,
  window_start timestamptz NOT NULL,
  attempts     int NOT NULL
);
