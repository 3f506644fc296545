//! Test harness shared by the integration tests. Every test gets its own PostgreSQL schema
//! (or SQLite file) and, where it uses Redis, its own key prefix, so the suite runs in
//! parallel with no TRUNCATE and no global lock. Nothing here mocks a service.
#![allow(dead_code)]

pub mod cluster;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skiplock::store::postgres::PgStore;
use skiplock::store::sqlite::SqliteStore;
use skiplock::store::Store;

/// The PostgreSQL the suite talks to.
pub fn pg_url() -> String {
    std::env::var("SKIPLOCK_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The Redis the suite talks to.
pub fn redis_url() -> String {
    std::env::var("SKIPLOCK_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A fresh name: `prefix_` and 12 hex digits. Test schemas start with `skt_` so the test
/// script can sweep leftovers of killed runs.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Which store a conformance test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    /// A fresh database file in a temporary folder.
    Sqlite,
}

/// A store in its own schema, migrated, plus what a child process needs to reach it.
pub struct TestStore {
    pub store: Arc<dyn Store>,
    pub backend: Backend,
    /// `--database-url` for a child `skiplock` process.
    pub url: String,
    /// `--schema` for a child process.
    pub schema: String,
    /// A direct pool for assertions (PostgreSQL).
    pub pg: Option<sqlx::PgPool>,
    /// A direct pool for assertions (SQLite).
    pub sqlite: Option<sqlx::SqlitePool>,
    /// Keeps a SQLite store's folder alive.
    pub dir: Option<tempfile::TempDir>,
}

impl TestStore {
    pub async fn new(backend: Backend) -> TestStore {
        Self::with_pool(backend, 24).await
    }

    pub async fn with_pool(backend: Backend, pool: u32) -> TestStore {
        match backend {
            Backend::Postgres => {
                let schema = unique("skt");
                let s = PgStore::connect(&pg_url(), &schema, pool)
                    .await
                    .expect("PostgreSQL must be running (scripts/test starts it)");
                s.migrate().await.expect("migrate");
                let pg = s.pool().clone();
                TestStore {
                    store: Arc::new(s),
                    backend,
                    url: pg_url(),
                    schema,
                    pg: Some(pg),
                    sqlite: None,
                    dir: None,
                }
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("skiplock.db").display());
                let s = SqliteStore::connect(&url, pool).await.expect("open SQLite");
                s.migrate().await.expect("migrate");
                let sqlite = s.pool().clone();
                TestStore {
                    store: Arc::new(s),
                    backend,
                    url,
                    schema: "skiplock".into(),
                    pg: None,
                    sqlite: Some(sqlite),
                    dir: Some(dir),
                }
            }
        }
    }

    /// A second store on the same database and schema, with connections of its own: what
    /// another node's process has. Dropping it is that process dying (its connections, and
    /// on PostgreSQL its heartbeat session, close with it).
    #[allow(dead_code)]
    pub async fn peer(&self) -> Arc<dyn Store> {
        match self.backend {
            Backend::Postgres => Arc::new(
                PgStore::connect(&self.url, &self.schema, 2)
                    .await
                    .expect("connect a peer"),
            ),
            Backend::Sqlite => Arc::new(
                SqliteStore::connect(&self.url, 2)
                    .await
                    .expect("open a peer"),
            ),
        }
    }

    /// The arguments a child `skiplock` needs to use this store.
    pub fn cli_args(&self) -> Vec<String> {
        vec![
            "--database-url".into(),
            self.url.clone(),
            "--schema".into(),
            self.schema.clone(),
        ]
    }

    /// Jobs by status over every type, from the store's own report.
    pub async fn counts(&self) -> skiplock::report::TypeCounts {
        let r = self.store.report(Duration::from_secs(10)).await.unwrap();
        let mut t = skiplock::report::TypeCounts::default();
        for c in r.types {
            t.pending += c.pending;
            t.running += c.running;
            t.succeeded += c.succeeded;
            t.failed += c.failed;
            t.cancelled += c.cancelled;
        }
        t
    }

    /// Counts by two columns, read from `jobs` (`{t}` in `q`) by a query returning
    /// `(text, text, count)` rows.
    pub async fn count_pairs(&self, q: &str) -> std::collections::BTreeMap<(String, String), i64> {
        let rows: Vec<(String, String, i64)> = match self.backend {
            Backend::Postgres => {
                let t = format!("\"{}\".jobs", self.schema);
                sqlx::query_as(&q.replace("{t}", &t))
                    .fetch_all(self.pg.as_ref().unwrap())
                    .await
                    .unwrap()
            }
            Backend::Sqlite => sqlx::query_as(&q.replace("{t}", "jobs"))
                .fetch_all(self.sqlite.as_ref().unwrap())
                .await
                .unwrap(),
        };
        rows.into_iter().map(|(a, b, n)| ((a, b), n)).collect()
    }

    /// A full count of `jobs` by (type, status): what the report's kept counts must say.
    pub async fn counted_by_type(&self) -> std::collections::BTreeMap<(String, String), i64> {
        self.count_pairs("SELECT type, status, count(*) FROM {t} GROUP BY 1, 2")
            .await
    }

    /// The report's counts by (type, status), zeros left out: what a full `GROUP BY type,
    /// status` count of the table should say.
    pub async fn counts_by_type(&self) -> std::collections::BTreeMap<(String, String), i64> {
        let r = self.store.report(Duration::from_secs(10)).await.unwrap();
        let mut out = std::collections::BTreeMap::new();
        for c in r.types {
            for (status, n) in [
                ("pending", c.pending),
                ("running", c.running),
                ("succeeded", c.succeeded),
                ("failed", c.failed),
                ("cancelled", c.cancelled),
            ] {
                if n != 0 {
                    out.insert((c.job_type.clone(), status.to_string()), n);
                }
            }
        }
        out
    }

    /// Jobs with one status, over every type.
    pub async fn count_status(&self, status: &str) -> i64 {
        let c = self.counts().await;
        match status {
            "pending" => c.pending,
            "succeeded" => c.succeeded,
            "failed" => c.failed,
            "cancelled" => c.cancelled,
            other => panic!("unknown status {other}"),
        }
    }

    /// Waits until no job is pending or running; false on timeout.
    pub async fn wait_all_finished(&self, timeout: Duration) -> bool {
        wait_until(timeout, || async {
            let c = self.counts().await;
            c.pending == 0 && c.running == 0
        })
        .await
    }

    /// Creates a table recording one row per processor effect; returns its qualified name.
    pub async fn create_effects(&self) -> String {
        match self.backend {
            Backend::Postgres => {
                let t = format!("{}.effects", self.schema);
                sqlx::query(&format!("CREATE TABLE {t} (job_id uuid NOT NULL)"))
                    .execute(self.pg.as_ref().unwrap())
                    .await
                    .unwrap();
                t
            }
            Backend::Sqlite => {
                sqlx::query("CREATE TABLE effects (job_id text NOT NULL)")
                    .execute(self.sqlite.as_ref().unwrap())
                    .await
                    .unwrap();
                "effects".to_string()
            }
        }
    }

    /// (rows, distinct job ids) in the effects table.
    pub async fn effects(&self) -> (i64, i64) {
        match self.backend {
            Backend::Postgres => sqlx::query_as(&format!(
                "SELECT count(*), count(DISTINCT job_id) FROM {}.effects",
                self.schema
            ))
            .fetch_one(self.pg.as_ref().unwrap())
            .await
            .unwrap(),
            Backend::Sqlite => {
                sqlx::query_as("SELECT count(*), count(DISTINCT job_id) FROM effects")
                    .fetch_one(self.sqlite.as_ref().unwrap())
                    .await
                    .unwrap()
            }
        }
    }
}

/// Polls `check` until it returns true or `timeout` passes. Returns whether it did.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `skiplock` binary built for this test run.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_skiplock"))
}

/// Runs each listed `async fn name(backend: Backend)` once per store backend, as
/// `postgres::name` and `sqlite::name`, so one suite covers every backend.
#[macro_export]
macro_rules! for_each_backend {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )*
        }
    };
}

/// The scope of a test's runner slot: the `default` queue and every type the tests submit.
#[allow(dead_code)]
pub fn scope() -> skiplock::store::Scope {
    scope_of(
        "default",
        &[
            "alpha", "beta", "bad", "culprit", "denied", "effect", "fail", "fine", "forever",
            "hook", "later", "long", "noop", "nul", "other", "panics", "poison", "sleep", "slow",
            "thumbs", "x", "t",
        ],
    )
}

/// A runner slot's scope: one queue, these types.
#[allow(dead_code)]
pub fn scope_of(queue: &str, types: &[&str]) -> skiplock::store::Scope {
    skiplock::store::Scope {
        queue: queue.to_string(),
        types: types
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .into(),
    }
}
