//! The transactional outbox: events are inserted by the same write that
//! makes the change they announce.

use crate::sql::{DbResult, Query, mint_id};
use capacity_domain::ids::MintedPrefix;
use capacity_domain::model::Event;
use capacity_domain::{Instant, OrgId, WorkspaceId};
use capacity_store::{EventFilter, Page, PageRequest, Scope, StoreError};
use rusqlite::{Connection, OptionalExtension, Row};

pub fn insert_event(
    conn: &Connection,
    kind: &str,
    org: &OrgId,
    workspace: &WorkspaceId,
    object: impl serde::Serialize,
    now: Instant,
) -> Result<String, StoreError> {
    let object = serde_json::to_string(&object).map_err(|e| StoreError::Internal(e.to_string()))?;
    insert_event_json(conn, kind, org, workspace, &object, now)
}

/// As [`insert_event`], for an object already serialized (a write that
/// also keeps it in the history serializes it once).
pub fn insert_event_json(
    conn: &Connection,
    kind: &str,
    org: &OrgId,
    workspace: &WorkspaceId,
    object: &str,
    now: Instant,
) -> Result<String, StoreError> {
    let (seq, id) = mint_id(conn, MintedPrefix::Event, now)?;
    let data = format!("{{\"object\":{object}}}");
    conn.prepare_cached(
        "INSERT INTO events (seq, id, organization_id, workspace_id, type, data, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .db()?
    .execute(rusqlite::params![
        seq,
        id,
        org.as_str(),
        workspace.as_str(),
        kind,
        data,
        now.micros()
    ])
    .db()?;
    Ok(id)
}

const SELECT: &str = "SELECT seq, id, type, created_at, data FROM events";

fn row(r: &Row<'_>) -> rusqlite::Result<(i64, Event)> {
    let data: String = r.get(4)?;
    Ok((
        r.get(0)?,
        Event {
            id: r.get(1)?,
            kind: r.get(2)?,
            created_at: Instant::from_micros(r.get(3)?),
            data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
        },
    ))
}

pub fn list(
    conn: &Connection,
    scope: &Scope,
    filter: &EventFilter,
    page: PageRequest,
) -> Result<Page<Event>, StoreError> {
    let mut q = Query::new(SELECT);
    q.scoped(scope, "organization_id", "workspace_id");
    if let Some(kind) = &filter.kind {
        q.and("type = {}", kind.clone());
    }
    if let Some(after) = filter.created_after {
        q.and("created_at > {}", after.micros());
    }
    q.page("seq", page.after, page.limit);
    let mut stmt = conn.prepare_cached(&q.sql).db()?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(q.params.iter()), row)
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    Ok(Page::from_rows(rows, page.limit))
}

pub fn get(conn: &Connection, scope: &Scope, id: &str) -> Result<Event, StoreError> {
    let mut q = Query::new(SELECT);
    q.and("id = {}", id.to_owned());
    q.scoped(scope, "organization_id", "workspace_id");
    conn.prepare_cached(&q.sql)
        .db()?
        .query_row(rusqlite::params_from_iter(q.params.iter()), row)
        .optional()
        .db()?
        .map(|r| r.1)
        .ok_or(StoreError::NotFound)
}
