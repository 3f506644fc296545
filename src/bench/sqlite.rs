//! `skiplock bench` on SQLite: the phases that make sense for one node on one file, each in
//! a fresh database file beside the one `--database-url` names (removed afterwards), each
//! figure with its raw limit (`sqlite_raw`, the same statements straight through SQLite on
//! one connection) measured in the same run:
//!
//! 1. enqueue: one batch of N targets, insert to commit, beside one transaction of N
//!    prepared inserts and one of the store's own bulk statement;
//! 2. processing: N `noop` jobs per (concurrency, chunk) setting, node start to last outcome
//!    committed, beside lock, update, commit of the same chunks; then the same jobs as an
//!    external producer leaves them (claimed from the database) and in lease mode.
//!
//! Pickup latency, the child worker's memory and the PostgreSQL-only phases (scale, soak,
//! idle transaction) are not run here.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{chunk_label, sqlite_raw, BenchConfig, ProcessingRow, Progress};
use crate::config::ChunkSetting;
use crate::error::{Error, Result};
use crate::job::Due;
use crate::node::Node;
use crate::processor::{Mode, Registry, TypeOptions};
use crate::queue::Queue;
use crate::store::sqlite::SqliteStore;
use crate::store::{BatchOptions, Store};

/// The sweep when none is given: SQLite runs one writer at a time, so more runners than a
/// few only queue for the write turn.
pub const DEFAULT_SWEEP: &str = "4:auto,4:1,4:100,4:1000";

/// What `bench` prints on SQLite.
#[derive(Debug, Clone, Serialize)]
pub struct SqliteBenchReport {
    pub store: &'static str,
    pub queue: String,
    pub enqueue_jobs: usize,
    pub enqueue_jobs_per_sec: f64,
    /// One transaction of prepared inserts, one a row, straight through SQLite.
    pub enqueue_raw_jobs_per_sec: f64,
    /// One transaction of the store's own bulk statement, straight through SQLite: the raw
    /// limit the enqueue is measured against.
    pub enqueue_raw_bulk_jobs_per_sec: f64,
    /// skiplock's enqueue as a fraction of the faster of the two raw ones.
    pub enqueue_fraction_of_raw: f64,
    pub processing: Vec<ProcessingRow>,
}

/// A throwaway database file for one phase, beside the one the URL names.
struct Scratch {
    store: Arc<SqliteStore>,
    path: PathBuf,
}

impl Scratch {
    async fn new(dir: &Path, pool: u32) -> Result<Scratch> {
        let name = format!(
            "skiplock-bench-{}.db",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        );
        let path = dir.join(name);
        let url = format!("sqlite://{}", path.display());
        let store = Arc::new(SqliteStore::connect(&url, pool).await?);
        store.migrate().await?;
        Ok(Scratch { store, path })
    }

    fn path(&self) -> Result<&str> {
        self.path
            .to_str()
            .ok_or_else(|| Error::Config("the bench's database path is not UTF-8".into()))
    }

    async fn remove(self) -> Result<()> {
        self.store.pool().close().await;
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::Invalid(format!(
                        "cannot remove {}: {e}",
                        PathBuf::from(p).display()
                    )))
                }
                _ => {}
            }
        }
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

/// The directory of the file a `sqlite:` URL names: where the scratch files go, so that the
/// bench measures the disk the user means to run on.
pub fn scratch_dir(url: &str) -> Result<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| Error::Config(format!("not a SQLite URL: {url}")))?;
    let file = rest.split('?').next().unwrap_or_default();
    if file.is_empty() || file == ":memory:" {
        return Err(Error::Config(
            "bench on SQLite needs a database file (e.g. sqlite://bench.db), not :memory:".into(),
        ));
    }
    let dir = Path::new(file)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(Error::Config(format!(
            "bench on SQLite: no such directory {}",
            dir.display()
        )));
    }
    Ok(dir.to_path_buf())
}

/// Runs the SQLite phases. `make_queue` gives each processing run a fresh, empty queue.
pub async fn run<F, Fut>(
    cfg: &BenchConfig,
    make_queue: F,
    progress: Progress,
) -> Result<SqliteBenchReport>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Arc<dyn Queue>>>,
{
    let dir = scratch_dir(&cfg.database_url)?;
    let queue_name = make_queue().await?.backend().to_string();

    progress("enqueue", 0.0);
    let s = Scratch::new(&dir, 4).await?;
    let started = Instant::now();
    s.noop_batch(cfg.enqueue_jobs).await?;
    let enqueue_rate = cfg.enqueue_jobs as f64 / started.elapsed().as_secs_f64();
    s.remove().await?;
    progress("enqueue, raw", 0.0);
    let s = Scratch::new(&dir, 2).await?;
    let (path, n) = (s.path()?.to_string(), cfg.enqueue_jobs);
    let took = blocking(move || sqlite_raw::enqueue(&path, n)).await?;
    let raw_enqueue = n as f64 / took.as_secs_f64();
    s.remove().await?;
    let s = Scratch::new(&dir, 2).await?;
    let path = s.path()?.to_string();
    let took = blocking(move || sqlite_raw::enqueue_bulk(&path, n)).await?;
    let raw_bulk = n as f64 / took.as_secs_f64();
    s.remove().await?;

    let mut processing = Vec::new();
    let steps = cfg.sweep.len() as f64;
    for (i, &(concurrency, chunk)) in cfg.sweep.iter().enumerate() {
        let (max, adaptive) = match chunk {
            ChunkSetting::Auto { max } => (max, true),
            ChunkSetting::Fixed(n) => (n, false),
        };
        let label = format!("c={concurrency} k={}", chunk_label(max, adaptive));
        progress(&format!("processing {label}"), i as f64 / steps);
        let setting = (concurrency, chunk);
        let ours = rate(&dir, cfg, setting, make_queue().await?, true, Mode::Tx).await?;
        progress(&format!("processing {label}, raw"), i as f64 / steps);
        let raw = raw_rate(&dir, cfg, max).await?;
        progress(&format!("processing {label}, external"), i as f64 / steps);
        let external = rate(&dir, cfg, setting, make_queue().await?, false, Mode::Tx).await?;
        progress(&format!("processing {label}, lease"), i as f64 / steps);
        let lease = rate(&dir, cfg, setting, make_queue().await?, true, Mode::Lease).await?;
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
    progress("done", 1.0);
    Ok(SqliteBenchReport {
        store: "sqlite",
        queue: queue_name,
        enqueue_jobs: cfg.enqueue_jobs,
        enqueue_jobs_per_sec: enqueue_rate,
        enqueue_raw_jobs_per_sec: raw_enqueue,
        enqueue_raw_bulk_jobs_per_sec: raw_bulk,
        enqueue_fraction_of_raw: enqueue_rate / raw_enqueue.max(raw_bulk),
        processing,
    })
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Invalid(format!("raw bench task failed: {e}")))?
}

/// Inserts the jobs (and, `pushed`, queues their IDs as the submitting process would), then
/// times a node from start to the last outcome.
async fn rate(
    dir: &Path,
    cfg: &BenchConfig,
    (concurrency, chunk): (usize, ChunkSetting),
    queue: Arc<dyn Queue>,
    pushed: bool,
    mode: Mode,
) -> Result<f64> {
    let s = Scratch::new(dir, concurrency as u32 + 4).await?;
    let ids = s.noop_batch(cfg.jobs).await?;
    if pushed {
        let due: Vec<Due> = ids.iter().map(|&id| Due::new(id, 0)).collect();
        for part in due.chunks(10_000) {
            queue.push(part).await?;
        }
    }
    let mut registry = Registry::with_builtins();
    registry.set_options(
        "noop",
        TypeOptions {
            mode,
            ..registry.options("noop")
        },
    )?;
    let config = super::node_config(cfg)?;
    let store: Arc<dyn Store> = s.store.clone();
    let started = Instant::now();
    let w = Node::builder(store, queue)
        .config(config)
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
    s.remove().await?;
    Ok(cfg.jobs as f64 / took.as_secs_f64())
}

async fn raw_rate(dir: &Path, cfg: &BenchConfig, chunk: usize) -> Result<f64> {
    let s = Scratch::new(dir, 2).await?;
    let ids = s.noop_batch(cfg.jobs).await?;
    let path = s.path()?.to_string();
    let took = blocking(move || sqlite_raw::process(&path, &ids, chunk)).await?;
    s.remove().await?;
    Ok(cfg.jobs as f64 / took.as_secs_f64())
}

impl SqliteBenchReport {
    /// The table people read.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut o = String::new();
        let _ = writeln!(o, "store: sqlite, queue: {}", self.queue);
        let _ = writeln!(
            o,
            "enqueue: {} jobs at {:.0} jobs/s; raw SQLite: {:.0} jobs/s as the store's bulk \
             statement, {:.0} jobs/s as prepared inserts ({:.0}% of the faster)",
            self.enqueue_jobs,
            self.enqueue_jobs_per_sec,
            self.enqueue_raw_bulk_jobs_per_sec,
            self.enqueue_raw_jobs_per_sec,
            self.enqueue_fraction_of_raw * 100.0
        );
        let _ = writeln!(o);
        super::render_processing(&mut o, &self.processing, "raw jobs/s", 9);
        let _ = writeln!(
            o,
            "raw: the same statements straight through SQLite (rusqlite), one connection, \
             prepared once; an auto row's raw figure is at its ceiling"
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::scratch_dir;

    #[test]
    fn scratch_files_go_beside_the_named_database() {
        assert_eq!(
            scratch_dir("sqlite://bench.db").unwrap().to_str(),
            Some(".")
        );
        assert_eq!(
            scratch_dir("sqlite:bench.db?mode=rwc").unwrap().to_str(),
            Some(".")
        );
        assert_eq!(
            scratch_dir("sqlite:///tmp/b.db").unwrap().to_str(),
            Some("/tmp")
        );
        assert!(scratch_dir("sqlite::memory:").is_err());
        assert!(scratch_dir("sqlite:///no/such/dir/b.db").is_err());
    }
}
