//! `/api/v1/batches`: one type, many targets, submitted together; progress by batch ID.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::{ApiError, ErrorBody, Json, Path};
use super::jobs::{check_run_at, traceparent, TraceHeader};
use super::ApiState;
use crate::job::{validate_queue, validate_target, validate_type};
use crate::report::BatchReport;
use crate::store::BatchOptions;

/// Longest batch name: a label for people, not a payload.
pub const MAX_NAME_LEN: usize = 200;

/// A batch to submit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitBatch {
    /// The job type of every job in the batch.
    #[serde(rename = "type")]
    pub job_type: String,
    /// One job per target, in order; at least one, at most the server's limit. Each target
    /// follows the rule of `POST /api/v1/jobs`: at most 1 MiB as compact JSON, no NUL.
    pub targets: Vec<serde_json::Value>,
    /// A label for people (at most 200 characters).
    pub name: Option<String>,
    /// Attempts before a job ends `failed` (1 to 1000) [default: the type's, or 3].
    pub max_attempts: Option<i32>,
    /// Higher runs first [default: 0].
    pub priority: Option<i16>,
    /// When the jobs become due (RFC 3339) [default: now].
    pub run_at: Option<DateTime<Utc>>,
    /// The named queue (ASCII letters, digits, `_ - .`, at most 64) [default: the type's,
    /// or `default`].
    pub queue: Option<String>,
}

/// A submitted batch: its progress, and how many targets were duplicates.
#[derive(Debug, serde::Serialize, serde::Deserialize, ToSchema)]
pub struct SubmittedBatch {
    #[serde(flatten)]
    pub batch: BatchReport,
    /// Targets not inserted because their type derives unique keys (`unique` fields) and an
    /// open job with the same key existed, stored or earlier in this batch. They are not part
    /// of the batch (its `total` leaves them out).
    pub duplicates: u64,
}

/// Submits a batch; its jobs are queued at once when due. If the type derives unique keys
/// from its targets (`unique = [...]`), a target whose key matches an open job (already
/// stored, or earlier in the batch) is not inserted: it is counted in `duplicates`, not in
/// the batch. A target lacking a key field refuses the whole batch (400), nothing inserted.
#[utoipa::path(post, path = "/api/v1/batches", tag = "batches", request_body = SubmitBatch,
    params(TraceHeader),
    responses(
        (status = 201, description = "The batch and its progress", body = SubmittedBatch),
        (status = 400, description = "Malformed or invalid request, or too many targets", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn submit(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Json(req): Json<SubmitBatch>,
) -> Result<(StatusCode, Json<SubmittedBatch>), ApiError> {
    let traceparent = traceparent(&headers)?;
    validate_type(&req.job_type).map_err(ApiError::bad_request)?;
    let max = s.config().max_batch_targets;
    if req.targets.is_empty() {
        return Err(ApiError::bad_request("targets must not be empty"));
    }
    if req.targets.len() > max {
        return Err(ApiError::bad_request(format!(
            "{} targets; a batch may have at most {max}: split it",
            req.targets.len()
        )));
    }
    // The model's rule for one target, applied to each, so a batch cannot carry what a
    // single job may not; the message says which target broke it.
    for (i, t) in req.targets.iter().enumerate() {
        validate_target(t).map_err(|e| ApiError::bad_request(format!("targets[{i}]: {e}")))?;
    }
    if let Some(n) = &req.name {
        if n.chars().count() > MAX_NAME_LEN || n.chars().any(char::is_control) {
            return Err(ApiError::bad_request(format!(
                "name must be at most {MAX_NAME_LEN} characters without control characters"
            )));
        }
    }
    if let Some(t) = req.run_at {
        check_run_at(t)?;
    }
    if let Some(q) = &req.queue {
        validate_queue(q).map_err(ApiError::bad_request)?;
    }
    let sub = s
        .client()
        .submit_batch(
            &req.job_type,
            req.targets,
            BatchOptions {
                name: req.name,
                max_attempts: req.max_attempts,
                priority: req.priority.unwrap_or(0),
                run_at: req.run_at,
                traceparent,
                queue: req.queue,
            },
        )
        .await?;
    let id = sub
        .batch_id
        .ok_or_else(|| ApiError::not_found("the store returned no batch ID"))?;
    Ok((
        StatusCode::CREATED,
        Json(SubmittedBatch {
            batch: find(&s, id).await?,
            duplicates: sub.duplicates,
        }),
    ))
}

/// A batch's progress.
#[utoipa::path(get, path = "/api/v1/batches/{id}", tag = "batches",
    params(("id" = Uuid, Path, description = "Batch ID")),
    responses(
        (status = 200, body = BatchReport),
        (status = 400, description = "Not a UUID", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn show(
    State(s): State<ApiState>,
    Path(id): Path<Uuid>,
) -> Result<Json<BatchReport>, ApiError> {
    Ok(Json(find(&s, id).await?))
}

async fn find(s: &ApiState, id: Uuid) -> Result<BatchReport, ApiError> {
    s.client()
        .store()
        .batch(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("batch {id} not found")))
}
