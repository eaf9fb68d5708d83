-- Response shapes are built in SQL so a request is one call and one row.
-- The builders are STABLE, not IMMUTABLE: to_char and jsonb_build_object are
-- stable, and a SQL function is inlined into its caller only when it claims no
-- more than its body (inlined, a 20-row page costs a fraction of a millisecond;
-- called, each row pays a function-call executor).

-- RFC 3339 in UTC, whatever the session's TimeZone.
CREATE OR REPLACE FUNCTION app.ts(p timestamptz) RETURNS text
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT to_char(p AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') $$;

-- Takes columns, not the row: the request role may not read hashed_password.
CREATE OR REPLACE FUNCTION app.user_json(p_id uuid, p_email text, p_name text, p_created_at timestamptz) RETURNS jsonb
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT jsonb_build_object('id', p_id, 'email', p_email, 'name', p_name, 'created_at', app.ts(p_created_at)) $$;

CREATE OR REPLACE FUNCTION app.organization_json(o crm.organizations, p_role crm.member_role) RETURNS jsonb
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT jsonb_build_object('id', o.id, 'name', o.name, 'created_at', app.ts(o.created_at), 'role', p_role) $$;


-- An event as the feed, the history, the live stream and a webhook delivery
-- show it (SPEC §13). The position (tx, seq) is not part of it: the feed's
-- cursor carries it, signed.
CREATE OR REPLACE FUNCTION app.event_json(e crm.events) RETURNS jsonb
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$
    SELECT jsonb_build_object('id', e.id, 'type', e.type, 'occurred_at', app.ts(e.occurred_at),
      'actor_id', e.actor_id, 'resource_id', e.resource_id, 'data', e.data)
  $$;
