//! The queue: a delivery hint that carries only job IDs. Losing an ID delays its job (the
//! reconciler puts it back); a duplicate ID is harmless (the row lock drops it).
//!
//! IDs are kept per named queue (each [`Due`] says which), and a runner pops only the queue
//! it serves, so a node never even sees the IDs of queues it does not run. An ID it pops
//! anyway that it cannot run (a type it has no processor for) is dropped, not pushed back:
//! the job stays pending and uncharged, and the reconciler of a node that can run it offers
//! it again, so no two nodes pass an ID back and forth.

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
    /// Adds IDs, each to its own named queue; one already queued is not added twice.
    /// Returns how many were new.
    async fn push(&self, items: &[Due]) -> Result<usize>;

    /// Takes up to `max` IDs of the named queue `queue`, highest priority first, waiting up
    /// to `wait` for the first. Returns an empty list when nothing arrived in time.
    async fn pop(&self, queue: &str, max: usize, wait: Duration) -> Result<Vec<Uuid>>;

    /// How many IDs are waiting, in every named queue.
    async fn depth(&self) -> Result<u64>;

    /// A short name for logs and reports: `memory` or `redis`.
    fn backend(&self) -> &'static str;
}
