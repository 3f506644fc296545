//! Converting between SQLite's text columns and the model: UUIDs, timestamps and JSON are
//! TEXT in the file (see the migration for why), typed values in Rust.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::job::{Job, JobDetail};
use crate::report::{BatchReport, NodeReport};
use crate::store::decode_status;

/// The stored timestamp format: what `strftime('%Y-%m-%d %H:%M:%f', …)` writes.
const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.3f";

fn decode(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Database(sqlx::Error::Decode(Box::new(e)))
}

pub(super) fn fmt_time(t: DateTime<Utc>) -> String {
    t.format(TIME_FORMAT).to_string()
}

pub(super) fn parse_time(s: &str) -> Result<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .map(|t| t.and_utc())
        .map_err(decode)
}

pub(super) fn uuid(s: String) -> Result<Uuid> {
    Uuid::parse_str(&s).map_err(decode)
}

pub(super) fn time(r: &SqliteRow, col: &str) -> Result<DateTime<Utc>> {
    parse_time(&r.try_get::<String, _>(col)?)
}

pub(super) fn opt_time(r: &SqliteRow, col: &str) -> Result<Option<DateTime<Utc>>> {
    r.try_get::<Option<String>, _>(col)?
        .map(|s| parse_time(&s))
        .transpose()
}

/// A JSON array of canonical UUID strings: how lists of IDs are bound.
pub(super) fn ids_json(ids: &[Uuid]) -> String {
    serde_json::Value::from(ids.iter().map(|i| i.to_string()).collect::<Vec<_>>()).to_string()
}

/// Job types as one JSON array parameter, for `type IN (SELECT value FROM json_each(…))`.
pub(super) fn types_json(types: &[String]) -> String {
    serde_json::Value::from(types.to_vec()).to_string()
}

/// A SQLite date modifier moving `d` in the direction of `sign` (`-1` for the past), in
/// seconds with millisecond precision: `-10.000 seconds`.
pub(super) fn modifier(d: Duration, sign: i8) -> String {
    let s = if sign < 0 { "-" } else { "+" };
    format!("{s}{}.{:03} seconds", d.as_secs(), d.subsec_millis())
}

pub(super) fn job_from_row(r: &SqliteRow) -> Result<Job> {
    let status: String = r.try_get("status")?;
    let target: String = r.try_get("target")?;
    Ok(Job {
        id: uuid(r.try_get("id")?)?,
        job_type: r.try_get("type")?,
        target: serde_json::from_str(&target).map_err(decode)?,
        status: decode_status(&status)?,
        attempts: r.try_get("attempts")?,
        max_attempts: r.try_get("max_attempts")?,
        run_at: time(r, "run_at")?,
        priority: r.try_get("priority")?,
        batch_id: r
            .try_get::<Option<String>, _>("batch_id")?
            .map(uuid)
            .transpose()?,
        queue: r.try_get("queue")?,
        last_error: r.try_get("last_error")?,
        created_at: time(r, "created_at")?,
        updated_at: time(r, "updated_at")?,
        finished_at: opt_time(r, "finished_at")?,
        node_id: r.try_get("node_id")?,
        traceparent: r.try_get("traceparent")?,
    })
}

/// A job and its attempt history (`GET_JOB_DETAIL`'s extra column, JSON text).
pub(super) fn job_detail_from_row(r: &SqliteRow) -> Result<JobDetail> {
    let history = r
        .try_get::<Option<String>, _>("attempt_history")?
        .map(|h| serde_json::from_str(&h))
        .transpose()
        .map_err(decode)?;
    JobDetail::new(job_from_row(r)?, history).map_err(decode)
}

pub(super) fn batch_from_row(r: &SqliteRow) -> Result<BatchReport> {
    Ok(BatchReport {
        id: uuid(r.try_get("id")?)?,
        name: r.try_get("name")?,
        job_type: r.try_get("type")?,
        total: r.try_get("total")?,
        succeeded: r.try_get("succeeded")?,
        failed: r.try_get("failed")?,
        cancelled: r.try_get("cancelled")?,
        pending: 0,
        progress: 0.0,
        created_at: time(r, "created_at")?,
    }
    .derive())
}

pub(super) fn node_from_row(r: &SqliteRow) -> Result<NodeReport> {
    Ok(NodeReport {
        id: r.try_get("id")?,
        host: r.try_get("host")?,
        pid: r.try_get("pid")?,
        concurrency: r.try_get("concurrency")?,
        in_flight: r.try_get("in_flight")?,
        processed: r.try_get("processed")?,
        failed: r.try_get("failed")?,
        started_at: time(r, "started_at")?,
        last_heartbeat: time(r, "last_seen")?,
        queues: serde_json::from_str(&r.try_get::<String, _>("queues")?).map_err(decode)?,
        types: serde_json::from_str(&r.try_get::<String, _>("types")?).map_err(decode)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_at_millisecond_precision_and_sort_as_text() {
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678901Z")
            .unwrap()
            .with_timezone(&Utc);
        let s = fmt_time(t);
        assert_eq!(s, "2026-01-02 03:04:05.678");
        assert_eq!(
            parse_time(&s).unwrap().timestamp_millis(),
            t.timestamp_millis()
        );
        let later = fmt_time(t + chrono::Duration::milliseconds(400));
        assert!(later > s, "{later} should sort after {s}");
    }

    #[test]
    fn modifiers_are_sqlite_seconds() {
        assert_eq!(
            modifier(Duration::from_millis(10_500), -1),
            "-10.500 seconds"
        );
        assert_eq!(modifier(Duration::from_millis(7), 1), "+0.007 seconds");
    }

    #[test]
    fn uuid_v7_text_order_is_creation_order() {
        let ids: Vec<Uuid> = (0..1000).map(|_| Uuid::now_v7()).collect();
        let texts: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        let mut sorted = texts.clone();
        sorted.sort();
        assert_eq!(sorted, texts);
    }
}
