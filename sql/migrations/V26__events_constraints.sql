-- What an event costs its write (issue #13: at most 15 % on W3 and W4;
-- bench/w4events-notes.md counted the pieces in instructions per request).
-- V27 takes the webhooks' fan-out off the write path.
--
-- crm.events loses its two foreign keys and three CHECKs. Only the event
-- triggers write events (SECURITY DEFINER; the request role has no
-- INSERT), from the row they were fired for, so the constraints checked
-- what the triggers' own text already guarantees, on every write: two
-- foreign-key queries (88 k instructions per W4 request, and a KEY SHARE
-- lock on the organization's and the user's rows, which 32 concurrent
-- writers of one organization turn into multixacts) and three expression
-- checks (91 k). What the keys did is now done otherwise:
-- - ON DELETE CASCADE from the organization: the organization's delete
--   trigger deletes its events (private.organizations_events_delete,
--   sql/functions/60_events.sql), under the policies
--   events_organization_deleted(_read) (sql/policies/tenancy.sql);
-- - ON DELETE SET NULL from the acting user: actor_id now keeps the id of a
--   user deleted later (the history says who acted; README "Events and
--   record history"). Setting it to null also cost a full scan of the
--   events (no index leads with actor_id).
-- tests/sql/45_events.sql checks what the triggers write instead.
ALTER TABLE crm.events
  DROP CONSTRAINT events_organization_id_not_found,
  DROP CONSTRAINT events_actor_id_not_found,
  DROP CONSTRAINT events_type_invalid,
  DROP CONSTRAINT events_resource_type_invalid,
  DROP CONSTRAINT events_data_invalid;

