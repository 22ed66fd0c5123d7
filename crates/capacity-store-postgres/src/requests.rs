//! Demand: pending requests, forecasts and cost reports read the same
//! timelines the invariant guards, and decide with the same pure functions
//! (`capacity_domain::forecast::figures`) as SQLite.
//!
//! A new request takes the workspace's advisory lock (as pool creation
//! does): it may fix which organization a new workspace belongs to, and two
//! requests for one workspace judge the supply gap one after the other, each
//! seeing the other's pending demand, as SQLite's single writer does.

use crate::allocations;
use crate::events::insert_event;
use crate::pools::{self, commitment_between, commitment_timeline, supply_timeline};
use crate::sql::{Db, DbResult, Query, mint_id, text_or_internal};
use capacity_domain::forecast::{PartTimeUsage, PlanningPeriod, USAGE_WEEKS, figures};
use capacity_domain::ids::MintedPrefix;
use capacity_domain::model::{Adjustment, DemandRequest, Pool, RequestStatus, SupplySource};
use capacity_domain::time::MICROS_PER_WEEK;
use capacity_domain::timeline::Timeline;
use capacity_domain::{
    AllocationId, Delta, Instant, OrgId, Period, Quantity, ResourceType, ServiceLineId, WorkspaceId,
};
use capacity_store::{
    AllocationFilter, CostData, Expiring, ForecastCache, ForecastData, NewDemandRequest, Page,
    PageRequest, PoolFilter, PoolPeriod, RequestFilter, RequestUpdate, Scope, StoreError,
};
use std::collections::HashMap;
use std::sync::Arc;
use tokio_postgres::Row;

const SELECT: &str = "SELECT seq, id, workspace_id, organization_id, resource_type, quantity, starts_at, ends_at, \
    note, status, allocation_id, created_at, updated_at, \
    COALESCE((SELECT p.period FROM pools p WHERE p.workspace_id = r.workspace_id AND p.resource_type = r.resource_type), '') \
    FROM demand_requests r";

fn row(r: &Row) -> Result<(i64, Option<DemandRequest>), tokio_postgres::Error> {
    let seq: i64 = r.try_get(0)?;
    let rt: String = r.try_get(4)?;
    let status: String = r.try_get(9)?;
    let period: String = r.try_get(13)?;
    let (Some(resource_type), Some(status)) =
        (ResourceType::parse(&rt), RequestStatus::parse(&status))
    else {
        return Ok((seq, None));
    };
    Ok((
        seq,
        Some(DemandRequest {
            id: r.try_get(1)?,
            workspace_id: WorkspaceId::from_trusted(r.try_get(2)?),
            organization_id: OrgId::from_trusted(r.try_get(3)?),
            resource_type,
            period: Period::parse(&period).unwrap_or(resource_type.default_period()),
            quantity: Quantity::from_thousandths(r.try_get(5)?),
            starts_at: Instant::from_micros(r.try_get(6)?),
            ends_at: r.try_get::<_, Option<i64>>(7)?.map(Instant::from_micros),
            note: r.try_get(8)?,
            status,
            allocation_id: r
                .try_get::<_, Option<String>>(10)?
                .map(AllocationId::from_trusted),
            created_at: Instant::from_micros(r.try_get(11)?),
            updated_at: Instant::from_micros(r.try_get(12)?),
        }),
    ))
}

async fn load(db: &Db<'_>, scope: &Scope, id: &str) -> Result<(i64, DemandRequest), StoreError> {
    let mut q = Query::new(SELECT);
    q.and("id = {}", id.to_owned());
    q.scoped(scope, "organization_id", "workspace_id");
    let (seq, r) = db
        .query_opt_built(&q)
        .await?
        .as_ref()
        .map(row)
        .transpose()
        .db()?
        .ok_or(StoreError::NotFound)?;
    Ok((seq, text_or_internal(r, "demand request")?))
}

/// One request this scope sees.
pub async fn get(db: &Db<'_>, scope: &Scope, id: &str) -> Result<DemandRequest, StoreError> {
    Ok(load(db, scope, id).await?.1)
}

/// Pending demand for a workspace and type as a timeline: only the demand of
/// the organization the workspace belongs to counts.
async fn pending_timeline(
    db: &Db<'_>,
    ws: &WorkspaceId,
    org: &OrgId,
    rt: ResourceType,
) -> Result<Timeline, StoreError> {
    let rows = db
        .query(
            "SELECT quantity, starts_at, ends_at FROM demand_requests \
             WHERE workspace_id = $1 AND organization_id = $2 AND resource_type = $3 \
             AND status = 'pending'",
            &[&ws.as_str(), &org.as_str(), &rt.as_str()],
        )
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<_, i64>(0)?,
                r.try_get::<_, i64>(1)?,
                r.try_get::<_, Option<i64>>(2)?,
            ))
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        .db()?;
    Ok(Timeline::from_steps(rows.into_iter().flat_map(
        |(q, s, e)| {
            std::iter::once((Instant::from_micros(s), q))
                .chain(e.map(|e| (Instant::from_micros(e), -q)))
        },
    )))
}

pub async fn create(
    db: &Db<'_>,
    scope: &Scope,
    new: NewDemandRequest,
    now: Instant,
) -> Result<DemandRequest, StoreError> {
    if let Some(end) = new.ends_at
        && end <= new.starts_at
    {
        return Err(StoreError::invalid("ends_at", "must be after starts_at"));
    }
    pools::lock_workspace(db, &new.workspace_id).await?;
    let org = crate::workspaces::use_for_write(
        db,
        scope,
        &new.workspace_id,
        new.organization_id.as_ref(),
        now,
    )
    .await?;
    let pool = pools::find(db, scope, &new.workspace_id, new.resource_type, now).await?;
    let period = pool
        .as_ref()
        .map_or(new.resource_type.default_period(), |p| p.1.period);
    let quantity = new
        .quantity
        .checked_per_period(period, "quantity_per_week")?;
    let pending = new.pending_after(
        &pending_timeline(db, &new.workspace_id, &org, new.resource_type).await?,
        quantity,
    )?;
    let (seq, id) = mint_id(db, MintedPrefix::Request, now).await?;
    db.execute(
        "INSERT INTO demand_requests (seq, id, workspace_id, organization_id, resource_type, quantity, starts_at, \
         ends_at, note, status, allocation_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', NULL, $10, $10)",
        &[
            &seq,
            &id,
            &new.workspace_id.as_str(),
            &org.as_str(),
            &new.resource_type.as_str(),
            &quantity.thousandths(),
            &new.starts_at.micros(),
            &new.ends_at.map(|e| e.micros()),
            &new.note,
            &now.micros(),
        ],
    )
    .await?;
    let (_, request) = load(db, scope, &id).await?;
    // Can supply as it stands meet all pending demand over this request's span?
    let (supply, ratio, committed) = match &pool {
        Some((pool_seq, p)) => (
            supply_timeline(db, *pool_seq).await?,
            p.overcommit_ratio,
            commitment_timeline(db, *pool_seq, now).await?,
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
                db,
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
            )
            .await?;
        }
    }
    Ok(request)
}

pub async fn update(
    db: &Db<'_>,
    scope: &Scope,
    id: &str,
    update: RequestUpdate,
    now: Instant,
) -> Result<DemandRequest, StoreError> {
    // The row's lock first: two updates of one request take turns, and the
    // second sees it is no longer pending.
    let mut q = Query::new("SELECT seq FROM demand_requests");
    q.and("id = {}", id.to_owned());
    q.scoped(scope, "organization_id", "workspace_id");
    q.push(" FOR UPDATE");
    db.query_opt_built(&q).await?.ok_or(StoreError::NotFound)?;
    let (seq, request) = load(db, scope, id).await?;
    let allocation_ws = match &update.allocation_id {
        None => None,
        Some(a) => match allocations::load(db, scope, a, now).await {
            Ok((_, alloc)) => Some(alloc.workspace_id),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e),
        },
    };
    let updated = update.apply(&request, allocation_ws.as_ref(), now)?;
    db.execute(
        "UPDATE demand_requests SET status = $1, allocation_id = $2, updated_at = $3 WHERE seq = $4",
        &[
            &update.status.as_str(),
            &update.allocation_id.as_ref().map(|a| a.as_str()),
            &now.micros(),
            &seq,
        ],
    )
    .await?;
    Ok(updated)
}

pub async fn list(
    db: &Db<'_>,
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
    let rows = db
        .query_built(&q)
        .await?
        .iter()
        .map(row)
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    let rows = rows
        .into_iter()
        .map(|(seq, r)| text_or_internal(r, "demand request").map(|r| (seq, r)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(rows, page.limit))
}

/// The allocations of a pool (`$1`) whose commitment ends in `[$2, $3)`: a
/// negative step at the allocation's end or closing.
const EXPIRING: &str = "SELECT a.id, a.service_line_id, c.at, -c.delta FROM commitment_steps c \
     JOIN allocations a ON a.seq = c.allocation_seq \
     WHERE c.pool_seq = $1 AND c.at >= $2 AND c.at < $3 AND c.delta < 0 \
     AND (c.at = a.ends_at OR c.at = a.closed_at) ORDER BY c.at, c.allocation_seq";

/// A forecast waiting to be read, with its caller's scope.
#[derive(Clone)]
pub struct ForecastRequest {
    pub scope: Scope,
    pub ws: WorkspaceId,
    pub rt: ResourceType,
    pub period: PlanningPeriod,
}

/// Forecasts in one statement (concurrent forecasts read together, each
/// workspace and resource type once) when each pool's figures over the
/// period are cached at its current generation (or the workspace has no
/// such pool): the workspace's organization, its pending demand, the pool
/// with its generation and its last 12 weeks of usage, all from one
/// snapshot. A request's `None` is a cache miss: the caller reads it all
/// with [`forecast_data`] in one snapshot instead. The caller's scope is
/// judged here, against the workspace's organization (a pool's is its
/// workspace's).
pub async fn forecast_cached(
    db: &Db<'_>,
    requests: &[ForecastRequest],
    now: Instant,
    cache: &ForecastCache,
) -> Result<Vec<Result<Option<ForecastData>, StoreError>>, StoreError> {
    let mut pairs: Vec<(&str, &str)> = requests
        .iter()
        .map(|r| (r.ws.as_str(), r.rt.as_str()))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let (wss, rts): (Vec<&str>, Vec<&str>) = pairs.iter().copied().unzip();
    let this_week = now.week_start();
    // The workspace's organization is its registration's; pending demand
    // (of that organization only) is one index scan.
    let sql = format!(
        "SELECT p.*, w.organization_id, d.q, d.s, d.e, \
         (SELECT COALESCE(SUM(quantity), 0)::BIGINT FROM pool_usage_weeks \
          WHERE pool_seq = p.seq AND week_start >= $4 AND week_start < $5), \
         x.o, pt.* \
         FROM unnest($2::TEXT[], $3::TEXT[]) WITH ORDINALITY AS x(ws, rt, o) \
         LEFT JOIN workspaces w ON w.id = x.ws \
         LEFT JOIN LATERAL ({} WHERE p.workspace_id = x.ws AND p.resource_type = x.rt) p ON true \
         CROSS JOIN LATERAL (SELECT array_agg(quantity) AS q, array_agg(starts_at) AS s, \
             array_agg(ends_at) AS e \
             FROM demand_requests \
             WHERE workspace_id = x.ws AND organization_id = w.organization_id \
             AND resource_type = x.rt AND status = 'pending') d \
         LEFT JOIN LATERAL {} pt ON p.seq IS NOT NULL",
        pools::SELECT_WITH_GENERATION,
        part_time_sql("p.seq", "$4", "$5", "$6"),
    );
    let rows = db
        .query(
            &sql,
            &[
                &now.micros(),
                &wss,
                &rts,
                &this_week
                    .plus_micros(-USAGE_WEEKS * MICROS_PER_WEEK)
                    .micros(),
                &this_week.micros(),
                &Instant::END_OF_TIME.micros(),
            ],
        )
        .await?;
    let mut by_pair: HashMap<(&str, &str), &Row> = HashMap::new();
    for r in &rows {
        let o: i64 = r.try_get(19).db()?;
        let pair = usize::try_from(o - 1)
            .ok()
            .and_then(|i| pairs.get(i))
            .ok_or_else(|| StoreError::Internal("a forecast row out of range".into()))?;
        by_pair.insert(*pair, r);
    }
    Ok(requests
        .iter()
        .map(
            |req| match by_pair.get(&(req.ws.as_str(), req.rt.as_str())) {
                Some(r) => cached_forecast(r, req, cache),
                None => Err(StoreError::Internal(
                    "a forecast read answered no row".into(),
                )),
            },
        )
        .collect())
}

/// One request's forecast from its row of [`forecast_cached`]: columns the
/// pool's 13 (NULL without a pool), its generation, then the workspace's
/// organization, pending demand (3 arrays), usage.
fn cached_forecast(
    r: &Row,
    req: &ForecastRequest,
    cache: &ForecastCache,
) -> Result<Option<ForecastData>, StoreError> {
    let org: Option<String> = r.try_get(14).db()?;
    let visible = org.is_some_and(|org| req.scope.sees(&OrgId::from_trusted(org), &req.ws));
    let nothing = |pending| ForecastData {
        pool: None,
        pool_period: Default::default(),
        pending,
        usage_last_12_weeks: Quantity::ZERO,
        part_time_usage: Vec::new(),
    };
    if !visible {
        return Ok(Some(nothing(Timeline::default())));
    }
    let q: Option<Vec<i64>> = r.try_get(15).db()?;
    let s: Option<Vec<i64>> = r.try_get(16).db()?;
    let e: Option<Vec<Option<i64>>> = r.try_get(17).db()?;
    let (q, s, e) = (
        q.unwrap_or_default(),
        s.unwrap_or_default(),
        e.unwrap_or_default(),
    );
    let pending = Timeline::from_steps(q.into_iter().zip(s).zip(e).flat_map(|((q, s), e)| {
        std::iter::once((Instant::from_micros(s), q))
            .chain(e.map(|e| (Instant::from_micros(e), -q)))
    }));
    if r.try_get::<_, Option<i64>>(0).db()?.is_none() {
        return Ok(Some(nothing(pending)));
    }
    let (pool_seq, pool) = pools::row(r).db()?;
    let pool = text_or_internal(pool, "pool")?;
    let generation: i64 = r.try_get(13).db()?;
    let Some(pool_period) = cache.get(pool_seq, generation, req.period) else {
        return Ok(None);
    };
    Ok(Some(ForecastData {
        pool: Some(pool),
        pool_period,
        pending,
        usage_last_12_weeks: Quantity::from_thousandths(r.try_get(18).db()?),
        part_time_usage: part_time_from(r, 20)?,
    }))
}

pub async fn forecast_data(
    db: &Db<'_>,
    scope: &Scope,
    ws: &WorkspaceId,
    rt: ResourceType,
    period: PlanningPeriod,
    now: Instant,
    cache: &ForecastCache,
) -> Result<ForecastData, StoreError> {
    let pending = {
        // Only requests this scope may see count.
        match crate::workspaces::organization(db, ws).await? {
            Some(org) if scope.sees(&org, ws) => pending_timeline(db, ws, &org, rt).await?,
            _ => Timeline::default(),
        }
    };
    let Some((pool_seq, pool)) = pools::find(db, scope, ws, rt, now).await? else {
        return Ok(ForecastData {
            pool: None,
            pool_period: Default::default(),
            pending,
            usage_last_12_weeks: Quantity::ZERO,
            part_time_usage: Vec::new(),
        });
    };
    // The generation first, then the data (see `ForecastCache`).
    let generation: i64 = db
        .query_one("SELECT generation FROM pools WHERE seq = $1", &[&pool_seq])
        .await?
        .try_get(0)
        .db()?;
    let pool_period = match cache.get(pool_seq, generation, period) {
        Some(cached) => cached,
        None => {
            let read = Arc::new(pool_period(db, &pool, pool_seq, period).await?);
            cache.insert(pool_seq, generation, period, read.clone());
            read
        }
    };
    let this_week = now.week_start();
    let row = db
        .query_one(
            &format!(
                "SELECT (SELECT COALESCE(SUM(quantity), 0)::BIGINT FROM pool_usage_weeks \
                 WHERE pool_seq = $1 AND week_start >= $2 AND week_start < $3), pt.* \
                 FROM {} pt",
                part_time_sql("$1", "$2", "$3", "$4")
            ),
            &[
                &pool_seq,
                &this_week
                    .plus_micros(-USAGE_WEEKS * MICROS_PER_WEEK)
                    .micros(),
                &this_week.micros(),
                &Instant::END_OF_TIME.micros(),
            ],
        )
        .await?;
    Ok(ForecastData {
        pool: Some(pool),
        pool_period,
        pending,
        usage_last_12_weeks: Quantity::from_thousandths(row.try_get(0).db()?),
        part_time_usage: part_time_from(&row, 1)?,
    })
}

/// A subquery (one row of three arrays: usage, start, end) of the pool's
/// allocations with usage in `[from, to)` (the last 12 complete weeks) that
/// started, ended or closed inside it: a commitment step inside the window
/// finds them through the pool's step index. `end` is END_OF_TIME.
fn part_time_sql(pool: &str, from: &str, to: &str, end: &str) -> String {
    format!(
        "(SELECT array_agg(x.used) AS used, array_agg(x.s) AS s, array_agg(x.e) AS e FROM ( \
           SELECT a.starts_at AS s, \
             LEAST(COALESCE(a.ends_at, {end}), COALESCE(a.closed_at, {end})) AS e, \
             (SELECT SUM(u.quantity)::BIGINT FROM usage_weeks u WHERE u.allocation_seq = a.seq \
              AND u.week_start >= {from} AND u.week_start < {to}) AS used \
           FROM allocations a WHERE a.seq IN (SELECT allocation_seq FROM commitment_steps \
             WHERE pool_seq = {pool} AND at > {from} AND at < {to})) x \
         WHERE x.used IS NOT NULL)"
    )
}

/// The three arrays of [`part_time_sql`] from column `at` of `r`.
fn part_time_from(r: &Row, at: usize) -> Result<Vec<PartTimeUsage>, StoreError> {
    let used: Option<Vec<i64>> = r.try_get(at).db()?;
    let starts: Option<Vec<i64>> = r.try_get(at + 1).db()?;
    let ends: Option<Vec<i64>> = r.try_get(at + 2).db()?;
    Ok(used
        .unwrap_or_default()
        .into_iter()
        .zip(starts.unwrap_or_default())
        .zip(ends.unwrap_or_default())
        .map(|((used, s), e)| PartTimeUsage {
            used,
            starts_at: Instant::from_micros(s),
            ends_at: Instant::from_micros(e),
        })
        .collect())
}

/// The pool's supply and commitments over the period.
async fn pool_period(
    db: &Db<'_>,
    pool: &Pool,
    pool_seq: i64,
    period: PlanningPeriod,
) -> Result<PoolPeriod, StoreError> {
    let supply = supply_timeline(db, pool_seq).await?;
    let committed = commitment_between(db, pool_seq, period.start, period.end).await?;
    let range: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
        [&pool_seq, &period.start.micros(), &period.end.micros()];
    let supply_changes = db
        .query(
            "SELECT id, delta, reason, source, effective_at, created_at, created_by FROM supply_changes \
             WHERE pool_seq = $1 AND effective_at >= $2 AND effective_at < $3 ORDER BY effective_at, seq",
            &range,
        )
        .await?
        .iter()
        .map(|r| {
            let source: String = r.try_get(3)?;
            Ok(Adjustment {
                id: r.try_get(0)?,
                capacity_pool_id: pool.id.clone(),
                delta: Delta::from_thousandths(r.try_get(1)?),
                reason: r.try_get(2)?,
                source: SupplySource::parse(&source).unwrap_or(SupplySource::Correction),
                effective_at: Instant::from_micros(r.try_get(4)?),
                created_at: Instant::from_micros(r.try_get(5)?),
                created_by: r.try_get(6)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        .db()?;
    // What ends inside the period is read off the pool's commitment steps:
    // the step at an allocation's end (or closing) is minus what it
    // committed just before.
    let mut expiring = Vec::new();
    for r in db.query(EXPIRING, &range).await? {
        expiring.push(Expiring {
            allocation_id: AllocationId::from_trusted(r.try_get(0).db()?),
            service_line_id: ServiceLineId::from_trusted(r.try_get(1).db()?),
            ends_at: Instant::from_micros(r.try_get(2).db()?),
            committed: Quantity::from_thousandths(r.try_get(3).db()?),
        });
    }
    Ok(PoolPeriod::new(supply, committed, supply_changes, expiring))
}

pub async fn cost_data(
    db: &Db<'_>,
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
        db,
        scope,
        &filter,
        PageRequest {
            limit: 100,
            after: None,
        },
        now,
    )
    .await?;
    if pools.items.is_empty() {
        return Ok(CostData {
            pools: Vec::new(),
            next: None,
        });
    }
    let until = now.min(period.end);
    // The page: the workspace's allocations by sequence, whichever their pool.
    let f = AllocationFilter {
        workspace_id: Some(ws.clone()),
        ..Default::default()
    };
    let allocs = allocations::list(db, scope, &f, page, now).await?;
    // The page's usage inside the month so far, in one query.
    let ids: Vec<String> = allocs
        .items
        .iter()
        .map(|a| a.id.as_str().to_owned())
        .collect();
    let used: HashMap<String, i64> = if ids.is_empty() {
        HashMap::new()
    } else {
        db.query(
            "SELECT a.id, COALESCE(SUM(u.quantity), 0)::BIGINT \
             FROM usage_records u JOIN allocations a ON a.seq = u.allocation_seq \
             WHERE a.id = ANY($1) AND u.occurred_at >= $2 AND u.occurred_at < $3 GROUP BY a.id",
            &[&ids, &period.start.micros(), &until.micros()],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .db()?
    };
    Ok(CostData::assemble(pools.items, allocs, &used, period))
}
