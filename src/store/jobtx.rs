//! The transaction a processor receives. It wraps the chunk's open transaction and takes the
//! job's savepoint lazily, the first time the processor asks for the connection: a processor
//! that never touches the database costs no savepoint round trips at all.
//!
//! A processor must not end or take over the transaction it runs in: a `COMMIT` would commit
//! its chunk-mates' writes without their outcomes. [`JobTx::execute`] refuses such statements
//! before they run (see [`check_statement`]); whatever gets through another way (a raw
//! connection, `pg_terminate_backend`) breaks the savepoint, and the executor charges the job
//! for it and runs its chunk-mates again.

use std::time::Duration;

use async_trait::async_trait;
#[cfg(feature = "postgres")]
use sqlx::PgConnection;
#[cfg(feature = "sqlite")]
use sqlx::SqliteConnection;

use crate::error::{Error, Result};
use crate::job::Job;

/// Rolls a job's writes back and drops its savepoint; the same SQL on both stores.
pub(crate) const ROLLBACK_JOB: &str = "ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job";

/// One backend's side of a job's savepoint, implemented by each store's chunk transaction.
#[async_trait]
pub trait JobConn: Send {
    /// Takes the job's savepoint, with its SQL time limit (PostgreSQL's `statement_timeout`,
    /// SQLite's progress-handler interrupt), so that a runaway statement is cancelled and the
    /// failure can still be written in the same transaction.
    async fn savepoint(&mut self, timeout: Duration) -> Result<()>;

    /// Keeps the job's writes, and resets whatever session state the job changed so that the
    /// next job on this connection starts from the connection's defaults.
    async fn release(&mut self) -> Result<()>;

    /// Discards the job's writes (and its session changes with them).
    async fn rollback(&mut self) -> Result<()>;

    /// Runs one statement with `$1` bound to the job's id and `$2` to its target.
    async fn execute(&mut self, sql: &str, job: &Job) -> Result<u64>;

    /// The PostgreSQL connection, when this is PostgreSQL.
    #[cfg(feature = "postgres")]
    fn postgres(&mut self) -> Option<&mut PgConnection> {
        None
    }

    /// The SQLite connection, when this is SQLite.
    #[cfg(feature = "sqlite")]
    fn sqlite(&mut self) -> Option<&mut SqliteConnection> {
        None
    }
}

/// One job's view of the chunk's transaction, behind its own savepoint; or, for a lease-mode
/// job while its processor runs, of no transaction at all.
pub struct JobTx<'c> {
    conn: Option<&'c mut dyn JobConn>,
    /// The processor's SQL time limit.
    timeout: Duration,
    /// Whether the savepoint has been taken (and so must be released or rolled back).
    savepoint: bool,
}

impl<'c> JobTx<'c> {
    pub(crate) fn new(conn: &'c mut dyn JobConn, timeout: Duration) -> Self {
        JobTx {
            conn: Some(conn),
            timeout,
            savepoint: false,
        }
    }

    /// No transaction: a lease-mode job's processor runs with none open.
    pub(crate) fn detached() -> JobTx<'static> {
        JobTx {
            conn: None,
            timeout: Duration::ZERO,
            savepoint: false,
        }
    }

    /// Whether a transaction is there to use (always, but for a lease-mode job's `process`).
    pub fn attached(&self) -> bool {
        self.conn.is_some()
    }

    fn conn(&mut self) -> Result<&mut dyn JobConn> {
        match self.conn.as_deref_mut() {
            Some(c) => Ok(c),
            None => Err(Error::Invalid(
                "a lease-mode job runs without a transaction: write to the database in the \
                 processor's complete(), which runs in the transaction that records the outcome"
                    .into(),
            )),
        }
    }

    /// Whether the processor used the transaction.
    pub fn touched(&self) -> bool {
        self.savepoint
    }

    async fn open(&mut self) -> Result<()> {
        if !self.savepoint {
            let timeout = self.timeout;
            self.conn()?.savepoint(timeout).await?;
            self.savepoint = true;
        }
        Ok(())
    }

    /// The PostgreSQL connection inside the job's savepoint. Errors on a SQLite store. The
    /// processor must not end the transaction (`COMMIT`, `ROLLBACK`) or leave session state
    /// behind that outlives it (`PREPARE`, `LISTEN`, session advisory locks).
    #[cfg(feature = "postgres")]
    pub async fn postgres(&mut self) -> Result<&mut PgConnection> {
        self.open().await?;
        self.conn()?.postgres().ok_or_else(|| {
            Error::Invalid("this processor needs PostgreSQL but the store is SQLite".into())
        })
    }

    /// The SQLite connection inside the job's savepoint. Errors on a PostgreSQL store. The
    /// same rules as for [`JobTx::postgres`] apply.
    #[cfg(feature = "sqlite")]
    pub async fn sqlite(&mut self) -> Result<&mut SqliteConnection> {
        self.open().await?;
        self.conn()?.sqlite().ok_or_else(|| {
            Error::Invalid("this processor needs SQLite but the store is PostgreSQL".into())
        })
    }

    /// Runs one statement with `$1` bound to the job's id and `$2` to its target (jsonb on
    /// PostgreSQL, JSON text on SQLite). Returns the rows affected. A statement that would end
    /// or take over the transaction is refused before it runs ([`check_statement`]).
    pub async fn execute(&mut self, sql: &str, job: &Job) -> Result<u64> {
        check_statement(sql).map_err(Error::Invalid)?;
        self.open().await?;
        self.conn()?.execute(sql, job).await
    }

    /// Keeps the job's writes: releases the savepoint.
    pub(crate) async fn finish_ok(&mut self) -> Result<()> {
        if self.savepoint {
            // On failure the savepoint stays marked, so that finish_err tries to roll back to
            // it: if that fails too, the job broke the transaction.
            self.conn()?.release().await?;
            self.savepoint = false;
        }
        Ok(())
    }

    /// Discards the job's writes: rolls back to the savepoint.
    pub(crate) async fn finish_err(&mut self) -> Result<()> {
        if self.savepoint {
            self.savepoint = false;
            self.conn()?.rollback().await?;
        }
        Ok(())
    }
}

/// Statements a job may not run, by their first keyword, and why. They end or replace the
/// job's transaction (which would commit or drop its chunk-mates' work), or leave state on the
/// pooled connection that outlives the job.
const REFUSED: &[(&str, &str)] = &[
    ("BEGIN", "ends or replaces the job's transaction"),
    ("START", "ends or replaces the job's transaction"),
    ("COMMIT", "ends or replaces the job's transaction"),
    ("END", "ends or replaces the job's transaction"),
    ("ROLLBACK", "ends or replaces the job's transaction"),
    ("ABORT", "ends or replaces the job's transaction"),
    ("SAVEPOINT", "interferes with the job's savepoint"),
    ("RELEASE", "interferes with the job's savepoint"),
    ("PREPARE", "leaves state on the connection after the job"),
    ("DEALLOCATE", "leaves state on the connection after the job"),
    ("DISCARD", "leaves state on the connection after the job"),
    ("LISTEN", "leaves state on the connection after the job"),
    ("UNLISTEN", "leaves state on the connection after the job"),
    ("LOAD", "leaves state on the connection after the job"),
    ("VACUUM", "cannot run inside the job's transaction"),
    ("ATTACH", "leaves state on the connection after the job"),
    ("DETACH", "leaves state on the connection after the job"),
    ("PRAGMA", "leaves state on the connection after the job"),
];

/// Refuses a statement that would end or take over the job's transaction, or leave state on
/// the connection after it. Looks at the first keyword after any comments, whitespace and
/// opening parentheses; statements are sent one at a time with bound parameters, so a second
/// statement cannot hide behind a first.
pub fn check_statement(sql: &str) -> std::result::Result<(), String> {
    let word: String = first_keyword(sql).to_ascii_uppercase();
    match REFUSED.iter().find(|(k, _)| *k == word) {
        Some((k, why)) => Err(format!(
            "a job's SQL may not run {k}: it {why} (skiplock commits the job's writes with its outcome)"
        )),
        None => Ok(()),
    }
}

fn first_keyword(sql: &str) -> &str {
    let mut s = sql;
    loop {
        let t = s.trim_start_matches(|c: char| c.is_whitespace() || c == '(' || c == ';');
        if let Some(rest) = t.strip_prefix("--") {
            s = rest.split_once('\n').map_or("", |(_, r)| r);
        } else if t.starts_with("/*") {
            s = skip_block_comment(t);
        } else {
            let end = t
                .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .unwrap_or(t.len());
            return &t[..end];
        }
    }
}

/// The text after a (possibly nested, as PostgreSQL allows) block comment.
fn skip_block_comment(s: &str) -> &str {
    let mut depth = 0usize;
    let mut i = 0;
    let b = s.as_bytes();
    while i + 1 < b.len() {
        if b[i] == b'/' && b[i + 1] == b'*' {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return &s[i..];
            }
        } else {
            i += 1;
        }
    }
    ""
}

#[cfg(test)]
mod tests {
    use super::check_statement;

    #[test]
    fn transaction_control_is_refused_however_it_is_dressed() {
        for sql in [
            "COMMIT",
            "commit",
            "  \n\tROLLBACK",
            "-- a comment\nCOMMIT",
            "/* outer /* nested */ still */ commit;",
            "(COMMIT)",
            "END",
            "abort",
            "BEGIN",
            "start transaction",
            "PREPARE TRANSACTION 'x'",
            "RELEASE SAVEPOINT job",
            "savepoint x",
            "LISTEN ch",
            "pragma journal_mode = delete",
            "ATTACH DATABASE 'x' AS y",
        ] {
            assert!(check_statement(sql).is_err(), "{sql:?} should be refused");
        }
    }

    #[test]
    fn ordinary_statements_pass() {
        for sql in [
            "UPDATE t SET n = n + 1 WHERE id = ($2->>'id')::bigint",
            "insert into commits (x) values ($1)",
            "-- COMMIT in a comment\nSELECT 1",
            "SELECT 'COMMIT'",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "SET LOCAL lock_timeout = '1s'",
            "/* unterminated",
            "",
        ] {
            assert!(check_statement(sql).is_ok(), "{sql:?} should pass");
        }
    }
}
