//! Helpers for the many-node tests: `skiplock worker` child processes, a private
//! `redis-server` that a test may flush, stop and restart, and the `effect` job type whose
//! rows prove exactly-once. Nothing here touches anything the test did not start itself.
#![allow(dead_code)]

use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::{bin, pg_url, unique, TestStore};

/// A `redis-server` of the test's own, on a free loopback port, without persistence.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut r = PrivateRedis { port, child: None };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cmd(&["PING"]).is_err() {
            assert!(Instant::now() < deadline, "private redis did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server: every connection to it drops at once, as in a crash.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs one command on this server (only this one: it is the test's own).
    pub fn cmd(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let client = redis::Client::open(self.url())?;
        let mut conn = client.get_connection_with_timeout(Duration::from_secs(1))?;
        let mut c = redis::cmd(args[0]);
        for a in &args[1..] {
            c.arg(*a);
        }
        c.query(&mut conn)
    }

    pub fn zcard(&self, key: &str) -> i64 {
        match self.cmd(&["ZCARD", key]) {
            Ok(redis::Value::Int(n)) => n,
            other => panic!("ZCARD {key}: {other:?}"),
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One `skiplock worker` child process; its log (stderr) goes to a file the test can read.
pub struct NodeProc {
    child: Option<Child>,
    args: Vec<String>,
    log: PathBuf,
    pub starts: usize,
}

impl NodeProc {
    /// Starts `skiplock [global args] worker [worker args]`.
    pub fn start(dir: &Path, name: &str, args: Vec<String>) -> NodeProc {
        let mut n = NodeProc {
            child: None,
            args,
            log: dir.join(format!("{name}.log")),
            starts: 0,
        };
        n.restart();
        n
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(bin())
            .args(&self.args)
            .env("SKIPLOCK_LOG", "info,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.starts += 1;
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL: no shutdown, no goodbye; its transactions die with its connections.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a signal (`-STOP`, `-CONT`, …) with `kill`.
    #[allow(dead_code)]
    pub fn signal(&self, sig: &str) {
        let pid = self.pid().expect("running").to_string();
        let ok = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    /// Still running (not exited on its own)?
    pub fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A PostgreSQL URL whose connections carry `app`, so a test can cut exactly its own nodes'
/// connections and no one else's.
pub fn pg_url_named(app: &str) -> String {
    let base = pg_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}application_name={app}")
}

/// Terminates every backend whose application_name is `app` (the test's nodes only).
/// Returns how many were cut.
pub async fn cut_connections(pg: &PgPool, app: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND pid <> pg_backend_pid()) t",
    )
    .bind(app)
    .fetch_one(pg)
    .await
    .unwrap()
}

/// The `effect` job type: one row in `{schema}.effects` per run that commits. The table has
/// no unique key on purpose, so a duplicate shows up in a count instead of an error.
pub async fn effect_setup(ts: &TestStore, dir: &Path, extra_sql: &[&str]) -> PathBuf {
    let pg = ts.pg.as_ref().unwrap();
    let s = &ts.schema;
    sqlx::query(&format!(
        "CREATE TABLE \"{s}\".effects (job_id uuid NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())"
    ))
    .execute(pg)
    .await
    .unwrap();
    let mut stmts: Vec<String> = extra_sql.iter().map(|x| format!("{x:?}")).collect();
    stmts.push(format!("\"INSERT INTO {s}.effects(job_id) VALUES ($1)\""));
    let config = dir.join("skiplock.toml");
    std::fs::write(
        &config,
        format!(
            "[types.effect]\nsql = [{}]\nmax_attempts = 25\nbackoff_ms = 100\n",
            stmts.join(", ")
        ),
    )
    .unwrap();
    config
}

/// `(effect rows, distinct jobs with an effect)`.
pub async fn effect_counts(pg: &PgPool, schema: &str) -> (i64, i64) {
    sqlx::query_as(&format!(
        "SELECT count(*), count(DISTINCT job_id) FROM \"{schema}\".effects"
    ))
    .fetch_one(pg)
    .await
    .unwrap()
}

/// Jobs by status: `(pending, succeeded, failed)`.
pub async fn status_counts(pg: &PgPool, schema: &str) -> (i64, i64, i64) {
    sqlx::query_as(&format!(
        "SELECT count(*) FILTER (WHERE status = 'pending'), \
         count(*) FILTER (WHERE status = 'succeeded'), \
         count(*) FILTER (WHERE status = 'failed') FROM \"{schema}\".jobs"
    ))
    .fetch_one(pg)
    .await
    .unwrap()
}

/// Everything a test's cluster shares: its store, Redis URL and prefix, DB application name.
pub struct ClusterArgs {
    pub schema: String,
    pub redis_url: String,
    pub prefix: String,
    pub app: String,
    pub config: Option<PathBuf>,
}

impl ClusterArgs {
    pub fn new(ts: &TestStore, redis_url: String) -> ClusterArgs {
        ClusterArgs {
            schema: ts.schema.clone(),
            redis_url,
            prefix: unique("skt"),
            app: unique("skt_app"),
            config: None,
        }
    }

    /// Global flags for a child: the named database URL, schema, Redis (unless the cluster
    /// runs on PostgreSQL alone: an empty Redis URL), prefix, config.
    pub fn global(&self) -> Vec<String> {
        let mut v = vec![
            "--database-url".into(),
            pg_url_named(&self.app),
            "--schema".into(),
            self.schema.clone(),
        ];
        if !self.redis_url.is_empty() {
            v.extend([
                "--redis-url".into(),
                self.redis_url.clone(),
                "--redis-prefix".into(),
                self.prefix.clone(),
            ]);
        }
        if let Some(c) = &self.config {
            v.push("--config".into());
            v.push(c.display().to_string());
        }
        v
    }

    /// `worker` with short intervals so faults heal within the test's deadlines.
    pub fn worker(&self, concurrency: usize, chunk: usize) -> Vec<String> {
        let mut v = self.global();
        v.extend(
            [
                "worker",
                "--no-migrate",
                "--concurrency",
                &concurrency.to_string(),
                "--chunk-size",
                &chunk.to_string(),
                "--heartbeat-ms",
                "300",
                "--reconcile-ms",
                "300",
                "--node-timeout-ms",
                "2000",
                "--grace-secs",
                "5",
            ]
            .map(String::from),
        );
        v
    }

    /// `worker` serving these named queues (`default=8,bulk=2`) instead of `--concurrency`.
    #[allow(dead_code)]
    pub fn worker_queues(&self, queues: &str, chunk: usize) -> Vec<String> {
        let mut v = self.worker(1, chunk);
        let at = v.iter().position(|a| a == "--concurrency").unwrap();
        v[at] = "--queues".into();
        v[at + 1] = queues.into();
        v
    }

    /// The queue the nodes use, for submitting from the test.
    pub async fn queue(&self) -> skiplock::queue::redis::RedisQueue {
        skiplock::queue::redis::RedisQueue::connect(&self.redis_url, &self.prefix)
            .await
            .unwrap()
    }
}

impl Drop for ClusterArgs {
    /// Leaves no keys behind in a shared Redis (a private one dies with its test anyway).
    fn drop(&mut self) {
        if let Ok(mut c) = redis::Client::open(self.redis_url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
        {
            let _: redis::RedisResult<()> = redis::cmd("DEL")
                .arg(format!("{}:queue", self.prefix))
                .query(&mut c);
        }
    }
}

/// `skiplock watch --json` writing to a file; returns once it is subscribed.
pub async fn watch(
    c: &ClusterArgs,
    dir: &std::path::Path,
    extra: &[&str],
) -> (Child, std::path::PathBuf) {
    let out = dir.join("watch.jsonl");
    let err = dir.join("watch.err");
    let child = Command::new(bin())
        .args(c.global())
        .args(["watch", "--json"])
        .args(extra)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        super::wait_until(Duration::from_secs(30), || async {
            std::fs::read_to_string(&err)
                .unwrap_or_default()
                .contains("watching")
        })
        .await,
        "watch did not subscribe: {}",
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    (child, out)
}

/// The events `watch` printed so far.
pub fn events(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

pub fn statuses_of(evs: &[serde_json::Value], job: uuid::Uuid) -> Vec<String> {
    evs.iter()
        .filter(|e| e["job_id"] == job.to_string())
        .map(|e| e["status"].as_str().unwrap().to_string())
        .collect()
}
