-- The announcer's round (src/workers/announcer.rs, private.events_announce):
-- run by `bench/run events` with one client at 20 rounds a second beside the
-- measured writers, as a server would; :after carries each round's horizon
-- to the next (pgbench keeps a client's variables across transactions).
SELECT horizon::text AS after FROM private.events_announce(p_after => :after::text::xid8) \gset
