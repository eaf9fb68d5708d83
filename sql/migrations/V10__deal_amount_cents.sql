-- Amount filters and the amount sort, usable by an index under RLS.
--
-- Under row-level security the planner may use a query's own condition as an
-- index condition only if its operator is LEAKPROOF (otherwise it must run
-- after the policy's). numeric's comparisons are not, bigint's are: with the
-- amount in cents (exact: at most two decimals, below 10^12, CHECKed), a sparse
-- `max_amount` is an index range scan instead of a filter over every deal, and
-- a cursor page in `order_by=amount` starts at its position instead of
-- reading every row before it.
-- Out-of-range amounts give NULL here rather than a bigint overflow, so that
-- the CHECK deals_amount_invalid is what refuses them (with its field).
ALTER TABLE crm.deals ADD COLUMN amount_cents bigint
  GENERATED ALWAYS AS (CASE WHEN abs(amount) < 1000000000000 THEN (amount * 100)::bigint END) STORED;
DROP INDEX crm.deals_by_amount;
CREATE INDEX deals_by_amount ON crm.deals (organization_id, amount_cents, id);
