//! The PostgreSQL backend of the storage contract, for several stateless
//! `capacity serve` processes sharing one database behind a load balancer.
//!
//! - A [`deadpool_postgres`] pool of `tokio-postgres` connections. Each
//!   connection is opened with a `statement_timeout`, so no request waits on
//!   the database for ever, and with `enable_seqscan = off`: every query here
//!   is meant to be driven by an index, and a connection keeps the generic
//!   plans of its prepared statements (and of the foreign-key checks) for
//!   its lifetime (`plan_cache_mode = force_generic_plan`: PostgreSQL's own
//!   choice kept planning the batch writes afresh at every execution, their
//!   arrays' lengths making the generic plan look dearer). Planned while a
//!   table was small or had no statistics yet (a new database; a server
//!   whose autovacuum is off or behind), such a plan scans the whole table
//!   and gets slower as the table grows (creates
//!   fell from ~3,700/s to ~2,400/s within 20 s as `service_lines` and
//!   `allocations` grew). A query with no index to use still scans.
//! - Every unit of work runs through [`PostgresStore`]'s `run`: writes in one
//!   READ COMMITTED transaction, multi-statement reads in one REPEATABLE READ
//!   read-only snapshot, single-statement reads on a pooled connection.
//!   Serialization failures (40001), deadlocks (40P01), a unique key taken
//!   by a concurrent transaction (23505, the rules then see the committed
//!   row) and a connection lost before COMMIT are retried from the start a
//!   bounded number of times, invisibly to the caller; a database that
//!   cannot be reached is [`StoreError::Unavailable`].
//! - **No overcommit across processes:** a write that changes a pool's
//!   supply or commitments first locks the pool row (`pools::lock`:
//!   `SELECT … FOR NO KEY UPDATE`), then reads the timelines and calls the same pure
//!   `capacity_domain::timeline::check_change` as SQLite. Writes to one pool
//!   queue on its lock; writes to different pools do not wait for each other.
//! - [`migrate`] applies the embedded migrations at open, guarded by an
//!   advisory lock so several processes may start at once.
//! - One module per resource holds its SQL, mirroring the SQLite backend:
//!   `pools`, `allocations`, `usage`, `service_lines`, `idempotency`,
//!   `requests`, `webhooks`, `events`, `tokens`; `sql` holds the shared
//!   helpers.
//! - Background work shared by several processes is claimed, never
//!   assumed: webhook deliveries with `FOR UPDATE SKIP LOCKED` and a lease
//!   under the fan-out cursor's row lock, the weekly evaluation by its
//!   `evaluations` row inserted in the same transaction as its events.
//! - With the `testing` feature, the `testing` module creates throw-away
//!   databases for test suites.
#![forbid(unsafe_code)]

mod allocations;
mod events;
mod idempotency;
pub mod migrate;
mod pools;
mod requests;
mod service_lines;
mod sql;
#[cfg(feature = "testing")]
pub mod testing;
mod tokens;
mod usage;
mod webhooks;
mod workspaces;

use async_trait::async_trait;
use capacity_domain::forecast::PlanningPeriod;
use capacity_domain::ids::MintedPrefix;
use capacity_domain::model::{
    Adjustment, Allocation, DemandRequest, Event, HistoryEntry, Pool, ServiceLine, UtilisationWeek,
};
use capacity_domain::{AllocationId, Instant, PoolId, ResourceType, ServiceLineId, WorkspaceId};
use capacity_store::{
    AllocationFilter, AllocationPatch, AttemptOutcome, CostData, Delivery, DeliveryJob,
    EventFilter, ForecastData, IdempotencyReservation, NewAdjustment, NewAllocation,
    NewDemandRequest, NewPool, NewToken, NewWebhookEndpoint, Page, PageRequest, PoolFilter,
    Principal, RequestFilter, RequestUpdate, Result, Scope, ServiceLinePut, Store, StoreError,
    StoredResponse, TokenRecord, UsageOutcome, UsageRecord, WebhookEndpoint, Workspace,
    WorkspacePut,
};
use deadpool_postgres::{Manager, ManagerConfig, Pool as PgPool, RecyclingMethod, Runtime};
use sql::{Db, DbResult, Retry};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio_postgres::NoTls;
use tokio_postgres::config::Config as PgConfig;

/// How many times a unit of work is run in all before a retryable failure is
/// answered as [`StoreError::Unavailable`].
pub const MAX_ATTEMPTS: u32 = 5;

/// How long `ping` (`/readyz`) waits for the database.
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Connection settings. [`Options::default`] is what `capacity serve` uses.
#[derive(Debug, Clone)]
pub struct Options {
    /// Most connections this process holds (each server process has its own
    /// pool: size PostgreSQL's `max_connections` for all of them).
    pub max_connections: usize,
    /// `statement_timeout` of every connection.
    pub statement_timeout: Duration,
    /// How long a request waits for a free connection, or for a new one.
    pub connect_timeout: Duration,
}

impl Options {
    /// The defaults, changed by `CAPACITY_DB_MAX_CONNECTIONS` and
    /// `CAPACITY_DB_STATEMENT_TIMEOUT_MS` when they are set.
    pub fn from_env() -> std::result::Result<Options, String> {
        let mut o = Options::default();
        let read = |name: &str| -> std::result::Result<Option<u64>, String> {
            match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .map(Some)
                    .ok_or_else(|| format!("{name} must be a positive whole number, not {v:?}")),
                _ => Ok(None),
            }
        };
        if let Some(n) = read("CAPACITY_DB_MAX_CONNECTIONS")? {
            o.max_connections = usize::try_from(n).map_err(|e| e.to_string())?;
        }
        if let Some(ms) = read("CAPACITY_DB_STATEMENT_TIMEOUT_MS")? {
            o.statement_timeout = Duration::from_millis(ms);
        }
        Ok(o)
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_connections: 16,
            statement_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

pub struct PostgresStore {
    pool: PgPool,
    forecasts: std::sync::Arc<capacity_store::ForecastCache>,
    timelines: std::sync::Arc<pools::TimelineCache>,
    batches: Batches,
}

/// The requests made in batches, one queue per kind (shared by every
/// handle on the store).
#[derive(Clone, Default)]
struct Batches {
    creates: std::sync::Arc<Combiner<allocations::CreateRequest>>,
    gets: std::sync::Arc<Combiner<allocations::GetRequest>>,
    pool_lists: std::sync::Arc<Combiner<pools::WorkspaceListRequest>>,
    forecast_reads: std::sync::Arc<Combiner<requests::ForecastRequest>>,
    patches: std::sync::Arc<Combiner<allocations::PatchRequest>>,
}

/// Writes waiting to be made together: group commit (see `combined`).
struct Combiner<R: Batched> {
    queue: std::sync::Mutex<Vec<Job<R>>>,
    /// Batches being made at once.
    runners: std::sync::Arc<tokio::sync::Semaphore>,
}

impl<R: Batched> Default for Combiner<R> {
    fn default() -> Combiner<R> {
        Combiner {
            queue: Default::default(),
            runners: std::sync::Arc::new(tokio::sync::Semaphore::new(batch_runners())),
        }
    }
}

struct Job<R: Batched> {
    request: R,
    now: Instant,
    reply: tokio::sync::oneshot::Sender<Result<R::Output>>,
}

/// A request that can be made in a batch.
trait Batched: Clone + Send + Sync + 'static {
    type Output: Send + 'static;
    /// How a batch meets the database.
    const MODE: Mode;
    /// Requests with the same key are never in one batch.
    fn key(&self) -> Option<&str> {
        None
    }
    /// Makes `requests` in one unit of work at `now`: an outcome for each,
    /// in order; an `Err` of the whole fails the batch.
    fn make(
        store: &PostgresStore,
        db: &Db<'_>,
        requests: &[Self],
        now: Instant,
    ) -> impl Future<Output = Result<Vec<Result<Self::Output>>>> + Send;
}

impl Batched for allocations::CreateRequest {
    type Output = Allocation;
    const MODE: Mode = Mode::Write;
    async fn make(
        store: &PostgresStore,
        db: &Db<'_>,
        requests: &[Self],
        now: Instant,
    ) -> Result<Vec<Result<Allocation>>> {
        allocations::create_batch(db, requests, now, &store.timelines).await
    }
}

/// Reads of allocations: one statement, no transaction.
impl Batched for allocations::GetRequest {
    type Output = Allocation;
    const MODE: Mode = Mode::Read;
    async fn make(
        _: &PostgresStore,
        db: &Db<'_>,
        requests: &[Self],
        now: Instant,
    ) -> Result<Vec<Result<Allocation>>> {
        allocations::load_batch(db, requests, now).await
    }
}

/// Lists of one workspace's pools: one statement, no transaction.
impl Batched for pools::WorkspaceListRequest {
    type Output = Page<Pool>;
    const MODE: Mode = Mode::Read;
    async fn make(
        _: &PostgresStore,
        db: &Db<'_>,
        requests: &[Self],
        now: Instant,
    ) -> Result<Vec<Result<Page<Pool>>>> {
        pools::list_batch(db, requests, now).await
    }
}

impl Batched for allocations::PatchRequest {
    type Output = Allocation;
    const MODE: Mode = Mode::Write;
    fn key(&self) -> Option<&str> {
        Some(self.id.as_str())
    }
    async fn make(
        store: &PostgresStore,
        db: &Db<'_>,
        requests: &[Self],
        now: Instant,
    ) -> Result<Vec<Result<Allocation>>> {
        allocations::patch_batch(db, requests, now, true, &store.timelines).await
    }
}

/// Forecasts whose figures are cached (see `requests::forecast_cached`).
impl Batched for requests::ForecastRequest {
    /// `None`: the pool's figures are not cached.
    type Output = Option<ForecastData>;
    const MODE: Mode = Mode::Read;
    async fn make(
        store: &PostgresStore,
        db: &Db<'_>,
        requests: &[Self],
        now: Instant,
    ) -> Result<Vec<Result<Option<ForecastData>>>> {
        requests::forecast_cached(db, requests, now, &store.forecasts).await
    }
}

/// Writes whose clocks read within this of each other may be made in one
/// batch; the batch is made at the latest of their `now`s (when it runs).
const BATCH_WINDOW_MICROS: i64 = 50_000;

/// The most writes made in one transaction.
const BATCH_MAX: usize = 64;

/// How many batches of one kind are made at once (each on its own
/// connection; while one waits for its commit's WAL flush, the next is
/// judged and written): one per core, at least two, at most eight. Fewer
/// runners make bigger batches, and a batch's fixed cost in PostgreSQL is
/// most of a request's: on two cores shared with PostgreSQL, two runners
/// answered 26 % more creates and PATCHes and 39 % more GETs than four
/// (one more still, but then one batch waiting on a lock held by another
/// process would hold up every write of its kind).
fn batch_runners() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}

/// Is this a URL the PostgreSQL backend opens?
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// A boxed future borrowing a [`Db`] for the duration of one attempt.
type Unit<'c, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'c>>;

/// Builds a [`Unit`] from an `async move` block.
macro_rules! unit {
    ($body:expr) => {
        Box::pin(async move { $body })
    };
}

/// How a unit of work meets the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// One statement on a pooled connection (its own snapshot).
    Read,
    /// Several statements that must agree: one REPEATABLE READ READ ONLY
    /// transaction, i.e. one snapshot.
    Snapshot,
    /// One READ COMMITTED read-write transaction.
    Write,
}

impl PostgresStore {
    /// Connects, applies migrations, and keeps a pool of connections.
    pub async fn open(url: &str) -> Result<PostgresStore> {
        PostgresStore::open_with(url, Options::default()).await
    }

    pub async fn open_with(url: &str, options: Options) -> Result<PostgresStore> {
        let mut config: PgConfig = url
            .parse()
            .map_err(|e| StoreError::Internal(format!("not a PostgreSQL URL: {e}")))?;
        config
            .options(format!(
                "-c statement_timeout={} -c idle_in_transaction_session_timeout={} -c enable_seqscan=off \
                 -c plan_cache_mode=force_generic_plan",
                options.statement_timeout.as_millis(),
                // A transaction left open by a stuck process must not hold a
                // pool's lock for long.
                options.statement_timeout.as_millis() * 6,
            ))
            .application_name("capacity")
            .connect_timeout(options.connect_timeout);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = PgPool::builder(manager)
            .max_size(options.max_connections)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Internal(format!("cannot build the connection pool: {e}")))?;
        let store = PostgresStore {
            pool,
            forecasts: Default::default(),
            timelines: Default::default(),
            batches: Batches::default(),
        };
        let mut client = store.client().await?;
        migrate::migrate(&mut client).await?;
        Ok(store)
    }

    /// The pool's figures (deadpool's status).
    fn stats(&self) -> capacity_store::ConnectionStats {
        let s = self.pool.status();
        capacity_store::ConnectionStats {
            in_use: s.size.saturating_sub(s.available),
            idle: s.available,
            max: s.max_size,
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Client> {
        self.pool.get().await.map_err(|e| {
            StoreError::Unavailable(match e {
                deadpool_postgres::PoolError::Backend(e) => {
                    format!("cannot connect to PostgreSQL: {}", sql::describe(&e))
                }
                other => format!("no PostgreSQL connection: {other}"),
            })
        })
    }

    /// Runs `f` as one unit of work, retrying it from the start (bounded) on
    /// failures PostgreSQL says are worth retrying. `f` is called once per
    /// attempt, so it must not consume its captures: clone them inside.
    async fn run<T, F>(&self, mode: Mode, f: F) -> Result<T>
    where
        T: Send,
        F: for<'c> Fn(&'c Db<'c>) -> Unit<'c, T> + Send + Sync,
    {
        let mut attempt = 1;
        loop {
            let (result, retry) = self.attempt(mode, &f).await;
            match (result, retry) {
                (Ok(v), _) => return Ok(v),
                (Err(e), Some(reason)) if attempt < MAX_ATTEMPTS => {
                    tracing::debug!(?reason, attempt, error = %e, "retrying a database transaction");
                    // A short, growing, jittered pause so that transactions
                    // that collided do not collide again in lock-step.
                    let base = 2u64 << attempt;
                    tokio::time::sleep(Duration::from_millis(base + jitter(base))).await;
                    attempt += 1;
                }
                (Err(e), reason) => {
                    // Exhausted retries of a unique race mean a real duplicate
                    // the rules did not catch: that is our bug, not overload.
                    return Err(match (e, reason) {
                        (StoreError::Internal(m), Some(Retry::UniqueRace)) => {
                            StoreError::Internal(m)
                        }
                        (StoreError::Internal(m), Some(_)) => StoreError::Unavailable(m),
                        (e, _) => e,
                    });
                }
            }
        }
    }

    /// Another handle on the same connections and caches (for work that
    /// must outlive the request that started it).
    fn handle(&self) -> PostgresStore {
        PostgresStore {
            pool: self.pool.clone(),
            forecasts: self.forecasts.clone(),
            timelines: self.timelines.clone(),
            batches: self.batches.clone(),
        }
    }

    /// Makes a batch (at `batch_now`) and answers each of its jobs. If the
    /// batch fails as a whole, each is made on its own, so that no request
    /// fails for another's sake.
    async fn make_batch<R: Batched>(self, jobs: Vec<Job<R>>) {
        let now = batch_now(&jobs);
        let requests: Vec<R> = jobs.iter().map(|j| j.request.clone()).collect();
        let Some(jobs) = answer(jobs, self.make(&requests, now).await) else {
            return;
        };
        for job in jobs {
            let made = self.make(std::slice::from_ref(&job.request), now).await;
            answer(vec![job], made);
        }
    }

    async fn make<R: Batched>(
        &self,
        requests: &[R],
        now: Instant,
    ) -> Result<Vec<Result<R::Output>>> {
        self.run(R::MODE, |db| {
            let (store, requests) = (self.handle(), requests.to_vec());
            unit!(R::make(&store, db, &requests, now).await)
        })
        .await
    }

    /// Group commit: the write joins a queue; whoever gets one of the
    /// runners' permits takes what is queued (up to `BATCH_MAX` whose clocks
    /// read within `BATCH_WINDOW_MICROS` of the first's, none two with the
    /// same key) and makes it in one transaction, on a
    /// task of its own so that a cancelled request never abandons the
    /// others' writes; a write taken by another runner waits for that
    /// runner's answer.
    async fn combined<R: Batched>(
        &self,
        combiner: &Combiner<R>,
        request: R,
        now: Instant,
    ) -> Result<R::Output> {
        let (reply, mut answer) = tokio::sync::oneshot::channel();
        combiner
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Job {
                request,
                now,
                reply,
            });
        let abandoned = || StoreError::Internal("a write was abandoned".into());
        loop {
            let permit = tokio::select! {
                biased;
                made = &mut answer => return made.unwrap_or_else(|_| Err(abandoned())),
                permit = combiner.runners.clone().acquire_owned() => {
                    permit.map_err(|_| abandoned())?
                }
            };
            let jobs: Vec<Job<R>> = {
                let mut queue = combiner.queue.lock().unwrap_or_else(|e| e.into_inner());
                match queue.first().map(|j| j.now) {
                    None => Vec::new(),
                    Some(at) => {
                        let (mut taken, mut kept) = (Vec::new(), Vec::new());
                        let mut keys = std::collections::HashSet::new();
                        for job in queue.drain(..) {
                            let fresh = job.request.key().is_none_or(|k| keys.insert(k.to_owned()));
                            let near =
                                (job.now.micros() - at.micros()).abs() <= BATCH_WINDOW_MICROS;
                            if near && taken.len() < BATCH_MAX && fresh {
                                taken.push(job);
                            } else {
                                kept.push(job);
                            }
                        }
                        *queue = kept;
                        taken
                    }
                }
            };
            if jobs.is_empty() {
                // Ours was taken by another runner, which answers it.
                drop(permit);
                return answer.await.unwrap_or_else(|_| Err(abandoned()));
            }
            let store = self.handle();
            let _ = tokio::spawn(async move {
                let _permit = permit;
                store.make_batch(jobs).await;
            })
            .await;
        }
    }

    async fn attempt<T, F>(&self, mode: Mode, f: &F) -> (Result<T>, Option<Retry>)
    where
        T: Send,
        F: for<'c> Fn(&'c Db<'c>) -> Unit<'c, T> + Send + Sync,
    {
        let client = match self.client().await {
            Ok(c) => c,
            Err(e) => return (Err(e), None),
        };
        if mode == Mode::Read {
            // Dropped mid-statement (a request timed out), the statement is
            // cancelled before the connection goes back to the pool.
            let mut guard = Held {
                client: Some(client),
                in_transaction: false,
            };
            let Some(client) = guard.client.as_ref() else {
                return (Err(StoreError::Internal("no connection".into())), None);
            };
            let (result, retry) = {
                let db = Db::client(client);
                let result = f(&db).await;
                (result, db.retry())
            };
            guard.release();
            return (result, retry);
        }
        let begin = match mode {
            Mode::Snapshot => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            _ => "BEGIN",
        };
        // Until the transaction is over, a dropped attempt (a request timed
        // out) must not return the connection to the pool inside it.
        let mut guard = Held {
            client: Some(client),
            in_transaction: true,
        };
        let Some(client) = guard.client.as_ref() else {
            return (Err(StoreError::Internal("no connection".into())), None);
        };
        let (result, retry, failed, begun, ended) = {
            let db = Db::tx(client, begin);
            let result = f(&db).await;
            (result, db.retry(), db.failed(), db.begun(), db.ended())
        };
        // PostgreSQL answers COMMIT of a transaction aborted by an error with
        // a silent ROLLBACK: a unit that swallowed a failed statement must
        // not be reported as done.
        let result = match result {
            Ok(_) if failed => Err(StoreError::Internal(
                "a statement failed inside the transaction".into(),
            )),
            r => r,
        };
        if ended || !begun {
            // Committed (or rolled back) by the unit's last pipeline, or
            // nothing was ever sent.
            guard.release();
            return (result, retry);
        }
        let outcome = match result {
            Ok(v) => match client.batch_execute("COMMIT").await {
                Ok(()) => (Ok(v), None),
                // A connection lost during COMMIT leaves the outcome unknown:
                // never retried (the caller may retry with an idempotency key).
                Err(e) => (
                    Err(sql::store_error(&e)),
                    sql::retry_reason(&e).filter(|r| *r != Retry::Connection),
                ),
            },
            Err(e) => match client.batch_execute("ROLLBACK").await {
                Ok(()) => (Err(e), retry),
                // Not known to be out of the transaction: the guard closes it.
                Err(_) => return (Err(e), retry),
            },
        };
        guard.release();
        outcome
    }
}

/// A pooled connection lent to an attempt: see `attempt`. Dropped before
/// [`Held::release`] (the attempt was dropped: its request timed out, or its
/// client went away), the statement it may still be running is cancelled,
/// so it stops using the database, and then the connection goes back to the
/// pool: after a ROLLBACK when it was inside a transaction.
struct Held {
    client: Option<deadpool_postgres::Client>,
    in_transaction: bool,
}

impl Held {
    /// The attempt is over: the connection goes back to the pool.
    fn release(&mut self) {
        self.client.take();
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        // The cancel goes on a connection of its own and only once it is
        // answered (PostgreSQL has signalled the backend) does the
        // connection return to the pool, so it can never stop the next
        // borrower's statement; a backend that had already finished ignores
        // it. ROLLBACK queues behind whatever the attempt had sent. Without
        // a runtime, or if ROLLBACK fails, the connection is detached from
        // the pool and closed (PostgreSQL then rolls back).
        let in_transaction = self.in_transaction;
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    let cancelled = client.cancel_token().cancel_query(NoTls).await;
                    if let Err(e) = &cancelled {
                        tracing::warn!(error = %e, "cancelling an abandoned statement failed");
                    }
                    let idle = if in_transaction {
                        client.batch_execute("ROLLBACK").await.is_ok()
                    } else {
                        cancelled.is_ok()
                    };
                    if !idle {
                        drop(deadpool_postgres::Client::take(client));
                    }
                });
            }
            Err(_) => drop(deadpool_postgres::Client::take(client)),
        }
    }
}

/// The instant a batch is made at: the latest of its writes' clocks (each
/// was read before the write waited for its batch).
fn batch_now<R: Batched>(jobs: &[Job<R>]) -> Instant {
    jobs.iter()
        .map(|j| j.now)
        .max()
        .unwrap_or(Instant::from_micros(0))
}

/// Answers each job its outcome. On a failure of the whole batch, answers
/// a lone job its error, and hands several back to be made one by one.
fn answer<R: Batched>(
    jobs: Vec<Job<R>>,
    made: Result<Vec<Result<R::Output>>>,
) -> Option<Vec<Job<R>>> {
    match made {
        Ok(outcomes) => {
            for (job, outcome) in jobs.into_iter().zip(outcomes) {
                let _ = job.reply.send(outcome);
            }
            None
        }
        Err(e) if jobs.len() == 1 => {
            if let Some(job) = jobs.into_iter().next() {
                let _ = job.reply.send(Err(e));
            }
            None
        }
        Err(_) => Some(jobs),
    }
}

/// A random number below `bound` (std's hasher keys are random per
/// instance: enough to spread retries, no extra dependency).
fn jitter(bound: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(bound);
    h.finish() % bound.max(1)
}

#[async_trait]
impl Store for PostgresStore {
    fn connection_stats(&self) -> Option<capacity_store::ConnectionStats> {
        Some(self.stats())
    }

    // Each closure clones what its unit borrows: it may run more than once,
    // and its future may only borrow the attempt's `Db`.

    async fn ping(&self) -> Result<()> {
        // A load balancer's health check must get its answer quickly, even
        // while connecting would wait for the full connect timeout.
        let ping = self.run(Mode::Read, |db| {
            unit!(db.query_one("SELECT 1", &[]).await.map(|_| ()))
        });
        tokio::time::timeout(PING_TIMEOUT, ping)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(format!(
                    "PostgreSQL did not answer within {PING_TIMEOUT:?}"
                )))
            })
    }

    async fn is_empty(&self) -> Result<bool> {
        self.run(Mode::Read, |db| {
            unit!(
                db.query_one("SELECT NOT EXISTS (SELECT 1 FROM pools)", &[])
                    .await?
                    .try_get(0)
                    .db()
            )
        })
        .await
    }

    async fn reserve_ids_from(&self, prefix: MintedPrefix, next: i64) -> Result<()> {
        // Never back: the larger of `next` and the sequence's own next number.
        // (setval is not transactional, and a nextval between the read and
        // the setval would be handed out again: this is for loading a seed
        // before serving, as `capacity demo` does.)
        let seq = sql::sequence(prefix);
        let set = format!(
            "SELECT setval('{seq}', GREATEST($1, \
             (SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM {seq})), false)"
        );
        self.run(Mode::Read, |db| {
            let set = set.clone();
            unit!(db.query_one(&set, &[&next]).await.map(|_| ()))
        })
        .await
    }

    async fn create_token(&self, new: NewToken, now: Instant) -> Result<TokenRecord> {
        self.run(Mode::Write, |db| {
            let new = new.clone();
            unit!(tokens::create(db, new, now).await)
        })
        .await
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        self.run(Mode::Read, |db| unit!(tokens::list(db).await))
            .await
    }

    async fn revoke_token(&self, id: &str, now: Instant) -> Result<bool> {
        self.run(Mode::Write, |db| {
            let id = id.to_owned();
            unit!(tokens::revoke(db, &id, now).await)
        })
        .await
    }

    async fn authenticate(&self, hash: [u8; 32]) -> Result<Option<Principal>> {
        self.run(Mode::Read, |db| unit!(tokens::authenticate(db, hash).await))
            .await
    }

    async fn put_workspace(
        &self,
        scope: &Scope,
        id: &WorkspaceId,
        put: WorkspacePut,
        now: Instant,
    ) -> Result<(Workspace, bool)> {
        self.run(Mode::Write, |db| {
            let (scope, id, put) = (scope.clone(), id.clone(), put.clone());
            unit!(workspaces::put(db, &scope, &id, put, now).await)
        })
        .await
    }

    async fn get_workspace(&self, scope: &Scope, id: &WorkspaceId) -> Result<Workspace> {
        self.run(Mode::Read, |db| {
            let (scope, id) = (scope.clone(), id.clone());
            unit!(workspaces::get(db, &scope, &id).await)
        })
        .await
    }

    async fn list_workspaces(&self, scope: &Scope, page: PageRequest) -> Result<Page<Workspace>> {
        self.run(Mode::Read, |db| {
            let scope = scope.clone();
            unit!(workspaces::list(db, &scope, page).await)
        })
        .await
    }

    async fn create_pool(&self, scope: &Scope, new: NewPool, now: Instant) -> Result<Pool> {
        self.run(Mode::Write, |db| {
            let (scope, new) = (scope.clone(), new.clone());
            unit!(pools::create(db, &scope, new, now).await)
        })
        .await
    }

    async fn get_pool(&self, scope: &Scope, id: &PoolId, now: Instant) -> Result<Pool> {
        self.run(Mode::Read, |db| {
            let (scope, id) = (scope.clone(), id.clone());
            unit!(pools::load(db, &scope, &id, now).await.map(|p| p.1))
        })
        .await
    }

    async fn list_pools(
        &self,
        scope: &Scope,
        filter: PoolFilter,
        page: PageRequest,
        now: Instant,
    ) -> Result<Page<Pool>> {
        // A workspace's pools (the usual list) are read together with
        // concurrent ones (see `pools::list_batch`).
        if let Some(workspace_id) = filter.workspace_id.clone() {
            let request = pools::WorkspaceListRequest {
                scope: scope.clone(),
                workspace_id,
                filter,
                page,
            };
            return self.combined(&self.batches.pool_lists, request, now).await;
        }
        self.run(Mode::Read, |db| {
            let (scope, filter) = (scope.clone(), filter.clone());
            unit!(pools::list(db, &scope, &filter, page, now).await)
        })
        .await
    }

    async fn adjust_supply(
        &self,
        scope: &Scope,
        id: &PoolId,
        adjustment: NewAdjustment,
        now: Instant,
    ) -> Result<(Adjustment, Pool)> {
        self.run(Mode::Write, |db| {
            let (scope, id, adjustment) = (scope.clone(), id.clone(), adjustment.clone());
            unit!(pools::adjust(db, &scope, &id, adjustment, now).await)
        })
        .await
    }

    async fn list_adjustments(
        &self,
        scope: &Scope,
        id: &PoolId,
        page: PageRequest,
    ) -> Result<Page<Adjustment>> {
        self.run(Mode::Snapshot, |db| {
            let (scope, id) = (scope.clone(), id.clone());
            unit!(pools::list_adjustments(db, &scope, &id, page).await)
        })
        .await
    }

    async fn create_allocation(
        &self,
        scope: &Scope,
        new: NewAllocation,
        now: Instant,
    ) -> Result<Allocation> {
        let request = allocations::CreateRequest {
            scope: scope.clone(),
            new,
        };
        self.combined(&self.batches.creates, request, now).await
    }

    async fn get_allocation(
        &self,
        scope: &Scope,
        id: &AllocationId,
        now: Instant,
    ) -> Result<Allocation> {
        // Concurrent reads are made together, in one statement (see
        // `allocations::load_batch`): no transaction needed.
        let request = allocations::GetRequest {
            scope: scope.clone(),
            id: id.clone(),
        };
        self.combined(&self.batches.gets, request, now).await
    }

    async fn list_allocations(
        &self,
        scope: &Scope,
        filter: AllocationFilter,
        page: PageRequest,
        now: Instant,
    ) -> Result<Page<Allocation>> {
        // A page is one statement, unless a utilisation filter walks on.
        let mode = match filter.utilisation_below_tenths {
            None => Mode::Read,
            Some(_) => Mode::Snapshot,
        };
        self.run(mode, |db| {
            let (scope, filter) = (scope.clone(), filter.clone());
            unit!(allocations::list(db, &scope, &filter, page, now).await)
        })
        .await
    }

    async fn record_usage(
        &self,
        scope: &Scope,
        records: Vec<UsageRecord>,
        now: Instant,
    ) -> Result<Vec<UsageOutcome>> {
        self.run(Mode::Write, |db| {
            let (scope, records) = (scope.clone(), records.clone());
            unit!(usage::record(db, &scope, records, now).await)
        })
        .await
    }

    async fn list_events(
        &self,
        scope: &Scope,
        filter: EventFilter,
        page: PageRequest,
    ) -> Result<Page<Event>> {
        self.run(Mode::Read, |db| {
            let (scope, filter) = (scope.clone(), filter.clone());
            unit!(events::list(db, &scope, &filter, page).await)
        })
        .await
    }

    async fn get_event(&self, scope: &Scope, id: &str) -> Result<Event> {
        self.run(Mode::Read, |db| {
            let (scope, id) = (scope.clone(), id.to_owned());
            unit!(events::get(db, &scope, &id).await)
        })
        .await
    }

    async fn patch_allocation(
        &self,
        scope: &Scope,
        id: &AllocationId,
        patch: AllocationPatch,
        now: Instant,
    ) -> Result<Allocation> {
        let request = allocations::PatchRequest {
            scope: scope.clone(),
            id: id.clone(),
            patch,
        };
        self.combined(&self.batches.patches, request, now).await
    }

    async fn allocation_history(
        &self,
        scope: &Scope,
        id: &AllocationId,
        page: PageRequest,
    ) -> Result<Page<HistoryEntry>> {
        self.run(Mode::Snapshot, |db| {
            let (scope, id) = (scope.clone(), id.clone());
            unit!(allocations::history(db, &scope, &id, page).await)
        })
        .await
    }

    async fn put_service_line(
        &self,
        scope: &Scope,
        id: &ServiceLineId,
        put: ServiceLinePut,
        now: Instant,
    ) -> Result<ServiceLine> {
        self.run(Mode::Write, |db| {
            let (scope, id, put) = (scope.clone(), id.clone(), put.clone());
            let cache = self.timelines.clone();
            unit!(service_lines::put(db, &scope, &id, put, now, &cache).await)
        })
        .await
    }

    async fn get_service_line(
        &self,
        scope: &Scope,
        id: &ServiceLineId,
        page: PageRequest,
        now: Instant,
    ) -> Result<(ServiceLine, Page<Allocation>)> {
        self.run(Mode::Snapshot, |db| {
            let (scope, id) = (scope.clone(), id.clone());
            unit!(service_lines::get(db, &scope, &id, page, now).await)
        })
        .await
    }

    async fn idempotency_reserve(
        &self,
        owner: &str,
        key: &str,
        fingerprint: [u8; 32],
        now: Instant,
    ) -> Result<IdempotencyReservation> {
        self.run(Mode::Write, |db| {
            let (owner, key) = (owner.to_owned(), key.to_owned());
            unit!(idempotency::reserve(db, &owner, &key, fingerprint, now).await)
        })
        .await
    }

    async fn idempotency_finish(
        &self,
        owner: &str,
        key: &str,
        response: Option<StoredResponse>,
    ) -> Result<()> {
        self.run(Mode::Write, |db| {
            let (owner, key, response) = (owner.to_owned(), key.to_owned(), response.clone());
            unit!(idempotency::finish(db, &owner, &key, response).await)
        })
        .await
    }

    async fn idempotency_purge(
        &self,
        expired_before: Instant,
        in_flight_before: Instant,
    ) -> Result<u64> {
        self.run(Mode::Write, |db| {
            unit!(idempotency::purge(db, expired_before, in_flight_before).await)
        })
        .await
    }

    async fn utilisation_series(
        &self,
        scope: &Scope,
        id: &AllocationId,
        weeks: u32,
        now: Instant,
    ) -> Result<Vec<UtilisationWeek>> {
        self.run(Mode::Snapshot, |db| {
            let (scope, id) = (scope.clone(), id.clone());
            unit!(allocations::utilisation_series(db, &scope, &id, weeks, now).await)
        })
        .await
    }

    async fn create_request(
        &self,
        scope: &Scope,
        new: NewDemandRequest,
        now: Instant,
    ) -> Result<DemandRequest> {
        self.run(Mode::Write, |db| {
            let (scope, new) = (scope.clone(), new.clone());
            unit!(requests::create(db, &scope, new, now).await)
        })
        .await
    }

    async fn update_request(
        &self,
        scope: &Scope,
        id: &str,
        update: RequestUpdate,
        now: Instant,
    ) -> Result<DemandRequest> {
        self.run(Mode::Write, |db| {
            let (scope, id, update) = (scope.clone(), id.to_owned(), update.clone());
            unit!(requests::update(db, &scope, &id, update, now).await)
        })
        .await
    }

    async fn list_requests(
        &self,
        scope: &Scope,
        filter: RequestFilter,
        page: PageRequest,
    ) -> Result<Page<DemandRequest>> {
        self.run(Mode::Read, |db| {
            let (scope, filter) = (scope.clone(), filter.clone());
            unit!(requests::list(db, &scope, &filter, page).await)
        })
        .await
    }

    async fn get_request(&self, scope: &Scope, id: &str) -> Result<DemandRequest> {
        self.run(Mode::Read, |db| {
            let (scope, id) = (scope.clone(), id.to_owned());
            unit!(requests::get(db, &scope, &id).await)
        })
        .await
    }

    async fn forecast_data(
        &self,
        scope: &Scope,
        workspace_id: &WorkspaceId,
        resource_type: ResourceType,
        period: PlanningPeriod,
        now: Instant,
    ) -> Result<ForecastData> {
        // One statement when the pool's figures are cached (the usual case:
        // they change only with the pool), concurrent forecasts together;
        // else everything in one snapshot.
        let request = requests::ForecastRequest {
            scope: scope.clone(),
            ws: workspace_id.clone(),
            rt: resource_type,
            period,
        };
        let cached = self
            .combined(&self.batches.forecast_reads, request, now)
            .await?;
        if let Some(data) = cached {
            return Ok(data);
        }
        self.run(Mode::Snapshot, |db| {
            let (scope, ws) = (scope.clone(), workspace_id.clone());
            let cache = self.forecasts.clone();
            unit!(
                requests::forecast_data(db, &scope, &ws, resource_type, period, now, &cache).await
            )
        })
        .await
    }

    async fn cost_data(
        &self,
        scope: &Scope,
        workspace_id: &WorkspaceId,
        period: PlanningPeriod,
        page: PageRequest,
        now: Instant,
    ) -> Result<CostData> {
        self.run(Mode::Snapshot, |db| {
            let (scope, ws) = (scope.clone(), workspace_id.clone());
            unit!(requests::cost_data(db, &scope, &ws, period, page, now).await)
        })
        .await
    }

    async fn create_webhook_endpoint(
        &self,
        scope: &Scope,
        new: NewWebhookEndpoint,
        now: Instant,
    ) -> Result<WebhookEndpoint> {
        self.run(Mode::Write, |db| {
            let (scope, new) = (scope.clone(), new.clone());
            unit!(webhooks::create(db, &scope, new, now).await)
        })
        .await
    }

    async fn list_webhook_endpoints(
        &self,
        scope: &Scope,
        page: PageRequest,
    ) -> Result<Page<WebhookEndpoint>> {
        self.run(Mode::Read, |db| {
            let scope = scope.clone();
            unit!(webhooks::list(db, &scope, page).await)
        })
        .await
    }

    async fn get_webhook_endpoint(&self, scope: &Scope, id: &str) -> Result<WebhookEndpoint> {
        self.run(Mode::Read, |db| {
            let (scope, id) = (scope.clone(), id.to_owned());
            unit!(webhooks::get(db, &scope, &id).await.map(|e| e.1))
        })
        .await
    }

    async fn delete_webhook_endpoint(&self, scope: &Scope, id: &str) -> Result<()> {
        self.run(Mode::Write, |db| {
            let (scope, id) = (scope.clone(), id.to_owned());
            unit!(webhooks::delete(db, &scope, &id).await)
        })
        .await
    }

    async fn list_deliveries(
        &self,
        scope: &Scope,
        endpoint_id: &str,
        page: PageRequest,
    ) -> Result<Page<Delivery>> {
        self.run(Mode::Snapshot, |db| {
            let (scope, id) = (scope.clone(), endpoint_id.to_owned());
            unit!(webhooks::deliveries(db, &scope, &id, page).await)
        })
        .await
    }

    async fn claim_deliveries(
        &self,
        now: Instant,
        limit: u32,
        lease_micros: i64,
    ) -> Result<Vec<DeliveryJob>> {
        self.run(Mode::Write, |db| {
            unit!(webhooks::claim(db, now, limit, lease_micros).await)
        })
        .await
    }

    async fn record_attempt(
        &self,
        delivery_seq: i64,
        outcome: AttemptOutcome,
        now: Instant,
    ) -> Result<()> {
        self.run(Mode::Write, |db| {
            let outcome = outcome.clone();
            unit!(webhooks::record_attempt(db, delivery_seq, outcome, now).await)
        })
        .await
    }

    async fn fold_commitments(&self, now: Instant) -> Result<usize> {
        self.run(Mode::Write, |db| unit!(pools::fold_all(db, now).await))
            .await
    }

    async fn evaluate_low_utilisation(
        &self,
        week_start: Instant,
        threshold_tenths: i64,
        now: Instant,
    ) -> Result<Option<usize>> {
        self.run(Mode::Write, |db| {
            unit!(
                allocations::evaluate_low_utilisation(db, week_start, threshold_tenths, now).await
            )
        })
        .await
    }
}
