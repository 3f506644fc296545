//! What is going on: the status report, live status events (server-sent events), the
//! liveness probe and Prometheus metrics.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::IntoResponse;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::error::{ApiError, ErrorBody, Json, Query};
use super::ApiState;
use crate::events::{Event, EventStatus};
use crate::job::validate_type;
use crate::report::StatusReport;

/// Counts by type and status, batches, nodes, queue depth and recent throughput.
#[utoipa::path(get, path = "/api/v1/status", tag = "status",
    responses((status = 200, body = StatusReport), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn report(State(s): State<ApiState>) -> Result<Json<StatusReport>, ApiError> {
    let mut report = s.client().store().report(s.config().node_stale).await?;
    report.queue_depth = s.client().queue().depth().await.ok();
    Ok(Json(report))
}

/// Which events a subscriber wants; all of them by default.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Only events of jobs of this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub job_type: Option<String>,
    /// Only events of jobs of this batch.
    pub batch: Option<Uuid>,
    /// Only events with this status.
    #[param(inline)]
    pub status: Option<EventStatus>,
}

impl EventParams {
    fn wants(&self, e: &Event) -> bool {
        self.job_type.as_ref().is_none_or(|t| *t == e.job_type)
            && self.batch.is_none_or(|b| e.batch_id == Some(b))
            && self.status.is_none_or(|st| st == e.status)
    }
}

/// Status events as they happen, as server-sent events named `status` whose data is an
/// [`Event`]. A slow reader skips events rather than holding the server back.
#[utoipa::path(get, path = "/api/v1/events", tag = "status", params(EventParams),
    responses(
        (status = 200, description = "A stream of `status` events", content_type = "text/event-stream", body = Event),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn events(
    State(s): State<ApiState>,
    Query(p): Query<EventParams>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    if let Some(t) = &p.job_type {
        validate_type(t).map_err(ApiError::bad_request)?;
    }
    let stream = s.bus().subscribe().await?;
    // Ends with the server, so that a graceful shutdown does not wait on open streams.
    let stop = s.shutdown().clone().cancelled_owned();
    let out = stream
        .filter(move |e| std::future::ready(p.wants(e)))
        .map(|e| {
            Ok(SseEvent::default()
                .event("status")
                .json_data(&e)
                .unwrap_or_else(|_| SseEvent::default().comment("unserialisable event")))
        })
        .take_until(stop);
    Ok(Sse::new(out).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The liveness answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// 200 while the server runs and reaches its database; 503 when the database does not answer.
#[utoipa::path(get, path = "/healthz", tag = "status",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
pub async fn healthz(State(s): State<ApiState>) -> Result<Json<Health>, ApiError> {
    // A primary-key lookup that finds nothing: the cheapest round trip the store offers.
    match s.client().store().job(Uuid::nil()).await {
        Ok(_) => Ok(Json(Health {
            status: "ok".into(),
        })),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database unreachable",
            ))
        }
    }
}

/// Prometheus text exposition: outcomes by type, processing time, in flight, queue depth,
/// reconciler counts.
#[utoipa::path(get, path = "/metrics", tag = "status",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(s): State<ApiState>) -> impl IntoResponse {
    let depth = s.client().queue().depth().await.ok();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics().render(depth),
    )
}
