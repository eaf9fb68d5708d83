-- Contact search that an index serves under RLS (README, "Search"; issue #10).
--
-- Behind the tenancy policies the planner may use a query's own condition as
-- an index condition only when its operator is LEAKPROOF. ILIKE is not, so
-- the trigram indexes of V3 were never used by a request: a search read every
-- contact of the organization. Instead, each contact's name and email are cut
-- into words (app.search_tokens) and stored, one row per distinct word, in
-- crm.contact_search_words; a search asks for contacts with a word starting
-- with each word of the term, and a prefix of a "C"-collated text is a btree
-- range whose comparisons are leakproof.
--
-- The table is walked in list order too (newest first, by its primary key),
-- which is why created_at is copied from the contact. The foreign key
-- includes it, so the copy cannot go stale: it references the contact's
-- (organization_id, created_at, id), made unique for it (contacts_by_created,
-- the same columns as before, is now a unique index), and follows updates and
-- deletes by cascade.

-- Contact writes wait until this migration commits (reads go on): the
-- trigger exists before the rows are copied, so no contact is missed.
LOCK TABLE crm.contacts IN SHARE ROW EXCLUSIVE MODE;

-- From sql/functions/02_search_tokens.sql:
CREATE OR REPLACE FUNCTION app.search_tokens(p_text text) RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $fn$
    SELECT pg_catalog.array_agg(DISTINCT m.t[1])
      FROM pg_catalog.regexp_matches(app.email_key(p_text) COLLATE "C",
        '[^\u0001-\u002F\u003A-\u0040\u005B-\u0060\u007B-\u00BF\u00D7\u00F7\u1680\u2000-\u206F\u20A0-\u20CF\u2E00-\u2E7F\u3000-\u3004\u3008-\u3020\u3030\u303D\uFE10-\uFE1F\uFE30-\uFE6F]+'
        || '|[\u0021-\u002F\u003A-\u0040\u005B-\u0060\u007B-\u007E\u00A1-\u00BF\u00D7\u00F7\u2010-\u2027\u2030-\u205E\u20A0-\u20CF\u2E00-\u2E7F\u3001-\u3004\u3008-\u3020\u3030\u303D\uFE10-\uFE1F\uFE30-\uFE6F]',
        'g') AS m (t)
  $fn$;

CREATE UNIQUE INDEX contacts_by_created_unique ON crm.contacts (organization_id, created_at, id);
DROP INDEX crm.contacts_by_created;
ALTER INDEX crm.contacts_by_created_unique RENAME TO contacts_by_created;

CREATE TABLE crm.contact_search_words (
  organization_id uuid NOT NULL,
  contact_id      uuid NOT NULL,
  word            text COLLATE "C" NOT NULL,
  created_at      timestamptz NOT NULL,
  -- In list order: the walk of dense terms, and the contact's own words.
  PRIMARY KEY (organization_id, created_at, contact_id, word)
);
ALTER TABLE crm.contact_search_words ENABLE ROW LEVEL SECURITY;
ALTER TABLE crm.contact_search_words FORCE ROW LEVEL SECURITY;
-- Written by the trigger, as the request role (like deal_totals_delta).
GRANT SELECT, INSERT, DELETE ON crm.contact_search_words TO minicrm_api;

-- From sql/functions/39_contact_search.sql (which replaces both on every migrate):
CREATE OR REPLACE FUNCTION private.contacts_search_words() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_words text[];
BEGIN
  IF TG_OP = 'UPDATE' AND NEW.name IS NOT DISTINCT FROM OLD.name AND NEW.email IS NOT DISTINCT FROM OLD.email THEN
    RETURN NULL;
  END IF;
  v_words := coalesce(app.search_tokens(NEW.name || ' ' || coalesce(NEW.email, '')), '{}');
  IF TG_OP = 'UPDATE' THEN
    DELETE FROM crm.contact_search_words s
     WHERE s.organization_id = NEW.organization_id AND s.created_at = NEW.created_at AND s.contact_id = NEW.id
       AND s.word <> ALL (v_words);
  END IF;
  INSERT INTO crm.contact_search_words (organization_id, contact_id, word, created_at)
  SELECT NEW.organization_id, NEW.id, w, NEW.created_at FROM unnest(v_words) w
  ON CONFLICT DO NOTHING;
  RETURN NULL;
END
$$;

CREATE TRIGGER contacts_search_words AFTER INSERT OR UPDATE OF name, email ON crm.contacts
  FOR EACH ROW EXECUTE FUNCTION private.contacts_search_words();

-- The existing contacts' words (the owner reads every organization's
-- contacts for this one statement), in key order; then the foreign key,
-- checked in one pass rather than row by row, and the index of ranges.
SET LOCAL work_mem = '256MB';
SET LOCAL maintenance_work_mem = '512MB';
ALTER TABLE crm.contacts NO FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.contact_search_words NO FORCE ROW LEVEL SECURITY;
INSERT INTO crm.contact_search_words (organization_id, contact_id, word, created_at)
SELECT c.organization_id, c.id, w, c.created_at
  FROM crm.contacts c CROSS JOIN LATERAL unnest(app.search_tokens(c.name || ' ' || coalesce(c.email, ''))) w
 ORDER BY c.organization_id, c.created_at, c.id, w;
ALTER TABLE crm.contacts FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.contact_search_words FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.contact_search_words ADD CONSTRAINT contact_search_words_contact_id_not_found
  FOREIGN KEY (organization_id, created_at, contact_id)
  REFERENCES crm.contacts (organization_id, created_at, id) ON DELETE CASCADE ON UPDATE CASCADE;
-- Prefix ranges of sparse terms.
CREATE INDEX contact_search_words_by_word ON crm.contact_search_words (organization_id, word, created_at, contact_id);

-- Nothing uses the trigram indexes any more, nor pg_trgm and btree_gin
-- (V3 created them for those indexes only). An extension something else
-- came to depend on, or that another role installed, is left in place.
DROP INDEX crm.contacts_search_name;
DROP INDEX crm.contacts_search_email;
DO $$
DECLARE
  x text;
BEGIN
  FOREACH x IN ARRAY ARRAY['pg_trgm', 'btree_gin'] LOOP
    BEGIN
      EXECUTE format('DROP EXTENSION IF EXISTS %I', x);
    EXCEPTION WHEN dependent_objects_still_exist OR insufficient_privilege THEN
      RAISE NOTICE 'V11: extension % stays: other objects depend on it, or another role owns it', x;
    END;
  END LOOP;
END
$$;

-- The LIKE pattern of the old search.
DROP FUNCTION IF EXISTS app.contains_pattern(text);
