//! Capacity pools and their supply ledger.
//!
//! Every write that reads a pool's timelines to judge a change first takes
//! the pool row's lock ([`lock`]); see the crate docs for why.

use crate::events::insert_event;
use crate::sql::{Db, DbResult, Query, mint_id, text_or_internal};
use capacity_domain::ids::MintedPrefix;
use capacity_domain::model::{Adjustment, Pool, SupplySource, UnitPrice};
use capacity_domain::timeline::Timeline;
use capacity_domain::{Delta, Instant, OrgId, Period, PoolId, ResourceType, WorkspaceId};
use capacity_store::{NewAdjustment, NewPool, Page, PageRequest, PoolFilter, Scope, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio_postgres::Row;

/// The total commitment of pool row `p` at `$1`: the folded base plus or
/// minus the steps between the fold and `$1` (migration 0008).
macro_rules! committed_at {
    () => {
        "(p.committed_base + CASE WHEN $1 >= p.committed_through \
         THEN (SELECT COALESCE(SUM(c.delta), 0) FROM commitment_steps c \
               WHERE c.pool_seq = p.seq AND c.at > p.committed_through AND c.at <= $1) \
         ELSE -(SELECT COALESCE(SUM(c.delta), 0) FROM commitment_steps c \
               WHERE c.pool_seq = p.seq AND c.at > $1 AND c.at <= p.committed_through) END)::BIGINT"
    };
}

/// `SELECT` and the pool columns of row `p` (what [`row`] reads), with
/// supply and commitment read at `$1` (now).
macro_rules! select_columns {
    () => {
        concat!(
            "SELECT p.seq, p.id, p.workspace_id, p.organization_id, p.resource_type, p.period, \
            p.overcommit_ratio, p.unit_price_amount, p.unit_price_currency, p.created_at, p.updated_at, \
            (SELECT COALESCE(SUM(s.delta), 0)::BIGINT FROM supply_changes s WHERE s.pool_seq = p.seq AND s.effective_at <= $1), ",
            committed_at!()
        )
    };
}

/// Pool columns with supply and commitment read at `$1` (now).
pub const SELECT: &str = concat!(select_columns!(), " FROM pools p");

/// [`SELECT`] and the pool's generation (column 13).
pub const SELECT_WITH_GENERATION: &str = concat!(select_columns!(), ", p.generation FROM pools p");

pub fn row(r: &Row) -> Result<(i64, Option<Pool>), tokio_postgres::Error> {
    let seq: i64 = r.try_get(0)?;
    let amount: Option<String> = r.try_get(7)?;
    let currency: Option<String> = r.try_get(8)?;
    let rt: String = r.try_get(4)?;
    let period: String = r.try_get(5)?;
    let (Some(resource_type), Some(period)) = (ResourceType::parse(&rt), Period::parse(&period))
    else {
        return Ok((seq, None));
    };
    Ok((
        seq,
        Some(Pool {
            id: PoolId::from_trusted(r.try_get(1)?),
            workspace_id: WorkspaceId::from_trusted(r.try_get(2)?),
            organization_id: OrgId::from_trusted(r.try_get(3)?),
            resource_type,
            period,
            overcommit_ratio: r.try_get(6)?,
            unit_price: amount
                .zip(currency)
                .map(|(amount, currency)| UnitPrice { amount, currency }),
            created_at: Instant::from_micros(r.try_get(9)?),
            updated_at: Instant::from_micros(r.try_get(10)?),
            total: r.try_get(11)?,
            allocated: r.try_get(12)?,
        }),
    ))
}

/// Locks a visible pool's row until the end of the transaction and answers
/// its sequence number.
///
/// This is what keeps the no-overcommit rule true across processes: every
/// change to a pool's supply or commitments takes this lock before reading
/// the timelines it judges, so two such changes to one pool run one after
/// the other, and the second (a fresh statement under READ COMMITTED) reads
/// what the first committed. Changes to different pools do not wait for
/// each other.
///
/// `FOR NO KEY UPDATE` rather than `FOR UPDATE`: it excludes every other
/// pool writer just the same, but not the key-share locks foreign-key checks
/// take, so inserting a row that merely references the pool never waits.
pub async fn lock(db: &Db<'_>, scope: &Scope, id: &PoolId) -> Result<i64, StoreError> {
    let mut q = Query::new("SELECT p.seq FROM pools p");
    q.and("p.id = {}", id.as_str().to_owned());
    q.scoped(scope, "p.organization_id", "p.workspace_id");
    q.push(" FOR NO KEY UPDATE");
    db.query_opt_built(&q)
        .await?
        .ok_or(StoreError::NotFound)?
        .try_get(0)
        .db()
}

/// A visible pool and its sequence number.
pub async fn load(
    db: &Db<'_>,
    scope: &Scope,
    id: &PoolId,
    now: Instant,
) -> Result<(i64, Pool), StoreError> {
    let mut q = Query::new(SELECT);
    q.bind(now.micros());
    q.and("p.id = {}", id.as_str().to_owned());
    q.scoped(scope, "p.organization_id", "p.workspace_id");
    let (seq, pool) = db
        .query_opt_built(&q)
        .await?
        .as_ref()
        .map(row)
        .transpose()
        .db()?
        .ok_or(StoreError::NotFound)?;
    Ok((seq, text_or_internal(pool, "pool")?))
}

pub async fn list(
    db: &Db<'_>,
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
    let rows = db
        .query_built(&q)
        .await?
        .iter()
        .map(row)
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    let rows = rows
        .into_iter()
        .map(|(seq, p)| text_or_internal(p, "pool").map(|p| (seq, p)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(rows, page.limit))
}

/// A list of one workspace's pools waiting to be read, with its caller's
/// scope and the rest of its filter.
#[derive(Clone)]
pub struct WorkspaceListRequest {
    pub scope: Scope,
    pub workspace_id: WorkspaceId,
    pub filter: PoolFilter,
    pub page: PageRequest,
}

/// Reads the pools of a batch of workspace lists in one statement
/// (concurrent lists read together: one execution, one round trip), and
/// answers each request's page: what [`list`] would, in order. A workspace
/// has at most one pool per resource type, so its rows are few and are
/// filtered, scoped and paged here rather than in SQL.
pub async fn list_batch(
    db: &Db<'_>,
    requests: &[WorkspaceListRequest],
    now: Instant,
) -> Result<Vec<Result<Page<Pool>, StoreError>>, StoreError> {
    let mut workspaces: Vec<String> = requests
        .iter()
        .map(|r| r.workspace_id.as_str().to_owned())
        .collect();
    workspaces.sort_unstable();
    workspaces.dedup();
    let mut q = Query::new(SELECT);
    q.bind(now.micros());
    q.and("p.workspace_id = ANY({})", workspaces);
    q.push(" ORDER BY p.seq");
    let mut rows = Vec::new();
    for r in db.query_built(&q).await? {
        let (seq, pool) = row(&r).db()?;
        rows.push((seq, text_or_internal(pool, "pool")?));
    }
    Ok(requests
        .iter()
        .map(|req| {
            let f = &req.filter;
            let page = rows
                .iter()
                .filter(|(seq, p)| {
                    p.workspace_id == req.workspace_id
                        && req.scope.sees(&p.organization_id, &p.workspace_id)
                        && f.organization_id
                            .as_ref()
                            .is_none_or(|o| *o == p.organization_id)
                        && f.resource_type.is_none_or(|rt| rt == p.resource_type)
                        && req.page.after.is_none_or(|after| *seq > after)
                })
                .take(req.page.limit as usize + 1)
                .cloned()
                .collect();
            Ok(Page::from_rows(page, req.page.limit))
        })
        .collect())
}

/// The visible pool of a workspace for a resource type, if any, with its
/// sequence number (one query; SQLite lists, then loads).
pub async fn find(
    db: &Db<'_>,
    scope: &Scope,
    ws: &WorkspaceId,
    rt: ResourceType,
    now: Instant,
) -> Result<Option<(i64, Pool)>, StoreError> {
    let mut q = Query::new(SELECT);
    q.bind(now.micros());
    q.and("p.workspace_id = {}", ws.as_str().to_owned());
    q.and("p.resource_type = {}", rt.as_str().to_owned());
    q.scoped(scope, "p.organization_id", "p.workspace_id");
    match db
        .query_opt_built(&q)
        .await?
        .as_ref()
        .map(row)
        .transpose()
        .db()?
    {
        None => Ok(None),
        Some((seq, pool)) => Ok(Some((seq, text_or_internal(pool, "pool")?))),
    }
}

/// Serialises the decisions about one workspace (which organization it
/// belongs to, which pools it holds) across processes until commit: the
/// checks below read rows that do not exist yet, which no row lock covers.
pub async fn lock_workspace(db: &Db<'_>, ws: &WorkspaceId) -> Result<(), StoreError> {
    db.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('capacity.workspace:' || $1::TEXT, 0))",
        &[&ws.as_str()],
    )
    .await
    .map(|_| ())
}

pub async fn create(
    db: &Db<'_>,
    scope: &Scope,
    new: NewPool,
    now: Instant,
) -> Result<Pool, StoreError> {
    lock_workspace(db, &new.workspace_id).await?;
    crate::workspaces::use_for_write(
        db,
        scope,
        &new.workspace_id,
        Some(&new.organization_id),
        now,
    )
    .await?;
    let exists: Option<String> = db
        .query_opt(
            "SELECT id FROM pools WHERE workspace_id = $1 AND resource_type = $2",
            &[&new.workspace_id.as_str(), &new.resource_type.as_str()],
        )
        .await?
        .map(|r| r.try_get(0))
        .transpose()
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
    let (seq, id) = mint_id(db, MintedPrefix::Pool, now).await?;
    db.execute(
        "INSERT INTO pools (seq, id, workspace_id, organization_id, resource_type, period, overcommit_ratio, \
         unit_price_amount, unit_price_currency, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
        &[
            &seq,
            &id,
            &new.workspace_id.as_str(),
            &new.organization_id.as_str(),
            &new.resource_type.as_str(),
            &new.period.as_str(),
            &new.overcommit_ratio,
            &new.unit_price.as_ref().map(|p| p.amount.as_str()),
            &new.unit_price.as_ref().map(|p| p.currency.as_str()),
            &now.micros(),
        ],
    )
    .await?;
    insert_supply_change(
        db,
        seq,
        Delta::from_thousandths(new.total.thousandths()),
        None,
        SupplySource::Initial,
        now,
        now,
        &scope.token_id,
    )
    .await?;
    let pool_id = PoolId::from_trusted(id);
    let (_, pool) = load(db, scope, &pool_id, now).await?;
    insert_event(
        db,
        "capacity.pool.created",
        &pool.organization_id,
        &pool.workspace_id,
        &pool,
        now,
    )
    .await?;
    Ok(pool)
}

#[allow(clippy::too_many_arguments)]
async fn insert_supply_change(
    db: &Db<'_>,
    pool_seq: i64,
    delta: Delta,
    reason: Option<&str>,
    source: SupplySource,
    effective_at: Instant,
    now: Instant,
    actor: &str,
) -> Result<String, StoreError> {
    let (seq, id) = mint_id(db, MintedPrefix::Adjustment, now).await?;
    db.execute(
        "INSERT INTO supply_changes (seq, id, pool_seq, delta, reason, source, effective_at, created_at, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &seq,
            &id,
            &pool_seq,
            &delta.thousandths(),
            &reason,
            &source.as_str(),
            &effective_at.micros(),
            &now.micros(),
            &actor,
        ],
    )
    .await?;
    Ok(id)
}

/// The columns of a pool row a write reads with its lock (what
/// [`Locked::from_row`] reads): with `FOR NO KEY UPDATE` they are the row's
/// latest version, whatever the statement's snapshot.
pub const LOCKED_COLUMNS: &str = "p.seq, p.id, p.workspace_id, p.organization_id, p.resource_type, \
    p.period, p.overcommit_ratio, p.unit_price_amount, p.unit_price_currency, p.created_at, \
    p.updated_at, p.committed_base, p.committed_through, p.generation";

/// A pool row read with its lock.
pub struct Locked {
    pub seq: i64,
    /// `total` and `allocated` are not read here (see [`state`]).
    pub pool: Pool,
    pub base: i64,
    pub through: Instant,
    pub generation: i64,
}

impl Locked {
    /// From [`LOCKED_COLUMNS`] at the start of `r`.
    pub fn from_row(r: &Row) -> Result<Locked, StoreError> {
        let rt: String = r.try_get(4).db()?;
        let period: String = r.try_get(5).db()?;
        let (Some(resource_type), Some(period)) =
            (ResourceType::parse(&rt), Period::parse(&period))
        else {
            return Err(StoreError::Internal(
                "unreadable pool in the database".into(),
            ));
        };
        let amount: Option<String> = r.try_get(7).db()?;
        let currency: Option<String> = r.try_get(8).db()?;
        Ok(Locked {
            seq: r.try_get(0).db()?,
            pool: Pool {
                id: PoolId::from_trusted(r.try_get(1).db()?),
                workspace_id: WorkspaceId::from_trusted(r.try_get(2).db()?),
                organization_id: OrgId::from_trusted(r.try_get(3).db()?),
                resource_type,
                period,
                overcommit_ratio: r.try_get(6).db()?,
                unit_price: amount
                    .zip(currency)
                    .map(|(amount, currency)| UnitPrice { amount, currency }),
                created_at: Instant::from_micros(r.try_get(9).db()?),
                updated_at: Instant::from_micros(r.try_get(10).db()?),
                total: 0,
                allocated: 0,
            },
            base: r.try_get(11).db()?,
            through: Instant::from_micros(r.try_get(12).db()?),
            generation: r.try_get(13).db()?,
        })
    }
}

/// A pool's supply timeline and its commitment steps after an instant, as
/// they were at one generation.
pub struct Timelines {
    generation: i64,
    /// The commitment steps after this instant are all in `steps`.
    from: Instant,
    supply: Arc<Timeline>,
    steps: Timeline,
}

/// The timelines writes judge changes against, per pool, keyed by the
/// pool's generation (migration 0008: every change to a pool's supply or
/// commitment steps bumps it in the same transaction, in any process).
///
/// Entries are filled and used only under the pool's lock, so an entry at
/// the generation the lock reads is exactly the pool as it is: a write then
/// reads one pool row instead of its whole supply ledger and future
/// commitment steps. A write that commits stores what it leaves behind at
/// the next generation.
#[derive(Default)]
pub struct TimelineCache {
    entries: Mutex<(HashMap<i64, Arc<Timelines>>, usize)>,
}

/// Steps held at most (≈ 40 MiB); past it the cache starts over.
const MAX_CACHED_STEPS: usize = 2_000_000;

impl TimelineCache {
    fn get(&self, pool_seq: i64, generation: i64, from: Instant) -> Option<Arc<Timelines>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .0
            .get(&pool_seq)
            .filter(|t| t.generation == generation && t.from <= from)
            .cloned()
    }

    fn insert(&self, pool_seq: i64, t: Arc<Timelines>) {
        let weight = t.supply.steps().len() + t.steps.steps().len() + 1;
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.1 + weight > MAX_CACHED_STEPS {
            entries.0.clear();
            entries.1 = 0;
        }
        if let Some(old) = entries.0.insert(pool_seq, t) {
            entries.1 = entries
                .1
                .saturating_sub(old.supply.steps().len() + old.steps.steps().len() + 1);
        }
        entries.1 += weight;
    }
}

/// Reads a locked pool's supply timeline and its commitment steps after `from`.
const SELECT_TIMELINES: &str = "SELECT sup.at, sup.d, com.at, com.d FROM \
    (SELECT array_agg(g.at ORDER BY g.at) AS at, array_agg(g.d ORDER BY g.at) AS d \
     FROM (SELECT effective_at AS at, SUM(delta)::BIGINT AS d FROM supply_changes \
           WHERE pool_seq = $1 GROUP BY effective_at) g) sup, \
    (SELECT array_agg(at ORDER BY at) AS at, array_agg(delta ORDER BY at) AS d \
     FROM commitment_steps WHERE pool_seq = $1 AND at > $2) com";

/// A pool as a write that changes its commitments sees it, under its lock.
pub struct State {
    pub seq: i64,
    /// With its supply and commitment now.
    pub pool: Pool,
    pub supply: Arc<Timeline>,
    /// The total commitment: its value at now, then every later step.
    pub committed: Timeline,
    locked: Locked,
    timelines: Arc<Timelines>,
    /// What the writes applied so far change (see [`State::apply`]).
    applied: Timeline,
    writes: i64,
}

/// The state of a pool whose row this transaction has locked: its
/// timelines from the cache at the row's generation, else read (one
/// statement, under the lock).
pub async fn state(
    db: &Db<'_>,
    locked: Locked,
    now: Instant,
    cache: &TimelineCache,
) -> Result<State, StoreError> {
    let from = locked.through.min(now);
    let timelines = match cache.get(locked.seq, locked.generation, from) {
        Some(t) => t,
        None => {
            let r = db
                .query_one(SELECT_TIMELINES, &[&locked.seq, &from.micros()])
                .await?;
            let pairs = |at: usize| -> Result<Vec<(Instant, i64)>, StoreError> {
                let ats: Option<Vec<i64>> = r.try_get(at).db()?;
                let ds: Option<Vec<i64>> = r.try_get(at + 1).db()?;
                Ok(ats
                    .unwrap_or_default()
                    .into_iter()
                    .map(Instant::from_micros)
                    .zip(ds.unwrap_or_default())
                    .collect())
            };
            let t = Arc::new(Timelines {
                generation: locked.generation,
                from,
                supply: Arc::new(Timeline::from_steps(pairs(0)?)),
                steps: Timeline::from_steps(pairs(2)?),
            });
            cache.insert(locked.seq, t.clone());
            t
        }
    };
    // The commitment now: the stored base, plus (or minus) the steps
    // between the fold point and now (as `committed_at!`).
    let sum = |lo: Instant, hi: Instant| -> i64 {
        t_steps(&timelines.steps)
            .filter(|s| s.0 > lo && s.0 <= hi)
            .map(|s| s.1)
            .sum()
    };
    let allocated = if now >= locked.through {
        locked.base + sum(locked.through, now)
    } else {
        locked.base - sum(now, locked.through)
    };
    let committed = Timeline::from_steps(
        std::iter::once((now, allocated)).chain(t_steps(&timelines.steps).filter(|s| s.0 > now)),
    );
    let mut pool = locked.pool.clone();
    pool.total = timelines.supply.value_at(now);
    pool.allocated = allocated;
    Ok(State {
        seq: locked.seq,
        pool,
        supply: timelines.supply.clone(),
        committed,
        locked,
        timelines,
        applied: Timeline::default(),
        writes: 0,
    })
}

fn t_steps(t: &Timeline) -> impl Iterator<Item = (Instant, i64)> + '_ {
    t.steps().iter().copied()
}

impl State {
    /// The stored commitment and fold point after a write that changes the
    /// pool's commitment by `change` (new minus old steps of what it
    /// rewrote), folded on up to `now` as `touch` does: the value at the
    /// new fold point, from what was read under the lock. The write sets
    /// both and bumps the generation, as [`touch`] does.
    pub fn folded_after(&self, change: &Timeline, now: Instant) -> (i64, Instant) {
        if self.locked.through <= now {
            // The value at now, plus the change's.
            (self.pool.allocated + change.value_at(now), now)
        } else {
            (
                self.locked.base + change.value_at(self.locked.through),
                self.locked.through,
            )
        }
    }

    /// Applies a write that changes the pool's commitment steps by `change`
    /// (new minus old steps of what it rewrote) to this state, so that a
    /// later write in the same transaction is judged against it; answers
    /// the stored commitment and fold point the pool row must then hold.
    pub fn apply(&mut self, change: &Timeline, now: Instant) -> (i64, Instant) {
        let (base, through) = self.folded_after(change, now);
        self.locked.base = base;
        self.locked.through = through;
        self.pool.allocated += change.value_at(now);
        self.committed = self.committed.plus(change);
        self.applied = self.applied.plus(change);
        self.writes += 1;
        (base, through)
    }

    /// The stored commitment, fold point and generation increment to write
    /// after every [`State::apply`].
    pub fn row_after(&self) -> (i64, Instant, i64) {
        (self.locked.base, self.locked.through, self.writes)
    }

    /// Once the writes applied have committed (and bumped the generation by
    /// [`State::row_after`]'s increment): the cache holds the pool as they
    /// left it.
    pub fn committed(&self, cache: &TimelineCache) {
        if self.writes == 0 {
            return;
        }
        let from = self.timelines.from;
        cache.insert(
            self.seq,
            Arc::new(Timelines {
                generation: self.locked.generation + self.writes,
                from,
                supply: self.timelines.supply.clone(),
                steps: Timeline::from_steps(
                    t_steps(&self.timelines.steps)
                        .chain(t_steps(&self.applied).filter(|s| s.0 > from)),
                ),
            }),
        );
    }
}

fn steps(rows: &[Row]) -> Result<Vec<(Instant, i64)>, StoreError> {
    rows.iter()
        .map(|r| Ok((Instant::from_micros(r.try_get(0)?), r.try_get::<_, i64>(1)?)))
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        .db()
}

pub async fn supply_timeline(db: &Db<'_>, pool_seq: i64) -> Result<Timeline, StoreError> {
    let rows = db
        .query(
            "SELECT effective_at, SUM(delta)::BIGINT FROM supply_changes WHERE pool_seq = $1 GROUP BY effective_at",
            &[&pool_seq],
        )
        .await?;
    Ok(Timeline::from_steps(steps(&rows)?))
}

/// The pool's total commitment: its value at `now` as one step, then every later step.
pub async fn commitment_timeline(
    db: &Db<'_>,
    pool_seq: i64,
    now: Instant,
) -> Result<Timeline, StoreError> {
    commitment_between(db, pool_seq, now, Instant::END_OF_TIME).await
}

/// The pool's total commitment over `[from, to)`: its value at `from` as one
/// step, then the steps inside.
pub async fn commitment_between(
    db: &Db<'_>,
    pool_seq: i64,
    from: Instant,
    to: Instant,
) -> Result<Timeline, StoreError> {
    let base: i64 = db
        .query_one(
            concat!("SELECT ", committed_at!(), " FROM pools p WHERE p.seq = $2"),
            &[&from.micros(), &pool_seq],
        )
        .await?
        .try_get(0)
        .db()?;
    let rows = db
        .query(
            "SELECT at, SUM(delta)::BIGINT FROM commitment_steps WHERE pool_seq = $1 AND at > $2 AND at < $3 GROUP BY at",
            &[&pool_seq, &from.micros(), &to.micros()],
        )
        .await?;
    Ok(Timeline::from_steps(
        std::iter::once((from, base)).chain(steps(&rows)?),
    ))
}

/// Folds the steps up to `to` into the stored commitment of every pool not
/// folded that far (migration 0008). Returns the pools moved.
pub async fn fold_all(db: &Db<'_>, to: Instant) -> Result<usize, StoreError> {
    Ok(db
        .execute(
            "UPDATE pools SET committed_base = committed_base + \
             (SELECT COALESCE(SUM(c.delta), 0) FROM commitment_steps c \
              WHERE c.pool_seq = pools.seq AND c.at > pools.committed_through AND c.at <= $1)::BIGINT, \
             committed_through = $1 WHERE committed_through < $1",
            &[&to.micros()],
        )
        .await? as usize)
}

/// Where a pool's stored commitment is folded to (migration 0008).
pub async fn folded_through(db: &Db<'_>, pool_seq: i64) -> Result<Instant, StoreError> {
    let through: i64 = db
        .query_one(
            "SELECT committed_through FROM pools WHERE seq = $1",
            &[&pool_seq],
        )
        .await?
        .try_get(0)
        .db()?;
    Ok(Instant::from_micros(through))
}

/// Records a change to the pool's supply or commitments, after its
/// commitment steps were written: bumps its generation (what cached
/// forecasts are keyed by) and `updated_at`, adds `folded_delta` — what the
/// change did at or before `through`, where the pool was folded to before it
/// — to the stored commitment, and folds it on up to `now`.
pub async fn touch(
    db: &Db<'_>,
    pool_seq: i64,
    through: Instant,
    folded_delta: i64,
    now: Instant,
) -> Result<(), StoreError> {
    db.execute(
        "UPDATE pools SET committed_base = committed_base + $1 + \
         (SELECT COALESCE(SUM(c.delta), 0) FROM commitment_steps c \
          WHERE c.pool_seq = $4 AND c.at > $2 AND c.at <= $3)::BIGINT, \
         committed_through = GREATEST($2, $3), generation = generation + 1, updated_at = $3 \
         WHERE seq = $4",
        &[&folded_delta, &through.micros(), &now.micros(), &pool_seq],
    )
    .await?;
    Ok(())
}

pub async fn adjust(
    db: &Db<'_>,
    scope: &Scope,
    id: &PoolId,
    adj: NewAdjustment,
    now: Instant,
) -> Result<(Adjustment, Pool), StoreError> {
    let seq = lock(db, scope, id).await?;
    let (_, pool) = load(db, scope, id, now).await?;
    let plan = adj.plan(&supply_timeline(db, seq).await?, now)?;
    let effective_at = plan.effective_at;
    let adj_id = insert_supply_change(
        db,
        seq,
        adj.delta,
        adj.reason.as_deref(),
        adj.source,
        effective_at,
        now,
        &scope.token_id,
    )
    .await?;
    touch(db, seq, folded_through(db, seq).await?, 0, now).await?;
    let (_, pool_after) = load(db, scope, id, now).await?;
    insert_event(
        db,
        "capacity.pool.updated",
        &pool.organization_id,
        &pool.workspace_id,
        &pool_after,
        now,
    )
    .await?;
    let committed = commitment_timeline(db, seq, now).await?;
    if let Some(over) = plan.overcommitment(adj.delta, pool.overcommit_ratio, &committed, now) {
        insert_event(
            db,
            "capacity.pool_overcommitted",
            &pool.organization_id,
            &pool.workspace_id,
            capacity_store::pool_overcommitted_event(&pool_after, &over),
            now,
        )
        .await?;
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

pub async fn list_adjustments(
    db: &Db<'_>,
    scope: &Scope,
    id: &PoolId,
    page: PageRequest,
) -> Result<Page<Adjustment>, StoreError> {
    let (pool_seq, pool) = load(db, scope, id, Instant::END_OF_TIME).await?;
    let mut q = Query::new(
        "SELECT seq, id, delta, reason, source, effective_at, created_at, created_by FROM supply_changes",
    );
    q.and("pool_seq = {}", pool_seq);
    q.page("seq", page.after, page.limit);
    let rows = db
        .query_built(&q)
        .await?
        .iter()
        .map(|r| {
            let source: String = r.try_get(4)?;
            Ok((
                r.try_get::<_, i64>(0)?,
                Adjustment {
                    id: r.try_get(1)?,
                    capacity_pool_id: pool.id.clone(),
                    delta: Delta::from_thousandths(r.try_get(2)?),
                    reason: r.try_get(3)?,
                    source: SupplySource::parse(&source).unwrap_or(SupplySource::Correction),
                    effective_at: Instant::from_micros(r.try_get(5)?),
                    created_at: Instant::from_micros(r.try_get(6)?),
                    created_by: r.try_get(7)?,
                },
            ))
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        .db()?;
    Ok(Page::from_rows(rows, page.limit))
}
