-- Webhook endpoints and one delivery row per (endpoint, event), fanned out
-- from the events outbox by the dispatcher. An endpoint receives events
-- created after it (from_event_seq).
CREATE TABLE webhook_endpoints (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    organization_id TEXT,
    url             TEXT NOT NULL,
    event_types     TEXT NOT NULL,
    description     TEXT,
    secret          TEXT NOT NULL,
    from_event_seq  INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    deleted_at      INTEGER
);
CREATE INDEX webhook_endpoints_organization ON webhook_endpoints (organization_id, seq);

CREATE TABLE webhook_deliveries (
    seq              INTEGER PRIMARY KEY,
    endpoint_seq     INTEGER NOT NULL REFERENCES webhook_endpoints (seq),
    event_seq        INTEGER NOT NULL REFERENCES events (seq),
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_status_code INTEGER,
    last_error       TEXT,
    last_attempt_at  INTEGER,
    next_attempt_at  INTEGER,
    lease_until      INTEGER,
    delivered_at     INTEGER,
    created_at       INTEGER NOT NULL,
    UNIQUE (endpoint_seq, event_seq)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_seq, seq);

-- How far the outbox has been fanned out.
CREATE TABLE webhook_fanout (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    last_event_seq INTEGER NOT NULL
);
INSERT INTO webhook_fanout (id, last_event_seq) SELECT 1, COALESCE(MAX(seq), 0) FROM events;
