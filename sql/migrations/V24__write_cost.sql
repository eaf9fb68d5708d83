-- The cost of writing a contact (issue #10, W3; bench/writecost-notes.md).
--
-- app.search_tokens becomes PL/pgSQL, with the same query as V11's SQL
-- function: a SQL function that cannot be inlined (it has a FROM) is parsed
-- and planned again on every call from a trigger, which was a fifth of a
-- contact insert's database time; PL/pgSQL keeps the plan for the session.
-- The tokens are the same, so the stored words stay as they are
-- (tests/sql/34_contact_search.sql compares the two on a corpus).
--
-- crm.contact_search_words loses its foreign key to the contact: the
-- trigger, which alone writes the words now (the request role keeps SELECT),
-- deletes them with the contact and moves them with its key, as the key's
-- cascades did (sql/functions/39_contact_search.sql says why).

-- Contact writes wait until this migration commits: the foreign key and the
-- trigger that replaces it change together.
LOCK TABLE crm.contacts IN SHARE ROW EXCLUSIVE MODE;

-- From sql/functions/02_search_tokens.sql:
CREATE OR REPLACE FUNCTION app.search_tokens(p_text text) RETURNS text[]
  LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
  AS $fn$
BEGIN
  RETURN (SELECT pg_catalog.array_agg(DISTINCT m.t[1])
      FROM pg_catalog.regexp_matches(app.email_key(p_text) COLLATE "C",
        '[^\u0001-\u002F\u003A-\u0040\u005B-\u0060\u007B-\u00BF\u00D7\u00F7\u1680\u2000-\u206F\u20A0-\u20CF\u2E00-\u2E7F\u3000-\u3004\u3008-\u3020\u3030\u303D\uFE10-\uFE1F\uFE30-\uFE6F]+'
        || '|[\u0021-\u002F\u003A-\u0040\u005B-\u0060\u007B-\u007E\u00A1-\u00BF\u00D7\u00F7\u2010-\u2027\u2030-\u205E\u20A0-\u20CF\u2E00-\u2E7F\u3001-\u3004\u3008-\u3020\u3030\u303D\uFE10-\uFE1F\uFE30-\uFE6F]',
        'g') AS m (t));
END
$fn$;

ALTER TABLE crm.contact_search_words DROP CONSTRAINT contact_search_words_contact_id_not_found;
REVOKE INSERT, DELETE ON crm.contact_search_words FROM minicrm_api;

-- From sql/functions/39_contact_search.sql (which replaces both on every migrate):
CREATE OR REPLACE FUNCTION private.contacts_search_words() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
DECLARE
  v_words text[];
BEGIN
  IF TG_OP = 'DELETE' THEN
    DELETE FROM crm.contact_search_words s
     WHERE s.organization_id = OLD.organization_id AND s.created_at = OLD.created_at AND s.contact_id = OLD.id;
    RETURN NULL;
  END IF;
  IF TG_OP = 'UPDATE' THEN
    IF NEW.organization_id <> OLD.organization_id OR NEW.created_at <> OLD.created_at OR NEW.id <> OLD.id THEN
      -- The key moved: the words under the old one go, and all of them are
      -- written again under the new one below.
      DELETE FROM crm.contact_search_words s
       WHERE s.organization_id = OLD.organization_id AND s.created_at = OLD.created_at AND s.contact_id = OLD.id;
    ELSIF NEW.name IS NOT DISTINCT FROM OLD.name AND NEW.email IS NOT DISTINCT FROM OLD.email
          AND (NEW.deleted_at IS NULL) = (OLD.deleted_at IS NULL) THEN
      RETURN NULL;
    END IF;
  END IF;
  -- A contact in the trash has no words (search never finds it); restoring
  -- it writes them again.
  IF NEW.deleted_at IS NOT NULL THEN
    DELETE FROM crm.contact_search_words s
     WHERE s.organization_id = NEW.organization_id AND s.created_at = NEW.created_at AND s.contact_id = NEW.id;
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

DROP TRIGGER IF EXISTS contacts_search_words ON crm.contacts;
CREATE TRIGGER contacts_search_words AFTER INSERT OR UPDATE OF name, email, deleted_at, organization_id, created_at, id OR DELETE
  ON crm.contacts FOR EACH ROW EXECUTE FUNCTION private.contacts_search_words();
