//! Upgrades: a database created by the first release's schema and its hand-written migrator
//! (the `migrations` table, heartbeats carrying a `held` list) is migrated forward by sqlx's
//! migrator with its jobs intact, and then runs them. The fixtures are that release's
//! 0001 files, byte for byte.

mod common;

use std::sync::Arc;
use std::time::Duration;

use skiplock::queue::memory::MemoryQueue;
use skiplock::store::postgres::PgStore;
use skiplock::store::sqlite::SqliteStore;
use skiplock::{Client, JobStatus, Node, Store};
use sqlx::Executor as _;
use uuid::Uuid;

const LEGACY_PG: &str = include_str!("fixtures/legacy_postgres_0001.sql");
const LEGACY_SQLITE: &str = include_str!("fixtures/legacy_sqlite_0001.sql");

/// Runs the node until no job is pending, then checks every job succeeded exactly once.
async fn run_all(store: Arc<dyn Store>, ids: &[Uuid]) {
    let queue = Arc::new(MemoryQueue::default());
    let node = Node::builder(store.clone(), queue.clone())
        .concurrency(2)
        .start()
        .await
        .unwrap();
    node.reconcile().await.unwrap();
    let done = common::wait_until(Duration::from_secs(20), || {
        let store = store.clone();
        async move {
            store
                .report(Duration::from_secs(10))
                .await
                .map(|r| r.types.iter().all(|t| t.pending == 0 && t.running == 0))
                .unwrap_or(false)
        }
    })
    .await;
    node.shutdown(Duration::from_secs(5)).await;
    assert!(done, "the legacy jobs never ran");
    for id in ids {
        let j = store.job(*id).await.unwrap().unwrap();
        assert_eq!((j.status, j.attempts), (JobStatus::Succeeded, 1), "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_schema_from_the_first_release_is_upgraded_with_its_jobs() {
    let schema = common::unique("skt");
    let admin = sqlx::PgPool::connect(&common::pg_url()).await.unwrap();
    let s = format!("\"{schema}\"");
    // What the first release's migrator did: the schema, its bookkeeping table, then 0001.
    admin
        .execute(
            format!(
                "CREATE SCHEMA {s}; CREATE TABLE {s}.migrations (version integer PRIMARY KEY, \
                 applied_at timestamptz NOT NULL DEFAULT now()); \
                 INSERT INTO {s}.migrations (version) VALUES (1);"
            )
            .as_str(),
        )
        .await
        .unwrap();
    admin
        .execute(LEGACY_PG.replace("{s}", &s).as_str())
        .await
        .unwrap();
    let ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
    sqlx::query(&format!(
        "INSERT INTO {s}.jobs (id, type, target) SELECT u, 'noop', '{{\"legacy\": true}}' \
         FROM unnest($1::uuid[]) AS u"
    ))
    .bind(&ids)
    .execute(&admin)
    .await
    .unwrap();
    sqlx::query(&format!(
        "INSERT INTO {s}.nodes (id, host, pid, concurrency, held) VALUES ('old', 'h', 1, 1, $1)"
    ))
    .bind(&ids[..1])
    .execute(&admin)
    .await
    .unwrap();

    let store = PgStore::connect(&common::pg_url(), &schema, 8)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.unwrap(); // a second run is a no-op
    let versions: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT version FROM {s}._sqlx_migrations ORDER BY version"
    ))
    .fetch_all(&admin)
    .await
    .unwrap();
    assert_eq!(versions, shipped(sqlx::migrate!("migrations/postgres")));
    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name = 'nodes' AND column_name = 'held'",
    )
    .bind(&schema)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(held, 0, "heartbeats no longer carry a held list");
    let old: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables \
         WHERE table_schema = $1 AND table_name = 'migrations'",
    )
    .bind(&schema)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(old, 0, "the old bookkeeping table is gone");
    // Unique jobs (0006), queues (0007), counters (0009) and intents (0010) all stand after
    // every migration, and 0012 left one `add_job` / `add_jobs` / `insert_job` each.
    let names = |sql: &'static str| {
        let admin = admin.clone();
        let schema = schema.clone();
        async move {
            sqlx::query_scalar::<_, String>(sql)
                .bind(&schema)
                .fetch_all(&admin)
                .await
                .unwrap()
        }
    };
    let indexes = names("SELECT indexname::text FROM pg_indexes WHERE schemaname = $1").await;
    for want in ["jobs_unique_open_idx", "jobs_queue_due_idx"] {
        assert!(indexes.iter().any(|i| i == want), "{want}: {indexes:?}");
    }
    assert!(!indexes.iter().any(|i| i == "jobs_due_idx"), "{indexes:?}");
    let triggers = names(
        "SELECT t.tgname::text FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = 'jobs' \
         AND NOT t.tgisinternal",
    )
    .await;
    for want in [
        "jobs_forget_unique_key",
        "jobs_count_insert",
        "jobs_count_update",
        "jobs_count_delete",
    ] {
        assert!(triggers.iter().any(|t| t == want), "{want}: {triggers:?}");
    }
    let tables = names("SELECT tablename::text FROM pg_tables WHERE schemaname = $1").await;
    for want in ["unique_keys", "cron", "counts", "intents"] {
        assert!(tables.iter().any(|t| t == want), "{want}: {tables:?}");
    }
    let mut funcs = names(
        "SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname = $1 AND p.proname IN ('add_job', 'add_jobs', 'insert_job')",
    )
    .await;
    funcs.sort();
    assert_eq!(funcs, ["add_job", "add_jobs", "insert_job"], "one of each");
    let store: Arc<dyn Store> = Arc::new(store);
    let j = store.job(ids[0]).await.unwrap().unwrap();
    assert_eq!(j.target, serde_json::json!({"legacy": true}));
    run_all(store.clone(), &ids).await;
    // And new jobs go in as before.
    let client = Client::new(store.clone(), Arc::new(MemoryQueue::default()));
    client
        .submit(skiplock::NewJob::new("noop", serde_json::json!(1)))
        .await
        .unwrap();
    admin
        .execute(format!("DROP SCHEMA {s} CASCADE").as_str())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_file_from_the_first_release_is_upgraded_with_its_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    let ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
    {
        let legacy = SqliteStore::connect(&url, 2).await.unwrap();
        let pool = legacy.pool();
        pool.execute(
            "CREATE TABLE migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL \
             DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))); \
             INSERT INTO migrations (version) VALUES (1);",
        )
        .await
        .unwrap();
        pool.execute(LEGACY_SQLITE).await.unwrap();
        for id in &ids {
            sqlx::query(
                "INSERT INTO jobs (id, type, target) VALUES ($1, 'noop', '{\"legacy\":1}')",
            )
            .bind(id.to_string())
            .execute(pool)
            .await
            .unwrap();
        }
        sqlx::query(
            "INSERT INTO nodes (id, host, pid, concurrency, held) VALUES ('old', 'h', 1, 1, $1)",
        )
        .bind(format!("[\"{}\"]", ids[0]))
        .execute(pool)
        .await
        .unwrap();
    }
    let store = SqliteStore::connect(&url, 4).await.unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(versions, shipped(sqlx::migrate!("migrations/sqlite")));
    let held: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pragma_table_info('nodes') WHERE name = 'held'")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(held, 0);
    let objects: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master")
        .fetch_all(store.pool())
        .await
        .unwrap();
    for want in [
        "jobs_unique_open_idx",
        "jobs_forget_unique_key",
        "jobs_queue_due_idx",
        "jobs_count_insert",
        "unique_keys",
        "counts",
    ] {
        assert!(objects.iter().any(|o| o == want), "{want}: {objects:?}");
    }
    assert!(!objects.iter().any(|o| o == "jobs_due_idx"), "{objects:?}");
    let store: Arc<dyn Store> = Arc::new(store);
    run_all(store, &ids).await;
}

/// Every migration the binary ships, by version: an upgrade applies all of them.
fn shipped(m: sqlx::migrate::Migrator) -> Vec<i64> {
    m.iter().map(|m| m.version).collect()
}
