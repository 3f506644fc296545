//! Scale: does a claim, a job's run and the status report cost the same over a big backlog
//! and a long history? The table is filled server-side (generate_series, one statement per
//! kind) with finished jobs, their ids time-ordered like real ones and their finish times
//! spread over the past days, then a pending backlog, and analysed. On it: the status
//! report's cost, one slot's claim latency (see [`super::claims`]), then a node claiming
//! (nothing is pushed) until it has run the bench's job count. The same on a table holding
//! only the jobs being run gives the figures to compare with.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::claims::{self, ClaimCost, CLAIMS};
use super::{BenchConfig, Scratch};
use crate::error::Result;
use crate::node::Node;
use crate::queue::memory::MemoryQueue;
use crate::store::Store;

/// What `--scale` alone fills the table with: PENDING:FINISHED.
pub const DEFAULT_SCALE: &str = "1000000:10000000";

/// Finished jobs finish over this many past days: inside the default retention (7 days), so
/// the pruner does not start deleting them in the middle of the measurement.
const HISTORY_DAYS: u32 = 6;

#[derive(Debug, Clone, Serialize)]
pub struct Scale {
    pub concurrency: usize,
    pub chunk: usize,
    pub pending: u64,
    pub finished: u64,
    /// Seconds the fill took (both inserts and the ANALYZE).
    pub fill_secs: f64,
    /// Jobs claimed and run per second over the filled table.
    pub loaded_jobs_per_sec: f64,
    /// The same over a table holding only the jobs being run.
    pub empty_jobs_per_sec: f64,
    pub loaded_claim: ClaimCost,
    pub empty_claim: ClaimCost,
    /// Median milliseconds of one status report over the filled table.
    pub loaded_report_ms: f64,
    pub empty_report_ms: f64,
}

/// The figures of one table.
struct Table {
    fill_secs: f64,
    jobs_per_sec: f64,
    claim: ClaimCost,
    report_ms: f64,
}

pub async fn measure(
    cfg: &BenchConfig,
    concurrency: usize,
    chunk: usize,
    pending: u64,
    finished: u64,
) -> Result<Scale> {
    let jobs = cfg.jobs as u64;
    // Enough pending jobs for the claims and the node's run, whatever was asked for.
    let claims = CLAIMS.min((pending / chunk as u64).max(1) as usize);
    let needed = jobs + (claims * chunk) as u64;
    let empty = table(cfg, concurrency, chunk, claims, needed, 0).await?;
    let pending = pending.max(needed);
    let loaded = table(cfg, concurrency, chunk, claims, pending, finished).await?;
    Ok(Scale {
        concurrency,
        chunk,
        pending,
        finished,
        fill_secs: loaded.fill_secs,
        loaded_jobs_per_sec: loaded.jobs_per_sec,
        empty_jobs_per_sec: empty.jobs_per_sec,
        loaded_claim: loaded.claim,
        empty_claim: empty.claim,
        loaded_report_ms: loaded.report_ms,
        empty_report_ms: empty.report_ms,
    })
}

/// Fills a fresh schema, times the report and the claims, then a node running the first
/// `cfg.jobs` of the pending jobs left.
async fn table(
    cfg: &BenchConfig,
    concurrency: usize,
    chunk: usize,
    claims: usize,
    pending: u64,
    finished: u64,
) -> Result<Table> {
    let s = Scratch::new(cfg, concurrency as u32 + 4).await?;
    let fill_secs = fill(&s, pending, finished).await?;
    let store: Arc<dyn Store> = s.store.clone();
    let report_ms = claims::report_ms(&store).await?;
    let claim = claims::claim_latency(&store, claims, chunk).await?;
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
    Ok(Table {
        fill_secs,
        jobs_per_sec: n as f64 / took.as_secs_f64(),
        claim,
        report_ms,
    })
}

/// Finished history first (older ids, finish times rising over the past days, so the table
/// is in finishing order as a real one is), then the backlog, due now; then VACUUM (ANALYZE)
/// and a CHECKPOINT. Returns
/// the seconds it took.
async fn fill(s: &Scratch, pending: u64, finished: u64) -> Result<f64> {
    let (t, schema) = (format!("\"{}\".jobs", s.schema), &s.schema);
    let started = Instant::now();
    if finished > 0 {
        // The schema's uuid_v7() at a given time instead of the clock's (see migration 0003).
        let sql = format!(
            "INSERT INTO {t} (id, type, target, status, attempts, run_at, created_at, \
                              updated_at, finished_at) \
             SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) \
                      placing substring(int8send(floor(extract(epoch FROM at) * 1000)::bigint) \
                      FROM 3) FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid, \
                    'noop', '{{}}', 'succeeded', 1, at, at, at, at \
             FROM (SELECT now() - make_interval(days => $2) * (1 - i::float8 / $1) AS at \
                   FROM generate_series(1, $1::bigint) i) g"
        );
        sqlx::query(&sql)
            .bind(finished as i64)
            .bind(HISTORY_DAYS as i32)
            .execute(s.store.pool())
            .await?;
    }
    if pending > 0 {
        let sql = format!(
            "INSERT INTO {t} (id, type, target) \
             SELECT \"{schema}\".uuid_v7(), 'noop', '{{}}' FROM generate_series(1, $1::bigint)"
        );
        sqlx::query(&sql)
            .bind(pending as i64)
            .execute(s.store.pool())
            .await?;
    }
    // As autovacuum leaves a table that grew over days: hint bits set and the visibility
    // map written (a fresh bulk load would have every claim's first read write its pages),
    // and no checkpoint running because of the fill's own WAL (every page's first change
    // after one is logged whole). Measured without these, the fill's after-effects, not the
    // table's size, set the rate. CHECKPOINT needs a superuser or pg_checkpoint: without, the
    // figures carry whatever checkpoint the fill set off.
    sqlx::query(&format!("VACUUM (ANALYZE) {t}"))
        .execute(s.store.pool())
        .await?;
    if let Err(e) = sqlx::query("CHECKPOINT").execute(s.store.pool()).await {
        tracing::warn!(error = %e, "scale: cannot CHECKPOINT after the fill");
    }
    Ok(started.elapsed().as_secs_f64())
}

impl Scale {
    /// The lines under the claim rate: fill time, claim latency, report cost.
    pub fn render_costs(&self, o: &mut String) {
        use std::fmt::Write as _;
        let (l, e) = (&self.loaded_claim, &self.empty_claim);
        let _ = writeln!(
            o,
            "  filled in {:.1}s; one claim of {} ({} claims): p50 {:.2} ms, p99 {:.2} ms \
             (empty table: p50 {:.2} ms, p99 {:.2} ms); status report {:.1} ms (empty: {:.1} ms)",
            self.fill_secs,
            l.chunk,
            l.claims,
            l.p50_ms,
            l.p99_ms,
            e.p50_ms,
            e.p99_ms,
            self.loaded_report_ms,
            self.empty_report_ms
        );
    }
}
