//! Allocations: reads assemble the record from its row, its terms and its
//! usage; writes lock the pool row, then check the no-overcommit rule with
//! the same pure function the SQLite backend calls.

use crate::events::insert_event;
use crate::pools;
use crate::sql::{Db, DbResult, Query, mint_id, text_or_internal};
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
use std::collections::HashMap;
use tokio_postgres::Row;

const SELECT: &str = "SELECT a.seq, a.id, p.id, a.workspace_id, a.organization_id, a.service_line_id, \
    a.resource_type, p.period, a.status, a.starts_at, a.ends_at, a.closed_at, a.created_at, a.updated_at, \
    a.version, (a.status <> 'closed' AND l.status = 'closed') \
    FROM allocations a JOIN pools p ON p.seq = a.pool_seq JOIN service_lines l ON l.id = a.service_line_id";

/// An allocation row before its terms and usage are attached.
struct RowData {
    seq: i64,
    alloc: Option<Allocation>,
}

fn row(r: &Row) -> Result<RowData, tokio_postgres::Error> {
    let seq: i64 = r.try_get(0)?;
    let rt: String = r.try_get(6)?;
    let period: String = r.try_get(7)?;
    let status: String = r.try_get(8)?;
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
            id: AllocationId::from_trusted(r.try_get(1)?),
            capacity_pool_id: PoolId::from_trusted(r.try_get(2)?),
            workspace_id: WorkspaceId::from_trusted(r.try_get(3)?),
            organization_id: OrgId::from_trusted(r.try_get(4)?),
            service_line_id: ServiceLineId::from_trusted(r.try_get(5)?),
            resource_type,
            period,
            status,
            starts_at: Instant::from_micros(r.try_get(9)?),
            ends_at: r.try_get::<_, Option<i64>>(10)?.map(Instant::from_micros),
            closed_at: r.try_get::<_, Option<i64>>(11)?.map(Instant::from_micros),
            terms: Vec::new(),
            actual_last_week: Quantity::ZERO,
            committed_last_week: Quantity::ZERO,
            orphaned: r.try_get(15)?,
            created_at: Instant::from_micros(r.try_get(12)?),
            updated_at: Instant::from_micros(r.try_get(13)?),
            version: r.try_get(14)?,
        }),
    })
}

/// Attaches terms, last week's usage and the commitment in force then.
///
/// Unlike SQLite's per-row `complete`, this takes every row of a page at
/// once: two queries per page instead of two per allocation, because each
/// query here is a network round trip.
async fn complete(
    db: &Db<'_>,
    data: Vec<RowData>,
    now: Instant,
) -> Result<Vec<(i64, Allocation)>, StoreError> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let seqs: Vec<i64> = data.iter().map(|d| d.seq).collect();
    let mut terms: HashMap<i64, Vec<Terms>> = HashMap::new();
    for r in db
        .query(
            "SELECT allocation_seq, effective_at, committed, resources, reason FROM allocation_terms \
             WHERE allocation_seq = ANY($1) ORDER BY allocation_seq, effective_at",
            &[&seqs],
        )
        .await?
    {
        let seq: i64 = r.try_get(0).db()?;
        let resources: String = r.try_get(3).db()?;
        terms.entry(seq).or_default().push(Terms {
            effective_at: Instant::from_micros(r.try_get(1).db()?),
            committed: Quantity::from_thousandths(r.try_get(2).db()?),
            resources: serde_json::from_str::<Vec<Resource>>(&resources).unwrap_or_default(),
            reason: r.try_get(4).db()?,
        });
    }
    let week_end = now.week_start();
    let week_start = week_end.plus_micros(-MICROS_PER_WEEK);
    let mut actual: HashMap<i64, i64> = HashMap::new();
    for r in db
        .query(
            "SELECT allocation_seq, COALESCE(SUM(quantity), 0)::BIGINT FROM usage_records \
             WHERE allocation_seq = ANY($1) AND occurred_at >= $2 AND occurred_at < $3 \
             GROUP BY allocation_seq",
            &[&seqs, &week_start.micros(), &week_end.micros()],
        )
        .await?
    {
        actual.insert(r.try_get(0).db()?, r.try_get(1).db()?);
    }
    data.into_iter()
        .map(|d| {
            let mut a = text_or_internal(d.alloc, "allocation")?;
            a.terms = terms.remove(&d.seq).unwrap_or_default();
            if a.terms.is_empty() {
                return Err(StoreError::Internal(format!(
                    "allocation {} has no terms",
                    a.id
                )));
            }
            a.actual_last_week =
                Quantity::from_thousandths(actual.get(&d.seq).copied().unwrap_or(0));
            a.committed_last_week =
                Quantity::from_thousandths(a.commitment_timeline().peak(week_start, week_end));
            Ok((d.seq, a))
        })
        .collect()
}

pub async fn load(
    db: &Db<'_>,
    scope: &Scope,
    id: &AllocationId,
    now: Instant,
) -> Result<(i64, Allocation), StoreError> {
    let mut q = Query::new(SELECT);
    q.and("a.id = {}", id.as_str().to_owned());
    q.scoped(scope, "a.organization_id", "a.workspace_id");
    let data = db
        .query_opt_built(&q)
        .await?
        .as_ref()
        .map(row)
        .transpose()
        .db()?
        .ok_or(StoreError::NotFound)?;
    complete(db, vec![data], now)
        .await?
        .pop()
        .ok_or(StoreError::NotFound)
}

pub async fn list(
    db: &Db<'_>,
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
    let rows = db
        .query_built(&q)
        .await?
        .iter()
        .map(row)
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    let rows = complete(db, rows, now).await?;
    Ok(Page::from_rows(rows, page.limit))
}

/// Registers a service line on first sight; refuses one of another workspace
/// or one that is closed. An existing line is share-locked until commit, so
/// it cannot be closed under an allocation being made for it. Two
/// transactions registering the same new line race on its primary key; the
/// loser is run again by the store and then finds the line.
async fn ensure_service_line(
    db: &Db<'_>,
    line: &ServiceLineId,
    ws: &WorkspaceId,
    org: &OrgId,
    now: Instant,
) -> Result<(), StoreError> {
    let found: Option<(String, String)> = db
        .query_opt(
            "SELECT workspace_id, status FROM service_lines WHERE id = $1 FOR SHARE",
            &[&line.as_str()],
        )
        .await?
        .map(|r| -> Result<_, tokio_postgres::Error> { Ok((r.try_get(0)?, r.try_get(1)?)) })
        .transpose()
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
            db.execute(
                "INSERT INTO service_lines (id, workspace_id, organization_id, status, created_at, updated_at) \
                 VALUES ($1, $2, $3, 'active', $4, $4)",
                &[&line.as_str(), &ws.as_str(), &org.as_str(), &now.micros()],
            )
            .await?;
            Ok(())
        }
    }
}

/// Replaces an allocation's materialised commitment steps.
pub async fn write_steps(
    db: &Db<'_>,
    pool_seq: i64,
    alloc_seq: i64,
    timeline: &Timeline,
) -> Result<(), StoreError> {
    db.execute(
        "DELETE FROM commitment_steps WHERE allocation_seq = $1",
        &[&alloc_seq],
    )
    .await?;
    for &(at, delta) in timeline.steps() {
        db.execute(
            "INSERT INTO commitment_steps (pool_seq, at, allocation_seq, delta) VALUES ($1, $2, $3, $4)",
            &[&pool_seq, &at.micros(), &alloc_seq, &delta],
        )
        .await?;
    }
    Ok(())
}

pub async fn create(
    db: &Db<'_>,
    scope: &Scope,
    new: NewAllocation,
    now: Instant,
) -> Result<Allocation, StoreError> {
    // The pool's lock first: everything read below about its supply and
    // commitments stays true until this transaction commits.
    let pool_seq = pools::lock(db, scope, &new.capacity_pool_id).await?;
    let (_, pool) = pools::load(db, scope, &new.capacity_pool_id, now).await?;
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
        db,
        &new.service_line_id,
        &pool.workspace_id,
        &pool.organization_id,
        now,
    )
    .await?;

    let terms = [(starts_at, committed)];
    let change = capacity_domain::timeline::CommitmentSchedule {
        starts_at,
        ends_at: new.ends_at,
        closed_at: None,
        terms: &terms,
    }
    .timeline();
    let supply = pools::supply_timeline(db, pool_seq).await?;
    let before = pools::commitment_timeline(db, pool_seq, now).await?;
    check_change(&supply, pool.overcommit_ratio, &before, &change, now).map_err(|overcommit| {
        StoreError::InsufficientCapacity {
            overcommit,
            unit: unit_name(pool.resource_type),
        }
    })?;

    let (seq, id) = mint_id(db, MintedPrefix::Allocation, now).await?;
    db.execute(
        "INSERT INTO allocations (seq, id, pool_seq, workspace_id, organization_id, service_line_id, resource_type, \
         status, starts_at, ends_at, closed_at, created_at, updated_at, version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, $9, NULL, $10, $10, 1)",
        &[
            &seq,
            &id,
            &pool_seq,
            &pool.workspace_id.as_str(),
            &pool.organization_id.as_str(),
            &new.service_line_id.as_str(),
            &pool.resource_type.as_str(),
            &starts_at.micros(),
            &new.ends_at.map(|e| e.micros()),
            &now.micros(),
        ],
    )
    .await?;
    let resources =
        serde_json::to_string(&new.resources).map_err(|e| StoreError::Internal(e.to_string()))?;
    db.execute(
        "INSERT INTO allocation_terms (allocation_seq, effective_at, committed, resources, reason) \
         VALUES ($1, $2, $3, $4, NULL)",
        &[
            &seq,
            &starts_at.micros(),
            &committed.thousandths(),
            &resources,
        ],
    )
    .await?;
    write_steps(db, pool_seq, seq, &change).await?;
    db.execute(
        "UPDATE pools SET updated_at = $1 WHERE seq = $2",
        &[&now.micros(), &pool_seq],
    )
    .await?;
    let (_, alloc) = load(db, scope, &AllocationId::from_trusted(id), now).await?;
    insert_event(
        db,
        "capacity.allocation.created",
        &alloc.organization_id,
        &alloc.workspace_id,
        alloc.view(now),
        now,
    )
    .await?;
    Ok(alloc)
}
