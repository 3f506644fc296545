//! The transactional flow for one chunk of popped IDs (K = 1 is the single-job flow):
//!
//! ```text
//! BEGIN; SELECT … WHERE id = ANY(ids) AND pending AND due FOR UPDATE SKIP LOCKED
//! for each locked job: [SAVEPOINT on first use] processor [RELEASE | ROLLBACK TO]
//! UPDATE every outcome in one statement; COMMIT
//! ```
//!
//! Events for outcomes are published only after COMMIT returns.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::FutureExt;
use uuid::Uuid;

use super::Ctx;
use crate::error::Result;
use crate::events::{Event, EventStatus};
use crate::job::{Job, JobStatus};
use crate::processor::ProcessError;
use crate::store::{Conn, JobTx, Lease, Outcome};

/// Longest error text stored per attempt: enough to debug, bounded so that a processor that
/// returns a megabyte of output cannot bloat the table.
pub const MAX_ERROR_LEN: usize = 4096;

/// Runs one chunk end to end. An `Err` means the transaction itself failed (connection lost,
/// commit refused): nothing was written and every job in it is still pending.
pub(super) async fn run(ctx: &Ctx, lease: &mut Lease, ids: &[Uuid]) -> Result<usize> {
    let mut chunk = ctx.store.lock_chunk(lease, ids).await?;
    let locked = chunk.jobs.len();
    ctx.metrics.dropped_ids.fetch_add(
        (ids.len() - locked) as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    if locked == 0 {
        ctx.store.finish_chunk(chunk, &[], &ctx.node.id).await?;
        return Ok(0);
    }
    let _held = ctx.node.hold(chunk.jobs.iter().map(|j| j.id), &ctx.metrics);
    let jobs = std::mem::take(&mut chunk.jobs);
    // Decided once per chunk: with nobody listening, no event is built at all.
    let listened = ctx.events.has_listeners();
    if listened {
        // Every locked job is in flight from here: one message for the chunk.
        ctx.publish(
            jobs.iter()
                .map(|j| event(ctx, j, EventStatus::Running, None))
                .collect(),
        );
    }
    let mut outcomes = Vec::with_capacity(locked);
    let mut timings = Vec::with_capacity(locked);
    for job in &jobs {
        let started = Instant::now();
        outcomes.push(run_one(ctx, job, &mut chunk.conn).await?);
        timings.push(started.elapsed());
    }
    let statuses: Vec<EventStatus> = outcomes.iter().map(event_status).collect();
    ctx.store
        .finish_chunk(chunk, &outcomes, &ctx.node.id)
        .await?;
    // Committed: only now may anyone hear about it.
    ctx.metrics.record_many(
        jobs.iter()
            .zip(&statuses)
            .zip(timings)
            .map(|((j, s), t)| (j.job_type.as_str(), s.as_str(), t)),
    );
    ctx.node.count(&statuses);
    if listened {
        let events = jobs
            .iter()
            .zip(statuses)
            .zip(outcomes)
            .map(|((j, s), o)| event(ctx, j, s, o.error))
            .collect();
        ctx.publish(events);
    }
    Ok(locked)
}

fn event_status(o: &Outcome) -> EventStatus {
    match (o.status, o.retry_delay_ms) {
        (JobStatus::Succeeded, _) => EventStatus::Succeeded,
        (JobStatus::Pending, Some(_)) => EventStatus::Retrying,
        _ => EventStatus::Failed,
    }
}

/// Runs one job's processor behind its savepoint and decides its outcome.
async fn run_one(ctx: &Ctx, job: &Job, conn: &mut Conn<'_>) -> Result<Outcome> {
    let Some(reg) = ctx.registry.get(&job.job_type) else {
        return Ok(decide(
            job,
            Err(ProcessError::fatal(format!(
                "no processor for type {}",
                job.job_type
            ))),
            Duration::ZERO,
        ));
    };
    let timeout = reg.options.timeout;
    let mut tx = JobTx::new(conn.connection(), timeout);
    let run = AssertUnwindSafe(reg.processor.process(job, &mut tx)).catch_unwind();
    let result = match tokio::time::timeout(timeout, run).await {
        Ok(Ok(r)) => r,
        Ok(Err(panic)) => Err(ProcessError::retry(format!(
            "processor panicked: {}",
            panic_message(&panic)
        ))),
        Err(_) => Err(ProcessError::retry(format!(
            "timed out after {} ms",
            timeout.as_millis()
        ))),
    };
    let result = match result {
        Ok(()) => match tx.finish_ok().await {
            Ok(()) => Ok(()),
            Err(e) => {
                // The processor said yes but its transaction says no (it swallowed a SQL
                // error): roll its writes back and record why.
                tx.finish_err().await?;
                Err(ProcessError::retry(format!(
                    "processor succeeded but its transaction failed: {e}"
                )))
            }
        },
        Err(pe) => {
            tx.finish_err().await?;
            Err(pe)
        }
    };
    let delay = result
        .as_ref()
        .err()
        .map(|_| reg.options.retry_delay(job.attempts + 1))
        .unwrap_or_default();
    Ok(decide(job, result, delay))
}

/// Success, a retry after `delay`, or `failed` once attempts are spent or retrying is futile.
fn decide(job: &Job, result: Result<(), ProcessError>, delay: Duration) -> Outcome {
    match result {
        Ok(()) => Outcome {
            id: job.id,
            status: JobStatus::Succeeded,
            error: None,
            retry_delay_ms: None,
        },
        Err(e) => {
            let spent = job.attempts + 1 >= job.max_attempts;
            let error = Some(bounded(&e.message));
            if e.retryable && !spent {
                Outcome {
                    id: job.id,
                    status: JobStatus::Pending,
                    error,
                    retry_delay_ms: Some(delay.as_millis().min(i64::MAX as u128) as i64),
                }
            } else {
                Outcome {
                    id: job.id,
                    status: JobStatus::Failed,
                    error,
                    retry_delay_ms: None,
                }
            }
        }
    }
}

fn event(ctx: &Ctx, job: &Job, status: EventStatus, error: Option<String>) -> Event {
    Event {
        job_id: job.id,
        job_type: job.job_type.clone(),
        batch_id: job.batch_id,
        status,
        node: ctx.node.id.clone(),
        at: Utc::now(),
        error,
    }
}

fn bounded(s: &str) -> String {
    if s.len() <= MAX_ERROR_LEN {
        return s.to_string();
    }
    let mut end = MAX_ERROR_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &s[..end], s.len())
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_bounded_on_char_boundaries() {
        let s = "é".repeat(MAX_ERROR_LEN);
        let b = bounded(&s);
        assert!(b.len() < MAX_ERROR_LEN + 64);
        assert!(b.contains("bytes in all"));
        assert_eq!(bounded("short"), "short");
    }
}
