-- W3 with a new idempotency key per transaction: the statement the server
-- sends for POST /contacts with Idempotency-Key (src/db/mod.rs, idempotent_call_sql).
\set k random(1, 1000000000000000)
SELECT b.replayed, b.status, CASE WHEN b.replayed THEN b.body ELSE app.idempotency_finish(p_scope => b.scope, p_key => 'pgbench-' || :client_id || '-' || :k, p_fingerprint => sha256('bench'::bytea), p_status => 201, p_ttl_secs => 86400, p_body => (api.contacts_create(p_name => 'Bench contact', p_email => 'bench@example.com', p_phone => NULL, p_owner_id => NULL))::text) END FROM app.act_as(:user, :org) AS a(role), LATERAL app.idempotency_begin(p_after => a.role, p_key => 'pgbench-' || :client_id || '-' || :k, p_fingerprint => sha256('bench'::bytea)) AS b;
