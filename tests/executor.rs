//! The invariants of DESIGN.md, against the real stores: exactly once, savepoint rollback,
//! failures recorded, retries, timeouts and panics survived. Every test runs on every backend.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::{Backend, TestStore};
use skiplock::queue::memory::MemoryQueue;
use skiplock::queue::Queue;
use skiplock::store::BatchOptions;
use skiplock::Due;
use skiplock::{
    Client, Job, JobStatus, JobTx, NewJob, Node, ProcessError, Processor, Registry, TypeOptions,
};

/// Writes one effect row in the job's transaction, then succeeds or fails as told.
struct Effect {
    table: String,
    fail: bool,
}

#[async_trait]
impl Processor for Effect {
    async fn process(&self, job: &Job, tx: &mut JobTx<'_>) -> Result<(), ProcessError> {
        let sql = format!("INSERT INTO {} (job_id) VALUES ($1)", self.table);
        tx.execute(&sql, job).await?;
        if self.fail {
            return Err(ProcessError::retry("failed after writing its effect"));
        }
        Ok(())
    }
}

struct Panics;

#[async_trait]
impl Processor for Panics {
    async fn process(&self, _job: &Job, _tx: &mut JobTx<'_>) -> Result<(), ProcessError> {
        panic!("processor exploded");
    }
}

fn quick(max_attempts: i32) -> TypeOptions {
    TypeOptions {
        max_attempts,
        timeout: Duration::from_secs(10),
        backoff: Duration::from_millis(10),
        ..TypeOptions::default()
    }
}

async fn start(ts: &TestStore, reg: Registry, concurrency: usize, chunk: usize) -> (Node, Client) {
    let queue: Arc<dyn Queue> = Arc::new(MemoryQueue::default());
    let w = Node::builder(ts.store.clone(), queue.clone())
        .registry(reg)
        .concurrency(concurrency)
        .chunk_size(chunk)
        .start()
        .await
        .unwrap();
    (w, Client::new(ts.store.clone(), queue))
}

async fn exactly_once_with_duplicate_ids(b: Backend) {
    let ts = TestStore::new(b).await;
    let table = ts.create_effects().await;
    let mut reg = Registry::with_builtins();
    reg.register("effect", Effect { table, fail: false }, quick(3))
        .unwrap();
    let (w, client) = start(&ts, reg, 16, 1).await;
    let sub = client
        .submit_batch(
            "effect",
            (0..600).map(|i| serde_json::json!({ "i": i })).collect(),
            BatchOptions::default(),
        )
        .await
        .unwrap();
    // Push every ID four more times while the workers run: each must still run once.
    let dup: Vec<Due> = sub.ids.iter().map(|&id| Due::new(id, 0)).collect();
    for _ in 0..4 {
        client.queue().push(&dup).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ts.wait_all_finished(Duration::from_secs(60)).await);
    w.shutdown(Duration::from_secs(5)).await;
    assert_eq!(ts.counts().await.succeeded, 600);
    assert_eq!(ts.effects().await, (600, 600));
}

async fn chunked_exactly_once(b: Backend) {
    let ts = TestStore::new(b).await;
    let table = ts.create_effects().await;
    let mut reg = Registry::with_builtins();
    reg.register("effect", Effect { table, fail: false }, quick(3))
        .unwrap();
    let (w, client) = start(&ts, reg, 8, 50).await;
    let sub = client
        .submit_batch(
            "effect",
            (0..1000).map(|i| serde_json::json!(i)).collect(),
            BatchOptions::default(),
        )
        .await
        .unwrap();
    let dup: Vec<Due> = sub.ids.iter().map(|&id| Due::new(id, 0)).collect();
    client.queue().push(&dup).await.unwrap();
    assert!(ts.wait_all_finished(Duration::from_secs(60)).await);
    w.shutdown(Duration::from_secs(5)).await;
    assert_eq!(ts.counts().await.succeeded, 1000);
    assert_eq!(ts.effects().await, (1000, 1000));
}

async fn failing_processor_writes_roll_back_and_failure_is_recorded(b: Backend) {
    let ts = TestStore::new(b).await;
    let table = ts.create_effects().await;
    let mut reg = Registry::with_builtins();
    reg.register(
        "bad",
        Effect {
            table: table.clone(),
            fail: true,
        },
        quick(2),
    )
    .unwrap();
    reg.register("good", Effect { table, fail: false }, quick(2))
        .unwrap();
    // A chunk mixing failing and succeeding jobs: each job has its own savepoint.
    let (w, client) = start(&ts, reg, 2, 10).await;
    let mut jobs = Vec::new();
    for i in 0..20 {
        jobs.push(
            NewJob::new(
                if i % 2 == 0 { "bad" } else { "good" },
                serde_json::json!(i),
            )
            .max_attempts(2),
        );
    }
    let ids = client.submit_many(&jobs).await.unwrap();
    assert!(ts.wait_all_finished(Duration::from_secs(30)).await);
    w.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        ts.effects().await,
        (10, 10),
        "only the good jobs' effects remain"
    );
    for (i, id) in ids.iter().enumerate() {
        let j = ts.store.job(*id).await.unwrap().unwrap();
        if i % 2 == 0 {
            assert_eq!(j.status, JobStatus::Failed);
            assert_eq!(j.attempts, 2);
            assert_eq!(
                j.last_error.as_deref(),
                Some("failed after writing its effect")
            );
        } else {
            assert_eq!(j.status, JobStatus::Succeeded);
            assert_eq!(j.attempts, 1);
        }
    }
}

async fn panics_and_timeouts_are_recorded_and_workers_go_on(b: Backend) {
    let ts = TestStore::new(b).await;
    let mut reg = Registry::with_builtins();
    reg.register("panics", Panics, quick(1)).unwrap();
    reg.set_options(
        "sleep",
        TypeOptions {
            max_attempts: 1,
            timeout: Duration::from_millis(200),
            backoff: Duration::ZERO,
            ..TypeOptions::default()
        },
    )
    .unwrap();
    let (w, client) = start(&ts, reg, 2, 1).await;
    let p = client
        .submit(NewJob::new("panics", serde_json::json!({})).max_attempts(1))
        .await
        .unwrap();
    let s = client
        .submit(NewJob::new("sleep", serde_json::json!({"ms": 60_000})).max_attempts(1))
        .await
        .unwrap();
    let n = client
        .submit_batch(
            "noop",
            vec![serde_json::json!(1); 50],
            BatchOptions::default(),
        )
        .await
        .unwrap();
    assert!(ts.wait_all_finished(Duration::from_secs(30)).await);
    w.shutdown(Duration::from_secs(5)).await;
    let pj = ts.store.job(p).await.unwrap().unwrap();
    assert_eq!(pj.status, JobStatus::Failed);
    assert!(pj
        .last_error
        .unwrap()
        .contains("panicked: processor exploded"));
    let sj = ts.store.job(s).await.unwrap().unwrap();
    assert_eq!(sj.status, JobStatus::Failed);
    assert!(sj.last_error.unwrap().contains("timed out after 200 ms"));
    let batch = ts.store.batch(n.batch_id.unwrap()).await.unwrap().unwrap();
    assert_eq!(batch.succeeded, 50);
}

async fn retries_back_off_then_fail(b: Backend) {
    let ts = TestStore::new(b).await;
    let mut reg = Registry::with_builtins();
    reg.set_options("fail", quick(3)).unwrap();
    let (w, client) = start(&ts, reg, 2, 1).await;
    let id = client
        .submit(NewJob::new("fail", serde_json::json!({"message": "nope"})).max_attempts(3))
        .await
        .unwrap();
    // The first attempt leaves it pending with a later run_at and the error recorded.
    assert!(
        common::wait_until(Duration::from_secs(10), || async {
            ts.store.job(id).await.unwrap().unwrap().attempts >= 1
        })
        .await
    );
    assert!(ts.wait_all_finished(Duration::from_secs(30)).await);
    w.shutdown(Duration::from_secs(5)).await;
    let j = ts.store.job(id).await.unwrap().unwrap();
    assert_eq!(j.status, JobStatus::Failed);
    assert_eq!(j.attempts, 3);
    assert_eq!(j.last_error.as_deref(), Some("nope"));
    assert!(j.finished_at.is_some());
}

async fn unknown_type_waits_and_rejected_target_fails_with_reason(b: Backend) {
    let ts = TestStore::new(b).await;
    let (w, client) = start(&ts, Registry::with_builtins(), 2, 1).await;
    let u = client
        .submit(NewJob::new("nobody_handles_this", serde_json::json!({})))
        .await
        .unwrap();
    let bad = client
        .submit(NewJob::new("sleep", serde_json::json!({"ms": "soon"})))
        .await
        .unwrap();
    let ok = client
        .submit(NewJob::new("noop", serde_json::json!(null)))
        .await
        .unwrap();
    let store = ts.store.clone();
    let done = common::wait_until(Duration::from_secs(20), || {
        let store = store.clone();
        async move {
            let a = store.job(bad).await.unwrap().unwrap().status;
            let b = store.job(ok).await.unwrap().unwrap().status;
            a.is_finished() && b.is_finished()
        }
    })
    .await;
    assert!(done);
    // The node has no processor for it: it never takes it, so it waits, uncharged, for a
    // node that has one, and the report says so.
    let report = ts.store.report(Duration::from_secs(10)).await.unwrap();
    w.shutdown(Duration::from_secs(5)).await;
    let u = ts.store.job(u).await.unwrap().unwrap();
    assert_eq!(u.status, JobStatus::Pending);
    assert_eq!(u.attempts, 0, "not charged for a missing processor");
    assert_eq!(u.last_error, None);
    let un: Vec<_> = report
        .unrunnable
        .iter()
        .map(|g| {
            (
                g.queue.as_str(),
                g.job_type.as_str(),
                g.pending,
                g.type_known,
            )
        })
        .collect();
    assert_eq!(un, vec![("default", "nobody_handles_this", 1, false)]);
    let bad = ts.store.job(bad).await.unwrap().unwrap();
    assert_eq!(bad.status, JobStatus::Failed);
    assert!(bad.last_error.unwrap().starts_with("invalid target"));
    assert_eq!(
        ts.store.job(ok).await.unwrap().unwrap().status,
        JobStatus::Succeeded
    );
}

async fn scheduled_jobs_wait_and_priority_orders(b: Backend) {
    let ts = TestStore::new(b).await;
    let (w, client) = start(&ts, Registry::with_builtins(), 1, 1).await;
    let later = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let id = client
        .submit(NewJob::new("noop", serde_json::json!({})).run_at(later))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        ts.store.job(id).await.unwrap().unwrap().status,
        JobStatus::Pending
    );
    assert!(ts.wait_all_finished(Duration::from_secs(15)).await);
    let j = ts.store.job(id).await.unwrap().unwrap();
    assert_eq!(j.status, JobStatus::Succeeded);
    assert!(j.finished_at.unwrap() >= later);
    w.shutdown(Duration::from_secs(5)).await;
}

async fn graceful_shutdown_rolls_back_what_cannot_finish(b: Backend) {
    let ts = TestStore::new(b).await;
    let (w, client) = start(&ts, Registry::with_builtins(), 1, 1).await;
    let id = client
        .submit(NewJob::new("sleep", serde_json::json!({"ms": 30_000})))
        .await
        .unwrap();
    assert!(
        common::wait_until(Duration::from_secs(10), || async {
            w.state().beat().in_flight == 1
        })
        .await
    );
    w.shutdown(Duration::from_millis(200)).await;
    let j = ts.store.job(id).await.unwrap().unwrap();
    assert_eq!(
        j.status,
        JobStatus::Pending,
        "an interrupted job stays pending"
    );
    assert_eq!(j.attempts, 0, "and its attempt rolled back");
    // The node removed its heartbeat row on the way out.
    assert!(ts
        .store
        .nodes(Duration::from_secs(60))
        .await
        .unwrap()
        .is_empty());
}

/// A type's policy reaches every job created through a client, whichever way: one job, many,
/// a batch; a job that says otherwise keeps its own.
async fn the_types_policy_applies_on_every_insert_path(b: Backend) {
    let ts = TestStore::new(b).await;
    let mut reg = Registry::with_builtins();
    reg.set_options("noop", quick(7)).unwrap();
    let queue: Arc<dyn Queue> = Arc::new(MemoryQueue::default());
    ts.store.publish_policy(&reg.policy()).await.unwrap();
    let client = Client::new(ts.store.clone(), queue);
    let one = client
        .submit(NewJob::new("noop", serde_json::json!(1)))
        .await
        .unwrap();
    let many = client
        .submit_many(&[
            NewJob::new("noop", serde_json::json!(2)),
            NewJob::new("noop", serde_json::json!(3)).max_attempts(2),
            NewJob::new("fail", serde_json::json!(4)),
        ])
        .await
        .unwrap();
    let batch = client
        .submit_batch("noop", vec![serde_json::json!(5)], BatchOptions::default())
        .await
        .unwrap();
    let attempts = |id| {
        let store = ts.store.clone();
        async move { store.job(id).await.unwrap().unwrap().max_attempts }
    };
    assert_eq!(attempts(one).await, 7);
    assert_eq!(attempts(many[0]).await, 7);
    assert_eq!(attempts(many[1]).await, 2, "a job's own setting wins");
    assert_eq!(
        attempts(many[2]).await,
        3,
        "another type keeps its own policy"
    );
    assert_eq!(attempts(batch.ids[0]).await, 7);
}

/// A node serves a subset: its named queues and the types it has processors for. The rest
/// stays pending and uncharged, shown as unrunnable; with a deadline, a type no node knows
/// fails with the reason, while a known type in a queue nobody serves keeps waiting.
async fn a_node_runs_only_its_queues_and_types(b: Backend) {
    let ts = TestStore::new(b).await;
    let queue: Arc<dyn Queue> = Arc::new(MemoryQueue::default());
    let mut config = skiplock::NodeConfig::default();
    config.unrunnable.fail_after = Some(Duration::from_secs(1));
    let w = Node::builder(ts.store.clone(), queue.clone())
        .config(config)
        .queues([("default", 2), ("media", 1)])
        .start()
        .await
        .unwrap();
    let client = Client::new(ts.store.clone(), queue);
    let ids = client
        .submit_many(&[
            NewJob::new("noop", serde_json::json!(1)),
            NewJob::new("sleep", serde_json::json!({"ms": 1})).queue("media"),
            NewJob::new("noop", serde_json::json!(2)).queue("elsewhere"),
            NewJob::new("nobody_knows", serde_json::json!(3)).queue("media"),
        ])
        .await
        .unwrap();
    let store = ts.store.clone();
    let ran = common::wait_until(Duration::from_secs(20), || {
        let store = store.clone();
        let ids = ids.clone();
        async move {
            let mut st = Vec::new();
            for id in &ids {
                st.push(store.job(*id).await.unwrap().unwrap().status);
            }
            st == [
                JobStatus::Succeeded,
                JobStatus::Succeeded,
                JobStatus::Pending,
                JobStatus::Failed,
            ]
        }
    })
    .await;
    assert!(
        ran,
        "the node ran its own and failed the unknown type after the deadline"
    );
    let report = ts.store.report(Duration::from_secs(10)).await.unwrap();
    w.shutdown(Duration::from_secs(5)).await;
    let waiting = ts.store.job(ids[2]).await.unwrap().unwrap();
    assert_eq!((waiting.attempts, waiting.last_error), (0, None));
    let failed = ts.store.job(ids[3]).await.unwrap().unwrap();
    assert!(
        failed
            .last_error
            .unwrap()
            .starts_with("no processor for type nobody_knows"),
        "the reason is recorded"
    );
    let un: Vec<_> = report
        .unrunnable
        .iter()
        .map(|u| {
            (
                u.queue.as_str(),
                u.job_type.as_str(),
                u.type_known,
                u.queue_served,
            )
        })
        .collect();
    assert_eq!(un, vec![("elsewhere", "noop", true, false)]);
    let node = &report.nodes[0];
    assert_eq!(node.concurrency, 3);
    assert_eq!(node.queues.get("media"), Some(&1));
    assert!(node.types.contains(&"sleep".to_string()));
}

/// An ID of a type the node cannot run, pushed to a queue it serves (by another process),
/// is dropped, not charged and not pushed back; the node's reconciler never offers it, so it
/// does not go round between the queue and the node.
async fn a_popped_id_the_node_cannot_run_is_dropped_uncharged(b: Backend) {
    let ts = TestStore::new(b).await;
    let (w, client) = start(&ts, Registry::with_builtins(), 2, 1).await;
    let ids = ts
        .store
        .insert_jobs(&[NewJob::new("only_elsewhere", serde_json::json!({}))])
        .await
        .unwrap();
    let r = w.reconcile().await.unwrap();
    assert_eq!(
        r.offered, 0,
        "the reconciler offers only what this node runs"
    );
    client.queue().push(&[Due::new(ids[0], 0)]).await.unwrap();
    let dropped = common::wait_until(Duration::from_secs(10), || async {
        w.metrics()
            .dropped_ids
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    })
    .await;
    assert!(dropped, "a runner popped the ID and dropped it");
    assert_eq!(client.queue().depth().await.unwrap(), 0, "not pushed back");
    assert_eq!(w.reconcile().await.unwrap().offered, 0);
    w.shutdown(Duration::from_secs(5)).await;
    let j = ts.store.job(ids[0]).await.unwrap().unwrap();
    assert_eq!(
        (j.status, j.attempts, j.last_error),
        (JobStatus::Pending, 0, None)
    );
}

/// A queue with concurrency 1 never runs two of its jobs at once, while other queues run.
async fn a_queue_of_concurrency_one_runs_one_job_at_a_time(b: Backend) {
    let ts = TestStore::new(b).await;
    let queue: Arc<dyn Queue> = Arc::new(MemoryQueue::default());
    let running = Arc::new(std::sync::atomic::AtomicI32::new(0));
    let most = Arc::new(std::sync::atomic::AtomicI32::new(0));
    let mut reg = Registry::with_builtins();
    reg.register(
        "serial",
        Gauge {
            running: running.clone(),
            most: most.clone(),
        },
        quick(3),
    )
    .unwrap();
    reg.set_queue("serial", "one").unwrap();
    let w = Node::builder(ts.store.clone(), queue.clone())
        .registry(reg)
        .queues([("one", 1), ("default", 4)])
        .start()
        .await
        .unwrap();
    let client = Client::new(ts.store.clone(), queue);
    client
        .submit_batch(
            "serial",
            (0..30).map(|i| serde_json::json!(i)).collect(),
            BatchOptions::default(),
        )
        .await
        .unwrap();
    client
        .submit_batch(
            "sleep",
            (0..30).map(|_| serde_json::json!({"ms": 5})).collect(),
            BatchOptions::default(),
        )
        .await
        .unwrap();
    assert!(ts.wait_all_finished(Duration::from_secs(30)).await);
    w.shutdown(Duration::from_secs(5)).await;
    assert_eq!(ts.count_status("succeeded").await, 60);
    assert_eq!(
        most.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "never two at once"
    );
}

/// Counts its own jobs running at once, and the most it saw.
struct Gauge {
    running: Arc<std::sync::atomic::AtomicI32>,
    most: Arc<std::sync::atomic::AtomicI32>,
}

#[async_trait]
impl Processor for Gauge {
    async fn process(&self, _job: &Job, _tx: &mut JobTx<'_>) -> Result<(), ProcessError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.running.fetch_sub(1, SeqCst);
        Ok(())
    }
}

for_each_backend!(
    a_node_runs_only_its_queues_and_types,
    a_popped_id_the_node_cannot_run_is_dropped_uncharged,
    a_queue_of_concurrency_one_runs_one_job_at_a_time,
    the_types_policy_applies_on_every_insert_path,
    exactly_once_with_duplicate_ids,
    chunked_exactly_once,
    failing_processor_writes_roll_back_and_failure_is_recorded,
    panics_and_timeouts_are_recorded_and_workers_go_on,
    retries_back_off_then_fail,
    unknown_type_waits_and_rejected_target_fails_with_reason,
    scheduled_jobs_wait_and_priority_orders,
    graceful_shutdown_rolls_back_what_cannot_finish,
    succeeded_kept_zero_time_are_deleted_as_they_complete,
);

/// Rows a chunk's commit finished share its transaction id (`xmin`): how many transactions a
/// batch's jobs took.
async fn transactions_used(ts: &TestStore, batch: uuid::Uuid) -> i64 {
    sqlx::query_scalar(&format!(
        "SELECT count(DISTINCT xmin::text) FROM \"{}\".jobs WHERE batch_id = $1",
        ts.schema
    ))
    .bind(batch)
    .fetch_one(ts.pg.as_ref().unwrap())
    .await
    .unwrap()
}

/// The default chunk size adapts: a backlog is taken many jobs per transaction, while a
/// node told to run one job per transaction does exactly that.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adaptive_chunks_take_a_backlog_in_few_transactions() {
    for adaptive in [true, false] {
        let ts = TestStore::new(Backend::Postgres).await;
        let queue: Arc<dyn Queue> = Arc::new(MemoryQueue::default());
        let client = Client::new(ts.store.clone(), queue.clone());
        let sub = client
            .submit_batch(
                "noop",
                (0..3000).map(|i| serde_json::json!(i)).collect(),
                BatchOptions::default(),
            )
            .await
            .unwrap();
        let b = Node::builder(ts.store.clone(), queue)
            .registry(Registry::with_builtins())
            .concurrency(4);
        let node = if adaptive { b } else { b.chunk_size(1) }
            .start()
            .await
            .unwrap();
        assert!(ts.wait_all_finished(Duration::from_secs(120)).await);
        node.shutdown(Duration::from_secs(5)).await;
        assert_eq!(ts.counts().await.succeeded, 3000);
        let txs = transactions_used(&ts, sub.batch_id.unwrap()).await;
        if adaptive {
            assert!(txs <= 300, "a 3000-job backlog took {txs} transactions");
        } else {
            assert_eq!(txs, 3000);
        }
    }
}

/// `[retention] succeeded = "0s"`: a success deletes its row in the chunk that completes it
/// (its effects commit with the delete); failures are kept; the report and the batch's
/// progress stay exact without the rows; another type can keep its successes.
async fn succeeded_kept_zero_time_are_deleted_as_they_complete(b: Backend) {
    use skiplock::maintenance::retention::{Keep, Retention};
    let ts = TestStore::new(b).await;
    let table = ts.create_effects().await;
    let mut reg = Registry::with_builtins();
    reg.register(
        "effect",
        Effect {
            table: table.clone(),
            fail: false,
        },
        quick(3),
    )
    .unwrap();
    let mut retention = Retention::default();
    retention
        .set(JobStatus::Succeeded, Keep::For(Duration::ZERO))
        .unwrap();
    retention
        .set_type(
            "kept",
            JobStatus::Succeeded,
            Keep::For(Duration::from_secs(3600)),
        )
        .unwrap();
    reg.register("kept", Effect { table, fail: false }, quick(3))
        .unwrap();
    let queue: Arc<dyn Queue> = Arc::new(MemoryQueue::default());
    let mut config = skiplock::NodeConfig::default();
    config.pruner.retention = retention;
    let w = Node::builder(ts.store.clone(), queue.clone())
        .config(config)
        .registry(reg)
        .concurrency(4)
        .start()
        .await
        .unwrap();
    let client = Client::new(ts.store.clone(), queue);
    let batch = client
        .submit_batch(
            "effect",
            (0..200).map(|i| serde_json::json!({ "i": i })).collect(),
            BatchOptions::default(),
        )
        .await
        .unwrap();
    let failing = client
        .submit(NewJob::new("fail", serde_json::json!({"message": "no"})).max_attempts(1))
        .await
        .unwrap();
    let kept = client
        .submit(NewJob::new("kept", serde_json::json!({"i": -1})))
        .await
        .unwrap();
    let done = common::wait_until(Duration::from_secs(60), || async {
        let r = ts
            .store
            .batch(batch.batch_id.unwrap())
            .await
            .unwrap()
            .unwrap();
        r.succeeded == 200
            && ts.store.job(failing).await.unwrap().map(|j| j.status) == Some(JobStatus::Failed)
            && ts.store.job(kept).await.unwrap().map(|j| j.status) == Some(JobStatus::Succeeded)
    })
    .await;
    w.shutdown(Duration::from_secs(5)).await;
    assert!(
        done,
        "the batch, the failure and the kept job did not all finish"
    );
    // Every success wrote its effect, exactly once, and its row is gone.
    assert_eq!(ts.effects().await, (201, 201));
    for id in &batch.ids {
        assert!(ts.store.job(*id).await.unwrap().is_none(), "{id} was kept");
    }
    let c = ts.counts().await;
    assert_eq!((c.pending, c.succeeded, c.failed), (0, 1, 1));
    // The deleted successes still count toward recent throughput.
    let r = ts.store.report(Duration::from_secs(10)).await.unwrap();
    let finished: i64 = r.throughput.buckets_10s.iter().sum();
    assert!(
        finished >= 202,
        "throughput counted {finished} of 202 finished jobs"
    );
}
