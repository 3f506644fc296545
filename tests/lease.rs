//! Lease mode: long jobs without long transactions. A lease-mode job is claimed in a short
//! transaction (`running`, leased to its node, attempt charged), runs with no transaction
//! open, and is recorded by a short transaction fenced by its attempt and node. These tests
//! use real processes, a real slow HTTP server and the real stores.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::cluster::{pg_url_named, NodeProc};
use common::{wait_until, Backend, TestStore};
use serde_json::json;
use skiplock::config::FileConfig;
use skiplock::queue::memory::MemoryQueue;
use skiplock::store::Outcome;
use skiplock::{Client, JobStatus, NewJob, Node};
use uuid::Uuid;

fn script(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.display().to_string()
}

async fn status_of(ts: &TestStore, id: Uuid) -> (JobStatus, i32) {
    let j = ts.store.job(id).await.unwrap().unwrap();
    (j.status, j.attempts)
}

/// The store's side, on both stores: a lease is claimed in the chunk's transaction, renewed
/// only by its node, rescued once expired, and an outcome from the attempt it replaced is
/// refused.
async fn leases_are_fenced_renewed_and_rescued(b: Backend) {
    let ts = TestStore::new(b).await;
    let id = ts
        .store
        .insert_jobs(&[NewJob::new("sleep", json!({"ms": 1})).max_attempts(2)])
        .await
        .unwrap()[0];
    let mut slot = ts.store.slot("node-a", &common::scope()).await.unwrap();
    let mut locked = slot.lock(&[id]).await.unwrap();
    locked
        .tx
        .lease(&[id], Duration::from_millis(300))
        .await
        .unwrap();
    locked.finish(&[]).await.unwrap();
    assert_eq!(status_of(&ts, id).await, (JobStatus::Running, 1));
    let j = ts.store.job(id).await.unwrap().unwrap();
    assert_eq!(j.node_id.as_deref(), Some("node-a"));
    // Only the owner renews.
    let ttl = Duration::from_millis(300);
    assert!(ts
        .store
        .extend_leases("node-b", &[id], ttl)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        ts.store.extend_leases("node-a", &[id], ttl).await.unwrap(),
        vec![id]
    );
    // A running lease is not rescued; an expired one is, back to pending.
    assert!(ts.store.rescue_expired_leases().await.unwrap().is_empty());
    let rescued = wait_until(Duration::from_secs(10), || async {
        !ts.store.rescue_expired_leases().await.unwrap().is_empty()
    })
    .await;
    assert!(rescued);
    assert_eq!(status_of(&ts, id).await, (JobStatus::Pending, 1));
    // The first attempt's late outcome is refused: its lease is gone.
    let tx = slot.begin().await.unwrap();
    let done = tx
        .finish_leases(&[Outcome::Succeeded { id }], &[1])
        .await
        .unwrap();
    assert!(done.is_empty(), "a stale completion must be refused");
    assert_eq!(status_of(&ts, id).await, (JobStatus::Pending, 1));
    // The second attempt claims it and completes it.
    let mut locked = slot.lock(&[id]).await.unwrap();
    locked.tx.lease(&[id], ttl).await.unwrap();
    locked.finish(&[]).await.unwrap();
    assert_eq!(status_of(&ts, id).await, (JobStatus::Running, 2));
    let tx = slot.begin().await.unwrap();
    let done = tx
        .finish_leases(&[Outcome::Succeeded { id }], &[2])
        .await
        .unwrap();
    assert_eq!(done, vec![id]);
    assert_eq!(status_of(&ts, id).await, (JobStatus::Succeeded, 2));
    // A running lease-mode job can be cancelled; given-back leases return their attempt.
    let other = ts
        .store
        .insert_jobs(&[NewJob::new("sleep", json!({"ms": 1}))])
        .await
        .unwrap()[0];
    let mut locked = slot.lock(&[other]).await.unwrap();
    locked.tx.lease(&[other], ttl).await.unwrap();
    locked.finish(&[]).await.unwrap();
    assert_eq!(
        ts.store.release_leases("node-a", &[other]).await.unwrap(),
        1
    );
    assert_eq!(status_of(&ts, other).await, (JobStatus::Pending, 0));
    let mut locked = slot.lock(&[other]).await.unwrap();
    locked.tx.lease(&[other], ttl).await.unwrap();
    locked.finish(&[]).await.unwrap();
    let c = ts.store.cancel(other).await.unwrap();
    assert_eq!(c.status, JobStatus::Cancelled);
    // A lease-mode failure joins the attempt history, numbered with the attempt its claim
    // charged.
    let third = ts
        .store
        .insert_jobs(&[NewJob::new("sleep", json!({"ms": 1})).max_attempts(1)])
        .await
        .unwrap()[0];
    let mut locked = slot.lock(&[third]).await.unwrap();
    locked.tx.lease(&[third], ttl).await.unwrap();
    locked.finish(&[]).await.unwrap();
    let tx = slot.begin().await.unwrap();
    let failed = Outcome::Failed {
        id: third,
        error: "webhook said 500".into(),
        took: Duration::from_millis(7),
    };
    assert_eq!(
        tx.finish_leases(&[failed], &[1]).await.unwrap(),
        vec![third]
    );
    let d = ts.store.job_detail(third).await.unwrap().unwrap();
    assert_eq!(d.job.status, JobStatus::Failed);
    assert_eq!(d.attempt_history.len(), 1);
    let h = &d.attempt_history[0];
    assert_eq!((h.attempt, h.took_ms), (1, Some(7)));
    assert_eq!(
        (h.error.as_str(), h.outcome.as_str()),
        ("webhook said 500", "failed")
    );
    assert_eq!(h.node.as_deref(), Some("node-a"));
}

/// Several lease-mode jobs run at once on both stores (on SQLite too: the write lock is not
/// held while they run). Each job notes when it started and ended; their runs overlap.
async fn lease_jobs_run_side_by_side(b: Backend) {
    let ts = TestStore::new(b).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("runs.log");
    let cmd = script(
        dir.path(),
        "slow.sh",
        &format!(
            "echo \"start $(date +%s%N)\" >> {l}\nsleep 1\necho \"end $(date +%s%N)\" >> {l}",
            l = log.display()
        ),
    );
    let toml = format!("[types.slow]\ncommand = [\"{cmd}\"]\n");
    let reg = FileConfig::parse(&toml).unwrap().registry().unwrap();
    let queue = Arc::new(MemoryQueue::default());
    let node = Node::builder(ts.store.clone(), queue.clone())
        .registry(reg)
        .concurrency(8)
        .start()
        .await
        .unwrap();
    let client = Client::new(ts.store.clone(), queue);
    let jobs: Vec<NewJob> = (0..8).map(|i| NewJob::new("slow", json!(i))).collect();
    client.submit_many(&jobs).await.unwrap();
    let done = ts.wait_all_finished(Duration::from_secs(60)).await;
    node.shutdown(Duration::from_secs(5)).await;
    assert!(done);
    assert_eq!(ts.counts().await.succeeded, 8);
    // The most runs in progress at one moment, from the start and end marks.
    let text = std::fs::read_to_string(&log).unwrap();
    let mut marks: Vec<(u128, i32)> = text
        .lines()
        .map(|l| {
            let (what, at) = l.split_once(' ').unwrap();
            (at.parse().unwrap(), if what == "start" { 1 } else { -1 })
        })
        .collect();
    marks.sort();
    let (mut now, mut most) = (0, 0);
    for (_, d) in marks {
        now += d;
        most = most.max(now);
    }
    println!("{b:?}: at most {most} of 8 one-second lease jobs ran at once");
    assert!(
        most >= 4,
        "lease jobs did not run side by side: at most {most} at once"
    );
}

for_each_backend!(
    leases_are_fenced_renewed_and_rescued,
    lease_jobs_run_side_by_side,
);

/// 64 slow webhooks at concurrency 64: no session of the node holds a transaction open while
/// they are out, so nothing of skiplock's stops a VACUUM during the run from removing the dead
/// rows another table's churn left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_webhooks_hold_no_transaction_and_vacuum_works_meanwhile() {
    use axum::routing::post;
    let hook = axum::Router::new().route(
        "/slow",
        post(|| async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            "ok"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, hook).await });

    let app = common::unique("skt_app");
    let schema = common::unique("skt");
    let store = skiplock::store::postgres::PgStore::connect(&pg_url_named(&app), &schema, 80)
        .await
        .unwrap();
    skiplock::Store::migrate(&store).await.unwrap();
    let pg = store.pool().clone();
    let store: Arc<dyn skiplock::Store> = Arc::new(store);
    let toml = format!("[types.hook]\nhttp = {{ url = 'http://{addr}/slow' }}\n");
    let reg = FileConfig::parse(&toml).unwrap().registry().unwrap();
    let queue = Arc::new(MemoryQueue::default());
    let node = Node::builder(store.clone(), queue.clone())
        .registry(reg)
        .concurrency(64)
        .start()
        .await
        .unwrap();
    let churn = format!("\"{schema}\".churn");
    sqlx::query(&format!("CREATE TABLE {churn} (id int PRIMARY KEY, n int)"))
        .execute(&pg)
        .await
        .unwrap();
    sqlx::query(&format!(
        "INSERT INTO {churn} SELECT g, 0 FROM generate_series(1, 1000) g"
    ))
    .execute(&pg)
    .await
    .unwrap();
    let jobs: Vec<NewJob> = (0..64).map(|i| NewJob::new("hook", json!(i))).collect();
    Client::new(store.clone(), queue)
        .submit_many(&jobs)
        .await
        .unwrap();
    // Wait until the webhooks are in flight.
    let admin = sqlx::PgPool::connect(&common::pg_url()).await.unwrap();
    let running = wait_until(Duration::from_secs(20), || async {
        sqlx::query_scalar::<_, i64>(&format!(
            "SELECT count(*) FROM \"{schema}\".jobs WHERE status = 'running'"
        ))
        .fetch_one(&admin)
        .await
        .unwrap()
            >= 32
    })
    .await;
    assert!(running, "the webhooks never ran");
    // Churn another table, then VACUUM it while the webhooks are still out.
    sqlx::query(&format!("UPDATE {churn} SET n = n + 1"))
        .execute(&admin)
        .await
        .unwrap();
    // No session of this node holds a transaction open while the webhooks are out: none pins
    // the cluster's xmin horizon. (Sampled a few times over the run.)
    for _ in 0..5 {
        let old_tx: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
             AND xact_start < now() - interval '1 second'",
        )
        .bind(&app)
        .fetch_one(&admin)
        .await
        .unwrap();
        assert_eq!(
            old_tx, 0,
            "a session held a transaction open for over a second"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // So VACUUM can clean up meanwhile (unless some other client of this cluster pins the
    // horizon: the suite's other tests may, so this is reported, not asserted).
    sqlx::query(&format!("VACUUM {churn}"))
        .execute(&admin)
        .await
        .unwrap();
    let dead: i64 = sqlx::query_scalar(
        "SELECT n_dead_tup FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'churn'",
    )
    .bind(&schema)
    .fetch_one(&admin)
    .await
    .unwrap();
    println!("dead rows left in the churned table after VACUUM: {dead}");
    let still: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{schema}\".jobs WHERE status = 'running'"
    ))
    .fetch_one(&admin)
    .await
    .unwrap();
    println!("VACUUM cleaned up while {still} webhooks were still running");
    let ts = TestStore {
        store: store.clone(),
        backend: Backend::Postgres,
        url: common::pg_url(),
        schema: schema.clone(),
        pg: Some(pg.clone()),
        sqlite: None,
        dir: None,
    };
    assert!(ts.wait_all_finished(Duration::from_secs(60)).await);
    node.shutdown(Duration::from_secs(5)).await;
    assert_eq!(ts.counts().await.succeeded, 64);
    server.abort();
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
}

/// A command that takes long on its first attempt and finishes at once after that, noting
/// each run in a file.
fn first_attempt_is_slow(dir: &Path, secs: u32) -> String {
    let runs = dir.join("runs.log");
    script(
        dir,
        "job.sh",
        &format!(
            "echo \"$SKIPLOCK_ATTEMPT $$\" >> {r}\nif [ \"$SKIPLOCK_ATTEMPT\" = 1 ]; then sleep {secs}; fi",
            r = runs.display()
        ),
    )
}

fn worker_args(ts: &TestStore, config: &Path, app: &str) -> Vec<String> {
    vec![
        "--database-url".into(),
        pg_url_named(app),
        "--schema".into(),
        ts.schema.clone(),
        "--config".into(),
        config.display().to_string(),
        "worker".into(),
        "--concurrency".into(),
        "2".into(),
        "--heartbeat-ms".into(),
        "200".into(),
        "--reconcile-ms".into(),
        "200".into(),
        "--node-timeout-ms".into(),
        "1500".into(),
        "--grace-secs".into(),
        "1".into(),
    ]
}

/// kill -9 mid-lease: the job runs again on another node once the lease has expired, with the
/// first attempt counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_mid_lease_loses_the_job_to_another_after_the_deadline() {
    let ts = TestStore::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let cmd = first_attempt_is_slow(dir.path(), 60);
    let config = dir.path().join("skiplock.toml");
    std::fs::write(&config, format!("[types.long]\ncommand = [\"{cmd}\"]\n")).unwrap();
    let app = common::unique("skt_app");
    let mut a = NodeProc::start(dir.path(), "a", worker_args(&ts, &config, &app));
    let id = Client::new(ts.store.clone(), Arc::new(MemoryQueue::default()))
        .submit(NewJob::new("long", json!({})))
        .await
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || async {
            status_of(&ts, id).await == (JobStatus::Running, 1)
        })
        .await,
        "{}",
        a.log()
    );
    a.kill9();
    let mut b = NodeProc::start(dir.path(), "b", worker_args(&ts, &config, &app));
    let done = wait_until(Duration::from_secs(30), || async {
        status_of(&ts, id).await.0 == JobStatus::Succeeded
    })
    .await;
    assert!(done, "{}", b.log());
    let j = ts.store.job(id).await.unwrap().unwrap();
    assert_eq!(j.attempts, 2, "the killed attempt counts");
    assert!(
        j.last_error.unwrap_or_default().contains("lease expired"),
        "the rescue says why"
    );
    b.kill9();
}

/// A node paused past its lease (SIGSTOP) loses the job to another node; resumed (SIGCONT),
/// its late outcome is refused, logged and counted, and the job ends once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_node_cannot_overwrite_the_attempt_that_replaced_it() {
    let ts = TestStore::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let cmd = first_attempt_is_slow(dir.path(), 3);
    let config = dir.path().join("skiplock.toml");
    std::fs::write(&config, format!("[types.long]\ncommand = [\"{cmd}\"]\n")).unwrap();
    let app = common::unique("skt_app");
    let mut a = NodeProc::start(dir.path(), "a", worker_args(&ts, &config, &app));
    let id = Client::new(ts.store.clone(), Arc::new(MemoryQueue::default()))
        .submit(NewJob::new("long", json!({})))
        .await
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || async {
            status_of(&ts, id).await == (JobStatus::Running, 1)
        })
        .await
    );
    a.signal("-STOP");
    let mut b = NodeProc::start(dir.path(), "b", worker_args(&ts, &config, &app));
    let replaced = wait_until(Duration::from_secs(30), || async {
        status_of(&ts, id).await == (JobStatus::Succeeded, 2)
    })
    .await;
    a.signal("-CONT");
    assert!(
        replaced,
        "{:?} {:?}\n{}",
        status_of(&ts, id).await,
        ts.store.job(id).await.unwrap().unwrap().last_error,
        b.log()
    );
    // A resumes: it learns it lost the lease (renewing it) or tries to record the first
    // attempt's outcome: either way it is refused and logged, and nothing is overwritten.
    let refused = wait_until(Duration::from_secs(30), || async {
        let log = a.log();
        log.contains("outcome refused") || log.contains("lease lost")
    })
    .await;
    assert!(refused, "{}", a.log());
    assert_eq!(status_of(&ts, id).await, (JobStatus::Succeeded, 2));
    let runs = std::fs::read_to_string(dir.path().join("runs.log")).unwrap();
    let attempts: HashMap<&str, usize> = runs.lines().fold(HashMap::new(), |mut m, l| {
        *m.entry(l.split(' ').next().unwrap()).or_default() += 1;
        m
    });
    assert_eq!(attempts.get("1"), Some(&1));
    assert_eq!(attempts.get("2"), Some(&1));
    a.kill9();
    b.kill9();
}

/// Cancelling a running lease-mode job stops its processor (a command's whole process group)
/// and records `cancelled`, which the node does not overwrite.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelling_a_running_lease_job_stops_its_command() {
    let ts = TestStore::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let cmd = script(
        dir.path(),
        "forever.sh",
        &format!("echo $$ > {}\nexec sleep 60", pidfile.display()),
    );
    let toml = format!("[types.forever]\ncommand = [\"{cmd}\"]\n");
    let reg = FileConfig::parse(&toml).unwrap().registry().unwrap();
    let queue = Arc::new(MemoryQueue::default());
    let mut config = skiplock::NodeConfig::default();
    config.heartbeat.interval = Duration::from_millis(200);
    let node = Node::builder(ts.store.clone(), queue.clone())
        .registry(reg)
        .config(config)
        .start()
        .await
        .unwrap();
    let id = Client::new(ts.store.clone(), queue)
        .submit(NewJob::new("forever", json!({})))
        .await
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || async { pidfile.exists() }).await,
        "the command never started"
    );
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    let c = ts.store.cancel(id).await.unwrap();
    assert_eq!(c.status, JobStatus::Cancelled);
    // Gone, or a zombie waiting to be reaped: either way no longer running.
    let gone = wait_until(Duration::from_secs(10), || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let running = stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'));
        async move { !running }
    })
    .await;
    assert!(gone, "the cancelled job's command is still running");
    node.shutdown(Duration::from_secs(5)).await;
    assert_eq!(status_of(&ts, id).await.0, JobStatus::Cancelled);
}
