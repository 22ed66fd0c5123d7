-- Usage rolled up per ISO week (Monday 00:00 UTC), per allocation and per pool,
-- kept by the same transaction that accepts each record. actual_last_week,
-- the utilisation series and forecasts read these instead of every record.
CREATE TABLE usage_weeks (
    allocation_seq BIGINT NOT NULL,
    week_start     BIGINT NOT NULL,
    quantity       BIGINT NOT NULL,
    PRIMARY KEY (allocation_seq, week_start)
);
CREATE TABLE pool_usage_weeks (
    pool_seq   BIGINT NOT NULL,
    week_start BIGINT NOT NULL,
    quantity   BIGINT NOT NULL,
    PRIMARY KEY (pool_seq, week_start)
);
-- Instants are microseconds since 1970-01-01, a Thursday: day d is in the
-- week starting on day d - (d + 3) mod 7 (usage is never before 1970).
INSERT INTO usage_weeks (allocation_seq, week_start, quantity)
    SELECT allocation_seq,
           (occurred_at / 86400000000 - (occurred_at / 86400000000 + 3) % 7) * 86400000000,
           SUM(quantity)::BIGINT
    FROM usage_records GROUP BY 1, 2;
INSERT INTO pool_usage_weeks (pool_seq, week_start, quantity)
    SELECT a.pool_seq, w.week_start, SUM(w.quantity)::BIGINT
    FROM usage_weeks w JOIN allocations a ON a.seq = w.allocation_seq GROUP BY 1, 2;
CREATE INDEX allocations_pool_ends ON allocations (pool_seq, ends_at);
CREATE INDEX demand_requests_window ON demand_requests (workspace_id, resource_type, status, starts_at);
