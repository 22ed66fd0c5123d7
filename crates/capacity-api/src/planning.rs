//! Demand requests, the demand forecast and cost reports (SPEC §5 Demand, Costs).

use crate::AppState;
use crate::auth::Caller;
use crate::error::not_found;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Query};
use crate::page::ListBody;
use crate::page::{DataBody, Meta, PagedBody, list_body, page_request, page_request_within};
use crate::params::parse_resource_type;
use crate::params::{opt_parse, path_id};
use crate::schemas::{
    AllocationCost, CostReport, CostTotal, DemandForecast, DemandRequestView, DemandWeek,
    ExpiringAllocation, Money, PoolCost,
};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use capacity_domain::cost::{
    committed_cents, format_cents, parse_price_micros, projected_cents, usage_cents,
};
use capacity_domain::forecast::{PlanningPeriod, figures, recommendation};
use capacity_domain::model::RequestStatus;
use capacity_domain::resource::div_round;
use capacity_domain::utilisation::Percent;
use capacity_domain::{AllocationId, Instant, OrgId, Quantity, ResourceType, WorkspaceId};
use capacity_store::{CommitmentInput, NewDemandRequest, RequestFilter, RequestUpdate, unit_name};
use serde::Deserialize;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// Exactly one of `quantity` and `quantity_per_week`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    workspace_id: WorkspaceId,
    /// Platform tokens: registers the workspace to this organization when it
    /// is not registered yet. An organization token names only its own
    /// registered workspaces.
    organization_id: Option<OrgId>,
    resource_type: ResourceType,
    /// Per the workspace pool's period (the type's default period without a pool).
    #[schema(value_type = Option<capacity_domain::openapi::QuantityInput>)]
    quantity: Option<Quantity>,
    /// Per week; converted to the pool's period.
    #[schema(value_type = Option<capacity_domain::openapi::PerWeekQuantity>)]
    quantity_per_week: Option<Quantity>,
    #[schema(value_type = capacity_domain::openapi::InstantInput)]
    starts_at: Instant,
    /// After `starts_at`.
    #[schema(value_type = Option<capacity_domain::openapi::InstantInput>)]
    ends_at: Option<Instant>,
    /// 1 to 2000 characters.
    #[schema(
        max_length = 2000,
        pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x08\x0B-\x1F\x7F-\x9F]*$"
    )]
    note: Option<String>,
}

/// Record pending demand
#[utoipa::path(
    post,
    path = "/v1/capacity/requests",
    operation_id = "createDemandRequest",
    tag = "planning",
    request_body = CreateRequest,
    responses((status = 201, description = "The new demand request", body = DataBody<DemandRequestView>,
        headers(("Location" = String, description = "The request's URL"))))
)]
pub async fn create_request(
    State(s): State<AppState>,
    caller: Caller,
    Json(b): Json<CreateRequest>,
) -> ApiResult<Response> {
    let scope = caller.require_write()?;
    let quantity = match (b.quantity, b.quantity_per_week) {
        (Some(_), Some(_)) => {
            return Err(ApiError::validation(
                "quantity_per_week",
                "give either quantity or quantity_per_week, not both",
            ));
        }
        (Some(q), None) => CommitmentInput::PerPeriod(q),
        (None, Some(q)) => crate::allocations::per_week("quantity_per_week", q)?,
        (None, None) => {
            return Err(ApiError::validation(
                "quantity",
                "quantity or quantity_per_week is required",
            ));
        }
    };
    let note = b
        .note
        .as_deref()
        .map(|n| crate::params::text("note", n, 2000))
        .transpose()?;
    let new = NewDemandRequest {
        workspace_id: b.workspace_id,
        organization_id: b.organization_id,
        resource_type: b.resource_type,
        quantity,
        starts_at: b.starts_at,
        ends_at: b.ends_at,
        note,
    };
    let r = s
        .store
        .create_request(scope, new, s.clock.now())
        .await
        .map_err(|e| not_found(e, "workspace"))?;
    let mut res = (StatusCode::CREATED, axum::Json(DataBody { data: &r })).into_response();
    if let Ok(loc) = HeaderValue::from_str(&format!("/v1/capacity/requests/{}", r.id)) {
        res.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(res)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    /// `fulfilled` or `cancelled` (from `pending`).
    status: RequestStatus,
    /// The allocation that fulfilled it: an allocation of the request's
    /// workspace (otherwise 422), and only with `fulfilled`.
    allocation_id: Option<AllocationId>,
}

/// Fulfil or cancel a demand request
#[utoipa::path(
    patch,
    path = "/v1/capacity/requests/{id}",
    operation_id = "updateDemandRequest",
    tag = "planning",
    params(("id" = String, Path, description = "The request's id", pattern = "^REQ-[0-9]{2}-[0-9]{6,15}$")),
    request_body = UpdateRequest,
    responses((status = 200, description = "The request after the change", body = DataBody<DemandRequestView>))
)]
pub async fn update_request(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(b): Json<UpdateRequest>,
) -> ApiResult<Response> {
    let scope = caller.require_write()?;
    let id = request_id(&id)?;
    let update = RequestUpdate {
        status: b.status,
        allocation_id: b.allocation_id,
    };
    let r = s
        .store
        .update_request(scope, &id, update, s.clock.now())
        .await
        .map_err(|e| not_found(e, "demand request"))?;
    Ok(axum::Json(DataBody { data: &r }).into_response())
}

/// One demand request
#[utoipa::path(
    get,
    path = "/v1/capacity/requests/{id}",
    operation_id = "getDemandRequest",
    tag = "planning",
    params(("id" = String, Path, description = "The request's id", pattern = "^REQ-[0-9]{2}-[0-9]{6,15}$")),
    responses((status = 200, description = "The demand request", body = DataBody<DemandRequestView>))
)]
pub async fn get_request(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = request_id(&id)?;
    let r = s
        .store
        .get_request(&caller.0, &id)
        .await
        .map_err(|e| not_found(e, "demand request"))?;
    Ok(axum::Json(DataBody { data: &r }).into_response())
}

/// A path's request id; any other shape is 404, as a missing one.
fn request_id(id: &str) -> Result<String, ApiError> {
    path_id(
        id,
        |v| {
            capacity_domain::ids::parse_minted(capacity_domain::MintedPrefix::Request, v)
                .map(|_| v.to_owned())
                .ok_or(())
        },
        "demand request",
    )
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListRequests {
    #[param(value_type = Option<WorkspaceId>)]
    workspace_id: Option<String>,
    #[param(value_type = Option<ResourceType>)]
    resource_type: Option<String>,
    #[param(value_type = Option<RequestStatus>)]
    status: Option<String>,
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `meta.cursor` of the previous page.
    #[param(value_type = Option<String>, pattern = "^c[0-9a-f]{1,15}$")]
    cursor: Option<String>,
}

/// List demand requests
#[utoipa::path(
    get,
    path = "/v1/capacity/requests",
    operation_id = "listDemandRequests",
    tag = "planning",
    params(ListRequests),
    responses((status = 200, description = "Demand requests the token sees", body = ListBody<DemandRequestView>))
)]
pub async fn list_requests(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<ListRequests>,
) -> ApiResult<Response> {
    let page = page_request(q.limit.as_deref(), q.cursor.as_deref())?;
    let filter = RequestFilter {
        workspace_id: opt_parse("workspace_id", q.workspace_id, WorkspaceId::parse)?,
        resource_type: opt_parse("resource_type", q.resource_type, parse_resource_type)?,
        status: opt_parse("status", q.status, |v| {
            RequestStatus::parse(v).ok_or("must be one of pending, fulfilled, cancelled")
        })?,
    };
    let requests = s.store.list_requests(&caller.0, filter, page).await?;
    Ok(axum::Json(list_body(requests, |r| r)).into_response())
}

fn period_param(
    raw: Option<String>,
    months_only: bool,
) -> Result<(String, PlanningPeriod), ApiError> {
    let raw = raw.ok_or_else(|| ApiError::validation("period", "is required"))?;
    let expected = if months_only {
        "must be a billing month such as 2026-05"
    } else {
        "must be a quarter (2026-Q3), a month (2026-07) or an ISO week (2026-W27)"
    };
    let p = PlanningPeriod::parse(&raw)
        .filter(|_| !months_only || (raw.len() == 7 && !raw.contains(['Q', 'W'])))
        .ok_or_else(|| ApiError::validation("period", expected))?;
    Ok((raw, p))
}

fn required<T>(field: &str, v: Option<T>) -> Result<T, ApiError> {
    v.ok_or_else(|| ApiError::validation(field, "is required"))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DemandQuery {
    #[param(required = true, value_type = WorkspaceId)]
    workspace_id: Option<String>,
    #[param(required = true, value_type = ResourceType)]
    resource_type: Option<String>,
    /// A quarter (`2026-Q3`), a month (`2026-07`) or an ISO week (`2026-W27`;
    /// week 53 is accepted too, in the years that have one).
    #[param(required = true, value_type = String, pattern = "^(19[7-9][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9])-(Q[1-4]|W(0[1-9]|[1-4][0-9]|5[0-2])|0[1-9]|1[0-2])$", example = "2026-Q3")]
    period: Option<String>,
}

/// Demand forecast
///
/// Supply against commitments and pending demand over a quarter, month or
/// ISO week, with a plain-sentence recommendation.
#[utoipa::path(
    get,
    path = "/v1/capacity/demand",
    operation_id = "demandForecast",
    tag = "planning",
    params(DemandQuery),
    responses((status = 200, description = "The forecast", body = DataBody<DemandForecast>))
)]
pub async fn demand(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<DemandQuery>,
) -> ApiResult<Response> {
    let ws = required(
        "workspace_id",
        opt_parse("workspace_id", q.workspace_id, WorkspaceId::parse)?,
    )?;
    let rt = required(
        "resource_type",
        opt_parse("resource_type", q.resource_type, parse_resource_type)?,
    )?;
    let (label, period) = period_param(q.period, false)?;
    let now = s.clock.now();
    let d = s
        .store
        .forecast_data(&caller.0, &ws, rt, period, now)
        .await?;
    let ratio = d.pool.as_ref().map_or(1000, |p| p.overcommit_ratio);
    let pool_period = d.pool.as_ref().map_or(rt.default_period(), |p| p.period);
    let unit = unit_name(rt);
    let pp = &*d.pool_period;
    let f = figures(&pp.supply, ratio, &pp.committed, &d.pending, period);
    let q = Quantity::from_thousandths;
    let weeks = period
        .weeks()
        .into_iter()
        .map(|w| {
            let wf = figures(&pp.supply, ratio, &pp.committed, &d.pending, w);
            DemandWeek {
                week_start: w.start.week_start(),
                from: w.start,
                to: w.end,
                current_committed: q(wf.committed),
                pending_requests: q(wf.pending),
                available_supply: q(wf.available),
                supply_gap: q(wf.gap),
                overcommitment: q(wf.overcommitment),
            }
        })
        .collect();
    // Weekly usage over the last 12 weeks, each allocation averaged over
    // the weeks it was active, against the period's peak commitment a week.
    let projected = (f.committed > 0).then(|| {
        let (n, den) = pool_period.per_week_factor();
        let (used, weeks) = capacity_domain::forecast::projected_weekly_usage(
            d.usage_last_12_weeks.thousandths(),
            &d.part_time_usage,
            s.clock.now().week_start(),
        );
        let tenths = div_round(used * 1000 * den, weeks * f.committed as i128 * n);
        Percent::from_tenths(tenths as i64)
    });
    // Typed, not `json!`: a forecast lists up to 100 expiring allocations,
    // and building them as `serde_json::Value`s first (a map per object)
    // was most of a large workspace's forecast (callgrind).
    let body = DataBody {
        data: DemandForecast {
            recommendation: recommendation(&f, unit, &label),
            workspace_id: ws,
            resource_type: rt,
            period: label,
            from: period.start,
            to: period.end,
            unit: rt.unit(),
            capacity_pool_id: d.pool.as_ref().map(|p| p.id.clone()),
            current_committed: q(f.committed),
            pending_requests: q(f.pending),
            available_supply: q(f.available),
            supply_gap: q(f.gap),
            overcommitment: q(f.overcommitment),
            weeks,
            expiring_commitments: pp.expiring_total,
            expiring_allocations_count: pp.expiring_count as u64,
            expiring_allocations: pp
                .expiring
                .iter()
                .map(|e| ExpiringAllocation {
                    allocation_id: e.allocation_id.clone(),
                    service_line_id: e.service_line_id.clone(),
                    committed: e.committed,
                    ends_at: e.ends_at,
                })
                .collect(),
            scheduled_supply_changes: pp.supply_changes.clone(),
            projected_utilisation_percent: projected,
        },
    };
    Ok(axum::Json(body).into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CostQuery {
    #[param(required = true, value_type = WorkspaceId)]
    workspace_id: Option<String>,
    /// A billing month, e.g. `2026-05`.
    #[param(required = true, value_type = String, pattern = "^(19[7-9][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9])-(0[1-9]|1[0-2])$", example = "2026-05")]
    period: Option<String>,
    /// Allocations looked at for this page (default and most: 1000); a
    /// page may show fewer (those that count in the month).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `meta.cursor` of the previous page.
    #[param(value_type = Option<String>, pattern = "^c[0-9a-f]{1,15}$")]
    cursor: Option<String>,
}

/// Allocations a cost report page looks at, by default and at most.
const COST_PAGE: u32 = 1000;

fn money(cents: i128, currency: &str) -> Money {
    Money {
        amount: format_cents(cents),
        currency: currency.to_owned(),
    }
}

/// Cost report
///
/// Committed cost, delivered cost to date and projected cost at period close,
/// per allocation, from each pool's `unit_price`. Paged by cursor over the
/// workspace's allocations (a thousand a page): each page lists every pool
/// of the workspace with the page's allocations, and `totals` sums that
/// page's rows (a report of one page, `meta.has_more` false, is whole; the
/// report's totals are the sums of its pages' totals).
#[utoipa::path(
    get,
    path = "/v1/capacity/costs",
    operation_id = "costReport",
    tag = "planning",
    params(CostQuery),
    responses((status = 200, description = "A page of the cost report", body = PagedBody<CostReport>))
)]
pub async fn costs(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<CostQuery>,
) -> ApiResult<Response> {
    let ws = required(
        "workspace_id",
        opt_parse("workspace_id", q.workspace_id, WorkspaceId::parse)?,
    )?;
    let (label, period) = period_param(q.period, true)?;
    let page = page_request_within(
        q.limit.as_deref(),
        q.cursor.as_deref(),
        COST_PAGE,
        COST_PAGE,
    )?;
    let now = s.clock.now();
    let data = s.store.cost_data(&caller.0, &ws, period, page, now).await?;
    let mut totals: BTreeMap<String, [i128; 3]> = BTreeMap::new();
    let mut pools = Vec::new();
    for (pool, allocations) in &data.pools {
        let price = pool
            .unit_price
            .as_ref()
            .and_then(|p| parse_price_micros(&p.amount).map(|m| (m, p.currency.clone())));
        // Typed, not `json!` (see `demand`): a workspace of 100,000
        // allocations answers a row for each.
        let rows = allocations
            .iter()
            .map(|(a, used)| {
                let mut row = AllocationCost {
                    allocation_id: a.id.clone(),
                    service_line_id: a.service_line_id.clone(),
                    delivered_quantity: *used,
                    committed_cost: None,
                    delivered_cost_to_date: None,
                    projected_cost: None,
                };
                if let Some((micros, currency)) = &price {
                    let committed = committed_cents(
                        &a.commitment_timeline(),
                        pool.period,
                        period.start,
                        period.end,
                        *micros,
                    );
                    let delivered = usage_cents(used.thousandths(), *micros);
                    let projected =
                        projected_cents(delivered, committed, period.start, period.end, now);
                    let t = totals.entry(currency.clone()).or_default();
                    t[0] += committed;
                    t[1] += delivered;
                    t[2] += projected;
                    row.committed_cost = Some(money(committed, currency));
                    row.delivered_cost_to_date = Some(money(delivered, currency));
                    row.projected_cost = Some(money(projected, currency));
                }
                row
            })
            .collect();
        pools.push(PoolCost {
            capacity_pool_id: pool.id.clone(),
            resource_type: pool.resource_type,
            unit_price: pool.unit_price.clone(),
            priced: price.is_some(),
            allocations: rows,
        });
    }
    let totals = totals
        .iter()
        .map(|(c, t)| CostTotal {
            currency: c.clone(),
            committed_cost: money(t[0], c),
            delivered_cost_to_date: money(t[1], c),
            projected_cost: money(t[2], c),
        })
        .collect();
    let body = PagedBody {
        data: CostReport {
            workspace_id: ws,
            period: label,
            from: period.start,
            to: period.end,
            as_of: now.min(period.end),
            totals,
            pools,
        },
        meta: Meta::after(data.next),
    };
    Ok(axum::Json(body).into_response())
}
