//! `/v1/service-lines/{id}`: lifecycle signals from the platform.

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::Json;
use crate::page::DataBody;
use crate::params::path_id;
use crate::pools::not_found;
use crate::schemas::ServiceLineView;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use capacity_domain::model::{ServiceLine, ServiceLineStatus};
use capacity_domain::{OrgId, ServiceLineId, WorkspaceId};
use capacity_store::ServiceLinePut;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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

async fn answer(s: &AppState, caller: &Caller, id: &ServiceLineId) -> ApiResult<Response> {
    let now = s.clock.now();
    let (line, allocations) = s
        .store
        .get_service_line(&caller.0, id, now)
        .await
        .map_err(|e| not_found(e, "service line"))?;
    let allocations = allocations
        .iter()
        .map(|a| serde_json::to_value(a.view(now)).unwrap_or_default())
        .collect();
    Ok(axum::Json(DataBody {
        data: View {
            line: &line,
            allocations,
        },
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
    responses((status = 200, description = "The service line and its allocations", body = DataBody<ServiceLineView>))
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
    answer(&s, &caller, &id).await
}

/// Get a service line
#[utoipa::path(
    get,
    path = "/v1/service-lines/{id}",
    operation_id = "getServiceLine",
    tag = "service-lines",
    params(("id" = ServiceLineId, Path, description = "The service line's id")),
    responses((status = 200, description = "The service line and its allocations", body = DataBody<ServiceLineView>))
)]
pub async fn get(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = path_id(&id, ServiceLineId::parse, "service line")?;
    answer(&s, &caller, &id).await
}
