//! Errors as HTTP answers: every failure is `{"error": "..."}` with a status code. Client
//! mistakes say what was wrong; server faults say only that something failed (the details go to
//! the log, never to the caller, so no SQL or connection string leaks).
//!
//! axum's own extractors reject bad input with plain-text bodies, so the API uses the wrappers
//! here ([`Json`], [`Query`], [`Path`]) that turn each rejection into the same JSON shape.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::Error;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person to read.
    pub error: String,
}

/// An error on its way to becoming a response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(m) => ApiError::bad_request(m),
            Error::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            Error::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            Error::Database(e) => {
                tracing::error!(error = %e, "database error while serving a request");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
            Error::Config(m) => {
                tracing::error!(error = %m, "configuration error while serving a request");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
            // What is left is the queue's (`Queue`, and `Redis` where that feature is built).
            e => {
                debug_assert!(e.is_queue());
                tracing::error!(error = %e, "queue error while serving a request");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the queue is unavailable")
            }
        }
    }
}

/// axum reports a body that does not parse as 400 and one of the wrong shape as 422. Both
/// are the caller's malformed request, so both are 400 here; 413 (too large) and 415 (not
/// JSON) keep their own codes because they tell the caller something different to fix.
impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = match r.status() {
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            s => s,
        };
        let message = match &r {
            JsonRejection::MissingJsonContentType(_) => {
                "expected a JSON body with `Content-Type: application/json`".to_string()
            }
            JsonRejection::BytesRejection(_) if status == StatusCode::PAYLOAD_TOO_LARGE => {
                "request body is too large".to_string()
            }
            _ => r.body_text(),
        };
        ApiError::new(status, message)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request(r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::bad_request(r.body_text())
    }
}

/// `axum::Json` whose rejections are [`ApiError`]s.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Query` whose rejections are [`ApiError`]s.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// `axum::extract::Path` whose rejections are [`ApiError`]s.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Unknown routes: 404 in the same JSON shape as every other error.
pub async fn no_route() -> ApiError {
    ApiError::not_found("no such route")
}

/// A known route asked with a method it does not serve.
pub async fn wrong_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed for this route",
    )
}
