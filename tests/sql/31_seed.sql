-- `minicrm seed` (private.seed): realistic, consistent demo data, and the
-- rule triggers switched back on afterwards.
BEGIN;
SELECT plan(29);

CREATE TEMP TABLE seeded AS
  SELECT * FROM private.seed(2, 300, '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA');

SELECT is((SELECT count(*)::int FROM seeded), 2, 'one row per organization');
SELECT is((SELECT m.role::text FROM seeded s JOIN crm.users u ON u.email = s.owner_email
             JOIN crm.organization_members m ON m.user_id = u.id AND m.organization_id = s.organization_id LIMIT 1),
          'owner', 'the reported login is the organization''s owner');
SELECT is((SELECT array_agg(DISTINCT m.role::text ORDER BY m.role::text) FROM crm.organization_members m
            WHERE m.organization_id IN (SELECT organization_id FROM seeded)),
          ARRAY['admin', 'manager', 'member', 'owner'], 'members of every role');
SELECT is((SELECT count(*)::int FROM crm.deals WHERE organization_id IN (SELECT organization_id FROM seeded)), 600, 'the deals asked for');
SELECT cmp_ok((SELECT count(DISTINCT (status, stage, currency))::int FROM crm.deals), '>=', 10,
              'deals spread over statuses, stages and currencies');
SELECT cmp_ok((SELECT count(DISTINCT owner_id)::int FROM crm.deals), '>', 8, 'deals spread over owners');
SELECT is((SELECT array_agg(DISTINCT x.p ORDER BY x.p) FROM (
             SELECT string_agg(p.name || ':' || (SELECT string_agg(s.key, ',' ORDER BY s.position) FROM crm.pipeline_stages s
                                                 WHERE s.pipeline_id = p.id), ' ' ORDER BY p.position) AS p
               FROM crm.pipelines p WHERE p.organization_id IN (SELECT organization_id FROM seeded) GROUP BY p.organization_id) x),
          ARRAY['Sales:qualification,proposal,negotiation,closed Renewals:renewal_due,quoted,renewed'],
          'each organization has Sales and a second pipeline, Renewals');
SELECT is((SELECT count(DISTINCT (d.organization_id, p.name))::int FROM crm.deals d
             JOIN crm.pipelines p ON (p.organization_id, p.id) = (d.organization_id, d.pipeline_id)
            WHERE d.organization_id IN (SELECT organization_id FROM seeded)), 4, 'both hold deals');
SELECT is((SELECT count(*)::int FROM crm.deals d WHERE d.organization_id IN (SELECT organization_id FROM seeded)
              AND NOT EXISTS (SELECT 1 FROM crm.activities a WHERE a.deal_id = d.id AND a.type = 'system'
                                AND (a.payload ->> 'pipeline_id')::uuid = d.pipeline_id)),
          0, 'each deal''s creation row names its pipeline');
SELECT is((SELECT count(*)::int FROM crm.deals WHERE status = 'won' AND amount <= 0), 0, 'R1 holds in the seed');
SELECT is((SELECT count(*)::int FROM crm.deals d
            WHERE NOT EXISTS (SELECT 1 FROM crm.activities a WHERE a.deal_id = d.id AND a.type = 'system')),
          0, 'every deal has its creation row on the timeline');
SELECT is((SELECT count(*)::int FROM crm.deals d WHERE d.status <> 'new'
              AND NOT EXISTS (SELECT 1 FROM crm.activities a WHERE a.deal_id = d.id AND a.type = 'status_changed')),
          0, 'every status change has its timeline row');
SELECT is((SELECT count(*)::int FROM crm.tasks t
            WHERE NOT EXISTS (SELECT 1 FROM crm.activities a WHERE a.deal_id = t.deal_id AND a.type = 'task_created'
                                AND a.payload ->> 'task_id' = t.id::text)),
          0, 'every task has its task_created row');
SELECT is((SELECT count(*)::int FROM pg_trigger
            WHERE tgrelid = ANY (ARRAY['crm.deals', 'crm.contacts', 'crm.tasks', 'crm.activities', 'crm.organization_members',
                                       'crm.deal_stage_history']::regclass[])
              AND NOT tgisinternal AND tgenabled = 'D'),
          0, 'the rule triggers are enabled again');

-- Stage histories (SPEC §10): every deal passed through its pipeline's
-- stages up to its current one, over its life.
SELECT is((SELECT count(*)::int FROM crm.deals d
            WHERE d.organization_id IN (SELECT organization_id FROM seeded)
              AND (SELECT count(*) FROM crm.deal_stage_history h
                    WHERE h.deal_id = d.id AND h.left_at IS NULL AND h.pipeline_id = d.pipeline_id AND h.stage = d.stage
                      AND h.deal_open = (d.status IN ('new', 'in_progress'))) <> 1),
          0, 'every deal has one current stay, in its stage, open as its status');
SELECT is((SELECT count(*)::int FROM crm.deals d
            JOIN crm.pipeline_stages cur ON cur.pipeline_id = d.pipeline_id AND cur.key = d.stage
           WHERE d.organization_id IN (SELECT organization_id FROM seeded)
             AND (SELECT string_agg(h.stage, ' ' ORDER BY h.entered_at) FROM crm.deal_stage_history h WHERE h.deal_id = d.id)
                 IS DISTINCT FROM (SELECT string_agg(s.key, ' ' ORDER BY s.position) FROM crm.pipeline_stages s
                                    WHERE s.pipeline_id = d.pipeline_id AND s.position <= cur.position)),
          0, 'one stay in each stage up to the current one, in order');
SELECT is((SELECT count(*)::int FROM crm.deal_stage_history h JOIN crm.deals d ON d.id = h.deal_id
            WHERE d.organization_id IN (SELECT organization_id FROM seeded)
              AND (h.entered_at < d.created_at OR h.left_at > coalesce(d.closed_at, now())
                   OR (h.left_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM crm.deal_stage_history n
                                                              WHERE n.deal_id = h.deal_id AND n.entered_at = h.left_at)))),
          0, 'each stay ends where the next begins, within the deal''s life');
SELECT cmp_ok((SELECT count(DISTINCT app.duration_bucket(extract(epoch FROM h.left_at - h.entered_at)))::int
                 FROM crm.deal_stage_history h WHERE h.left_at IS NOT NULL
                  AND h.organization_id IN (SELECT organization_id FROM seeded)), '>', 40,
              'stays of many lengths (distinct duration buckets)');
SELECT is((SELECT count(*)::int FROM crm.deals WHERE organization_id IN (SELECT organization_id FROM seeded)
              AND (closed_at IS NOT NULL) <> (status IN ('won', 'lost'))), 0, 'won and lost deals have their closed_at');
SELECT ok((SELECT avg((expected_close_date IS NOT NULL)::int) BETWEEN 0.75 AND 0.95
                  AND min(expected_close_date) < current_date - 60 AND max(expected_close_date) > current_date + 90
             FROM crm.deals WHERE organization_id IN (SELECT organization_id FROM seeded) AND status IN ('new', 'in_progress')),
  'most open deals expect to close, some months ago to months ahead');
SELECT is((SELECT sum(stays)::int FROM crm.stage_stays_done WHERE grain = 'month' AND organization_id IN (SELECT organization_id FROM seeded))
          + (SELECT sum(stays)::int FROM crm.stage_stays_open WHERE organization_id IN (SELECT organization_id FROM seeded))
          + (SELECT sum(deals)::int FROM crm.deal_closes WHERE organization_id IN (SELECT organization_id FROM seeded)),
          (SELECT count(*)::int FROM crm.deal_stage_history h JOIN crm.deals d ON d.id = h.deal_id
            WHERE d.organization_id IN (SELECT organization_id FROM seeded)
              AND (h.left_at IS NOT NULL OR d.status IN ('new', 'in_progress')))
          + (SELECT count(*)::int FROM crm.deals WHERE organization_id IN (SELECT organization_id FROM seeded) AND closed_at IS NOT NULL),
  'the velocity totals count every finished stay, current open stay and close');

-- The benchmark's shape: exact counts of contacts, tasks and timeline rows.
CREATE TEMP TABLE shaped AS
  SELECT * FROM private.seed(1, 200, '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA',
                             p_contacts_per_org => 150, p_tasks_per_org => 120, p_activities_per_org => 900);
SELECT set_config('app.org_id', (SELECT organization_id::text FROM shaped), true);
SELECT is((SELECT count(*)::int FROM crm.contacts WHERE organization_id = (SELECT organization_id FROM shaped)), 150,
          'exactly the contacts asked for');
SELECT is((SELECT count(*)::int FROM crm.tasks WHERE organization_id = (SELECT organization_id FROM shaped)), 120,
          'exactly the tasks asked for');
SELECT is((SELECT count(*)::int FROM crm.activities WHERE organization_id = (SELECT organization_id FROM shaped)), 900,
          'exactly the timeline rows asked for');
SELECT is((SELECT count(*)::int FROM crm.activities a
            WHERE a.organization_id = (SELECT organization_id FROM shaped) AND a.type = 'comment'
              AND (jsonb_typeof(a.payload -> 'text') <> 'string' OR a.author_id IS NULL)), 0,
          'the filling rows are comments with a text and an author');
SELECT is_empty(format($$
  (SELECT c.id, w FROM crm.contacts c, unnest(app.search_tokens(c.name || ' ' || coalesce(c.email, ''))) w
    WHERE c.organization_id = %1$L
   EXCEPT SELECT s.contact_id, s.word FROM crm.contact_search_words s WHERE s.organization_id = %1$L)
  UNION ALL
  (SELECT s.contact_id, s.word FROM crm.contact_search_words s WHERE s.organization_id = %1$L
   EXCEPT SELECT c.id, w FROM crm.contacts c, unnest(app.search_tokens(c.name || ' ' || coalesce(c.email, ''))) w
    WHERE c.organization_id = %1$L)$$, (SELECT organization_id FROM shaped)),
  'the seeded contacts are searchable: their words are the ones the trigger stores');

SELECT * FROM finish();
ROLLBACK;
