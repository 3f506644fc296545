//! Submitting jobs: insert (commit), then push the IDs that are due to the queue. A push that
//! fails after the commit loses nothing: the reconciler finds the jobs in the database.

use std::sync::Arc;

use sqlx::PgConnection;
use tracing::warn;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::job::{NewJob, Submitted};
use crate::queue::Queue;
use crate::store::postgres::PgStore;
use crate::store::{BatchOptions, Due, Store};

/// The submitting side of skiplock.
#[derive(Clone)]
pub struct Client {
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
}

impl Client {
    pub fn new(store: Arc<dyn Store>, queue: Arc<dyn Queue>) -> Self {
        Client { store, queue }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn queue(&self) -> &Arc<dyn Queue> {
        &self.queue
    }

    /// Inserts one job and queues it if due.
    pub async fn submit(&self, job: NewJob) -> Result<Uuid> {
        let due = job.run_at.is_none_or(|t| t <= chrono::Utc::now());
        let priority = job.priority;
        let ids = self.store.insert_jobs(std::slice::from_ref(&job)).await?;
        if due {
            self.notify_prio(&ids, priority).await;
        }
        Ok(ids[0])
    }

    /// Inserts jobs of mixed types in one transaction and queues those due.
    pub async fn submit_many(&self, jobs: &[NewJob]) -> Result<Vec<Uuid>> {
        let ids = self.store.insert_jobs(jobs).await?;
        let now = chrono::Utc::now();
        let due: Vec<Due> = jobs
            .iter()
            .zip(&ids)
            .filter(|(j, _)| j.run_at.is_none_or(|t| t <= now))
            .map(|(j, id)| Due {
                id: *id,
                priority: j.priority,
            })
            .collect();
        self.push(&due).await;
        Ok(ids)
    }

    /// Inserts a batch: one type, many targets.
    pub async fn submit_batch(
        &self,
        job_type: &str,
        targets: Vec<serde_json::Value>,
        opts: BatchOptions,
    ) -> Result<Submitted> {
        let due = opts.run_at.is_none_or(|t| t <= chrono::Utc::now());
        let priority = opts.priority;
        let sub = self.store.insert_batch(job_type, targets, opts).await?;
        if due {
            self.notify_prio(&sub.ids, priority).await;
        }
        Ok(sub)
    }

    /// Inserts jobs inside the caller's own PostgreSQL transaction: the caller's rows and
    /// the jobs commit together. After committing, pass the IDs to [`Client::notify`] (or let
    /// the reconciler find them within its interval).
    pub async fn enqueue_in(&self, conn: &mut PgConnection, jobs: &[NewJob]) -> Result<Vec<Uuid>> {
        let store = self
            .store
            .as_any()
            .downcast_ref::<PgStore>()
            .ok_or_else(|| Error::Invalid("enqueue_in needs the PostgreSQL store".into()))?;
        store.insert_jobs_in(conn, jobs).await
    }

    /// Pushes committed job IDs to the queue. Never fails: a lost push only delays the jobs
    /// until the reconciler's next pass.
    pub async fn notify(&self, ids: &[Uuid]) {
        self.notify_prio(ids, 0).await;
    }

    async fn notify_prio(&self, ids: &[Uuid], priority: i16) {
        let due: Vec<Due> = ids.iter().map(|&id| Due { id, priority }).collect();
        self.push(&due).await;
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
