-- The request context lives exactly one transaction: on a pooled connection
-- the next request (the next transaction) must not inherit the previous
-- user, organization, role or database role.
--
-- Deliberately no outer BEGIN/ROLLBACK: the file runs several transactions
-- on one connection. pgTAP's plan state is in temp tables, created and
-- committed by plan() below, so it survives them. What each transaction saw
-- while its context was active is captured into psql variables (\gset) and
-- asserted afterwards, as the superuser (minicrm_api may not execute pgTAP).
-- Nothing is left behind: transaction 1 rolls back, and transaction 2 deletes
-- its rows again before it commits.
SELECT plan(16);

-- Transaction 1 (ends in ROLLBACK): a member with a full context.
BEGIN;
INSERT INTO crm.users (id, email, hashed_password, name) VALUES
  ('e0000000-0000-0000-0000-000000000001', 'eve@lifetime.test', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'Eve');
INSERT INTO crm.organizations (id, name) VALUES ('e0000000-0000-0000-0000-000000000000', 'E');
INSERT INTO crm.organization_members (organization_id, user_id, role) VALUES
  ('e0000000-0000-0000-0000-000000000000', 'e0000000-0000-0000-0000-000000000001', 'admin');
SELECT app.act_as('e0000000-0000-0000-0000-000000000001', 'e0000000-0000-0000-0000-000000000000') AS t1_acted \gset
SELECT current_user AS t1_user, current_setting('app.user_id') AS t1_uid,
       current_setting('app.org_id') AS t1_org, current_setting('app.role') AS t1_role,
       (SELECT count(*) FROM crm.organizations) AS t1_orgs_visible \gset
ROLLBACK;

-- Control: the context really was in force inside transaction 1 ...
SELECT is(:'t1_user'::text, 'minicrm_api', 'inside transaction 1, act_as had switched to minicrm_api');
SELECT is(:'t1_uid'::text || ' ' || :'t1_org' || ' ' || :'t1_role',
          'e0000000-0000-0000-0000-000000000001 e0000000-0000-0000-0000-000000000000 admin',
          'inside transaction 1, app.user_id, app.org_id and app.role were set');
SELECT is(:'t1_orgs_visible'::int, 1, 'inside transaction 1, the context made its organization visible');
-- ... and is gone in the next transaction on the same connection.
SELECT is(current_user::text, session_user::text, 'after ROLLBACK: back to the login role');
SELECT is(app.user_id(), NULL, 'after ROLLBACK: no acting user');
SELECT is(app.org_id(), NULL, 'after ROLLBACK: no organization');
SELECT is(app.role(), NULL, 'after ROLLBACK: no member role');

-- Transaction 2 (ends in COMMIT, as a successful request does). Its rows are
-- removed before the commit (as the superuser, after RESET ROLE) and the
-- request role is set again, so the commit happens with the full context active.
BEGIN;
INSERT INTO crm.users (id, email, hashed_password, name) VALUES
  ('e0000000-0000-0000-0000-000000000002', 'fay@lifetime.test', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'Fay');
INSERT INTO crm.organizations (id, name) VALUES ('e0000000-0000-0000-0000-00000000000f', 'F');
INSERT INTO crm.organization_members (organization_id, user_id, role) VALUES
  ('e0000000-0000-0000-0000-00000000000f', 'e0000000-0000-0000-0000-000000000002', 'owner');
SELECT app.act_as('e0000000-0000-0000-0000-000000000002', 'e0000000-0000-0000-0000-00000000000f') AS t2_acted \gset
RESET ROLE;
DELETE FROM crm.organizations WHERE id = 'e0000000-0000-0000-0000-00000000000f';
DELETE FROM crm.users WHERE id = 'e0000000-0000-0000-0000-000000000002';
SET LOCAL ROLE minicrm_api;
SELECT current_user AS t2_user, current_setting('app.user_id') AS t2_uid,
       current_setting('app.org_id') AS t2_org, current_setting('app.role') AS t2_role \gset
COMMIT;

SELECT is(:'t2_user'::text || ' ' || :'t2_uid' || ' ' || :'t2_org' || ' ' || :'t2_role',
          'minicrm_api e0000000-0000-0000-0000-000000000002 e0000000-0000-0000-0000-00000000000f owner',
          'just before COMMIT of transaction 2, the full context was active');
SELECT is(current_user::text, session_user::text, 'after COMMIT: back to the login role');
SELECT is(app.user_id(), NULL, 'after COMMIT: no acting user');
SELECT is(app.org_id(), NULL, 'after COMMIT: no organization');
SELECT is(app.role(), NULL, 'after COMMIT: no member role');

-- Transaction 3: the bare request role on the same connection (as a request
-- that forgot act_as would run) inherits no setting either.
BEGIN;
SET LOCAL ROLE minicrm_api;
SELECT coalesce(current_setting('app.user_id', true), '') || coalesce(current_setting('app.org_id', true), '')
       || coalesce(current_setting('app.role', true), '') AS t3_settings \gset
COMMIT;
SELECT is(:'t3_settings'::text, '', 'a later transaction as minicrm_api has empty app.user_id, app.org_id and app.role');

-- Statement 4, in autocommit, the way the server calls the API: one statement
-- `SELECT api.<fn>(...) FROM app.act_as($1, $2)` is its own transaction.
SELECT current_user AS t4_user, app.user_id() AS t4_uid
  FROM app.act_as('e0000000-0000-0000-0000-000000000003') \gset
SELECT is(:'t4_user'::text || ' ' || :'t4_uid', 'minicrm_api e0000000-0000-0000-0000-000000000003',
          'within the one-statement request, the context was active');
SELECT is(current_user::text || coalesce(app.user_id()::text, ''), session_user::text,
          'the next statement on the connection has neither the role nor the user');

-- Nothing was left behind.
SELECT is((SELECT count(*)::int FROM crm.users WHERE id::text LIKE 'e0000000-%'), 0, 'no test data remains');

SELECT * FROM finish();
