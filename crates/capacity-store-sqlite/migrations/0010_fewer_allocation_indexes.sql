-- Two indexes every allocation insert paid for and no query needs:
-- `allocations_service_line (service_line_id)` is a prefix of
-- `allocations_service_line_seq (service_line_id, seq)`, and
-- `allocations_pool_ends (pool_seq, ends_at)` served the forecast's
-- "what expires in this period", which now reads the pool's commitment
-- steps (`commitment_steps` is keyed by pool and time already).
-- Measured: one B-tree fewer per write and fewer scattered pages per group
-- commit; SQLite creates +12 %.
DROP INDEX IF EXISTS allocations_service_line;
DROP INDEX IF EXISTS allocations_pool_ends;
