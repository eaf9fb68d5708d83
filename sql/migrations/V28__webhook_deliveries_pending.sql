-- The worker's claim (private.webhook_deliveries_claim,
-- sql/functions/62_webhooks.sql) takes each endpoint's next due deliveries
-- in next_attempt_at order: this index gives them as one short range per
-- endpoint, whatever the backlog. Without it the claim read every pending
-- delivery of each endpoint through webhook_deliveries_by_webhook and
-- sorted them, so a backlog of 6,000 (a 1,500-event transaction to four
-- endpoints, scripts/webhook-faults b2) made each claim of 32 cost 40 to
-- 70 ms, and the burst drained at 350 deliveries a second. Partial, as
-- webhook_deliveries_due: finished deliveries are not in it.
CREATE INDEX webhook_deliveries_pending ON crm.webhook_deliveries (organization_id, webhook_id, next_attempt_at)
  WHERE status = 'pending';
