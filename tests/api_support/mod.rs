//! Shared by the API tests: an app on a fresh schema, and one-call request helpers that drive
//! the router with `oneshot` (no socket), as axum's own testing example does.
#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt;

use skiplock::api::{app, ApiConfig, ApiState};
use skiplock::events::LocalBus;
use skiplock::metrics::Metrics;
use skiplock::queue::memory::MemoryQueue;
use skiplock::Client;

use crate::common::{Backend, TestStore};

/// An app over its own schema, plus handles to what is behind it.
pub struct TestApp {
    pub db: TestStore,
    pub state: ApiState,
    pub queue: Arc<MemoryQueue>,
    pub bus: Arc<LocalBus>,
    pub metrics: Arc<Metrics>,
    pub router: Router,
}

impl TestApp {
    pub async fn new() -> TestApp {
        Self::with(None, ApiConfig::default()).await
    }

    pub async fn with(token: Option<&str>, config: ApiConfig) -> TestApp {
        let db = TestStore::new(Backend::Postgres).await;
        let queue = Arc::new(MemoryQueue::default());
        let bus = Arc::new(LocalBus::default());
        let metrics = Arc::new(Metrics::default());
        let client = Client::new(db.store.clone(), queue.clone());
        let mut state = ApiState::new(client, bus.clone(), metrics.clone()).with_config(config);
        if let Some(t) = token {
            state = state.with_token(t);
        }
        let router = app(state.clone());
        TestApp {
            db,
            state,
            queue,
            bus,
            metrics,
            router,
        }
    }

    /// Sends a request; returns the status and the body parsed as JSON (`Value::Null` when
    /// the body is not JSON, which the caller's assertions then catch).
    pub async fn call(&self, method: &str, uri: &str, body: Option<&str>) -> (StatusCode, Value) {
        self.call_with(method, uri, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: &str,
        uri: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let (status, bytes) = self.raw(method, uri, body, headers).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// The status and the raw body.
    pub async fn raw(
        &self,
        method: &str,
        uri: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Vec<u8>) {
        let mut req = Request::builder().method(method).uri(uri);
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(body.map(|b| Body::from(b.to_string())).unwrap_or_default())
            .unwrap();
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, bytes.to_vec())
    }

    /// Asserts a 4xx with the JSON error shape, and returns the message.
    pub async fn expect_error(
        &self,
        method: &str,
        uri: &str,
        body: Option<&str>,
        want: StatusCode,
    ) -> String {
        let (status, v) = self.call(method, uri, body).await;
        assert_eq!(status, want, "{method} {uri} {body:?} → {v}");
        error_message(&v)
    }
}

/// Jobs with `status` in the app's schema, counted through the store (not through the API
/// under test).
pub async fn count_status(db: &TestStore, status: &str) -> i64 {
    let jobs = db
        .store
        .list_jobs(&skiplock::store::JobFilter {
            status: Some(status.parse().unwrap()),
            limit: 1_000_000,
            ..Default::default()
        })
        .await
        .unwrap();
    jobs.len() as i64
}

/// The `error` of a JSON error body; fails the test if the body is not one.
pub fn error_message(v: &Value) -> String {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not a JSON object: {v}"));
    assert_eq!(obj.len(), 1, "error bodies hold only `error`: {v}");
    let m = obj["error"]
        .as_str()
        .expect("error is a string")
        .to_string();
    assert!(!m.is_empty());
    m
}
