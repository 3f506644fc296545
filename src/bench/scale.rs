//! Claims at scale: does a claim cost the same over a big backlog and a long history? The
//! table is filled server-side (generate_series) with `pending` jobs and `finished` succeeded
//! ones, analysed, then a node claims (nothing is pushed) until it has run the bench's job
//! count; the same node on a table holding only those jobs gives the rate to compare with.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{BenchConfig, Scratch};
use crate::error::Result;
use crate::node::Node;
use crate::queue::memory::MemoryQueue;
use crate::store::Store;

#[derive(Debug, Clone, Serialize)]
pub struct Scale {
    pub concurrency: usize,
    pub chunk: usize,
    pub pending: u64,
    pub finished: u64,
    /// Jobs claimed and run per second over the filled table.
    pub loaded_jobs_per_sec: f64,
    /// The same over a table holding only the jobs being run.
    pub empty_jobs_per_sec: f64,
}

pub async fn measure(
    cfg: &BenchConfig,
    concurrency: usize,
    chunk: usize,
    pending: u64,
    finished: u64,
) -> Result<Scale> {
    let jobs = cfg.jobs as u64;
    let empty = claim_rate(cfg, concurrency, chunk, jobs, 0).await?;
    let loaded = claim_rate(cfg, concurrency, chunk, pending.max(jobs), finished).await?;
    Ok(Scale {
        concurrency,
        chunk,
        pending: pending.max(jobs),
        finished,
        loaded_jobs_per_sec: loaded,
        empty_jobs_per_sec: empty,
    })
}

/// Fills a fresh schema, then times a node running the first `cfg.jobs` of the pending jobs.
async fn claim_rate(
    cfg: &BenchConfig,
    concurrency: usize,
    chunk: usize,
    pending: u64,
    finished: u64,
) -> Result<f64> {
    let s = Scratch::new(&cfg.database_url, concurrency as u32 + 4).await?;
    let t = format!("\"{}\".jobs", s.schema);
    // Finished history first (older ids), then the backlog; both in one statement each, on
    // the server, so filling ten million rows takes minutes, not hours.
    for (n, status) in [(finished, "succeeded"), (pending, "pending")] {
        if n == 0 {
            continue;
        }
        let sql = format!(
            "INSERT INTO {t} (id, type, target, status, attempts, run_at, finished_at) \
             SELECT \"{}\".uuid_v7(), 'noop', '{{}}', '{status}', \
             CASE WHEN '{status}' = 'succeeded' THEN 1 ELSE 0 END, now(), \
             CASE WHEN '{status}' = 'succeeded' THEN now() END \
             FROM generate_series(1, $1::bigint)",
            s.schema
        );
        sqlx::query(&sql)
            .bind(n as i64)
            .execute(s.store.pool())
            .await?;
    }
    sqlx::query(&format!("ANALYZE {t}"))
        .execute(s.store.pool())
        .await?;
    let store: Arc<dyn Store> = s.store.clone();
    let started = Instant::now();
    let node = Node::builder(store, Arc::new(MemoryQueue::default()))
        .concurrency(concurrency)
        .chunk_size(chunk)
        .start()
        .await?;
    let n = cfg.jobs as u64;
    while node.state().processed() < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = started.elapsed();
    node.shutdown(Duration::from_secs(5)).await;
    s.drop_schema().await?;
    Ok(n as f64 / took.as_secs_f64())
}
