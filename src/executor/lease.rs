//! Lease mode, after the claim: the jobs are `running`, leased to this node, and their chunk's
//! transaction has committed. Each processor runs with no transaction open (so a long job pins
//! no connection, no row lock and no xmin horizon); the node's heartbeat renews the leases
//! meanwhile, and stops a processor whose job was cancelled or rescued. Then one short
//! transaction runs the processors' `complete()` writes behind savepoints and records the
//! outcomes, fenced by attempt and node: a node that lost a lease cannot overwrite the
//! attempt that replaced it.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tracing::{warn, Instrument, Span};

use super::chunk::{decide, panic_message, settled};
use super::Ctx;
use crate::error::Result;
use crate::job::Job;
use crate::otel;
use crate::processor::ProcessError;
use crate::store::{JobTx, Slot};

/// Runs leased jobs one after another, then records their outcomes in one transaction.
pub(super) async fn run(ctx: &Ctx, slot: &mut dyn Slot, jobs: Vec<Job>) -> Result<()> {
    let _held = ctx.node.hold(jobs.iter().map(|j| j.id), &ctx.metrics);
    // Each attempt's span stays open until its outcome is recorded.
    let mut ran: Vec<(Job, Result<(), ProcessError>, Duration)> = Vec::with_capacity(jobs.len());
    let mut spans: Vec<Span> = Vec::with_capacity(jobs.len());
    for job in jobs {
        let started = Instant::now();
        let span = otel::attempt_span(&job);
        let (stop, _registered) = ctx.node.run_lease(job.id);
        let result = tokio::select! {
            r = process(ctx, &job).instrument(span.clone()) => r,
            // Cancelled or rescued meanwhile: the job is not ours to record any more.
            _ = stop.cancelled() => {
                otel::record_unsettled(&span, "stopped");
                continue;
            }
        };
        ran.push((job, result, started.elapsed()));
        spans.push(span);
    }
    if ran.is_empty() {
        return Ok(());
    }
    let mut tx = slot.begin().await?;
    let mut outcomes = Vec::with_capacity(ran.len());
    for ((job, result, took), span) in ran.iter().zip(&spans) {
        let result = match result {
            Ok(()) => {
                complete(ctx, job, tx.job_conn())
                    .instrument(span.clone())
                    .await?
            }
            Err(e) => Err(e.clone()),
        };
        let outcome = decide(ctx, job, result, *took);
        otel::record(span, &outcome);
        outcomes.push(outcome);
    }
    // The claim charged the attempt: the fence is the count it left.
    let attempts: Vec<i32> = ran.iter().map(|(j, _, _)| j.attempts + 1).collect();
    let done = tx.finish_leases(&outcomes, &attempts).await?;
    let mut kept = (Vec::new(), Vec::new(), Vec::new());
    for (((job, _, took), o), span) in ran.into_iter().zip(outcomes).zip(spans) {
        if done.contains(&job.id) {
            kept.0.push(job);
            kept.1.push(o);
            kept.2.push(took);
        } else {
            ctx.metrics.lease_refused.fetch_add(1, Ordering::Relaxed);
            otel::record_unsettled(&span, "lease_lost");
            warn!(
                job = %job.id,
                "outcome refused: this node lost the job's lease (it was cancelled, or \
                 rescued after the lease expired and given to another attempt)"
            );
        }
    }
    settled(ctx, &kept.0, &kept.1, &kept.2, ctx.events.has_listeners());
    Ok(())
}

/// The processor, outside any transaction, with the type's time limit; panics caught.
async fn process(ctx: &Ctx, job: &Job) -> Result<(), ProcessError> {
    let Some(reg) = ctx.registry.get(&job.job_type) else {
        return Err(ProcessError::fatal(format!(
            "no processor for type {}",
            job.job_type
        )));
    };
    let timeout = reg.options.timeout;
    let mut tx = JobTx::detached();
    let run = AssertUnwindSafe(reg.processor.process(job, &mut tx)).catch_unwind();
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(r)) => r,
        Ok(Err(panic)) => Err(ProcessError::retry(format!(
            "processor panicked: {}",
            panic_message(&panic)
        ))),
        Err(_) => Err(ProcessError::retry(format!(
            "timed out after {} ms",
            timeout.as_millis()
        ))),
    }
}

/// The processor's final writes, behind a savepoint in the completing transaction: they
/// commit with the outcome, or roll back and the job fails this attempt. An `Err` is the
/// transaction itself failing: nothing is recorded, and the leases expire into a rescue.
async fn complete(
    ctx: &Ctx,
    job: &Job,
    conn: &mut dyn crate::store::JobConn,
) -> Result<Result<(), ProcessError>> {
    let Some(reg) = ctx.registry.get(&job.job_type) else {
        return Ok(Ok(()));
    };
    let timeout = reg.options.timeout;
    let mut tx = JobTx::new(conn, timeout);
    let run = AssertUnwindSafe(reg.processor.complete(job, &mut tx)).catch_unwind();
    let result = match tokio::time::timeout(timeout, run).await {
        Ok(Ok(r)) => r,
        Ok(Err(panic)) => Err(ProcessError::retry(format!(
            "complete() panicked: {}",
            panic_message(&panic)
        ))),
        Err(_) => Err(ProcessError::retry(format!(
            "complete() timed out after {} ms",
            timeout.as_millis()
        ))),
    };
    Ok(match result {
        Ok(()) => match tx.finish_ok().await {
            Ok(()) => Ok(()),
            Err(e) => {
                tx.finish_err().await?;
                Err(ProcessError::retry(format!(
                    "complete() succeeded but its transaction failed: {e}"
                )))
            }
        },
        Err(pe) => {
            tx.finish_err().await?;
            Err(pe)
        }
    })
}
