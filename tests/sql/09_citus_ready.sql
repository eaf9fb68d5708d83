-- Citus readiness (docs/scaling.md): every tenant table can be distributed by
-- organization_id and co-located. A tenant table is any table of crm or
-- private except the global ones listed here, which would become reference
-- tables (organizations is the tenant root, distributed by its own id).
BEGIN;
SELECT plan(8);

CREATE TEMP TABLE global_tables (name text PRIMARY KEY);
INSERT INTO global_tables VALUES ('crm.organizations'), ('crm.users'), ('private.refresh_tokens'),
  -- attempt counters: per address and email, not per tenant (a coordinator-local table)
  ('private.auth_attempts'),
  -- idempotency keys of requests made in no organization (a user's own, like refresh tokens)
  ('crm.user_idempotency_keys'),
  -- the announcer's position, one row for the database (coordinator-local)
  ('private.events_announcer');

CREATE TEMP VIEW tenant_tables AS
  SELECT c.oid, n.nspname || '.' || c.relname AS name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname IN ('crm', 'private') AND c.relkind IN ('r', 'p')
     AND n.nspname || '.' || c.relname NOT IN (SELECT name FROM global_tables);

-- The column numbers of organization_id, per table.
CREATE TEMP VIEW org_column AS
  SELECT a.attrelid AS oid, a.attnum
    FROM pg_attribute a WHERE a.attname = 'organization_id' AND NOT a.attisdropped;

SELECT ok((SELECT count(*) FROM tenant_tables) >= 7, 'the tenant tables are found');

SELECT is_empty($$
  SELECT name FROM tenant_tables t WHERE NOT EXISTS (SELECT FROM org_column o WHERE o.oid = t.oid)
$$, 'every tenant table has organization_id');

SELECT is_empty($$
  SELECT t.name || ': ' || con.conname
    FROM tenant_tables t JOIN pg_constraint con ON con.conrelid = t.oid AND con.contype IN ('p', 'u')
    JOIN org_column o ON o.oid = t.oid
   WHERE NOT (o.attnum = ANY (con.conkey))
$$, 'every primary key and unique constraint of a tenant table includes organization_id');

SELECT is_empty($$
  SELECT t.name || ': ' || i.indexrelid::regclass
    FROM tenant_tables t JOIN pg_index i ON i.indrelid = t.oid AND i.indisunique
    JOIN org_column o ON o.oid = t.oid
   WHERE NOT (o.attnum = ANY (i.indkey::int2[]))
$$, 'every unique index of a tenant table includes organization_id');

-- Between tenant tables (or to the tenant root), a foreign key pairs
-- organization_id with organization_id (or with organizations.id).
SELECT is_empty($$
  SELECT t.name || ': ' || con.conname
    FROM tenant_tables t
    JOIN pg_constraint con ON con.conrelid = t.oid AND con.contype = 'f'
    JOIN org_column o ON o.oid = t.oid
   WHERE (con.confrelid IN (SELECT oid FROM tenant_tables)
          AND NOT EXISTS (
            SELECT FROM unnest(con.conkey, con.confkey) AS k(col, ref)
              JOIN org_column r ON r.oid = con.confrelid AND r.attnum = k.ref
             WHERE k.col = o.attnum))
      OR (con.confrelid = 'crm.organizations'::regclass
          AND con.conkey <> ARRAY[o.attnum])
$$, 'foreign keys between tenant tables pair organization_id with organization_id');

-- Global tables reference only global tables (reference tables cannot point
-- into distributed ones).
SELECT is_empty($$
  SELECT con.conrelid::regclass || ' -> ' || con.confrelid::regclass
    FROM pg_constraint con
   WHERE con.contype = 'f'
     AND con.conrelid::regclass::text IN (SELECT name FROM global_tables)
     AND con.confrelid::regclass::text NOT IN (SELECT name FROM global_tables)
$$, 'global tables reference only global tables');

-- The checks see a table that breaks them.
CREATE TABLE crm.not_distributable (id uuid PRIMARY KEY, organization_id uuid NOT NULL,
  deal_id uuid, FOREIGN KEY (organization_id, deal_id) REFERENCES crm.deals (organization_id, id));
CREATE TABLE crm.no_tenant (id uuid PRIMARY KEY);
SELECT isnt_empty($$
  SELECT t.name FROM tenant_tables t JOIN pg_constraint con ON con.conrelid = t.oid AND con.contype = 'p'
    JOIN org_column o ON o.oid = t.oid WHERE NOT (o.attnum = ANY (con.conkey))
$$, 'a primary key without organization_id is caught');
SELECT isnt_empty($$
  SELECT name FROM tenant_tables t WHERE NOT EXISTS (SELECT FROM org_column o WHERE o.oid = t.oid)
$$, 'a table with neither organization_id nor a place on the global list is caught');

SELECT * FROM finish();
ROLLBACK;
