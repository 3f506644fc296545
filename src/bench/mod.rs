//! `skiplock bench`: measured, never asserted. Each phase runs in a fresh PostgreSQL schema
//! (dropped afterwards) so a bench never touches real jobs (on SQLite, see [`sqlite`]):
//!
//! 1. enqueue: one batch of N targets, insert to commit;
//! 2. processing: N `noop` jobs per (concurrency, chunk) setting, node start to last outcome
//!    committed, with the raw SQL limit for the same settings beside it; twice: with the IDs
//!    pushed in-process, and as an *external producer* would leave them (committed by another
//!    connection, nothing pushed: the runners claim them from the database);
//! 3. pickup latency: insert commit to processor start, at half the peak rate, in-process and
//!    from an external producer (woken by the database alone);
//! 4. memory: peak RSS of a child `skiplock worker` at concurrency 64;
//! 5. optionally (`--unique`), the cost of a unique insert: the same jobs inserted plain, with
//!    a distinct unique key each, and again as duplicates of those keys;
//! 6. optionally, scale: claims, the claim rate and the status report over a large backlog
//!    and history, beside the same on an empty table;
//! 7. optionally, soak: half the default settings' peak for a long time, watching what grows;
//! 8. optionally, idle transaction: a steady load while another session sits idle in a
//!    transaction, and the recovery after it ends.

mod claims;
mod health;
mod idle;
mod latency;
mod load;
mod memory;
mod raw;
mod scale;
mod soak;
pub mod sqlite;
mod sqlite_raw;

pub use scale::DEFAULT_SCALE;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::ChunkSetting;
use crate::error::{Error, Result};
use crate::job::Due;
use crate::node::Node;
use crate::processor::{Mode, Registry, TypeOptions};
use crate::queue::Queue;
use crate::store::postgres::PgStore;
use crate::store::{BatchOptions, Store};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub database_url: String,
    /// Jobs enqueued in the enqueue phase.
    pub enqueue_jobs: usize,
    /// Jobs processed per processing setting.
    pub jobs: usize,
    /// (concurrency, chunk) settings to sweep.
    pub sweep: Vec<(usize, ChunkSetting)>,
    /// How long the latency phase runs.
    pub latency_secs: u64,
    /// Jobs/s the latency phases offer; half the measured peak when `None`.
    pub latency_rate: Option<f64>,
    /// Skip the child-process memory phase.
    pub skip_memory: bool,
    /// For the claims-at-scale phase: (pending, finished) rows to fill the table with first.
    pub backlog: Option<(u64, u64)>,
    /// Measure unique inserts beside plain ones.
    pub unique: bool,
    /// The soak phase: (how long, how often it reports).
    pub soak: Option<(Duration, Duration)>,
    /// The idle-transaction phase: (how long the transaction stays open, jobs/s offered).
    pub idle_tx: Option<(Duration, f64)>,
    /// Run the processing phases with succeeded jobs kept for zero time: deleted by the
    /// chunk that completes them.
    pub delete_succeeded: bool,
    /// Run every phase with the report's count triggers disabled, to measure what keeping the
    /// counts costs (the scratch schemas' counts are then wrong; they are dropped anyway).
    pub without_counters: bool,
}

/// The cost of a unique key at insert: the same jobs, one transaction each run.
#[derive(Debug, Clone, Serialize)]
pub struct UniqueEnqueue {
    pub jobs: usize,
    /// Jobs without a key (the bulk insert).
    pub plain_jobs_per_sec: f64,
    /// Jobs with a distinct key each (one `insert_job` call per job, its key row written).
    pub unique_jobs_per_sec: f64,
    /// The same keys again: every job a duplicate, nothing inserted.
    pub duplicate_jobs_per_sec: f64,
}

/// One processing setting's result.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessingRow {
    pub concurrency: usize,
    /// Jobs per transaction: the fixed size, or the adaptive size's ceiling.
    pub chunk: usize,
    /// Whether the chunk size adapted (the default setting).
    pub adaptive: bool,
    pub jobs: usize,
    pub skiplock_jobs_per_sec: f64,
    pub raw_jobs_per_sec: f64,
    /// skiplock's rate as a fraction of the raw SQL's.
    pub fraction_of_raw: f64,
    /// The same jobs committed by another connection and never pushed: claimed by the runners.
    pub external_jobs_per_sec: f64,
    /// The external producer's rate as a fraction of the in-process one.
    pub external_fraction: f64,
    /// The same jobs run in lease mode (pushed in-process): two short transactions a chunk.
    pub lease_jobs_per_sec: f64,
    /// Lease mode's rate as a fraction of tx mode's.
    pub lease_fraction: f64,
}

/// Everything `bench` prints.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub queue: String,
    /// Whether successes deleted their rows at completion (`--delete-succeeded`).
    pub delete_succeeded: bool,
    /// Whether the count triggers were disabled (`--without-counters`).
    pub without_counters: bool,
    pub enqueue_jobs: usize,
    pub enqueue_jobs_per_sec: f64,
    pub processing: Vec<ProcessingRow>,
    pub latency: Option<latency::Latency>,
    /// Pickup latency for jobs inserted by another connection, found through the database.
    pub external_latency: Option<latency::Latency>,
    pub worker_peak_rss_mib: Option<f64>,
    pub scale: Option<scale::Scale>,
    pub unique_enqueue: Option<UniqueEnqueue>,
    pub soak: Option<soak::Soak>,
    pub idle_tx: Option<idle::IdleTx>,
}

/// Progress callback: (phase, fraction done 0..=1).
pub type Progress = Arc<dyn Fn(&str, f64) + Send + Sync>;

/// Lines the long phases print as they go (one per interval), before the final report.
pub type Line = Arc<dyn Fn(&str) + Send + Sync>;

/// A throwaway schema for one phase.
struct Scratch {
    store: Arc<PgStore>,
    schema: String,
}

impl Scratch {
    async fn new(cfg: &BenchConfig, pool: u32) -> Result<Scratch> {
        let schema = format!(
            "skiplock_bench_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        );
        let store = Arc::new(PgStore::connect(&cfg.database_url, &schema, pool).await?);
        store.migrate().await?;
        let s = Scratch { store, schema };
        if cfg.without_counters {
            s.disable_count_triggers().await?;
        }
        Ok(s)
    }

    /// The jobs table without its count triggers: the report's counts are no longer kept.
    async fn disable_count_triggers(&self) -> Result<()> {
        sqlx::query(&format!(
            "ALTER TABLE \"{}\".jobs DISABLE TRIGGER jobs_count_insert, \
             DISABLE TRIGGER jobs_count_update, DISABLE TRIGGER jobs_count_delete",
            self.schema
        ))
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    async fn drop_schema(self) -> Result<()> {
        sqlx::query(&format!("DROP SCHEMA \"{}\" CASCADE", self.schema))
            .execute(self.store.pool())
            .await?;
        self.store.pool().close().await;
        Ok(())
    }

    async fn noop_batch(&self, n: usize) -> Result<Vec<uuid::Uuid>> {
        let targets = vec![serde_json::json!({}); n];
        Ok(self
            .store
            .insert_batch("noop", targets, BatchOptions::default())
            .await?
            .ids)
    }
}

/// Runs every phase. `make_queue` gives each processing run a fresh, empty queue.
pub async fn run<F, Fut>(
    cfg: &BenchConfig,
    make_queue: F,
    progress: Progress,
    line: Line,
) -> Result<BenchReport>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Arc<dyn Queue>>>,
{
    if !cfg.database_url.starts_with("postgres") {
        return Err(Error::Config(
            "bench needs a PostgreSQL --database-url (SQLite has its own run: bench::sqlite)"
                .into(),
        ));
    }
    let queue_name = make_queue().await?.backend().to_string();

    progress("enqueue", 0.0);
    let s = Scratch::new(cfg, 4).await?;
    let started = Instant::now();
    s.noop_batch(cfg.enqueue_jobs).await?;
    let enqueue_rate = cfg.enqueue_jobs as f64 / started.elapsed().as_secs_f64();
    s.drop_schema().await?;

    let unique_enqueue = if cfg.unique {
        progress("enqueue with unique keys", 0.0);
        Some(unique_enqueue(cfg).await?)
    } else {
        None
    };

    let mut processing = Vec::new();
    let steps = cfg.sweep.len() as f64;
    let mut peak: f64 = 0.0;
    for (i, &(concurrency, chunk)) in cfg.sweep.iter().enumerate() {
        let (max, adaptive) = match chunk {
            ChunkSetting::Auto { max } => (max, true),
            ChunkSetting::Fixed(n) => (n, false),
        };
        progress(
            &format!(
                "processing c={concurrency} k={}",
                chunk_label(max, adaptive)
            ),
            i as f64 / steps,
        );
        let ours = processing_rate(cfg, concurrency, chunk, make_queue().await?, true).await?;
        // The raw SQL at the adaptive size's ceiling: what a backlog lets it reach.
        let raw = raw_rate(cfg, concurrency, max).await?;
        let external = processing_rate(cfg, concurrency, chunk, make_queue().await?, false).await?;
        let queue = make_queue().await?;
        let lease = processing_rate_in(cfg, concurrency, chunk, queue, true, Mode::Lease).await?;
        peak = peak.max(ours);
        processing.push(ProcessingRow {
            concurrency,
            chunk: max,
            adaptive,
            jobs: cfg.jobs,
            skiplock_jobs_per_sec: ours,
            raw_jobs_per_sec: raw,
            fraction_of_raw: ours / raw,
            external_jobs_per_sec: external,
            external_fraction: external / ours,
            lease_jobs_per_sec: lease,
            lease_fraction: lease / ours,
        });
    }

    // Pickup latency of the default (adaptive) setting when the sweep has it, as users run
    // it, otherwise of the fastest setting: at the rate asked for (`--latency-rate`), or else
    // at half that setting's peak.
    let at_half = |rate: fn(&ProcessingRow) -> f64| {
        let (setting, half) = processing
            .iter()
            .find(|r| r.adaptive)
            .or_else(|| processing.iter().max_by(|a, b| rate(a).total_cmp(&rate(b))))
            .map(|r| ((r.concurrency, r.setting()), rate(r) / 2.0))
            .unwrap_or(((16, ChunkSetting::default()), peak / 2.0));
        (setting, cfg.latency_rate.unwrap_or(half))
    };
    let latency = if cfg.latency_secs > 0 {
        progress("pickup latency", 0.0);
        let (best, half) = at_half(|r| r.skiplock_jobs_per_sec);
        Some(latency::measure(cfg, best, half, make_queue().await?, true).await?)
    } else {
        None
    };
    let external_latency = if cfg.latency_secs > 0 {
        progress("pickup latency, external producer", 0.0);
        let (best, half) = at_half(|r| r.external_jobs_per_sec);
        Some(latency::measure(cfg, best, half, make_queue().await?, false).await?)
    } else {
        None
    };

    let worker_peak_rss_mib = if cfg.skip_memory {
        None
    } else {
        progress("worker memory", 0.0);
        Some(memory::measure(cfg).await?)
    };
    let scale = match cfg.backlog {
        Some((pending, finished)) => {
            progress("claims at scale", 0.0);
            let (c, k) = cfg
                .sweep
                .last()
                .copied()
                .unwrap_or((16, ChunkSetting::Fixed(100)));
            let k = match k {
                ChunkSetting::Auto { max } | ChunkSetting::Fixed(max) => max,
            };
            Some(scale::measure(cfg, c, k, pending, finished).await?)
        }
        None => None,
    };
    let soak = match cfg.soak {
        Some((duration, every)) => {
            progress("soak", 0.0);
            let (q, peak_q) = (make_queue().await?, make_queue().await?);
            Some(soak::measure(cfg, duration, every, q, peak_q, &line).await?)
        }
        None => None,
    };
    let idle_tx = match cfg.idle_tx {
        Some((idle, rate)) => {
            progress("idle transaction", 0.0);
            Some(idle::measure(cfg, idle, rate, make_queue().await?, &line).await?)
        }
        None => None,
    };
    progress("done", 1.0);
    Ok(BenchReport {
        queue: queue_name,
        delete_succeeded: cfg.delete_succeeded,
        without_counters: cfg.without_counters,
        enqueue_jobs: cfg.enqueue_jobs,
        enqueue_jobs_per_sec: enqueue_rate,
        processing,
        latency,
        external_latency,
        worker_peak_rss_mib,
        scale,
        unique_enqueue,
        soak,
        idle_tx,
    })
}

/// How a chunk setting shows in the table: `auto:1000` for the adaptive default.
fn chunk_label(size: usize, adaptive: bool) -> String {
    if adaptive {
        format!("auto:{size}")
    } else {
        size.to_string()
    }
}

impl ProcessingRow {
    /// The setting this row ran with.
    pub fn setting(&self) -> ChunkSetting {
        if self.adaptive {
            ChunkSetting::Auto { max: self.chunk }
        } else {
            ChunkSetting::Fixed(self.chunk)
        }
    }
}

/// Inserts the jobs (and, `pushed`, queues their IDs as the submitting process would), then
/// times a node from start to the last outcome.
async fn processing_rate(
    cfg: &BenchConfig,
    concurrency: usize,
    chunk: ChunkSetting,
    queue: Arc<dyn Queue>,
    pushed: bool,
) -> Result<f64> {
    processing_rate_in(cfg, concurrency, chunk, queue, pushed, Mode::Tx).await
}

/// [`processing_rate`] with the `noop` jobs run in `mode`.
async fn processing_rate_in(
    cfg: &BenchConfig,
    concurrency: usize,
    chunk: ChunkSetting,
    queue: Arc<dyn Queue>,
    pushed: bool,
    mode: Mode,
) -> Result<f64> {
    let s = Scratch::new(cfg, concurrency as u32 + 4).await?;
    let ids = s.noop_batch(cfg.jobs).await?;
    if pushed {
        let due: Vec<Due> = ids.iter().map(|&id| Due::new(id, 0)).collect();
        for part in due.chunks(10_000) {
            queue.push(part).await?;
        }
    }
    let store: Arc<dyn Store> = s.store.clone();
    let mut registry = Registry::with_builtins();
    registry.set_options(
        "noop",
        TypeOptions {
            mode,
            ..registry.options("noop")
        },
    )?;
    let started = Instant::now();
    let w = Node::builder(store, queue)
        .config(node_config(cfg)?)
        .registry(registry)
        .concurrency(concurrency)
        .chunks(chunk)
        .start()
        .await?;
    let n = cfg.jobs as u64;
    while w.state().processed() < n {
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    let took = started.elapsed();
    w.shutdown(Duration::from_secs(5)).await;
    s.drop_schema().await?;
    Ok(cfg.jobs as f64 / took.as_secs_f64())
}

/// Plain, keyed and duplicate inserts of the same jobs, each run one `insert_jobs` call.
async fn unique_enqueue(cfg: &BenchConfig) -> Result<UniqueEnqueue> {
    let n = cfg.enqueue_jobs;
    let s = Scratch::new(cfg, 4).await?;
    let plain: Vec<crate::NewJob> = (0..n)
        .map(|i| crate::NewJob::new("noop", serde_json::json!({ "n": i })))
        .collect();
    let keyed: Vec<crate::NewJob> = plain
        .iter()
        .enumerate()
        .map(|(i, j)| j.clone().unique_key(format!("bench-{i}")))
        .collect();
    let rate = |t: Instant| n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    s.store.insert_jobs(&plain).await?;
    let plain_rate = rate(t);
    let t = Instant::now();
    s.store.insert_jobs(&keyed).await?;
    let unique_rate = rate(t);
    let t = Instant::now();
    s.store.insert_jobs(&keyed).await?;
    let dup_rate = rate(t);
    s.drop_schema().await?;
    Ok(UniqueEnqueue {
        jobs: n,
        plain_jobs_per_sec: plain_rate,
        unique_jobs_per_sec: unique_rate,
        duplicate_jobs_per_sec: dup_rate,
    })
}

/// The processing table, one row per setting, on both stores' reports. `chunk_width`: the
/// chunk column's width.
fn render_processing(o: &mut String, rows: &[ProcessingRow], raw: &str, chunk_width: usize) {
    use std::fmt::Write as _;
    let _ = writeln!(
        o,
        "{:>11} {:>chunk_width$} {:>8} {:>16} {:>14} {:>8} {:>15} {:>8} {:>12} {:>8}",
        "concurrency",
        "chunk",
        "jobs",
        "skiplock jobs/s",
        raw,
        "of raw",
        "external jobs/s",
        "of ours",
        "lease jobs/s",
        "of tx"
    );
    for r in rows {
        let _ = writeln!(
            o,
            "{:>11} {:>chunk_width$} {:>8} {:>16.0} {:>14.0} {:>7.0}% {:>15.0} {:>7.0}% {:>12.0} {:>7.0}%",
            r.concurrency,
            chunk_label(r.chunk, r.adaptive),
            r.jobs,
            r.skiplock_jobs_per_sec,
            r.raw_jobs_per_sec,
            r.fraction_of_raw * 100.0,
            r.external_jobs_per_sec,
            r.external_fraction * 100.0,
            r.lease_jobs_per_sec,
            r.lease_fraction * 100.0
        );
    }
}

/// The node settings of every phase: the defaults, with successes deleted by the chunk that
/// completes them under `--delete-succeeded`.
fn node_config(cfg: &BenchConfig) -> Result<crate::node::NodeConfig> {
    let mut config = crate::node::NodeConfig::default();
    if cfg.delete_succeeded {
        config
            .pruner
            .retention
            .set(
                crate::job::JobStatus::Succeeded,
                crate::maintenance::retention::Keep::For(Duration::ZERO),
            )
            .map_err(Error::Config)?;
    }
    Ok(config)
}

async fn raw_rate(cfg: &BenchConfig, concurrency: usize, chunk: usize) -> Result<f64> {
    let s = Scratch::new(cfg, 2).await?;
    let ids = s.noop_batch(cfg.jobs).await?;
    // The limit is PostgreSQL's alone: the counts skiplock keeps are part of its own cost.
    s.disable_count_triggers().await?;
    let took = raw::run(&cfg.database_url, &s.schema, ids, concurrency, chunk).await?;
    s.drop_schema().await?;
    Ok(cfg.jobs as f64 / took.as_secs_f64())
}

impl BenchReport {
    /// The table people read.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut o = String::new();
        let _ = writeln!(o, "queue: {}", self.queue);
        if self.delete_succeeded {
            let _ = writeln!(
                o,
                "succeeded jobs: deleted by the chunk that completes them"
            );
        }
        if self.without_counters {
            let _ = writeln!(
                o,
                "count triggers: disabled (the report's counts are not kept)"
            );
        }
        let _ = writeln!(
            o,
            "enqueue: {} jobs at {:.0} jobs/s",
            self.enqueue_jobs, self.enqueue_jobs_per_sec
        );
        if let Some(u) = &self.unique_enqueue {
            let _ = writeln!(
                o,
                "enqueue of {} jobs in one call: plain {:.0} jobs/s, with a unique key each \
                 {:.0} jobs/s ({:.0}% of plain), all duplicates {:.0} jobs/s",
                u.jobs,
                u.plain_jobs_per_sec,
                u.unique_jobs_per_sec,
                u.unique_jobs_per_sec / u.plain_jobs_per_sec * 100.0,
                u.duplicate_jobs_per_sec
            );
        }
        let _ = writeln!(o);
        render_processing(&mut o, &self.processing, "raw SQL jobs/s", 6);
        for (what, l) in [
            ("pushed in-process", &self.latency),
            ("external producer", &self.external_latency),
        ] {
            if let Some(l) = l {
                let _ = writeln!(
                    o,
                    "pickup latency, {what}, at {:.0} jobs/s (c={} k={}), {} jobs: \
                     p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
                    l.rate,
                    l.concurrency,
                    chunk_label(l.chunk, l.adaptive),
                    l.samples,
                    l.p50_ms,
                    l.p95_ms,
                    l.p99_ms
                );
            }
        }
        if let Some(sc) = &self.scale {
            let _ = writeln!(
                o,
                "claims at c={} k={}: {:.0} jobs/s with {} pending and {} finished rows, \
                 {:.0} jobs/s on an empty table ({:.0}%)",
                sc.concurrency,
                sc.chunk,
                sc.loaded_jobs_per_sec,
                sc.pending,
                sc.finished,
                sc.empty_jobs_per_sec,
                sc.loaded_jobs_per_sec / sc.empty_jobs_per_sec * 100.0
            );
            sc.render_costs(&mut o);
        }
        if let Some(m) = self.worker_peak_rss_mib {
            let _ = writeln!(o, "worker peak memory (concurrency 64): {m:.1} MiB");
        }
        if let Some(s) = &self.soak {
            s.render(&mut o);
        }
        if let Some(i) = &self.idle_tx {
            i.render(&mut o);
        }
        o
    }
}
