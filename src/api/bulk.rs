//! Bulk operations: retry or cancel every job a filter matches, a bounded number per request.
//! A request changes at most its `limit` (1 to 10,000, default 1,000) in one transaction and
//! says whether more may match; the jobs it changed no longer match, so the caller repeats
//! the same request until `more` is false.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::{ApiError, ErrorBody, Json};
use super::ApiState;
use crate::job::JobStatus;
use crate::store::{Selection, MAX_BULK};

/// Jobs changed per request when the request does not say.
pub const DEFAULT_BULK: i64 = 1_000;

/// Which jobs to change: every filter given must match, and at least one must be given.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// Retry: `failed` or `cancelled` [default: both]. Cancel: `pending` [default: pending].
    pub status: Option<String>,
    /// Only jobs of this type.
    #[serde(rename = "type")]
    pub job_type: Option<String>,
    /// Only jobs of this batch.
    pub batch: Option<Uuid>,
    /// Most jobs changed by this request, 1 to 10000 [default: 1000].
    pub limit: Option<i64>,
}

/// What a bulk request did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BulkResult {
    /// Jobs changed by this request.
    pub changed: u64,
    /// Whether the request hit its limit: send it again for the next jobs.
    pub more: bool,
}

impl BulkRequest {
    fn selection(self) -> Result<(Selection, i64), ApiError> {
        let status = self
            .status
            .as_deref()
            .map(str::parse::<JobStatus>)
            .transpose()
            .map_err(ApiError::bad_request)?;
        let limit = self.limit.unwrap_or(DEFAULT_BULK);
        if !(1..=MAX_BULK).contains(&limit) {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {MAX_BULK}, got {limit}"
            )));
        }
        let sel = Selection {
            status,
            job_type: self.job_type,
            batch_id: self.batch,
        };
        Ok((sel, limit))
    }
}

/// Puts failed or cancelled jobs matching the filters back to `pending`, with fresh attempts,
/// and queues them.
#[utoipa::path(post, path = "/api/v1/jobs/retry", tag = "jobs", request_body = BulkRequest,
    responses(
        (status = 200, description = "How many jobs were retried", body = BulkResult),
        (status = 400, description = "No filter, a status that cannot be retried, a bad type, batch or limit", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn retry(
    State(s): State<ApiState>,
    Json(req): Json<BulkRequest>,
) -> Result<Json<BulkResult>, ApiError> {
    let (sel, limit) = req.selection()?;
    let due = s.client().store().retry_matching(&sel, limit).await?;
    // Committed: queue them now (a lost push only waits for the reconciler).
    s.client().notify_due(&due).await;
    let changed = due.len() as u64;
    Ok(Json(BulkResult {
        changed,
        more: changed == limit as u64,
    }))
}

/// Cancels pending jobs matching the filters. Jobs running right now are left to finish.
#[utoipa::path(post, path = "/api/v1/jobs/cancel", tag = "jobs", request_body = BulkRequest,
    responses(
        (status = 200, description = "How many jobs were cancelled", body = BulkResult),
        (status = 400, description = "No filter, a status other than pending, a bad type, batch or limit", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn cancel(
    State(s): State<ApiState>,
    Json(req): Json<BulkRequest>,
) -> Result<Json<BulkResult>, ApiError> {
    let (sel, limit) = req.selection()?;
    let changed = s.client().store().cancel_matching(&sel, limit).await?;
    Ok(Json(BulkResult {
        changed,
        more: changed == limit as u64,
    }))
}
