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
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            interval: Duration::from_secs(1),
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
        if config.interval.is_zero() {
            return Err(Error::Config("heartbeat interval must be positive".into()));
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

    pub async fn run_once(&self) -> Result<()> {
        self.store.heartbeat(&self.node.beat()).await
    }

    /// Removes the node's row: a clean exit holds nothing and is not mistaken for a crash.
    pub async fn retire(&self) -> Result<()> {
        self.store.remove_node(&self.node.id).await
    }
}
