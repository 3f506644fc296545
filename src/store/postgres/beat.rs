//! Each node's heartbeat session: one connection of its own, outside the pool, holding a
//! session advisory lock on the node's `alive_key` (migration 0014). The reconciler judges a
//! node dead only when its heartbeat is late *and* nobody holds that lock, so a node whose
//! heartbeat falls behind under load (the pool busy, the server slow) is never taken for a
//! crashed one; a killed process's connection closes at once, and its lock with it.
//!
//! The heartbeat and the lease renewals go over this connection, so they never wait for a
//! pooled connection behind the node's own runners. A failed statement closes the session;
//! the next heartbeat opens a new one (and takes the lock again).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection as _, PgConnection};
use tokio::sync::{Mutex, OwnedMutexGuard};

use uuid::Uuid;

use super::CONNECT_TIMEOUT;
use crate::error::{Error, Result};
use crate::store::NodeBeat;

/// TCP keepalives of the heartbeat session, set on the server's side of it: a node whose
/// machine vanished without closing its sockets (power, network) is found dead after about
/// `IDLE + INTERVAL * COUNT` seconds of silence, not the kernel default of two hours.
const KEEPALIVE: &str = "SELECT set_config('tcp_keepalives_idle', '5', false), \
    set_config('tcp_keepalives_interval', '2', false), \
    set_config('tcp_keepalives_count', '3', false)";

/// One node's session.
pub struct Session {
    pub conn: PgConnection,
    /// The advisory lock key this session holds, written to the node's row.
    pub key: i64,
}

/// A node's session, opened on first use.
pub type Slot = OwnedMutexGuard<Option<Session>>;

/// The heartbeat sessions of the nodes on this store (one per node; usually one).
pub struct Sessions {
    opts: PgConnectOptions,
    all: std::sync::Mutex<HashMap<String, Arc<Mutex<Option<Session>>>>>,
}

impl Sessions {
    /// Sessions connecting with `opts` (the pool's).
    pub fn new(opts: PgConnectOptions) -> Self {
        Sessions {
            opts,
            all: std::sync::Mutex::default(),
        }
    }

    /// `node`'s session (`Some`), opened first if needed. After a failed statement on it,
    /// hand it to [`reset`], so that the next heartbeat starts from a fresh connection.
    pub async fn get(&self, node: &str) -> Result<Slot> {
        let slot = self
            .all
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(node.to_string())
            .or_default()
            .clone();
        let mut slot = slot.lock_owned().await;
        if slot.is_none() {
            *slot = Some(open(&self.opts).await?);
        }
        Ok(slot)
    }

    /// Closes `node`'s session, releasing its lock: the node has retired.
    pub async fn close(&self, node: &str) {
        let slot = self
            .all
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(node);
        if let Some(slot) = slot {
            reset(slot.lock_owned().await).await;
        }
    }
}

/// Closes a session (best effort: the server ends it, and its lock, either way).
pub async fn reset(mut slot: Slot) {
    if let Some(s) = slot.take() {
        let _ = tokio::time::timeout(Duration::from_secs(5), s.conn.close()).await;
    }
}

/// Writes the node's row (`HEARTBEAT`), with the key this session holds.
pub async fn write(
    session: &mut Session,
    sql: &str,
    b: &NodeBeat,
) -> std::result::Result<(), sqlx::Error> {
    let key = session.key;
    let conn: &mut PgConnection = &mut session.conn;
    sqlx::query(sql)
        .bind(&b.id)
        .bind(&b.host)
        .bind(b.pid)
        .bind(b.concurrency)
        .bind(b.in_flight)
        .bind(b.processed)
        .bind(b.failed)
        .bind(sqlx::types::Json(&b.queues))
        .bind(sqlx::types::Json(&b.types))
        .bind(key)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Renews the node's leases on `ids` (`EXTEND_LEASES`); returns those it still holds.
pub async fn renew(
    session: &mut Session,
    sql: &str,
    node: &str,
    ids: &[Uuid],
    ttl_ms: f64,
) -> std::result::Result<Vec<Uuid>, sqlx::Error> {
    let conn: &mut PgConnection = &mut session.conn;
    sqlx::query_scalar(sql)
        .bind(ids)
        .bind(node)
        .bind(ttl_ms)
        .fetch_all(&mut *conn)
        .await
}

/// A new key: positive (so the lock table's two halves read back unambiguously) and never 0.
fn new_key() -> i64 {
    (rand::random::<u64>() >> 2) as i64 | 1
}

/// Connects, sets the keepalives and takes a lock no other session holds.
async fn open(opts: &PgConnectOptions) -> Result<Session> {
    let mut conn =
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(opts)).await {
            Ok(c) => c?,
            Err(_) => {
                return Err(Error::Config(format!(
                    "no answer from the database within {} s (heartbeat session)",
                    CONNECT_TIMEOUT.as_secs()
                )))
            }
        };
    sqlx::query(KEEPALIVE).execute(&mut conn).await?;
    // A key another session holds (a user's own advisory lock, by a 1 in 2^62 chance) would
    // make this node look alive after its death: take one nobody holds.
    for _ in 0..4 {
        let key = new_key();
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut conn)
            .await?;
        if got {
            return Ok(Session { conn, key });
        }
    }
    Err(Error::Config(
        "could not take a free advisory lock for the node's heartbeat session".into(),
    ))
}
