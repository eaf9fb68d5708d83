-- Contact search (README, "Search"): crm.contact_search_words holds one row
-- per distinct token (app.search_tokens) of each contact's name and email,
-- kept by the trigger below; a contact matches a search when every token of
-- the term is a prefix of one of its words. Prefixes of a "C"-collated
-- column are btree ranges, and the comparisons of a range are leakproof, so
-- the lookup is an index condition under RLS (ILIKE is not leakproof: behind
-- the tenancy policy it could only ever filter every row of the tenant).

-- The least string greater than every string that starts with p_prefix (in
-- "C" order, which is code point order): the last character incremented,
-- skipping the surrogates, and dropped first when it is already the last
-- code point. A prefix made only of U+10FFFF has no such string; the bound
-- returned then is longer than any word (names and emails are at most 254
-- characters), which is as good.
CREATE OR REPLACE FUNCTION app.prefix_next(p_prefix text) RETURNS text
  LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
  AS $$
DECLARE
  v_rest text := p_prefix;
  v_last int;
BEGIN
  WHILE v_rest <> '' LOOP
    v_last := ascii(right(v_rest, 1));
    v_rest := left(v_rest, -1);
    IF v_last < 1114111 THEN
      RETURN v_rest || chr(CASE WHEN v_last + 1 BETWEEN 55296 AND 57343 THEN 57344 ELSE v_last + 1 END);
    END IF;
  END LOOP;
  RETURN repeat(chr(1114111), 300);
END
$$;

-- The tokens a search term asks for, without the ones another token of the
-- term already implies (a prefix of a prefix), longest first. More than 16
-- is refused: each token is a condition of the query, and the term comes
-- from the URL.
CREATE OR REPLACE FUNCTION app.search_terms(p_search text) RETURNS text[]
  LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
  AS $$
DECLARE
  v_tokens text[] := coalesce(app.search_tokens(p_search), '{}');
  v_terms text[];
BEGIN
  SELECT coalesce(array_agg(t ORDER BY length(t) DESC, t), '{}') INTO v_terms
    FROM unnest(v_tokens) t
   WHERE NOT EXISTS (SELECT 1 FROM unnest(v_tokens) u WHERE u <> t AND starts_with(u, t));
  IF cardinality(v_terms) > 16 THEN
    PERFORM app.fail('MC400', 'invalid_query_parameter', 'a search may have at most 16 words', 'search');
  END IF;
  RETURN v_terms;
END
$$;

-- The words of a contact follow it: every writer (the API, a DBA in psql)
-- goes through this trigger, and only it writes them (the request role may
-- read the words, not write them). It writes them when the contact is
-- created, rewrites them when its name or email changes, deletes them when
-- it goes to the trash (and writes them again when it comes back), moves them
-- when its key (organization_id, created_at, id) changes, and deletes them
-- with it. No foreign key (V24): its check ran once per word of every new
-- contact, and its plan, cached by each session, is the planner's choice of
-- an index of crm.contacts; on a table analyzed while it held few rows, the
-- check read every contact of the organization, and an import of 50,000
-- contacts grew quadratic (bench/writecost-notes.md). SECURITY DEFINER, for
-- the write privilege only: RLS is forced, so the rows it writes and deletes
-- are still those of the acting organization.
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
  -- A new contact has no words yet (v_words is distinct): a plain INSERT.
  -- ON CONFLICT DO NOTHING, which an UPDATE needs for the words it keeps,
  -- checks each row against the key before inserting it: 0.1 M of a contact
  -- insert's 1.5 M instructions (bench/fixedcost.py, W3).
  IF TG_OP = 'INSERT' THEN
    INSERT INTO crm.contact_search_words (organization_id, contact_id, word, created_at)
    SELECT NEW.organization_id, NEW.id, w, NEW.created_at FROM unnest(v_words) w;
  ELSE
    INSERT INTO crm.contact_search_words (organization_id, contact_id, word, created_at)
    SELECT NEW.organization_id, NEW.id, w, NEW.created_at FROM unnest(v_words) w
    ON CONFLICT DO NOTHING;
  END IF;
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS contacts_search_words ON crm.contacts;
CREATE TRIGGER contacts_search_words AFTER INSERT OR UPDATE OF name, email, deleted_at, organization_id, created_at, id OR DELETE
  ON crm.contacts FOR EACH ROW EXECUTE FUNCTION private.contacts_search_words();
