//! Unique jobs on SQLite: the same rules as PostgreSQL's `insert_job` function, in Rust, in
//! the store's one write transaction (so a key's check and its job's insert cannot race).

use std::collections::HashMap;
use std::time::Duration;

use sqlx::{Row, SqliteConnection};
use uuid::Uuid;

use super::rows::{fmt_time, modifier, uuid};
use super::sql;
use crate::error::{Error, Result};
use crate::job::{validate_unique_key, Inserted, NewJob};

/// A type's published uniqueness, as the store reads it back.
#[derive(Debug, Default)]
pub(super) struct Unique {
    fields: Option<Vec<String>>,
    window: Option<Duration>,
}

/// The unique policies of `types` that have one.
pub(super) async fn policies(
    conn: &mut SqliteConnection,
    types: &[&str],
) -> Result<HashMap<String, Unique>> {
    let rows = sqlx::query(sql::UNIQUE_POLICIES)
        .bind(serde_json::to_string(types).unwrap_or_default())
        .fetch_all(conn)
        .await?;
    let mut out = HashMap::new();
    for r in rows {
        let fields: Option<String> = r.try_get(1)?;
        let fields = match fields {
            Some(f) => Some(serde_json::from_str(&f).map_err(|e| {
                Error::Database(sqlx::Error::Decode(format!("unique_fields: {e}").into()))
            })?),
            None => None,
        };
        let ms: Option<i64> = r.try_get(2)?;
        out.insert(
            r.try_get(0)?,
            Unique {
                fields,
                window: ms.map(|m| Duration::from_millis(m.max(0) as u64)),
            },
        );
    }
    Ok(out)
}

impl Unique {
    /// Whether a job takes the keyed insert: it has a key, or its type derives one.
    pub(super) fn keyed(p: Option<&Unique>, j: &NewJob) -> bool {
        j.unique_key.is_some() || p.is_some_and(|p| p.fields.is_some())
    }
}

/// The key a type derives from a target: the JSON array of its fields' values. A target
/// that is not an object, or lacks a field, is refused.
pub(super) fn derive_key(
    job_type: &str,
    fields: &[String],
    target: &serde_json::Value,
) -> Result<String> {
    let obj = target.as_object().ok_or_else(|| {
        Error::Invalid(format!(
            "type {job_type} makes its unique key from target fields {fields:?}, so its target must be a JSON object"
        ))
    })?;
    let mut vals = Vec::with_capacity(fields.len());
    for f in fields {
        match obj.get(f) {
            Some(v) => vals.push(v.clone()),
            None => {
                return Err(Error::Invalid(format!(
                    "target has no field \"{f}\", which type {job_type}'s unique key is made of (fields {fields:?})"
                )))
            }
        }
    }
    Ok(serde_json::Value::Array(vals).to_string())
}

/// Inserts one job that has (or whose type derives) a unique key, or names the job it
/// duplicates: an open one with the key, or, with a window, the key's latest job if it was
/// created within it.
pub(super) async fn insert_keyed(
    conn: &mut SqliteConnection,
    job: &NewJob,
    policy: Option<&Unique>,
    id: Uuid,
    batch_id: Option<Uuid>,
) -> Result<Inserted> {
    let key = match (&job.unique_key, policy.and_then(|p| p.fields.as_deref())) {
        (Some(k), _) => k.clone(),
        (None, Some(fields)) => derive_key(&job.job_type, fields, &job.target)?,
        (None, None) => return Err(Error::Invalid("a keyed insert needs a key".into())),
    };
    validate_unique_key(&key).map_err(Error::Invalid)?;
    let window = job.unique_for.or(policy.and_then(|p| p.window));
    let open: Option<(String, String)> = sqlx::query_as(sql::OPEN_WITH_KEY)
        .bind(&job.job_type)
        .bind(&key)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some((open, queue)) = open {
        return Ok(Inserted {
            id: uuid(open)?,
            duplicate: true,
            queue,
        });
    }
    if let Some(w) = window {
        let recent: Option<(String, String)> = sqlx::query_as(sql::KEY_WITHIN)
            .bind(&job.job_type)
            .bind(&key)
            .bind(modifier(w, -1))
            .fetch_optional(&mut *conn)
            .await?;
        if let Some((recent, queue)) = recent {
            return Ok(Inserted {
                id: uuid(recent)?,
                duplicate: true,
                queue,
            });
        }
    }
    sqlx::query(sql::CLAIM_KEY)
        .bind(&job.job_type)
        .bind(&key)
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    let queue: String = sqlx::query_scalar(sql::INSERT_KEYED_JOB)
        .bind(id.to_string())
        .bind(&job.job_type)
        .bind(job.target.to_string())
        .bind(job.max_attempts)
        .bind(job.run_at.map(fmt_time))
        .bind(job.priority)
        .bind(batch_id.map(|b| b.to_string()))
        .bind(&key)
        .bind(&job.queue)
        .bind(&job.traceparent)
        .fetch_one(&mut *conn)
        .await?;
    Ok(Inserted {
        id,
        duplicate: false,
        queue,
    })
}
