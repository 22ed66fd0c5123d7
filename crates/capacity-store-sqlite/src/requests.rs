//! Demand: pending requests, forecasts and cost reports read the same
//! timelines the invariant guards.

use crate::allocations;
use crate::events::insert_event;
use crate::pools::{self, commitment_between, commitment_timeline, supply_timeline};
use crate::sql::{DbResult, Query, mint_id, text_or_internal};
use capacity_domain::forecast::{PartTimeUsage, PlanningPeriod, USAGE_WEEKS, figures};
use capacity_domain::ids::MintedPrefix;
use capacity_domain::model::{Adjustment, DemandRequest, Pool, RequestStatus, SupplySource};
use capacity_domain::time::MICROS_PER_WEEK;
use capacity_domain::timeline::Timeline;
use capacity_domain::{
    AllocationId, Delta, Instant, OrgId, Period, Quantity, ResourceType, WorkspaceId,
};
use capacity_store::{
    AllocationFilter, CostData, Expiring, ForecastCache, ForecastData, NewDemandRequest, Page,
    PageRequest, PoolFilter, PoolPeriod, RequestFilter, RequestUpdate, Scope, StoreError,
};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::sync::Arc;

const SELECT: &str = "SELECT seq, id, workspace_id, organization_id, resource_type, quantity, starts_at, ends_at, \
    note, status, allocation_id, created_at, updated_at, \
    COALESCE((SELECT p.period FROM pools p WHERE p.workspace_id = r.workspace_id AND p.resource_type = r.resource_type), '') \
    FROM demand_requests r";

fn row(r: &Row<'_>) -> rusqlite::Result<(i64, Option<DemandRequest>)> {
    let seq: i64 = r.get(0)?;
    let rt: String = r.get(4)?;
    let status: String = r.get(9)?;
    let period: String = r.get(13)?;
    let (Some(resource_type), Some(status)) =
        (ResourceType::parse(&rt), RequestStatus::parse(&status))
    else {
        return Ok((seq, None));
    };
    Ok((
        seq,
        Some(DemandRequest {
            id: r.get(1)?,
            workspace_id: WorkspaceId::from_trusted(r.get(2)?),
            organization_id: OrgId::from_trusted(r.get(3)?),
            resource_type,
            period: Period::parse(&period).unwrap_or(resource_type.default_period()),
            quantity: Quantity::from_thousandths(r.get(5)?),
            starts_at: Instant::from_micros(r.get(6)?),
            ends_at: r.get::<_, Option<i64>>(7)?.map(Instant::from_micros),
            note: r.get(8)?,
            status,
            allocation_id: r
                .get::<_, Option<String>>(10)?
                .map(AllocationId::from_trusted),
            created_at: Instant::from_micros(r.get(11)?),
            updated_at: Instant::from_micros(r.get(12)?),
        }),
    ))
}

fn load(conn: &Connection, scope: &Scope, id: &str) -> Result<(i64, DemandRequest), StoreError> {
    let mut q = Query::new(SELECT);
    q.and("id = {}", id.to_owned());
    q.scoped(scope, "organization_id", "workspace_id");
    let (seq, r) = conn
        .prepare_cached(&q.sql)
        .db()?
        .query_row(rusqlite::params_from_iter(q.params.iter()), row)
        .optional()
        .db()?
        .ok_or(StoreError::NotFound)?;
    Ok((seq, text_or_internal(r, "demand request")?))
}

/// One request this scope sees.
pub fn get(conn: &Connection, scope: &Scope, id: &str) -> Result<DemandRequest, StoreError> {
    Ok(load(conn, scope, id)?.1)
}

/// The visible pool of a workspace for a resource type, if any.
fn workspace_pool(
    conn: &Connection,
    scope: &Scope,
    ws: &WorkspaceId,
    rt: ResourceType,
    now: Instant,
) -> Result<Option<(i64, Pool)>, StoreError> {
    // Find the id first (one indexed row), then read the pool once: its
    // totals are sums over its steps, worth computing only once.
    let id: Option<String> = conn
        .prepare_cached("SELECT id FROM pools WHERE workspace_id = ?1 AND resource_type = ?2")
        .db()?
        .query_row(params![ws.as_str(), rt.as_str()], |r| r.get(0))
        .optional()
        .db()?;
    match id {
        None => Ok(None),
        Some(id) => match pools::load(conn, scope, &capacity_domain::PoolId::from_trusted(id), now)
        {
            Ok(found) => Ok(Some(found)),
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e),
        },
    }
}

/// Pending demand for a workspace and type as a timeline: only the demand of
/// the organization the workspace belongs to counts.
fn pending_timeline(
    conn: &Connection,
    ws: &WorkspaceId,
    org: &OrgId,
    rt: ResourceType,
) -> Result<Timeline, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT quantity, starts_at, ends_at FROM demand_requests \
             WHERE workspace_id = ?1 AND organization_id = ?2 AND resource_type = ?3 AND status = 'pending'",
        )
        .db()?;
    let rows = stmt
        .query_map(params![ws.as_str(), org.as_str(), rt.as_str()], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<i64>>(2)?,
            ))
        })
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    Ok(Timeline::from_steps(rows.into_iter().flat_map(
        |(q, s, e)| {
            std::iter::once((Instant::from_micros(s), q))
                .chain(e.map(|e| (Instant::from_micros(e), -q)))
        },
    )))
}

pub fn create(
    conn: &Connection,
    scope: &Scope,
    new: NewDemandRequest,
    now: Instant,
) -> Result<DemandRequest, StoreError> {
    if let Some(end) = new.ends_at
        && end <= new.starts_at
    {
        return Err(StoreError::invalid("ends_at", "must be after starts_at"));
    }
    let org = crate::workspaces::use_for_write(
        conn,
        scope,
        &new.workspace_id,
        new.organization_id.as_ref(),
        now,
    )?;
    let pool = workspace_pool(conn, scope, &new.workspace_id, new.resource_type, now)?;
    let period = pool
        .as_ref()
        .map_or(new.resource_type.default_period(), |p| p.1.period);
    let quantity = new
        .quantity
        .checked_per_period(period, "quantity_per_week")?;
    let pending = new.pending_after(
        &pending_timeline(conn, &new.workspace_id, &org, new.resource_type)?,
        quantity,
    )?;
    let (seq, id) = mint_id(conn, MintedPrefix::Request, now)?;
    conn.prepare_cached(
        "INSERT INTO demand_requests (seq, id, workspace_id, organization_id, resource_type, quantity, starts_at, \
         ends_at, note, status, allocation_id, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending', NULL, ?10, ?10)",
    )
    .db()?
    .execute(params![
        seq,
        id,
        new.workspace_id.as_str(),
        org.as_str(),
        new.resource_type.as_str(),
        quantity.thousandths(),
        new.starts_at.micros(),
        new.ends_at.map(|e| e.micros()),
        new.note,
        now.micros()
    ])
    .db()?;
    let (_, request) = load(conn, scope, &id)?;
    // Can supply as it stands meet all pending demand over this request's span?
    let (supply, ratio, committed) = match &pool {
        Some((pool_seq, p)) => (
            supply_timeline(conn, *pool_seq)?,
            p.overcommit_ratio,
            commitment_timeline(conn, *pool_seq, now)?,
        ),
        None => (Timeline::default(), 1000, Timeline::default()),
    };
    let window = PlanningPeriod {
        start: request.starts_at.max(now),
        end: request.ends_at.unwrap_or(Instant::END_OF_TIME),
    };
    if window.start < window.end {
        let f = figures(&supply, ratio, &committed, &pending, window);
        if f.gap > 0 {
            insert_event(
                conn,
                "capacity.supply_gap",
                &request.organization_id,
                &request.workspace_id,
                serde_json::json!({
                    "request": &request,
                    "pending_requests": Quantity::from_thousandths(f.pending),
                    "available_supply": Quantity::from_thousandths(f.available),
                    "supply_gap": Quantity::from_thousandths(f.gap),
                }),
                now,
            )?;
        }
    }
    Ok(request)
}

pub fn update(
    conn: &Connection,
    scope: &Scope,
    id: &str,
    update: RequestUpdate,
    now: Instant,
) -> Result<DemandRequest, StoreError> {
    let (seq, request) = load(conn, scope, id)?;
    let allocation_ws = match &update.allocation_id {
        None => None,
        Some(a) => match allocations::load(conn, scope, a, now) {
            Ok((_, alloc)) => Some(alloc.workspace_id),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e),
        },
    };
    let updated = update.apply(&request, allocation_ws.as_ref(), now)?;
    conn.prepare_cached("UPDATE demand_requests SET status = ?1, allocation_id = ?2, updated_at = ?3 WHERE seq = ?4")
        .db()?
        .execute(params![update.status.as_str(), update.allocation_id.as_ref().map(|a| a.as_str()), now.micros(), seq])
        .db()?;
    Ok(updated)
}

pub fn list(
    conn: &Connection,
    scope: &Scope,
    f: &RequestFilter,
    page: PageRequest,
) -> Result<Page<DemandRequest>, StoreError> {
    let mut q = Query::new(SELECT);
    q.scoped(scope, "organization_id", "workspace_id");
    if let Some(ws) = &f.workspace_id {
        q.and("workspace_id = {}", ws.as_str().to_owned());
    }
    if let Some(rt) = f.resource_type {
        q.and("resource_type = {}", rt.as_str().to_owned());
    }
    if let Some(s) = f.status {
        q.and("status = {}", s.as_str().to_owned());
    }
    q.page("seq", page.after, page.limit);
    let mut stmt = conn.prepare_cached(&q.sql).db()?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(q.params.iter()), row)
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    let rows = rows
        .into_iter()
        .map(|(seq, r)| text_or_internal(r, "demand request").map(|r| (seq, r)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(rows, page.limit))
}

/// The allocations of a pool (`?1`) whose commitment ends in `[?2, ?3)`: a
/// negative step at the allocation's end or closing.
const EXPIRING: &str = "SELECT a.id, a.service_line_id, c.at, -c.delta FROM commitment_steps c \
     JOIN allocations a ON a.seq = c.allocation_seq \
     WHERE c.pool_seq = ?1 AND c.at >= ?2 AND c.at < ?3 AND c.delta < 0 \
     AND (c.at = a.ends_at OR c.at = a.closed_at) ORDER BY c.at, c.allocation_seq";

pub fn forecast_data(
    conn: &Connection,
    scope: &Scope,
    ws: &WorkspaceId,
    rt: ResourceType,
    period: PlanningPeriod,
    now: Instant,
    cache: &ForecastCache,
) -> Result<ForecastData, StoreError> {
    let pending = {
        // Only requests this scope may see count.
        match crate::workspaces::organization(conn, ws)? {
            Some(org) if scope.sees(&org, ws) => pending_timeline(conn, ws, &org, rt)?,
            _ => Timeline::default(),
        }
    };
    let Some((pool_seq, pool)) = workspace_pool(conn, scope, ws, rt, now)? else {
        return Ok(ForecastData {
            pool: None,
            pool_period: Default::default(),
            pending,
            usage_last_12_weeks: Quantity::ZERO,
            part_time_usage: Vec::new(),
        });
    };
    // The generation first, then the data (see `ForecastCache`).
    let generation: i64 = conn
        .prepare_cached("SELECT generation FROM pools WHERE seq = ?1")
        .db()?
        .query_row([pool_seq], |r| r.get(0))
        .db()?;
    let pool_period = match cache.get(pool_seq, generation, period) {
        Some(cached) => cached,
        None => {
            let read = Arc::new(pool_period(conn, &pool, pool_seq, period)?);
            cache.insert(pool_seq, generation, period, read.clone());
            read
        }
    };
    let this_week = now.week_start();
    let usage: i64 = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(quantity), 0) FROM pool_usage_weeks WHERE pool_seq = ?1 AND week_start >= ?2 AND week_start < ?3",
        )
        .db()?
        .query_row(params![pool_seq, this_week.plus_micros(-USAGE_WEEKS * MICROS_PER_WEEK).micros(), this_week.micros()], |r| r.get(0))
        .db()?;
    Ok(ForecastData {
        pool: Some(pool),
        pool_period,
        pending,
        usage_last_12_weeks: Quantity::from_thousandths(usage),
        part_time_usage: part_time_usage(conn, pool_seq, this_week)?,
    })
}

/// The pool's allocations with usage in the 12 complete weeks before
/// `this_week` that started, ended or closed inside them (a commitment step
/// inside the window finds them through the pool's step index).
fn part_time_usage(
    conn: &Connection,
    pool_seq: i64,
    this_week: Instant,
) -> Result<Vec<PartTimeUsage>, StoreError> {
    let from = this_week.plus_micros(-USAGE_WEEKS * MICROS_PER_WEEK);
    let mut stmt = conn
        .prepare_cached(
            "SELECT a.starts_at, MIN(COALESCE(a.ends_at, ?4), COALESCE(a.closed_at, ?4)), \
             (SELECT SUM(u.quantity) FROM usage_weeks u \
              WHERE u.allocation_seq = a.seq AND u.week_start >= ?2 AND u.week_start < ?3) \
             FROM allocations a WHERE a.seq IN (SELECT allocation_seq FROM commitment_steps \
              WHERE pool_seq = ?1 AND at > ?2 AND at < ?3)",
        )
        .db()?;
    let rows = stmt
        .query_map(
            params![
                pool_seq,
                from.micros(),
                this_week.micros(),
                Instant::END_OF_TIME.micros()
            ],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                ))
            },
        )
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    Ok(rows
        .into_iter()
        .filter_map(|(starts, ends, used)| {
            Some(PartTimeUsage {
                used: used?,
                starts_at: Instant::from_micros(starts),
                ends_at: Instant::from_micros(ends),
            })
        })
        .collect())
}

/// The pool's supply and commitments over the period.
fn pool_period(
    conn: &Connection,
    pool: &Pool,
    pool_seq: i64,
    period: PlanningPeriod,
) -> Result<PoolPeriod, StoreError> {
    let supply = supply_timeline(conn, pool_seq)?;
    let committed = commitment_between(conn, pool_seq, period.start, period.end)?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, delta, reason, source, effective_at, created_at, created_by FROM supply_changes \
             WHERE pool_seq = ?1 AND effective_at >= ?2 AND effective_at < ?3 ORDER BY effective_at, seq",
        )
        .db()?;
    let supply_changes = stmt
        .query_map(
            params![pool_seq, period.start.micros(), period.end.micros()],
            |r| {
                let source: String = r.get(3)?;
                Ok(Adjustment {
                    id: r.get(0)?,
                    capacity_pool_id: pool.id.clone(),
                    delta: Delta::from_thousandths(r.get(1)?),
                    reason: r.get(2)?,
                    source: SupplySource::parse(&source).unwrap_or(SupplySource::Correction),
                    effective_at: Instant::from_micros(r.get(4)?),
                    created_at: Instant::from_micros(r.get(5)?),
                    created_by: r.get(6)?,
                })
            },
        )
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    // What ends inside the period is read off the pool's commitment steps:
    // the step at an allocation's end (or closing) is minus what it
    // committed just before.
    let expiring = conn
        .prepare_cached(EXPIRING)
        .db()?
        .query_map(
            params![pool_seq, period.start.micros(), period.end.micros()],
            |r| {
                Ok(Expiring {
                    allocation_id: AllocationId::from_trusted(r.get(0)?),
                    service_line_id: capacity_domain::ServiceLineId::from_trusted(r.get(1)?),
                    ends_at: Instant::from_micros(r.get(2)?),
                    committed: Quantity::from_thousandths(r.get(3)?),
                })
            },
        )
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    Ok(PoolPeriod::new(supply, committed, supply_changes, expiring))
}

pub fn cost_data(
    conn: &Connection,
    scope: &Scope,
    ws: &WorkspaceId,
    period: PlanningPeriod,
    page: PageRequest,
    now: Instant,
) -> Result<CostData, StoreError> {
    let filter = PoolFilter {
        workspace_id: Some(ws.clone()),
        ..Default::default()
    };
    let pools = pools::list(
        conn,
        scope,
        &filter,
        PageRequest {
            limit: 100,
            after: None,
        },
        now,
    )?;
    if pools.items.is_empty() {
        return Ok(CostData {
            pools: Vec::new(),
            next: None,
        });
    }
    let until = now.min(period.end);
    // The page: the workspace's allocations by sequence (the
    // `allocations_workspace` index), whichever their pool.
    let f = AllocationFilter {
        workspace_id: Some(ws.clone()),
        ..Default::default()
    };
    let allocs = allocations::list(conn, scope, &f, page, now)?;
    // Their usage inside the month so far, in one query: the page is the
    // workspace's allocations in (after, next], so the same range of the
    // same index finds them.
    let mut used: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    if !allocs.items.is_empty() {
        let mut stmt = conn
            .prepare_cached(
                "SELECT a.id, SUM(u.quantity) FROM allocations a \
                 JOIN usage_records u ON u.allocation_seq = a.seq \
                 AND u.occurred_at >= ?2 AND u.occurred_at < ?3 \
                 WHERE a.workspace_id = ?1 AND a.seq > ?4 AND a.seq <= ?5 GROUP BY a.seq",
            )
            .db()?;
        let rows = stmt
            .query_map(
                params![
                    ws.as_str(),
                    period.start.micros(),
                    until.micros(),
                    page.after.unwrap_or(i64::MIN),
                    allocs.next.unwrap_or(i64::MAX)
                ],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
            )
            .db()?;
        for row in rows {
            let (id, q) = row.db()?;
            used.insert(id, q);
        }
    }
    Ok(CostData::assemble(pools.items, allocs, &used, period))
}
