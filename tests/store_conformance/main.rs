//! One store suite, every backend: each test runs as `postgres::name` and `sqlite::name`
//! against a fresh schema or database file. The assertions are what a user would check (rows,
//! statuses, counts), so both stores must mean the same thing by every `Store` method.
//!
//! [`jobs`] covers a job's life (insert, lock, outcomes, retry, cancel); [`queries`] the
//! read side and maintenance (listing, due jobs, reports, nodes, rescue, pruning);
//! [`operators`] attempt history, bulk retry and cancel, and retention.

#[path = "../common/mod.rs"]
mod common;
mod counts;
mod cron;
mod jobs;
mod operators;
mod queries;
mod unique;

use skiplock::store::{NodeBeat, Outcome};
use skiplock::NewJob;
use uuid::Uuid;

use common::TestStore;

pub(crate) fn ok(id: Uuid) -> Outcome {
    Outcome::Succeeded { id }
}

/// Locks `ids` and records `outcome(id)` for each locked job; returns how many were locked.
pub(crate) async fn settle(
    ts: &TestStore,
    ids: &[Uuid],
    outcome: impl Fn(Uuid) -> Outcome,
) -> usize {
    let mut slot = ts
        .store
        .slot("node-t", &crate::common::scope())
        .await
        .unwrap();
    let chunk = slot.lock(ids).await.unwrap();
    let outs: Vec<Outcome> = chunk.jobs.iter().map(|j| outcome(j.id)).collect();
    chunk.finish(&outs).await.unwrap();
    outs.len()
}

pub(crate) async fn insert(ts: &TestStore, jobs: Vec<NewJob>) -> Vec<Uuid> {
    ts.store.insert_jobs(&jobs).await.unwrap()
}

pub(crate) fn beat(id: &str, in_flight: i32) -> NodeBeat {
    NodeBeat {
        id: id.into(),
        host: "host-a".into(),
        pid: 4242,
        concurrency: 8,
        in_flight,
        processed: 10,
        failed: 2,
        queues: [("default".to_string(), 8)].into(),
        types: vec!["noop".to_string()],
    }
}
