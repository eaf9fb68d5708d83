-- R2: a contact that has deals (in any stage or status, not in the trash) cannot be deleted:
-- 409 (MC409 contact_has_deals), whoever asks, through the API or directly.
-- A contact without deals can be deleted.
BEGIN;
SELECT plan(20);
\ir pipeline_fixture.psql

-- A second contact of Max whose only deal is finished (lost / closed).
\set c_old 'a0000000-0000-0000-0000-000000000e04'
\set d_old 'a0000000-0000-0000-0000-000000000e14'
INSERT INTO crm.contacts (organization_id, id, owner_id, name) VALUES (:'org_a', :'c_old', :'max', 'Old client');
INSERT INTO crm.deals (organization_id, id, contact_id, owner_id, title, amount, currency, status, stage)
VALUES (:'org_a', :'d_old', :'c_old', :'max', 'Old deal', 50, 'EUR', 'lost', 'closed');

-- Refused: the owner of the contact (a member) deletes it through the API.
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.contacts_delete(%L)', :'c_max')),
  'MC409', 'the contact has deals and cannot be deleted', 'api.contacts_delete of a contact with an open deal is refused');
SELECT is(pg_temp.try_as(:'max', :'org_a', format('SELECT api.contacts_delete(%L)', :'c_max')),
  'MC409 contact_has_deals', '... with the machine code contact_has_deals');
-- Whatever the deal's status or stage.
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.contacts_delete(%L)', :'c_old')),
  'MC409', 'the contact has deals and cannot be deleted', 'a contact whose only deal is lost / closed cannot be deleted either');
UPDATE crm.deals SET status = 'won', stage = 'closed' WHERE id = :'d_mia';
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'mia', :'org_a',
         format('SELECT api.contacts_delete(%L)', :'c_mia')),
  'MC409', 'the contact has deals and cannot be deleted', 'a contact whose deal is won / closed cannot be deleted');
-- Whoever asks: the owner and the admin of the organization are refused too.
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'olga', :'org_a',
         format('SELECT api.contacts_delete(%L)', :'c_max')),
  'MC409', 'the contact has deals and cannot be deleted', 'the owner of the organization cannot delete it either');
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'adam', :'org_a',
         format('SELECT api.contacts_delete(%L)', :'c_adam')),
  'MC409', 'the contact has deals and cannot be deleted', 'an admin cannot delete his own contact that has a deal');
-- A direct DELETE (a DBA in psql under a context), and even with no context.
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'olga', :'org_a',
         format('DELETE FROM crm.contacts WHERE id = %L', :'c_rita')),
  'MC409', 'the contact has deals and cannot be deleted', 'a direct DELETE of a contact with deals is refused');
SELECT throws_ok(format('DELETE FROM crm.contacts WHERE id = %L', :'c_rita'),
  'MC409', 'the contact has deals and cannot be deleted', 'so is one by the superuser with no context');
-- A bulk delete that includes a contact with deals is refused as a whole.
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'olga', :'org_a',
         format('DELETE FROM crm.contacts WHERE organization_id = %L', :'org_a')),
  'MC409', 'the contact has deals and cannot be deleted', 'a bulk DELETE touching contacts with deals is refused');

-- Nothing was deleted by the refused statements.
SELECT is((SELECT count(*)::int FROM crm.contacts WHERE organization_id = :'org_a'), 11,
  'all 11 contacts of A are still there (the dealless ones too)');
SELECT is((SELECT count(*)::int FROM crm.deals WHERE organization_id = :'org_a'), 6, 'all 6 deals of A are still there');

-- Allowed: a contact without deals, through the API ...
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.contacts_delete(%L)', :'f_max')),
  'api.contacts_delete of a contact without deals is allowed');
SELECT is((SELECT count(*)::int FROM crm.contacts WHERE id = :'f_max' AND deleted_at IS NULL), 0, 'the contact without deals is in the trash');
-- ... a contact just created (and given no deal) ...
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         $q$SELECT api.contacts_create('Brand new', 'new@example.com')$q$),
  'a member creates a contact');
SELECT is(pg_temp.exec_as(:'max', :'org_a', $$UPDATE crm.contacts SET deleted_at = now() WHERE name = 'Brand new'$$), 1::bigint,
  'and trashes it again with a direct UPDATE');
-- ... and a contact once its deals are gone.
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.deals_delete(%L)', :'d_old')),
  'the member deletes the finished deal of his old contact');
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.contacts_delete(%L)', :'c_old')),
  'now that it has no deals, the old contact can be deleted');
SELECT is((SELECT count(*)::int FROM crm.contacts WHERE id = :'c_old' AND deleted_at IS NULL), 0,
  'the old contact is in the trash (R2 counts only deals that are not in the trash)');
-- Another organization's contact without deals is not deletable from A: 404.
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'olga', :'org_a',
         format('SELECT api.contacts_delete(%L)', :'f_zed')),
  'MC404', 'contact not found', 'B''s contact without deals cannot be deleted from A (404)');
SELECT is((SELECT count(*)::int FROM crm.contacts WHERE id = :'f_zed'), 1, 'B''s contact is still there');

SELECT * FROM finish();
ROLLBACK;
