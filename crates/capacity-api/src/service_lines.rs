//! `/v1/service-lines/{id}`: lifecycle signals from the platform.

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::error::not_found;
use crate::extract::{Json, Query};
use crate::page::{Meta, PagedBody, page_request_within};
use crate::params::path_id;
use crate::schemas::ServiceLineView;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use capacity_domain::model::{ServiceLine, ServiceLineStatus};
use capacity_domain::{OrgId, ServiceLineId, WorkspaceId};
use capacity_store::{PageRequest, ServiceLinePut};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutServiceLine {
    workspace_id: WorkspaceId,
    /// Registers the workspace to this organization when it is not
    /// registered yet (see `PUT /v1/workspaces/{id}`).
    organization_id: Option<OrgId>,
    status: ServiceLineStatus,
    /// When closing: close the line's open allocations too (otherwise they
    /// are orphaned).
    #[serde(default)]
    close_allocations: bool,
}

#[derive(Serialize)]
struct View<'a> {
    #[serde(flatten)]
    line: &'a ServiceLine,
    allocations: Vec<serde_json::Value>,
}

/// The line's allocations on one answer, by default and at most.
const LINE_PAGE: u32 = 100;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LineQuery {
    /// The line's allocations on this answer (default and most: 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `meta.cursor` of the previous answer: the line's next allocations.
    #[param(value_type = Option<String>, pattern = "^c[0-9a-f]{1,15}$")]
    cursor: Option<String>,
}

async fn answer(
    s: &AppState,
    caller: &Caller,
    id: &ServiceLineId,
    page: PageRequest,
) -> ApiResult<Response> {
    let now = s.clock.now();
    let (line, allocations) = s
        .store
        .get_service_line(&caller.0, id, page, now)
        .await
        .map_err(|e| not_found(e, "service line"))?;
    let meta = Meta::after(allocations.next);
    let allocations = allocations
        .items
        .iter()
        .map(|a| serde_json::to_value(a.view(now)).unwrap_or_default())
        .collect();
    Ok(axum::Json(PagedBody {
        data: View {
            line: &line,
            allocations,
        },
        meta,
    })
    .into_response())
}

/// Signal a service line's status (platform)
#[utoipa::path(
    put,
    path = "/v1/service-lines/{id}",
    operation_id = "putServiceLine",
    tag = "service-lines",
    params(("id" = ServiceLineId, Path, description = "The service line's id")),
    request_body = PutServiceLine,
    responses((status = 200, description = "The service line and the first page of its allocations", body = PagedBody<ServiceLineView>))
)]
pub async fn put(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<PutServiceLine>,
) -> ApiResult<Response> {
    let scope = caller.require_platform_write()?;
    let id = path_id(&id, ServiceLineId::parse, "service line")?;
    let put = ServiceLinePut {
        workspace_id: body.workspace_id,
        organization_id: body.organization_id,
        status: body.status,
        close_allocations: body.close_allocations,
    };
    s.store
        .put_service_line(scope, &id, put, s.clock.now())
        .await?;
    let first = PageRequest {
        limit: LINE_PAGE,
        after: None,
    };
    answer(&s, &caller, &id, first).await
}

/// Get a service line
#[utoipa::path(
    get,
    path = "/v1/service-lines/{id}",
    operation_id = "getServiceLine",
    tag = "service-lines",
    params(("id" = ServiceLineId, Path, description = "The service line's id"), LineQuery),
    responses((status = 200, description = "The service line and a page of its allocations", body = PagedBody<ServiceLineView>))
)]
pub async fn get(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<LineQuery>,
) -> ApiResult<Response> {
    let id = path_id(&id, ServiceLineId::parse, "service line")?;
    let page = page_request_within(
        q.limit.as_deref(),
        q.cursor.as_deref(),
        LINE_PAGE,
        LINE_PAGE,
    )?;
    answer(&s, &caller, &id, page).await
}
