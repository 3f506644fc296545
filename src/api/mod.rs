//! The HTTP API, dashboard and metrics: one axum [`Router`] built by [`app`], served by
//! `skiplock serve` and testable without a socket (`tower::ServiceExt::oneshot`).
//!
//! - [`jobs`] and [`batches`]: submit, look up, list, retry, cancel.
//! - [`cron`]: the scheduled entries with their last and next ticks.
//! - [`bulk`]: retry or cancel every job a filter matches, a bounded number per request.
//! - [`status`]: the status report, server-sent status events, `/healthz`, `/metrics`.
//! - [`auth`]: the optional bearer token in front of every `/api/v1` route.
//! - [`dashboard`]: the self-contained HTML page at `/`.
//! - [`openapi`]: the OpenAPI 3 document, generated from the same route table as the router.
//! - [`error`]: every failure as `{"error": "..."}` with its status code.
//! - [`server`]: the accept loop `serve` runs it in: connection cap, header and idle
//!   timeouts, graceful drain ([`stall`] tells a connection stuck on its peer).

pub mod auth;
pub mod batches;
pub mod bulk;
pub mod cron;
pub mod dashboard;
pub mod error;
pub mod jobs;
pub mod openapi;
pub mod server;
pub mod stall;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::events::EventBus;
use crate::maintenance::CronEntry;
use crate::metrics::Metrics;

/// Limits of the API, each with a default that suits a single service.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest request body; larger ones get 413. Default 16 MiB: a batch of about a hundred
    /// thousand small targets, while one request cannot pin much of the server's memory.
    pub max_body_bytes: usize,
    /// Most targets one `POST /api/v1/batches` may carry. Default 100,000: larger loads go
    /// through several batches (or `skiplock submit --file`).
    pub max_batch_targets: usize,
    /// Most jobs one `GET /api/v1/jobs` page returns. Default 1,000.
    pub max_page: i64,
    /// Nodes silent this long are left out of `/api/v1/status`. Default 10 s.
    pub node_stale: Duration,
}

/// Page size when `limit` is not given.
pub const DEFAULT_PAGE: i64 = 100;

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_body_bytes: 16 * 1024 * 1024,
            max_batch_targets: 100_000,
            max_page: 1_000,
            node_stale: Duration::from_secs(10),
        }
    }
}

impl ApiConfig {
    pub fn validate(&self) -> Result<()> {
        if self.max_body_bytes < 1024 {
            return Err(Error::Config(
                "the body limit must be at least 1024 bytes".into(),
            ));
        }
        if self.max_batch_targets == 0 || self.max_page < 1 || self.node_stale.is_zero() {
            return Err(Error::Config(
                "the batch limit, page size and node timeout must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// What every handler shares. Cheap to clone (one `Arc`), as axum clones it per request.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    bus: Arc<dyn EventBus>,
    metrics: Arc<Metrics>,
    /// `None`: the API is open (only allowed on loopback by `serve`).
    token: Option<String>,
    config: ApiConfig,
    /// Cancelled on shutdown, so that event streams end and the server can drain.
    shutdown: CancellationToken,
    /// The cron entries the node evaluates, for `GET /api/v1/cron` and the dashboard.
    cron: Arc<Vec<CronEntry>>,
}

impl ApiState {
    pub fn new(client: Client, bus: Arc<dyn EventBus>, metrics: Arc<Metrics>) -> Self {
        Self::build(
            client,
            bus,
            metrics,
            None,
            ApiConfig::default(),
            CancellationToken::new(),
        )
    }

    /// Every part spelled out; [`ApiState::new`] fills the defaults. New jobs get their type's
    /// policy in the database, where the node published it at start.
    pub fn build(
        client: Client,
        bus: Arc<dyn EventBus>,
        metrics: Arc<Metrics>,
        token: Option<String>,
        config: ApiConfig,
        shutdown: CancellationToken,
    ) -> Self {
        ApiState {
            inner: Arc::new(Inner {
                client,
                bus,
                metrics,
                token: token.filter(|t| !t.is_empty()),
                config,
                shutdown,
                cron: Arc::new(Vec::new()),
            }),
        }
    }

    /// The same state with a bearer token required on `/api/v1`.
    pub fn with_token(self, token: impl Into<String>) -> Self {
        self.rebuild(|i| i.token = Some(token.into()).filter(|t| !t.is_empty()))
    }

    /// The same state with other limits.
    pub fn with_config(self, config: ApiConfig) -> Self {
        self.rebuild(|i| i.config = config)
    }

    /// The same state showing these cron entries.
    pub fn with_cron(self, entries: Vec<CronEntry>) -> Self {
        self.rebuild(|i| i.cron = Arc::new(entries))
    }

    fn rebuild(self, edit: impl FnOnce(&mut Inner)) -> Self {
        let i = &self.inner;
        let mut inner = Inner {
            client: i.client.clone(),
            bus: i.bus.clone(),
            metrics: i.metrics.clone(),
            token: i.token.clone(),
            config: i.config.clone(),
            shutdown: i.shutdown.clone(),
            cron: i.cron.clone(),
        };
        edit(&mut inner);
        ApiState {
            inner: Arc::new(inner),
        }
    }

    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    pub fn bus(&self) -> &Arc<dyn EventBus> {
        &self.inner.bus
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    pub fn token(&self) -> Option<&str> {
        self.inner.token.as_deref()
    }

    pub fn config(&self) -> &ApiConfig {
        &self.inner.config
    }

    pub fn cron(&self) -> &[CronEntry] {
        &self.inner.cron
    }

    pub fn shutdown(&self) -> &CancellationToken {
        &self.inner.shutdown
    }
}

/// The whole HTTP surface: `/api/v1` (behind the token when one is set), `/metrics`,
/// `/healthz` and the dashboard at `/`. Unknown routes and wrong methods answer in JSON too.
pub fn app(state: ApiState) -> Router {
    let (v1, public) = openapi::routers();
    let v1 = v1.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::require_token,
    ));
    let (router, _doc) = v1.merge(public).split_for_parts();
    router
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::wrong_method)
        .layer(DefaultBodyLimit::max(state.config().max_body_bytes))
        .with_state(state)
}
