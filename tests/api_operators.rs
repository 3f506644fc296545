//! The operators' API: a job's attempt history, bulk retry and cancel by filter (bounded per
//! request), and what they answer to wrong, empty, huge and hostile input. Through the
//! router with `oneshot`, on PostgreSQL.

mod common;
#[path = "api_support/mod.rs"]
mod support;

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Value};
use skiplock::queue::Queue;
use skiplock::store::Outcome;
use support::{count_status, TestApp};
use uuid::Uuid;

/// Submits a batch of `n` noop jobs and fails each through the store, as a worker would.
async fn failed_batch(app: &TestApp, n: usize) -> (String, Vec<Uuid>) {
    let targets: Vec<Value> = (0..n).map(|i| json!(i)).collect();
    let body = json!({"type": "noop", "targets": targets}).to_string();
    let (st, b) = app.call("POST", "/api/v1/batches", Some(&body)).await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let batch = b["id"].as_str().unwrap().to_string();
    let jobs = app
        .db
        .store
        .list_jobs(&skiplock::store::JobFilter {
            batch_id: Some(batch.parse().unwrap()),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
    let mut slot = app
        .db
        .store
        .slot("node-api", &common::scope())
        .await
        .unwrap();
    let chunk = slot.lock(&ids).await.unwrap();
    let outs: Vec<Outcome> = chunk
        .jobs
        .iter()
        .map(|j| Outcome::Failed {
            id: j.id,
            error: format!("target {} was refused", j.target),
            took: Duration::from_millis(12),
        })
        .collect();
    chunk.finish(&outs).await.unwrap();
    // Drain the queue of the submission's pushes, so the test sees only the retry's.
    let _ = app
        .queue
        .pop("default", 10_000, Duration::from_millis(10))
        .await;
    (batch, ids)
}

#[tokio::test]
async fn a_job_shows_its_attempt_history() {
    let app = TestApp::new().await;
    let (_, ids) = failed_batch(&app, 1).await;
    let (st, j) = app
        .call("GET", &format!("/api/v1/jobs/{}", ids[0]), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(j["status"], "failed");
    let h = j["attempt_history"].as_array().unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0]["attempt"], 1);
    assert_eq!(h[0]["node"], "node-api");
    assert_eq!(h[0]["took_ms"], 12);
    assert_eq!(h[0]["outcome"], "failed");
    assert_eq!(h[0]["error"], "target 0 was refused");
    assert!(h[0]["at"].as_str().unwrap().contains('T'));
    // A fresh job has an empty history, and lists stay lean.
    let body = json!({"type": "noop", "target": 1}).to_string();
    let (_, fresh) = app.call("POST", "/api/v1/jobs", Some(&body)).await;
    let (_, j) = app
        .call(
            "GET",
            &format!("/api/v1/jobs/{}", fresh["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(j["attempt_history"], json!([]));
    let (_, page) = app.call("GET", "/api/v1/jobs", None).await;
    assert!(page["jobs"][0].get("attempt_history").is_none());
}

#[tokio::test]
async fn bulk_retry_and_cancel_change_a_bounded_page_and_queue_the_retried() {
    let app = TestApp::new().await;
    let (batch, ids) = failed_batch(&app, 5).await;
    let retry =
        |limit: u32| json!({"batch": batch, "status": "failed", "limit": limit}).to_string();
    let (st, r) = app
        .call("POST", "/api/v1/jobs/retry", Some(&retry(3)))
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r, json!({"changed": 3, "more": true}));
    let queued = app
        .queue
        .pop("default", 100, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(queued.len(), 3, "the retried jobs were queued after commit");
    let (_, r) = app
        .call("POST", "/api/v1/jobs/retry", Some(&retry(3)))
        .await;
    assert_eq!(r, json!({"changed": 2, "more": false}));
    let (_, r) = app
        .call("POST", "/api/v1/jobs/retry", Some(&retry(3)))
        .await;
    assert_eq!(r, json!({"changed": 0, "more": false}));
    assert_eq!(count_status(&app.db, "pending").await, 5);
    let (_, j) = app
        .call("GET", &format!("/api/v1/jobs/{}", ids[0]), None)
        .await;
    assert_eq!(
        (
            j["attempts"].clone(),
            j["attempt_history"].as_array().unwrap().len()
        ),
        (json!(0), 1)
    );
    // Cancel them: the status defaults to pending, and the default limit covers five.
    let body = json!({"batch": batch}).to_string();
    let (st, r) = app.call("POST", "/api/v1/jobs/cancel", Some(&body)).await;
    assert_eq!(
        (st, r),
        (StatusCode::OK, json!({"changed": 5, "more": false}))
    );
    assert_eq!(count_status(&app.db, "cancelled").await, 5);
    // Cancelled jobs can be retried by type alone.
    let body = json!({"type": "noop", "status": "cancelled"}).to_string();
    let (_, r) = app.call("POST", "/api/v1/jobs/retry", Some(&body)).await;
    assert_eq!(r["changed"], 5);
}

#[tokio::test]
async fn bad_bulk_requests_get_400_and_change_nothing() {
    let app = TestApp::new().await;
    let (batch, _) = failed_batch(&app, 2).await;
    let long_type = "t".repeat(100_000);
    let bodies: Vec<(String, &str)> = vec![
        // Empty: no filter would mean every job.
        ("{}".into(), "at least one filter"),
        (json!({"limit": 5}).to_string(), "at least one filter"),
        // Wrong.
        (json!({"status": "running"}).to_string(), "not running"),
        (json!({"status": "runnin"}).to_string(), "unknown status"),
        (json!({"status": ""}).to_string(), "unknown status"),
        (
            json!({"status": "pending"}).to_string(),
            "only failed or cancelled",
        ),
        (json!({"batch": "not-a-uuid"}).to_string(), "batch"),
        (json!({"batch": batch, "limit": 0}).to_string(), "limit"),
        (json!({"batch": batch, "limit": -5}).to_string(), "limit"),
        (json!({"batch": batch, "limit": "ten"}).to_string(), "limit"),
        (
            json!({"batch": batch, "id": batch}).to_string(),
            "unknown field",
        ),
        (json!({"status": ["failed"]}).to_string(), "status"),
        ("[]".into(), "expected struct"),
        ("not json".into(), "expected"),
        // Huge.
        (
            json!({"batch": batch, "limit": 10_001}).to_string(),
            "limit",
        ),
        (json!({"batch": batch, "limit": 1e300}).to_string(), "limit"),
        (json!({"type": long_type}).to_string(), "longer than"),
        // Hostile.
        (
            json!({"type": "noop'; DROP TABLE jobs;--"}).to_string(),
            "may only contain",
        ),
        (json!({"type": "noop\u{0}"}).to_string(), "may only contain"),
        (
            json!({"batch": format!("{batch}' OR '1'='1")}).to_string(),
            "batch",
        ),
    ];
    for (body, says) in &bodies {
        let m = app
            .expect_error(
                "POST",
                "/api/v1/jobs/retry",
                Some(body),
                StatusCode::BAD_REQUEST,
            )
            .await;
        assert!(m.contains(says), "{body}: {m}");
    }
    for (body, says) in [
        (json!({"status": "failed"}).to_string(), "only pending"),
        (
            json!({"status": "succeeded", "batch": batch}).to_string(),
            "only pending",
        ),
        ("{}".to_string(), "at least one filter"),
        (json!({"type": ""}).to_string(), "must not be empty"),
    ] {
        let m = app
            .expect_error(
                "POST",
                "/api/v1/jobs/cancel",
                Some(&body),
                StatusCode::BAD_REQUEST,
            )
            .await;
        assert!(m.contains(says), "{body}: {m}");
    }
    // Not JSON at all.
    let (st, _) = app.raw("POST", "/api/v1/jobs/cancel", None, &[]).await;
    assert_eq!(st, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // The wrong method on the bulk routes is a JSON 405.
    app.expect_error(
        "GET",
        "/api/v1/jobs/retry",
        None,
        StatusCode::METHOD_NOT_ALLOWED,
    )
    .await;
    assert_eq!(count_status(&app.db, "failed").await, 2, "nothing changed");
}

#[tokio::test]
async fn bulk_routes_need_the_token() {
    let app = TestApp::with(Some("bulk-secret-token"), Default::default()).await;
    let body = json!({"status": "failed"}).to_string();
    for uri in ["/api/v1/jobs/retry", "/api/v1/jobs/cancel"] {
        app.expect_error("POST", uri, Some(&body), StatusCode::UNAUTHORIZED)
            .await;
    }
}
