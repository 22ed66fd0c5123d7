-- Periodic evaluations done, one row per kind and period, so each runs once
-- however many server processes try: the row is inserted (ON CONFLICT DO
-- NOTHING) in the same transaction as the evaluation's events.
CREATE TABLE evaluations (
    kind         TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    evaluated_at BIGINT NOT NULL,
    PRIMARY KEY (kind, period_start)
);
CREATE INDEX allocations_status ON allocations (status, seq);
