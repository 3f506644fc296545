//! Unique jobs and cron through the HTTP API and the SQL functions: a duplicate answers 200
//! with `"duplicate": true`, a batch counts its duplicates, bad keys get 400, `GET
//! /api/v1/cron` lists the entries, and `add_job` / `add_jobs` take keys while old calls work.

mod common;
#[path = "api_support/mod.rs"]
mod support;

use axum::http::StatusCode;
use serde_json::{json, Value};
use skiplock::maintenance::CronEntry;
use skiplock::processor::{Registry, UniquePolicy};
use support::{error_message, TestApp};
use uuid::Uuid;

async fn unique_noop(app: &TestApp, fields: &[&str]) {
    let mut reg = Registry::with_builtins();
    let fields = fields.iter().map(|f| f.to_string()).collect();
    reg.set_unique(
        "noop",
        UniquePolicy {
            fields,
            window: None,
        },
    )
    .unwrap();
    app.db.store.publish_policy(&reg.policy()).await.unwrap();
}

#[tokio::test]
async fn a_duplicate_answers_200_with_the_open_job() {
    let app = TestApp::new().await;
    let body = r#"{"type":"noop","target":{"n":1},"unique_key":"invoice-7"}"#;
    let (code, first) = app.call("POST", "/api/v1/jobs", Some(body)).await;
    assert_eq!(code, StatusCode::CREATED, "{first}");
    assert_eq!(first["duplicate"], false);
    let (code, again) = app.call("POST", "/api/v1/jobs", Some(body)).await;
    assert_eq!(code, StatusCode::OK, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["target"], json!({"n": 1}), "the open job as stored");
    // With a window, a finished job counts too.
    let w = r#"{"type":"noop","target":{},"unique_key":"w","unique_for":"1h"}"#;
    let (code, a) = app.call("POST", "/api/v1/jobs", Some(w)).await;
    assert_eq!(code, StatusCode::CREATED);
    let id = a["id"].as_str().unwrap();
    let (code, _) = app
        .call("POST", &format!("/api/v1/jobs/{id}/cancel"), None)
        .await;
    assert_eq!(code, StatusCode::OK);
    let (code, b) = app.call("POST", "/api/v1/jobs", Some(w)).await;
    assert_eq!(
        (code, &b["id"], &b["status"]),
        (StatusCode::OK, &a["id"], &json!("cancelled"))
    );
}

#[tokio::test]
async fn bad_unique_keys_get_400_and_insert_nothing() {
    let app = TestApp::new().await;
    let huge = "k".repeat(513);
    let cases = vec![
        (
            r#"{"type":"noop","target":{},"unique_key":""}"#.to_string(),
            "empty",
        ),
        (
            format!(r#"{{"type":"noop","target":{{}},"unique_key":"{huge}"}}"#),
            "512",
        ),
        (
            r#"{"type":"noop","target":{},"unique_key":42}"#.to_string(),
            "unique_key",
        ),
        (
            r#"{"type":"noop","target":{},"unique_key":["a"]}"#.to_string(),
            "unique_key",
        ),
        (
            r#"{"type":"noop","target":{},"unique_key":{"a":1}}"#.to_string(),
            "unique_key",
        ),
        (
            r#"{"type":"noop","target":{},"unique_key":"a\u0000b"}"#.to_string(),
            "NUL",
        ),
        (
            r#"{"type":"noop","target":{},"unique_key":"k","unique_for":"soon"}"#.to_string(),
            "unique_for",
        ),
        (
            r#"{"type":"noop","target":{},"unique_key":"k","unique_for":3600}"#.to_string(),
            "unique_for",
        ),
        (
            r#"{"type":"noop","target":{},"unique_key":"k","unique_for":"never"}"#.to_string(),
            "unique_for",
        ),
    ];
    for (body, says) in cases {
        let (code, b) = app.call("POST", "/api/v1/jobs", Some(&body)).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{body}: {b}");
        assert!(error_message(&b).contains(says), "{body}: {b}");
    }
    // A type that derives its key refuses a target without the field, with the reason.
    unique_noop(&app, &["invoice"]).await;
    let (code, b) = app
        .call(
            "POST",
            "/api/v1/jobs",
            Some(r#"{"type":"noop","target":{"inv":1}}"#),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{b}");
    assert!(error_message(&b).contains("invoice"), "{b}");
    assert_eq!(app.db.counts().await.pending, 0, "nothing was inserted");
}

#[tokio::test]
async fn a_batch_of_a_unique_type_counts_its_duplicates() {
    let app = TestApp::new().await;
    unique_noop(&app, &["invoice"]).await;
    let body = r#"{"type":"noop","targets":[{"invoice":1},{"invoice":2},{"invoice":1}]}"#;
    let (code, b) = app.call("POST", "/api/v1/batches", Some(body)).await;
    assert_eq!(code, StatusCode::CREATED, "{b}");
    assert_eq!(b["duplicates"], 1);
    assert_eq!(b["total"], 2);
    let (code, b) = app.call("POST", "/api/v1/batches", Some(body)).await;
    assert_eq!(code, StatusCode::CREATED, "{b}");
    assert_eq!(
        (b["duplicates"].as_i64(), b["total"].as_i64()),
        (Some(3), Some(0))
    );
    assert_eq!(app.db.counts().await.pending, 2);
}

#[tokio::test]
async fn cron_entries_are_listed_and_documented() {
    let app = TestApp::new().await;
    let (code, b) = app.call("GET", "/api/v1/cron", None).await;
    assert_eq!((code, b), (StatusCode::OK, json!({"entries": []})));
    let entry = CronEntry::new(
        "nightly",
        "30 2 * * *",
        "Europe/Berlin",
        "noop",
        json!({"r": 1}),
    )
    .unwrap();
    let router = skiplock::api::app(app.state.clone().with_cron(vec![entry]));
    let req = axum::http::Request::get("/api/v1/cron")
        .body(axum::body::Body::empty())
        .unwrap();
    let res = tower::ServiceExt::oneshot(router, req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    let b: Value = serde_json::from_slice(&bytes).unwrap();
    let e = &b["entries"][0];
    assert_eq!(e["name"], "nightly");
    assert_eq!(e["timezone"], "Europe/Berlin");
    assert_eq!(e["catch_up"], "last");
    assert_eq!(e["last_tick"], Value::Null, "no node has seen it yet");
    assert!(e["next_tick"].is_string());
    let (_, doc) = app.call("GET", "/api/v1/openapi.json", None).await;
    assert!(doc["paths"]["/api/v1/cron"]["get"].is_object());
    assert!(doc["components"]["schemas"]["SubmittedJob"].is_object());
}

#[tokio::test]
async fn add_job_takes_a_key_and_old_calls_still_work() {
    let app = TestApp::new().await;
    let pg = app.db.pg.clone().unwrap();
    let s = app.db.schema.clone();
    let one = |sql: String| {
        let pg = pg.clone();
        async move { sqlx::query_scalar::<_, Uuid>(&sql).fetch_one(&pg).await }
    };
    // Calls written before keys existed: by position and by name.
    one(format!(
        "SELECT \"{s}\".add_job('noop', '{{}}', now(), 1::smallint, 2, NULL)"
    ))
    .await
    .unwrap();
    one(format!("SELECT \"{s}\".add_job('noop', max_attempts => 2)"))
        .await
        .unwrap();
    let a = one(format!(
        "SELECT \"{s}\".add_job('noop', '{{}}', unique_key => 'k')"
    ))
    .await
    .unwrap();
    let b = one(format!(
        "SELECT \"{s}\".add_job('noop', '{{\"x\": 1}}', unique_key => 'k')"
    ))
    .await
    .unwrap();
    assert_eq!(a, b, "the duplicate returns the open job's id");
    // add_jobs: keys per target, duplicates within the call name the first.
    let ids: Vec<Uuid> = sqlx::query_scalar(&format!(
        "SELECT * FROM \"{s}\".add_jobs('noop', ARRAY['1', '2', '3']::jsonb[], unique_keys => ARRAY['p', 'q', 'p'])"
    ))
    .fetch_all(&pg)
    .await
    .unwrap();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[0], ids[2]);
    assert_ne!(ids[0], ids[1]);
    // The type's derived key applies to SQL inserts too, identical to the library's.
    unique_noop(&app, &["invoice"]).await;
    let (code, j) = app
        .call(
            "POST",
            "/api/v1/jobs",
            Some(r#"{"type":"noop","target":{"invoice":5}}"#),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED);
    let c = one(format!(
        "SELECT \"{s}\".add_job('noop', '{{\"invoice\": 5, \"y\": 0}}')"
    ))
    .await
    .unwrap();
    assert_eq!(c.to_string(), j["id"].as_str().unwrap());
    let old_many: Vec<Uuid> = sqlx::query_scalar(&format!(
        "SELECT * FROM \"{s}\".add_jobs('fail', ARRAY['1', '2']::jsonb[])"
    ))
    .fetch_all(&pg)
    .await
    .unwrap();
    assert_eq!(old_many.len(), 2);
    let before = app.db.counts().await;
    for (bad, why) in [
        (format!("SELECT \"{s}\".add_job('noop', '{{\"invoice\": 1}}', unique_key => '')"), "unique_key"),
        (format!("SELECT \"{s}\".add_job('noop', '{{\"invoice\": 1}}', unique_key => repeat('k', 513))"), "unique_key"),
        (format!("SELECT \"{s}\".add_job('noop', '{{}}')"), "invoice"),
        (format!("SELECT \"{s}\".add_job('noop', '[1]')"), "JSON object"),
        (format!("SELECT \"{s}\".add_job('fail', '{{}}', unique_key => 'k', unique_for => '-1 hour')"), "negative"),
        (format!("SELECT * FROM \"{s}\".add_jobs('fail', ARRAY['1']::jsonb[], unique_keys => ARRAY['a', 'b'])"), "one entry per target"),
    ] {
        let e = sqlx::query(&bad).execute(&pg).await.unwrap_err().to_string();
        assert!(e.contains(why), "{bad}: {e}");
    }
    assert_eq!(app.db.counts().await, before, "nothing was inserted");
}

/// `add_job` / `add_jobs` take the unique arguments and the queue together: a keyed job lands
/// in its queue, a duplicate names the open job whatever queue the call gave, and a bad queue
/// is refused before any key is written.
#[tokio::test]
async fn add_job_takes_a_key_and_a_queue_together() {
    let app = TestApp::new().await;
    let pg = app.db.pg.clone().unwrap();
    let s = app.db.schema.clone();
    let one = |sql: String| {
        let pg = pg.clone();
        async move { sqlx::query_scalar::<_, Uuid>(&sql).fetch_one(&pg).await }
    };
    let queue_of = |id: Uuid| {
        let pg = pg.clone();
        let s = s.clone();
        async move {
            sqlx::query_scalar::<_, String>(&format!(
                "SELECT queue FROM \"{s}\".jobs WHERE id = $1"
            ))
            .bind(id)
            .fetch_one(&pg)
            .await
            .unwrap()
        }
    };
    // Every argument by position: the old six, the keys, then the queue.
    let a = one(format!(
        "SELECT \"{s}\".add_job('noop', '{{}}', now(), 0::smallint, 2, NULL, 'k', interval '1 hour', 'media')"
    ))
    .await
    .unwrap();
    assert_eq!(queue_of(a).await, "media");
    let b = one(format!(
        "SELECT \"{s}\".add_job('noop', '{{}}', unique_key => 'k', queue => 'other')"
    ))
    .await
    .unwrap();
    assert_eq!(a, b, "keys are per type, whatever the queue");
    assert_eq!(queue_of(b).await, "media");
    let old = one(format!(
        "SELECT \"{s}\".add_job('noop', '{{}}', now(), 1::smallint, 2, NULL)"
    ))
    .await
    .unwrap();
    assert_eq!(queue_of(old).await, "default");
    let ids: Vec<Uuid> = sqlx::query_scalar(&format!(
        "SELECT * FROM \"{s}\".add_jobs('noop', ARRAY['1', '2', '3']::jsonb[], \
         unique_keys => ARRAY['p', NULL, 'k'], queue => 'bulk')"
    ))
    .fetch_all(&pg)
    .await
    .unwrap();
    assert_eq!(ids[2], a, "the third duplicates the open job");
    assert_eq!(queue_of(ids[0]).await, "bulk");
    assert_eq!(queue_of(ids[1]).await, "bulk");
    let plain: Vec<Uuid> = sqlx::query_scalar(&format!(
        "SELECT * FROM \"{s}\".add_jobs('noop', ARRAY['1']::jsonb[], queue => 'bulk')"
    ))
    .fetch_all(&pg)
    .await
    .unwrap();
    assert_eq!(queue_of(plain[0]).await, "bulk");
    let before = app.db.counts().await;
    for bad in [
        format!("SELECT \"{s}\".add_job('noop', '{{}}', unique_key => 'z', queue => '')"),
        format!("SELECT \"{s}\".add_job('noop', '{{}}', unique_key => 'z', queue => 'a b')"),
        format!(
            "SELECT \"{s}\".add_job('noop', '{{}}', unique_key => 'z', queue => repeat('q', 100000))"
        ),
        format!(
            "SELECT \"{s}\".add_job('noop', '{{}}', unique_key => 'z', queue => 'x''; DROP TABLE jobs;--')"
        ),
        format!(
            "SELECT * FROM \"{s}\".add_jobs('noop', ARRAY['1']::jsonb[], unique_keys => ARRAY['z'], queue => 'a:b')"
        ),
    ] {
        let e = sqlx::query(&bad).execute(&pg).await.unwrap_err().to_string();
        assert!(e.contains("invalid queue"), "{bad}: {e}");
        assert!(e.len() < 400, "the error stays short");
    }
    assert_eq!(app.db.counts().await, before, "nothing was inserted");
    let keys: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{s}\".unique_keys WHERE unique_key = 'z'"
    ))
    .fetch_one(&pg)
    .await
    .unwrap();
    assert_eq!(keys, 0, "no key row was left by a refused call");
}
