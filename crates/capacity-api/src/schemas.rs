//! The shapes of the JSON answers, for the OpenAPI document. Handlers build
//! some answers from domain views (hand-written `Serialize`) or `json!`, so
//! these types describe the wire format rather than produce it; schemathesis
//! (`.ci/run`) and `tests/openapi.rs` check that every answer conforms.
#![allow(dead_code)]

use capacity_domain::model::{
    Adjustment, AllocationStatus, RequestStatus, Resource, ServiceLineStatus, UnitPrice,
};
use capacity_domain::utilisation::Percent;
use capacity_domain::{
    AllocationId, Instant, OrgId, Period, PoolId, Quantity, ResourceType, ServiceLineId, Unit,
    WorkspaceId,
};
use serde::Serialize;
use utoipa::ToSchema;

/// A capacity pool: a workspace's supply of one resource type. Figures are
/// read off the supply and commitment timelines at the time of the request.
#[derive(Serialize, ToSchema)]
#[schema(as = CapacityPool)]
pub struct PoolView {
    pub id: PoolId,
    pub workspace_id: WorkspaceId,
    pub organization_id: OrgId,
    pub resource_type: ResourceType,
    /// Supply now, per `period`.
    pub total: Quantity,
    /// Committed now, per `period`.
    pub allocated: Quantity,
    /// `total` × `overcommit_ratio` − `allocated`; negative while a supply
    /// reduction leaves the pool over-committed.
    #[schema(value_type = f64, multiple_of = 0.001)]
    pub available: f64,
    pub unit: Unit,
    pub period: Period,
    /// How far commitments may exceed supply: 1.0 = not at all.
    pub overcommit_ratio: Quantity,
    pub unit_price: Option<UnitPrice>,
    pub created_at: Instant,
    pub updated_at: Instant,
}

/// A change scheduled for the start of a later billing period.
#[derive(Serialize, ToSchema)]
pub struct PendingChange {
    pub effective_at: Instant,
    /// The new commitment per the pool's period.
    pub committed: Quantity,
    pub committed_per_week: Quantity,
    pub resources: Vec<Resource>,
    pub reason: Option<String>,
}

/// Supply committed to a service line.
#[derive(Serialize, ToSchema)]
#[schema(as = Allocation)]
pub struct AllocationView {
    pub id: AllocationId,
    pub capacity_pool_id: PoolId,
    pub service_line_id: ServiceLineId,
    pub workspace_id: WorkspaceId,
    pub resource_type: ResourceType,
    /// The commitment now, per the pool's period (authoritative).
    pub committed: Quantity,
    /// The same commitment per week (monthly pools: × 12 / 52, rounded to thousandths).
    pub committed_per_week: Quantity,
    /// Usage in the last complete ISO week.
    pub actual_last_week: Quantity,
    /// The commitment in force during the last complete ISO week (its peak
    /// if it changed within the week), per week as `committed_per_week`:
    /// `utilisation_percent` is `actual_last_week` against this, so both
    /// figures are of the same week even after the commitment changed.
    pub committed_last_week: Quantity,
    /// `actual_last_week` against `committed_last_week` (exactly, not the
    /// rounded per-week figure); `null` when nothing was committed.
    pub utilisation_percent: Option<Percent>,
    pub status: AllocationStatus,
    pub resources: Vec<Resource>,
    pub started_at: Instant,
    pub ends_at: Option<Instant>,
    pub pending_changes: Vec<PendingChange>,
    /// The service line is closed while this allocation is not.
    pub orphaned: bool,
    pub created_at: Instant,
    pub updated_at: Instant,
}

/// A supply adjustment and the pool as it stands after it.
#[derive(Serialize, ToSchema)]
pub struct AdjustmentResult {
    pub adjustment: Adjustment,
    pub pool: PoolView,
}

/// One week of an allocation's utilisation series.
#[derive(Serialize, ToSchema)]
pub struct UtilisationSeries {
    pub allocation_id: AllocationId,
    pub weeks: Vec<capacity_domain::model::UtilisationWeek>,
}

/// A workspace and the organization it belongs to, for ever.
#[derive(Serialize, ToSchema)]
#[schema(as = Workspace)]
pub struct WorkspaceView {
    pub id: WorkspaceId,
    pub organization_id: OrgId,
    pub name: Option<String>,
    pub created_at: Instant,
    pub updated_at: Instant,
}

/// A service line and its allocations.
#[derive(Serialize, ToSchema)]
pub struct ServiceLineView {
    pub id: ServiceLineId,
    pub workspace_id: WorkspaceId,
    pub organization_id: OrgId,
    pub status: ServiceLineStatus,
    pub created_at: Instant,
    pub updated_at: Instant,
    pub allocations: Vec<AllocationView>,
}

/// Pending demand: supply someone wants, not yet committed.
#[derive(Serialize, ToSchema)]
#[schema(as = DemandRequest)]
pub struct DemandRequestView {
    pub id: String,
    pub workspace_id: WorkspaceId,
    pub organization_id: OrgId,
    pub resource_type: ResourceType,
    /// Per `period` (the workspace pool's period, else the type's default).
    pub quantity: Quantity,
    pub quantity_per_week: Quantity,
    pub unit: Unit,
    pub period: Period,
    pub starts_at: Instant,
    pub ends_at: Option<Instant>,
    pub note: Option<String>,
    pub status: RequestStatus,
    pub allocation_id: Option<AllocationId>,
    pub created_at: Instant,
    pub updated_at: Instant,
}

/// The forecast figures of one ISO week, clipped to the period.
#[derive(Serialize, ToSchema)]
pub struct DemandWeek {
    pub week_start: Instant,
    pub from: Instant,
    pub to: Instant,
    pub current_committed: Quantity,
    pub pending_requests: Quantity,
    pub available_supply: Quantity,
    pub supply_gap: Quantity,
    /// The most that commitments exceed supply × ratio in this week, 0 when never.
    pub overcommitment: Quantity,
}

/// An allocation whose commitment ends inside the period.
#[derive(Serialize, ToSchema)]
pub struct ExpiringAllocation {
    pub allocation_id: AllocationId,
    pub service_line_id: ServiceLineId,
    pub committed: Quantity,
    pub ends_at: Instant,
}

/// Supply against commitments and pending demand over a period.
#[derive(Serialize, ToSchema)]
pub struct DemandForecast {
    pub workspace_id: WorkspaceId,
    pub resource_type: ResourceType,
    /// As asked: `2026-Q3`, `2026-07` or `2026-W27`.
    pub period: String,
    pub from: Instant,
    pub to: Instant,
    pub unit: Unit,
    /// The workspace's pool of this type, if it has one.
    pub capacity_pool_id: Option<PoolId>,
    /// Peak commitment over the period.
    pub current_committed: Quantity,
    /// Peak pending demand over the period.
    pub pending_requests: Quantity,
    /// Supply at the peak minus committed, never below 0.
    pub available_supply: Quantity,
    /// Pending minus available, never below 0.
    pub supply_gap: Quantity,
    /// The most that commitments exceed supply × `overcommit_ratio` at any
    /// instant of the period, 0 when never (a supply cut can leave a pool
    /// over-committed; `available_supply` then reads 0). A period with
    /// overcommitment is never described as covered.
    pub overcommitment: Quantity,
    /// A plain sentence; names any overcommitment first.
    pub recommendation: String,
    pub weeks: Vec<DemandWeek>,
    /// Commitment that ends inside the period.
    pub expiring_commitments: Quantity,
    /// How many allocations end inside the period (the list holds at most 100).
    pub expiring_allocations_count: u64,
    /// The first 100 allocations whose commitment ends inside the period, by end.
    pub expiring_allocations: Vec<ExpiringAllocation>,
    /// Supply ledger entries effective inside the period.
    pub scheduled_supply_changes: Vec<Adjustment>,
    /// From the last 12 complete weeks of usage; `null` when nothing is committed.
    pub projected_utilisation_percent: Option<Percent>,
}

/// An amount of money: a decimal string with two fractional digits.
#[derive(Serialize, ToSchema)]
pub struct Money {
    #[schema(pattern = r"^-?[0-9]+\.[0-9]{2}$", example = "3400.00")]
    pub amount: String,
    #[schema(pattern = "^[A-Z]{3}$", example = "USD")]
    pub currency: String,
}

/// One allocation's costs; the amounts are absent for an unpriced pool.
#[derive(Serialize, ToSchema)]
pub struct AllocationCost {
    pub allocation_id: AllocationId,
    pub service_line_id: ServiceLineId,
    /// Usage inside the month so far.
    pub delivered_quantity: Quantity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub committed_cost: Option<Money>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_cost_to_date: Option<Money>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projected_cost: Option<Money>,
}

#[derive(Serialize, ToSchema)]
pub struct PoolCost {
    pub capacity_pool_id: PoolId,
    pub resource_type: ResourceType,
    pub unit_price: Option<UnitPrice>,
    pub priced: bool,
    pub allocations: Vec<AllocationCost>,
}

#[derive(Serialize, ToSchema)]
pub struct CostTotal {
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: String,
    pub committed_cost: Money,
    pub delivered_cost_to_date: Money,
    pub projected_cost: Money,
}

/// Committed, delivered and projected cost of a workspace in a billing month.
#[derive(Serialize, ToSchema)]
pub struct CostReport {
    pub workspace_id: WorkspaceId,
    /// The billing month, e.g. `2026-05`.
    pub period: String,
    pub from: Instant,
    pub to: Instant,
    pub as_of: Instant,
    pub totals: Vec<CostTotal>,
    pub pools: Vec<PoolCost>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UsageStatus {
    Accepted,
    Duplicate,
    Rejected,
}

/// What became of one usage record.
#[derive(Serialize, ToSchema)]
pub struct UsageRecordResult {
    /// The caller's record id (`null` when the record had none).
    pub id: Option<String>,
    pub status: UsageStatus,
    /// Why it was rejected: `invalid_record`, `unknown_allocation`,
    /// `allocation_closed`, `occurred_in_future`, `too_old`.
    pub code: Option<String>,
    pub reason: Option<String>,
}

/// A metering batch's outcome, record by record, in the order sent.
#[derive(Serialize, ToSchema)]
pub struct UsageBatchResult {
    pub accepted: u32,
    pub duplicates: u32,
    pub rejected: u32,
    pub results: Vec<UsageRecordResult>,
}

/// Liveness or readiness.
#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// `/healthz`: the process answers, and what its clock reads (pinned by
/// `CAPACITY_NOW` in tests and demos), so a client plans from the service's
/// "now" rather than its own.
#[derive(Serialize, ToSchema)]
pub struct Liveness {
    #[schema(example = "ok")]
    pub status: &'static str,
    pub now: Instant,
}

/// Where events are delivered.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookEndpoint)]
pub struct WebhookEndpointView {
    #[schema(pattern = "^WHE-[0-9]{2}-[0-9]{6,15}$", example = "WHE-26-000001")]
    pub id: String,
    pub url: String,
    /// Event types delivered; empty or `*` = all.
    pub event_types: Vec<String>,
    pub description: Option<String>,
    /// `null` for platform endpoints, which receive every organization's events.
    pub organization_id: Option<OrgId>,
    pub created_at: Instant,
}

/// A new endpoint, with its signing secret: shown this once.
#[derive(Serialize, ToSchema)]
pub struct WebhookEndpointCreated {
    #[serde(flatten)]
    pub endpoint: WebhookEndpointView,
    /// The Standard Webhooks signing secret (`whsec_…`).
    #[schema(pattern = "^whsec_")]
    pub secret: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

/// One event's delivery to one endpoint, with its attempts so far.
#[derive(Serialize, ToSchema)]
#[schema(as = Delivery)]
pub struct DeliveryView {
    pub id: String,
    pub event_id: String,
    pub event_type: String,
    pub webhook_endpoint_id: String,
    /// `failed` once retries are given up (after 3 days).
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_status_code: Option<u16>,
    /// What the last failed attempt came to, as a class (never the
    /// connection's error text): `timeout`, `connect_failed`, `dns_failed`,
    /// `address_not_allowed`, `tls_failed`, `http_status` (the code is in
    /// `last_status_code`), `invalid_secret`, `request_failed`.
    #[schema(example = "http_status")]
    pub last_error: Option<String>,
    pub last_attempt_at: Option<Instant>,
    pub next_retry_at: Option<Instant>,
    pub delivered_at: Option<Instant>,
    pub created_at: Instant,
}
