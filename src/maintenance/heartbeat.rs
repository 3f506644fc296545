//! Node heartbeats: this node's row in `nodes` (host, concurrency, in flight, processed, the
//! jobs it holds), refreshed on a timer and removed on a clean shutdown.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::node_state::NodeState;
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct HeartbeatConfig {
    /// How often to write. Default 1 s; keep it well under the reconciler's node timeout.
    pub interval: Duration,
    /// How long each renewal extends the node's leases (lease-mode jobs). Default 10 s, the
    /// node timeout: a node silent that long has lost its jobs either way.
    pub lease_ttl: Duration,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            interval: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(10),
        }
    }
}

pub struct Heartbeat {
    store: Arc<dyn Store>,
    node: Arc<NodeState>,
    config: HeartbeatConfig,
}

impl Heartbeat {
    pub fn new(
        store: Arc<dyn Store>,
        node: Arc<NodeState>,
        config: HeartbeatConfig,
    ) -> Result<Self> {
        if config.interval.is_zero() || config.lease_ttl <= config.interval {
            return Err(Error::Config(
                "the heartbeat interval must be positive and shorter than the lease".into(),
            ));
        }
        Ok(Heartbeat {
            store,
            node,
            config,
        })
    }

    pub fn interval(&self) -> Duration {
        self.config.interval
    }

    /// Writes the heartbeat and renews the leases of the lease-mode jobs running here. A job
    /// whose lease did not renew was cancelled or rescued: its processor is stopped.
    pub async fn run_once(&self) -> Result<()> {
        self.store.heartbeat(&self.node.beat()).await?;
        let ids = self.node.lease_ids();
        if !ids.is_empty() {
            let kept: std::collections::HashSet<_> = self
                .store
                .extend_leases(&self.node.id, &ids, self.config.lease_ttl)
                .await?
                .into_iter()
                .collect();
            let lost: Vec<_> = ids.into_iter().filter(|id| !kept.contains(id)).collect();
            for id in &lost {
                tracing::warn!(
                    job = %id,
                    "lease lost: the job was cancelled, or rescued after its lease expired and \
                     given to another attempt; stopping its processor, its outcome will not \
                     be recorded"
                );
            }
            self.node.lost_leases(lost);
        }
        Ok(())
    }

    /// Removes the node's row: a clean exit holds nothing and is not mistaken for a crash.
    pub async fn retire(&self) -> Result<()> {
        self.store.remove_node(&self.node.id).await
    }
}
