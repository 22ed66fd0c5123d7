//! Allocations: reads assemble the record from its row, its terms and its
//! usage; writes lock the pool row, then check the no-overcommit rule with
//! the same pure function the SQLite backend calls.

use crate::events::insert_event;
use crate::pools;
use crate::sql::{Db, DbResult, Query, mint_id, text_or_internal};
use capacity_domain::ids::MintedPrefix;
use capacity_domain::model::{
    Allocation, AllocationStatus, HistoryEntry, Resource, Terms, TermsChange, UtilisationWeek,
    below_actual,
};
use capacity_domain::time::MICROS_PER_WEEK;
use capacity_domain::timeline::{Timeline, check_change};
use capacity_domain::{
    AllocationId, Instant, OrgId, Period, PoolId, Quantity, ResourceType, ServiceLineId,
    WorkspaceId,
};
use capacity_store::{
    AllocationFilter, AllocationPatch, NewAllocation, Page, PageRequest, PatchPlan, Scope,
    StoreError, unit_name,
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
    // Last week's usage comes from the weekly rollup, as on SQLite.
    let mut actual: HashMap<i64, i64> = HashMap::new();
    for r in db
        .query(
            "SELECT allocation_seq, quantity FROM usage_weeks \
             WHERE allocation_seq = ANY($1) AND week_start = $2",
            &[&seqs, &week_start.micros()],
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

/// The rows `scope` may see that match `f`, before ordering and paging.
fn filtered(scope: &Scope, f: &AllocationFilter) -> Query {
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
    q
}

/// How many rows a scan that filters on computed values (utilisation)
/// completes per round trip.
const SCAN_CHUNK: u32 = 200;

pub async fn list(
    db: &Db<'_>,
    scope: &Scope,
    f: &AllocationFilter,
    page: PageRequest,
    now: Instant,
) -> Result<Page<Allocation>, StoreError> {
    let Some(below) = f.utilisation_below_tenths else {
        let mut q = filtered(scope, f);
        q.page("a.seq", page.after, page.limit);
        let rows = db
            .query_built(&q)
            .await?
            .iter()
            .map(row)
            .collect::<Result<Vec<_>, _>>()
            .db()?;
        let rows = complete(db, rows, now).await?;
        return Ok(Page::from_rows(rows, page.limit));
    };
    // Utilisation is computed, not stored: walk the rows in order, a chunk
    // per round trip, and keep those below the threshold until the page is
    // full (SQLite walks them one by one; the result is the same).
    let mut kept = Vec::new();
    let mut after = page.after;
    loop {
        let mut q = filtered(scope, f);
        q.page("a.seq", after, SCAN_CHUNK - 1);
        let rows = db
            .query_built(&q)
            .await?
            .iter()
            .map(row)
            .collect::<Result<Vec<_>, _>>()
            .db()?;
        let exhausted = rows.len() < SCAN_CHUNK as usize;
        after = rows.last().map(|r| r.seq);
        for (seq, a) in complete(db, rows, now).await? {
            if a.utilisation_percent().is_some_and(|p| p.tenths() < below) {
                kept.push((seq, a));
                if kept.len() > page.limit as usize {
                    return Ok(Page::from_rows(kept, page.limit));
                }
            }
        }
        if exhausted || after.is_none() {
            return Ok(Page::from_rows(kept, page.limit));
        }
    }
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

/// Replaces an allocation's materialised commitment steps and records the
/// change on its pool (`pools::touch`), keeping the pool's stored running
/// commitment exact. The caller holds the pool row's lock.
pub async fn write_steps(
    db: &Db<'_>,
    pool_seq: i64,
    alloc_seq: i64,
    timeline: &Timeline,
    now: Instant,
) -> Result<(), StoreError> {
    let through = pools::folded_through(db, pool_seq).await?;
    let mut folded_before = 0;
    for r in db
        .query(
            "DELETE FROM commitment_steps WHERE allocation_seq = $1 RETURNING at, delta",
            &[&alloc_seq],
        )
        .await?
    {
        if r.try_get::<_, i64>(0).db()? <= through.micros() {
            folded_before += r.try_get::<_, i64>(1).db()?;
        }
    }
    for &(at, delta) in timeline.steps() {
        db.execute(
            "INSERT INTO commitment_steps (pool_seq, at, allocation_seq, delta) VALUES ($1, $2, $3, $4)",
            &[&pool_seq, &at.micros(), &alloc_seq, &delta],
        )
        .await?;
    }
    pools::touch(
        db,
        pool_seq,
        through,
        timeline.value_at(through) - folded_before,
        now,
    )
    .await
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
    let committed = new
        .committed
        .checked_per_period(pool.period, "committed_per_week")?;
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
    write_steps(db, pool_seq, seq, &change, now).await?;
    let alloc = new.record(
        AllocationId::from_trusted(id),
        &pool,
        starts_at,
        committed,
        now,
    );
    let created =
        serde_json::to_value(alloc.view(now)).map_err(|e| StoreError::Internal(e.to_string()))?;
    write_history(
        db,
        seq,
        "created",
        &scope.token_id,
        None,
        &serde_json::Value::Null,
        &created,
        starts_at,
        now,
    )
    .await?;
    insert_event(
        db,
        "capacity.allocation.created",
        &alloc.organization_id,
        &alloc.workspace_id,
        &created,
        now,
    )
    .await?;
    Ok(alloc)
}

/// Appends one entry to an allocation's history.
#[allow(clippy::too_many_arguments)]
pub async fn write_history(
    db: &Db<'_>,
    alloc_seq: i64,
    action: &str,
    actor: &str,
    reason: Option<&str>,
    before: &serde_json::Value,
    after: &serde_json::Value,
    effective_at: Instant,
    now: Instant,
) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO allocation_history (allocation_seq, action, actor, reason, before, after, effective_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &alloc_seq,
            &action,
            &actor,
            &reason,
            &before.to_string(),
            &after.to_string(),
            &effective_at.micros(),
            &now.micros(),
        ],
    )
    .await?;
    Ok(())
}

async fn replace_terms(db: &Db<'_>, alloc_seq: i64, terms: &[Terms]) -> Result<(), StoreError> {
    db.execute(
        "DELETE FROM allocation_terms WHERE allocation_seq = $1",
        &[&alloc_seq],
    )
    .await?;
    for t in terms {
        let resources =
            serde_json::to_string(&t.resources).map_err(|e| StoreError::Internal(e.to_string()))?;
        db.execute(
            "INSERT INTO allocation_terms (allocation_seq, effective_at, committed, resources, reason) \
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &alloc_seq,
                &t.effective_at.micros(),
                &t.committed.thousandths(),
                &resources,
                &t.reason,
            ],
        )
        .await?;
    }
    Ok(())
}

/// The fields of `terms` a history entry shows.
fn terms_json(t: &Terms, period: Period, change: &TermsChange) -> serde_json::Value {
    let mut v = serde_json::Map::new();
    if change.committed.is_some() {
        v.insert("committed".into(), serde_json::json!(t.committed));
        v.insert(
            "committed_per_week".into(),
            serde_json::json!(period.to_per_week(t.committed)),
        );
    }
    if change.resources.is_some() {
        v.insert("resources".into(), serde_json::json!(t.resources));
    }
    serde_json::Value::Object(v)
}

/// The id of the pool a visible allocation draws on.
async fn pool_of(db: &Db<'_>, scope: &Scope, id: &AllocationId) -> Result<PoolId, StoreError> {
    let mut q = Query::new("SELECT p.id FROM allocations a JOIN pools p ON p.seq = a.pool_seq");
    q.and("a.id = {}", id.as_str().to_owned());
    q.scoped(scope, "a.organization_id", "a.workspace_id");
    let id: String = db
        .query_opt_built(&q)
        .await?
        .ok_or(StoreError::NotFound)?
        .try_get(0)
        .db()?;
    Ok(PoolId::from_trusted(id))
}

pub async fn patch(
    db: &Db<'_>,
    scope: &Scope,
    id: &AllocationId,
    patch: AllocationPatch,
    now: Instant,
) -> Result<Allocation, StoreError> {
    // The pool's lock first, as `create` takes it: every write to the pool's
    // commitments (and so to this allocation) waits for it, so what is read
    // below (the version, the terms, the timelines) stays true until commit.
    let pool_id = pool_of(db, scope, id).await?;
    let pool_seq = pools::lock(db, scope, &pool_id).await?;
    let (seq, old) = load(db, scope, id, now).await?;
    let Some(PatchPlan {
        new,
        change,
        terms_at,
    }) = patch.plan(&old, now)?
    else {
        return Ok(old);
    };
    let terms_changed = new.terms != old.terms;
    let reason = patch.reason.as_deref();

    // The no-overcommit rule judges whatever the patch raises, now or later.
    let (_, pool) = pools::load(db, scope, &old.capacity_pool_id, now).await?;
    let delta = new.commitment_timeline().minus(&old.commitment_timeline());
    if delta.steps().iter().any(|s| s.1 > 0) {
        let supply = pools::supply_timeline(db, pool_seq).await?;
        let before = pools::commitment_timeline(db, pool_seq, now).await?;
        check_change(&supply, pool.overcommit_ratio, &before, &delta, now).map_err(
            |overcommit| StoreError::InsufficientCapacity {
                overcommit,
                unit: unit_name(pool.resource_type),
            },
        )?;
    }

    db.execute(
        "UPDATE allocations SET status = $1, ends_at = $2, closed_at = $3, updated_at = $4, version = version + 1 \
         WHERE seq = $5",
        &[
            &new.status.as_str(),
            &new.ends_at.map(|e| e.micros()),
            &new.closed_at.map(|c| c.micros()),
            &now.micros(),
            &seq,
        ],
    )
    .await?;
    if terms_changed {
        replace_terms(db, seq, &new.terms).await?;
    }
    write_steps(db, pool_seq, seq, &new.commitment_timeline(), now).await?;

    // History: one entry for what applies now, one for what is scheduled.
    let mut before_now = serde_json::Map::new();
    let mut after_now = serde_json::Map::new();
    if new.ends_at != old.ends_at {
        before_now.insert("ends_at".into(), serde_json::json!(old.ends_at));
        after_now.insert("ends_at".into(), serde_json::json!(new.ends_at));
    }
    if new.status != old.status {
        before_now.insert("status".into(), serde_json::json!(old.status));
        after_now.insert("status".into(), serde_json::json!(new.status));
    }
    if terms_changed {
        let before_terms = terms_json(old.current_terms(terms_at), old.period, &change);
        let after_terms = terms_json(new.current_terms(terms_at), old.period, &change);
        if patch.effective_immediately {
            extend(&mut before_now, before_terms);
            extend(&mut after_now, after_terms);
        } else {
            write_history(
                db,
                seq,
                "updated",
                &scope.token_id,
                reason,
                &before_terms,
                &after_terms,
                terms_at,
                now,
            )
            .await?;
        }
    }
    if !after_now.is_empty() {
        let action = if new.status == AllocationStatus::Closed {
            "closed"
        } else {
            "updated"
        };
        write_history(
            db,
            seq,
            action,
            &scope.token_id,
            reason,
            &before_now.into(),
            &after_now.into(),
            now,
            now,
        )
        .await?;
    }

    let updated = new;
    let (org, ws) = (&updated.organization_id, &updated.workspace_id);
    insert_event(
        db,
        "capacity.allocation.updated",
        org,
        ws,
        updated.view(now),
        now,
    )
    .await?;
    if updated.status == AllocationStatus::Closed {
        insert_event(
            db,
            "capacity.allocation.closed",
            org,
            ws,
            updated.view(now),
            now,
        )
        .await?;
    }
    if let Some(c) = change.committed
        && c < old.current_terms(now).committed
        && below_actual(c, old.period, old.actual_last_week)
    {
        insert_event(
            db,
            "capacity.utilisation_warning",
            org,
            ws,
            serde_json::json!({
                "allocation": updated.view(now),
                "committed_per_week": old.period.to_per_week(c),
                "actual_last_week": old.actual_last_week,
                "effective_at": terms_at,
            }),
            now,
        )
        .await?;
    }
    Ok(updated)
}

fn extend(map: &mut serde_json::Map<String, serde_json::Value>, v: serde_json::Value) {
    if let serde_json::Value::Object(o) = v {
        map.extend(o);
    }
}

pub async fn history(
    db: &Db<'_>,
    scope: &Scope,
    id: &AllocationId,
    page: PageRequest,
) -> Result<Page<HistoryEntry>, StoreError> {
    let (seq, a) = load(db, scope, id, Instant::END_OF_TIME).await?;
    let mut q = Query::new(
        "SELECT seq, action, actor, reason, before, after, effective_at, created_at FROM allocation_history",
    );
    q.and("allocation_seq = {}", seq);
    q.page("seq", page.after, page.limit);
    let rows = db
        .query_built(&q)
        .await?
        .iter()
        .map(|r| {
            let before: Option<String> = r.try_get(4)?;
            let after: String = r.try_get(5)?;
            Ok((
                r.try_get::<_, i64>(0)?,
                HistoryEntry {
                    allocation_id: a.id.clone(),
                    action: r.try_get(1)?,
                    actor: r.try_get(2)?,
                    reason: r.try_get(3)?,
                    before: before
                        .and_then(|b| serde_json::from_str(&b).ok())
                        .unwrap_or(serde_json::Value::Null),
                    after: serde_json::from_str(&after).unwrap_or(serde_json::Value::Null),
                    effective_at: Instant::from_micros(r.try_get(6)?),
                    created_at: Instant::from_micros(r.try_get(7)?),
                },
            ))
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        .db()?;
    Ok(Page::from_rows(rows, page.limit))
}

/// What usage ingestion needs to know of an allocation.
pub struct Target {
    pub seq: i64,
    pub pool_seq: i64,
    pub organization_id: String,
    pub closed: bool,
}

/// The allocations usage is recorded against, by id, of those visible to
/// `scope` (one query for a whole batch).
pub async fn usage_targets(
    db: &Db<'_>,
    scope: &Scope,
    ids: Vec<String>,
) -> Result<HashMap<String, Target>, StoreError> {
    let mut q = Query::new("SELECT id, seq, pool_seq, organization_id, status FROM allocations");
    q.and("id = ANY({})", ids);
    q.scoped(scope, "organization_id", "workspace_id");
    db.query_built(&q)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get(0)?,
                Target {
                    seq: r.try_get(1)?,
                    pool_seq: r.try_get(2)?,
                    organization_id: r.try_get(3)?,
                    closed: r.try_get::<_, String>(4)? == "closed",
                },
            ))
        })
        .collect::<Result<HashMap<_, _>, tokio_postgres::Error>>()
        .db()
}

/// The weekly series of the last `weeks` complete ISO weeks, oldest first.
pub async fn utilisation_series(
    db: &Db<'_>,
    scope: &Scope,
    id: &AllocationId,
    weeks: u32,
    now: Instant,
) -> Result<Vec<UtilisationWeek>, StoreError> {
    let (seq, a) = load(db, scope, id, now).await?;
    let timeline = a.commitment_timeline();
    let this_week = now.week_start();
    let first = this_week.plus_micros(-(weeks as i64) * MICROS_PER_WEEK);
    // Every week's rollup in one query.
    let usage: HashMap<i64, i64> = db
        .query(
            "SELECT week_start, quantity FROM usage_weeks \
             WHERE allocation_seq = $1 AND week_start >= $2 AND week_start < $3",
            &[&seq, &first.micros(), &this_week.micros()],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .db()?;
    let mut out = Vec::with_capacity(weeks as usize);
    for i in (1..=weeks as i64).rev() {
        let start = this_week.plus_micros(-i * MICROS_PER_WEEK);
        let end = start.plus_micros(MICROS_PER_WEEK);
        let committed = Quantity::from_thousandths(timeline.peak(start, end));
        let actual = Quantity::from_thousandths(usage.get(&start.micros()).copied().unwrap_or(0));
        out.push(UtilisationWeek {
            week_start: start,
            committed,
            committed_per_week: a.period.to_per_week(committed),
            actual,
            utilisation_percent: capacity_domain::utilisation::weekly_utilisation(
                actual, committed, a.period,
            ),
        });
    }
    Ok(out)
}

/// See `Store::evaluate_low_utilisation`. The `evaluations` row is inserted
/// first, in the same transaction as the events: a second process inserting
/// the same week waits for the first to commit, then finds the row and does
/// nothing (and if the first rolls back, the second evaluates instead).
pub async fn evaluate_low_utilisation(
    db: &Db<'_>,
    week_start: Instant,
    threshold_tenths: i64,
    now: Instant,
) -> Result<Option<usize>, StoreError> {
    let fresh = db
        .execute(
            "INSERT INTO evaluations (kind, period_start, evaluated_at) VALUES ('utilisation_low', $1, $2) \
             ON CONFLICT DO NOTHING",
            &[&week_start.micros(), &now.micros()],
        )
        .await?;
    if fresh == 0 {
        return Ok(None);
    }
    let mut recorded = 0;
    let mut after = None;
    loop {
        let mut q = Query::new(SELECT);
        q.and_raw("a.status = 'active'");
        q.page("a.seq", after, SCAN_CHUNK - 1);
        let rows = db
            .query_built(&q)
            .await?
            .iter()
            .map(row)
            .collect::<Result<Vec<_>, _>>()
            .db()?;
        let exhausted = rows.len() < SCAN_CHUNK as usize;
        after = rows.last().map(|r| r.seq);
        for (_, a) in complete(db, rows, week_start).await? {
            if let Some(p) = a.utilisation_percent()
                && p.tenths() < threshold_tenths
            {
                let data = serde_json::json!({
                    "allocation": a.view(now),
                    "week_start": week_start.plus_micros(-MICROS_PER_WEEK),
                    "utilisation_percent": p,
                    "threshold_percent": capacity_domain::utilisation::Percent::from_tenths(threshold_tenths),
                });
                insert_event(
                    db,
                    "capacity.utilisation_low",
                    &a.organization_id,
                    &a.workspace_id,
                    data,
                    now,
                )
                .await?;
                recorded += 1;
            }
        }
        if exhausted || after.is_none() {
            return Ok(Some(recorded));
        }
    }
}
