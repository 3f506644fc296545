//! The job browser in a real browser, clicking: headless Chromium against a running
//! `skiplock serve` on PostgreSQL, with a token. It finds a failed job through the list,
//! reads each attempt's error on the job's page, clicks retry, confirms, and sees the job
//! pending again; then it retries and cancels a batch from the batch's page.

#[path = "browser_support/mod.rs"]
mod browser;
mod common;
#[path = "serve_support/mod.rs"]
mod support;

use std::time::Duration;

use serde_json::{json, Value};

use browser::Browser;
use common::{wait_until, Backend, TestStore};
use support::serve;

const TOKEN: &str = "browse-token-0123456789abcdef";
const SECS: Duration = Duration::from_secs(20);

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/api/v1/{path}", self.base);
        let req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url).json(&body.unwrap_or(json!({}))),
        };
        let res = req.bearer_auth(TOKEN).send().await.unwrap();
        assert!(
            res.status().is_success(),
            "{method} {path}: {}",
            res.status()
        );
        res.json().await.unwrap()
    }

    async fn status_of(&self, id: &str) -> String {
        let j = self.call("GET", &format!("jobs/{id}"), None).await;
        j["status"].as_str().unwrap().to_string()
    }
}

#[tokio::test]
async fn an_operator_finds_a_failure_and_retries_it_by_clicking() {
    let db = TestStore::new(Backend::Postgres).await;
    // Four runners (serve_support's concurrency) of one job per transaction: once four long
    // jobs hold them all, retried jobs stay pending to be seen. (With adaptive chunks, a runner
    // grown by the failures could take two long jobs into one chunk and leave another free.)
    let server = serve(
        &db,
        &[
            "--api-token",
            TOKEN,
            "--grace-secs",
            "1",
            "--chunk-size",
            "1",
        ],
    )
    .await;
    let api = Api {
        http: reqwest::Client::new(),
        base: server.base.clone(),
    };
    // The error is hostile markup: the page must show it as text.
    let message = "upstream said <b>503</b> & gave up";
    let job = api
        .call(
            "POST",
            "jobs",
            Some(json!({"type": "fail", "target": {"message": message}, "max_attempts": 2})),
        )
        .await;
    let id = job["id"].as_str().unwrap().to_string();
    let batch = api
        .call(
            "POST",
            "batches",
            Some(
                json!({"type": "fail", "targets": [{"message": "a"}, {"message": "b"}],
                        "name": "nightly", "max_attempts": 1}),
            ),
        )
        .await;
    let batch_id = batch["id"].as_str().unwrap().to_string();
    assert!(
        wait_until(SECS, || async {
            let b = api.call("GET", &format!("batches/{batch_id}"), None).await;
            b["failed"] == 2 && api.status_of(&id).await == "failed"
        })
        .await,
        "the jobs failed"
    );
    // Occupy every runner, so that what is retried waits, pending, where we can see it.
    let ms = json!({"ms": 60000});
    api.call(
        "POST",
        "batches",
        Some(json!({"type": "sleep", "targets": [ms, ms, ms, ms]})),
    )
    .await;
    assert!(
        wait_until(SECS, || async {
            let s = api.call("GET", "status", None).await;
            s["nodes"][0]["in_flight"] == 4
        })
        .await,
        "the runners are busy"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut b = Browser::start(dir.path()).await;
    b.goto(&format!("{}/#token={TOKEN}", server.base)).await;
    b.wait_for("document.body.dataset.loaded === '1'", SECS)
        .await;

    // The list, filtered to failed jobs of type fail, shows the job.
    b.click("nav a[data-nav=jobs]").await;
    b.wait_for("document.body.dataset.view === 'jobs'", SECS)
        .await;
    b.eval("document.getElementById('f-status').value = 'failed'")
        .await;
    b.fill("#f-type", "fail").await;
    b.click("#filters button[type=submit]").await;
    b.wait_for(
        "document.body.dataset.jobsQuery === 'status=failed&type=fail&limit=50'",
        SECS,
    )
    .await;
    let row = format!("tr[data-job='{id}'][data-status=failed]");
    assert_eq!(
        b.eval(&format!("!!document.querySelector(\"{row}\")"))
            .await,
        json!(true)
    );
    assert_eq!(
        b.eval("document.querySelectorAll('#job-rows tr[data-job]').length")
            .await,
        json!(3),
        "three failed jobs of type fail, the sleeping one left out"
    );

    // Jump to it by ID, and read its attempts.
    b.fill("#jump-id", &id).await;
    b.click("#jump button[type=submit]").await;
    b.wait_for(&format!("document.body.dataset.job === '{id}'"), SECS)
        .await;
    assert_eq!(b.text("[data-field=status]").await, "failed");
    assert_eq!(b.text("[data-field=attempts]").await, "2 of 2");
    assert_eq!(b.text("[data-field=type]").await, "fail");
    assert!(b.text("[data-field=node]").await.contains('-'), "a node");
    assert!(b.text("#job-target").await.contains(message));
    let attempts = b
        .eval("[...document.querySelectorAll('#attempts tr[data-attempt]')].map(r => r.innerText)")
        .await;
    let attempts: Vec<String> = serde_json::from_value(attempts).unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert!(attempts[0].contains(message) && attempts[0].contains("retry"));
    assert!(attempts[1].contains(message) && attempts[1].contains("failed"));
    assert_eq!(
        b.eval("document.querySelectorAll('#view-job b').length")
            .await,
        json!(0),
        "the error stayed text"
    );
    assert_eq!(
        b.eval("document.getElementById('job-cancel').disabled")
            .await,
        json!(true)
    );

    // Retry: the page asks first; declining changes nothing.
    b.click("#job-retry").await;
    b.wait_for("document.getElementById('confirm').open", SECS)
        .await;
    b.click("#confirm-no").await;
    b.wait_for("!document.getElementById('confirm').open", SECS)
        .await;
    assert_eq!(api.status_of(&id).await, "failed");
    b.click("#job-retry").await;
    b.wait_for("document.getElementById('confirm').open", SECS)
        .await;
    b.click("#confirm-ok").await;
    b.wait_for("document.body.dataset.jobStatus === 'pending'", SECS)
        .await;
    assert_eq!(b.text("[data-field=status]").await, "pending");
    assert_eq!(b.text("[data-field=attempts]").await, "0 of 2");
    assert!(b.text("#flash").await.contains("pending again"));
    assert_eq!(api.status_of(&id).await, "pending", "the database agrees");
    assert_eq!(
        b.eval("document.getElementById('job-cancel').disabled")
            .await,
        json!(false)
    );

    // The batch: retry its failed jobs, then cancel what is pending, each confirmed.
    // The batch, reached from the overview's batch list.
    b.click("nav a[data-nav=overview]").await;
    b.wait_for("document.body.dataset.view === 'overview'", SECS)
        .await;
    let link = format!("tr[data-batch='{batch_id}'] a");
    b.wait_for(&format!("document.querySelector(\"{link}\")"), SECS)
        .await;
    b.click(&link).await;
    b.wait_for(
        &format!("document.body.dataset.batch === '{batch_id}'"),
        SECS,
    )
    .await;
    assert!(b.text("#batch-retry").await.contains("(2)"));
    b.click("#batch-retry").await;
    b.wait_for("document.getElementById('confirm').open", SECS)
        .await;
    b.click("#confirm-ok").await;
    b.wait_for(
        "document.getElementById('flash').textContent.includes('2 jobs retried')",
        SECS,
    )
    .await;
    b.wait_for(
        "document.querySelector('[data-field=pending]').textContent === '2'",
        SECS,
    )
    .await;
    b.click("#batch-cancel").await;
    b.wait_for("document.getElementById('confirm').open", SECS)
        .await;
    b.click("#confirm-ok").await;
    b.wait_for(
        "document.getElementById('flash').textContent.includes('2 jobs cancelled')",
        SECS,
    )
    .await;
    let report = api.call("GET", &format!("batches/{batch_id}"), None).await;
    assert_eq!(
        (report["cancelled"].clone(), report["pending"].clone()),
        (json!(2), json!(0))
    );
    assert_eq!(
        api.status_of(&id).await,
        "pending",
        "outside the batch: untouched"
    );
    drop(b);
    server.terminate(Duration::from_secs(15)).await;
}
