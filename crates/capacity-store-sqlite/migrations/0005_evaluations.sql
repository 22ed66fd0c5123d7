-- Periodic evaluations done, one row per kind and period, so each runs once
-- however many server processes try.
CREATE TABLE evaluations (
    kind         TEXT NOT NULL,
    period_start INTEGER NOT NULL,
    evaluated_at INTEGER NOT NULL,
    PRIMARY KEY (kind, period_start)
);
CREATE INDEX allocations_status ON allocations (status, seq);
