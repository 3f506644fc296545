//! One store suite, every backend: each test runs as `postgres::name` and `sqlite::name`
//! against a fresh schema or database file. The assertions are what a user would check (rows,
//! statuses, counts), so both stores must mean the same thing by every `Store` method.

mod common;

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use skiplock::error::Error;
use skiplock::store::{BatchOptions, JobFilter, NodeBeat, Outcome};
use skiplock::{JobStatus, NewJob};
use uuid::Uuid;

use common::{Backend, TestStore};

for_each_backend!(
    inserted_jobs_read_back_exactly,
    invalid_jobs_insert_nothing,
    batches_count_their_jobs,
    lock_chunk_takes_only_pending_due_jobs,
    a_locked_job_is_skipped_until_its_transaction_ends,
    a_dropped_chunk_leaves_its_jobs_untouched,
    finish_chunk_records_every_outcome,
    retry_and_cancel_follow_the_rules,
    a_running_job_cannot_be_cancelled,
    list_filters_and_cursor_pagination,
    due_pending_orders_by_priority_then_age,
    report_counts_types_batches_and_nodes,
    heartbeats_upsert_and_remove_nodes,
    rescue_charges_the_jobs_of_dead_nodes,
    prune_deletes_only_old_finished_jobs,
);

fn ok(id: Uuid) -> Outcome {
    Outcome {
        id,
        status: JobStatus::Succeeded,
        error: None,
        retry_delay_ms: None,
    }
}

/// Locks `ids` and records `outcome(id)` for each locked job; returns how many were locked.
async fn settle(ts: &TestStore, ids: &[Uuid], outcome: impl Fn(Uuid) -> Outcome) -> usize {
    let chunk = ts.store.lock_chunk(ids).await.unwrap();
    let outs: Vec<Outcome> = chunk.jobs.iter().map(|j| outcome(j.id)).collect();
    ts.store.finish_chunk(chunk, &outs, "node-t").await.unwrap();
    outs.len()
}

async fn insert(ts: &TestStore, jobs: Vec<NewJob>) -> Vec<Uuid> {
    ts.store.insert_jobs(&jobs).await.unwrap()
}

fn beat(id: &str, held: Vec<Uuid>) -> NodeBeat {
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

async fn inserted_jobs_read_back_exactly(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let later = Utc::now() + chrono::Duration::hours(1);
    let targets = [
        json!({"invoice": 42, "lines": [1, 2, {"deep": "ünïcødé ✓"}]}),
        json!("just a string"),
        json!(3.5),
        json!(null),
        json!(true),
    ];
    let jobs: Vec<NewJob> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| NewJob::new(format!("type_{i}"), t.clone()).priority(i as i16 - 2))
        .chain([NewJob::new("later", json!({}))
            .run_at(later)
            .max_attempts(7)])
        .collect();
    let ids = insert(&ts, jobs).await;
    assert_eq!(ids.len(), 6);
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids, "UUID v7 ids come out in creation order");
    for (i, t) in targets.iter().enumerate() {
        let j = ts.store.job(ids[i]).await.unwrap().expect("job exists");
        assert_eq!(j.id, ids[i]);
        assert_eq!(j.job_type, format!("type_{i}"));
        assert_eq!(&j.target, t);
        assert_eq!(j.status, JobStatus::Pending);
        assert_eq!((j.attempts, j.max_attempts), (0, 3));
        assert_eq!(j.priority, i as i16 - 2);
        assert!(j.batch_id.is_none() && j.last_error.is_none() && j.finished_at.is_none());
        assert!(j.run_at <= Utc::now());
    }
    let l = ts.store.job(ids[5]).await.unwrap().unwrap();
    assert_eq!(l.max_attempts, 7);
    assert!(
        (l.run_at - later).num_milliseconds().abs() <= 1,
        "{}",
        l.run_at
    );
    assert!(ts.store.job(Uuid::now_v7()).await.unwrap().is_none());
}

async fn invalid_jobs_insert_nothing(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let bad = vec![
        NewJob::new("fine", json!(1)),
        NewJob::new("not a type!", json!(2)),
    ];
    assert!(matches!(
        ts.store.insert_jobs(&bad).await,
        Err(Error::Invalid(_))
    ));
    let zero = vec![NewJob::new("fine", json!(1)).max_attempts(0)];
    assert!(matches!(
        ts.store.insert_jobs(&zero).await,
        Err(Error::Invalid(_))
    ));
    let r = ts
        .store
        .insert_batch("bad type", vec![json!(1)], BatchOptions::default())
        .await;
    assert!(matches!(r, Err(Error::Invalid(_))), "{r:?}");
    assert_eq!(ts.count_status("pending").await, 0);
}

async fn batches_count_their_jobs(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let targets: Vec<_> = (0..7).map(|i| json!({ "n": i })).collect();
    let opts = BatchOptions {
        name: Some("nightly".into()),
        max_attempts: Some(2),
        priority: 3,
        run_at: None,
    };
    let sub = ts
        .store
        .insert_batch("noop", targets.clone(), opts)
        .await
        .unwrap();
    let bid = sub.batch_id.expect("a batch id");
    assert_eq!(sub.ids.len(), 7);
    let b = ts.store.batch(bid).await.unwrap().unwrap();
    assert_eq!(
        (b.name.as_deref(), b.job_type.as_str()),
        (Some("nightly"), "noop")
    );
    assert_eq!((b.total, b.pending, b.succeeded, b.failed), (7, 7, 0, 0));
    assert_eq!(b.progress, 0.0);
    let listed = ts
        .store
        .list_jobs(&JobFilter {
            batch_id: Some(bid),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let got: Vec<_> = listed.iter().map(|j| j.target.clone()).collect();
    assert_eq!(got, targets, "jobs keep the targets' order");
    assert!(listed
        .iter()
        .all(|j| j.batch_id == Some(bid) && j.max_attempts == 2 && j.priority == 3));
    settle(&ts, &sub.ids[..3], ok).await;
    settle(&ts, &sub.ids[3..4], |id| Outcome {
        id,
        status: JobStatus::Failed,
        error: Some("no".into()),
        retry_delay_ms: None,
    })
    .await;
    ts.store.cancel_job(sub.ids[4]).await.unwrap();
    let b = ts.store.batch(bid).await.unwrap().unwrap();
    assert_eq!(
        (b.succeeded, b.failed, b.cancelled, b.pending),
        (3, 1, 1, 2)
    );
    assert!((b.progress - 5.0 / 7.0).abs() < 1e-9);
    assert!(ts.store.batch(Uuid::now_v7()).await.unwrap().is_none());
}

async fn lock_chunk_takes_only_pending_due_jobs(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let later = Utc::now() + chrono::Duration::hours(1);
    let ids = insert(
        &ts,
        vec![
            NewJob::new("noop", json!(0)),
            NewJob::new("noop", json!(1)).priority(5),
            NewJob::new("noop", json!(2)).run_at(later),
            NewJob::new("noop", json!(3)),
            NewJob::new("noop", json!(4)),
        ],
    )
    .await;
    settle(&ts, &ids[3..4], ok).await;
    ts.store.cancel_job(ids[4]).await.unwrap();
    let mut asked = ids.clone();
    asked.push(ids[0]); // a duplicate ID
    asked.push(Uuid::now_v7()); // an ID with no row
    let chunk = ts.store.lock_chunk(&asked).await.unwrap();
    let got: Vec<Uuid> = chunk.jobs.iter().map(|j| j.id).collect();
    assert_eq!(got, vec![ids[1], ids[0]], "pending and due, by priority");
    ts.store.finish_chunk(chunk, &[], "n").await.unwrap();
    let empty = ts.store.lock_chunk(&[]).await.unwrap();
    assert!(empty.jobs.is_empty());
    ts.store.finish_chunk(empty, &[], "n").await.unwrap();
    // An empty finish commits nothing: the jobs are as they were.
    let j = ts.store.job(ids[0]).await.unwrap().unwrap();
    assert_eq!((j.status, j.attempts), (JobStatus::Pending, 0));
}

async fn a_locked_job_is_skipped_until_its_transaction_ends(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let id = insert(&ts, vec![NewJob::new("noop", json!({}))]).await[0];
    let first = ts.store.lock_chunk(&[id]).await.unwrap();
    assert_eq!(first.jobs.len(), 1);
    // A second worker popped the same ID. PostgreSQL skips the locked row at once; SQLite's
    // second writer waits for the first transaction. Either way it must not get the job.
    let store = ts.store.clone();
    let second = tokio::spawn(async move {
        let c = store.lock_chunk(&[id]).await.unwrap();
        let n = c.jobs.len();
        store.finish_chunk(c, &[], "node-b").await.unwrap();
        n
    });
    ts.store
        .finish_chunk(first, &[ok(id)], "node-a")
        .await
        .unwrap();
    assert_eq!(second.await.unwrap(), 0, "the job ran twice");
    let j = ts.store.job(id).await.unwrap().unwrap();
    assert_eq!((j.status, j.attempts), (JobStatus::Succeeded, 1));
    assert_eq!(j.node_id.as_deref(), Some("node-a"));
}

async fn a_dropped_chunk_leaves_its_jobs_untouched(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let id = insert(&ts, vec![NewJob::new("noop", json!({}))]).await[0];
    let chunk = ts.store.lock_chunk(&[id]).await.unwrap();
    assert_eq!(chunk.jobs.len(), 1);
    drop(chunk); // a crash or an aborted worker: the transaction rolls back
                 // The rollback reaches the server asynchronously (sqlx sends it as the connection goes
                 // back to its pool), so poll for the job to be free, with a deadline.
    let deadline = Instant::now() + Duration::from_secs(5);
    let again = loop {
        let c = ts.store.lock_chunk(&[id]).await.unwrap();
        if !c.jobs.is_empty() {
            break c;
        }
        ts.store.finish_chunk(c, &[], "n").await.unwrap();
        assert!(Instant::now() < deadline, "the job never came free");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(again.jobs[0].attempts, 0);
    ts.store.finish_chunk(again, &[ok(id)], "n").await.unwrap();
    assert_eq!(ts.count_status("succeeded").await, 1);
}

async fn finish_chunk_records_every_outcome(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let ids = insert(&ts, (0..4).map(|i| NewJob::new("noop", json!(i))).collect()).await;
    let before = Utc::now();
    let chunk = ts.store.lock_chunk(&ids).await.unwrap();
    let outcomes = vec![
        ok(ids[0]),
        Outcome {
            id: ids[1],
            status: JobStatus::Pending,
            error: Some("busy, try later".into()),
            retry_delay_ms: Some(60_000),
        },
        Outcome {
            id: ids[2],
            status: JobStatus::Failed,
            error: Some("bad target".into()),
            retry_delay_ms: None,
        },
        Outcome {
            id: ids[3],
            status: JobStatus::Pending,
            error: Some("flaky".into()),
            retry_delay_ms: Some(0),
        },
    ];
    ts.store
        .finish_chunk(chunk, &outcomes, "node-x")
        .await
        .unwrap();
    let j: Vec<_> = futures::future::join_all(ids.iter().map(|id| ts.store.job(*id)))
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    assert!(j.iter().all(|j| j.attempts == 1));
    assert!(j.iter().all(|j| j.node_id.as_deref() == Some("node-x")));
    assert_eq!(j[0].status, JobStatus::Succeeded);
    assert!(j[0].finished_at.is_some() && j[0].last_error.is_none());
    assert_eq!(j[1].status, JobStatus::Pending);
    assert_eq!(j[1].last_error.as_deref(), Some("busy, try later"));
    assert!(j[1].finished_at.is_none());
    assert!(
        j[1].run_at >= before + chrono::Duration::seconds(59),
        "{}",
        j[1].run_at
    );
    assert_eq!(j[2].status, JobStatus::Failed);
    assert_eq!(j[2].last_error.as_deref(), Some("bad target"));
    assert!(j[2].finished_at.is_some());
    // The delayed retry is not due; the immediate one is, and keeps its attempt count.
    let due: Vec<Uuid> = ts
        .store
        .due_pending(100)
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(due, vec![ids[3]]);
    let chunk = ts.store.lock_chunk(&ids).await.unwrap();
    assert_eq!(chunk.jobs.len(), 1);
    assert_eq!((chunk.jobs[0].id, chunk.jobs[0].attempts), (ids[3], 1));
    ts.store
        .finish_chunk(chunk, &[ok(ids[3])], "node-y")
        .await
        .unwrap();
    let j3 = ts.store.job(ids[3]).await.unwrap().unwrap();
    assert_eq!((j3.status, j3.attempts), (JobStatus::Succeeded, 2));
    assert_eq!(
        j3.last_error.as_deref(),
        Some("flaky"),
        "the last error is kept"
    );
}

async fn retry_and_cancel_follow_the_rules(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let ids = insert(&ts, (0..3).map(|i| NewJob::new("noop", json!(i))).collect()).await;
    let c = ts.store.cancel_job(ids[0]).await.unwrap();
    assert_eq!(c.status, JobStatus::Cancelled);
    assert!(c.finished_at.is_some());
    assert!(matches!(
        ts.store.cancel_job(ids[0]).await,
        Err(Error::Conflict(_))
    ));
    let r = ts.store.retry_job(ids[0]).await.unwrap();
    assert_eq!((r.status, r.attempts), (JobStatus::Pending, 0));
    assert!(r.finished_at.is_none());
    let e = ts.store.retry_job(ids[1]).await.unwrap_err();
    assert!(
        matches!(e, Error::Conflict(ref m) if m.contains("pending")),
        "{e}"
    );
    settle(&ts, &ids[1..2], |id| Outcome {
        id,
        status: JobStatus::Failed,
        error: Some("gave up".into()),
        retry_delay_ms: None,
    })
    .await;
    let r = ts.store.retry_job(ids[1]).await.unwrap();
    assert_eq!((r.status, r.attempts), (JobStatus::Pending, 0));
    assert_eq!(
        settle(&ts, &ids[1..2], ok).await,
        1,
        "a retried job runs again"
    );
    let e = ts.store.cancel_job(ids[1]).await.unwrap_err();
    assert!(
        matches!(e, Error::Conflict(ref m) if m.contains("succeeded")),
        "{e}"
    );
    let e = ts.store.retry_job(ids[1]).await.unwrap_err();
    assert!(matches!(e, Error::Conflict(_)), "{e}");
    let ghost = Uuid::now_v7();
    assert!(matches!(
        ts.store.retry_job(ghost).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        ts.store.cancel_job(ghost).await,
        Err(Error::NotFound(_))
    ));
}

async fn a_running_job_cannot_be_cancelled(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let id = insert(&ts, vec![NewJob::new("noop", json!({}))]).await[0];
    let chunk = ts.store.lock_chunk(&[id]).await.unwrap();
    let e = ts.store.cancel_job(id).await.unwrap_err();
    assert!(
        matches!(e, Error::Conflict(ref m) if m.contains("running")),
        "{e}"
    );
    ts.store.finish_chunk(chunk, &[ok(id)], "n").await.unwrap();
    let j = ts.store.job(id).await.unwrap().unwrap();
    assert_eq!(
        j.status,
        JobStatus::Succeeded,
        "the running job finished normally"
    );
}

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
    let due = ts.store.due_pending(100).await.unwrap();
    let got: Vec<(Uuid, i16)> = due.iter().map(|d| (d.id, d.priority)).collect();
    assert_eq!(
        got,
        vec![(ids[2], 9), (ids[5], 2), (ids[0], 0), (ids[1], -1)]
    );
    assert_eq!(ts.store.due_pending(2).await.unwrap().len(), 2);
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
    settle(&ts, &fails[..1], |id| Outcome {
        id,
        status: JobStatus::Failed,
        error: Some("x".into()),
        retry_delay_ms: None,
    })
    .await;
    ts.store.cancel_job(fails[1]).await.unwrap();
    ts.store.heartbeat(&beat("node-r", vec![])).await.unwrap();
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
    ts.store.heartbeat(&beat("node-1", vec![])).await.unwrap();
    let mut b2 = beat("node-2", vec![Uuid::now_v7()]);
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

async fn rescue_charges_the_jobs_of_dead_nodes(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let ids = insert(
        &ts,
        vec![
            NewJob::new("noop", json!(0)),
            NewJob::new("noop", json!(1)).max_attempts(1),
            NewJob::new("noop", json!(2)),
            NewJob::new("noop", json!(3)),
        ],
    )
    .await;
    settle(&ts, &ids[2..3], ok).await;
    ts.store
        .heartbeat(&beat("dead", ids[..3].to_vec()))
        .await
        .unwrap();
    let nothing = ts
        .store
        .rescue_abandoned(Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(nothing.dead_nodes, 0, "a fresh node is alive");
    // Wait until the node is staler than 300 ms, while another keeps beating.
    let stale = Duration::from_millis(300);
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        ts.store
            .heartbeat(&beat("alive", vec![ids[3]]))
            .await
            .unwrap();
        let r = ts.store.rescue_abandoned(stale).await.unwrap();
        if r.dead_nodes > 0 {
            break r;
        }
        assert!(Instant::now() < deadline, "the dead node was never found");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((r.dead_nodes, r.retried, r.failed), (1, 1, 1));
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
        b.pending, 2,
        "the batch's total stands; one job is pruned, one pending"
    );
}
