//! Wake-ups on SQLite: another process's commit (a `skiplock submit` beside the worker) shows
//! as a change of `PRAGMA data_version` on a connection of our own. Checking it costs a few
//! microseconds, so a 50 ms timer finds new work that quickly without a busy loop.

use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};
use sqlx::{SqliteConnection, SqlitePool};

use crate::error::Result;
use crate::store::Wake;

/// How often `data_version` is read.
pub const WATCH_EVERY: Duration = Duration::from_millis(50);

/// A stream that yields [`Wake::Now`] whenever another connection has committed since the
/// last look. It keeps one connection, taken out of the pool for good.
pub(super) async fn wakeups(pool: &SqlitePool) -> Result<BoxStream<'static, Wake>> {
    let mut conn = pool.acquire().await?.detach();
    let first = version(&mut conn).await?;
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    Ok(stream::unfold(
        (conn, first, tick),
        |(mut conn, mut seen, mut tick)| async move {
            loop {
                tick.tick().await;
                // A failed read (the file went away?) is tried again at the next tick.
                if let Ok(v) = version(&mut conn).await {
                    if v != seen {
                        seen = v;
                        return Some((Wake::Now, (conn, seen, tick)));
                    }
                }
            }
        },
    )
    .boxed())
}

async fn version(conn: &mut SqliteConnection) -> Result<i64> {
    Ok(sqlx::query_scalar("PRAGMA data_version")
        .fetch_one(conn)
        .await?)
}
