//! Capacity pools and their supply ledger.

use crate::events::insert_event;
use crate::sql::{DbResult, Query, mint_id, text_or_internal};
use capacity_domain::ids::MintedPrefix;
use capacity_domain::model::{Adjustment, Pool, SupplySource, UnitPrice};
use capacity_domain::timeline::Timeline;
use capacity_domain::{Delta, Instant, OrgId, Period, PoolId, ResourceType, WorkspaceId};
use capacity_store::{NewAdjustment, NewPool, Page, PageRequest, PoolFilter, Scope, StoreError};
use rusqlite::{Connection, OptionalExtension, Row, params};

/// The total commitment of pool row `p` at `?1`: the folded base plus or
/// minus the steps between the fold and `?1` (migration 0008).
macro_rules! committed_at {
    () => {
        "p.committed_base + CASE WHEN ?1 >= p.committed_through \
         THEN (SELECT COALESCE(SUM(c.delta), 0) FROM commitment_steps c \
               WHERE c.pool_seq = p.seq AND c.at > p.committed_through AND c.at <= ?1) \
         ELSE -(SELECT COALESCE(SUM(c.delta), 0) FROM commitment_steps c \
               WHERE c.pool_seq = p.seq AND c.at > ?1 AND c.at <= p.committed_through) END"
    };
}

/// Pool columns before supply and commitment.
macro_rules! columns {
    () => {
        "SELECT p.seq, p.id, p.workspace_id, p.organization_id, p.resource_type, p.period, \
         p.overcommit_ratio, p.unit_price_amount, p.unit_price_currency, p.created_at, p.updated_at, "
    };
}

/// Pool columns with supply and commitment read at `?1` (now).
const SELECT: &str = concat!(
    columns!(),
    "(SELECT COALESCE(SUM(s.delta), 0) FROM supply_changes s WHERE s.pool_seq = p.seq AND s.effective_at <= ?1), ",
    committed_at!(),
    " FROM pools p"
);

fn row(r: &Row<'_>) -> rusqlite::Result<(i64, Option<Pool>)> {
    let seq: i64 = r.get(0)?;
    let amount: Option<String> = r.get(7)?;
    let currency: Option<String> = r.get(8)?;
    let rt: String = r.get(4)?;
    let period: String = r.get(5)?;
    let (Some(resource_type), Some(period)) = (ResourceType::parse(&rt), Period::parse(&period))
    else {
        return Ok((seq, None));
    };
    Ok((
        seq,
        Some(Pool {
            id: PoolId::from_trusted(r.get(1)?),
            workspace_id: WorkspaceId::from_trusted(r.get(2)?),
            organization_id: OrgId::from_trusted(r.get(3)?),
            resource_type,
            period,
            overcommit_ratio: r.get(6)?,
            unit_price: amount
                .zip(currency)
                .map(|(amount, currency)| UnitPrice { amount, currency }),
            created_at: Instant::from_micros(r.get(9)?),
            updated_at: Instant::from_micros(r.get(10)?),
            total: r.get(11)?,
            allocated: r.get(12)?,
        }),
    ))
}

/// A visible pool and its sequence number.
pub fn load(
    conn: &Connection,
    scope: &Scope,
    id: &PoolId,
    now: Instant,
) -> Result<(i64, Pool), StoreError> {
    let mut q = Query::new(SELECT);
    q.bind(now.micros());
    find(conn, scope, id, q)
}

/// The pool `id` if `scope` sees it, by the query `q` of [`row`]'s columns.
fn find(
    conn: &Connection,
    scope: &Scope,
    id: &PoolId,
    mut q: Query,
) -> Result<(i64, Pool), StoreError> {
    q.and("p.id = {}", id.as_str().to_owned());
    q.scoped(scope, "p.organization_id", "p.workspace_id");
    let (seq, pool) = conn
        .prepare_cached(&q.sql)
        .db()?
        .query_row(rusqlite::params_from_iter(q.params.iter()), row)
        .optional()
        .db()?
        .ok_or(StoreError::NotFound)?;
    Ok((seq, text_or_internal(pool, "pool")?))
}

/// A visible pool as a write judges it: its row, its supply timeline and
/// its total commitment from `now` on, what the no-overcommit rule checks a
/// change against. The pool's `total` and `allocated` are read off the two
/// timelines rather than summed a second time by the query.
pub struct Judged {
    pub seq: i64,
    pub pool: Pool,
    pub supply: Timeline,
    pub committed: Timeline,
}

pub fn load_for_write(
    conn: &Connection,
    scope: &Scope,
    id: &PoolId,
    now: Instant,
) -> Result<Judged, StoreError> {
    let q = Query::new(concat!(columns!(), "0, 0 FROM pools p"));
    let (seq, mut pool) = find(conn, scope, id, q)?;
    let supply = supply_timeline(conn, seq)?;
    let committed = commitment_timeline(conn, seq, now)?;
    pool.total = supply.value_at(now);
    pool.allocated = committed.value_at(now);
    Ok(Judged {
        seq,
        pool,
        supply,
        committed,
    })
}

pub fn list(
    conn: &Connection,
    scope: &Scope,
    filter: &PoolFilter,
    page: PageRequest,
    now: Instant,
) -> Result<Page<Pool>, StoreError> {
    let mut q = Query::new(SELECT);
    q.bind(now.micros());
    q.scoped(scope, "p.organization_id", "p.workspace_id");
    if let Some(ws) = &filter.workspace_id {
        q.and("p.workspace_id = {}", ws.as_str().to_owned());
    }
    if let Some(org) = &filter.organization_id {
        q.and("p.organization_id = {}", org.as_str().to_owned());
    }
    if let Some(rt) = filter.resource_type {
        q.and("p.resource_type = {}", rt.as_str().to_owned());
    }
    q.page("p.seq", page.after, page.limit);
    let mut stmt = conn.prepare_cached(&q.sql).db()?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(q.params.iter()), row)
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    let rows = rows
        .into_iter()
        .map(|(seq, p)| text_or_internal(p, "pool").map(|p| (seq, p)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(rows, page.limit))
}

pub fn create(
    conn: &Connection,
    scope: &Scope,
    new: NewPool,
    now: Instant,
) -> Result<Pool, StoreError> {
    crate::workspaces::use_for_write(
        conn,
        scope,
        &new.workspace_id,
        Some(&new.organization_id),
        now,
    )?;
    let exists: Option<String> = conn
        .prepare_cached("SELECT id FROM pools WHERE workspace_id = ?1 AND resource_type = ?2")
        .db()?
        .query_row(
            [new.workspace_id.as_str(), new.resource_type.as_str()],
            |r| r.get(0),
        )
        .optional()
        .db()?;
    if let Some(existing) = exists {
        return Err(StoreError::conflict(
            "pool_exists",
            format!(
                "workspace {} already has a {} pool: {existing}",
                new.workspace_id,
                new.resource_type.as_str()
            ),
        ));
    }
    let (seq, id) = mint_id(conn, MintedPrefix::Pool, now)?;
    conn.prepare_cached(
        "INSERT INTO pools (seq, id, workspace_id, organization_id, resource_type, period, overcommit_ratio, \
         unit_price_amount, unit_price_currency, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
    )
    .db()?
    .execute(params![
        seq,
        id,
        new.workspace_id.as_str(),
        new.organization_id.as_str(),
        new.resource_type.as_str(),
        new.period.as_str(),
        new.overcommit_ratio,
        new.unit_price.as_ref().map(|p| p.amount.clone()),
        new.unit_price.as_ref().map(|p| p.currency.clone()),
        now.micros(),
    ])
    .db()?;
    insert_supply_change(
        conn,
        seq,
        Delta::from_thousandths(new.total.thousandths()),
        None,
        SupplySource::Initial,
        now,
        now,
        &scope.token_id,
    )?;
    let pool_id = PoolId::from_trusted(id);
    let (_, pool) = load(conn, scope, &pool_id, now)?;
    insert_event(
        conn,
        "capacity.pool.created",
        &pool.organization_id,
        &pool.workspace_id,
        &pool,
        now,
    )?;
    Ok(pool)
}

#[allow(clippy::too_many_arguments)]
fn insert_supply_change(
    conn: &Connection,
    pool_seq: i64,
    delta: Delta,
    reason: Option<&str>,
    source: SupplySource,
    effective_at: Instant,
    now: Instant,
    actor: &str,
) -> Result<String, StoreError> {
    let (seq, id) = mint_id(conn, MintedPrefix::Adjustment, now)?;
    conn.prepare_cached(
        "INSERT INTO supply_changes (seq, id, pool_seq, delta, reason, source, effective_at, created_at, created_by) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .db()?
    .execute(params![seq, id, pool_seq, delta.thousandths(), reason, source.as_str(), effective_at.micros(), now.micros(), actor])
    .db()?;
    Ok(id)
}

pub fn supply_timeline(conn: &Connection, pool_seq: i64) -> Result<Timeline, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT effective_at, SUM(delta) FROM supply_changes WHERE pool_seq = ?1 GROUP BY effective_at")
        .db()?;
    let steps = stmt
        .query_map([pool_seq], |r| {
            Ok((Instant::from_micros(r.get(0)?), r.get::<_, i64>(1)?))
        })
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    Ok(Timeline::from_steps(steps))
}

/// The pool's total commitment: its value at `now` as one step, then every later step.
pub fn commitment_timeline(
    conn: &Connection,
    pool_seq: i64,
    now: Instant,
) -> Result<Timeline, StoreError> {
    commitment_between(conn, pool_seq, now, Instant::END_OF_TIME)
}

/// The pool's total commitment over `[from, to)`: its value at `from` as one
/// step, then the steps inside.
pub fn commitment_between(
    conn: &Connection,
    pool_seq: i64,
    from: Instant,
    to: Instant,
) -> Result<Timeline, StoreError> {
    let base: i64 = conn
        .prepare_cached(concat!(
            "SELECT ",
            committed_at!(),
            " FROM pools p WHERE p.seq = ?2"
        ))
        .db()?
        .query_row(params![from.micros(), pool_seq], |r| r.get(0))
        .db()?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT at, SUM(delta) FROM commitment_steps WHERE pool_seq = ?1 AND at > ?2 AND at < ?3 GROUP BY at",
        )
        .db()?;
    let later = stmt
        .query_map(params![pool_seq, from.micros(), to.micros()], |r| {
            Ok((Instant::from_micros(r.get(0)?), r.get::<_, i64>(1)?))
        })
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    Ok(Timeline::from_steps(
        std::iter::once((from, base)).chain(later),
    ))
}

/// Folds the steps up to `to` into the stored commitment of every pool not
/// folded that far (migration 0008). Returns the pools moved.
pub fn fold_all(conn: &Connection, to: Instant) -> Result<usize, StoreError> {
    conn.prepare_cached(
        "UPDATE pools SET committed_base = committed_base + \
         (SELECT COALESCE(SUM(c.delta), 0) FROM commitment_steps c \
          WHERE c.pool_seq = pools.seq AND c.at > pools.committed_through AND c.at <= ?1), \
         committed_through = ?1 WHERE committed_through < ?1",
    )
    .db()?
    .execute([to.micros()])
    .db()
}

/// Where a pool's stored commitment is folded to (migration 0008).
pub fn folded_through(conn: &Connection, pool_seq: i64) -> Result<Instant, StoreError> {
    Ok(Instant::from_micros(
        conn.prepare_cached("SELECT committed_through FROM pools WHERE seq = ?1")
            .db()?
            .query_row([pool_seq], |r| r.get(0))
            .db()?,
    ))
}

/// Records a change to the pool's supply or commitments, after its
/// commitment steps were written: bumps its generation (what cached
/// forecasts are keyed by) and `updated_at`, adds `folded_delta` — what the
/// change did at or before `through`, where the pool was folded to before it
/// — to the stored commitment, and folds it on up to `now`.
pub fn touch(
    conn: &Connection,
    pool_seq: i64,
    through: Instant,
    folded_delta: i64,
    now: Instant,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE pools SET committed_base = committed_base + ?1 + \
         (SELECT COALESCE(SUM(c.delta), 0) FROM commitment_steps c \
          WHERE c.pool_seq = ?4 AND c.at > ?2 AND c.at <= ?3), \
         committed_through = MAX(?2, ?3), generation = generation + 1, updated_at = ?3 \
         WHERE seq = ?4",
    )
    .db()?
    .execute(params![
        folded_delta,
        through.micros(),
        now.micros(),
        pool_seq
    ])
    .db()?;
    Ok(())
}

pub fn adjust(
    conn: &Connection,
    scope: &Scope,
    id: &PoolId,
    adj: NewAdjustment,
    now: Instant,
) -> Result<(Adjustment, Pool), StoreError> {
    let (seq, pool) = load(conn, scope, id, now)?;
    let plan = adj.plan(&supply_timeline(conn, seq)?, now)?;
    let effective_at = plan.effective_at;
    let adj_id = insert_supply_change(
        conn,
        seq,
        adj.delta,
        adj.reason.as_deref(),
        adj.source,
        effective_at,
        now,
        &scope.token_id,
    )?;
    touch(conn, seq, folded_through(conn, seq)?, 0, now)?;
    let (_, pool_after) = load(conn, scope, id, now)?;
    insert_event(
        conn,
        "capacity.pool.updated",
        &pool.organization_id,
        &pool.workspace_id,
        &pool_after,
        now,
    )?;
    let committed = commitment_timeline(conn, seq, now)?;
    if let Some(over) = plan.overcommitment(adj.delta, pool.overcommit_ratio, &committed, now) {
        insert_event(
            conn,
            "capacity.pool_overcommitted",
            &pool.organization_id,
            &pool.workspace_id,
            capacity_store::pool_overcommitted_event(&pool_after, &over),
            now,
        )?;
    }
    let adjustment = Adjustment {
        id: adj_id,
        capacity_pool_id: pool.id.clone(),
        delta: adj.delta,
        reason: adj.reason,
        source: adj.source,
        effective_at,
        created_at: now,
        created_by: scope.token_id.clone(),
    };
    Ok((adjustment, pool_after))
}

pub fn list_adjustments(
    conn: &Connection,
    scope: &Scope,
    id: &PoolId,
    page: PageRequest,
) -> Result<Page<Adjustment>, StoreError> {
    let (pool_seq, pool) = load(conn, scope, id, Instant::END_OF_TIME)?;
    let mut q = Query::new(
        "SELECT seq, id, delta, reason, source, effective_at, created_at, created_by FROM supply_changes",
    );
    q.and("pool_seq = {}", pool_seq);
    q.page("seq", page.after, page.limit);
    let mut stmt = conn.prepare_cached(&q.sql).db()?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(q.params.iter()), |r| {
            let source: String = r.get(4)?;
            Ok((
                r.get::<_, i64>(0)?,
                Adjustment {
                    id: r.get(1)?,
                    capacity_pool_id: pool.id.clone(),
                    delta: Delta::from_thousandths(r.get(2)?),
                    reason: r.get(3)?,
                    source: SupplySource::parse(&source).unwrap_or(SupplySource::Correction),
                    effective_at: Instant::from_micros(r.get(5)?),
                    created_at: Instant::from_micros(r.get(6)?),
                    created_by: r.get(7)?,
                },
            ))
        })
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    Ok(Page::from_rows(rows, page.limit))
}
