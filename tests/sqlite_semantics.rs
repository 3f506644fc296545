//! What is particular to SQLite's single-writer model: the writer mutex under heavy
//! concurrency and duplicate IDs, the progress-handler time limit that stands in for
//! `statement_timeout`, and writers in two processes at once.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use skiplock::processor::{Registry, SqlProcessor, TypeOptions};
use skiplock::queue::memory::MemoryQueue;
use skiplock::queue::Queue;
use skiplock::store::JobFilter;
use skiplock::{Due, JobStatus, NewJob, Node};
use uuid::Uuid;

use common::{bin, Backend, TestStore};

async fn effects_table(ts: &TestStore) -> sqlx::SqlitePool {
    let pool = ts.sqlite.clone().unwrap();
    sqlx::query("CREATE TABLE effects (job TEXT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    pool
}

fn registry(sql: &[&str], options: TypeOptions) -> Registry {
    let mut r = Registry::with_builtins();
    let p = SqlProcessor::new(sql.iter().map(|s| s.to_string()).collect()).unwrap();
    r.register("effect", p, options).unwrap();
    r
}

async fn wait_for(ts: &TestStore, status: &str, n: i64, limit: Duration) {
    let deadline = Instant::now() + limit;
    while ts.count_status(status).await < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} jobs {status}",
            ts.count_status(status).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_workers_and_duplicate_ids_run_each_job_once() {
    let ts = TestStore::new(Backend::Sqlite).await;
    let pool = effects_table(&ts).await;
    let n = 400;
    let jobs: Vec<NewJob> = (0..n).map(|i| NewJob::new("effect", json!(i))).collect();
    let ids = ts.store.insert_jobs(&jobs).await.unwrap();
    let queue: Arc<dyn Queue> = Arc::new(MemoryQueue::default());
    let reg = registry(
        &["INSERT INTO effects (job) VALUES ($1)"],
        TypeOptions::default(),
    );
    let worker = Node::builder(ts.store.clone(), queue.clone())
        .registry(reg)
        .concurrency(16)
        .start()
        .await
        .unwrap();
    // Every ID offered three times while workers are popping: duplicates in flight.
    for _ in 0..3 {
        let due: Vec<Due> = ids.iter().map(|&id| Due::new(id, 0)).collect();
        queue.push(&due).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    wait_for(&ts, "succeeded", n as i64, Duration::from_secs(60)).await;
    worker.shutdown(Duration::from_secs(5)).await;
    let per_job: Vec<(String, i64)> =
        sqlx::query_as("SELECT job, count(*) FROM effects GROUP BY job")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(per_job.len(), n);
    assert!(per_job.iter().all(|(_, c)| *c == 1), "an effect ran twice");
    let all = ts
        .store
        .list_jobs(&JobFilter {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(all.iter().all(|j| j.attempts == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_runaway_statement_is_interrupted_at_the_time_limit() {
    let ts = TestStore::new(Backend::Sqlite).await;
    let pool = effects_table(&ts).await;
    let endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c \
                   WHERE x < 4000000000) SELECT count(*) FROM c";
    let reg = registry(
        &["INSERT INTO effects (job) VALUES ($1)", endless],
        TypeOptions {
            max_attempts: 1,
            timeout: Duration::from_millis(300),
            ..TypeOptions::default()
        },
    );
    let stuck = ts
        .store
        .insert_jobs(&[NewJob::new("effect", json!({})).max_attempts(1)])
        .await
        .unwrap()[0];
    let queue: Arc<dyn Queue> = Arc::new(MemoryQueue::default());
    let worker = Node::builder(ts.store.clone(), queue)
        .registry(reg)
        .concurrency(2)
        .start()
        .await
        .unwrap();
    wait_for(&ts, "failed", 1, Duration::from_secs(20)).await;
    let j = ts.store.job(stuck).await.unwrap().unwrap();
    // The processor's timer normally names it; under heavy load the interrupt may land first.
    let why = j.last_error.unwrap_or_default();
    assert!(
        why.contains("timed out") || why.contains("interrupted"),
        "{why}"
    );
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM effects")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 0, "the job's insert rolled back with its savepoint");
    // The writer is free again: later jobs run (they would queue forever behind the
    // statement if it were still running).
    ts.store
        .insert_jobs(&[NewJob::new("noop", json!({}))])
        .await
        .unwrap();
    wait_for(&ts, "succeeded", 1, Duration::from_secs(20)).await;
    worker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn submits_from_another_process_wait_their_turn() {
    let ts = TestStore::new(Backend::Sqlite).await;
    let queue: Arc<dyn Queue> = Arc::new(MemoryQueue::default());
    let worker = Node::builder(ts.store.clone(), queue)
        .concurrency(8)
        .start()
        .await
        .unwrap();
    let dir = ts.dir.as_ref().unwrap().path();
    let lines: String = (0..500)
        .map(|i| format!("{{\"ms\":{}}}\n", i % 3))
        .collect();
    std::fs::write(dir.join("t.jsonl"), lines).unwrap();
    // Five submissions race the worker's job transactions for SQLite's write lock.
    let children: Vec<_> = (0..5)
        .map(|_| {
            Command::new(bin())
                .args(["submit", "sleep", "--file"])
                .arg(dir.join("t.jsonl"))
                .args(ts.cli_args())
                .output()
        })
        .collect();
    for out in children {
        let out = out.unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(!err.contains("database is locked"), "{err}");
    }
    // The in-memory queue is this process's: the reconciler finds the other process's jobs.
    wait_for(&ts, "succeeded", 2500, Duration::from_secs(120)).await;
    worker.shutdown(Duration::from_secs(5)).await;
    let ids: Vec<Uuid> = ts
        .store
        .list_jobs(&JobFilter {
            status: Some(JobStatus::Succeeded),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(ids.len(), 2500);
}

/// A chunk dropped without finishing or abandoning (its task cancelled mid-job) leaves its
/// transaction open on the store's writing connection: the next write turn rolls it back, so
/// the job's write is undone, the job stays pending and uncharged, and the next chunk runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_dropped_mid_job_is_rolled_back_by_the_next_write() {
    let ts = TestStore::new(Backend::Sqlite).await;
    let pool = effects_table(&ts).await;
    let id = ts
        .store
        .insert_jobs(&[NewJob::new("noop", json!({}))])
        .await
        .unwrap()[0];
    let mut slot = ts.store.slot("node-d", &common::scope()).await.unwrap();
    let mut locked = slot.lock(&[id]).await.unwrap();
    assert_eq!(locked.jobs.len(), 1);
    let job = locked.jobs[0].clone();
    let conn = locked.tx.job_conn();
    conn.savepoint(Duration::from_secs(5)).await.unwrap();
    conn.execute("INSERT INTO effects (job) VALUES ($1)", &job)
        .await
        .unwrap();
    drop(locked);
    // Another write goes first: it must not wait on (or commit) the dropped chunk.
    ts.store
        .insert_jobs(&[NewJob::new("noop", json!({ "after": true }))])
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM effects")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 0, "the dropped chunk's write was rolled back");
    let j = ts.store.job(id).await.unwrap().unwrap();
    assert_eq!((j.status, j.attempts), (JobStatus::Pending, 0));
    let again = slot.lock(&[id]).await.unwrap();
    assert_eq!(again.jobs.len(), 1, "the job is free to run again");
    again.finish(&[]).await.unwrap();
}

/// The job's connection is inside the chunk's transaction: sqlx's `begin()` on it is refused
/// by SQLite with a clear error (a processor would be charged with it), and the chunk still
/// commits its outcome afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_sqlx_begin_on_the_job_connection_is_refused_and_the_chunk_still_commits() {
    let ts = TestStore::new(Backend::Sqlite).await;
    let id = ts
        .store
        .insert_jobs(&[NewJob::new("noop", json!({}))])
        .await
        .unwrap()[0];
    let mut slot = ts.store.slot("node-b", &common::scope()).await.unwrap();
    let mut locked = slot.lock(&[id]).await.unwrap();
    let conn = locked.tx.job_conn();
    conn.savepoint(Duration::from_secs(5)).await.unwrap();
    let err = match sqlx::Connection::begin(conn.sqlite().unwrap()).await {
        Ok(_) => panic!("a nested begin() should be refused"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("within a transaction"), "{err}");
    conn.rollback().await.unwrap();
    locked
        .finish(&[skiplock::store::Outcome::Succeeded { id }])
        .await
        .unwrap();
    let j = ts.store.job(id).await.unwrap().unwrap();
    assert_eq!((j.status, j.attempts), (JobStatus::Succeeded, 1));
}

/// Batch progress on SQLite reads only the batch's unfinished jobs (`jobs_batch_open_idx`,
/// migration 0015), never every job it holds: a batch of a million finished jobs cost each
/// report 0.2 s through the index of all of a batch's jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_progress_reads_only_unfinished_jobs() {
    let ts = TestStore::new(Backend::Sqlite).await;
    let batch = ts
        .store
        .insert_batch(
            "noop",
            (0..50).map(|i| json!(i)).collect(),
            Default::default(),
        )
        .await
        .unwrap();
    let pool = ts.sqlite.as_ref().unwrap();
    sqlx::query("ANALYZE").execute(pool).await.unwrap();
    for (name, statement, arg) in [
        (
            "one batch",
            skiplock::store::sqlite::sql::BATCH,
            batch.batch_id.unwrap().to_string(),
        ),
        (
            "recent batches",
            skiplock::store::sqlite::sql::RECENT_BATCHES,
            "10".to_string(),
        ),
    ] {
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(&format!("EXPLAIN QUERY PLAN {statement}"))
                .bind(arg)
                .fetch_all(pool)
                .await
                .unwrap();
        let steps: Vec<&str> = plan.iter().map(|r| r.3.as_str()).collect();
        assert!(
            steps
                .iter()
                .any(|s| s.contains("SEARCH j USING") && s.contains("jobs_batch_open_idx")),
            "{name}: {steps:?}"
        );
    }
    let progress = ts
        .store
        .batch(batch.batch_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((progress.total, progress.succeeded), (50, 0));
}
