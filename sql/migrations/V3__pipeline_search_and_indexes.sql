-- Contact search: case-insensitive substring on name or email, served by
-- trigram GIN indexes that lead with organization_id (btree_gin provides the
-- uuid operator class). Both extensions are trusted, so the owner may create them.
CREATE SCHEMA IF NOT EXISTS extensions;
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA extensions;
CREATE EXTENSION IF NOT EXISTS btree_gin WITH SCHEMA extensions;

CREATE INDEX contacts_search_name ON crm.contacts
  USING gin (organization_id, name extensions.gin_trgm_ops);
CREATE INDEX contacts_search_email ON crm.contacts
  USING gin (organization_id, email extensions.gin_trgm_ops);

-- Deal list sorts (each also serves the plain list) and filters.
CREATE INDEX deals_by_updated ON crm.deals (organization_id, updated_at, id);
CREATE INDEX deals_by_amount ON crm.deals (organization_id, amount, id);
CREATE INDEX deals_by_title ON crm.deals (organization_id, title, id);
CREATE INDEX deals_by_stage ON crm.deals (organization_id, stage, created_at, id);

-- Open tasks by due date.
CREATE INDEX tasks_open_by_due ON crm.tasks (organization_id, due_date, id) WHERE NOT is_done;
