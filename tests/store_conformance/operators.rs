//! The operators' side of the store: attempt history, bulk retry and cancel, retention.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use skiplock::error::Error;
use skiplock::job::ATTEMPT_HISTORY_LEN;
use skiplock::maintenance::{Keep, Pruner, PrunerConfig, Retention};
use skiplock::metrics::Metrics;
use skiplock::store::{BatchOptions, Outcome, PruneRule, Selection, MAX_BULK};
use skiplock::{JobStatus, NewJob};
use uuid::Uuid;

use crate::common::{Backend, TestStore};
use crate::{insert, ok, settle};

crate::for_each_backend!(
    failures_keep_a_bounded_attempt_history,
    a_success_leaves_the_history_alone,
    bulk_retry_takes_matching_failed_jobs_a_page_at_a_time,
    bulk_operations_refuse_what_they_cannot_do,
    bulk_cancel_leaves_running_jobs_alone,
    prune_rules_follow_status_and_type,
    the_pruner_applies_the_retention_policy,
);

fn retry(id: Uuid, i: u64) -> Outcome {
    Outcome::Retry {
        id,
        error: format!("error {i}"),
        delay: Duration::ZERO,
        took: Duration::from_millis(i),
    }
}

fn failed(id: Uuid, error: &str) -> Outcome {
    Outcome::Failed {
        id,
        error: error.into(),
        took: Duration::from_millis(1500),
    }
}

async fn failures_keep_a_bounded_attempt_history(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let id = insert(&ts, vec![NewJob::new("noop", json!({})).max_attempts(100)]).await[0];
    let runs = ATTEMPT_HISTORY_LEN as u64 + 3;
    for i in 1..=runs {
        assert_eq!(settle(&ts, &[id], |id| retry(id, i)).await, 1);
    }
    let d = ts.store.job_detail(id).await.unwrap().unwrap();
    assert_eq!(d.job.attempts, runs as i32);
    let h = &d.attempt_history;
    assert_eq!(h.len(), ATTEMPT_HISTORY_LEN, "bounded to the newest");
    assert_eq!(h[0].error, "error 4", "the oldest three were dropped");
    assert_eq!(h[0].attempt, 4);
    let last = h.last().unwrap();
    assert_eq!(last.error, format!("error {runs}"));
    assert_eq!(
        (last.attempt, last.took_ms),
        (runs as i32, Some(runs as i64))
    );
    assert_eq!(last.node.as_deref(), Some("node-t"));
    assert_eq!(last.outcome, "retry");
    assert!(h.windows(2).all(|w| w[0].at <= w[1].at), "oldest first");
    assert!((chrono::Utc::now() - last.at).num_seconds().abs() < 60);
    // The final failure is recorded as such, through `settle` too (a broken chunk's path).
    let n = ts
        .store
        .settle(&[failed(id, "gave up")], "node-s")
        .await
        .unwrap();
    assert_eq!(n, 1);
    let d = ts.store.job_detail(id).await.unwrap().unwrap();
    let last = d.attempt_history.last().unwrap();
    assert_eq!(d.attempt_history.len(), ATTEMPT_HISTORY_LEN);
    assert_eq!(
        (last.error.as_str(), last.outcome.as_str()),
        ("gave up", "failed")
    );
    assert_eq!(
        (last.node.as_deref(), last.took_ms),
        (Some("node-s"), Some(1500))
    );
    assert_eq!(d.job.status, JobStatus::Failed);
    // The history survives a manual retry; the attempt count starts again.
    let r = ts.store.retry(id).await.unwrap();
    assert_eq!(r.attempts, 0);
    let d = ts.store.job_detail(id).await.unwrap().unwrap();
    assert_eq!(d.attempt_history.len(), ATTEMPT_HISTORY_LEN);
    assert!(ts.store.job_detail(Uuid::now_v7()).await.unwrap().is_none());
}

async fn a_success_leaves_the_history_alone(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let ids = insert(&ts, (0..3).map(|i| NewJob::new("noop", json!(i))).collect()).await;
    settle(&ts, &ids[..1], |id| retry(id, 40)).await;
    // A mixed chunk: one job succeeds after its failure, one fails, one just succeeds.
    let mut slot = ts
        .store
        .slot("node-m", &crate::common::scope())
        .await
        .unwrap();
    let chunk = slot.lock(&ids).await.unwrap();
    chunk
        .finish(&[ok(ids[0]), failed(ids[1], "no"), ok(ids[2])])
        .await
        .unwrap();
    let d0 = ts.store.job_detail(ids[0]).await.unwrap().unwrap();
    assert_eq!(d0.job.status, JobStatus::Succeeded);
    assert_eq!(d0.attempt_history.len(), 1, "the success added nothing");
    assert_eq!(d0.attempt_history[0].error, "error 40");
    assert_eq!(d0.attempt_history[0].node.as_deref(), Some("node-t"));
    let d1 = ts.store.job_detail(ids[1]).await.unwrap().unwrap();
    assert_eq!(d1.attempt_history.len(), 1);
    assert_eq!(d1.attempt_history[0].node.as_deref(), Some("node-m"));
    let d2 = ts.store.job_detail(ids[2]).await.unwrap().unwrap();
    assert!(d2.attempt_history.is_empty());
    assert_eq!(d2.job, ts.store.job(ids[2]).await.unwrap().unwrap());
    // The all-succeeded statement never writes the history either.
    let id = insert(&ts, vec![NewJob::new("noop", json!({}))]).await[0];
    settle(&ts, &[id], |id| retry(id, 1)).await;
    settle(&ts, &[id], ok).await;
    let d = ts.store.job_detail(id).await.unwrap().unwrap();
    assert_eq!(
        (d.job.status, d.attempt_history.len()),
        (JobStatus::Succeeded, 1)
    );
}

/// A batch of `n` jobs settled as `outcome(i)` by index; returns the batch and its job IDs.
async fn batch_of(
    ts: &TestStore,
    job_type: &str,
    n: usize,
    outcome: impl Fn(usize, Uuid) -> Option<Outcome>,
) -> (Uuid, Vec<Uuid>) {
    let sub = ts
        .store
        .insert_batch(
            job_type,
            (0..n).map(|i| json!(i)).collect(),
            BatchOptions {
                priority: 4,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    for (i, id) in sub.ids.iter().enumerate() {
        if let Some(o) = outcome(i, *id) {
            settle(ts, &[*id], |_| o.clone()).await;
        }
    }
    (sub.batch_id.unwrap(), sub.ids)
}

async fn bulk_retry_takes_matching_failed_jobs_a_page_at_a_time(backend: Backend) {
    let ts = TestStore::new(backend).await;
    // Batch A: 0-2 failed, 3 succeeded, 4 pending, 5 cancelled below. Batch B: all failed.
    let (a, aids) = batch_of(&ts, "noop", 6, |i, id| match i {
        0..=2 => Some(failed(id, "boom")),
        3 => Some(ok(id)),
        _ => None,
    })
    .await;
    ts.store.cancel(aids[5]).await.unwrap();
    let (_, bids) = batch_of(&ts, "other", 2, |_, id| Some(failed(id, "boom"))).await;
    let sel = Selection {
        status: Some(JobStatus::Failed),
        batch_id: Some(a),
        ..Default::default()
    };
    let page = ts.store.retry_matching(&sel, 2).await.unwrap();
    assert_eq!(
        page.iter().map(|d| d.id).collect::<Vec<_>>(),
        aids[..2],
        "first IDs first, at most the limit"
    );
    assert!(
        page.iter().all(|d| d.priority == 4),
        "priorities for the queue"
    );
    let j = ts.store.job_detail(aids[0]).await.unwrap().unwrap();
    assert_eq!((j.job.status, j.job.attempts), (JobStatus::Pending, 0));
    assert!(j.job.finished_at.is_none());
    assert_eq!(j.attempt_history.len(), 1, "the history stays");
    let page = ts.store.retry_matching(&sel, 2).await.unwrap();
    assert_eq!(page.iter().map(|d| d.id).collect::<Vec<_>>(), aids[2..3]);
    assert!(ts.store.retry_matching(&sel, 2).await.unwrap().is_empty());
    // No status: failed and cancelled alike; the type filter keeps batch B out.
    let by_type = Selection {
        job_type: Some("noop".into()),
        ..Default::default()
    };
    let page = ts.store.retry_matching(&by_type, MAX_BULK).await.unwrap();
    assert_eq!(page.iter().map(|d| d.id).collect::<Vec<_>>(), aids[5..6]);
    let cancelled = Selection {
        status: Some(JobStatus::Cancelled),
        ..Default::default()
    };
    assert!(ts
        .store
        .retry_matching(&cancelled, 10)
        .await
        .unwrap()
        .is_empty());
    for id in &bids {
        let j = ts.store.job(*id).await.unwrap().unwrap();
        assert_eq!(j.status, JobStatus::Failed, "another batch, another type");
    }
    let j = ts.store.job(aids[3]).await.unwrap().unwrap();
    assert_eq!(
        j.status,
        JobStatus::Succeeded,
        "succeeded jobs are never retried"
    );
    // What was retried runs again.
    assert_eq!(settle(&ts, &aids, ok).await, 5);
}

async fn bulk_operations_refuse_what_they_cannot_do(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let id = insert(&ts, vec![NewJob::new("noop", json!({}))]).await[0];
    let with = |status: Option<JobStatus>| Selection {
        status,
        job_type: Some("noop".into()),
        ..Default::default()
    };
    let invalid = |r: Result<u64, Error>, says: &str| match r {
        Err(Error::Invalid(m)) => assert!(m.contains(says), "{m}"),
        other => panic!("expected Invalid({says}), got {other:?}"),
    };
    let empty = Selection::default();
    invalid(
        ts.store
            .retry_matching(&empty, 10)
            .await
            .map(|v| v.len() as u64),
        "at least one filter",
    );
    invalid(
        ts.store.cancel_matching(&empty, 10).await,
        "at least one filter",
    );
    for s in [JobStatus::Pending, JobStatus::Succeeded] {
        let r = ts.store.retry_matching(&with(Some(s)), 10).await;
        invalid(r.map(|v| v.len() as u64), "only failed or cancelled");
    }
    for s in [
        JobStatus::Failed,
        JobStatus::Succeeded,
        JobStatus::Cancelled,
    ] {
        invalid(
            ts.store.cancel_matching(&with(Some(s)), 10).await,
            "only pending",
        );
    }
    for limit in [0, -1, MAX_BULK + 1, i64::MAX] {
        invalid(ts.store.cancel_matching(&with(None), limit).await, "limit");
    }
    for t in ["", "a b", "x'; DROP TABLE jobs;--", &"t".repeat(10_000)] {
        let sel = Selection {
            job_type: Some(t.to_string()),
            ..Default::default()
        };
        invalid(ts.store.cancel_matching(&sel, 10).await, "type");
    }
    let ghost = Selection {
        batch_id: Some(Uuid::now_v7()),
        ..Default::default()
    };
    assert_eq!(ts.store.cancel_matching(&ghost, 10).await.unwrap(), 0);
    let j = ts.store.job(id).await.unwrap().unwrap();
    assert_eq!(j.status, JobStatus::Pending, "nothing was touched");
}

async fn bulk_cancel_leaves_running_jobs_alone(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let (batch, ids) = batch_of(&ts, "noop", 4, |_, _| None).await;
    let other = insert(&ts, vec![NewJob::new("noop", json!({}))]).await[0];
    let mut slot = ts
        .store
        .slot("node-r", &crate::common::scope())
        .await
        .unwrap();
    let chunk = slot.lock(&ids[1..2]).await.unwrap();
    assert_eq!(chunk.jobs.len(), 1, "job 1 is running");
    let sel = Selection {
        batch_id: Some(batch),
        ..Default::default()
    };
    let store = ts.store.clone();
    let cancel = store.cancel_matching(&sel, 100);
    tokio::pin!(cancel);
    // PostgreSQL skips the locked row and answers at once. SQLite notes what is running
    // (on its first poll), then waits for the write turn the chunk holds.
    let n = match backend {
        Backend::Postgres => {
            let n = cancel.await.unwrap();
            chunk.finish(&[retry(ids[1], 1)]).await.unwrap();
            n
        }
        Backend::Sqlite => {
            assert!(futures::poll!(&mut cancel).is_pending());
            chunk.finish(&[retry(ids[1], 1)]).await.unwrap();
            cancel.await.unwrap()
        }
    };
    assert_eq!(n, 3);
    let running = ts.store.job(ids[1]).await.unwrap().unwrap();
    assert_eq!(
        (running.status, running.attempts),
        (JobStatus::Pending, 1),
        "the running job finished its attempt and was not cancelled"
    );
    for i in [0, 2, 3] {
        let j = ts.store.job(ids[i]).await.unwrap().unwrap();
        assert_eq!(j.status, JobStatus::Cancelled);
        assert!(j.finished_at.is_some());
    }
    assert_eq!(
        ts.store.job(other).await.unwrap().unwrap().status,
        JobStatus::Pending,
        "outside the batch"
    );
    // Again: only the job that was running is left to cancel.
    assert_eq!(ts.store.cancel_matching(&sel, 100).await.unwrap(), 1);
    assert_eq!(ts.store.cancel_matching(&sel, 100).await.unwrap(), 0);
}

async fn prune_rules_follow_status_and_type(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let noop = insert(&ts, (0..5).map(|i| NewJob::new("noop", json!(i))).collect()).await;
    let thumbs = insert(&ts, vec![NewJob::new("thumbs", json!(1))]).await;
    settle(&ts, &noop[..3], ok).await;
    settle(&ts, &noop[3..4], |id| failed(id, "x")).await;
    ts.store.cancel(noop[4]).await.unwrap();
    settle(&ts, &thumbs, ok).await;
    let rule = |status, job_type: Option<&str>, except: &[&str], ms| PruneRule {
        status,
        job_type: job_type.map(str::to_string),
        except_types: except.iter().map(|s| s.to_string()).collect(),
        older_than: Duration::from_millis(ms),
    };
    tokio::time::sleep(Duration::from_millis(60)).await;
    let succeeded = rule(JobStatus::Succeeded, None, &["thumbs"], 30);
    // Bounded: at most the limit per call.
    assert_eq!(ts.store.prune_finished(&succeeded, 2).await.unwrap(), 2);
    assert_eq!(ts.store.prune_rule(&succeeded).await.unwrap(), 1);
    assert!(
        ts.store.job(thumbs[0]).await.unwrap().is_some(),
        "excepted type"
    );
    let keep = rule(JobStatus::Succeeded, Some("thumbs"), &[], 3_600_000);
    assert_eq!(
        ts.store.prune_rule(&keep).await.unwrap(),
        0,
        "its own, longer rule"
    );
    let failed_rule = rule(JobStatus::Failed, None, &[], 3_600_000);
    assert_eq!(
        ts.store.prune_rule(&failed_rule).await.unwrap(),
        0,
        "recent failure"
    );
    let thumbs_rule = rule(JobStatus::Succeeded, Some("thumbs"), &[], 30);
    assert_eq!(ts.store.prune_rule(&thumbs_rule).await.unwrap(), 1);
    let cancelled = rule(JobStatus::Cancelled, None, &[], 30);
    assert_eq!(ts.store.prune_rule(&cancelled).await.unwrap(), 1);
    assert!(
        ts.store.job(noop[3]).await.unwrap().is_some(),
        "failed: kept"
    );
    // Pending jobs are never pruned, whatever the rule says.
    let pending = insert(&ts, vec![NewJob::new("noop", json!({}))]).await[0];
    for s in [
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ] {
        ts.store.prune_rule(&rule(s, None, &[], 1)).await.unwrap();
    }
    assert!(ts.store.job(pending).await.unwrap().is_some());
}

async fn the_pruner_applies_the_retention_policy(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let ids = insert(
        &ts,
        vec![
            NewJob::new("noop", json!(0)),
            NewJob::new("noop", json!(1)),
            NewJob::new("noop", json!(2)),
            NewJob::new("thumbs", json!(3)),
        ],
    )
    .await;
    settle(&ts, &ids[..1], ok).await;
    settle(&ts, &ids[1..2], |id| failed(id, "x")).await;
    ts.store.cancel(ids[2]).await.unwrap();
    settle(&ts, &ids[3..], ok).await;
    // Succeeded go quickly, except thumbs; failed are kept for good; cancelled an hour.
    let mut r = Retention::uniform(Duration::from_millis(30));
    r.set(JobStatus::Failed, Keep::Forever).unwrap();
    r.set(JobStatus::Cancelled, Keep::For(Duration::from_secs(3600)))
        .unwrap();
    r.set_type("thumbs", JobStatus::Succeeded, Keep::Forever)
        .unwrap();
    let metrics = Arc::new(Metrics::default());
    let pruner = Pruner::new(
        ts.store.clone(),
        metrics.clone(),
        PrunerConfig {
            interval: Duration::from_secs(1),
            retention: r,
        },
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while ts.store.job(ids[0]).await.unwrap().is_some() {
        pruner.run_once().await.unwrap();
        assert!(
            Instant::now() < deadline,
            "the succeeded job was never pruned"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for id in &ids[1..] {
        assert!(ts.store.job(*id).await.unwrap().is_some(), "kept: {id}");
    }
    assert_eq!(metrics.pruned.load(std::sync::atomic::Ordering::Relaxed), 1);
}
