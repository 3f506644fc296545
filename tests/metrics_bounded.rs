//! `/metrics` needs no token, so anyone who can submit jobs must not be able to grow it: job
//! types the node has no processor for share one label value. Driven as a prober would: a
//! running `skiplock serve`, thousands of made-up types over HTTP, then a scrape.

mod common;
#[path = "serve_support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;

use common::{wait_until, Backend, TestStore};
use support::serve;

const TYPES: usize = 3_000;

/// Every distinct `type="…"` label value in a Prometheus text body.
fn type_labels(body: &str) -> BTreeSet<String> {
    body.split("type=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect()
}

/// The sum of `skiplock_jobs_finished_total` samples with `outcome`.
fn finished(body: &str, outcome: &str) -> u64 {
    body.lines()
        .filter(|l| l.starts_with("skiplock_jobs_finished_total{"))
        .filter(|l| l.contains(&format!("outcome=\"{outcome}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_unknown_types_leave_metrics_small() {
    let db = TestStore::new(Backend::Postgres).await;
    let server = serve(&db, &[]).await;
    let http = reqwest::Client::new();
    let jobs = format!("{}/api/v1/jobs", server.base);

    let statuses: Vec<u16> = futures::stream::iter(0..TYPES)
        .map(|i| {
            let (http, jobs) = (http.clone(), jobs.clone());
            async move {
                let body = json!({"type": format!("probe_{i}"), "target": i, "max_attempts": 1});
                let res = http.post(&jobs).json(&body).send().await.unwrap();
                res.status().as_u16()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(
        statuses.iter().all(|s| *s == 201),
        "every submission accepted"
    );
    let res = http
        .post(&jobs)
        .json(&json!({"type": "noop", "target": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);

    // No node has a processor for a made-up type, so none takes its job: each waits,
    // uncharged, and only the known type runs.
    let all_done = wait_until(Duration::from_secs(120), || async {
        db.count_status("pending").await == TYPES as i64 && db.count_status("succeeded").await == 1
    })
    .await;
    assert!(all_done, "{:?}", db.counts().await);

    let body = http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let labels = type_labels(&body);
    eprintln!("/metrics: {} bytes, type labels {labels:?}", body.len());
    assert!(
        labels.len() <= 8,
        "a bounded set of type labels: {labels:?}"
    );
    assert!(
        labels.contains("noop"),
        "a known type keeps its name: {labels:?}"
    );
    assert!(body.len() < 32 * 1024, "{} bytes", body.len());
    assert_eq!(finished(&body, "failed"), 0, "no made-up type ran");
    assert_eq!(finished(&body, "succeeded"), 1);
    server.terminate(Duration::from_secs(15)).await;
}
