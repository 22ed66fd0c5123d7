//! Allocations: reads assemble the record from its row, its terms and its
//! usage; writes check the no-overcommit rule inside the writer's transaction.

use crate::events::insert_event;
use crate::pools;
use crate::sql::{DbResult, Query, mint_id, text_or_internal};
use capacity_domain::ids::MintedPrefix;
use capacity_domain::model::{Allocation, AllocationStatus, Resource, Terms};
use capacity_domain::time::MICROS_PER_WEEK;
use capacity_domain::timeline::{Timeline, check_change};
use capacity_domain::{
    AllocationId, Instant, OrgId, Period, PoolId, Quantity, ResourceType, ServiceLineId,
    WorkspaceId,
};
use capacity_store::{
    AllocationFilter, NewAllocation, Page, PageRequest, Scope, StoreError, unit_name,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

const SELECT: &str = "SELECT a.seq, a.id, p.id, a.workspace_id, a.organization_id, a.service_line_id, \
    a.resource_type, p.period, a.status, a.starts_at, a.ends_at, a.closed_at, a.created_at, a.updated_at, \
    a.version, (a.status <> 'closed' AND l.status = 'closed') \
    FROM allocations a JOIN pools p ON p.seq = a.pool_seq JOIN service_lines l ON l.id = a.service_line_id";

/// An allocation row before its terms and usage are attached.
struct RowData {
    seq: i64,
    alloc: Option<Allocation>,
}

fn row(r: &Row<'_>) -> rusqlite::Result<RowData> {
    let seq: i64 = r.get(0)?;
    let rt: String = r.get(6)?;
    let period: String = r.get(7)?;
    let status: String = r.get(8)?;
    let parsed = (
        ResourceType::parse(&rt),
        Period::parse(&period),
        AllocationStatus::parse(&status),
    );
    let (Some(resource_type), Some(period), Some(status)) = parsed else {
        return Ok(RowData { seq, alloc: None });
    };
    Ok(RowData {
        seq,
        alloc: Some(Allocation {
            id: AllocationId::from_trusted(r.get(1)?),
            capacity_pool_id: PoolId::from_trusted(r.get(2)?),
            workspace_id: WorkspaceId::from_trusted(r.get(3)?),
            organization_id: OrgId::from_trusted(r.get(4)?),
            service_line_id: ServiceLineId::from_trusted(r.get(5)?),
            resource_type,
            period,
            status,
            starts_at: Instant::from_micros(r.get(9)?),
            ends_at: r.get::<_, Option<i64>>(10)?.map(Instant::from_micros),
            closed_at: r.get::<_, Option<i64>>(11)?.map(Instant::from_micros),
            terms: Vec::new(),
            actual_last_week: Quantity::ZERO,
            committed_last_week: Quantity::ZERO,
            orphaned: r.get(15)?,
            created_at: Instant::from_micros(r.get(12)?),
            updated_at: Instant::from_micros(r.get(13)?),
            version: r.get(14)?,
        }),
    })
}

/// Attaches terms, last week's usage and the commitment in force then.
fn complete(
    conn: &Connection,
    data: RowData,
    now: Instant,
) -> Result<(i64, Allocation), StoreError> {
    let mut a = text_or_internal(data.alloc, "allocation")?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT effective_at, committed, resources, reason FROM allocation_terms \
             WHERE allocation_seq = ?1 ORDER BY effective_at",
        )
        .db()?;
    a.terms = stmt
        .query_map([data.seq], |r| {
            let resources: String = r.get(2)?;
            Ok(Terms {
                effective_at: Instant::from_micros(r.get(0)?),
                committed: Quantity::from_thousandths(r.get(1)?),
                resources: serde_json::from_str::<Vec<Resource>>(&resources).unwrap_or_default(),
                reason: r.get(3)?,
            })
        })
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    if a.terms.is_empty() {
        return Err(StoreError::Internal(format!(
            "allocation {} has no terms",
            a.id
        )));
    }
    let week_end = now.week_start();
    let week_start = week_end.plus_micros(-MICROS_PER_WEEK);
    let actual: i64 = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(quantity), 0) FROM usage_records \
             WHERE allocation_seq = ?1 AND occurred_at >= ?2 AND occurred_at < ?3",
        )
        .db()?
        .query_row(
            params![data.seq, week_start.micros(), week_end.micros()],
            |r| r.get(0),
        )
        .db()?;
    a.actual_last_week = Quantity::from_thousandths(actual);
    a.committed_last_week =
        Quantity::from_thousandths(a.commitment_timeline().peak(week_start, week_end));
    Ok((data.seq, a))
}

pub fn load(
    conn: &Connection,
    scope: &Scope,
    id: &AllocationId,
    now: Instant,
) -> Result<(i64, Allocation), StoreError> {
    let mut q = Query::new(SELECT);
    q.and("a.id = {}", id.as_str().to_owned());
    q.scoped(scope, "a.organization_id", "a.workspace_id");
    let data = conn
        .prepare_cached(&q.sql)
        .db()?
        .query_row(rusqlite::params_from_iter(q.params.iter()), row)
        .optional()
        .db()?
        .ok_or(StoreError::NotFound)?;
    complete(conn, data, now)
}

pub fn list(
    conn: &Connection,
    scope: &Scope,
    f: &AllocationFilter,
    page: PageRequest,
    now: Instant,
) -> Result<Page<Allocation>, StoreError> {
    let mut q = Query::new(SELECT);
    q.scoped(scope, "a.organization_id", "a.workspace_id");
    if let Some(ws) = &f.workspace_id {
        q.and("a.workspace_id = {}", ws.as_str().to_owned());
    }
    if let Some(s) = f.status {
        q.and("a.status = {}", s.as_str().to_owned());
    }
    if let Some(l) = &f.service_line_id {
        q.and("a.service_line_id = {}", l.as_str().to_owned());
    }
    if let Some(rt) = f.resource_type {
        q.and("a.resource_type = {}", rt.as_str().to_owned());
    }
    if let Some(p) = &f.capacity_pool_id {
        q.and("p.id = {}", p.as_str().to_owned());
    }
    match f.orphaned {
        Some(true) => q.and_raw("(a.status <> 'closed' AND l.status = 'closed')"),
        Some(false) => q.and_raw("NOT (a.status <> 'closed' AND l.status = 'closed')"),
        None => {}
    }
    q.page("a.seq", page.after, page.limit);
    let mut stmt = conn.prepare_cached(&q.sql).db()?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(q.params.iter()), row)
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    let rows = rows
        .into_iter()
        .map(|d| complete(conn, d, now))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(rows, page.limit))
}

/// Registers a service line on first sight; refuses one of another workspace
/// or one that is closed.
fn ensure_service_line(
    conn: &Connection,
    line: &ServiceLineId,
    ws: &WorkspaceId,
    org: &OrgId,
    now: Instant,
) -> Result<(), StoreError> {
    let found: Option<(String, String)> = conn
        .prepare_cached("SELECT workspace_id, status FROM service_lines WHERE id = ?1")
        .db()?
        .query_row([line.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .db()?;
    match found {
        Some((w, _)) if w != ws.as_str() => Err(StoreError::conflict(
            "service_line_workspace_mismatch",
            format!("service line {line} belongs to another workspace"),
        )),
        Some((_, status)) if status == "closed" => Err(StoreError::conflict(
            "service_line_closed",
            format!("service line {line} is closed"),
        )),
        Some(_) => Ok(()),
        None => {
            conn.prepare_cached(
                "INSERT INTO service_lines (id, workspace_id, organization_id, status, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, 'active', ?4, ?4)",
            )
            .db()?
            .execute(params![line.as_str(), ws.as_str(), org.as_str(), now.micros()])
            .db()?;
            Ok(())
        }
    }
}

/// Replaces an allocation's materialised commitment steps.
pub fn write_steps(
    conn: &Connection,
    pool_seq: i64,
    alloc_seq: i64,
    timeline: &Timeline,
) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM commitment_steps WHERE allocation_seq = ?1")
        .db()?
        .execute([alloc_seq])
        .db()?;
    let mut ins = conn
        .prepare_cached("INSERT INTO commitment_steps (pool_seq, at, allocation_seq, delta) VALUES (?1, ?2, ?3, ?4)")
        .db()?;
    for &(at, delta) in timeline.steps() {
        ins.execute(params![pool_seq, at.micros(), alloc_seq, delta])
            .db()?;
    }
    Ok(())
}

pub fn create(
    conn: &Connection,
    scope: &Scope,
    new: NewAllocation,
    now: Instant,
) -> Result<Allocation, StoreError> {
    let (pool_seq, pool) = pools::load(conn, scope, &new.capacity_pool_id, now)?;
    let starts_at = new.starts_at.unwrap_or(now);
    if let Some(end) = new.ends_at {
        if end < now {
            return Err(StoreError::invalid("ends_at", "must not be in the past"));
        }
        if end <= starts_at {
            return Err(StoreError::invalid("ends_at", "must be after starts_at"));
        }
    }
    let committed = new.committed.per_period(pool.period);
    ensure_service_line(
        conn,
        &new.service_line_id,
        &pool.workspace_id,
        &pool.organization_id,
        now,
    )?;

    let terms = [(starts_at, committed)];
    let change = capacity_domain::timeline::CommitmentSchedule {
        starts_at,
        ends_at: new.ends_at,
        closed_at: None,
        terms: &terms,
    }
    .timeline();
    let supply = pools::supply_timeline(conn, pool_seq)?;
    let before = pools::commitment_timeline(conn, pool_seq, now)?;
    check_change(&supply, pool.overcommit_ratio, &before, &change, now).map_err(|overcommit| {
        StoreError::InsufficientCapacity {
            overcommit,
            unit: unit_name(pool.resource_type),
        }
    })?;

    let (seq, id) = mint_id(conn, MintedPrefix::Allocation, now)?;
    conn.prepare_cached(
        "INSERT INTO allocations (seq, id, pool_seq, workspace_id, organization_id, service_line_id, resource_type, \
         status, starts_at, ends_at, closed_at, created_at, updated_at, version) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'active', ?8, ?9, NULL, ?10, ?10, 1)",
    )
    .db()?
    .execute(params![
        seq,
        id,
        pool_seq,
        pool.workspace_id.as_str(),
        pool.organization_id.as_str(),
        new.service_line_id.as_str(),
        pool.resource_type.as_str(),
        starts_at.micros(),
        new.ends_at.map(|e| e.micros()),
        now.micros(),
    ])
    .db()?;
    let resources =
        serde_json::to_string(&new.resources).map_err(|e| StoreError::Internal(e.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO allocation_terms (allocation_seq, effective_at, committed, resources, reason) VALUES (?1, ?2, ?3, ?4, NULL)",
    )
    .db()?
    .execute(params![seq, starts_at.micros(), committed.thousandths(), resources])
    .db()?;
    write_steps(conn, pool_seq, seq, &change)?;
    conn.prepare_cached("UPDATE pools SET updated_at = ?1 WHERE seq = ?2")
        .db()?
        .execute(params![now.micros(), pool_seq])
        .db()?;
    let (_, alloc) = load(conn, scope, &AllocationId::from_trusted(id), now)?;
    insert_event(
        conn,
        "capacity.allocation.created",
        &alloc.organization_id,
        &alloc.workspace_id,
        alloc.view(now),
        now,
    )?;
    Ok(alloc)
}
