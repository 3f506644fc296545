//! The HTTP API's token, live events, status report, metrics, OpenAPI document, fallbacks and
//! internal errors, through the router with `oneshot`, with a real worker where jobs must
//! actually run.

mod common;
#[path = "api_support/mod.rs"]
mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::StreamExt;
use serde_json::{json, Value};
use skiplock::api::ApiConfig;
use skiplock::events::{Event, EventBus, EventStatus};
use skiplock::Node;
use support::{error_message, TestApp};
use tower::ServiceExt;
use uuid::Uuid;

use common::wait_until;

#[tokio::test]
async fn the_token_guards_every_api_route_and_only_those() {
    let app = TestApp::with(Some("s3cret-token"), ApiConfig::default()).await;
    let guarded = [
        ("GET", "/api/v1/status"),
        ("GET", "/api/v1/jobs"),
        ("POST", "/api/v1/jobs"),
        ("POST", "/api/v1/batches"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/api/v1/events"),
        ("GET", "/api/v1/jobs/0190f0a8-0000-7000-8000-000000000000"),
        (
            "POST",
            "/api/v1/jobs/0190f0a8-0000-7000-8000-000000000000/retry",
        ),
    ];
    let wrong: [&[(&str, &str)]; 7] = [
        &[],
        &[("authorization", "Bearer wrong")],
        &[("authorization", "Bearer s3cret-toke")],
        &[("authorization", "Bearer s3cret-token-and-more")],
        &[("authorization", "Basic czNjcmV0LXRva2Vu")],
        &[("authorization", "s3cret-token")],
        &[("authorization", "Bearer ")],
    ];
    for (m, uri) in guarded {
        for headers in wrong {
            let (st, body) = app.raw(m, uri, None, headers).await;
            assert_eq!(st, StatusCode::UNAUTHORIZED, "{m} {uri} {headers:?}");
            error_message(&serde_json::from_slice(&body).unwrap());
        }
    }
    let ok = [("authorization", "Bearer s3cret-token")];
    let (st, _) = app.call_with("GET", "/api/v1/status", None, &ok).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = app
        .call_with(
            "GET",
            "/api/v1/status",
            None,
            &[("authorization", "bearer s3cret-token")],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "the scheme is case-insensitive");
    let (st, j) = app
        .call_with(
            "POST",
            "/api/v1/jobs",
            Some(r#"{"type":"noop","target":1}"#),
            &ok,
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{j}");
    // The token is checked before the body is even parsed: no information without it.
    let (st, _) = app.call("POST", "/api/v1/jobs", Some("{")).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // Outside /api/v1: open, so probes and scrapers need no secret.
    for uri in ["/healthz", "/metrics", "/"] {
        assert_eq!(
            app.raw("GET", uri, None, &[]).await.0,
            StatusCode::OK,
            "{uri}"
        );
    }
}

#[tokio::test]
async fn a_batch_posted_over_http_runs_and_shows_in_status_and_metrics() {
    let app = TestApp::new().await;
    let worker = Node::builder(app.db.store.clone(), app.queue.clone())
        .events(app.bus.clone())
        .metrics(app.metrics.clone())
        .concurrency(4)
        .start()
        .await
        .unwrap();
    let body = json!({"type": "noop", "targets": [1, 2, 3], "name": "http batch"});
    let (st, b) = app
        .call("POST", "/api/v1/batches", Some(&body.to_string()))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let id = b["id"].as_str().unwrap().to_string();
    let (_, _) = app
        .call(
            "POST",
            "/api/v1/jobs",
            Some(r#"{"type":"fail","target":{"message":"nope"},"max_attempts":1}"#),
        )
        .await;
    let uri = format!("/api/v1/batches/{id}");
    assert!(
        wait_until(Duration::from_secs(20), || async {
            app.call("GET", &uri, None).await.1["succeeded"] == 3
        })
        .await,
        "the batch finished"
    );
    assert!(
        wait_until(Duration::from_secs(20), || async {
            support::count_status(&app.db, "failed").await == 1
        })
        .await
    );
    let (st, r) = app.call("GET", "/api/v1/status", None).await;
    assert_eq!(st, StatusCode::OK);
    let noop = r["types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "noop")
        .unwrap();
    assert_eq!(noop["succeeded"], 3);
    assert_eq!(r["batches"][0]["progress"], 1.0);
    assert_eq!(r["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(r["queue_depth"], 0);
    assert_eq!(r["throughput"]["buckets_10s"].as_array().unwrap().len(), 30);

    let (st, text) = app.raw("GET", "/metrics", None, &[]).await;
    assert_eq!(st, StatusCode::OK);
    let text = String::from_utf8(text).unwrap();
    for line in [
        "skiplock_jobs_finished_total{outcome=\"succeeded\",type=\"noop\"} 3",
        "skiplock_jobs_finished_total{outcome=\"failed\",type=\"fail\"} 1",
        "skiplock_job_duration_seconds_count{type=\"noop\"} 3",
        "skiplock_jobs_in_flight 0",
        "skiplock_queue_depth 0",
        "# TYPE skiplock_reconciler_enqueued_total counter",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    worker.shutdown(Duration::from_secs(5)).await;
}

/// Reads the SSE body until `want` events arrived or two seconds passed.
async fn read_events(body: Body, want: usize) -> Vec<Value> {
    let mut stream = body.into_data_stream();
    let mut text = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while events.len() < want {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            _ => break,
        }
        events = text
            .split("\n\n")
            .filter(|f| f.contains("event: status"))
            .filter_map(|f| f.lines().find_map(|l| l.strip_prefix("data: ")))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
    }
    events
}

fn event(job_type: &str, batch: Option<Uuid>, status: EventStatus) -> Event {
    Event {
        job_id: Uuid::now_v7(),
        job_type: job_type.into(),
        batch_id: batch,
        status,
        node: "test-node".into(),
        at: chrono::Utc::now(),
        error: None,
    }
}

#[tokio::test]
async fn events_stream_as_sse_with_filters() {
    let app = TestApp::new().await;
    let batch = Uuid::now_v7();
    let req = Request::get(format!(
        "/api/v1/events?type=noop&batch={batch}&status=succeeded"
    ))
    .body(Body::empty())
    .unwrap();
    let res = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let wanted = event("noop", Some(batch), EventStatus::Succeeded);
    app.bus
        .publish(vec![
            event("noop", Some(batch), EventStatus::Running),
            event("other", Some(batch), EventStatus::Succeeded),
            event("noop", None, EventStatus::Succeeded),
            event("noop", Some(Uuid::now_v7()), EventStatus::Succeeded),
            wanted.clone(),
        ])
        .await
        .unwrap();
    let got = read_events(res.into_body(), 2).await;
    assert_eq!(got.len(), 1, "only the matching event: {got:?}");
    assert_eq!(got[0]["job_id"], wanted.job_id.to_string());
    assert_eq!(got[0]["status"], "succeeded");
    assert_eq!(got[0]["type"], "noop");

    // The stream ends when the server shuts down, so a graceful stop is not held open.
    let req = Request::get("/api/v1/events").body(Body::empty()).unwrap();
    let res = app.router.clone().oneshot(req).await.unwrap();
    app.state.shutdown().cancel();
    let mut s = res.into_body().into_data_stream();
    let ended = tokio::time::timeout(Duration::from_secs(2), async {
        while s.next().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the event stream ended on shutdown");

    for q in ["status=done", "batch=x", "type=a%20b", "limit=3"] {
        app.expect_error(
            "GET",
            &format!("/api/v1/events?{q}"),
            None,
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
}

/// Every path and method the document lists must reach a handler (not the unknown-route or
/// wrong-method fallback), and every route of the DESIGN.md contract must be in the document.
#[tokio::test]
async fn the_openapi_document_and_the_router_agree() {
    let app = TestApp::new().await;
    let (st, doc) = app.call("GET", "/api/v1/openapi.json", None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let mut listed = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            if !["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            listed.push(format!("{} {path}", method.to_uppercase()));
            let uri = path.replace("{id}", &Uuid::now_v7().to_string());
            let m = method.to_uppercase();
            let body = (m == "POST").then_some("{}");
            let (st, body) = if uri.ends_with("/events") {
                // A live stream never ends; its status line is enough.
                let req = Request::get(&uri).body(Body::empty()).unwrap();
                (
                    app.router.clone().oneshot(req).await.unwrap().status(),
                    Vec::new(),
                )
            } else {
                app.raw(&m, &uri, body, &[]).await
            };
            assert_ne!(
                st,
                StatusCode::METHOD_NOT_ALLOWED,
                "{m} {path} is documented but not routed"
            );
            let text = String::from_utf8_lossy(&body);
            assert!(
                !text.contains("no such route"),
                "{m} {path} is documented but not routed"
            );
        }
    }
    listed.sort();
    let mut contract: Vec<String> = [
        "POST /api/v1/jobs",
        "POST /api/v1/batches",
        "GET /api/v1/jobs/{id}",
        "GET /api/v1/jobs",
        "POST /api/v1/jobs/{id}/retry",
        "POST /api/v1/jobs/{id}/cancel",
        // Bulk operations by filter (issue 16), beyond DESIGN.md's list.
        "POST /api/v1/jobs/retry",
        "POST /api/v1/jobs/cancel",
        "GET /api/v1/batches/{id}",
        "GET /api/v1/cron",
        "GET /api/v1/status",
        "GET /api/v1/events",
        "GET /api/v1/openapi.json",
        "GET /metrics",
        "GET /healthz",
        "GET /",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    contract.sort();
    assert_eq!(
        listed, contract,
        "the document lists exactly the contract's routes"
    );
    // The schemas a client generator needs are there, with the contract's field names.
    let job = &doc["components"]["schemas"]["Job"]["properties"];
    assert!(
        job["type"].is_object() && job["target"].is_object(),
        "{job}"
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn the_dashboard_is_one_self_contained_page() {
    let app = TestApp::new().await;
    let req = Request::get("/").body(Body::empty()).unwrap();
    let res = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"));
    let html = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    let html = String::from_utf8(html.to_vec()).unwrap();
    // One page: every script inlined, the API called relative to it.
    assert!(html.contains("fetch(\"api/v1/\" + path"));
    assert!(html.contains("api(\"status\")"));
    assert!(!html.contains("/* scripts */"), "the scripts were put in");
    for view in [
        "view-overview",
        "view-jobs",
        "view-job",
        "view-batch",
        "confirm-ok",
    ] {
        assert!(html.contains(&format!("id=\"{view}\"")), "{view}");
    }
    for external in ["http://", "https://", "//cdn", "<link", "src=\""] {
        let hits: Vec<_> = html
            .match_indices(external)
            .filter(|(i, _)| !html[*i..].starts_with("http://www.w3.org/2000/svg"))
            .collect();
        assert!(
            hits.is_empty(),
            "the page loads nothing from elsewhere: {external}"
        );
    }
    assert!(
        !html.contains("innerHTML"),
        "server data is rendered as text only"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_json() {
    let app = TestApp::new().await;
    for uri in [
        "/nope",
        "/api/v1",
        "/api/v1/",
        "/api/v2/jobs",
        "/api/v1/jobs/a/b/c",
        "/metrics/x",
    ] {
        let msg = app
            .expect_error("GET", uri, None, StatusCode::NOT_FOUND)
            .await;
        assert_eq!(msg, "no such route");
    }
    for (m, uri) in [
        ("DELETE", "/api/v1/jobs"),
        ("PUT", "/api/v1/batches"),
        ("POST", "/api/v1/status"),
        ("POST", "/healthz"),
        ("DELETE", "/"),
    ] {
        app.expect_error(m, uri, None, StatusCode::METHOD_NOT_ALLOWED)
            .await;
    }
}

#[tokio::test]
async fn database_failures_are_500_without_details() {
    let app = TestApp::new().await;
    let pg = app.db.pg.clone().unwrap();
    sqlx::query(&format!("DROP SCHEMA {} CASCADE", app.db.schema))
        .execute(&pg)
        .await
        .unwrap();
    for (m, uri, body) in [
        (
            "GET",
            "/api/v1/jobs/0190f0a8-0000-7000-8000-000000000000".to_string(),
            None,
        ),
        ("GET", "/api/v1/status".to_string(), None),
        (
            "POST",
            "/api/v1/jobs".to_string(),
            Some(r#"{"type":"noop","target":1}"#),
        ),
    ] {
        let (st, v) = app.call(m, &uri, body).await;
        assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR, "{uri}: {v}");
        assert_eq!(error_message(&v), "internal error");
    }
    let (st, v) = app.call("GET", "/healthz", None).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_message(&v), "database unreachable");
}
