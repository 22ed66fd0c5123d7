-- An allocation's terms are read and written by allocation: clustered by
-- their primary key (allocation_seq, effective_at), a read walks one B-tree
-- instead of the key's index and then the table, and an insert writes one.
-- Their rows are small (a commitment, a short list of resources).
CREATE TABLE allocation_terms_clustered (
    allocation_seq INTEGER NOT NULL REFERENCES allocations (seq),
    effective_at   INTEGER NOT NULL,
    committed      INTEGER NOT NULL,
    resources      TEXT NOT NULL,
    reason         TEXT,
    PRIMARY KEY (allocation_seq, effective_at)
) WITHOUT ROWID;
INSERT INTO allocation_terms_clustered (allocation_seq, effective_at, committed, resources, reason)
    SELECT allocation_seq, effective_at, committed, resources, reason FROM allocation_terms;
DROP TABLE allocation_terms;
ALTER TABLE allocation_terms_clustered RENAME TO allocation_terms;
