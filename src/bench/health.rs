//! What a long run watches besides speed: the size of `jobs` and its indexes, the dead tuples
//! vacuum has yet to reclaim (in `jobs` and in the intent records), the age of the
//! oldest open transaction (which holds back what vacuum may reclaim), and this process's
//! resident memory.

use serde::Serialize;
use sqlx::PgPool;

use crate::error::Result;

/// One reading of the database's side.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct TableHealth {
    /// `pg_total_relation_size` of `jobs`: heap, indexes and TOAST.
    pub jobs_total_mib: f64,
    /// `pg_indexes_size` of `jobs`.
    pub jobs_indexes_mib: f64,
    /// `n_dead_tup` of `jobs` in `pg_stat_user_tables` (the statistics lag by up to a second).
    pub jobs_dead_tuples: i64,
    /// The same for the intent records, which every chunk writes and heartbeats prune:
    /// `intents`, plus `holds` (where a node of the previous release still writes them).
    pub intents_dead_tuples: i64,
    /// Seconds since the oldest client session's transaction still open in this database
    /// began, other than the one reading it (0 when none is open). Autovacuum's own
    /// transactions are left out, as `skiplock status` leaves them out: a vacuum of a large
    /// `jobs` runs for seconds, and is not what holds the table's dead rows back.
    pub oldest_xact_secs: f64,
}

/// One statement, so the figures are read at one moment.
const HEALTH: &str = "\
SELECT pg_total_relation_size(format('%I.jobs', $1::text)::regclass)::float8 / 1048576.0,
       pg_indexes_size(format('%I.jobs', $1::text)::regclass)::float8 / 1048576.0,
       coalesce((SELECT n_dead_tup FROM pg_stat_user_tables
                  WHERE schemaname = $1 AND relname = 'jobs'), 0)::int8,
       coalesce((SELECT sum(n_dead_tup) FROM pg_stat_user_tables
                  WHERE schemaname = $1 AND relname IN ('intents', 'holds')), 0)::int8,
       coalesce((SELECT extract(epoch FROM max(now() - xact_start)) FROM pg_stat_activity
                  WHERE pid <> pg_backend_pid() AND datname = current_database()
                    AND backend_type = 'client backend' AND xact_start IS NOT NULL), 0)::float8";

pub async fn read(pool: &PgPool, schema: &str) -> Result<TableHealth> {
    let (total, indexes, dead, dead_intents, oldest): (f64, f64, i64, i64, f64) =
        sqlx::query_as(HEALTH).bind(schema).fetch_one(pool).await?;
    Ok(TableHealth {
        jobs_total_mib: total,
        jobs_indexes_mib: indexes,
        jobs_dead_tuples: dead,
        intents_dead_tuples: dead_intents,
        oldest_xact_secs: oldest.max(0.0),
    })
}

/// This process's resident set (VmRSS) in MiB, or `None` where /proc has no such line.
pub fn own_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
}
