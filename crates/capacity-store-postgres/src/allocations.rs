//! Allocations: reads assemble the record from its row, its terms and its
//! usage; writes lock the pool row, then check the no-overcommit rule with
//! the same pure function the SQLite backend calls.

use crate::events::insert_event;
use crate::events::{INSERT as INSERT_EVENT, event_data};
use crate::pools;
use crate::sql::{Batch, Db, DbResult, Piped, Query, id_head, minted_sql, values};
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
use std::sync::LazyLock;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

/// An allocation whole, in one row: its columns, its terms (arrays, in
/// effective order) and the usage rolled up for the week starting at `$1`.
/// One statement, so a read needs no transaction to be consistent.
const SELECT: &str = "SELECT a.seq, a.id, p.id, a.workspace_id, a.organization_id, a.service_line_id, \
    a.resource_type, p.period, a.status, a.starts_at, a.ends_at, a.closed_at, a.created_at, a.updated_at, \
    a.version, (a.status <> 'closed' AND l.status = 'closed'), \
    t.effective_at, t.committed, t.resources, t.reason, \
    (SELECT u.quantity FROM usage_weeks u WHERE u.allocation_seq = a.seq AND u.week_start = $1) \
    FROM allocations a JOIN pools p ON p.seq = a.pool_seq JOIN service_lines l ON l.id = a.service_line_id \
    CROSS JOIN LATERAL (SELECT array_agg(effective_at ORDER BY effective_at) AS effective_at, \
        array_agg(committed ORDER BY effective_at) AS committed, \
        array_agg(resources ORDER BY effective_at) AS resources, \
        array_agg(reason ORDER BY effective_at) AS reason \
        FROM allocation_terms WHERE allocation_seq = a.seq) t";

/// A query on [`SELECT`] for reads at `now` (last week's usage).
fn select(now: Instant) -> Query {
    let mut q = Query::new(SELECT);
    q.bind(now.week_start().plus_micros(-MICROS_PER_WEEK).micros());
    q
}

/// An allocation from a row of [`SELECT`] read at `now`, with its `seq`.
fn row(r: &Row, now: Instant) -> Result<(i64, Allocation), StoreError> {
    let seq: i64 = r.try_get(0).db()?;
    let rt: String = r.try_get(6).db()?;
    let period: String = r.try_get(7).db()?;
    let status: String = r.try_get(8).db()?;
    let parsed = (
        ResourceType::parse(&rt),
        Period::parse(&period),
        AllocationStatus::parse(&status),
    );
    let (Some(resource_type), Some(period), Some(status)) = parsed else {
        return Err(StoreError::Internal(
            "unreadable allocation in the database".into(),
        ));
    };
    let id = AllocationId::from_trusted(r.try_get(1).db()?);
    let effective: Option<Vec<i64>> = r.try_get(16).db()?;
    let committed: Option<Vec<i64>> = r.try_get(17).db()?;
    let resources: Option<Vec<String>> = r.try_get(18).db()?;
    let reasons: Option<Vec<Option<String>>> = r.try_get(19).db()?;
    let terms: Vec<Terms> = match (effective, committed, resources, reasons) {
        (Some(e), Some(c), Some(res), Some(why)) => e
            .into_iter()
            .zip(c)
            .zip(res)
            .zip(why)
            .map(|(((e, c), res), why)| Terms {
                effective_at: Instant::from_micros(e),
                committed: Quantity::from_thousandths(c),
                resources: serde_json::from_str::<Vec<Resource>>(&res).unwrap_or_default(),
                reason: why,
            })
            .collect(),
        _ => Vec::new(),
    };
    if terms.is_empty() {
        return Err(StoreError::Internal(format!(
            "allocation {id} has no terms"
        )));
    }
    let week_end = now.week_start();
    let week_start = week_end.plus_micros(-MICROS_PER_WEEK);
    let mut a = Allocation {
        id,
        capacity_pool_id: PoolId::from_trusted(r.try_get(2).db()?),
        workspace_id: WorkspaceId::from_trusted(r.try_get(3).db()?),
        organization_id: OrgId::from_trusted(r.try_get(4).db()?),
        service_line_id: ServiceLineId::from_trusted(r.try_get(5).db()?),
        resource_type,
        period,
        status,
        starts_at: Instant::from_micros(r.try_get(9).db()?),
        ends_at: r
            .try_get::<_, Option<i64>>(10)
            .db()?
            .map(Instant::from_micros),
        closed_at: r
            .try_get::<_, Option<i64>>(11)
            .db()?
            .map(Instant::from_micros),
        terms,
        actual_last_week: Quantity::from_thousandths(
            r.try_get::<_, Option<i64>>(20).db()?.unwrap_or(0),
        ),
        committed_last_week: Quantity::ZERO,
        orphaned: r.try_get(15).db()?,
        created_at: Instant::from_micros(r.try_get(12).db()?),
        updated_at: Instant::from_micros(r.try_get(13).db()?),
        version: r.try_get(14).db()?,
    };
    a.committed_last_week =
        Quantity::from_thousandths(a.commitment_timeline().peak(week_start, week_end));
    Ok((seq, a))
}

fn rows(rs: &[Row], now: Instant) -> Result<Vec<(i64, Allocation)>, StoreError> {
    rs.iter().map(|r| row(r, now)).collect()
}

/// A visible allocation and its `seq`, in one statement.
pub async fn load(
    db: &Db<'_>,
    scope: &Scope,
    id: &AllocationId,
    now: Instant,
) -> Result<(i64, Allocation), StoreError> {
    let mut q = select(now);
    q.and("a.id = {}", id.as_str().to_owned());
    q.scoped(scope, "a.organization_id", "a.workspace_id");
    match db.query_opt_built(&q).await? {
        Some(r) => row(&r, now),
        None => Err(StoreError::NotFound),
    }
}

/// The rows `scope` may see that match `f`, before ordering and paging.
fn filtered(scope: &Scope, f: &AllocationFilter, now: Instant) -> Query {
    let mut q = select(now);
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
        let mut q = filtered(scope, f, now);
        q.page("a.seq", page.after, page.limit);
        let rows = rows(&db.query_built(&q).await?, now)?;
        return Ok(Page::from_rows(rows, page.limit));
    };
    // Utilisation is computed, not stored: walk the rows in order, a chunk
    // per round trip, and keep those below the threshold until the page is
    // full (SQLite walks them one by one; the result is the same).
    let mut kept = Vec::new();
    let mut after = page.after;
    loop {
        let mut q = filtered(scope, f, now);
        q.page("a.seq", after, SCAN_CHUNK - 1);
        let rows = rows(&db.query_built(&q).await?, now)?;
        let exhausted = rows.len() < SCAN_CHUNK as usize;
        after = rows.last().map(|r| r.0);
        for (seq, a) in rows {
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

/// The lock statement for a pool by id (see `pools::lock`).
fn lock_query(scope: &Scope, id: &PoolId) -> Query {
    let mut q = Query::new("SELECT p.seq FROM pools p");
    q.and("p.id = {}", id.as_str().to_owned());
    q.scoped(scope, "p.organization_id", "p.workspace_id");
    q.push(" FOR NO KEY UPDATE");
    q
}

/// A create in two round trips:
/// 1. BEGIN, the pool's lock, the service line's share lock, then the pool's
///    state (read once the lock is held: its own statement, its own
///    snapshot), pipelined;
/// 2. the rules, in Rust; then every write and COMMIT, pipelined. The
///    allocation's number is taken by the first insert (`nextval`) and
///    reused by the others (`currval`, this connection's last), so no
///    number is taken before the rules have passed.
pub async fn create(
    db: &Db<'_>,
    scope: &Scope,
    new: NewAllocation,
    now: Instant,
) -> Result<Allocation, StoreError> {
    let new_ends = new.ends_at;
    let lock = lock_query(scope, &new.capacity_pool_id);
    let mut read = Query::new(pools::SELECT_STATE);
    read.bind(now.micros());
    read.and("p.id = {}", new.capacity_pool_id.as_str().to_owned());
    read.scoped(scope, "p.organization_id", "p.workspace_id");
    let (lock_params, read_params) = (lock.refs(), read.refs());
    let line_key = new.service_line_id.as_str().to_owned();
    let mut answers = db
        .pipeline(&[
            (&lock.sql, &lock_params),
            (
                "SELECT workspace_id, status FROM service_lines WHERE id = $1 FOR SHARE",
                &[&line_key],
            ),
            (&read.sql, &read_params),
        ])
        .await?
        .into_iter();
    let (Some(locked), Some(line), Some(state)) = (answers.next(), answers.next(), answers.next())
    else {
        return Err(StoreError::Internal(
            "a pipeline answered too little".into(),
        ));
    };
    let (Some(_), Some(state)) = (locked.first(), state.first()) else {
        return Err(StoreError::NotFound);
    };
    let state = pools::State::from_row(state, now)?;
    let pool = &state.pool;
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
    // The service line: registered on first sight; one of another workspace,
    // or closed, is refused. An existing line is share-locked until commit
    // (above), so it cannot be closed under an allocation being made for it.
    // Two transactions registering the same new line race on its primary
    // key; the loser is run again by the store and then finds the line.
    let new_line = match line.first() {
        Some(r) => {
            let (w, status): (String, String) = (r.try_get(0).db()?, r.try_get(1).db()?);
            check_line(&new.service_line_id, &pool.workspace_id, &w, &status)?;
            false
        }
        None => true,
    };

    let terms = [(starts_at, committed)];
    let change = capacity_domain::timeline::CommitmentSchedule {
        starts_at,
        ends_at: new.ends_at,
        closed_at: None,
        terms: &terms,
    }
    .timeline();
    check_change(
        &state.supply,
        pool.overcommit_ratio,
        &state.committed,
        &change,
        now,
    )
    .map_err(|overcommit| StoreError::InsufficientCapacity {
        overcommit,
        unit: unit_name(pool.resource_type),
    })?;

    // The record and its JSON are built with the id left empty; the
    // statements put the minted id in (the view's first field).
    let alloc = new.record(
        AllocationId::from_trusted(String::new()),
        pool,
        starts_at,
        committed,
        now,
    );
    let created =
        serde_json::to_value(alloc.view(now)).map_err(|e| StoreError::Internal(e.to_string()))?;
    let created = created.to_string();
    let Some(rest) = created.strip_prefix(r#"{"id":"""#) else {
        return Err(StoreError::Internal(
            "an allocation's JSON does not open with its id".into(),
        ));
    };
    let event_rest = format!("{rest}}}");
    let resources = serde_json::to_string(&alloc.terms[0].resources)
        .map_err(|e| StoreError::Internal(e.to_string()))?;
    let (base, through) = state.folded_after(&change, now);
    let (ats, deltas): (Vec<i64>, Vec<i64>) = change
        .steps()
        .iter()
        .map(|&(at, d)| (at.micros(), d))
        .unzip();
    let alloc_head = id_head(MintedPrefix::Allocation, now);
    let event_head = id_head(MintedPrefix::Event, now);
    let (ws, org) = (pool.workspace_id.as_str(), pool.organization_id.as_str());
    let line_id = alloc.service_line_id.as_str();
    let ends = new_ends.map(|e| e.micros());
    let (now_us, starts_us, through_us) = (now.micros(), starts_at.micros(), through.micros());
    let rt = pool.resource_type.as_str();
    let token = scope.token_id.as_str();
    let kind = "capacity.allocation.created";
    let committed_th = committed.thousandths();
    let line_params: [&(dyn ToSql + Sync); 4] = [&line_id, &ws, &org, &now_us];
    let alloc_params: [&(dyn ToSql + Sync); 9] = [
        &alloc_head,
        &state.seq,
        &ws,
        &org,
        &line_id,
        &rt,
        &starts_us,
        &ends,
        &now_us,
    ];
    let terms_params: [&(dyn ToSql + Sync); 3] = [&starts_us, &committed_th, &resources];
    let steps_params: [&(dyn ToSql + Sync); 3] = [&state.seq, &ats, &deltas];
    let pool_params: [&(dyn ToSql + Sync); 4] = [&base, &through_us, &now_us, &state.seq];
    let history_params: [&(dyn ToSql + Sync); 4] = [&token, &rest, &starts_us, &now_us];
    let event_params: [&(dyn ToSql + Sync); 6] =
        [&event_head, &org, &ws, &kind, &event_rest, &now_us];
    let mut writes: Vec<Piped<'_>> = Vec::with_capacity(7);
    if new_line {
        writes.push((
            "INSERT INTO service_lines (id, workspace_id, organization_id, status, created_at, updated_at) \
             VALUES ($1, $2, $3, 'active', $4, $4)",
            &line_params,
        ));
    }
    let id_rows_at = writes.len();
    writes.extend_from_slice(&[
        (&*INSERT_ALLOCATION, &alloc_params),
        (
            "INSERT INTO allocation_terms (allocation_seq, effective_at, committed, resources, reason) \
             VALUES (currval('ids_alloc'), $1, $2, $3, NULL)",
            &terms_params,
        ),
        (
            "INSERT INTO commitment_steps (pool_seq, at, allocation_seq, delta) \
             SELECT $1, u.at, currval('ids_alloc'), u.d FROM unnest($2::BIGINT[], $3::BIGINT[]) AS u(at, d)",
            &steps_params,
        ),
        (pools::SET_FOLDED, &pool_params),
        (
            "INSERT INTO allocation_history (allocation_seq, action, actor, reason, before, after, effective_at, created_at) \
             SELECT seq, 'created', $1, NULL, 'null', '{\"id\":\"' || id || '\"' || $2, $3, $4 \
             FROM allocations WHERE seq = currval('ids_alloc')",
            &history_params,
        ),
        (&*INSERT_EVENT_FOR_ALLOCATION, &event_params),
    ]);
    let answers = db.pipeline_commit(&writes).await?;
    let id: String = answers
        .get(id_rows_at)
        .and_then(|rows| rows.first())
        .ok_or_else(|| StoreError::Internal("the insert answered no id".into()))?
        .try_get(0)
        .db()?;
    let mut alloc = alloc;
    alloc.id = AllocationId::from_trusted(id);
    Ok(alloc)
}

/// `$1` the id's head (`ALLOC-26-`), then pool_seq, workspace, organization,
/// service line, resource type, starts_at, ends_at, now. Answers the id.
static INSERT_ALLOCATION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO allocations (seq, id, pool_seq, workspace_id, organization_id, service_line_id, resource_type, \
         status, starts_at, ends_at, closed_at, created_at, updated_at, version) \
         SELECT n, {}, $2, $3, $4, $5, $6, 'active', $7, $8, NULL, $9, $9, 1 \
         FROM (SELECT nextval('ids_alloc') AS n) s RETURNING id",
        minted_sql("$1", "n")
    )
});

/// An event whose data is `{"object":` + the allocation just inserted (its
/// id from `currval`) + `$5`: `$1` the event id's head, then organization,
/// workspace, type, the data after the id, created_at.
static INSERT_EVENT_FOR_ALLOCATION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO events (seq, id, organization_id, workspace_id, type, data, created_at) \
         SELECT n, {}, $2, $3, $4, '{{\"object\":{{\"id\":\"' || a.id || '\"' || $5, $6 \
         FROM (SELECT nextval('ids_evt') AS n) s, allocations a WHERE a.seq = currval('ids_alloc')",
        minted_sql("$1", "n")
    )
});

/// Refuses a service line of another workspace, or a closed one.
fn check_line(
    line: &ServiceLineId,
    ws: &WorkspaceId,
    line_ws: &str,
    status: &str,
) -> Result<(), StoreError> {
    if line_ws != ws.as_str() {
        return Err(StoreError::conflict(
            "service_line_workspace_mismatch",
            format!("service line {line} belongs to another workspace"),
        ));
    }
    if status == "closed" {
        return Err(StoreError::conflict(
            "service_line_closed",
            format!("service line {line} is closed"),
        ));
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

/// A PATCH in two round trips, as `create`: BEGIN, the lock of the
/// allocation's pool, then (under it) the allocation, the pool's state and
/// the allocation's materialised steps; then the rules, in Rust; then every
/// write (and COMMIT, when `commit`: a PATCH made by a service-line close
/// runs inside that transaction and does not end it).
pub async fn patch(
    db: &Db<'_>,
    scope: &Scope,
    id: &AllocationId,
    patch: AllocationPatch,
    now: Instant,
    commit: bool,
) -> Result<Allocation, StoreError> {
    // The pool's lock first, as `create` takes it: every write to the pool's
    // commitments (and so to this allocation) waits for it, so what is read
    // after it (the version, the terms, the timelines) stays true until
    // commit. An allocation never moves to another pool.
    let mut lock =
        Query::new("SELECT p.seq FROM pools p WHERE p.seq = (SELECT a.pool_seq FROM allocations a");
    lock.and("a.id = {}", id.as_str().to_owned());
    lock.scoped(scope, "a.organization_id", "a.workspace_id");
    lock.push(") FOR NO KEY UPDATE");
    let mut alloc = select(now);
    alloc.and("a.id = {}", id.as_str().to_owned());
    alloc.scoped(scope, "a.organization_id", "a.workspace_id");
    let mut state = Query::new(pools::SELECT_STATE);
    state.bind(now.micros());
    state.and(
        "p.seq = (SELECT pool_seq FROM allocations WHERE id = {})",
        id.as_str().to_owned(),
    );
    let key = id.as_str().to_owned();
    let (lock_p, alloc_p, state_p) = (lock.refs(), alloc.refs(), state.refs());
    let mut answers = db
        .pipeline(&[
            (&lock.sql, &lock_p),
            (&alloc.sql, &alloc_p),
            (&state.sql, &state_p),
            (
                "SELECT c.at, c.delta FROM commitment_steps c JOIN allocations a ON a.seq = c.allocation_seq \
                 WHERE a.id = $1",
                &[&key],
            ),
        ])
        .await?
        .into_iter();
    let (Some(locked), Some(alloc), Some(state), Some(old_steps)) = (
        answers.next(),
        answers.next(),
        answers.next(),
        answers.next(),
    ) else {
        return Err(StoreError::Internal(
            "a pipeline answered too little".into(),
        ));
    };
    let (Some(_), Some(alloc), Some(state)) = (locked.first(), alloc.first(), state.first()) else {
        return Err(StoreError::NotFound);
    };
    let (seq, old) = row(alloc, now)?;
    let state = pools::State::from_row(state, now)?;
    let old_steps = Timeline::from_steps(
        old_steps
            .iter()
            .map(|r| Ok((Instant::from_micros(r.try_get(0)?), r.try_get::<_, i64>(1)?)))
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()
            .db()?,
    );
    let Some(PatchPlan {
        new,
        change,
        terms_at,
    }) = patch.plan(&old, now)?
    else {
        return Ok(old);
    };
    let terms_changed = new.terms != old.terms;
    let reason = patch.reason.clone();

    // The no-overcommit rule judges whatever the patch raises, now or later.
    let pool = &state.pool;
    let new_timeline = new.commitment_timeline();
    let delta = new_timeline.minus(&old.commitment_timeline());
    if delta.steps().iter().any(|s| s.1 > 0) {
        check_change(
            &state.supply,
            pool.overcommit_ratio,
            &state.committed,
            &delta,
            now,
        )
        .map_err(|overcommit| StoreError::InsufficientCapacity {
            overcommit,
            unit: unit_name(pool.resource_type),
        })?;
    }

    let mut batch = Batch::default();
    batch.push(
        "UPDATE allocations SET status = $1, ends_at = $2, closed_at = $3, updated_at = $4, version = version + 1 \
         WHERE seq = $5",
        values![
            new.status.as_str(),
            new.ends_at.map(|e| e.micros()),
            new.closed_at.map(|c| c.micros()),
            now.micros(),
            seq,
        ],
    );
    if terms_changed {
        let mut cols = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for t in &new.terms {
            cols.0.push(t.effective_at.micros());
            cols.1.push(t.committed.thousandths());
            cols.2.push(
                serde_json::to_string(&t.resources)
                    .map_err(|e| StoreError::Internal(e.to_string()))?,
            );
            cols.3.push(t.reason.clone());
        }
        batch.push(
            "DELETE FROM allocation_terms WHERE allocation_seq = $1",
            values![seq],
        );
        batch.push(
            "INSERT INTO allocation_terms (allocation_seq, effective_at, committed, resources, reason) \
             SELECT $1, u.e, u.c, u.r, u.why \
             FROM unnest($2::BIGINT[], $3::BIGINT[], $4::TEXT[], $5::TEXT[]) AS u(e, c, r, why)",
            values![seq, cols.0, cols.1, cols.2, cols.3],
        );
    }
    // The materialised steps, and the pool's stored commitment and
    // generation (see `pools::State::folded_after`).
    let (ats, deltas): (Vec<i64>, Vec<i64>) = new_timeline
        .steps()
        .iter()
        .map(|&(at, d)| (at.micros(), d))
        .unzip();
    batch.push(
        "DELETE FROM commitment_steps WHERE allocation_seq = $1",
        values![seq],
    );
    batch.push(
        "INSERT INTO commitment_steps (pool_seq, at, allocation_seq, delta) \
         SELECT $1, u.at, $2, u.d FROM unnest($3::BIGINT[], $4::BIGINT[]) AS u(at, d)",
        values![state.seq, seq, ats, deltas],
    );
    let (base, through) = state.folded_after(&new_timeline.minus(&old_steps), now);
    batch.push(
        pools::SET_FOLDED,
        values![base, through.micros(), now.micros(), state.seq],
    );

    // History: one entry for what applies now, one for what is scheduled.
    let mut history = |action: &'static str,
                       before: serde_json::Value,
                       after: serde_json::Value,
                       effective_at: Instant| {
        batch.push(
            "INSERT INTO allocation_history (allocation_seq, action, actor, reason, before, after, effective_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            values![
                seq,
                action,
                scope.token_id.clone(),
                reason.clone(),
                before.to_string(),
                after.to_string(),
                effective_at.micros(),
                now.micros(),
            ],
        );
    };
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
            history("updated", before_terms, after_terms, terms_at);
        }
    }
    if !after_now.is_empty() {
        let action = if new.status == AllocationStatus::Closed {
            "closed"
        } else {
            "updated"
        };
        history(action, before_now.into(), after_now.into(), now);
    }

    let updated = new;
    let mut event = |kind: &'static str, data: String| {
        batch.push(
            &*INSERT_EVENT,
            values![
                id_head(MintedPrefix::Event, now),
                updated.organization_id.as_str().to_owned(),
                updated.workspace_id.as_str().to_owned(),
                kind,
                data,
                now.micros(),
            ],
        );
    };
    let view = event_data(updated.view(now));
    if updated.status == AllocationStatus::Closed {
        event("capacity.allocation.updated", view.clone());
        event("capacity.allocation.closed", view);
    } else {
        event("capacity.allocation.updated", view);
    }
    if let Some(c) = change.committed
        && c < old.current_terms(now).committed
        && below_actual(c, old.period, old.actual_last_week)
    {
        event(
            "capacity.utilisation_warning",
            event_data(serde_json::json!({
                "allocation": updated.view(now),
                "committed_per_week": old.period.to_per_week(c),
                "actual_last_week": old.actual_last_week,
                "effective_at": terms_at,
            })),
        );
    }
    batch.send(db, commit).await?;
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
        let mut q = select(week_start);
        q.and_raw("a.status = 'active'");
        q.page("a.seq", after, SCAN_CHUNK - 1);
        let rows = rows(&db.query_built(&q).await?, week_start)?;
        let exhausted = rows.len() < SCAN_CHUNK as usize;
        after = rows.last().map(|r| r.0);
        for (_, a) in rows {
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
