//! Built-in types for demos, tests and benchmarks.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{ProcessError, Processor, TypedProcessor};
use crate::job::Job;
use crate::store::JobTx;

/// `noop`: succeeds at once without touching the database. The benchmark's unit of work.
pub struct Noop;

#[async_trait]
impl Processor for Noop {
    async fn process(&self, _job: &Job, _tx: &mut JobTx<'_>) -> Result<(), ProcessError> {
        Ok(())
    }
}

/// `sleep`: waits `{"ms": N}` milliseconds (at most an hour), then succeeds.
pub struct Sleep;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepTarget {
    ms: u64,
}

#[async_trait]
impl TypedProcessor for Sleep {
    type Target = SleepTarget;
    async fn process(
        &self,
        _job: &Job,
        t: SleepTarget,
        _tx: &mut JobTx<'_>,
    ) -> Result<(), ProcessError> {
        if t.ms > 3_600_000 {
            return Err(ProcessError::fatal("sleep: ms must be at most 3600000"));
        }
        tokio::time::sleep(Duration::from_millis(t.ms)).await;
        Ok(())
    }
}

/// `fail`: always fails (retryably) with the target's `message`.
pub struct Fail;

#[async_trait]
impl Processor for Fail {
    async fn process(&self, job: &Job, _tx: &mut JobTx<'_>) -> Result<(), ProcessError> {
        let msg = job
            .target
            .get("message")
            .and_then(|m| m.as_str())
            .unwrap_or("failed on purpose");
        Err(ProcessError::retry(msg))
    }
}
