//! Service lines: lifecycle signals from the platform. Closing a line
//! orphans its open allocations (or closes them when asked).

use crate::allocations;
use crate::events::insert_event;
use crate::sql::{DbResult, Query, text_or_internal};
use capacity_domain::model::{Allocation, ServiceLine, ServiceLineStatus};
use capacity_domain::{AllocationId, Instant, OrgId, ServiceLineId, WorkspaceId};
use capacity_store::{LineRegistration, OpenAllocations, Scope, ServiceLinePut, StoreError};
use rusqlite::{Connection, OptionalExtension, params};

fn load(
    conn: &Connection,
    scope: &Scope,
    id: &ServiceLineId,
) -> Result<Option<ServiceLine>, StoreError> {
    let mut q = Query::new(
        "SELECT id, workspace_id, organization_id, status, created_at, updated_at FROM service_lines",
    );
    q.and("id = {}", id.as_str().to_owned());
    q.scoped(scope, "organization_id", "workspace_id");
    let row = conn
        .prepare_cached(&q.sql)
        .db()?
        .query_row(rusqlite::params_from_iter(q.params.iter()), |r| {
            let status: String = r.get(3)?;
            let (id, ws, org): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
            let (created, updated): (i64, i64) = (r.get(4)?, r.get(5)?);
            Ok(ServiceLineStatus::parse(&status).map(|status| ServiceLine {
                id: ServiceLineId::from_trusted(id),
                workspace_id: WorkspaceId::from_trusted(ws),
                organization_id: OrgId::from_trusted(org),
                status,
                created_at: Instant::from_micros(created),
                updated_at: Instant::from_micros(updated),
            }))
        })
        .optional()
        .db()?;
    row.map(|r| text_or_internal(r, "service line")).transpose()
}

/// The line as registered, whoever may see it.
pub fn registration(
    conn: &Connection,
    id: &ServiceLineId,
) -> Result<Option<LineRegistration>, StoreError> {
    let found: Option<(String, String, String)> = conn
        .prepare_cached(
            "SELECT workspace_id, organization_id, status FROM service_lines WHERE id = ?1",
        )
        .db()?
        .query_row([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
        .db()?;
    found
        .map(|(ws, org, status)| {
            let status = ServiceLineStatus::parse(&status);
            text_or_internal(status, "service line").map(|status| LineRegistration {
                workspace_id: WorkspaceId::from_trusted(ws),
                organization_id: OrgId::from_trusted(org),
                status,
            })
        })
        .transpose()
}

/// The ids of the line's allocations that are not closed.
fn open_allocations(
    conn: &Connection,
    id: &ServiceLineId,
) -> Result<Vec<AllocationId>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT id FROM allocations WHERE service_line_id = ?1 AND status <> 'closed' ORDER BY seq")
        .db()?;
    let ids = stmt
        .query_map([id.as_str()], |r| r.get::<_, String>(0))
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    Ok(ids.into_iter().map(AllocationId::from_trusted).collect())
}

pub fn put(
    conn: &Connection,
    scope: &Scope,
    id: &ServiceLineId,
    put: ServiceLinePut,
    now: Instant,
) -> Result<ServiceLine, StoreError> {
    // Lines are looked up unscoped first: a line of another workspace is a conflict, not a new line.
    let existing = registration(conn, id)?;
    capacity_store::put_line(id, existing.as_ref(), &put.workspace_id)?;
    let org = crate::workspaces::use_for_write(
        conn,
        scope,
        &put.workspace_id,
        put.organization_id.as_ref(),
        now,
    )?;
    let was_closed = match &existing {
        Some(line) => {
            conn.prepare_cached(
                "UPDATE service_lines SET status = ?1, updated_at = ?2 WHERE id = ?3",
            )
            .db()?
            .execute(params![put.status.as_str(), now.micros(), id.as_str()])
            .db()?;
            line.status == ServiceLineStatus::Closed
        }
        None => {
            conn.prepare_cached(
                "INSERT INTO service_lines (id, workspace_id, organization_id, status, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            )
            .db()?
            .execute(params![id.as_str(), put.workspace_id.as_str(), org.as_str(), put.status.as_str(), now.micros()])
            .db()?;
            false
        }
    };
    let effect = put.open_allocations(id, was_closed);
    if !matches!(effect, OpenAllocations::Keep) {
        for alloc_id in open_allocations(conn, id)? {
            match &effect {
                OpenAllocations::Close(patch) => {
                    allocations::patch(conn, scope, &alloc_id, patch.clone(), now)?;
                }
                OpenAllocations::Orphan => {
                    let (_, a) = allocations::load(conn, scope, &alloc_id, now)?;
                    insert_event(
                        conn,
                        "capacity.allocation_orphaned",
                        &a.organization_id,
                        &a.workspace_id,
                        a.view(now),
                        now,
                    )?;
                }
                OpenAllocations::Keep => {}
            }
        }
    }
    load(conn, scope, id)?.ok_or(StoreError::NotFound)
}

pub fn get(
    conn: &Connection,
    scope: &Scope,
    id: &ServiceLineId,
    page: capacity_store::PageRequest,
    now: Instant,
) -> Result<(ServiceLine, capacity_store::Page<Allocation>), StoreError> {
    let line = load(conn, scope, id)?.ok_or(StoreError::NotFound)?;
    let filter = capacity_store::AllocationFilter {
        service_line_id: Some(id.clone()),
        ..Default::default()
    };
    let allocations = allocations::list(conn, scope, &filter, page, now)?;
    Ok((line, allocations))
}
