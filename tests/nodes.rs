//! Many nodes on one PostgreSQL and one Redis: they share a batch, `skiplock status` lists
//! them, and a node killed with SIGKILL drops out of the report after the node timeout.

mod common;

use std::process::Command;
use std::time::Duration;

use common::cluster::{status_counts, ClusterArgs, NodeProc};
use common::{bin, redis_url, wait_until, Backend, TestStore};
use skiplock::store::BatchOptions;
use skiplock::Client;

/// `skiplock status --json`, parsed.
fn status(c: &ClusterArgs) -> serde_json::Value {
    let out = Command::new(bin())
        .args(c.global())
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn node_pids(report: &serde_json::Value) -> Vec<i64> {
    let mut v: Vec<i64> = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["pid"].as_i64().unwrap())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_share_a_batch_and_status_drops_a_killed_one() {
    let ts = TestStore::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let c = ClusterArgs::new(&ts, redis_url());
    let mut a = NodeProc::start(dir.path(), "a", c.worker(4, 5));
    // B also serves a queue A does not; both serve `default`, where the batch goes.
    let mut b = NodeProc::start(dir.path(), "b", c.worker_queues("default=4,reports=1", 5));
    let pids = {
        let mut p = vec![a.pid().unwrap() as i64, b.pid().unwrap() as i64];
        p.sort();
        p
    };
    assert!(
        wait_until(Duration::from_secs(30), || async {
            node_pids(&status(&c)) == pids
        })
        .await,
        "status should list both nodes: {}",
        status(&c)
    );

    // A batch both nodes work on: jobs long enough that neither drains it alone.
    let client = Client::new(ts.store.clone(), std::sync::Arc::new(c.queue().await));
    let targets = (0..400).map(|_| serde_json::json!({"ms": 20})).collect();
    client
        .submit_batch("sleep", targets, BatchOptions::default())
        .await
        .unwrap();
    let pg = ts.pg.clone().unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || async {
            status_counts(&pg, &ts.schema).await.1 == 400
        })
        .await,
        "the batch should finish"
    );
    // Both report processing some, and together all of it (heartbeats lag a little).
    assert!(
        wait_until(Duration::from_secs(10), || async {
            let r = status(&c);
            let done: Vec<i64> = r["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["processed"].as_i64().unwrap())
                .collect();
            done.len() == 2 && done.iter().all(|&n| n > 0) && done.iter().sum::<i64>() == 400
        })
        .await,
        "both nodes should report their share: {}",
        status(&c)
    );
    let text = Command::new(bin())
        .args(c.global())
        .arg("status")
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    for n in status(&c)["nodes"].as_array().unwrap() {
        assert!(text.contains(n["id"].as_str().unwrap()), "{text}");
    }
    assert!(text.contains("default=4,reports=1"), "B's queues: {text}");
    let served: Vec<serde_json::Value> = status(&c)["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["queues"].clone())
        .collect();
    assert!(
        served.contains(&serde_json::json!({"default": 4}))
            && served.contains(&serde_json::json!({"default": 4, "reports": 1})),
        "{served:?}"
    );

    // SIGKILL one: it cannot say goodbye, so only the timeout removes it.
    let survivor = b.pid().unwrap() as i64;
    a.kill9();
    assert!(
        wait_until(Duration::from_secs(20), || async {
            node_pids(&status(&c)) == vec![survivor]
        })
        .await,
        "status should drop the killed node: {}",
        status(&c)
    );
    assert!(b.alive());
}

/// A node whose heartbeat is late is not dead while its process lives: paused (SIGSTOP) well
/// past the node timeout, its heartbeat session stays connected, so its row stays and its
/// intent record is not charged. Killed (SIGKILL), its session ends with it, and the same
/// rescue deletes the row and charges the attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_heartbeat_is_not_death_while_the_node_process_lives() {
    let ts = TestStore::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let c = ClusterArgs::new(&ts, redis_url());
    let mut a = NodeProc::start(dir.path(), "a", c.worker(1, 1));
    let pg = ts.pg.clone().unwrap();
    let s = &ts.schema;
    let node: String = {
        let q = format!("SELECT id FROM \"{s}\".nodes WHERE pid = $1");
        let pid = a.pid().unwrap() as i32;
        let mut found = None;
        for _ in 0..300 {
            found = sqlx::query_scalar(&q)
                .bind(pid)
                .fetch_optional(&pg)
                .await
                .unwrap();
            if found.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        found.unwrap_or_else(|| panic!("the node should heartbeat: {}", a.log()))
    };
    // A pending job of a type no node runs, named by an intent record of A's written after
    // the job last changed: what a runner leaves when its job kills it.
    let job = Client::new(ts.store.clone(), std::sync::Arc::new(c.queue().await))
        .submit(skiplock::NewJob::new(
            "nobody-runs-this",
            serde_json::json!({}),
        ))
        .await
        .unwrap();
    sqlx::query(&format!(
        "UPDATE \"{s}\".jobs SET updated_at = now() - interval '10 minutes' WHERE id = $1"
    ))
    .bind(job)
    .execute(&pg)
    .await
    .unwrap();
    sqlx::query(&format!(
        "INSERT INTO \"{s}\".intents (slot, node_id, ids, written_at) \
         VALUES (gen_random_uuid(), $1, ARRAY[$2::uuid], now() - interval '5 minutes')"
    ))
    .bind(&node)
    .bind(job)
    .execute(&pg)
    .await
    .unwrap();

    a.signal("-STOP");
    let stale = Duration::from_millis(2000);
    // Well past the node timeout, by the heartbeat's own clock.
    let late =
        format!("SELECT now() - last_seen > interval '3 seconds' FROM \"{s}\".nodes WHERE id = $1");
    assert!(
        wait_until(Duration::from_secs(20), || async {
            sqlx::query_scalar::<_, bool>(&late)
                .bind(&node)
                .fetch_one(&pg)
                .await
                .unwrap()
        })
        .await
    );
    assert_eq!(ts.store.delete_dead_nodes(stale).await.unwrap(), 0);
    assert!(ts.store.charge_abandoned(stale).await.unwrap().is_empty());
    let attempts = format!("SELECT attempts FROM \"{s}\".jobs WHERE id = $1");
    let attempts_now = || async {
        sqlx::query_scalar::<_, i32>(&attempts)
            .bind(job)
            .fetch_one(&pg)
            .await
            .unwrap()
    };
    assert_eq!(
        attempts_now().await,
        0,
        "a live node's record is not charged"
    );
    let report = status(&c);
    assert_eq!(
        report["nodes"].as_array().unwrap().len(),
        1,
        "a late node is still listed: {report}"
    );

    // Killed while paused: its session closes with the process.
    a.kill9();
    assert!(
        wait_until(Duration::from_secs(20), || async {
            ts.store.delete_dead_nodes(stale).await.unwrap() == 1
        })
        .await,
        "the killed node's row should go"
    );
    let charged = ts.store.charge_abandoned(stale).await.unwrap();
    assert_eq!(charged.len(), 1, "{charged:?}");
    assert_eq!(attempts_now().await, 1);
}
