-- The seed's stage histories (called by private.seed, 90_seed.sql, for each
-- organization it makes, with the triggers off): every deal went through
-- each stage of its pipeline up to its current one, one stay each, the
-- stays spread over the deal's life (created_at to closed_at, or to now for
-- an open deal) in shares of varying length; then the velocity totals,
-- computed set-based from them.
-- A fraction in [0, 1) that looks random in x.
CREATE OR REPLACE FUNCTION private.seed_fraction(p_x float8) RETURNS float8
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT p_x * 9.973 - floor(p_x * 9.973) $$;

CREATE OR REPLACE FUNCTION private.seed_stage_history(p_org_id uuid) RETURNS void
  LANGUAGE plpgsql
  AS $$
BEGIN
  -- Stay j of k begins at share g(j) of the life: g(1) = 0, and for j > 1
  -- (j - 1 + 0.9 × a pseudo-random fraction of the deal and j) / k, so the
  -- shares grow with j and the end of stay j (g(j + 1)) needs no look at
  -- the next row (the same expression, so the same float rounding). u: one
  -- random() per deal (OFFSET 0 keeps it in the subquery).
  INSERT INTO crm.deal_stage_history (organization_id, deal_id, pipeline_id, stage, entered_at, left_at, entered_by, deal_open)
  SELECT d.organization_id, d.id, d.pipeline_id, s.key,
         d.created_at + d.life * CASE WHEN s.position = 1 THEN 0
                                      ELSE (s.position - 1 + 0.9 * private.seed_fraction(d.u * s.position)) / cur.position END,
         CASE WHEN s.position < cur.position
              THEN d.created_at + d.life * ((s.position + 0.9 * private.seed_fraction(d.u * (s.position + 1))) / cur.position) END,
         d.owner_id,
         s.position < cur.position OR d.status IN ('new', 'in_progress')
    FROM (SELECT d.organization_id, d.id, d.pipeline_id, d.stage, d.status, d.created_at, d.owner_id,
                 greatest(coalesce(d.closed_at, now()) - d.created_at, interval '0') AS life, random() AS u
            FROM crm.deals d WHERE d.organization_id = p_org_id OFFSET 0) d
    JOIN crm.pipeline_stages cur ON cur.organization_id = d.organization_id AND cur.pipeline_id = d.pipeline_id
                                AND cur.key = d.stage
    JOIN crm.pipeline_stages s ON s.organization_id = d.organization_id AND s.pipeline_id = d.pipeline_id
                              AND s.position <= cur.position;
  -- The velocity totals are rebuilt by private.seed once the indexes are
  -- back: without them, each organization's rebuild would read the whole
  -- history table (quadratic in the number of organizations).
END
$$;
