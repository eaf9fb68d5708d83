-- R5: a deal's stage cannot move backwards (qualification → proposal →
-- negotiation → closed), except by an owner or admin: 403 (MC403
-- stage_rollback_forbidden) for managers and members. Forward moves, skipping
-- stages, are free for everyone who may change the deal.
BEGIN;
SELECT plan(27);
\ir pipeline_fixture.psql

-- Every deal of A starts in negotiation (moved there by the superuser).
UPDATE crm.deals SET stage = 'negotiation' WHERE organization_id = :'org_a';

-- Refused: a manager, on a member's deal and on her own, through the API and directly.
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'mia', :'org_a',
         format('SELECT api.deals_update(%L, NULL, ''proposal'', NULL, NULL, NULL, NULL, NULL)', :'d_rita')),
  'MC403', 'only an owner or admin may move a deal back from negotiation to proposal',
  'a manager cannot move a member''s deal back (negotiation → proposal)');
SELECT is(pg_temp.try_as(:'mia', :'org_a',
         format('SELECT api.deals_update(%L, NULL, ''proposal'', NULL, NULL, NULL, NULL, NULL)', :'d_rita')),
  'MC403 stage_rollback_forbidden', '... with the machine code stage_rollback_forbidden');
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'mia', :'org_a',
         format('SELECT api.deals_update(%L, NULL, ''qualification'', NULL, NULL, NULL, NULL, NULL)', :'d_mia')),
  'MC403', 'only an owner or admin may move a deal back from negotiation to qualification',
  'a manager cannot move her own deal back either');
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'mia', :'org_a',
         format('UPDATE crm.deals SET stage = ''qualification'' WHERE id = %L', :'d_rita')),
  'MC403', 'only an owner or admin may move a deal back from negotiation to qualification',
  'a direct UPDATE moving a deal back by a manager is refused');
-- Refused: a member, on his own deal.
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.deals_update(%L, NULL, ''qualification'', NULL, NULL, NULL, NULL, NULL)', :'d_max')),
  'MC403', 'only an owner or admin may move a deal back from negotiation to qualification',
  'a member cannot move his own deal back');
SELECT is(pg_temp.try_as(:'max', :'org_a', format('UPDATE crm.deals SET stage = ''proposal'' WHERE id = %L', :'d_max')),
  'MC403 stage_rollback_forbidden', 'nor with a direct UPDATE (MC403 stage_rollback_forbidden)');
-- A step back from closed is a step back too.
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'mia', :'org_a',
         format('SELECT api.deals_update(%L, NULL, ''closed'', NULL, NULL, NULL, NULL, NULL)', :'d_mia')),
  'the manager closes her deal (forward)');
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'mia', :'org_a',
         format('SELECT api.deals_update(%L, NULL, ''negotiation'', NULL, NULL, NULL, NULL, NULL)', :'d_mia')),
  'MC403', 'only an owner or admin may move a deal back from closed to negotiation',
  '... and cannot reopen it (closed → negotiation)');
-- A bulk move that would send any deal back is refused as a whole.
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'mia', :'org_a',
         format('UPDATE crm.deals SET stage = ''negotiation'' WHERE organization_id = %L', :'org_a')),
  'MC403', NULL, 'a manager''s bulk UPDATE that moves one deal back is refused');

-- The refused statements changed nothing and wrote no timeline row.
SELECT is((SELECT string_agg(stage::text, ',' ORDER BY id) FROM crm.deals WHERE organization_id = :'org_a'),
  'negotiation,negotiation,closed,negotiation,negotiation', 'the deals of A are where they were');
SELECT is((SELECT count(*)::int FROM crm.activities WHERE type = 'stage_changed' AND author_id IN (:'mia', :'max')
              AND payload ->> 'to' <> 'closed'), 0,
  'no stage_changed activity was written by the refused moves');

-- Allowed: an admin and the owner move deals back, their own and others'.
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'adam', :'org_a',
         format('SELECT api.deals_update(%L, NULL, ''proposal'', NULL, NULL, NULL, NULL, NULL)', :'d_rita')),
  'an admin moves a member''s deal back (negotiation → proposal)');
SELECT is((SELECT stage::text FROM crm.deals WHERE id = :'d_rita'), 'proposal', 'Rita''s deal is in proposal');
SELECT is((SELECT payload FROM crm.activities WHERE deal_id = :'d_rita' AND type = 'stage_changed' AND author_id = :'adam'),
  '{"from": "negotiation", "to": "proposal"}'::jsonb, '... and the move is on its timeline, by the admin');
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'adam', :'org_a',
         format('SELECT api.deals_update(%L, NULL, ''qualification'', NULL, NULL, NULL, NULL, NULL)', :'d_adam')),
  'an admin moves his own deal back two stages');
SELECT is(pg_temp.exec_as(:'olga', :'org_a', format('UPDATE crm.deals SET stage = ''qualification'' WHERE id = %L', :'d_max')),
  1::bigint, 'the owner moves a member''s deal back with a direct UPDATE');
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'olga', :'org_a',
         format('SELECT api.deals_update(%L, NULL, ''proposal'', NULL, NULL, NULL, NULL, NULL)', :'d_mia')),
  'the owner reopens the manager''s closed deal (closed → proposal)');
SELECT is((SELECT string_agg(stage::text, ',' ORDER BY id) FROM crm.deals WHERE organization_id = :'org_a'),
  'negotiation,qualification,proposal,qualification,proposal', 'the deals of A moved back as asked');

-- Allowed: forward moves, one step or skipping stages, by a member and a manager.
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.deals_update(%L, NULL, ''proposal'', NULL, NULL, NULL, NULL, NULL)', :'d_max')),
  'a member moves his deal one stage forward (qualification → proposal)');
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.deals_update(%L, NULL, ''closed'', NULL, NULL, NULL, NULL, NULL)', :'d_max')),
  'a member skips a stage (proposal → closed)');
SELECT is(pg_temp.exec_as(:'mia', :'org_a', format('UPDATE crm.deals SET stage = ''closed'' WHERE id = %L', :'d_adam')),
  1::bigint, 'a manager skips two stages with a direct UPDATE (qualification → closed)');
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'mia', :'org_a',
         format('SELECT api.deals_update(%L, NULL, ''negotiation'', NULL, NULL, NULL, NULL, NULL)', :'d_rita')),
  'a manager moves a member''s deal forward (proposal → negotiation)');
SELECT is((SELECT string_agg(stage::text, ',' ORDER BY id) FROM crm.deals WHERE organization_id = :'org_a'),
  'negotiation,closed,proposal,closed,negotiation', 'the forward moves took effect');
-- Staying in the same stage is no move: other changes go through.
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.deals_update(%L, NULL, ''closed'', ''Renamed'', NULL, NULL, NULL, NULL)', :'d_max')),
  'a member may send the current stage along with a new title');
SELECT is((SELECT title FROM crm.deals WHERE id = :'d_max'), 'Renamed', 'the title changed');
-- A forward move of a member's deal by a manager writes the timeline row, authored by her.
SELECT is((SELECT payload FROM crm.activities WHERE deal_id = :'d_rita' AND type = 'stage_changed' AND author_id = :'mia'),
  '{"from": "proposal", "to": "negotiation"}'::jsonb, 'the manager''s forward move is on the timeline');
-- A member still cannot move a closed deal back after all this.
SELECT is(pg_temp.try_as(:'max', :'org_a', format('UPDATE crm.deals SET stage = ''negotiation'' WHERE id = %L', :'d_max')),
  'MC403 stage_rollback_forbidden', 'a member cannot reopen his closed deal');

SELECT * FROM finish();
ROLLBACK;
