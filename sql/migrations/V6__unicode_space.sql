-- Names and titles are trimmed of every Unicode White_Space character
-- (app.trim_space, created in V5), and one made of nothing else is blank.
-- Until now the CHECKs and the API trimmed with btrim(), which strips only
-- U+0020: a name of tabs, newlines, NBSP or U+3000 was accepted, and
-- "\tAda\n" was stored as sent. The constraints keep their names: they are
-- the API's error codes (400 organizations_name_invalid, ...).

-- Existing rows first, as the API would have stored them: trimmed. One that
-- trimming leaves blank gets a fixed placeholder ('Unnamed contact', ...),
-- since its value said nothing and refusing to migrate would only make a
-- DBA invent one; a WARNING counts what changed. The rule triggers are off
-- meanwhile (this is no user's change, and a rule about something else must
-- not stop it); updated_at says the record changed. The owner must see every
-- row, so RLS is not forced for these statements (as in V4).
ALTER TABLE crm.organizations NO FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.contacts NO FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.deals NO FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.tasks NO FORCE ROW LEVEL SECURITY;
DO $$
DECLARE
  t record;
  v_changed bigint;
  v_blank bigint;
  v_report text[] := '{}';
BEGIN
  FOR t IN SELECT * FROM (VALUES ('organizations', 'name', 'Unnamed organization', false),
                                 ('users', 'name', 'Unnamed user', false),
                                 ('contacts', 'name', 'Unnamed contact', true),
                                 ('deals', 'title', 'Untitled deal', true),
                                 ('tasks', 'title', 'Untitled task', true)) v (tab, col, placeholder, stamped) LOOP
    EXECUTE format('SELECT count(*), count(*) FILTER (WHERE app.trim_space(%1$I) = '''') FROM crm.%2$I
                     WHERE %1$I IS DISTINCT FROM app.trim_space(%1$I)', t.col, t.tab)
       INTO v_changed, v_blank;
    CONTINUE WHEN v_changed = 0;
    EXECUTE format('ALTER TABLE crm.%I DISABLE TRIGGER USER', t.tab);
    EXECUTE format('UPDATE crm.%1$I SET %2$I = coalesce(nullif(app.trim_space(%2$I), ''''), %3$L)%4$s
                     WHERE %2$I IS DISTINCT FROM app.trim_space(%2$I)',
                   t.tab, t.col, t.placeholder, CASE WHEN t.stamped THEN ', updated_at = now()' ELSE '' END);
    EXECUTE format('ALTER TABLE crm.%I ENABLE TRIGGER USER', t.tab);
    v_report := v_report || format('crm.%s.%s: %s trimmed, %s of them blank and now %L',
                                   t.tab, t.col, v_changed, v_blank, t.placeholder);
  END LOOP;
  IF cardinality(v_report) > 0 THEN
    RAISE WARNING 'V6__unicode_space: %', array_to_string(v_report, '; ');
  END IF;
END
$$;
ALTER TABLE crm.organizations FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.contacts FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.deals FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.tasks FORCE ROW LEVEL SECURITY;

ALTER TABLE crm.organizations DROP CONSTRAINT organizations_name_invalid,
  ADD CONSTRAINT organizations_name_invalid CHECK (length(app.trim_space(name)) BETWEEN 1 AND 200);
ALTER TABLE crm.users DROP CONSTRAINT users_name_invalid,
  ADD CONSTRAINT users_name_invalid CHECK (length(app.trim_space(name)) BETWEEN 1 AND 200);
ALTER TABLE crm.contacts DROP CONSTRAINT contacts_name_invalid,
  ADD CONSTRAINT contacts_name_invalid CHECK (length(app.trim_space(name)) BETWEEN 1 AND 200);
ALTER TABLE crm.deals DROP CONSTRAINT deals_title_invalid,
  ADD CONSTRAINT deals_title_invalid CHECK (length(app.trim_space(title)) BETWEEN 1 AND 200);
ALTER TABLE crm.tasks DROP CONSTRAINT tasks_title_invalid,
  ADD CONSTRAINT tasks_title_invalid CHECK (length(app.trim_space(title)) BETWEEN 1 AND 200);
