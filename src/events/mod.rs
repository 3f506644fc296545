//! Status events: `running` as a job starts, and `succeeded`, `failed` or `retrying` once its
//! outcome has committed. Published in process, or through Redis pub/sub for many nodes.
//! Events are a live view, not a record: a subscriber that lags loses events, never jobs.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use uuid::Uuid;

use crate::error::Result;

#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
pub use self::redis::RedisBus;

/// What happened to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    Running,
    Succeeded,
    Failed,
    Retrying,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Running => "running",
            EventStatus::Succeeded => "succeeded",
            EventStatus::Failed => "failed",
            EventStatus::Retrying => "retrying",
        }
    }
}

/// One status event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Event {
    pub job_id: Uuid,
    #[serde(rename = "type")]
    pub job_type: String,
    pub batch_id: Option<Uuid>,
    pub status: EventStatus,
    pub node: String,
    pub at: DateTime<Utc>,
    /// The error, for `failed` and `retrying`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where events go and where subscribers read them.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Publishes events in order. Best effort: a failure is logged by the caller, never fatal.
    async fn publish(&self, events: Vec<Event>) -> Result<()>;

    /// Whether anyone may be listening. A bus that knows nobody is (an in-process bus with
    /// no subscriber) lets workers skip building events at all.
    fn has_listeners(&self) -> bool {
        true
    }

    /// Every event published from now on (on any node, for a shared bus).
    async fn subscribe(&self) -> Result<BoxStream<'static, Event>>;
}

/// How many events a slow in-process subscriber may fall behind before it skips ahead.
const LOCAL_BUFFER: usize = 4096;

/// Events within one process, over a broadcast channel.
#[derive(Clone)]
pub struct LocalBus {
    tx: broadcast::Sender<Arc<Event>>,
}

impl Default for LocalBus {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(LOCAL_BUFFER);
        LocalBus { tx }
    }
}

#[async_trait]
impl EventBus for LocalBus {
    async fn publish(&self, events: Vec<Event>) -> Result<()> {
        if self.tx.receiver_count() == 0 {
            return Ok(());
        }
        for e in events {
            // Err only means no subscriber right now.
            let _ = self.tx.send(Arc::new(e));
        }
        Ok(())
    }

    fn has_listeners(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    async fn subscribe(&self) -> Result<BoxStream<'static, Event>> {
        let rx = self.tx.subscribe();
        Ok(BroadcastStream::new(rx)
            .filter_map(|r| async move { r.ok().map(|e| (*e).clone()) })
            .boxed())
    }
}
