//! Service lines: lifecycle signals from the platform. Closing a line
//! orphans its open allocations (or closes them when asked).
//!
//! Locking, across processes:
//! - the workspace's advisory lock (`pools::lock_workspace`) first, as pool
//!   creation takes it: which organization a new workspace belongs to is
//!   decided once;
//! - when closing with `close_allocations`, the pools of the line's open
//!   allocations next (in `seq` order), since closing each allocation takes
//!   its pool's lock: an allocation create holds its pool's lock while it
//!   share-locks the line, so taking the pools before the line keeps the two
//!   from waiting on each other;
//! - then the line's row (`FOR UPDATE`): an allocation being created for the
//!   line holds `FOR SHARE` on it until commit, so a close waits for it and
//!   then sees (and orphans or closes) that allocation, and a create that
//!   comes after the close sees the line closed. A new line races on its
//!   primary key; the loser is run again and finds the line.

use crate::allocations;
use crate::events::insert_event;
use crate::pools;
use crate::sql::{Db, DbResult, Query, text_or_internal};
use capacity_domain::model::{Allocation, ServiceLine, ServiceLineStatus};
use capacity_domain::{AllocationId, Instant, OrgId, PoolId, ServiceLineId, WorkspaceId};
use capacity_store::{LineRegistration, OpenAllocations, Scope, ServiceLinePut, StoreError};

async fn load(
    db: &Db<'_>,
    scope: &Scope,
    id: &ServiceLineId,
) -> Result<Option<ServiceLine>, StoreError> {
    let mut q = Query::new(
        "SELECT id, workspace_id, organization_id, status, created_at, updated_at FROM service_lines",
    );
    q.and("id = {}", id.as_str().to_owned());
    q.scoped(scope, "organization_id", "workspace_id");
    let row = db
        .query_opt_built(&q)
        .await?
        .map(|r| -> Result<_, tokio_postgres::Error> {
            let status: String = r.try_get(3)?;
            let (id, ws, org): (String, String, String) =
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            let (created, updated): (i64, i64) = (r.try_get(4)?, r.try_get(5)?);
            Ok(ServiceLineStatus::parse(&status).map(|status| ServiceLine {
                id: ServiceLineId::from_trusted(id),
                workspace_id: WorkspaceId::from_trusted(ws),
                organization_id: OrgId::from_trusted(org),
                status,
                created_at: Instant::from_micros(created),
                updated_at: Instant::from_micros(updated),
            }))
        })
        .transpose()
        .db()?;
    row.map(|r| text_or_internal(r, "service line")).transpose()
}

/// The line as registered, whoever may see it (`lock`: a locking clause).
async fn registration(
    db: &Db<'_>,
    id: &ServiceLineId,
    lock: &str,
) -> Result<Option<LineRegistration>, StoreError> {
    let row = db
        .query_opt(
            &format!(
                "SELECT workspace_id, organization_id, status FROM service_lines WHERE id = $1{lock}"
            ),
            &[&id.as_str()],
        )
        .await?;
    row.map(|r| line_registration(&r, 0)).transpose()
}

/// A line's registration from three columns of `r` from `at`: its
/// workspace, organization and status.
pub fn line_registration(
    r: &tokio_postgres::Row,
    at: usize,
) -> Result<LineRegistration, StoreError> {
    let (ws, org, status): (String, String, String) = (
        r.try_get(at).db()?,
        r.try_get(at + 1).db()?,
        r.try_get(at + 2).db()?,
    );
    let status = text_or_internal(ServiceLineStatus::parse(&status), "service line")?;
    Ok(LineRegistration {
        workspace_id: WorkspaceId::from_trusted(ws),
        organization_id: OrgId::from_trusted(org),
        status,
    })
}

/// The ids of the line's allocations that are not closed.
async fn open_allocations(
    db: &Db<'_>,
    id: &ServiceLineId,
) -> Result<Vec<AllocationId>, StoreError> {
    let ids = db
        .query(
            "SELECT id FROM allocations WHERE service_line_id = $1 AND status <> 'closed' ORDER BY seq",
            &[&id.as_str()],
        )
        .await?
        .iter()
        .map(|r| r.try_get::<_, String>(0))
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    Ok(ids.into_iter().map(AllocationId::from_trusted).collect())
}

/// Locks, in `seq` order, the pools of the line's open allocations that
/// `scope` may see.
async fn lock_pools_of(db: &Db<'_>, scope: &Scope, id: &ServiceLineId) -> Result<(), StoreError> {
    let pools: Vec<String> = db
        .query(
            "SELECT DISTINCT p.seq, p.id FROM allocations a JOIN pools p ON p.seq = a.pool_seq \
             WHERE a.service_line_id = $1 AND a.status <> 'closed' ORDER BY p.seq",
            &[&id.as_str()],
        )
        .await?
        .iter()
        .map(|r| r.try_get::<_, String>(1))
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    for pool in pools {
        match pools::lock(db, scope, &PoolId::from_trusted(pool)).await {
            Ok(_) | Err(StoreError::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub async fn put(
    db: &Db<'_>,
    scope: &Scope,
    id: &ServiceLineId,
    put: ServiceLinePut,
    now: Instant,
    cache: &pools::TimelineCache,
) -> Result<ServiceLine, StoreError> {
    pools::lock_workspace(db, &put.workspace_id).await?;
    if put.close_allocations && put.status == ServiceLineStatus::Closed {
        lock_pools_of(db, scope, id).await?;
    }
    // Lines are looked up unscoped first: a line of another workspace is a conflict, not a new line.
    let existing = registration(db, id, " FOR UPDATE").await?;
    capacity_store::put_line(id, existing.as_ref(), &put.workspace_id)?;
    let org = crate::workspaces::use_for_write(
        db,
        scope,
        &put.workspace_id,
        put.organization_id.as_ref(),
        now,
    )
    .await?;
    let was_closed = match &existing {
        Some(line) => {
            db.execute(
                "UPDATE service_lines SET status = $1, updated_at = $2 WHERE id = $3",
                &[&put.status.as_str(), &now.micros(), &id.as_str()],
            )
            .await?;
            line.status == ServiceLineStatus::Closed
        }
        None => {
            db.execute(
                "INSERT INTO service_lines (id, workspace_id, organization_id, status, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $5)",
                &[
                    &id.as_str(),
                    &put.workspace_id.as_str(),
                    &org.as_str(),
                    &put.status.as_str(),
                    &now.micros(),
                ],
            )
            .await?;
            false
        }
    };
    let effect = put.open_allocations(id, was_closed);
    if !matches!(effect, OpenAllocations::Keep) {
        for alloc_id in open_allocations(db, id).await? {
            match &effect {
                OpenAllocations::Close(patch) => {
                    allocations::patch(db, scope, &alloc_id, patch.clone(), now, cache).await?;
                }
                OpenAllocations::Orphan => {
                    let (_, a) = allocations::load(db, scope, &alloc_id, now).await?;
                    insert_event(
                        db,
                        "capacity.allocation_orphaned",
                        &a.organization_id,
                        &a.workspace_id,
                        a.view(now),
                        now,
                    )
                    .await?;
                }
                OpenAllocations::Keep => {}
            }
        }
    }
    load(db, scope, id).await?.ok_or(StoreError::NotFound)
}

pub async fn get(
    db: &Db<'_>,
    scope: &Scope,
    id: &ServiceLineId,
    page: capacity_store::PageRequest,
    now: Instant,
) -> Result<(ServiceLine, capacity_store::Page<Allocation>), StoreError> {
    let line = load(db, scope, id).await?.ok_or(StoreError::NotFound)?;
    let filter = capacity_store::AllocationFilter {
        service_line_id: Some(id.clone()),
        ..Default::default()
    };
    let allocations = allocations::list(db, scope, &filter, page, now).await?;
    Ok((line, allocations))
}
