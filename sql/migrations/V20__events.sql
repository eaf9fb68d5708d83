-- The change feed (SPEC §13): one row per committed change to a contact,
-- deal, task, activity, pipeline or member, written by triggers in the same
-- transaction as the change (sql/functions/60_events.sql), so a rolled-back
-- write leaves no event and every committed one has its event. The feed,
-- the record history, the live stream and the webhooks all read this table.
--
-- Order and the feed's cursor: `tx` is the writing transaction's id
-- (pg_current_xact_id(), 64 bits, never wraps) and `seq` orders the events of
-- one transaction. Ids are handed out when a transaction starts writing, not
-- when it commits, so a reader may see tx 101 before tx 100 commits. The feed
-- therefore only returns events of transactions older than the oldest one
-- still running (pg_snapshot_xmin(pg_current_snapshot())): below that
-- horizon no event can appear any more, so a cursor (tx, seq) that only moves
-- forward under it sees every committed event exactly once.
CREATE TABLE crm.events (
  organization_id uuid NOT NULL CONSTRAINT events_organization_id_not_found
                    REFERENCES crm.organizations (id) ON DELETE CASCADE,
  id              uuid NOT NULL DEFAULT gen_random_uuid(),
  tx              xid8 NOT NULL DEFAULT pg_current_xact_id(),
  seq             bigint GENERATED ALWAYS AS IDENTITY,
  -- contact.created, deal.updated, member.removed, … (SPEC §13).
  type            text NOT NULL CONSTRAINT events_type_invalid CHECK (type ~ '^[a-z_]+\.[a-z_]+$'),
  occurred_at     timestamptz NOT NULL DEFAULT now(),
  -- The acting user (app.user_id()); null for changes made with no user.
  actor_id        uuid CONSTRAINT events_actor_id_not_found REFERENCES crm.users (id) ON DELETE SET NULL,
  -- contact, deal, task, activity, pipeline, member: the first half of type.
  resource_type   text NOT NULL CONSTRAINT events_resource_type_invalid CHECK (type LIKE resource_type || '.%'),
  resource_id     uuid NOT NULL,
  -- {"object": …, "previous": …} as SPEC §13 says.
  data            jsonb NOT NULL CONSTRAINT events_data_invalid CHECK (jsonb_typeof(data) = 'object'),
  -- The key is the position, which is what the feed reads in order: an
  -- organization's events in (tx, seq) order. Not (organization_id, id):
  -- a random UUID as the key would put every insert on a random leaf page
  -- of a second index, the costliest of an event's index entries; nothing
  -- looks an event up by its id (seq is unique on its own, so is the key).
  CONSTRAINT events_pkey PRIMARY KEY (organization_id, tx, seq)
);
-- A record's history, newest first (read backwards).
CREATE INDEX events_by_resource ON crm.events (organization_id, resource_id, tx, seq);
-- The retention deletes old events of every organization at once; rows are
-- appended in roughly occurred_at order, so a BRIN index serves that delete
-- at almost no cost per insert.
CREATE INDEX events_by_time ON crm.events USING brin (occurred_at);

ALTER TABLE crm.events ENABLE ROW LEVEL SECURITY;
ALTER TABLE crm.events FORCE ROW LEVEL SECURITY;

-- Every role of the organization reads its feed. Only the event triggers
-- (SECURITY DEFINER) write: the request role has no INSERT, so no client
-- can forge an event.
GRANT SELECT ON crm.events TO minicrm_api;
