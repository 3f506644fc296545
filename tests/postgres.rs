//! PostgreSQL-only behaviour: the statement timeout inside the savepoint, enqueueing inside
//! the caller's transaction, poison jobs caught through heartbeats, connections cut.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Backend, TestStore};
use skiplock::config::FileConfig;
use skiplock::queue::memory::MemoryQueue;
use skiplock::queue::Queue;
use skiplock::store::NodeBeat;
use skiplock::{Client, JobStatus, NewJob, Node, Store};

async fn worker_with(ts: &TestStore, toml: &str, concurrency: usize) -> (Node, Client) {
    let reg = FileConfig::parse(toml).unwrap().registry().unwrap();
    let queue: Arc<dyn Queue> = Arc::new(MemoryQueue::default());
    let w = Node::builder(ts.store.clone(), queue.clone())
        .registry(reg)
        .concurrency(concurrency)
        .start()
        .await
        .unwrap();
    (w, Client::new(ts.store.clone(), queue))
}

/// A one-runner node of the default queue that runs `noop`, as its heartbeat describes it.
fn noop_node(id: &str) -> NodeBeat {
    NodeBeat {
        id: id.into(),
        host: "h".into(),
        pid: 1,
        concurrency: 1,
        in_flight: 1,
        processed: 0,
        failed: 0,
        queues: [("default".to_string(), 1)].into(),
        types: vec!["noop".to_string()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_runaway_statement_is_cancelled_by_the_server_and_recorded() {
    let ts = TestStore::new(Backend::Postgres).await;
    let toml = r#"
[types.slow]
sql = ["SELECT pg_sleep(30)"]
timeout_ms = 300
max_attempts = 1
"#;
    let (w, client) = worker_with(&ts, toml, 2).await;
    let id = client
        .submit(NewJob::new("slow", serde_json::json!({})).max_attempts(1))
        .await
        .unwrap();
    let ok = client
        .submit(NewJob::new("noop", serde_json::json!({})))
        .await
        .unwrap();
    assert!(ts.wait_all_finished(Duration::from_secs(20)).await);
    w.shutdown(Duration::from_secs(5)).await;
    let j = ts.store.job(id).await.unwrap().unwrap();
    assert_eq!(j.status, JobStatus::Failed);
    let err = j.last_error.unwrap();
    assert!(
        err.contains("statement timeout") || err.contains("timed out"),
        "{err}"
    );
    assert_eq!(
        ts.store.job(ok).await.unwrap().unwrap().status,
        JobStatus::Succeeded
    );
    // No statement of the slow job is still running on the server.
    let running: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'",
    )
    .fetch_one(ts.pg.as_ref().unwrap())
    .await
    .unwrap();
    assert_eq!(running, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sql_type_rolls_back_every_statement_of_a_failing_job() {
    let ts = TestStore::new(Backend::Postgres).await;
    let s = &ts.schema;
    sqlx::query(&format!(
        "CREATE TABLE {s}.effects (job_id uuid, target jsonb)"
    ))
    .execute(ts.pg.as_ref().unwrap())
    .await
    .unwrap();
    let toml = format!(
        r#"
[types.good]
sql = ["INSERT INTO {s}.effects VALUES ($1, $2)"]
[types.bad]
sql = ["INSERT INTO {s}.effects VALUES ($1, $2)", "SELECT 1 / ($2->>'zero')::int"]
max_attempts = 2
backoff_ms = 10
"#
    );
    let (w, client) = worker_with(&ts, &toml, 4).await;
    let good = client
        .submit_batch(
            "good",
            (0..50).map(|i| serde_json::json!({"i": i})).collect(),
            Default::default(),
        )
        .await
        .unwrap();
    let bad = client
        .submit(NewJob::new("bad", serde_json::json!({"zero": 0})).max_attempts(2))
        .await
        .unwrap();
    assert!(ts.wait_all_finished(Duration::from_secs(30)).await);
    w.shutdown(Duration::from_secs(5)).await;
    let (rows, distinct): (i64, i64) = sqlx::query_as(&format!(
        "SELECT count(*), count(DISTINCT job_id) FROM {s}.effects"
    ))
    .fetch_one(ts.pg.as_ref().unwrap())
    .await
    .unwrap();
    assert_eq!((rows, distinct), (50, 50));
    let b = ts
        .store
        .batch(good.batch_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.succeeded, 50);
    let j = ts.store.job(bad).await.unwrap().unwrap();
    assert_eq!(j.status, JobStatus::Failed);
    assert_eq!(j.attempts, 2);
    assert!(j.last_error.unwrap().contains("division by zero"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_enqueued_in_the_callers_transaction_commit_with_it() {
    let ts = TestStore::new(Backend::Postgres).await;
    let pool = ts.pg.clone().unwrap();
    let s = &ts.schema;
    sqlx::query(&format!("CREATE TABLE {s}.orders (id int primary key)"))
        .execute(&pool)
        .await
        .unwrap();
    // enqueue_in needs the PostgreSQL store itself (the caller's transaction is PostgreSQL's).
    let pg = Arc::new(skiplock::store::postgres::PgStore::from_pool(
        pool.clone(),
        &ts.schema,
    ));
    let client = Client::new(pg, Arc::new(MemoryQueue::default()));

    // Rolled back: neither the order nor its job exist.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(&format!("INSERT INTO {s}.orders VALUES (1)"))
        .execute(&mut *tx)
        .await
        .unwrap();
    let lost = client
        .enqueue_in(
            &mut tx,
            &[NewJob::new("noop", serde_json::json!({"order": 1}))],
        )
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert!(ts.store.job(lost[0]).await.unwrap().is_none());

    // Committed without notify: the reconciler finds the job and a worker runs it.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(&format!("INSERT INTO {s}.orders VALUES (2)"))
        .execute(&mut *tx)
        .await
        .unwrap();
    let kept = client
        .enqueue_in(
            &mut tx,
            &[NewJob::new("noop", serde_json::json!({"order": 2}))],
        )
        .await
        .unwrap();
    assert!(
        ts.store.job(kept[0]).await.unwrap().is_none(),
        "invisible before commit"
    );
    tx.commit().await.unwrap();
    let (w, _) = worker_with(&ts, "", 2).await;
    assert!(ts.wait_all_finished(Duration::from_secs(15)).await);
    w.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        ts.store.job(kept[0]).await.unwrap().unwrap().status,
        JobStatus::Succeeded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_abandoned_by_dead_nodes_ends_failed_as_poison() {
    let ts = TestStore::new(Backend::Postgres).await;
    let client = Client::new(ts.store.clone(), Arc::new(MemoryQueue::default()));
    let id = client
        .submit(NewJob::new("noop", serde_json::json!({})).max_attempts(2))
        .await
        .unwrap();
    // Two nodes in turn die holding the job: each wrote its runner's intent record, locked
    // the job, then vanished before committing, its connections (the heartbeat session's
    // among them) closing with it.
    for n in 0..2 {
        let dying = skiplock::store::postgres::PgStore::connect(&ts.url, &ts.schema, 2)
            .await
            .unwrap();
        let node = format!("dead-{n}");
        dying.heartbeat(&noop_node(&node)).await.unwrap();
        let mut slot = dying.slot(&node, &common::scope()).await.unwrap();
        let locked = slot.lock(&[id]).await.unwrap();
        assert_eq!(locked.jobs.len(), 1);
        drop(locked);
        drop(slot);
        // Not yet stale: nothing happens.
        let r = ts
            .store
            .rescue_abandoned(Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(r.dead_nodes, 0);
        dying.pool().close().await;
        drop(dying);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut dead = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let r = ts
                .store
                .rescue_abandoned(Duration::from_millis(10))
                .await
                .unwrap();
            dead += r.dead_nodes;
            if r.retried + r.failed == 1 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never charged");
        }
        assert_eq!(dead, 1);
    }
    let j = ts.store.job(id).await.unwrap().unwrap();
    assert_eq!(j.status, JobStatus::Failed);
    assert_eq!(j.attempts, 2);
    assert!(j.last_error.unwrap().contains("node dead-1 stopped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_survive_their_connections_being_cut() {
    let app = common::unique("skt_app");
    let schema = common::unique("skt");
    let url = format!("{}?application_name={app}", common::pg_url());
    let store: Arc<dyn Store> = Arc::new(
        skiplock::store::postgres::PgStore::connect(&url, &schema, 12)
            .await
            .unwrap(),
    );
    store.migrate().await.unwrap();
    let queue: Arc<dyn Queue> = Arc::new(MemoryQueue::default());
    let w = Node::builder(store.clone(), queue.clone())
        .concurrency(8)
        .start()
        .await
        .unwrap();
    let client = Client::new(store.clone(), queue);
    let admin = sqlx::PgPool::connect(&common::pg_url()).await.unwrap();
    let targets: Vec<_> = (0..3000).map(|i| serde_json::json!(i)).collect();
    client
        .submit_batch(
            "sleep",
            targets
                .iter()
                .map(|_| serde_json::json!({"ms": 1}))
                .collect(),
            Default::default(),
        )
        .await
        .unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(&app)
        .execute(&admin)
        .await
        .unwrap();
    }
    let done = common::wait_until(Duration::from_secs(60), || async {
        store
            .report(Duration::from_secs(10))
            .await
            .map(|r| r.types.iter().all(|t| t.pending == 0 && t.running == 0))
            .unwrap_or(false)
    })
    .await;
    w.shutdown(Duration::from_secs(5)).await;
    assert!(done, "every job finished after the connections were cut");
    let r = store.report(Duration::from_secs(10)).await.unwrap();
    assert_eq!(r.types[0].succeeded, 3000);
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
}

/// A job that kills its worker at once, before any heartbeat could list it: the slot's intent
/// record, written before the chunk's transaction, still convicts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_kills_its_worker_instantly_ends_failed_as_poison() {
    let ts = TestStore::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("poison.toml");
    // `sh` is the worker's child, so $PPID is the worker itself.
    std::fs::write(
        &config,
        "[types.poison]\ncommand = [\"sh\", \"-c\", \"kill -9 $PPID\"]\nmax_attempts = 2\nmode = \"tx\"\n",
    )
    .unwrap();
    let client = Client::new(ts.store.clone(), Arc::new(MemoryQueue::default()));
    let id = client
        .submit(NewJob::new("poison", serde_json::json!({})).max_attempts(2))
        .await
        .unwrap();
    for round in 1..=2 {
        let mut worker = std::process::Command::new(common::bin())
            .args(ts.cli_args())
            .args(["--config", config.to_str().unwrap(), "worker"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let died = common::wait_until(Duration::from_secs(30), || {
            let exited = worker.try_wait().unwrap().is_some();
            async move { exited }
        })
        .await;
        assert!(died, "round {round}: the poison job killed its worker");
        // What any node's reconciler does once the dead node has been silent long enough.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = ts
            .store
            .rescue_abandoned(Duration::from_millis(200))
            .await
            .unwrap();
        assert_eq!(r.dead_nodes, 1, "round {round}");
        assert_eq!(
            r.retried + r.failed,
            1,
            "round {round}: the job was charged"
        );
    }
    let j = ts.store.job(id).await.unwrap().unwrap();
    assert_eq!(j.status, JobStatus::Failed);
    assert_eq!(j.attempts, 2);
    assert!(j.last_error.unwrap().starts_with("abandoned: node"));
}

/// Intent records cost no WAL (an UNLOGGED table) and do not pile up: each chunk appends one,
/// and the node's heartbeat deletes every slot's superseded ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn intent_records_are_unlogged_and_pruned_to_one_per_slot() {
    let ts = TestStore::new(Backend::Postgres).await;
    let pg = ts.pg.clone().unwrap();
    let s = ts.schema.clone();
    let persistence: String = sqlx::query_scalar(
        "SELECT relpersistence::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = 'intents'",
    )
    .bind(&s)
    .fetch_one(&pg)
    .await
    .unwrap();
    assert_eq!(persistence, "u", "intents must be UNLOGGED");
    let (w, client) = worker_with(&ts, "", 4).await;
    // One job at a time: every chunk writes its own record.
    for i in 0..40 {
        let id = client
            .submit(NewJob::new("noop", serde_json::json!(i)))
            .await
            .unwrap();
        assert!(
            common::wait_until(Duration::from_secs(30), || async {
                ts.store.job(id).await.unwrap().unwrap().status == JobStatus::Succeeded
            })
            .await
        );
    }
    let per_slot_max = || async {
        sqlx::query_scalar::<_, i64>(&format!(
            "SELECT COALESCE(max(n), 0) FROM (SELECT count(*) AS n FROM \"{s}\".intents \
             GROUP BY slot) c"
        ))
        .fetch_one(&pg)
        .await
        .unwrap()
    };
    // Within a few heartbeats, each slot keeps only its newest record.
    assert!(
        common::wait_until(Duration::from_secs(15), || async {
            per_slot_max().await == 1
        })
        .await,
        "superseded intent records were not pruned: {} for one slot",
        per_slot_max().await
    );
    w.shutdown(Duration::from_secs(5)).await;
    let left: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{s}\".intents"))
        .fetch_one(&pg)
        .await
        .unwrap();
    assert_eq!(left, 0, "a node that stops removes its records");
}

/// The report shows the jobs table's upkeep: whether autovacuum runs for it and how old the
/// oldest open transaction is (a session idle in transaction keeps every dead row alive).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_report_shows_table_upkeep_and_a_long_open_transaction() {
    let ts = TestStore::new(Backend::Postgres).await;
    let pg = ts.pg.clone().unwrap();
    let server_autovacuum: bool = sqlx::query_scalar("SELECT current_setting('autovacuum')::bool")
        .fetch_one(&pg)
        .await
        .unwrap();
    // Another session opens a transaction and sits in it.
    let mut idle = pg.acquire().await.unwrap();
    sqlx::query("BEGIN").execute(&mut *idle).await.unwrap();
    sqlx::query("SELECT txid_current()")
        .execute(&mut *idle)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = ts.store.report(Duration::from_secs(10)).await.unwrap();
    let h = r
        .health
        .clone()
        .expect("PostgreSQL reports the jobs table's upkeep");
    assert_eq!(h.autovacuum, server_autovacuum);
    assert!(
        h.oldest_transaction_secs.unwrap() >= 1.0,
        "{:?}",
        h.oldest_transaction_secs
    );
    assert!(r.render().contains("oldest open transaction"));
    // Turned off for the table alone, it says so.
    sqlx::query(&format!(
        "ALTER TABLE \"{}\".jobs SET (autovacuum_enabled = false)",
        ts.schema
    ))
    .execute(&pg)
    .await
    .unwrap();
    let r = ts.store.report(Duration::from_secs(10)).await.unwrap();
    let h = r.health.clone().unwrap();
    assert!(!h.autovacuum);
    assert!(r.render().contains("autovacuum is off for the jobs table"));
    sqlx::query("ROLLBACK").execute(&mut *idle).await.unwrap();
}

/// The reconciler's refill skips the jobs a live node's runner is running (its slot's latest
/// intent record) but not those of the slot's earlier records: those chunks ended, and their
/// jobs, if still pending, are due like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refill_skips_only_each_slots_latest_intent() {
    let ts = TestStore::new(Backend::Postgres).await;
    let client = Client::new(ts.store.clone(), Arc::new(MemoryQueue::default()));
    let ids = client
        .submit_many(&[
            NewJob::new("noop", serde_json::json!(0)),
            NewJob::new("noop", serde_json::json!(1)),
            NewJob::new("noop", serde_json::json!(2)),
        ])
        .await
        .unwrap();
    ts.store.heartbeat(&noop_node("n")).await.unwrap();
    let pg = ts.pg.clone().unwrap();
    for held in [ids[0], ids[1]] {
        sqlx::query(&format!(
            "INSERT INTO \"{}\".intents (slot, node_id, ids) \
             VALUES ('00000000-0000-0000-0000-000000000001', 'n', ARRAY[$1::uuid])",
            ts.schema
        ))
        .bind(held)
        .execute(&pg)
        .await
        .unwrap();
    }
    let mut due: Vec<_> = ts
        .store
        .due_pending(100, Duration::from_secs(60), &common::scope())
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    due.sort();
    let mut want = vec![ids[0], ids[2]];
    want.sort();
    assert_eq!(due, want, "only the slot's latest record hides its job");
}

/// A runner's own statements run generic plans (made once per connection, not planned again
/// at every chunk), while a job's processor runs with PostgreSQL's default behind its
/// savepoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_statements_run_generic_plans_and_processors_the_default() {
    let ts = TestStore::new(Backend::Postgres).await;
    let s = &ts.schema;
    let pg = ts.pg.clone().unwrap();
    sqlx::query(&format!(
        "CREATE TABLE {s}.seen (job_id uuid, target jsonb, mode text, custom bigint, \
         generic bigint)"
    ))
    .execute(&pg)
    .await
    .unwrap();
    // Seen from inside the job: the processor's own setting, and how the runner's lock
    // statement (prepared on this same connection) has been planned so far (this probe's
    // own statement, which names the same words, left out).
    let plans = "(SELECT coalesce(sum({}), 0) FROM pg_prepared_statements \
                 WHERE statement LIKE '%SKIP LOCKED%' \
                 AND statement NOT LIKE '%pg_prepared_statements%')";
    let toml = format!(
        r#"
[types.probe]
sql = ["INSERT INTO {s}.seen SELECT $1, $2, current_setting('plan_cache_mode'), {}, {}"]
"#,
        plans.replace("{}", "custom_plans"),
        plans.replace("{}", "generic_plans"),
    );
    let (w, client) = worker_with(&ts, &toml, 1).await;
    for i in 0..8 {
        client
            .submit(NewJob::new("probe", serde_json::json!({ "i": i })))
            .await
            .unwrap();
        assert!(ts.wait_all_finished(Duration::from_secs(30)).await);
    }
    w.shutdown(Duration::from_secs(5)).await;
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(&format!(
        "SELECT mode, custom, generic FROM {s}.seen ORDER BY (target->>'i')::int"
    ))
    .fetch_all(&pg)
    .await
    .unwrap();
    assert_eq!(rows.len(), 8);
    assert!(rows.iter().all(|(mode, ..)| mode == "auto"), "{rows:?}");
    assert!(
        rows.iter().all(|(_, custom, _)| *custom == 0),
        "the lock was planned per chunk: {rows:?}"
    );
    assert!(rows.last().unwrap().2 >= 6, "{rows:?}");
}

/// The report's counts by type and status, against a full count of `jobs`.
async fn counts_agree(ts: &TestStore, step: &str) {
    assert_eq!(
        ts.counts_by_type().await,
        ts.counted_by_type().await,
        "counts after {step}"
    );
}

/// A processor may change other jobs from inside its chunk's transaction (a `sql` type
/// cancelling them, here); the counts follow those changes and the chunk's own successes,
/// and a fold changes nothing the report says.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counts_follow_what_processors_change_inside_their_chunks() {
    let ts = TestStore::new(Backend::Postgres).await;
    let s = &ts.schema;
    // A processor that cancels other jobs from inside its chunk's transaction.
    let toml = format!(
        r#"
[types.sweeper]
sql = ["UPDATE {s}.jobs SET status = 'cancelled', finished_at = now() WHERE type = 'victim' AND target = $2"]
"#
    );
    let victims: Vec<_> = (0..6)
        .map(|i| NewJob::new("victim", serde_json::json!(i % 3)))
        .collect();
    ts.store.insert_jobs(&victims).await.unwrap();
    let (w, client) = worker_with(&ts, &toml, 2).await;
    let mut sweepers = vec![];
    for i in 0..2 {
        sweepers.push(
            client
                .submit(NewJob::new("sweeper", serde_json::json!(i)))
                .await
                .unwrap(),
        );
    }
    let done = common::wait_until(Duration::from_secs(30), || async {
        let mut n = 0;
        for id in &sweepers {
            let j = ts.store.job(*id).await.unwrap().unwrap();
            n += usize::from(j.status == JobStatus::Succeeded);
        }
        n == 2
    })
    .await;
    assert!(done, "both sweepers ran");
    w.shutdown(Duration::from_secs(5)).await;
    counts_agree(&ts, "processors cancelling jobs inside their chunks").await;

    ts.store.fold_counts().await.unwrap();
    counts_agree(&ts, "a fold").await;
}
