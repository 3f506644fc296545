//! The Redis queue for many nodes: one sorted set of job IDs per named queue (`{prefix}:queue`
//! for `default`, `{prefix}:queue:NAME` for the others), scored so that the lowest score is
//! the highest priority and, within a priority, the oldest job. A runner pops only the set of
//! the queue it serves; the names other than `default` are kept in the set `{prefix}:queues`
//! (added once per process and name), for the depth.
//!
//! - `push` is one `ZADD NX` per named queue in the slice (nearly always one: one round
//!   trip), and an ID already queued is
//!   neither added twice nor moved. The score is the priority, then the job's age read from
//!   its UUIDv7 ID, so an ID the reconciler re-offers (after a crash, a flush) goes back to
//!   its place near the front instead of behind the whole backlog.
//! - `pop` first takes up to `max` with `ZPOPMIN` on the shared, multiplexed connection; only
//!   when the set is empty does it block in `BZPOPMIN`, on a connection of its own (a blocking
//!   command would stall every request multiplexed behind it), then tops up with `ZPOPMIN`.
//!
//! Redis is a delivery hint: when it is unreachable the queue says so once in the log, returns
//! errors (workers pause and retry), and the reconciler refills it from the database when it
//! is back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::{AsyncCommands, AsyncConnectionConfig, Client};
use tracing::{info, warn};
use uuid::Uuid;

use super::Queue;
use crate::error::{Error, Result};
use crate::job::Due;
pub use crate::redis_conn::validate_prefix;
use crate::redis_conn::{open, CONNECT_TIMEOUT, RESPONSE_TIMEOUT};

/// Key prefix used when none is configured.
pub const DEFAULT_PREFIX: &str = "skiplock";

/// Bits of the score that hold the job's age, in [`AGE_TICK_MS`] ticks since [`AGE_EPOCH_MS`];
/// the priority sits above them in 16 bits, so a score stays within the 53 bits a double holds
/// exactly. 2^37 ticks of 10 ms last until 2067. Equal scores pop in member order, and a
/// UUIDv7's text sorts by its time, so order within a tick is still oldest first.
const AGE_SPAN: f64 = 137_438_953_472.0; // 2^37
const AGE_TICK_MS: u64 = 10;
/// 2024-01-01T00:00:00Z.
const AGE_EPOCH_MS: u64 = 1_704_067_200_000;

/// Lower is popped first: higher priority, then older job.
fn score(d: &Due) -> f64 {
    let ms =
        d.id.get_timestamp()
            .map(|t| {
                let (secs, nanos) = t.to_unix();
                secs * 1000 + u64::from(nanos) / 1_000_000
            })
            // Not a time-based ID: treat it as created now.
            .unwrap_or_else(|| chrono::Utc::now().timestamp_millis().max(0) as u64);
    let ticks = (ms.saturating_sub(AGE_EPOCH_MS) / AGE_TICK_MS).min(AGE_SPAN as u64 - 1);
    f64::from(i32::from(i16::MAX) - i32::from(d.priority)) * AGE_SPAN + ticks as f64
}

/// Blocking connections kept for reuse; more poppers than this open and close their own.
const MAX_IDLE_BLOCKING: usize = 64;

/// A deduplicating priority queue of job IDs in Redis, shared by every node.
pub struct RedisQueue {
    client: Client,
    /// Reconnects by itself after Redis restarts; used for everything that does not block.
    conn: ConnectionManager,
    /// Idle connections for `BZPOPMIN`, one per waiting popper. A mutex held only to take or
    /// return one, never across an await.
    blocking: Mutex<Vec<MultiplexedConnection>>,
    /// The prefix of every key.
    prefix: String,
    /// The `default` queue's sorted set.
    queue_key: String,
    /// Named queues this process has added to `{prefix}:queues`. Held only for a lookup or
    /// an insert, never across an await.
    named: Mutex<std::collections::HashSet<String>>,
    /// Whether the last command failed, so an outage is logged once when it starts and once
    /// when it ends, not once per failed call.
    down: AtomicBool,
    /// The URL without a password, for log lines.
    shown_url: String,
}

impl RedisQueue {
    /// Connects now, so a wrong URL or a Redis that is down fails at start-up.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        let (client, conn) = open(url, prefix).await?;
        Ok(RedisQueue {
            client,
            conn,
            blocking: Mutex::new(Vec::new()),
            prefix: prefix.to_string(),
            queue_key: format!("{prefix}:queue"),
            named: Mutex::new(std::collections::HashSet::new()),
            down: AtomicBool::new(false),
            shown_url: crate::store::redact_url(url),
        })
    }

    /// The `default` queue's sorted set, for operators (and tests that delete it).
    pub fn queue_key(&self) -> &str {
        &self.queue_key
    }

    /// The sorted set of a named queue: `{prefix}:queue` for `default` (as before queues had
    /// names), `{prefix}:queue:NAME` for the others. Names are validated where they come in
    /// (letters, digits, `_ - .`), so one cannot reach into another key.
    pub fn key_for(&self, queue: &str) -> String {
        if queue == crate::job::DEFAULT_QUEUE {
            self.queue_key.clone()
        } else {
            format!("{}:{queue}", self.queue_key)
        }
    }

    /// The set of the named queues pushed to.
    fn names_key(&self) -> String {
        format!("{}:queues", self.prefix)
    }

    /// Adds a named queue other than `default` to the set of names (for the depth), once per
    /// process and name: pushes to a queue cost one command, as before queues had names.
    async fn remember(&self, queue: &str) -> Result<()> {
        if queue == crate::job::DEFAULT_QUEUE
            || self
                .named
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(queue)
        {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let r: redis::RedisResult<()> = conn.sadd(self.names_key(), queue).await;
        self.watch(r)?;
        self.named
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(queue.to_string());
        Ok(())
    }

    /// Logs the transitions of Redis's health and passes the result through.
    fn watch<T>(&self, r: redis::RedisResult<T>) -> Result<T> {
        match r {
            Ok(v) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    info!(redis = %self.shown_url, "Redis is reachable again; the queue is back");
                }
                Ok(v)
            }
            Err(e) => {
                if !self.down.swap(true, Ordering::Relaxed) {
                    warn!(
                        redis = %self.shown_url,
                        error = %e,
                        "Redis is unreachable: jobs wait safely in the database; \
                         retrying until it is back"
                    );
                }
                Err(Error::Redis {
                    doing: "queue",
                    source: e,
                })
            }
        }
    }

    /// Takes up to `max` IDs of the set `key` without waiting.
    async fn pop_now(&self, key: &str, max: usize) -> Result<Vec<Uuid>> {
        let mut conn = self.conn.clone();
        let r: redis::RedisResult<Vec<(String, f64)>> = conn.zpopmin(key, max as isize).await;
        Ok(parse_ids(self.watch(r)?))
    }

    /// Waits up to `wait` for one ID on a connection of its own.
    async fn pop_blocking(&self, key: &str, wait: Duration) -> Result<Option<Uuid>> {
        // BZPOPMIN takes seconds as a double (Redis 6+); 0 would mean forever.
        let secs = wait.as_secs_f64().max(0.01);
        let idle = self
            .blocking
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        if let Some(mut conn) = idle {
            let r: redis::RedisResult<Option<(String, String, f64)>> =
                conn.bzpopmin(key, secs).await;
            // An idle connection may predate a Redis restart; if it fails, say nothing yet
            // and try a fresh one, which tells whether Redis itself is down.
            if let Ok(got) = r {
                self.watch(Ok(()))?;
                self.keep(conn);
                return Ok(got.and_then(|(_, id, _)| Uuid::parse_str(&id).ok()));
            }
        }
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(wait + RESPONSE_TIMEOUT);
        let r = self
            .client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await;
        let mut conn = self.watch(r)?;
        let r: redis::RedisResult<Option<(String, String, f64)>> = conn.bzpopmin(key, secs).await;
        // A failed connection is dropped, not kept: the next pop opens a fresh one.
        let got = self.watch(r)?;
        self.keep(conn);
        Ok(got.and_then(|(_, id, _)| Uuid::parse_str(&id).ok()))
    }

    /// Returns a blocking connection to the idle list, unless enough are idle already.
    fn keep(&self, conn: MultiplexedConnection) {
        let mut idle = self.blocking.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE_BLOCKING {
            idle.push(conn);
        }
    }
}

#[async_trait]
impl Queue for RedisQueue {
    async fn push(&self, items: &[Due]) -> Result<usize> {
        if items.is_empty() {
            return Ok(0);
        }
        // One ZADD per named queue (a push is nearly always to one queue: one round trip). Not
        // a pipeline: one caught by an outage on the reconnecting connection left it failing
        // after Redis came back (tests/faults.rs, redis_down_for_a_while).
        let mut by_queue: std::collections::BTreeMap<&str, Vec<&Due>> = Default::default();
        for d in items {
            by_queue.entry(d.queue.as_str()).or_default().push(d);
        }
        let mut added = 0;
        for (queue, dues) in &by_queue {
            self.remember(queue).await?;
            let mut cmd = redis::cmd("ZADD");
            cmd.arg(self.key_for(queue)).arg("NX");
            for d in dues {
                cmd.arg(score(d)).arg(d.id.to_string());
            }
            let mut conn = self.conn.clone();
            let r: redis::RedisResult<usize> = cmd.query_async(&mut conn).await;
            added += self.watch(r)?;
        }
        Ok(added)
    }

    async fn pop(&self, queue: &str, max: usize, wait: Duration) -> Result<Vec<Uuid>> {
        let max = max.max(1);
        let key = self.key_for(queue);
        let got = self.pop_now(&key, max).await?;
        if !got.is_empty() || wait.is_zero() {
            return Ok(got);
        }
        let Some(first) = self.pop_blocking(&key, wait).await? else {
            return Ok(Vec::new());
        };
        let mut out = vec![first];
        if max > 1 {
            // The first ID is ours already; if topping up fails, return what we have.
            if let Ok(more) = self.pop_now(&key, max - 1).await {
                out.extend(more);
            }
        }
        Ok(out)
    }

    async fn depth(&self) -> Result<u64> {
        let mut conn = self.conn.clone();
        let r: redis::RedisResult<Vec<String>> = conn.smembers(self.names_key()).await;
        let mut keys: Vec<String> = self
            .watch(r)?
            .iter()
            .filter(|q| crate::job::validate_queue(q).is_ok())
            .map(|q| self.key_for(q))
            .collect();
        if !keys.contains(&self.queue_key) {
            keys.push(self.queue_key.clone());
        }
        // One ZCARD per named queue, not a pipeline: a pipeline caught by an outage on the
        // reconnecting connection could leave it failing after Redis came back.
        let mut total = 0;
        for k in &keys {
            let r: redis::RedisResult<u64> = conn.zcard(k).await;
            total += self.watch(r)?;
        }
        Ok(total)
    }

    fn backend(&self) -> &'static str {
        "redis"
    }
}

/// Members that are not UUIDs (someone else's writes under our prefix) are skipped.
fn parse_ids(raw: Vec<(String, f64)>) -> Vec<Uuid> {
    raw.into_iter()
        .filter_map(|(id, _)| Uuid::parse_str(&id).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due_at(ms: u64, priority: i16) -> Due {
        let ts =
            uuid::Timestamp::from_unix(uuid::NoContext, ms / 1000, (ms % 1000) as u32 * 1_000_000);
        Due::new(Uuid::new_v7(ts), priority)
    }

    #[test]
    fn scores_order_by_priority_then_age() {
        let now = 1_800_000_000_000;
        let old = score(&due_at(now - 60_000, 0));
        let new = score(&due_at(now, 0));
        let urgent_new = score(&due_at(now, 1));
        assert!(old < new, "older first within a priority");
        assert!(urgent_new < old, "priority before age");
        assert!(score(&due_at(now, i16::MIN)) > score(&due_at(now, i16::MAX)));
    }

    #[test]
    fn scores_fit_a_double_exactly() {
        // Lowest priority, the last tick: still below 2^53, so no two scores blur together.
        let far = due_at(AGE_EPOCH_MS + AGE_TICK_MS * (1 << 40), i16::MIN);
        assert!(score(&far) < 9_007_199_254_740_992.0);
        assert_eq!(score(&far), 65_535.0 * AGE_SPAN + (AGE_SPAN - 1.0));
        // Before the epoch clamps to zero rather than going negative.
        assert_eq!(score(&due_at(0, i16::MAX)), 0.0);
    }

    #[test]
    fn prefixes_are_validated() {
        assert!(validate_prefix("skiplock").is_ok());
        assert!(validate_prefix("app:jobs-1").is_ok());
        assert!(validate_prefix("").is_err());
        assert!(validate_prefix("has space").is_err());
        assert!(validate_prefix("{x}").is_err());
    }
}
