//! Status events between processes: `skiplock watch` hears a job that another process runs,
//! and an outcome whose COMMIT failed is never announced.

mod common;

use std::time::Duration;

use common::cluster::{
    effect_counts, effect_setup, events, statuses_of, watch, ClusterArgs, NodeProc,
};
use common::{redis_url, wait_until, Backend, TestStore};
use skiplock::{Client, NewJob};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_prints_events_of_jobs_another_process_runs() {
    let ts = TestStore::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let c = ClusterArgs::new(&ts, redis_url());
    let mut node = NodeProc::start(dir.path(), "node", c.worker(2, 1));
    let (mut w, out) = watch(&c, dir.path(), &["--type", "fail"]).await;

    let client = Client::new(ts.store.clone(), std::sync::Arc::new(c.queue().await));
    let ok = client
        .submit(NewJob::new("noop", serde_json::json!({})))
        .await
        .unwrap();
    let mut bad = NewJob::new("fail", serde_json::json!({"message": "boom"}));
    bad.max_attempts = Some(2);
    let bad = client.submit(bad).await.unwrap();

    assert!(
        wait_until(Duration::from_secs(30), || async {
            statuses_of(&events(&out), bad).contains(&"failed".to_string())
        })
        .await,
        "watch should print the failed job: {:?} / node log: {}",
        events(&out),
        node.log()
    );
    let evs = events(&out);
    // --type filters: the noop job's events are not printed.
    assert!(statuses_of(&evs, ok).is_empty(), "{evs:?}");
    assert_eq!(
        statuses_of(&evs, bad),
        ["running", "retrying", "running", "failed"],
        "{evs:?}"
    );
    let last = evs.last().unwrap();
    assert_eq!(last["type"], "fail");
    assert!(last["node"]
        .as_str()
        .unwrap()
        .contains(&node.pid().unwrap().to_string()));
    assert!(last["error"].as_str().unwrap().contains("boom"));
    let job = ts.store.job(bad).await.unwrap().unwrap();
    assert_eq!(job.status.as_str(), "failed");
    let _ = w.kill();
    node.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_event_for_an_outcome_whose_commit_failed() {
    let ts = TestStore::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = ClusterArgs::new(&ts, redis_url());
    c.config = Some(effect_setup(&ts, dir.path(), &[]).await);
    // A deferred constraint trigger refuses the first COMMIT that carries an effect row: the
    // processor and the outcome UPDATE both succeed, then COMMIT fails and undoes them.
    // A sequence is not transactional, so the second attempt gets through.
    let s = &ts.schema;
    let pg = ts.pg.clone().unwrap();
    for stmt in [
        format!("CREATE SEQUENCE \"{s}\".commits"),
        format!(
            "CREATE FUNCTION \"{s}\".refuse_first() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF nextval('\"{s}\".commits') = 1 THEN \
             RAISE EXCEPTION 'commit refused by the test'; END IF; RETURN NULL; END $$"
        ),
        format!(
            "CREATE CONSTRAINT TRIGGER refuse_first AFTER INSERT ON \"{s}\".effects \
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION \"{s}\".refuse_first()"
        ),
    ] {
        sqlx::query(&stmt).execute(&pg).await.unwrap();
    }
    let mut node = NodeProc::start(dir.path(), "node", c.worker(1, 1));
    let (mut w, out) = watch(&c, dir.path(), &[]).await;

    let client = Client::new(ts.store.clone(), std::sync::Arc::new(c.queue().await));
    let id = client
        .submit(NewJob::new("effect", serde_json::json!({})))
        .await
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || async {
            statuses_of(&events(&out), id).contains(&"succeeded".to_string())
        })
        .await,
        "the second attempt should succeed: {:?} / node log: {}",
        events(&out),
        node.log()
    );
    // The refused commit announced nothing; the database refusing the outcome is charged
    // as a failed attempt of its own, written (and announced) once it committed.
    assert_eq!(
        statuses_of(&events(&out), id),
        ["running", "retrying", "running", "succeeded"]
    );
    assert!(
        node.log().contains("commit refused by the test"),
        "{}",
        node.log()
    );
    let job = ts.store.job(id).await.unwrap().unwrap();
    assert_eq!(job.status.as_str(), "succeeded");
    assert_eq!(job.attempts, 2, "the refused attempt was charged");
    assert!(
        job.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("refused to record"),
        "{:?}",
        job.last_error
    );
    assert_eq!(effect_counts(&pg, s).await, (1, 1));
    let _ = w.kill();
    node.kill9();
}
