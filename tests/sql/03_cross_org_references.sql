-- R8 / SPEC §2: a contact, deal, task or activity can never reference a
-- record of another organization, and an owner_id is always a member of the
-- record's organization. The database itself makes it impossible (composite
-- foreign keys on (organization_id, ...)), so the checks hold even for a
-- superuser, who bypasses RLS: every statement below runs as the superuser
-- with no context.
BEGIN;
SELECT plan(19);

-- Fixture. Ids: first digit = organization (a/b); suffix 000 organization,
-- 001 user, c01 contact, d01 deal, 701 task. Bob is a member of B only.
INSERT INTO crm.users (id, email, hashed_password, name) VALUES
  ('a0000000-0000-0000-0000-000000000001', 'ann@xref.test', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'Ann'),
  ('b0000000-0000-0000-0000-000000000001', 'bob@xref.test', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'Bob');
INSERT INTO crm.organizations (id, name) VALUES
  ('a0000000-0000-0000-0000-000000000000', 'A'),
  ('b0000000-0000-0000-0000-000000000000', 'B');
INSERT INTO crm.organization_members (organization_id, user_id, role) VALUES
  ('a0000000-0000-0000-0000-000000000000', 'a0000000-0000-0000-0000-000000000001', 'owner'),
  ('b0000000-0000-0000-0000-000000000000', 'b0000000-0000-0000-0000-000000000001', 'owner');
INSERT INTO crm.contacts (organization_id, id, owner_id, name) VALUES
  ('a0000000-0000-0000-0000-000000000000', 'a0000000-0000-0000-0000-000000000c01', 'a0000000-0000-0000-0000-000000000001', 'Contact A'),
  ('b0000000-0000-0000-0000-000000000000', 'b0000000-0000-0000-0000-000000000c01', 'b0000000-0000-0000-0000-000000000001', 'Contact B');
INSERT INTO crm.deals (organization_id, id, contact_id, owner_id, title, amount, currency) VALUES
  ('a0000000-0000-0000-0000-000000000000', 'a0000000-0000-0000-0000-000000000d01', 'a0000000-0000-0000-0000-000000000c01',
   'a0000000-0000-0000-0000-000000000001', 'Deal A', 100, 'EUR'),
  ('b0000000-0000-0000-0000-000000000000', 'b0000000-0000-0000-0000-000000000d01', 'b0000000-0000-0000-0000-000000000c01',
   'b0000000-0000-0000-0000-000000000001', 'Deal B', 200, 'USD');
INSERT INTO crm.tasks (organization_id, id, deal_id, title, due_date) VALUES
  ('a0000000-0000-0000-0000-000000000000', 'a0000000-0000-0000-0000-000000000701', 'a0000000-0000-0000-0000-000000000d01',
   'Task A', current_date + 7);

-- These run with full power: RLS is not what stops them.
SELECT ok((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), 'the statements below run as a superuser (no RLS)');

-- Contacts: the owner must be a member of the contact's organization.
SELECT lives_ok($$ INSERT INTO crm.contacts (organization_id, owner_id, name)
                   VALUES ('a0000000-0000-0000-0000-000000000000', 'a0000000-0000-0000-0000-000000000001', 'ok') $$,
  'control: a contact in A owned by a member of A is accepted');
SELECT throws_ok($$ INSERT INTO crm.contacts (organization_id, owner_id, name)
                    VALUES ('a0000000-0000-0000-0000-000000000000', 'b0000000-0000-0000-0000-000000000001', 'x') $$,
  '23503', 'insert or update on table "contacts" violates foreign key constraint "contacts_owner_id_not_member"',
  'a contact in A owned by a non-member of A (a member of B) is rejected');
SELECT throws_ok($$ UPDATE crm.contacts SET owner_id = 'b0000000-0000-0000-0000-000000000001'
                    WHERE id = 'a0000000-0000-0000-0000-000000000c01' $$,
  '23503', 'insert or update on table "contacts" violates foreign key constraint "contacts_owner_id_not_member"',
  'a contact of A cannot be handed to a non-member of A');

-- Deals: the contact must be in the deal's organization, the owner a member of it.
SELECT lives_ok($$ INSERT INTO crm.deals (organization_id, contact_id, owner_id, title, amount, currency)
                   VALUES ('a0000000-0000-0000-0000-000000000000', 'a0000000-0000-0000-0000-000000000c01',
                           'a0000000-0000-0000-0000-000000000001', 'ok', 1, 'EUR') $$,
  'control: a deal in A on A''s contact, owned by a member of A, is accepted');
SELECT throws_ok($$ INSERT INTO crm.deals (organization_id, contact_id, owner_id, title, amount, currency)
                    VALUES ('a0000000-0000-0000-0000-000000000000', 'b0000000-0000-0000-0000-000000000c01',
                            'a0000000-0000-0000-0000-000000000001', 'x', 1, 'EUR') $$,
  '23503', 'insert or update on table "deals" violates foreign key constraint "deals_contact_id_not_found"',
  'a deal in A on B''s contact is rejected');
SELECT throws_ok($$ UPDATE crm.deals SET contact_id = 'b0000000-0000-0000-0000-000000000c01'
                    WHERE id = 'a0000000-0000-0000-0000-000000000d01' $$,
  '23503', 'insert or update on table "deals" violates foreign key constraint "deals_contact_id_not_found"',
  'a deal of A cannot be re-pointed at B''s contact');
SELECT throws_ok($$ INSERT INTO crm.deals (organization_id, contact_id, owner_id, title, amount, currency)
                    VALUES ('a0000000-0000-0000-0000-000000000000', 'a0000000-0000-0000-0000-000000000c01',
                            'b0000000-0000-0000-0000-000000000001', 'x', 1, 'EUR') $$,
  '23503', 'insert or update on table "deals" violates foreign key constraint "deals_owner_id_not_member"',
  'a deal in A owned by a non-member of A is rejected');
SELECT throws_ok($$ UPDATE crm.deals SET owner_id = 'b0000000-0000-0000-0000-000000000001'
                    WHERE id = 'a0000000-0000-0000-0000-000000000d01' $$,
  '23503', 'insert or update on table "deals" violates foreign key constraint "deals_owner_id_not_member"',
  'a deal of A cannot be handed to a non-member of A');

-- Tasks: the deal must be in the task's organization.
SELECT lives_ok($$ INSERT INTO crm.tasks (organization_id, deal_id, title, due_date)
                   VALUES ('a0000000-0000-0000-0000-000000000000', 'a0000000-0000-0000-0000-000000000d01', 'ok', current_date + 1) $$,
  'control: a task in A on A''s deal is accepted');
SELECT throws_ok($$ INSERT INTO crm.tasks (organization_id, deal_id, title, due_date)
                    VALUES ('a0000000-0000-0000-0000-000000000000', 'b0000000-0000-0000-0000-000000000d01', 'x', current_date + 1) $$,
  '23503', 'insert or update on table "tasks" violates foreign key constraint "tasks_deal_id_not_found"',
  'a task in A on B''s deal is rejected');
SELECT throws_ok($$ UPDATE crm.tasks SET deal_id = 'b0000000-0000-0000-0000-000000000d01'
                    WHERE id = 'a0000000-0000-0000-0000-000000000701' $$,
  '23503', 'insert or update on table "tasks" violates foreign key constraint "tasks_deal_id_not_found"',
  'a task of A cannot be moved onto B''s deal');

-- Activities: the deal must be in the activity's organization.
SELECT lives_ok($$ INSERT INTO crm.activities (organization_id, deal_id, type, payload)
                   VALUES ('a0000000-0000-0000-0000-000000000000', 'a0000000-0000-0000-0000-000000000d01', 'comment', '{"text": "ok"}') $$,
  'control: an activity in A on A''s deal is accepted');
SELECT throws_ok($$ INSERT INTO crm.activities (organization_id, deal_id, type, payload)
                    VALUES ('a0000000-0000-0000-0000-000000000000', 'b0000000-0000-0000-0000-000000000d01', 'comment', '{"text": "x"}') $$,
  '23503', 'insert or update on table "activities" violates foreign key constraint "activities_deal_id_not_found"',
  'an activity in A on B''s deal is rejected');

-- Moving a record into B while its references stay in A is just as impossible.
SELECT throws_ok($$ UPDATE crm.deals SET organization_id = 'b0000000-0000-0000-0000-000000000000'
                    WHERE id = 'a0000000-0000-0000-0000-000000000d01' $$,
  '23503', NULL, 'a deal of A cannot be moved into B (its contact and owner are A''s)');
SELECT throws_ok($$ UPDATE crm.tasks SET organization_id = 'b0000000-0000-0000-0000-000000000000'
                    WHERE id = 'a0000000-0000-0000-0000-000000000701' $$,
  '23503', 'insert or update on table "tasks" violates foreign key constraint "tasks_deal_id_not_found"',
  'a task of A cannot be moved into B (its deal is A''s)');
SELECT throws_ok($$ UPDATE crm.contacts SET organization_id = 'b0000000-0000-0000-0000-000000000000'
                    WHERE id = 'a0000000-0000-0000-0000-000000000c01' $$,
  '23503', NULL, 'a contact of A cannot be moved into B (its owner and deals are A''s)');
-- A membership of B cannot be turned into one of A behind the records' back.
SELECT throws_ok($$ UPDATE crm.organization_members SET organization_id = 'a0000000-0000-0000-0000-000000000000'
                    WHERE user_id = 'b0000000-0000-0000-0000-000000000001' $$,
  'MC400', 'a membership''s organization and user cannot change', 'a membership cannot move to another organization');

-- Nothing above slipped through: B's records are still referenced only from B.
SELECT is((SELECT count(*)::int FROM crm.deals d JOIN crm.contacts c ON c.id = d.contact_id
            WHERE d.organization_id <> c.organization_id), 0, 'no deal references a contact of another organization');

SELECT * FROM finish();
ROLLBACK;
