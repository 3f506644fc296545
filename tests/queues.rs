//! Named queues and node specialisation, end to end: `skiplock worker` processes with
//! different config files share one database; each runs only the queues it serves and the
//! types it has processors for, nothing fails for lack of a processor, a queue with
//! concurrency 1 never runs two jobs at once, and a node killed with SIGKILL loses nothing to
//! the survivor that serves its queue too.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::cluster::{status_counts, ClusterArgs, NodeProc};
use common::{bin, redis_url, wait_until, Backend, TestStore};
use skiplock::store::BatchOptions;
use skiplock::{Client, NewJob};

/// A config file: `resize` (when `knows_resize`) is a sql type in queue `media` recording its
/// run window and node-independent effect; `thumb` runs in `default` everywhere.
fn config(dir: &Path, name: &str, schema: &str, knows_resize: bool) -> std::path::PathBuf {
    let mut text = format!(
        "[types.thumb]\nsql = [\"INSERT INTO \\\"{schema}\\\".effects(job_id, kind) VALUES ($1, 'thumb')\"]\n"
    );
    if knows_resize {
        text += &format!(
            "[types.resize]\nqueue = \"media\"\nmax_attempts = 25\nbackoff_ms = 100\nsql = [\
             \"INSERT INTO \\\"{schema}\\\".effects(job_id, kind, started) VALUES ($1, 'resize', clock_timestamp())\", \
             \"SELECT pg_sleep(0.02)\", \
             \"UPDATE \\\"{schema}\\\".effects SET ended = clock_timestamp() WHERE job_id = $1\"]\n"
        );
    }
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

async fn effects_table(ts: &TestStore) {
    sqlx::query(&format!(
        "CREATE TABLE \"{}\".effects (job_id uuid NOT NULL, kind text NOT NULL, \
         started timestamptz, ended timestamptz)",
        ts.schema
    ))
    .execute(ts.pg.as_ref().unwrap())
    .await
    .unwrap();
}

/// `skiplock worker` with this node's own config and queues, short timings.
fn worker(c: &ClusterArgs, config: &Path, queues: &str) -> Vec<String> {
    let mut v = c.global();
    v.extend(
        [
            "--config",
            &config.display().to_string(),
            "worker",
            "--no-migrate",
            "--queues",
            queues,
            "--heartbeat-ms",
            "300",
            "--reconcile-ms",
            "300",
            "--node-timeout-ms",
            "2000",
            "--grace-secs",
            "5",
        ]
        .map(String::from),
    );
    v
}

/// Resize runs that overlapped in time on one node (a queue with concurrency 1 must have none).
async fn overlapping_runs(ts: &TestStore) -> i64 {
    sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{s}\".effects a JOIN \"{s}\".effects b \
         ON a.job_id < b.job_id AND a.kind = 'resize' AND b.kind = 'resize' \
         AND a.started < b.ended AND b.started < a.ended",
        s = ts.schema
    ))
    .fetch_one(ts.pg.as_ref().unwrap())
    .await
    .unwrap()
}

/// Two services on one database: A has a `resize` processor (queue `media`, concurrency 1),
/// B has none. Every resize job runs on A, once, never two at once; B runs its share of the
/// shared type; nothing fails. With Redis: the ID queue is one sorted set per named queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_services_with_different_processors_share_one_database() {
    let ts = TestStore::new(Backend::Postgres).await;
    effects_table(&ts).await;
    let dir = tempfile::tempdir().unwrap();
    let c = ClusterArgs::new(&ts, redis_url());
    let a_cfg = config(dir.path(), "a", &ts.schema, true);
    let b_cfg = config(dir.path(), "b", &ts.schema, false);
    let mut b = NodeProc::start(dir.path(), "b", worker(&c, &b_cfg, "default=4"));
    // B alone: resize jobs (their queue taken from the config A will publish... not yet
    // published, so named explicitly here) wait, uncharged, and the report says why.
    let client = Client::new(ts.store.clone(), Arc::new(c.queue().await));
    let early: Vec<NewJob> = (0..5)
        .map(|i| NewJob::new("resize", serde_json::json!({ "i": i })).queue("media"))
        .collect();
    client.submit_many(&early).await.unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || async {
            let r = ts.store.report(Duration::from_secs(2)).await.unwrap();
            r.nodes.len() == 1
                && r.unrunnable.iter().any(|u| {
                    u.queue == "media" && u.job_type == "resize" && u.pending == 5 && !u.type_known
                })
        })
        .await,
        "the report should show the resize jobs no node can run"
    );
    let out = Command::new(bin())
        .args(c.global())
        .arg("status")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("NO LIVE NODE CAN RUN") && text.contains("resize"),
        "{text}"
    );

    let mut a = NodeProc::start(dir.path(), "a", worker(&c, &a_cfg, "default=2,media=1"));
    // A publishes resize's queue: jobs that name none go to `media` through its policy.
    assert!(
        wait_until(Duration::from_secs(20), || async {
            ts.store.nodes(Duration::from_secs(2)).await.unwrap().len() == 2
        })
        .await
    );
    let resize: Vec<_> = (0..40).map(|i| serde_json::json!({ "i": i })).collect();
    let sub = client
        .submit_batch("resize", resize, BatchOptions::default())
        .await
        .unwrap();
    assert_eq!(sub.queue, "media", "the type's queue, from A's config");
    let thumbs: Vec<_> = (0..200).map(|i| serde_json::json!({ "i": i })).collect();
    client
        .submit_batch("thumb", thumbs, BatchOptions::default())
        .await
        .unwrap();
    let pg = ts.pg.clone().unwrap();
    assert!(
        wait_until(Duration::from_secs(90), || async {
            status_counts(&pg, &ts.schema).await == (0, 245, 0)
        })
        .await,
        "every job should succeed: {:?}\nA: {}\nB: {}",
        status_counts(&pg, &ts.schema).await,
        a.log(),
        b.log()
    );
    let by_node: Vec<(String, String, i64)> = sqlx::query_as(&format!(
        "SELECT type, substring(node_id from '-([0-9]+)-[0-9a-f]+$'), count(*) FROM \"{}\".jobs GROUP BY 1, 2 ORDER BY 1, 2",
        ts.schema
    ))
    .fetch_all(&pg)
    .await
    .unwrap();
    let a_pid = a.pid().unwrap().to_string();
    let b_pid = b.pid().unwrap().to_string();
    for (t, pid, _) in &by_node {
        if t == "resize" {
            assert_eq!(*pid, a_pid, "resize ran only on A: {by_node:?}");
        }
    }
    assert!(
        by_node
            .iter()
            .any(|(t, pid, _)| t == "thumb" && *pid == b_pid),
        "B ran thumbs: {by_node:?}"
    );
    let once: (i64, i64) = sqlx::query_as(&format!(
        "SELECT count(*), count(DISTINCT job_id) FROM \"{}\".effects",
        ts.schema
    ))
    .fetch_one(&pg)
    .await
    .unwrap();
    assert_eq!(once, (245, 245), "one effect per job");
    assert_eq!(
        overlapping_runs(&ts).await,
        0,
        "media has concurrency 1 on A"
    );
    assert!(ts
        .store
        .report(Duration::from_secs(2))
        .await
        .unwrap()
        .unrunnable
        .is_empty());
    assert!(a.alive() && b.alive());
}

/// A and C both serve `media` (PostgreSQL alone, no Redis); A is killed with SIGKILL while it
/// runs resize jobs. C finishes them all, each exactly once; B, which serves only `default`
/// and cannot run resize, never takes one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_node_s_queue_is_finished_by_a_survivor_serving_it() {
    let ts = TestStore::new(Backend::Postgres).await;
    effects_table(&ts).await;
    let dir = tempfile::tempdir().unwrap();
    let c = ClusterArgs::new(&ts, String::new());
    let with = config(dir.path(), "with", &ts.schema, true);
    let without = config(dir.path(), "without", &ts.schema, false);
    let mut a = NodeProc::start(dir.path(), "a", worker(&c, &with, "default=1,media=4"));
    let mut b = NodeProc::start(dir.path(), "b", worker(&c, &without, "default=2"));
    let mut cc = NodeProc::start(dir.path(), "c", worker(&c, &with, "media=2"));
    assert!(
        wait_until(Duration::from_secs(20), || async {
            ts.store.nodes(Duration::from_secs(2)).await.unwrap().len() == 3
        })
        .await
    );
    let client = Client::new(
        ts.store.clone(),
        Arc::new(skiplock::queue::memory::MemoryQueue::default()),
    );
    let targets: Vec<_> = (0..300).map(|i| serde_json::json!({ "i": i })).collect();
    let sub = client
        .submit_batch("resize", targets, BatchOptions::default())
        .await
        .unwrap();
    assert_eq!(sub.queue, "media");
    let pg = ts.pg.clone().unwrap();
    // Kill A once it is well into the queue.
    assert!(
        wait_until(Duration::from_secs(60), || async {
            status_counts(&pg, &ts.schema).await.1 >= 40
        })
        .await
    );
    let a_pid = a.pid().unwrap().to_string();
    a.kill9();
    assert!(
        wait_until(Duration::from_secs(120), || async {
            status_counts(&pg, &ts.schema).await == (0, 300, 0)
        })
        .await,
        "C should finish A's queue: {:?}\nC: {}",
        status_counts(&pg, &ts.schema).await,
        cc.log()
    );
    let once: (i64, i64) = sqlx::query_as(&format!(
        "SELECT count(*), count(DISTINCT job_id) FROM \"{}\".effects",
        ts.schema
    ))
    .fetch_one(&pg)
    .await
    .unwrap();
    assert_eq!(once, (300, 300), "one effect per job, none lost");
    let runners: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT DISTINCT substring(node_id from '-([0-9]+)-[0-9a-f]+$') FROM \"{}\".jobs",
        ts.schema
    ))
    .fetch_all(&pg)
    .await
    .unwrap();
    let c_pid = cc.pid().unwrap().to_string();
    assert!(runners.contains(&c_pid), "{runners:?}");
    for r in &runners {
        assert!(
            *r == a_pid || *r == c_pid,
            "only A and C ran resize: {runners:?}"
        );
    }
    assert!(b.alive() && cc.alive());
}
