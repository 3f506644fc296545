//! The in-memory queue for a single node: per named queue, an ordered set, with one
//! membership index, so that pushes are deduplicated and pops come out by priority, then
//! arrival.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
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

/// One named queue's IDs and the poppers waiting on it.
#[derive(Default)]
struct Lane {
    order: BTreeSet<Key>,
    /// Wakes this queue's poppers (only theirs: a push to `media` wakes no `default` runner).
    ready: Arc<Notify>,
}

#[derive(Default)]
struct State {
    lanes: HashMap<String, Lane>,
    /// Every queued ID, whatever its queue: the dedup index and the capacity count.
    members: HashSet<Uuid>,
    /// Arrival counter, the FIFO tie-break within one priority.
    seq: u64,
}

/// A bounded, deduplicating priority queue of job IDs per named queue.
pub struct MemoryQueue {
    /// Held only for in-memory edits, never across an await.
    state: Mutex<State>,
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
            capacity: capacity.max(1),
        }
    }

    /// Takes up to `max` IDs of `queue`, and the queue's wake-up to wait on if it is empty.
    fn take(&self, queue: &str, max: usize) -> (Vec<Uuid>, Arc<Notify>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let State { lanes, members, .. } = &mut *st;
        let lane = lanes.entry(queue.to_string()).or_default();
        let mut out = Vec::with_capacity(max.min(lane.order.len()));
        while out.len() < max {
            let Some(key) = lane.order.pop_first() else {
                break;
            };
            members.remove(&key.2);
            out.push(key.2);
        }
        (out, lane.ready.clone())
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn push(&self, items: &[Due]) -> Result<usize> {
        let mut woken: HashMap<String, (Arc<Notify>, usize)> = HashMap::new();
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
                    let lane = st.lanes.entry(d.queue.clone()).or_default();
                    lane.order.insert((Reverse(d.priority), seq, d.id));
                    woken
                        .entry(d.queue.clone())
                        .or_insert_with(|| (lane.ready.clone(), 0))
                        .1 += 1;
                    added += 1;
                }
            }
            added
        };
        // One wake-up per new ID, capped: each woken popper takes a whole chunk anyway.
        for (ready, n) in woken.into_values() {
            for _ in 0..n.min(256) {
                ready.notify_one();
            }
        }
        Ok(added)
    }

    async fn pop(&self, queue: &str, max: usize, wait: Duration) -> Result<Vec<Uuid>> {
        let deadline = Instant::now() + wait;
        loop {
            let (got, ready) = self.take(queue, max.max(1));
            if !got.is_empty() {
                return Ok(got);
            }
            // Register interest, then look again, so a push between the look and the wait
            // still wakes us.
            let notified = ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (got, _) = self.take(queue, max.max(1));
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
