//! The HTTP API's jobs and batches routes, driven through the router with `oneshot` against a
//! real PostgreSQL schema: the right answer, then the wrong, empty, huge and malicious input.

mod common;
#[path = "api_support/mod.rs"]
mod support;

use axum::http::StatusCode;
use serde_json::{json, Value};
use skiplock::api::ApiConfig;
use skiplock::queue::Queue;
use support::{error_message, TestApp};

const NOT_FOUND_ID: &str = "0190f0a8-0000-7000-8000-000000000000";

#[tokio::test]
async fn a_job_is_submitted_queued_and_shown() {
    let app = TestApp::new().await;
    let (st, mut job) = app
        .call(
            "POST",
            "/api/v1/jobs",
            Some(r#"{"type":"noop","target":{"invoice":42},"priority":5,"max_attempts":7}"#),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{job}");
    // The answer to a submit says whether it was a duplicate (of a unique key) beside the job.
    let duplicate = job.as_object_mut().unwrap().remove("duplicate");
    assert_eq!(duplicate, Some(json!(false)));
    assert_eq!(job["type"], "noop");
    assert_eq!(job["target"], json!({"invoice": 42}));
    assert_eq!(job["status"], "pending");
    assert_eq!(job["max_attempts"], 7);
    assert_eq!(job["priority"], 5);
    assert_eq!(app.queue.depth().await.unwrap(), 1, "a due job is queued");

    let id = job["id"].as_str().unwrap();
    let (st, mut shown) = app.call("GET", &format!("/api/v1/jobs/{id}"), None).await;
    assert_eq!(st, StatusCode::OK);
    // One job's page adds its attempt history (none yet) to the job as stored.
    let history = shown.as_object_mut().unwrap().remove("attempt_history");
    assert_eq!(history, Some(json!([])));
    assert_eq!(shown, job);

    // Scheduled for later: stored, not queued.
    let (st, _) = app
        .call(
            "POST",
            "/api/v1/jobs",
            Some(r#"{"type":"noop","target":null,"run_at":"2999-01-01T00:00:00Z"}"#),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(app.queue.depth().await.unwrap(), 1);
}

#[tokio::test]
async fn bad_job_submissions_get_400_and_insert_nothing() {
    let app = TestApp::new().await;
    let deep = "[".repeat(300) + &"]".repeat(300);
    let deep_target = format!(r#"{{"type":"noop","target":{deep}}}"#);
    let long_type = format!(r#"{{"type":"{}","target":1}}"#, "a".repeat(201));
    let cases: Vec<(&str, &str)> = vec![
        ("{", "malformed JSON"),
        ("", "empty body"),
        ("null", "null body"),
        ("[]", "array body"),
        ("\"noop\"", "string body"),
        (r#"{"type":"noop"}"#, "missing target"),
        (r#"{"target":1}"#, "missing type"),
        (r#"{"type":1,"target":1}"#, "type is a number"),
        (r#"{"type":null,"target":1}"#, "type is null"),
        (
            r#"{"type":"noop","target":1,"max_attempts":"3"}"#,
            "max_attempts is a string",
        ),
        (
            r#"{"type":"noop","target":1,"max_attempts":0}"#,
            "max_attempts zero",
        ),
        (
            r#"{"type":"noop","target":1,"max_attempts":-1}"#,
            "max_attempts negative",
        ),
        (
            r#"{"type":"noop","target":1,"max_attempts":1000000}"#,
            "max_attempts huge",
        ),
        (
            r#"{"type":"noop","target":1,"max_attempts":1e400}"#,
            "max_attempts overflow",
        ),
        (
            r#"{"type":"noop","target":1,"priority":40000}"#,
            "priority out of i16",
        ),
        (
            r#"{"type":"noop","target":1,"priority":1.5}"#,
            "priority fractional",
        ),
        (
            r#"{"type":"noop","target":1,"run_at":"tomorrow"}"#,
            "run_at not a time",
        ),
        (
            r#"{"type":"noop","target":1,"run_at":"0001-01-01T00:00:00Z"}"#,
            "run_at year 1",
        ),
        (
            r#"{"type":"noop","target":1,"run_at":"+200000-01-01T00:00:00Z"}"#,
            "run_at far future",
        ),
        (r#"{"type":"noop","target":1,"queue":"x"}"#, "unknown field"),
        (
            r#"{"type":"noop","target":1,"type":"noop"}"#,
            "duplicate field",
        ),
        (r#"{"type":"","target":1}"#, "empty type"),
        (r#"{"type":"a b","target":1}"#, "type with space"),
        (
            r#"{"type":"x'; DROP TABLE jobs;--","target":1}"#,
            "SQL in type",
        ),
        (r#"{"type":"<script>","target":1}"#, "HTML in type"),
        (&long_type, "type too long"),
        (
            r#"{"type":"noop","target":"a\u0000b"}"#,
            "NUL in target string",
        ),
        (
            r#"{"type":"noop","target":{"k\u0000":1}}"#,
            "NUL in target key",
        ),
        (r#"{"type":"noop","target":"\ud800"}"#, "lone surrogate"),
        (&deep_target, "nesting beyond the parser's limit"),
        (r#"{"type":"noop","target":1} trailing"#, "trailing garbage"),
    ];
    for (body, what) in cases {
        let (st, v) = app.call("POST", "/api/v1/jobs", Some(body)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{what}: {v}");
        let msg = error_message(&v);
        assert!(!msg.to_lowercase().contains("sql"), "{what}: {msg}");
    }
    // Not JSON at all: 415 names the header to send.
    let (st, body) = app
        .raw(
            "POST",
            "/api/v1/jobs",
            None,
            &[("content-type", "text/plain")],
        )
        .await;
    assert_eq!(st, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(error_message(&v).contains("Content-Type"));
    assert_eq!(
        support::count_status(&app.db, "pending").await,
        0,
        "nothing was inserted"
    );
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let config = ApiConfig {
        max_body_bytes: 4096,
        ..ApiConfig::default()
    };
    let app = TestApp::with(None, config).await;
    let big = format!(r#"{{"type":"noop","target":"{}"}}"#, "x".repeat(5000));
    let msg = app
        .expect_error(
            "POST",
            "/api/v1/jobs",
            Some(&big),
            StatusCode::PAYLOAD_TOO_LARGE,
        )
        .await;
    assert!(msg.contains("too large"), "{msg}");
    let targets = vec!["y".repeat(100); 100];
    let batch = json!({"type": "noop", "targets": targets}).to_string();
    app.expect_error(
        "POST",
        "/api/v1/batches",
        Some(&batch),
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    // Just under the limit is fine.
    let ok = format!(r#"{{"type":"noop","target":"{}"}}"#, "x".repeat(3000));
    assert_eq!(
        app.call("POST", "/api/v1/jobs", Some(&ok)).await.0,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn a_batch_is_submitted_and_its_progress_shown() {
    let app = TestApp::new().await;
    let body = json!({"type": "noop", "targets": [{"n": 1}, {"n": 2}, {"n": 3}], "name": "<b>nightly</b>"});
    let (st, b) = app
        .call("POST", "/api/v1/batches", Some(&body.to_string()))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    assert_eq!(b["total"], 3);
    assert_eq!(b["pending"], 3);
    assert_eq!(
        b["name"], "<b>nightly</b>",
        "names are data, stored as given"
    );
    assert_eq!(app.queue.depth().await.unwrap(), 3);
    let id = b["id"].as_str().unwrap();
    let (st, shown) = app
        .call("GET", &format!("/api/v1/batches/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(shown["total"], 3);
    assert_eq!(shown["type"], "noop");

    app.expect_error(
        "GET",
        &format!("/api/v1/batches/{NOT_FOUND_ID}"),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    for bad in [
        "nope",
        "1",
        "%00",
        "0190f0a8-0000-7000-8000-00000000000Z",
        &"a".repeat(5000),
    ] {
        app.expect_error(
            "GET",
            &format!("/api/v1/batches/{bad}"),
            None,
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
}

#[tokio::test]
async fn bad_batches_get_400_and_insert_nothing() {
    let config = ApiConfig {
        max_batch_targets: 10,
        ..ApiConfig::default()
    };
    let app = TestApp::with(None, config).await;
    let eleven = json!({"type": "noop", "targets": vec![1; 11]}).to_string();
    let long_name = json!({"type": "noop", "targets": [1], "name": "n".repeat(201)}).to_string();
    let cases: Vec<(&str, &str)> = vec![
        (r#"{"type":"noop","targets":[]}"#, "no targets"),
        (r#"{"type":"noop"}"#, "targets missing"),
        (r#"{"type":"noop","targets":{"a":1}}"#, "targets an object"),
        (r#"{"type":"noop","targets":"1,2"}"#, "targets a string"),
        (r#"{"type":"noop","targets":[1],"name":7}"#, "name a number"),
        (
            r#"{"type":"noop","targets":[1],"name":"a\nb"}"#,
            "control character in name",
        ),
        (
            r#"{"type":"noop","targets":[1],"name":"a\u0000"}"#,
            "NUL in name",
        ),
        (
            r#"{"type":"noop","targets":[1,"\u0000"]}"#,
            "NUL in a target",
        ),
        (r#"{"type":"noop","targets":[1],"size":1}"#, "unknown field"),
        (r#"{"type":"bad type","targets":[1]}"#, "bad type"),
        (
            r#"{"type":"noop","targets":[1],"max_attempts":5000}"#,
            "max_attempts too big",
        ),
        (&eleven, "more targets than the limit"),
        (&long_name, "name too long"),
    ];
    for (body, what) in cases {
        let (st, v) = app.call("POST", "/api/v1/batches", Some(body)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{what}: {v}");
        error_message(&v);
    }
    let ten = json!({"type": "noop", "targets": vec![1; 10]}).to_string();
    assert_eq!(
        app.call("POST", "/api/v1/batches", Some(&ten)).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        support::count_status(&app.db, "pending").await,
        10,
        "only the good batch"
    );
}

#[tokio::test]
async fn listing_pages_with_a_cursor_and_filters() {
    let app = TestApp::new().await;
    let (_, b) = app
        .call(
            "POST",
            "/api/v1/batches",
            Some(r#"{"type":"noop","targets":[1,2,3,4,5]}"#),
        )
        .await;
    let batch = b["id"].as_str().unwrap().to_string();
    for _ in 0..2 {
        app.call(
            "POST",
            "/api/v1/jobs",
            Some(r#"{"type":"other","target":0}"#),
        )
        .await;
    }
    // Walk all seven jobs three at a time.
    let mut seen = Vec::new();
    let mut uri = "/api/v1/jobs?limit=3".to_string();
    loop {
        let (st, page) = app.call("GET", &uri, None).await;
        assert_eq!(st, StatusCode::OK, "{page}");
        let jobs = page["jobs"].as_array().unwrap();
        seen.extend(jobs.iter().map(|j| j["id"].as_str().unwrap().to_string()));
        match page["next"].as_str() {
            Some(next) => uri = format!("/api/v1/jobs?limit=3&after={next}"),
            None => break,
        }
        assert!(seen.len() <= 7, "the cursor must end");
    }
    assert_eq!(seen.len(), 7);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "in ID order, no duplicates");

    let count = |v: &Value| v["jobs"].as_array().unwrap().len();
    let (_, p) = app
        .call("GET", &format!("/api/v1/jobs?batch={batch}"), None)
        .await;
    assert_eq!(count(&p), 5);
    assert!(p["next"].is_null());
    let (_, p) = app
        .call("GET", "/api/v1/jobs?type=other&status=pending", None)
        .await;
    assert_eq!(count(&p), 2);
    let (_, p) = app.call("GET", "/api/v1/jobs?status=failed", None).await;
    assert_eq!(count(&p), 0);
    let (_, p) = app
        .call("GET", &format!("/api/v1/jobs?after={}", seen[6]), None)
        .await;
    assert_eq!(count(&p), 0);
}

#[tokio::test]
async fn bad_list_parameters_get_400() {
    let app = TestApp::new().await;
    for q in [
        "status=runnin",
        "status=",
        "status=PENDING",
        "status=pending&status=failed",
        "limit=0",
        "limit=-1",
        "limit=1001",
        "limit=99999999999999999999",
        "limit=abc",
        "limit=",
        "after=not-a-uuid",
        "batch=1",
        "batch=",
        "type=a%20b",
        "type=",
        "colour=red",
        "status=pending%27%3BDROP%20TABLE%20jobs%3B--",
    ] {
        let msg = app
            .expect_error(
                "GET",
                &format!("/api/v1/jobs?{q}"),
                None,
                StatusCode::BAD_REQUEST,
            )
            .await;
        assert!(!msg.contains("SELECT"), "{q}: {msg}");
    }
    assert_eq!(
        app.call("GET", "/api/v1/jobs?limit=1000", None).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn cancel_and_retry_follow_the_job_state() {
    let app = TestApp::new().await;
    let (_, job) = app
        .call(
            "POST",
            "/api/v1/jobs",
            Some(r#"{"type":"noop","target":1}"#),
        )
        .await;
    let id = job["id"].as_str().unwrap();
    // Pending: not retryable; cancellable once.
    let msg = app
        .expect_error(
            "POST",
            &format!("/api/v1/jobs/{id}/retry"),
            None,
            StatusCode::CONFLICT,
        )
        .await;
    assert!(msg.contains("failed or cancelled"), "{msg}");
    let (st, c) = app
        .call("POST", &format!("/api/v1/jobs/{id}/cancel"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert_eq!(c["status"], "cancelled");
    app.expect_error(
        "POST",
        &format!("/api/v1/jobs/{id}/cancel"),
        None,
        StatusCode::CONFLICT,
    )
    .await;
    // Retried: pending again and queued again (the first ID was popped by nobody, so the
    // queue dedups it: depth stays 1).
    let (st, r) = app
        .call("POST", &format!("/api/v1/jobs/{id}/retry"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "pending");
    assert_eq!(r["attempts"], 0);
    assert_eq!(app.queue.depth().await.unwrap(), 1);

    for action in ["retry", "cancel"] {
        app.expect_error(
            "POST",
            &format!("/api/v1/jobs/{NOT_FOUND_ID}/{action}"),
            None,
            StatusCode::NOT_FOUND,
        )
        .await;
        app.expect_error(
            "POST",
            &format!("/api/v1/jobs/xyz/{action}"),
            None,
            StatusCode::BAD_REQUEST,
        )
        .await;
        app.expect_error(
            "GET",
            &format!("/api/v1/jobs/{id}/{action}"),
            None,
            StatusCode::METHOD_NOT_ALLOWED,
        )
        .await;
    }
    app.expect_error(
        "GET",
        &format!("/api/v1/jobs/{NOT_FOUND_ID}"),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    app.expect_error(
        "GET",
        "/api/v1/jobs/..%2Fstatus",
        None,
        StatusCode::BAD_REQUEST,
    )
    .await;
}
