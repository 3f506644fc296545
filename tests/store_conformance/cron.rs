//! Cron on every store: ticks claimed exactly once by any number of nodes evaluating at once,
//! and catch-up after missed ticks per policy, on a fixed clock.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;
use skiplock::maintenance::schedule::CatchUp;
use skiplock::maintenance::{Cron, CronEntry};
use skiplock::processor::Policy;
use skiplock::store::JobFilter;

use crate::common::{Backend, TestStore};

crate::for_each_backend!(
    many_nodes_claim_each_tick_once,
    catch_up_after_five_missed_ticks,
);

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap()
}

async fn run_ats(ts: &TestStore, job_type: &str) -> Vec<DateTime<Utc>> {
    let f = JobFilter {
        job_type: Some(job_type.into()),
        limit: 10_000,
        ..JobFilter::default()
    };
    let mut v: Vec<_> = ts
        .store
        .list_jobs(&f)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.run_at)
        .collect();
    v.sort();
    v
}

async fn many_nodes_claim_each_tick_once(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let entry = CronEntry::new("every-minute", "* * * * *", "UTC", "noop", json!({"r": 1}))
        .unwrap()
        .catch_up(CatchUp::All);
    let nodes: Vec<Arc<Cron>> = (0..4)
        .map(|_| {
            Arc::new(Cron::new(ts.store.clone(), vec![entry.clone()], &Policy::default()).unwrap())
        })
        .collect();
    // Every node evaluates at the same instants, all at once: first seen at 10:00:30, then
    // a few seconds after each of ten ticks.
    let mut instants = vec![t0() + Duration::seconds(30)];
    instants.extend((1..=10).map(|m| t0() + Duration::minutes(m) + Duration::seconds(2)));
    for now in instants {
        let mut set = tokio::task::JoinSet::new();
        for n in &nodes {
            let n = n.clone();
            set.spawn(async move { n.run_once(now).await.unwrap().0 });
        }
        let mut inserted = 0;
        while let Some(c) = set.join_next().await {
            inserted += c.unwrap().inserted;
        }
        let want = u64::from(now > t0() + Duration::minutes(1));
        assert_eq!(inserted, want, "at {now}: one node inserts the tick");
    }
    let got = run_ats(&ts, "noop").await;
    let want: Vec<_> = (1..=10).map(|m| t0() + Duration::minutes(m)).collect();
    assert_eq!(got, want, "one job per tick, none missing, none doubled");
    // Evaluating the same instant again inserts nothing: the mark never moves back.
    let (c, _) = nodes[0]
        .run_once(t0() + Duration::minutes(10) + Duration::seconds(3))
        .await
        .unwrap();
    assert_eq!(c.inserted, 0);
    let marks = ts.store.cron_marks().await.unwrap();
    assert_eq!(
        marks,
        [("every-minute".to_string(), t0() + Duration::minutes(10))]
    );
}

/// Last tick claimed at 10:00; no node runs until 10:05:40, by when 10:01 to 10:05 were
/// missed. Each policy on an entry of its own (and a type of its own to count by).
async fn catch_up_after_five_missed_ticks(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let entries: Vec<CronEntry> = [
        ("none", CatchUp::None, "noop"),
        ("last", CatchUp::Last, "fail"),
        ("all", CatchUp::All, "sleep"),
    ]
    .into_iter()
    .map(|(n, c, t)| {
        CronEntry::new(n, "* * * * *", "UTC", t, json!({}))
            .unwrap()
            .catch_up(c)
    })
    .collect();
    let cron = Cron::new(ts.store.clone(), entries, &Policy::default()).unwrap();
    let (c, _) = cron.run_once(t0() + Duration::seconds(10)).await.unwrap();
    assert_eq!(c.inserted, 0, "an entry does not catch up on its own past");
    let (c, ids) = cron
        .run_once(t0() + Duration::minutes(5) + Duration::seconds(40))
        .await
        .unwrap();
    assert_eq!(c.inserted, 6);
    assert_eq!(ids.len(), 6);
    let m = |k: i64| t0() + Duration::minutes(k);
    assert!(
        run_ats(&ts, "noop").await.is_empty(),
        "none: the missed ticks are skipped"
    );
    assert_eq!(run_ats(&ts, "fail").await, [m(5)], "last: the latest, once");
    assert_eq!(
        run_ats(&ts, "sleep").await,
        (1..=5).map(m).collect::<Vec<_>>(),
        "all: each"
    );
    // The next tick, found on time, runs under each policy, once.
    for _ in 0..2 {
        cron.run_once(m(6) + Duration::seconds(1)).await.unwrap();
    }
    assert_eq!(run_ats(&ts, "noop").await, [m(6)]);
    assert_eq!(run_ats(&ts, "fail").await, [m(5), m(6)]);
    assert_eq!(run_ats(&ts, "sleep").await.len(), 6);
}
