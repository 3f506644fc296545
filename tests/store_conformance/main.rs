//! One store suite, every backend: each test runs as `postgres::name` and `sqlite::name`
//! against a fresh schema or database file. The assertions are what a user would check (rows,
//! statuses, counts), so both stores must mean the same thing by every `Store` method.
//!
//! [`jobs`] covers a job's life (insert, lock, outcomes, retry, cancel); [`queries`] the
//! read side and maintenance (listing, due jobs, reports, nodes, rescue, pruning).

#[path = "../common/mod.rs"]
mod common;
mod jobs;
mod queries;

use skiplock::store::{NodeBeat, Outcome};
use skiplock::{JobStatus, NewJob};
use uuid::Uuid;

use common::TestStore;

pub(crate) fn ok(id: Uuid) -> Outcome {
    Outcome {
        id,
        status: JobStatus::Succeeded,
        error: None,
        retry_delay_ms: None,
    }
}

/// Locks `ids` and records `outcome(id)` for each locked job; returns how many were locked.
pub(crate) async fn settle(
    ts: &TestStore,
    ids: &[Uuid],
    outcome: impl Fn(Uuid) -> Outcome,
) -> usize {
    let mut lease = ts.store.lease("node-t").await.unwrap();
    let chunk = ts.store.lock_chunk(&mut lease, ids).await.unwrap();
    let outs: Vec<Outcome> = chunk.jobs.iter().map(|j| outcome(j.id)).collect();
    ts.store.finish_chunk(chunk, &outs, "node-t").await.unwrap();
    outs.len()
}

pub(crate) async fn insert(ts: &TestStore, jobs: Vec<NewJob>) -> Vec<Uuid> {
    ts.store.insert_jobs(&jobs).await.unwrap()
}

pub(crate) fn beat(id: &str, held: Vec<Uuid>) -> NodeBeat {
    NodeBeat {
        id: id.into(),
        host: "host-a".into(),
        pid: 4242,
        concurrency: 8,
        in_flight: held.len() as i32,
        processed: 10,
        failed: 2,
        held,
    }
}
