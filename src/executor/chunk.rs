//! The transactional flow for one chunk of popped IDs (K = 1 is the single-job flow):
//!
//! ```text
//! intent record (committed on its own); BEGIN
//! SELECT … WHERE id = ANY(ids) AND pending AND due FOR UPDATE SKIP LOCKED
//! for each locked job: [SAVEPOINT on first use] processor [RELEASE + RESET | ROLLBACK TO]
//! UPDATE every outcome in one statement; COMMIT
//! ```
//!
//! Events for outcomes are published only after COMMIT returns.
//!
//! No processor escapes its attempt. If a job's savepoint cannot be released or rolled back,
//! the job broke the chunk's transaction (ended it, or killed its connection): the chunk is
//! dropped, the culprit is charged in a short transaction of its own, and its chunk-mates run
//! again (or, if the culprit had committed the chunk, keep the outcomes they had). If the
//! database refuses a chunk's outcome update, its jobs run again one per transaction, which
//! finds the job whose outcome cannot be written and charges it the same way.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::FutureExt;
use tracing::{warn, Instrument};
use uuid::Uuid;

use super::Ctx;
use crate::error::{Error, Result};
use crate::events::{Event, EventStatus};
use crate::job::Job;
use crate::otel;
use crate::processor::{Mode, ProcessError};
use crate::store::{ChunkTx, JobConn, JobTx, Locked, Outcome, Slot};

/// Longest error text stored per attempt: enough to debug, bounded so that a processor that
/// returns a megabyte of output cannot bloat the table.
pub const MAX_ERROR_LEN: usize = 4096;

/// How long a processor's own timer trails its SQL time limit. The server-side limit
/// (`statement_timeout`, SQLite's interrupt) fires first and ends the statement cleanly, so
/// the savepoint rolls back and the failure is written in the same transaction; the timer is
/// the backstop for processors that are not waiting on SQL.
const TIMER_GRACE: Duration = Duration::from_millis(250);

/// Where a chunk's jobs come from.
pub(super) enum Source<'a> {
    /// IDs popped from the queue.
    Ids(&'a [Uuid]),
    /// Up to this many of the most urgent jobs, claimed from the store.
    Claim(usize),
}

/// How a chunk ended.
pub(super) enum Ran {
    /// Its outcomes committed: this many jobs ran.
    Done(usize),
    /// It was dropped: a job broke it (and was charged) or its outcomes could not be written.
    /// The slot's connection is suspect. `rest` are the IDs to run again, one chunk each if
    /// `alone`.
    Broken { rest: Vec<Uuid>, alone: bool },
}

/// What one job's run came to.
enum Step {
    Decided(Outcome),
    /// The job's savepoint could not be released or rolled back: the transaction is gone.
    Broke(String),
}

/// Runs one chunk end to end. An `Err` means the transaction failed for reasons no job can be
/// blamed for (connection lost, database down): nothing was written and every job in it is
/// still pending.
pub(super) async fn run(ctx: &Ctx, slot: &mut dyn Slot, source: Source<'_>) -> Result<Ran> {
    let locked = match source {
        Source::Ids(ids) => {
            let locked = slot.lock(ids).await?;
            ctx.metrics
                .dropped_ids
                .fetch_add((ids.len() - locked.jobs.len()) as u64, Ordering::Relaxed);
            locked
        }
        Source::Claim(max) => slot.claim(max).await?,
    };
    let (ran, leased) = run_locked(ctx, locked).await?;
    // Committed: the lease-mode jobs are ours to run, with no transaction open.
    if !leased.is_empty() {
        super::lease::run(ctx, slot, leased).await?;
    }
    Ok(ran)
}

/// The chunk's transaction, from its locked jobs to its commit. Returns how it ended and the
/// lease-mode jobs it claimed, to run once it has committed.
async fn run_locked(ctx: &Ctx, locked: Locked<'_>) -> Result<(Ran, Vec<Job>)> {
    let Locked { jobs, mut tx } = locked;
    if jobs.is_empty() {
        tx.finish(&[]).await?;
        return Ok((Ran::Done(0), Vec::new()));
    }
    let total = jobs.len();
    let _held = ctx.node.hold(jobs.iter().map(|j| j.id), &ctx.metrics);
    // Lease-mode jobs are claimed by this transaction (marked running as it ends) and run
    // after it commits, with no transaction open; the rest run inside it.
    let (leased, jobs): (Vec<Job>, Vec<Job>) = jobs
        .into_iter()
        .partition(|j| ctx.registry.options(&j.job_type).mode == Mode::Lease);
    let leased_ids: Vec<Uuid> = leased.iter().map(|j| j.id).collect();
    // Decided once per chunk: with nobody listening, no event is built at all.
    let listened = ctx.events.has_listeners();
    if listened {
        // Every locked job is in flight from here: one message for the chunk.
        ctx.publish(
            jobs.iter()
                .chain(&leased)
                .map(|j| event(ctx, j, EventStatus::Running, None))
                .collect(),
        );
    }
    let mut outcomes = Vec::with_capacity(jobs.len());
    let mut timings = Vec::with_capacity(jobs.len());
    for (i, job) in jobs.iter().enumerate() {
        let started = Instant::now();
        match run_one(ctx, job, tx.job_conn()).await {
            Step::Decided(o) => outcomes.push(o),
            Step::Broke(why) => {
                let ran = broken(ctx, tx, &jobs, outcomes, i, why, started.elapsed()).await;
                return Ok((with_leased(ran, leased_ids)?, Vec::new()));
            }
        }
        timings.push(started.elapsed());
    }
    if !leased_ids.is_empty() {
        tx.lease(&leased_ids, ctx.config.lease_ttl).await?;
    }
    if let Err(e) = tx.finish(&outcomes).await {
        let ran = refused(ctx, &jobs, &timings, leased_ids.len(), e).await;
        return Ok((with_leased(ran, leased_ids)?, Vec::new()));
    }
    // Committed: only now may anyone hear about it.
    settled(ctx, &jobs, &outcomes, &timings, listened);
    Ok((Ran::Done(total), leased))
}

/// A broken chunk's lease-mode jobs were never claimed (the claim is its last statement):
/// they run again with the others.
fn with_leased(ran: Result<Ran>, leased: Vec<Uuid>) -> Result<Ran> {
    match ran? {
        Ran::Broken { mut rest, alone } => {
            rest.extend(leased);
            Ok(Ran::Broken { rest, alone })
        }
        done => Ok(done),
    }
}

/// Job `i` broke the chunk's transaction. Learns whether it had committed the chunk, charges
/// the culprit in a transaction of its own, and says which chunk-mates must run again.
async fn broken(
    ctx: &Ctx,
    tx: Box<dyn ChunkTx + '_>,
    jobs: &[Job],
    before: Vec<Outcome>,
    i: usize,
    why: String,
    took: Duration,
) -> Result<Ran> {
    let probe = tx.probe();
    tx.abandon().await;
    let culprit = &jobs[i];
    let committed = probe.committed().await?;
    let (done, settle, rest): (&[Job], Vec<Outcome>, Vec<Uuid>) = if committed {
        // The culprit's COMMIT made its chunk-mates' writes stand: their outcomes stand too.
        let e = ProcessError::fatal(format!(
            "the processor committed the job's transaction itself ({why}); a job's writes \
             commit with its outcome, so it must not end the transaction"
        ));
        let mut s = before;
        s.push(decide(ctx, culprit, Err(e), took));
        let rest = jobs[i + 1..].iter().map(|j| j.id).collect();
        (&jobs[..=i], s, rest)
    } else {
        // Everything the chunk did is gone with it: the chunk-mates simply run again.
        let e = ProcessError::retry(format!(
            "the job broke its transaction (its connection or savepoint is gone): {why}"
        ));
        let rest = jobs.iter().filter(|j| j.id != culprit.id).map(|j| j.id);
        (
            std::slice::from_ref(culprit),
            vec![decide(ctx, culprit, Err(e), took)],
            rest.collect(),
        )
    };
    ctx.store.settle(&settle, &ctx.node.id).await?;
    let timings = vec![Duration::ZERO; settle.len()];
    settled(ctx, done, &settle, &timings, ctx.events.has_listeners());
    Ok(Ran::Broken { rest, alone: false })
}

/// The database refused the chunk's outcome update (or its commit). Nothing was written.
/// Several jobs: run each alone, to find the one whose outcome cannot be written. One job:
/// it is that job; charge it in a transaction of its own. A lost connection is no job's
/// fault and stays an error.
async fn refused(
    ctx: &Ctx,
    jobs: &[Job],
    timings: &[Duration],
    leased: usize,
    e: Error,
) -> Result<Ran> {
    if !matches!(e, Error::Database(sqlx::Error::Database(_))) {
        return Err(e);
    }
    if jobs.is_empty() {
        // Only lease claims were refused: no job of this chunk ran, so none is to blame.
        return Err(e);
    }
    warn!(error = %e, jobs = jobs.len(), "the database refused a chunk's outcomes");
    if jobs.len() + leased > 1 {
        return Ok(Ran::Broken {
            rest: jobs.iter().map(|j| j.id).collect(),
            alone: true,
        });
    }
    let job = &jobs[0];
    let o = decide(
        ctx,
        job,
        Err(ProcessError::retry(format!(
            "the database refused to record this job's outcome: {e}"
        ))),
        timings.first().copied().unwrap_or_default(),
    );
    ctx.store
        .settle(std::slice::from_ref(&o), &ctx.node.id)
        .await?;
    settled(
        ctx,
        std::slice::from_ref(job),
        std::slice::from_ref(&o),
        &[Duration::ZERO],
        ctx.events.has_listeners(),
    );
    Ok(Ran::Broken {
        rest: Vec::new(),
        alone: false,
    })
}

/// Metrics, counters and events for outcomes that have committed.
pub(super) fn settled(
    ctx: &Ctx,
    jobs: &[Job],
    outcomes: &[Outcome],
    timings: &[Duration],
    listened: bool,
) {
    // This node knows when its retries come due: it wakes a runner then, instead of waiting
    // for the poll.
    let first_retry = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Retry { delay, .. } => Some(*delay),
            _ => None,
        })
        .min();
    if let Some(d) = first_retry {
        ctx.wake.at(tokio::time::Instant::now() + d);
    }
    let statuses: Vec<EventStatus> = outcomes.iter().map(event_status).collect();
    ctx.metrics.record_many(
        jobs.iter()
            .zip(&statuses)
            .zip(timings)
            .map(|((j, s), t)| (j.job_type.as_str(), s.as_str(), *t)),
    );
    ctx.node.count(&statuses);
    if listened {
        let events = jobs
            .iter()
            .zip(statuses)
            .zip(outcomes)
            .map(|((j, s), o)| event(ctx, j, s, o.error().map(str::to_string)))
            .collect();
        ctx.publish(events);
    }
}

fn event_status(o: &Outcome) -> EventStatus {
    match o {
        Outcome::Succeeded { .. } | Outcome::SucceededDeleted { .. } => EventStatus::Succeeded,
        Outcome::Retry { .. } => EventStatus::Retrying,
        Outcome::Failed { .. } => EventStatus::Failed,
    }
}

/// Runs one job's attempt inside its span (see [`otel::attempt_span`]).
async fn run_one(ctx: &Ctx, job: &Job, conn: &mut dyn JobConn) -> Step {
    let span = otel::attempt_span(job);
    let step = attempt(ctx, job, conn).instrument(span.clone()).await;
    match &step {
        Step::Decided(o) => otel::record(&span, o),
        // Charged once its chunk is gone (see `broken`).
        Step::Broke(_) => otel::record_unsettled(&span, "broke_transaction"),
    }
    step
}

/// Runs one job's processor behind its savepoint and decides its outcome.
async fn attempt(ctx: &Ctx, job: &Job, conn: &mut dyn JobConn) -> Step {
    // A runner's slot only locks and claims the types of this registry, so a job without a
    // processor cannot get here; should one ever, it is failed rather than run by guesswork.
    let Some(reg) = ctx.registry.get(&job.job_type) else {
        return Step::Decided(decide(
            ctx,
            job,
            Err(ProcessError::fatal(format!(
                "no processor for type {}",
                job.job_type
            ))),
            Duration::ZERO,
        ));
    };
    let timeout = reg.options.timeout;
    let mut tx = JobTx::new(conn, timeout);
    let started = Instant::now();
    let run = AssertUnwindSafe(reg.processor.process(job, &mut tx)).catch_unwind();
    let result = match tokio::time::timeout(timeout + TIMER_GRACE, run).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) if started.elapsed() >= timeout => Err(ProcessError {
            message: format!("timed out after {} ms: {}", timeout.as_millis(), e.message),
            retryable: true,
        }),
        Ok(Ok(Err(e))) => Err(e),
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
                // error, or ended the transaction): roll its writes back and record why.
                if let Err(e2) = tx.finish_err().await {
                    return Step::Broke(format!("{e}; then {e2}"));
                }
                Err(ProcessError::retry(format!(
                    "processor succeeded but its transaction failed: {e}"
                )))
            }
        },
        Err(pe) => match tx.finish_err().await {
            Ok(()) => Err(pe),
            Err(e) => return Step::Broke(format!("{}; then {e}", pe.message)),
        },
    };
    Step::Decided(decide(ctx, job, result, started.elapsed()))
}

/// Success, a retry after the type's backoff, or `failed` once attempts are spent or retrying
/// is futile. `took` is how long the attempt ran, for the job's attempt history.
pub(super) fn decide(
    ctx: &Ctx,
    job: &Job,
    result: Result<(), ProcessError>,
    took: Duration,
) -> Outcome {
    let e = match result {
        Ok(()) if ctx.config.delete_succeeded.deletes(&job.job_type) => {
            return Outcome::SucceededDeleted { id: job.id }
        }
        Ok(()) => return Outcome::Succeeded { id: job.id },
        Err(e) => e,
    };
    let error = bounded(&e.message);
    let spent = job.attempts + 1 >= job.max_attempts;
    if e.retryable && !spent {
        let delay = ctx
            .registry
            .options(&job.job_type)
            .retry_delay(job.attempts + 1);
        Outcome::Retry {
            id: job.id,
            error,
            delay,
            took,
        }
    } else {
        Outcome::Failed {
            id: job.id,
            error,
            took,
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

/// Error text fit to store: at most [`MAX_ERROR_LEN`] bytes, cut on a character boundary,
/// and without NUL characters, which PostgreSQL's text cannot hold (a `command`'s stderr or
/// an HTTP body may carry them) and which would make the outcome itself unwritable.
fn bounded(s: &str) -> String {
    let clean = if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\\0"))
    } else {
        std::borrow::Cow::Borrowed(s)
    };
    if clean.len() <= MAX_ERROR_LEN {
        return clean.into_owned();
    }
    let mut end = MAX_ERROR_LEN;
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &clean[..end], clean.len())
}

pub(super) fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
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

    #[test]
    fn errors_lose_their_nul_characters() {
        assert_eq!(bounded("a\0b"), "a\\0b");
    }
}
