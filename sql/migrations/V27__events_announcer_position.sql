-- What an event costs its write (issue #13, after V26).
--
-- The webhooks' fan-out leaves the write path: the statement trigger on
-- crm.events that wrote each event's deliveries in the writing transaction
-- (96 k instructions per W4 request, most of it the transition table's
-- capture of every event row) is replaced by the announcer
-- (private.events_announce, sql/functions/61_feed.sql), which writes the
-- deliveries of the events committed since its previous round in its own
-- transaction, together with its position, kept here: one row for the
-- database, which only moves forward.
--
-- The position starts at the horizon of this migration: the events before
-- it had their deliveries written by the trigger, which is dropped when
-- sql/functions is applied after this file (62_webhooks.sql); a delivery
-- both would write is written once (ON CONFLICT on
-- webhook_deliveries_event_taken).
CREATE TABLE private.events_announcer (
  one_row  boolean PRIMARY KEY DEFAULT true CONSTRAINT events_announcer_one_row CHECK (one_row),
  -- The transactions from this one (inclusive) up are not yet announced:
  -- the previous round's horizon.
  position xid8 NOT NULL
);
INSERT INTO private.events_announcer (position) VALUES (pg_snapshot_xmin(pg_current_snapshot()));
