//! The store's one writing connection, and the turn that guards it.
//!
//! Every job chunk runs on this connection, kept out of the pool for the life of the store,
//! and its transaction is SQL the store sends itself (`BEGIN IMMEDIATE` … `COMMIT`) rather
//! than sqlx's transaction object. That lets the chunk's first message carry everything up to
//! the lock, and its last message the outcomes with the commit:
//!
//! ```text
//! start:  BEGIN IMMEDIATE; INSERT intent record; COMMIT;      -- outlives a crash mid-job
//!         BEGIN IMMEDIATE; DELETE intent record; SELECT the popped jobs still pending and due
//! finish: UPDATE outcomes; COMMIT
//! ```
//!
//! sqlx's SQLite driver runs each message on the connection's own thread and waits for the
//! answer: two thread switches a round trip, which, not SQLite, was most of a small chunk's
//! cost. Two messages a chunk instead of nine (and no pool checkout) is the saving.
//!
//! A chunk that ends without a commit or a rollback (its task dropped, its future cancelled)
//! leaves its transaction open on the connection; [`Writer::open`] says so, and the next turn
//! rolls it back before anything else writes.

use std::sync::Arc;

use sqlx::{Executor as _, SqliteConnection, SqlitePool};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::error::Result;

/// The writing connection, taken from the pool (and detached from it) at the first write.
#[derive(Default)]
pub(super) struct Writer {
    conn: Option<SqliteConnection>,
    /// Whether a transaction this store began on `conn` may still be open.
    open: bool,
}

/// The store's write turn: one holder at a time, FIFO, for the whole life of a transaction.
pub(super) type Turn = OwnedMutexGuard<Writer>;

/// Waits for the write turn; rolls back whatever the previous holder left open.
pub(super) async fn turn(writer: &Arc<Mutex<Writer>>) -> Result<Turn> {
    let mut t = writer.clone().lock_owned().await;
    if t.open {
        if let Some(conn) = t.conn.as_mut() {
            // "no transaction is active" when it had ended after all: as good.
            let _ = conn.execute("ROLLBACK").await;
        }
        t.open = false;
    }
    Ok(t)
}

impl Writer {
    /// The connection, opened the first time.
    pub(super) async fn conn(&mut self, pool: &SqlitePool) -> Result<&mut SqliteConnection> {
        if self.conn.is_none() {
            // Detached, so that closing the pool does not wait for a connection the store
            // keeps for good.
            self.conn = Some(pool.acquire().await?.detach());
        }
        self.conn
            .as_mut()
            .ok_or_else(|| crate::error::Error::Invalid("no writing connection".into()))
    }

    /// The connection, once opened (a chunk's, which opened it to begin).
    pub(super) fn open_conn(&mut self) -> Option<&mut SqliteConnection> {
        self.conn.as_mut()
    }

    /// Marks a transaction begun (before its `BEGIN` is sent: a failure half-way still
    /// counts as open, and the next turn rolls it back).
    pub(super) fn began(&mut self) {
        self.open = true;
    }

    /// Marks the transaction ended (after its `COMMIT` or `ROLLBACK` succeeded).
    pub(super) fn ended(&mut self) {
        self.open = false;
    }
}
