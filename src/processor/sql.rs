//! Config-defined `sql` types: statements run in order in the job's transaction, `$1` bound to
//! the job's id and `$2` to its target. A failing statement rolls back every statement of the
//! job (they share its savepoint) and its error becomes the job's `last_error`.

use async_trait::async_trait;

use super::{ProcessError, Processor};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::store::{check_statement, JobTx};

/// Longest accepted statement: configuration, not a data channel.
const MAX_STATEMENT_LEN: usize = 100_000;

pub struct SqlProcessor {
    statements: Vec<String>,
}

impl SqlProcessor {
    pub fn new(statements: Vec<String>) -> Result<Self> {
        if statements.is_empty() {
            return Err(Error::Config("sql must list at least one statement".into()));
        }
        for s in &statements {
            if s.trim().is_empty() {
                return Err(Error::Config("sql statements must not be empty".into()));
            }
            if s.len() > MAX_STATEMENT_LEN {
                return Err(Error::Config(format!(
                    "sql statement longer than {MAX_STATEMENT_LEN} bytes"
                )));
            }
            // Refused at start-up, before any job runs: a COMMIT here would commit the job's
            // chunk-mates' writes without their outcomes.
            check_statement(s).map_err(Error::Config)?;
        }
        Ok(SqlProcessor { statements })
    }
}

impl SqlProcessor {
    async fn run(&self, job: &Job, tx: &mut JobTx<'_>) -> Result<(), ProcessError> {
        for (i, s) in self.statements.iter().enumerate() {
            tx.execute(s, job).await.map_err(|e| {
                let msg = match e {
                    Error::Database(sqlx::Error::Database(db)) => db.message().to_string(),
                    other => other.to_string(),
                };
                ProcessError::retry(format!("sql statement {} failed: {msg}", i + 1))
            })?;
        }
        Ok(())
    }
}

/// In `tx` mode the statements run in the job's transaction; in `lease` mode (if a type asks
/// for it) in the short transaction that records the outcome, which is where a lease-mode
/// job's database writes go.
#[async_trait]
impl Processor for SqlProcessor {
    async fn process(&self, job: &Job, tx: &mut JobTx<'_>) -> Result<(), ProcessError> {
        if tx.attached() {
            self.run(job, tx).await
        } else {
            Ok(())
        }
    }

    async fn complete(&self, job: &Job, tx: &mut JobTx<'_>) -> Result<(), ProcessError> {
        self.run(job, tx).await
    }
}
