//! `skiplock demo`: the whole main job on the embedded default, for a first run on a machine
//! with nothing installed. Submits three sample batches to `sqlite://skiplock.db` (or
//! `--database-url`), processes them with an in-process worker behind a progress bar, then
//! shows the speed with one last batch of 100,000 no-op jobs (its own bar and rate), and
//! prints the status report.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use uuid::Uuid;

use super::status::NODE_STALE;
use super::Settings;
use crate::client::Client;
use crate::node::{Node, NodeConfig};
use crate::processor::TypeOptions;
use crate::queue::memory::MemoryQueue;
use crate::queue::Queue;
use crate::store::{self, BatchOptions, Store};

/// Quick jobs that succeed: the bulk of the sample.
const QUICK_JOBS: usize = 300;
/// Slow jobs: on SQLite they take turns with everything else (one writer), so their total
/// time is the demo's floor. 12 × 150–370 ms keeps it to a few seconds.
const SLOW_JOBS: usize = 12;
/// Jobs that fail every attempt, retry with backoff, and end `failed`.
const FAILING_JOBS: usize = 8;
/// Attempts for the failing jobs, and their first retry delay (then doubled, with jitter):
/// short, so the retries are visible and the demo still ends in seconds.
const FAIL_ATTEMPTS: i32 = 3;
const FAIL_BACKOFF: Duration = Duration::from_millis(150);
/// The last batch: no-op jobs enqueued and processed as fast as the store goes. On SQLite
/// that is a couple of seconds each way on a laptop.
const SPEED_JOBS: usize = 100_000;
/// The demo gives up (exit 1) if the sample has not finished by then: something is wrong.
const DEADLINE: Duration = Duration::from_secs(120);

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Runner tasks for the in-process node.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
}

pub async fn run(s: &Settings, a: DemoArgs) -> anyhow::Result<()> {
    let url = store::redact_url(&s.database_url);
    let store = s.store(a.concurrency as u32 + 4, true).await?;
    // The demo's node and its submissions share one in-memory queue, so no Redis either.
    let queue: Arc<dyn Queue> = Arc::new(MemoryQueue::default());
    println!("skiplock demo on {url} ({} store)", store.backend());

    let mut registry = s.registry()?;
    registry.set_options(
        "fail",
        TypeOptions {
            max_attempts: FAIL_ATTEMPTS,
            backoff: FAIL_BACKOFF,
            ..registry.options("fail")
        },
    )?;
    let mut config = NodeConfig::default();
    config.executor.concurrency = a.concurrency;
    // Retries come due after their backoff; look for them often so the demo stays brisk.
    config.reconciler.interval = Duration::from_millis(200);
    let worker = Node::builder(store.clone(), queue.clone())
        .registry(registry)
        .config(config)
        .start()
        .await
        .context("cannot start the demo's worker")?;

    let client = Client::new(store.clone(), queue);
    let batches = submit_samples(&client).await?;
    let total = (QUICK_JOBS + SLOW_JOBS + FAILING_JOBS) as u64;
    println!(
        "submitted {total} jobs in 3 batches: {QUICK_JOBS} thumbnails (noop), \
         {SLOW_JOBS} reports (sleep), {FAILING_JOBS} webhooks to a broken endpoint (fail)"
    );

    let started = Instant::now();
    let mut waited = wait_with_bar(&*store, &batches, total).await;
    if waited.is_ok() {
        println!(
            "sample finished in {:.1} s; the webhooks failed on purpose, after {FAIL_ATTEMPTS} \
             attempts each\n",
            started.elapsed().as_secs_f64()
        );
        waited = speed_run(&client, &worker).await;
    }
    let report = store.report(NODE_STALE).await;
    worker.shutdown(Duration::from_secs(5)).await;
    waited?;
    let mut report = report?;
    report.queue_depth = Some(0);
    println!();
    print!("{}", report.render());
    println!(
        "\nEverything lives in {url}. Next: `skiplock status`, `skiplock jobs list --status failed`, \
         `skiplock submit noop --target '{{}}'` and `skiplock worker`."
    );
    Ok(())
}

/// The sample: three batches a real system might run.
async fn submit_samples(client: &Client) -> anyhow::Result<Vec<Uuid>> {
    let thumbnails = (1..=QUICK_JOBS)
        .map(|i| json!({ "image": format!("uploads/2026/IMG_{i:04}.jpg"), "size": 256 }))
        .collect();
    let reports = (0..SLOW_JOBS)
        .map(|i| json!({ "ms": 150 + (i * 97) % 220 }))
        .collect();
    let webhooks = (1..=FAILING_JOBS)
        .map(|i| {
            json!({ "message": format!("crm.example.com answered 503 for order #{}", 1000 + i) })
        })
        .collect();
    let mut ids = Vec::new();
    for (job_type, name, targets, attempts) in [
        ("noop", "thumbnails", thumbnails, None),
        ("sleep", "monthly-reports", reports, None),
        ("fail", "crm-webhooks", webhooks, Some(FAIL_ATTEMPTS)),
    ] {
        let sub = client
            .submit_batch(
                job_type,
                targets,
                BatchOptions {
                    name: Some(name.into()),
                    max_attempts: attempts,
                    ..BatchOptions::default()
                },
            )
            .await?;
        ids.extend(sub.batch_id);
    }
    Ok(ids)
}

/// The last batch: [`SPEED_JOBS`] no-op jobs in one submit, then processed behind a bar that
/// shows the rate, from the node's count of committed outcomes.
async fn speed_run(client: &Client, worker: &Node) -> anyhow::Result<()> {
    let targets = (0..SPEED_JOBS).map(|i| json!({ "n": i })).collect();
    let before = worker.state().processed();
    let started = Instant::now();
    client
        .submit_batch(
            "noop",
            targets,
            BatchOptions {
                name: Some("speed".into()),
                ..BatchOptions::default()
            },
        )
        .await?;
    let enqueued = started.elapsed();
    println!(
        "submitted {SPEED_JOBS} no-op jobs in one batch in {:.2} s ({:.0} jobs/s); processing:",
        enqueued.as_secs_f64(),
        SPEED_JOBS as f64 / enqueued.as_secs_f64()
    );
    let bar = ProgressBar::new(SPEED_JOBS as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} jobs ({per_sec})",
        )?
        .progress_chars("=> "),
    );
    let started = Instant::now();
    let deadline = started + DEADLINE;
    loop {
        let done = worker.state().processed().saturating_sub(before);
        bar.set_position(done.min(SPEED_JOBS as u64));
        if done >= SPEED_JOBS as u64 {
            bar.finish();
            break;
        }
        if Instant::now() >= deadline {
            bar.abandon();
            bail!(
                "the speed batch did not finish within {} s ({done}/{SPEED_JOBS} jobs)",
                DEADLINE.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed();
    println!(
        "processed {SPEED_JOBS} no-op jobs in {:.2} s ({:.0} jobs/s)",
        took.as_secs_f64(),
        SPEED_JOBS as f64 / took.as_secs_f64()
    );
    Ok(())
}

/// Draws the bar from the batches' committed counts until every job has finished.
async fn wait_with_bar(store: &dyn Store, batches: &[Uuid], total: u64) -> anyhow::Result<()> {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} jobs finished ({msg})",
        )?
        .progress_chars("=> "),
    );
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (mut done, mut failed) = (0, 0);
        for id in batches {
            let b = store
                .batch(*id)
                .await?
                .with_context(|| format!("batch {id} vanished"))?;
            done += (b.succeeded + b.failed + b.cancelled) as u64;
            failed += b.failed;
        }
        bar.set_position(done);
        bar.set_message(format!("{failed} failed"));
        if done >= total {
            bar.finish();
            return Ok(());
        }
        if Instant::now() >= deadline {
            bar.abandon();
            bail!(
                "the demo did not finish within {} s ({done}/{total} jobs)",
                DEADLINE.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
