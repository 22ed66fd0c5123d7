//! Workspaces: each registered to one organization for ever. The rules are
//! [`capacity_store::use_workspace`] and [`capacity_store::put_workspace`];
//! this module reads the registration and writes what they decide. Two
//! transactions registering the same workspace race on its key; the loser
//! is run again (23505) and then finds it registered.

use crate::sql::{Db, DbResult, Query};
use capacity_domain::{Instant, OrgId, WorkspaceId};
use capacity_store::{Page, PageRequest, Scope, StoreError, Workspace, WorkspacePut, WorkspaceUse};
use tokio_postgres::Row;

const SELECT: &str =
    "SELECT seq, id, organization_id, name, created_at, updated_at FROM workspaces";

fn row(r: &Row) -> Result<(i64, Workspace), tokio_postgres::Error> {
    Ok((
        r.try_get(0)?,
        Workspace {
            id: WorkspaceId::from_trusted(r.try_get(1)?),
            organization_id: OrgId::from_trusted(r.try_get(2)?),
            name: r.try_get(3)?,
            created_at: Instant::from_micros(r.try_get(4)?),
            updated_at: Instant::from_micros(r.try_get(5)?),
        },
    ))
}

/// The workspace as registered, whoever may see it.
pub async fn registered(db: &Db<'_>, ws: &WorkspaceId) -> Result<Option<Workspace>, StoreError> {
    db.query_opt(&format!("{SELECT} WHERE id = $1"), &[&ws.as_str()])
        .await?
        .map(|r| row(&r).map(|(_, w)| w))
        .transpose()
        .db()
}

/// The organization `ws` is registered to, if it is.
pub async fn organization(db: &Db<'_>, ws: &WorkspaceId) -> Result<Option<OrgId>, StoreError> {
    db.query_opt(
        "SELECT organization_id FROM workspaces WHERE id = $1",
        &[&ws.as_str()],
    )
    .await?
    .map(|r| r.try_get(0).map(OrgId::from_trusted))
    .transpose()
    .db()
}

/// A write naming `ws` (with organization `named`, if it names one): the
/// organization it belongs to, registering it when the rule says so.
pub async fn use_for_write(
    db: &Db<'_>,
    scope: &Scope,
    ws: &WorkspaceId,
    named: Option<&OrgId>,
    now: Instant,
) -> Result<OrgId, StoreError> {
    let registered = organization(db, ws).await?;
    match capacity_store::use_workspace(scope, ws, registered.as_ref(), named)? {
        WorkspaceUse::Registered(org) => Ok(org),
        WorkspaceUse::Register(org) => {
            insert(db, ws, &org, None, now).await?;
            Ok(org)
        }
    }
}

async fn insert(
    db: &Db<'_>,
    ws: &WorkspaceId,
    org: &OrgId,
    name: Option<&str>,
    now: Instant,
) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO workspaces (id, organization_id, name, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $4)",
        &[&ws.as_str(), &org.as_str(), &name, &now.micros()],
    )
    .await
    .map(|_| ())
}

pub async fn put(
    db: &Db<'_>,
    scope: &Scope,
    ws: &WorkspaceId,
    put: WorkspacePut,
    now: Instant,
) -> Result<(Workspace, bool), StoreError> {
    let before = registered(db, ws).await?;
    let created = before.is_none();
    match capacity_store::put_workspace(scope, ws, before.as_ref(), &put, now)? {
        None => {}
        Some(w) if created => insert(db, ws, &w.organization_id, w.name.as_deref(), now).await?,
        Some(w) => {
            db.execute(
                "UPDATE workspaces SET name = $1, updated_at = $2 WHERE id = $3",
                &[&w.name, &now.micros(), &ws.as_str()],
            )
            .await?;
        }
    }
    Ok((get(db, scope, ws).await?, created))
}

pub async fn get(db: &Db<'_>, scope: &Scope, ws: &WorkspaceId) -> Result<Workspace, StoreError> {
    registered(db, ws)
        .await?
        .filter(|w| scope.sees(&w.organization_id, &w.id))
        .ok_or(StoreError::NotFound)
}

pub async fn list(
    db: &Db<'_>,
    scope: &Scope,
    page: PageRequest,
) -> Result<Page<Workspace>, StoreError> {
    let mut q = Query::new(SELECT);
    q.scoped(scope, "organization_id", "id");
    q.page("seq", page.after, page.limit);
    let rows = db
        .query_built(&q)
        .await?
        .iter()
        .map(row)
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    Ok(Page::from_rows(rows, page.limit))
}
