//! `skiplock serve` and the CLI comforts, through the binary, as a new user would try them:
//! curl-like requests against a running server, `submit --wait`, `jobs retry|cancel`.

mod common;
#[path = "serve_support/mod.rs"]
mod support;

use std::time::Duration;

use serde_json::{json, Value};

use common::{bin, wait_until, Backend, TestStore};
use support::{serve, skiplock};

const TOKEN: &str = "test-token-0123456789abcdef";

#[tokio::test]
async fn serve_refuses_a_public_address_without_a_token() {
    // A database URL that cannot work: the refusal must come before any connection.
    for bind in ["0.0.0.0:0", "[::]:0"] {
        let out = tokio::process::Command::new(bin())
            .args(["--database-url", "postgres://nobody@127.0.0.1:1/none"])
            .args(["serve", "--bind", bind])
            .env_remove("SKIPLOCK_API_TOKEN")
            .output()
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains("refusing to serve on"), "{err}");
        assert!(
            err.contains("--api-token"),
            "the message says what to do: {err}"
        );
    }
    let out = tokio::process::Command::new(bin())
        .args(["serve", "--bind", "not an address"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bind"));
}

#[tokio::test]
async fn a_running_server_takes_a_batch_over_http_with_its_token() {
    let db = TestStore::new(Backend::Postgres).await;
    let server = serve(&db, &["--api-token", TOKEN]).await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", server.base);
    let batch = json!({"type": "noop", "targets": [{"n": 1}, {"n": 2}, {"n": 3}], "name": "curl"});

    let res = http
        .post(url("/api/v1/batches"))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.json::<Value>().await.unwrap()["error"].is_string());
    let res = http
        .post(url("/api/v1/batches"))
        .bearer_auth(TOKEN)
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let done = wait_until(Duration::from_secs(20), || async {
        let b: Value = http
            .get(url(&format!("/api/v1/batches/{id}")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        b["succeeded"] == 3 && b["progress"] == 1.0
    })
    .await;
    assert!(done, "the batch was processed by the server's own worker");

    // A bad request over a real socket: 4xx and JSON, like through the router.
    let res = http
        .post(url("/api/v1/jobs"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{\"type\":")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.json::<Value>().await.unwrap()["error"].is_string());
    let huge = "x".repeat(17 * 1024 * 1024);
    // Its own client: the server may close this connection, which must not poison the pool.
    let res = reqwest::Client::new()
        .post(url("/api/v1/jobs"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(format!("{{\"type\":\"noop\",\"target\":\"{huge}\"}}"))
        .send()
        .await;
    // The server may answer 413 or close the connection mid-upload; it must not accept it.
    if let Ok(r) = res {
        assert_eq!(r.status(), 413);
    }

    let metrics = http
        .get(url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("skiplock_jobs_finished_total{outcome=\"succeeded\",type=\"noop\"} 3"),
        "{metrics}"
    );
    let health = http.get(url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let status = server.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "graceful exit on SIGTERM: {status}");
}

#[tokio::test]
async fn submit_wait_draws_progress_and_fails_when_a_job_fails() {
    let db = TestStore::new(Backend::Postgres).await;
    let server = serve(&db, &[]).await;
    let (ok, out, err) = skiplock(
        &db,
        &["submit", "noop", "--target", "1", "--target", "2", "--wait"],
    )
    .await;
    assert!(ok, "{err}");
    let batch = out.trim();
    assert!(
        batch.parse::<uuid::Uuid>().is_ok(),
        "prints the batch id: {out}"
    );
    assert!(err.contains("2 succeeded, 0 failed"), "{err}");

    let (ok, _, err) = skiplock(
        &db,
        &[
            "submit",
            "fail",
            "--target",
            r#"{"message":"bad invoice"}"#,
            "--target",
            "{}",
            "--max-attempts",
            "1",
            "--wait",
        ],
    )
    .await;
    assert!(!ok, "exits non-zero when a job failed");
    assert!(err.contains("2 of 2 jobs"), "{err}");
    server.terminate(Duration::from_secs(15)).await;
}

#[tokio::test]
async fn jobs_cancel_and_retry_from_the_command_line() {
    let db = TestStore::new(Backend::Postgres).await;
    // Due in the future, so no worker takes it meanwhile.
    let (ok, out, err) = skiplock(
        &db,
        &[
            "submit",
            "noop",
            "--target",
            "1",
            "--run-at",
            "2999-01-01T00:00:00Z",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let id = out.trim().to_string();

    let (ok, out, err) = skiplock(&db, &["jobs", "retry", &id]).await;
    assert!(!ok);
    assert!(err.contains("failed or cancelled"), "{out}{err}");
    let (ok, out, err) = skiplock(&db, &["jobs", "cancel", &id]).await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("{id} cancelled"));
    let (ok, _, err) = skiplock(&db, &["jobs", "cancel", &id]).await;
    assert!(!ok, "a cancelled job cannot be cancelled again");
    assert!(err.starts_with("error:"), "{err}");
    let (ok, out, err) = skiplock(&db, &["jobs", "retry", &id]).await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("{id} pending"));

    let (ok, _, err) = skiplock(
        &db,
        &["jobs", "retry", "0190f0a8-0000-7000-8000-000000000000"],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("not found"), "{err}");
    for bad in ["nope", "", "'; DROP TABLE jobs; --"] {
        let (ok, _, err) = skiplock(&db, &["jobs", "cancel", bad]).await;
        assert!(!ok, "{bad:?}");
        assert!(err.contains("invalid"), "{err}");
    }
}
