//! Allocations: reads assemble the record from its row, its terms and its
//! usage; writes lock the pool row, then check the no-overcommit rule with
//! the same pure function the SQLite backend calls.

use crate::events::event_data;
use crate::events::insert_event;
use crate::pools;
use crate::sql::{Batch, Db, DbResult, Query, id_head, minted_sql, values};
use capacity_domain::ids::MintedPrefix;
use capacity_domain::model::{
    Allocation, AllocationStatus, HistoryEntry, Terms, UtilisationWeek, below_actual,
};
use capacity_domain::time::MICROS_PER_WEEK;
use capacity_domain::timeline::{Timeline, check_change};
use capacity_domain::{
    AllocationId, Instant, OrgId, Period, PoolId, Quantity, ResourceType, ServiceLineId,
    WorkspaceId,
};
use capacity_store::{
    AllocationFilter, AllocationPatch, LineRegistration, NewAllocation, Page, PageRequest,
    PatchPlan, Scope, StoreError, UsageTarget, unit_name,
};
use std::collections::HashMap;
use std::sync::LazyLock;
use tokio_postgres::Row;

/// An allocation whole, in one row: its columns, its terms (arrays, in one
/// order, put in effective order by [`row`]: an aggregate's own ORDER BY
/// costs a sort set up per aggregate, at every execution) and the usage
/// rolled up for the week starting at `$1`.
/// One statement, so a read needs no transaction to be consistent.
const SELECT: &str = "SELECT a.seq, a.id, p.id, a.workspace_id, a.organization_id, a.service_line_id, \
    a.resource_type, p.period, a.status, a.starts_at, a.ends_at, a.closed_at, a.created_at, a.updated_at, \
    a.version, (a.status <> 'closed' AND l.status = 'closed'), \
    t.effective_at, t.committed, t.resources, t.reason, \
    (SELECT u.quantity FROM usage_weeks u WHERE u.allocation_seq = a.seq AND u.week_start = $1) \
    FROM allocations a JOIN pools p ON p.seq = a.pool_seq JOIN service_lines l ON l.id = a.service_line_id \
    CROSS JOIN LATERAL (SELECT array_agg(effective_at) AS effective_at, array_agg(committed) AS committed, \
        array_agg(resources) AS resources, array_agg(reason) AS reason \
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
    let mut terms: Vec<Terms> = match (effective, committed, resources, reasons) {
        (Some(e), Some(c), Some(res), Some(why)) => e
            .into_iter()
            .zip(c)
            .zip(res)
            .zip(why)
            .map(|(((e, c), res), why)| {
                Ok(Terms {
                    effective_at: Instant::from_micros(e),
                    committed: Quantity::from_thousandths(c),
                    resources: capacity_store::decode_resources(&res)?,
                    reason: why,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?,
        _ => Vec::new(),
    };
    if terms.is_empty() {
        return Err(StoreError::Internal(format!(
            "allocation {id} has no terms"
        )));
    }
    terms.sort_by_key(|t| t.effective_at);
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

/// A read of one allocation waiting to be made, with its caller's scope.
#[derive(Clone)]
pub struct GetRequest {
    pub scope: Scope,
    pub id: AllocationId,
}

/// Reads a batch of allocations in one statement (concurrent GETs read
/// together: one execution, one round trip); answers each request's
/// allocation if its caller may see it, in order. An `Err` of the whole is
/// a database failure, or an unreadable row.
pub async fn load_batch(
    db: &Db<'_>,
    requests: &[GetRequest],
    now: Instant,
) -> Result<Vec<Result<Allocation, StoreError>>, StoreError> {
    let ids: Vec<String> = requests.iter().map(|r| r.id.as_str().to_owned()).collect();
    let mut q = select(now);
    q.and("a.id = ANY({})", ids);
    let mut found: HashMap<String, Allocation> = HashMap::new();
    for r in db.query_built(&q).await? {
        let (_, a) = row(&r, now)?;
        found.insert(a.id.as_str().to_owned(), a);
    }
    Ok(requests
        .iter()
        .map(|req| {
            found
                .get(req.id.as_str())
                .filter(|a| req.scope.sees(&a.organization_id, &a.workspace_id))
                .cloned()
                .ok_or(StoreError::NotFound)
        })
        .collect())
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
    let most = page.limit as usize * capacity_store::UTILISATION_SCAN_PER_ITEM;
    let mut looked = 0;
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
            looked += 1;
            if looked == most {
                // Looked at enough (as SQLite counts): what was found, and
                // go on after this one.
                return Ok(Page {
                    items: kept.into_iter().map(|r| r.1).collect(),
                    next: Some(seq),
                });
            }
        }
        if exhausted || after.is_none() {
            return Ok(Page::from_rows(kept, page.limit));
        }
    }
}

/// A create waiting to be made, with its caller's scope.
#[derive(Clone)]
pub struct CreateRequest {
    pub scope: Scope,
    pub new: NewAllocation,
}

/// The first two answers of a pipeline of two statements.
fn two(answers: &[Vec<Row>]) -> Result<[&[Row]; 2], StoreError> {
    match answers {
        [a, b, ..] => Ok([a.as_slice(), b.as_slice()]),
        _ => Err(StoreError::Internal(
            "a pipeline answered too little".into(),
        )),
    }
}

/// Each locked pool row (`pools::LOCKED_COLUMNS`) with its timelines, by id.
async fn locked_states(
    db: &Db<'_>,
    rows: &[Row],
    now: Instant,
    cache: &pools::TimelineCache,
) -> Result<HashMap<String, pools::State>, StoreError> {
    let mut states = HashMap::new();
    for r in rows {
        let locked = pools::Locked::from_row(r)?;
        let id = locked.pool.id.as_str().to_owned();
        states.insert(id, pools::state(db, locked, now, cache).await?);
    }
    Ok(states)
}

/// The pool rows a batch changed, as the columns its statement writes them
/// from: sequence number, stored commitment, fold point, generation increment.
type PoolColumns = (Vec<i64>, Vec<i64>, Vec<i64>, Vec<i64>);

fn changed_pools(states: &HashMap<String, pools::State>) -> PoolColumns {
    let mut cols = PoolColumns::default();
    for st in states.values() {
        let (base, through, writes) = st.row_after();
        if writes > 0 {
            cols.0.push(st.seq);
            cols.1.push(base);
            cols.2.push(through.micros());
            cols.3.push(writes);
        }
    }
    cols
}

/// Makes a batch of creates in one transaction (group commit: one BEGIN,
/// one COMMIT and its WAL flush for all of them), in four statements
/// whatever their number:
/// 1. BEGIN, the locks and rows of every pool named (in `seq` order), then
///    the share locks and rows of every service line named (in id order:
///    pools before lines, as a service-line close takes them), pipelined.
///    Each pool's timelines come from the cache at its row's generation
///    (else one more statement per pool reads them, under its lock: see
///    `pools::TimelineCache`);
/// 2. the rules, in Rust, request after request, each judged against the
///    pool as the ones before it in the batch left it (`pools::State::apply`);
///    then every accepted create written in one statement, and COMMIT,
///    pipelined. Numbers are taken by that statement, for accepted creates
///    only: a refused create takes none.
///
/// Answers each request's outcome, in order; an `Err` of the whole is a
/// database failure (the store runs the batch again, or answers it to all).
pub async fn create_batch(
    db: &Db<'_>,
    requests: &[CreateRequest],
    now: Instant,
    cache: &pools::TimelineCache,
) -> Result<Vec<Result<Allocation, StoreError>>, StoreError> {
    let mut pool_ids: Vec<String> = requests
        .iter()
        .map(|r| r.new.capacity_pool_id.as_str().to_owned())
        .collect();
    pool_ids.sort();
    pool_ids.dedup();
    let mut line_ids: Vec<String> = requests
        .iter()
        .map(|r| r.new.service_line_id.as_str().to_owned())
        .collect();
    line_ids.sort();
    line_ids.dedup();
    let lock_pools = format!(
        "SELECT {} FROM pools p WHERE p.id = ANY($1) ORDER BY p.seq FOR NO KEY UPDATE",
        pools::LOCKED_COLUMNS
    );
    let answers = db
        .pipeline(&[
            (&lock_pools, &[&pool_ids]),
            (
                "SELECT id, workspace_id, organization_id, status FROM service_lines \
                 WHERE id = ANY($1) ORDER BY id FOR SHARE",
                &[&line_ids],
            ),
        ])
        .await?;
    let [pool_rows, line_rows] = two(&answers)?;
    let mut states = locked_states(db, pool_rows, now, cache).await?;
    // Lines as they stand, and as the batch registers them.
    let mut lines: HashMap<String, LineRegistration> = HashMap::new();
    for r in line_rows {
        lines.insert(
            r.try_get(0).db()?,
            crate::service_lines::line_registration(r, 1)?,
        );
    }

    let mut outcomes: Vec<Result<Allocation, StoreError>> = Vec::with_capacity(requests.len());
    let mut w = Writes::default();
    for req in requests {
        let outcome = judge(req, now, &mut states, &mut lines, &mut w);
        outcomes.push(outcome);
    }
    if w.pool_seq.is_empty() {
        return Ok(outcomes);
    }
    let (p_seq, p_base, p_through, p_bump) = changed_pools(&states);
    let count = w.pool_seq.len() as i64;
    let mut batch = Batch::default();
    batch.push(
        &*INSERT_CREATED,
        values![
            count,
            id_head(MintedPrefix::Allocation, now),
            id_head(MintedPrefix::Event, now),
            now.micros(),
            w.pool_seq,
            w.ws,
            w.org,
            w.line,
            w.rt,
            w.starts,
            w.ends,
            w.committed,
            w.resources,
            w.actor,
            w.rest,
            w.line_id,
            w.line_ws,
            w.line_org,
            w.step_o,
            w.step_at,
            w.step_d,
            p_seq,
            p_base,
            p_through,
            p_bump,
        ],
    );
    let answers = batch.send(db, true).await?;
    for st in states.values() {
        st.committed(cache);
    }
    let mut ids: HashMap<i64, String> = HashMap::new();
    for r in answers.first().map(Vec::as_slice).unwrap_or_default() {
        ids.insert(r.try_get(0).db()?, r.try_get(1).db()?);
    }
    // The accepted creates, in order, are ordinals 1..=count.
    let mut ordinal = 0;
    for alloc in outcomes.iter_mut().flatten() {
        ordinal += 1;
        let id = ids
            .remove(&ordinal)
            .ok_or_else(|| StoreError::Internal("the insert answered too few ids".into()))?;
        alloc.id = AllocationId::from_trusted(id);
    }
    Ok(outcomes)
}

/// The columns of a batch's accepted creates (and the lines it registers,
/// and the commitment steps of each create by its ordinal).
#[derive(Default)]
struct Writes {
    pool_seq: Vec<i64>,
    ws: Vec<String>,
    org: Vec<String>,
    line: Vec<String>,
    rt: Vec<String>,
    starts: Vec<i64>,
    ends: Vec<Option<i64>>,
    committed: Vec<i64>,
    resources: Vec<String>,
    actor: Vec<String>,
    /// The record's JSON after its id (the view's first field).
    rest: Vec<String>,
    line_id: Vec<String>,
    line_ws: Vec<String>,
    line_org: Vec<String>,
    step_o: Vec<i64>,
    step_at: Vec<i64>,
    step_d: Vec<i64>,
}

/// One create of a batch: its rules, against the pool as the batch left it;
/// when accepted, its writes are added to `w` and the record answered (its
/// id is filled in once written).
fn judge(
    req: &CreateRequest,
    now: Instant,
    states: &mut HashMap<String, pools::State>,
    lines: &mut HashMap<String, LineRegistration>,
    w: &mut Writes,
) -> Result<Allocation, StoreError> {
    let new = &req.new;
    let state = states
        .get_mut(new.capacity_pool_id.as_str())
        .filter(|st| {
            req.scope
                .sees(&st.pool.organization_id, &st.pool.workspace_id)
        })
        .ok_or(StoreError::NotFound)?;
    let pool = state.pool.clone();
    // The service line is share-locked until commit (the batch's query), so
    // it cannot be closed under an allocation being made for it. Two
    // transactions registering the same new line race on its primary key;
    // the loser is run again by the store and then finds the line.
    let line_id = new.service_line_id.as_str();
    let capacity_store::CreatePlan {
        starts_at,
        committed,
        change,
        registers_line: new_line,
    } = new.plan(
        &req.scope,
        &pool,
        &state.supply,
        &state.committed,
        lines.get(line_id),
        now,
    )?;

    // Accepted. The record and its JSON are built with the id left empty;
    // the statement puts the minted id in (the view's first field).
    let alloc = new.clone().record(
        AllocationId::from_trusted(String::new()),
        &pool,
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
    let resources = serde_json::to_string(&alloc.terms[0].resources)
        .map_err(|e| StoreError::Internal(e.to_string()))?;
    state.apply(&change, now);
    if new_line {
        lines.insert(
            line_id.to_owned(),
            LineRegistration {
                workspace_id: pool.workspace_id.clone(),
                organization_id: pool.organization_id.clone(),
                status: capacity_domain::model::ServiceLineStatus::Active,
            },
        );
        w.line_id.push(line_id.to_owned());
        w.line_ws.push(pool.workspace_id.as_str().to_owned());
        w.line_org.push(pool.organization_id.as_str().to_owned());
    }
    w.pool_seq.push(state.seq);
    let ordinal = w.pool_seq.len() as i64;
    w.ws.push(pool.workspace_id.as_str().to_owned());
    w.org.push(pool.organization_id.as_str().to_owned());
    w.line.push(line_id.to_owned());
    w.rt.push(pool.resource_type.as_str().to_owned());
    w.starts.push(starts_at.micros());
    w.ends.push(new.ends_at.map(|e| e.micros()));
    w.committed.push(committed.thousandths());
    w.resources.push(resources);
    w.actor.push(req.scope.token_id.clone());
    w.rest.push(rest.to_owned());
    for &(at, d) in change.steps() {
        w.step_o.push(ordinal);
        w.step_at.push(at.micros());
        w.step_d.push(d);
    }
    Ok(alloc)
}

/// Every write of a batch of creates, in one statement. `$1` how many, `$2`
/// the allocation id's head (`ALLOC-26-`), `$3` the event id's head, `$4`
/// now; per create (arrays, by ordinal): `$5` pool_seq, `$6` workspace, `$7`
/// organization, `$8` service line, `$9` resource type, `$10` starts_at,
/// `$11` ends_at, `$12` committed, `$13` resources, `$14` actor, `$15` the
/// record's JSON after its id; the lines registered: `$16`–`$18` (id,
/// workspace, organization); the commitment steps: `$19`–`$21` (ordinal,
/// at, delta); the pools: `$22`–`$25` (seq, stored commitment, fold point,
/// generation increment: `pools::State::row_after`). Numbers are taken in
/// ordinal order. (Foreign keys are checked at the end of the statement,
/// when the lines and the allocations are in.) Answers (ordinal, id).
static INSERT_CREATED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH ids AS MATERIALIZED (SELECT o, n, {} AS id FROM \
             (SELECT o, nextval('ids_alloc') AS n FROM generate_series(1, $1::BIGINT) AS o) x), \
         evs AS MATERIALIZED (SELECT o, n, {} AS id FROM \
             (SELECT o, nextval('ids_evt') AS n FROM generate_series(1, $1::BIGINT) AS o) x), \
         r AS MATERIALIZED (SELECT * FROM unnest($5::BIGINT[], $6::TEXT[], $7::TEXT[], $8::TEXT[], \
             $9::TEXT[], $10::BIGINT[], $11::BIGINT[], $12::BIGINT[], $13::TEXT[], $14::TEXT[], $15::TEXT[]) \
             WITH ORDINALITY AS r(pool_seq, ws, org, line, rt, starts, ends, committed, resources, actor, rest, o)), \
         line AS (INSERT INTO service_lines (id, workspace_id, organization_id, status, created_at, updated_at) \
             SELECT l.id, l.ws, l.org, 'active', $4, $4 \
             FROM unnest($16::TEXT[], $17::TEXT[], $18::TEXT[]) AS l(id, ws, org)), \
         a AS (INSERT INTO allocations (seq, id, pool_seq, workspace_id, organization_id, service_line_id, \
             resource_type, status, starts_at, ends_at, closed_at, created_at, updated_at, version) \
             SELECT ids.n, ids.id, r.pool_seq, r.ws, r.org, r.line, r.rt, 'active', r.starts, r.ends, NULL, \
             $4, $4, 1 FROM r JOIN ids ON ids.o = r.o ORDER BY r.o), \
         t AS (INSERT INTO allocation_terms (allocation_seq, effective_at, committed, resources, reason) \
             SELECT ids.n, r.starts, r.committed, r.resources, NULL FROM r JOIN ids ON ids.o = r.o), \
         c AS (INSERT INTO commitment_steps (pool_seq, at, allocation_seq, delta) \
             SELECT r.pool_seq, s.at, ids.n, s.d \
             FROM unnest($19::BIGINT[], $20::BIGINT[], $21::BIGINT[]) AS s(o, at, d) \
             JOIN r ON r.o = s.o JOIN ids ON ids.o = s.o), \
         p AS (UPDATE pools SET committed_base = x.base, committed_through = x.through, \
             generation = generation + x.bump, updated_at = $4 \
             FROM unnest($22::BIGINT[], $23::BIGINT[], $24::BIGINT[], $25::BIGINT[]) AS x(seq, base, through, bump) \
             WHERE pools.seq = x.seq), \
         h AS (INSERT INTO allocation_history (allocation_seq, action, actor, reason, before, after, \
             effective_at, created_at) \
             SELECT ids.n, 'created', r.actor, NULL, 'null', '{{\"id\":\"' || ids.id || '\"' || r.rest, \
             r.starts, $4 FROM r JOIN ids ON ids.o = r.o ORDER BY r.o), \
         e AS (INSERT INTO events (seq, id, organization_id, workspace_id, type, data, created_at) \
             SELECT evs.n, evs.id, r.org, r.ws, 'capacity.allocation.created', \
             '{{\"object\":{{\"id\":\"' || ids.id || '\"' || r.rest || '}}', $4 \
             FROM r JOIN ids ON ids.o = r.o JOIN evs ON evs.o = r.o ORDER BY r.o) \
         SELECT o, id FROM ids",
        minted_sql("$2", "n"),
        minted_sql("$3", "n")
    )
});

/// [`SELECT`] with the allocation's materialised commitment steps (columns
/// 21 and 22: `at` and `delta`, pairwise, in no particular order).
static SELECT_WITH_STEPS: LazyLock<String> = LazyLock::new(|| {
    SELECT.replacen(" FROM allocations a", ", s.at, s.d FROM allocations a", 1)
        + " CROSS JOIN LATERAL (SELECT array_agg(c.at) AS at, array_agg(c.delta) AS d \
           FROM commitment_steps c WHERE c.allocation_seq = a.seq) s"
});

/// Every write of a batch of PATCHes (of distinct allocations), in one
/// statement, each table's rows as arrays: `$1`–`$4` the allocations (seq,
/// status, ends_at, closed_at), `$5` now; `$6`/`$7` the terms to delete
/// (allocation, effective_at), `$8`–`$12` the terms to write, new or changed
/// (allocation, effective_at, committed, resources, reason); `$13`–`$15` the
/// steps to delete (pool, at, allocation), `$16`–`$19` the steps to write
/// (pool, at, allocation, delta); `$20`–`$23` the pools (seq, stored
/// commitment, fold point, generation increment: `pools::State::row_after`);
/// `$24`–`$30` history entries (allocation, action, actor, reason, before,
/// after, effective_at), in order; `$31` the event id's head, `$32`–`$35`
/// events (organization, workspace, type, data), numbered in order. Only
/// rows that change are touched; what is deleted and what is written never
/// share a key (one statement: a delete and an insert of one key in one
/// statement would race each other).
static PATCH_WRITES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH u AS (UPDATE allocations a SET status = x.status, ends_at = x.ends, closed_at = x.closed, \
             updated_at = $5, version = a.version + 1 \
             FROM unnest($1::BIGINT[], $2::TEXT[], $3::BIGINT[], $4::BIGINT[]) AS x(seq, status, ends, closed) \
             WHERE a.seq = x.seq), \
         td AS (DELETE FROM allocation_terms t USING unnest($6::BIGINT[], $7::BIGINT[]) AS x(seq, e) \
             WHERE t.allocation_seq = x.seq AND t.effective_at = x.e), \
         ti AS (INSERT INTO allocation_terms (allocation_seq, effective_at, committed, resources, reason) \
             SELECT x.seq, x.e, x.c, x.r, x.why \
             FROM unnest($8::BIGINT[], $9::BIGINT[], $10::BIGINT[], $11::TEXT[], $12::TEXT[]) AS x(seq, e, c, r, why) \
             ON CONFLICT (allocation_seq, effective_at) DO UPDATE SET committed = EXCLUDED.committed, \
             resources = EXCLUDED.resources, reason = EXCLUDED.reason), \
         sd AS (DELETE FROM commitment_steps c \
             USING unnest($13::BIGINT[], $14::BIGINT[], $15::BIGINT[]) AS x(pool, at, seq) \
             WHERE c.pool_seq = x.pool AND c.at = x.at AND c.allocation_seq = x.seq), \
         si AS (INSERT INTO commitment_steps (pool_seq, at, allocation_seq, delta) \
             SELECT x.pool, x.at, x.seq, x.d \
             FROM unnest($16::BIGINT[], $17::BIGINT[], $18::BIGINT[], $19::BIGINT[]) AS x(pool, at, seq, d) \
             ON CONFLICT (pool_seq, at, allocation_seq) DO UPDATE SET delta = EXCLUDED.delta), \
         p AS (UPDATE pools SET committed_base = x.base, committed_through = x.through, \
             generation = generation + x.bump, updated_at = $5 \
             FROM unnest($20::BIGINT[], $21::BIGINT[], $22::BIGINT[], $23::BIGINT[]) AS x(seq, base, through, bump) \
             WHERE pools.seq = x.seq), \
         h AS (INSERT INTO allocation_history (allocation_seq, action, actor, reason, before, after, \
             effective_at, created_at) \
             SELECT x.seq, x.action, x.actor, x.why, x.before, x.after, x.eff, $5 \
             FROM unnest($24::BIGINT[], $25::TEXT[], $26::TEXT[], $27::TEXT[], $28::TEXT[], $29::TEXT[], \
                 $30::BIGINT[]) WITH ORDINALITY AS x(seq, action, actor, why, before, after, eff, o) ORDER BY x.o), \
         e AS (INSERT INTO events (seq, id, organization_id, workspace_id, type, data, created_at) \
             SELECT n, {}, x.org, x.ws, x.type, x.data, $5 \
             FROM (SELECT nextval('ids_evt') AS n, x.org, x.ws, x.type, x.data, x.o \
                   FROM unnest($32::TEXT[], $33::TEXT[], $34::TEXT[], $35::TEXT[]) WITH ORDINALITY \
                       AS x(org, ws, type, data, o) ORDER BY x.o) x) \
         SELECT 1",
        minted_sql("$31", "n")
    )
});

/// The rows a batch of PATCHes writes ([`PATCH_WRITES`]'s arrays).
#[derive(Default)]
struct PatchWrites {
    seq: Vec<i64>,
    status: Vec<String>,
    ends: Vec<Option<i64>>,
    closed: Vec<Option<i64>>,
    td_seq: Vec<i64>,
    td_at: Vec<i64>,
    ti_seq: Vec<i64>,
    ti_at: Vec<i64>,
    ti_committed: Vec<i64>,
    ti_resources: Vec<String>,
    ti_reason: Vec<Option<String>>,
    sd_pool: Vec<i64>,
    sd_at: Vec<i64>,
    sd_seq: Vec<i64>,
    si_pool: Vec<i64>,
    si_at: Vec<i64>,
    si_seq: Vec<i64>,
    si_delta: Vec<i64>,
    h_seq: Vec<i64>,
    h_action: Vec<String>,
    h_actor: Vec<String>,
    h_reason: Vec<Option<String>>,
    h_before: Vec<String>,
    h_after: Vec<String>,
    h_eff: Vec<i64>,
    e_org: Vec<String>,
    e_ws: Vec<String>,
    e_type: Vec<String>,
    e_data: Vec<String>,
}

/// A PATCH waiting to be made, with its caller's scope.
#[derive(Clone)]
pub struct PatchRequest {
    pub scope: Scope,
    pub id: AllocationId,
    pub patch: AllocationPatch,
}

/// One PATCH, inside the caller's transaction, which it leaves open (a
/// service-line close patches each of the line's allocations).
pub async fn patch(
    db: &Db<'_>,
    scope: &Scope,
    id: &AllocationId,
    patch: AllocationPatch,
    now: Instant,
    cache: &pools::TimelineCache,
) -> Result<Allocation, StoreError> {
    let request = PatchRequest {
        scope: scope.clone(),
        id: id.clone(),
        patch,
    };
    patch_batch(db, std::slice::from_ref(&request), now, false, cache)
        .await?
        .pop()
        .ok_or_else(|| StoreError::Internal("a PATCH answered nothing".into()))?
}

/// Makes a batch of PATCHes of distinct allocations in one transaction
/// (group commit, as `create_batch`), in two round trips: BEGIN, the locks
/// and rows of the allocations' pools (in `seq` order), then (under them)
/// the allocations with their materialised steps, pipelined (the pools'
/// timelines from the cache); then the rules, in Rust, PATCH after PATCH,
/// each against its pool as the ones before it left it; then every
/// accepted PATCH's writes in one multi-row statement ([`PATCH_WRITES`]; each
/// pool's row written once, as the batch left it), with COMMIT when `commit`
/// (a PATCH made by a service-line close runs inside that transaction).
///
/// Answers each request's outcome, in order; an `Err` of the whole is a
/// database failure.
pub async fn patch_batch(
    db: &Db<'_>,
    requests: &[PatchRequest],
    now: Instant,
    commit: bool,
    cache: &pools::TimelineCache,
) -> Result<Vec<Result<Allocation, StoreError>>, StoreError> {
    // The pools' locks first, as creates take them: every write to a pool's
    // commitments (and so to its allocations) waits for them, so what is
    // read after them (the versions, the terms, the timelines) stays true
    // until commit. An allocation never moves to another pool.
    let ids: Vec<String> = requests.iter().map(|r| r.id.as_str().to_owned()).collect();
    let lock = format!(
        "SELECT {} FROM pools p WHERE p.seq IN (SELECT a.pool_seq FROM allocations a WHERE a.id = ANY($1)) \
         ORDER BY p.seq FOR NO KEY UPDATE",
        pools::LOCKED_COLUMNS
    );
    // The allocations, with their materialised steps (columns 21, 22).
    let week = now.week_start().plus_micros(-MICROS_PER_WEEK).micros();
    let read = format!("{} WHERE a.id = ANY($2)", &*SELECT_WITH_STEPS);
    let answers = db
        .pipeline(&[(&lock, &[&ids]), (&read, &[&week, &ids])])
        .await?;
    let [pool_rows, alloc_rows] = two(&answers)?;
    let mut states = locked_states(db, pool_rows, now, cache).await?;
    let mut allocs: HashMap<String, (i64, Allocation, Timeline)> = HashMap::new();
    for r in alloc_rows {
        let (seq, a) = row(r, now)?;
        let ats: Option<Vec<i64>> = r.try_get(21).db()?;
        let ds: Option<Vec<i64>> = r.try_get(22).db()?;
        let old_steps = Timeline::from_steps(
            ats.unwrap_or_default()
                .into_iter()
                .map(Instant::from_micros)
                .zip(ds.unwrap_or_default()),
        );
        allocs.insert(a.id.as_str().to_owned(), (seq, a, old_steps));
    }
    let mut w = PatchWrites::default();
    let outcomes: Vec<Result<Allocation, StoreError>> = requests
        .iter()
        .map(|req| judge_patch(req, now, &allocs, &mut states, &mut w))
        .collect();
    if !w.seq.is_empty() {
        let (p_seq, p_base, p_through, p_bump) = changed_pools(&states);
        let mut batch = Batch::default();
        batch.push(
            &*PATCH_WRITES,
            values![
                w.seq,
                w.status,
                w.ends,
                w.closed,
                now.micros(),
                w.td_seq,
                w.td_at,
                w.ti_seq,
                w.ti_at,
                w.ti_committed,
                w.ti_resources,
                w.ti_reason,
                w.sd_pool,
                w.sd_at,
                w.sd_seq,
                w.si_pool,
                w.si_at,
                w.si_seq,
                w.si_delta,
                p_seq,
                p_base,
                p_through,
                p_bump,
                w.h_seq,
                w.h_action,
                w.h_actor,
                w.h_reason,
                w.h_before,
                w.h_after,
                w.h_eff,
                id_head(MintedPrefix::Event, now),
                w.e_org,
                w.e_ws,
                w.e_type,
                w.e_data,
            ],
        );
        batch.send(db, commit).await?;
        if commit {
            // Committed: the cache may hold what they left. (Inside a
            // caller's transaction it may still roll back: the next write
            // reads.)
            for st in states.values() {
                st.committed(cache);
            }
        }
    }
    Ok(outcomes)
}

/// One PATCH of a batch: its rules, against its pool as the batch left it;
/// its writes are added to `batch`.
fn judge_patch(
    req: &PatchRequest,
    now: Instant,
    allocs: &HashMap<String, (i64, Allocation, Timeline)>,
    states: &mut HashMap<String, pools::State>,
    w: &mut PatchWrites,
) -> Result<Allocation, StoreError> {
    let scope = &req.scope;
    let patch = &req.patch;
    let (seq, old, old_steps) = allocs
        .get(req.id.as_str())
        .filter(|(_, a, _)| scope.sees(&a.organization_id, &a.workspace_id))
        .ok_or(StoreError::NotFound)?;
    let (seq, old) = (*seq, old.clone());
    let state = states
        .get_mut(old.capacity_pool_id.as_str())
        .ok_or(StoreError::NotFound)?;
    let Some(PatchPlan {
        new,
        change,
        terms_at,
        history,
    }) = patch.plan(&old, now)?
    else {
        return Ok(old);
    };

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

    // Terms and steps: only the rows that change are written. Deleted:
    // those whose key is gone; written: those new or changed.
    let written: Vec<(&Terms, String)> = new
        .terms
        .iter()
        .filter(|t| !old.terms.contains(t))
        .map(|t| Ok((t, serde_json::to_string(&t.resources)?)))
        .collect::<Result<_, serde_json::Error>>()
        .map_err(|e| StoreError::Internal(e.to_string()))?;
    for t in old
        .terms
        .iter()
        .filter(|t| !new.terms.iter().any(|n| n.effective_at == t.effective_at))
    {
        w.td_seq.push(seq);
        w.td_at.push(t.effective_at.micros());
    }
    for (t, resources) in written {
        w.ti_seq.push(seq);
        w.ti_at.push(t.effective_at.micros());
        w.ti_committed.push(t.committed.thousandths());
        w.ti_resources.push(resources);
        w.ti_reason.push(t.reason.clone());
    }
    for o in old_steps
        .steps()
        .iter()
        .filter(|o| !new_timeline.steps().iter().any(|n| n.0 == o.0))
    {
        w.sd_pool.push(state.seq);
        w.sd_at.push(o.0.micros());
        w.sd_seq.push(seq);
    }
    for &(at, d) in new_timeline
        .steps()
        .iter()
        .filter(|n| !old_steps.steps().contains(n))
    {
        w.si_pool.push(state.seq);
        w.si_at.push(at.micros());
        w.si_seq.push(seq);
        w.si_delta.push(d);
    }
    // The pool's stored commitment and generation, written once for the
    // batch (`pools::State::row_after`).
    state.apply(&new_timeline.minus(old_steps), now);

    // History: one entry for what applies now, one for what is scheduled.
    let mut entry = |action: &'static str,
                     reason: Option<String>,
                     before: serde_json::Value,
                     after: serde_json::Value,
                     effective_at: Instant| {
        w.h_seq.push(seq);
        w.h_action.push(action.to_owned());
        w.h_actor.push(scope.token_id.clone());
        w.h_reason.push(reason);
        w.h_before.push(before.to_string());
        w.h_after.push(after.to_string());
        w.h_eff.push(effective_at.micros());
    };
    for h in history {
        entry(h.action, h.reason, h.before, h.after, h.effective_at);
    }

    let updated = new;
    let mut event = |kind: &str, data: String| {
        w.e_org.push(updated.organization_id.as_str().to_owned());
        w.e_ws.push(updated.workspace_id.as_str().to_owned());
        w.e_type.push(kind.to_owned());
        w.e_data.push(data);
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
    w.seq.push(seq);
    w.status.push(updated.status.as_str().to_owned());
    w.ends.push(updated.ends_at.map(|e| e.micros()));
    w.closed.push(updated.closed_at.map(|c| c.micros()));
    Ok(updated)
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

/// The allocations usage is recorded against, by id, of those visible to
/// `scope` (one query for a whole batch).
pub async fn usage_targets(
    db: &Db<'_>,
    scope: &Scope,
    ids: Vec<String>,
) -> Result<HashMap<String, UsageTarget>, StoreError> {
    let mut q = Query::new("SELECT id, seq, pool_seq, organization_id, status FROM allocations");
    q.and("id = ANY({})", ids);
    q.scoped(scope, "organization_id", "workspace_id");
    db.query_built(&q)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get(0)?,
                UsageTarget {
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
