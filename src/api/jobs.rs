//! `/api/v1/jobs`: submit one job, look one up, list with filters and a cursor, retry, cancel.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::error::{ApiError, ErrorBody, Json, Path, Query};
use super::{ApiState, DEFAULT_PAGE};
use crate::job::{validate_traceparent, validate_type, Job, JobDetail, JobStatus, NewJob};
use crate::store::JobFilter;

/// A job to submit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitJob {
    /// The job type: ASCII letters, digits, `_`, `-`, `.`, `:`; at most 200 bytes.
    #[serde(rename = "type")]
    pub job_type: String,
    /// Any JSON value: what the processor works on. At most 1 MiB as compact JSON, with no
    /// NUL character (`\u0000`) in any string or key.
    pub target: serde_json::Value,
    /// Attempts before the job ends `failed` (1 to 1000) [default: the type's, or 3].
    pub max_attempts: Option<i32>,
    /// Higher runs first (-32768 to 32767) [default: 0].
    pub priority: Option<i16>,
    /// When the job becomes due (RFC 3339) [default: now].
    pub run_at: Option<DateTime<Utc>>,
    /// The named queue: only nodes serving it run the job (ASCII letters, digits, `_ - .`,
    /// at most 64) [default: the type's, or `default`].
    pub queue: Option<String>,
    /// At most one open job (pending or running) of this type with this key: if one exists,
    /// nothing is inserted and the answer is that job, with `"duplicate": true` and status
    /// 200. 1 to 512 bytes [default: the key the type derives from the target's `unique`
    /// fields, if it has any].
    pub unique_key: Option<String>,
    /// With a key, also a duplicate of a job with that key created within this long, finished
    /// or not: `90s`, `15m`, `1h`, `7d` [default: the type's `unique_for`, if any].
    pub unique_for: Option<String>,
}

/// A submitted job: the one inserted (201), or the one it duplicates (200).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubmittedJob {
    #[serde(flatten)]
    pub job: Job,
    /// `true` when nothing was inserted because this open job (or one within the window) has
    /// the same type and unique key.
    pub duplicate: bool,
}

/// One page of jobs, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobPage {
    pub jobs: Vec<Job>,
    /// Pass as `after` for the next page; `null` on the last page.
    pub next: Option<Uuid>,
}

/// Filters and cursor for listing jobs.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `pending`, `succeeded`, `failed` or `cancelled`.
    pub status: Option<String>,
    /// Only jobs of this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub job_type: Option<String>,
    /// Only jobs of this batch.
    pub batch: Option<Uuid>,
    /// The cursor: the `next` of the previous page.
    pub after: Option<Uuid>,
    /// Page size, 1 to the server's maximum (1000 by default) [default: 100].
    pub limit: Option<i64>,
}

/// Submits one job; it is queued at once when due.
#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs", request_body = SubmitJob,
    params(TraceHeader),
    responses(
        (status = 201, description = "The job as stored", body = SubmittedJob),
        (status = 200, description = "A job with the same type and unique key is open (or within the window): that job, `duplicate` true; nothing inserted", body = SubmittedJob),
        (status = 400, description = "Malformed or invalid request", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn submit(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Json(req): Json<SubmitJob>,
) -> Result<(StatusCode, Json<SubmittedJob>), ApiError> {
    let traceparent = traceparent(&headers)?;
    validate_type(&req.job_type).map_err(ApiError::bad_request)?;
    if let Some(t) = req.run_at {
        check_run_at(t)?;
    }
    let job = NewJob {
        max_attempts: req.max_attempts,
        job_type: req.job_type,
        target: req.target,
        run_at: req.run_at,
        priority: req.priority.unwrap_or(0),
        queue: req.queue,
        unique_key: req.unique_key,
        unique_for: req
            .unique_for
            .as_deref()
            .map(crate::config::parse_window)
            .transpose()
            .map_err(ApiError::bad_request)?,
        traceparent,
    };
    // The model's own checks, the target's size and NUL rule among them: one rule on every
    // path in.
    job.validate().map_err(ApiError::bad_request)?;
    let done = s.client().submit_checked(job).await?;
    let id = done.id;
    let job = s
        .client()
        .store()
        .job(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("job {id} vanished after insert")))?;
    let code = if done.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        code,
        Json(SubmittedJob {
            job,
            duplicate: done.duplicate,
        }),
    ))
}

/// The W3C trace context a submit belongs to: its jobs' attempts continue that trace.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct TraceHeader {
    /// `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`, lowercase. Stored with the
    /// jobs; a malformed, empty or repeated header is refused with 400.
    pub traceparent: Option<String>,
}

/// The request's `traceparent` header, checked: one value of the W3C form, or none.
pub(super) fn traceparent(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all("traceparent").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::bad_request(
            "more than one traceparent header: send one",
        ));
    }
    let tp = value
        .to_str()
        .map_err(|_| ApiError::bad_request("traceparent header is not ASCII text"))?
        .trim();
    validate_traceparent(tp).map_err(ApiError::bad_request)?;
    Ok(Some(tp.to_string()))
}

/// One job by ID, with its attempt history (the last 20 failed attempts).
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs",
    params(("id" = Uuid, Path, description = "Job ID")),
    responses(
        (status = 200, body = JobDetail),
        (status = 400, description = "Not a UUID", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn show(
    State(s): State<ApiState>,
    Path(id): Path<Uuid>,
) -> Result<Json<JobDetail>, ApiError> {
    match s.client().store().job_detail(id).await? {
        Some(j) => Ok(Json(j)),
        None => Err(ApiError::not_found(format!("job {id} not found"))),
    }
}

/// Jobs by ID order (creation order), filtered; follow `next` for the following page.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", params(ListParams),
    responses(
        (status = 200, body = JobPage),
        (status = 400, description = "Unknown status, bad UUID, bad limit, unknown parameter", body = ErrorBody),
        (status = 401, body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(s): State<ApiState>,
    Query(p): Query<ListParams>,
) -> Result<Json<JobPage>, ApiError> {
    let max = s.config().max_page;
    let limit = p.limit.unwrap_or(DEFAULT_PAGE.min(max));
    if !(1..=max).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {max}, got {limit}"
        )));
    }
    let status = p
        .status
        .as_deref()
        .map(str::parse::<JobStatus>)
        .transpose()
        .map_err(ApiError::bad_request)?;
    if let Some(t) = &p.job_type {
        validate_type(t).map_err(ApiError::bad_request)?;
    }
    let jobs = s
        .client()
        .store()
        .list_jobs(&JobFilter {
            status,
            job_type: p.job_type,
            batch_id: p.batch,
            after: p.after,
            limit,
        })
        .await?;
    // A full page may have more behind it; a short one is the last.
    let next = if jobs.len() as i64 == limit {
        jobs.last().map(|j| j.id)
    } else {
        None
    };
    Ok(Json(JobPage { jobs, next }))
}

/// Puts a `failed` or `cancelled` job back to `pending` with fresh attempts, and queues it.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/retry", tag = "jobs",
    params(("id" = Uuid, Path, description = "Job ID")),
    responses(
        (status = 200, description = "The job, pending again", body = Job),
        (status = 400, description = "Not a UUID", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The job is not failed or cancelled", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn retry(State(s): State<ApiState>, Path(id): Path<Uuid>) -> Result<Json<Job>, ApiError> {
    let job = s.client().store().retry(id).await?;
    s.client().notify(&[job.id]).await;
    Ok(Json(job))
}

/// Cancels a pending job that is not running right now.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = Uuid, Path, description = "Job ID")),
    responses(
        (status = 200, description = "The job, cancelled", body = Job),
        (status = 400, description = "Not a UUID", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The job is finished or running", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn cancel(
    State(s): State<ApiState>,
    Path(id): Path<Uuid>,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(s.client().store().cancel(id).await?))
}

/// Years the database can store and a schedule can mean; chrono accepts far more.
pub fn check_run_at(t: DateTime<Utc>) -> Result<(), ApiError> {
    if !(1970..=9999).contains(&t.year()) {
        return Err(ApiError::bad_request(
            "run_at must be between the years 1970 and 9999",
        ));
    }
    Ok(())
}
