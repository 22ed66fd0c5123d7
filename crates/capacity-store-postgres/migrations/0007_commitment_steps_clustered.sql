-- SQLite clusters commitment_steps by its primary key in this migration.
-- PostgreSQL gets the same effect from a covering index: the sum over a
-- pool's steps becomes an index-only scan.
CREATE INDEX commitment_steps_covering ON commitment_steps (pool_seq, at) INCLUDE (delta);
