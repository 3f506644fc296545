//! The raw limit on SQLite: the statements skiplock's SQLite store runs for an enqueue and for
//! a chunk (insert; lock, update, commit), driven straight through SQLite with rusqlite on one
//! connection (for the enqueue, both row by row and as the store's own bulk statement), prepared once, with the store's settings (WAL, `synchronous = NORMAL`). No
//! async runtime, no connection thread, no queue, no processor, no events: what SQLite itself
//! allows on this machine, measured in the same run as skiplock's figures.

use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use uuid::Uuid;

use crate::error::{Error, Result};

/// The store's clock expression (see `store::sqlite`): timestamps as fixed-width text.
macro_rules! now {
    () => {
        "strftime('%Y-%m-%d %H:%M:%f', 'now')"
    };
}

const INSERT_BATCH_ROW: &str = concat!(
    "INSERT INTO batches (id, name, type, total, created_at) VALUES (?1, NULL, 'noop', ?2, ",
    now!(),
    ")"
);

/// One row of a batch, as the store's bulk insert writes it; the time (`?4`) read once for
/// the batch, as the store's one statement per chunk reads it once.
const INSERT_JOB: &str = "INSERT INTO jobs (id, type, target, max_attempts, run_at, priority, \
    batch_id, queue, created_at, updated_at) VALUES (?1, 'noop', ?2, 3, ?4, 0, ?3, 'default', ?4, ?4)";

/// The store's own bulk insert (one statement per 5,000 rows, `[[id, target], …]` read with
/// `json_each`), with the batch's options as literals.
const INSERT_BULK: &str = concat!(
    "INSERT INTO jobs (id, type, target, max_attempts, run_at, priority, batch_id, queue, ",
    "created_at, updated_at) SELECT value ->> 0, 'noop', value ->> 1, 3, ",
    now!(),
    ", 0, ?2, 'default', ",
    now!(),
    ", ",
    now!(),
    " FROM json_each(?1) ORDER BY key"
);

/// Rows per bulk statement, as the store's `INSERT_CHUNK`.
const BULK_ROWS: usize = 5_000;

/// The store's lock: the popped IDs that are still pending and due, inside `BEGIN IMMEDIATE`.
const LOCK: &str = concat!(
    "SELECT id FROM jobs WHERE id IN (SELECT value FROM json_each(?1)) ",
    "AND status = 'pending' AND run_at <= ",
    now!()
);

/// The success outcome, for the rows the lock returned.
const COMPLETE: &str = concat!(
    "UPDATE jobs SET status = 'succeeded', attempts = attempts + 1, finished_at = ",
    now!(),
    ", updated_at = ",
    now!(),
    ", node_id = 'raw' WHERE id IN (SELECT value FROM json_each(?1)) AND status = 'pending'"
);

fn open(path: &str) -> Result<Connection> {
    let conn = Connection::open(path).map_err(sqlite)?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
        .map_err(sqlite)?;
    conn.busy_timeout(Duration::from_secs(60)).map_err(sqlite)?;
    Ok(conn)
}

fn sqlite(e: rusqlite::Error) -> Error {
    Error::Invalid(format!("raw SQLite: {e}"))
}

/// Inserts `n` `noop` jobs of one batch in one transaction of prepared inserts. Returns the
/// time from `BEGIN` to the commit.
pub fn enqueue(path: &str, n: usize) -> Result<Duration> {
    let mut conn = open(path)?;
    let started = Instant::now();
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sqlite)?;
    let batch = Uuid::now_v7().to_string();
    tx.execute(INSERT_BATCH_ROW, params![batch, n as i64])
        .map_err(sqlite)?;
    {
        let mut insert = tx.prepare_cached(INSERT_JOB).map_err(sqlite)?;
        let target = serde_json::json!({}).to_string();
        let now: String = tx
            .query_row(concat!("SELECT ", now!()), [], |r| r.get(0))
            .map_err(sqlite)?;
        for _ in 0..n {
            insert
                .execute(params![Uuid::now_v7().to_string(), target, batch, now])
                .map_err(sqlite)?;
        }
    }
    tx.commit().map_err(sqlite)?;
    Ok(started.elapsed())
}

/// Inserts `n` `noop` jobs of one batch in one transaction with the store's own bulk
/// statement. Returns the time from building the first rows to the commit.
pub fn enqueue_bulk(path: &str, n: usize) -> Result<Duration> {
    let mut conn = open(path)?;
    let started = Instant::now();
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sqlite)?;
    let batch = Uuid::now_v7().to_string();
    tx.execute(INSERT_BATCH_ROW, params![batch, n as i64])
        .map_err(sqlite)?;
    {
        let mut insert = tx.prepare_cached(INSERT_BULK).map_err(sqlite)?;
        let target = serde_json::json!({}).to_string();
        let mut left = n;
        while left > 0 {
            let rows: Vec<(String, &str)> = (0..left.min(BULK_ROWS))
                .map(|_| (Uuid::now_v7().to_string(), target.as_str()))
                .collect();
            left -= rows.len();
            let rows = serde_json::to_string(&rows).map_err(|e| Error::Invalid(e.to_string()))?;
            insert.execute(params![rows, batch]).map_err(sqlite)?;
        }
    }
    tx.commit().map_err(sqlite)?;
    Ok(started.elapsed())
}

/// Locks and completes `ids`, `chunk` jobs per transaction, one connection. Returns the
/// elapsed time.
pub fn process(path: &str, ids: &[Uuid], chunk: usize) -> Result<Duration> {
    let mut conn = open(path)?;
    let started = Instant::now();
    for part in ids.chunks(chunk.max(1)) {
        let popped = serde_json::to_string(part).map_err(|e| Error::Invalid(e.to_string()))?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sqlite)?;
        let locked: Vec<String> = {
            let mut lock = tx.prepare_cached(LOCK).map_err(sqlite)?;
            let rows = lock.query_map([&popped], |r| r.get(0)).map_err(sqlite)?;
            rows.collect::<std::result::Result<_, _>>()
                .map_err(sqlite)?
        };
        let locked = serde_json::to_string(&locked).map_err(|e| Error::Invalid(e.to_string()))?;
        tx.prepare_cached(COMPLETE)
            .map_err(sqlite)?
            .execute([&locked])
            .map_err(sqlite)?;
        tx.commit().map_err(sqlite)?;
    }
    Ok(started.elapsed())
}
