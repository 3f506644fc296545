//! Unique jobs on every store: at most one open job per (type, key), a window over finished
//! ones, keys derived from target fields, duplicates within an insert and a batch.

use std::time::Duration;

use serde_json::json;
use skiplock::error::Error;
use skiplock::processor::{Registry, UniquePolicy};
use skiplock::store::BatchOptions;
use skiplock::NewJob;

use crate::common::{Backend, TestStore};
use crate::{ok, settle};

crate::for_each_backend!(
    a_key_allows_one_open_job_per_type,
    duplicates_within_one_insert_name_the_first,
    a_window_covers_finished_jobs_until_pruned,
    a_type_derives_its_key_from_target_fields,
    a_batch_leaves_out_its_duplicates,
    bad_keys_are_refused_and_nothing_is_inserted,
    a_retry_cannot_open_a_second_job_with_a_key,
    keyed_jobs_go_to_their_queue_and_keys_span_queues,
);

fn keyed(t: &str, key: &str) -> NewJob {
    NewJob::new(t, json!({})).unique_key(key)
}

/// Makes `noop` derive its key from `fields`, with `window`, and publishes that.
async fn unique_noop(ts: &TestStore, fields: &[&str], window: Option<Duration>) {
    let mut reg = Registry::with_builtins();
    let fields = fields.iter().map(|f| f.to_string()).collect();
    reg.set_unique("noop", UniquePolicy { fields, window })
        .unwrap();
    ts.store.publish_policy(&reg.policy()).await.unwrap();
}

async fn a_key_allows_one_open_job_per_type(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let first = ts
        .store
        .insert_checked(&[keyed("noop", "k")])
        .await
        .unwrap()
        .remove(0);
    assert!(!first.duplicate);
    let again = ts
        .store
        .insert_checked(&[keyed("noop", "k")])
        .await
        .unwrap()
        .remove(0);
    assert!(again.duplicate, "an open job holds the key");
    assert_eq!(again.id, first.id, "the duplicate names the open job");
    let other_type = ts
        .store
        .insert_checked(&[keyed("fail", "k")])
        .await
        .unwrap()
        .remove(0);
    assert!(!other_type.duplicate, "keys are per type");
    let no_key = ts
        .store
        .insert_checked(&[NewJob::new("noop", json!({}))])
        .await
        .unwrap()
        .remove(0);
    assert!(!no_key.duplicate);
    assert_eq!(ts.count_status("pending").await, 3);

    // Once the job finished, the key is free (no window).
    assert_eq!(settle(&ts, &[first.id], ok).await, 1);
    let after = ts
        .store
        .insert_checked(&[keyed("noop", "k")])
        .await
        .unwrap()
        .remove(0);
    assert!(
        !after.duplicate,
        "a finished job does not hold its key without a window"
    );
    assert_ne!(after.id, first.id);
    // A cancelled one does not either.
    ts.store.cancel_job(after.id).await.unwrap().unwrap();
    let third = ts
        .store
        .insert_checked(&[keyed("noop", "k")])
        .await
        .unwrap()
        .remove(0);
    assert!(!third.duplicate);
}

async fn duplicates_within_one_insert_name_the_first(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let done = ts
        .store
        .insert_checked(&[
            keyed("noop", "a"),
            keyed("noop", "a"),
            keyed("noop", "b"),
            NewJob::new("noop", json!({})),
            keyed("noop", "b"),
        ])
        .await
        .unwrap();
    let dup: Vec<bool> = done.iter().map(|i| i.duplicate).collect();
    assert_eq!(dup, [false, true, false, false, true]);
    assert_eq!(done[1].id, done[0].id);
    assert_eq!(done[4].id, done[2].id);
    assert_eq!(
        ts.count_status("pending").await,
        3,
        "one job per key, plus the plain one"
    );
    // Every id names a stored job.
    for i in &done {
        assert!(ts.store.job(i.id).await.unwrap().is_some());
    }
}

async fn a_window_covers_finished_jobs_until_pruned(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let hour = Duration::from_secs(3600);
    let first = ts
        .store
        .insert_checked(&[keyed("noop", "day-1").unique_for(hour)])
        .await
        .unwrap()
        .remove(0);
    assert_eq!(settle(&ts, &[first.id], ok).await, 1);
    let again = ts
        .store
        .insert_checked(&[keyed("noop", "day-1").unique_for(hour)])
        .await
        .unwrap()
        .remove(0);
    assert!(again.duplicate, "created within the hour, finished or not");
    assert_eq!(again.id, first.id);
    // Without a window the finished job does not count.
    let plain = ts
        .store
        .insert_checked(&[keyed("noop", "day-1")])
        .await
        .unwrap()
        .remove(0);
    assert!(!plain.duplicate);
    assert_eq!(settle(&ts, &[plain.id], ok).await, 1);

    // A window passes. The window is the inserter's look-back, so the check after a pause
    // uses a window shorter than the pause (a lower bound on time, never an upper one).
    let short = Duration::from_millis(200);
    let a = ts
        .store
        .insert_checked(&[keyed("noop", "s").unique_for(hour)])
        .await
        .unwrap()
        .remove(0);
    assert_eq!(settle(&ts, &[a.id], ok).await, 1);
    let b = ts
        .store
        .insert_checked(&[keyed("noop", "s").unique_for(hour)])
        .await
        .unwrap()
        .remove(0);
    assert!(b.duplicate);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let c = ts
        .store
        .insert_checked(&[keyed("noop", "s").unique_for(short)])
        .await
        .unwrap()
        .remove(0);
    assert!(!c.duplicate, "the window has passed");

    // Pruning the key's latest job forgets the key: a window never outlives retention.
    tokio::time::sleep(Duration::from_millis(20)).await;
    ts.store.prune(Duration::from_millis(1)).await.unwrap();
    let d = ts
        .store
        .insert_checked(&[keyed("noop", "day-1").unique_for(hour)])
        .await
        .unwrap()
        .remove(0);
    assert!(!d.duplicate, "its job was pruned");
}

async fn a_type_derives_its_key_from_target_fields(backend: Backend) {
    let ts = TestStore::new(backend).await;
    unique_noop(&ts, &["invoice", "kind"], None).await;
    let j = |t| NewJob::new("noop", t);
    let done = ts
        .store
        .insert_checked(&[
            j(json!({"invoice": 1, "kind": "a", "note": "x"})),
            j(json!({"note": "y", "kind": "a", "invoice": 1})),
            j(json!({"invoice": 1, "kind": "b"})),
            j(json!({"invoice": {"n": [1, 2]}, "kind": null})),
            j(json!({"kind": null, "invoice": {"n": [1, 2]}})),
        ])
        .await
        .unwrap();
    let dup: Vec<bool> = done.iter().map(|i| i.duplicate).collect();
    assert_eq!(
        dup,
        [false, true, false, false, true],
        "other fields do not matter"
    );
    // A key given at insert wins over the derived one.
    let own = ts
        .store
        .insert_checked(&[j(json!({"invoice": 1, "kind": "a"})).unique_key("mine")])
        .await
        .unwrap()
        .remove(0);
    assert!(!own.duplicate);

    // A missing field is refused, not treated as null; so is a target that is no object.
    for bad in [json!({"invoice": 1}), json!([1, "a"]), json!("invoice")] {
        let e = ts
            .store
            .insert_checked(&[j(bad.clone())])
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{bad}: {e:?}");
        assert!(
            e.to_string().contains("kind") || e.to_string().contains("object"),
            "{e}"
        );
    }
    let e = ts
        .store
        .insert_checked(&[j(json!({"kind": 1}))])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("invoice"), "{e}");
    assert_eq!(
        ts.count_status("pending").await,
        4,
        "refused inserts left nothing"
    );

    // A type with a window: finished jobs count within it.
    unique_noop(&ts, &["invoice"], Some(Duration::from_secs(3600))).await;
    let w = ts
        .store
        .insert_checked(&[j(json!({"invoice": 9}))])
        .await
        .unwrap()
        .remove(0);
    assert_eq!(settle(&ts, &[w.id], ok).await, 1);
    let w2 = ts
        .store
        .insert_checked(&[j(json!({"invoice": 9}))])
        .await
        .unwrap()
        .remove(0);
    assert!(w2.duplicate);
    assert_eq!(w2.id, w.id);
}

async fn a_batch_leaves_out_its_duplicates(backend: Backend) {
    let ts = TestStore::new(backend).await;
    unique_noop(&ts, &["invoice"], None).await;
    let open = ts
        .store
        .insert_checked(&[NewJob::new("noop", json!({"invoice": 1}))])
        .await
        .unwrap()
        .remove(0);
    let targets = vec![
        json!({"invoice": 1}),
        json!({"invoice": 2}),
        json!({"invoice": 2}),
        json!({"invoice": 3}),
    ];
    let sub = ts
        .store
        .insert_batch("noop", targets, BatchOptions::default())
        .await
        .unwrap();
    assert_eq!(sub.duplicates, 2);
    assert_eq!(sub.ids.len(), 4, "one id per target");
    assert_eq!(sub.ids[0], open.id, "against a stored job");
    assert_eq!(sub.ids[2], sub.ids[1], "within the batch");
    assert_ne!(sub.ids[3], sub.ids[1]);
    let b = ts
        .store
        .batch(sub.batch_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.total, 2, "the batch holds only the jobs it inserted");
    assert_eq!(b.pending, 2);
    assert_eq!(ts.count_status("pending").await, 3);

    // A target without the key field refuses the whole batch.
    let e = ts
        .store
        .insert_batch(
            "noop",
            vec![json!({"invoice": 7}), json!({})],
            BatchOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e:?}");
    assert_eq!(
        ts.count_status("pending").await,
        3,
        "nothing of it was inserted"
    );
    // A type without `unique` keeps the plain batch.
    let plain = ts
        .store
        .insert_batch("fail", vec![json!({}), json!({})], BatchOptions::default())
        .await
        .unwrap();
    assert_eq!(plain.duplicates, 0);
    assert_ne!(plain.ids[0], plain.ids[1]);
}

async fn bad_keys_are_refused_and_nothing_is_inserted(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let huge = "k".repeat(skiplock::job::MAX_UNIQUE_KEY_BYTES + 1);
    for (key, says) in [("", "empty"), (huge.as_str(), "512"), ("a\0b", "NUL")] {
        let e = ts
            .store
            .insert_checked(&[NewJob::new("noop", json!({})), keyed("noop", key)])
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e:?}");
        assert!(e.to_string().contains(says), "{e}");
    }
    let max = "é".repeat(skiplock::job::MAX_UNIQUE_KEY_BYTES / 2);
    assert!(
        !ts.store
            .insert_checked(&[keyed("noop", &max)])
            .await
            .unwrap()[0]
            .duplicate
    );
    // A key that looks like SQL is only text.
    let evil = "x'); DELETE FROM jobs; --";
    let a = ts
        .store
        .insert_checked(&[keyed("noop", evil)])
        .await
        .unwrap()
        .remove(0);
    let b = ts
        .store
        .insert_checked(&[keyed("noop", evil)])
        .await
        .unwrap()
        .remove(0);
    assert!(b.duplicate && a.id == b.id);
    for w in [Duration::ZERO, Duration::from_secs(400 * 86400)] {
        let e = ts
            .store
            .insert_checked(&[keyed("noop", "w").unique_for(w)])
            .await
            .unwrap_err();
        assert!(e.to_string().contains("unique_for"), "{e}");
    }
    assert_eq!(ts.count_status("pending").await, 2);
}

async fn a_retry_cannot_open_a_second_job_with_a_key(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let a = ts
        .store
        .insert_checked(&[keyed("noop", "k")])
        .await
        .unwrap()
        .remove(0);
    ts.store.cancel_job(a.id).await.unwrap().unwrap();
    let b = ts
        .store
        .insert_checked(&[keyed("noop", "k")])
        .await
        .unwrap()
        .remove(0);
    assert!(!b.duplicate);
    let e = ts.store.retry(a.id).await.unwrap_err();
    assert!(matches!(e, Error::Conflict(_)), "{e:?}");
    assert!(e.to_string().contains("unique key"), "{e}");
    // Once b is done, a may run again.
    assert_eq!(settle(&ts, &[b.id], ok).await, 1);
    ts.store.retry(a.id).await.unwrap();
    let c = ts
        .store
        .insert_checked(&[keyed("noop", "k")])
        .await
        .unwrap()
        .remove(0);
    assert!(
        c.duplicate && c.id == a.id,
        "the retried job holds the key again"
    );
}

/// A keyed insert applies the queue rule too (the job's own queue, else its type's), and a
/// key is per type whatever the queue: a duplicate names the open job and that job's queue.
async fn keyed_jobs_go_to_their_queue_and_keys_span_queues(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let first = ts
        .store
        .insert_checked(&[keyed("noop", "k").queue("media")])
        .await
        .unwrap()
        .remove(0);
    assert!(!first.duplicate);
    assert_eq!(first.queue, "media");
    let again = ts
        .store
        .insert_checked(&[keyed("noop", "k").queue("other")])
        .await
        .unwrap()
        .remove(0);
    assert!(again.duplicate);
    assert_eq!(again.id, first.id);
    assert_eq!(
        again.queue, "media",
        "the open job's queue, not the caller's"
    );
    let job = ts.store.job(first.id).await.unwrap().unwrap();
    assert_eq!(job.queue, "media");

    // A type with both a derived key and a queue: mixed inserts, batches.
    let mut reg = Registry::with_builtins();
    reg.set_unique(
        "noop",
        UniquePolicy {
            fields: vec!["invoice".into()],
            window: None,
        },
    )
    .unwrap();
    reg.set_queue("noop", "billing").unwrap();
    ts.store.publish_policy(&reg.policy()).await.unwrap();
    let done = ts
        .store
        .insert_checked(&[
            NewJob::new("noop", json!({"invoice": 1})),
            NewJob::new("fail", json!({})),
            NewJob::new("noop", json!({"invoice": 1})).queue("elsewhere"),
            NewJob::new("noop", json!({"invoice": 2})).queue("rush"),
            NewJob::new("fail", json!({})).queue("rush"),
        ])
        .await
        .unwrap();
    let got: Vec<(bool, &str)> = done
        .iter()
        .map(|i| (i.duplicate, i.queue.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (false, "billing"),
            (false, "default"),
            (true, "billing"),
            (false, "rush"),
            (false, "rush"),
        ]
    );
    assert_eq!(done[2].id, done[0].id);
    for i in &done {
        let j = ts.store.job(i.id).await.unwrap().unwrap();
        assert_eq!(j.queue, i.queue, "what the insert said is what is stored");
    }
    let sub = ts
        .store
        .insert_batch(
            "noop",
            vec![
                json!({"invoice": 2}),
                json!({"invoice": 3}),
                json!({"invoice": 3}),
            ],
            BatchOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(sub.queue, "billing");
    assert_eq!(sub.duplicates, 2);
    assert_eq!(sub.ids[0], done[3].id, "the duplicate in another queue");
    let new = ts.store.job(sub.ids[1]).await.unwrap().unwrap();
    assert_eq!(new.queue, "billing");
    let named = ts
        .store
        .insert_batch(
            "noop",
            vec![json!({"invoice": 4})],
            BatchOptions {
                queue: Some("night".into()),
                ..BatchOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(named.queue, "night");
    assert_eq!(named.duplicates, 0);
    let j = ts.store.job(named.ids[0]).await.unwrap().unwrap();
    assert_eq!(j.queue, "night");
}
