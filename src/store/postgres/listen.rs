//! Wake-ups from PostgreSQL itself: the insert trigger (migration 0003) sends one NOTIFY per
//! inserting statement on the channel named for the schema, carrying the earliest `run_at` of
//! its jobs in Unix milliseconds. Idle runners LISTEN (through one connection per node) and
//! claim at once; a job scheduled for later wakes them when it comes due.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tracing::{info, warn};

use crate::error::Result;
use crate::store::Wake;

/// Pause before trying again when the listener cannot reconnect.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// Listens on the schema's channel. The stream yields [`Wake::Now`] for due work, and also
/// after the connection was lost and re-established (anything notified in between was
/// missed, so runners should look right away).
pub(super) async fn wakeups(pool: &PgPool, schema: &str) -> Result<BoxStream<'static, Wake>> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(schema).await?;
    let state = (listener, false);
    Ok(stream::unfold(state, |(mut l, mut down)| async move {
        loop {
            match l.try_recv().await {
                Ok(Some(n)) => {
                    if std::mem::take(&mut down) {
                        info!("listening for new jobs again");
                    }
                    return Some((parse(n.payload()), (l, down)));
                }
                // The connection was lost; the next call reconnects and listens again.
                Ok(None) => return Some((Wake::Now, (l, down))),
                Err(e) => {
                    if !std::mem::replace(&mut down, true) {
                        warn!(error = %e, "lost the LISTEN connection; polling until it is back");
                    }
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
            }
        }
    })
    .boxed())
}

/// A payload is the earliest `run_at` in Unix milliseconds; anything else means "look now".
fn parse(payload: &str) -> Wake {
    match payload
        .parse::<i64>()
        .ok()
        .and_then(DateTime::<Utc>::from_timestamp_millis)
    {
        Some(at) if at > Utc::now() => Wake::At(at),
        _ => Wake::Now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_say_now_or_when() {
        assert_eq!(parse("0"), Wake::Now);
        assert_eq!(parse(""), Wake::Now);
        assert_eq!(parse("garbage"), Wake::Now);
        let later = Utc::now() + chrono::Duration::hours(1);
        assert!(matches!(
            parse(&later.timestamp_millis().to_string()),
            Wake::At(_)
        ));
    }
}
