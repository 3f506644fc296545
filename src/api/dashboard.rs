//! The dashboard: one self-contained HTML page (inline CSS and JavaScript, compiled into the
//! binary): the overview polls `/api/v1/status`; the job browser lists, shows, retries and
//! cancels jobs and batches. It loads nothing from anywhere else, and its
//! Content-Security-Policy says so, so it works offline and cannot be made to fetch elsewhere.
//!
//! The page is kept as markup and scripts in `dashboard/` (each file a readable size) and
//! served as one document: the scripts replace the markup's `/* scripts */` placeholder.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{Html, IntoResponse};

const MARKUP: &str = include_str!("dashboard/page.html");
/// In order: helpers and the API call, the overview, the job browser and the router.
const SCRIPTS: [&str; 3] = [
    include_str!("dashboard/common.js"),
    include_str!("dashboard/overview.js"),
    include_str!("dashboard/browser.js"),
];

/// Assembled once; the page never changes while the process runs.
static PAGE: LazyLock<String> =
    LazyLock::new(|| MARKUP.replacen("/* scripts */", &SCRIPTS.concat(), 1));

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
        Html(PAGE.as_str()),
    )
}
