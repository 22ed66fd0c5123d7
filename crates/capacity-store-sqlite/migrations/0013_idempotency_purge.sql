-- The periodic purge of idempotency keys: answered keys past their 24 hours,
-- and reservations left in flight by a request that never finished (a
-- crashed process). Each DELETE walks one of these by age.
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
CREATE INDEX idempotency_keys_in_flight ON idempotency_keys (created_at) WHERE status IS NULL;
