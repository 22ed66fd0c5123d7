//! The embedded SQLite backend of the storage contract.
//!
//! - One write connection owned by the writer thread (`writer.rs`), which
//!   groups concurrent writes into one durable commit (WAL; the commit is
//!   flushed by a sync thread before any of its writes is answered).
//! - Read connections on reader threads of their own (`readers.rs`), fed
//!   by two queues: point reads and heavy reads (a cost report), so that no
//!   read runs on the async runtime and heavy reads never take every reader;
//!   a read whose caller stops waiting is interrupted.
//! - `migrate.rs` applies the embedded migrations at open.
//! - One module per resource holds its SQL: `pools.rs`, `allocations.rs`,
//!   `usage.rs`, `requests.rs` (demand, forecasts, costs), `service_lines.rs`,
//!   `webhooks.rs`, `events.rs`, `tokens.rs`, `idempotency.rs`.
#![forbid(unsafe_code)]

mod allocations;
mod events;
mod idempotency;
mod migrate;
mod pools;
mod readers;
mod requests;
mod service_lines;
mod sql;
mod tokens;
mod usage;
mod webhooks;
mod workspaces;
mod writer;

pub use sql::next_seq_sql;

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
use readers::{Lane, Readers};
use rusqlite::Connection;
use sql::DbResult;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use writer::Writer;

pub struct SqliteStore {
    writer: Writer,
    readers: Readers,
    forecasts: Arc<capacity_store::ForecastCache>,
}

/// Reader threads for point reads (gets, pages, forecasts). More than the
/// cores, so a read waiting on the disk does not hold the others up.
const POINT_READERS: usize = 4;
/// Reader threads for heavy reads (`readers.rs`): one, so heavy work takes
/// at most one core whatever how many tenants ask for it.
const HEAVY_READERS: usize = 1;

/// The file path of a `sqlite://path` or `sqlite:path` URL.
pub fn path_from_url(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let rest = rest.split('?').next().unwrap_or(rest);
    (!rest.is_empty()).then(|| PathBuf::from(rest))
}

fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).db()?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 5000;
         PRAGMA temp_store = MEMORY;",
    )
    .db()?;
    // Keep query plans stable: without this, SQLite re-plans a cached
    // statement whose plan may depend on bound values every time it is
    // reused (measured: a third of a read's CPU went to re-planning).
    // `temp_store = MEMORY` keeps the writer's savepoint journals off disk.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .db()?;
    // rusqlite keeps 16 prepared statements by default; the store has more
    // distinct queries than that, and re-preparing costs more than running them.
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

fn connect_reader(path: &Path) -> Result<Connection> {
    let c = connect(path)?;
    c.execute_batch("PRAGMA query_only = ON").db()?;
    Ok(c)
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        let path = path.as_ref().to_path_buf();
        let mut conn = connect(&path)?;
        migrate::migrate(&mut conn)?;
        // The writer's connection only. Its page cache stays valid from one
        // transaction to the next (no one else writes), and a usage batch
        // changes about a thousand index pages scattered over the current
        // week's entries: with SQLite's default 2 MiB they were read back
        // from the WAL on every batch. Readers keep the default.
        // Checkpoints run on a thread of their own (`writer.rs`).
        conn.execute_batch("PRAGMA cache_size = -65536;").db()?;
        let point = (0..POINT_READERS)
            .map(|_| connect_reader(&path))
            .collect::<Result<Vec<_>>>()?;
        let heavy = (0..HEAVY_READERS)
            .map(|_| connect_reader(&path))
            .collect::<Result<Vec<_>>>()?;
        Ok(SqliteStore {
            writer: Writer::start(conn, Some(connect(&path)?))?,
            readers: Readers::start(point, heavy)?,
            forecasts: Default::default(),
        })
    }

    pub fn open_url(url: &str) -> Result<SqliteStore> {
        let path = path_from_url(url)
            .ok_or_else(|| StoreError::Internal(format!("not a SQLite URL: {url}")))?;
        SqliteStore::open(path)
    }

    /// Reads stopped mid-statement because their caller stopped waiting
    /// (a request past its timeout), since the store opened.
    pub fn interrupted_reads(&self) -> u64 {
        self.readers
            .stats
            .interrupted
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs `f` on a point reader. Reads see the last commit.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.readers.read(Lane::Point, f).await
    }

    /// [`SqliteStore::read`] for reads of several statements: they run in
    /// one read transaction, so they see one snapshot, and the WAL read lock
    /// (two `fcntl` calls) is taken once rather than once per statement.
    async fn read_snapshot<T, F>(&self, lane: Lane, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.readers.read(lane, |c| snapshot(c, f)).await
    }
}

fn snapshot<T>(c: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    c.prepare_cached("BEGIN").db()?.execute([]).db()?;
    let result = f(c);
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = c
        .prepare_cached(end)
        .db()
        .and_then(|mut s| s.execute([]).db());
    let value = result?;
    ended?;
    Ok(value)
}

#[async_trait]
impl Store for SqliteStore {
    /// The read connections, one per reader thread (the one write
    /// connection belongs to the writer thread and is always open).
    fn connection_stats(&self) -> Option<capacity_store::ConnectionStats> {
        use std::sync::atomic::Ordering::Relaxed;
        let max = self.readers.stats.threads.load(Relaxed);
        let in_use = self.readers.stats.busy.load(Relaxed).min(max);
        Some(capacity_store::ConnectionStats {
            in_use,
            idle: max - in_use,
            max,
        })
    }

    async fn ping(&self) -> Result<()> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())).db())
            .await
    }

    async fn is_empty(&self) -> Result<bool> {
        self.read(|c| {
            c.query_row("SELECT NOT EXISTS (SELECT 1 FROM pools)", [], |r| r.get(0))
                .db()
        })
        .await
    }

    async fn reserve_ids_from(&self, prefix: MintedPrefix, next: i64) -> Result<()> {
        self.writer
            .write(move |c| {
                // The floor moves: numbers counted so far are read again.
                sql::MintedInBatch::forget();
                c.execute(
                    "UPDATE sequences SET next = max(next, ?1) WHERE prefix = ?2",
                    rusqlite::params![next, prefix.as_str()],
                )
                .db()
                .map(|_| ())
            })
            .await
    }

    async fn create_token(&self, new: NewToken, now: Instant) -> Result<TokenRecord> {
        self.writer
            .write(move |c| tokens::create(c, new, now))
            .await
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        self.read(tokens::list).await
    }

    async fn revoke_token(&self, id: &str, now: Instant) -> Result<bool> {
        let id = id.to_owned();
        self.writer
            .write(move |c| tokens::revoke(c, &id, now))
            .await
    }

    async fn authenticate(&self, hash: [u8; 32]) -> Result<Option<Principal>> {
        self.read(move |c| tokens::authenticate(c, hash)).await
    }

    async fn put_workspace(
        &self,
        scope: &Scope,
        id: &WorkspaceId,
        put: WorkspacePut,
        now: Instant,
    ) -> Result<(Workspace, bool)> {
        let (scope, id) = (scope.clone(), id.clone());
        self.writer
            .write(move |c| workspaces::put(c, &scope, &id, put, now))
            .await
    }

    async fn get_workspace(&self, scope: &Scope, id: &WorkspaceId) -> Result<Workspace> {
        let (scope, id) = (scope.clone(), id.clone());
        self.read(move |c| workspaces::get(c, &scope, &id)).await
    }

    async fn list_workspaces(&self, scope: &Scope, page: PageRequest) -> Result<Page<Workspace>> {
        let scope = scope.clone();
        self.read(move |c| workspaces::list(c, &scope, page)).await
    }

    async fn create_pool(&self, scope: &Scope, new: NewPool, now: Instant) -> Result<Pool> {
        let scope = scope.clone();
        self.writer
            .write(move |c| pools::create(c, &scope, new, now))
            .await
    }

    async fn get_pool(&self, scope: &Scope, id: &PoolId, now: Instant) -> Result<Pool> {
        let (scope, id) = (scope.clone(), id.clone());
        self.read(move |c| pools::load(c, &scope, &id, now).map(|p| p.1))
            .await
    }

    async fn list_pools(
        &self,
        scope: &Scope,
        filter: PoolFilter,
        page: PageRequest,
        now: Instant,
    ) -> Result<Page<Pool>> {
        let scope = scope.clone();
        self.read(move |c| pools::list(c, &scope, &filter, page, now))
            .await
    }

    async fn adjust_supply(
        &self,
        scope: &Scope,
        id: &PoolId,
        adjustment: NewAdjustment,
        now: Instant,
    ) -> Result<(Adjustment, Pool)> {
        let (scope, id) = (scope.clone(), id.clone());
        self.writer
            .write(move |c| pools::adjust(c, &scope, &id, adjustment, now))
            .await
    }

    async fn list_adjustments(
        &self,
        scope: &Scope,
        id: &PoolId,
        page: PageRequest,
    ) -> Result<Page<Adjustment>> {
        let (scope, id) = (scope.clone(), id.clone());
        self.read(move |c| pools::list_adjustments(c, &scope, &id, page))
            .await
    }

    async fn create_allocation(
        &self,
        scope: &Scope,
        new: NewAllocation,
        now: Instant,
    ) -> Result<Allocation> {
        let scope = scope.clone();
        // Judged before it writes anything, and only through the connection:
        // it may run again after a rollback, so it runs without a savepoint.
        self.writer
            .write_repeatable(move |c| allocations::create(c, &scope, new.clone(), now))
            .await
    }

    async fn get_allocation(
        &self,
        scope: &Scope,
        id: &AllocationId,
        now: Instant,
    ) -> Result<Allocation> {
        let (scope, id) = (scope.clone(), id.clone());
        self.read_snapshot(Lane::Point, move |c| {
            allocations::load(c, &scope, &id, now).map(|a| a.1)
        })
        .await
    }

    async fn list_allocations(
        &self,
        scope: &Scope,
        filter: AllocationFilter,
        page: PageRequest,
        now: Instant,
    ) -> Result<Page<Allocation>> {
        let scope = scope.clone();
        // A utilisation filter reads every allocation of the scope until a
        // page is full: when few match, that is the whole tenant.
        let lane = if filter.utilisation_below_tenths.is_some() {
            Lane::Heavy
        } else {
            Lane::Point
        };
        self.read_snapshot(lane, move |c| {
            allocations::list(c, &scope, &filter, page, now)
        })
        .await
    }

    async fn record_usage(
        &self,
        scope: &Scope,
        records: Vec<UsageRecord>,
        now: Instant,
    ) -> Result<Vec<UsageOutcome>> {
        let scope = scope.clone();
        // A usage batch only reads and writes through the connection, so it
        // may run again after a rollback: it runs without a savepoint.
        self.writer
            .write_repeatable(move |c| usage::record(c, &scope, &records, now))
            .await
    }

    async fn list_events(
        &self,
        scope: &Scope,
        filter: EventFilter,
        page: PageRequest,
    ) -> Result<Page<Event>> {
        let scope = scope.clone();
        self.read(move |c| events::list(c, &scope, &filter, page))
            .await
    }

    async fn get_event(&self, scope: &Scope, id: &str) -> Result<Event> {
        let (scope, id) = (scope.clone(), id.to_owned());
        self.read(move |c| events::get(c, &scope, &id)).await
    }

    async fn patch_allocation(
        &self,
        scope: &Scope,
        id: &AllocationId,
        patch: AllocationPatch,
        now: Instant,
    ) -> Result<Allocation> {
        let (scope, id) = (scope.clone(), id.clone());
        // As a create: judged before it writes, so it runs without a savepoint.
        self.writer
            .write_repeatable(move |c| allocations::patch(c, &scope, &id, patch.clone(), now))
            .await
    }

    async fn allocation_history(
        &self,
        scope: &Scope,
        id: &AllocationId,
        page: PageRequest,
    ) -> Result<Page<HistoryEntry>> {
        let (scope, id) = (scope.clone(), id.clone());
        self.read(move |c| allocations::history(c, &scope, &id, page))
            .await
    }

    async fn put_service_line(
        &self,
        scope: &Scope,
        id: &ServiceLineId,
        put: ServiceLinePut,
        now: Instant,
    ) -> Result<ServiceLine> {
        let (scope, id) = (scope.clone(), id.clone());
        self.writer
            .write(move |c| service_lines::put(c, &scope, &id, put, now))
            .await
    }

    async fn get_service_line(
        &self,
        scope: &Scope,
        id: &ServiceLineId,
        page: PageRequest,
        now: Instant,
    ) -> Result<(ServiceLine, Page<Allocation>)> {
        let (scope, id) = (scope.clone(), id.clone());
        self.read_snapshot(Lane::Point, move |c| {
            service_lines::get(c, &scope, &id, page, now)
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
        let (owner, key) = (owner.to_owned(), key.to_owned());
        self.writer
            .write(move |c| idempotency::reserve(c, &owner, &key, fingerprint, now))
            .await
    }

    async fn idempotency_finish(
        &self,
        owner: &str,
        key: &str,
        response: Option<StoredResponse>,
    ) -> Result<()> {
        let (owner, key) = (owner.to_owned(), key.to_owned());
        self.writer
            .write(move |c| idempotency::finish(c, &owner, &key, response))
            .await
    }

    async fn idempotency_purge(
        &self,
        expired_before: Instant,
        in_flight_before: Instant,
    ) -> Result<u64> {
        self.writer
            .write(move |c| idempotency::purge(c, expired_before, in_flight_before))
            .await
    }

    async fn utilisation_series(
        &self,
        scope: &Scope,
        id: &AllocationId,
        weeks: u32,
        now: Instant,
    ) -> Result<Vec<UtilisationWeek>> {
        let (scope, id) = (scope.clone(), id.clone());
        self.read(move |c| allocations::utilisation_series(c, &scope, &id, weeks, now))
            .await
    }

    async fn create_request(
        &self,
        scope: &Scope,
        new: NewDemandRequest,
        now: Instant,
    ) -> Result<DemandRequest> {
        let scope = scope.clone();
        self.writer
            .write(move |c| requests::create(c, &scope, new, now))
            .await
    }

    async fn update_request(
        &self,
        scope: &Scope,
        id: &str,
        update: RequestUpdate,
        now: Instant,
    ) -> Result<DemandRequest> {
        let (scope, id) = (scope.clone(), id.to_owned());
        self.writer
            .write(move |c| requests::update(c, &scope, &id, update, now))
            .await
    }

    async fn list_requests(
        &self,
        scope: &Scope,
        filter: RequestFilter,
        page: PageRequest,
    ) -> Result<Page<DemandRequest>> {
        let scope = scope.clone();
        self.read(move |c| requests::list(c, &scope, &filter, page))
            .await
    }

    async fn get_request(&self, scope: &Scope, id: &str) -> Result<DemandRequest> {
        let (scope, id) = (scope.clone(), id.to_owned());
        self.read(move |c| requests::get(c, &scope, &id)).await
    }

    async fn forecast_data(
        &self,
        scope: &Scope,
        workspace_id: &WorkspaceId,
        resource_type: ResourceType,
        period: PlanningPeriod,
        now: Instant,
    ) -> Result<ForecastData> {
        let (scope, ws, cache) = (scope.clone(), workspace_id.clone(), self.forecasts.clone());
        self.read(move |c| {
            requests::forecast_data(c, &scope, &ws, resource_type, period, now, &cache)
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
        let (scope, ws) = (scope.clone(), workspace_id.clone());
        // Paged, but a page of a thousand allocations is still heavy.
        self.read_snapshot(Lane::Heavy, move |c| {
            requests::cost_data(c, &scope, &ws, period, page, now)
        })
        .await
    }

    async fn create_webhook_endpoint(
        &self,
        scope: &Scope,
        new: NewWebhookEndpoint,
        now: Instant,
    ) -> Result<WebhookEndpoint> {
        let scope = scope.clone();
        self.writer
            .write(move |c| webhooks::create(c, &scope, new, now))
            .await
    }

    async fn list_webhook_endpoints(
        &self,
        scope: &Scope,
        page: PageRequest,
    ) -> Result<Page<WebhookEndpoint>> {
        let scope = scope.clone();
        self.read(move |c| webhooks::list(c, &scope, page)).await
    }

    async fn get_webhook_endpoint(&self, scope: &Scope, id: &str) -> Result<WebhookEndpoint> {
        let (scope, id) = (scope.clone(), id.to_owned());
        self.read(move |c| webhooks::get(c, &scope, &id).map(|e| e.1))
            .await
    }

    async fn delete_webhook_endpoint(&self, scope: &Scope, id: &str) -> Result<()> {
        let (scope, id) = (scope.clone(), id.to_owned());
        self.writer
            .write(move |c| webhooks::delete(c, &scope, &id))
            .await
    }

    async fn list_deliveries(
        &self,
        scope: &Scope,
        endpoint_id: &str,
        page: PageRequest,
    ) -> Result<Page<Delivery>> {
        let (scope, id) = (scope.clone(), endpoint_id.to_owned());
        self.read(move |c| webhooks::deliveries(c, &scope, &id, page))
            .await
    }

    async fn claim_deliveries(
        &self,
        now: Instant,
        limit: u32,
        lease_micros: i64,
    ) -> Result<Vec<DeliveryJob>> {
        self.writer
            .write(move |c| webhooks::claim(c, now, limit, lease_micros))
            .await
    }

    async fn record_attempt(
        &self,
        delivery_seq: i64,
        outcome: AttemptOutcome,
        now: Instant,
    ) -> Result<()> {
        self.writer
            .write(move |c| webhooks::record_attempt(c, delivery_seq, outcome, now))
            .await
    }

    async fn fold_commitments(&self, now: Instant) -> Result<usize> {
        self.writer.write(move |c| pools::fold_all(c, now)).await
    }

    async fn evaluate_low_utilisation(
        &self,
        week_start: Instant,
        threshold_tenths: i64,
        now: Instant,
    ) -> Result<Option<usize>> {
        self.writer
            .write(move |c| {
                allocations::evaluate_low_utilisation(c, week_start, threshold_tenths, now)
            })
            .await
    }
}
