//! Workspaces: each registered to one organization for ever. The rules are
//! [`capacity_store::use_workspace`] and [`capacity_store::put_workspace`];
//! this module reads the registration and writes what they decide.

use crate::sql::{DbResult, Query};
use capacity_domain::{Instant, OrgId, WorkspaceId};
use capacity_store::{Page, PageRequest, Scope, StoreError, Workspace, WorkspacePut, WorkspaceUse};
use rusqlite::{Connection, OptionalExtension, Row, params};

const SELECT: &str =
    "SELECT seq, id, organization_id, name, created_at, updated_at FROM workspaces";

fn row(r: &Row) -> rusqlite::Result<(i64, Workspace)> {
    Ok((
        r.get(0)?,
        Workspace {
            id: WorkspaceId::from_trusted(r.get(1)?),
            organization_id: OrgId::from_trusted(r.get(2)?),
            name: r.get(3)?,
            created_at: Instant::from_micros(r.get(4)?),
            updated_at: Instant::from_micros(r.get(5)?),
        },
    ))
}

/// The workspace as registered, whoever may see it.
pub fn registered(conn: &Connection, ws: &WorkspaceId) -> Result<Option<Workspace>, StoreError> {
    conn.prepare_cached(&format!("{SELECT} WHERE id = ?1"))
        .db()?
        .query_row([ws.as_str()], row)
        .optional()
        .db()
        .map(|r| r.map(|(_, w)| w))
}

/// The organization `ws` is registered to, if it is.
pub fn organization(conn: &Connection, ws: &WorkspaceId) -> Result<Option<OrgId>, StoreError> {
    conn.prepare_cached("SELECT organization_id FROM workspaces WHERE id = ?1")
        .db()?
        .query_row([ws.as_str()], |r| r.get(0))
        .optional()
        .db()
        .map(|o| o.map(OrgId::from_trusted))
}

/// A write naming `ws` (with organization `named`, if it names one): the
/// organization it belongs to, registering it when the rule says so.
pub fn use_for_write(
    conn: &Connection,
    scope: &Scope,
    ws: &WorkspaceId,
    named: Option<&OrgId>,
    now: Instant,
) -> Result<OrgId, StoreError> {
    let registered = organization(conn, ws)?;
    match capacity_store::use_workspace(scope, ws, registered.as_ref(), named)? {
        WorkspaceUse::Registered(org) => Ok(org),
        WorkspaceUse::Register(org) => {
            insert(conn, ws, &org, None, now)?;
            Ok(org)
        }
    }
}

fn insert(
    conn: &Connection,
    ws: &WorkspaceId,
    org: &OrgId,
    name: Option<&str>,
    now: Instant,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO workspaces (id, organization_id, name, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
    )
    .db()?
    .execute(params![ws.as_str(), org.as_str(), name, now.micros()])
    .db()
    .map(|_| ())
}

pub fn put(
    conn: &Connection,
    scope: &Scope,
    ws: &WorkspaceId,
    put: WorkspacePut,
    now: Instant,
) -> Result<(Workspace, bool), StoreError> {
    let before = registered(conn, ws)?;
    let created = before.is_none();
    match capacity_store::put_workspace(scope, ws, before.as_ref(), &put, now)? {
        None => {}
        Some(w) if created => insert(conn, ws, &w.organization_id, w.name.as_deref(), now)?,
        Some(w) => {
            conn.prepare_cached("UPDATE workspaces SET name = ?1, updated_at = ?2 WHERE id = ?3")
                .db()?
                .execute(params![w.name, now.micros(), ws.as_str()])
                .db()?;
        }
    }
    Ok((get(conn, scope, ws)?, created))
}

pub fn get(conn: &Connection, scope: &Scope, ws: &WorkspaceId) -> Result<Workspace, StoreError> {
    registered(conn, ws)?
        .filter(|w| scope.sees(&w.organization_id, &w.id))
        .ok_or(StoreError::NotFound)
}

pub fn list(
    conn: &Connection,
    scope: &Scope,
    page: PageRequest,
) -> Result<Page<Workspace>, StoreError> {
    let mut q = Query::new(SELECT);
    q.scoped(scope, "organization_id", "id");
    q.page("seq", page.after, page.limit);
    let rows = conn
        .prepare_cached(&q.sql)
        .db()?
        .query_map(rusqlite::params_from_iter(q.params.iter()), row)
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    Ok(Page::from_rows(rows, page.limit))
}
