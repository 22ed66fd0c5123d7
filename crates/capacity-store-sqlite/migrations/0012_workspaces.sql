-- A workspace is registered to one organization for ever (SPEC §5
-- "Workspaces"): by the platform, explicitly or by creating a pool there.
-- An organization token names only its own registered workspaces.
CREATE TABLE workspaces (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    organization_id TEXT NOT NULL,
    name            TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX workspaces_organization ON workspaces (organization_id, seq);

-- The workspaces already stored register from their rows: pools first (only
-- the platform ever created them), then service lines. Demand requests
-- register nothing: an organization token could name any workspace there.
INSERT OR IGNORE INTO workspaces (id, organization_id, created_at, updated_at)
    SELECT workspace_id, organization_id, MIN(created_at), MIN(created_at)
    FROM pools GROUP BY workspace_id, organization_id ORDER BY MIN(created_at), workspace_id;
INSERT OR IGNORE INTO workspaces (id, organization_id, created_at, updated_at)
    SELECT workspace_id, organization_id, MIN(created_at), MIN(created_at)
    FROM service_lines GROUP BY workspace_id, organization_id ORDER BY MIN(created_at), workspace_id;
