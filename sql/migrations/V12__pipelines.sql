-- Pipelines with custom stages (SPEC §9, issue #11). The four stages of the
-- crm.deal_stage enum become rows of a pipeline of each organization; a deal
-- names its pipeline and the key of its stage, and the composite foreign key
-- (organization_id, pipeline_id, stage) keeps it inside that pipeline (so a
-- stage that holds deals cannot disappear, and no deal can sit in another
-- pipeline's stage). The rules, the default pipeline of a new organization
-- and the position bookkeeping live in sql/functions/27_pipelines.sql and
-- 30_pipeline_rules.sql.

-- The timeline event of a move to another pipeline. A value added here may
-- not be used in this transaction; nothing below uses it (the repeatable
-- files that do run in the next one).
ALTER TYPE crm.activity_type ADD VALUE IF NOT EXISTS 'pipeline_changed';

-- Positions are a strict order (1, 2, ... n, kept consecutive by the API and
-- checked at commit by a constraint trigger); the unique constraints are
-- deferred so that one statement, or one transaction, can renumber.
-- Pipeline names are unique per organization by the same locale-independent
-- folding as email addresses (app.email_key: NFKC and Unicode simple case
-- folding), so "Sales", "sales" and "ＳＡＬＥＳ" are one name.
CREATE TABLE crm.pipelines (
  organization_id uuid NOT NULL REFERENCES crm.organizations (id) ON DELETE CASCADE,
  id              uuid NOT NULL DEFAULT gen_random_uuid(),
  name            text NOT NULL CONSTRAINT pipelines_name_invalid CHECK (length(app.trim_space(name)) BETWEEN 1 AND 200),
  position        int NOT NULL CONSTRAINT pipelines_position_invalid CHECK (position >= 1),
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, id),
  CONSTRAINT pipelines_position_taken UNIQUE (organization_id, position) DEFERRABLE INITIALLY DEFERRED
);
CREATE UNIQUE INDEX pipelines_name_taken ON crm.pipelines (organization_id, app.email_key(name));

-- A stage's key is what deals, clients and stored activities refer to: it
-- never changes (the rule trigger refuses it), only name, position and
-- probability do. probability: the chance, in percent, that a deal in this
-- stage is won (SPEC §10's forecast).
CREATE TABLE crm.pipeline_stages (
  organization_id uuid NOT NULL REFERENCES crm.organizations (id) ON DELETE CASCADE,
  id              uuid NOT NULL DEFAULT gen_random_uuid(),
  pipeline_id     uuid NOT NULL,
  key             text NOT NULL CONSTRAINT pipeline_stages_key_invalid CHECK (key ~ '^[a-z][a-z0-9_]{0,39}$'),
  name            text NOT NULL CONSTRAINT pipeline_stages_name_invalid CHECK (length(app.trim_space(name)) BETWEEN 1 AND 200),
  position        int NOT NULL CONSTRAINT pipeline_stages_position_invalid CHECK (position >= 1),
  probability     int NOT NULL CONSTRAINT pipeline_stages_probability_invalid CHECK (probability BETWEEN 0 AND 100),
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, id),
  CONSTRAINT pipeline_stages_key_taken UNIQUE (organization_id, pipeline_id, key),
  CONSTRAINT pipeline_stages_position_taken UNIQUE (organization_id, pipeline_id, position) DEFERRABLE INITIALLY DEFERRED,
  CONSTRAINT pipeline_stages_pipeline_id_not_found FOREIGN KEY (organization_id, pipeline_id)
    REFERENCES crm.pipelines (organization_id, id) ON DELETE CASCADE
);

ALTER TABLE crm.pipelines ENABLE ROW LEVEL SECURITY;
ALTER TABLE crm.pipelines FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.pipeline_stages ENABLE ROW LEVEL SECURITY;
ALTER TABLE crm.pipeline_stages FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE, DELETE ON crm.pipelines, crm.pipeline_stages TO minicrm_api;

-- Every existing organization gets "Sales" with the old four stages. Its id
-- is derived from the organization's (md5, shaped as a UUID), so that the
-- deals can be rewritten in the same single pass that changes the type of
-- their stage, without a join. (Pipelines made later get random ids.)
-- The owner must see every row for these statements (RLS is forced), as in V4.
ALTER TABLE crm.organizations NO FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.pipelines NO FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.pipeline_stages NO FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.deals NO FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.deal_totals NO FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.deal_totals_delta NO FORCE ROW LEVEL SECURITY;

INSERT INTO crm.pipelines (organization_id, id, name, position)
SELECT o.id, md5(o.id::text || '/pipelines/sales')::uuid, 'Sales', 1 FROM crm.organizations o;
INSERT INTO crm.pipeline_stages (organization_id, pipeline_id, key, name, position, probability)
SELECT o.id, md5(o.id::text || '/pipelines/sales')::uuid, s.key, s.name, s.position, s.probability
  FROM crm.organizations o
 CROSS JOIN (VALUES ('qualification', 'Qualification', 1, 10), ('proposal', 'Proposal', 2, 30),
                    ('negotiation', 'Negotiation', 3, 60), ('closed', 'Closed', 4, 100)) s (key, name, position, probability);

-- Deals: pipeline_id, and the stage as its key. One rewrite of the table
-- does both (ALTER ... TYPE with USING; SET NOT NULL is checked during the
-- same pass), with no UPDATE: no row trigger fires, updated_at and every
-- other column stay as they were, and no timeline row is written.
-- The timeline trigger names the stage column (UPDATE OF status, stage),
-- which forbids changing its type; 30_pipeline_rules.sql creates it again.
-- deals_by_stage is replaced below, so it is not rebuilt by the rewrite.
DROP TRIGGER IF EXISTS deals_timeline ON crm.deals;
DROP INDEX crm.deals_by_stage;
ALTER TABLE crm.deals ADD COLUMN pipeline_id uuid;
ALTER TABLE crm.deals
  ALTER COLUMN stage DROP DEFAULT,
  ALTER COLUMN stage TYPE text USING stage::text,
  ALTER COLUMN pipeline_id TYPE uuid USING md5(organization_id::text || '/pipelines/sales')::uuid,
  ALTER COLUMN pipeline_id SET NOT NULL;
ALTER TABLE crm.deals ADD CONSTRAINT deals_stage_not_in_pipeline FOREIGN KEY (organization_id, pipeline_id, stage)
  REFERENCES crm.pipeline_stages (organization_id, pipeline_id, key);
-- Serves the foreign key's checks (a stage deleted, the stage_has_deals and
-- pipeline_has_deals rules) and the list filters pipeline_id and stage.
CREATE INDEX deals_by_stage ON crm.deals (organization_id, pipeline_id, stage, created_at, id);

-- The running totals of analytics (V4) count per pipeline too.
ALTER TABLE crm.deal_totals ADD COLUMN pipeline_id uuid;
ALTER TABLE crm.deal_totals DROP CONSTRAINT deal_totals_pkey,
  ALTER COLUMN stage TYPE text USING stage::text,
  ALTER COLUMN pipeline_id TYPE uuid USING md5(organization_id::text || '/pipelines/sales')::uuid,
  ALTER COLUMN pipeline_id SET NOT NULL,
  ADD PRIMARY KEY (organization_id, pipeline_id, status, stage, currency);
ALTER TABLE crm.deal_totals_delta ADD COLUMN pipeline_id uuid;
ALTER TABLE crm.deal_totals_delta
  ALTER COLUMN stage TYPE text USING stage::text,
  ALTER COLUMN pipeline_id TYPE uuid USING md5(organization_id::text || '/pipelines/sales')::uuid,
  ALTER COLUMN pipeline_id SET NOT NULL;

ALTER TABLE crm.organizations FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.pipelines FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.pipeline_stages FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.deals FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.deal_totals FORCE ROW LEVEL SECURITY;
ALTER TABLE crm.deal_totals_delta FORCE ROW LEVEL SECURITY;

-- The enum is gone. What still names it are functions of the old repeatable
-- files (their signatures); they are dropped here and created anew, with
-- text, by the repeatable step that follows every migration.
DO $$
DECLARE
  f regprocedure;
BEGIN
  FOR f IN SELECT DISTINCT d.objid::regprocedure FROM pg_depend d
            WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_type'::regclass
              AND d.refobjid IN ('crm.deal_stage'::regtype, 'crm.deal_stage[]'::regtype) LOOP
    EXECUTE 'DROP FUNCTION ' || f;
  END LOOP;
END
$$;
DROP TYPE crm.deal_stage;
