//! Pickup latency: from an insert's commit to its processor's start, under a steady load.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Serialize;
use uuid::Uuid;

use super::{BenchConfig, Scratch};
use crate::config::ChunkSetting;
use crate::error::{Error, Result};
use crate::job::Due;
use crate::job::{Job, NewJob};
use crate::node::Node;
use crate::processor::{ProcessError, Processor, Registry, TypeOptions};
use crate::queue::Queue;
use crate::store::postgres::PgStore;
use crate::store::{JobTx, Store};

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// The load actually offered, jobs/s.
    pub rate: f64,
    pub concurrency: usize,
    /// Jobs per transaction: fixed, or the adaptive size's ceiling.
    pub chunk: usize,
    pub adaptive: bool,
    pub samples: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

/// Records when each job's processor started.
struct Probe(Arc<Mutex<HashMap<Uuid, Instant>>>);

#[async_trait]
impl Processor for Probe {
    async fn process(&self, job: &Job, _tx: &mut JobTx<'_>) -> Result<(), ProcessError> {
        let now = Instant::now();
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job.id, now);
        Ok(())
    }
}

/// Producers, each on a connection of its own: one connection's commit round trip capped the
/// offered load far below half the peak (2,547 jobs/s once, against 14,700 intended).
const PRODUCERS: usize = 4;
/// How often each producer inserts what it owes.
const TICK: Duration = Duration::from_millis(2);

/// Offers about `rate` jobs/s (a small batch per producer per tick, open-loop: a producer that
/// fell behind inserts what it owes at its next tick); `pushed`: the IDs are pushed to the
/// node's queue after each commit, as an in-process client does; otherwise only the database
/// tells the node (an external producer).
pub async fn measure(
    cfg: &BenchConfig,
    (concurrency, chunk): (usize, ChunkSetting),
    rate: f64,
    queue: Arc<dyn Queue>,
    pushed: bool,
) -> Result<Latency> {
    let s = Scratch::new(cfg, concurrency as u32 + 6).await?;
    let started_at = Arc::new(Mutex::new(HashMap::new()));
    let mut reg = Registry::with_builtins();
    reg.register("probe", Probe(started_at.clone()), TypeOptions::default())?;
    let store: Arc<dyn Store> = s.store.clone();
    let w = Node::builder(store.clone(), queue.clone())
        .registry(reg)
        .concurrency(concurrency)
        .chunks(chunk)
        .start()
        .await?;
    let begun = Instant::now();
    let until = begun + Duration::from_secs(cfg.latency_secs);
    let mut producers = tokio::task::JoinSet::new();
    for _ in 0..PRODUCERS {
        let store = PgStore::connect(&cfg.database_url, &s.schema, 1).await?;
        producers.spawn(produce(
            store,
            queue.clone(),
            pushed,
            rate / PRODUCERS as f64,
            until,
        ));
    }
    let mut committed: HashMap<Uuid, Instant> = HashMap::new();
    while let Some(done) = producers.join_next().await {
        let ids = done.map_err(|e| Error::Invalid(format!("a bench producer failed: {e}")))??;
        committed.extend(ids);
    }
    let offered = committed.len() as f64 / begun.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(30);
    while started_at.lock().unwrap_or_else(|e| e.into_inner()).len() < committed.len()
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    w.shutdown(Duration::from_secs(5)).await;
    let starts = started_at.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut ms: Vec<f64> = committed
        .iter()
        .filter_map(|(id, c)| {
            starts
                .get(id)
                .map(|s| s.saturating_duration_since(*c).as_secs_f64() * 1000.0)
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| -> f64 {
        if ms.is_empty() {
            return f64::NAN;
        }
        ms[((ms.len() - 1) as f64 * p).round() as usize]
    };
    s.drop_schema().await?;
    Ok(Latency {
        rate: offered,
        concurrency,
        chunk: match chunk {
            ChunkSetting::Auto { max } | ChunkSetting::Fixed(max) => max,
        },
        adaptive: matches!(chunk, ChunkSetting::Auto { .. }),
        samples: ms.len(),
        p50_ms: pct(0.50),
        p95_ms: pct(0.95),
        p99_ms: pct(0.99),
    })
}

/// One producer: inserts what it owes at `rate` every [`TICK`] until `until`; returns each
/// job's commit instant.
async fn produce(
    store: PgStore,
    queue: Arc<dyn Queue>,
    pushed: bool,
    rate: f64,
    until: Instant,
) -> Result<Vec<(Uuid, Instant)>> {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let begun = Instant::now();
    let mut sent: u64 = 0;
    let mut out = Vec::new();
    while Instant::now() < until {
        tick.tick().await;
        let owed = (rate * begun.elapsed().as_secs_f64()) as u64;
        let n = owed.saturating_sub(sent);
        if n == 0 {
            continue;
        }
        let jobs = vec![NewJob::new("probe", serde_json::json!({})); n as usize];
        let ids = store.insert_jobs(&jobs).await?;
        let at = Instant::now();
        if pushed {
            let due: Vec<Due> = ids.iter().map(|&id| Due::new(id, 0)).collect();
            queue.push(&due).await?;
        }
        sent += n;
        out.extend(ids.into_iter().map(|id| (id, at)));
    }
    store.pool().close().await;
    Ok(out)
}
