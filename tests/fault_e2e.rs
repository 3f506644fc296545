//! End to end: three `skiplock worker` processes over one PostgreSQL schema (and one Redis,
//! or none) run thousands of `sql` jobs that each insert one effect row, while the test
//! SIGKILLs and restarts nodes, cuts every database connection of the nodes, and (with Redis)
//! flushes Redis and stops it for a while. At the end every job has succeeded and there is
//! exactly one effect row per job. The effects table has no unique key, so a duplicate would
//! be counted, not refused. The nodes serve different named queues (half the jobs are in
//! `bulk`), and every killed node served a queue a survivor also serves.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{
    cut_connections, effect_counts, effect_setup, status_counts, ClusterArgs, NodeProc,
    PrivateRedis,
};
use common::{wait_until, Backend, TestStore};
use skiplock::store::BatchOptions;
use skiplock::Client;

const JOBS: i64 = 20_000;

/// What each of the three nodes serves: each queue has two nodes, so whichever one is killed,
/// a survivor serves its queues.
const QUEUES: [&str; 3] = ["default=6,bulk=2", "default=8", "bulk=6,default=2"];

/// Submits `n` effect jobs, half in `default`, half in `bulk`.
async fn submit_halves(client: &Client, n: i64) {
    for queue in ["default", "bulk"] {
        let targets = (0..n / 2).map(|i| serde_json::json!({ "i": i })).collect();
        let opts = BatchOptions {
            queue: Some(queue.into()),
            ..BatchOptions::default()
        };
        client.submit_batch("effect", targets, opts).await.unwrap();
    }
}

#[derive(Debug)]
enum Fault {
    KillAndRestart(usize),
    FlushRedis,
    CutConnections,
    RedisDown(Duration),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_twenty_thousand_jobs_under_faults() {
    let ts = TestStore::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let mut redis = PrivateRedis::start();
    let mut c = ClusterArgs::new(&ts, redis.url());
    c.config = Some(effect_setup(&ts, dir.path(), &[]).await);
    let mut nodes: Vec<NodeProc> = (0..3)
        .map(|i| NodeProc::start(dir.path(), &format!("n{i}"), c.worker_queues(QUEUES[i], 10)))
        .collect();
    let pg = ts.pg.clone().unwrap();

    let started = Instant::now();
    let client = Client::new(ts.store.clone(), Arc::new(c.queue().await));
    submit_halves(&client, JOBS).await;
    println!("submitted {JOBS} jobs in {:?}", started.elapsed());

    // Each fault fires once the run has reached its share of the jobs, so every one lands
    // while nodes are busy, however fast this machine is.
    let plan = [
        (1_500, Fault::KillAndRestart(0)),
        (4_000, Fault::FlushRedis),
        (6_500, Fault::CutConnections),
        (9_000, Fault::KillAndRestart(1)),
        (11_500, Fault::RedisDown(Duration::from_secs(3))),
        (14_000, Fault::CutConnections),
        (16_000, Fault::KillAndRestart(2)),
        (17_500, Fault::FlushRedis),
    ];
    for (at, fault) in plan {
        let reached = wait_until(Duration::from_secs(120), || async {
            status_counts(&pg, &ts.schema).await.1 >= at
        })
        .await;
        assert!(
            reached,
            "stalled before {at}: {:?}",
            status_counts(&pg, &ts.schema).await
        );
        let t = Instant::now();
        // What "recovered" means differs per fault; each arm waits for its own evidence.
        let recovered = match &fault {
            Fault::KillAndRestart(i) => {
                // The jobs the node's runners recorded they were about to run must finish
                // elsewhere.
                let s = &ts.schema;
                let held: Vec<uuid::Uuid> = sqlx::query_scalar(&format!(
                    "SELECT COALESCE(array_agg(DISTINCT u), '{{}}') FROM \"{s}\".intents h \
                     JOIN \"{s}\".nodes n ON n.id = h.node_id, unnest(h.ids) AS u \
                     WHERE n.pid = $1"
                ))
                .bind(nodes[*i].pid().unwrap() as i32)
                .fetch_optional(&pg)
                .await
                .unwrap()
                .unwrap_or_default();
                let t = Instant::now();
                nodes[*i].kill9();
                nodes[*i].restart();
                let ok = wait_until(Duration::from_secs(60), || async {
                    pending_among(&pg, &ts.schema, &held).await == 0
                })
                .await;
                println!("  node {i} held {} jobs when killed", held.len());
                ok.then(|| t.elapsed())
            }
            Fault::FlushRedis => {
                redis.cmd(&["FLUSHALL"]).unwrap();
                // The reconciler refills the queue (or the run ends first).
                let key = format!("{}:queue", c.prefix);
                let ok = wait_until(Duration::from_secs(60), || async {
                    redis.zcard(&key) > 0 || status_counts(&pg, &ts.schema).await.0 == 0
                })
                .await;
                ok.then(|| t.elapsed())
            }
            Fault::CutConnections => {
                let n = cut_connections(&pg, &c.app).await;
                assert!(n > 0, "no connection to cut");
                println!("  cut {n} connections");
                progress(&pg, &ts.schema).await.then(|| t.elapsed())
            }
            Fault::RedisDown(d) => {
                redis.stop();
                tokio::time::sleep(*d).await;
                redis.restart();
                let t = Instant::now();
                progress(&pg, &ts.schema).await.then(|| t.elapsed())
            }
        };
        let recovered = recovered.unwrap_or_else(|| panic!("no recovery after {fault:?}"));
        println!("{fault:?} at {at} jobs: recovered in {recovered:?}");
    }

    let finished = wait_until(Duration::from_secs(120), || async {
        status_counts(&pg, &ts.schema).await.1 == JOBS
    })
    .await;
    let counts = status_counts(&pg, &ts.schema).await;
    assert!(finished, "(pending, succeeded, failed) = {counts:?}");
    println!(
        "all {JOBS} jobs succeeded {:?} after submitting",
        started.elapsed()
    );
    assert_eq!(counts, (0, JOBS, 0));
    assert_eq!(
        effect_counts(&pg, &ts.schema).await,
        (JOBS, JOBS),
        "(effect rows, distinct jobs): exactly one effect per job"
    );
    // Every effect belongs to a job that succeeded, and every such job has its effect.
    let orphans: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{s}\".jobs j FULL JOIN \"{s}\".effects e ON e.job_id = j.id \
         WHERE j.id IS NULL OR e.job_id IS NULL",
        s = ts.schema
    ))
    .fetch_one(&pg)
    .await
    .unwrap();
    assert_eq!(orphans, 0);
    for n in nodes.iter_mut() {
        assert!(n.alive(), "a node died on its own: {}", n.log());
    }
}

/// The same nodes on PostgreSQL alone: no Redis anywhere, the runners fed by claims and
/// LISTEN/NOTIFY. Nodes are killed and restarted, and their connections cut (the listening
/// one included).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_on_postgres_alone_under_faults() {
    const N: i64 = 10_000;
    let ts = TestStore::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = ClusterArgs::new(&ts, String::new());
    c.config = Some(effect_setup(&ts, dir.path(), &[]).await);
    let mut nodes: Vec<NodeProc> = (0..3)
        .map(|i| NodeProc::start(dir.path(), &format!("n{i}"), c.worker_queues(QUEUES[i], 10)))
        .collect();
    let pg = ts.pg.clone().unwrap();
    let started = Instant::now();
    // This client's queue is its own: the nodes learn of the jobs from the database.
    let client = Client::new(
        ts.store.clone(),
        Arc::new(skiplock::queue::memory::MemoryQueue::default()),
    );
    submit_halves(&client, N).await;
    let plan = [
        (1_000, Fault::KillAndRestart(0)),
        (3_000, Fault::CutConnections),
        (5_000, Fault::KillAndRestart(1)),
        (7_000, Fault::CutConnections),
        (8_500, Fault::KillAndRestart(2)),
    ];
    for (at, fault) in plan {
        let reached = wait_until(Duration::from_secs(120), || async {
            status_counts(&pg, &ts.schema).await.1 >= at
        })
        .await;
        assert!(reached, "stalled before {at}");
        let t = Instant::now();
        match &fault {
            Fault::KillAndRestart(i) => {
                nodes[*i].kill9();
                nodes[*i].restart();
            }
            Fault::CutConnections => {
                let n = cut_connections(&pg, &c.app).await;
                assert!(n > 0, "no connection to cut");
            }
            _ => unreachable!(),
        }
        let before = status_counts(&pg, &ts.schema).await.1;
        let moved = wait_until(Duration::from_secs(60), || async {
            let done = status_counts(&pg, &ts.schema).await.1;
            done > before || done == N
        })
        .await;
        assert!(moved, "no progress after {fault:?}");
        println!(
            "{fault:?} at {at} jobs: progress again after {:?}",
            t.elapsed()
        );
    }
    let finished = wait_until(Duration::from_secs(120), || async {
        status_counts(&pg, &ts.schema).await.1 == N
    })
    .await;
    let counts = status_counts(&pg, &ts.schema).await;
    assert!(finished, "(pending, succeeded, failed) = {counts:?}");
    println!(
        "all {N} jobs succeeded {:?} after submitting",
        started.elapsed()
    );
    assert_eq!(counts, (0, N, 0));
    assert_eq!(effect_counts(&pg, &ts.schema).await, (N, N));
    for n in nodes.iter_mut() {
        assert!(n.alive(), "a node died on its own: {}", n.log());
    }
}

/// How many of `ids` are still pending.
async fn pending_among(pg: &sqlx::PgPool, schema: &str, ids: &[uuid::Uuid]) -> i64 {
    sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{schema}\".jobs WHERE id = ANY($1) AND status = 'pending'"
    ))
    .bind(ids)
    .fetch_one(pg)
    .await
    .unwrap()
}

/// Waits for the next job to succeed (or for the run to be over).
async fn progress(pg: &sqlx::PgPool, schema: &str) -> bool {
    let before = status_counts(pg, schema).await.1;
    wait_until(Duration::from_secs(60), || async {
        let done = status_counts(pg, schema).await.1;
        done > before || done == JOBS
    })
    .await
}
