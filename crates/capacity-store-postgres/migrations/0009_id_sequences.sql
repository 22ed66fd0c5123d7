-- Ids are numbered by SEQUENCE objects instead of by updating a row of
-- `sequences`. That UPDATE held the row's lock until commit, so every write
-- that minted a number (each create, and every write with an event) waited
-- for the previous one's commit: one at a time, whatever the concurrency.
-- `nextval` holds no lock; a number is taken only once a write's rules have
-- passed, so a refused write burns none (a transaction that fails later may).
CREATE SEQUENCE ids_cap AS BIGINT;
CREATE SEQUENCE ids_alloc AS BIGINT;
CREATE SEQUENCE ids_req AS BIGINT;
CREATE SEQUENCE ids_evt AS BIGINT;
CREATE SEQUENCE ids_whe AS BIGINT;
CREATE SEQUENCE ids_tok AS BIGINT;
CREATE SEQUENCE ids_adj AS BIGINT;
SELECT setval('ids_cap', next, false) FROM sequences WHERE prefix = 'CAP';
SELECT setval('ids_alloc', next, false) FROM sequences WHERE prefix = 'ALLOC';
SELECT setval('ids_req', next, false) FROM sequences WHERE prefix = 'REQ';
SELECT setval('ids_evt', next, false) FROM sequences WHERE prefix = 'EVT';
SELECT setval('ids_whe', next, false) FROM sequences WHERE prefix = 'WHE';
SELECT setval('ids_tok', next, false) FROM sequences WHERE prefix = 'TOK';
SELECT setval('ids_adj', next, false) FROM sequences WHERE prefix = 'ADJ';
DROP TABLE sequences;
-- The next numbers, read-only, under the old table's name and columns.
CREATE VIEW sequences (prefix, next) AS
          SELECT 'CAP'::TEXT,   CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM ids_cap
UNION ALL SELECT 'ALLOC'::TEXT, CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM ids_alloc
UNION ALL SELECT 'REQ'::TEXT,   CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM ids_req
UNION ALL SELECT 'EVT'::TEXT,   CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM ids_evt
UNION ALL SELECT 'WHE'::TEXT,   CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM ids_whe
UNION ALL SELECT 'TOK'::TEXT,   CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM ids_tok
UNION ALL SELECT 'ADJ'::TEXT,   CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM ids_adj;

-- Without that lock, events no longer become visible in `seq` order: a
-- transaction may commit event n + 1 before another commits event n. So
-- each event records the id of the transaction that wrote it, and the
-- webhook fan-out reads the outbox in (txid, seq) order, only as far as
-- transactions that have all ended (txid below the xmin of its snapshot):
-- no event can later appear behind its cursor. Events written before this
-- migration were written one at a time in `seq` order: txid 0 keeps them
-- first, in that order, and the cursor (0, last_event_seq) where it was.
ALTER TABLE events ADD COLUMN txid BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ALTER COLUMN txid SET DEFAULT pg_current_xact_id()::TEXT::BIGINT;
CREATE INDEX events_txid ON events (txid, seq);
ALTER TABLE webhook_fanout ADD COLUMN last_txid BIGINT NOT NULL DEFAULT 0;
