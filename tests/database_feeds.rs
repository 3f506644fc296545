//! The database feeds the runners: jobs that nobody pushed to this node's queue (inserted by
//! another process, by SQL, by a trigger) are claimed straight from the store, woken by the
//! database itself (PostgreSQL LISTEN/NOTIFY, SQLite's `data_version`). The nodes here poll
//! once a minute and reconcile once a minute, so a job that runs within the test's deadline
//! was found through a wake-up, not a sweep.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{wait_until, Backend, TestStore};
use serde_json::json;
use skiplock::queue::memory::MemoryQueue;
use skiplock::queue::Queue;
use skiplock::store::postgres::PgStore;
use skiplock::{Client, JobStatus, NewJob, Node, NodeConfig, Registry};
use uuid::Uuid;

/// A node that never polls nor sweeps within a test's time: it can only be woken.
async fn sleepy_node(store: Arc<dyn skiplock::Store>, registry: Registry) -> Node {
    let mut config = NodeConfig::default();
    config.executor.concurrency = 4;
    config.executor.poll = Duration::from_secs(60);
    config.reconciler.interval = Duration::from_secs(60);
    Node::builder(store, Arc::new(MemoryQueue::default()))
        .registry(registry)
        .config(config)
        .start()
        .await
        .unwrap()
}

async fn wait_succeeded(ts: &TestStore, id: Uuid) -> Option<Duration> {
    let t = Instant::now();
    let done = wait_until(Duration::from_secs(20), || async {
        ts.store.job(id).await.unwrap().map(|j| j.status) == Some(JobStatus::Succeeded)
    })
    .await;
    done.then(|| t.elapsed())
}

/// A job inserted through another client (another process's queue, which this node never
/// sees) is claimed once the database says it arrived.
async fn a_job_inserted_elsewhere_is_claimed_on_a_wake_up(b: Backend) {
    let ts = TestStore::new(b).await;
    let node = sleepy_node(ts.store.clone(), Registry::with_builtins()).await;
    // Let the first (empty) claims pass, so the runners are idle and waiting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let elsewhere = Client::new(ts.store.clone(), Arc::new(MemoryQueue::default()));
    for round in 0..3 {
        let id = elsewhere
            .submit(NewJob::new("noop", json!({ "round": round })))
            .await
            .unwrap();
        let took = wait_succeeded(&ts, id).await;
        assert!(took.is_some(), "round {round}: the job was never claimed");
        println!(
            "{b:?} round {round}: claimed and done in {:?}",
            took.unwrap()
        );
    }
    node.shutdown(Duration::from_secs(5)).await;
}

/// Claims take the most urgent free jobs first, skip what another chunk holds and what is
/// not due, and write the intent record that convicts a poison job.
async fn claims_take_the_most_urgent_free_jobs(b: Backend) {
    let ts = TestStore::new(b).await;
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let ids = ts
        .store
        .insert_jobs(&[
            NewJob::new("noop", json!(0)),
            NewJob::new("noop", json!(1)).priority(9),
            NewJob::new("noop", json!(2)).priority(9).run_at(later),
            NewJob::new("noop", json!(3)).priority(5),
            NewJob::new("noop", json!(4)),
        ])
        .await
        .unwrap();
    let mut a = ts.store.slot("node-a", &common::scope()).await.unwrap();
    let first = a.claim(2).await.unwrap();
    let got: Vec<Uuid> = first.jobs.iter().map(|j| j.id).collect();
    assert_eq!(
        got,
        vec![ids[1], ids[3]],
        "highest priority first, due only"
    );
    let ok = |v: &[skiplock::Job]| {
        v.iter()
            .map(|j| skiplock::store::Outcome::Succeeded { id: j.id })
            .collect::<Vec<_>>()
    };
    if b == Backend::Postgres {
        // While the first chunk holds its jobs, a second claim skips them.
        let mut c = ts.store.slot("node-b", &common::scope()).await.unwrap();
        let second = c.claim(10).await.unwrap();
        let got: Vec<Uuid> = second.jobs.iter().map(|j| j.id).collect();
        assert_eq!(got, vec![ids[0], ids[4]], "oldest first among equals");
        let outs = ok(&second.jobs);
        second.finish(&outs).await.unwrap();
        let outs = ok(&first.jobs);
        first.finish(&outs).await.unwrap();
    } else {
        // SQLite runs one chunk at a time: the second claim comes after the first commits.
        let outs = ok(&first.jobs);
        first.finish(&outs).await.unwrap();
        let second = a.claim(10).await.unwrap();
        let got: Vec<Uuid> = second.jobs.iter().map(|j| j.id).collect();
        assert_eq!(got, vec![ids[0], ids[4]], "oldest first among equals");
        let outs = ok(&second.jobs);
        second.finish(&outs).await.unwrap();
    }
    let empty = a.claim(10).await.unwrap();
    assert!(empty.jobs.is_empty(), "the scheduled job is not due");
    empty.finish(&[]).await.unwrap();
    // A claimed job whose runner dies is still caught by its intent record.
    let poison = ts
        .store
        .insert_jobs(&[NewJob::new("noop", json!("p")).max_attempts(1)])
        .await
        .unwrap()[0];
    let mut d = ts.store.slot("dead", &common::scope()).await.unwrap();
    let held = d.claim(1).await.unwrap();
    assert_eq!(held.jobs[0].id, poison);
    drop(held);
    drop(d);
    let caught = wait_until(Duration::from_secs(10), || async {
        let r = ts
            .store
            .rescue_abandoned(Duration::from_millis(200))
            .await
            .unwrap();
        r.failed == 1
    })
    .await;
    assert!(caught, "the claimed job's intent record convicts it");
}

/// `Client::notify` pushes each job with its own priority, and only jobs that are due.
async fn notify_pushes_due_jobs_with_their_priority(b: Backend) {
    let ts = TestStore::new(b).await;
    let queue = Arc::new(MemoryQueue::default());
    let client = Client::new(ts.store.clone(), queue.clone());
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let ids = ts
        .store
        .insert_jobs(&[
            NewJob::new("noop", json!("low")),
            NewJob::new("noop", json!("high")).priority(5),
            NewJob::new("noop", json!("later"))
                .priority(9)
                .run_at(later),
        ])
        .await
        .unwrap();
    client.notify(&ids).await;
    let popped = queue.pop("default", 10, Duration::ZERO).await.unwrap();
    assert_eq!(
        popped,
        vec![ids[1], ids[0]],
        "by priority; the scheduled one waits"
    );
}

for_each_backend!(
    a_job_inserted_elsewhere_is_claimed_on_a_wake_up,
    claims_take_the_most_urgent_free_jobs,
    notify_pushes_due_jobs_with_their_priority,
);

/// A row inserted by any client fires a trigger that enqueues a job with `add_job`; the job
/// runs within moments, with the type's policy and a time-ordered id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sql_trigger_enqueues_a_job_that_runs() {
    let ts = TestStore::new(Backend::Postgres).await;
    let pg = ts.pg.clone().unwrap();
    let s = &ts.schema;
    for stmt in [
        format!("CREATE TABLE \"{s}\".orders (id bigint PRIMARY KEY, total numeric)"),
        format!(
            "CREATE FUNCTION \"{s}\".order_placed() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN PERFORM \"{s}\".add_job('noop', jsonb_build_object('order', NEW.id)); \
             RETURN NEW; END $$"
        ),
        format!(
            "CREATE TRIGGER order_placed AFTER INSERT ON \"{s}\".orders \
             FOR EACH ROW EXECUTE FUNCTION \"{s}\".order_placed()"
        ),
    ] {
        sqlx::query(&stmt).execute(&pg).await.unwrap();
    }
    let mut reg = Registry::with_builtins();
    reg.set_options(
        "noop",
        skiplock::TypeOptions {
            max_attempts: 7,
            ..Default::default()
        },
    )
    .unwrap();
    // The node publishes its registry's policy as it starts.
    let node = sleepy_node(ts.store.clone(), reg).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A plain client, with the default search path: nothing of skiplock's in sight.
    sqlx::query(&format!("INSERT INTO \"{s}\".orders VALUES (42, 9.5)"))
        .execute(&pg)
        .await
        .unwrap();
    let t = Instant::now();
    let ran = wait_until(Duration::from_secs(20), || async {
        ts.counts().await.succeeded == 1
    })
    .await;
    assert!(ran, "the trigger's job never ran");
    println!("trigger's job done {:?} after the insert", t.elapsed());
    node.shutdown(Duration::from_secs(5)).await;
    let (id, target, max): (Uuid, serde_json::Value, i32) = sqlx::query_as(&format!(
        "SELECT id, target, max_attempts FROM \"{s}\".jobs"
    ))
    .fetch_one(&pg)
    .await
    .unwrap();
    assert_eq!(target, json!({"order": 42}));
    assert_eq!(max, 7, "the type's policy applies to SQL inserts too");
    assert_eq!(
        id.get_version_num(),
        7,
        "a time-ordered id, like the binary's"
    );
}

/// `add_job` and `add_jobs`: the policy rule, the batch form, and bad input refused with a
/// clear error that inserts nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sql_functions_apply_the_policy_and_refuse_bad_input() {
    let ts = TestStore::new(Backend::Postgres).await;
    let pg = ts.pg.clone().unwrap();
    let s = &ts.schema;
    let mut reg = Registry::with_builtins();
    reg.set_options(
        "noop",
        skiplock::TypeOptions {
            max_attempts: 7,
            ..Default::default()
        },
    )
    .unwrap();
    ts.store.publish_policy(&reg.policy()).await.unwrap();
    let one = |sql: String| {
        let pg = pg.clone();
        async move { sqlx::query_scalar::<_, Uuid>(&sql).fetch_one(&pg).await }
    };
    let max = |id: Uuid| {
        let store = ts.store.clone();
        async move { store.job(id).await.unwrap().unwrap().max_attempts }
    };
    let a = one(format!("SELECT \"{s}\".add_job('noop', '{{\"a\": 1}}')"))
        .await
        .unwrap();
    assert_eq!(max(a).await, 7);
    let b = one(format!(
        "SELECT \"{s}\".add_job('noop', '{{}}', max_attempts => 2, priority => 3::smallint)"
    ))
    .await
    .unwrap();
    assert_eq!(max(b).await, 2, "a job's own setting wins");
    let c = one(format!("SELECT \"{s}\".add_job('unknown_type')"))
        .await
        .unwrap();
    assert_eq!(max(c).await, 3, "an unknown type gets the default");
    // Time-ordered: the embedded millisecond never goes back (within one millisecond the
    // random bits decide, as for any UUID v7 generated without a shared counter).
    let ms = |id: Uuid| id.get_timestamp().unwrap().to_unix();
    assert!(ms(a) <= ms(b) && ms(b) <= ms(c), "time-ordered ids");
    let many: Vec<Uuid> = sqlx::query_scalar(&format!(
        "SELECT * FROM \"{s}\".add_jobs('noop', ARRAY['1', '2', '3']::jsonb[])"
    ))
    .fetch_all(&pg)
    .await
    .unwrap();
    assert_eq!(many.len(), 3);
    for id in &many {
        assert_eq!(max(*id).await, 7);
    }
    // The queue: the job's own, else its type's (published policy), else `default`; every
    // older call (positional, named) still works.
    let mut reg = Registry::with_builtins();
    reg.set_queue("sleep", "slow-lane").unwrap();
    ts.store.publish_policy(&reg.policy()).await.unwrap();
    let queue = |id: Uuid| {
        let store = ts.store.clone();
        async move { store.job(id).await.unwrap().unwrap().queue }
    };
    assert_eq!(queue(a).await, "default");
    let d = one(format!("SELECT \"{s}\".add_job('sleep', '{{}}')"))
        .await
        .unwrap();
    assert_eq!(queue(d).await, "slow-lane", "the type's queue");
    let e = one(format!(
        "SELECT \"{s}\".add_job('sleep', '{{}}', queue => 'media')"
    ))
    .await
    .unwrap();
    assert_eq!(queue(e).await, "media", "the job's own queue wins");
    let f = one(format!(
        "SELECT \"{s}\".add_job('noop', '{{}}', NULL, 0::smallint, NULL, NULL, NULL, NULL, 'media.eu-1')"
    ))
    .await
    .unwrap();
    assert_eq!(
        queue(f).await,
        "media.eu-1",
        "positionally, last (after the unique arguments)"
    );
    let batch: Vec<Uuid> = sqlx::query_scalar(&format!(
        "SELECT * FROM \"{s}\".add_jobs('sleep', ARRAY['1', '2']::jsonb[], queue => 'bulk')"
    ))
    .fetch_all(&pg)
    .await
    .unwrap();
    assert_eq!(queue(batch[1]).await, "bulk");
    let before = ts.counts().await;
    for (bad, why) in [
        (format!("SELECT \"{s}\".add_job('a b')"), "invalid job type"),
        (format!("SELECT \"{s}\".add_job('')"), "invalid job type"),
        (
            format!("SELECT \"{s}\".add_job('x''); DROP TABLE \"{s}\".jobs; --')"),
            "invalid job type",
        ),
        (format!("SELECT \"{s}\".add_job(NULL)"), "invalid job type"),
        (
            format!("SELECT \"{s}\".add_job('{}')", "t".repeat(201)),
            "invalid job type",
        ),
        (
            format!("SELECT \"{s}\".add_job('noop', NULL)"),
            "must not be NULL",
        ),
        (
            format!("SELECT \"{s}\".add_job('noop', '{{}}', max_attempts => 0)"),
            "max_attempts",
        ),
        (
            format!("SELECT \"{s}\".add_jobs('noop', ARRAY['1', NULL]::jsonb[])"),
            "must not contain NULL",
        ),
        (
            format!("SELECT \"{s}\".add_job('noop', 'not json')"),
            "json",
        ),
        (
            format!("SELECT \"{s}\".add_job('noop', queue => '')"),
            "invalid queue",
        ),
        (
            format!("SELECT \"{s}\".add_job('noop', queue => 'a b')"),
            "invalid queue",
        ),
        (
            format!("SELECT \"{s}\".add_job('noop', queue => 'x''); DROP TABLE \"{s}\".jobs; --')"),
            "invalid queue",
        ),
        (
            format!(
                "SELECT \"{s}\".add_job('noop', queue => '{}')",
                "q".repeat(100_000)
            ),
            "invalid queue",
        ),
        (
            format!("SELECT * FROM \"{s}\".add_jobs('noop', ARRAY['1']::jsonb[], queue => 'a:b')"),
            "invalid queue",
        ),
    ] {
        let e = sqlx::query(&bad)
            .execute(&pg)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(why), "{bad}: {e}");
    }
    assert_eq!(ts.counts().await, before, "nothing was inserted");
}

/// The listener's connection is cut: it reconnects, listens again and claims at once, so a
/// job inserted afterwards still runs without any poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_listener_reconnects_after_its_connection_is_cut() {
    let app = common::unique("skt_app");
    let schema = common::unique("skt");
    let store = PgStore::connect(&common::cluster::pg_url_named(&app), &schema, 12)
        .await
        .unwrap();
    skiplock::Store::migrate(&store).await.unwrap();
    let pg = store.pool().clone();
    let store: Arc<dyn skiplock::Store> = Arc::new(store);
    let ts = TestStore {
        store: store.clone(),
        backend: Backend::Postgres,
        url: common::pg_url(),
        schema: schema.clone(),
        pg: Some(pg.clone()),
        sqlite: None,
        dir: None,
    };
    let node = sleepy_node(store.clone(), Registry::with_builtins()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let admin = sqlx::PgPool::connect(&common::pg_url()).await.unwrap();
    let cut: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND query ILIKE 'LISTEN%') t",
    )
    .bind(&app)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(cut, 1, "one listening connection per node");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let elsewhere = Client::new(store.clone(), Arc::new(MemoryQueue::default()));
    let id = elsewhere
        .submit(NewJob::new("noop", json!({})))
        .await
        .unwrap();
    let took = wait_succeeded(&ts, id).await;
    assert!(took.is_some(), "no wake-up after the listener was cut");
    println!("after the cut, claimed in {:?}", took.unwrap());
    node.shutdown(Duration::from_secs(5)).await;
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
}

/// A claim reads the head of its queue in the pending jobs' partial index and stops: its cost
/// does not grow with the finished rows (nor with the planner's statistics about them), nor
/// with the jobs waiting in other queues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_reads_the_same_few_pages_however_much_history_there_is() {
    let ts = TestStore::new(Backend::Postgres).await;
    let pg = ts.pg.clone().unwrap();
    let s = &ts.schema;
    let claim = format!(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM \"{s}\".jobs \
         WHERE status = 'pending' AND queue = 'default' AND type = ANY('{{noop,sleep}}') \
         AND run_at <= now() \
         ORDER BY priority DESC, run_at, id LIMIT 100 FOR UPDATE SKIP LOCKED"
    );
    let fill_in = |status: &'static str, queue: &'static str, n: i64| {
        let pg = pg.clone();
        let sql = format!(
            "INSERT INTO \"{s}\".jobs (id, type, target, status, finished_at, queue) \
             SELECT \"{s}\".uuid_v7(), 'noop', '{{}}', '{status}', \
             CASE WHEN '{status}' = 'pending' THEN NULL ELSE now() END, '{queue}' \
             FROM generate_series(1, $1::bigint)"
        );
        async move { sqlx::query(&sql).bind(n).execute(&pg).await.unwrap() }
    };
    let fill = |status: &'static str, n: i64| fill_in(status, "default", n);
    let pages = |plan: serde_json::Value| -> (i64, String) {
        let p = &plan[0]["Plan"];
        let hit = p["Shared Hit Blocks"].as_i64().unwrap_or(0);
        let read = p["Shared Read Blocks"].as_i64().unwrap_or(0);
        (hit + read, plan.to_string())
    };
    fill("pending", 1_000).await;
    sqlx::query(&format!("ANALYZE \"{s}\".jobs"))
        .execute(&pg)
        .await
        .unwrap();
    let mut tx = pg.begin().await.unwrap();
    let small: serde_json::Value = sqlx::query_scalar(&claim)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    fill("succeeded", 200_000).await;
    // Older, more urgent-looking work in another queue: a claim of `default` never reads it.
    fill_in("pending", "media", 100_000).await;
    // Statistics taken while nothing was pending: what a healthy queue looks like to ANALYZE.
    sqlx::query(&format!("ANALYZE \"{s}\".jobs"))
        .execute(&pg)
        .await
        .unwrap();
    let mut tx = pg.begin().await.unwrap();
    let big: serde_json::Value = sqlx::query_scalar(&claim)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let ((small_pages, _), (big_pages, big_plan)) = (pages(small), pages(big));
    println!("pages read by a claim: {small_pages} with 1,000 rows, {big_pages} with 201,000");
    assert!(big_plan.contains("jobs_queue_due_idx"), "{big_plan}");
    assert!(!big_plan.contains("Seq Scan"), "{big_plan}");
    assert!(
        big_pages <= small_pages * 2 + 10,
        "a claim read {big_pages} pages over the history, {small_pages} without: {big_plan}"
    );
}
