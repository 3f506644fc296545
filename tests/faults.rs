//! The faults a many-node deployment must survive, one test each: a node SIGKILLed mid-job
//! and restarted, IDs lost from Redis, Redis down for a while, every database connection cut.
//! Each asserts what a user would check: every job succeeded, one effect row per job.
//! Recovery times are printed (`cargo test --test faults -- --nocapture`).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{
    cut_connections, effect_counts, effect_setup, events, status_counts, statuses_of, watch,
    ClusterArgs, NodeProc, PrivateRedis,
};
use common::{redis_url, wait_until, Backend, TestStore};
use skiplock::queue::redis::RedisQueue;
use skiplock::queue::Queue;
use skiplock::store::BatchOptions;
use skiplock::{Client, Node};

fn targets(n: usize) -> Vec<serde_json::Value> {
    (0..n).map(|i| serde_json::json!({ "i": i })).collect()
}

/// Waits until every job of the schema succeeded, then checks one effect row per job.
async fn assert_all_once(ts: &TestStore, total: i64, within: Duration) {
    let pg = ts.pg.clone().unwrap();
    let done = wait_until(within, || async {
        status_counts(&pg, &ts.schema).await.1 == total
    })
    .await;
    let counts = status_counts(&pg, &ts.schema).await;
    assert!(
        done,
        "(pending, succeeded, failed) = {counts:?}, want {total} succeeded"
    );
    assert_eq!(counts, (0, total, 0));
    assert_eq!(effect_counts(&pg, &ts.schema).await, (total, total));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_killed_mid_job_and_restarted() {
    let ts = TestStore::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = ClusterArgs::new(&ts, redis_url());
    // Each job sleeps a little inside its transaction, so a kill finds some mid-flight.
    c.config = Some(effect_setup(&ts, dir.path(), &["SELECT pg_sleep(0.02)"]).await);
    let mut a = NodeProc::start(dir.path(), "a", c.worker(4, 1));
    let mut b = NodeProc::start(dir.path(), "b", c.worker(4, 1));
    let client = Client::new(ts.store.clone(), Arc::new(c.queue().await));
    client
        .submit_batch("effect", targets(600), BatchOptions::default())
        .await
        .unwrap();
    let pg = ts.pg.clone().unwrap();
    // Kill `a` while it holds jobs (its heartbeat says so), after it has done some.
    let holding = wait_until(Duration::from_secs(60), || async {
        let (held, processed): (i32, i64) = sqlx::query_as(&format!(
            "SELECT in_flight, processed FROM \"{}\".nodes WHERE pid = $1",
            ts.schema
        ))
        .bind(a.pid().unwrap() as i32)
        .fetch_optional(&pg)
        .await
        .unwrap()
        .unwrap_or((0, 0));
        held > 0 && processed > 20
    })
    .await;
    assert!(holding, "node a never held a job: {}", a.log());
    let killed = Instant::now();
    a.kill9();
    let before = status_counts(&pg, &ts.schema).await.1;
    assert!(before < 600, "the kill should land mid-run");
    // The jobs it held are pending again (their transactions died with the process).
    assert!(
        wait_until(Duration::from_secs(30), || async {
            status_counts(&pg, &ts.schema).await.1 > before
        })
        .await
    );
    a.restart();
    assert_all_once(&ts, 600, Duration::from_secs(90)).await;
    println!(
        "SIGKILL: all 600 jobs done {:?} after the kill",
        killed.elapsed()
    );
    assert!(a.alive() && b.alive());
}

/// An in-process node on `queue`, with short maintenance intervals.
async fn start_node(ts: &TestStore, queue: Arc<dyn Queue>, config: &std::path::Path) -> Node {
    let mut cfg = skiplock::NodeConfig::default();
    cfg.executor.concurrency = 4;
    cfg.executor.chunk_size = 10;
    cfg.reconciler.interval = Duration::from_millis(300);
    cfg.heartbeat.interval = Duration::from_millis(300);
    let registry = skiplock::config::FileConfig::load(config)
        .unwrap()
        .registry()
        .unwrap();
    Node::builder(ts.store.clone(), queue)
        .registry(registry)
        .config(cfg)
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ids_lost_from_redis_come_back() {
    let ts = TestStore::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let config = effect_setup(&ts, dir.path(), &[]).await;
    let redis = PrivateRedis::start();
    let prefix = common::unique("skt");
    let queue: Arc<dyn Queue> = Arc::new(RedisQueue::connect(&redis.url(), &prefix).await.unwrap());
    let client = Client::new(ts.store.clone(), queue.clone());
    let key = format!("{prefix}:queue");

    // Keys deleted: submitted while no node runs, then the queue's key is deleted.
    client
        .submit_batch("effect", targets(1_000), BatchOptions::default())
        .await
        .unwrap();
    assert_eq!(redis.zcard(&key), 1_000);
    redis.cmd(&["DEL", &key]).unwrap();
    assert_eq!(queue.depth().await.unwrap(), 0);
    let lost = Instant::now();
    let node = start_node(&ts, queue.clone(), &config).await;
    assert_all_once(&ts, 1_000, Duration::from_secs(30)).await;
    println!("keys deleted: 1000 jobs done {:?} after", lost.elapsed());

    // Redis flushed mid-run, twice.
    client
        .submit_batch("effect", targets(3_000), BatchOptions::default())
        .await
        .unwrap();
    redis.cmd(&["FLUSHALL"]).unwrap();
    let flushed = Instant::now();
    let pg = ts.pg.clone().unwrap();
    wait_until(Duration::from_secs(30), || async {
        status_counts(&pg, &ts.schema).await.1 > 2_000
    })
    .await;
    redis.cmd(&["FLUSHALL"]).unwrap();
    assert_all_once(&ts, 4_000, Duration::from_secs(30)).await;
    println!(
        "flushed: 3000 jobs done {:?} after the first flush",
        flushed.elapsed()
    );
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_for_a_while() {
    let ts = TestStore::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let mut redis = PrivateRedis::start();
    let mut c = ClusterArgs::new(&ts, redis.url());
    c.config = Some(effect_setup(&ts, dir.path(), &[]).await);
    let mut node = NodeProc::start(dir.path(), "node", c.worker(4, 10));
    let client = Client::new(ts.store.clone(), Arc::new(c.queue().await));
    client
        .submit_batch("effect", targets(500), BatchOptions::default())
        .await
        .unwrap();
    assert_all_once(&ts, 500, Duration::from_secs(30)).await;
    // A watcher subscribed before the outage must hear events after it.
    let (mut watcher, watched) = watch(&c, dir.path(), &["--status", "succeeded"]).await;

    redis.stop();
    let down = Instant::now();
    // Submitting still works: the rows commit, the push fails and is left to the reconciler.
    client
        .submit_batch("effect", targets(1_500), BatchOptions::default())
        .await
        .unwrap();
    // So does the CLI: it warns and leaves the queueing to the nodes' reconcilers.
    let out = std::process::Command::new(common::bin())
        .args(c.global())
        .args(["submit", "effect", "--target", "{}"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("submitting anyway"), "{err}");
    // The node stays up and keeps heartbeating through the outage.
    let pg = ts.pg.clone().unwrap();
    let beat = || async {
        sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>(&format!(
            "SELECT last_seen FROM \"{}\".nodes WHERE pid = $1",
            ts.schema
        ))
        .bind(node.pid().unwrap() as i32)
        .fetch_one(&pg)
        .await
        .unwrap()
    };
    let first = beat().await;
    assert!(wait_until(Duration::from_secs(10), || async { beat().await > first }).await);
    assert!(
        wait_until(Duration::from_secs(10), || async {
            node.log().contains("Redis is unreachable")
        })
        .await,
        "the outage should be logged: {}",
        node.log()
    );
    // The database path keeps the node working while its queue is down: it claims the new
    // jobs straight from the store.
    assert!(
        wait_until(Duration::from_secs(30), || async {
            status_counts(&pg, &ts.schema).await.1 > 600
        })
        .await,
        "no progress without Redis: {:?} / {}",
        status_counts(&pg, &ts.schema).await,
        node.log()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(node.alive(), "{}", node.log());

    redis.restart();
    let back = Instant::now();
    assert_all_once(&ts, 2_001, Duration::from_secs(60)).await;
    println!(
        "Redis down {:?}: every job done {:?} after it came back",
        back - down,
        back.elapsed()
    );
    // The watcher resubscribes on its own; pub/sub keeps nothing for a subscriber that is not
    // back yet, so keep submitting until one job's event reaches it.
    let mut heard = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !heard && Instant::now() < deadline {
        let late = client
            .submit(skiplock::NewJob::new("effect", serde_json::json!({})))
            .await
            .unwrap();
        heard = wait_until(Duration::from_secs(2), || async {
            statuses_of(&events(&watched), late) == ["succeeded"]
        })
        .await;
    }
    assert!(
        heard,
        "watch should resubscribe after the outage: {:?}",
        events(&watched)
    );
    let _ = watcher.kill();
    // The node says so at its next queue command that succeeds: its runners may have been
    // claiming from the database, and an idle runner's next pop can be a poll away.
    assert!(
        wait_until(Duration::from_secs(15), || async {
            node.log().contains("Redis is reachable again")
        })
        .await,
        "{}",
        node.log()
    );
    let log = node.log();
    assert_eq!(log.matches("Redis is unreachable").count(), 1, "{log}");
    assert!(node.alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_database_connection_cut() {
    let ts = TestStore::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = ClusterArgs::new(&ts, redis_url());
    c.config = Some(effect_setup(&ts, dir.path(), &["SELECT pg_sleep(0.005)"]).await);
    let mut a = NodeProc::start(dir.path(), "a", c.worker(4, 5));
    let mut b = NodeProc::start(dir.path(), "b", c.worker(4, 5));
    let client = Client::new(ts.store.clone(), Arc::new(c.queue().await));
    client
        .submit_batch("effect", targets(3_000), BatchOptions::default())
        .await
        .unwrap();
    let pg = ts.pg.clone().unwrap();
    for round in 1..=3 {
        let target = 500 * round;
        wait_until(Duration::from_secs(60), || async {
            status_counts(&pg, &ts.schema).await.1 >= target
        })
        .await;
        let cut = cut_connections(&pg, &c.app).await;
        let at = Instant::now();
        let before = status_counts(&pg, &ts.schema).await.1;
        assert!(cut > 0, "round {round}: no connection of the nodes to cut");
        assert!(
            wait_until(Duration::from_secs(30), || async {
                status_counts(&pg, &ts.schema).await.1 > before
            })
            .await,
            "round {round}: no progress after the cut: {}",
            a.log()
        );
        println!(
            "cut {cut} connections (round {round}): next job committed after {:?}",
            at.elapsed()
        );
    }
    assert_all_once(&ts, 3_000, Duration::from_secs(90)).await;
    assert!(a.alive() && b.alive());
}
