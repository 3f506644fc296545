//! A job's life in the store: insert, lock, outcomes, retry and cancel.

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use skiplock::error::Error;
use skiplock::store::{BatchOptions, JobFilter, Outcome};
use skiplock::{JobStatus, NewJob};
use uuid::Uuid;

use crate::common::{Backend, TestStore};
use crate::{insert, ok, settle};

crate::for_each_backend!(
    inserted_jobs_read_back_exactly,
    invalid_jobs_insert_nothing,
    jobs_take_their_queue_by_the_one_rule,
    batches_count_their_jobs,
    lock_chunk_takes_only_pending_due_jobs,
    a_locked_job_is_skipped_until_its_transaction_ends,
    a_dropped_chunk_leaves_its_jobs_untouched,
    finish_chunk_records_every_outcome,
    retry_and_cancel_follow_the_rules,
    a_running_job_cannot_be_cancelled,
);

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
    for q in [
        "",
        "a b",
        "a:b",
        "x'; DROP TABLE jobs;--",
        &"q".repeat(100_000),
    ] {
        let bad = vec![
            NewJob::new("fine", json!(1)),
            NewJob::new("fine", json!(2)).queue(q),
        ];
        assert!(matches!(
            ts.store.insert_jobs(&bad).await,
            Err(Error::Invalid(_))
        ));
        let opts = BatchOptions {
            queue: Some(q.to_string()),
            ..BatchOptions::default()
        };
        let r = ts.store.insert_batch("fine", vec![json!(1)], opts).await;
        assert!(matches!(r, Err(Error::Invalid(_))), "{r:?}");
    }
    assert_eq!(ts.count_status("pending").await, 0);
}

/// Each job's queue: its own, else its type's (published policy), else `default`; the insert
/// says which, and a batch too.
async fn jobs_take_their_queue_by_the_one_rule(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let mut reg = skiplock::Registry::with_builtins();
    reg.set_queue("sleep", "slow").unwrap();
    ts.store.publish_policy(&reg.policy()).await.unwrap();
    let queued = ts
        .store
        .insert_checked(&[
            NewJob::new("noop", json!(1)),
            NewJob::new("sleep", json!(2)),
            NewJob::new("sleep", json!(3)).queue("media"),
        ])
        .await
        .unwrap();
    let queues: Vec<&str> = queued.iter().map(|q| q.queue.as_str()).collect();
    assert_eq!(queues, ["default", "slow", "media"]);
    for q in &queued {
        assert_eq!(ts.store.job(q.id).await.unwrap().unwrap().queue, q.queue);
    }
    let sub = ts
        .store
        .insert_batch("sleep", vec![json!(1)], BatchOptions::default())
        .await
        .unwrap();
    assert_eq!(sub.queue, "slow");
    // A slot keeps to its scope: another queue's job, or a type outside it, is not locked
    // (nor claimed), and stays pending and uncharged.
    let mut media = ts
        .store
        .slot("node-q", &crate::common::scope_of("media", &["noop"]))
        .await
        .unwrap();
    let locked = media.lock(&[queued[0].id, queued[2].id]).await.unwrap();
    assert!(
        locked.jobs.is_empty(),
        "noop is in default; sleep is not this node's type"
    );
    locked.finish(&[]).await.unwrap();
    let claimed = media.claim(10).await.unwrap();
    assert!(claimed.jobs.is_empty());
    claimed.finish(&[]).await.unwrap();
    drop(media);
    let mut slow = ts
        .store
        .slot("node-q", &crate::common::scope_of("media", &["sleep"]))
        .await
        .unwrap();
    let claimed = slow.claim(10).await.unwrap();
    let ids: Vec<_> = claimed.jobs.iter().map(|j| j.id).collect();
    assert_eq!(ids, vec![queued[2].id]);
    claimed.finish(&[]).await.unwrap();
    let j = ts.store.job(queued[0].id).await.unwrap().unwrap();
    assert_eq!((j.status, j.attempts), (JobStatus::Pending, 0));
    // Due jobs for the queue, and what is pending by queue and type.
    let due = ts
        .store
        .due_pending(
            10,
            Duration::from_secs(10),
            &crate::common::scope_of("slow", &["sleep"]),
        )
        .await
        .unwrap();
    assert_eq!(due.len(), 2);
    assert!(due.iter().all(|d| d.queue == "slow"));
    let groups: Vec<(String, String, i64)> = ts
        .store
        .pending_groups()
        .await
        .unwrap()
        .into_iter()
        .map(|g| (g.queue, g.job_type, g.pending))
        .collect();
    assert_eq!(
        groups,
        [
            ("default".to_string(), "noop".to_string(), 1),
            ("media".to_string(), "sleep".to_string(), 1),
            ("slow".to_string(), "sleep".to_string(), 2),
        ]
    );
}

async fn batches_count_their_jobs(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let targets: Vec<_> = (0..7).map(|i| json!({ "n": i })).collect();
    let opts = BatchOptions {
        name: Some("nightly".into()),
        max_attempts: Some(2),
        priority: 3,
        run_at: None,
        traceparent: None,
        queue: None,
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
    settle(&ts, &sub.ids[3..4], |id| Outcome::Failed {
        id,
        error: "no".into(),
        took: Duration::from_millis(7),
    })
    .await;
    ts.store.cancel(sub.ids[4]).await.unwrap();
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
    let mut slot = ts
        .store
        .slot("node-t", &crate::common::scope())
        .await
        .unwrap();
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
    ts.store.cancel(ids[4]).await.unwrap();
    let mut asked = ids.clone();
    asked.push(ids[0]); // a duplicate ID
    asked.push(Uuid::now_v7()); // an ID with no row
    let chunk = slot.lock(&asked).await.unwrap();
    let got: Vec<Uuid> = chunk.jobs.iter().map(|j| j.id).collect();
    assert_eq!(got, vec![ids[1], ids[0]], "pending and due, by priority");
    chunk.finish(&[]).await.unwrap();
    let empty = slot.lock(&[]).await.unwrap();
    assert!(empty.jobs.is_empty());
    empty.finish(&[]).await.unwrap();
    // An empty finish commits nothing: the jobs are as they were.
    let j = ts.store.job(ids[0]).await.unwrap().unwrap();
    assert_eq!((j.status, j.attempts), (JobStatus::Pending, 0));
}

async fn a_locked_job_is_skipped_until_its_transaction_ends(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let mut slot = ts
        .store
        .slot("node-a", &crate::common::scope())
        .await
        .unwrap();
    let id = insert(&ts, vec![NewJob::new("noop", json!({}))]).await[0];
    let first = slot.lock(&[id]).await.unwrap();
    assert_eq!(first.jobs.len(), 1);
    // A second worker popped the same ID. PostgreSQL skips the locked row at once; SQLite's
    // second writer waits for the first transaction. Either way it must not get the job.
    let store = ts.store.clone();
    let second = tokio::spawn(async move {
        let mut other = store.slot("node-b", &crate::common::scope()).await.unwrap();
        let c = other.lock(&[id]).await.unwrap();
        let n = c.jobs.len();
        c.finish(&[]).await.unwrap();
        n
    });
    first.finish(&[ok(id)]).await.unwrap();
    assert_eq!(second.await.unwrap(), 0, "the job ran twice");
    let j = ts.store.job(id).await.unwrap().unwrap();
    assert_eq!((j.status, j.attempts), (JobStatus::Succeeded, 1));
    assert_eq!(j.node_id.as_deref(), Some("node-a"));
}

async fn a_dropped_chunk_leaves_its_jobs_untouched(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let mut slot = ts
        .store
        .slot("node-t", &crate::common::scope())
        .await
        .unwrap();
    let id = insert(&ts, vec![NewJob::new("noop", json!({}))]).await[0];
    let chunk = slot.lock(&[id]).await.unwrap();
    assert_eq!(chunk.jobs.len(), 1);
    drop(chunk); // a crash or an aborted worker: the transaction rolls back
                 // The rollback reaches the server asynchronously (sqlx sends it as the connection goes
                 // back to its pool), so poll for the job to be free, with a deadline.
    let deadline = Instant::now() + Duration::from_secs(5);
    let again = loop {
        let c = slot.lock(&[id]).await.unwrap();
        if !c.jobs.is_empty() {
            break c;
        }
        c.finish(&[]).await.unwrap();
        assert!(Instant::now() < deadline, "the job never came free");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(again.jobs[0].attempts, 0);
    again.finish(&[ok(id)]).await.unwrap();
    assert_eq!(ts.count_status("succeeded").await, 1);
}

async fn finish_chunk_records_every_outcome(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let mut slot = ts
        .store
        .slot("node-x", &crate::common::scope())
        .await
        .unwrap();
    let ids = insert(&ts, (0..4).map(|i| NewJob::new("noop", json!(i))).collect()).await;
    let before = Utc::now();
    let chunk = slot.lock(&ids).await.unwrap();
    let outcomes = vec![
        ok(ids[0]),
        Outcome::Retry {
            id: ids[1],
            error: "busy, try later".into(),
            delay: Duration::from_millis(60_000),
            took: Duration::from_millis(7),
        },
        Outcome::Failed {
            id: ids[2],
            error: "bad target".into(),
            took: Duration::from_millis(7),
        },
        Outcome::Retry {
            id: ids[3],
            error: "flaky".into(),
            delay: Duration::from_millis(0),
            took: Duration::from_millis(7),
        },
    ];
    chunk.finish(&outcomes).await.unwrap();
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
        .due_pending(100, Duration::from_secs(10), &crate::common::scope())
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(due, vec![ids[3]]);
    let chunk = slot.lock(&ids).await.unwrap();
    assert_eq!(chunk.jobs.len(), 1);
    assert_eq!((chunk.jobs[0].id, chunk.jobs[0].attempts), (ids[3], 1));
    chunk.finish(&[ok(ids[3])]).await.unwrap();
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
    let c = ts.store.cancel(ids[0]).await.unwrap();
    assert_eq!(c.status, JobStatus::Cancelled);
    assert!(c.finished_at.is_some());
    assert!(matches!(
        ts.store.cancel(ids[0]).await,
        Err(Error::Conflict(_))
    ));
    let r = ts.store.retry(ids[0]).await.unwrap();
    assert_eq!((r.status, r.attempts), (JobStatus::Pending, 0));
    assert!(r.finished_at.is_none());
    let e = ts.store.retry(ids[1]).await.unwrap_err();
    assert!(
        matches!(e, Error::Conflict(ref m) if m.contains("pending")),
        "{e}"
    );
    settle(&ts, &ids[1..2], |id| Outcome::Failed {
        id,
        error: "gave up".into(),
        took: Duration::from_millis(7),
    })
    .await;
    let r = ts.store.retry(ids[1]).await.unwrap();
    assert_eq!((r.status, r.attempts), (JobStatus::Pending, 0));
    assert_eq!(
        settle(&ts, &ids[1..2], ok).await,
        1,
        "a retried job runs again"
    );
    let e = ts.store.cancel(ids[1]).await.unwrap_err();
    assert!(
        matches!(e, Error::Conflict(ref m) if m.contains("succeeded")),
        "{e}"
    );
    let e = ts.store.retry(ids[1]).await.unwrap_err();
    assert!(matches!(e, Error::Conflict(_)), "{e}");
    let ghost = Uuid::now_v7();
    assert!(matches!(
        ts.store.retry(ghost).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        ts.store.cancel(ghost).await,
        Err(Error::NotFound(_))
    ));
}

async fn a_running_job_cannot_be_cancelled(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let mut slot = ts
        .store
        .slot("node-t", &crate::common::scope())
        .await
        .unwrap();
    let id = insert(&ts, vec![NewJob::new("noop", json!({}))]).await[0];
    let chunk = slot.lock(&[id]).await.unwrap();
    let e = ts.store.cancel(id).await.unwrap_err();
    assert!(
        matches!(e, Error::Conflict(ref m) if m.contains("running")),
        "{e}"
    );
    chunk.finish(&[ok(id)]).await.unwrap();
    let j = ts.store.job(id).await.unwrap().unwrap();
    assert_eq!(
        j.status,
        JobStatus::Succeeded,
        "the running job finished normally"
    );
}
