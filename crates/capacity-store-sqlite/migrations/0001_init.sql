-- Instants are UTC microseconds since the epoch; quantities are thousandths.
CREATE TABLE sequences (
    prefix TEXT PRIMARY KEY,
    next   INTEGER NOT NULL
);
INSERT INTO sequences (prefix, next) VALUES
    ('CAP', 1), ('ALLOC', 1), ('REQ', 1), ('EVT', 1), ('WHE', 1), ('TOK', 1), ('ADJ', 1);

CREATE TABLE tokens (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    hash            BLOB NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    organization_id TEXT,
    workspaces      TEXT NOT NULL,
    access          TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    revoked_at      INTEGER
);

CREATE TABLE pools (
    seq                 INTEGER PRIMARY KEY,
    id                  TEXT NOT NULL UNIQUE,
    workspace_id        TEXT NOT NULL,
    organization_id     TEXT NOT NULL,
    resource_type       TEXT NOT NULL,
    period              TEXT NOT NULL,
    overcommit_ratio    INTEGER NOT NULL,
    unit_price_amount   TEXT,
    unit_price_currency TEXT,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    UNIQUE (workspace_id, resource_type)
);
CREATE INDEX pools_organization ON pools (organization_id, seq);

-- The supply ledger: a pool's supply at t is the sum of deltas effective at or before t.
CREATE TABLE supply_changes (
    seq          INTEGER PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    pool_seq     INTEGER NOT NULL REFERENCES pools (seq),
    delta        INTEGER NOT NULL,
    reason       TEXT,
    source       TEXT NOT NULL,
    effective_at INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    created_by   TEXT NOT NULL
);
CREATE INDEX supply_changes_pool ON supply_changes (pool_seq, effective_at);

CREATE TABLE service_lines (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    status          TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX service_lines_workspace ON service_lines (workspace_id);

CREATE TABLE allocations (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    pool_seq        INTEGER NOT NULL REFERENCES pools (seq),
    workspace_id    TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    service_line_id TEXT NOT NULL REFERENCES service_lines (id),
    resource_type   TEXT NOT NULL,
    status          TEXT NOT NULL,
    starts_at       INTEGER NOT NULL,
    ends_at         INTEGER,
    closed_at       INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    version         INTEGER NOT NULL
);
CREATE INDEX allocations_pool ON allocations (pool_seq, seq);
CREATE INDEX allocations_workspace ON allocations (workspace_id, seq);
CREATE INDEX allocations_organization ON allocations (organization_id, seq);
CREATE INDEX allocations_service_line ON allocations (service_line_id);

-- Versions of an allocation's terms, each in force from effective_at.
CREATE TABLE allocation_terms (
    allocation_seq INTEGER NOT NULL REFERENCES allocations (seq),
    effective_at   INTEGER NOT NULL,
    committed      INTEGER NOT NULL,
    resources      TEXT NOT NULL,
    reason         TEXT,
    PRIMARY KEY (allocation_seq, effective_at)
);

-- Each allocation's commitment timeline as steps, kept beside the pool so the
-- pool's total commitment at t is one indexed sum.
CREATE TABLE commitment_steps (
    pool_seq       INTEGER NOT NULL,
    at             INTEGER NOT NULL,
    allocation_seq INTEGER NOT NULL,
    delta          INTEGER NOT NULL,
    PRIMARY KEY (pool_seq, at, allocation_seq)
);
CREATE INDEX commitment_steps_allocation ON commitment_steps (allocation_seq);

CREATE TABLE allocation_history (
    seq            INTEGER PRIMARY KEY,
    allocation_seq INTEGER NOT NULL REFERENCES allocations (seq),
    actor          TEXT NOT NULL,
    reason         TEXT,
    before         TEXT,
    after          TEXT NOT NULL,
    effective_at   INTEGER NOT NULL,
    created_at     INTEGER NOT NULL
);
CREATE INDEX allocation_history_allocation ON allocation_history (allocation_seq, seq);

CREATE TABLE usage_records (
    organization_id TEXT NOT NULL,
    record_id       TEXT NOT NULL,
    allocation_seq  INTEGER NOT NULL REFERENCES allocations (seq),
    quantity        INTEGER NOT NULL,
    occurred_at     INTEGER NOT NULL,
    received_at     INTEGER NOT NULL,
    PRIMARY KEY (organization_id, record_id)
);
CREATE INDEX usage_records_allocation ON usage_records (allocation_seq, occurred_at);

CREATE TABLE demand_requests (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    workspace_id    TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    resource_type   TEXT NOT NULL,
    quantity        INTEGER NOT NULL,
    starts_at       INTEGER NOT NULL,
    ends_at         INTEGER,
    note            TEXT,
    status          TEXT NOT NULL,
    allocation_id   TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX demand_requests_workspace ON demand_requests (workspace_id, resource_type, status);

-- The transactional outbox.
CREATE TABLE events (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    organization_id TEXT NOT NULL,
    workspace_id    TEXT NOT NULL,
    type            TEXT NOT NULL,
    data            TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX events_organization ON events (organization_id, seq);
CREATE INDEX events_type ON events (type, seq);

CREATE TABLE idempotency_keys (
    token_id     TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash BLOB NOT NULL,
    status       INTEGER,
    body         BLOB,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (token_id, key)
);
