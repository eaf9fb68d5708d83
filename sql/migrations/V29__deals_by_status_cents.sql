-- The status filter, usable by an index under RLS, as the amount's (V10).
--
-- Every list request counts its matches (exact up to 1,000, SPEC §14), and
-- the common filter is status and amount. An enum's = is not LEAKPROOF, so
-- under RLS `status = ANY (…)` can only filter the rows an index gives for
-- the other conditions, in the index's order. With the index of V2/V17
-- (organization_id, status, amount, id) that order puts every new deal
-- before the first won one, and a count of the won deals read the whole
-- index up to them; with the numeric amount, no filter compared it any more
-- (V10). The status as a smallint is compared by int2eq, which is
-- leakproof: `status_code = ANY (…)` is an index condition, and the count of
-- a status and amount filter reads exactly its matches from this index.
--
-- app.deal_status_code is the one mapping, for the column and for the
-- list's filter (api.deals_list). It is defined here, not in
-- sql/functions: a stored column depends on it, so changing it needs a
-- migration that also rewrites the column. tests/sql/30_indexes.sql checks
-- that it gives every status a code of its own.
CREATE FUNCTION app.deal_status_code(p_status crm.deal_status) RETURNS smallint
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT CASE p_status WHEN 'new' THEN 1 WHEN 'in_progress' THEN 2 WHEN 'won' THEN 3 WHEN 'lost' THEN 4 END::smallint $$;

ALTER TABLE crm.deals ADD COLUMN status_code smallint GENERATED ALWAYS AS (app.deal_status_code(status)) STORED;
DROP INDEX crm.deals_by_status_amount;
CREATE INDEX deals_by_status_amount ON crm.deals (organization_id, status_code, amount_cents, id) WHERE deleted_at IS NULL;
-- The list's estimates beyond 1,000 matches read the new column's statistics.
ANALYZE crm.deals (status_code);
