-- Tenancy. Applied on every migrate: each policy is dropped and created again.
-- Policies decide only *which organization's rows* a transaction can touch;
-- role rules live in the rule triggers (sql/functions) so they answer with
-- precise errors. A transaction without context sees and writes nothing.

-- organizations: the current one, plus those the acting user belongs to
-- (for GET /organizations/me) or is invited to (GET /invitations names them).
DROP POLICY IF EXISTS organizations_visible ON crm.organizations;
CREATE POLICY organizations_visible ON crm.organizations FOR SELECT
  USING (id = (SELECT app.org_id())
         OR id IN (SELECT m.organization_id FROM crm.organization_members m
                    WHERE m.user_id = (SELECT app.user_id()))
         OR id IN (SELECT i.organization_id FROM crm.invitations i
                    WHERE i.email_key = (SELECT app.user_email_key()) AND i.status = 'pending'));
DROP POLICY IF EXISTS organizations_insert ON crm.organizations;
CREATE POLICY organizations_insert ON crm.organizations FOR INSERT
  WITH CHECK (id = (SELECT app.org_id()));
DROP POLICY IF EXISTS organizations_update ON crm.organizations;
CREATE POLICY organizations_update ON crm.organizations FOR UPDATE
  USING (id = (SELECT app.org_id())) WITH CHECK (id = (SELECT app.org_id()));
DROP POLICY IF EXISTS organizations_delete ON crm.organizations;
CREATE POLICY organizations_delete ON crm.organizations FOR DELETE
  USING (id = (SELECT app.org_id()));

-- organization_members: the current organization's, plus the acting user's own
-- memberships (how app.act_as resolves the role).
DROP POLICY IF EXISTS organization_members_visible ON crm.organization_members;
CREATE POLICY organization_members_visible ON crm.organization_members FOR SELECT
  USING (organization_id = (SELECT app.org_id()) OR user_id = (SELECT app.user_id()));
DROP POLICY IF EXISTS organization_members_insert ON crm.organization_members;
CREATE POLICY organization_members_insert ON crm.organization_members FOR INSERT
  WITH CHECK (organization_id = (SELECT app.org_id()));
DROP POLICY IF EXISTS organization_members_update ON crm.organization_members;
CREATE POLICY organization_members_update ON crm.organization_members FOR UPDATE
  USING (organization_id = (SELECT app.org_id())) WITH CHECK (organization_id = (SELECT app.org_id()));
DROP POLICY IF EXISTS organization_members_delete ON crm.organization_members;
CREATE POLICY organization_members_delete ON crm.organization_members FOR DELETE
  USING (organization_id = (SELECT app.org_id()));

-- invitations: the current organization's, plus those addressed to the
-- acting user (matched by app.email_key), who is not a member and acts in no
-- organization: reading, accepting and declining them. Which changes are
-- allowed to whom is the invitations_guard trigger's business.
DROP POLICY IF EXISTS invitations_visible ON crm.invitations;
CREATE POLICY invitations_visible ON crm.invitations FOR SELECT
  USING (organization_id = (SELECT app.org_id()) OR email_key = (SELECT app.user_email_key()));
DROP POLICY IF EXISTS invitations_insert ON crm.invitations;
CREATE POLICY invitations_insert ON crm.invitations FOR INSERT
  WITH CHECK (organization_id = (SELECT app.org_id()));
DROP POLICY IF EXISTS invitations_update ON crm.invitations;
CREATE POLICY invitations_update ON crm.invitations FOR UPDATE
  USING (organization_id = (SELECT app.org_id()) OR email_key = (SELECT app.user_email_key()))
  WITH CHECK (organization_id = (SELECT app.org_id()) OR email_key = (SELECT app.user_email_key()));
DROP POLICY IF EXISTS invitations_delete ON crm.invitations;
CREATE POLICY invitations_delete ON crm.invitations FOR DELETE
  USING (organization_id = (SELECT app.org_id()));

-- Plain tenant tables: exactly the current organization, for every command.
DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['contacts', 'contact_search_words', 'deals', 'tasks', 'activities', 'deal_totals', 'deal_totals_delta',
                           'pipelines', 'pipeline_stages', 'deal_created_days', 'deal_created_days_delta',
                           'deal_stage_history', 'stage_stays_done', 'stage_stays_open', 'deal_closes', 'velocity_delta',
                           'events', 'webhooks', 'webhook_deliveries', 'webhook_attempts'] LOOP
    EXECUTE format('DROP POLICY IF EXISTS %I ON crm.%I', t || '_tenant', t);
    EXECUTE format(
      'CREATE POLICY %I ON crm.%I FOR ALL USING (organization_id = (SELECT app.org_id())) '
      'WITH CHECK (organization_id = (SELECT app.org_id()))', t || '_tenant', t);
  END LOOP;
END
$$;

-- users: yourself and the people you share the current organization with.
DROP POLICY IF EXISTS users_visible ON crm.users;
CREATE POLICY users_visible ON crm.users FOR SELECT
  USING (id = (SELECT app.user_id())
         OR id IN (SELECT m.user_id FROM crm.organization_members m
                    WHERE m.organization_id = (SELECT app.org_id())));

-- Idempotency keys: the acting user's own, in the current organization
-- (crm.idempotency_keys) or with no organization (crm.user_idempotency_keys).
-- Another member of the organization never sees or replays them.
DROP POLICY IF EXISTS idempotency_keys_own ON crm.idempotency_keys;
CREATE POLICY idempotency_keys_own ON crm.idempotency_keys FOR ALL
  USING (organization_id = (SELECT app.org_id()) AND user_id = (SELECT app.user_id()))
  WITH CHECK (organization_id = (SELECT app.org_id()) AND user_id = (SELECT app.user_id()));
DROP POLICY IF EXISTS user_idempotency_keys_own ON crm.user_idempotency_keys;
CREATE POLICY user_idempotency_keys_own ON crm.user_idempotency_keys FOR ALL
  USING (user_id = (SELECT app.user_id())) WITH CHECK (user_id = (SELECT app.user_id()));

-- The cleanup (private.run_maintenance, SECURITY DEFINER, owned by the role that
-- migrates) deletes expired keys of every organization with no context. RLS
-- is forced, so the owner obeys it too: these policies let that role, and no
-- other, read and delete expired rows. (A superuser bypasses RLS anyway.)
DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['idempotency_keys', 'user_idempotency_keys'] LOOP
    EXECUTE format('DROP POLICY IF EXISTS %I ON crm.%I', t || '_expired_read', t);
    EXECUTE format('CREATE POLICY %I ON crm.%I FOR SELECT TO %I USING (expires_at < now())',
                   t || '_expired_read', t, current_user);
    EXECUTE format('DROP POLICY IF EXISTS %I ON crm.%I', t || '_expired_delete', t);
    EXECUTE format('CREATE POLICY %I ON crm.%I FOR DELETE TO %I USING (expires_at < now())',
                   t || '_expired_delete', t, current_user);
  END LOOP;
END
$$;

-- The webhook delivery worker (src/workers/webhooks.rs) and the fan-out
-- trigger serve every organization with no request context, through
-- SECURITY DEFINER functions owned by the role that migrates
-- (sql/functions/62_webhooks.sql): these policies let that role, and no
-- other, reach every organization's webhooks, deliveries and attempts. A
-- request runs as minicrm_api and never gets them.
DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['webhooks', 'webhook_deliveries', 'webhook_attempts'] LOOP
    EXECUTE format('DROP POLICY IF EXISTS %I ON crm.%I', t || '_worker', t);
    EXECUTE format('CREATE POLICY %I ON crm.%I FOR ALL TO %I USING (true) WITH CHECK (true)',
                   t || '_worker', t, current_user);
  END LOOP;
END
$$;

-- Events (SPEC §13, sql/functions/60_events.sql). Only the event triggers
-- write them: SECURITY DEFINER functions owned by the role that migrates,
-- which this policy lets insert an event of any organization, whatever the
-- context (a superuser's change in psql with none, a deferred pipeline
-- event at commit after the context moved on). The request role has no
-- INSERT privilege on crm.events at all. The retention
-- (private.purge_expired_events) deletes the events that occurred before
-- the instant it sets in app.events_expire_before, in every organization,
-- with no context; unset, these two policies match nothing.
DROP POLICY IF EXISTS events_definer_insert ON crm.events;
DO $$
BEGIN
  EXECUTE format('CREATE POLICY events_definer_insert ON crm.events FOR INSERT TO %I WITH CHECK (true)', current_user);
  EXECUTE 'DROP POLICY IF EXISTS events_expired_read ON crm.events';
  EXECUTE format('CREATE POLICY events_expired_read ON crm.events FOR SELECT TO %I '
                 'USING (occurred_at < nullif(current_setting(''app.events_expire_before'', true), '''')::timestamptz)',
                 current_user);
  -- The announcer (private.events_announce, sql/functions/61_feed.sql)
  -- reads the events of every organization from the position it sets in
  -- app.events_announce_after, for one statement; unset, nothing.
  EXECUTE 'DROP POLICY IF EXISTS events_announcer_read ON crm.events';
  EXECUTE format('CREATE POLICY events_announcer_read ON crm.events FOR SELECT TO %I '
                 'USING (tx >= nullif(current_setting(''app.events_announce_after'', true), '''')::xid8)',
                 current_user);
  -- An organization's deletion deletes its events
  -- (private.organizations_events_delete, sql/functions/60_events.sql): the
  -- events of the organizations being deleted in this transaction
  -- (private.events_off), whatever the context.
  EXECUTE 'DROP POLICY IF EXISTS events_organization_deleted_read ON crm.events';
  EXECUTE format('CREATE POLICY events_organization_deleted_read ON crm.events FOR SELECT TO %I '
                 'USING (private.events_off(organization_id))', current_user);
  EXECUTE 'DROP POLICY IF EXISTS events_organization_deleted ON crm.events';
  EXECUTE format('CREATE POLICY events_organization_deleted ON crm.events FOR DELETE TO %I '
                 'USING (private.events_off(organization_id))', current_user);
  EXECUTE 'DROP POLICY IF EXISTS events_expired_delete ON crm.events';
  EXECUTE format('CREATE POLICY events_expired_delete ON crm.events FOR DELETE TO %I '
                 'USING (occurred_at < nullif(current_setting(''app.events_expire_before'', true), '''')::timestamptz)',
                 current_user);
END
$$;
