//! The in-memory queue for a single node: an ordered set with a membership index, so that
//! pushes are deduplicated and pops come out by priority, then arrival.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

use super::Queue;
use crate::error::Result;
use crate::job::Due;

/// Default bound on queued IDs (16 bytes each plus index overhead: about 100 MiB at worst).
/// Past it, pushes are dropped: the database keeps the jobs and the reconciler re-offers them.
pub const DEFAULT_CAPACITY: usize = 1_000_000;

/// Order key: highest priority first, then arrival order.
type Key = (Reverse<i16>, u64, Uuid);

#[derive(Default)]
struct State {
    order: BTreeSet<Key>,
    members: HashSet<Uuid>,
    /// Arrival counter, the FIFO tie-break within one priority.
    seq: u64,
}

/// A bounded, deduplicating priority queue of job IDs.
pub struct MemoryQueue {
    /// Held only for in-memory edits, never across an await.
    state: Mutex<State>,
    /// Wakes poppers waiting on an empty queue.
    ready: Notify,
    capacity: usize,
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl MemoryQueue {
    pub fn new(capacity: usize) -> Self {
        MemoryQueue {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    fn take(&self, max: usize) -> Vec<Uuid> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(max.min(st.order.len()));
        while out.len() < max {
            let Some(key) = st.order.pop_first() else {
                break;
            };
            st.members.remove(&key.2);
            out.push(key.2);
        }
        out
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn push(&self, items: &[Due]) -> Result<usize> {
        let added = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let mut added = 0;
            for d in items {
                if st.members.len() >= self.capacity {
                    break;
                }
                if st.members.insert(d.id) {
                    st.seq += 1;
                    let seq = st.seq;
                    st.order.insert((Reverse(d.priority), seq, d.id));
                    added += 1;
                }
            }
            added
        };
        // One wake-up per new ID, capped: each woken popper takes a whole chunk anyway.
        for _ in 0..added.min(256) {
            self.ready.notify_one();
        }
        Ok(added)
    }

    async fn pop(&self, max: usize, wait: Duration) -> Result<Vec<Uuid>> {
        let deadline = Instant::now() + wait;
        loop {
            // Register interest before looking, so a push between the look and the wait
            // still wakes us.
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let got = self.take(max.max(1));
            if !got.is_empty() {
                return Ok(got);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn depth(&self) -> Result<u64> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Ok(st.members.len() as u64)
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}
