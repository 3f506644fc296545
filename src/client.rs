//! Submitting jobs: insert (commit), then push the IDs that are due to the queue. A push that
//! fails after the commit loses nothing: the reconciler finds the jobs in the database.
//!
//! A job that does not set `max_attempts` takes its type's policy in the insert statement
//! itself (from `job_types`, which nodes publish from their registry; see
//! [`crate::Store::publish_policy`]): one rule for the library, the CLI, the API and the SQL
//! functions alike.
//!
//! A job that names no `traceparent` takes the current span's trace, when the `otel` feature
//! is built in and the span is being recorded: its attempts then continue that trace.

use std::sync::Arc;

#[cfg(feature = "postgres")]
use sqlx::PgConnection;
use tracing::warn;
use uuid::Uuid;

use crate::error::Result;
use crate::job::{Due, Inserted, NewJob, Submitted};
use crate::otel;
use crate::queue::Queue;
#[cfg(feature = "postgres")]
use crate::store::postgres::PgStore;
use crate::store::{BatchOptions, Store};

/// The submitting side of skiplock. `S` is the store: any store behind the seam by default,
/// or [`PgStore`] itself for [`Client::enqueue_in`], which needs the caller's PostgreSQL
/// transaction.
pub struct Client<S: ?Sized = dyn Store> {
    store: Arc<S>,
    queue: Arc<dyn Queue>,
}

impl<S: ?Sized> Clone for Client<S> {
    fn clone(&self) -> Self {
        Client {
            store: self.store.clone(),
            queue: self.queue.clone(),
        }
    }
}

impl<S: Store + ?Sized> Client<S> {
    pub fn new(store: Arc<S>, queue: Arc<dyn Queue>) -> Self {
        Client { store, queue }
    }

    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    pub fn queue(&self) -> &Arc<dyn Queue> {
        &self.queue
    }

    /// Inserts one job and queues it if due.
    pub async fn submit(&self, job: NewJob) -> Result<Uuid> {
        let ids = self.submit_many(std::slice::from_ref(&job)).await?;
        Ok(ids[0])
    }

    /// Inserts jobs of mixed types in one transaction and queues those due.
    pub async fn submit_many(&self, jobs: &[NewJob]) -> Result<Vec<Uuid>> {
        let done = self.submit_many_checked(jobs).await?;
        Ok(done.into_iter().map(|i| i.id).collect())
    }

    /// Inserts one job, or finds the open job it duplicates (see [`NewJob::unique_key`]).
    pub async fn submit_checked(&self, job: NewJob) -> Result<Inserted> {
        let mut done = self.submit_many_checked(std::slice::from_ref(&job)).await?;
        Ok(done.swap_remove(0))
    }

    /// [`Client::submit_many`], saying of each job whether it duplicated one (its id is then
    /// that job's, and nothing was inserted for it).
    pub async fn submit_many_checked(&self, jobs: &[NewJob]) -> Result<Vec<Inserted>> {
        let done = self
            .store
            .insert_checked(&otel::in_current_trace(jobs))
            .await?;
        self.push(&due(jobs, &done)).await;
        Ok(done)
    }

    /// Inserts a batch: one type, many targets.
    pub async fn submit_batch(
        &self,
        job_type: &str,
        targets: Vec<serde_json::Value>,
        mut opts: BatchOptions,
    ) -> Result<Submitted> {
        if opts.traceparent.is_none() {
            opts.traceparent = otel::current_traceparent();
        }
        let due = opts.run_at.is_none_or(|t| t <= chrono::Utc::now());
        let priority = opts.priority;
        let sub = self.store.insert_batch(job_type, targets, opts).await?;
        if due {
            let due: Vec<Due> = sub
                .ids
                .iter()
                .map(|&id| Due {
                    id,
                    priority,
                    queue: sub.queue.clone(),
                })
                .collect();
            self.push(&due).await;
        }
        Ok(sub)
    }

    /// Pushes committed job IDs to the queue, those pending and due, each with its own
    /// priority. Never fails: a lost push only delays the jobs until a runner claims them.
    pub async fn notify(&self, ids: &[Uuid]) {
        match self.store.due_among(ids).await {
            Ok(due) => self.push(&due).await,
            Err(e) => warn!(error = %e, "cannot look up jobs to queue; runners will claim them"),
        }
    }

    /// Pushes committed job IDs to the queue at their own priorities (what a bulk retry
    /// returns). Never fails, as [`Client::notify`].
    pub async fn notify_due(&self, due: &[Due]) {
        self.push(due).await;
    }

    async fn push(&self, due: &[Due]) {
        for part in due.chunks(10_000) {
            if let Err(e) = self.queue.push(part).await {
                warn!(error = %e, "queue push failed after commit; the reconciler will enqueue these jobs");
                return;
            }
        }
    }
}

impl<S: Store> Client<S> {
    /// The same client over the store seam, for code that takes any store.
    pub fn erased(self) -> Client {
        Client {
            store: self.store,
            queue: self.queue,
        }
    }
}

#[cfg(feature = "postgres")]
impl Client<PgStore> {
    /// Inserts jobs inside the caller's own PostgreSQL transaction: the caller's rows and
    /// the jobs commit together. After committing, pass the IDs to [`Client::notify`] (or let
    /// the reconciler find them within its interval).
    pub async fn enqueue_in(&self, conn: &mut PgConnection, jobs: &[NewJob]) -> Result<Vec<Uuid>> {
        self.store
            .insert_jobs_in(conn, &otel::in_current_trace(jobs))
            .await
    }
}

/// The jobs of `jobs` (inserted as `done`) that are new and due now; a duplicate's job was
/// queued by whoever inserted it.
fn due(jobs: &[NewJob], done: &[Inserted]) -> Vec<Due> {
    let now = chrono::Utc::now();
    jobs.iter()
        .zip(done)
        .filter(|(j, i)| !i.duplicate && j.run_at.is_none_or(|t| t <= now))
        .map(|(j, i)| Due {
            id: i.id,
            priority: j.priority,
            queue: i.queue.clone(),
        })
        .collect()
}
