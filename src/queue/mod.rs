//! The queue: a delivery hint that carries only job IDs. Losing an ID delays its job (the
//! reconciler puts it back); a duplicate ID is harmless (the row lock drops it).

pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::error::Result;
use crate::job::Due;

/// The queue seam: in memory for one node, Redis for many.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Adds IDs; one already queued is not added twice. Returns how many were new.
    async fn push(&self, items: &[Due]) -> Result<usize>;

    /// Takes up to `max` IDs, highest priority first, waiting up to `wait` for the first.
    /// Returns an empty list when nothing arrived in time.
    async fn pop(&self, max: usize, wait: Duration) -> Result<Vec<Uuid>>;

    /// How many IDs are waiting.
    async fn depth(&self) -> Result<u64>;

    /// A short name for logs and reports: `memory` or `redis`.
    fn backend(&self) -> &'static str;
}
