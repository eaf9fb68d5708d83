-- Demo and benchmark data, generated in SQL (`minicrm seed`). Run by the
-- owner role, never by the request role. It writes consistent data and its
-- own timeline rows, so the rule and timeline triggers are off while it loads
-- (a superuser also skips the foreign-key checks: session_replication_role);
-- for large loads the secondary indexes are dropped and built again after.
-- The signature grew (contacts, tasks, activities per organization): the old
-- one must not stay callable beside it.
DROP FUNCTION IF EXISTS private.seed(int, int, text);

-- Each organization has two pipelines: the default "Sales" (four stages) with
-- about 80 % of the deals, and "Renewals" (three stages) with the rest.
-- Without the optional counts, contacts are a tenth of the deals, tasks go to
-- about 30 % of the open deals and the timeline has what the triggers would
-- have written; with them (the benchmark's shape of SPEC §14), exactly that
-- many contacts and tasks, and comments on random deals up to that many
-- activities.
CREATE OR REPLACE FUNCTION private.seed(p_orgs int, p_deals_per_org int, p_password_hash text,
    p_contacts_per_org int DEFAULT NULL, p_tasks_per_org int DEFAULT NULL, p_activities_per_org int DEFAULT NULL)
  RETURNS TABLE (organization_id uuid, owner_email text, deals bigint)
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_run text := to_char(clock_timestamp(), 'YYYYMMDDHH24MISSMS');
  v_org uuid;
  v_users uuid[];
  v_contacts uuid[];
  v_deals uuid[];
  v_sales uuid;
  v_renewals uuid;
  v_timeline bigint;
  v_seeded uuid[] := '{}'::uuid[];
  v_roles crm.member_role[] := ARRAY['owner', 'admin', 'admin', 'manager', 'manager', 'manager',
    'member', 'member', 'member', 'member', 'member', 'member', 'member', 'member', 'member', 'member']::crm.member_role[];
  v_tables text[] := ARRAY['organization_members', 'contacts', 'deals', 'tasks', 'activities', 'deal_stage_history'];
  v_rebuild boolean := p_orgs::bigint * p_deals_per_org >= 100000;
  v_indexes text[];
  t text;
BEGIN
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    PERFORM set_config('session_replication_role', 'replica', true);
  END IF;
  FOREACH t IN ARRAY v_tables LOOP
    EXECUTE format('ALTER TABLE crm.%I DISABLE TRIGGER USER', t);
  END LOOP;
  IF v_rebuild THEN
    PERFORM set_config('maintenance_work_mem', '512MB', true);
    PERFORM set_config('work_mem', '256MB', true);  -- the sort of the contacts' words
    SELECT array_agg(pg_get_indexdef(i.indexrelid)) INTO v_indexes
      FROM pg_index i
     WHERE i.indrelid = ANY (ARRAY['crm.contacts', 'crm.contact_search_words', 'crm.deals', 'crm.tasks', 'crm.activities',
                                   'crm.deal_stage_history']::regclass[])
       AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid);
    FOR t IN SELECT i.indexrelid::regclass::text
               FROM pg_index i
              WHERE i.indrelid = ANY (ARRAY['crm.contacts', 'crm.contact_search_words', 'crm.deals', 'crm.tasks', 'crm.activities',
                                            'crm.deal_stage_history']::regclass[])
                AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) LOOP
      EXECUTE 'DROP INDEX ' || t;
    END LOOP;
    -- The stays' primary key too (nothing references it): inserting millions
    -- of random UUIDs into it costs several times building it afterwards.
    ALTER TABLE crm.deal_stage_history DROP CONSTRAINT deal_stage_history_pkey;
  END IF;

  FOR i IN 1..p_orgs LOOP
    v_org := gen_random_uuid();
    -- The owner obeys RLS too (it is forced): act inside the new organization.
    PERFORM set_config('app.org_id', v_org::text, true);
    INSERT INTO crm.organizations (id, name) VALUES (v_org, format('Demo %s', i));
    -- The insert trigger made "Sales", unless triggers are off (replica mode).
    SELECT p.id INTO v_sales FROM crm.pipelines p WHERE p.organization_id = v_org AND p.position = 1;
    IF v_sales IS NULL THEN
      v_sales := app.pipelines_create_default(v_org);
    END IF;
    INSERT INTO crm.pipelines (organization_id, name, position) VALUES (v_org, 'Renewals', 2)
    RETURNING id INTO v_renewals;
    INSERT INTO crm.pipeline_stages (organization_id, pipeline_id, key, name, position, probability)
    VALUES (v_org, v_renewals, 'renewal_due', 'Renewal due', 1, 40),
           (v_org, v_renewals, 'quoted', 'Quoted', 2, 70),
           (v_org, v_renewals, 'renewed', 'Renewed', 3, 100);

    -- User n has role v_roles[n]; user 1 is the owner.
    SELECT array_agg(gen_random_uuid()) INTO v_users FROM generate_series(1, array_length(v_roles, 1));
    INSERT INTO crm.users (id, email, hashed_password, name)
    SELECT v_users[n], format('seed-%s-%s-%s@example.com', v_run, i, n), p_password_hash, format('Demo user %s', n)
      FROM generate_series(1, array_length(v_roles, 1)) n;
    INSERT INTO crm.organization_members (organization_id, user_id, role)
    SELECT v_org, v_users[n], v_roles[n] FROM generate_series(1, array_length(v_roles, 1)) n;

    INSERT INTO crm.contacts (organization_id, owner_id, name, email, phone, created_at, updated_at)
    SELECT v_org, v_users[1 + (n % array_length(v_users, 1))], format('Contact %s', n),
           format('contact%s@customer%s.example', n, n % 997), format('+1-555-%s', lpad((n % 10000)::text, 4, '0')),
           ts, ts
      FROM (SELECT n, now() - random() * interval '730 days' AS ts
              FROM generate_series(1, coalesce(p_contacts_per_org, greatest(1, p_deals_per_org / 10))) n) x;
    SELECT array_agg(c.id) INTO v_contacts FROM crm.contacts c WHERE c.organization_id = v_org;
    -- Their words, as the trigger (off while loading) would have stored
    -- them; in key order, so the primary key grows at its end.
    INSERT INTO crm.contact_search_words (organization_id, contact_id, word, created_at)
    SELECT c.organization_id, c.id, w, c.created_at
      FROM crm.contacts c CROSS JOIN LATERAL unnest(app.search_tokens(c.name || ' ' || coalesce(c.email, ''))) w
     WHERE c.organization_id = v_org
     ORDER BY c.created_at, c.id, w;

    -- random() in the select list of the inner query: one draw per row.
    -- Won and lost deals closed at their last change (never in the future);
    -- 85 % of the open ones expect to close between four months ago and
    -- six months ahead.
    INSERT INTO crm.deals (organization_id, contact_id, owner_id, title, amount, currency, status, pipeline_id, stage,
                           created_at, updated_at, closed_at, expected_close_date)
    SELECT v_org, v_contacts[1 + floor(r.r1 * array_length(v_contacts, 1))::int],
           v_users[1 + floor(r.r2 * array_length(v_users, 1))::int],
           format('Deal %s', r.n),
           round((1 + r.r3 * 99999)::numeric, 2),
           CASE WHEN r.r5 < 0.5 THEN 'EUR' WHEN r.r5 < 0.85 THEN 'USD' ELSE 'GBP' END,
           CASE WHEN r.r4 < 0.3 THEN 'new' WHEN r.r4 < 0.6 THEN 'in_progress'
                WHEN r.r4 < 0.8 THEN 'won' ELSE 'lost' END::crm.deal_status,
           CASE WHEN r.r7 < 0.8 THEN v_sales ELSE v_renewals END,
           CASE WHEN r.r7 < 0.8 THEN
                  CASE WHEN r.r4 < 0.3 THEN 'qualification' WHEN r.r4 < 0.45 THEN 'proposal'
                       WHEN r.r4 < 0.6 THEN 'negotiation' ELSE 'closed' END
                ELSE CASE WHEN r.r4 < 0.3 THEN 'renewal_due' WHEN r.r4 < 0.6 THEN 'quoted' ELSE 'renewed' END END,
           r.ts, least(r.ts + r.r6 * interval '30 days', now()),
           CASE WHEN r.r4 >= 0.6 THEN least(r.ts + r.r6 * interval '30 days', now()) END,
           CASE WHEN r.r4 < 0.6 AND r.r8 < 0.85 THEN current_date - 120 + (r.r8 / 0.85 * 300)::int END
      FROM (SELECT n, random() AS r1, random() AS r2, random() AS r3, random() AS r4, random() AS r5, random() AS r6,
                   random() AS r7, random() AS r8, now() - random() * interval '730 days' AS ts
              FROM generate_series(1, p_deals_per_org) n) r;

    -- The timeline the triggers would have written: creation, then the status change.
    INSERT INTO crm.activities (organization_id, deal_id, author_id, type, payload, created_at)
    SELECT d.organization_id, d.id, d.owner_id, 'system',
           jsonb_build_object('event', 'deal_created', 'status', 'new', 'pipeline_id', d.pipeline_id,
                              'stage', CASE WHEN d.pipeline_id = v_sales THEN 'qualification' ELSE 'renewal_due' END),
           d.created_at
      FROM crm.deals d WHERE d.organization_id = v_org;
    INSERT INTO crm.activities (organization_id, deal_id, author_id, type, payload, created_at)
    SELECT d.organization_id, d.id, d.owner_id, 'status_changed',
           jsonb_build_object('from', 'new', 'to', d.status), d.updated_at
      FROM crm.deals d WHERE d.organization_id = v_org AND d.status <> 'new';

    IF p_tasks_per_org IS NULL THEN
      INSERT INTO crm.tasks (organization_id, deal_id, title, due_date, is_done)
      SELECT d.organization_id, d.id, format('Follow up on %s', d.title),
             current_date + (random() * 90)::int, random() < 0.3
        FROM crm.deals d WHERE d.organization_id = v_org AND d.status IN ('new', 'in_progress') AND random() < 0.3;
    ELSE
      SELECT array_agg(d.id) INTO v_deals FROM crm.deals d WHERE d.organization_id = v_org;
      INSERT INTO crm.tasks (organization_id, deal_id, title, due_date, is_done)
      SELECT v_org, v_deals[1 + floor(r.r1 * array_length(v_deals, 1))::int], format('Task %s', r.n),
             current_date + (r.r2 * 180)::int - 60, r.r3 < 0.3
        FROM (SELECT n, random() AS r1, random() AS r2, random() AS r3
                FROM generate_series(1, p_tasks_per_org) n) r;
    END IF;
    INSERT INTO crm.activities (organization_id, deal_id, author_id, type, payload)
    SELECT t.organization_id, t.deal_id, NULL, 'task_created',
           jsonb_build_object('task_id', t.id, 'title', t.title, 'due_date', t.due_date)
      FROM crm.tasks t WHERE t.organization_id = v_org;
    IF p_activities_per_org IS NOT NULL THEN
      SELECT count(*) INTO v_timeline FROM crm.activities a WHERE a.organization_id = v_org;
      IF v_deals IS NULL THEN
        SELECT array_agg(d.id) INTO v_deals FROM crm.deals d WHERE d.organization_id = v_org;
      END IF;
      INSERT INTO crm.activities (organization_id, deal_id, author_id, type, payload, created_at)
      SELECT v_org, v_deals[1 + floor(r.r1 * array_length(v_deals, 1))::int],
             v_users[1 + floor(r.r2 * array_length(v_users, 1))::int], 'comment',
             jsonb_build_object('text', format('Note %s', r.n)), now() - r.r3 * interval '700 days'
        FROM (SELECT n, random() AS r1, random() AS r2, random() AS r3
                FROM generate_series(1, p_activities_per_org - v_timeline) n) r;
    END IF;

    PERFORM private.seed_stage_history(v_org);
    v_seeded := v_seeded || v_org;
    INSERT INTO crm.deal_totals (organization_id, pipeline_id, status, stage, currency, close_month, deals, amount)
    SELECT d.organization_id, d.pipeline_id, d.status, d.stage, d.currency,
           app.close_month(d.status, d.expected_close_date), count(*), sum(d.amount)
      FROM crm.deals d WHERE d.organization_id = v_org
     GROUP BY 1, 2, 3, 4, 5, 6;

    INSERT INTO crm.deal_created_days (organization_id, pipeline_id, day, deals)
    SELECT d.organization_id, d.pipeline_id, app.created_day(d.created_at), count(*)
      FROM crm.deals d WHERE d.organization_id = v_org
     GROUP BY 1, 2, 3;

    organization_id := v_org;
    owner_email := format('seed-%s-%s-1@example.com', v_run, i);
    deals := p_deals_per_org::bigint;
    RETURN NEXT;
  END LOOP;

  IF v_rebuild THEN
    ALTER TABLE crm.deal_stage_history ADD CONSTRAINT deal_stage_history_pkey PRIMARY KEY (organization_id, id);
  END IF;
  FOREACH t IN ARRAY coalesce(v_indexes, '{}') LOOP
    EXECUTE t;
  END LOOP;
  FOREACH v_org IN ARRAY coalesce(v_seeded, '{}') LOOP
    PERFORM private.velocity_rebuild(v_org);
  END LOOP;
  FOREACH t IN ARRAY v_tables LOOP
    EXECUTE format('ALTER TABLE crm.%I ENABLE TRIGGER USER', t);
  END LOOP;
END
$$;
