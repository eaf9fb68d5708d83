-- Invitations (SPEC §16): nobody becomes a member of an organization without
-- saying yes. An admin invites an email address with a role; the person with
-- that address (matched through app.email_key, whenever they register)
-- accepts or declines. Expiry is by expires_at: an expired invitation stays
-- 'pending' in the table and is answered as gone.
CREATE TYPE crm.invitation_status AS ENUM ('pending', 'accepted', 'declined', 'revoked');

CREATE TABLE crm.invitations (
  organization_id uuid NOT NULL REFERENCES crm.organizations (id) ON DELETE CASCADE,
  id              uuid NOT NULL DEFAULT gen_random_uuid(),
  email           text NOT NULL CONSTRAINT invitations_email_invalid CHECK (length(email) <= 254 AND email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
  -- app.email_key(email), kept by the invitations_guard trigger (stored
  -- rather than generated, so that the rows keep the key they were matched
  -- by). A migration that changes app.email_key must recompute this column
  -- along with users_email_taken.
  email_key       text NOT NULL,
  role            crm.member_role NOT NULL,
  status          crm.invitation_status NOT NULL DEFAULT 'pending',
  invited_by      uuid REFERENCES crm.users (id) ON DELETE SET NULL,
  expires_at      timestamptz NOT NULL DEFAULT now() + interval '7 days',
  created_at      timestamptz NOT NULL DEFAULT now(),
  -- When and by whom it was accepted, declined or revoked.
  decided_at      timestamptz,
  decided_by      uuid REFERENCES crm.users (id) ON DELETE SET NULL,
  PRIMARY KEY (organization_id, id),
  CONSTRAINT invitations_expires_at_invalid CHECK (expires_at > created_at),
  CONSTRAINT invitations_decided_at_invalid CHECK ((status = 'pending') = (decided_at IS NULL))
);
-- One pending invitation per organization and address: inviting again
-- replaces it (the trigger revokes the old one first).
CREATE UNIQUE INDEX invitations_email_taken ON crm.invitations (organization_id, email_key) WHERE status = 'pending';
-- The admins' list (newest first) and the rate limit (created in the last hour).
CREATE INDEX invitations_by_created ON crm.invitations (organization_id, created_at, id);
-- The invitee's side, across organizations (GET /invitations, accept,
-- decline): like organization_members_by_user, the one kind of index that
-- does not lead with organization_id.
CREATE INDEX invitations_by_email_key ON crm.invitations (email_key, created_at);

ALTER TABLE crm.invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE crm.invitations FORCE ROW LEVEL SECURITY;

-- The request role creates invitations and changes only their outcome; it
-- never deletes one (revoking is a status) and never rewrites what was offered.
GRANT SELECT, INSERT ON crm.invitations TO minicrm_api;
GRANT UPDATE (status, decided_at, decided_by) ON crm.invitations TO minicrm_api;

-- Adding a member by email looked the address up: with invitations nothing
-- does, and the helper would still answer whether an address is registered.
DROP FUNCTION IF EXISTS private.user_id_by_email(text);
