//! The route table, and the OpenAPI 3 document generated from it. Every route is registered
//! through `utoipa_axum::routes!`, which adds the handler to the router and its `#[utoipa::path]`
//! description to the document in one step, so the two cannot drift apart silently (a test
//! walks the document against the router to be sure).

use std::sync::LazyLock;

use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::{batches, bulk, cron, dashboard, jobs, status, ApiState};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "skiplock",
        description = "Batch and background jobs on the database you already run. Every error \
            is `{\"error\": \"...\"}`. When the server has an API token, every `/api/v1` route \
            needs `Authorization: Bearer <token>`."
    ),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody)),
    tags(
        (name = "jobs", description = "Submit, inspect, retry and cancel jobs"),
        (name = "batches", description = "Many targets of one type, submitted together"),
        (name = "status", description = "Reports, live events, health and metrics"),
    )
)]
struct ApiDoc;

/// Declares the `bearer` security scheme the `/api/v1` routes refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The routes: `/api/v1` (to go behind the token) and the public ones.
pub fn routers() -> (OpenApiRouter<ApiState>, OpenApiRouter<ApiState>) {
    let v1 = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(jobs::submit, jobs::list))
        .routes(routes!(jobs::show))
        .routes(routes!(jobs::retry))
        .routes(routes!(jobs::cancel))
        .routes(routes!(bulk::retry))
        .routes(routes!(bulk::cancel))
        .routes(routes!(batches::submit))
        .routes(routes!(batches::show))
        .routes(routes!(status::report))
        .routes(routes!(status::events))
        .routes(routes!(cron::list))
        .routes(routes!(openapi_json));
    let public = OpenApiRouter::new()
        .routes(routes!(status::metrics))
        .routes(routes!(status::healthz))
        .routes(routes!(dashboard::page));
    (v1, public)
}

/// The document for every route [`routers`] serves.
pub fn document() -> utoipa::openapi::OpenApi {
    let (v1, public) = routers();
    v1.merge(public).into_openapi()
}

/// Built once: the document never changes while the process runs.
static DOCUMENT: LazyLock<serde_json::Value> =
    LazyLock::new(|| serde_json::to_value(document()).unwrap_or_default());

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "status",
    responses((status = 200, description = "The OpenAPI 3 document", body = Object),
              (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn openapi_json() -> impl IntoResponse {
    axum::Json(DOCUMENT.clone())
}
