//! The embedded default as a new user meets it: the `skiplock` binary on a SQLite file in an
//! empty folder, with real child processes, SIGKILL included.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use skiplock::store::JobFilter;
use skiplock::{JobStatus, NewJob};
use uuid::Uuid;

use common::{bin, Backend, TestStore};

/// A `skiplock` command in `dir`, blind to the developer's own SKIPLOCK_* settings.
fn skiplock(dir: &Path) -> Command {
    let mut c = Command::new(bin());
    c.current_dir(dir).env("SKIPLOCK_LOG", "info,sqlx=warn");
    for (k, _) in std::env::vars() {
        if k.starts_with("SKIPLOCK_") && k != "SKIPLOCK_LOG" {
            c.env_remove(k);
        }
    }
    c
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run skiplock");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A worker child with its stderr in `dir/name.log`, for reading after it ends.
fn spawn_worker(dir: &Path, name: &str, args: &[&str]) -> Child {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    skiplock(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn skiplock worker")
}

/// SIGTERM, then the exit status: a clean shutdown must exit 0.
fn stop(mut child: Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "worker exited with {status}");
}

/// Polls `check` every 50 ms until it holds; panics with `what` after `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_then_worker_with_concurrency_8_processes_every_job_without_lock_errors() {
    let dir = tempfile::tempdir().unwrap();
    let n = 3000;
    let lines: String = (0..n).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    std::fs::write(dir.path().join("targets.jsonl"), lines).unwrap();
    // The default URL: ./skiplock.db, created by the first command.
    run(skiplock(dir.path()).args(["submit", "noop", "--file", "targets.jsonl"]));
    assert!(dir.path().join("skiplock.db").exists());
    let worker = spawn_worker(dir.path(), "worker", &["worker", "--concurrency", "8"]);
    let url = format!("sqlite://{}", dir.path().join("skiplock.db").display());
    let store = skiplock::store::connect(&url, "skiplock", 2, None)
        .await
        .unwrap();
    let succeeded = || async {
        let f = JobFilter {
            status: Some(JobStatus::Succeeded),
            limit: 1_000_000,
            ..Default::default()
        };
        store.list_jobs(&f).await.unwrap().len()
    };
    eventually(Duration::from_secs(120), "every job succeeded", || async {
        succeeded().await == n
    })
    .await;
    stop(worker);
    let log = std::fs::read_to_string(dir.path().join("worker.log")).unwrap();
    assert!(log.contains("node started"), "{log}");
    assert!(!log.contains("database is locked"), "{log}");
    assert!(!log.contains("WARN") && !log.contains("ERROR"), "{log}");
    let all = store
        .list_jobs(&JobFilter {
            limit: 1_000_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), n);
    assert!(all.iter().all(|j| j.attempts == 1), "each job ran once");
}

/// The first worker runs `effect` with a statement that never ends, so it is surely mid-job
/// when killed; the second runs the same type without it.
const SLOW_EFFECT: &str = r#"
[types.effect]
sql = [
  "INSERT INTO effects (job) VALUES ($1)",
  "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 4000000000) SELECT count(*) FROM c",
]
"#;
const FAST_EFFECT: &str = r#"
[types.effect]
sql = ["INSERT INTO effects (job) VALUES ($1)"]
"#;

/// Starts a worker on `ts` running SLOW_EFFECT and returns once it is inside job `id`: the
/// job is in a runner's intent record (committed before its transaction opened).
async fn worker_inside_job(ts: &TestStore, dir: &Path, id: Uuid) -> Child {
    std::fs::write(dir.join("slow.toml"), SLOW_EFFECT).unwrap();
    let mut args = vec!["--config".to_string(), "slow.toml".into(), "worker".into()];
    args.extend(ts.cli_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = spawn_worker(dir, "slow", &args);
    let pool = ts.sqlite.clone().unwrap();
    let needle = id.to_string();
    eventually(Duration::from_secs(30), "the worker holds the job", || {
        let (pool, needle) = (pool.clone(), needle.clone());
        async move {
            let held: Vec<String> = sqlx::query_scalar("SELECT ids FROM holds")
                .fetch_all(&pool)
                .await
                .unwrap();
            held.iter().any(|h| h.contains(&needle))
        }
    })
    .await;
    child
}

async fn effects(ts: &TestStore, id: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM effects WHERE job = $1")
        .bind(id.to_string())
        .fetch_one(ts.sqlite.as_ref().unwrap())
        .await
        .unwrap()
}

async fn effects_table(ts: &TestStore) {
    sqlx::query("CREATE TABLE effects (job TEXT NOT NULL)")
        .execute(ts.sqlite.as_ref().unwrap())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_leaves_it_pending_and_a_new_one_finishes_it_once() {
    let ts = TestStore::new(Backend::Sqlite).await;
    effects_table(&ts).await;
    let id = ts
        .store
        .insert_jobs(&[NewJob::new("effect", json!({"order": 7}))])
        .await
        .unwrap()[0];
    let dir = ts.dir.as_ref().unwrap().path().to_path_buf();
    let mut slow = worker_inside_job(&ts, &dir, id).await;
    slow.kill().unwrap(); // SIGKILL: no rollback, no goodbye
    slow.wait().unwrap();

    let j = ts.store.job(id).await.unwrap().unwrap();
    assert_eq!((j.status, j.attempts), (JobStatus::Pending, 0));
    assert_eq!(
        effects(&ts, id).await,
        0,
        "the killed attempt's insert rolled back"
    );

    std::fs::write(dir.join("fast.toml"), FAST_EFFECT).unwrap();
    let mut args = vec!["--config".to_string(), "fast.toml".into(), "worker".into()];
    args.extend(ts.cli_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let fast = spawn_worker(&dir, "fast", &args);
    eventually(Duration::from_secs(30), "the job succeeded", || async {
        ts.store.job(id).await.unwrap().unwrap().status == JobStatus::Succeeded
    })
    .await;
    stop(fast);
    let j = ts.store.job(id).await.unwrap().unwrap();
    assert_eq!(j.attempts, 1, "the killed attempt left no trace");
    assert_eq!(effects(&ts, id).await, 1, "exactly one committed effect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_kills_its_worker_is_caught_as_poison() {
    let ts = TestStore::new(Backend::Sqlite).await;
    effects_table(&ts).await;
    let id = ts
        .store
        .insert_jobs(&[NewJob::new("effect", json!({})).max_attempts(1)])
        .await
        .unwrap()[0];
    let dir = ts.dir.as_ref().unwrap().path().to_path_buf();
    let mut slow = worker_inside_job(&ts, &dir, id).await;
    slow.kill().unwrap();
    slow.wait().unwrap();
    // No heartbeat could be written while the job held SQLite's write lock; the intent
    // recorded before its transaction is what convicts it once the node is found dead.
    let deadline = Instant::now() + Duration::from_secs(10);
    let rescued = loop {
        let r = ts
            .store
            .rescue_abandoned(Duration::from_millis(500))
            .await
            .unwrap();
        if r.dead_nodes == 1 {
            break r;
        }
        assert!(Instant::now() < deadline, "the dead node was never found");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((rescued.retried, rescued.failed), (0, 1));
    let j = ts.store.job(id).await.unwrap().unwrap();
    assert_eq!((j.status, j.attempts), (JobStatus::Failed, 1));
    assert!(j.last_error.unwrap().contains("abandoned"));
    assert_eq!(effects(&ts, id).await, 0);
}

#[test]
fn demo_in_an_empty_folder_exits_zero_and_prints_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(skiplock(dir.path()).arg("demo"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for want in [
        "sqlite://skiplock.db",
        "TYPE",
        "thumbnails",
        "monthly-reports",
        "crm-webhooks",
        "speed",
        "submitted 100000 no-op jobs in one batch",
        "processed 100000 no-op jobs in",
        "NODE",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    let line = |t: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{t} ")))
            .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>())
            .unwrap_or_else(|| panic!("no {t} row in:\n{stdout}"))
    };
    // PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED
    // The sample's 300 and the speed batch's 100,000.
    assert_eq!(line("noop"), ["0", "0", "100300", "0", "0"]);
    assert_eq!(line("sleep"), ["0", "0", "12", "0", "0"]);
    assert_eq!(line("fail"), ["0", "0", "0", "8", "0"]);
    assert!(dir.path().join("skiplock.db").exists());
}

#[test]
fn redis_with_a_sqlite_store_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let out = skiplock(dir.path())
        .args(["--redis-url", "redis://127.0.0.1:6379", "worker"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("need PostgreSQL"), "{err}");
    assert!(
        !dir.path().join("skiplock.db").exists(),
        "refused before opening anything"
    );
}

#[test]
fn status_and_jobs_in_an_empty_folder_report_nothing_rather_than_fail() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["status"],
        vec!["jobs", "list"],
        vec!["status", "--json"],
    ] {
        let out = std::process::Command::new(common::bin())
            .args(&args)
            .current_dir(dir.path())
            .env_remove("SKIPLOCK_DATABASE_URL")
            .env_remove("SKIPLOCK_CONFIG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(dir.path().join("skiplock.db").exists());
}
