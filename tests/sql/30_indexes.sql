-- The indexes that keep lists, search and analytics fast (issue 4) exist and
-- lead with organization_id.
BEGIN;
SELECT plan(37);

SELECT has_index('crm', 'deals', 'deals_by_created', ARRAY['organization_id', 'created_at', 'id'], 'deals: default sort');
SELECT has_index('crm', 'deals', 'deals_by_updated', ARRAY['organization_id', 'updated_at', 'id'], 'deals: order_by=updated_at');
SELECT has_index('crm', 'deals', 'deals_by_amount', ARRAY['organization_id', 'amount_cents', 'id'], 'deals: order_by=amount and the amount filters, in cents (V10)');
SELECT has_index('crm', 'deals', 'deals_by_title', ARRAY['organization_id', 'title', 'id'], 'deals: order_by=title');
SELECT has_index('crm', 'deals', 'deals_by_status_amount', ARRAY['organization_id', 'status_code', 'amount_cents', 'id'],
  'deals: the status and amount filters, and their count from the index alone (V29)');
-- The list filters by status_code (V29): every status has a code, and no two
-- share one (a status added to the enum without a code would match nothing).
SELECT is((SELECT count(DISTINCT app.deal_status_code(s)) FROM unnest(enum_range(NULL::crm.deal_status)) s),
          (SELECT count(*) FROM unnest(enum_range(NULL::crm.deal_status)) s),
          'deals: every status has a code of its own');
SELECT is((SELECT count(*) FROM crm.deals WHERE status_code IS DISTINCT FROM app.deal_status_code(status)), 0::bigint,
          'deals: status_code is the status''s code');
SELECT has_index('crm', 'deals', 'deals_by_stage', ARRAY['organization_id', 'pipeline_id', 'stage', 'created_at', 'id', 'deleted_at'],
  'deals: pipeline and stage filters, and the checks of the foreign key to their stage (V12)');
SELECT has_index('crm', 'pipeline_stages', 'pipeline_stages_key_taken', ARRAY['organization_id', 'pipeline_id', 'key'], 'stages: by key (the deals'' foreign key)');
SELECT has_index('crm', 'pipelines', 'pipelines_position_taken', ARRAY['organization_id', '"position"'], 'pipelines: in order');
SELECT has_index('crm', 'deals', 'deals_by_closed', ARRAY['organization_id', 'pipeline_id', 'closed_at'],
  'deals: won and lost on the first day of a velocity window (V13)');
SELECT has_index('crm', 'deal_stage_history', 'deal_stage_history_by_deal', ARRAY['organization_id', 'deal_id', 'entered_at'],
  'stage history: a deal''s stays, in order');
SELECT ok((SELECT indisunique AND pg_get_expr(indpred, indrelid) = '(left_at IS NULL)' FROM pg_index
            WHERE indexrelid = 'crm.deal_stage_history_deal_id_taken'::regclass),
  'stage history: one current stay per deal (partial unique)');
SELECT has_index('crm', 'deal_stage_history', 'deal_stage_history_by_left', ARRAY['organization_id', 'pipeline_id', 'left_at'],
  'stage history: stays that ended on the first day of a velocity window');
SELECT has_index('crm', 'deal_stage_history', 'deal_stage_history_open_by_entered', ARRAY['organization_id', 'pipeline_id', 'entered_at'],
  'stage history: current stays that began on the day stuck begins');
SELECT has_index('crm', 'stage_stays_done', 'stage_stays_done_pkey', ARRAY['organization_id', 'pipeline_id', 'grain', 'period', 'stage', 'bucket'],
  'finished stays: a window''s whole months, then its whole days');
SELECT has_index('crm', 'deals', 'deals_by_owner', ARRAY['organization_id', 'owner_id', 'deleted_at'], 'deals: owner filter (deleted_at included, V17)');
SELECT has_index('crm', 'deals', 'deals_by_contact', ARRAY['organization_id', 'contact_id'], 'deals: contact filter');
SELECT has_index('crm', 'contacts', 'contacts_by_created', ARRAY['organization_id', 'created_at', 'id'], 'contacts: default sort');
SELECT has_index('crm', 'contacts', 'contacts_by_owner', ARRAY['organization_id', 'owner_id', 'created_at', 'id', 'deleted_at'],
  'contacts: owner filter (deleted_at included, V17)');
SELECT ok((SELECT indisunique FROM pg_index WHERE indexrelid = 'crm.contacts_by_created'::regclass),
  'contacts: the default sort is unique, for the words'' foreign key (V11)');
SELECT has_index('crm', 'contact_search_words', 'contact_search_words_pkey', ARRAY['organization_id', 'created_at', 'contact_id', 'word'],
  'contact search: the words in list order (dense terms, the contact''s own words)');
SELECT has_index('crm', 'contact_search_words', 'contact_search_words_by_word', ARRAY['organization_id', 'word', 'created_at', 'contact_id'],
  'contact search: word prefixes as ranges (sparse terms), and words in list order');
SELECT hasnt_index('crm', 'contacts', 'contacts_search_name', 'the trigram indexes are gone (V11: no request could use them)');
SELECT has_index('crm', 'tasks', 'tasks_by_due', ARRAY['organization_id', 'due_date', 'id'], 'tasks: default sort and due filters');
SELECT has_index('crm', 'tasks', 'tasks_by_deal', ARRAY['organization_id', 'deal_id', 'due_date', 'id'], 'tasks: deal filter');
SELECT has_index('crm', 'tasks', 'tasks_open_by_due', ARRAY['organization_id', 'due_date', 'id'], 'tasks: only_open');
SELECT has_index('crm', 'activities', 'activities_by_deal', 'timeline per deal, newest first');
SELECT has_index('crm', 'invitations', 'invitations_by_created', ARRAY['organization_id', 'created_at', 'id'], 'invitations: the list and the rate limit');
SELECT has_index('crm', 'invitations', 'invitations_by_email_key', ARRAY['email_key', 'created_at'], 'invitations: the invitee''s side');
SELECT ok((SELECT indisunique AND pg_get_expr(indpred, indrelid) LIKE '%pending%' FROM pg_index WHERE indexrelid = 'crm.invitations_email_taken'::regclass),
  'invitations: one pending invitation per organization and address (partial unique)');

-- The trash (V17): the list indexes no foreign key needs hold live rows
-- only; the trash lists have their own.
SELECT is((SELECT array_agg(indexrelid::regclass::text ORDER BY indexrelid::regclass::text) FROM pg_index
            WHERE pg_get_expr(indpred, indrelid) LIKE '%deleted_at IS NULL%'),
          ARRAY['crm.deals_by_amount', 'crm.deals_by_created', 'crm.deals_by_status_amount', 'crm.deals_by_title',
                'crm.deals_by_updated', 'crm.tasks_by_due', 'crm.tasks_open_by_due'],
          'the list indexes without a foreign key to serve are partial: deleted_at IS NULL');
SELECT has_index('crm', 'contacts', 'contacts_trash', ARRAY['organization_id', 'deleted_at', 'id'], 'contacts: the trash, newest first');
SELECT has_index('crm', 'deals', 'deals_trash', ARRAY['organization_id', 'deleted_at', 'id'], 'deals: the trash, newest first');
SELECT has_index('crm', 'tasks', 'tasks_trash', ARRAY['organization_id', 'deleted_at', 'id'], 'tasks: the trash, newest first');

-- Every index on a tenant table leads with organization_id (except the
-- secondary lookups of memberships by user, which serves app.act_as, and of
-- invitations by address, which serves the invitee).
SELECT is(
  (SELECT array_agg(i.indexrelid::regclass::text ORDER BY i.indexrelid::regclass::text)
     FROM pg_index i
     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
    WHERE i.indrelid = ANY (ARRAY['crm.organization_members', 'crm.invitations', 'crm.contacts', 'crm.contact_search_words', 'crm.deals', 'crm.tasks', 'crm.activities', 'crm.deal_totals', 'crm.deal_totals_delta',
                                'crm.pipelines', 'crm.pipeline_stages', 'crm.deal_created_days', 'crm.deal_created_days_delta',
                                'crm.deal_stage_history', 'crm.stage_stays_done',
                                'crm.stage_stays_open', 'crm.deal_closes', 'crm.velocity_delta']::regclass[])
      AND a.attname <> 'organization_id'),
  ARRAY['crm.invitations_by_email_key', 'crm.organization_members_by_user'],
  'every tenant-table index leads with organization_id');
SELECT is((SELECT collname::text FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation
            WHERE a.attrelid = 'crm.contact_search_words'::regclass AND a.attname = 'word'),
          'C', 'the words are in "C" order, so a prefix is a range');

SELECT * FROM finish();
ROLLBACK;
