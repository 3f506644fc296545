//! A node's identity and live counters: what its heartbeats report and what its runners
//! count into. Shared by the executor and the maintenance services, below both.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::events::EventStatus;
use crate::metrics::Metrics;
use crate::store::NodeBeat;

/// A node's state: who it is (one per process start) and how it is doing.
pub struct NodeState {
    /// Unique per process start: `host-pid-random`.
    pub id: String,
    pub host: String,
    pub pid: i32,
    pub concurrency: i32,
    /// The queues it serves, with each one's runners, and the types it has processors for:
    /// published with its heartbeat, so reports can tell which pending jobs no node can run.
    pub queues: BTreeMap<String, usize>,
    pub types: Vec<String>,
    processed: AtomicU64,
    failed: AtomicU64,
    /// Jobs locked right now. A mutex held for a set insert or remove, once per chunk.
    held: Mutex<HashSet<Uuid>>,
    /// Lease-mode jobs running right now, with the token that stops each one's processor
    /// when the node learns (renewing its leases) that the job was cancelled or taken.
    leases: Mutex<HashMap<Uuid, CancellationToken>>,
}

impl NodeState {
    /// A node serving `queues` (each with its runners) with processors for `types`.
    pub fn new(queues: &[(String, usize)], types: &[String]) -> Self {
        let concurrency: usize = queues.iter().map(|(_, n)| n).sum();
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".into());
        let pid = std::process::id() as i32;
        let suffix = &Uuid::now_v7().simple().to_string()[24..];
        NodeState {
            id: format!("{host}-{pid}-{suffix}"),
            host,
            pid,
            concurrency: concurrency as i32,
            queues: queues.iter().cloned().collect(),
            types: types.to_vec(),
            processed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            held: Mutex::new(HashSet::new()),
            leases: Mutex::new(HashMap::new()),
        }
    }

    pub fn processed(&self) -> u64 {
        self.processed.load(Ordering::Relaxed)
    }

    /// Counts a chunk's committed outcomes.
    pub(crate) fn count(&self, statuses: &[EventStatus]) {
        let failed = statuses
            .iter()
            .filter(|s| matches!(s, EventStatus::Failed | EventStatus::Retrying))
            .count() as u64;
        self.processed
            .fetch_add(statuses.len() as u64, Ordering::Relaxed);
        if failed > 0 {
            self.failed.fetch_add(failed, Ordering::Relaxed);
        }
    }

    /// Marks jobs as held until the returned guard drops.
    pub(crate) fn hold<'a>(
        &'a self,
        ids: impl Iterator<Item = Uuid>,
        metrics: &'a Metrics,
    ) -> Held<'a> {
        let ids: Vec<Uuid> = ids.collect();
        metrics
            .in_flight
            .fetch_add(ids.len() as i64, Ordering::Relaxed);
        let mut h = self.held.lock().unwrap_or_else(|e| e.into_inner());
        h.extend(ids.iter().copied());
        Held {
            node: self,
            metrics,
            ids,
        }
    }

    /// Registers a lease-mode job as running here; its processor stops when the returned
    /// token is cancelled. The registration ends when the guard drops.
    pub(crate) fn run_lease(&self, id: Uuid) -> (CancellationToken, LeaseGuard<'_>) {
        let token = CancellationToken::new();
        self.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, token.clone());
        (token, LeaseGuard { node: self, id })
    }

    /// The lease-mode jobs running here, whose leases the heartbeat renews.
    pub fn lease_ids(&self) -> Vec<Uuid> {
        self.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect()
    }

    /// Stops the processors of jobs this node no longer holds the lease of.
    pub(crate) fn lost_leases(&self, ids: impl IntoIterator<Item = Uuid>) {
        let l = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            if let Some(t) = l.get(&id) {
                t.cancel();
            }
        }
    }

    /// The jobs this node holds right now.
    pub fn held(&self) -> HashSet<Uuid> {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The heartbeat to write now.
    pub fn beat(&self) -> NodeBeat {
        let in_flight = self.held.lock().unwrap_or_else(|e| e.into_inner()).len();
        NodeBeat {
            id: self.id.clone(),
            host: self.host.clone(),
            pid: self.pid,
            concurrency: self.concurrency,
            in_flight: in_flight as i32,
            processed: self.processed.load(Ordering::Relaxed) as i64,
            failed: self.failed.load(Ordering::Relaxed) as i64,
            queues: self.queues.clone(),
            types: self.types.clone(),
        }
    }
}

/// Ends a lease-mode job's registration, however its run ends.
pub(crate) struct LeaseGuard<'a> {
    node: &'a NodeState,
    id: Uuid,
}

impl Drop for LeaseGuard<'_> {
    fn drop(&mut self) {
        self.node
            .leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

/// Releases held jobs when the chunk ends, however it ends.
pub(crate) struct Held<'a> {
    node: &'a NodeState,
    metrics: &'a Metrics,
    ids: Vec<Uuid>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.metrics
            .in_flight
            .fetch_sub(self.ids.len() as i64, Ordering::Relaxed);
        let mut h = self.node.held.lock().unwrap_or_else(|e| e.into_inner());
        for id in &self.ids {
            h.remove(id);
        }
    }
}
