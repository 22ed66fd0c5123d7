-- A pool's commitment at t, without summing all its steps: committed_base is
-- the sum of the steps at or before committed_through, so the value at t is
-- committed_base plus the steps in (committed_through, t] — or minus the
-- steps in (t, committed_through] for t before it. The writer moves
-- committed_through forward ("folds") to now on every write to the pool and
-- a background task folds idle pools, so a read sums only recent steps.
-- generation counts changes to the pool's supply and commitments (cache key).
ALTER TABLE pools ADD COLUMN committed_through BIGINT NOT NULL DEFAULT -9223372036854775808;
ALTER TABLE pools ADD COLUMN committed_base BIGINT NOT NULL DEFAULT 0;
ALTER TABLE pools ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
