//! The records the store hands back, and their public JSON views. Views are
//! built from a record and `now`, so every "now" figure (current commitment,
//! pending changes) is read off the timelines at the instant of the request.

use crate::ids::{AllocationId, OrgId, PoolId, ServiceLineId, WorkspaceId};
use crate::quantity::{Delta, Quantity, format_thousandths};
use crate::resource::{Period, ResourceType, Unit};
use crate::time::Instant;
use crate::timeline::{CommitmentSchedule, Timeline};
use crate::utilisation::{Percent, weekly_utilisation};
use serde::{Deserialize, Serialize, Serializer};

/// A price per unit of a pool's resource: an exact decimal and an ISO 4217 code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnitPrice {
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[0-9]{1,13}(\.[0-9]{1,6})?$", example = "85.00")
    )]
    pub amount: String,
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Z]{3}$", example = "USD"))]
    pub currency: String,
}

impl UnitPrice {
    /// Checks shape: amount a non-negative decimal with at most 6 fractional
    /// digits, currency three upper-case letters.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        let (int, frac) = self.amount.split_once('.').unwrap_or((&self.amount, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty()
            || int.len() > 13
            || !digits(int)
            || frac.len() > 6
            || !digits(frac)
            || (self.amount.contains('.') && frac.is_empty())
        {
            return Err((
                "unit_price.amount",
                "must be a non-negative decimal string with at most 6 fractional digits, e.g. \"85.00\"",
            ));
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err((
                "unit_price.currency",
                "must be an ISO 4217 code, e.g. \"USD\"",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub id: PoolId,
    pub workspace_id: WorkspaceId,
    pub organization_id: OrgId,
    pub resource_type: ResourceType,
    pub period: Period,
    /// Thousandths: 1.0 = 1000.
    pub overcommit_ratio: i64,
    pub unit_price: Option<UnitPrice>,
    /// Supply at now, thousandths.
    pub total: i64,
    /// Commitments at now, thousandths.
    pub allocated: i64,
    pub created_at: Instant,
    pub updated_at: Instant,
}

struct Thousandths(i64);
impl Serialize for Thousandths {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::quantity::serialize_thousandths(self.0, s)
    }
}

impl Pool {
    /// What may still be committed now: supply × ratio − allocated. Negative
    /// when a supply reduction left the pool over-committed.
    pub fn available(&self) -> i64 {
        (self.total as i128 * self.overcommit_ratio as i128).div_euclid(1000) as i64
            - self.allocated
    }
}

impl Serialize for Pool {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            id: &'a PoolId,
            workspace_id: &'a WorkspaceId,
            organization_id: &'a OrgId,
            resource_type: ResourceType,
            total: Thousandths,
            allocated: Thousandths,
            available: Thousandths,
            unit: Unit,
            period: Period,
            overcommit_ratio: Thousandths,
            unit_price: &'a Option<UnitPrice>,
            created_at: Instant,
            updated_at: Instant,
        }
        View {
            id: &self.id,
            workspace_id: &self.workspace_id,
            organization_id: &self.organization_id,
            resource_type: self.resource_type,
            total: Thousandths(self.total),
            allocated: Thousandths(self.allocated),
            available: Thousandths(self.available()),
            unit: self.resource_type.unit(),
            period: self.period,
            overcommit_ratio: Thousandths(self.overcommit_ratio),
            unit_price: &self.unit_price,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
        .serialize(s)
    }
}

/// Where supply changes come from (SPEC §5). `initial` is the pool's opening
/// supply, written by pool creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum SupplySource {
    Initial,
    TalentOnboarded,
    TalentOffboarded,
    InfrastructureProvisioned,
    InfrastructureDecommissioned,
    CreditsPurchased,
    CreditsExpired,
    Correction,
}

impl SupplySource {
    pub fn as_str(self) -> &'static str {
        match self {
            SupplySource::Initial => "initial",
            SupplySource::TalentOnboarded => "talent_onboarded",
            SupplySource::TalentOffboarded => "talent_offboarded",
            SupplySource::InfrastructureProvisioned => "infrastructure_provisioned",
            SupplySource::InfrastructureDecommissioned => "infrastructure_decommissioned",
            SupplySource::CreditsPurchased => "credits_purchased",
            SupplySource::CreditsExpired => "credits_expired",
            SupplySource::Correction => "correction",
        }
    }
    pub fn parse(s: &str) -> Option<SupplySource> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }
}

/// One entry of a pool's supply ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Adjustment {
    pub id: String,
    pub capacity_pool_id: PoolId,
    pub delta: Delta,
    pub reason: Option<String>,
    pub source: SupplySource,
    pub effective_at: Instant,
    pub created_at: Instant,
    pub created_by: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AllocationStatus {
    Active,
    Paused,
    Closed,
}

impl AllocationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AllocationStatus::Active => "active",
            AllocationStatus::Paused => "paused",
            AllocationStatus::Closed => "closed",
        }
    }
    pub fn parse(s: &str) -> Option<AllocationStatus> {
        match s {
            "active" => Some(AllocationStatus::Active),
            "paused" => Some(AllocationStatus::Paused),
            "closed" => Some(AllocationStatus::Closed),
            _ => None,
        }
    }
}

/// Something committed to a service line: a person, an agent, a machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Resource {
    #[serde(rename = "type")]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[a-z_]{1,64}$", example = "talent")
    )]
    pub kind: String,
    /// For `talent`, a talent id `SCR-NNNNNN`.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[^\x00-\x1F\x7F-\x9F]{1,128}$", example = "SCR-128491")
    )]
    pub id: String,
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = r"^[^\x00-\x1F\x7F-\x9F]{1,128}$",
            example = "senior_backend_engineer"
        )
    )]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::QuantityInput>))]
    pub committed_hours_per_week: Option<Quantity>,
}

impl Resource {
    /// Checks one resource; `Err((field suffix, message))`.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        let ident = |s: &str| {
            !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        };
        if !ident(&self.kind) {
            return Err(("type", "must be a lower-case identifier such as \"talent\""));
        }
        if self.kind == "talent" && !crate::ids::is_talent_id(&self.id) {
            return Err(("id", "must be a talent id of shape SCR-NNNNNN"));
        }
        // Lengths in characters, as the messages (and the API schema) say.
        let printable =
            |s: &str| !s.is_empty() && s.chars().count() <= 128 && !s.chars().any(char::is_control);
        if !printable(&self.id) {
            return Err(("id", "must be 1 to 128 printable characters"));
        }
        if let Some(r) = &self.role
            && !printable(r)
        {
            return Err(("role", "must be 1 to 128 printable characters"));
        }
        Ok(())
    }
}

/// One version of an allocation's terms, in force from `effective_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terms {
    pub effective_at: Instant,
    /// Per the pool's period; authoritative.
    pub committed: Quantity,
    pub resources: Vec<Resource>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub id: AllocationId,
    pub capacity_pool_id: PoolId,
    pub workspace_id: WorkspaceId,
    pub organization_id: OrgId,
    pub service_line_id: ServiceLineId,
    pub resource_type: ResourceType,
    /// The pool's period: `committed` is per this period.
    pub period: Period,
    pub status: AllocationStatus,
    pub starts_at: Instant,
    pub ends_at: Option<Instant>,
    pub closed_at: Option<Instant>,
    /// Sorted by `effective_at`, never empty.
    pub terms: Vec<Terms>,
    /// Usage in the last complete ISO week.
    pub actual_last_week: Quantity,
    /// The commitment in force during the last complete ISO week (its peak).
    pub committed_last_week: Quantity,
    pub orphaned: bool,
    pub created_at: Instant,
    pub updated_at: Instant,
    /// Bumped by every change; the ETag.
    pub version: i64,
}

impl Allocation {
    /// The terms in force at `now` (the first terms before the start).
    pub fn current_terms(&self, now: Instant) -> &Terms {
        self.terms
            .iter()
            .take_while(|t| t.effective_at <= now)
            .last()
            .unwrap_or(&self.terms[0])
    }

    pub fn commitment_timeline(&self) -> Timeline {
        let terms: Vec<(Instant, Quantity)> = self
            .terms
            .iter()
            .map(|t| (t.effective_at, t.committed))
            .collect();
        CommitmentSchedule {
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            closed_at: self.closed_at,
            terms: &terms,
        }
        .timeline()
    }

    pub fn utilisation_percent(&self) -> Option<Percent> {
        weekly_utilisation(self.actual_last_week, self.committed_last_week, self.period)
    }

    /// The public JSON view at `now`.
    pub fn view(&self, now: Instant) -> AllocationView<'_> {
        let current = self.current_terms(now);
        let pending = self
            .terms
            .iter()
            .filter(|t| t.effective_at > now && t.effective_at > current.effective_at)
            .map(|t| PendingChange {
                effective_at: t.effective_at,
                committed: t.committed,
                committed_per_week: self.period.to_per_week(t.committed),
                resources: &t.resources,
                reason: t.reason.as_deref(),
            })
            .collect();
        AllocationView {
            id: &self.id,
            capacity_pool_id: &self.capacity_pool_id,
            service_line_id: &self.service_line_id,
            workspace_id: &self.workspace_id,
            resource_type: self.resource_type,
            committed: current.committed,
            committed_per_week: self.period.to_per_week(current.committed),
            actual_last_week: self.actual_last_week,
            committed_last_week: self.period.to_per_week(self.committed_last_week),
            utilisation_percent: self.utilisation_percent(),
            status: self.status,
            resources: &current.resources,
            started_at: self.starts_at,
            ends_at: self.ends_at,
            pending_changes: pending,
            orphaned: self.orphaned,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct PendingChange<'a> {
    pub effective_at: Instant,
    pub committed: Quantity,
    pub committed_per_week: Quantity,
    pub resources: &'a [Resource],
    pub reason: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct AllocationView<'a> {
    pub id: &'a AllocationId,
    pub capacity_pool_id: &'a PoolId,
    pub service_line_id: &'a ServiceLineId,
    pub workspace_id: &'a WorkspaceId,
    pub resource_type: ResourceType,
    pub committed: Quantity,
    pub committed_per_week: Quantity,
    pub actual_last_week: Quantity,
    /// Per week, as `committed_per_week`: the base of `utilisation_percent`.
    pub committed_last_week: Quantity,
    pub utilisation_percent: Option<Percent>,
    pub status: AllocationStatus,
    pub resources: &'a [Resource],
    pub started_at: Instant,
    pub ends_at: Option<Instant>,
    pub pending_changes: Vec<PendingChange<'a>>,
    pub orphaned: bool,
    pub created_at: Instant,
    pub updated_at: Instant,
}

/// An event, written in the same transaction as the change it announces.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created_at: Instant,
    pub data: serde_json::Value,
}

/// Formats thousandths for messages ("short by 40 hours_per_week").
pub fn show(t: i64) -> String {
    format_thousandths(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Instant {
        Instant::parse(s).unwrap()
    }

    fn allocation() -> Allocation {
        Allocation {
            id: AllocationId::parse("ALLOC-26-000441").unwrap(),
            capacity_pool_id: PoolId::parse("CAP-26-000112").unwrap(),
            workspace_id: WorkspaceId::parse("WS-26-000021").unwrap(),
            organization_id: OrgId::parse("ORG-26-090500").unwrap(),
            service_line_id: ServiceLineId::parse("LIN-26-084729").unwrap(),
            resource_type: ResourceType::TalentHours,
            period: Period::Weekly,
            status: AllocationStatus::Active,
            starts_at: at("2026-01-15T00:00:00Z"),
            ends_at: None,
            closed_at: None,
            terms: vec![
                Terms {
                    effective_at: at("2026-01-15T00:00:00Z"),
                    committed: Quantity::from_units(40),
                    resources: vec![],
                    reason: None,
                },
                Terms {
                    effective_at: at("2026-05-01T00:00:00Z"),
                    committed: Quantity::from_units(32),
                    resources: vec![],
                    reason: Some("less".into()),
                },
            ],
            actual_last_week: Quantity::parse("38.5").unwrap(),
            committed_last_week: Quantity::from_units(40),
            orphaned: false,
            created_at: at("2026-01-15T00:00:00Z"),
            updated_at: at("2026-01-15T00:00:00Z"),
            version: 1,
        }
    }

    #[test]
    fn view_reads_terms_at_now() {
        let a = allocation();
        let v = serde_json::to_value(a.view(at("2026-04-15T06:00:00Z"))).unwrap();
        assert_eq!(v["committed_per_week"], serde_json::json!(40));
        assert_eq!(v["utilisation_percent"], serde_json::json!(96.3));
        assert_eq!(
            v["pending_changes"][0]["committed_per_week"],
            serde_json::json!(32)
        );
        assert_eq!(
            v["pending_changes"][0]["effective_at"],
            "2026-05-01T00:00:00Z"
        );
        let later = serde_json::to_value(a.view(at("2026-05-02T00:00:00Z"))).unwrap();
        assert_eq!(later["committed_per_week"], serde_json::json!(32));
        assert_eq!(later["pending_changes"], serde_json::json!([]));
    }

    #[test]
    fn unit_price_shape() {
        let ok = UnitPrice {
            amount: "85.00".into(),
            currency: "USD".into(),
        };
        assert!(ok.validate().is_ok());
        assert!(
            UnitPrice {
                amount: "-1".into(),
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            UnitPrice {
                amount: "1.1234567".into(),
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            UnitPrice {
                currency: "usd".into(),
                ..ok
            }
            .validate()
            .is_err()
        );
    }
}

/// A change to an allocation's terms, as a PATCH asks for it: `None` leaves
/// a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TermsChange {
    pub committed: Option<Quantity>,
    pub resources: Option<Vec<Resource>>,
}

impl TermsChange {
    pub fn is_empty(&self) -> bool {
        self.committed.is_none() && self.resources.is_none()
    }
    fn apply_to(&self, t: &mut Terms) {
        if let Some(c) = self.committed {
            t.committed = c;
        }
        if let Some(r) = &self.resources {
            t.resources = r.clone();
        }
    }
}

/// Applies a terms change to an allocation's versions of terms.
///
/// - Scheduled (`immediate == false`): the change takes effect at `at` (the
///   next billing period). The version in force at `at` is the base; a
///   version already pending at `at` is updated, so one period holds one
///   pending change and the latest instruction for a field wins.
/// - Immediate: a version from `now` carries the change, and every pending
///   version later than `now` takes the new value of the changed fields (an
///   immediate change cancels pending changes to the same field).
///
/// Versions equal to their predecessor are dropped. The first version (the
/// terms the allocation was created with) is always kept.
pub fn apply_terms_change(
    terms: &[Terms],
    change: &TermsChange,
    at: Instant,
    immediate: bool,
    reason: Option<&str>,
) -> Vec<Terms> {
    let mut out: Vec<Terms> = terms.to_vec();
    let base = out
        .iter()
        .take_while(|t| t.effective_at <= at)
        .last()
        .unwrap_or(&out[0])
        .clone();
    let mut new = Terms {
        effective_at: at,
        reason: reason.map(str::to_owned),
        ..base
    };
    change.apply_to(&mut new);
    match out.iter().position(|t| t.effective_at == at) {
        Some(i) => out[i] = new,
        None => {
            let i = out.partition_point(|t| t.effective_at < at);
            out.insert(i, new);
        }
    }
    if immediate {
        for t in out.iter_mut().filter(|t| t.effective_at > at) {
            change.apply_to(t);
        }
    }
    let mut collapsed: Vec<Terms> = Vec::with_capacity(out.len());
    for t in out {
        match collapsed.last() {
            Some(prev) if prev.committed == t.committed && prev.resources == t.resources => {}
            _ => collapsed.push(t),
        }
    }
    collapsed
}

/// Is a commitment (per `period`) below a week's actual usage? Compared
/// exactly: committed × n/d < actual.
pub fn below_actual(committed: Quantity, period: crate::Period, actual_week: Quantity) -> bool {
    let (n, d) = period.per_week_factor();
    (committed.thousandths() as i128) * n < (actual_week.thousandths() as i128) * d
}

/// A service line: a unit of delivery sold to a customer, owned by the platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceLine {
    pub id: ServiceLineId,
    pub workspace_id: WorkspaceId,
    pub organization_id: OrgId,
    pub status: ServiceLineStatus,
    pub created_at: Instant,
    pub updated_at: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ServiceLineStatus {
    Active,
    Closed,
}

impl ServiceLineStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceLineStatus::Active => "active",
            ServiceLineStatus::Closed => "closed",
        }
    }
    pub fn parse(s: &str) -> Option<ServiceLineStatus> {
        match s {
            "active" => Some(ServiceLineStatus::Active),
            "closed" => Some(ServiceLineStatus::Closed),
            _ => None,
        }
    }
}

/// One entry of an allocation's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryEntry {
    pub allocation_id: AllocationId,
    pub action: String,
    /// The token that made the change.
    pub actor: String,
    pub reason: Option<String>,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
    pub effective_at: Instant,
    pub created_at: Instant,
}

#[cfg(test)]
mod patch_tests {
    use super::*;

    fn at(s: &str) -> Instant {
        Instant::parse(s).unwrap()
    }
    fn terms(at_s: &str, c: i64) -> Terms {
        Terms {
            effective_at: at(at_s),
            committed: Quantity::from_units(c),
            resources: vec![],
            reason: None,
        }
    }
    fn committed(c: i64) -> TermsChange {
        TermsChange {
            committed: Some(Quantity::from_units(c)),
            resources: None,
        }
    }
    fn shape(v: &[Terms]) -> Vec<(String, String)> {
        v.iter()
            .map(|t| (t.effective_at.to_string(), t.committed.to_string()))
            .collect()
    }

    #[test]
    fn scheduled_change_lands_at_the_period_start_and_later_ones_replace_it() {
        let v = vec![terms("2026-01-15T00:00:00Z", 40)];
        let may = at("2026-05-01T00:00:00Z");
        let v = apply_terms_change(&v, &committed(32), may, false, Some("less"));
        assert_eq!(
            shape(&v),
            [
                ("2026-01-15T00:00:00Z".into(), "40".into()),
                ("2026-05-01T00:00:00Z".into(), "32".into())
            ]
        );
        let v = apply_terms_change(&v, &committed(30), may, false, None);
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].committed, Quantity::from_units(30));
        // Scheduling back to the current value cancels the pending change.
        let v = apply_terms_change(&v, &committed(40), may, false, None);
        assert_eq!(v.len(), 1);
    }

    #[test]
    fn immediate_change_cancels_pending_changes_to_the_same_field() {
        let v = vec![
            terms("2026-01-15T00:00:00Z", 40),
            terms("2026-05-01T00:00:00Z", 32),
        ];
        let v = apply_terms_change(&v, &committed(36), at("2026-04-15T06:00:00Z"), true, None);
        assert_eq!(
            shape(&v),
            [
                ("2026-01-15T00:00:00Z".into(), "40".into()),
                ("2026-04-15T06:00:00Z".into(), "36".into())
            ]
        );
    }

    #[test]
    fn immediate_change_to_another_field_keeps_pending_commitment() {
        let v = vec![
            terms("2026-01-15T00:00:00Z", 40),
            terms("2026-05-01T00:00:00Z", 32),
        ];
        let r = vec![Resource {
            kind: "talent".into(),
            id: "SCR-000001".into(),
            role: None,
            committed_hours_per_week: None,
        }];
        let change = TermsChange {
            committed: None,
            resources: Some(r.clone()),
        };
        let v = apply_terms_change(&v, &change, at("2026-04-15T06:00:00Z"), true, None);
        assert_eq!(v.len(), 3);
        assert_eq!(v[1].resources, r);
        assert_eq!(v[2].resources, r);
        assert_eq!(v[2].committed, Quantity::from_units(32));
    }

    #[test]
    fn below_actual_compares_exactly_across_periods() {
        let q = |s: &str| Quantity::parse(s).unwrap();
        assert!(below_actual(q("32"), crate::Period::Weekly, q("38.5")));
        assert!(!below_actual(q("38.5"), crate::Period::Weekly, q("38.5")));
        // 45000 a month is 10384.615… a week.
        assert!(below_actual(
            q("45000"),
            crate::Period::Monthly,
            q("10384.616")
        ));
        assert!(!below_actual(
            q("45000"),
            crate::Period::Monthly,
            q("10384.615")
        ));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RequestStatus {
    Pending,
    Fulfilled,
    Cancelled,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Fulfilled => "fulfilled",
            RequestStatus::Cancelled => "cancelled",
        }
    }
    pub fn parse(s: &str) -> Option<RequestStatus> {
        match s {
            "pending" => Some(RequestStatus::Pending),
            "fulfilled" => Some(RequestStatus::Fulfilled),
            "cancelled" => Some(RequestStatus::Cancelled),
            _ => None,
        }
    }
}

/// Pending demand: supply someone wants, not yet committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemandRequest {
    pub id: String,
    pub workspace_id: WorkspaceId,
    pub organization_id: OrgId,
    pub resource_type: ResourceType,
    /// The period `quantity` is per: the workspace's pool's, else the type's default.
    pub period: Period,
    pub quantity: Quantity,
    pub starts_at: Instant,
    pub ends_at: Option<Instant>,
    pub note: Option<String>,
    pub status: RequestStatus,
    pub allocation_id: Option<AllocationId>,
    pub created_at: Instant,
    pub updated_at: Instant,
}

impl Serialize for DemandRequest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            id: &'a str,
            workspace_id: &'a WorkspaceId,
            organization_id: &'a OrgId,
            resource_type: ResourceType,
            quantity: Quantity,
            quantity_per_week: Quantity,
            unit: Unit,
            period: Period,
            starts_at: Instant,
            ends_at: Option<Instant>,
            note: Option<&'a str>,
            status: RequestStatus,
            allocation_id: Option<&'a AllocationId>,
            created_at: Instant,
            updated_at: Instant,
        }
        View {
            id: &self.id,
            workspace_id: &self.workspace_id,
            organization_id: &self.organization_id,
            resource_type: self.resource_type,
            quantity: self.quantity,
            quantity_per_week: self.period.to_per_week(self.quantity),
            unit: self.resource_type.unit(),
            period: self.period,
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            note: self.note.as_deref(),
            status: self.status,
            allocation_id: self.allocation_id.as_ref(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
        .serialize(s)
    }
}

impl DemandRequest {
    /// The request as a timeline of pending demand.
    pub fn timeline(&self) -> Timeline {
        let mut steps = vec![(self.starts_at, self.quantity.thousandths())];
        if let Some(end) = self.ends_at {
            steps.push((end, -self.quantity.thousandths()));
        }
        Timeline::from_steps(steps)
    }
}

/// One week of an allocation's utilisation series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UtilisationWeek {
    pub week_start: Instant,
    pub committed: Quantity,
    pub committed_per_week: Quantity,
    pub actual: Quantity,
    pub utilisation_percent: Option<Percent>,
}
