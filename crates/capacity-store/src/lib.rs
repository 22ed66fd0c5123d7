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
mod usage;
pub use forecast_cache::{EXPIRING_LISTED, ForecastCache, PoolPeriod};
pub use ownership::{
    LineRegistration, Workspace, WorkspacePut, WorkspaceUse, put_line, put_workspace, use_line,
    use_workspace,
};
pub use scope::{Access, Principal, Scope, Tenant, TokenKind};
pub use usage::{USAGE_MAX_AGE_DAYS, UsageJudgement, UsageTarget, WeeklyUsage, judge_usage};

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

/// What a supply adjustment comes to, decided once the backend has read
/// the pool's supply (under its write lock).
#[derive(Debug, Clone)]
pub struct AdjustmentPlan {
    pub effective_at: Instant,
    /// The pool's supply once adjusted.
    pub supply_after: Timeline,
}

impl NewAdjustment {
    /// The rules of an adjustment: effective now or later, never before;
    /// the supply stays within [0, 10^12] units at every instant from now on.
    pub fn plan(&self, supply: &Timeline, now: Instant) -> Result<AdjustmentPlan> {
        let effective_at = self.effective_at.unwrap_or(now);
        if effective_at < now {
            return Err(StoreError::invalid(
                "effective_at",
                "must not be in the past",
            ));
        }
        let supply_after = supply.plus(&Timeline::from_steps([(
            effective_at,
            self.delta.thousandths(),
        )]));
        check_supply_range(&supply_after, now)?;
        Ok(AdjustmentPlan {
            effective_at,
            supply_after,
        })
    }
}

impl AdjustmentPlan {
    /// A reduction is a fact and is accepted; where it leaves `committed`
    /// above supply × `ratio` at some instant from now on, the first such
    /// instant (announced as `capacity.pool_overcommitted`).
    pub fn overcommitment(
        &self,
        delta: Delta,
        ratio: i64,
        committed: &Timeline,
        now: Instant,
    ) -> Option<Overcommit> {
        if delta.thousandths() >= 0 {
            return None;
        }
        capacity_domain::timeline::check_change(
            &self.supply_after,
            ratio,
            &Timeline::default(),
            committed,
            now,
        )
        .err()
    }
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

/// What creating an allocation comes to, decided once both backends have
/// read the pool (its supply and commitments, under their write lock) and
/// the named service line's registration.
#[derive(Debug, Clone)]
pub struct CreatePlan {
    pub starts_at: Instant,
    /// Per the pool's period.
    pub committed: Quantity,
    /// The commitment this adds to the pool, over time.
    pub change: Timeline,
    /// The create registers the service line (a platform naming a new one).
    pub registers_line: bool,
}

impl NewAllocation {
    /// The rules of a create (SPEC §4, §5): `ends_at` in the future and
    /// after the start, the commitment in the pool's period and within the
    /// largest quantity, the service line ([`use_line`]), and no instant from
    /// now on committed beyond supply × ratio ([`check_change`]).
    ///
    /// [`check_change`]: capacity_domain::timeline::check_change
    #[allow(clippy::too_many_arguments)]
    pub fn plan(
        &self,
        scope: &Scope,
        pool: &Pool,
        supply: &Timeline,
        committed_before: &Timeline,
        line: Option<&LineRegistration>,
        now: Instant,
    ) -> Result<CreatePlan> {
        let starts_at = self.starts_at.unwrap_or(now);
        if let Some(end) = self.ends_at {
            if end < now {
                return Err(StoreError::invalid("ends_at", "must not be in the past"));
            }
            if end <= starts_at {
                return Err(StoreError::invalid("ends_at", "must be after starts_at"));
            }
        }
        let committed = self
            .committed
            .checked_per_period(pool.period, "committed_per_week")?;
        let registers_line = use_line(scope, &self.service_line_id, line, &pool.workspace_id)?;
        let terms = [(starts_at, committed)];
        let change = capacity_domain::timeline::CommitmentSchedule {
            starts_at,
            ends_at: self.ends_at,
            closed_at: None,
            terms: &terms,
        }
        .timeline();
        capacity_domain::timeline::check_change(
            supply,
            pool.overcommit_ratio,
            committed_before,
            &change,
            now,
        )
        .map_err(|overcommit| StoreError::InsufficientCapacity {
            overcommit,
            unit: unit_name(pool.resource_type),
        })?;
        Ok(CreatePlan {
            starts_at,
            committed,
            change,
            registers_line,
        })
    }

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

/// The data of `capacity.pool_overcommitted`: the pool after the supply cut
/// and where it is first over-committed. Quantities are JSON numbers in the
/// pool's unit per its period (`Quantity`), as everywhere else in the API.
pub fn pool_overcommitted_event(
    pool_after: &impl serde::Serialize,
    over: &Overcommit,
) -> serde_json::Value {
    serde_json::json!({
        "pool": pool_after,
        "at": over.at,
        "committed": Quantity::from_thousandths(over.committed),
        "capacity": Quantity::from_thousandths(over.capacity),
        "shortfall": Quantity::from_thousandths(over.shortfall),
    })
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
    /// The history entries to append, in order (SPEC §5: "every change: who,
    /// when, reason, before/after, effective_at"); the backend adds the
    /// allocation, the actor and the time of writing.
    pub history: Vec<PlannedHistory>,
}

/// One history entry a PATCH writes.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedHistory {
    /// `updated`, `closed`, or `noted` (a reason recorded with no other change).
    pub action: &'static str,
    pub reason: Option<String>,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
    pub effective_at: Instant,
}

/// The fields of `terms` a history entry shows: those the patch sets.
fn terms_json(
    t: &capacity_domain::model::Terms,
    period: Period,
    change: &capacity_domain::model::TermsChange,
) -> serde_json::Map<String, serde_json::Value> {
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
    v
}

impl AllocationPatch {
    /// Applies the PATCH rules (SPEC §5) to `old`: the `If-Match` version,
    /// closed is final, terms scheduled for the next billing period unless
    /// immediate, `ends_at` not in the past, closing at `now`. `Ok(None)` when
    /// nothing would change and no reason is given; a reason alone is
    /// recorded at once (SPEC §5: "`ends_at`, `status` and `reason` are
    /// recorded at once"): a `noted` history entry, a new version. The
    /// no-overcommit check comes after, on the timelines the backend reads.
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
        let terms_changed = new.terms != old.terms;
        let changed = terms_changed || new.ends_at != old.ends_at || new.status != old.status;
        if !changed && self.reason.is_none() {
            return Ok(None);
        }
        // History: one entry for what applies now, one for what is scheduled.
        let mut history = Vec::new();
        let (mut before_now, mut after_now) = (serde_json::Map::new(), serde_json::Map::new());
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
            if self.effective_immediately {
                before_now.extend(before_terms);
                after_now.extend(after_terms);
            } else {
                history.push(PlannedHistory {
                    action: "updated",
                    reason: self.reason.clone(),
                    before: before_terms.into(),
                    after: after_terms.into(),
                    effective_at: terms_at,
                });
            }
        }
        if !after_now.is_empty() || history.is_empty() {
            let action = if new.status == AllocationStatus::Closed {
                "closed"
            } else if after_now.is_empty() {
                "noted"
            } else {
                "updated"
            };
            history.push(PlannedHistory {
                action,
                reason: self.reason.clone(),
                before: before_now.into(),
                after: after_now.into(),
                effective_at: now,
            });
        }
        // As it will read once written (so it need not be read back).
        new.updated_at = now;
        new.version = old.version + 1;
        new.orphaned = old.orphaned && new.status != AllocationStatus::Closed;
        let week_end = now.week_start();
        new.committed_last_week = Quantity::from_thousandths(new.commitment_timeline().peak(
            week_end.plus_micros(-capacity_domain::time::MICROS_PER_WEEK),
            week_end,
        ));
        Ok(Some(PatchPlan {
            new,
            change,
            terms_at,
            history,
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

/// An allocation's stored `resources` (a JSON list). One that does not
/// decode is an error (logged, 500), never read as "no resources".
pub fn decode_resources(stored: &str) -> Result<Vec<Resource>> {
    serde_json::from_str(stored)
        .map_err(|e| StoreError::Internal(format!("unreadable stored resources: {e}")))
}

/// What a service line's signal does to the line's open allocations.
#[derive(Debug, Clone)]
pub enum OpenAllocations {
    Keep,
    /// Each is orphaned: `capacity.allocation_orphaned`, and it still counts
    /// against supply until closed.
    Orphan,
    /// Each is closed by this PATCH.
    Close(AllocationPatch),
}

impl ServiceLinePut {
    /// Closing a line orphans its open allocations, once, when it closes;
    /// with `close_allocations` it closes them instead (again on a later
    /// signal, for any opened since). Reopening changes none of them.
    pub fn open_allocations(&self, line: &ServiceLineId, was_closed: bool) -> OpenAllocations {
        match (self.status, self.close_allocations) {
            (ServiceLineStatus::Closed, true) => OpenAllocations::Close(AllocationPatch {
                status: Some(AllocationStatus::Closed),
                reason: Some(format!("service line {line} closed")),
                ..AllocationPatch::default()
            }),
            (ServiceLineStatus::Closed, false) if !was_closed => OpenAllocations::Orphan,
            _ => OpenAllocations::Keep,
        }
    }
}

/// A stored answer to replay for a repeated `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    /// Headers worth replaying (content type, location, etag), as name/value pairs.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl StoredResponse {
    /// The stored form: headers and body as JSON.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::json!({
            "headers": self.headers.iter().map(|(n, v)| [n, v]).collect::<Vec<_>>(),
            "body": String::from_utf8_lossy(&self.body),
        })
        .to_string()
        .into_bytes()
    }

    /// Reads [`StoredResponse::encode`]'s form back. One that does not
    /// decode is an error (logged, 500), never replayed as an empty answer.
    pub fn decode(status: i64, stored: &[u8]) -> Result<StoredResponse> {
        #[derive(serde::Deserialize)]
        struct Stored {
            headers: Vec<(String, String)>,
            body: String,
        }
        let unreadable =
            |why: String| StoreError::Internal(format!("unreadable stored answer: {why}"));
        let s: Stored = serde_json::from_slice(stored).map_err(|e| unreadable(e.to_string()))?;
        Ok(StoredResponse {
            status: u16::try_from(status).map_err(|e| unreadable(e.to_string()))?,
            headers: s.headers,
            body: s.body.into_bytes(),
        })
    }
}

/// A stored key as a backend reads it: the request's fingerprint, and its
/// answer (status and [`StoredResponse::encode`]d body) once it has one.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub fingerprint: Vec<u8>,
    pub status: Option<i64>,
    pub body: Option<Vec<u8>>,
}

impl IdempotencyReservation {
    /// What a key already stored means for a request with `fingerprint`:
    /// another request (422), still running (409), or its answer to replay.
    pub fn of_stored(found: StoredKey, fingerprint: [u8; 32]) -> Result<IdempotencyReservation> {
        if found.fingerprint != fingerprint {
            return Ok(IdempotencyReservation::Mismatch);
        }
        match found.status {
            None => Ok(IdempotencyReservation::InFlight),
            Some(status) => {
                StoredResponse::decode(status, found.body.as_deref().unwrap_or_default())
                    .map(IdempotencyReservation::Replay)
            }
        }
    }
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

/// Keys one [`Store::idempotency_purge`] call deletes at most, so a purge
/// never holds the (SQLite: only) writer for long; the caller calls again
/// while it gets this many.
pub const IDEMPOTENCY_PURGE_BATCH: u64 = 1000;

/// A token as stored, decoded or refused. Every stored field must decode:
/// a workspace list that does not is an error (logged, the request fails),
/// never read as "no narrowing", which would widen the token to its whole
/// organization. Both backends read tokens through this.
pub fn token_from_stored(
    id: String,
    kind: &str,
    organization_id: Option<String>,
    workspaces: &str,
    access: &str,
    created_at: Instant,
    revoked_at: Option<Instant>,
) -> Result<TokenRecord> {
    let corrupt =
        |what: &str| StoreError::Internal(format!("token {id}: unreadable stored {what}"));
    let kind = TokenKind::parse(kind).ok_or_else(|| corrupt("kind"))?;
    let access = Access::parse(access).ok_or_else(|| corrupt("access"))?;
    let organization_id = organization_id
        .map(|o| OrgId::parse(&o).map_err(|_| corrupt("organization")))
        .transpose()?;
    let workspaces = serde_json::from_str::<Vec<String>>(workspaces)
        .map_err(|_| corrupt("workspaces"))?
        .iter()
        .map(|w| WorkspaceId::parse(w).map_err(|_| corrupt("workspaces")))
        .collect::<Result<Vec<_>>>()?;
    if kind == TokenKind::Organization && organization_id.is_none() {
        return Err(corrupt("organization"));
    }
    Ok(TokenRecord {
        id,
        kind,
        organization_id,
        workspaces,
        access,
        created_at,
        revoked_at,
    })
}

impl TokenRecord {
    /// Who this (live) token authenticates as.
    pub fn principal(self) -> Principal {
        let tenant = match (self.kind, self.organization_id) {
            (TokenKind::Organization, Some(id)) => Tenant::Organization {
                id,
                workspaces: (!self.workspaces.is_empty()).then_some(self.workspaces),
            },
            // `token_from_stored` refuses an organization token without one.
            _ => Tenant::Platform,
        };
        Principal {
            token_id: self.id,
            tenant,
            access: self.access,
        }
    }
}

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

impl NewDemandRequest {
    /// The pending demand of the request's workspace and type once this
    /// request (`quantity` per the pool's period) joins `pending`, refused
    /// (409 `pending_demand_limit`: it depends on the state) when it would exceed the largest quantity (10^12 units) at any
    /// instant: every figure a forecast derives from it stays an exact sum,
    /// never a wrapped or saturated one.
    pub fn pending_after(&self, pending: &Timeline, quantity: Quantity) -> Result<Timeline> {
        let mut steps = vec![(self.starts_at, quantity.thousandths())];
        if let Some(end) = self.ends_at {
            steps.push((end, -quantity.thousandths()));
        }
        let after = pending.plus(&Timeline::from_steps(steps));
        let end = self.ends_at.unwrap_or(Instant::END_OF_TIME);
        let peak = after.peak(self.starts_at, end);
        if peak > capacity_domain::quantity::MAX_UNITS * 1000 {
            return Err(StoreError::conflict(
                "pending_demand_limit",
                format!(
                    "this request would take the workspace's pending {} demand to {} per period, above 1000000000000",
                    self.resource_type.as_str(),
                    capacity_domain::model::show(peak)
                ),
            ));
        }
        Ok(after)
    }
}

#[derive(Debug, Clone)]
pub struct RequestUpdate {
    pub status: RequestStatus,
    pub allocation_id: Option<AllocationId>,
}

impl RequestUpdate {
    /// The request as it reads once updated (read under its lock), or why
    /// not: only a pending request changes, to `fulfilled` or `cancelled`;
    /// `allocation_id` only when fulfilled, naming an allocation of the
    /// request's workspace. `allocation_ws` is the workspace of the
    /// allocation it names, as the caller sees it (`None`: it sees none).
    pub fn apply(
        &self,
        request: &DemandRequest,
        allocation_ws: Option<&WorkspaceId>,
        now: Instant,
    ) -> Result<DemandRequest> {
        if request.status != RequestStatus::Pending {
            return Err(StoreError::conflict(
                "request_not_pending",
                format!(
                    "request {} is {}; only pending requests change",
                    request.id,
                    request.status.as_str()
                ),
            ));
        }
        if self.status == RequestStatus::Pending {
            return Err(StoreError::invalid(
                "status",
                "must be fulfilled or cancelled",
            ));
        }
        if self.allocation_id.is_some() {
            if self.status != RequestStatus::Fulfilled {
                return Err(StoreError::invalid(
                    "allocation_id",
                    "is only for fulfilled requests",
                ));
            }
            match allocation_ws {
                None => return Err(StoreError::invalid("allocation_id", "names no allocation")),
                Some(ws) if ws != &request.workspace_id => {
                    return Err(StoreError::invalid(
                        "allocation_id",
                        "belongs to another workspace",
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(DemandRequest {
            status: self.status,
            allocation_id: self.allocation_id.clone(),
            updated_at: now,
            ..request.clone()
        })
    }
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
    /// Those of its allocations with usage in those weeks that were not
    /// active through all of them (`projected_weekly_usage` averages each
    /// over the weeks it was active).
    pub part_time_usage: Vec<capacity_domain::forecast::PartTimeUsage>,
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

impl CostData {
    /// A page of the report from what a backend read: the workspace's
    /// pools, a page of its allocations, and each one's usage in `period`
    /// so far (by id; absent = none). An allocation is in the report when
    /// it commits something in the period or was used in it.
    pub fn assemble(
        pools: Vec<Pool>,
        allocations: Page<Allocation>,
        used: &std::collections::HashMap<String, i64>,
        period: PlanningPeriod,
    ) -> CostData {
        let mut out: Vec<(Pool, Vec<_>)> = pools.into_iter().map(|p| (p, Vec::new())).collect();
        for a in allocations.items {
            let used = used.get(a.id.as_str()).copied().unwrap_or(0);
            let overlaps = a.commitment_timeline().peak(period.start, period.end) > 0;
            if !(overlaps || used > 0) {
                continue;
            }
            if let Some((_, rows)) = out.iter_mut().find(|(p, _)| p.id == a.capacity_pool_id) {
                rows.push((a, Quantity::from_thousandths(used)));
            }
        }
        CostData {
            pools: out,
            next: allocations.next,
        }
    }
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

/// How many webhook endpoints one organization may have, and the platform
/// its own as many: fan-out and delivery work grow with them.
pub const MAX_WEBHOOK_ENDPOINTS: u64 = 20;

/// How many deliveries to one endpoint may be leased (in flight) at once,
/// across processes: a slow endpoint holds at most this many sending slots,
/// and its backlog waits while other endpoints' deliveries are claimed.
pub const MAX_LEASED_PER_ENDPOINT: u32 = 4;

/// A fan-out stops after the event that brings the delivery rows it wrote
/// to this many, so one claim's write stays short (on SQLite it runs on the
/// single writer, between requests' writes); the next claim carries on.
pub const FAN_OUT_ROWS: usize = 500;

/// May a tenant with `active` endpoints create one more? One rule for both
/// backends; each counts inside its creating transaction.
pub fn admit_webhook_endpoint(active: u64) -> Result<()> {
    if active >= MAX_WEBHOOK_ENDPOINTS {
        return Err(StoreError::conflict(
            "webhook_endpoint_limit",
            format!(
                "at most {MAX_WEBHOOK_ENDPOINTS} webhook endpoints per organization; delete one first"
            ),
        ));
    }
    Ok(())
}

/// A stored `event_types` list, or `None` when it does not decode as a
/// list of strings. Callers fail closed: such an endpoint receives nothing.
pub fn decode_event_types(stored: &str) -> Option<Vec<String>> {
    serde_json::from_str(stored).ok()
}

/// An endpoint as the fan-out sees it.
#[derive(Debug, Clone)]
pub struct FanOutEndpoint {
    pub seq: i64,
    /// `None` for platform endpoints (every organization's events).
    pub organization_id: Option<String>,
    /// `None` when the stored list does not decode: nothing is delivered.
    pub event_types: Option<Vec<String>>,
    /// Events after this one are delivered to it.
    pub from_event_seq: i64,
}

/// An event as the fan-out sees it.
#[derive(Debug, Clone)]
pub struct FanOutEvent {
    pub seq: i64,
    pub organization_id: String,
    pub kind: String,
}

/// Which deliveries a fan-out writes: `(endpoint seq, event seq)` pairs for
/// the events in order, stopping after the event that brings the rows to
/// [`FAN_OUT_ROWS`]; and how many events it covered (the cursor moves past
/// exactly those). One decision for both backends.
pub fn plan_fan_out(
    events: &[FanOutEvent],
    endpoints: &[FanOutEndpoint],
) -> (Vec<(i64, i64)>, usize) {
    let mut rows = Vec::new();
    for (n, event) in events.iter().enumerate() {
        if rows.len() >= FAN_OUT_ROWS {
            return (rows, n);
        }
        for e in endpoints {
            let Some(types) = &e.event_types else {
                continue;
            };
            if event.seq > e.from_event_seq
                && e.organization_id
                    .as_ref()
                    .is_none_or(|o| *o == event.organization_id)
                && capacity_domain::webhook::wants(types, &event.kind)
            {
                rows.push((e.seq, event.seq));
            }
        }
    }
    (rows, events.len())
}

/// Which due deliveries a claim takes: `candidates` are `(delivery seq,
/// endpoint seq)` in claiming order, `leased` how many of each endpoint's
/// deliveries are in flight already. Takes up to `limit`, never bringing
/// an endpoint above [`MAX_LEASED_PER_ENDPOINT`].
pub fn pick_claims(
    candidates: &[(i64, i64)],
    leased: &std::collections::HashMap<i64, u32>,
    limit: usize,
) -> Vec<i64> {
    let mut taken: std::collections::HashMap<i64, u32> = std::collections::HashMap::new();
    let mut out = Vec::new();
    for &(delivery, endpoint) in candidates {
        if out.len() >= limit {
            break;
        }
        let n = taken.entry(endpoint).or_insert(0);
        if leased.get(&endpoint).copied().unwrap_or(0) + *n < MAX_LEASED_PER_ENDPOINT {
            *n += 1;
            out.push(delivery);
        }
    }
    out
}

/// One metered usage record as sent by the platform.
#[derive(Debug, Clone)]
pub struct UsageRecord {
    pub id: String,
    pub allocation_id: AllocationId,
    pub quantity: Quantity,
    pub occurred_at: Instant,
}

/// The most usage one allocation, or one pool, meters in one ISO week, in
/// thousandths: the largest quantity (10^12 units). Every weekly total the
/// stores keep, and every sum a read makes of them, stays exact.
pub const MAX_USAGE_PER_WEEK: i64 = capacity_domain::quantity::MAX_UNITS * 1000;

/// A batch that would take a weekly usage total past [`MAX_USAGE_PER_WEEK`]:
/// refused whole (409 `usage_week_limit`), nothing of it recorded. A batch's own sums are
/// checked by [`WeeklyUsage::checked`] before they are added; the stores add
/// them to the stored totals only where the result stays within the bound
/// (a guard in their upsert) and refuse the batch where it would not.
pub fn usage_week_overflow() -> StoreError {
    StoreError::conflict(
        "usage_week_limit",
        "this batch would take an allocation's or a pool's usage in one ISO week above \
         1000000000000; nothing of it was recorded",
    )
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
    /// Deletes up to [`IDEMPOTENCY_PURGE_BATCH`] keys created before
    /// `expired_before` and up to as many still in flight that were reserved
    /// before `in_flight_before` (their request cannot still be running);
    /// answers how many went.
    async fn idempotency_purge(
        &self,
        expired_before: Instant,
        in_flight_before: Instant,
    ) -> Result<u64>;

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
    /// One demand request; another organization's (or a narrowed token's
    /// other workspace's) is `NotFound`, as a missing one.
    async fn get_request(&self, scope: &Scope, id: &str) -> Result<DemandRequest>;
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
