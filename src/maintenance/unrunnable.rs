//! Jobs no node can run. A job of a type that no live node has a processor for stays pending,
//! uncharged, for a node that can run it; `status`, the API and the dashboard show it. This
//! service lets such jobs fail instead, once no node has known their type for a while
//! (`--fail-unrunnable-after`, off by default), so that a type nobody will ever run does not
//! wait forever. A queue nobody serves is only shown: starting a node that serves it is the
//! cure, and its jobs' types are known.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::warn;

use crate::error::{Error, Result};
use crate::store::Store;

/// Most jobs failed per statement: a big backlog fails in short transactions.
const FAIL_CHUNK: i64 = 10_000;

#[derive(Debug, Clone)]
pub struct UnrunnableConfig {
    /// How long a type must have had no processor on any live node (as this node watched it)
    /// before its pending jobs due for that long fail. `None` (the default): never.
    pub fail_after: Option<Duration>,
    /// A node silent this long is not live. Default 10 s (the node timeout).
    pub node_stale: Duration,
}

impl Default for UnrunnableConfig {
    fn default() -> Self {
        UnrunnableConfig {
            fail_after: None,
            node_stale: Duration::from_secs(10),
        }
    }
}

pub struct UnrunnableJobs {
    store: Arc<dyn Store>,
    config: UnrunnableConfig,
    /// Since when this node has seen each type unknown to every live node. Held only for
    /// map edits, never across an await.
    unknown_since: Mutex<HashMap<String, Instant>>,
}

impl UnrunnableJobs {
    pub fn new(store: Arc<dyn Store>, config: UnrunnableConfig) -> Result<Self> {
        if config
            .fail_after
            .is_some_and(|d| d < Duration::from_secs(1))
        {
            return Err(Error::Config(
                "fail-unrunnable-after must be at least a second".into(),
            ));
        }
        Ok(UnrunnableJobs {
            store,
            config,
            unknown_since: Mutex::new(HashMap::new()),
        })
    }

    /// How often to look: often enough to fail jobs close to the deadline, rarely enough that
    /// the pending jobs' grouping (a read of the pending index) costs nothing noticeable.
    /// `None` when failing is off.
    pub fn interval(&self) -> Option<Duration> {
        self.config
            .fail_after
            .map(|d| (d / 4).clamp(Duration::from_secs(1), Duration::from_secs(60)))
    }

    /// Fails the jobs whose type has been unknown long enough; returns how many.
    pub async fn run_once(&self) -> Result<u64> {
        let Some(after) = self.config.fail_after else {
            return Ok(0);
        };
        let nodes = self.store.nodes(self.config.node_stale).await?;
        let groups = self.store.unrunnable(&nodes).await?;
        let now = Instant::now();
        let ripe: Vec<_> = {
            let mut since = self.unknown_since.lock().unwrap_or_else(|e| e.into_inner());
            since.retain(|t, _| groups.iter().any(|g| !g.type_known && g.job_type == *t));
            groups
                .into_iter()
                .filter(|g| !g.type_known)
                .filter(|g| {
                    let first = *since.entry(g.job_type.clone()).or_insert(now);
                    now.duration_since(first) >= after
                })
                .collect()
        };
        let mut failed = 0;
        for g in ripe {
            let reason = format!(
                "no processor for type {}: no live node has had one for {}s (--fail-unrunnable-after)",
                g.job_type,
                after.as_secs()
            );
            loop {
                let n = self
                    .store
                    .fail_unrunnable(&g.queue, &g.job_type, after, &reason, FAIL_CHUNK)
                    .await?;
                failed += n;
                if n < FAIL_CHUNK as u64 {
                    break;
                }
            }
        }
        Ok(failed)
    }

    /// One tick, logging only when jobs failed.
    pub async fn tick(&self) -> Result<()> {
        let n = self.run_once().await?;
        if n > 0 {
            warn!(
                failed = n,
                "failed pending jobs whose type no live node has a processor for"
            );
        }
        Ok(())
    }
}
