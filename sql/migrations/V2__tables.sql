-- Naming: a constraint's name is the stable error `code` the API answers with
-- when it is violated, and `<table>_<field>_<problem>` names the offending field.
-- Tenant tables key on (organization_id, id) so every reference can be composite
-- (no row can point into another organization) and the schema distributes by
-- organization_id.

CREATE TABLE crm.organizations (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name       text NOT NULL CONSTRAINT organizations_name_invalid CHECK (length(btrim(name)) BETWEEN 1 AND 200),
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE crm.users (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  email           text NOT NULL CONSTRAINT users_email_invalid CHECK (length(email) <= 254 AND email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
  hashed_password text NOT NULL CONSTRAINT users_hashed_password_invalid CHECK (hashed_password LIKE '$argon2id$%'),
  name            text NOT NULL CONSTRAINT users_name_invalid CHECK (length(btrim(name)) BETWEEN 1 AND 200),
  created_at      timestamptz NOT NULL DEFAULT now()
);
-- R10: one account per address, whatever its case.
CREATE UNIQUE INDEX users_email_taken ON crm.users (lower(email));

CREATE TABLE crm.organization_members (
  organization_id uuid NOT NULL REFERENCES crm.organizations (id) ON DELETE CASCADE,
  id              uuid NOT NULL DEFAULT gen_random_uuid(),
  user_id         uuid NOT NULL CONSTRAINT organization_members_user_id_not_found REFERENCES crm.users (id) ON DELETE CASCADE,
  role            crm.member_role NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, id),
  CONSTRAINT organization_members_user_id_taken UNIQUE (organization_id, user_id)
);
CREATE INDEX organization_members_by_user ON crm.organization_members (user_id);

CREATE TABLE crm.contacts (
  organization_id uuid NOT NULL REFERENCES crm.organizations (id) ON DELETE CASCADE,
  id              uuid NOT NULL DEFAULT gen_random_uuid(),
  owner_id        uuid NOT NULL,
  name            text NOT NULL CONSTRAINT contacts_name_invalid CHECK (length(btrim(name)) BETWEEN 1 AND 200),
  email           text CONSTRAINT contacts_email_invalid CHECK (length(email) <= 254 AND email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
  phone           text CONSTRAINT contacts_phone_invalid CHECK (length(phone) BETWEEN 1 AND 50),
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, id),
  -- The owner is a member of the same organization.
  CONSTRAINT contacts_owner_id_not_member FOREIGN KEY (organization_id, owner_id)
    REFERENCES crm.organization_members (organization_id, user_id)
);
CREATE INDEX contacts_by_owner ON crm.contacts (organization_id, owner_id, created_at, id);
CREATE INDEX contacts_by_created ON crm.contacts (organization_id, created_at, id);

CREATE TABLE crm.deals (
  organization_id uuid NOT NULL REFERENCES crm.organizations (id) ON DELETE CASCADE,
  id              uuid NOT NULL DEFAULT gen_random_uuid(),
  contact_id      uuid NOT NULL,
  owner_id        uuid NOT NULL,
  title           text NOT NULL CONSTRAINT deals_title_invalid CHECK (length(btrim(title)) BETWEEN 1 AND 200),
  -- Plain numeric with checks (not numeric(14,2)/char(3)), so an out-of-range
  -- value names its constraint and field instead of a type error.
  amount          numeric NOT NULL CONSTRAINT deals_amount_negative CHECK (amount >= 0),
  currency        text NOT NULL CONSTRAINT deals_currency_invalid CHECK (currency ~ '^[A-Z]{3}$'),
  status          crm.deal_status NOT NULL DEFAULT 'new',
  stage           crm.deal_stage NOT NULL DEFAULT 'qualification',
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT deals_amount_invalid CHECK (amount < 1000000000000 AND amount = round(amount, 2)),
  PRIMARY KEY (organization_id, id),
  CONSTRAINT deals_contact_id_not_found FOREIGN KEY (organization_id, contact_id)
    REFERENCES crm.contacts (organization_id, id),
  CONSTRAINT deals_owner_id_not_member FOREIGN KEY (organization_id, owner_id)
    REFERENCES crm.organization_members (organization_id, user_id)
);
CREATE INDEX deals_by_contact ON crm.deals (organization_id, contact_id);
CREATE INDEX deals_by_owner ON crm.deals (organization_id, owner_id);
CREATE INDEX deals_by_created ON crm.deals (organization_id, created_at, id);
CREATE INDEX deals_by_status_amount ON crm.deals (organization_id, status, amount, id);

CREATE TABLE crm.tasks (
  organization_id uuid NOT NULL REFERENCES crm.organizations (id) ON DELETE CASCADE,
  id              uuid NOT NULL DEFAULT gen_random_uuid(),
  deal_id         uuid NOT NULL,
  title           text NOT NULL CONSTRAINT tasks_title_invalid CHECK (length(btrim(title)) BETWEEN 1 AND 200),
  description     text CONSTRAINT tasks_description_invalid CHECK (length(description) <= 10000),
  due_date        date NOT NULL,
  is_done         boolean NOT NULL DEFAULT false,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, id),
  CONSTRAINT tasks_deal_id_not_found FOREIGN KEY (organization_id, deal_id)
    REFERENCES crm.deals (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX tasks_by_deal ON crm.tasks (organization_id, deal_id, due_date, id);
CREATE INDEX tasks_by_due ON crm.tasks (organization_id, due_date, id);

CREATE TABLE crm.activities (
  organization_id uuid NOT NULL REFERENCES crm.organizations (id) ON DELETE CASCADE,
  id              uuid NOT NULL DEFAULT gen_random_uuid(),
  deal_id         uuid NOT NULL,
  author_id       uuid REFERENCES crm.users (id) ON DELETE SET NULL,
  type            crm.activity_type NOT NULL,
  payload         jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (organization_id, id),
  CONSTRAINT activities_deal_id_not_found FOREIGN KEY (organization_id, deal_id)
    REFERENCES crm.deals (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX activities_by_deal ON crm.activities (organization_id, deal_id, created_at DESC, id DESC);

-- Refresh tokens are secrets: only SECURITY DEFINER functions touch them.
-- A login starts a family; each refresh rotates within it; reuse of a rotated
-- token revokes the whole family.
CREATE TABLE private.refresh_tokens (
  token_hash  bytea PRIMARY KEY,
  family_id   uuid NOT NULL,
  user_id     uuid NOT NULL REFERENCES crm.users (id) ON DELETE CASCADE,
  expires_at  timestamptz NOT NULL,
  used_at     timestamptz,
  revoked_at  timestamptz,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_by_family ON private.refresh_tokens (family_id);
CREATE INDEX refresh_tokens_by_user ON private.refresh_tokens (user_id);

-- Tenant tables: RLS enabled and forced (the owner obeys the policies too).
ALTER TABLE crm.organizations ENABLE ROW LEVEL SECURITY;
ALTER TABLE crm.organizations FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.organization_members ENABLE ROW LEVEL SECURITY;
ALTER TABLE crm.organization_members FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.contacts ENABLE ROW LEVEL SECURITY;
ALTER TABLE crm.contacts FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.deals ENABLE ROW LEVEL SECURITY;
ALTER TABLE crm.deals FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.tasks ENABLE ROW LEVEL SECURITY;
ALTER TABLE crm.tasks FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.activities ENABLE ROW LEVEL SECURITY;
ALTER TABLE crm.activities FORCE ROW LEVEL SECURITY;
-- users is global (no organization): RLS limits the request role to people it
-- shares an organization with; the owner's definer functions (login, register)
-- see all, so it is enabled but not forced.
ALTER TABLE crm.users ENABLE ROW LEVEL SECURITY;

-- The request role's table privileges; RLS decides which rows.
GRANT SELECT, INSERT, UPDATE, DELETE ON crm.organizations, crm.organization_members,
  crm.contacts, crm.deals, crm.tasks TO minicrm_api;
-- The timeline is append-only.
GRANT SELECT, INSERT ON crm.activities TO minicrm_api;
-- Never the password hash.
GRANT SELECT (id, email, name, created_at) ON crm.users TO minicrm_api;
