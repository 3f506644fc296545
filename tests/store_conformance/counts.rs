//! The report's counts by type and status are kept as the jobs change, not counted from the
//! table: after every kind of change, and under concurrent writers, they must equal a full
//! count of `jobs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use skiplock::store::{BatchOptions, Outcome, PruneRule, Selection};
use skiplock::{JobStatus, NewJob};

use crate::common::{Backend, TestStore};
use crate::{insert, ok, settle};

crate::for_each_backend!(
    counts_follow_every_kind_of_change,
    counts_stay_exact_under_concurrent_writers_and_folds,
    oldest_pending_looks_across_priorities_and_types,
);

type Tally = BTreeMap<(String, String), i64>;

/// Pending jobs by queue and type, counted from the table.
async fn pending_truth(ts: &TestStore) -> Tally {
    ts.count_pairs("SELECT queue, type, count(*) FROM {t} WHERE status = 'pending' GROUP BY 1, 2")
        .await
}

async fn pending_reported(ts: &TestStore) -> Tally {
    let groups = ts.store.pending_groups().await.unwrap();
    groups
        .into_iter()
        .map(|g| ((g.queue, g.job_type), g.pending))
        .collect()
}

async fn agree(ts: &TestStore, step: &str) {
    assert_eq!(
        ts.counts_by_type().await,
        ts.counted_by_type().await,
        "after {step}"
    );
    assert_eq!(
        pending_reported(ts).await,
        pending_truth(ts).await,
        "pending groups after {step}"
    );
}

async fn counts_follow_every_kind_of_change(backend: Backend) {
    let ts = TestStore::new(backend).await;
    agree(&ts, "nothing").await;
    let a = insert(
        &ts,
        (0..20)
            .map(|i| NewJob::new("alpha", json!(i)).max_attempts(1))
            .collect(),
    )
    .await;
    let b = ts
        .store
        .insert_batch(
            "beta",
            (0..10).map(|i| json!(i)).collect(),
            BatchOptions::default(),
        )
        .await
        .unwrap()
        .ids;
    agree(&ts, "inserts").await;
    insert(
        &ts,
        (0..4)
            .map(|i| NewJob::new("gamma", json!(i)).queue("slow"))
            .collect(),
    )
    .await;
    agree(&ts, "inserts into another queue").await;
    // An operator moving jobs between queues by hand.
    let moved = "UPDATE {t} SET queue = 'other' WHERE type = 'gamma' AND target = {one}";
    match ts.backend {
        Backend::Postgres => sqlx::query(
            &moved
                .replace("{t}", &format!("\"{}\".jobs", ts.schema))
                .replace("{one}", "'1'::jsonb"),
        )
        .execute(ts.pg.as_ref().unwrap())
        .await
        .map(|r| r.rows_affected()),
        Backend::Sqlite => sqlx::query(&moved.replace("{t}", "jobs").replace("{one}", "'1'"))
            .execute(ts.sqlite.as_ref().unwrap())
            .await
            .map(|r| r.rows_affected()),
    }
    .map(|n| assert_eq!(n, 1, "one gamma job moved"))
    .unwrap();
    agree(&ts, "a job moved to another queue").await;
    settle(&ts, &a[..5], ok).await;
    agree(&ts, "successes").await;
    settle(&ts, &a[5..10], |id| Outcome::Failed {
        id,
        error: "boom".into(),
        took: Duration::from_millis(1),
    })
    .await;
    settle(&ts, &b[..3], |id| Outcome::Retry {
        id,
        error: "later".into(),
        delay: Duration::ZERO,
        took: Duration::from_millis(1),
    })
    .await;
    agree(&ts, "failures and retries").await;
    // Lease mode: claimed (running), then completed.
    {
        let mut slot = ts
            .store
            .slot("node-l", &crate::common::scope())
            .await
            .unwrap();
        let mut chunk = slot.lock(&b[3..6]).await.unwrap();
        let ids: Vec<_> = chunk.jobs.iter().map(|j| j.id).collect();
        chunk.tx.lease(&ids, Duration::from_secs(60)).await.unwrap();
        chunk.tx.finish(&[]).await.unwrap();
    }
    agree(&ts, "leases taken").await;
    ts.store.release_leases("node-l", &b[3..6]).await.unwrap();
    agree(&ts, "leases given back").await;
    ts.store.cancel(a[10]).await.unwrap();
    ts.store.retry(a[5]).await.unwrap();
    agree(&ts, "cancel and retry").await;
    let sel = Selection {
        job_type: Some("alpha".into()),
        ..Default::default()
    };
    ts.store.cancel_matching(&sel, 3).await.unwrap();
    ts.store
        .retry_matching(
            &Selection {
                status: Some(JobStatus::Cancelled),
                ..Default::default()
            },
            2,
        )
        .await
        .unwrap();
    agree(&ts, "bulk cancel and retry").await;
    ts.store
        .prune_rule(&PruneRule {
            status: JobStatus::Succeeded,
            job_type: None,
            except_types: vec![],
            older_than: Duration::ZERO,
        })
        .await
        .unwrap();
    agree(&ts, "pruning").await;
    // Folding (a no-op on SQLite) changes nothing the report says.
    ts.store.fold_counts().await.unwrap();
    agree(&ts, "a fold").await;
}

async fn counts_stay_exact_under_concurrent_writers_and_folds(backend: Backend) {
    let ts = Arc::new(TestStore::with_pool(backend, 12).await);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..6 {
        let ts = ts.clone();
        tasks.spawn(async move {
            for round in 0..10 {
                let ids = insert(
                    &ts,
                    (0..10)
                        .map(|i| NewJob::new(format!("t{}", (w + i) % 3), json!([w, round, i])))
                        .collect(),
                )
                .await;
                settle(&ts, &ids[..7], ok).await;
                settle(&ts, &ids[7..], |id| Outcome::Failed {
                    id,
                    error: "no".into(),
                    took: Duration::ZERO,
                })
                .await;
            }
        });
    }
    for _ in 0..3 {
        let ts = ts.clone();
        tasks.spawn(async move {
            for _ in 0..20 {
                ts.store.fold_counts().await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    agree(&ts, "concurrent writers and folds").await;
    let total: i64 = ts.counts_by_type().await.values().sum();
    assert_eq!(total, 600);
}

/// The oldest pending job of a queue and type, whatever priorities and other types share the
/// queue: the earliest `run_at`, not the first in claiming order.
async fn oldest_pending_looks_across_priorities_and_types(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let now = chrono::Utc::now();
    let at = |mins: i64| now + chrono::Duration::minutes(mins);
    let mut jobs = vec![
        NewJob::new("t", json!(1)).priority(5).run_at(at(60)),
        NewJob::new("t", json!(2)).priority(-3).run_at(at(-30)),
        NewJob::new("t", json!(3)).priority(0).run_at(at(-10)),
        NewJob::new("t", json!(4))
            .queue("elsewhere")
            .run_at(at(-90)),
    ];
    // Other types ahead of them in every priority.
    for p in [5, 0, -3] {
        jobs.extend((0..30).map(|i| NewJob::new("u", json!(i)).priority(p).run_at(at(-120))));
    }
    insert(&ts, jobs).await;
    let oldest = ts
        .store
        .oldest_pending("default", "t")
        .await
        .unwrap()
        .unwrap();
    assert!(
        (oldest - at(-30)).num_milliseconds().abs() < 5,
        "{oldest} is not the -3 priority job's run_at {}",
        at(-30)
    );
    assert_eq!(ts.store.oldest_pending("default", "v").await.unwrap(), None);
    assert_eq!(ts.store.oldest_pending("nowhere", "t").await.unwrap(), None);
}
