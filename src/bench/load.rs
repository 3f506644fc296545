//! Steady load for the long phases (soak, idle transaction). A producer task on a connection
//! of its own inserts `probe` jobs at a fixed rate, a batch every [`TICK`], and pushes
//! nothing: it is an external producer, and the node finds the jobs through the database
//! (LISTEN/NOTIFY, then a claim). A node with the default settings runs them in this process.
//! Each [`Load::window`] tells what happened since the previous one: jobs run per second, jobs
//! offered per second, and pickup latency (insert committed to processor started).
//!
//! The offered load is open-loop: a producer that fell behind (a slow insert) catches up at
//! its next tick, so a database that stalls sees the same arrivals a real producer's would.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{BenchConfig, Scratch};
use crate::error::{Error, Result};
use crate::job::{Job, NewJob};
use crate::node::Node;
use crate::processor::{ProcessError, Processor, Registry, TypeOptions};
use crate::queue::Queue;
use crate::store::postgres::PgStore;
use crate::store::{JobTx, Store};

/// How often the producer inserts: often enough that arrivals look steady, rarely enough
/// that each insert is a batch, as a real producer's would be.
pub const TICK: Duration = Duration::from_millis(100);
/// Most jobs one tick inserts when catching up, so one slow insert is not followed by a
/// giant one.
const MAX_PER_TICK: u64 = 20_000;

/// Pickup bookkeeping shared by the producer, the processor and the window reader. It holds
/// only jobs in flight: a commit instant until its job starts (then the pickup is a sample and
/// the entry goes), or, in the rare race where a job starts before the producer has recorded
/// its commit, the start instant until the commit arrives. So the bench's own memory stays
/// flat over a long soak, and the RSS it reports is the node's.
#[derive(Default)]
struct Pickups {
    committed: HashMap<Uuid, Instant>,
    early: HashMap<Uuid, Instant>,
    /// Pickup latencies since the last window, in milliseconds.
    samples: Vec<f32>,
}

type Shared = Arc<Mutex<Pickups>>;

fn locked(m: &Shared) -> std::sync::MutexGuard<'_, Pickups> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn millis(from: Instant, to: Instant) -> f32 {
    (to.saturating_duration_since(from).as_secs_f64() * 1000.0) as f32
}

/// Records each job's pickup as its processor starts; does nothing else.
struct Probe(Shared);

#[async_trait]
impl Processor for Probe {
    async fn process(&self, job: &Job, _tx: &mut JobTx<'_>) -> Result<(), ProcessError> {
        let now = Instant::now();
        let mut p = locked(&self.0);
        match p.committed.remove(&job.id) {
            Some(c) => p.samples.push(millis(c, now)),
            None => {
                p.early.insert(job.id, now);
            }
        }
        Ok(())
    }
}

/// What one window saw.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    /// Seconds from the start of the load to the end of this window.
    pub at_secs: f64,
    /// Jobs the node finished per second.
    pub jobs_per_sec: f64,
    /// Jobs the producer committed per second.
    pub offered_per_sec: f64,
    /// Jobs whose pickup was measured (those that started in this window).
    pub samples: usize,
    pub pickup_p50_ms: f64,
    pub pickup_p99_ms: f64,
}

pub struct Load {
    /// The node's store, in the phase's scratch schema.
    pub store: Arc<PgStore>,
    node: Option<Node>,
    producer: JoinHandle<Result<()>>,
    stop: CancellationToken,
    pickups: Shared,
    /// Jobs the producer has committed so far.
    inserted: Arc<AtomicU64>,
    begun: Instant,
    last: (Instant, u64, u64),
}

impl Load {
    /// Starts the node (default concurrency and chunk size) and the producer at `rate` jobs/s.
    pub async fn start(
        cfg: &BenchConfig,
        s: &Scratch,
        queue: Arc<dyn Queue>,
        rate: f64,
    ) -> Result<Load> {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(Error::Invalid(format!(
                "a steady load needs a rate above 0, got {rate}"
            )));
        }
        let pickups: Shared = Arc::default();
        let mut reg = Registry::with_builtins();
        reg.register("probe", Probe(pickups.clone()), TypeOptions::default())?;
        let store: Arc<dyn Store> = s.store.clone();
        let node = Node::builder(store, queue)
            .config(super::node_config(cfg)?)
            .registry(reg)
            .start()
            .await?;
        // Its own pool: the producer never waits behind the node for a connection.
        let producer_store = PgStore::connect(&cfg.database_url, &s.schema, 2).await?;
        let inserted = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let producer = tokio::spawn(produce(
            producer_store,
            rate,
            pickups.clone(),
            inserted.clone(),
            stop.clone(),
        ));
        let now = Instant::now();
        Ok(Load {
            store: s.store.clone(),
            node: Some(node),
            producer,
            stop,
            pickups,
            inserted,
            begun: now,
            last: (now, 0, 0),
        })
    }

    /// Seconds since the load started.
    pub fn elapsed_secs(&self) -> f64 {
        self.begun.elapsed().as_secs_f64()
    }

    /// What happened since the previous window (or the start), and the pickup latencies
    /// measured in it, sorted, in milliseconds.
    pub fn window(&mut self) -> Result<(Window, Vec<f64>)> {
        if self.producer.is_finished() {
            return Err(Error::Invalid(
                "the bench's producer stopped early (its database connection failed?)".into(),
            ));
        }
        let now = Instant::now();
        let processed = self.node.as_ref().map_or(0, |n| n.state().processed());
        let inserted = self.inserted.load(Ordering::Relaxed);
        let (then, processed_then, inserted_then) = self.last;
        self.last = (now, processed, inserted);
        let secs = now.duration_since(then).as_secs_f64().max(1e-6);
        let ms = self.pickups();
        Ok((
            Window {
                at_secs: now.duration_since(self.begun).as_secs_f64(),
                jobs_per_sec: processed.saturating_sub(processed_then) as f64 / secs,
                offered_per_sec: inserted.saturating_sub(inserted_then) as f64 / secs,
                samples: ms.len(),
                pickup_p50_ms: percentile(&ms, 0.50),
                pickup_p99_ms: percentile(&ms, 0.99),
            },
            ms,
        ))
    }

    /// The pickups measured since the previous window, sorted, in milliseconds.
    fn pickups(&self) -> Vec<f64> {
        let samples = std::mem::take(&mut locked(&self.pickups).samples);
        let mut ms: Vec<f64> = samples.into_iter().map(f64::from).collect();
        ms.sort_by(f64::total_cmp);
        ms
    }

    /// Stops the producer, then the node; reports a producer that failed.
    pub async fn stop(mut self) -> Result<()> {
        self.stop.cancel();
        let produced = (&mut self.producer).await;
        if let Some(node) = self.node.take() {
            node.shutdown(Duration::from_secs(10)).await;
        }
        produced.map_err(|e| Error::Invalid(format!("the bench's producer failed: {e}")))?
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        // An error part-way through a phase: the producer must not outlive it.
        self.producer.abort();
    }
}

/// Inserts `rate` jobs a second, a batch per tick, until stopped.
async fn produce(
    store: PgStore,
    rate: f64,
    pickups: Shared,
    inserted: Arc<AtomicU64>,
    stop: CancellationToken,
) -> Result<()> {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let begun = Instant::now();
    let mut sent: u64 = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let owed = (rate * begun.elapsed().as_secs_f64()) as u64;
        let n = owed.saturating_sub(sent).min(MAX_PER_TICK);
        if n == 0 {
            continue;
        }
        let jobs = vec![NewJob::new("probe", serde_json::json!({})); n as usize];
        let ids = store.insert_jobs(&jobs).await?;
        let at = Instant::now();
        sent += n;
        {
            let mut p = locked(&pickups);
            for id in ids {
                match p.early.remove(&id) {
                    Some(started) => p.samples.push(millis(at, started)),
                    None => {
                        p.committed.insert(id, at);
                    }
                }
            }
        }
        inserted.fetch_add(n, Ordering::Relaxed);
    }
    store.pool().close().await;
    Ok(())
}

/// The `p` quantile (0..=1) of sorted samples; NaN when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
