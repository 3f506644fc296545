//! The raw limit: the SQL one job costs (lock with SKIP LOCKED, update, commit) driven straight
//! through the driver, with none of skiplock's machinery: no queue, no pool, no processor,
//! no events, and no count triggers (the report's counts are skiplock's cost, not the
//! database's). skiplock's rates are reported as a fraction of these.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::error::Result;

/// Locks and completes `ids` with `concurrency` connections, `chunk` jobs per transaction.
/// Returns the elapsed time.
pub async fn run(
    url: &str,
    schema: &str,
    ids: Vec<Uuid>,
    concurrency: usize,
    chunk: usize,
) -> Result<Duration> {
    // The status guard written as skiplock's own lock writes it (see `store::postgres::sql`):
    // written plainly, the planner may scan the whole pending index for every chunk once
    // its statistics call that index empty, and the "limit" would measure that instead.
    let lock = format!(
        "SELECT id FROM \"{schema}\".jobs WHERE id = ANY($1) AND (status = 'pending') IS TRUE \
         AND run_at <= now() FOR UPDATE SKIP LOCKED"
    );
    let update = format!(
        "UPDATE \"{schema}\".jobs SET status = 'succeeded', attempts = attempts + 1, \
         finished_at = clock_timestamp(), updated_at = clock_timestamp() WHERE id = ANY($1)"
    );
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicUsize::new(0));
    let mut conns = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        conns.push(PgConnection::connect(url).await?);
    }
    let started = Instant::now();
    let mut set = JoinSet::new();
    for mut conn in conns {
        let (ids, next, lock, update) = (ids.clone(), next.clone(), lock.clone(), update.clone());
        set.spawn(async move {
            loop {
                let from = next.fetch_add(chunk, Ordering::Relaxed);
                if from >= ids.len() {
                    break;
                }
                let part = &ids[from..(from + chunk).min(ids.len())];
                let mut tx = conn.begin().await?;
                let locked: Vec<Uuid> = sqlx::query_scalar(&lock)
                    .bind(part)
                    .fetch_all(&mut *tx)
                    .await?;
                sqlx::query(&update).bind(&locked).execute(&mut *tx).await?;
                tx.commit().await?;
            }
            Ok::<_, crate::error::Error>(())
        });
    }
    while let Some(r) = set.join_next().await {
        r.map_err(|e| crate::error::Error::Invalid(format!("raw bench task failed: {e}")))??;
    }
    Ok(started.elapsed())
}
