//! The dashboard: one self-contained HTML page (inline CSS and JavaScript, compiled into the
//! binary) that polls `/api/v1/status`. It loads nothing from anywhere else, and its
//! Content-Security-Policy says so, so it works offline and cannot be made to fetch elsewhere.

use axum::http::header;
use axum::response::{Html, IntoResponse};

const PAGE: &str = include_str!("dashboard.html");

/// Only this origin for data; inline script and style because the page is one file.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// The dashboard page.
#[utoipa::path(get, path = "/", tag = "status",
    responses((status = 200, description = "The dashboard (HTML)", content_type = "text/html", body = String)))]
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(PAGE),
    )
}
