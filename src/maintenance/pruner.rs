//! Deletes finished jobs past retention so the table (and reports over it) stay small. Each
//! rule of the [`Retention`] policy (per status, per type) is pruned in bounded deletes of
//! [`crate::store::PRUNE_CHUNK`] rows, so a backlog of millions of old rows is many short
//! transactions that workers interleave with, never one huge one.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tracing::info;

use super::retention::Retention;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct PrunerConfig {
    /// How often to prune. Default 5 minutes.
    pub interval: Duration,
    /// How long finished jobs are kept, by status and type. Default 7 days for all.
    pub retention: Retention,
}

impl Default for PrunerConfig {
    fn default() -> Self {
        PrunerConfig {
            interval: Duration::from_secs(300),
            retention: Retention::default(),
        }
    }
}

pub struct Pruner {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    config: PrunerConfig,
}

impl Pruner {
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>, config: PrunerConfig) -> Result<Self> {
        if config.interval.is_zero() {
            return Err(Error::Config("prune interval must be positive".into()));
        }
        Ok(Pruner {
            store,
            metrics,
            config,
        })
    }

    pub fn interval(&self) -> Duration {
        self.config.interval
    }

    pub async fn run_once(&self) -> Result<u64> {
        let mut total = 0;
        for rule in self.config.retention.rules() {
            let n = self.store.prune_rule(&rule).await?;
            self.metrics.pruned.fetch_add(n, Ordering::Relaxed);
            total += n;
        }
        if let Some(d) = self.config.retention.shortest() {
            self.store.prune_batches(d).await?;
        }
        Ok(total)
    }

    pub async fn tick(&self) -> Result<()> {
        let n = self.run_once().await?;
        if n > 0 {
            info!(pruned = n, "deleted finished jobs past retention");
        }
        Ok(())
    }
}
