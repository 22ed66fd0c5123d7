//! The storage contract: one trait every backend implements, the tenant
//! scope every method takes first (so no query can forget the tenant), the
//! commands and filters it accepts, and its error type.
//!
//! Backends open the transactions; the decisions inside them (may this
//! allocation be made?) are pure functions of `capacity-domain`, so SQLite
//! and PostgreSQL cannot disagree.
#![forbid(unsafe_code)]

mod forecast_cache;
mod ownership;
mod scope;
pub use forecast_cache::{EXPIRING_LISTED, ForecastCache, PoolPeriod};
pub use ownership::{
    LineRegistration, Workspace, WorkspacePut, WorkspaceUse, put_line, put_workspace, use_line,
    use_workspace,
};
pub use scope::{Access, Principal, Scope, Tenant, TokenKind};

use async_trait::async_trait;
use capacity_domain::forecast::PlanningPeriod;
use capacity_domain::ids::MintedPrefix;
use capacity_domain::model::{
    Adjustment, Allocation, AllocationStatus, DemandRequest, Event, HistoryEntry, Pool,
    RequestStatus, Resource, ServiceLine, ServiceLineStatus, SupplySource, UnitPrice,
    UtilisationWeek,
};
use capacity_domain::timeline::Timeline;
use capacity_domain::{
    AllocationId, Delta, Instant, OrgId, Overcommit, Period, PoolId, Quantity, ResourceType,
    ServiceLineId, WorkspaceId,
};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Missing, or not visible to this scope: the two are indistinguishable.
    #[error("not found")]
    NotFound,
    /// An object a request names (in its body or a filter) is missing or
    /// not visible to this scope: answered as "<what> not found", the same
    /// for both.
    #[error("{0} not found")]
    Missing(&'static str),
    /// The change would overcommit the pool (SPEC §4).
    #[error("insufficient capacity")]
    InsufficientCapacity {
        overcommit: Overcommit,
        unit: &'static str,
    },
    /// A rule about the current state forbids the change (409).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// Input that is well-formed but not acceptable (422).
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// `If-Match` named another version (412).
    #[error("the resource has changed since version {expected}")]
    PreconditionFailed { expected: i64 },
    /// The scope may not do this (403).
    #[error("{0}")]
    Forbidden(&'static str),
    /// The database is unreachable or overloaded; worth retrying (503).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("storage failure: {0}")]
    Internal(String),
}

impl StoreError {
    pub fn conflict(code: &'static str, message: impl Into<String>) -> StoreError {
        StoreError::Conflict {
            code,
            message: message.into(),
        }
    }
    pub fn invalid(field: &'static str, message: impl Into<String>) -> StoreError {
        StoreError::Invalid {
            field,
            message: message.into(),
        }
    }
}

/// A backend's database connections, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Connections lent out to requests right now.
    pub in_use: usize,
    /// Open connections waiting in the pool.
    pub idle: usize,
    /// The most the pool will open.
    pub max: usize,
}

/// A page request: at most `limit` items after the item with sequence `after`.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub limit: u32,
    pub after: Option<i64>,
}

/// A page of results; `next` is the sequence to continue after, if any.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<i64>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows fetched in order.
    pub fn from_rows(mut rows: Vec<(i64, T)>, limit: u32) -> Page<T> {
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next = if has_more {
            rows.last().map(|r| r.0)
        } else {
            None
        };
        Page {
            items: rows.into_iter().map(|r| r.1).collect(),
            next,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewToken {
    pub kind: TokenKind,
    pub organization_id: Option<OrgId>,
    pub workspaces: Vec<WorkspaceId>,
    pub access: Access,
    /// SHA-256 of the secret; the secret itself is never stored.
    pub hash: [u8; 32],
}

#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub id: String,
    pub kind: TokenKind,
    pub organization_id: Option<OrgId>,
    pub workspaces: Vec<WorkspaceId>,
    pub access: Access,
    pub created_at: Instant,
    pub revoked_at: Option<Instant>,
}

#[derive(Debug, Clone)]
pub struct NewPool {
    pub workspace_id: WorkspaceId,
    pub organization_id: OrgId,
    pub resource_type: ResourceType,
    pub period: Period,
    pub total: Quantity,
    pub overcommit_ratio: i64,
    pub unit_price: Option<UnitPrice>,
}

#[derive(Debug, Clone, Default)]
pub struct PoolFilter {
    pub workspace_id: Option<WorkspaceId>,
    pub organization_id: Option<OrgId>,
    pub resource_type: Option<ResourceType>,
}

#[derive(Debug, Clone)]
pub struct NewAdjustment {
    pub delta: Delta,
    pub reason: Option<String>,
    pub source: SupplySource,
    /// `None` = now. Never before now.
    pub effective_at: Option<Instant>,
}

/// A commitment as written: per the pool's period, or per week (converted).
#[derive(Debug, Clone, Copy)]
pub enum CommitmentInput {
    PerPeriod(Quantity),
    PerWeek(Quantity),
}

impl CommitmentInput {
    pub fn per_period(self, period: Period) -> Quantity {
        match self {
            CommitmentInput::PerPeriod(q) => q,
            CommitmentInput::PerWeek(q) => period.from_per_week(q),
        }
    }
    /// [`Self::per_period`], refusing a per-week figure that converts to
    /// more than the largest quantity (10^12 units): a month is 52/12 weeks.
    pub fn checked_per_period(self, period: Period, field: &'static str) -> Result<Quantity> {
        let q = self.per_period(period);
        if q.thousandths() > capacity_domain::quantity::MAX_UNITS * 1000 {
            return Err(StoreError::invalid(
                field,
                format!(
                    "is more than 1000000000000 per {} once converted",
                    match period {
                        Period::Hourly => "hour",
                        Period::Daily => "day",
                        Period::Weekly => "week",
                        Period::Monthly => "month",
                    }
                ),
            ));
        }
        Ok(q)
    }
}

#[derive(Debug, Clone)]
pub struct NewAllocation {
    pub capacity_pool_id: PoolId,
    pub service_line_id: ServiceLineId,
    pub committed: CommitmentInput,
    pub resources: Vec<Resource>,
    /// `None` = now; may be in the past (backfill).
    pub starts_at: Option<Instant>,
    pub ends_at: Option<Instant>,
}

impl NewAllocation {
    /// The allocation this creates, as it reads once written (so it need not
    /// be read back): minted `id`, on `pool`, committing `committed` (in the
    /// pool's period) from `starts_at`, with no usage yet.
    pub fn record(
        self,
        id: AllocationId,
        pool: &Pool,
        starts_at: Instant,
        committed: Quantity,
        now: Instant,
    ) -> Allocation {
        let mut a = Allocation {
            id,
            capacity_pool_id: pool.id.clone(),
            workspace_id: pool.workspace_id.clone(),
            organization_id: pool.organization_id.clone(),
            service_line_id: self.service_line_id,
            resource_type: pool.resource_type,
            period: pool.period,
            status: AllocationStatus::Active,
            starts_at,
            ends_at: self.ends_at,
            closed_at: None,
            terms: vec![capacity_domain::model::Terms {
                effective_at: starts_at,
                committed,
                resources: self.resources,
                reason: None,
            }],
            actual_last_week: Quantity::ZERO,
            committed_last_week: Quantity::ZERO,
            // Allocations are made only for active service lines.
            orphaned: false,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let week_end = now.week_start();
        a.committed_last_week = Quantity::from_thousandths(a.commitment_timeline().peak(
            week_end.plus_micros(-capacity_domain::time::MICROS_PER_WEEK),
            week_end,
        ));
        a
    }
}

#[derive(Debug, Clone, Default)]
pub struct AllocationFilter {
    pub workspace_id: Option<WorkspaceId>,
    pub status: Option<AllocationStatus>,
    pub service_line_id: Option<ServiceLineId>,
    pub resource_type: Option<ResourceType>,
    pub capacity_pool_id: Option<PoolId>,
    pub orphaned: Option<bool>,
    /// Only allocations whose last-week utilisation is below this, in tenths of a percent.
    pub utilisation_below_tenths: Option<i64>,
}

/// Allocations a list filtered by utilisation looks at, per item of the
/// page asked for, before it answers. Utilisation is computed, not stored,
/// so a filter that few allocations meet would otherwise read the whole
/// scope in one request; past this, the page answers what it found (maybe
/// nothing) with a cursor after the last allocation it looked at.
pub const UTILISATION_SCAN_PER_ITEM: usize = 50;

/// A merge-patch of an allocation (SPEC §5): `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct AllocationPatch {
    pub committed: Option<CommitmentInput>,
    pub resources: Option<Vec<Resource>>,
    /// `Some(None)` clears `ends_at`.
    pub ends_at: Option<Option<Instant>>,
    pub status: Option<AllocationStatus>,
    pub reason: Option<String>,
    /// Apply commitment and resource changes now instead of at the start of
    /// the next billing period.
    pub effective_immediately: bool,
    /// The version the caller last saw (`If-Match`).
    pub if_match: Option<i64>,
}

/// Refuses a supply timeline that leaves `[0, 10^12]` units from `now` on
/// (the 422 both backends answer to such an adjustment).
pub fn check_supply_range(after: &Timeline, now: Instant) -> Result<()> {
    match capacity_domain::timeline::supply_out_of_range(after, now) {
        None => Ok(()),
        Some((t, v)) => {
            let why = if v < 0 {
                "negative"
            } else {
                "larger than 1000000000000"
            };
            Err(StoreError::invalid(
                "delta",
                format!(
                    "would make the pool's supply {why} at {t} (supply would be {})",
                    capacity_domain::model::show(v)
                ),
            ))
        }
    }
}

/// What a PATCH makes of an allocation, decided once both backends have read
/// the allocation under their write lock.
#[derive(Debug, Clone)]
pub struct PatchPlan {
    /// The allocation as it reads once the patch is written.
    pub new: Allocation,
    /// The terms fields the patch sets (for history).
    pub change: capacity_domain::model::TermsChange,
    /// When the terms change takes effect: now, or the next billing period.
    pub terms_at: Instant,
}

impl AllocationPatch {
    /// Applies the PATCH rules (SPEC §5) to `old`: the `If-Match` version,
    /// closed is final, terms scheduled for the next billing period unless
    /// immediate, `ends_at` not in the past, closing at `now`. `Ok(None)` when
    /// nothing would change. The no-overcommit check comes after, on the
    /// timelines the backend reads.
    pub fn plan(&self, old: &Allocation, now: Instant) -> Result<Option<PatchPlan>> {
        if let Some(expected) = self.if_match
            && expected != old.version
        {
            return Err(StoreError::PreconditionFailed { expected });
        }
        if old.status == AllocationStatus::Closed {
            return Err(StoreError::conflict(
                "allocation_closed",
                format!("allocation {} is closed; closed is final", old.id),
            ));
        }
        let mut new = old.clone();
        let change = capacity_domain::model::TermsChange {
            committed: self
                .committed
                .map(|c| c.checked_per_period(old.period, "committed_per_week"))
                .transpose()?,
            resources: self.resources.clone(),
        };
        let terms_at = if self.effective_immediately {
            now
        } else {
            now.next_month_start()
        };
        if !change.is_empty() {
            new.terms = capacity_domain::model::apply_terms_change(
                &old.terms,
                &change,
                terms_at,
                self.effective_immediately,
                self.reason.as_deref(),
            );
        }
        if let Some(ends_at) = self.ends_at {
            if let Some(end) = ends_at {
                if end < now {
                    return Err(StoreError::invalid("ends_at", "must not be in the past"));
                }
                if end <= old.starts_at {
                    return Err(StoreError::invalid("ends_at", "must be after started_at"));
                }
            }
            new.ends_at = ends_at;
        }
        if let Some(status) = self.status {
            new.status = status;
            if status == AllocationStatus::Closed {
                new.closed_at = Some(now);
            }
        }
        let changed =
            new.terms != old.terms || new.ends_at != old.ends_at || new.status != old.status;
        // As it will read once written (so it need not be read back).
        new.updated_at = now;
        new.version = old.version + 1;
        new.orphaned = old.orphaned && new.status != AllocationStatus::Closed;
        let week_end = now.week_start();
        new.committed_last_week = Quantity::from_thousandths(new.commitment_timeline().peak(
            week_end.plus_micros(-capacity_domain::time::MICROS_PER_WEEK),
            week_end,
        ));
        Ok(changed.then_some(PatchPlan {
            new,
            change,
            terms_at,
        }))
    }
}

/// A lifecycle signal for a service line from the platform.
#[derive(Debug, Clone)]
pub struct ServiceLinePut {
    pub workspace_id: WorkspaceId,
    /// Needed only when the workspace has not been seen before.
    pub organization_id: Option<OrgId>,
    pub status: ServiceLineStatus,
    /// When closing: close the line's open allocations too (else they are orphaned).
    pub close_allocations: bool,
}

/// A stored answer to replay for a repeated `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    /// Headers worth replaying (content type, location, etag), as name/value pairs.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyReservation {
    /// The key is new: the caller goes ahead and must finish it.
    Reserved,
    /// Same key, same request, already answered.
    Replay(StoredResponse),
    /// Same key, another request (422).
    Mismatch,
    /// Same key, the first request is still running (409).
    InFlight,
}

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_TTL_MICROS: i64 = 24 * 3600 * 1_000_000;

/// A new demand request. `quantity` is per the workspace pool's period.
#[derive(Debug, Clone)]
pub struct NewDemandRequest {
    pub workspace_id: WorkspaceId,
    /// Needed only when the workspace has not been seen before.
    pub organization_id: Option<OrgId>,
    pub resource_type: ResourceType,
    pub quantity: CommitmentInput,
    pub starts_at: Instant,
    pub ends_at: Option<Instant>,
    pub note: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RequestUpdate {
    pub status: RequestStatus,
    pub allocation_id: Option<AllocationId>,
}

#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    pub workspace_id: Option<WorkspaceId>,
    pub resource_type: Option<ResourceType>,
    pub status: Option<RequestStatus>,
}

/// An allocation whose commitment ends inside a forecast period.
#[derive(Debug, Clone)]
pub struct Expiring {
    pub allocation_id: AllocationId,
    pub service_line_id: ServiceLineId,
    pub committed: Quantity,
    pub ends_at: Instant,
}

/// What a demand forecast reads, for one workspace and resource type.
#[derive(Debug, Clone)]
pub struct ForecastData {
    /// The workspace's pool of that type, if it has one.
    pub pool: Option<Pool>,
    /// The pool's supply and commitments over the period (shared with the
    /// store's [`ForecastCache`]).
    pub pool_period: std::sync::Arc<PoolPeriod>,
    pub pending: Timeline,
    /// Usage of the pool's allocations over the last 12 complete weeks.
    pub usage_last_12_weeks: Quantity,
}

/// What a page of a cost report reads: every priced or unpriced pool of a
/// workspace, each with those of the page's allocations that are its and
/// count in the month (committed in it, or used in it so far), with their
/// usage inside the month so far. A page is the workspace's allocations
/// after `PageRequest::after`, by sequence, up to `limit` of them looked at
/// (so it may show fewer); `next` continues after the last one looked at.
#[derive(Debug, Clone)]
pub struct CostData {
    pub pools: Vec<(Pool, Vec<(Allocation, Quantity)>)>,
    pub next: Option<i64>,
}

/// A webhook endpoint to create. The secret is minted by the caller (API)
/// and shown once.
#[derive(Debug, Clone)]
pub struct NewWebhookEndpoint {
    pub url: String,
    /// Event types to deliver; empty = all.
    pub event_types: Vec<String>,
    pub secret: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct WebhookEndpoint {
    pub id: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub description: Option<String>,
    /// `None` for platform endpoints, which receive every organization's events.
    pub organization_id: Option<OrgId>,
    pub created_at: Instant,
    #[serde(skip)]
    pub secret: String,
}

/// One event's delivery to one endpoint, with its attempts so far.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Delivery {
    pub id: String,
    pub event_id: String,
    pub event_type: String,
    pub webhook_endpoint_id: String,
    /// `pending`, `delivered` or `failed` (given up).
    pub status: String,
    pub attempts: u32,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<Instant>,
    pub next_retry_at: Option<Instant>,
    pub delivered_at: Option<Instant>,
    pub created_at: Instant,
}

/// A delivery claimed for sending: everything the sender needs.
#[derive(Debug, Clone)]
pub struct DeliveryJob {
    pub delivery_seq: i64,
    pub event_id: String,
    pub event_created_at: Instant,
    pub payload: String,
    pub url: String,
    pub secret: String,
    pub attempts: u32,
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub delivered: bool,
    /// When to retry, or `None` to give up (ignored when delivered).
    pub next_retry_at: Option<Instant>,
}

/// One metered usage record as sent by the platform.
#[derive(Debug, Clone)]
pub struct UsageRecord {
    pub id: String,
    pub allocation_id: AllocationId,
    pub quantity: Quantity,
    pub occurred_at: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageOutcome {
    Accepted,
    Duplicate,
    Rejected { code: &'static str, reason: String },
}

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub kind: Option<String>,
    pub created_after: Option<Instant>,
}

/// The storage contract. Every tenant-facing method takes the caller's
/// [`Scope`] first and answers [`StoreError::NotFound`] for anything outside
/// it, exactly as for things that do not exist. `now` comes from the one
/// process clock, never from the database.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Is the database reachable?
    async fn ping(&self) -> Result<()>;
    /// The connection pool's figures, for `/metrics`; `None` where the
    /// backend has no pool to speak of.
    fn connection_stats(&self) -> Option<ConnectionStats> {
        None
    }
    /// Has nothing been created yet (no pools)?
    async fn is_empty(&self) -> Result<bool>;
    /// Makes the next minted id of `prefix` at least `next` (seeding).
    async fn reserve_ids_from(&self, prefix: MintedPrefix, next: i64) -> Result<()>;

    async fn create_token(&self, new: NewToken, now: Instant) -> Result<TokenRecord>;
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>>;
    /// `false` if no such live token.
    async fn revoke_token(&self, id: &str, now: Instant) -> Result<bool>;
    /// The live token with this secret hash.
    async fn authenticate(&self, hash: [u8; 32]) -> Result<Option<Principal>>;

    /// Registers a workspace to an organization, or renames it
    /// ([`put_workspace`] decides); `true` when it was not registered before.
    async fn put_workspace(
        &self,
        scope: &Scope,
        id: &WorkspaceId,
        put: WorkspacePut,
        now: Instant,
    ) -> Result<(Workspace, bool)>;
    async fn get_workspace(&self, scope: &Scope, id: &WorkspaceId) -> Result<Workspace>;
    async fn list_workspaces(&self, scope: &Scope, page: PageRequest) -> Result<Page<Workspace>>;

    async fn create_pool(&self, scope: &Scope, new: NewPool, now: Instant) -> Result<Pool>;
    async fn get_pool(&self, scope: &Scope, id: &PoolId, now: Instant) -> Result<Pool>;
    async fn list_pools(
        &self,
        scope: &Scope,
        filter: PoolFilter,
        page: PageRequest,
        now: Instant,
    ) -> Result<Page<Pool>>;
    async fn adjust_supply(
        &self,
        scope: &Scope,
        id: &PoolId,
        adjustment: NewAdjustment,
        now: Instant,
    ) -> Result<(Adjustment, Pool)>;
    async fn list_adjustments(
        &self,
        scope: &Scope,
        id: &PoolId,
        page: PageRequest,
    ) -> Result<Page<Adjustment>>;

    async fn create_allocation(
        &self,
        scope: &Scope,
        new: NewAllocation,
        now: Instant,
    ) -> Result<Allocation>;
    async fn get_allocation(
        &self,
        scope: &Scope,
        id: &AllocationId,
        now: Instant,
    ) -> Result<Allocation>;
    async fn list_allocations(
        &self,
        scope: &Scope,
        filter: AllocationFilter,
        page: PageRequest,
        now: Instant,
    ) -> Result<Page<Allocation>>;

    /// Applies a merge-patch in one transaction: version check, the
    /// no-overcommit rule for any increase, history and events.
    async fn patch_allocation(
        &self,
        scope: &Scope,
        id: &AllocationId,
        patch: AllocationPatch,
        now: Instant,
    ) -> Result<Allocation>;
    /// Every change, oldest first.
    async fn allocation_history(
        &self,
        scope: &Scope,
        id: &AllocationId,
        page: PageRequest,
    ) -> Result<Page<HistoryEntry>>;

    /// Creates or updates a service line; closing orphans (or closes) its allocations.
    async fn put_service_line(
        &self,
        scope: &Scope,
        id: &ServiceLineId,
        put: ServiceLinePut,
        now: Instant,
    ) -> Result<ServiceLine>;
    /// A service line and a page of its allocations.
    async fn get_service_line(
        &self,
        scope: &Scope,
        id: &ServiceLineId,
        page: PageRequest,
        now: Instant,
    ) -> Result<(ServiceLine, Page<Allocation>)>;

    /// Reserves `key` for `owner` (a token), or says why not.
    async fn idempotency_reserve(
        &self,
        owner: &str,
        key: &str,
        fingerprint: [u8; 32],
        now: Instant,
    ) -> Result<IdempotencyReservation>;
    /// Stores the answer for a reserved key, or releases the key (`None`)
    /// so a retry runs afresh.
    async fn idempotency_finish(
        &self,
        owner: &str,
        key: &str,
        response: Option<StoredResponse>,
    ) -> Result<()>;

    /// The weekly utilisation series of the last `weeks` complete ISO weeks, oldest first.
    async fn utilisation_series(
        &self,
        scope: &Scope,
        id: &AllocationId,
        weeks: u32,
        now: Instant,
    ) -> Result<Vec<UtilisationWeek>>;

    /// Records pending demand; a request current supply cannot meet records
    /// `capacity.supply_gap` in the same transaction.
    async fn create_request(
        &self,
        scope: &Scope,
        new: NewDemandRequest,
        now: Instant,
    ) -> Result<DemandRequest>;
    /// `pending` → `fulfilled` or `cancelled`.
    async fn update_request(
        &self,
        scope: &Scope,
        id: &str,
        update: RequestUpdate,
        now: Instant,
    ) -> Result<DemandRequest>;
    async fn list_requests(
        &self,
        scope: &Scope,
        filter: RequestFilter,
        page: PageRequest,
    ) -> Result<Page<DemandRequest>>;
    /// Everything a forecast of `period` reads.
    async fn forecast_data(
        &self,
        scope: &Scope,
        workspace_id: &WorkspaceId,
        resource_type: ResourceType,
        period: PlanningPeriod,
        now: Instant,
    ) -> Result<ForecastData>;
    /// A page of what a cost report for the billing month `period` reads.
    async fn cost_data(
        &self,
        scope: &Scope,
        workspace_id: &WorkspaceId,
        period: PlanningPeriod,
        page: PageRequest,
        now: Instant,
    ) -> Result<CostData>;

    async fn create_webhook_endpoint(
        &self,
        scope: &Scope,
        new: NewWebhookEndpoint,
        now: Instant,
    ) -> Result<WebhookEndpoint>;
    async fn list_webhook_endpoints(
        &self,
        scope: &Scope,
        page: PageRequest,
    ) -> Result<Page<WebhookEndpoint>>;
    async fn get_webhook_endpoint(&self, scope: &Scope, id: &str) -> Result<WebhookEndpoint>;
    /// Deletes the endpoint; its pending deliveries are dropped.
    async fn delete_webhook_endpoint(&self, scope: &Scope, id: &str) -> Result<()>;
    async fn list_deliveries(
        &self,
        scope: &Scope,
        endpoint_id: &str,
        page: PageRequest,
    ) -> Result<Page<Delivery>>;
    /// Fans new events out to subscribed endpoints, then claims up to `limit`
    /// due deliveries for `lease_micros` so no other process sends them meanwhile.
    async fn claim_deliveries(
        &self,
        now: Instant,
        limit: u32,
        lease_micros: i64,
    ) -> Result<Vec<DeliveryJob>>;
    /// Records one attempt of a claimed delivery.
    async fn record_attempt(
        &self,
        delivery_seq: i64,
        outcome: AttemptOutcome,
        now: Instant,
    ) -> Result<()>;

    /// Folds every pool's commitment steps up to `now` into its stored
    /// running total, so reads of "now" sum only the steps since (a
    /// background chore; results never depend on it). Returns the pools moved.
    async fn fold_commitments(&self, now: Instant) -> Result<usize>;

    /// The weekly evaluation: records `capacity.utilisation_low` for every
    /// active allocation whose utilisation in the week before `week_start`
    /// is below `threshold_tenths`. Runs once per week however many
    /// processes call it: `None` when the week was already evaluated.
    async fn evaluate_low_utilisation(
        &self,
        week_start: Instant,
        threshold_tenths: i64,
        now: Instant,
    ) -> Result<Option<usize>>;

    /// Records a batch in one transaction; one outcome per record, in order.
    async fn record_usage(
        &self,
        scope: &Scope,
        records: Vec<UsageRecord>,
        now: Instant,
    ) -> Result<Vec<UsageOutcome>>;

    async fn list_events(
        &self,
        scope: &Scope,
        filter: EventFilter,
        page: PageRequest,
    ) -> Result<Page<Event>>;
    async fn get_event(&self, scope: &Scope, id: &str) -> Result<Event>;
}

/// The unit name used in capacity messages.
pub fn unit_name(resource_type: ResourceType) -> &'static str {
    match resource_type.unit() {
        capacity_domain::Unit::HoursPerWeek => "hours_per_week",
        capacity_domain::Unit::VcpuHours => "vcpu_hours",
        capacity_domain::Unit::Gigabytes => "gigabytes",
        capacity_domain::Unit::Credits => "credits",
        capacity_domain::Unit::Units => "units",
    }
}
