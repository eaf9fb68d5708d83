-- Periodic housekeeping, called by the server's maintenance worker
-- (src/workers/maintenance.rs) every few minutes, as the server's login role
-- and with no request context. One row per step, each with the number of rows
-- it dealt with; a new step is one more block that sets step and deleted and
-- returns the row (each step should be cheap when there is nothing to do).
--
-- SECURITY DEFINER with a pinned search_path, owned by the role that migrates:
-- RLS is forced on the tables, so the owner, too, sees only what a policy
-- grants it; the *_expired_* policies (sql/policies/tenancy.sql) let exactly
-- that role read and delete expired rows of every organization. It lives in
-- private, where nothing is granted to minicrm_api by default (app is granted
-- whole, 99_grants.sql), and EXECUTE is granted to no one: only its owner,
-- the server's login role, runs it; a request has no business doing so.
--
-- Expired rows already behave as absent (the API compares expires_at with
-- now()), so how late a deletion runs changes only the table's size.
--
-- The trash step erases at most one batch (1,000 records: tasks, deals, then
-- contacts; 44_trash.sql) of what has been in the trash longer than
-- p_trash_retention_days (TRASH_RETENTION_DAYS), so a round never holds many
-- locks; the worker runs another round at once while the trash step erased
-- anything.
--
-- The events step deletes at most 10,000 events older than
-- p_event_retention_days (EVENT_RETENTION_DAYS; 60_events.sql), and the
-- worker goes on while it deleted anything, too.
DROP FUNCTION IF EXISTS private.run_maintenance();
DROP FUNCTION IF EXISTS private.run_maintenance(int);
DROP FUNCTION IF EXISTS private.trash_purge_batch();

CREATE OR REPLACE FUNCTION private.run_maintenance(p_trash_retention_days int DEFAULT 30,
    p_event_retention_days int DEFAULT 30, OUT step text, OUT deleted bigint)
  RETURNS SETOF record
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
BEGIN
  step := 'idempotency_keys';
  DELETE FROM crm.idempotency_keys WHERE expires_at < now();
  GET DIAGNOSTICS deleted = ROW_COUNT;
  RETURN NEXT;

  step := 'user_idempotency_keys';
  DELETE FROM crm.user_idempotency_keys WHERE expires_at < now();
  GET DIAGNOSTICS deleted = ROW_COUNT;
  RETURN NEXT;

  step := 'trash';
  deleted := private.purge_expired_trash(make_interval(days => p_trash_retention_days), 1000);
  RETURN NEXT;

  step := 'events';
  deleted := private.purge_expired_events(make_interval(days => p_event_retention_days), 10000);
  RETURN NEXT;

  -- Finished webhook deliveries (and their attempts, by the cascade) go
  -- with the events they delivered: kept as long as the feed keeps events.
  -- Pending ones stay whatever their age (a retry is still due).
  step := 'webhook_deliveries';
  DELETE FROM crm.webhook_deliveries d
   WHERE d.ctid = ANY (ARRAY(SELECT f.ctid FROM crm.webhook_deliveries f
                              WHERE f.status <> 'pending'
                                AND f.created_at < now() - make_interval(days => p_event_retention_days)
                              ORDER BY f.created_at LIMIT 10000));
  GET DIAGNOSTICS deleted = ROW_COUNT;
  RETURN NEXT;
END
$$;
