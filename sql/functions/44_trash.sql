-- The trash (SPEC §11; README "Trash"; columns and indexes in
-- sql/migrations/V17__trash.sql). A contact, deal or task is in the trash
-- while deleted_at is set. The rules of trashing, restoring and erasing are
-- in the rule triggers (30_pipeline_rules.sql), so they hold for a DBA under
-- app.act_as too; the running totals leave trashed deals out (45, 46, 47).
--
-- Trashed rows are hidden by the api functions (`deleted_at IS NULL`), not
-- by the RLS policies: a SELECT policy that hides them would also refuse the
-- UPDATE that trashes a row (the new row of an UPDATE that reads the table
-- must pass the SELECT policies), and a policy that lets the trash views
-- through with a setting would make every list's condition an OR that no
-- partial index serves. The list indexes are partial instead (V17).

-- Deleting a deal trashes its tasks that are not in the trash yet, marked
-- deleted_with_deal; restoring it restores exactly those. (As the acting
-- role: the tasks' own rules and policies apply.)
CREATE OR REPLACE FUNCTION private.deals_trash_tasks() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF NEW.deleted_at IS NOT NULL AND OLD.deleted_at IS NULL THEN
    UPDATE crm.tasks t SET deleted_at = NEW.deleted_at, deleted_by = NEW.deleted_by, deleted_with_deal = true
     WHERE t.organization_id = NEW.organization_id AND t.deal_id = NEW.id AND t.deleted_at IS NULL;
  ELSIF NEW.deleted_at IS NULL AND OLD.deleted_at IS NOT NULL THEN
    UPDATE crm.tasks t SET deleted_at = NULL, deleted_by = NULL, deleted_with_deal = false
     WHERE t.organization_id = NEW.organization_id AND t.deal_id = NEW.id AND t.deleted_with_deal;
  END IF;
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS deals_trash_tasks ON crm.deals;
CREATE TRIGGER deals_trash_tasks AFTER UPDATE OF deleted_at ON crm.deals
  FOR EACH ROW EXECUTE FUNCTION private.deals_trash_tasks();

-- Notes the organization (and the oldest deleted_at) in
-- private.trash_organizations, where app.purge_expired_trash finds it.
-- An upsert that writes only when the new row is older, which a fresh
-- deletion never is. The trigger's WHEN leaves out the rows that are not in
-- the trash (every ordinary INSERT, a restore), so they do not pay for the
-- call of a SECURITY DEFINER function (bench/writecost-notes.md).
CREATE OR REPLACE FUNCTION private.trash_note() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
BEGIN
  IF NEW.deleted_at IS NOT NULL AND (TG_OP = 'INSERT' OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at) THEN
    INSERT INTO private.trash_organizations AS t (organization_id, oldest_deleted_at)
    VALUES (NEW.organization_id, NEW.deleted_at)
    ON CONFLICT (organization_id) DO UPDATE SET oldest_deleted_at = excluded.oldest_deleted_at
     WHERE t.oldest_deleted_at > excluded.oldest_deleted_at;
  END IF;
  RETURN NULL;
END
$$;

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['contacts', 'deals', 'tasks'] LOOP
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON crm.%I', t || '_trash_note', t);
    EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OF deleted_at ON crm.%I '
                   'FOR EACH ROW WHEN (NEW.deleted_at IS NOT NULL) EXECUTE FUNCTION private.trash_note()',
                   t || '_trash_note', t);
  END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION app.require_trash_type(p_type text, p_field text) RETURNS void
  LANGUAGE plpgsql IMMUTABLE
  AS $$
BEGIN
  IF p_type IS NULL OR p_type NOT IN ('contact', 'deal', 'task') THEN
    PERFORM app.fail('MC400', 'invalid_query_parameter', p_field || ' must be one of contact, deal, task', p_field);
  END IF;
END
$$;

-- GET /trash: what is in the trash, newest first (deleted_at, then id), of
-- one type or (p_type null) of all three; the trash indexes (V17) give each
-- table in that order and a merge interleaves them. p_page (offset pages)
-- or the keyset p_after_deleted_at + p_after_id (a cursor page). Every role
-- reads the trash, as every role reads every record (SPEC §3).
CREATE OR REPLACE FUNCTION api.trash_list(p_page int, p_page_size int, p_type text DEFAULT NULL,
    p_after_deleted_at timestamptz DEFAULT NULL, p_after_id uuid DEFAULT NULL)
  RETURNS jsonb LANGUAGE plpgsql -- volatile: EXPLAIN (the estimate) is not allowed in a stable function
  AS $$
DECLARE
  v_sql text;
  v_counted bigint;
  v_plan json;
  v_items jsonb[];  -- the page's rows and the one after it (app.page_json)
BEGIN
  IF p_type IS NOT NULL THEN
    PERFORM app.require_trash_type(p_type, 'type');
  END IF;
  PERFORM app.check_paging(p_page, p_after_deleted_at IS NOT NULL, p_after_id);
  -- $1 the type, $2 and $3 the keyset.
  SELECT string_agg(format(
           'SELECT %1$L AS type, x.id, x.%2$I AS name_or_title, x.deleted_at, x.deleted_by FROM crm.%3$I x'
           ' WHERE x.organization_id = (SELECT app.org_id()) AND x.deleted_at IS NOT NULL%4$s',
           k.type, k.label, k.tab,
           CASE WHEN p_after_id IS NOT NULL THEN ' AND (x.deleted_at, x.id) < ($2, $3)' ELSE '' END),
         ' UNION ALL ' ORDER BY k.n)
    INTO v_sql
    FROM (VALUES (1, 'contact', 'name', 'contacts'), (2, 'deal', 'title', 'deals'), (3, 'task', 'title', 'tasks'))
         AS k (n, type, label, tab)
   WHERE p_type IS NULL OR k.type = p_type;
  EXECUTE 'SELECT count(*) FROM (SELECT 1 FROM (' || replace(v_sql, ' AND (x.deleted_at, x.id) < ($2, $3)', '')
       || ') u LIMIT $4) c'
    INTO v_counted USING p_type, NULL::timestamptz, NULL::uuid, app.exact_count_limit() + 1;
  IF v_counted > app.exact_count_limit() THEN
    EXECUTE 'EXPLAIN (FORMAT JSON) SELECT 1 FROM (' || replace(v_sql, ' AND (x.deleted_at, x.id) < ($2, $3)', '') || ') u'
      INTO v_plan USING p_type, NULL::timestamptz, NULL::uuid;
  END IF;
  EXECUTE 'SELECT array_agg(jsonb_build_object(''type'', u.type, ''id'', u.id, ''name_or_title'', u.name_or_title,
                              ''deleted_at'', app.ts(u.deleted_at), ''deleted_by'', u.deleted_by)
                            ORDER BY u.deleted_at DESC, u.id DESC)
             FROM (SELECT * FROM (' || v_sql || ') u ORDER BY u.deleted_at DESC, u.id DESC LIMIT $4 OFFSET $5) u'
    INTO v_items USING p_type, p_after_deleted_at, p_after_id, p_page_size + 1,
                       (coalesce(p_page, 1) - 1)::bigint * p_page_size;
  RETURN app.page_json(v_items, p_page, p_page_size, app.list_total(v_counted, v_plan), 'deleted_at');
END
$$;

-- POST /trash/{type}/{id}/restore: the record back, as GET shows it. The
-- rule triggers check the role (the delete rules of SPEC §3) and the parent
-- (parent_in_trash); restoring a deal restores the tasks trashed with it
-- (private.deals_trash_tasks). Not in the trash: 404.
CREATE OR REPLACE FUNCTION api.trash_restore(p_type text, p_id uuid) RETURNS jsonb
  LANGUAGE plpgsql
  AS $$
DECLARE
  v jsonb;
BEGIN
  PERFORM app.require_trash_type(p_type, 'type');
  IF p_type = 'contact' THEN
    UPDATE crm.contacts c SET deleted_at = NULL
     WHERE c.organization_id = (SELECT app.org_id()) AND c.id = p_id AND c.deleted_at IS NOT NULL
    RETURNING app.contact_json(c) INTO v;
  ELSIF p_type = 'deal' THEN
    UPDATE crm.deals d SET deleted_at = NULL
     WHERE d.organization_id = (SELECT app.org_id()) AND d.id = p_id AND d.deleted_at IS NOT NULL
    RETURNING app.deal_json(d) INTO v;
  ELSE
    UPDATE crm.tasks t SET deleted_at = NULL
     WHERE t.organization_id = (SELECT app.org_id()) AND t.id = p_id AND t.deleted_at IS NOT NULL
    RETURNING app.task_json(t) INTO v;
  END IF;
  IF v IS NULL THEN
    PERFORM app.not_found(p_type);
  END IF;
  RETURN v;
END
$$;

-- DELETE /trash/{type}/{id}: erased for good, owner/admin only (the rule
-- triggers: app.require_eraser); a contact that still has deals, in the
-- trash or not, is 409 contact_has_deals (not a cascade: erasing is
-- irreversible, and each deal has its own retention). A deal takes its
-- tasks, its timeline and its stays along. Not in the trash: 404.
CREATE OR REPLACE FUNCTION api.trash_erase(p_type text, p_id uuid) RETURNS void
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM app.require_trash_type(p_type, 'type');
  IF p_type = 'contact' THEN
    DELETE FROM crm.contacts c WHERE c.organization_id = (SELECT app.org_id()) AND c.id = p_id AND c.deleted_at IS NOT NULL;
  ELSIF p_type = 'deal' THEN
    DELETE FROM crm.deals d WHERE d.organization_id = (SELECT app.org_id()) AND d.id = p_id AND d.deleted_at IS NOT NULL;
  ELSE
    DELETE FROM crm.tasks t WHERE t.organization_id = (SELECT app.org_id()) AND t.id = p_id AND t.deleted_at IS NOT NULL;
  END IF;
  IF NOT FOUND THEN
    PERFORM app.not_found(p_type);
  END IF;
END
$$;

-- The retention: erases what has been in the trash for longer than
-- p_retention (TRASH_RETENTION_DAYS), across organizations, at most
-- p_batch rows per call so that no call holds many locks for long (call it
-- again while it returns p_batch). In each organization due (found in
-- private.trash_organizations: the tables are under forced RLS, so the
-- owner acts in one organization at a time), tasks first, then deals
-- (which take their timeline and stays along), then contacts without deals
-- left (a contact's deals were trashed before it, so they go first; one
-- whose deals remain, say past the batch, waits for the next call). No
-- acting role: the role rules do not apply. Returns the rows erased.
-- SECURITY DEFINER in private (as every cross-tenant helper), not granted
-- to the request role; app.purge_expired_trash is its name for the
-- server's maintenance (which connects as the owner).
CREATE OR REPLACE FUNCTION private.purge_expired_trash(p_retention interval, p_batch int) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
DECLARE
  v_before timestamptz := now() - p_retention;
  v_left bigint := p_batch::bigint;
  v_n bigint;
  v_org uuid;
  v_oldest timestamptz;
  v_saved_org text := current_setting('app.org_id', true);
  v_saved_user text := current_setting('app.user_id', true);
  v_saved_role text := current_setting('app.role', true);
BEGIN
  FOR v_org IN SELECT t.organization_id FROM private.trash_organizations t
                WHERE t.oldest_deleted_at < v_before ORDER BY t.oldest_deleted_at LOOP
    EXIT WHEN v_left <= 0;
    PERFORM set_config('app.org_id', v_org::text, true);
    PERFORM set_config('app.user_id', '', true);
    PERFORM set_config('app.role', '', true);
    DELETE FROM crm.tasks t
     WHERE t.organization_id = v_org
       AND t.id IN (SELECT x.id FROM crm.tasks x WHERE x.organization_id = v_org AND x.deleted_at < v_before
                     ORDER BY x.deleted_at LIMIT v_left);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_left := v_left - v_n;
    DELETE FROM crm.deals d
     WHERE d.organization_id = v_org
       AND d.id IN (SELECT x.id FROM crm.deals x WHERE x.organization_id = v_org AND x.deleted_at < v_before
                     ORDER BY x.deleted_at LIMIT greatest(v_left, 0));
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_left := v_left - v_n;
    DELETE FROM crm.contacts c
     WHERE c.organization_id = v_org
       AND c.id IN (SELECT x.id FROM crm.contacts x WHERE x.organization_id = v_org AND x.deleted_at < v_before
                       AND NOT EXISTS (SELECT 1 FROM crm.deals d WHERE d.organization_id = v_org AND d.contact_id = x.id)
                     ORDER BY x.deleted_at LIMIT greatest(v_left, 0));
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_left := v_left - v_n;
    -- What is left in the organization's trash, from the oldest.
    SELECT min(m) INTO v_oldest
      FROM (SELECT min(x.deleted_at) AS m FROM crm.contacts x WHERE x.organization_id = v_org AND x.deleted_at IS NOT NULL
            UNION ALL
            SELECT min(x.deleted_at) FROM crm.deals x WHERE x.organization_id = v_org AND x.deleted_at IS NOT NULL
            UNION ALL
            SELECT min(x.deleted_at) FROM crm.tasks x WHERE x.organization_id = v_org AND x.deleted_at IS NOT NULL) o;
    IF v_oldest IS NULL THEN
      DELETE FROM private.trash_organizations t WHERE t.organization_id = v_org;
    ELSE
      UPDATE private.trash_organizations t SET oldest_deleted_at = v_oldest WHERE t.organization_id = v_org;
    END IF;
  END LOOP;
  PERFORM set_config('app.org_id', coalesce(v_saved_org, ''), true);
  PERFORM set_config('app.user_id', coalesce(v_saved_user, ''), true);
  PERFORM set_config('app.role', coalesce(v_saved_role, ''), true);
  RETURN p_batch - v_left;
END
$$;

CREATE OR REPLACE FUNCTION app.purge_expired_trash(p_retention interval, p_batch int DEFAULT 1000) RETURNS bigint
  LANGUAGE sql
  AS $$ SELECT private.purge_expired_trash(p_retention, p_batch) $$;
