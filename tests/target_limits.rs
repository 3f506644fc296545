//! One rule for a job's target on every path in, as a user meets it: through a running
//! `skiplock serve` (POST /jobs, POST /batches over a real socket) and through the CLI
//! (`--target`, `--file`). The same size limit everywhere, no NUL anywhere (PostgreSQL's
//! jsonb cannot store it), each refusal a clear message, and nothing inserted.

mod common;
#[path = "serve_support/mod.rs"]
mod support;

use std::time::Duration;

use serde_json::{json, Value};

use common::{Backend, TestStore};
use support::{serve, skiplock};

/// The documented limit, written out: the test must notice if it ever changes by accident.
const LIMIT: usize = 1024 * 1024;

/// A JSON string target whose compact encoding is exactly `bytes` long.
fn string_of(bytes: usize) -> Value {
    Value::String("x".repeat(bytes - 2))
}

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let res = http.post(url).json(body).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn message(v: &Value) -> &str {
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {v}"))
}

#[tokio::test]
async fn the_api_holds_every_target_to_the_same_limit_and_refuses_nul() {
    let db = TestStore::new(Backend::Postgres).await;
    // Due far in the future, so the accepted jobs stay pending and can be counted.
    let server = serve(&db, &[]).await;
    let http = reqwest::Client::new();
    let jobs = format!("{}/api/v1/jobs", server.base);
    let batches = format!("{}/api/v1/batches", server.base);
    let later = "2999-01-01T00:00:00Z";

    // The probe's case: one 15 MB target, under the 16 MiB body limit.
    let huge = json!({"type": "noop", "target": string_of(15 * 1000 * 1000), "run_at": later});
    let (st, v) = post(&http, &jobs, &huge).await;
    assert_eq!(st, 400, "{v}");
    assert!(
        message(&v).contains(&LIMIT.to_string()),
        "names the limit: {v}"
    );

    let one_over = json!({"type": "noop", "target": string_of(LIMIT + 1), "run_at": later});
    let (st, v) = post(&http, &jobs, &one_over).await;
    assert_eq!(st, 400, "{v}");
    // Many small parts add up: the limit is on the whole target, not on one string.
    let parts: serde_json::Map<String, Value> = (0..4)
        .map(|i| (format!("k{i}"), string_of(LIMIT / 3)))
        .collect();
    let (st, v) = post(
        &http,
        &jobs,
        &json!({"type": "noop", "target": parts, "run_at": later}),
    )
    .await;
    assert_eq!(st, 400, "{v}");

    for (target, what) in [
        (json!("a\u{0}b"), "NUL in a string"),
        (json!({"k\u{0}": 1}), "NUL in a key"),
        (json!([1, {"deep": ["ok", "x\u{0}"]}]), "NUL nested"),
    ] {
        let (st, v) = post(
            &http,
            &jobs,
            &json!({"type": "noop", "target": target, "run_at": later}),
        )
        .await;
        assert_eq!(st, 400, "{what}: {v}");
        assert!(message(&v).contains("NUL"), "{what}: {v}");
    }

    // A batch is refused whole when one target breaks the rule, and says which one.
    let bad_batch = json!({"type": "noop", "run_at": later,
        "targets": [1, string_of(LIMIT + 1), 3]});
    let (st, v) = post(&http, &batches, &bad_batch).await;
    assert_eq!(st, 400, "{v}");
    assert!(message(&v).contains("targets[1]"), "{v}");
    assert!(message(&v).contains(&LIMIT.to_string()), "{v}");
    let nul_batch = json!({"type": "noop", "run_at": later, "targets": [1, 2, {"a": "\u{0}"}]});
    let (st, v) = post(&http, &batches, &nul_batch).await;
    assert_eq!(st, 400, "{v}");
    assert!(message(&v).contains("targets[2]"), "{v}");
    assert_eq!(db.count_status("pending").await, 0, "nothing was inserted");

    // Exactly at the limit is accepted, on both routes; so is an empty string.
    let at = json!({"type": "noop", "target": string_of(LIMIT), "run_at": later});
    assert_eq!(post(&http, &jobs, &at).await.0, 201);
    let at_batch = json!({"type": "noop", "run_at": later, "targets": [string_of(LIMIT), ""]});
    assert_eq!(post(&http, &batches, &at_batch).await.0, 201);
    assert_eq!(db.count_status("pending").await, 3);
    server.terminate(Duration::from_secs(15)).await;
}

#[tokio::test]
async fn the_cli_refuses_a_bad_target_once_naming_where_it_is() {
    let db = TestStore::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, body: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_string()
    };

    let nul = file("nul.jsonl", b"{\"ok\":1}\n{\"a\":\"x\\u0000y\"}\n");
    let (ok, _, err) = skiplock(&db, &["submit", "noop", "--file", &nul]).await;
    assert!(!ok);
    assert!(err.contains("nul.jsonl:2"), "names the line: {err}");
    assert_eq!(err.matches("NUL").count(), 1, "said once: {err}");
    assert!(
        !err.contains("database error"),
        "refused before the database: {err}"
    );

    let (ok, _, err) = skiplock(
        &db,
        &[
            "submit",
            "noop",
            "--target",
            "1",
            "--target",
            r#"{"k\u0000":2}"#,
        ],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("--target #2"), "{err}");
    assert_eq!(err.matches("NUL").count(), 1, "said once: {err}");

    // Over the limit as compact JSON; the line itself is within the reader's bound.
    let mut over = serde_json::to_vec(&string_of(LIMIT + 1)).unwrap();
    over.push(b'\n');
    let over = file("over.jsonl", &[b"1\n".as_slice(), &over].concat());
    let (ok, _, err) = skiplock(&db, &["submit", "noop", "--file", &over]).await;
    assert!(!ok);
    assert!(err.contains("over.jsonl:2"), "{err}");

    for (args, needle) in [
        (vec!["--target", ""], "not valid JSON"),
        (vec!["--target", "{nope"], "not valid JSON"),
        (vec!["--target", "'; DROP TABLE jobs; --"], "not valid JSON"),
    ] {
        let mut all = vec!["submit", "noop"];
        all.extend(args);
        let (ok, _, err) = skiplock(&db, &all).await;
        assert!(!ok, "{all:?}");
        assert!(err.contains(needle), "{all:?}: {err}");
    }
    assert_eq!(db.count_status("pending").await, 0, "nothing was inserted");

    // Exactly at the limit is accepted, as through the API.
    let mut at = serde_json::to_vec(&string_of(LIMIT)).unwrap();
    at.push(b'\n');
    let at = file("at.jsonl", &at);
    let (ok, _, err) = skiplock(
        &db,
        &[
            "submit",
            "noop",
            "--file",
            &at,
            "--run-at",
            "2999-01-01T00:00:00Z",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(db.count_status("pending").await, 1);
}
