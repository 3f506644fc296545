//! The read side and maintenance: listing, due jobs, reports, nodes, rescue and pruning.

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use skiplock::store::{BatchOptions, JobFilter, Outcome};
use skiplock::{JobStatus, NewJob};
use uuid::Uuid;

use crate::common::{Backend, TestStore};
use crate::{beat, insert, ok, settle};

crate::for_each_backend!(
    list_filters_and_cursor_pagination,
    due_pending_orders_by_priority_then_age,
    report_counts_types_batches_and_nodes,
    heartbeats_upsert_and_remove_nodes,
    rescue_charges_the_jobs_of_dead_nodes,
    rescue_takes_every_record_of_a_dead_node_however_many,
    prune_deletes_only_old_finished_jobs,
);

async fn list_filters_and_cursor_pagination(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let mut all = insert(
        &ts,
        (0..15).map(|i| NewJob::new("alpha", json!(i))).collect(),
    )
    .await;
    let sub = ts
        .store
        .insert_batch(
            "beta",
            (0..10).map(|i| json!(i)).collect(),
            BatchOptions::default(),
        )
        .await
        .unwrap();
    all.extend(&sub.ids);
    settle(&ts, &all[..4], ok).await;
    let page = |after: Option<Uuid>| JobFilter {
        after,
        limit: 10,
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let p = ts.store.list_jobs(&page(after)).await.unwrap();
        assert!(p.len() <= 10);
        if p.is_empty() {
            break;
        }
        after = p.last().map(|j| j.id);
        seen.extend(p.into_iter().map(|j| j.id));
    }
    assert_eq!(seen, all, "every job once, in id order");
    let of = |f: JobFilter| {
        let s = ts.store.clone();
        async move { s.list_jobs(&f).await.unwrap() }
    };
    let alpha = of(JobFilter {
        job_type: Some("alpha".into()),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(alpha.len(), 15);
    let done = of(JobFilter {
        status: Some(JobStatus::Succeeded),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(done.iter().map(|j| j.id).collect::<Vec<_>>(), all[..4]);
    let beta_pending = of(JobFilter {
        status: Some(JobStatus::Pending),
        job_type: Some("beta".into()),
        batch_id: sub.batch_id,
        after: Some(sub.ids[4]),
        limit: 3,
    })
    .await;
    assert_eq!(
        beta_pending.iter().map(|j| j.id).collect::<Vec<_>>(),
        sub.ids[5..8]
    );
    let none = of(JobFilter {
        job_type: Some("gamma".into()),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert!(none.is_empty());
}

async fn due_pending_orders_by_priority_then_age(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let later = Utc::now() + chrono::Duration::hours(1);
    let ids = insert(
        &ts,
        vec![
            NewJob::new("noop", json!(0)),
            NewJob::new("noop", json!(1)).priority(-1),
            NewJob::new("noop", json!(2)).priority(9),
            NewJob::new("noop", json!(3)).priority(9).run_at(later),
            NewJob::new("noop", json!(4)),
            NewJob::new("noop", json!(5)).priority(2),
        ],
    )
    .await;
    settle(&ts, &ids[4..5], ok).await;
    let due = ts
        .store
        .due_pending(100, Duration::from_secs(10), &crate::common::scope())
        .await
        .unwrap();
    let got: Vec<(Uuid, i16)> = due.iter().map(|d| (d.id, d.priority)).collect();
    assert_eq!(
        got,
        vec![(ids[2], 9), (ids[5], 2), (ids[0], 0), (ids[1], -1)]
    );
    assert_eq!(
        ts.store
            .due_pending(2, Duration::from_secs(10), &crate::common::scope())
            .await
            .unwrap()
            .len(),
        2
    );
}

async fn report_counts_types_batches_and_nodes(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let sub = ts
        .store
        .insert_batch(
            "noop",
            (0..5).map(|i| json!(i)).collect(),
            BatchOptions {
                name: Some("b1".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let fails = insert(&ts, (0..3).map(|i| NewJob::new("fail", json!(i))).collect()).await;
    settle(&ts, &sub.ids[..2], ok).await;
    settle(&ts, &fails[..1], |id| Outcome::Failed {
        id,
        error: "x".into(),
        took: Duration::from_millis(7),
    })
    .await;
    ts.store.cancel(fails[1]).await.unwrap();
    ts.store.heartbeat(&beat("node-r", 0)).await.unwrap();
    let r = ts.store.report(Duration::from_secs(10)).await.unwrap();
    let counts: Vec<_> = r
        .types
        .iter()
        .map(|t| {
            (
                t.job_type.as_str(),
                t.pending,
                t.succeeded,
                t.failed,
                t.cancelled,
            )
        })
        .collect();
    assert_eq!(counts, vec![("fail", 1, 0, 1, 1), ("noop", 3, 2, 0, 0)]);
    assert_eq!(r.batches.len(), 1);
    let b = &r.batches[0];
    assert_eq!(
        (b.id, b.total, b.succeeded, b.pending),
        (sub.batch_id.unwrap(), 5, 2, 3)
    );
    assert_eq!(r.nodes.len(), 1);
    assert_eq!(r.nodes[0].id, "node-r");
    assert_eq!(r.throughput.buckets_10s.len(), 30);
    let recent: i64 = r.throughput.buckets_10s[28..].iter().sum();
    assert_eq!(recent, 4, "the 3 finished and 1 cancelled jobs, just now");
}

async fn heartbeats_upsert_and_remove_nodes(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let fresh = Duration::from_secs(10);
    ts.store.heartbeat(&beat("node-1", 0)).await.unwrap();
    let mut b2 = beat("node-2", 1);
    ts.store.heartbeat(&b2).await.unwrap();
    let nodes = ts.store.nodes(fresh).await.unwrap();
    assert_eq!(
        nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
        ["node-1", "node-2"]
    );
    let n2 = &nodes[1];
    assert_eq!(
        (n2.host.as_str(), n2.pid, n2.concurrency),
        ("host-a", 4242, 8)
    );
    assert_eq!((n2.in_flight, n2.processed, n2.failed), (1, 10, 2));
    let first_seen = n2.last_heartbeat;
    let deadline = Instant::now() + Duration::from_secs(5);
    b2.processed = 99;
    loop {
        ts.store.heartbeat(&b2).await.unwrap();
        let n = ts.store.nodes(fresh).await.unwrap();
        if n[1].last_heartbeat > first_seen {
            break;
        }
        assert!(Instant::now() < deadline, "last_seen never moved");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let nodes = ts.store.nodes(fresh).await.unwrap();
    assert_eq!(nodes.len(), 2, "a heartbeat updates, never duplicates");
    assert_eq!(nodes[1].processed, 99);
    assert_eq!(nodes[1].started_at, n2.started_at);
    ts.store.remove_node("node-1").await.unwrap();
    let nodes = ts.store.nodes(fresh).await.unwrap();
    assert_eq!(
        nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
        ["node-2"]
    );
}

/// A runner's intent record, as a crash leaves it: written, then the chunk dropped before it
/// could commit (its slot's connection closed with it).
async fn crash_holding(ts: &TestStore, node: &str, ids: &[Uuid]) {
    let mut slot = ts.store.slot(node, &crate::common::scope()).await.unwrap();
    let locked = slot.lock(ids).await.unwrap();
    drop(locked);
    drop(slot);
}

async fn rescue_charges_the_jobs_of_dead_nodes(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let ids = insert(
        &ts,
        vec![
            NewJob::new("noop", json!(0)),
            NewJob::new("noop", json!(1)).max_attempts(1),
            NewJob::new("noop", json!(2)),
            NewJob::new("noop", json!(3)),
            NewJob::new("noop", json!(4)),
        ],
    )
    .await;
    settle(&ts, &ids[2..3], ok).await;
    // "dead" runs in a process of its own, which dies holding its jobs.
    let dead = ts.peer().await;
    dead.heartbeat(&beat("dead", 3)).await.unwrap();
    crash_holding(&ts, "dead", &ids[..3]).await;
    drop(dead);
    // A node that never heartbeats (an executor embedded without the heartbeat service)
    // still leaves its intent record.
    crash_holding(&ts, "silent", &ids[4..5]).await;
    ts.store.heartbeat(&beat("alive", 1)).await.unwrap();
    crash_holding(&ts, "alive", &ids[3..4]).await;
    let nothing = ts
        .store
        .rescue_abandoned(Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        nothing,
        Default::default(),
        "fresh records are not abandoned"
    );
    // Wait until the records are staler than 300 ms, while "alive" keeps beating.
    let stale = Duration::from_millis(300);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut total = skiplock::store::Rescued::default();
    while total.retried + total.failed < 3 {
        ts.store.heartbeat(&beat("alive", 1)).await.unwrap();
        let r = ts.store.rescue_abandoned(stale).await.unwrap();
        total.dead_nodes += r.dead_nodes;
        total.retried += r.retried;
        total.failed += r.failed;
        assert!(Instant::now() < deadline, "rescued only {total:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!((total.dead_nodes, total.retried, total.failed), (1, 2, 1));
    let j0 = ts.store.job(ids[0]).await.unwrap().unwrap();
    assert_eq!((j0.status, j0.attempts), (JobStatus::Pending, 1));
    assert!(j0.last_error.unwrap().contains("abandoned: node dead"));
    let j1 = ts.store.job(ids[1]).await.unwrap().unwrap();
    assert_eq!(
        (j1.status, j1.attempts),
        (JobStatus::Failed, 1),
        "a poison job"
    );
    assert!(j1.finished_at.is_some());
    let j2 = ts.store.job(ids[2]).await.unwrap().unwrap();
    assert_eq!(
        (j2.status, j2.attempts),
        (JobStatus::Succeeded, 1),
        "finished: untouched"
    );
    let j3 = ts.store.job(ids[3]).await.unwrap().unwrap();
    assert_eq!(j3.attempts, 0, "a live node's job is not charged");
    // Each charge is an attempt in the history: who held it, and no duration (nobody timed it).
    let h0 = ts
        .store
        .job_detail(ids[0])
        .await
        .unwrap()
        .unwrap()
        .attempt_history;
    assert_eq!(h0.len(), 1);
    assert!(h0[0].error.contains("abandoned: node dead"), "{h0:?}");
    assert_eq!((h0[0].node.as_deref(), h0[0].took_ms), (Some("dead"), None));
    assert_eq!((h0[0].attempt, h0[0].outcome.as_str()), (1, "retry"));
    let h1 = ts
        .store
        .job_detail(ids[1])
        .await
        .unwrap()
        .unwrap()
        .attempt_history;
    assert_eq!(h1[0].outcome, "failed");
    let j4 = ts.store.job(ids[4]).await.unwrap().unwrap();
    assert_eq!((j4.status, j4.attempts), (JobStatus::Pending, 1));
    assert!(j4.last_error.unwrap().contains("abandoned: node silent"));
    let left: Vec<String> = ts
        .store
        .nodes(Duration::from_secs(60))
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(left, ["alive"]);
    let again = ts.store.rescue_abandoned(stale).await.unwrap();
    assert_eq!((again.retried, again.failed), (0, 0), "charged once");
}

/// A dead node can leave many intent records (one per chunk its runners began). They are
/// charged a bounded batch per statement (on PostgreSQL), but one rescue takes them all.
async fn rescue_takes_every_record_of_a_dead_node_however_many(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let ids = insert(
        &ts,
        (0..40).map(|i| NewJob::new("noop", json!(i))).collect(),
    )
    .await;
    for id in &ids {
        crash_holding(&ts, "gone", std::slice::from_ref(id)).await;
    }
    let stale = Duration::from_millis(200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = ts.store.rescue_abandoned(stale).await.unwrap();
    assert_eq!((r.retried, r.failed), (40, 0), "{r:?}");
    for id in &ids {
        let j = ts.store.job(*id).await.unwrap().unwrap();
        assert_eq!((j.status, j.attempts), (JobStatus::Pending, 1));
    }
    let again = ts.store.rescue_abandoned(stale).await.unwrap();
    assert_eq!((again.retried, again.failed), (0, 0), "charged once");
}

async fn prune_deletes_only_old_finished_jobs(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let done = ts
        .store
        .insert_batch("noop", vec![json!(1), json!(2)], BatchOptions::default())
        .await
        .unwrap();
    let open = ts
        .store
        .insert_batch("noop", vec![json!(3), json!(4)], BatchOptions::default())
        .await
        .unwrap();
    settle(&ts, &done.ids, ok).await;
    settle(&ts, &open.ids[..1], ok).await;
    assert_eq!(ts.store.prune(Duration::from_secs(3600)).await.unwrap(), 0);
    assert_eq!(
        ts.count_status("succeeded").await,
        3,
        "recent jobs are kept"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut pruned = 0;
    while pruned < 3 {
        pruned += ts.store.prune(Duration::from_millis(20)).await.unwrap();
        assert!(Instant::now() < deadline, "pruned only {pruned} of 3");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(pruned, 3);
    assert_eq!(ts.count_status("succeeded").await, 0);
    assert_eq!(
        ts.count_status("pending").await,
        1,
        "pending jobs are never pruned"
    );
    assert!(ts
        .store
        .batch(done.batch_id.unwrap())
        .await
        .unwrap()
        .is_none());
    let b = ts
        .store
        .batch(open.batch_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (b.total, b.pending, b.succeeded),
        (2, 1, 1),
        "the batch's total stands; its pruned job had finished and counts as done"
    );
}
