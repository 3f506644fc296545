//! The transaction a processor receives. It wraps the chunk's open transaction and takes the
//! job's savepoint lazily, the first time the processor asks for the connection: a processor
//! that never touches the database costs no savepoint round trips at all.

use std::time::Duration;

use sqlx::{Executor as _, PgConnection, SqliteConnection};

use crate::error::{Error, Result};
use crate::job::Job;

/// The chunk's open transaction, per backend. Dropping it rolls back.
pub enum Conn<'c> {
    /// On the worker's leased connection.
    Postgres(sqlx::Transaction<'c, sqlx::Postgres>),
    /// SQLite's transaction and its turn as the store's only writer, released after the
    /// transaction ends (see [`super::sqlite`]).
    Sqlite(
        sqlx::Transaction<'c, sqlx::Sqlite>,
        super::sqlite::WriteLock,
    ),
}

impl Conn<'_> {
    /// The connection inside the transaction, for one job's [`JobTx`].
    pub(crate) fn connection(&mut self) -> TxRef<'_> {
        match self {
            Conn::Postgres(tx) => TxRef::Postgres(tx),
            Conn::Sqlite(tx, lock) => TxRef::Sqlite(tx, lock),
        }
    }
}

/// A borrowed connection that is inside the chunk's transaction.
pub(crate) enum TxRef<'a> {
    Postgres(&'a mut PgConnection),
    Sqlite(&'a mut SqliteConnection, &'a super::sqlite::WriteLock),
}

/// One job's view of the chunk's transaction, behind its own savepoint.
pub struct JobTx<'c> {
    conn: TxRef<'c>,
    /// The processor's time limit, also applied as PostgreSQL's `statement_timeout` inside
    /// the savepoint so that a runaway statement is cancelled by the server and the failure
    /// can still be written in the same transaction.
    timeout: Duration,
    /// Whether `SAVEPOINT job` has been taken (and so must be released or rolled back).
    savepoint: bool,
}

impl<'c> JobTx<'c> {
    pub(crate) fn new(conn: TxRef<'c>, timeout: Duration) -> Self {
        JobTx {
            conn,
            timeout,
            savepoint: false,
        }
    }

    /// Whether the processor used the transaction.
    pub fn touched(&self) -> bool {
        self.savepoint
    }

    async fn open(&mut self) -> Result<()> {
        if self.savepoint {
            return Ok(());
        }
        match &mut self.conn {
            TxRef::Postgres(tx) => {
                // One round trip: the savepoint and the statement timeout that lives and dies
                // with it (ROLLBACK TO undoes SET LOCAL; finish() resets it after RELEASE).
                let ms = self.timeout.as_millis().clamp(1, i32::MAX as u128);
                let sql = format!("SAVEPOINT job; SET LOCAL statement_timeout = {ms}");
                (&mut **tx).execute(sql.as_str()).await?;
            }
            TxRef::Sqlite(tx, lock) => {
                (&mut **tx).execute("SAVEPOINT job").await?;
                // No statement_timeout in SQLite: a progress handler interrupts the job's SQL
                // at its time limit instead. finish() removes it.
                let handler = lock.deadline_handler(self.timeout);
                tx.lock_handle().await?.set_progress_handler(1000, handler);
            }
        }
        self.savepoint = true;
        Ok(())
    }

    /// The PostgreSQL connection inside the job's savepoint. Errors on a SQLite store.
    pub async fn postgres(&mut self) -> Result<&mut PgConnection> {
        self.open().await?;
        match &mut self.conn {
            TxRef::Postgres(tx) => Ok(&mut **tx),
            TxRef::Sqlite(..) => Err(Error::Invalid(
                "this processor needs PostgreSQL but the store is SQLite".into(),
            )),
        }
    }

    /// The SQLite connection inside the job's savepoint. Errors on a PostgreSQL store.
    pub async fn sqlite(&mut self) -> Result<&mut SqliteConnection> {
        self.open().await?;
        match &mut self.conn {
            TxRef::Sqlite(tx, _) => Ok(&mut **tx),
            TxRef::Postgres(_) => Err(Error::Invalid(
                "this processor needs SQLite but the store is PostgreSQL".into(),
            )),
        }
    }

    /// Runs one statement with `$1` bound to the job's id and `$2` to its target (jsonb on
    /// PostgreSQL, JSON text on SQLite). Returns the rows affected.
    pub async fn execute(&mut self, sql: &str, job: &Job) -> Result<u64> {
        self.open().await?;
        let n = match &mut self.conn {
            TxRef::Postgres(tx) => sqlx::query(sql)
                .bind(job.id)
                .bind(&job.target)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
            TxRef::Sqlite(tx, _) => sqlx::query(sql)
                .bind(job.id.to_string())
                .bind(job.target.to_string())
                .execute(&mut **tx)
                .await?
                .rows_affected(),
        };
        Ok(n)
    }

    /// Keeps the job's writes: releases the savepoint.
    pub(crate) async fn finish_ok(&mut self) -> Result<()> {
        self.finish(true).await
    }

    /// Discards the job's writes: rolls back to the savepoint.
    pub(crate) async fn finish_err(&mut self) -> Result<()> {
        self.finish(false).await
    }

    async fn finish(&mut self, ok: bool) -> Result<()> {
        if !self.savepoint {
            return Ok(());
        }
        let sql = match (&self.conn, ok) {
            (TxRef::Postgres(_), true) => "RELEASE SAVEPOINT job; RESET statement_timeout",
            (TxRef::Postgres(_), false) => "ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job",
            (TxRef::Sqlite(..), true) => "RELEASE SAVEPOINT job",
            (TxRef::Sqlite(..), false) => "ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job",
        };
        match &mut self.conn {
            TxRef::Postgres(tx) => {
                (&mut **tx).execute(sql).await?;
            }
            TxRef::Sqlite(tx, _) => {
                tx.lock_handle().await?.remove_progress_handler();
                (&mut **tx).execute(sql).await?;
            }
        }
        self.savepoint = false;
        Ok(())
    }
}
