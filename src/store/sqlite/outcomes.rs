//! A chunk's outcomes, written in one statement (and, in the common case, sent with the
//! chunk's commit in one message).

use sqlx::SqliteConnection;
use uuid::Uuid;

use super::sql;
use crate::error::Result;
use crate::store::{split_deleted, Outcome};

/// The outcomes as the JSON rows [`sql::RECORD_OUTCOMES`] reads:
/// `[[id, status, error, delay_ms, took_ms], …]`.
fn rows(outcomes: &[Outcome]) -> String {
    let rows: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|o| {
            serde_json::json!([
                o.id().to_string(),
                o.status().as_str(),
                o.error(),
                o.delay_ms(),
                o.took_ms()
            ])
        })
        .collect();
    serde_json::Value::from(rows).to_string()
}

/// The rows for [`sql::RECORD_OUTCOMES_AND_COMMIT`], when no outcome deletes its row (a
/// success kept for zero time); `None` sends the chunk through [`record_outcomes`].
pub(super) fn plain_outcomes(outcomes: &[Outcome]) -> Option<String> {
    let deletes = outcomes
        .iter()
        .any(|o| matches!(o, Outcome::SucceededDeleted { .. }));
    (!deletes).then(|| rows(outcomes))
}

/// Writes a chunk's outcomes in one statement; only rows still pending change.
pub(super) async fn record_outcomes(
    conn: &mut SqliteConnection,
    outcomes: &[Outcome],
    node_id: &str,
) -> Result<u64> {
    let (gone, kept) = split_deleted(outcomes);
    let mut n = 0;
    if !gone.is_empty() {
        let ids: Vec<String> = gone.iter().map(Uuid::to_string).collect();
        let deleted = sqlx::query(sql::DELETE_SUCCEEDED)
            .bind(serde_json::Value::from(ids).to_string())
            .execute(&mut *conn)
            .await?
            .rows_affected();
        sqlx::query(sql::COUNT_COMPLETIONS)
            .bind(deleted as i64)
            .execute(&mut *conn)
            .await?;
        sqlx::query(sql::PRUNE_COMPLETIONS)
            .execute(&mut *conn)
            .await?;
        n += deleted;
    }
    if kept.is_empty() {
        return Ok(n);
    }
    Ok(n + sqlx::query(sql::RECORD_OUTCOMES)
        .bind(rows(&kept))
        .bind(node_id)
        .execute(conn)
        .await?
        .rows_affected())
}
