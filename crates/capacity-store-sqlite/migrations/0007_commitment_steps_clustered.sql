-- A pool's commitment at t is a sum over its steps. Clustering the steps by
-- (pool_seq, at, allocation_seq) puts each delta in the index the sum walks,
-- so it reads no table rows.
CREATE TABLE commitment_steps_clustered (
    pool_seq       INTEGER NOT NULL,
    at             INTEGER NOT NULL,
    allocation_seq INTEGER NOT NULL,
    delta          INTEGER NOT NULL,
    PRIMARY KEY (pool_seq, at, allocation_seq)
) WITHOUT ROWID;
INSERT INTO commitment_steps_clustered (pool_seq, at, allocation_seq, delta)
    SELECT pool_seq, at, allocation_seq, delta FROM commitment_steps;
DROP TABLE commitment_steps;
ALTER TABLE commitment_steps_clustered RENAME TO commitment_steps;
CREATE INDEX commitment_steps_allocation ON commitment_steps (allocation_seq);
