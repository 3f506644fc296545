//! No processor escapes its attempt (DESIGN invariant 5): a job that breaks, ends or takes
//! over its transaction, leaves session state behind, or returns an error the database
//! cannot store is charged and recorded like any other failure, and its chunk-mates run
//! exactly once. Each test runs a real node against a real store; the ones that apply to
//! both stores run on both.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::{Backend, TestStore};
use serde_json::json;
use skiplock::config::FileConfig;
use skiplock::processor::SqlProcessor;
use skiplock::queue::memory::MemoryQueue;
use skiplock::queue::Queue;
use skiplock::{
    Client, Job, JobStatus, JobTx, NewJob, Node, ProcessError, Processor, Registry, TypeOptions,
};

/// Writes one effect row in the job's transaction.
struct Effect {
    table: String,
}

#[async_trait]
impl Processor for Effect {
    async fn process(&self, job: &Job, tx: &mut JobTx<'_>) -> Result<(), ProcessError> {
        let sql = format!("INSERT INTO {} (job_id) VALUES ($1)", self.table);
        tx.execute(&sql, job).await?;
        Ok(())
    }
}

/// Runs one statement on the raw connection inside its savepoint, as a careless Rust
/// processor could: the statement reaches the database unchecked.
struct Raw {
    stmt: &'static str,
}

#[async_trait]
impl Processor for Raw {
    async fn process(&self, _job: &Job, tx: &mut JobTx<'_>) -> Result<(), ProcessError> {
        match tx.postgres().await {
            Ok(c) => {
                sqlx::query(self.stmt).execute(c).await?;
            }
            Err(_) => {
                sqlx::query(self.stmt).execute(tx.sqlite().await?).await?;
            }
        }
        Ok(())
    }
}

/// Asks the checked path, `JobTx::execute`, to run a statement.
struct Checked {
    stmt: &'static str,
}

#[async_trait]
impl Processor for Checked {
    async fn process(&self, job: &Job, tx: &mut JobTx<'_>) -> Result<(), ProcessError> {
        tx.execute(self.stmt, job).await?;
        Ok(())
    }
}

fn options(max_attempts: i32) -> TypeOptions {
    TypeOptions {
        max_attempts,
        timeout: Duration::from_secs(10),
        backoff: Duration::from_millis(10),
        ..TypeOptions::default()
    }
}

/// Four effect jobs ahead of `culprit` in its chunk and four behind it (by priority), all
/// submitted before the node starts so that one chunk of ten takes them together.
async fn run_chunk_with(
    ts: &TestStore,
    culprit: impl Processor,
    max_attempts: i32,
) -> (Vec<Job>, Job) {
    let table = ts.create_effects().await;
    let mut reg = Registry::with_builtins();
    reg.register("effect", Effect { table }, options(3))
        .unwrap();
    reg.register("culprit", culprit, options(max_attempts))
        .unwrap();
    let queue: Arc<dyn Queue> = Arc::new(MemoryQueue::default());
    ts.store.publish_policy(&reg.policy()).await.unwrap();
    let client = Client::new(ts.store.clone(), queue.clone());
    let mut jobs: Vec<NewJob> = (0..4)
        .map(|i| NewJob::new("effect", json!({ "before": i })).priority(10))
        .collect();
    jobs.push(NewJob::new("culprit", json!({})).priority(5));
    jobs.extend((0..4).map(|i| NewJob::new("effect", json!({ "after": i }))));
    let ids = client.submit_many(&jobs).await.unwrap();
    let node = Node::builder(ts.store.clone(), queue)
        .registry(reg)
        .concurrency(1)
        .chunk_size(10)
        .start()
        .await
        .unwrap();
    let finished = ts.wait_all_finished(Duration::from_secs(30)).await;
    node.shutdown(Duration::from_secs(5)).await;
    let mut all = Vec::new();
    for id in &ids {
        all.push(ts.store.job(*id).await.unwrap().unwrap());
    }
    assert!(finished, "jobs left pending: {all:#?}");
    let culprit = all.remove(4);
    (all, culprit)
}

/// Effect rows per job.
async fn effects_by_job(ts: &TestStore) -> HashMap<String, i64> {
    let rows: Vec<(String, i64)> = match ts.backend {
        Backend::Postgres => sqlx::query_as(&format!(
            "SELECT job_id::text, count(*) FROM {}.effects GROUP BY 1",
            ts.schema
        ))
        .fetch_all(ts.pg.as_ref().unwrap())
        .await
        .unwrap(),
        Backend::Sqlite => sqlx::query_as("SELECT job_id, count(*) FROM effects GROUP BY 1")
            .fetch_all(ts.sqlite.as_ref().unwrap())
            .await
            .unwrap(),
    };
    rows.into_iter().collect()
}

/// Every effect job succeeded on its first attempt, with exactly one effect row.
async fn mates_ran_exactly_once(ts: &TestStore, mates: &[Job]) {
    let effects = effects_by_job(ts).await;
    for j in mates {
        assert_eq!(
            (j.status, j.attempts),
            (JobStatus::Succeeded, 1),
            "chunk-mate {}: {:?}",
            j.id,
            j.last_error
        );
        assert_eq!(effects.get(&j.id.to_string()), Some(&1), "{}", j.id);
    }
    assert_eq!(effects.len(), mates.len(), "no effect of the culprit's");
}

/// A job that breaks its transaction (kills its own connection, or rolls the transaction
/// back under the executor) is charged each time, ends `failed` once its attempts are spent,
/// and its chunk-mates run exactly once.
async fn a_job_that_breaks_its_transaction_is_charged_and_its_mates_run_once(b: Backend) {
    let stmts: &[&'static str] = match b {
        Backend::Postgres => &["SELECT pg_terminate_backend(pg_backend_pid())", "ROLLBACK"],
        Backend::Sqlite => &["ROLLBACK"],
    };
    for stmt in stmts {
        let ts = TestStore::new(b).await;
        let (mates, culprit) = run_chunk_with(&ts, Raw { stmt }, 2).await;
        assert_eq!(
            (culprit.status, culprit.attempts),
            (JobStatus::Failed, 2),
            "{stmt}: {:?}",
            culprit.last_error
        );
        let err = culprit.last_error.unwrap_or_default();
        assert!(err.contains("broke its transaction"), "{stmt}: {err}");
        mates_ran_exactly_once(&ts, &mates).await;
    }
}

/// A job that commits its chunk's transaction itself fails at once; the chunk-mates whose
/// writes its COMMIT made stand keep their outcomes, the others run: each exactly once.
async fn a_job_that_commits_its_chunk_fails_and_its_mates_run_once(b: Backend) {
    let ts = TestStore::new(b).await;
    let (mates, culprit) = run_chunk_with(&ts, Raw { stmt: "COMMIT" }, 3).await;
    assert_eq!(
        (culprit.status, culprit.attempts),
        (JobStatus::Failed, 1),
        "{:?}",
        culprit.last_error
    );
    let err = culprit.last_error.unwrap_or_default();
    assert!(
        err.contains("committed the job's transaction itself"),
        "{err}"
    );
    mates_ran_exactly_once(&ts, &mates).await;
}

/// Statements that would end or take over the transaction are refused before they run:
/// through `JobTx::execute` the job fails at once with the reason, and a `sql` type that
/// lists one is refused when the configuration loads.
async fn transaction_control_is_refused_before_it_runs(b: Backend) {
    let ts = TestStore::new(b).await;
    let (mates, culprit) = run_chunk_with(
        &ts,
        Checked {
            stmt: "/* sneaky */ commit",
        },
        3,
    )
    .await;
    assert_eq!((culprit.status, culprit.attempts), (JobStatus::Failed, 1));
    let err = culprit.last_error.unwrap_or_default();
    assert!(err.contains("may not run COMMIT"), "{err}");
    mates_ran_exactly_once(&ts, &mates).await;

    for stmt in [
        "COMMIT",
        "rollback",
        "BEGIN",
        "PREPARE TRANSACTION 'x'",
        "LISTEN x",
    ] {
        let toml = format!("[types.t]\nsql = [\"SELECT 1\", \"{stmt}\"]\n");
        let e = FileConfig::parse(&toml)
            .unwrap()
            .registry()
            .err()
            .unwrap_or_else(|| panic!("{stmt} was accepted"));
        assert!(e.to_string().contains("may not run"), "{stmt}: {e}");
    }
}

/// A processor error the database cannot store (a NUL byte, from a command's stderr) is
/// recorded with the byte made visible, not left to break the outcome update.
async fn an_error_with_a_nul_byte_is_recorded(b: Backend) {
    let ts = TestStore::new(b).await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("nul.sh");
    std::fs::write(&script, "#!/bin/sh\nprintf 'bad\\000byte' >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let toml = format!(
        "[types.nul]\ncommand = [\"{}\"]\nmax_attempts = 1\n",
        script.display()
    );
    let reg = FileConfig::parse(&toml).unwrap().registry().unwrap();
    let queue: Arc<dyn Queue> = Arc::new(MemoryQueue::default());
    let node = Node::builder(ts.store.clone(), queue.clone())
        .registry(reg.clone())
        .start()
        .await
        .unwrap();
    ts.store.publish_policy(&reg.policy()).await.unwrap();
    let client = Client::new(ts.store.clone(), queue);
    let ids = client
        .submit_many(&[NewJob::new("nul", json!(1)), NewJob::new("noop", json!(2))])
        .await
        .unwrap();
    let finished = ts.wait_all_finished(Duration::from_secs(20)).await;
    node.shutdown(Duration::from_secs(5)).await;
    assert!(finished);
    let j = ts.store.job(ids[0]).await.unwrap().unwrap();
    assert_eq!((j.status, j.attempts), (JobStatus::Failed, 1));
    let err = j.last_error.unwrap_or_default();
    assert!(err.contains("bad\\0byte"), "{err:?}");
    let other = ts.store.job(ids[1]).await.unwrap().unwrap();
    assert_eq!(other.status, JobStatus::Succeeded);
}

/// The server-side time limit ends a runaway statement first, so the failure is written in
/// the same transaction on every attempt: no chunk errors, no uncharged passes.
async fn a_timeout_is_charged_on_every_attempt(b: Backend) {
    let ts = TestStore::new(b).await;
    let slow = match b {
        Backend::Postgres => "SELECT pg_sleep(5)",
        Backend::Sqlite => {
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c \
             WHERE x < 4000000000) SELECT count(*) FROM c"
        }
    };
    let mut reg = Registry::with_builtins();
    reg.register(
        "slow",
        SqlProcessor::new(vec![slow.into()]).unwrap(),
        TypeOptions {
            max_attempts: 2,
            timeout: Duration::from_millis(500),
            backoff: Duration::from_millis(10),
            ..TypeOptions::default()
        },
    )
    .unwrap();
    let queue: Arc<dyn Queue> = Arc::new(MemoryQueue::default());
    let node = Node::builder(ts.store.clone(), queue.clone())
        .registry(reg.clone())
        .concurrency(1)
        .start()
        .await
        .unwrap();
    ts.store.publish_policy(&reg.policy()).await.unwrap();
    let client = Client::new(ts.store.clone(), queue);
    let id = client.submit(NewJob::new("slow", json!({}))).await.unwrap();
    let finished = ts.wait_all_finished(Duration::from_secs(30)).await;
    node.shutdown(Duration::from_secs(5)).await;
    assert!(finished);
    let j = ts.store.job(id).await.unwrap().unwrap();
    assert_eq!((j.status, j.attempts), (JobStatus::Failed, 2));
    let err = j.last_error.unwrap_or_default();
    // Named by the processor's limit, caused by the server's cancellation of the statement.
    assert!(err.starts_with("timed out after 500 ms: "), "{err}");
    let cause = match b {
        Backend::Postgres => "statement timeout",
        Backend::Sqlite => "interrupted",
    };
    assert!(err.contains(cause), "{err}");
}

for_each_backend!(
    a_job_that_breaks_its_transaction_is_charged_and_its_mates_run_once,
    a_job_that_commits_its_chunk_fails_and_its_mates_run_once,
    transaction_control_is_refused_before_it_runs,
    an_error_with_a_nul_byte_is_recorded,
    a_timeout_is_charged_on_every_attempt,
);

/// Session state a successful job sets does not outlive it: the next jobs on the same pooled
/// connection run with the connection's defaults (PostgreSQL; SQLite refuses PRAGMA).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_settings_and_roles_do_not_leak_into_the_next_job() {
    let ts = TestStore::new(Backend::Postgres).await;
    let pg = ts.pg.clone().unwrap();
    let role = common::unique("skt_role");
    sqlx::query(&format!("CREATE ROLE {role}"))
        .execute(&pg)
        .await
        .unwrap();
    let table = ts.create_effects().await;
    let mut reg = Registry::with_builtins();
    reg.register("effect", Effect { table }, options(1))
        .unwrap();
    let leaks = [
        (
            "readonly",
            "SET default_transaction_read_only = on".to_string(),
        ),
        ("role", format!("SET ROLE {role}")),
        ("auth", format!("SET SESSION AUTHORIZATION {role}")),
    ];
    for (t, stmt) in &leaks {
        reg.register(
            t,
            SqlProcessor::new(vec![stmt.clone()]).unwrap(),
            options(1),
        )
        .unwrap();
    }
    // The role without rights, and then a write: that job fails, for its own reason.
    reg.register(
        "denied",
        SqlProcessor::new(vec![
            format!("SET ROLE {role}"),
            format!("INSERT INTO {}.effects (job_id) VALUES ($1)", ts.schema),
        ])
        .unwrap(),
        options(1),
    )
    .unwrap();
    let queue: Arc<dyn Queue> = Arc::new(MemoryQueue::default());
    ts.store.publish_policy(&reg.policy()).await.unwrap();
    let client = Client::new(ts.store.clone(), queue.clone());
    // One runner, one job per chunk: every job after a leak reuses its connection.
    let mut jobs = Vec::new();
    for (t, _) in &leaks {
        jobs.push(NewJob::new(*t, json!({})).priority(10));
        jobs.push(NewJob::new("effect", json!({})).priority(9));
    }
    jobs.push(NewJob::new("denied", json!({})).priority(8));
    jobs.push(NewJob::new("effect", json!({})).priority(7));
    let ids = client.submit_many(&jobs).await.unwrap();
    let node = Node::builder(ts.store.clone(), queue)
        .registry(reg)
        .concurrency(1)
        .start()
        .await
        .unwrap();
    let finished = ts.wait_all_finished(Duration::from_secs(30)).await;
    node.shutdown(Duration::from_secs(5)).await;
    assert!(finished);
    let mut by_type: HashMap<String, Vec<Job>> = HashMap::new();
    for id in &ids {
        let j = ts.store.job(*id).await.unwrap().unwrap();
        by_type.entry(j.job_type.clone()).or_default().push(j);
    }
    for (t, _) in &leaks {
        let j = &by_type[*t][0];
        assert_eq!(j.status, JobStatus::Succeeded, "{t}: {:?}", j.last_error);
    }
    for j in &by_type["effect"] {
        assert_eq!(j.status, JobStatus::Succeeded, "{:?}", j.last_error);
    }
    let denied = &by_type["denied"][0];
    assert_eq!(denied.status, JobStatus::Failed);
    assert!(
        denied
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("permission denied"),
        "{:?}",
        denied.last_error
    );
    assert_eq!(ts.effects().await, (4, 4));
    sqlx::query(&format!("DROP SCHEMA \"{}\" CASCADE", ts.schema))
        .execute(&pg)
        .await
        .unwrap();
    sqlx::query(&format!("DROP ROLE {role}"))
        .execute(&pg)
        .await
        .unwrap();
}
