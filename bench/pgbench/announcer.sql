-- The announcer's round (src/workers/announcer.rs, private.events_announce):
-- run by `bench/run events` with one client at 20 rounds a second beside the
-- measured writers, as a server would; the position between rounds is kept
-- in private.events_announcer.
SELECT delivered FROM private.events_announce(p_first => false);
