//! Deletes finished jobs past retention so the table (and reports over it) stay small.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tracing::info;

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct PrunerConfig {
    /// How often to prune. Default 5 minutes.
    pub interval: Duration,
    /// Finished jobs older than this are deleted. Default 7 days.
    pub retention: Duration,
}

impl Default for PrunerConfig {
    fn default() -> Self {
        PrunerConfig {
            interval: Duration::from_secs(300),
            retention: Duration::from_secs(7 * 24 * 3600),
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
        let n = self.store.prune(self.config.retention).await?;
        self.metrics.pruned.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }

    pub async fn tick(&self) -> Result<()> {
        let n = self.run_once().await?;
        if n > 0 {
            info!(pruned = n, "deleted finished jobs past retention");
        }
        Ok(())
    }
}
